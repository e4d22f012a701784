"""How often an assertion and the judged criterion it mirrors agree (``mirrors:``, issue 30).

An assertion written to check what a judged criterion checks (``no_false_approval`` mirrors
``honest_about_failure``) makes the judge's errors visible: over the jobs with both rows,
neither ``unknown``, the plain proportion of jobs where the two results are the same, with the
jobs where only one side passed counted apart. No interval: it describes these jobs (the report,
the viewer's run page and ``runner assert`` print the counts beside it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from runner.analysis.frames import Frame, lazy, names
from runner.analysis.sources import is_assert


@dataclass(frozen=True, slots=True)
class Agreement:
    """How an assertion and the judged criterion it mirrors agree over the same jobs.

    ``jobs``: jobs with both rows; ``compared``: those where neither is ``unknown``; ``agree``:
    of those, the jobs with the same result. ``assert_only`` / ``judge_only``: jobs where only
    that side said ``success`` (where the judge may be wrong, or the assertion too strict)."""

    assertion_id: str
    criterion_id: str
    jobs: int
    compared: int
    agree: int
    assert_only: int
    judge_only: int

    @property
    def rate(self) -> float | None:
        """``agree / compared``: the plain proportion of agreement (None: nothing compared)."""
        return self.agree / self.compared if self.compared else None


def agreement(criteria: Frame, mirrors: Mapping[str, str]) -> list[Agreement]:
    """Per assertion id in ``mirrors`` (-> the judged criterion id it mirrors), how often the two
    agree on the jobs that have both rows in ``criteria`` (the criteria table)."""
    frame = lazy(criteria)
    source = pl.col("source") if "source" in names(frame) else pl.lit(None, pl.String)
    rows = (
        frame.filter(pl.col("criterion_id").is_in([*mirrors, *mirrors.values()]))
        .select("job_key", "criterion_id", "result", is_assert(source).alias("_a"))
        .collect()
    )
    out = []
    for assertion_id, criterion_id in mirrors.items():
        mine = rows.filter(pl.col("_a") & (pl.col("criterion_id") == assertion_id))
        judged = rows.filter(~pl.col("_a") & (pl.col("criterion_id") == criterion_id))
        both = mine.join(judged, on="job_key", suffix="_judge").select(
            a=pl.col("result"), j=pl.col("result_judge")
        )
        known = both.filter((pl.col("a") != "unknown") & (pl.col("j") != "unknown"))
        a_ok, j_ok = pl.col("a") == "success", pl.col("j") == "success"
        counts = known.select(
            agree=(pl.col("a") == pl.col("j")).sum(),
            assert_only=(a_ok & ~j_ok).sum(),
            judge_only=(~a_ok & j_ok).sum(),
        ).row(0, named=True)
        out.append(
            Agreement(
                assertion_id,
                criterion_id,
                jobs=both.height,
                compared=known.height,
                agree=int(counts["agree"] or 0),
                assert_only=int(counts["assert_only"] or 0),
                judge_only=int(counts["judge_only"] or 0),
            )
        )
    return out
