"""The short end-of-run summary: a handful of lines a person reads at the end of a run.

``report`` prints the full tables; a run ends with this instead (issue 29: a run of the example
printed 84 lines). Totals, the pooled pass rate and per agent, the lowest criteria, flaky
cases, errors by kind and spend; each line figures from ``runner.analysis``.
"""

from __future__ import annotations

import polars as pl

from runner.analysis import error_counts, error_rates, flakiness, pass_rates, spend
from runner.estimate import money
from runner.store import Run

WORST = 5
"""How many criteria the summary lists (the lowest pass rates)."""
ERROR_KINDS = 4
"""How many error kinds the errors line names before ``...``."""
MAX_AGENTS = 6
"""Past this many agents the per-agent line names the lowest ones only."""


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _interval(row: dict[str, object]) -> str:
    low, high = row.get("ci_low"), row.get("ci_high")
    if not isinstance(low, float) or not isinstance(high, float):
        return ""
    return f" [{low:.2f}, {high:.2f}]"


def totals_line(run: Run) -> str:
    row = error_rates(run.jobs).row(0, named=True)
    return (
        f"run totals: {row['jobs']} job(s): {row['ok']} ok, {row['errors']} error"
        f" ({_rate(row['error_rate'])}), {row['retries']} retries"
    )


def pass_rate_lines(run: Run, worst: int = WORST) -> list[str]:
    """The pooled pass rate, per agent on one line, and the ``worst`` lowest criteria."""
    per_criterion = pass_rates(run.criteria, run.jobs, by=("criterion_id",)).filter(
        pl.col("criterion_id").is_not_null()
    )
    if not per_criterion.height:
        return ["pass rates: no criterion was judged"]
    pooled = pass_rates(run.criteria, run.jobs, by=()).row(0, named=True)
    lines = [
        f"pass rate, all criteria pooled: {_rate(pooled['pass_rate'])}{_interval(pooled)}"
        f" ({pooled['success']} of {pooled['success'] + pooled['failure']} decided;"
        f" {pooled['unknown']} unknown, 95% Wilson interval)"
    ]
    agents = pass_rates(run.criteria, run.jobs, by=("agent_label",)).sort(
        "pass_rate", nulls_last=True
    )
    if agents.height > 1:
        shown = agents.head(MAX_AGENTS)
        more = f", ... {agents.height - MAX_AGENTS} more" if agents.height > MAX_AGENTS else ""
        lines.append(
            "per agent: "
            + ", ".join(
                f"{r['agent_label']} {_rate(r['pass_rate'])}" for r in shown.iter_rows(named=True)
            )
            + more
        )
    ordered = per_criterion.sort(["pass_rate", "criterion_id"], nulls_last=True)
    shown = ordered.head(worst)
    rest = "" if ordered.height <= worst else f"; {ordered.height - worst} more in `report`"
    lines.append(f"lowest pass rates ({shown.height} of {ordered.height} criteria{rest}):")
    width = max(len(str(r)) for r in shown["criterion_id"])
    for row in shown.iter_rows(named=True):
        decided = row["success"] + row["failure"]
        extra = "".join(
            f", {row[k]} {k}" for k in ("unknown", "errors") if isinstance(row[k], int) and row[k]
        )
        lines.append(
            f"  {row['criterion_id']:<{width}}  {_rate(row['pass_rate'])}{_interval(row)}"
            f"  {row['success']} of {decided} passed{extra}"
        )
    return lines


def flaky_line(run: Run) -> str | None:
    overall = flakiness(run.criteria, run.jobs, by=())
    if not overall.height or not overall["cases"][0]:
        return None  # no case has two decided repeats
    row = overall.row(0, named=True)
    return (
        f"flaky: {row['flaky']} of {row['cases']} cases passed a criterion in one repeat and"
        " failed it in another"
    )


def errors_line(run: Run) -> str:
    counts = error_counts(run.jobs)
    if not counts.height:
        return "errors: none"
    total = int(counts["jobs"].sum())
    kinds = [
        f"{r['error_kind']} {r['jobs']}" for r in counts.head(ERROR_KINDS).iter_rows(named=True)
    ]
    more = ", ..." if counts.height > ERROR_KINDS else ""
    return f"errors: {total} job(s) ended in error: {', '.join(kinds)}{more}"


def spend_line(run: Run) -> str:
    """Total spend with its currency (or that the target priced nothing)."""
    total = spend(run.jobs, run.criteria).row(0, named=True)
    if not total["priced"] and total["credits"] is None:
        return "spend: not priced (the target sent no llm_usage prices, charging or credits)"
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
    return "spend: " + "; ".join(parts)


def summary_lines(run: Run, worst: int = WORST) -> list[str]:
    """The summary a run ends with, and where the full tables are."""
    lines = [totals_line(run), *pass_rate_lines(run, worst)]
    flaky = flaky_line(run)
    if flaky is not None:
        lines.append(flaky)
    lines += [errors_line(run), spend_line(run)]
    if run.manifest is not None and run.manifest.target.backend == "agent-testing":
        lines.append(
            "note: agent-testing gives one success_conditions verdict per conversation, not the"
            " agent's criteria; compare with a simulate run on conversation_passed"
        )
    lines.append(f"full tables: python -m runner report {run.path}")
    return lines
