"""Part files, compaction and reading back: every job once, crashes and damage tolerated."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from runner.backends.base import SimulationResult, Timings
from runner.errors import Action, ErrorKind, Failure
from runner.jobs import Job
from runner.outcome import AttemptRecord, Batch, JobOutcome
from runner.schema import JOBS, TABLES, jobs_schema
from runner.store import (
    PARTS,
    PartWriter,
    StoreError,
    compact,
    done_job_keys,
    load_run,
    table_frame,
)
from runner.wire.simulate import (
    Analysis,
    CriterionResult,
    DataCollectionResult,
    ToolCall,
    ToolResult,
    TranscriptMessage,
)

T0 = datetime(2026, 11, 25, tzinfo=UTC)


def job(i: int) -> Job:
    return Job(
        key=f"key{i}",
        agent_id="agent_a",
        agent_label="A",
        scenario_id=f"s{i % 3}",
        matrix=(("language", "en" if i % 2 else "es"),),
        repeat=i // 3,
        body={
            "simulation_specification": {"simulated_user_config": {}},
            "extra_evaluation_criteria": [
                {"id": "polite", "name": "Polite", "conversation_goal_prompt": "be polite"}
            ],
        },
    )


def attempt(n: int, status: str) -> AttemptRecord:
    return AttemptRecord(
        attempt=n,
        started_at=T0,
        status=status,
        duration_secs=0.5,
        queue_wait_secs=0.0,
        backoff_before_secs=0.0,
        concurrency_limit=4,
        http_status=200 if status == "ok" else 503,
        error_kind=None if status == "ok" else "server_error",
    )


def ok(i: int, session: str = "s1", at: int = 0) -> JobOutcome:
    messages = [
        TranscriptMessage(role="agent", time_in_call_secs=0, message="Hello"),
        TranscriptMessage(
            role="agent",
            time_in_call_secs=1,
            tool_calls=[
                ToolCall(
                    request_id="r1",
                    tool_name="lookup",
                    params_as_json='{"id": 1}',
                    tool_has_been_called=True,
                )
            ],
        ),
        TranscriptMessage(
            role="agent",
            time_in_call_secs=2,
            tool_results=[
                ToolResult(
                    request_id="r1",
                    tool_name="lookup",
                    result_value="found",
                    is_error=False,
                    tool_has_been_called=True,
                )
            ],
        ),
    ]
    analysis = Analysis(
        call_successful="success",
        transcript_summary="fine",
        evaluation_criteria_results={
            "polite": CriterionResult(criteria_id="polite", result="success", rationale="r"),
            "own": CriterionResult(criteria_id="own", result="unknown", rationale="?"),
        },
        data_collection_results={
            "order": DataCollectionResult(data_collection_id="order", value="A1", rationale="r")
        },
    )
    return JobOutcome(
        job=job(i),
        run_id=session,
        started_at=T0 + timedelta(seconds=at),
        finished_at=T0 + timedelta(seconds=at + 1),
        attempts=[attempt(1, "ok")],
        result=SimulationResult(200, messages, [0.1, 0.2, 0.3], analysis, Timings(frames=4)),
    )


def err(i: int, session: str = "s1", at: int = 0) -> JobOutcome:
    return JobOutcome(
        job=job(i),
        run_id=session,
        started_at=T0 + timedelta(seconds=at),
        finished_at=T0 + timedelta(seconds=at + 1),
        attempts=[attempt(1, "error"), attempt(2, "error")],
        failure=Failure(ErrorKind.SERVER_ERROR, Action.RETRY, "HTTP 503", 503),
    )


def batch(*outcomes: JobOutcome) -> Batch:
    b = Batch()
    for o in outcomes:
        b.add(o)
    return b


def writer(run_dir: Path, session: str = "s1") -> PartWriter:
    w = PartWriter(run_dir, session, ("language",))
    w.prepare()
    return w


def test_round_trip_has_the_schema_and_one_row_per_thing(tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.write(batch(ok(0), ok(1), err(2)))
    w.write(batch(ok(3)))
    counts = compact(tmp_path, ("language",))
    run = load_run(tmp_path)
    assert isinstance(run.jobs, pl.DataFrame)
    assert run.jobs.schema == jobs_schema(["language"])
    assert counts == {
        "jobs": 4,
        "messages": 9,
        "criteria": 6,
        "data_collection": 3,
        "attempts": 5,
        "buckets": 0,  # agent-testing only
    }
    assert run.jobs.filter(pl.col("status") == "ok").height == 3
    assert run.jobs["matrix.language"].to_list().count("es") == 2
    crit = run.criteria.sort("job_key", "criterion_id")
    assert crit["source"].to_list()[:2] == ["agent", "extra"]
    assert crit.filter(pl.col("criterion_id") == "polite")["name"].unique().to_list() == ["Polite"]
    msgs = run.messages.filter(pl.col("job_key") == "key0").sort("index")
    assert msgs["tool_calls"][1][0]["tool_name"] == "lookup"
    assert msgs["tool_results"][2][0]["result_value"] == "found"
    assert msgs["message"][1] is None
    for table in TABLES:
        assert (tmp_path / table.file).exists()


def test_an_error_then_ok_in_a_later_session_leaves_one_ok_row(tmp_path: Path) -> None:
    writer(tmp_path, "s1").write(batch(err(0), ok(1)))
    assert done_job_keys(tmp_path) == {"key1"}
    writer(tmp_path, "s2").write(batch(ok(0, "s2", at=10)))
    compact(tmp_path)
    run = load_run(tmp_path)
    assert sorted(run.jobs["job_key"]) == ["key0", "key1"]
    row = run.jobs.filter(pl.col("job_key") == "key0").row(0, named=True)
    assert row["status"] == "ok" and row["run_id"] == "s2"
    assert run.messages.filter(pl.col("job_key") == "key0").height == 3
    assert run.attempts.filter(pl.col("job_key") == "key0").height == 3  # history kept


@pytest.mark.parametrize("old_part", [1, 2])
def test_parts_written_before_a_column_existed_still_read(tmp_path: Path, old_part: int) -> None:
    """A run resumed by a newer runner holds parts with and without ``cost_usd``: whichever
    comes first, every job reads back and the older parts' jobs have no cost."""
    w = writer(tmp_path)
    w.write(batch(ok(0)))
    w.write(batch(ok(1)))
    part = tmp_path / PARTS / "jobs" / f"s1-{old_part:06d}.parquet"
    pl.read_parquet(part).drop("cost_usd").write_parquet(part)
    run = load_run(tmp_path)
    costs = dict(zip(run.jobs["job_key"], run.jobs["cost_usd"], strict=True))
    assert sorted(costs) == ["key0", "key1"]
    assert costs[f"key{old_part - 1}"] is None
    assert done_job_keys(tmp_path) == {"key0", "key1"}
    compact(tmp_path, ("language",))
    assert load_run(tmp_path).jobs.height == 2


def test_a_flush_cut_before_its_jobs_part_is_ignored(tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.write(batch(ok(0)))
    w.write(batch(ok(1)))
    (tmp_path / PARTS / "jobs" / "s1-000002.parquet").unlink()  # crash before the commit record
    run = load_run(tmp_path)  # straight from the parts: nothing finalised
    assert run.jobs["job_key"].to_list() == ["key0"]
    assert set(run.messages["job_key"]) == {"key0"}
    assert done_job_keys(tmp_path) == {"key0"}


def test_a_damaged_part_is_skipped_with_a_warning(tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.write(batch(ok(0)))
    w.write(batch(ok(1)))
    bad = tmp_path / PARTS / "jobs" / "s1-000002.parquet"
    bad.write_bytes(bad.read_bytes()[:100])  # a half-written file
    with pytest.warns(UserWarning, match="damaged part file"):
        run = load_run(tmp_path)
    assert run.jobs["job_key"].to_list() == ["key0"]


def test_the_temporary_files_of_unfinished_writes_are_never_read(tmp_path: Path) -> None:
    """A kill -9 mid-flush leaves ``.tmp-`` files: half written, or whole but never renamed
    (so never committed). Neither is read, and neither is reported as damage."""
    w = writer(tmp_path)
    w.write(batch(ok(0)))
    w.write(batch(ok(1)))
    for table in TABLES:
        parts = tmp_path / PARTS / table.name
        whole = parts / "s1-000002.parquet"
        if whole.exists():  # tables with no rows in a flush get no part
            whole.rename(parts / ".tmp-s1-000002.parquet")  # written, not yet renamed
        if parts.is_dir():
            (parts / ".tmp-s1-000003.parquet").write_bytes(b"PAR1 partial")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert done_job_keys(tmp_path) == {"key0"}
        run = load_run(tmp_path)
    assert run.jobs["job_key"].to_list() == ["key0"]
    assert set(run.messages["job_key"]) == {"key0"}
    (tmp_path / ".tmp-jobs.parquet").write_bytes(b"PAR1 cut short")  # a compaction
    writer(tmp_path, "s2")  # the next session, holding the run's lock, clears them away
    assert [p.name for p in tmp_path.rglob(".tmp-*")] == []
    assert done_job_keys(tmp_path) == {"key0"}


def test_an_unwritable_results_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot write results to"):
        PartWriter(blocker / "run", "s1", ()).prepare()


_CALL = {"request_id": "r1", "tool_name": "lookup_order", "params_as_json": '{"id": "A-1"}'}
_RESULT = {
    "request_id": "r1",
    "tool_name": "lookup_order",
    "result_value": "shipped",
    "is_error": False,
    "tool_latency_secs": 0.25,
}


@pytest.mark.parametrize(
    "tool_calls",
    [
        [[], [], []],  # the common case: no tool used
        [[_CALL], [], [_CALL, {**_CALL, "request_id": "r2", "tool_name": None}]],
        [[_CALL], [_CALL], [_CALL]],
        [None, [_CALL], []],  # None is read as no calls
    ],
)
def test_table_frame_builds_tool_lists_like_polars_row_constructor(tool_calls: list) -> None:
    rows = [
        {
            "job_key": "k",
            "index": i,
            "role": "agent",
            "message": f"m{i}",
            "time_in_call_secs": i,
            "arrival_secs": 0.5 * i,
            "tool_calls": calls,
            "tool_results": [_RESULT] * len(calls or []),
            "interrupted": False,
            "input_tokens": None,
            "output_tokens": 3,
            "llm_price": None,
        }
        for i, calls in enumerate(tool_calls)
    ]
    schema = next(t.schema for t in TABLES if t.name == "messages")
    reference = pl.DataFrame(
        [{**r, "tool_calls": r["tool_calls"] or []} for r in rows], schema=schema, orient="row"
    )
    built = table_frame("messages", {name: [r[name] for r in rows] for name in schema.names()})
    assert built.schema == schema
    assert built.equals(reference)
    assert built["tool_calls"].list.len().to_list() == [len(c or []) for c in tool_calls]


def test_batch_columns_make_the_same_frames_as_its_rows() -> None:
    """Every table, built from columns, equals Polars' own row constructor on the same rows
    (datetimes, nulls, matrix columns and nested tool lists included)."""
    b = batch(ok(0), err(1), ok(2, "s2", at=5))
    for table in TABLES:
        rows = b.rows(table.name)
        schema = jobs_schema(["language"]) if table is JOBS else table.schema
        built = table_frame(table.name, b.columns[table.name], ["language"])
        nested = [n for n, t in schema.items() if isinstance(t, pl.List)]
        reference = pl.DataFrame(
            [{**r, **{n: r[n] or [] for n in nested}} for r in rows], schema=schema, orient="row"
        )
        assert built.equals(reference), table.name
    assert len(b.rows("messages")) == 6 and len(b.rows("attempts")) == 4
