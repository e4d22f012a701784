"""``reassert`` on a stored run by hand: an older run's parts (no ``source`` column) too."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from runner.assertions import MaxTurns, ToolCalled
from runner.backends.base import SimulationResult, Timings
from runner.jobs import Job
from runner.outcome import Batch, JobOutcome
from runner.reassert import reassert
from runner.store import PARTS, PartWriter, load_run
from runner.wire.simulate import Analysis, CriterionResult, TranscriptMessage

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _outcome(key: str) -> JobOutcome:
    job = Job(key, "agent_a", "a", "s1", (), 0, {"new_turns_limit": 4})
    judged = CriterionResult(criteria_id="resolved", result="failure", rationale="judge says")
    result = SimulationResult(
        http_status=200,
        messages=[
            TranscriptMessage(role="user", time_in_call_secs=0, message="hi"),
            TranscriptMessage(role="agent", time_in_call_secs=1, message="hello"),
        ],
        arrivals=[0.1, 0.2],
        analysis=Analysis(
            call_successful="failure",
            transcript_summary="s",
            evaluation_criteria_results={"resolved": judged},
        ),
        timings=Timings(),
    )
    return JobOutcome(job=job, run_id="r", started_at=NOW, finished_at=NOW, result=result)


def _old_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    writer = PartWriter(run_dir, "sess", ())
    writer.prepare()
    batch = Batch()
    for key in ("k1", "k2"):
        batch.add(_outcome(key))
    writer.write(batch)
    (part,) = (run_dir / PARTS / "criteria").glob("*.parquet")
    pl.read_parquet(part).drop("source").write_parquet(part)  # as an older runner wrote it
    return run_dir


def test_an_older_run_keeps_its_judge_rows_and_gains_the_assertion_rows(tmp_path: Path) -> None:
    run_dir = _old_run(tmp_path)
    checks = (MaxTurns("short", 1), ToolCalled("refund", "issue_refund"))
    done = reassert(run_dir, lambda _: checks)
    assert (done.jobs, done.rows, done.replaced, done.parts_rewritten) == (2, 4, 0, 1)
    table = load_run(run_dir).criteria
    assert isinstance(table, pl.DataFrame)
    got = table.select("job_key", "criterion_id", "source", "result").rows()
    assert got == [
        ("k1", "resolved", None, "failure"),  # the judge's, as stored
        ("k1", "short", "assert", "failure"),
        ("k1", "refund", "assert", "failure"),
        ("k2", "resolved", None, "failure"),
        ("k2", "short", "assert", "failure"),
        ("k2", "refund", "assert", "failure"),
    ]
    again = reassert(run_dir, lambda _: checks)
    assert (again.rows, again.replaced, again.parts_rewritten) == (4, 4, 0)
    assert load_run(run_dir).criteria.equals(table)
    # fewer checks: the dropped one's rows go, nothing else changes
    reassert(run_dir, lambda _: checks[:1])
    fewer = load_run(run_dir).criteria
    assert isinstance(fewer, pl.DataFrame)
    assert fewer.equals(table.filter(pl.col("criterion_id") != "refund"))
