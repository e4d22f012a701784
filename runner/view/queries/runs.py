"""A run's totals, progress and its line on the runs page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from runner import analysis
from runner.manifest import Manifest

Tables = Mapping[str, pl.LazyFrame]

RESULTS = analysis.RESULTS


def matrix_columns(frame: pl.LazyFrame) -> list[str]:
    return [c for c in frame.collect_schema().names() if c.startswith("matrix.")]


def decided_rate(success: int, failure: int) -> float | None:
    """success / (success + failure); None when nothing was decided."""
    return success / (success + failure) if success + failure else None


def null_safe_eq(column: str, value: str | None) -> pl.Expr:
    return pl.col(column).is_null() if value is None else pl.col(column) == value


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
        return decided_rate(self.success, self.failure)

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


def _newest(started: str, name: str) -> tuple[bool, str, str]:
    return (started != "", started, name)


def newest_first(rows: Sequence[RunRow]) -> list[RunRow]:
    """The runs page's order: the latest started first; runs with no start time last."""
    return sorted(rows, key=lambda r: _newest(r.started, r.name), reverse=True)


def newest_names(manifests: Mapping[str, Manifest | None]) -> list[str]:
    """Run names in ``newest_first`` order, from their manifests alone (the compare picker)."""
    started = {n: m.created_at.isoformat() if m else "" for n, m in manifests.items()}
    return sorted(started, key=lambda n: _newest(started[n], n), reverse=True)
