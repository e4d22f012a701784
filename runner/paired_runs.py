"""The paired comparison of two finished runs, or two arms of one run (issue 26). Pure: Polars
frames in (the ``jobs`` and ``criteria`` tables of ``runner.schema``), a result out.

A pair is one case run once by each side: the same ``scenario_id``, matrix cell (the
``matrix.*`` columns both sides have, less the axes that tell the arms apart) and ``repeat``
index. The agent is not part of the key: the two sides are the variants. Jobs without a partner
(a case or repeat only one side ran, or a ``cancelled`` job) are left out and counted.

A job's outcome for the comparison (``of``: ``all`` criteria, or a list of criterion ids):
``error`` when the job errored; else ``fail`` when one of them failed; else ``unknown`` when
one could not be judged or was not reported; else ``pass``. Only ``pass`` is a pass
(``runner.paired``).

The pairs are fed to the rule in the order they finished (the later member's ``finished_at``,
then repeat, scenario and cell): the order a sequential comparison would have seen them. The
rule's guarantee assumes the pairs' cases were not chosen by their outcomes; on a fixed run
(every case, every repeat) that holds, and the e-values at the final count are also valid on
their own (their expectation under the null is at most 1 for independent pairs whose mean
differences average to the null's edge or beyond).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import polars as pl

from runner.paired import Decision, NonInferiority, difference

Of = Literal["all"] | Sequence[str]
MATRIX = "matrix."
SIDES = ("baseline", "candidate")


def job_outcomes(jobs: pl.DataFrame, criteria: pl.DataFrame, of: Of = "all") -> pl.DataFrame:
    """``jobs`` (cancelled ones dropped) with ``outcome``: pass / fail / unknown / error."""
    crit = criteria.select("job_key", "criterion_id", "result")
    if of != "all":
        wanted = list(of)
        crit = crit.filter(pl.col("criterion_id").is_in(wanted))
    per_job = crit.group_by("job_key").agg(
        (pl.col("result") == "failure").any().alias("_failed"),
        (pl.col("result") == "unknown").any().alias("_unknown"),
        pl.col("criterion_id").n_unique().alias("_judged"),
    )
    needed = 1 if of == "all" else len(set(of))
    out = jobs.filter(pl.col("status") != "cancelled").join(per_job, on="job_key", how="left")
    outcome = (
        pl.when(pl.col("status") == "error")
        .then(pl.lit("error"))
        .when(pl.col("_failed").fill_null(False))
        .then(pl.lit("fail"))
        .when(pl.col("_unknown").fill_null(False) | (pl.col("_judged").fill_null(0) < needed))
        .then(pl.lit("unknown"))
        .otherwise(pl.lit("pass"))
    )
    return out.with_columns(outcome.alias("outcome")).drop("_failed", "_unknown", "_judged")


def cell_columns(
    baseline: pl.DataFrame, candidate: pl.DataFrame, ignore: Sequence[str]
) -> list[str]:
    """The matrix columns that name a cell on both sides, less ``ignore``; an axis only one
    side has is an error (its cells cannot be matched), unless ignored."""
    skip = set(ignore)
    cells = []
    names = dict.fromkeys([*baseline.columns, *candidate.columns])
    for name in names:
        if not name.startswith(MATRIX) or name in skip:
            continue
        for side, frame in zip(SIDES, (baseline, candidate), strict=True):
            if name not in frame.columns:
                raise ValueError(
                    f"{name}: only the {SIDES[1 - SIDES.index(side)]} has this matrix axis; "
                    "ignore it to pair across it"
                )
        cells.append(name)
    return cells


def _check_unique(frame: pl.DataFrame, key: list[str], side: str) -> None:
    dup = frame.group_by(key).len().filter(pl.col("len") > 1)
    if dup.height:
        row = dup.row(0, named=True)
        where = ", ".join(f"{k}={row[k]}" for k in key)
        raise ValueError(
            f"{side}: {row['len']} jobs for one case ({where}); select one agent or matrix arm"
        )


def pair_jobs(
    baseline: pl.DataFrame, candidate: pl.DataFrame, ignore: Sequence[str] = ()
) -> tuple[pl.DataFrame, list[str]]:
    """The pairs of two ``job_outcomes`` frames, in finishing order, and the key used.

    Columns: the key (``scenario_id``, cell columns, ``repeat``), per side ``<side>_job_key``,
    ``<side>_outcome``, ``<side>_agent`` and ``<side>_usd`` (the vendor's price, when known),
    and ``order`` (0-based position in the sequence)."""
    key = ["scenario_id", *cell_columns(baseline, candidate, ignore), "repeat"]
    sides = []
    for side, frame in zip(SIDES, (baseline, candidate), strict=True):
        _check_unique(frame, key, side)
        usd = pl.col("cost_usd") if "cost_usd" in frame.columns else pl.lit(None, pl.Float64)
        finished = (
            pl.col("finished_at")
            if "finished_at" in frame.columns
            else pl.lit(None, pl.Datetime("us", "UTC"))
        )
        sides.append(
            frame.select(
                *key,
                pl.col("job_key").alias(f"{side}_job_key"),
                pl.col("outcome").alias(f"{side}_outcome"),
                pl.col("agent_label").alias(f"{side}_agent"),
                usd.cast(pl.Float64).alias(f"{side}_usd"),
                finished.alias(f"_{side}_finished"),
            )
        )
    pairs = sides[0].join(sides[1], on=key, how="inner", nulls_equal=True)
    pairs = (
        pairs.with_columns(
            pl.max_horizontal("_baseline_finished", "_candidate_finished").alias("_finished")
        )
        .sort(["_finished", "repeat", *key[:-1]], nulls_last=True)
        .drop("_baseline_finished", "_candidate_finished", "_finished")
        .with_row_index("order")
    )
    return pairs, key


@dataclass(frozen=True)
class PairedComparison:
    """The rule's ``decision`` over the ``pairs``; ``scenarios``: per scenario, the pairs, each
    side's pass rate, wins / ties / losses and the mean difference (most lost first; not
    adjusted for many scenarios: read them as where to look); ``unpaired``: jobs per side
    with no partner; ``key``: the columns the pairs share."""

    decision: Decision
    pairs: pl.DataFrame
    scenarios: pl.DataFrame
    unpaired: dict[str, int]
    key: list[str]


def compare_paired(
    baseline_jobs: pl.DataFrame,
    baseline_criteria: pl.DataFrame,
    candidate_jobs: pl.DataFrame,
    candidate_criteria: pl.DataFrame,
    rule: NonInferiority,
    of: Of = "all",
    ignore: Sequence[str] = (),
) -> PairedComparison:
    """Pair the two sides' jobs and run ``rule`` over the pairs' differences."""
    base = job_outcomes(baseline_jobs, baseline_criteria, of)
    cand = job_outcomes(candidate_jobs, candidate_criteria, of)
    pairs, key = pair_jobs(base, cand, ignore)
    diffs = [
        difference(b, c, rule.error_as)
        for b, c in pairs.select("baseline_outcome", "candidate_outcome").iter_rows()
    ]
    pairs = pairs.with_columns(pl.Series("d", diffs, dtype=pl.Int8))
    decision = rule.decide(diffs)
    passed = {s: (pl.col(f"{s}_outcome") == "pass") for s in SIDES}
    scenarios = (
        pairs.group_by("scenario_id")
        .agg(
            pl.len().alias("pairs"),
            passed["baseline"].mean().alias("baseline_pass_rate"),
            passed["candidate"].mean().alias("candidate_pass_rate"),
            (pl.col("d") == 1).sum().alias("wins"),
            (pl.col("d") == 0).sum().alias("ties"),
            (pl.col("d") == -1).sum().alias("losses"),
            pl.col("d").cast(pl.Float64).mean().alias("diff"),
        )
        .sort(["diff", "scenario_id"], nulls_last=True)
    )
    unpaired = {
        "baseline": base.height - pairs.height,
        "candidate": cand.height - pairs.height,
    }
    return PairedComparison(decision, pairs, scenarios, unpaired, key)


def select_arm(
    jobs: pl.DataFrame, criteria: pl.DataFrame, arm: Mapping[str, str], side: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One arm of a run: ``{"agent": label}`` (the agent's label or id) and / or
    ``{"matrix.<axis>": value}``; the jobs and their criteria. One-line errors name the side."""
    if not arm:
        raise ValueError(f"{side}: name an agent or a matrix arm")
    cond = pl.lit(True)
    for column, value in arm.items():
        if column == "agent":
            cond &= (pl.col("agent_label") == value) | (pl.col("agent_id") == value)
        elif column.startswith(MATRIX) and column in jobs.columns:
            cond &= pl.col(column) == str(value)
        else:
            raise ValueError(f"{side}: no matrix axis {column!r} in this run")
    picked = jobs.filter(cond)
    if picked.height == 0:
        what = ", ".join(f"{k}={v}" for k, v in arm.items())
        raise ValueError(f"{side}: no jobs with {what}")
    return picked, criteria.join(picked.select("job_key"), on="job_key", how="semi")


def compare_arms(
    jobs: pl.DataFrame,
    criteria: pl.DataFrame,
    baseline: Mapping[str, str],
    candidate: Mapping[str, str],
    rule: NonInferiority,
    of: Of = "all",
) -> PairedComparison:
    """Two arms of one run against each other: the axes that select them are not part of
    the pair key (a sweep's ``agent.llm`` arms, paired on scenario, other axes and repeat)."""
    b_jobs, b_crit = select_arm(jobs, criteria, baseline, "baseline")
    c_jobs, c_crit = select_arm(jobs, criteria, candidate, "candidate")
    ignore = [k for k in {**baseline, **candidate} if k.startswith(MATRIX)]
    return compare_paired(b_jobs, b_crit, c_jobs, c_crit, rule, of, ignore)
