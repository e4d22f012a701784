"""The case list: its query (what its URL says), filters, sort and pages."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

import polars as pl

from runner import analysis
from runner.analysis import HISTOGRAM_BINS
from runner.view.queries.runs import RESULTS, Tables, matrix_columns

STATUSES = ("ok", "error")
PER_PAGE = 50
MAX_PER_PAGE = 200
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
    sources: tuple[str, ...] = ()
    """Criteria rows of these sources only (``?source=``, repeatable; ``analysis.of_sources``):
    the run page's filter, kept across its links."""

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
        pairs += [("source", source) for source in query.sources]
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
