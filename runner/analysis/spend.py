"""What a run cost as the vendor priced it, per group and over time, and two runs' costs side
by side."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from runner.analysis.frames import Frame, group, lazy, names

SPEND_COLUMNS = ("usd", "credits", "usd_per_job", "usd_per_pass", "credits_per_pass")
"""Money columns of ``spend`` (the report formats them as money, not rates)."""


def _cost(jobs: pl.LazyFrame) -> pl.LazyFrame:
    """``jobs`` with ``_usd`` and ``_credits``: what each job cost as the vendor priced it.
    Tables written before ``cost_usd`` existed fall back to ``llm_price``; nothing is
    invented where neither is there (null)."""
    columns = names(jobs)
    if "cost_usd" in columns:
        usd = pl.col("cost_usd")
    elif "llm_price" in columns:
        usd = pl.col("llm_price")
    else:
        usd = pl.lit(None, dtype=pl.Float64)
    credits = (
        pl.col("credits_used").cast(pl.Float64)
        if "credits_used" in columns
        else pl.lit(None, dtype=pl.Float64)
    )
    return jobs.with_columns(usd.cast(pl.Float64).alias("_usd"), credits.alias("_credits"))


def passed_jobs(criteria: Frame) -> pl.LazyFrame:
    """Keys of the jobs that *passed*: judged on at least one criterion, and every criterion
    ``success`` (a ``failure`` or an ``unknown`` is not a pass)."""
    return (
        lazy(criteria)
        .group_by("job_key")
        .agg((pl.col("result") == "success").all().alias("_passed"))
        .filter(pl.col("_passed"))
        .select("job_key")
    )


def spend(jobs: Frame, criteria: Frame | None = None, by: Sequence[str] = ()) -> pl.DataFrame:
    """What the jobs cost, per group: ``jobs``; ``priced`` (jobs the vendor put a USD price
    on); ``usd`` (their sum, null when none was priced); ``credits`` (null when none was
    billed in credits); ``usd_per_job`` (over the priced jobs); with ``criteria``, ``passed``
    (jobs whose every criterion succeeded) and ``usd_per_pass`` / ``credits_per_pass``: the
    whole group's spend, failures and errors included, over its passed jobs (null when none
    passed). Retried and resumed jobs count once per row the tables hold."""
    frame = _cost(lazy(jobs))
    if criteria is not None:
        passed = passed_jobs(criteria).with_columns(pl.lit(True).alias("_pass"))
        frame = frame.join(passed, on="job_key", how="left").with_columns(
            pl.col("_pass").fill_null(False)
        )
    aggs = [
        pl.len().cast(pl.Int64).alias("jobs"),
        pl.col("_usd").count().cast(pl.Int64).alias("priced"),
        pl.when(pl.col("_usd").count() > 0).then(pl.col("_usd").sum()).alias("usd"),
        pl.when(pl.col("_credits").count() > 0).then(pl.col("_credits").sum()).alias("credits"),
    ]
    if criteria is not None:
        aggs.append(pl.col("_pass").sum().cast(pl.Int64).alias("passed"))
    out = group(frame, by, *aggs).with_columns(
        pl.when(pl.col("priced") > 0)
        .then(pl.col("usd") / pl.col("priced"))
        .otherwise(None)
        .alias("usd_per_job")
    )
    if criteria is not None:
        per_pass = pl.when(pl.col("passed") > 0)
        out = out.with_columns(
            per_pass.then(pl.col("usd") / pl.col("passed")).otherwise(None).alias("usd_per_pass"),
            per_pass.then(pl.col("credits") / pl.col("passed"))
            .otherwise(None)
            .alias("credits_per_pass"),
        )
    return out.collect()


def spend_over_time(jobs: Frame) -> pl.DataFrame:
    """Cumulative spend as jobs finished: ``t_secs`` (after the first job started), ``usd``
    and ``credits`` so far (null until the first priced job). One row per finished job that
    carried a price, in finishing order; resumed sessions follow on."""
    frame = _cost(lazy(jobs))
    start = frame.select(pl.col("started_at").min()).collect().item()
    priced = frame.filter(pl.col("_usd").is_not_null() | pl.col("_credits").is_not_null())
    if start is None:
        return pl.DataFrame(schema={"t_secs": pl.Float64, "usd": pl.Float64, "credits": pl.Float64})
    return (
        priced.sort("finished_at")
        .select(
            ((pl.col("finished_at") - pl.lit(start)).dt.total_microseconds() / 1e6).alias("t_secs"),
            pl.col("_usd").fill_null(0.0).cum_sum().alias("usd"),
            pl.col("_credits").fill_null(0.0).cum_sum().alias("credits"),
            pl.col("_usd").is_not_null().cum_sum().alias("_n_usd"),
            pl.col("_credits").is_not_null().cum_sum().alias("_n_credits"),
        )
        .with_columns(
            pl.when(pl.col("_n_usd") > 0).then(pl.col("usd")).alias("usd"),
            pl.when(pl.col("_n_credits") > 0).then(pl.col("credits")).alias("credits"),
        )
        .drop("_n_usd", "_n_credits")
        .collect()
    )


def compare_spend(
    a_criteria: Frame, a_jobs: Frame, b_criteria: Frame, b_jobs: Frame
) -> pl.DataFrame:
    """What each side cost beside what it passed: one row per measure (``usd``,
    ``usd_per_job``, ``usd_per_pass``, ``credits``, ``credits_per_pass``) with ``a``, ``b``,
    ``diff`` = b - a and ``ratio`` = b / a (null where a side has no figure). Read it with
    the pass-rate change: is B better, and at what price?"""
    a = spend(a_jobs, a_criteria).row(0, named=True)
    b = spend(b_jobs, b_criteria).row(0, named=True)
    rows = []
    for measure in ("usd", "usd_per_job", "usd_per_pass", "credits", "credits_per_pass"):
        va, vb = a.get(measure), b.get(measure)
        rows.append(
            {
                "measure": measure,
                "a": va,
                "b": vb,
                "diff": vb - va if va is not None and vb is not None else None,
                "ratio": vb / va if va and vb is not None else None,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "measure": pl.String,
            "a": pl.Float64,
            "b": pl.Float64,
            "diff": pl.Float64,
            "ratio": pl.Float64,
        },
        orient="row",
    )
