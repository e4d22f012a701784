"""Frame helpers every statistic shares: lazy or eager in, the column names, sorted groups,
and what identifies a case."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

Frame = pl.DataFrame | pl.LazyFrame

CASE_COLUMNS = ("agent_id", "scenario_id")
"""With the ``matrix.*`` columns, what identifies a case (the repeats of one job)."""


def lazy(frame: Frame) -> pl.LazyFrame:
    return frame.lazy() if isinstance(frame, pl.DataFrame) else frame


def names(frame: Frame) -> list[str]:
    return lazy(frame).collect_schema().names()


def group(frame: pl.LazyFrame, by: Sequence[str], *aggs: pl.Expr) -> pl.LazyFrame:
    """``group_by(by).agg(...)`` sorted by the groups; one row over everything when by is empty."""
    if not by:
        return frame.select(*aggs)
    return frame.group_by(list(by)).agg(*aggs).sort(list(by), nulls_last=True)


def case_columns(jobs: Frame) -> list[str]:
    """The columns that identify a case in these jobs: agent, scenario and the matrix axes."""
    return [*CASE_COLUMNS, *(n for n in names(jobs) if n.startswith("matrix."))]
