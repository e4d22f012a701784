"""The agent-testing backend, end to end against the local API over a real socket.

What the server saw (its ``/_local/stats``: tests created, invocations, runs) is the evidence
that nothing was created twice and nothing re-run; the vendor's OpenAPI document and SDK are
the outside truth for the emulated replies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import polars as pl
import pytest
import vendor_schema
import yaml

from runner.backends import agent_testing as at
from runner.cli import main as cli_main
from runner.config import Config, load_config
from runner.errors import ErrorKind
from runner.jobs import iter_jobs
from runner.localapi import agent_testing as emulator
from runner.localapi.server import LocalAPI, local_api_process
from runner.schema import TABLES, jobs_schema
from runner.store import done_job_keys, load_run
from runner.sweep import run_sweep
from runner.wire import agent_testing as wire_at

ROOT = Path(__file__).resolve().parents[1]
RUN = [sys.executable, "-m", "runner", "run"]
FAST_POLL = {"poll_interval": 0.01, "poll_interval_max": 0.05}


# ---------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def fast_api() -> Iterator[LocalAPI]:
    """Conversations in ~30 ms; tests use their own name prefix and compare stats deltas."""
    with local_api_process(["--time-scale", "0.002", "--seed", "3"]) as api:
        yield api


@pytest.fixture(scope="module")
def slow_api() -> Iterator[LocalAPI]:
    """Runs of a second or two: long enough to kill, cancel or out-wait while pending."""
    with local_api_process(["--time-scale", "0.12", "--seed", "4"]) as api:
        yield api


def at_stats(api: LocalAPI) -> dict[str, int]:
    stats: dict[str, int] = api.stats()["agent_testing"]
    return stats


def write_config(
    path: Path,
    base_url: str,
    *,
    backend: str = "agent-testing",
    prefix: str = "t",
    scenarios: int = 3,
    repeats: int = 2,
    agents: tuple[str, ...] = ("agent_support", "agent_booking"),
    matrix: dict[str, list[Any]] | None = None,
    agent_testing: dict[str, Any] | None = None,
    **run: Any,
) -> Path:
    """agents x scenarios x matrix x repeats; scenario 0 has a history, 1 a tool mock."""
    specs: list[dict[str, Any]] = []
    for i in range(scenarios):
        spec: dict[str, Any] = {
            "id": f"s{i}",
            "first_message": f"Where is my order A-{1000 + i}?",
            "prompt": "You are {{name}}; your order is late. You want to know when it arrives.",
            "user_dynamic_variables": {"name": f"Customer {i}"},
        }
        if i == 0:
            spec["history"] = [
                {"role": "agent", "message": "Hello, Acme support.", "time_in_call_secs": 0}
            ]
        if i == 1:
            spec["tool_mocks"] = {"lookup_order": {"return_value": {"status": "lost"}}}
        specs.append(spec)
    config: dict[str, Any] = {
        "target": {
            "base_url": base_url,
            "backend": backend,
            "timeouts": {"first_byte": 20, "idle": 20, "total": 60},
            "agent_testing": {"name_prefix": prefix, **FAST_POLL, **(agent_testing or {})},
        },
        "run": {
            "name": "r",
            "concurrency": 6,
            "repeats": repeats,
            "new_turns_limit": 8,
            "retry": {"backoff_base": 0.01, "backoff_cap": 0.05, "jitter": 0.01},
            **run,
        },
        "agents": [{"id": a} for a in agents],
        "criteria": [
            {
                "id": "order_status_given",
                "name": "Order status given",
                "conversation_goal_prompt": "The agent told the user the status of the order.",
            }
        ],
        "scenarios": specs,
        "matrix": matrix if matrix is not None else {"language": ["en", "es"]},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def sweep(cfg: Config, results: Path, **kwargs: Any) -> Any:
    return anyio.run(lambda: run_sweep(cfg, results_root=results, progress=False, **kwargs))


assert_vendor_valid = vendor_schema.assert_vendor_valid


# ---------------------------------------------------------------------------- pure mapping


def test_a_job_becomes_one_vendor_valid_simulation_test(tmp_path: Path) -> None:
    cfg = load_config(
        write_config(tmp_path / "c.yaml", "http://127.0.0.1:1", matrix={"temperature": [0, 1]})
    )
    jobs = list(iter_jobs(cfg))
    options = cfg.target.agent_testing
    specs = {(j.scenario_id, j.matrix): at.test_spec(j, options) for j in jobs}
    # one test per scenario x cell, whatever the agent or repeat; temperature-only cells differ
    assert len({s.hash for s in specs.values()}) == 3 * 2
    for job in jobs:
        assert at.test_spec(job, options) == specs[(job.scenario_id, job.matrix)]
    s0 = specs[("s0", (("temperature", "0"),))]
    s1 = specs[("s1", (("temperature", "0"),))]
    body = s0.body
    assert body["name"] == f"t s0 temperature=0 [{s0.hash}]"
    assert at.parse_test_hash(body["name"], "t") == s0.hash
    assert at.parse_test_hash(body["name"], "other") is None
    assert at.parse_test_hash(body["name"].replace("t s0", "tt s0"), "t") is None
    assert body["simulation_scenario"].startswith("You are Customer 0; your order is late.")
    assert body["success_conditions"] == ["The agent told the user the status of the order."]
    assert body["simulation_max_turns"] == 8
    assert body["chat_history"][0]["message"] == "Hello, Acme support."
    assert s0.criterion_name == "Order status given"
    assert s1.body["tool_mock_config"] == {
        "mocking_strategy": "selected",
        "fallback_strategy": "call_real_tool",
        "mocked_tool_ids": ["lookup_order"],
    }
    assert s1.body["tool_mock_overrides"]["lookup_order"][0]["mock_result"] == '{"status": "lost"}'
    for spec in specs.values():
        assert_vendor_valid("CreateSimulationTestRequest", spec.body)
    # the local API reads the labelled lines back into the request they came from
    persona, first, language, facts = emulator.parse_scenario(body["simulation_scenario"])
    assert persona.startswith("You are Customer 0") and "Open the" not in persona
    assert first == "Where is my order A-1000?" and language == "en"
    assert facts == {"name": "Customer 0"}
    request = emulator.simulation_request(
        emulator.CreateSimulationTestBody.model_validate(s1.body), ["lookup_order"]
    )
    mock = (request.simulation_specification.tool_mock_config or {})["lookup_order"]
    assert mock.default_return_value == '{"status": "lost"}'
    assert request.new_turns_limit == 8
    criteria = request.extra_evaluation_criteria or []
    assert [c.id for c in criteria] == ["condition_1"]


def test_language_and_turn_limit_are_mapped_within_the_apis_bounds(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", "http://127.0.0.1:1", matrix={"language": ["fr"]})
    cfg = load_config(path, {"run.new_turns_limit": 80})
    body = at.test_spec(next(iter_jobs(cfg)), cfg.target.agent_testing).body
    assert body["simulation_max_turns"] == wire_at.MAX_TURNS
    _, _, language, _ = emulator.parse_scenario(body["simulation_scenario"])
    assert language == "fr"


def test_a_run_maps_onto_the_tables_rows() -> None:
    invocation = wire_at.TestInvocation.model_validate(
        {
            "id": "inv1",
            "created_at": 100,
            "bucketing_status": "completed",
            "result_groups": [
                {
                    "test_id": "t1",
                    "buckets": [
                        {
                            "test_run_ids": ["r1", "r2"],
                            "title": "Late",
                            "reason": "why",
                            "status": "failed",
                        }
                    ],
                }
            ],
            "test_runs": [
                {
                    "test_run_id": "r1",
                    "test_id": "t1",
                    "status": "failed",
                    "agent_responses": [{"role": "agent", "message": "Hi", "time_in_call_secs": 0}],
                    "condition_result": {
                        "result": "failure",
                        "rationale": {"messages": ["cond A failed", "cond B met"], "summary": "S"},
                    },
                    "last_updated_at_unix": 130,
                    "credits_used": 12,
                    "some_future_field": True,
                }
            ],
        }
    )
    run = invocation.test_runs[0]
    result = at.run_result(
        run, criterion_name="A; B", buckets=at.run_buckets(invocation, run), total_secs=30.0
    )
    criterion = result.analysis.evaluation_criteria_results[at.CONDITIONS_ID]
    assert criterion.result == "failure" == result.analysis.call_successful
    assert criterion.rationale == "S\n- cond A failed\n- cond B met"
    assert result.credits_used == 12 and result.timings.total == 30.0
    assert result.timings.frames is None and result.arrivals == [None]
    assert [(b.title, b.runs, b.status) for b in result.buckets] == [("Late", 2, "failed")]
    assert result.analysis.call_summary_title == "Late"


def test_polls_are_paced_by_the_finish_rate_within_the_bounds() -> None:
    """While runs finish, an invocation is polled at ``1 / (poll_budget x finish rate)``,
    never faster than ``poll_interval_min`` nor slower than ``poll_interval``, nor faster than
    ``poll_interval`` while its polls so far exceed the budget per finished run; the first
    runs after a long wait count as finishing within two poll intervals."""
    options = Config.model_validate(
        {
            "target": {
                "backend": "agent-testing",
                "agent_testing": {
                    "name_prefix": "pace",
                    "poll_interval": 2.0,
                    "poll_interval_min": 0.5,
                    "poll_budget": 0.1,
                },
            },
            "agents": [{"id": "a"}],
            "scenarios": [{"id": "s"}],
        }
    ).target.agent_testing
    backend = at.AgentTestingBackend(httpx.AsyncClient(), options, repeats=1)
    assert at.finish_rate([], 4.0) == at.finish_rate([(0.0, 0)], 4.0) == 0.0
    assert at.finish_rate([(0.0, 0), (30.0, 8)], 4.0) == 2.0  # 8 in the last 4 s, not 30
    assert at.finish_rate([(10.0, 2), (12.0, 12)], 4.0) == 5.0

    def delay(*counts: tuple[float, int], polls: int = 1, done: int = 100) -> float:
        poll = at.backend._Poll(
            "inv",
            seen_done={f"r{i}": 0.0 for i in range(done)},
            done_counts=list(counts),
            finishing_polls=polls,
        )
        return backend._next_delay(poll, counts[-1][0])

    assert delay((10.0, 0), (12.0, 2)) == 2.0  # 1 a second: 1 / 0.1 = 10 s, capped
    assert delay((10.0, 0), (12.0, 16)) == pytest.approx(1.25)  # 8 a second
    assert delay((10.0, 0), (12.0, 200)) == 0.5  # 100 a second: the floor
    assert delay((10.0, 5), (12.0, 5)) == 2.0  # none finished lately: poll_interval
    # 10 polls for 100 runs is the budget spent: no faster than poll_interval until repaid
    assert delay((10.0, 0), (12.0, 200), polls=9) == 0.5
    assert delay((10.0, 0), (12.0, 200), polls=10) == 2.0
    waiting = at.backend._Poll("inv", sent_at=0.0)
    backend.shortest = 30.0
    assert backend._next_delay(waiting, 1.0) == pytest.approx(26.0)  # until 90% of it


def test_the_invocation_record_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / at.INVOCATIONS_FILE
    line = {"agent_id": "a", "test_hash": "h", "first_repeat": 0, "repeat_count": 2}
    at.append_record(path, {**line, "invocation_id": "inv1", "test_id": "t"})
    at.append_record(path, {**line, "invocation_id": "inv2", "test_id": "t"})
    with open(path, "a") as f:
        f.write('{"agent_id": "a", "test_ha')  # kill -9 mid-write
    # a line written before agent variants existed is the main branch without override ("")
    assert dict(at.read_records(path)) == {("a", "h", 0, 2, ""): "inv2"}


def test_a_shard_finds_the_invocations_every_shard_recorded_its_own_last(tmp_path: Path) -> None:
    """A run whose shard count changed finds a group another shard started; a group in its own
    file too is its own record."""
    line = {"agent_id": "a", "first_repeat": 0, "repeat_count": 1, "test_id": "t"}
    at.append_record(
        tmp_path / "invocations-0-of-2.jsonl", {**line, "test_hash": "h0", "invocation_id": "i0"}
    )
    at.append_record(
        tmp_path / "invocations-1-of-2.jsonl", {**line, "test_hash": "h1", "invocation_id": "i1"}
    )
    own = tmp_path / "invocations-0-of-3.jsonl"
    at.append_record(own, {**line, "test_hash": "h1", "invocation_id": "mine"})
    at.append_record(
        tmp_path / at.INVOCATIONS_FILE, {**line, "test_hash": "h2", "invocation_id": "i2"}
    )
    (tmp_path / "other.jsonl").write_text(
        json.dumps({**line, "test_hash": "h3", "invocation_id": "x"})
    )
    found = dict(at.read_all_records(tmp_path, own))
    assert found == {
        ("a", "h0", 0, 1, ""): "i0",
        ("a", "h1", 0, 1, ""): "mine",
        ("a", "h2", 0, 1, ""): "i2",
    }
    assert dict(at.read_all_records(None, None)) == {}


# ---------------------------------------------------------------------------- end to end


def test_same_jobs_and_table_schemas_as_stream_and_no_new_tests_on_rerun(
    tmp_path: Path, fast_api: LocalAPI
) -> None:
    stream_cfg = load_config(
        write_config(tmp_path / "stream.yaml", fast_api.base_url, backend="stream")
    )
    testing_cfg = load_config(write_config(tmp_path / "at.yaml", fast_api.base_url, prefix="e2e"))
    expected = {job.key for job in iter_jobs(stream_cfg)}
    assert len(expected) == 2 * 3 * 2 * 2
    before = at_stats(fast_api)

    a = load_run(sweep(stream_cfg, tmp_path / "a").run_dir)
    report = sweep(testing_cfg, tmp_path / "b")
    b = load_run(report.run_dir)
    after = at_stats(fast_api)

    assert isinstance(a.jobs, pl.DataFrame) and isinstance(b.jobs, pl.DataFrame)
    assert set(a.jobs["job_key"]) == set(b.jobs["job_key"]) == expected
    assert b.jobs.height == 24 and b.jobs["status"].to_list() == ["ok"] * 24
    assert a.jobs.schema == b.jobs.schema == jobs_schema(["language"])
    for table in TABLES:
        assert getattr(a, table.name).schema == getattr(b, table.name).schema, table.name
    # one test per scenario x cell; the tests of one agent share run-tests calls (at most
    # one invocation per (agent, test), at least one per agent); one run per job
    assert after["tests_created"] - before["tests_created"] == 6
    invocations = after["invocations_created"] - before["invocations_created"]
    assert 2 <= invocations < 12
    assert after["runs_completed"] - before["runs_completed"] == 24
    records = [
        json.loads(line) for line in (report.run_dir / at.INVOCATIONS_FILE).read_text().splitlines()
    ]
    assert len(records) == 12  # one line per (agent, test) group
    assert len({r["invocation_id"] for r in records}) == invocations
    # the rows: messages and one merged criterion per job, credits, buckets (repeats = 2)
    assert set(b.messages["job_key"]) == expected
    crit = b.criteria
    assert crit.height == 24 and set(crit["criterion_id"]) == {at.CONDITIONS_ID}
    assert set(crit["name"]) == {"Order status given"} and set(crit["source"]) == {"extra"}
    assert set(crit["result"]) <= {"success", "failure", "unknown"}
    assert b.jobs["credits_used"].min() > 0 and b.jobs["total_secs"].min() > 0
    assert a.jobs["credits_used"].null_count() == 24
    assert set(b.buckets["job_key"]) == expected and set(b.buckets["runs"]) <= {1, 2}
    assert a.buckets.height == 0
    runs_per_invocation = b.buckets.group_by("invocation_id").agg(pl.col("job_key").n_unique())
    assert runs_per_invocation.height == invocations
    assert runs_per_invocation["job_key"].sum() == 24

    # a second run (fresh results) finds every test again: no new one, only new invocations
    again = sweep(testing_cfg, tmp_path / "c")
    assert load_run(again.run_dir).jobs["status"].to_list() == ["ok"] * 24
    final = at_stats(fast_api)
    assert final["tests_created"] == after["tests_created"]
    assert 2 <= final["invocations_created"] - after["invocations_created"] < 12

    # and the analysis commands read it like any run
    assert cli_main(["report", str(report.run_dir), "--out", str(tmp_path / "r.html")]) == 0
    assert cli_main(["check", str(report.run_dir), "--max-error-rate", "0"]) == 0
    assert cli_main(["compare", str(a.path), str(b.path)]) == 0


def test_prune_deletes_only_the_tests_the_config_no_longer_has(
    tmp_path: Path, fast_api: LocalAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    one = dict(prefix="prune", repeats=1, agents=("agent_support",), matrix={})
    old = write_config(tmp_path / "old.yaml", fast_api.base_url, **one)
    sweep(load_config(old), tmp_path / "r")
    foreign = write_config(
        tmp_path / "foreign.yaml", fast_api.base_url, **{**one, "prefix": "prunex"}
    )
    sweep(load_config(foreign), tmp_path / "f")
    # the new config drops s2 and changes s1: two of the old tests are stale
    new_cfg = yaml.safe_load(old.read_text())
    new_cfg["scenarios"] = new_cfg["scenarios"][:2]
    new_cfg["scenarios"][1]["first_message"] = "My parcel is missing."
    new = tmp_path / "new.yaml"
    new.write_text(yaml.safe_dump(new_cfg))
    before = at_stats(fast_api)

    url = fast_api.base_url
    assert cli_main(["tests", "prune", str(new), "--base-url", url, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would delete 2 test(s); kept 1" in out and "prune s2 " in out
    assert at_stats(fast_api)["tests_deleted"] == before["tests_deleted"]

    assert cli_main(["tests", "prune", str(new), "--base-url", url]) == 0
    assert "deleted 2 test(s); kept 1" in capsys.readouterr().out
    assert at_stats(fast_api)["tests_deleted"] - before["tests_deleted"] == 2
    listed = httpx.get(f"{url}/v1/convai/agent-testing", params={"search": "prune"}).json()
    names = [t["name"] for t in listed["tests"]]
    assert sum(n.startswith("prune s0 ") for n in names) == 1
    assert sum(n.startswith("prunex ") for n in names) == 3  # another config's: untouched
    assert cli_main(["tests", "prune", str(new)]) == 0  # the config's own target: all done
    assert "deleted 0 test(s); kept 1" in capsys.readouterr().out
    new_cfg["target"]["base_url"] = "local"
    new.write_text(yaml.safe_dump(new_cfg))
    assert cli_main(["tests", "prune", str(new)]) == 2  # the bundled API keeps no tests
    assert "--base-url" in capsys.readouterr().err


def test_faults_on_create_run_and_poll_are_retried_like_simulations(tmp_path: Path) -> None:
    faults = ["--fault-http-503", "0.1", "--fault-system-busy", "0.08", "--fault-reset", "0.06"]
    faults += ["--fault-malformed", "0.06"]
    with local_api_process(["--time-scale", "0.002", "--seed", "9", *faults]) as api:
        path = write_config(tmp_path / "c.yaml", api.base_url, prefix="faults")
        cfg = load_config(path, {"run.retry.max_attempts": 10})
        report = sweep(cfg, tmp_path / "r")
        stats = api.stats()
    run = load_run(report.run_dir)
    assert run.jobs["status"].to_list() == ["ok"] * 24
    kinds = set(run.attempts.filter(pl.col("status") == "error")["error_kind"])
    assert {"server_error", "system_busy"} <= kinds and kinds <= {
        "server_error",
        "system_busy",
        "connect",
        "malformed",
        "stream_broken",
    }
    assert sum(stats["faults_injected"].values()) > 0
    # nothing ran twice: a failed run-tests call started nothing
    assert stats["agent_testing"]["runs_completed"] == 24
    assert stats["agent_testing"]["tests_created"] == 6


def test_kill_9_while_polling_then_resume_reattaches_without_new_runs(
    tmp_path: Path, slow_api: LocalAPI
) -> None:
    path = write_config(
        tmp_path / "c.yaml",
        slow_api.base_url,
        prefix="kill",
        scenarios=2,
        repeats=3,
        agents=("agent_support",),
        matrix={},
        # one invocation per test here (no shared run-tests call): two to re-attach to
        agent_testing={"poll_interval": 0.05, "poll_interval_max": 0.1, "batch_max_tests": 1},
    )
    results = tmp_path / "results"
    record = results / "r" / at.INVOCATIONS_FILE
    before = at_stats(slow_api)
    proc = subprocess.Popen(
        [*RUN, str(path), "--results", str(results), "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            polled = at_stats(slow_api)["invocation_polls"] > before["invocation_polls"]
            if polled and record.exists() and len(record.read_text().splitlines()) == 2:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    at_kill = at_stats(slow_api)
    assert at_kill["invocations_created"] - before["invocations_created"] == 2
    assert at_kill["runs_completed"] - before["runs_completed"] < 6  # killed while runs pending
    assert done_job_keys(results / "r") == set()

    report = sweep(load_config(path), results)
    run = load_run(report.run_dir)
    assert run.jobs.height == 6 and run.jobs["status"].to_list() == ["ok"] * 6
    after = at_stats(slow_api)
    assert after["invocations_created"] == at_kill["invocations_created"]  # re-attached
    assert after["runs_started"] - before["runs_started"] == 6  # nothing re-run
    assert len(record.read_text().splitlines()) == 2


def test_deadline_fails_the_jobs_and_a_later_run_reattaches(
    tmp_path: Path, slow_api: LocalAPI
) -> None:
    short = {"deadline": 0.2, "poll_interval": 0.05, "poll_interval_max": 0.05}
    options = dict(prefix="deadline", scenarios=1, repeats=2, agents=("agent_support",), matrix={})
    path = write_config(tmp_path / "c.yaml", slow_api.base_url, agent_testing=short, **options)
    before = at_stats(slow_api)
    first = load_run(sweep(load_config(path), tmp_path / "r").run_dir)
    assert first.jobs["error_kind"].to_list() == ["total_timeout"] * 2
    assert first.jobs["attempts"].to_list() == [1, 1]  # the deadline is not retried

    path = write_config(tmp_path / "c.yaml", slow_api.base_url, **options)
    second = load_run(sweep(load_config(path), tmp_path / "r").run_dir)
    assert second.jobs["status"].to_list() == ["ok"] * 2
    after = at_stats(slow_api)
    assert after["invocations_created"] - before["invocations_created"] == 1
    assert after["runs_started"] - before["runs_started"] == 2


def test_cancelled_runs_are_recorded_as_cancelled(tmp_path: Path, slow_api: LocalAPI) -> None:
    options = dict(prefix="cancel", scenarios=2, repeats=2, agents=("agent_booking",), matrix={})
    options["agent_testing"] = {"batch_max_tests": 1}  # one invocation per test: cancel one
    cfg = load_config(write_config(tmp_path / "c.yaml", slow_api.base_url, **options))
    url = slow_api.base_url
    before = {i["id"] for i in httpx.get(f"{url}/v1/convai/test-invocations").json()["results"]}
    cancelled: list[str] = []

    async def cancel_the_first_invocation() -> None:
        async with httpx.AsyncClient(base_url=url) as client:
            with anyio.fail_after(20):
                while True:
                    page = (await client.get("/v1/convai/test-invocations")).json()
                    new = [i["id"] for i in page["results"] if i["id"] not in before]
                    if new:
                        break
                    await anyio.sleep(0.01)
            reply = await client.post(f"/v1/convai/test-invocations/{new[-1]}/cancel")
            assert reply.status_code == 200
            cancelled.append(new[-1])

    async def main() -> Any:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_the_first_invocation)
            return await run_sweep(cfg, results_root=tmp_path / "r", progress=False)

    report = anyio.run(main)
    jobs = load_run(report.run_dir).jobs.sort("scenario_id", "repeat")
    by_scenario = dict(jobs.group_by("scenario_id").agg(pl.col("error_kind")).iter_rows())
    cancelled_kinds = [kinds for kinds in by_scenario.values() if kinds[0] is not None]
    assert cancelled_kinds == [[ErrorKind.CANCELLED.value] * 2]
    assert jobs.filter(pl.col("status") == "ok").height == 2
    # a cancelled run is its own status, never an error (nor a failure)
    assert jobs.filter(pl.col("status") == "error").height == 0
    gone = jobs.filter(pl.col("status") == "cancelled")
    assert gone["attempts"].to_list() == [1, 1]
    assert all(cancelled[0] in m for m in gone["error_message"])
    assert report.counters.cancelled == 2 and report.counters.errors == 0


# ---------------------------------------------------------------------------- outside truth


def test_replies_validate_against_the_vendor_schema_and_parse_in_the_sdk(
    fast_api: LocalAPI,
) -> None:
    from elevenlabs import ElevenLabs
    from elevenlabs.conversational_ai.tests import TestsCreateRequestBody_Simulation
    from elevenlabs.types import GetTestSuiteInvocationResponseModel

    url = fast_api.base_url
    test_body = {
        "type": "simulation",
        "name": "vendor check",
        "simulation_scenario": "You want to know where order A-4242 is.\n\n"
        + wire_at.FIRST_MESSAGE_LABEL
        + '"Where is my order?"',
        "success_conditions": ["The agent gave the order status.", "The agent was polite."],
        "simulation_max_turns": 10,
        "chat_history": [{"role": "agent", "message": "Hi!", "time_in_call_secs": 0}],
        "tool_mock_config": {"mocking_strategy": "all", "fallback_strategy": "raise_error"},
    }
    with httpx.Client(base_url=url, timeout=30) as http:
        bad = http.post("/v1/convai/agent-testing/create", json={"type": "simulation"})
        assert bad.status_code == 422
        assert_vendor_valid("HTTPValidationError", bad.json())
        none = http.post("/v1/convai/agent-testing/create", json={"name": "no conditions"})
        assert none.status_code == 422
        created = http.post("/v1/convai/agent-testing/create", json=test_body).json()
        assert_vendor_valid("CreateAgentTestResponseModel", created)
        got = http.get(f"/v1/convai/agent-testing/{created['id']}").json()
        assert_vendor_valid("GetSimulationTestResponseModel", got)
        listed = http.get("/v1/convai/agent-testing", params={"search": "vendor check"}).json()
        assert_vendor_valid("GetTestsPageResponseModel", listed)
        assert [t["id"] for t in listed["tests"]] == [created["id"]]
        started = http.post(
            "/v1/convai/agents/agent_support/run-tests",
            json={"tests": [{"test_id": created["id"]}], "repeat_count": 3},
        ).json()
        assert_vendor_valid("GetTestSuiteInvocationResponseModel", started)
        assert {r["status"] for r in started["test_runs"]} == {"pending"}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done = http.get(f"/v1/convai/test-invocations/{started['id']}").json()
            if done["bucketing_status"] == "completed":
                break
            time.sleep(0.02)
        assert_vendor_valid("GetTestSuiteInvocationResponseModel", done)
        summaries = http.get("/v1/convai/test-invocations", params={"agent_id": "agent_support"})
        assert_vendor_valid("GetTestInvocationsPageResponseModel", summaries.json())
        assert http.get("/v1/convai/test-invocations/nope").status_code == 404
        unknown_agent = http.post(
            "/v1/convai/agents/nobody/run-tests", json={"tests": [{"test_id": created["id"]}]}
        )
        assert unknown_agent.status_code == 404

        # the vendor's SDK, pointed at the local API, creates, runs and reads
        client = ElevenLabs(api_key="local-test-key", base_url=url, httpx_client=http)
        sdk_test = client.conversational_ai.tests.create(
            request=TestsCreateRequestBody_Simulation(
                name="sdk check", success_conditions=["The agent was polite."]
            )
        )
        sdk_run = client.conversational_ai.agents.run_tests(
            "agent_support", tests=[{"test_id": sdk_test.id}]
        )
        read = client.conversational_ai.tests.invocations.get(started["id"])
    strict = GetTestSuiteInvocationResponseModel.model_validate(done)
    for model in (read, strict):
        assert isinstance(model, GetTestSuiteInvocationResponseModel)
        assert model.repeat_count == 3 and len(model.test_runs) == 3
        assert {r.status for r in model.test_runs} <= {"passed", "failed"}
        for run in model.test_runs:
            assert run.condition_result is not None and run.agent_responses
            assert run.condition_result.result in ("success", "failure", "unknown")
            assert run.credits_used and run.credits_used > 0
            assert len(run.condition_result.rationale.messages) == 2  # type: ignore[union-attr]
        groups = model.result_groups or []
        assert sum(len(b.test_run_ids) for g in groups for b in g.buckets) == 3
    assert sdk_run.test_runs and sdk_run.test_runs[0].status == "pending"
    # and our own client model reads what the SDK reads
    ours = wire_at.TestInvocation.model_validate(done)
    assert sorted(r.test_run_id for r in ours.test_runs) == sorted(
        r.test_run_id for r in strict.test_runs
    )
