"""What each page of the viewer shows, as pure functions over a run's lazy tables.

Every function takes Polars LazyFrames (``tables``: name -> LazyFrame, as
``runner.view.source.scan_tables`` gives them) and returns plain values or small frames; none
reads a file itself, so a page reads only the columns and rows it shows. Statistics follow
``runner.analysis`` (pass rate = success / (success + failure), unknown and job errors apart).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

import polars as pl

from runner import analysis
from runner.analysis import HISTOGRAM_BINS
from runner.manifest import Manifest
from runner.report.charts import max_float

Tables = Mapping[str, pl.LazyFrame]

RESULTS = analysis.RESULTS
STATUSES = ("ok", "error")
PER_PAGE = 50
MAX_PER_PAGE = 200
HEAT_ROWS = 40
MAX_QUERY_CHARS = 200

SORTS: dict[str, str] = {
    "started": "started_at",
    "finished": "finished_at",
    "agent": "agent_label",
    "scenario": "scenario_id",
    "repeat": "repeat",
    "status": "status",
    "attempts": "attempts",
    "messages": "message_count",
    "duration": "total_secs",
    "first_frame": "time_to_first_frame_secs",
    "analysis": "time_to_analysis_secs",
    "frame_gap": "mean_frame_gap_secs",
    "queue_wait": "queue_wait_secs",
    "price": "llm_price",
    "failed": "failed",
}
"""``sort=`` values of the case list and the column each sorts by (``failed``: failed criteria)."""

LATENCY_SORTS = {
    "time_to_first_frame": "first_frame",
    "time_to_analysis": "analysis",
    "mean_frame_gap": "frame_gap",
    "total": "duration",
    "queue_wait": "queue_wait",
}
"""The run page's latency metrics and the case-list sort that puts their slowest jobs first."""

CASE_LIST_COLUMNS = (
    "job_key",
    "agent_id",
    "agent_label",
    "scenario_id",
    "repeat",
    "status",
    "error_kind",
    "attempts",
    "message_count",
    "total_secs",
    "time_to_first_frame_secs",
    "time_to_analysis_secs",
    "mean_frame_gap_secs",
    "queue_wait_secs",
    "started_at",
    "finished_at",
    "llm_price",
    "call_successful",
)


def matrix_columns(frame: pl.LazyFrame) -> list[str]:
    return [c for c in frame.collect_schema().names() if c.startswith("matrix.")]


def _rate(success: int, failure: int) -> float | None:
    return success / (success + failure) if success + failure else None


# ------------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Totals:
    jobs: int
    ok: int
    errors: int
    success: int
    failure: int
    unknown: int
    llm_price: float | None
    credits: int | None
    first_started: Any
    last_finished: Any
    cost_usd: float | None = None
    """The vendor's priced spend (``jobs.cost_usd``); None when nothing was priced so, or the
    run's tables predate the column."""

    @property
    def pass_rate(self) -> float | None:
        return _rate(self.success, self.failure)

    @property
    def spend(self) -> float | None:
        """USD spent: ``cost_usd`` where the run has it, else (older runs) ``llm_price``."""
        return self.cost_usd if self.cost_usd is not None else self.llm_price

    @property
    def spend_source(self) -> str | None:
        """The column ``spend`` sums (None: nothing priced)."""
        if self.cost_usd is not None:
            return "cost_usd"
        return "llm_price" if self.llm_price is not None else None


def run_totals(tables: Tables, judged: pl.DataFrame | None = None) -> Totals:
    """Jobs, ok / errors, criteria outcomes and spend of a run (a scan of jobs, and of criteria
    unless ``judged``, the run's ``judged_counts``, already holds its outcomes)."""
    status = pl.col("status")
    # tables written before ``cost_usd`` existed lack it: a null column stands in
    has_cost = "cost_usd" in tables["jobs"].collect_schema().names()
    cost = pl.col("cost_usd") if has_cost else pl.lit(None, dtype=pl.Float64)
    j = (
        tables["jobs"]
        .select(
            pl.len().alias("jobs"),
            (status == "ok").sum().alias("ok"),
            (status == "error").sum().alias("errors"),
            pl.col("llm_price").sum().alias("llm_price"),
            pl.col("llm_price").is_not_null().any().alias("has_price"),
            cost.sum().alias("cost_usd"),
            cost.is_not_null().any().alias("has_cost"),
            pl.col("credits_used").sum().alias("credits"),
            pl.col("credits_used").is_not_null().any().alias("has_credits"),
            pl.col("started_at").min().alias("first_started"),
            pl.col("finished_at").max().alias("last_finished"),
        )
        .collect()
        .row(0, named=True)
    )
    if judged is not None:
        c = judged.select(pl.col(r).sum() for r in RESULTS).row(0, named=True)
    else:
        result = pl.col("result")
        c = (
            tables["criteria"]
            .select(
                (result == "success").sum().alias("success"),
                (result == "failure").sum().alias("failure"),
                (result == "unknown").sum().alias("unknown"),
            )
            .collect()
            .row(0, named=True)
        )
    return Totals(
        jobs=int(j["jobs"] or 0),
        ok=int(j["ok"] or 0),
        errors=int(j["errors"] or 0),
        success=int(c["success"] or 0),
        failure=int(c["failure"] or 0),
        unknown=int(c["unknown"] or 0),
        llm_price=float(j["llm_price"]) if j["has_price"] else None,
        credits=int(j["credits"]) if j["has_credits"] else None,
        first_started=j["first_started"],
        last_finished=j["last_finished"],
        cost_usd=float(j["cost_usd"]) if j["has_cost"] else None,
    )


@dataclass(frozen=True)
class Progress:
    done: int
    planned: int

    @property
    def share(self) -> float | None:
        return min(1.0, self.done / self.planned) if self.planned else None


def run_progress(manifest: Manifest | None, done: int) -> Progress:
    """Jobs done of those the latest session set out to have (planned + already done)."""
    last = manifest.sessions[-1] if manifest and manifest.sessions else None
    planned = last.planned + last.skipped if last else 0
    return Progress(done=done, planned=max(planned, done))


@dataclass(frozen=True)
class RunRow:
    """One line of the runs page."""

    name: str
    status: str
    started: str
    backend: str
    target: str
    sessions: int
    totals: Totals
    progress: Progress


def run_row(name: str, status: str, manifest: Manifest | None, totals: Totals) -> RunRow:
    started = manifest.created_at.isoformat() if manifest else ""
    if not started and totals.first_started is not None:
        started = totals.first_started.isoformat()
    return RunRow(
        name=name,
        status=status,
        started=started,
        backend=manifest.target.backend if manifest else "?",
        target=manifest.target.base_url if manifest else "?",
        sessions=len(manifest.sessions) if manifest else 0,
        totals=totals,
        progress=run_progress(manifest, totals.jobs),
    )


# ---------------------------------------------------------------------------- a run


@dataclass(frozen=True)
class RunFigures:
    """Everything a run's page shows, computed once per version of the run: each figure by
    the function of ``runner.analysis`` the report computes it with, over the run's counts."""

    totals: Totals
    by_criterion: pl.DataFrame
    by_agent: pl.DataFrame
    cells: pl.DataFrame
    """``pass_rates`` by agent_label, scenario_id, criterion_id: the heatmap's cells."""
    errors: pl.DataFrame
    flakiness: pl.DataFrame
    flaky_cases: pl.DataFrame
    """Case columns + criterion_id of every case that both passed and failed."""
    repeat_rates: list[dict[str, Any]]
    """Per criterion: pass@k and pass^k for each k in ``ks`` (``analysis.pass_k_by_criterion``)."""
    ks: list[int]
    latency: pl.DataFrame
    agents: list[str]
    scenarios: list[str]
    criteria: list[str]
    matrix: dict[str, list[str]]
    error_kinds: list[str]
    judged: pl.DataFrame
    """``analysis.judged_counts``: what the figures were computed from (a comparison reuses it)."""
    errored: pl.DataFrame
    """``analysis.errored_counts`` of the run (with ``judged``, all its pass rates' counts)."""
    trials: pl.DataFrame
    """``analysis.case_trials``: per case and criterion, its counts over the repeats."""


CELL_KEYS = ("agent_label", "scenario_id", "criterion_id")


def run_figures(tables: Tables, judged: pl.DataFrame | None = None) -> RunFigures:
    """Everything a run's page shows. ``judged`` is the run's ``analysis.judged_counts`` when
    the caller has it (a run in progress, summed part by part); else it is computed here."""
    jobs = tables["jobs"]
    if judged is None:
        judged = analysis.judged_counts(tables["criteria"], jobs)
    errored = analysis.errored_counts(jobs)
    cells = analysis.rates_from(judged, errored, CELL_KEYS)
    by_criterion = analysis.rates_from(judged, errored, ["criterion_id"])
    by_agent = analysis.rates_from(judged, errored, ["agent_label"])
    case_cols = analysis.case_columns(jobs)
    trials = analysis.case_trials(judged, errored)
    flaky_cases = trials.filter(pl.col("flaky")).select(*case_cols, "criterion_id")
    sizes = jobs.group_by(case_cols).agg(pl.len().alias("n")).select(pl.col("n").max()).collect()
    repeats = int(sizes.item() or 0) if sizes.height else 0
    ks = sorted({1, repeats} - {0})
    errors = analysis.error_counts(jobs)
    mcols = matrix_columns(jobs)
    distinct = jobs.select(
        pl.col("agent_label").unique().sort().implode(),
        pl.col("scenario_id").unique().sort().implode(),
        *(pl.col(c).drop_nulls().unique().sort().implode() for c in mcols),
    ).collect()
    crit_ids = by_criterion["criterion_id"].drop_nulls().to_list()
    return RunFigures(
        totals=run_totals(tables, judged),
        by_criterion=by_criterion,
        by_agent=by_agent,
        cells=cells,
        errors=errors,
        flakiness=analysis.flakiness_from(trials),
        flaky_cases=flaky_cases,
        repeat_rates=analysis.pass_k_by_criterion(analysis.pass_k_from(trials, ks)) if ks else [],
        ks=ks,
        latency=analysis.latency_percentiles(jobs),
        agents=[a for a in distinct["agent_label"][0].to_list() if a is not None],
        scenarios=[s for s in distinct["scenario_id"][0].to_list() if s is not None],
        criteria=sorted(crit_ids),
        matrix={c.removeprefix("matrix."): distinct[c][0].to_list() for c in mcols},
        error_kinds=[k for k in errors["error_kind"].to_list() if k is not None],
        judged=judged,
        errored=errored,
        trials=trials,
    )


@dataclass(frozen=True)
class HeatCell:
    criterion: str
    success: int
    failure: int
    unknown: int
    errors: int

    @property
    def decided(self) -> int:
        return self.success + self.failure

    @property
    def rate(self) -> float | None:
        return _rate(self.success, self.failure)

    @property
    def shade(self) -> str:
        """A CSS class: ``h0`` (0%, red) .. ``h10`` (100%, green); ``hn`` never decided."""
        rate = self.rate
        return "hn" if rate is None else f"h{round(rate * 10)}"


@dataclass(frozen=True)
class HeatRow:
    agent: str | None
    scenario: str
    cells: tuple[HeatCell | None, ...]
    worst: float | None


@dataclass(frozen=True)
class Heatmap:
    criteria: tuple[str, ...]
    rows: tuple[HeatRow, ...]
    total_rows: int
    page: int
    pages: int
    multi_agent: bool


def heatmap(cells: pl.DataFrame, *, page: int = 1, rows_per_page: int = HEAT_ROWS) -> Heatmap:
    """Scenario (x agent) rows by criterion columns, the worst rows first, one page of them.

    A row's rank is its lowest pass rate over its criteria (rows never decided last)."""
    decided = cells.filter(pl.col("criterion_id").is_not_null())
    criteria = tuple(sorted(set(decided["criterion_id"].to_list())))
    multi = decided["agent_label"].n_unique() > 1
    keys = ["agent_label", "scenario_id"]
    ranked = (
        decided.group_by(keys)
        .agg(pl.col("pass_rate").min().alias("worst"))
        .sort(["worst", *keys], nulls_last=True)
    )
    total = ranked.height
    pages = max(1, math.ceil(total / rows_per_page))
    page = min(max(1, page), pages)
    shown = ranked.slice((page - 1) * rows_per_page, rows_per_page)
    lookup: dict[tuple[Any, Any, Any], dict[str, Any]] = {
        (r["agent_label"], r["scenario_id"], r["criterion_id"]): r
        for r in decided.join(shown.select(keys), on=keys, how="semi", nulls_equal=True).iter_rows(
            named=True
        )
    }
    rows = []
    for r in shown.iter_rows(named=True):
        row_cells: list[HeatCell | None] = []
        for criterion in criteria:
            c = lookup.get((r["agent_label"], r["scenario_id"], criterion))
            row_cells.append(
                None
                if c is None
                else HeatCell(
                    criterion,
                    int(c["success"] or 0),
                    int(c["failure"] or 0),
                    int(c["unknown"] or 0),
                    int(c["errors"] or 0),
                )
            )
        rows.append(HeatRow(r["agent_label"], r["scenario_id"], tuple(row_cells), r["worst"]))
    return Heatmap(criteria, tuple(rows), total, page, pages, multi)


# ------------------------------------------------------------------------- charts

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


# ---------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class CaseQuery:
    """The case list's filters, sort and page: what its URL says (``params`` writes it back)."""

    agent: str | None = None
    scenario: str | None = None
    matrix: tuple[tuple[str, str], ...] = ()
    criterion: str | None = None
    result: str | None = None
    status: str | None = None
    error_kind: str | None = None
    flaky: bool = False
    q: str | None = None
    lat: str | None = None
    """With ``lat_bin`` and ``lat_top``: the ok jobs in one bar of a latency histogram (a
    ``LATENCY_SORTS`` value names the metric)."""
    lat_bin: int | None = None
    lat_top: float | None = None
    sort: str = "started"
    desc: bool = False
    page: int = 1
    per_page: int = PER_PAGE

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> CaseQuery:
        """Parse query parameters; unknown or malformed values raise ``ValueError``."""

        def text(name: str) -> str | None:
            value = (params.get(name) or "").strip()
            return value or None

        def number(name: str, default: int, low: int, high: int) -> int:
            raw = text(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"{name} must be a number") from None
            return min(max(value, low), high)

        result, status, sort = text("result"), text("status"), text("sort") or "started"
        if result is not None and result not in RESULTS:
            raise ValueError(f"result must be one of {', '.join(RESULTS)}")
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        if sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}")
        lat, lat_bin, lat_top = text("lat"), text("lat_bin"), text("lat_top")
        if (lat, lat_bin, lat_top) != (None, None, None):
            if lat not in LATENCY_SORTS.values() or lat_bin is None or lat_top is None:
                raise ValueError(
                    f"lat must be one of {', '.join(LATENCY_SORTS.values())}"
                    " with lat_bin and lat_top"
                )
            try:
                bin_at, top = int(lat_bin), float(lat_top)
            except ValueError:
                raise ValueError("lat_bin must be a number and lat_top seconds") from None
            if not 0 <= bin_at < HISTOGRAM_BINS or not math.isfinite(top) or top <= 0:
                raise ValueError(f"lat_bin must be 0 to {HISTOGRAM_BINS - 1}, lat_top above 0")
        q = text("q")
        if q is not None and len(q) > MAX_QUERY_CHARS:
            raise ValueError(f"the search text is longer than {MAX_QUERY_CHARS} characters")
        matrix = tuple(
            sorted(
                (k.removeprefix("m."), v.strip())
                for k, v in params.items()
                if k.startswith("m.") and v.strip()
            )
        )
        return cls(
            agent=text("agent"),
            scenario=text("scenario"),
            matrix=matrix,
            criterion=text("criterion"),
            result=result,
            status=status,
            error_kind=text("error_kind"),
            flaky=text("flaky") in ("1", "true", "on", "yes"),
            q=q,
            lat=lat,
            lat_bin=int(lat_bin) if lat_bin is not None else None,
            lat_top=float(lat_top) if lat_top is not None else None,
            sort=sort,
            desc=text("desc") in ("1", "true", "on", "yes"),
            page=number("page", 1, 1, 10**9),
            per_page=number("per_page", PER_PAGE, 1, MAX_PER_PAGE),
        )

    def params(self, **changes: Any) -> str:
        """This query (with ``changes``) as a URL query string, defaults left out."""
        query = replace(self, **changes) if changes else self
        pairs: list[tuple[str, str]] = []
        for name in ("agent", "scenario"):
            value = getattr(query, name)
            if value:
                pairs.append((name, value))
        pairs += [(f"m.{axis}", value) for axis, value in query.matrix]
        for name in ("criterion", "result", "status", "error_kind", "q"):
            value = getattr(query, name)
            if value:
                pairs.append((name, value))
        if query.lat is not None:
            pairs += [("lat", query.lat), ("lat_bin", str(query.lat_bin))]
            pairs.append(("lat_top", repr(query.lat_top)))
        if query.flaky:
            pairs.append(("flaky", "1"))
        if query.sort != "started":
            pairs.append(("sort", query.sort))
        if query.desc:
            pairs.append(("desc", "1"))
        if query.per_page != PER_PAGE:
            pairs.append(("per_page", str(query.per_page)))
        if query.page != 1:
            pairs.append(("page", str(query.page)))
        return urlencode(pairs)


@dataclass(frozen=True)
class CasePage:
    query: CaseQuery
    rows: list[dict[str, Any]]
    total: int
    pages: int
    matrix_axes: list[str]


def search_pattern(text: str) -> str:
    """A case-insensitive literal match of ``text`` as a (Rust) regex."""
    return "(?i)" + re.escape(text)


def _null_safe_eq(column: str, value: str | None) -> pl.Expr:
    return pl.col(column).is_null() if value is None else pl.col(column) == value


def _matching_keys(tables: Tables, query: CaseQuery) -> list[pl.LazyFrame]:
    """Sets of job keys (one-column frames) the job must be in, one per filter that needs
    another table than ``jobs``."""
    sets: list[pl.LazyFrame] = []
    if query.criterion is not None or query.result is not None:
        crit = tables["criteria"]
        if query.criterion is not None:
            crit = crit.filter(pl.col("criterion_id") == query.criterion)
        if query.result is not None:
            crit = crit.filter(pl.col("result") == query.result)
        sets.append(crit.select("job_key"))
    if query.q:
        pattern = search_pattern(query.q)
        in_messages = (
            tables["messages"].filter(pl.col("message").str.contains(pattern)).select("job_key")
        )
        in_rationales = (
            tables["criteria"].filter(pl.col("rationale").str.contains(pattern)).select("job_key")
        )
        sets.append(pl.concat([in_messages, in_rationales], how="vertical"))
    return sets


def filter_cases(
    tables: Tables,
    query: CaseQuery,
    flaky_cases: pl.DataFrame,
    *,
    page_tables: Callable[[Sequence[str]], Tables] | None = None,
) -> CasePage:
    """The jobs matching ``query``, sorted, one page of them, each with its criteria outcomes.

    ``flaky_cases`` is ``RunFigures.flaky_cases`` (case columns + criterion_id).
    ``page_tables``, given the page's job keys, returns tables holding at least those jobs
    (for a run read part by part: only the parts that hold them)."""
    jobs = tables["jobs"]
    mcols = matrix_columns(jobs)
    frame = jobs.select(*CASE_LIST_COLUMNS, *mcols)
    if query.agent is not None:
        frame = frame.filter(
            (pl.col("agent_label") == query.agent) | (pl.col("agent_id") == query.agent)
        )
    if query.scenario is not None:
        frame = frame.filter(pl.col("scenario_id") == query.scenario)
    for axis, value in query.matrix:
        column = f"matrix.{axis}"
        if column not in mcols:
            raise ValueError(f"no matrix axis {axis!r} in this run")
        frame = frame.filter(pl.col(column) == value)
    if query.status is not None:
        frame = frame.filter(pl.col("status") == query.status)
    if query.error_kind is not None:
        frame = frame.filter(pl.col("error_kind") == query.error_kind)
    if query.lat is not None and query.lat_bin is not None and query.lat_top is not None:
        metric = pl.col(SORTS[query.lat])
        frame = frame.filter(
            (pl.col("status") == "ok")
            & metric.is_not_null()
            & (analysis.bin_of(metric, query.lat_top) == query.lat_bin)
        )
    for keys in _matching_keys(tables, query):
        # collected once: the count and the page would each scan the other tables again
        found = keys.unique().collect(engine="streaming")
        frame = frame.join(found.lazy(), on="job_key", how="semi")
    if query.flaky:
        flaky = flaky_cases
        if query.criterion is not None:
            flaky = flaky.filter(pl.col("criterion_id") == query.criterion)
        case_cols = [c for c in flaky.columns if c != "criterion_id"]
        frame = frame.join(
            flaky.select(case_cols).unique().lazy(), on=case_cols, how="semi", nulls_equal=True
        )
    if query.sort == "failed":
        failed = (
            tables["criteria"]
            .filter(pl.col("result") == "failure")
            .group_by("job_key")
            .agg(pl.len().cast(pl.UInt32).alias("failed"))
        )
        frame = frame.join(failed, on="job_key", how="left").with_columns(
            pl.col("failed").fill_null(0)
        )
    total = int(frame.select(pl.len()).collect().item())
    pages = max(1, math.ceil(total / query.per_page))
    page = min(query.page, pages)
    sort_col = SORTS[query.sort]
    ordered = frame.sort(
        [sort_col, "started_at", "job_key"],
        descending=[query.desc, False, False],
        nulls_last=True,
    )
    rows_frame = ordered.slice((page - 1) * query.per_page, query.per_page).collect()
    shown = rows_frame.get_column("job_key").to_list()
    rows = _with_outcomes(tables if page_tables is None else page_tables(shown), rows_frame, query)
    return CasePage(
        query=replace(query, page=page),
        rows=rows,
        total=total,
        pages=pages,
        matrix_axes=[c.removeprefix("matrix.") for c in mcols],
    )


def _with_outcomes(tables: Tables, rows: pl.DataFrame, query: CaseQuery) -> list[dict[str, Any]]:
    """Each row with its criteria results (failed first) and, when searching, a snippet."""
    keys = rows["job_key"]
    outcomes = (
        tables["criteria"]
        .filter(pl.col("job_key").is_in(keys.implode()))
        .select("job_key", "criterion_id", "result")
        .collect()
    )
    by_job: dict[str, list[tuple[str, str]]] = {}
    for r in outcomes.iter_rows(named=True):
        by_job.setdefault(r["job_key"], []).append((r["criterion_id"], r["result"]))
    snippets: dict[str, str] = {}
    if query.q:
        found = (
            tables["messages"]
            .filter(
                pl.col("job_key").is_in(keys.implode())
                & pl.col("message").str.contains(search_pattern(query.q))
            )
            .group_by("job_key")
            .agg(pl.col("message").sort_by("index").first())
            .collect()
        )
        snippets = {
            r["job_key"]: snippet(r["message"], query.q) for r in found.iter_rows(named=True)
        }
    order = {"failure": 0, "unknown": 1, "success": 2}
    out = []
    for row in rows.iter_rows(named=True):
        results = sorted(by_job.get(row["job_key"], []), key=lambda x: (order.get(x[1], 3), x[0]))
        row["outcomes"] = results
        row["failed"] = sum(1 for _, r in results if r == "failure")
        row["matrix"] = {
            k.removeprefix("matrix."): v for k, v in row.items() if k.startswith("matrix.")
        }
        row["snippet"] = snippets.get(row["job_key"])
        out.append(row)
    return out


def snippet(text: str, needle: str, width: int = 70) -> str:
    """The part of ``text`` around the first case-insensitive occurrence of ``needle``."""
    at = text.lower().find(needle.lower())
    if at < 0:
        return text[: 2 * width]
    start, end = max(0, at - width), min(len(text), at + len(needle) + width)
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")


# ------------------------------------------------------------------------------ a job


@dataclass(frozen=True)
class JobDetail:
    job: dict[str, Any]
    matrix: dict[str, Any]
    messages: list[dict[str, Any]]
    criteria: list[dict[str, Any]]
    data_collection: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    buckets: list[dict[str, Any]]
    repeats: list[dict[str, Any]] = field(default_factory=list)


def job_detail(
    tables: Tables, job_key: str, *, case_tables: Tables | None = None
) -> JobDetail | None:
    """One job: its row, conversation, criteria, data collection, attempts, vendor buckets and
    the other repeats of its case (read from ``case_tables`` when given: tables that hold at
    least the case's jobs). None when the run has no such job."""
    key = pl.col("job_key") == job_key
    found = tables["jobs"].filter(key).collect()
    if found.height == 0:
        return None
    job = found.row(0, named=True)
    matrix = {k.removeprefix("matrix."): v for k, v in job.items() if k.startswith("matrix.")}
    messages = tables["messages"].filter(key).sort("index").collect()
    criteria = tables["criteria"].filter(key).collect()
    order = {"failure": 0, "unknown": 1, "success": 2}
    criteria_rows = sorted(
        criteria.to_dicts(), key=lambda r: (order.get(r["result"], 3), r["criterion_id"] or "")
    )
    attempts = tables["attempts"].filter(key).sort("started_at", "attempt").collect()
    return JobDetail(
        job=job,
        matrix=matrix,
        messages=messages.to_dicts(),
        criteria=criteria_rows,
        data_collection=tables["data_collection"].filter(key).collect().to_dicts(),
        attempts=attempts.to_dicts(),
        buckets=tables["buckets"].filter(key).collect().to_dicts(),
        repeats=case_repeats(tables if case_tables is None else case_tables, job),
    )


def same_case(job: Mapping[str, Any]) -> pl.Expr:
    """The jobs of ``job``'s case: the same agent, scenario and matrix cell (``job``'s
    ``matrix.*`` values)."""
    cond = (pl.col("agent_id") == job["agent_id"]) & (pl.col("scenario_id") == job["scenario_id"])
    for column in (c for c in job if c.startswith("matrix.")):
        cond = cond & _null_safe_eq(column, job.get(column))
    return cond


def case_repeats(tables: Tables, job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every job of ``job``'s case (same agent, scenario and matrix cell), by repeat, with its
    failed criteria."""
    jobs = tables["jobs"]
    siblings = (
        jobs.filter(same_case(job))
        .select("job_key", "repeat", "status", "error_kind", "started_at")
        .sort("repeat", "started_at")
        .collect()
    )
    failed = (
        tables["criteria"]
        .filter(pl.col("job_key").is_in(siblings["job_key"].implode()))
        .filter(pl.col("result") == "failure")
        .group_by("job_key")
        .agg(pl.col("criterion_id").sort())
        .collect()
    )
    failures = {r["job_key"]: r["criterion_id"] for r in failed.iter_rows(named=True)}
    rows = siblings.to_dicts()
    for r in rows:
        r["failed"] = failures.get(r["job_key"], [])
    return rows


# ------------------------------------------------------------------------------ compare


@dataclass(frozen=True)
class Comparison:
    """What the compare page shows of two runs, all judged by ``runner.analysis.compare``."""

    by_criterion: pl.DataFrame
    """``analysis.compare_counts`` by criterion: the table ``python -m runner compare A B``
    prints, verdicts and intervals included."""
    cases: pl.DataFrame
    """``analysis.compare_cases``: every case x criterion, the significant changes first."""

    def verdicts(self) -> dict[str, int]:
        """How many criteria got each verdict (the command's ``verdicts:`` line)."""
        return dict(self.by_criterion["verdict"].value_counts().iter_rows())

    def kinds(self) -> dict[str, int]:
        """How many cases are of each ``analysis.CASE_ORDER`` kind."""
        return dict(self.cases["kind"].value_counts().iter_rows())


def compare(a: RunFigures, b: RunFigures) -> Comparison:
    """Two runs compared from their figures: ``analysis.compare_pass_rates`` of their
    ``by_criterion`` (``analysis.rates_from``, as ``compare_runs`` computes them for the
    command) and ``analysis.compare_cases`` of their ``trials``."""

    def known(rates: pl.DataFrame) -> pl.DataFrame:
        return rates.filter(pl.col("criterion_id").is_not_null())

    return Comparison(
        by_criterion=analysis.compare_pass_rates(known(a.by_criterion), known(b.by_criterion)),
        cases=analysis.compare_cases(a.trials, b.trials),
    )


@dataclass(frozen=True)
class CaseKey:
    """One case x criterion, as the comparison links name it."""

    agent_id: str
    scenario_id: str
    criterion_id: str
    matrix: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> CaseKey:
        missing = [k for k in ("agent_id", "scenario_id", "criterion_id") if not params.get(k)]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        matrix = tuple(
            sorted(
                (k.removeprefix("m."), v or None) for k, v in params.items() if k.startswith("m.")
            )
        )
        return cls(params["agent_id"], params["scenario_id"], params["criterion_id"], matrix)

    def params(self) -> str:
        pairs = [
            ("agent_id", self.agent_id),
            ("scenario_id", self.scenario_id),
            ("criterion_id", self.criterion_id),
        ]
        pairs += [(f"m.{k}", v or "") for k, v in self.matrix]
        return urlencode(pairs)


def case_key(row: Mapping[str, Any]) -> CaseKey:
    """The ``CaseKey`` of a ``Comparison.cases`` row."""
    matrix = tuple(
        sorted((k.removeprefix("matrix."), v) for k, v in row.items() if k.startswith("matrix."))
    )
    return CaseKey(row["agent_id"], row["scenario_id"], row["criterion_id"], matrix)


def case_jobs(tables: Tables, key: CaseKey) -> list[dict[str, Any]]:
    """The jobs of a case in one run, by repeat, each with the criterion's result."""
    jobs = tables["jobs"]
    present = set(matrix_columns(jobs))
    cond = (pl.col("agent_id") == key.agent_id) & (pl.col("scenario_id") == key.scenario_id)
    for axis, value in key.matrix:
        if f"matrix.{axis}" in present:
            cond = cond & _null_safe_eq(f"matrix.{axis}", value)
    rows = (
        jobs.filter(cond)
        .select("job_key", "repeat", "status", "error_kind")
        .sort("repeat")
        .collect()
    )
    results = (
        tables["criteria"]
        .filter(
            pl.col("job_key").is_in(rows["job_key"].implode())
            & (pl.col("criterion_id") == key.criterion_id)
        )
        .select("job_key", "result")
        .collect()
    )
    by_key = dict(results.iter_rows())
    out = rows.to_dicts()
    for r in out:
        r["result"] = by_key.get(r["job_key"], "error" if r["status"] == "error" else None)
    return out


def pick_pair(
    a_jobs: Sequence[Mapping[str, Any]], b_jobs: Sequence[Mapping[str, Any]]
) -> tuple[str | None, str | None]:
    """The two transcripts to show side by side: a passing one of A and a failing one of B
    when there are (the change at its clearest), else the first of each."""

    def first(rows: Sequence[Mapping[str, Any]], wanted: str) -> str | None:
        for r in rows:
            if r["result"] == wanted:
                return str(r["job_key"])
        return str(rows[0]["job_key"]) if rows else None

    return first(a_jobs, "success"), first(b_jobs, "failure")
