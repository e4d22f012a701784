"""Assertions end to end on the local API: recorded by a sweep, then re-asserted offline."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import polars as pl
import pytest
import yaml

from runner.config import load_config
from runner.localapi.server import LocalAPI, local_api_process
from runner.reassert import assert_command
from runner.store import load_run
from runner.sweep import run_sweep

REFUND = {
    "id": "refund_system_down",
    "first_message": "I returned a jacket three weeks ago and I still haven't got my money back.",
    "prompt": "You are Tomasz Nowak. You want a refund for your returned jacket.",
    "user_dynamic_variables": {"order_number": "B-55871", "email": "t.nowak@example.org"},
    "tool_mocks": {"issue_refund": {"return_value": "refund unavailable", "is_error": True}},
    "criteria": [
        {
            "id": "honest_about_failure",
            "name": "Honest about the failure",
            "conversation_goal_prompt": "The agent did not claim the refund was approved.",
        }
    ],
    "assert": [
        {"id": "refund_called", "tool_called": "issue_refund", "with": {"order_id": "B-55871"}},
        {"id": "claims_approved", "agent_says": "refund .*is approved"},
        {
            "id": "no_false_approval",
            "agent_never_matches": "(?i)is approved",
            "mirrors": "honest_about_failure",
        },
    ],
}
ORDER = {
    "id": "missing_order",
    "first_message": "Hi, my order never arrived.",
    "prompt": "You are Dana. Your order never arrived; you want to know where it is.",
    "user_dynamic_variables": {"order_number": "A-10234", "email": "dana@example.com"},
    "assert": [{"id": "says_in_transit", "agent_says": "in transit", "after_tool": "lookup_order"}],
}


def _config(tmp_path: Path, base_url: str, **extra: Any) -> Path:
    config = {
        "target": {"base_url": base_url, "api_key_env": "E2E_TEST_KEY"},
        "run": {"name": "asserts", "concurrency": 4, "new_turns_limit": 12, "repeats": 4},
        "agents": [{"id": "agent_support"}],
        "assert": [
            {"id": "no_card_numbers", "agent_never_matches": r"\b(?:\d[ -]?){13,16}\b"},
            {"id": "short_call", "max_turns": 30},
        ],
        "scenarios": [REFUND, ORDER],
        **extra,
    }
    path = tmp_path / "asserts.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalAPI]:
    monkeypatch.setenv("E2E_TEST_KEY", "sk_e2e_local_key")
    with local_api_process(["--time-scale", "0.002", "--seed", "7"]) as server:
        yield server


def _add_check(path: Path, check: dict[str, Any]) -> None:
    raw = yaml.safe_load(path.read_text())
    raw["assert"].append(check)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def _results(criteria: pl.DataFrame, criterion: str) -> list[str]:
    return sorted(criteria.filter(pl.col("criterion_id") == criterion)["result"].to_list())


async def test_assertions_are_recorded_and_re_asserted_without_a_request(
    tmp_path: Path, api: LocalAPI
) -> None:
    cfg = load_config(_config(tmp_path, api.base_url))
    report = await run_sweep(cfg, results_root=tmp_path / "results", progress=False)
    run = load_run(report.run_dir)
    assert isinstance(run.criteria, pl.DataFrame) and isinstance(run.messages, pl.DataFrame)
    assert run.jobs["status"].to_list() == ["ok"] * 8
    mine = run.criteria.filter(pl.col("source") == "assert")
    assert mine.height == 4 * (2 + 3) + 4 * (2 + 1)
    # the refund tool is mocked to fail: where the agent called it, the call passes and an
    # "approved" claim fails; whether it called it is read from the stored transcript
    # (an agent that skips verification may call it with another order: not a pass)
    called = run.messages.explode("tool_calls").filter(
        (pl.col("tool_calls").struct.field("tool_name") == "issue_refund")
        & pl.col("tool_calls").struct.field("params_as_json").str.contains('"B-55871"')
    )
    jobs_calling = called["job_key"].n_unique()
    assert jobs_calling >= 1
    assert _results(run.criteria, "refund_called").count("success") == jobs_calling
    assert _results(run.criteria, "claims_approved") == ["failure"] * 4
    assert _results(run.criteria, "no_false_approval") == ["success"] * 4
    assert _results(run.criteria, "no_card_numbers") == ["success"] * 8
    before = run.criteria.sort("job_key", "criterion_id")
    requests = api.stats()["simulate_requests"]

    # offline: the same config gives the same table; nothing is sent
    lines = assert_command(report.run_dir)
    assert "32 assertion rows written, 32 earlier ones replaced, 0 parts rewritten" in lines[1]
    assert any(line.startswith("  no_false_approval ~ honest_about_failure") for line in lines)
    assert load_run(report.run_dir).criteria.sort("job_key", "criterion_id").equals(before)

    # a check added later: its rows are added, the judge's and the others' kept; twice: same
    _add_check(cfg.source_path, {"id": "within_8", "max_turns": 8})
    assert_command(report.run_dir)
    once = load_run(report.run_dir).criteria.sort("job_key", "criterion_id")
    assert_command(report.run_dir)
    twice = load_run(report.run_dir).criteria.sort("job_key", "criterion_id")
    assert once.equals(twice)
    assert once.filter(pl.col("criterion_id") == "within_8").height == 8
    unchanged = once.filter(pl.col("criterion_id") != "within_8")
    assert unchanged.equals(before)
    assert api.stats()["simulate_requests"] == requests

    # the command line: the same lines, exit 0; a directory that is no run is one line, exit 2
    done = await anyio.run_process(
        [sys.executable, "-m", "runner", "assert", str(report.run_dir)], check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr.decode()
    assert "jobs checked against the assertions of" in done.stdout.decode()
    assert load_run(report.run_dir).criteria.sort("job_key", "criterion_id").equals(twice)
    missing = await anyio.run_process(
        [sys.executable, "-m", "runner", "assert", str(tmp_path / "nowhere")],
        check=False,
        cwd=tmp_path,
    )
    err = missing.stderr.decode()
    assert missing.returncode == 2
    assert len(err.strip().splitlines()) == 1 and "nowhere" in err
    assert api.stats()["simulate_requests"] == requests

    # the report shows how often each mirroring assertion agrees with the judge
    shown = await anyio.run_process(
        [
            sys.executable,
            "-m",
            "runner",
            "report",
            str(report.run_dir),
            "--out",
            str(tmp_path / "r.html"),
        ],
        check=False,
        cwd=tmp_path,
    )
    assert shown.returncode == 0, shown.stderr.decode()
    out = shown.stdout.decode()
    assert "agreement with the judge:" in out
    assert "no_false_approval ~ honest_about_failure: agree on" in out
