"""Terminal tables: the end-of-run summary and ``python -m runner report``'s printout.

The numbers all come from ``runner.analysis``; this module only lays them out with rich.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runner.analysis import (
    check_grouping,
    error_counts,
    error_rates,
    flakiness,
    flaky_cases,
    latency_percentiles,
    pass_rates,
    repeat_pass_rates,
    spend,
)
from runner.estimate import money
from runner.report.pages import RATE_COLUMNS as _PAGE_RATES
from runner.report.pages import money_frame
from runner.store import Run, load_run

RATE_COLUMNS = frozenset(_PAGE_RATES)


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def frame_table(frame: pl.DataFrame, title: str, limit: int | None = None) -> Table:
    """A frame as a rich table (rates to three decimals; ``limit`` rows at most)."""
    shown = frame if limit is None else frame.head(limit)
    caption = f"{frame.height - limit} more rows" if limit and frame.height > limit else None
    table = Table(
        title=escape(title), title_justify="left", caption=caption, caption_justify="left"
    )
    for column in frame.columns:
        table.add_column(column, justify="left" if frame[column].dtype == pl.String else "right")
    for row in shown.iter_rows():
        table.add_row(*(escape(_fmt(v)) for v in row))
    return table


def print_run_tables(
    run: Run, console: Console | None = None, by: Sequence[Sequence[str]] = ()
) -> None:
    """The analysis of a run as terminal tables; ``by`` adds one pass-rate table per grouping."""
    console = console or Console()
    jobs, criteria = run.jobs, run.criteria
    for grouping in by:  # an unknown column is refused before any table is printed
        check_grouping(criteria, jobs, grouping)
    totals = error_rates(jobs).row(0, named=True)
    console.print(
        f"run totals: {totals['jobs']} job(s): {totals['ok']} ok, {totals['errors']} error"
        f" ({_fmt(totals['error_rate'])}), {totals['retries']} retries"
    )
    criterion = pass_rates(criteria, jobs, by=("criterion_id",))
    if criterion.height:
        console.print(
            frame_table(criterion, "pass rate per criterion (unknown and job errors counted apart)")
        )
        agents = pass_rates(criteria, jobs, by=("agent_label",))
        if agents.height > 1:
            console.print(frame_table(agents, "pass rate per agent (all criteria pooled)"))
    for grouping in by:
        console.print(
            frame_table(
                pass_rates(criteria, jobs, by=list(grouping)),
                f"pass rate by {', '.join(grouping)}",
            )
        )
    if criterion.height:
        _print_repeats(run, console)
    errors = error_counts(jobs)
    if errors.height:
        console.print(frame_table(errors, "jobs ended in error, by kind"))
    latency = latency_percentiles(jobs, messages=run.messages)
    if latency.height and latency["n"].sum():
        console.print(frame_table(latency, "latency of ok jobs (seconds)"))
    print_spend(run, console)


def print_spend(run: Run, console: Console) -> None:
    """Total spend, per agent, per matrix cell and per passed conversation (or that the
    target priced nothing)."""
    total = spend(run.jobs, run.criteria).row(0, named=True)
    if not total["priced"] and total["credits"] is None:
        console.print(
            "spend: not priced (the target sent no llm_usage prices, charging or credits)"
        )
        return
    parts = []
    if total["usd"] is not None:
        per_pass = total["usd_per_pass"]
        parts.append(
            f"{money(total['usd'])} for {total['priced']} priced job(s)"
            f" ({money(total['usd_per_job'])} a job"
            + (f", {money(per_pass)} per passed conversation" if per_pass is not None else "")
            + ")"
        )
    if total["credits"] is not None:
        parts.append(money(total["credits"], "credits"))
    console.print("spend: " + "; ".join(parts), markup=False)
    groupings = [["agent_label"]]
    names = run.jobs.collect_schema().names()
    cells = [c for c in names if c.startswith("matrix.")]
    if cells:
        groupings.append(cells)
    for grouping in groupings:
        table = money_frame(spend(run.jobs, run.criteria, by=grouping))
        console.print(frame_table(table, f"spend by {', '.join(grouping)}"))


def _print_repeats(run: Run, console: Console) -> None:
    overall = flakiness(run.criteria, run.jobs, by=())
    if not overall.height or not overall["cases"][0]:
        return  # no case has two decided repeats: nothing to say about repeats
    row = overall.row(0, named=True)
    console.print(
        f"flaky: {row['flaky']} of {row['cases']} cases ({_fmt(row['flaky_share'])}) passed a"
        " criterion in one repeat and failed it in another"
    )
    repeats = repeat_pass_rates(run.criteria, run.jobs, ks=(1, 2, 3))
    wide = repeats.pivot(on="k", index="criterion_id", values=["pass_at_k", "pass_hat_k"])
    wide = wide.rename(
        {c: c.replace("pass_at_k_", "pass@").replace("pass_hat_k_", "pass^") for c in wide.columns}
    )
    console.print(frame_table(wide, "across repeats: pass@k (any of k) and pass^k (all of k)"))
    cases = flaky_cases(run.criteria, run.jobs).drop("agent_id")
    console.print(frame_table(cases, "flaky cases (S success, F failure, U unknown, E error)", 15))


def print_summary(run_dir: Path, headline: str, console: Console | None = None) -> None:
    """What ``python -m runner run`` prints when it ends: the session's headline (the caller's,
    which knows the session), then the run's tables."""
    console = console or Console()
    run = load_run(run_dir, lazy=True)
    console.print(headline)
    print_run_tables(run, console)
