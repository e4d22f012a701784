"""What one job produced, and how it becomes table rows (pure: no I/O, no clock)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runner.analysis.conversation import conversation_passed
from runner.assertions import assertion_rows, turns_from_messages
from runner.backends.base import SimulationResult, Timings
from runner.errors import ErrorKind, Failure
from runner.jobs import Job
from runner.schema import MATRIX_PREFIX, TABLES
from runner.wire.simulate import TranscriptMessage, usage_totals


@dataclass(slots=True)
class AttemptRecord:
    attempt: int
    started_at: datetime
    status: str
    duration_secs: float
    queue_wait_secs: float
    backoff_before_secs: float
    concurrency_limit: int
    http_status: int | None = None
    error_kind: str | None = None
    error_message: str | None = None
    action: str | None = None
    retry_after_secs: float | None = None


@dataclass(slots=True)
class JobOutcome:
    job: Job
    run_id: str
    started_at: datetime
    finished_at: datetime
    attempts: list[AttemptRecord] = field(default_factory=list)
    result: SimulationResult | None = None
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None

    @property
    def status(self) -> str:
        """``ok``, ``cancelled`` (an agent-testing run cancelled: never a failure) or
        ``error``."""
        if self.ok:
            return "ok"
        if self.failure is not None and self.failure.kind is ErrorKind.CANCELLED:
            return "cancelled"
        return "error"


def _credits(value: float | None) -> int | None:
    return None if value is None else round(value)


def job_cost(result: SimulationResult | None, llm_price: float | None) -> float | None:
    """USD the job cost as the vendor reported it: a test run's ``charging`` (LLM plus
    platform price) when it sent one, else the messages' ``llm_usage`` prices (``llm_price``);
    None when the vendor sent no price at all (never a guess)."""
    if result is not None and result.charging is not None:
        charging = result.charging
        if charging.llm_price is not None or charging.platform_price is not None:
            return (charging.llm_price or 0.0) + (charging.platform_price or 0.0)
    return llm_price


def outcome_spend(outcome: JobOutcome) -> tuple[float | None, int | None]:
    """(USD, credits) one finished job cost, for the budget (the same figures as its row)."""
    result = outcome.result
    if result is None:
        return None, None
    usage = [usage_totals(m.llm_usage) for m in result.messages if m.llm_usage]
    price = sum((u[2] for u in usage), 0.0) if usage else None
    return job_cost(result, price), result.credits_used


def job_row(outcome: JobOutcome, usage: tuple[int, int, float] | None) -> dict[str, Any]:
    """The job's row without its matrix columns (``Batch`` spreads those per axis).
    ``usage``: the conversation's token and price totals (None without a result, or when no
    message carried ``llm_usage``)."""
    job = outcome.job
    last = outcome.attempts[-1] if outcome.attempts else None
    result = outcome.result
    timings = result.timings if result else Timings()
    analysis = result.analysis if result else None
    tokens_in, tokens_out, price = usage or (None, None, None)
    charging = result.charging if result else None
    return {
        "run_id": outcome.run_id,
        "job_key": job.key,
        "agent_id": job.agent_id,
        "agent_label": job.agent_label,
        "scenario_id": job.scenario_id,
        "repeat": job.repeat,
        "status": outcome.status,
        "error_kind": None if result else (outcome.failure.kind.value if outcome.failure else None),
        "error_message": None if result else (outcome.failure.message if outcome.failure else None),
        "attempts": len(outcome.attempts),
        "http_status": last.http_status if last else None,
        "started_at": outcome.started_at,
        "finished_at": outcome.finished_at,
        "queue_wait_secs": sum(a.queue_wait_secs for a in outcome.attempts),
        "backoff_secs": sum(a.backoff_before_secs for a in outcome.attempts),
        "time_to_headers_secs": timings.headers,
        "time_to_first_frame_secs": timings.first_frame,
        "time_to_analysis_secs": timings.analysis,
        "mean_frame_gap_secs": timings.mean_gap,
        "max_frame_gap_secs": timings.max_gap,
        "total_secs": timings.total,
        "frames": timings.frames if result else None,
        "message_count": len(result.messages) if result else None,
        "call_successful": analysis.call_successful if analysis else None,
        "call_success_score": analysis.call_success_score if analysis else None,
        "conversation_passed": (
            conversation_passed(r.result for r in analysis.evaluation_criteria_results.values())
            if analysis
            else None
        ),
        "transcript_summary": analysis.transcript_summary if analysis else None,
        "call_summary_title": analysis.call_summary_title if analysis else None,
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "llm_price": price,
        "credits_used": result.credits_used if result else None,
        "llm_charge": _credits(charging.llm_charge) if charging else None,
        "call_charge": _credits(charging.call_charge) if charging else None,
        "platform_charge": _credits(charging.platform_charge) if charging else None,
        "charging_llm_price": charging.llm_price if charging else None,
        "invocation_total_price": result.invocation_total_price if result else None,
        "triggered_guardrails": (
            None
            if result is None or result.triggered_guardrails is None
            else "; ".join(result.triggered_guardrails)
        ),
        "cost_usd": job_cost(result, price),
    }


def _tool_calls(message: TranscriptMessage) -> list[dict[str, Any]] | None:
    if not message.tool_calls:
        return None  # the store reads None as []
    return [
        {"request_id": c.request_id, "tool_name": c.tool_name, "params_as_json": c.params_as_json}
        for c in message.tool_calls
    ]


def _tool_results(message: TranscriptMessage) -> list[dict[str, Any]] | None:
    if not message.tool_results:
        return None
    return [
        {
            "request_id": r.request_id,
            "tool_name": r.tool_name,
            "result_value": r.result_value,
            "is_error": r.is_error,
            "tool_latency_secs": r.tool_latency_secs,
        }
        for r in message.tool_results
    ]


def criteria_rows(outcome: JobOutcome) -> list[dict[str, Any]]:
    result = outcome.result
    if result is None:
        return []
    extra = {
        c["id"]: c.get("name") for c in outcome.job.body.get("extra_evaluation_criteria") or []
    }
    extra.update(result.criterion_names)
    return [
        {
            "job_key": outcome.job.key,
            "criterion_id": criterion_id,
            "name": extra.get(criterion_id),
            "result": r.result,
            "rationale": r.rationale,
            "score": r.score,
            "max_score": r.max_score,
            "source": "extra" if criterion_id in extra else "agent",
        }
        for criterion_id, r in result.analysis.evaluation_criteria_results.items()
    ]


def assert_rows(outcome: JobOutcome) -> list[dict[str, Any]]:
    """The job's ``assert:`` checks (``runner.assertions``) on its transcript, as criteria rows
    with ``source: assert``; none for a job without a result or without assertions."""
    result = outcome.result
    if result is None or not outcome.job.assertions:
        return []
    turns = turns_from_messages(result.messages)
    return assertion_rows(outcome.job.key, turns, outcome.job.assertions)


def data_collection_rows(outcome: JobOutcome) -> list[dict[str, Any]]:
    result = outcome.result
    if result is None:
        return []
    return [
        {
            "job_key": outcome.job.key,
            "data_collection_id": field_id,
            "value": None if r.value is None else json.dumps(r.value, ensure_ascii=False),
            "rationale": r.rationale,
        }
        for field_id, r in result.analysis.data_collection_results.items()
    ]


def attempt_rows(outcome: JobOutcome) -> list[dict[str, Any]]:
    return [
        {
            "run_id": outcome.run_id,
            "job_key": outcome.job.key,
            "attempt": a.attempt,
            "started_at": a.started_at,
            "status": a.status,
            "http_status": a.http_status,
            "error_kind": a.error_kind,
            "error_message": a.error_message,
            "action": a.action,
            "queue_wait_secs": a.queue_wait_secs,
            "backoff_before_secs": a.backoff_before_secs,
            "retry_after_secs": a.retry_after_secs,
            "duration_secs": a.duration_secs,
            "concurrency_limit": a.concurrency_limit,
        }
        for a in outcome.attempts
    ]


def bucket_rows(outcome: JobOutcome) -> list[dict[str, Any]]:
    result = outcome.result
    if result is None:
        return []
    return [
        {
            "job_key": outcome.job.key,
            "invocation_id": b.invocation_id,
            "test_id": b.test_id,
            "test_run_id": b.test_run_id,
            "title": b.title,
            "reason": b.reason,
            "status": b.status,
            "runs": b.runs,
        }
        for b in result.buckets
    ]


MATRIX_CELLS = "_matrix"
"""The ``jobs`` column holding each job's matrix cell; the store spreads it into one
``matrix.<axis>`` column per axis."""


class Batch:
    """Finished jobs shaped as table columns, ready to become Polars frames.

    Columns rather than a dict per row: a simulation's messages are twenty-odd rows, and a dict
    for each, then a frame built row by row, cost about twice the CPU of appending to columns.
    """

    def __init__(self) -> None:
        self.jobs = 0
        self.columns: dict[str, dict[str, list[Any]]] = {
            t.name: {name: [] for name in t.schema.names()} for t in TABLES
        }
        self.columns["jobs"][MATRIX_CELLS] = []

    def add(self, outcome: JobOutcome) -> None:
        """Every row one finished job contributes, to every table."""
        self.jobs += 1
        usage = self._add_messages(outcome)
        jobs = self.columns["jobs"]
        for name, value in job_row(outcome, usage).items():
            jobs[name].append(value)
        jobs[MATRIX_CELLS].append(outcome.job.matrix)
        for table, rows in (
            ("criteria", criteria_rows(outcome)),
            ("criteria", assert_rows(outcome)),
            ("data_collection", data_collection_rows(outcome)),
            ("attempts", attempt_rows(outcome)),
            ("buckets", bucket_rows(outcome)),
        ):
            columns = self.columns[table]
            for row in rows:
                for name, value in row.items():
                    columns[name].append(value)

    def _add_messages(self, outcome: JobOutcome) -> tuple[int, int, float] | None:
        """The conversation's messages; returns its token and price totals. One pass per
        column (a comprehension each): about half the CPU of one loop appending to all."""
        result = outcome.result
        if result is None:
            return None
        c = self.columns["messages"]
        messages = result.messages
        n = len(messages)
        c["job_key"].extend([outcome.job.key] * n)
        c["index"].extend(range(n))
        c["arrival_secs"].extend(result.arrivals)
        c["role"].extend([m.role for m in messages])
        c["message"].extend([m.message for m in messages])
        c["time_in_call_secs"].extend([m.time_in_call_secs for m in messages])
        c["tool_calls"].extend([_tool_calls(m) for m in messages])
        c["tool_results"].extend([_tool_results(m) for m in messages])
        c["interrupted"].extend([m.interrupted for m in messages])
        usage = [usage_totals(m.llm_usage) if m.llm_usage else None for m in messages]
        c["input_tokens"].extend([u[0] if u else None for u in usage])
        c["output_tokens"].extend([u[1] if u else None for u in usage])
        c["llm_price"].extend([u[2] if u else None for u in usage])
        counted = [u for u in usage if u]
        if not counted:
            return None
        return (
            sum(u[0] for u in counted),
            sum(u[1] for u in counted),
            sum((u[2] for u in counted), 0.0),
        )

    def sizes(self) -> dict[str, int]:
        """Rows per table so far: ``since`` takes the rows added after."""
        return {table: len(next(iter(columns.values()))) for table, columns in self.columns.items()}

    def since(self, sizes: dict[str, int]) -> dict[str, dict[str, list[Any]]]:
        """The rows added after ``sizes`` (one job's, for the journal), tables without any left
        out."""
        out = {}
        for table, columns in self.columns.items():
            start = sizes[table]
            if len(next(iter(columns.values()))) > start:
                out[table] = {name: values[start:] for name, values in columns.items()}
        return out

    def extend(self, rows: dict[str, dict[str, list[Any]]]) -> None:
        """Add one job's rows as ``since`` gave them (a job read back from the journal)."""
        self.jobs += 1
        for table, columns in rows.items():
            mine = self.columns[table]
            for name, values in columns.items():
                mine[name].extend(values)

    def rows(self, table: str) -> list[dict[str, Any]]:
        """One table's rows as dicts (for tests and debugging; the store reads columns)."""
        columns = self.columns[table]
        names = [n for n in columns if n != MATRIX_CELLS]
        out = []
        for i in range(len(columns[names[0]])):
            row = {name: columns[name][i] for name in names}
            if table == "jobs":
                row.update({MATRIX_PREFIX + a: v for a, v in columns[MATRIX_CELLS][i]})
            out.append(row)
        return out
