"""One job: its conversation, criteria, attempts and the other repeats of its case."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from runner.view.queries.runs import Tables, null_safe_eq


@dataclass(frozen=True)
class JobDetail:
    job: dict[str, Any]
    matrix: dict[str, Any]
    messages: list[dict[str, Any]]
    criteria: list[dict[str, Any]]
    data_collection: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    buckets: list[dict[str, Any]]
    repeats: list[dict[str, Any]] = field(default_factory=list)


def job_detail(
    tables: Tables, job_key: str, *, case_tables: Tables | None = None
) -> JobDetail | None:
    """One job: its row, conversation, criteria, data collection, attempts, vendor buckets and
    the other repeats of its case (read from ``case_tables`` when given: tables that hold at
    least the case's jobs). None when the run has no such job."""
    key = pl.col("job_key") == job_key
    found = tables["jobs"].filter(key).collect()
    if found.height == 0:
        return None
    job = found.row(0, named=True)
    matrix = {k.removeprefix("matrix."): v for k, v in job.items() if k.startswith("matrix.")}
    messages = tables["messages"].filter(key).sort("index").collect()
    criteria = tables["criteria"].filter(key).collect()
    order = {"failure": 0, "unknown": 1, "success": 2}
    criteria_rows = sorted(
        criteria.to_dicts(), key=lambda r: (order.get(r["result"], 3), r["criterion_id"] or "")
    )
    attempts = tables["attempts"].filter(key).sort("started_at", "attempt").collect()
    return JobDetail(
        job=job,
        matrix=matrix,
        messages=messages.to_dicts(),
        criteria=criteria_rows,
        data_collection=tables["data_collection"].filter(key).collect().to_dicts(),
        attempts=attempts.to_dicts(),
        buckets=tables["buckets"].filter(key).collect().to_dicts(),
        repeats=case_repeats(tables if case_tables is None else case_tables, job),
    )


def same_case(job: Mapping[str, Any]) -> pl.Expr:
    """The jobs of ``job``'s case: the same agent, scenario and matrix cell (``job``'s
    ``matrix.*`` values)."""
    cond = (pl.col("agent_id") == job["agent_id"]) & (pl.col("scenario_id") == job["scenario_id"])
    for column in (c for c in job if c.startswith("matrix.")):
        cond = cond & null_safe_eq(column, job.get(column))
    return cond


def case_repeats(tables: Tables, job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every job of ``job``'s case (same agent, scenario and matrix cell), by repeat, with its
    failed criteria."""
    jobs = tables["jobs"]
    siblings = (
        jobs.filter(same_case(job))
        .select("job_key", "repeat", "status", "error_kind", "started_at")
        .sort("repeat", "started_at")
        .collect()
    )
    failed = (
        tables["criteria"]
        .filter(pl.col("job_key").is_in(siblings["job_key"].implode()))
        .filter(pl.col("result") == "failure")
        .group_by("job_key")
        .agg(pl.col("criterion_id").sort())
        .collect()
    )
    failures = {r["job_key"]: r["criterion_id"] for r in failed.iter_rows(named=True)}
    rows = siblings.to_dicts()
    for r in rows:
        r["failed"] = failures.get(r["job_key"], [])
    return rows
