"""A synthetic run directory of any size, written straight to the final Parquet tables.

Used by ``python -m bench.view`` (100,000 jobs) and by tests at small sizes;
``write_parts_run`` turns one into a run still in progress (part files, no final tables).
The tables follow ``runner.schema`` exactly (the same ``table_frame`` shapes the runner
writes), the manifest is a finalized one, and the row order is the runner's: jobs in
finishing order, each table's rows grouped by job in that order, row groups of
``FINAL_ROW_GROUP_ROWS`` like a compaction.

Outcomes are deterministic functions of the job's position, so a test can predict them: a
``(agent, scenario, criterion)`` has a fixed pass probability, every repeat draws against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from runner.manifest import Manifest, Session, Target
from runner.schema import (
    ATTEMPTS,
    BUCKETS,
    CRITERIA,
    DATA_COLLECTION,
    MESSAGES,
    TABLES,
    TOOL_CALL,
    TOOL_RESULT,
    jobs_schema,
)
from runner.store import FINAL_ROW_GROUP_ROWS, PARTS, read_manifest, write_manifest

SENTENCES = (
    "Hi there, this is Ana from Acme support. How can I help?",
    "I returned a jacket three weeks ago and I still haven't got my money back.",
    "I can help you with a refund. Could you tell me your order number?",
    "Let me look that up for you, one moment please.",
    "The refund system is down right now, I am sorry about that.",
    "Your order is on its way and should arrive on Thursday.",
    "Thanks, that's all.",
    "Is there anything else I can help you with today?",
    "We're open Tuesday to Sunday from noon to 11 pm.",
    "I moved last week and need to change the delivery address of my open order.",
    "Could you confirm the email address on the account?",
    "Thank you for contacting Acme support. Have a great day!",
)
ERROR_KINDS = ("server_error", "stream_broken", "idle_timeout", "system_busy")


@dataclass(frozen=True)
class Shape:
    """How many of each: jobs = agents x scenarios x languages x repeats."""

    agents: int = 4
    scenarios: int = 125
    languages: int = 2
    repeats: int = 100
    criteria: int = 6
    messages: int = 10
    error_every: int = 50  # one job in this many ends in error (0: none)
    seed: int = 0  # another seed, other draws (the same pass chances)

    @property
    def jobs(self) -> int:
        return self.agents * self.scenarios * self.languages * self.repeats


def shape_for(jobs: int) -> Shape:
    """A shape of about ``jobs`` jobs (exactly, for the sizes the bench and tests use)."""
    if jobs >= 100_000:
        return Shape(repeats=max(1, jobs // 1000))
    if jobs >= 1000:
        return Shape(agents=2, scenarios=25, languages=2, repeats=max(1, jobs // 100))
    return Shape(agents=2, scenarios=3, languages=2, repeats=max(1, jobs // 12))


def _key(i: pl.Expr) -> pl.Expr:
    return pl.format("k{}", i.cast(pl.String).str.pad_start(10, "0"))


def write_synthetic_run(run_dir: Path, shape: Shape, *, name: str | None = None) -> Path:
    """Write a finalized run of ``shape.jobs`` jobs to ``run_dir``; returns it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    n = shape.jobs
    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    i = pl.col("i")
    case = i // shape.repeats
    lang = case % shape.languages
    scen = (case // shape.languages) % shape.scenarios
    agent = case // (shape.languages * shape.scenarios)
    error = (i * 7919 + 3) % shape.error_every == 0 if shape.error_every > 0 else pl.lit(False)
    base = pl.DataFrame({"i": pl.int_range(0, n, eager=True, dtype=pl.Int64)}).with_columns(
        _key(i).alias("job_key"),
        pl.format("agent_{}", agent).alias("agent_id"),
        pl.format("agent-{}", agent).alias("agent_label"),
        pl.format("scenario_{}", scen.cast(pl.String).str.pad_start(3, "0")).alias("scenario_id"),
        (i % shape.repeats).cast(pl.Int32).alias("repeat"),
        pl.when(lang == 0).then(pl.lit("en")).otherwise(pl.lit("es")).alias("matrix.language"),
        pl.when(error).then(pl.lit("error")).otherwise(pl.lit("ok")).alias("status"),
    )
    ok_rows = base.filter(pl.col("status") == "ok")
    _write_jobs(run_dir, base, shape, t0)
    _write_messages(run_dir, ok_rows, shape)
    _write_criteria(run_dir, ok_rows, shape)
    _write_data_collection(run_dir, ok_rows)
    _write_attempts(run_dir, base, t0)
    pl.DataFrame(schema=BUCKETS.schema).write_parquet(run_dir / BUCKETS.file)
    errors = int((base["status"] == "error").sum())
    session = Session(
        run_id="synthetic",
        started_at=t0,
        ended_at=t0,
        ended="completed",
        config_hash="0" * 64,
        planned=n,
        skipped=0,
        wall_secs=3600.0,
        done=n,
        ok=n - errors,
        errors=errors,
    )
    manifest = Manifest(
        run_name=name or run_dir.name,
        created_at=t0,
        config_path="configs/synthetic.yaml",
        config_hash="0" * 64,
        target=Target(base_url="local", backend="stream"),
        matrix_axes=["language"],
        versions={"runner": "synthetic"},
        finalized=True,
        counts={"jobs": n, "jobs_ok": n - errors, "jobs_error": errors},
        sessions=[session],
    )
    write_manifest(run_dir, manifest)
    return run_dir


def _sink(frame: pl.DataFrame, path: Path) -> None:
    frame.write_parquet(path, statistics=True, row_group_size=FINAL_ROW_GROUP_ROWS)


def _write_jobs(run_dir: Path, base: pl.DataFrame, shape: Shape, t0: datetime) -> None:
    i = pl.col("i")
    ok = pl.col("status") == "ok"
    started = pl.lit(t0) + pl.duration(milliseconds=i * 36)
    frame = base.with_columns(
        pl.lit("synthetic").alias("run_id"),
        pl.when(ok).then(None).otherwise(pl.lit(ERROR_KINDS).list.get(i % 4)).alias("error_kind"),
        pl.when(ok).then(None).otherwise(pl.lit("HTTP 503 from the server")).alias("error_message"),
        pl.when(ok).then(1 + (i % 13 == 0).cast(pl.Int32)).otherwise(5).alias("attempts"),
        pl.when(ok).then(200).otherwise(503).alias("http_status"),
        started.alias("started_at"),
        (started + pl.duration(milliseconds=8000 + (i % 97) * 40)).alias("finished_at"),
        ((i % 11) / 100).alias("queue_wait_secs"),
        pl.lit(0.0).alias("backoff_secs"),
        (0.2 + (i % 7) / 100).alias("time_to_headers_secs"),
        (0.4 + (i % 17) / 50).alias("time_to_first_frame_secs"),
        (7.5 + (i % 97) / 25).alias("time_to_analysis_secs"),
        (0.7 + (i % 5) / 10).alias("mean_frame_gap_secs"),
        (1.5 + (i % 9) / 10).alias("max_frame_gap_secs"),
        (8.0 + (i % 97) / 25).alias("total_secs"),
        pl.when(ok).then(shape.messages + 2).otherwise(0).alias("frames"),
        pl.when(ok).then(shape.messages).otherwise(0).alias("message_count"),
        pl.when(ok)
        .then(pl.when(i % 3 == 0).then(pl.lit("failure")).otherwise(pl.lit("success")))
        .alias("call_successful"),
        pl.lit(None, dtype=pl.Float64).alias("call_success_score"),
        pl.lit(None, dtype=pl.Boolean).alias("conversation_passed"),  # derived from criteria
        pl.when(ok)
        .then(pl.format("The user contacted support about order A-{}.", i))
        .alias("transcript_summary"),
        pl.when(ok).then(pl.lit("Refund request")).alias("call_summary_title"),
        pl.when(ok).then(3000 + i % 500).alias("input_tokens"),
        pl.when(ok).then(40 + i % 50).alias("output_tokens"),
        pl.when(ok).then(0.0002 + (i % 10) / 100_000).alias("llm_price"),
        pl.lit(None, dtype=pl.Int64).alias("credits_used"),
        pl.lit(None, dtype=pl.Int64).alias("llm_charge"),
        pl.lit(None, dtype=pl.Int64).alias("call_charge"),
        pl.lit(None, dtype=pl.Int64).alias("platform_charge"),
        pl.lit(None, dtype=pl.Float64).alias("charging_llm_price"),
        pl.lit(None, dtype=pl.Float64).alias("invocation_total_price"),
        pl.lit(None, dtype=pl.String).alias("triggered_guardrails"),
    ).with_columns(pl.col("llm_price").alias("cost_usd"))
    schema = jobs_schema(["language"])
    _sink(frame.select([pl.col(c).cast(t) for c, t in schema.items()]), run_dir / "jobs.parquet")


def _write_messages(run_dir: Path, ok_rows: pl.DataFrame, shape: Shape) -> None:
    m = shape.messages
    frame = ok_rows.select("i", "job_key").with_columns(
        pl.int_ranges(0, m, dtype=pl.Int32).alias("index")
    )
    frame = frame.explode("index")
    i, k = pl.col("i"), pl.col("index")
    picks = ((i * 31 + k.cast(pl.Int64) * 17) % len(SENTENCES)).cast(pl.UInt32)
    frame = frame.with_columns(picks.alias("_pick"))
    sentence = pl.DataFrame({"_pick": pl.arange(0, len(SENTENCES), eager=True, dtype=pl.UInt32)})
    sentence = sentence.with_columns(pl.Series("_text", SENTENCES))
    frame = frame.join(sentence, on="_pick", how="left", maintain_order="left")
    tool_turn = k == 3
    empty_calls = pl.lit([], dtype=pl.List(TOOL_CALL))
    empty_results = pl.lit([], dtype=pl.List(TOOL_RESULT))
    call = pl.struct(
        pl.format("lookup_{}", i).alias("request_id"),
        pl.lit("lookup_order").alias("tool_name"),
        pl.format('{{"order_id": "A-{}"}}', i).alias("params_as_json"),
    )
    result = pl.struct(
        pl.format("lookup_{}", i).alias("request_id"),
        pl.lit("lookup_order").alias("tool_name"),
        pl.format('{{"status": "shipped", "order_id": "A-{}"}}', i).alias("result_value"),
        pl.lit(False).alias("is_error"),
        pl.lit(0.12).alias("tool_latency_secs"),
    )
    frame = frame.with_columns(
        pl.when(k % 2 == 0).then(pl.lit("agent")).otherwise(pl.lit("user")).alias("role"),
        pl.when(tool_turn)
        .then(None)
        .when(k == 1)
        .then(pl.format("My order is A-{}. {}", i, pl.col("_text")))
        .otherwise(pl.format("{} (ref {}-{})", pl.col("_text"), i, k))
        .alias("message"),
        (k + 1).cast(pl.Int32).alias("time_in_call_secs"),
        (0.4 + k.cast(pl.Float64) * 0.8).alias("arrival_secs"),
        pl.when(tool_turn).then(pl.concat_list(call)).otherwise(empty_calls).alias("tool_calls"),
        pl.when(k == 4).then(pl.concat_list(result)).otherwise(empty_results).alias("tool_results"),
        (k == m - 2).alias("interrupted"),
        pl.when(k % 2 == 0).then(1000 + i % 200).alias("input_tokens"),
        pl.when(k % 2 == 0).then(15 + i % 20).alias("output_tokens"),
        pl.when(k % 2 == 0).then(0.0001 + (i % 10) / 100_000).alias("llm_price"),
    )
    schema = MESSAGES.schema
    _sink(frame.select([pl.col(c).cast(t) for c, t in schema.items()]), run_dir / MESSAGES.file)


def criterion_ids(shape: Shape) -> list[str]:
    names = ["no_invented_facts", "stayed_in_scope", "clear_next_step", "politeness"]
    names += ["issue_resolved", "order_verified", "honest_about_failure", "booking_confirmed"]
    return [names[c] if c < len(names) else f"criterion_{c}" for c in range(shape.criteria)]


def _write_criteria(run_dir: Path, ok_rows: pl.DataFrame, shape: Shape) -> None:
    ids = criterion_ids(shape)
    frame = ok_rows.select("i", "job_key").with_columns(
        pl.lit(list(range(len(ids))), dtype=pl.List(pl.Int64)).alias("c")
    )
    frame = frame.explode("c")
    i, c = pl.col("i"), pl.col("c")
    case = i // shape.repeats
    scenario = (case // shape.languages) % shape.scenarios
    agent = case // (shape.languages * shape.scenarios)
    # a fixed pass chance per (agent, scenario, criterion) from 10% to 99%, a pseudo-random
    # draw per repeat and language against it
    chance = 0.1 + 0.9 * ((scenario * 37 + c * 101 + agent * 13) % 100).cast(pl.Float64) / 100
    draw = ((i * 2654435761 + c * 40503 + shape.seed * 7919) % 1000).cast(pl.Float64) / 1000.0
    result = (
        pl.when(draw > 0.985)
        .then(pl.lit("unknown"))
        .when(draw < chance)
        .then(pl.lit("success"))
        .otherwise(pl.lit("failure"))
    )
    id_map = pl.DataFrame({"c": list(range(len(ids))), "criterion_id": ids})
    frame = frame.join(id_map, on="c", how="left", maintain_order="left").with_columns(
        pl.col("criterion_id").str.replace_all("_", " ").str.to_titlecase().alias("name"),
        result.alias("result"),
        pl.format(
            "{}: the agent mentioned order A-{}; judged {} (draw {} against {}).",
            pl.col("criterion_id"),
            i,
            result,
            draw.round(3),
            chance.round(2),
        ).alias("rationale"),
        pl.when(c == 2).then(i % 11).alias("score"),
        pl.when(c == 2).then(pl.lit(10)).alias("max_score"),
        pl.when(c < 3).then(pl.lit("extra")).otherwise(pl.lit("agent")).alias("source"),
    )
    schema = CRITERIA.schema
    _sink(frame.select([pl.col(c).cast(t) for c, t in schema.items()]), run_dir / CRITERIA.file)


def _write_data_collection(run_dir: Path, ok_rows: pl.DataFrame) -> None:
    i = pl.col("i")
    frame = ok_rows.select("i", "job_key").with_columns(
        pl.lit(["order_number", "email"]).alias("data_collection_id")
    )
    frame = frame.explode("data_collection_id").with_columns(
        pl.when(pl.col("data_collection_id") == "order_number")
        .then(pl.format('"A-{}"', i))
        .alias("value"),
        pl.lit("The user gave it in message 2.").alias("rationale"),
    )
    schema = DATA_COLLECTION.schema
    _sink(
        frame.select([pl.col(c).cast(t) for c, t in schema.items()]), run_dir / DATA_COLLECTION.file
    )


def _write_attempts(run_dir: Path, base: pl.DataFrame, t0: datetime) -> None:
    i = pl.col("i")
    ok = pl.col("status") == "ok"
    frame = base.select("i", "job_key", "status").with_columns(
        pl.when(ok)
        .then(pl.int_ranges(1, 2 + (i % 13 == 0).cast(pl.Int32)))
        .otherwise(pl.int_ranges(1, 6))
        .alias("attempt")
    )
    frame = frame.explode("attempt")
    a = pl.col("attempt")
    last = a == a.max().over("job_key")
    frame = frame.with_columns(
        pl.lit("synthetic").alias("run_id"),
        (pl.lit(t0) + pl.duration(milliseconds=i * 36 + (a - 1) * 1500)).alias("started_at"),
        pl.when(ok & last).then(pl.lit("ok")).otherwise(pl.lit("error")).alias("status"),
        pl.when(ok & last).then(200).otherwise(503).alias("http_status"),
        pl.when(ok & last).then(None).otherwise(pl.lit("server_error")).alias("error_kind"),
        pl.when(ok & last).then(None).otherwise(pl.lit("HTTP 503")).alias("error_message"),
        pl.when(ok & last)
        .then(pl.lit("done"))
        .when(last)
        .then(pl.lit("give_up"))  # a 503 is retryable: its last attempt gave up
        .otherwise(pl.lit("retry"))
        .alias("action"),
        pl.lit(0.01).alias("queue_wait_secs"),
        pl.when(a == 1).then(0.0).otherwise(1.0).alias("backoff_before_secs"),
        pl.lit(None, dtype=pl.Float64).alias("retry_after_secs"),
        pl.when(ok & last).then(8.0).otherwise(0.3).alias("duration_secs"),
        pl.lit(100).alias("concurrency_limit"),
    )
    schema = ATTEMPTS.schema
    _sink(frame.select([pl.col(c).cast(t) for c, t in schema.items()]), run_dir / ATTEMPTS.file)


def write_parts_run(finished: Path, run_dir: Path, *, per_part: int = 200) -> int:
    """``finished`` (a ``write_synthetic_run``) as a run still in progress at ``run_dir``: each
    table cut into part files of ``per_part`` jobs as the runner flushes them, no final tables,
    a manifest not finalized. What a live sweep looks like before its tables are built, so the
    viewer reads it part by part. Returns the number of parts."""
    run_dir.mkdir(parents=True, exist_ok=True)
    # the synthetic keys are ``k`` + the job's position, and every table is in job order
    part = (pl.col("job_key").str.slice(1).cast(pl.Int64) // per_part).alias("_part")
    count = 0
    for table in TABLES:
        directory = run_dir / PARTS / table.name
        directory.mkdir(parents=True, exist_ok=True)
        frame = pl.read_parquet(finished / table.file).with_columns(part)
        for (index,), rows in frame.group_by("_part", maintain_order=True):
            name = f"live-{int(index) + 1:06d}.parquet"  # type: ignore[call-overload]
            rows.drop("_part").write_parquet(directory / name, statistics=True)
            count = max(count, int(index) + 1)  # type: ignore[call-overload]
    manifest = read_manifest(finished)
    if manifest is None:
        raise ValueError(f"{finished} has no manifest")
    session = manifest.sessions[-1].model_copy(
        update={"run_id": "live", "ended": "running", "ended_at": None}
    )
    write_manifest(
        run_dir,
        manifest.model_copy(
            update={
                "run_name": run_dir.name,
                "finalized": False,
                "counts": {},
                "sessions": [session],
            }
        ),
    )
    return count
