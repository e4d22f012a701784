"""The ``--json`` output of ``report``, ``compare`` and ``check``: one documented shape each,
defined here only (pydantic models: ``model_json_schema()`` documents them, the tests validate
the output against them), and built from the same frames the tables print.

Rates are shares in 0..1, intervals 95% (Wilson for a pass rate, Newcombe for a difference);
money is a number in its unit (``usd`` or ``credits``), never formatted text. Rows that carry
grouping columns (``--by``) keep them as extra keys beside the fixed ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict

from runner.analysis import (
    VERDICTS,
    check_sources,
    error_counts,
    error_rates,
    flakiness,
    of_sources,
    pass_rates,
    spend,
)
from runner.gate import GateResult
from runner.store import Run

SHAPE_VERSION = 1
"""Bumped when a field changes meaning or goes away (new fields do not bump it)."""


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Grouped(BaseModel):
    """A row that may carry grouping columns (``--by``) as extra keys."""

    model_config = ConfigDict(extra="allow")


class Totals(_Closed):
    jobs: int
    ok: int
    errors: int
    error_rate: float | None
    retries: int


class PassRate(_Grouped):
    """One group's outcomes: pass rate = success / (success + failure)."""

    success: int
    failure: int
    unknown: int
    errors: int | None
    pass_rate: float | None
    ci_low: float | None
    ci_high: float | None


class ErrorKind(_Closed):
    error_kind: str | None
    jobs: int


class Spend(_Closed):
    jobs: int
    priced: int
    usd: float | None
    credits: float | None
    usd_per_job: float | None
    passed: int
    usd_per_pass: float | None
    credits_per_pass: float | None


class Flakiness(_Closed):
    cases: int
    """Cases with at least two decided repeats."""
    flaky: int
    """Of those, cases that passed a criterion in one repeat and failed it in another."""


class Grouping(_Closed):
    by: list[str]
    rows: list[PassRate]


class ReportJSON(_Closed):
    """``report --json``."""

    shape: int = SHAPE_VERSION
    run: str
    totals: Totals
    pass_rate: PassRate
    """All criteria pooled."""
    criteria: list[PassRate]
    """Per criterion (``criterion_id`` in each row)."""
    agents: list[PassRate]
    """Per agent (``agent_label`` in each row)."""
    sources: list[str] = []
    """``--source``: the criteria sources every figure reads (empty: all)."""
    groupings: list[Grouping]
    """One per ``--by``."""
    flakiness: Flakiness | None
    errors: list[ErrorKind]
    spend: Spend


class CompareRow(_Grouped):
    """One group's change from A to B (``criterion_id`` and any ``--by`` columns as keys)."""

    a_n: int | None
    a_pass_rate: float | None
    b_n: int | None
    b_pass_rate: float | None
    diff: float | None
    diff_low: float | None
    diff_high: float | None
    p_value: float | None
    verdict: str


class SpendChange(_Closed):
    measure: str
    unit: str
    a: float | None
    b: float | None
    diff: float | None
    ratio: float | None


class CompareJSON(_Closed):
    """``compare --json``."""

    shape: int = SHAPE_VERSION
    a: str
    b: str
    by: list[str]
    rows: list[CompareRow]
    verdicts: dict[str, int]
    """How many groups got each verdict (every verdict, zeros included)."""
    spend: list[SpendChange]


class CheckCase(_Closed):
    suite: str
    name: str
    status: str
    """``passed``, ``failed`` or ``not_judged``."""
    message: str
    value: float | None
    threshold: float | None
    counts: dict[str, int]


class CheckJSON(_Closed):
    """``check --json``."""

    shape: int = SHAPE_VERSION
    run: str
    exit_code: int
    failed: int
    not_judged: int
    cases: list[CheckCase]


SHAPES: dict[str, type[BaseModel]] = {
    "report": ReportJSON,
    "compare": CompareJSON,
    "check": CheckJSON,
}


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [dict(row) for row in frame.iter_rows(named=True)]


def report_json(
    run: Run, by: list[list[str]] | None = None, sources: Sequence[str] = ()
) -> ReportJSON:
    criteria, jobs = of_sources(run.criteria, check_sources(sources)), run.jobs
    per_criterion = pass_rates(criteria, jobs, by=("criterion_id",))
    flaky = flakiness(criteria, jobs, by=())
    total = spend(jobs, criteria).row(0, named=True)
    totals = error_rates(jobs).row(0, named=True)
    return ReportJSON(
        run=str(run.path),
        sources=list(sources),
        totals=Totals(**{k: totals[k] for k in Totals.model_fields}),
        pass_rate=PassRate(**pass_rates(criteria, jobs, by=()).row(0, named=True)),
        criteria=[PassRate(**r) for r in _rows(per_criterion)],
        agents=[PassRate(**r) for r in _rows(pass_rates(criteria, jobs, by=("agent_label",)))],
        groupings=[
            Grouping(
                by=list(g), rows=[PassRate(**r) for r in _rows(pass_rates(criteria, jobs, by=g))]
            )
            for g in by or []
        ],
        flakiness=(
            Flakiness(cases=int(flaky["cases"][0]), flaky=int(flaky["flaky"][0]))
            if flaky.height
            else None
        ),
        errors=[ErrorKind(**r) for r in _rows(error_counts(jobs))],
        spend=Spend(**{k: total.get(k) for k in Spend.model_fields}),
    )


def compare_json(
    a: str, b: str, by: list[str], table: pl.DataFrame, costs: pl.DataFrame
) -> CompareJSON:
    counts = dict(table["verdict"].value_counts().iter_rows()) if table.height else {}
    return CompareJSON(
        a=a,
        b=b,
        by=by,
        rows=[CompareRow(**r) for r in _rows(table)],
        verdicts={v: int(counts.get(v, 0)) for v in VERDICTS},
        spend=[
            SpendChange(
                unit="credits" if r["measure"].startswith("credits") else "usd",
                **{k: r.get(k) for k in ("measure", "a", "b", "diff", "ratio")},
            )
            for r in _rows(costs)
        ],
    )


def check_json(run: str, result: GateResult) -> CheckJSON:
    return CheckJSON(
        run=run,
        exit_code=result.exit_code,
        failed=len(result.failed),
        not_judged=len(result.not_judged),
        cases=[
            CheckCase(
                suite=c.suite,
                name=c.name,
                status=c.status,
                message=c.message,
                value=c.value,
                threshold=c.threshold,
                counts=dict(c.counts),
            )
            for c in result.cases
        ],
    )
