"""Attempts and requests in flight over a run's time: pure functions of the attempts table."""

from __future__ import annotations

import polars as pl

from runner.analysis.frames import Frame, lazy


def _attempt_times(attempts: Frame) -> pl.LazyFrame:
    frame = lazy(attempts)
    origin = pl.col("started_at").min()
    return frame.with_columns(
        ((pl.col("started_at") - origin).dt.total_microseconds() / 1e6).alias("t_start"),
    ).with_columns(
        (pl.col("t_start") + pl.col("duration_secs").fill_null(0.0)).alias("t_end"),
    )


def attempts_over_time(attempts: Frame, buckets: int = 40) -> pl.DataFrame:
    """Attempts per time bucket, long: ``t_secs`` (bucket start, seconds after the first
    attempt), ``bucket_secs``, ``outcome`` (``ok`` or the error kind), ``attempts`` and
    ``retries`` (attempts after a job's first)."""
    frame = _attempt_times(attempts)
    span = frame.select(pl.col("t_start").max()).collect().item()
    if span is None:
        return pl.DataFrame(
            schema={
                "t_secs": pl.Float64,
                "bucket_secs": pl.Float64,
                "outcome": pl.String,
                "attempts": pl.UInt32,
                "retries": pl.UInt32,
            }
        )
    width = max(span, 1e-3) / max(1, buckets) * (1 + 1e-9)
    return (
        frame.with_columns(
            ((pl.col("t_start") / width).floor() * width).alias("t_secs"),
            pl.when(pl.col("status") == "ok")
            .then(pl.lit("ok"))
            .otherwise(pl.col("error_kind").fill_null("error"))
            .alias("outcome"),
        )
        .group_by(["t_secs", "outcome"])
        .agg(
            pl.len().cast(pl.UInt32).alias("attempts"),
            (pl.col("attempt") > 1).sum().cast(pl.UInt32).alias("retries"),
        )
        .with_columns(pl.lit(width).alias("bucket_secs"))
        .select("t_secs", "bucket_secs", "outcome", "attempts", "retries")
        .sort(["t_secs", "outcome"])
        .collect()
    )


def in_flight_over_time(attempts: Frame) -> pl.DataFrame:
    """Requests in flight as a step function: ``t_secs`` (after the first attempt), the count
    from then on, and the concurrency limit in force. An attempt is in flight from its start
    to start + ``duration_secs``; at equal times, ends are counted before starts."""
    frame = _attempt_times(attempts)
    starts = frame.select(
        pl.col("t_start").alias("t_secs"),
        pl.lit(1, dtype=pl.Int32).alias("delta"),
        pl.col("concurrency_limit").cast(pl.Int32),
    )
    ends = frame.select(
        pl.col("t_end").alias("t_secs"),
        pl.lit(-1, dtype=pl.Int32).alias("delta"),
        pl.lit(None, dtype=pl.Int32).alias("concurrency_limit"),
    )
    return (
        pl.concat([starts, ends], how="vertical")
        .sort(["t_secs", "delta"])
        .with_columns(
            pl.col("delta").cum_sum().alias("in_flight"),
            pl.col("concurrency_limit").forward_fill(),
        )
        .group_by("t_secs", maintain_order=True)
        .last()
        .select("t_secs", "in_flight", "concurrency_limit")
        .collect()
    )
