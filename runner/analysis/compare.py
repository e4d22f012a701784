"""Comparing two runs (or two slices of one): the change in pass rate per group, and per case.

One rule judges every difference, in ``compare`` on the command line, its HTML page and the
viewer's compare page: ``diff`` = rate_b - rate_a with its 95% Newcombe interval (method 10,
see ``runner.analysis.intervals``); ``regression`` when the whole interval is below 0,
``improvement`` when above, ``no significant change`` when it spans 0, ``insufficient data``
when a side has no decided outcome. Each group is judged at 95% on its own: with many groups,
expect about one in twenty to be flagged by chance.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from runner.analysis.conversation import CONVERSATION, conversation_verdicts
from runner.analysis.counts import COUNTS, errored_counts, judged_counts, rates_from
from runner.analysis.frames import Frame, case_columns
from runner.analysis.intervals import Z95, newcombe_bounds, two_proportion_p_value

VERDICTS = ("regression", "improvement", "no significant change", "insufficient data")

_COMPARE_COLUMNS: tuple[tuple[str, pl.DataType], ...] = (
    ("a_n", pl.Int64()),
    ("a_pass_rate", pl.Float64()),
    ("b_n", pl.Int64()),
    ("b_pass_rate", pl.Float64()),
    ("diff", pl.Float64()),
    ("diff_low", pl.Float64()),
    ("diff_high", pl.Float64()),
    ("p_value", pl.Float64()),
    ("verdict", pl.String()),
)


def judged_difference(frame: pl.LazyFrame, z: float = Z95) -> pl.LazyFrame:
    """``frame`` (``a_success``, ``a_failure``, ``b_success``, ``b_failure``; null for a side
    that has no such group) with each side's decided outcomes ``a_n`` / ``b_n`` and pass rate,
    ``diff``, its interval ``diff_low`` / ``diff_high`` and the ``verdict``."""
    sa, sb = pl.col("a_success").fill_null(0), pl.col("b_success").fill_null(0)
    na = (sa + pl.col("a_failure").fill_null(0)).cast(pl.Int64)
    nb = (sb + pl.col("b_failure").fill_null(0)).cast(pl.Int64)
    low, high = newcombe_bounds(sa, na, sb, nb, z)
    rate_a = pl.when(na > 0).then(sa.cast(pl.Float64) / na)
    rate_b = pl.when(nb > 0).then(sb.cast(pl.Float64) / nb)
    valid = (na > 0) & (nb > 0)
    return frame.with_columns(
        na.alias("a_n"),
        rate_a.alias("a_pass_rate"),
        nb.alias("b_n"),
        rate_b.alias("b_pass_rate"),
        pl.when(valid).then(rate_b - rate_a).alias("diff"),
        low.alias("diff_low"),
        high.alias("diff_high"),
    ).with_columns(
        pl.when(~valid)
        .then(pl.lit("insufficient data"))
        .when(pl.col("diff_high") < 0)
        .then(pl.lit("regression"))
        .when(pl.col("diff_low") > 0)
        .then(pl.lit("improvement"))
        .otherwise(pl.lit("no significant change"))
        .alias("verdict")
    )


def compare_pass_rates(
    a: pl.DataFrame, b: pl.DataFrame, by: Sequence[str] = ("criterion_id",), z: float = Z95
) -> pl.DataFrame:
    """Change in pass rate from ``a`` to ``b`` (two ``pass_rates`` frames grouped by ``by``).

    Per group: each side's decided outcomes and rate, ``diff`` = rate_b - rate_a with its
    Newcombe interval, the two-proportion test's p-value and the ``verdict`` (module
    docstring).
    """
    keys = list(by)
    left = a.select(*keys, *COUNTS).rename({c: f"a_{c}" for c in COUNTS})
    right = b.select(*keys, *COUNTS).rename({c: f"b_{c}" for c in COUNTS})
    joined = left.join(right, on=keys, how="full", coalesce=True, nulls_equal=True)
    if keys:
        joined = joined.sort(keys, nulls_last=True)
    frame = judged_difference(joined.lazy(), z).collect()
    p_values = [
        two_proportion_p_value(sa or 0, na, sb or 0, nb) if na and nb else None
        for sa, na, sb, nb in frame.select("a_success", "a_n", "b_success", "b_n").iter_rows()
    ]
    frame = frame.with_columns(pl.Series("p_value", p_values, dtype=pl.Float64))
    return frame.select(*keys, *(pl.col(n).cast(t) for n, t in _COMPARE_COLUMNS))


def compare_counts(
    a_judged: pl.DataFrame,
    a_errored: pl.DataFrame,
    b_judged: pl.DataFrame,
    b_errored: pl.DataFrame,
    by: Sequence[str] = ("criterion_id",),
    z: float = Z95,
) -> pl.DataFrame:
    """``compare_pass_rates`` of two runs' counts (``judged_counts`` and ``errored_counts``).

    Errored jobs whose criteria are unknown (null ``criterion_id``) have no pass rate to
    compare and are left out.
    """

    def rates(judged: pl.DataFrame, errored: pl.DataFrame) -> pl.DataFrame:
        table = rates_from(judged, errored, by, z)
        if "criterion_id" in by:
            table = table.filter(pl.col("criterion_id").is_not_null())
        return table

    return compare_pass_rates(rates(a_judged, a_errored), rates(b_judged, b_errored), by, z)


def compare_runs(
    a_criteria: Frame,
    a_jobs: Frame,
    b_criteria: Frame,
    b_jobs: Frame,
    by: Sequence[str] = ("criterion_id",),
    z: float = Z95,
) -> pl.DataFrame:
    """``compare_counts`` of two runs' frames (or two slices of one, e.g. two agents)."""
    return compare_counts(
        judged_counts(a_criteria, a_jobs, by),
        errored_counts(a_jobs, by),
        judged_counts(b_criteria, b_jobs, by),
        errored_counts(b_jobs, by),
        by,
        z,
    )


CASE_ORDER = (
    "regression",
    "improvement",
    "lower",
    "higher",
    "only in A",
    "only in B",
    "unchanged",
)
"""How ``compare_cases`` orders its rows (its ``kind``): the significant changes, then the
raw differences within the noise, then the cases one run lacks, then the rest."""


def compare_cases(a: pl.DataFrame, b: pl.DataFrame, z: float = Z95) -> pl.DataFrame:
    """Every case x criterion of either run (``a`` and ``b``: each run's ``case_trials``,
    compared over the case columns both have) with both sides' counts, pass rates, ``diff``,
    its interval and ``verdict`` (as ``compare_pass_rates`` judges a group), and ``kind``: the
    verdict when significant, else the raw direction (``lower`` / ``higher``), ``only in A`` /
    ``only in B``, or ``unchanged``. A raw difference is not a verdict: 3/3 -> 2/3 is
    ``lower`` with ``no significant change``. Sorted by ``CASE_ORDER``, the largest drop
    first."""
    shared = [c for c in case_columns(a) if c in b.columns]
    cases = [*shared[:2], *sorted(shared[2:])]
    keys = [*cases, "criterion_id"]

    def side(trials: pl.DataFrame, name: str) -> pl.LazyFrame:
        frame = trials.lazy()
        if set(case_columns(trials)) != set(cases):  # a matrix axis the other run lacks
            frame = frame.group_by(keys).agg(
                pl.col("agent_label").first(),
                *(pl.col(c).sum().cast(pl.UInt32) for c in COUNTS),
            )
        return frame.select(*keys, "agent_label", *COUNTS).rename(
            {c: f"{name}_{c}" for c in [*COUNTS, "agent_label"]}
        )

    joined = side(a, "a").join(side(b, "b"), on=keys, how="full", coalesce=True, nulls_equal=True)
    only_a, only_b = pl.col("b_success").is_null(), pl.col("a_success").is_null()
    kind = (
        pl.when(only_b)
        .then(pl.lit("only in B"))
        .when(only_a)
        .then(pl.lit("only in A"))
        .when(pl.col("verdict").is_in(["regression", "improvement"]))
        .then(pl.col("verdict"))
        .when(pl.col("diff") < 0)
        .then(pl.lit("lower"))
        .when(pl.col("diff") > 0)
        .then(pl.lit("higher"))
        .otherwise(pl.lit("unchanged"))
    )
    rank = pl.col("kind").replace_strict(
        {k: i for i, k in enumerate(CASE_ORDER)}, return_dtype=pl.Int32
    )
    return (
        judged_difference(joined, z)
        .with_columns(
            pl.coalesce("b_agent_label", "a_agent_label").alias("agent_label"),
        )
        .with_columns(kind.alias("kind"))
        .with_columns(rank.alias("_rank"))
        .sort(["_rank", "diff", *keys], nulls_last=True)
        .drop("_rank", "a_agent_label", "b_agent_label")
        .collect()
    )


def align_criteria(
    a_criteria: pl.DataFrame,
    b_criteria: pl.DataFrame,
    a_backend: str | None,
    b_backend: str | None,
    *,
    jobs: tuple[Frame, Frame] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """Make two runs comparable: when they measure different criteria, say so; when their
    backends differ or they share no criterion, compare ``CONVERSATION`` on both sides (each
    run's recorded ``jobs.conversation_passed`` when ``jobs`` (A's, B's) is given, derived for a
    run older than the column). Returns the criteria to compare and the warnings to print."""
    a_ids, b_ids = set(a_criteria["criterion_id"]), set(b_criteria["criterion_id"])
    if a_ids == b_ids and a_backend == b_backend:
        return a_criteria, b_criteria, []
    notes = []
    if a_ids != b_ids:
        only_a, only_b = sorted(map(str, a_ids - b_ids)), sorted(map(str, b_ids - a_ids))
        notes.append(
            "A and B measure different criteria"
            + (f"; only in A: {', '.join(only_a)}" if only_a else "")
            + (f"; only in B: {', '.join(only_b)}" if only_b else "")
        )
    if a_backend != b_backend or not a_ids & b_ids:
        why = (
            f"A ran on {a_backend}, B on {b_backend}"
            if a_backend != b_backend
            else "they share no criterion"
        )
        notes.append(
            f"{why}: comparing {CONVERSATION} (every judged criterion of a conversation passed),"
            " the verdict both backends record"
        )
        a_jobs, b_jobs = jobs if jobs is not None else (None, None)
        return (
            conversation_verdicts(a_criteria, a_jobs),
            conversation_verdicts(b_criteria, b_jobs),
            notes,
        )
    return a_criteria, b_criteria, notes
