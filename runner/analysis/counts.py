"""Outcome counts that add up part by part, and the pass rates every page reads from them.

Two summable tables hold everything the pass rates, the repeat statistics and the comparisons
need of a run's criteria and errors:

- ``judged_counts``: success / failure / unknown per case (``case_columns``), agent label and
  criterion (and any grouping column asked for). A run read part by part (disjoint jobs) adds
  its parts' tables row by row (``combine_counts``).
- ``errored_counts``: the errored jobs per case and agent label (they have no criteria rows).

``rates_from`` turns the two into pass rates by any of their columns: the report, ``check``,
``compare`` and the viewer all call it (``pass_rates`` is it, over a run's frames). An errored
job is charged to the criteria the ok jobs of its agent and scenario were judged on; when none
of them was judged, to a null criterion.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from runner.analysis.frames import CASE_COLUMNS, Frame, case_columns, group, lazy, names
from runner.analysis.intervals import Z95, wilson_columns

RESULTS = ("success", "failure", "unknown")
"""The criteria results, each counted on its own (``unknown``: the judge could not tell)."""
COUNTS = (*RESULTS, "errors")


def _count_keys(
    criteria: pl.LazyFrame, jobs: pl.LazyFrame | None, by: Sequence[str]
) -> tuple[list[str], list[str]]:
    """The criteria columns and the jobs columns ``judged_counts`` groups by for ``by``."""
    crit_names = names(criteria)
    crit_keys = list(dict.fromkeys(["criterion_id", *(b for b in by if b in crit_names)]))
    crit_keys = [c for c in crit_keys if c not in ("job_key", "result")]
    if jobs is None:
        missing = [c for c in by if c not in crit_names]
        if missing:
            raise ValueError(f"grouping by {missing} needs the jobs frame")
        return crit_keys, []
    wanted = [*case_columns(jobs), "agent_label", *by]
    job_keys = [c for c in dict.fromkeys(wanted) if c not in crit_keys]
    unknown = [c for c in job_keys if c not in names(jobs)]
    if unknown:
        raise ValueError(f"no such column in criteria or jobs: {', '.join(unknown)}")
    return crit_keys, job_keys


def check_grouping(criteria: Frame, jobs: Frame | None, by: Sequence[str]) -> None:
    """Raise ``ValueError`` (one line) when a ``by`` column is in neither frame: read from the
    frames' schemas only, so a caller can refuse a grouping before it prints anything."""
    _count_keys(lazy(criteria), None if jobs is None else lazy(jobs), by)


def judged_counts(
    criteria: Frame, jobs: Frame | None = None, by: Sequence[str] = ()
) -> pl.DataFrame:
    """Success / failure / unknown per case, agent label and criterion, and per ``by`` column
    (criteria columns such as ``source``, or jobs columns such as ``repeat``). Sums of it over
    any rows are the counts over those rows' jobs, so a run read part by part adds each part's
    (``combine_counts``). Without ``jobs``: per criterion (and ``by``) only."""
    crit, job = lazy(criteria), None if jobs is None else lazy(jobs)
    crit_keys, job_keys = _count_keys(crit, job, by)
    frame = crit.select("job_key", *crit_keys, "result")
    if job is not None:
        frame = frame.join(job.select("job_key", *job_keys), on="job_key", how="inner")
    result = pl.col("result")
    return (
        frame.group_by([*job_keys, *crit_keys])
        .agg((result == r).sum().cast(pl.UInt32).alias(r) for r in RESULTS)
        .collect(engine="streaming")  # the join is never held whole
    )


def combine_counts(parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """``judged_counts`` or ``errored_counts`` of some parts of a run (disjoint jobs) as those
    of them all."""
    if len(parts) == 1:
        return parts[0]
    frame = pl.concat(parts, how="vertical")
    keys = [c for c in frame.columns if c not in COUNTS]
    summed = [c for c in frame.columns if c in COUNTS]
    return (
        frame.group_by(keys)
        .agg(pl.col(c).sum().cast(pl.UInt32) for c in summed)
        .select(frame.columns)
    )


def errored_counts(jobs: Frame, by: Sequence[str] = ()) -> pl.DataFrame:
    """Errored jobs per case and agent label (and ``by`` jobs columns): ``errors``."""
    job = lazy(jobs)
    present = names(job)
    wanted = [*case_columns(job), "agent_label", *(b for b in by if b in present)]
    keys = list(dict.fromkeys(wanted))
    return (
        job.filter(pl.col("status") == "error")
        .group_by(keys)
        .agg(pl.len().cast(pl.UInt32).alias("errors"))
        .collect()
    )


def charged_errors(
    judged: pl.DataFrame, errored: pl.DataFrame, criteria_keys: Sequence[str] = ("criterion_id",)
) -> pl.DataFrame:
    """``errored`` charged to the criteria (the ``criteria_keys`` values) the ok jobs of each
    agent and scenario were judged on: a row per case and criterion, a null criterion where
    none was judged. Each errored job counts once per distinct ``criteria_keys`` value."""
    case = list(CASE_COLUMNS)
    if not criteria_keys:
        return errored
    expected = judged.lazy().select(*case, *criteria_keys).unique()
    return errored.lazy().join(expected, on=case, how="left", nulls_equal=True).collect()


def rates_from(
    judged: pl.DataFrame,
    errored: pl.DataFrame | None,
    by: Sequence[str] = ("criterion_id",),
    z: float = Z95,
) -> pl.DataFrame:
    """Counts of success / failure / unknown / errors per ``by`` group, the pass rate
    ``success / (success + failure)`` and its Wilson interval (``ci_low`` / ``ci_high``).

    ``judged`` and ``errored`` as ``judged_counts`` and ``errored_counts`` give them (``by``
    among their columns); ``errors`` counts each errored job once per group it is charged to
    (null without ``errored``)."""
    keys = list(by)
    succ = [pl.col(r).sum().cast(pl.UInt32).alias(r) for r in RESULTS]
    counts = group(judged.lazy(), keys, *succ)
    if errored is None:
        counts = counts.with_columns(pl.lit(None, dtype=pl.UInt32).alias("errors"))
    else:
        crit_keys = [c for c in keys if c not in errored.columns]
        charged = charged_errors(judged, errored, crit_keys).lazy()
        errors = group(charged, keys, pl.col("errors").sum().cast(pl.UInt32))
        zero = pl.lit(0, dtype=pl.UInt32)
        if keys:
            counts = (
                counts.join(errors, on=keys, how="full", coalesce=True, nulls_equal=True)
                .with_columns(pl.col(c).fill_null(zero) for c in COUNTS)
                .sort(keys, nulls_last=True)
            )
        else:
            counts = pl.concat(
                [counts, errors.select(pl.col("errors").fill_null(zero))], how="horizontal"
            )
    return (
        counts.select(*keys, *COUNTS)
        .with_columns((pl.col("success") + pl.col("failure")).alias("_n"))
        .with_columns(wilson_columns("success", "_n", z))
        .drop("_n")
        .collect()
    )


def pass_rates(
    criteria: Frame,
    jobs: Frame | None = None,
    by: Sequence[str] = ("criterion_id",),
    z: float = Z95,
) -> pl.DataFrame:
    """Counts of success / failure / unknown / errors per group, pass rate and Wilson interval:
    ``rates_from`` the run's ``judged_counts`` and ``errored_counts``.

    Grouping columns may come from ``jobs`` (e.g. ``agent_label``, ``scenario_id``,
    ``matrix.language``, ``repeat``): they are joined in by ``job_key`` when ``jobs`` is
    given. ``errors`` counts the errored jobs in the group (null without ``jobs``).
    """
    judged = judged_counts(criteria, jobs, by)
    errored = None if jobs is None else errored_counts(jobs, by)
    return rates_from(judged, errored, by, z)


def outcomes(criteria: Frame, jobs: Frame | None = None, by: Sequence[str] = ()) -> pl.LazyFrame:
    """One row per (job, criterion) slot: ``result`` is success / failure / unknown / error.

    ``by`` names columns to carry along: criteria columns (``source``, ``name``) or jobs
    columns (joined by ``job_key``). Without ``jobs`` there are no error rows. Errored jobs
    are charged to the criteria their agent and scenario were judged on in ok jobs (null
    ``criterion_id`` when there were none). The row-level view of what ``judged_counts`` and
    ``errored_counts`` count (the repeat sequences read it).
    """
    crit_all = lazy(criteria)
    crit_names = names(crit_all)
    base = ["job_key", "criterion_id", "result"]
    crit_carry = [c for c in dict.fromkeys(by) if c in crit_names and c not in base]
    crit = crit_all.select(*base, *crit_carry)
    if jobs is None:
        missing = [c for c in by if c not in crit_names]
        if missing:
            raise ValueError(f"grouping by {missing} needs the jobs frame")
        return crit
    job = lazy(jobs)
    job_carry = [c for c in dict.fromkeys([*by, *CASE_COLUMNS]) if c not in crit_names]
    unknown_cols = [c for c in job_carry if c not in names(job)]
    if unknown_cols:
        raise ValueError(f"no such column in criteria or jobs: {', '.join(unknown_cols)}")
    job = job.select("job_key", "status", *job_carry)
    ok = crit.join(job.drop("status"), on="job_key", how="inner")
    expected = ok.select(*CASE_COLUMNS, "criterion_id", *crit_carry).unique()
    failed = (
        job.filter(pl.col("status") == "error")
        .drop("status")
        .join(expected, on=list(CASE_COLUMNS), how="left")
        .with_columns(pl.lit("error").alias("result"))
    )
    columns = [*base, *crit_carry, *job_carry]
    return pl.concat([ok.select(columns), failed.select(columns)], how="vertical")


def error_rates(jobs: Frame, by: Sequence[str] = (), z: float = Z95) -> pl.DataFrame:
    """Jobs, ok, errors and the error rate (share of jobs that ended in error) with its interval."""
    counts = group(
        lazy(jobs),
        by,
        pl.len().cast(pl.UInt32).alias("jobs"),
        (pl.col("status") == "ok").sum().cast(pl.UInt32).alias("ok"),
        (pl.col("status") == "error").sum().cast(pl.UInt32).alias("errors"),
        (pl.col("attempts") - 1).clip(0).sum().cast(pl.Int64).alias("retries"),
    )
    return (
        counts.with_columns(wilson_columns("errors", "jobs", z))
        .rename({"pass_rate": "error_rate"})
        .collect()
    )


def error_counts(jobs: Frame) -> pl.DataFrame:
    """Jobs that ended in error, by kind."""
    return (
        lazy(jobs)
        .filter(pl.col("status") == "error")
        .group_by("error_kind")
        .agg(pl.len().alias("jobs"))
        .sort(["jobs", "error_kind"], descending=[True, False])
        .collect()
    )
