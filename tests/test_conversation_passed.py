"""Issue 29, defect 10: every backend records the conversation-level verdict on the job's row
(``jobs.conversation_passed``), and ``compare`` / ``check`` read it (deriving it for a run
older than the column). Pure: rows built in memory, no server."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from runner import analysis
from runner.backends.agent_testing.mapping import run_result
from runner.backends.base import SimulationResult, Timings
from runner.config import load_config
from runner.gate import evaluate
from runner.jobs import iter_jobs
from runner.outcome import Batch, JobOutcome
from runner.wire.agent_testing import TestRun
from runner.wire.simulate import Analysis, CriterionResult, TranscriptMessage

GOOD = Path(__file__).resolve().parents[1] / "tests/configs/good/asserts.yaml"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
RESULTS = ("success", "failure", "unknown")


def independent(results: tuple[str, ...]) -> bool | None:
    """The rule by counting: any failure fails; all of at least one succeeded passes."""
    if results.count("failure"):
        return False
    if results and results.count("success") == len(results):
        return True
    return None


def test_the_rule_agrees_with_counting_and_with_its_frame_form() -> None:
    cases = [c for n in range(4) for c in itertools.product(RESULTS, repeat=n)]
    rows = [(f"j{i}", r) for i, case in enumerate(cases) for r in case]
    criteria = pl.DataFrame(rows, schema=["job_key", "result"], orient="row")
    derived = dict(
        analysis.conversation_results(criteria.with_columns(pl.lit("x").alias("criterion_id")))
        .select("job_key", "result")
        .iter_rows()
    )
    word = {True: "success", False: "failure", None: "unknown"}
    for i, case in enumerate(cases):
        assert analysis.conversation_passed(case) is independent(case), case
        if case:  # a job with no criteria row has no derived verdict
            assert derived[f"j{i}"] == word[independent(case)], case


def _outcome(result: SimulationResult) -> JobOutcome:
    job = next(iter_jobs(load_config(GOOD)))  # with assertions, some of which fail
    return JobOutcome(job=job, run_id="r", started_at=NOW, finished_at=NOW, result=result)


def _simulated(results: dict[str, str]) -> SimulationResult:
    return SimulationResult(
        http_status=200,
        messages=[
            TranscriptMessage(role="user", time_in_call_secs=0, message="Refund B-55871."),
            TranscriptMessage(
                role="agent", time_in_call_secs=9, message="Your refund is approved."
            ),
        ],
        arrivals=[0.1, 0.2],
        analysis=Analysis(
            call_successful="success",
            transcript_summary="s",
            evaluation_criteria_results={
                cid: CriterionResult(criteria_id=cid, result=r, rationale="-")  # type: ignore[arg-type]
                for cid, r in results.items()
            },
        ),
        timings=Timings(),
    )


def test_both_backends_record_the_verdict_on_the_job_row_and_assertions_do_not_count() -> None:
    batch = Batch()
    batch.add(_outcome(_simulated({"a": "success", "b": "success"})))
    batch.add(_outcome(_simulated({"a": "success", "b": "failure"})))
    batch.add(_outcome(_simulated({"a": "success", "b": "unknown"})))
    for status, condition in (("passed", "success"), ("failed", "failure")):
        run = TestRun.model_validate(
            {
                "test_run_id": f"run-{status}",
                "test_id": "t",
                "status": status,
                "condition_result": {"result": condition},
            }
        )
        batch.add(_outcome(run_result(run, criterion_name="c", buckets=[], total_secs=1.0)))
    batch.add(
        JobOutcome(job=_outcome(_simulated({})).job, run_id="r", started_at=NOW, finished_at=NOW)
    )
    got = [row["conversation_passed"] for row in batch.rows("jobs")]
    assert got == [True, False, None, True, False, None]
    failed_asserts = [r for r in batch.rows("criteria") if r["source"] == "assert"]
    assert any(r["result"] == "failure" for r in failed_asserts)  # and yet the first passed


def test_the_recorded_column_is_read_and_an_older_run_is_derived_without_its_asserts() -> None:
    criteria = pl.DataFrame(
        {
            "job_key": ["new", "old", "old", "old2"],
            "criterion_id": ["x", "x", "mine", "x"],
            "result": ["failure", "success", "failure", "unknown"],
            "source": ["extra", "extra", "assert", None],
        }
    )
    jobs = pl.DataFrame(
        {
            "job_key": ["new", "old", "old2", "err"],
            "status": ["ok", "ok", "ok", "error"],
            "conversation_passed": [True, None, None, None],  # "new" recorded; others older
        }
    )
    got = dict(analysis.conversation_results(criteria, jobs).iter_rows())
    assert got == {"new": "success", "old": "success", "old2": "unknown"}
    no_column = dict(
        analysis.conversation_results(criteria, jobs.drop("conversation_passed")).iter_rows()
    )
    assert no_column == {"new": "failure", "old": "success", "old2": "unknown"}


def test_check_gates_the_recorded_verdict_like_a_criterion() -> None:
    criteria = pl.DataFrame(
        {
            "job_key": ["a", "b", "c"],
            "criterion_id": ["success_conditions"] * 3,
            "result": ["success", "failure", "success"],
            "source": ["extra"] * 3,
        }
    )
    jobs = pl.DataFrame(
        {
            "job_key": ["a", "b", "c"],
            "agent_id": ["ag"] * 3,
            "agent_label": ["ag"] * 3,
            "scenario_id": ["s"] * 3,
            "status": ["ok"] * 3,
            "conversation_passed": [True, False, False],  # recorded: "c" is read as failed
        }
    )
    result = evaluate(criteria, jobs, min_pass_rate=0.5, criterion_ids=[analysis.CONVERSATION])
    (case,) = result.cases
    assert case.name.startswith(analysis.CONVERSATION) and case.status == "failed"
    assert case.value == 1 / 3
