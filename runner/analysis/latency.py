"""Latency: the samples of ok jobs (jobs columns and message timings), their percentiles and
histogram bins. The report, the viewer and the notebook read every latency figure here.

Percentiles interpolate linearly between order statistics (Hyndman and Fan (1996), "Sample
quantiles in statistical packages", The American Statistician 50: their definition 7). A
failed attempt has no analysis to time, so only ok jobs count.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from runner.analysis.frames import Frame, lazy

LATENCY_COLUMNS = (
    "time_to_first_frame_secs",
    "time_to_analysis_secs",
    "mean_frame_gap_secs",
    "total_secs",
    "queue_wait_secs",
)
"""Per-job latency columns of ``jobs`` summarised by default."""

MESSAGE_METRICS = ("message_gap", "agent_turn")
"""Latency metrics derived from ``messages`` (see ``message_latencies``)."""

QUANTILES = (0.5, 0.9, 0.95, 0.99)

HISTOGRAM_BINS = 30
"""Bars of a latency histogram."""


def message_latencies(messages: Frame) -> pl.LazyFrame:
    """Latency samples derived from ``messages``: one row per ``job_key``, ``metric``, ``secs``.

    - ``message_gap``: time between the arrivals of two consecutive messages of a job.
    - ``agent_turn``: for each turn of the agent (a maximal run of consecutive agent messages,
      tool calls and results included), the arrival of its last message minus the arrival of
      the message before it, i.e. how long the user waited for the agent to finish. A turn
      that opens the stream has no message before it and is left out (its time includes
      connection setup: see ``time_to_first_frame``).

    Messages replayed from a scenario's ``history`` are not in the table, so they count for
    nothing here.
    """
    frame = lazy(messages).select("job_key", "index", "role", "arrival_secs")
    ordered = frame.sort(["job_key", "index"]).with_columns(
        pl.col("arrival_secs").shift(1).over("job_key").alias("_prev"),
        (pl.col("role") != pl.col("role").shift(1).over("job_key"))
        .fill_null(True)
        .cast(pl.Int32)
        .cum_sum()
        .over("job_key")
        .alias("_turn"),
    )
    gaps = ordered.filter(pl.col("_prev").is_not_null()).select(
        "job_key",
        pl.lit("message_gap").alias("metric"),
        (pl.col("arrival_secs") - pl.col("_prev")).alias("secs"),
    )
    turns = (
        ordered.group_by(["job_key", "_turn"], maintain_order=True)
        .agg(
            pl.col("role").first(),
            pl.col("_prev").first().alias("_start"),
            pl.col("arrival_secs").last().alias("_end"),
        )
        .filter((pl.col("role") == "agent") & pl.col("_start").is_not_null())
        .select(
            "job_key",
            pl.lit("agent_turn").alias("metric"),
            (pl.col("_end") - pl.col("_start")).alias("secs"),
        )
    )
    return pl.concat([gaps, turns], how="vertical")


def latency_samples(
    jobs: Frame,
    columns: Sequence[str] = LATENCY_COLUMNS,
    messages: Frame | None = None,
    by: Sequence[str] = (),
) -> pl.LazyFrame:
    """Every latency sample of ok jobs, long: ``by`` columns, ``job_key``, ``metric``, ``secs``.

    ``metric`` is the jobs column without ``_secs``, or one of ``MESSAGE_METRICS`` when
    ``messages`` is given.
    """
    ok = lazy(jobs).filter(pl.col("status") == "ok")
    index = list(dict.fromkeys(["job_key", *by]))
    parts = []
    if columns:
        parts.append(
            ok.select(*index, *(pl.col(c).cast(pl.Float64) for c in columns))
            .unpivot(index=index, on=list(columns), variable_name="metric", value_name="secs")
            .with_columns(pl.col("metric").str.strip_suffix("_secs"))
        )
    if messages is not None:
        parts.append(
            message_latencies(messages)
            .join(ok.select(*index), on="job_key", how="inner")
            .select(*index, "metric", "secs")
        )
    if not parts:
        raise ValueError("no latency metric asked for")
    return pl.concat(parts, how="vertical").filter(pl.col("secs").is_not_null())


def _stats(value: pl.Expr, quantiles: Sequence[float], prefix: str = "") -> list[pl.Expr]:
    """The sample count and the percentiles of ``value`` (the one definition every latency
    table uses)."""
    secs = value.cast(pl.Float64)
    return [
        secs.count().cast(pl.UInt32).alias(f"{prefix}n"),
        *(secs.quantile(q, interpolation="linear").alias(f"{prefix}p{_pct(q)}") for q in quantiles),
    ]


def percentiles_of(
    samples: Frame,
    metrics: Sequence[str],
    quantiles: Sequence[float] = QUANTILES,
    by: Sequence[str] = (),
) -> pl.DataFrame:
    """Percentiles of long samples (``by`` columns, ``metric``, ``secs``): one row per group
    and metric of ``metrics``, in their order; ``n`` is the number of samples (0 and null
    percentiles for a metric a group has none of)."""
    stats = lazy(samples).group_by([*by, "metric"]).agg(*_stats(pl.col("secs"), quantiles))
    return _on_grid(stats, metrics, by)


def _on_grid(stats: pl.LazyFrame, metrics: Sequence[str], by: Sequence[str]) -> pl.DataFrame:
    """``stats`` (rows of ``by``, ``metric``, ``n``, percentiles) on the grid of every group
    with a sample by every metric, in the metrics' order."""
    grid = pl.LazyFrame({"metric": list(metrics)})
    if by:
        grid = stats.filter(pl.col("n") > 0).select(*by).unique().join(grid, how="cross")
    order = pl.col("metric").replace_strict(
        {m: i for i, m in enumerate(metrics)}, default=len(metrics), return_dtype=pl.Int32
    )
    return (
        grid.join(stats, on=[*by, "metric"], how="left", nulls_equal=True)
        .with_columns(pl.col("n").fill_null(0), order.alias("_order"))
        .sort([*by, "_order"], nulls_last=True)
        .drop("_order")
        .collect()
    )


def latency_percentiles(
    jobs: Frame,
    columns: Sequence[str] = LATENCY_COLUMNS,
    quantiles: Sequence[float] = QUANTILES,
    *,
    by: Sequence[str] = (),
    messages: Frame | None = None,
) -> pl.DataFrame:
    """Percentiles of each latency metric over ok jobs: one row per group and metric.

    With ``messages``, adds ``message_gap`` and ``agent_turn`` (see ``message_latencies``).
    Percentiles interpolate linearly; ``n`` is the number of samples. The jobs columns are
    summarised a column at a time (one pass, without a long table of every sample).
    """
    metrics = [c.removesuffix("_secs") for c in columns]
    ok = lazy(jobs).filter(pl.col("status") == "ok")
    parts: list[pl.LazyFrame] = []
    if columns:
        aggs = [e for c in columns for e in _stats(pl.col(c), quantiles, f"{c}:")]
        wide = (ok.group_by(list(by)).agg(aggs) if by else ok.select(aggs)).collect()
        stats = ["n", *(f"p{_pct(q)}" for q in quantiles)]
        parts += [
            wide.lazy().select(
                *by,
                pl.lit(c.removesuffix("_secs")).alias("metric"),
                *(pl.col(f"{c}:{s}").alias(s) for s in stats),
            )
            for c in columns
        ]
    if messages is not None:
        metrics += list(MESSAGE_METRICS)
        samples = latency_samples(jobs, (), messages, by)
        parts.append(samples.group_by([*by, "metric"]).agg(*_stats(pl.col("secs"), quantiles)))
    if not parts:
        raise ValueError("no latency metric asked for")
    return _on_grid(pl.concat(parts, how="vertical_relaxed"), metrics, by)


def _pct(q: float) -> str:
    value = q * 100
    return str(round(value)) if abs(value - round(value)) < 1e-9 else f"{value:g}".replace(".", "_")


def bin_of(value: pl.Expr, high: float, bins: int = HISTOGRAM_BINS) -> pl.Expr:
    """The histogram bin of a value (0 .. bins - 1): ``floor(v * (bins / high))``, clipped.
    The case list filters a bar's jobs with it, so a bar lists exactly the jobs it counts."""
    return (value * (bins / high)).floor().clip(0, bins - 1).cast(pl.Int64)


def histograms(
    frame: Frame, columns: Sequence[str], bins: int = HISTOGRAM_BINS
) -> dict[str, tuple[list[int], float]]:
    """Each column's non-null values in ``bins`` equal bins from 0 to their maximum: the
    counts and that maximum (1e-3 when there is none above 0)."""
    data = lazy(frame)
    tops = data.select(pl.col(c).max() for c in columns).collect().row(0, named=True)
    out = {}
    for column in columns:
        top = tops[column]
        high = float(top) if top is not None and top > 0 else 1e-3
        found = (
            data.select(bin_of(pl.col(column).drop_nulls(), high, bins).alias("bin"))
            .group_by("bin")
            .len()
            .collect()
        )
        counts = [0] * bins
        for b, n in found.iter_rows():
            counts[int(b)] = int(n)
        out[column] = (counts, high)
    return out


def histogram_bins(values: Sequence[float], bins: int = HISTOGRAM_BINS) -> tuple[list[int], float]:
    """``histograms`` of a list of values."""
    frame = pl.DataFrame({"v": pl.Series(list(values), dtype=pl.Float64)})
    return histograms(frame, ["v"], bins)["v"]
