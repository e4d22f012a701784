"""A run's charts: latency histograms, attempts and requests in flight over time, and the
message latencies of a deterministic sample of its jobs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from runner import analysis
from runner.report.charts import max_float
from runner.view.queries.cases import LATENCY_SORTS, CaseQuery
from runner.view.queries.runs import Tables

IN_FLIGHT_POINTS = 800
"""Time slots the requests-in-flight chart keeps (the largest count in each): about a point
per pixel of its width, however many attempts the run made."""


@dataclass(frozen=True)
class Histogram:
    """One latency metric's distribution over ok jobs: ``counts`` in ``HISTOGRAM_BINS``
    equal bins from 0 to ``high`` (``runner.report.charts.histogram_bins``)."""

    metric: str
    sort: str | None
    """The case list's ``sort=`` and ``lat=`` value for this metric (None: its bars open
    nothing, as a message latency is not a jobs column to filter on)."""
    counts: list[int]
    high: float
    marks: dict[str, float]


@dataclass(frozen=True)
class RunCharts:
    """What the run page draws over its tables (``report.html``'s latency histograms,
    attempts and retries over time, requests in flight against the concurrency limit)."""

    histograms: list[Histogram]
    attempts: pl.DataFrame
    """``analysis.attempts_over_time``."""
    in_flight: pl.DataFrame
    """``analysis.in_flight_over_time``, at most ``IN_FLIGHT_POINTS`` slots (each slot's
    largest count and last limit)."""


def histogram_links(base: str, histogram: Histogram) -> list[str] | None:
    """Each bar's case list: the ok jobs in it, the slowest first (None: no case list)."""
    if histogram.sort is None:
        return None
    return [
        f"{base}/cases?"
        + CaseQuery(
            status="ok",
            lat=histogram.sort,
            lat_bin=i,
            lat_top=histogram.high,
            sort=histogram.sort,
            desc=True,
        ).params()
        for i in range(len(histogram.counts))
    ]


def run_charts(tables: Tables, latency: pl.DataFrame) -> RunCharts:
    """The run page's charts; ``latency`` is ``RunFigures.latency`` (their percentile marks)."""
    metrics = {f"{m}_secs": sort for m, sort in LATENCY_SORTS.items()}
    ok = tables["jobs"].filter(pl.col("status") == "ok")
    binned = analysis.histograms(ok, list(metrics))
    histograms = []
    for column, sort in metrics.items():
        counts, high = binned[column]
        metric = column.removesuffix("_secs")
        stats = latency.filter(pl.col("metric") == metric)
        marks = {}
        if stats.height and stats["n"][0]:
            marks = {p: float(stats[p][0]) for p in ("p50", "p90", "p99")}
        histograms.append(Histogram(metric, sort, counts, high, marks))
    attempts = tables["attempts"]
    steps = analysis.in_flight_over_time(attempts)
    if steps.height > IN_FLIGHT_POINTS:
        span = max_float(steps["t_secs"]) or 1e-3
        slot = span / IN_FLIGHT_POINTS
        steps = (
            steps.with_columns((pl.col("t_secs") / slot).floor().alias("_slot"))
            .group_by("_slot", maintain_order=True)
            .agg(
                pl.col("t_secs").first(),
                pl.col("in_flight").max(),
                pl.col("concurrency_limit").last(),
            )
            .drop("_slot")
        )
    return RunCharts(histograms, analysis.attempts_over_time(attempts), steps)


# --------------------------------------------------------------- message latencies

SAMPLE_JOBS = 5_000
"""Ok jobs the run page's message latencies are computed over at most: what exact figures
over every message of a long run cost in memory is far above the viewer's budget, and a few
thousand jobs draw the same shape."""

SAMPLE_SEED = 0x5EED
"""The seed of the job-key hash that picks the sample (Polars' ``hash``: stable for a given
Polars version, so the sample and its figures stay put between refreshes)."""


@dataclass(frozen=True)
class MessageSample:
    """``analysis.message_latencies`` of a deterministic sample of a run's ok jobs: the
    ``SAMPLE_JOBS`` whose keys hash lowest (all of them in a smaller run)."""

    keys: pl.DataFrame
    """``job_key`` and its hash ``_h`` of the sampled jobs."""
    samples: pl.DataFrame
    """``job_key``, ``metric`` (one of ``analysis.MESSAGE_METRICS``), ``secs``."""


def _sample_keys(jobs: pl.LazyFrame) -> pl.LazyFrame:
    return jobs.filter(pl.col("status") == "ok").select(
        "job_key", pl.col("job_key").hash(SAMPLE_SEED).alias("_h")
    )


def extend_sample(
    earlier: MessageSample | None,
    jobs: pl.LazyFrame,
    messages_of: Callable[[pl.DataFrame], pl.LazyFrame],
    limit: int | None = None,
) -> MessageSample:
    """The sample of ``earlier``'s jobs and ``jobs`` together (the ``limit`` lowest hashes of
    both are the lowest of all, so a run in progress only looks at its new parts' jobs);
    ``messages_of(keys)`` scans messages holding at least the newly sampled jobs, of which
    only their rows and the four columns ``message_latencies`` reads are collected. ``limit``
    defaults to ``SAMPLE_JOBS`` as it is when called."""
    found = _sample_keys(jobs)
    if earlier is not None:
        found = pl.concat([earlier.keys.lazy(), found], how="vertical").unique("job_key")
    keys = found.sort("_h", "job_key").head(SAMPLE_JOBS if limit is None else limit).collect()
    added = keys if earlier is None else keys.join(earlier.keys, on="job_key", how="anti")
    fresh = _latencies_of(messages_of(added), added) if added.height else None
    kept = (
        earlier.samples.filter(pl.col("job_key").is_in(keys["job_key"].implode()))
        if earlier is not None
        else None
    )
    parts = [f for f in (kept, fresh) if f is not None]
    samples = pl.concat(parts, how="vertical") if parts else _no_samples()
    return MessageSample(keys, samples)


def _no_samples() -> pl.DataFrame:
    return pl.DataFrame(schema={"job_key": pl.String, "metric": pl.String, "secs": pl.Float64})


def _latencies_of(messages: pl.LazyFrame, keys: pl.DataFrame) -> pl.DataFrame:
    rows = (
        messages.select("job_key", "index", "role", "arrival_secs")
        .filter(pl.col("job_key").is_in(keys["job_key"].implode()))
        .collect(engine="streaming")
    )
    found = analysis.message_latencies(rows).filter(pl.col("secs").is_not_null()).collect()
    return found.select("job_key", "metric", pl.col("secs").cast(pl.Float64))


@dataclass(frozen=True)
class MessageLatency:
    """The run page's message latencies: percentiles and histograms (as ``report.html``'s,
    over the sampled jobs' messages), and how many ok jobs they stand for."""

    table: pl.DataFrame
    """``metric``, ``n`` (samples), ``p50`` / ``p90`` / ``p95`` / ``p99``."""
    histograms: list[Histogram]
    sampled: int
    ok_jobs: int

    @property
    def exact(self) -> bool:
        return self.sampled >= self.ok_jobs


def message_latency(sample: MessageSample, ok_jobs: int) -> MessageLatency:
    """Percentiles (``analysis.percentiles_of``) and histograms (``analysis.histogram_bins``)
    of each message metric over ``sample``: as ``report.html`` computes them."""
    table = analysis.percentiles_of(sample.samples, analysis.MESSAGE_METRICS)
    histograms = []
    for row in table.iter_rows(named=True):
        metric = row["metric"]
        values = sample.samples.filter(pl.col("metric") == metric).get_column("secs").to_list()
        bins = analysis.HISTOGRAM_BINS
        counts, high = analysis.histogram_bins(values) if values else ([0] * bins, 0.0)
        marks = {p: row[p] for p in ("p50", "p90", "p99") if row[p] is not None}
        histograms.append(Histogram(metric, None, counts, high, marks))
    return MessageLatency(table, histograms, sample.keys.height, ok_jobs)
