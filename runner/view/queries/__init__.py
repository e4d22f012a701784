"""What each page of the viewer shows, as pure functions over a run's lazy tables: querying
and paging only; every figure comes from ``runner.analysis``.

Every function takes Polars LazyFrames (``tables``: name -> LazyFrame, as
``runner.view.source.scan_tables`` gives them) and returns plain values or small frames; none
reads a file itself, so a page reads only the columns and rows it shows. One module a page
kind: ``runs`` (totals, the runs page), ``figures`` (a run's page, the heatmap), ``charts``
(its charts and message latencies), ``cases`` (the case list), ``jobs`` (one job),
``compare`` (two runs), ``sequential`` (a run's verdicts, the paired comparison). Everything
public is re-exported here.
"""

from __future__ import annotations

from runner.view.queries.cases import (
    CASE_LIST_COLUMNS,
    LATENCY_SORTS,
    MAX_PER_PAGE,
    MAX_QUERY_CHARS,
    PER_PAGE,
    SORTS,
    STATUSES,
    CasePage,
    CaseQuery,
    filter_cases,
    search_pattern,
    snippet,
)
from runner.view.queries.charts import (
    IN_FLIGHT_POINTS,
    SAMPLE_JOBS,
    SAMPLE_SEED,
    Histogram,
    MessageLatency,
    MessageSample,
    RunCharts,
    extend_sample,
    histogram_links,
    message_latency,
    run_charts,
)
from runner.view.queries.compare import (
    CaseKey,
    Comparison,
    case_jobs,
    case_key,
    compare,
    pick_pair,
)
from runner.view.queries.figures import (
    CELL_KEYS,
    HEAT_ROWS,
    HeatCell,
    Heatmap,
    HeatRow,
    RunFigures,
    heatmap,
    of_sources,
    run_agreement,
    run_figures,
)
from runner.view.queries.jobs import (
    JobDetail,
    case_repeats,
    job_detail,
    same_case,
)
from runner.view.queries.runs import (
    RESULTS,
    Progress,
    RunRow,
    Tables,
    Totals,
    decided_rate,
    matrix_columns,
    newest_first,
    newest_names,
    null_safe_eq,
    run_progress,
    run_row,
    run_totals,
)
from runner.view.queries.sequential import (
    VerdictsPage,
    paired_of_run,
    paired_of_runs,
    run_verdicts,
    verdict_changes,
)

__all__ = [
    "CASE_LIST_COLUMNS",
    "CELL_KEYS",
    "HEAT_ROWS",
    "IN_FLIGHT_POINTS",
    "LATENCY_SORTS",
    "MAX_PER_PAGE",
    "MAX_QUERY_CHARS",
    "PER_PAGE",
    "RESULTS",
    "SAMPLE_JOBS",
    "SAMPLE_SEED",
    "SORTS",
    "STATUSES",
    "CaseKey",
    "CasePage",
    "CaseQuery",
    "Comparison",
    "HeatCell",
    "HeatRow",
    "Heatmap",
    "Histogram",
    "JobDetail",
    "MessageLatency",
    "MessageSample",
    "Progress",
    "RunCharts",
    "RunFigures",
    "RunRow",
    "Tables",
    "Totals",
    "VerdictsPage",
    "case_jobs",
    "case_key",
    "case_repeats",
    "compare",
    "decided_rate",
    "extend_sample",
    "filter_cases",
    "heatmap",
    "histogram_links",
    "job_detail",
    "matrix_columns",
    "message_latency",
    "newest_first",
    "newest_names",
    "null_safe_eq",
    "of_sources",
    "paired_of_run",
    "paired_of_runs",
    "pick_pair",
    "run_agreement",
    "run_charts",
    "run_figures",
    "run_progress",
    "run_row",
    "run_totals",
    "run_verdicts",
    "same_case",
    "search_pattern",
    "snippet",
    "verdict_changes",
]
