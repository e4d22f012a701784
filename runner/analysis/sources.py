"""Where a criteria row comes from (its ``source``), and narrowing a run's rows to some sources.

``extra``: a criterion the runner sent; ``agent``: one of the agent's own; ``assert``: the
runner's own check of the transcript (``runner.assertions``). ``judge`` names the first two
together, with the rows of a run written before the column existed (a null ``source``, which
cannot tell ``extra`` from ``agent`` but is never an assertion).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import overload

import polars as pl

from runner.analysis.frames import Frame, lazy, names

ASSERT_SOURCE = "assert"
"""The ``source`` of an assertion's rows (``runner.assertions.SOURCE``)."""
SOURCES = ("extra", "agent", ASSERT_SOURCE)
"""The values the criteria table's ``source`` column holds."""
JUDGE = "judge"
"""``extra`` and ``agent`` (and a null ``source``): every row the vendor's judge gave."""


def is_assert(source: pl.Expr) -> pl.Expr:
    """Rows of assertions; a null ``source`` (a run without the column) is the judge's."""
    return source.eq_missing(ASSERT_SOURCE)


def check_sources(sources: Iterable[str]) -> tuple[str, ...]:
    """The sources asked for, in order, once each; ``ValueError`` (one line) naming one that
    is not a source."""
    asked = tuple(dict.fromkeys(sources))
    for source in asked:
        if source not in (*SOURCES, JUDGE):
            raise ValueError(
                f"--source: no source {source!r} (one of {', '.join(SOURCES)} or {JUDGE})"
            )
    return asked


def source_filter(sources: Sequence[str]) -> pl.Expr:
    """True on the rows of ``sources`` (``check_sources``'s names)."""
    wanted = [s for s in check_sources(sources) if s != JUDGE]
    keep = pl.col("source").is_in(wanted)
    if JUDGE in sources:
        keep = keep | ~is_assert(pl.col("source"))
    return keep.fill_null(False)


@overload
def of_sources(criteria: pl.DataFrame, sources: Sequence[str]) -> pl.DataFrame: ...
@overload
def of_sources(criteria: pl.LazyFrame, sources: Sequence[str]) -> pl.LazyFrame: ...
@overload
def of_sources(criteria: Frame, sources: Sequence[str]) -> Frame: ...
def of_sources(criteria: Frame, sources: Sequence[str]) -> Frame:
    """The criteria rows of ``sources`` (all rows when none is given), eager or lazy as given.
    Every figure computed from them (pass rates, repeats, flakiness) is then the figure of
    those sources only."""
    if not sources:
        return criteria
    keep = source_filter(sources)
    if "source" not in names(criteria):  # a run older than the column: every row the judge's
        return criteria if JUDGE in sources else criteria.clear()
    return criteria.filter(keep)


def judged_rows(criteria: Frame) -> pl.LazyFrame:
    """The judge's criteria rows (``of_sources(criteria, ["judge"])``, lazily)."""
    return of_sources(lazy(criteria), [JUDGE])
