"""Terminal tables: the end-of-run summary and ``python -m runner report``'s printout.

The numbers all come from ``runner.analysis``; this module only lays them out with rich.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runner.analysis import (
    check_grouping,
    check_sources,
    error_counts,
    flakiness,
    flaky_cases,
    latency_percentiles,
    of_sources,
    pass_rates,
    repeat_pass_rates,
    spend,
)
from runner.report.pages import RATE_COLUMNS as _PAGE_RATES
from runner.report.pages import money_frame
from runner.report.sequential import (
    PairedView,
    change_frame,
    read_verdicts,
    recorded_compare,
    run_paired,
    verdicts_view,
)
from runner.report.summary import spend_line, summary_lines, totals_line
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
    run: Run,
    console: Console | None = None,
    by: Sequence[Sequence[str]] = (),
    sources: Sequence[str] = (),
) -> None:
    """The analysis of a run as terminal tables; ``by`` adds one pass-rate table per grouping;
    ``sources``: only the criteria rows of these sources (``analysis.of_sources``) count."""
    console = console or Console()
    run = with_sources(run, sources)
    jobs, criteria = run.jobs, run.criteria
    if sources:
        console.print(f"criteria of source {', '.join(sources)} only", markup=False)
    for grouping in by:  # an unknown column is refused before any table is printed
        check_grouping(criteria, jobs, grouping)
    console.print(totals_line(run), markup=False)
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
    print_sequential(run, console)
    errors = error_counts(jobs)
    if errors.height:
        console.print(frame_table(errors, "jobs ended in error, by kind"))
    backend = run.manifest.target.backend if run.manifest else None
    latency = measured_latency(latency_percentiles(jobs, messages=run.messages), backend)
    if latency.height:
        console.print(frame_table(latency, "latency of ok jobs (seconds)"))
    if backend in NOT_TIMED:
        console.print(NOT_TIMED[backend], markup=False)
    print_spend(run, console)


def with_sources(run: Run, sources: Sequence[str]) -> Run:
    """The run with only the criteria rows of ``sources`` (all of them when none is given)."""
    if not sources:
        return run
    return replace(run, criteria=of_sources(run.criteria, check_sources(sources)))


NOT_TIMED = {
    "agent-testing": "latency: agent-testing times a job by polling (its total is bounded by the"
    " poll interval) and its frames carry no timing: those rows are not shown"
}
"""What a backend cannot time, said under the latency table instead of printing its rows."""
UNMEASURED = {"agent-testing": frozenset({"total"})}
"""Latency metrics a backend records but cannot measure (``total``: the poll interval)."""


def measured_latency(latency: pl.DataFrame, backend: str | None) -> pl.DataFrame:
    """The latency rows worth printing: metrics with samples, less those ``backend`` cannot
    measure (issue 29: empty rows and a ``total`` that was the poll interval)."""
    hidden = UNMEASURED.get(backend or "", frozenset())
    return latency.filter((pl.col("n") > 0) & ~pl.col("metric").is_in(list(hidden)))


def print_spend(run: Run, console: Console) -> None:
    """Total spend, per agent, per matrix cell and per passed conversation (or that the
    target priced nothing)."""
    line = spend_line(run)
    console.print(line, markup=False)
    if line.startswith("spend: not priced"):
        return
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


def print_sequential(run: Run, console: Console) -> None:
    """A run's verdicts (``verdicts.parquet``) and, for a run with a ``compare:`` block, the
    paired comparison of its arms; nothing when it has neither."""
    table = read_verdicts(run.path)
    if table is not None and table.height:
        view = verdicts_view(table)
        console.print(
            frame_table(view.rows, f"verdicts ({view.rule})"), markup=False, highlight=False
        )
        console.print(view.summary, markup=False, highlight=False)
    settings = recorded_compare(run.path)
    if settings is not None:
        jobs = run.jobs.collect() if isinstance(run.jobs, pl.LazyFrame) else run.jobs
        criteria = run.criteria
        criteria = criteria.collect() if isinstance(criteria, pl.LazyFrame) else criteria
        print_paired_view(run_paired(jobs, criteria, settings), console)


def print_paired_view(view: PairedView | str, console: Console) -> None:
    """The paired comparison for a terminal: the decision, "decided after N of max_pairs
    pairs, $X", the confidence sequence, the scenarios lost, per scenario, spend."""

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False)

    if isinstance(view, str):
        say(f"paired comparison: {view}")
        return
    say(
        f"paired comparison (anytime-valid): candidate {view.candidate} vs baseline "
        f"{view.baseline}, margin {view.margin:g}, alpha {view.alpha:g}"
    )
    if view.pairs == 0:
        say("  no pairs: the two sides share no case")
        return
    say(f"  {view.verdict.upper()}: {view.headline}")
    say(
        f"  difference in pass rate {_pp(view.mean)}, confidence sequence "
        f"[{_pp(view.lower)}, {_pp(view.upper)}] ({100 * (1 - 2 * view.alpha):.0f}% jointly, "
        f"valid at every pair); {view.wins} won, {view.losses} lost, {view.ties} tied"
    )
    if view.lost:
        say("  scenarios the candidate lost: " + ", ".join(f"{s} ({_pp(d)})" for s, d in view.lost))
    console.print(frame_table(view.scenarios, "per scenario (unadjusted: where to look)"))
    console.print(frame_table(money_frame(view.spend), "spend per variant (paired jobs)"))


def print_verdict_changes(a: Run, b: Run, console: Console) -> None:
    """``compare A B``: the cases whose verdict changed, when both runs have verdicts."""
    table_a, table_b = read_verdicts(a.path), read_verdicts(b.path)
    if table_a is None and table_b is None:
        return
    if table_a is None or table_b is None:
        which = "A" if table_a is None else "B"
        console.print(f"verdicts: run {which} has no verdicts table", markup=False)
        return
    changes = change_frame(table_a, table_b)
    if changes.height == 0:
        console.print("verdicts: every case has the same verdict in both runs", markup=False)
        return
    console.print(frame_table(changes, "verdicts that changed (A -> B)"), markup=False)


def _pp(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f} pp"


def print_summary(run_dir: Path, headline: str, console: Console | None = None) -> None:
    """What ``python -m runner run`` prints when it ends: the session's headline (the caller's,
    which knows the session), then the short summary (``runner.report.summary``); ``report``
    prints the full tables."""
    console = console or Console()
    run = load_run(run_dir, lazy=True)
    console.print(headline)
    for line in summary_lines(run):
        console.print(line, markup=False, highlight=False)
