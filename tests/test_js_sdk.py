"""The official JS SDK (``@elevenlabs/elevenlabs-js`` pinned at 2.73.0 by
``tests/js/package-lock.json``) against the local API on 127.0.0.1. Unlike the Python SDK it
validates every reply and throws on a missing required field, so a run that completes proves
the replies it read have the shape the vendor's current clients expect: agents, a branch,
agent-testing tests and invocations, and both simulate-conversation replies (the buffered one
read into the SDK's model, the streamed one read to its end).

``make test`` installs it (``npm ci`` in ``tests/js``). Without node or the installed package
this FAILS, loudly: it is not skipped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from runner.localapi.server import LocalAPI

JS = Path(__file__).resolve().parent / "js"
PINNED = "2.73.0"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node is not installed: the JS SDK check cannot run. Install Node.js (CI has it) "
            "and run `make test` (it runs `npm ci` in tests/js)",
            pytrace=False,
        )
    package = JS / "node_modules" / "@elevenlabs" / "elevenlabs-js" / "package.json"
    if not package.exists():
        pytest.fail(
            "the JS SDK is not installed: run `cd tests/js && npm ci` (make test does)",
            pytrace=False,
        )
    assert json.loads(package.read_text())["version"] == PINNED
    return node


def test_the_lockfile_pins_the_sdk() -> None:
    lock = json.loads((JS / "package-lock.json").read_text())
    entry = lock["packages"]["node_modules/@elevenlabs/elevenlabs-js"]
    assert entry["version"] == PINNED and entry["integrity"].startswith("sha512-")


def test_the_js_sdk_reads_every_reply(local_api_factory: object) -> None:
    node = _node()
    api: LocalAPI = local_api_factory(["--time-scale", "0.002", "--seed", "8"])  # type: ignore[operator]
    done = subprocess.run(
        [node, "check.mjs", api.base_url],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["agents"] == ["agent_support", "agent_support_lite", "agent_booking"]
    assert seen["branch"] == "agtbrch_support_lite_llm"
    assert seen["test"] == "js sdk check" and seen["tests"] >= 1
    assert len(seen["statuses"]) == 2 and set(seen["statuses"]) <= {"passed", "failed"}
    assert seen["cancelledStatuses"] == ["cancelled"]
    # [name, test_run_count, cancelled_count], newest first: the cancelled one adds up
    # (2.73 knows no ``name`` on the summaries: the cancel, the tool run, the first run)
    assert [row[1:] for row in seen["listed"]] == [[1, 1], [20, 0], [2, 0]]
    # a tool-type run carries test_info with its type; a transfer's result names its agent
    assert seen["toolTypes"] == ["simulation", "tool"]
    assert set(seen["toolStatuses"]) <= {"passed", "failed"}
    assert seen["toAgents"] == ["human_support"]
    # simulate-conversation, buffered (validated by the SDK's model) and streamed
    assert seen["simulated"]["roles"] == ["agent", "user"]
    assert seen["simulated"]["callSuccessful"] in {"success", "failure", "unknown"}
    assert seen["simulated"]["criteria"] >= 1
    assert seen["streamed"] == 200
    assert api.stats()["simulate_requests"] == 2
