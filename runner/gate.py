"""The ``check`` gate for CI: pass-rate and error-rate thresholds over a run, and JUnit XML.

Pure: frames in, a ``GateResult`` out; ``junit_xml`` renders it as text. The command line
(``python -m runner check``) only reads the run, calls ``evaluate`` and writes the files.

A gated group with no decided outcome (every result ``unknown``, or every job errored) can
neither pass nor fail: saying it passed would be a lie, so it is reported as *not judged*
and has its own exit code.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from runner.analysis import (
    CONVERSATION,
    Frame,
    conversation_verdicts,
    error_rates,
    pass_rates,
    spend,
)

EXIT_PASSED = 0
"""Every gate holds."""
EXIT_FAILED = 1
"""At least one gate does not hold (a pass rate below the minimum, too many errors, or a
spend over the maximum)."""
EXIT_NOT_JUDGED = 3
"""No gate failed, but at least one group had no decided outcome to judge."""
# 2 (bad input: arguments, no run directory, unknown criterion) is the command line's.

BY_ALIASES = {"scenario": "scenario_id", "agent": "agent_label", "criterion": "criterion_id"}


class GateError(ValueError):
    """The gate was asked something the run cannot answer (e.g. an unknown criterion)."""


@dataclass(frozen=True)
class GateCase:
    """One judged group: a JUnit test case."""

    suite: str
    name: str
    status: str  # "passed" | "failed" | "not_judged"
    message: str
    value: float | None = None
    threshold: float | None = None
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class GateResult:
    cases: tuple[GateCase, ...]

    @property
    def failed(self) -> tuple[GateCase, ...]:
        return tuple(c for c in self.cases if c.status == "failed")

    @property
    def not_judged(self) -> tuple[GateCase, ...]:
        return tuple(c for c in self.cases if c.status == "not_judged")

    @property
    def exit_code(self) -> int:
        if self.failed:
            return EXIT_FAILED
        if self.not_judged:
            return EXIT_NOT_JUDGED
        return EXIT_PASSED


def resolve_by(by: Sequence[str]) -> list[str]:
    """``scenario`` -> ``scenario_id``, ``agent`` -> ``agent_label``; other names as given."""
    return [BY_ALIASES.get(b, b) for b in by if BY_ALIASES.get(b, b) != "criterion_id"]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def with_conversation(criteria: Frame, jobs: Frame) -> pl.DataFrame:
    """The criteria rows and a ``conversation_passed`` row per judged job (the recorded
    verdict, ``runner.analysis.conversation``), so a gate may name it like a criterion; a run
    whose criteria already hold such an id is left as it is."""
    rows = criteria.lazy().collect() if isinstance(criteria, pl.LazyFrame) else criteria
    if CONVERSATION in set(rows["criterion_id"].to_list()):
        return rows
    return pl.concat([rows, conversation_verdicts(rows, jobs)], how="diagonal_relaxed")


def evaluate(
    criteria: Frame,
    jobs: Frame,
    *,
    min_pass_rate: float | None = None,
    criterion_ids: Sequence[str] = (),
    use_lower_bound: bool = False,
    max_error_rate: float | None = None,
    by: Sequence[str] = (),
    max_cost: float | None = None,
    max_credits: float | None = None,
    criterion_minimums: Mapping[str, float] | None = None,
    min_overall_pass_rate: float | None = None,
) -> GateResult:
    """Judge a run: one case per criterion (x each ``by`` group) and one for the error rate.

    A criterion case passes when its pass rate (or, with ``use_lower_bound``, the lower end
    of its 95% Wilson interval) is at least ``min_pass_rate``. The error-rate case passes
    when the share of jobs that ended in error is at most ``max_error_rate``. The cost cases
    pass when the run's spend (``jobs.cost_usd`` in USD, ``credits_used`` in credits, every
    session's jobs) is at most ``max_cost`` / ``max_credits``; a run the vendor priced
    nothing of cannot be judged.

    ``criterion_minimums`` (the config's ``gate.criteria``) gives named criteria their own
    minimum, over ``min_pass_rate``; either may name ``conversation_passed``, the recorded
    conversation-level verdict (``with_conversation``), on any backend.
    ``min_overall_pass_rate`` gates all criteria pooled (one case, not grouped by ``by``).
    """
    minimums = dict(criterion_minimums or {})
    limits = (min_pass_rate, max_error_rate, max_cost, max_credits, min_overall_pass_rate)
    if all(v is None for v in limits) and not minimums:
        raise GateError(
            "nothing to check: give a minimum pass rate, a maximum error rate and/or a maximum cost"
        )
    for name, value in (("max_cost", max_cost), ("max_credits", max_credits)):
        if value is not None and not (value >= 0 and math.isfinite(value)):
            raise GateError(f"{name} must be a number >= 0, got {value}")
    rates_given = [
        ("min_pass_rate", min_pass_rate),
        ("max_error_rate", max_error_rate),
        ("min_pass_rate_overall", min_overall_pass_rate),
        *((f"criteria.{k}", v) for k, v in minimums.items()),
    ]
    for name, value in rates_given:
        if value is not None and not (0.0 <= value <= 1.0 and math.isfinite(value)):
            raise GateError(f"{name} must be between 0 and 1, got {value}")
    groups = resolve_by(by)
    jobs_names = (jobs.lazy() if isinstance(jobs, pl.DataFrame) else jobs).collect_schema()
    unknown_cols = [g for g in groups if g not in jobs_names.names()]
    if unknown_cols:
        raise GateError(f"cannot group by {', '.join(unknown_cols)}: no such jobs column")
    cases: list[GateCase] = []
    if min_pass_rate is not None or minimums:
        named = criteria
        if CONVERSATION in {*criterion_ids, *minimums}:
            named = with_conversation(criteria, jobs)
        rates = pass_rates(named, jobs, by=[*groups, "criterion_id"]).filter(
            pl.col("criterion_id").is_not_null()
        )
        known = set(rates["criterion_id"].to_list())
        wanted = list(dict.fromkeys([*criterion_ids, *minimums]))
        if min_pass_rate is not None and minimums and not criterion_ids:
            wanted = []  # every criterion, the named ones at their own minimum
        missing = [c for c in wanted if c not in known]
        if missing:
            raise GateError(
                f"no such criterion in this run: {', '.join(missing)}"
                f" (it has: {', '.join(sorted(known)) or 'none'})"
            )
        if wanted:
            rates = rates.filter(pl.col("criterion_id").is_in(wanted))
        for row in rates.iter_rows(named=True):
            minimum = minimums.get(row["criterion_id"], min_pass_rate)
            if minimum is not None:
                cases.append(_criterion_case(row, groups, minimum, use_lower_bound))
        if rates.height == 0:  # nothing was judged at all: that is not a pass
            cases.append(
                GateCase(
                    "pass rate",
                    "criteria",
                    "not_judged",
                    "the run has no criteria results",
                    None,
                    min_pass_rate if min_pass_rate is not None else min(minimums.values()),
                )
            )
    if min_overall_pass_rate is not None:
        pooled = pass_rates(criteria, jobs, by=()).row(0, named=True)
        pooled["criterion_id"] = "all criteria pooled"
        cases.append(_criterion_case(pooled, [], min_overall_pass_rate, use_lower_bound, "overall"))
    if max_error_rate is not None:
        for row in error_rates(jobs).iter_rows(named=True):
            cases.append(_error_case(row, max_error_rate))
    if max_cost is not None or max_credits is not None:
        total = spend(jobs).row(0, named=True)
        if max_cost is not None:
            cases.append(_cost_case(total, "usd", max_cost))
        if max_credits is not None:
            cases.append(_cost_case(total, "credits", max_credits))
    return GateResult(tuple(cases))


def _money(value: float, unit: str) -> str:
    return f"${value:,.4f}" if unit == "usd" else f"{value:,.0f} credits"


def _cost_case(total: dict[str, Any], unit: str, maximum: float) -> GateCase:
    name = "total spend (USD)" if unit == "usd" else "total spend (credits)"
    spent = total[unit]
    jobs = int(total["jobs"])
    counts = {"jobs": jobs, "priced": int(total["priced"])}
    if spent is None:
        return GateCase(
            "cost",
            name,
            "not_judged",
            f"no cost data: the vendor priced none of the {jobs} job(s) in {unit}",
            None,
            maximum,
            counts,
        )
    detail = f"spent {_money(spent, unit)} over {jobs} job(s)"
    if unit == "usd" and total["priced"] < jobs:
        detail += f" ({jobs - total['priced']} unpriced)"
    if spent <= maximum:
        return GateCase(
            "cost", name, "passed", f"{detail} <= {_money(maximum, unit)}", spent, maximum, counts
        )
    return GateCase(
        "cost", name, "failed", f"{detail} > {_money(maximum, unit)}", spent, maximum, counts
    )


def _criterion_case(
    row: dict[str, Any],
    groups: list[str],
    minimum: float,
    use_lower_bound: bool,
    suite: str = "pass rate",
) -> GateCase:
    counts = {k: int(row[k] or 0) for k in ("success", "failure", "unknown", "errors")}
    suite = " / ".join(f"{g}={row[g]}" for g in groups) or suite
    name = str(row["criterion_id"])
    decided = counts["success"] + counts["failure"]
    tally = (
        f"{counts['success']}/{decided} passed, {counts['unknown']} unknown,"
        f" {counts['errors']} job error(s)"
    )
    if decided == 0:
        return GateCase(
            suite, name, "not_judged", f"no decided outcome: {tally}", None, minimum, counts
        )
    rate = float(row["pass_rate"])
    low, high = float(row["ci_low"]), float(row["ci_high"])
    value = low if use_lower_bound else rate
    interval = f"95% CI {_pct(low)}-{_pct(high)}"
    if use_lower_bound:
        detail = f"95% lower bound {_pct(value)} (pass rate {_pct(rate)}, {interval}; {tally})"
    else:
        detail = f"pass rate {_pct(rate)} ({interval}; {tally})"
    if value >= minimum:
        return GateCase(
            suite, name, "passed", f"{detail} >= {_pct(minimum)}", value, minimum, counts
        )
    return GateCase(suite, name, "failed", f"{detail} < {_pct(minimum)}", value, minimum, counts)


def _error_case(row: dict[str, Any], maximum: float) -> GateCase:
    jobs, errors = int(row["jobs"]), int(row["errors"])
    counts = {"jobs": jobs, "errors": errors}
    if jobs == 0:
        return GateCase(
            "errors", "job error rate", "not_judged", "no jobs in the run", None, maximum, counts
        )
    rate = errors / jobs
    detail = f"error rate {_pct(rate)} ({errors}/{jobs} jobs ended in error)"
    if rate <= maximum:
        return GateCase(
            "errors",
            "job error rate",
            "passed",
            f"{detail} <= {_pct(maximum)}",
            rate,
            maximum,
            counts,
        )
    return GateCase(
        "errors", "job error rate", "failed", f"{detail} > {_pct(maximum)}", rate, maximum, counts
    )


def junit_xml(result: GateResult, name: str = "runner check") -> str:
    """JUnit XML: one ``testsuite`` per suite, one ``testcase`` per case.

    A failed gate is a ``<failure>``; a case that could not be judged is ``<skipped>`` with
    the reason (and still makes ``check`` exit non-zero).
    """
    root = ET.Element(
        "testsuites",
        name=name,
        tests=str(len(result.cases)),
        failures=str(len(result.failed)),
        errors="0",
        skipped=str(len(result.not_judged)),
    )
    suites: dict[str, ET.Element] = {}
    for case in result.cases:
        suite = suites.get(case.suite)
        if suite is None:
            suite = ET.SubElement(root, "testsuite", name=case.suite)
            suites[case.suite] = suite
        element = ET.SubElement(suite, "testcase", classname=case.suite, name=case.name)
        if case.status == "failed":
            ET.SubElement(element, "failure", message=case.message, type="gate").text = case.message
        elif case.status == "not_judged":
            ET.SubElement(element, "skipped", message=case.message)
        else:
            ET.SubElement(element, "system-out").text = case.message
    for suite_name, suite in suites.items():
        members = [c for c in result.cases if c.suite == suite_name]
        suite.set("tests", str(len(members)))
        suite.set("failures", str(sum(c.status == "failed" for c in members)))
        suite.set("errors", "0")
        suite.set("skipped", str(sum(c.status == "not_judged" for c in members)))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
