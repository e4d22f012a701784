"""A ``compare:`` run end to end on the local API (issue 26): the weaker variant is decided
"worse" with fewer simulations than the fixed design of 90% power; a variant against itself is
never "worse"; a resumed comparison continues the same one."""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sweep_data import ORDER_STATUS_CRITERION, SUPPORT_SCENARIOS

import runner
from runner.localapi.server import LocalAPI, local_api_process
from runner.paired import fixed_paired_pairs

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = {"id": "agent_support", "label": "support"}
LITE = {"id": "agent_support_lite", "label": "support-lite"}


@pytest.fixture(scope="module")
def server() -> Iterator[LocalAPI]:
    with local_api_process(["--time-scale", "0.001", "--seed", "11"]) as api:
        yield api


def write(path: Path, seed: int, compare: dict[str, Any], **extra: Any) -> Path:
    config: dict[str, Any] = {
        "target": {"base_url": "local"},
        "run": {"concurrency": 8, "new_turns_limit": 8, "seed": seed},
        "agents": [SUPPORT, LITE],
        "criteria": [dict(ORDER_STATUS_CRITERION)],
        "scenarios": [dict(s) for s in SUPPORT_SCENARIOS],
        "compare": compare,
        **extra,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run(path: Path, server: LocalAPI, name: str) -> runner.RunResult:
    return runner.run(
        path, name=name, results_root=path.parent, progress=False, base_url=server.base_url
    )


def test_the_weaker_variant_is_worse_with_fewer_simulations_than_the_fixed_design(
    tmp_path: Path, server: LocalAPI
) -> None:
    compare = {"baseline": "support", "candidate": "support-lite", "max_pairs": 400}
    simulations, wins, losses, pairs = [], 0, 0, 0
    for seed in (1, 2, 3):
        result = run(write(tmp_path / f"w{seed}.yaml", seed, compare), server, f"w{seed}")
        decision = result.compare
        assert decision is not None and decision.verdict == "worse", decision
        simulations.append(result.counters.done)
        c = decision.counts
        wins, losses, pairs = wins + c.wins, losses + c.losses, pairs + c.pairs
    # the fixed design tests what the rule tests: H0 mu >= -margin (the default 0.05)
    fixed = fixed_paired_pairs(wins / pairs, losses / pairs, -0.05, 0.05, 0.9)
    print(
        f"\nsupport-lite vs support: simulations {simulations} (median "
        f"{statistics.median(simulations)}); the fixed design of 90% power at the observed "
        f"difference ({(wins - losses) / pairs:+.3f}): {fixed} pairs = {2 * fixed} simulations"
    )
    assert statistics.median(simulations) < 2 * fixed


def test_a_variant_against_itself_is_never_worse(tmp_path: Path, server: LocalAPI) -> None:
    """Two arms of a matrix axis the agent never reads: the same variant twice."""
    axis = "dynamic_variables.customer_tier"
    compare = {
        "baseline": {"matrix": {axis: "gold"}},
        "candidate": {"matrix": {axis: "basic"}},
        "max_pairs": 60,
    }
    for seed in (1, 2, 3):
        path = write(
            tmp_path / f"s{seed}.yaml",
            seed,
            compare,
            agents=[SUPPORT],
            matrix={axis: ["gold", "basic"]},
        )
        decision = run(path, server, f"s{seed}").compare
        assert decision is not None and decision.verdict != "worse", decision


def test_a_resumed_comparison_continues_and_an_ended_one_sends_nothing(
    tmp_path: Path, server: LocalAPI
) -> None:
    compare = {"baseline": "support", "candidate": "support-lite", "max_pairs": 400}
    path = write(tmp_path / "r.yaml", 4, compare)
    first = runner.run(
        path, name="r", results_root=tmp_path, progress=False, base_url=server.base_url, limit=None
    )
    assert first.compare is not None and first.compare.stop
    again = run(path, server, "r")
    assert again.counters.done == 0  # decided: nothing more to send
    assert again.compare is None or again.compare.verdict == first.compare.verdict


def test_kill_9_then_resume_gives_the_same_decision(tmp_path: Path) -> None:
    """One job at a time, each (agent, body)'s n-th request gets the local API's n-th draw for
    it; the killed run's server stays up across the kill (``--hold-request``: the request the
    runner dies waiting for takes no draw). The resumed comparison reaches the uninterrupted
    one's decision, after the same pairs, with the same tallies and confidence sequence."""
    compare = {"baseline": "support", "candidate": "support-lite", "max_pairs": 100}
    fast = ["--time-scale", "0.001", "--seed", "11"]

    def config(api: LocalAPI, name: str) -> Path:
        run = {"concurrency": 1, "new_turns_limit": 8, "seed": 5}
        target = {"base_url": api.base_url}
        return write(tmp_path / f"{name}.yaml", 5, compare, run=run, target=target)

    with local_api_process(fast) as api:
        whole = run(config(api, "whole"), api, "cmp").compare
        sent = api.stats()["simulate_requests"]
    with local_api_process([*fast, "--hold-request", str(sent // 2)]) as api:
        path = config(api, "broken")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runner",
                "run",
                str(path),
                "--results",
                str(tmp_path / "b"),
                "--name",
                "cmp",
                "-q",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while api.stats()["held"] == 0:
            assert proc.poll() is None and time.monotonic() < deadline, "never held"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert api.stats()["simulations_completed"] == sent // 2 - 1  # killed mid-run
        resumed = runner.run(
            path, name="cmp", results_root=tmp_path / "b", progress=False, quiet=True
        )
    assert whole is not None and resumed.compare is not None
    assert resumed.counters.done == sent - (sent // 2 - 1)  # only what the kill left
    again = resumed.compare
    assert (again.verdict, again.decided_at, again.counts) == (
        whole.verdict,
        whole.decided_at,
        whole.counts,
    )
    assert (again.lower, again.upper) == (whole.lower, whole.upper)
    assert whole.verdict == "worse"
