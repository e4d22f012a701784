"""One Polars schema per results table: the writer, the reader, the README and the tests use these.

Each column carries a one-line description so the README's schema section is generated from
(and checked against) this file rather than kept by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

MATRIX_PREFIX = "matrix."
"""Matrix axes become extra ``jobs`` columns named ``matrix.<axis>`` (strings)."""

_TS = pl.Datetime("us", "UTC")

TOOL_CALL = pl.Struct(
    {"request_id": pl.String, "tool_name": pl.String, "params_as_json": pl.String}
)
TOOL_RESULT = pl.Struct(
    {
        "request_id": pl.String,
        "tool_name": pl.String,
        "result_value": pl.String,
        "is_error": pl.Boolean,
        "tool_latency_secs": pl.Float64,
    }
)


@dataclass(frozen=True)
class Table:
    name: str
    doc: str
    columns: tuple[tuple[str, pl.DataType, str], ...]

    @property
    def schema(self) -> pl.Schema:
        return pl.Schema([(name, dtype) for name, dtype, _ in self.columns])

    @property
    def file(self) -> str:
        return f"{self.name}.parquet"


JOBS = Table(
    "jobs",
    "one row per job (its last attempt decides the status), plus a `matrix.<axis>` column per axis",
    (
        ("run_id", pl.String(), "id of the session that produced the row"),
        ("job_key", pl.String(), "stable hash of agent, exact request body and repeat"),
        ("agent_id", pl.String(), "agent the simulation ran against"),
        ("agent_label", pl.String(), "label from the config (default: the id)"),
        ("scenario_id", pl.String(), "scenario id from the config"),
        ("repeat", pl.Int32(), "0-based repeat index"),
        (
            "status",
            pl.String(),
            "`ok` (analysis received), `error`, or `cancelled` (agent-testing: not a failure)",
        ),
        ("error_kind", pl.String(), "error taxonomy kind of the last failed attempt (errors only)"),
        ("error_message", pl.String(), "one-line message of that failure"),
        ("attempts", pl.Int32(), "attempts made, including the last"),
        ("http_status", pl.Int32(), "HTTP status of the last attempt (null if no reply)"),
        ("started_at", _TS, "when the job was first dispatched"),
        ("finished_at", _TS, "when its last attempt ended"),
        ("queue_wait_secs", pl.Float64(), "total time waiting for a concurrency slot"),
        ("backoff_secs", pl.Float64(), "total time sleeping between attempts"),
        ("time_to_headers_secs", pl.Float64(), "last attempt: request sent -> response headers"),
        ("time_to_first_frame_secs", pl.Float64(), "last attempt: request sent -> first frame"),
        ("time_to_analysis_secs", pl.Float64(), "last attempt: request sent -> analysis frame"),
        ("mean_frame_gap_secs", pl.Float64(), "last attempt: mean time between frames"),
        ("max_frame_gap_secs", pl.Float64(), "last attempt: longest time between frames"),
        ("total_secs", pl.Float64(), "last attempt: request sent -> stream closed"),
        ("frames", pl.Int32(), "frames received in the last attempt"),
        ("message_count", pl.Int32(), "messages in the simulated conversation"),
        ("call_successful", pl.String(), "analysis: `success` / `failure` / `unknown`"),
        ("call_success_score", pl.Float64(), "analysis score when the API sends one"),
        (
            "conversation_passed",
            pl.Boolean(),
            "the judge's verdict on the whole conversation, one name on every backend: true when"
            " every judged criterion succeeded (agent-testing: its `success_conditions`), false"
            " when any failed, null when none failed but one was `unknown`, none was judged or"
            " the job has no result; assertions (`source: assert`) do not count",
        ),
        ("transcript_summary", pl.String(), "analysis summary"),
        ("call_summary_title", pl.String(), "analysis title when the API sends one"),
        (
            "input_tokens",
            pl.Int64(),
            "sum of `llm_usage` input tokens over messages (null: no message carried usage)",
        ),
        ("output_tokens", pl.Int64(), "sum of `llm_usage` output tokens over messages"),
        (
            "llm_price",
            pl.Float64(),
            "USD: sum of `llm_usage` prices over messages (null: no message carried usage)",
        ),
        (
            "credits_used",
            pl.Int64(),
            "credits: billed for the test run (`agent-testing`; null when not sent)",
        ),
        ("llm_charge", pl.Int64(), "credits: the test run's `charging.llm_charge`"),
        ("call_charge", pl.Int64(), "credits: the test run's `charging.call_charge`"),
        ("platform_charge", pl.Int64(), "credits: the test run's `charging.platform_charge`"),
        ("charging_llm_price", pl.Float64(), "USD: the test run's `charging.llm_price`"),
        (
            "invocation_total_price",
            pl.Float64(),
            "USD: the `total_price` of the whole test invocation the run belongs to, the same"
            " on each of its jobs (sum it once per invocation, never over jobs)",
        ),
        (
            "triggered_guardrails",
            pl.String(),
            "the test run's `triggered_guardrails` by name (their type when unnamed), `; `-joined;"
            " empty: none fired; null: not reported (simulate backends, older replies)",
        ),
        (
            "cost_usd",
            pl.Float64(),
            "USD: the job's spend as the vendor reported it: the test run's `charging.llm_price`"
            " + `platform_price` when sent, else `llm_price`; null when no price was sent",
        ),
    ),
)

MESSAGES = Table(
    "messages",
    "one row per message of each ok job's conversation, in order",
    (
        ("job_key", pl.String(), "the job"),
        ("index", pl.Int32(), "0-based position in the conversation"),
        ("role", pl.String(), "`user` or `agent`"),
        ("message", pl.String(), "text (null on pure tool-call / tool-result turns)"),
        ("time_in_call_secs", pl.Int32(), "as reported by the API"),
        (
            "arrival_secs",
            pl.Float64(),
            "when its frame arrived, seconds after the request was sent",
        ),
        ("tool_calls", pl.List(TOOL_CALL), "tool calls made in this message"),
        ("tool_results", pl.List(TOOL_RESULT), "tool results in this message"),
        ("interrupted", pl.Boolean(), "the message was interrupted"),
        ("input_tokens", pl.Int64(), "`llm_usage` input tokens of this message"),
        ("output_tokens", pl.Int64(), "`llm_usage` output tokens of this message"),
        ("llm_price", pl.Float64(), "USD: `llm_usage` price of this message (null: none sent)"),
    ),
)

CRITERIA = Table(
    "criteria",
    "one row per evaluation criterion result of each ok job",
    (
        ("job_key", pl.String(), "the job"),
        ("criterion_id", pl.String(), "criterion id"),
        ("name", pl.String(), "criterion name (known for extra criteria)"),
        ("result", pl.String(), "`success` / `failure` / `unknown` (kept distinct)"),
        ("rationale", pl.String(), "the judge's rationale"),
        ("score", pl.Int64(), "numeric score (numeric criteria)"),
        ("max_score", pl.Int64(), "scale of the score"),
        (
            "source",
            pl.String(),
            "`extra` (sent by the runner), `agent` (the agent's own) or `assert` (the runner's"
            " own check of the transcript, `assert:`)",
        ),
    ),
)

DATA_COLLECTION = Table(
    "data_collection",
    "one row per data-collection result of each ok job",
    (
        ("job_key", pl.String(), "the job"),
        ("data_collection_id", pl.String(), "field id"),
        ("value", pl.String(), "the value, JSON-encoded (null when not collected)"),
        ("rationale", pl.String(), "the extractor's rationale"),
    ),
)

ATTEMPTS = Table(
    "attempts",
    "one row per attempt of every job, failed or not",
    (
        ("run_id", pl.String(), "the session that made the attempt (`manifest.json` sessions)"),
        ("job_key", pl.String(), "the job"),
        ("attempt", pl.Int32(), "1-based attempt number"),
        ("started_at", _TS, "when the request was sent"),
        ("status", pl.String(), "`ok` or `error`"),
        ("http_status", pl.Int32(), "HTTP status (null if no reply)"),
        ("error_kind", pl.String(), "error taxonomy kind"),
        ("error_message", pl.String(), "one-line message"),
        (
            "action",
            pl.String(),
            "what the engine did after it: `retry`, `wait_capacity` (try again), `give_up` "
            "(a retryable failure on the job's last attempt: attempts spent or the run "
            "stopping), `fail_job` (not retryable), `abort_run`; null when ok",
        ),
        ("queue_wait_secs", pl.Float64(), "time waiting for a concurrency slot before it"),
        ("backoff_before_secs", pl.Float64(), "time slept after the previous attempt"),
        ("retry_after_secs", pl.Float64(), "`Retry-After` the server sent, if any"),
        ("duration_secs", pl.Float64(), "request sent -> attempt ended"),
        ("concurrency_limit", pl.Int32(), "concurrency limit in force when it started"),
    ),
)

BUCKETS = Table(
    "buckets",
    "one row per vendor result bucket holding an ok job's test run (`agent-testing` with "
    "`repeats` > 1; empty otherwise)",
    (
        ("job_key", pl.String(), "the job"),
        ("invocation_id", pl.String(), "the test invocation that ran it"),
        ("test_id", pl.String(), "the simulation test"),
        ("test_run_id", pl.String(), "the job's test run"),
        ("title", pl.String(), "the bucket's one-line title"),
        ("reason", pl.String(), "why the runs in the bucket passed or failed"),
        ("status", pl.String(), "the bucket's run status: `passed`, `failed`, ..."),
        ("runs", pl.Int32(), "test runs in the bucket (of the invocation's `repeats`)"),
    ),
)

TABLES: tuple[Table, ...] = (JOBS, MESSAGES, CRITERIA, DATA_COLLECTION, ATTEMPTS, BUCKETS)
TABLES_BY_NAME = {t.name: t for t in TABLES}

VERDICTS = Table(
    "verdicts",
    "one row per case (agent x scenario x matrix cell; per criterion when `run.repeats.of` "
    "lists several) of a run with sequential repeats, derived from its stored outcomes "
    "(`runner.verdicts`), plus a `matrix.<axis>` column per axis",
    (
        ("agent_id", pl.String(), "the case's agent"),
        ("agent_label", pl.String(), "label from the config (default: the id)"),
        ("scenario_id", pl.String(), "the case's scenario"),
        ("criterion_id", pl.String(), "the criterion judged (null: `of: all`, every criterion)"),
        ("rule", pl.String(), "`anytime`, `sprt` or `curtail`"),
        ("params", pl.String(), "the rule's parameters as JSON (priors, treatment, ...)"),
        ("pass_rate", pl.Float64(), "the verdict's threshold"),
        ("alpha", pl.Float64(), "chance of a wrong verdict the rule holds (null: curtail)"),
        ("max_repeats", pl.Int32(), "`max` in force"),
        ("repeats", pl.Int32(), "repeats run (finished jobs of the case, errored ones too)"),
        ("passes", pl.Int32(), "repeats that passed"),
        ("failures", pl.Int32(), "repeats that failed"),
        ("unknowns", pl.Int32(), "repeats judged `unknown` (never a pass)"),
        ("errors", pl.Int32(), "repeats whose job errored (never a pass)"),
        ("trials", pl.Int32(), "repeats the test counted (unknowns / errors: per `params`)"),
        ("lower", pl.Float64(), "lower bound on the pass rate (anytime: the sequence's)"),
        ("upper", pl.Float64(), "upper bound on the pass rate"),
        ("verdict", pl.String(), "`pass`, `fail` or `undecided`"),
        ("reason", pl.String(), "why the case stopped (or that it has not)"),
        (
            "stopped",
            pl.Boolean(),
            "the rule stopped the case's repeats: settled, `max` reached or no verdict reachable "
            "(false: a session ended first; a resume continues it)",
        ),
        ("settled_at", pl.Int32(), "repeats when the verdict was settled (null: undecided)"),
        ("ran_past", pl.Int32(), "repeats finished after `settled_at` (in flight then; counted)"),
        ("cost_usd", pl.Float64(), "spend on the case's repeats (`jobs.cost_usd` summed)"),
        ("credits_used", pl.Int64(), "credits on them (`jobs.credits_used` summed)"),
    ),
)
"""Not in ``TABLES``: those get rows from every job; this one is derived per case."""


def jobs_schema(axes: list[str] | tuple[str, ...]) -> pl.Schema:
    """The jobs schema with one String column per matrix axis (after `repeat`)."""
    base = list(JOBS.schema.items())
    at = [name for name, _ in base].index("repeat") + 1
    extra = [(MATRIX_PREFIX + axis, pl.String()) for axis in axes]
    return pl.Schema(base[:at] + extra + base[at:])


def markdown(table: Table) -> str:
    """The README section for one table."""
    lines = [f"`{table.file}`: {table.doc}.", "", "| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{n}` | {dt} | {doc} |" for n, dt, doc in table.columns]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m runner.schema: the README's output-schema section
    print("\n\n".join(markdown(t) for t in TABLES))
