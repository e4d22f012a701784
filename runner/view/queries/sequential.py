"""A run's sequential verdicts and the paired comparison, for the run and compare pages.

Querying only: the verdicts are the run's ``verdicts.parquet`` as the runner wrote it, the
cases whose verdict changed are ``runner.replay.verdict_changes``, and the paired comparison
is ``runner.paired_runs`` (with the defaults ``python -m runner compare A B`` uses, through
``runner.report.paired``), laid out by ``runner.report.sequential`` as ``report`` lays it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from runner.config.compare import CompareConfig
from runner.report.paired import paired_comparison, pick_sides
from runner.report.sequential import (
    PairedView,
    VerdictsView,
    change_frame,
    paired_view,
    run_paired,
    verdicts_view,
)
from runner.view.queries.runs import Tables

JOB_COLUMNS = (
    "job_key",
    "agent_id",
    "agent_label",
    "scenario_id",
    "repeat",
    "status",
    "cost_usd",
    "finished_at",
)
"""What pairing reads of the jobs (and the ``matrix.*`` columns)."""


def _frames(tables: Tables) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The jobs and criteria columns the pairing reads, collected."""
    names = tables["jobs"].collect_schema().names()
    wanted = [c for c in names if c in JOB_COLUMNS or c.startswith("matrix.")]
    jobs = tables["jobs"].select(wanted).collect()
    criteria = tables["criteria"].select("job_key", "criterion_id", "result").collect()
    return jobs, criteria


@dataclass(frozen=True)
class VerdictsPage:
    """The run page's verdicts: the view and its rows as dicts for the template."""

    view: VerdictsView
    rows: list[dict[str, Any]]


def run_verdicts(table: pl.DataFrame | None) -> VerdictsPage | None:
    """None for a run without a verdicts table (the page shows nothing new)."""
    if table is None or table.height == 0:
        return None
    view = verdicts_view(table)
    return VerdictsPage(view, view.rows.to_dicts())


def paired_of_run(tables: Tables, settings: CompareConfig | None) -> PairedView | str | None:
    """A ``compare:`` run's comparison of its arms (None: the run has no ``compare:`` block)."""
    if settings is None:
        return None
    return run_paired(*_frames(tables), settings)


def paired_of_runs(a: Tables, b: Tables, a_name: str, b_name: str) -> PairedView | str:
    """Run A (baseline) against run B (candidate), paired on the cases they share, as
    ``python -m runner compare A B`` computes it without options; a string says why not
    (a run of several agents is told apart by one cheap count, before anything is read)."""
    for side, tables in (("A", a), ("B", b)):
        agents = tables["jobs"].select(pl.col("agent_id").n_unique()).collect().item()
        if agents > 1:
            return (
                f"not computed: run {side} has {agents} agents; pair one agent of each with "
                "python -m runner compare A B --agent-a LABEL --agent-b LABEL"
            )
    sides = pick_sides(_frames(a), _frames(b))
    try:
        result, rule = paired_comparison(sides)
    except ValueError as exc:
        return f"not computed: {exc}"
    return paired_view(result, rule, a_name, b_name)


def verdict_changes(a: pl.DataFrame | None, b: pl.DataFrame | None) -> list[dict[str, Any]] | None:
    """The cases whose verdict changed from A to B; None unless both runs have verdicts."""
    if a is None or b is None:
        return None
    return change_frame(a, b).to_dicts()
