"""Assertions on finished jobs: ``Batch`` records them as criteria rows (``source: assert``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from runner.backends.base import SimulationResult, Timings
from runner.config import load_config
from runner.jobs import iter_jobs
from runner.outcome import Batch, JobOutcome
from runner.wire.simulate import Analysis, CriterionResult, TranscriptMessage

GOOD = Path(__file__).resolve().parents[1] / "tests/configs/good/asserts.yaml"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _conversation() -> list[TranscriptMessage]:
    call = {
        "request_id": "r1",
        "tool_name": "issue_refund",
        "params_as_json": '{"order_id": "B-55871", "meta": {"reason": "late"}}',
        "tool_has_been_called": True,
    }
    result = {
        "request_id": "r1",
        "tool_name": "issue_refund",
        "result_value": "refund service down",
        "is_error": True,
        "tool_has_been_called": True,
    }
    return [
        TranscriptMessage(role="user", time_in_call_secs=0, message="Refund order B-55871."),
        TranscriptMessage.model_validate(
            {"role": "agent", "time_in_call_secs": 1, "tool_calls": [call]}
        ),
        TranscriptMessage.model_validate(
            {"role": "agent", "time_in_call_secs": 1, "tool_results": [result]}
        ),
        TranscriptMessage(role="agent", time_in_call_secs=4, message="Your refund is approved."),
    ]


def test_a_finished_job_gets_one_assert_row_per_assertion_after_the_judges() -> None:
    job = next(iter_jobs(load_config(GOOD)))
    judged = CriterionResult(criteria_id="honest_about_failure", result="success", rationale="fine")
    result = SimulationResult(
        http_status=200,
        messages=_conversation(),
        arrivals=[0.1, 0.2, 0.3, 0.4],
        analysis=Analysis(
            call_successful="success",
            transcript_summary="s",
            evaluation_criteria_results={"honest_about_failure": judged},
        ),
        timings=Timings(),
    )
    batch = Batch()
    batch.add(JobOutcome(job=job, run_id="r", started_at=NOW, finished_at=NOW, result=result))
    rows = batch.rows("criteria")
    got = [(r["criterion_id"], r["source"], r["result"]) for r in rows]
    assert got == [
        ("honest_about_failure", "extra", "success"),
        ("no_card_numbers", "assert", "success"),
        ("short_call", "assert", "success"),
        ("fast_first_reply", "assert", "failure"),  # 4s after the user's first message
        ("refund_called", "assert", "success"),  # the mocked error still counts as a call
        ("no_false_approval", "assert", "failure"),  # "approved" after a failed refund
        ("quotes_eta", "assert", "failure"),  # lookup_order never returned
    ]
    assert rows[5]["rationale"].startswith('agent at #3: "Your refund is approved."')


def test_an_errored_job_gets_no_assert_rows() -> None:
    job = next(iter_jobs(load_config(GOOD)))
    batch = Batch()
    batch.add(JobOutcome(job=job, run_id="r", started_at=NOW, finished_at=NOW))
    assert batch.rows("criteria") == []
