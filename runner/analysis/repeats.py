"""Across repeats: per case and criterion, its trials; pass@k, pass^k and flakiness from them.

A *case* is what repeats repeat: one agent x scenario x matrix cell. ``case_trials`` gives
each case x criterion its counts (passes, failures, unknowns, errors, decided ``trials``): the
per-case counts the repeat statistics average over and the per-case verdicts judge. It is
computed from the summable ``judged_counts`` / ``errored_counts``, so a run in progress read
part by part gets the same figures as the finished run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from runner.analysis.counts import (
    charged_errors,
    errored_counts,
    judged_counts,
    outcomes,
)
from runner.analysis.frames import Frame, case_columns, group
from runner.analysis.intervals import Z95, pass_at_k, pass_hat_k, wilson_columns

TRIAL_COUNTS = ("success", "failure", "unknown", "errors")


def case_trials(
    judged: pl.DataFrame, errored: pl.DataFrame, by: Sequence[str] = ("criterion_id",)
) -> pl.DataFrame:
    """One row per case and criterion (and ``by`` column), from a run's ``judged_counts`` and
    ``errored_counts``: its ``agent_label``, ``success`` / ``failure`` / ``unknown`` counts,
    ``errors`` (the case's errored jobs, charged to each criterion its agent and scenario were
    judged on), ``trials`` = success + failure (the decided outcomes the estimators use) and
    ``flaky`` (both passed and failed). Errored jobs whose criteria are unknown are left out.
    Sorted by the keys."""
    cases = [c for c in judged.columns if c in case_columns(judged)]
    keys = list(dict.fromkeys([*cases, "criterion_id", *by]))
    crit_keys = [c for c in keys if c not in errored.columns]
    label = [] if "agent_label" in keys else [pl.col("agent_label").first()]
    zero = pl.lit(0, dtype=pl.UInt32)
    ok = judged.group_by(keys).agg(
        *label, *(pl.col(c).sum().cast(pl.UInt32) for c in TRIAL_COUNTS[:3])
    )
    failed = (
        charged_errors(judged, errored, crit_keys)
        .filter(pl.col("criterion_id").is_not_null())
        .group_by(keys)
        .agg(*label, pl.col("errors").sum().cast(pl.UInt32))
    )
    joined = ok.join(failed, on=keys, how="full", coalesce=True, nulls_equal=True)
    if label:
        joined = joined.with_columns(
            pl.coalesce("agent_label", "agent_label_right").alias("agent_label")
        ).drop("agent_label_right")
    return (
        joined.filter(pl.col("criterion_id").is_not_null())
        .with_columns(pl.col(c).fill_null(zero) for c in TRIAL_COUNTS)
        .with_columns((pl.col("success") + pl.col("failure")).alias("trials"))
        .with_columns(((pl.col("success") > 0) & (pl.col("failure") > 0)).alias("flaky"))
        .sort(keys, nulls_last=True)
        .select(*_label_first(keys, bool(label)), *TRIAL_COUNTS, "trials", "flaky")
    )


def trials_of(criteria: Frame, jobs: Frame, by: Sequence[str] = ("criterion_id",)) -> pl.DataFrame:
    """``case_trials`` of a run's frames."""
    return case_trials(judged_counts(criteria, jobs, by), errored_counts(jobs, by), by)


def case_counts(judged: pl.DataFrame, errored: pl.DataFrame) -> pl.DataFrame:
    """Per case and criterion, the counts a per-case rule reads: ``passes``, ``failures``,
    ``unknowns``, ``errors`` and ``n`` (all four: every repeat that was due a result), from
    ``case_trials``. Of a run in progress, from its counts summed part by part."""
    return (
        case_trials(judged, errored)
        .rename({"success": "passes", "failure": "failures", "unknown": "unknowns"})
        .with_columns(
            (pl.col("passes") + pl.col("failures") + pl.col("unknowns") + pl.col("errors"))
            .cast(pl.UInt32)
            .alias("n")
        )
        .drop("trials", "flaky")
    )


def _label_first(keys: list[str], label: bool) -> list[str]:
    """Key columns for display: the agent's label right after its id."""
    if not label:
        return keys
    at = keys.index("agent_id") + 1
    return [*keys[:at], "agent_label", *keys[at:]]


def repeat_cases(
    criteria: Frame, jobs: Frame, by: Sequence[str] = ("criterion_id",)
) -> pl.DataFrame:
    """``case_trials`` with ``sequence``: the outcomes in repeat order (``S`` success,
    ``F`` failure, ``U`` unknown, ``E`` job error)."""
    trials = trials_of(criteria, jobs, by)
    keys = [c for c in trials.columns if c not in (*TRIAL_COUNTS, "trials", "flaky")]
    keys = [c for c in keys if c != "agent_label" or "agent_label" in by]
    letter = pl.col("result").replace_strict(
        {"success": "S", "failure": "F", "unknown": "U", "error": "E"}, default="?"
    )
    sequences = (
        outcomes(criteria, jobs, [*keys, "repeat"])
        .filter(pl.col("criterion_id").is_not_null())
        .sort([*keys, "repeat"], nulls_last=True)
        .group_by(keys, maintain_order=True)
        .agg(letter.str.join("").alias("sequence"))
        .collect()
    )
    joined = trials.join(sequences, on=keys, how="left", nulls_equal=True)
    counted = [c for c in trials.columns if c in (*TRIAL_COUNTS, "trials", "flaky")]
    shown = [c for c in trials.columns if c not in counted]
    return joined.select(*shown, "sequence", *counted)


def pass_k_from(
    trials: pl.DataFrame, ks: Sequence[int] = (1, 3), by: Sequence[str] = ("criterion_id",)
) -> pl.DataFrame:
    """pass@k and pass^k per ``by`` group from ``case_trials``: the unbiased per-case
    estimates, averaged over cases.

    One row per group and k. ``cases`` counts the cases with at least k decided trials (the
    only ones the estimators are defined for); ``cases_short`` those with fewer, left out.
    ``pass@1`` equals ``pass^1``: the mean of the per-case pass rates.
    """
    if not ks or min(ks) < 1:
        raise ValueError("every k must be >= 1")
    per_case = trials.lazy()
    frames = []
    for k in sorted(set(ks)):
        enough = pl.col("trials") >= k
        frames.append(
            group(
                per_case.join(_estimates(trials, k).lazy(), on=["trials", "success"], how="left"),
                by,
                pl.lit(k, dtype=pl.Int32).alias("k"),
                enough.sum().cast(pl.UInt32).alias("cases"),
                (~enough).sum().cast(pl.UInt32).alias("cases_short"),
                pl.col("_at").mean().alias("pass_at_k"),
                pl.col("_hat").mean().alias("pass_hat_k"),
            )
        )
    out = pl.concat(frames, how="vertical")
    return out.sort([*by, "k"], nulls_last=True).collect() if by else out.collect()


def _estimates(trials: pl.DataFrame, k: int) -> pl.DataFrame:
    """``pass_at_k`` and ``pass_hat_k`` (exact, with ``math.comb``) of every distinct
    (trials, successes) pair with at least k trials: few pairs however many cases."""
    pairs = trials.select("trials", "success").unique().filter(pl.col("trials") >= k)
    rows = [(n, c, pass_at_k(n, c, k), pass_hat_k(n, c, k)) for n, c in pairs.iter_rows()]
    return pl.DataFrame(
        rows,
        schema={
            "trials": trials.schema["trials"],
            "success": trials.schema["success"],
            "_at": pl.Float64,
            "_hat": pl.Float64,
        },
        orient="row",
    )


def repeat_pass_rates(
    criteria: Frame,
    jobs: Frame,
    ks: Sequence[int] = (1, 3),
    by: Sequence[str] = ("criterion_id",),
) -> pl.DataFrame:
    """``pass_k_from`` a run's frames."""
    if not ks or min(ks) < 1:
        raise ValueError("every k must be >= 1")
    return pass_k_from(trials_of(criteria, jobs, by), ks, by)


def pass_k_by_criterion(table: pl.DataFrame) -> list[dict[str, Any]]:
    """``pass_k_from`` by criterion as one dict per criterion: ``criterion_id`` and, per k,
    ``(cases, pass@k, pass^k)`` under ``rates[k]`` (the viewer's and the report's layout)."""
    out: dict[Any, dict[int, tuple[int, float | None, float | None]]] = {}
    for row in table.iter_rows(named=True):
        out.setdefault(row["criterion_id"], {})[row["k"]] = (
            int(row["cases"]),
            row["pass_at_k"],
            row["pass_hat_k"],
        )
    return [{"criterion_id": c, "rates": rates} for c, rates in out.items()]


def flakiness_from(
    trials: pl.DataFrame, by: Sequence[str] = ("criterion_id",), z: float = Z95
) -> pl.DataFrame:
    """Share of cases with mixed outcomes (passed in one repeat, failed in another), from
    ``case_trials``.

    With ``criterion_id`` in ``by`` the units are case x criterion; without it they are cases,
    flaky when any of their criteria is. Only units with at least two decided trials can
    flip, so only those are counted (``cases``).
    """
    per_case = trials.lazy()
    if "criterion_id" not in by:
        cases = [c for c in trials.columns if c in case_columns(trials)]
        keys = list(dict.fromkeys([*cases, *by]))
        per_case = per_case.group_by(keys).agg(
            pl.col("flaky").any(), (pl.col("trials") >= 2).any().alias("_eligible")
        )
    else:
        per_case = per_case.with_columns((pl.col("trials") >= 2).alias("_eligible"))
    counts = group(
        per_case.filter(pl.col("_eligible")),
        by,
        pl.len().cast(pl.UInt32).alias("cases"),
        pl.col("flaky").sum().cast(pl.UInt32).alias("flaky"),
    )
    return (
        counts.with_columns(wilson_columns("flaky", "cases", z))
        .rename({"pass_rate": "flaky_share"})
        .collect()
    )


def flakiness(
    criteria: Frame, jobs: Frame, by: Sequence[str] = ("criterion_id",), z: float = Z95
) -> pl.DataFrame:
    """``flakiness_from`` a run's frames (``by`` without ``criterion_id``: per case)."""
    return flakiness_from(trials_of(criteria, jobs, (*by, "criterion_id")), by, z)


def flaky_cases(
    criteria: Frame, jobs: Frame, by: Sequence[str] = ("criterion_id",)
) -> pl.DataFrame:
    """The case x criterion units that flipped, the most evenly split first."""
    per_case = repeat_cases(criteria, jobs, by)
    return (
        per_case.filter(pl.col("flaky"))
        .with_columns(
            (pl.min_horizontal("success", "failure") / pl.col("trials")).alias("_balance")
        )
        .sort(["_balance", "trials", "criterion_id"], descending=[True, True, False])
        .drop("_balance", "flaky")
    )
