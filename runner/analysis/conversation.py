"""The conversation-level verdict: did every judged criterion of a conversation pass?

One name, ``conversation_passed``, for every backend, recorded on each job's row
(``jobs.conversation_passed``) so two runs of different backends compare on it:

- ``true``: at least one judged criterion, and every one succeeded;
- ``false``: some judged criterion failed;
- null: none failed but not every one succeeded (one was ``unknown``), no criterion was judged,
  or the job has no result (an error).

*Judged* means the vendor's judge: ``extra`` and ``agent`` rows on a simulate backend, the one
``success_conditions`` row (the vendor's own verdict on the test run) on agent-testing. The
runner's assertions (``source: assert``) do not count: they can be re-evaluated offline over a
finished run (``runner assert``), which rewrites criteria rows but never job rows, and they are
a separate measure a reader gates or filters on by their own ids.

A run written before the column existed reads it as null; ``conversation_results`` derives it
for such jobs from their judged criteria rows by the same rule (``passed_expr``).
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from runner.analysis.frames import Frame, lazy, names
from runner.analysis.sources import judged_rows

CONVERSATION = "conversation_passed"
"""The jobs column, and the criterion id ``compare`` and ``check`` give the verdict."""


def conversation_passed(results: Iterable[str]) -> bool | None:
    """The verdict of one conversation from its judged criteria results (module docstring)."""
    seen = False
    undecided = False
    for result in results:
        if result == "failure":
            return False
        seen = True
        undecided = undecided or result != "success"
    return None if undecided or not seen else True


def passed_expr(result: pl.Expr) -> pl.Expr:
    """``conversation_passed`` as an aggregation over one job's judged ``result`` rows."""
    return (
        pl.when((result == "failure").any())
        .then(pl.lit(False))
        .when((result == "success").all() & (result.count() > 0))
        .then(pl.lit(True))
        .otherwise(pl.lit(None, pl.Boolean))
    )


def derived_verdicts(criteria: Frame) -> pl.LazyFrame:
    """``job_key``, ``conversation_passed`` of every job with judged rows, from the rows."""
    return (
        judged_rows(criteria)
        .group_by("job_key")
        .agg(passed_expr(pl.col("result")).alias(CONVERSATION))
    )


def conversation_results(criteria: Frame, jobs: Frame | None = None) -> pl.DataFrame:
    """``job_key``, ``result`` (``success`` / ``failure`` / ``unknown``) per judged job: the
    recorded ``jobs.conversation_passed`` of each ok job, derived from its criteria where the
    column is null (a run older than it). Without ``jobs``: derived from ``criteria`` alone
    for the jobs with judged rows."""
    derived = derived_verdicts(criteria)
    if jobs is None:
        verdicts = derived
    else:
        frame = lazy(jobs).filter(pl.col("status") == "ok")
        recorded = (
            pl.col(CONVERSATION) if CONVERSATION in names(frame) else pl.lit(None, pl.Boolean)
        )
        verdicts = (
            frame.select("job_key", recorded.alias("_recorded"))
            .join(derived, on="job_key", how="left")
            .select("job_key", pl.coalesce("_recorded", CONVERSATION).alias(CONVERSATION))
        )
    as_result = (
        pl.when(pl.col(CONVERSATION))
        .then(pl.lit("success"))
        .when(~pl.col(CONVERSATION))
        .then(pl.lit("failure"))
        .otherwise(pl.lit("unknown"))
    )
    return verdicts.select("job_key", as_result.alias("result")).sort("job_key").collect()


def conversation_verdicts(criteria: Frame, jobs: Frame | None = None) -> pl.DataFrame:
    """``conversation_results`` as criteria rows (``job_key``, ``criterion_id`` =
    ``CONVERSATION``, ``result``): what the pass-rate functions take for a criterion."""
    return conversation_results(criteria, jobs).select(
        "job_key", pl.lit(CONVERSATION).alias("criterion_id"), "result"
    )
