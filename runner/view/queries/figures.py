"""A run's page: its figures (each from ``runner.analysis``) and the heatmap's page of rows."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import polars as pl

from runner import analysis
from runner.report.agreement import agreement_rows
from runner.view.queries.runs import Tables, Totals, decided_rate, matrix_columns, run_totals

HEAT_ROWS = 40


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


def of_sources(tables: Tables, sources: list[str] | tuple[str, ...]) -> Tables:
    """The run's tables with only the criteria rows of ``sources`` (``analysis.of_sources``;
    ``ValueError`` naming a source that is not one): the run page's figures of those sources."""
    if not sources:
        return tables
    return {**tables, "criteria": analysis.of_sources(tables["criteria"], sources)}


def run_agreement(tables: Tables, mirrors: dict[str, str]) -> list[dict[str, Any]]:
    """Per assertion that mirrors a judged criterion: how often the two agree
    (``analysis.agreement``), as the report's agreement block shows it."""
    if not mirrors:
        return []
    return agreement_rows(analysis.agreement(tables["criteria"], mirrors))


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
        return decided_rate(self.success, self.failure)

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
