"""Shadow mode (issue 25): what a sequential rule would have done on a finished fixed run.

``replay(jobs, criteria, rules)`` takes a run's ``jobs`` and ``criteria`` tables (as
``runner.store.load_run`` gives them), rebuilds every case's outcomes in repeat order and
reports, per case and rule, where the rule would have stopped, its verdict there, whether that
agrees with the full run's verdict (all repeats, judged once by the Wilson interval), and the
simulations and spend the repeats after the stop cost. ``summary`` totals it per rule. Pure:
frames in, frames out; the CLI loads the run and prints.

A repeat's outcome (``runner.verdicts``): with ``of`` = ``all``, ``pass`` when every criterion
of the job succeeded, ``fail`` when one failed, else ``unknown`` (also an ok job with no
criterion at all); with a list of criterion ids, one sequence per listed criterion, where a
missing result is ``unknown``. An errored job is ``error``; a ``cancelled`` one (agent-testing)
is no repeat.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import polars as pl

from runner.analysis import case_columns
from runner.schema import VERDICTS
from runner.verdicts import (
    Anytime,
    Curtail,
    Outcome,
    Rule,
    Sprt,
    Treatment,
    first_stop,
    fixed_wilson,
)

Frame = pl.DataFrame | pl.LazyFrame

_RESULT = {"success": "pass", "failure": "fail", "unknown": "unknown"}


def repeat_outcomes(jobs: Frame, criteria: Frame, of: str | Sequence[str] = "all") -> pl.DataFrame:
    """One row per case (and criterion when ``of`` lists ids): ``outcomes`` (list of
    pass / fail / unknown / error in repeat order), ``cost_usd`` per repeat (nulls as 0) and
    ``credits_used`` per repeat."""
    job = jobs.lazy() if isinstance(jobs, pl.DataFrame) else jobs
    crit = criteria.lazy() if isinstance(criteria, pl.DataFrame) else criteria
    cases = case_columns(job)
    names = job.collect_schema().names()
    cost = pl.col("cost_usd").fill_null(0.0) if "cost_usd" in names else pl.lit(0.0)
    credits = pl.col("credits_used").fill_null(0) if "credits_used" in names else pl.lit(0)
    job = job.filter(pl.col("status") != "cancelled").select(
        *cases,
        "job_key",
        "repeat",
        "status",
        cost.cast(pl.Float64).alias("cost_usd"),
        credits.cast(pl.Int64).alias("credits_used"),
    )
    mapped = pl.col("result").replace_strict(_RESULT, default="unknown")
    if of == "all":
        per_job = crit.group_by("job_key").agg(
            pl.when((pl.col("result") == "failure").any())
            .then(pl.lit("fail"))
            .when((pl.col("result") != "success").any())
            .then(pl.lit("unknown"))
            .otherwise(pl.lit("pass"))
            .alias("outcome")
        )
        frame = job.join(per_job, on="job_key", how="left")
        keys = cases
    else:
        ids = pl.DataFrame({"criterion_id": list(of)}).lazy()
        per_job = crit.filter(pl.col("criterion_id").is_in(list(of))).select(
            "job_key", "criterion_id", mapped.alias("outcome")
        )
        frame = job.join(ids, how="cross").join(per_job, on=["job_key", "criterion_id"], how="left")
        keys = [*cases, "criterion_id"]
    outcome = (
        pl.when(pl.col("status") == "error")
        .then(pl.lit("error"))
        .otherwise(pl.col("outcome").fill_null("unknown"))
    )
    return (
        frame.with_columns(
            pl.col("outcome").is_not_null().alias("_judged"), outcome.alias("outcome")
        )
        .sort([*keys, "repeat"])
        .group_by(keys, maintain_order=True)
        .agg(
            pl.col("outcome").alias("outcomes"),
            pl.col("cost_usd"),
            pl.col("credits_used"),
            pl.col("_judged").any().alias("_judged"),
        )
        # a listed criterion no job of the case was judged on is not the case's to decide
        .filter(pl.col("_judged") | pl.lit(of == "all"))
        .drop("_judged")
        .collect()
    )


def replay(
    jobs: Frame,
    criteria: Frame,
    rules: Sequence[Rule],
    of: str | Sequence[str] = "all",
    treatment: Treatment | None = None,
) -> pl.DataFrame:
    """Per case (and criterion) and rule: where it would have stopped and what it saved.

    ``full_verdict`` is the fixed run's, all its repeats judged once by the Wilson interval
    at the rule's ``pass_rate`` (``treatment`` as given); ``agrees`` compares the rule's
    verdict with it, ``contradicts`` flags a settled verdict opposite to a settled full one."""
    treatment = treatment or Treatment()
    sequences = repeat_outcomes(jobs, criteria, of)
    skip = ("outcomes", "cost_usd", "credits_used", "criterion_id")
    cases = [c for c in sequences.columns if c not in skip]
    rows: list[dict[str, Any]] = []
    for case in sequences.iter_rows(named=True):
        outcomes: list[Outcome] = case["outcomes"]
        for rule in rules:
            pass_rate = float(rule.params()["pass_rate"])
            full = fixed_wilson(outcomes, pass_rate, treatment).verdict
            stopped, decision = first_stop(rule, outcomes)
            rows.append(
                {
                    **{k: case[k] for k in cases},
                    **({"criterion_id": case["criterion_id"]} if "criterion_id" in case else {}),
                    "rule": rule.name,
                    "repeats_run": len(outcomes),
                    "stopped_at": stopped,
                    "verdict": decision.verdict,
                    "reason": decision.reason,
                    "lower": decision.lower,
                    "upper": decision.upper,
                    "full_verdict": full,
                    "agrees": decision.verdict == full,
                    "contradicts": {decision.verdict, full} == {"pass", "fail"},
                    "_costs": case["cost_usd"],
                    "_credits": case["credits_used"],
                }
            )
    if not rows:
        return pl.DataFrame()
    # a case's repeats stop when the verdicts of all its criteria have: savings are the case's
    stops: dict[tuple[Any, ...], int] = {}
    for row in rows:
        key = (row["rule"], *(row[k] for k in cases))
        stops[key] = max(stops.get(key, 0), row["stopped_at"])
    for row in rows:
        case_stop = stops[(row["rule"], *(row[k] for k in cases))]
        row["case_stopped_at"] = case_stop
        row["sims_saved"] = row["repeats_run"] - case_stop
        row["usd_saved"] = float(sum(row.pop("_costs")[case_stop:]))
        row["credits_saved"] = int(sum(row.pop("_credits")[case_stop:]))
    return pl.DataFrame(rows)


def summary(replayed: pl.DataFrame) -> pl.DataFrame:
    """Per rule: verdicts (cases, or case x criterion), settled, agreements, contradictions,
    and the simulations and spend saved, counted once per case."""
    if replayed.is_empty():
        return pl.DataFrame()
    verdicts = replayed.group_by("rule", maintain_order=True).agg(
        pl.len().alias("cases"),
        (pl.col("verdict") != "undecided").sum().alias("settled"),
        (pl.col("full_verdict") != "undecided").sum().alias("settled_full"),
        pl.col("agrees").sum().alias("agree"),
        pl.col("contradicts").sum().alias("contradict"),
    )
    case_keys = [
        c
        for c in replayed.columns
        if c == "agent_id" or c == "scenario_id" or c.startswith("matrix.")
    ]
    spend = (
        replayed.unique([*case_keys, "rule"], keep="first", maintain_order=True)
        .group_by("rule", maintain_order=True)
        .agg(
            pl.col("repeats_run").sum().alias("sims_run"),
            pl.col("sims_saved").sum().alias("sims_saved"),
            pl.col("usd_saved").sum().alias("usd_saved"),
            pl.col("credits_saved").sum().alias("credits_saved"),
        )
    )
    return verdicts.join(spend, on="rule", maintain_order="left").with_columns(
        (pl.col("sims_saved") / pl.col("sims_run")).alias("saved_share")
    )


def render(replayed: pl.DataFrame) -> str:
    """The summary as lines for a terminal: one per rule."""
    lines = []
    for row in summary(replayed).iter_rows(named=True):
        lines.append(
            f"{row['rule']}: {row['settled']} of {row['cases']} verdicts settled "
            f"(full run: {row['settled_full']}), {row['agree']} agree with the full run, "
            f"{row['contradict']} contradict it; {row['sims_saved']} of {row['sims_run']} "
            f"simulations not needed ({row['saved_share']:.0%}), ${row['usd_saved']:.2f}"
            + (f" and {row['credits_saved']} credits" if row["credits_saved"] else "")
            + " not spent"
        )
    return "\n".join(lines)


def verdict_table(
    jobs: Frame,
    criteria: Frame,
    rule: Rule,
    of: str | Sequence[str] = "all",
) -> pl.DataFrame:
    """The ``verdicts`` table (``runner.schema.VERDICTS``) of a run with sequential repeats,
    from its stored outcomes: per case (and criterion), the rule's decision over every repeat
    that finished (those that ran past the stop included: they were paid for).

    ``settled_at`` is where the rule, walked in repeat order, first settled the verdict; the
    verdict is the decision over all the repeats, or the settled one when the repeats that
    ran past it left the bounds short of a verdict again (the rules are valid at the stop)."""
    sequences = repeat_outcomes(jobs, criteria, of)
    job = jobs.lazy() if isinstance(jobs, pl.DataFrame) else jobs
    labels = dict(job.select("agent_id", "agent_label").unique("agent_id").collect().iter_rows())
    axes = [c for c in sequences.columns if c.startswith("matrix.")]
    params = rule.params()
    alpha = params.get("alpha")
    rows: list[dict[str, Any]] = []
    for case in sequences.iter_rows(named=True):
        outcomes: list[Outcome] = case["outcomes"]
        stopped, at_stop = first_stop(rule, outcomes)
        final = rule.decide(outcomes)
        settled = at_stop.verdict != "undecided"
        verdict = final.verdict if final.verdict != "undecided" or not settled else at_stop.verdict
        t = final.tally
        rows.append(
            {
                "agent_id": case["agent_id"],
                "agent_label": labels.get(case["agent_id"], case["agent_id"]),
                "scenario_id": case["scenario_id"],
                **{a: case[a] for a in axes},
                "criterion_id": case.get("criterion_id"),
                "rule": rule.name,
                "params": json.dumps(params, sort_keys=True),
                "pass_rate": float(params["pass_rate"]),
                "alpha": None if alpha is None else float(alpha),
                "max_repeats": rule.max_repeats,
                "repeats": t.repeats,
                "passes": t.passes,
                "failures": t.failures,
                "unknowns": t.unknowns,
                "errors": t.errors,
                "trials": t.trials,
                "lower": final.lower,
                "upper": final.upper,
                "verdict": verdict,
                "reason": final.reason if final.verdict == verdict else at_stop.reason,
                "stopped": at_stop.stop or len(outcomes) >= rule.max_repeats,
                "settled_at": stopped if settled else None,
                "ran_past": len(outcomes) - stopped if settled else 0,
                "cost_usd": float(sum(case["cost_usd"])),
                "credits_used": int(sum(case["credits_used"])),
            }
        )
    base = dict(VERDICTS.schema)
    at = list(base).index("scenario_id") + 1
    names = list(base)
    schema = pl.Schema(
        [(n, base[n]) for n in names[:at]]
        + [(a, pl.String()) for a in axes]
        + [(n, base[n]) for n in names[at:]]
    )
    return pl.DataFrame(rows, schema=schema)


def verdict_summary(table: pl.DataFrame) -> str:
    """The end-of-run line of a ``verdicts`` table: cases by verdict, where they settled on
    average, and what the stopped cases did not spend against fixed repeats of ``max`` (the
    repeats not run, at the run's mean spend per repeat)."""
    if table.is_empty():
        return "verdicts: no case finished a repeat"
    counts = table["verdict"].value_counts()
    by = dict(zip(counts["verdict"].to_list(), counts["count"].to_list(), strict=True))
    kind = "case verdicts" if table["criterion_id"].is_not_null().any() else "cases"
    line = (
        f"{kind}: {by.get('pass', 0)} pass, {by.get('fail', 0)} fail, "
        f"{by.get('undecided', 0)} undecided"
    )
    settled = table["settled_at"].drop_nulls()
    top = int(table["max_repeats"].max())  # type: ignore[arg-type]
    if len(settled):
        mean = float(settled.cast(pl.Float64).sum()) / len(settled)
        line += f"; settled after {mean:.1f} of {top} repeats on average"
    keys = [c for c in table.columns if c in ("agent_id", "scenario_id") or c.startswith("matrix.")]
    cases = table.group_by(keys).agg(
        pl.col("repeats").max(),
        pl.col("stopped").all(),
        pl.col("max_repeats").max(),
        pl.col("cost_usd").max(),
    )
    run = int(cases["repeats"].sum())
    unspent = int(
        cases.filter(pl.col("stopped"))
        .select(pl.col("max_repeats") - pl.col("repeats"))
        .sum()
        .item()
    )
    usd = float(cases["cost_usd"].sum())
    line += f"; {unspent} simulations"
    if usd > 0 and run:
        line += f" and ${usd / run * unspent:.2f}"
    return line + " not spent against fixed repeats"


def verdict_gate(table: pl.DataFrame, undecided: str = "pass") -> tuple[int, list[str]]:
    """``check --verdicts``: exit 1 when a case's verdict is ``fail`` (and ``undecided``
    when ``undecided`` is ``fail``), with one line per case that fails the gate."""
    failing = ["fail", *(["undecided"] if undecided == "fail" else [])]
    bad = table.filter(pl.col("verdict").is_in(failing))
    lines = []
    for row in bad.iter_rows(named=True):
        where = [row["agent_label"], row["scenario_id"]]
        where += [
            f"{c[len('matrix.') :]}={row[c]}" for c in table.columns if c.startswith("matrix.")
        ]
        if row["criterion_id"] is not None:
            where.append(row["criterion_id"])
        lines.append(f"{row['verdict'].upper()} {' / '.join(where)}: {row['reason']}")
    return (1 if len(bad) else 0), lines


def rule_from(
    name: str,
    pass_rate: float,
    max_repeats: int,
    *,
    alpha: float = 0.05,
    min_repeats: int = 1,
    pass_rate_low: float | None = None,
    beta: float = 0.05,
    passes: int | None = None,
) -> Rule:
    """A rule from the replay command's flags; ValueError names a bad one."""
    if name == "anytime":
        return Anytime(pass_rate, alpha, max_repeats, min_repeats)
    if name == "sprt":
        if pass_rate_low is None:
            raise ValueError("--pass-rate-low is required by --rule sprt")
        return Sprt(pass_rate, pass_rate_low, alpha, beta, max_repeats, min_repeats)
    if name == "curtail":
        return Curtail(pass_rate, max_repeats, passes, min_repeats)
    raise ValueError(f"--rule must be anytime, sprt or curtail (got {name!r})")


CHANGE_ORDER = ("now fails", "now undecided", "now passes", "only in A", "only in B")
"""How ``verdict_changes`` sorts: what got worse first."""


def verdict_changes(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """The cases whose verdict differs between two runs' ``verdicts`` tables (A before, B
    after), over the case columns both tables have (agent, scenario, matrix cell, criterion):
    each side's verdict, repeats, passes and bounds, and ``change``: ``now fails`` (B's verdict
    is fail, A's was not), ``now undecided``, ``now passes``, ``only in A`` / ``only in B``.
    Cases whose verdict is the same are left out. The verdicts are each run's own (its rule
    and parameters, ``rule_a`` / ``rule_b``); nothing is recomputed."""
    keys = ["agent_id", "scenario_id"]
    keys += sorted(c for c in a.columns if c.startswith("matrix.") and c in b.columns)
    keys.append("criterion_id")
    shown = ("agent_label", "rule", "verdict", "repeats", "passes", "lower", "upper", "reason")

    def side(table: pl.DataFrame, name: str) -> pl.DataFrame:
        return table.select(*keys, *(pl.col(c).alias(f"{c}_{name}") for c in shown))

    joined = side(a, "a").join(side(b, "b"), on=keys, how="full", coalesce=True, nulls_equal=True)
    va, vb = pl.col("verdict_a"), pl.col("verdict_b")
    change = (
        pl.when(va.is_null())
        .then(pl.lit("only in B"))
        .when(vb.is_null())
        .then(pl.lit("only in A"))
        .when(vb == "fail")
        .then(pl.lit("now fails"))
        .when(vb == "undecided")
        .then(pl.lit("now undecided"))
        .otherwise(pl.lit("now passes"))
    )
    rank = pl.col("change").replace_strict(
        {c: i for i, c in enumerate(CHANGE_ORDER)}, return_dtype=pl.Int32
    )
    return (
        joined.filter(va.is_null() | vb.is_null() | (va != vb))
        .with_columns(
            pl.coalesce("agent_label_b", "agent_label_a").alias("agent_label"),
            change.alias("change"),
        )
        .with_columns(rank.alias("_rank"))
        .sort(["_rank", *keys], nulls_last=True)
        .select(
            "change",
            "agent_label",
            *keys,
            *(f"{c}_{s}" for c in shown[1:] for s in ("a", "b")),
        )
    )
