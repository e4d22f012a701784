"""Pre-flight (free checks before anything is paid for) and a removed simulate endpoint, end
to end over 127.0.0.1: the server's own counters prove that nothing paid was sent."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.errors import Action, ErrorKind, classify_endpoint_reply
from runner.localapi.server import LocalAPI, local_api_process
from runner.store import load_run

ROOT = Path(__file__).resolve().parents[1]
ENDPOINT = "POST /v1/convai/agents/{agent_id}/simulate-conversation/stream"


def write(path: Path, base_url: str, *, backend: str = "stream", **extra: Any) -> Path:
    config: dict[str, Any] = {
        "target": {
            "base_url": base_url,
            "backend": backend,
            "api_key_env": "PF_TEST_KEY",
            "agent_testing": {"name_prefix": "pf", "poll_interval": 0.02},
        },
        "run": {
            "name": "pf",
            "concurrency": 4,
            "new_turns_limit": 6,
            "retry": {"backoff_base": 0.01, "backoff_cap": 0.02, "jitter": 0.0},
        },
        "agents": [{"id": "agent_support"}, {"id": "agent_booking"}],
        "scenarios": [
            {"id": f"s{i}", "first_message": f"Where is order A-{i}?", "prompt": "late order"}
            for i in range(10)
        ],
        **extra,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def cli(*args: str, key: str = "good-key") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PF_TEST_KEY": key},
    )


def paid(api: LocalAPI) -> int:
    """What the server did that costs money: simulations and test invocations started."""
    stats = api.stats()
    return int(stats["simulations_started"]) + int(stats["agent_testing"]["invocations_created"])


# ---------------------------------------------------------------------------- classification


@pytest.mark.parametrize("status", [404, 405, 410])
def test_a_gone_endpoint_aborts_the_run_an_unknown_agent_fails_the_job(status: int) -> None:
    gone = classify_endpoint_reply(
        status, b'{"detail":"Not Found"}', None, endpoint=ENDPOINT, agent_id="a1"
    )
    assert gone.kind is ErrorKind.ENDPOINT_GONE and gone.action is Action.ABORT_RUN
    assert ENDPOINT in gone.message and "target.backend: agent-testing" in gone.message
    assert "\n" not in gone.message
    agent = classify_endpoint_reply(
        404,
        b'{"detail":{"status":"agent_not_found","message":"Agent a1 was not found."}}',
        None,
        endpoint=ENDPOINT,
        agent_id="a1",
    )
    assert agent.kind is ErrorKind.NOT_FOUND and agent.action is Action.FAIL_JOB
    named = classify_endpoint_reply(
        404, b'{"detail":"no agent a1 here"}', None, endpoint=ENDPOINT, agent_id="a1"
    )
    assert named.kind is ErrorKind.NOT_FOUND


# ---------------------------------------------------------------------------- pre-flight


@pytest.fixture
def guarded() -> Any:
    with local_api_process(["--time-scale", "0.001"], api_key="good-key") as api:
        yield api


def test_preflight_catches_a_bad_key_before_any_paid_request(
    tmp_path: Path, guarded: LocalAPI
) -> None:
    config = write(tmp_path / "c.yaml", guarded.base_url)
    for args in ([], ["--dry-run"]):
        done = cli(
            "run",
            str(config),
            "--results",
            str(tmp_path / "r"),
            "--no-progress",
            *args,
            key="wrong-key",
        )
        assert done.returncode == 2, done.stderr
        lines = [line for line in done.stderr.splitlines() if "pre-flight" in line or "PF_" in line]
        assert any("PF_TEST_KEY was rejected" in line for line in lines), done.stderr
        assert "wrong-key" not in done.stdout + done.stderr
    assert paid(guarded) == 0
    assert guarded.stats()["responses_by_status"].get("401", 0) == 2  # one cheap GET each


def test_preflight_catches_an_unknown_agent_and_branch(tmp_path: Path, guarded: LocalAPI) -> None:
    config = write(
        tmp_path / "c.yaml",
        guarded.base_url,
        backend="agent-testing",
        agents=[
            {"id": "agent_support"},
            {"id": "agent_nope"},
            {"id": "agent_support", "branch_id": "agtbrch_nope"},
        ],
    )
    done = cli("run", str(config), "--results", str(tmp_path / "r"), "--no-progress")
    assert done.returncode == 2, done.stderr
    problems = [
        line
        for line in done.stderr.splitlines()
        if line.startswith("error: pre-flight") and "problem(s) above" not in line
    ]
    assert done.stderr.splitlines()[-1].startswith("error: pre-flight: 2 problem(s) above")
    assert len(problems) == 2, done.stderr
    assert "agents[1].id: agent 'agent_nope' does not exist" in problems[0]
    assert "agents[2].branch_id: agent 'agent_support' has no branch 'agtbrch_nope'" in problems[1]
    stats = guarded.stats()["agent_testing"]
    assert paid(guarded) == 0 and stats["tests_created"] == 0


@pytest.mark.parametrize("mode", ["off", "gone"])
def test_preflight_catches_a_removed_simulate_endpoint(tmp_path: Path, mode: str) -> None:
    with local_api_process(["--time-scale", "0.001", "--simulate-endpoints", mode]) as api:
        config = write(tmp_path / "c.yaml", api.base_url)
        for args in (["--dry-run"], []):
            done = cli("run", str(config), "--results", str(tmp_path / "r"), "--no-progress", *args)
            assert done.returncode == 2, done.stderr
            assert ENDPOINT in done.stderr and "target.backend: agent-testing" in done.stderr
        assert paid(api) == 0
        assert api.stats()["simulate_requests"] == 2  # one empty-body probe each
        # the same config switched to agent-testing passes pre-flight and runs
        switched = write(tmp_path / "at.yaml", api.base_url, backend="agent-testing")
        done = cli(
            "run", str(switched), "--results", str(tmp_path / "r2"), "--no-progress", "--limit", "4"
        )
        assert done.returncode == 0, done.stderr


def test_dry_run_says_preflight_passed(tmp_path: Path, guarded: LocalAPI) -> None:
    config = write(tmp_path / "c.yaml", guarded.base_url)
    done = cli("run", str(config), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "pre-flight:" in done.stdout
    assert paid(guarded) == 0


# ---------------------------------------------------------------------------- mid-run


def test_a_stream_run_stops_at_the_first_gone_reply_with_one_line(tmp_path: Path) -> None:
    """Without pre-flight (or if the endpoint goes mid-run): the run stops at the first such
    reply, after at most the requests in flight, instead of failing every job."""
    with local_api_process(["--time-scale", "0.001", "--simulate-endpoints", "gone"]) as api:
        config = write(tmp_path / "c.yaml", api.base_url)
        done = cli(
            "run", str(config), "--results", str(tmp_path / "r"), "--no-progress", "--no-preflight"
        )
        assert done.returncode == 1, done.stderr
        aborted = [line for line in done.stderr.splitlines() if "run aborted" in line]
        assert len(aborted) == 1, done.stderr
        assert aborted[0].startswith("error: run aborted: " + ENDPOINT), aborted[0]
        assert "set target.backend: agent-testing" in aborted[0]
        assert api.stats()["simulate_requests"] <= 4  # concurrency 4: what was in flight


# ---------------------------------------------------------------------------- reachability


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_a_server_that_cannot_be_reached_is_one_problem_and_nothing_is_run(
    tmp_path: Path,
) -> None:
    base_url = f"http://127.0.0.1:{closed_port()}"
    config = write(tmp_path / "c.yaml", base_url)
    done = cli("run", str(config), "--results", str(tmp_path / "r"), "--no-progress")
    assert done.returncode == 2, done.stderr
    # the one problem, then the line every pre-flight failure ends with
    problem, last = [line for line in done.stderr.splitlines() if line.strip()]
    assert problem.startswith(f"error: pre-flight: cannot reach {base_url}: "), problem
    assert last.startswith("error: pre-flight: 1 problem(s) above; nothing was sent"), last
    # nothing was run and nothing is left behind: no run directory
    assert not (tmp_path / "r" / "pf").exists()


def test_a_resume_stopped_by_preflight_keeps_its_run_and_records_the_abort(
    tmp_path: Path, guarded: LocalAPI
) -> None:
    config = write(tmp_path / "c.yaml", guarded.base_url)
    first = cli(
        "run", str(config), "--results", str(tmp_path / "r"), "--no-progress", "--limit", "1"
    )
    assert first.returncode == 0, first.stderr
    base_url = f"http://127.0.0.1:{closed_port()}"
    write(config, base_url)
    done = cli("run", str(config), "--results", str(tmp_path / "r"), "--no-progress")
    assert done.returncode == 2, done.stderr
    run = load_run(tmp_path / "r" / "pf")
    assert run.jobs.height == 1  # the first session's job is kept
    assert [s.ended for s in run.manifest.sessions][-1] == "aborted"
    assert f"cannot reach {base_url}" in (run.manifest.sessions[-1].abort_reason or "")


@contextmanager
def busy_server(status: int) -> Iterator[str]:
    """A server on 127.0.0.1 that answers ``status`` (429 or 503, the vendor's busy shapes) to
    every request: it says nothing about the key, the agents or the endpoint."""
    body = json.dumps({"detail": {"status": "system_busy", "message": "busy"}}).encode()

    class Busy(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _reply

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [429, 503])
def test_a_busy_server_passes_preflight(tmp_path: Path, status: int) -> None:
    with busy_server(status) as base_url:
        config = write(tmp_path / "c.yaml", base_url)
        done = cli("run", str(config), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "pre-flight: the key, every agent and branch, and the endpoint" in done.stdout


# ---------------------------------------------------------------------------- assertion tools


def agent_reply(prompt: dict[str, Any]) -> bytes:
    return json.dumps(
        {"agent_id": "a", "conversation_config": {"agent": {"prompt": prompt}}}
    ).encode()


def test_an_agents_tools_are_read_from_its_reply_or_left_unknown() -> None:
    from runner.preflight import agent_tools

    full = {
        "tools": [{"type": "webhook", "name": "lookup_order"}, {"type": "client"}],
        "tool_ids": ["tool_1"],
        "built_in_tools": {"end_call": {"name": "end_call", "params": {}}, "skip_turn": None},
    }
    assert agent_tools(agent_reply(full)) == ({"lookup_order", "end_call"}, ["tool_1"])
    assert agent_tools(agent_reply({"tools": []})) == (set(), [])  # listed: it has none
    assert agent_tools(agent_reply({"prompt": "hi"})) is None  # not listed: unknown
    assert agent_tools(agent_reply({"tools": [], "mcp_server_ids": ["m"]})) is None
    assert agent_tools(b"not json") is None


def test_preflight_refuses_an_assertion_on_a_tool_no_agent_has(
    tmp_path: Path, guarded: LocalAPI
) -> None:
    checks = [
        {"id": "refund_called", "tool_called": "issue_refund"},  # agent_support has it
        {"id": "booked", "tool_called": "create_booking"},  # agent_booking has it
        {"id": "quotes_eta", "agent_says": "days", "after_tool": "lookup_ordr"},  # a typo
    ]
    config = write(tmp_path / "c.yaml", guarded.base_url, **{"assert": checks})
    done = cli("run", str(config), "--results", str(tmp_path / "r"), "--no-progress")
    assert done.returncode == 2, done.stderr
    problems = [line for line in done.stderr.splitlines() if "no agent has" in line]
    assert len(problems) == 1, done.stderr
    assert "assert quotes_eta: after_tool: no agent has a tool 'lookup_ordr'" in problems[0]
    assert "lookup_order" in problems[0]  # the tools there are, to pick from
    assert paid(guarded) == 0

    config = write(tmp_path / "ok.yaml", guarded.base_url, **{"assert": checks[:2]})
    done = cli("run", str(config), "--results", str(tmp_path / "r2"), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "pre-flight:" in done.stdout and "no agent has" not in done.stdout
