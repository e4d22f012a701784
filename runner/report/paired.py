"""The paired, anytime-valid comparison as ``compare`` and ``check --compare`` show it (issue 26).

The statistics are ``runner.paired`` (the rule) and ``runner.paired_runs`` (pairing the jobs
of two runs or two arms of one run); this module reads the command line's selectors, calls
them and lays the result out: the decision, "decided after N of M pairs", the confidence
sequence for the difference in pass rates, the scenarios the candidate lost, and what each
variant cost.

Selectors (``--a`` / ``--b``): ``agent=LABEL`` (an agent's label or id) or
``matrix.AXIS=VALUE`` (one arm of the run's matrix), repeatable to narrow further. With one run
the two selectors pick its two arms; with two runs ``--a`` narrows the baseline run and ``--b``
the candidate run. The matrix axes a selector names are not part of the pair key (the arms
differ there by design); every other axis, the scenario and the repeat index are.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from rich.console import Console

from runner.estimate import money
from runner.gate import GateCase
from runner.paired import Decision, NonInferiority, check_parameters
from runner.paired_runs import MATRIX, PairedComparison, compare_paired, select_arm
from runner.report.sequential import PairedView, paired_view
from runner.report.terminal import frame_table
from runner.store import Run

DEFAULTS = {"margin": 0.05, "alpha": 0.05}


def parse_selectors(texts: Sequence[str], flag: str) -> dict[str, str]:
    """``["agent=support", "matrix.agent.llm=x"]`` -> ``{"agent": ..., "matrix.agent.llm": ...}``;
    a one-line ``ValueError`` naming the flag for anything else."""
    out: dict[str, str] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key or not value:
            raise ValueError(f"{flag}: expected agent=LABEL or matrix.AXIS=VALUE (got {text!r})")
        if key != "agent" and not key.startswith(MATRIX):
            raise ValueError(
                f"{flag}: {key!r} is neither agent nor a matrix axis (matrix.AXIS=VALUE)"
            )
        if key in out:
            raise ValueError(f"{flag}: {key} given twice")
        out[key] = value
    return out


@dataclass(frozen=True)
class PairedSides:
    """What to pair: each side's jobs and criteria, and the axes left out of the key."""

    baseline: tuple[pl.DataFrame, pl.DataFrame]
    candidate: tuple[pl.DataFrame, pl.DataFrame]
    ignore: tuple[str, ...]


def pick_sides(
    baseline: tuple[pl.DataFrame, pl.DataFrame],
    candidate: tuple[pl.DataFrame, pl.DataFrame],
    a: Sequence[str] = (),
    b: Sequence[str] = (),
) -> PairedSides:
    """Narrow each side ((jobs, criteria)) by its selectors; with none, the side as given."""
    sels = parse_selectors(a, "--a"), parse_selectors(b, "--b")
    sides = []
    for (jobs, criteria), sel, flag in zip(
        (baseline, candidate), sels, ("--a", "--b"), strict=True
    ):
        sides.append(select_arm(jobs, criteria, sel, flag) if sel else (jobs, criteria))
    ignore = tuple(dict.fromkeys(k for sel in sels for k in sel if k.startswith(MATRIX)))
    return PairedSides(sides[0], sides[1], ignore)


def make_rule(
    margin: float | None,
    alpha: float | None,
    max_pairs: int | None,
    available: int,
    error_as: str = "fail",
) -> NonInferiority:
    """The rule for a finished comparison: ``max_pairs`` defaults to the pairs the runs share
    (offline, "M" is what there is). One line naming the bad option."""
    m = DEFAULTS["margin"] if margin is None else margin
    a = DEFAULTS["alpha"] if alpha is None else alpha
    n = max(available, 1) if max_pairs is None else max_pairs
    try:
        check_parameters(m, a, n)
    except ValueError as exc:
        raise ValueError(f"--{str(exc).replace('_', '-', 1)}") from None
    if error_as not in ("fail", "skip"):
        raise ValueError(f"--error-as: must be fail or skip (got {error_as!r})")
    return NonInferiority(m, a, n, "skip" if error_as == "skip" else "fail")


def paired_comparison(
    sides: PairedSides,
    *,
    margin: float | None = None,
    alpha: float | None = None,
    max_pairs: int | None = None,
    of: Sequence[str] = (),
    error_as: str = "fail",
) -> tuple[PairedComparison, NonInferiority]:
    """Pair the sides and decide (the result and the rule used). With ``max_pairs`` below the
    pairs shared, the decision is the one the sequential rule reached on the first
    ``max_pairs`` pairs (in finishing order); the per-scenario table covers every pair."""
    (b_jobs, b_crit), (c_jobs, c_crit) = sides.baseline, sides.candidate
    which = list(of) if of else "all"
    make_rule(margin, alpha, max_pairs, 1, error_as)  # bad options first, before the pairing
    loose = NonInferiority(
        DEFAULTS["margin"] if margin is None else margin,
        DEFAULTS["alpha"] if alpha is None else alpha,
        10**9,
        "skip" if error_as == "skip" else "fail",
    )
    result = compare_paired(b_jobs, b_crit, c_jobs, c_crit, loose, which, sides.ignore)
    rule = make_rule(margin, alpha, max_pairs, result.pairs.height, error_as)
    pairs = result.pairs.head(rule.max_pairs)
    decision = rule.decide(pairs["d"].to_list())
    return PairedComparison(decision, pairs, result.scenarios, result.unpaired, result.key), rule


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f} pp"


def print_paired(
    result: PairedComparison,
    console: Console,
    rule: NonInferiority,
    baseline: str,
    candidate: str,
) -> None:
    """The paired section: the decision and its figures, per scenario, spend per variant."""
    d = result.decision
    c = d.counts
    total = result.pairs.height
    console.print(
        f"paired comparison (anytime-valid): candidate {candidate} vs baseline {baseline}, "
        f"{total} pair(s) on {', '.join(result.key)}",
        markup=False,
        highlight=False,
    )
    if total == 0:
        console.print("  no pairs: the two sides share no case", markup=False)
        return
    where = (
        f"decided after {d.decided_at} of {total} pairs"
        if d.decided_at is not None
        else f"after {c.pairs} of {total} pairs"
    )
    console.print(f"  decision: {d.verdict.upper()}, {where}", markup=False, highlight=False)
    if d.verdict == "undecided":
        console.print(f"  ({d.reason})", markup=False, highlight=False)
    jointly = 1 - 2 * rule.alpha
    console.print(
        f"  difference in pass rate (candidate - baseline): observed {_pct(c.mean)}, "
        f"confidence sequence [{_pct(d.lower)}, {_pct(d.upper)}] "
        f"({100 * jointly:.0f}% jointly, valid at every pair)",
        markup=False,
        highlight=False,
    )
    console.print(
        f"  pairs: {c.wins} won by the candidate, {c.losses} lost, {c.ties} tied"
        + (f", {c.skipped} skipped (an error)" if c.skipped else "")
        + (
            f"; unpaired jobs: baseline {result.unpaired['baseline']}, "
            f"candidate {result.unpaired['candidate']}"
            if any(result.unpaired.values())
            else ""
        ),
        markup=False,
        highlight=False,
    )
    lost = result.scenarios.filter(pl.col("diff") < 0)
    if lost.height:
        names = ", ".join(
            f"{row['scenario_id']} ({_pct(row['diff'])})" for row in lost.iter_rows(named=True)
        )
        console.print(f"  scenarios the candidate lost: {names}", markup=False, highlight=False)
    console.print(
        frame_table(result.scenarios, "per scenario (unadjusted: where to look)"), markup=False
    )
    spend = spend_per_variant(result.pairs)
    console.print(
        frame_table(spend, "spend per variant (paired jobs, as the vendor billed them)"),
        markup=False,
    )


def spend_per_variant(pairs: pl.DataFrame) -> pl.DataFrame:
    """Per side: paired jobs and what they cost in USD ("-" when nothing was priced)."""
    rows = []
    for side in ("baseline", "candidate"):
        usd = pairs[f"{side}_usd"]
        priced = usd.null_count() < usd.len()
        rows.append(
            {
                "variant": side,
                "jobs": pairs.height,
                "usd": money(float(usd.sum()), "usd") if priced else "-",
            }
        )
    return pl.DataFrame(rows, schema={"variant": pl.String, "jobs": pl.Int64, "usd": pl.String})


def gate_case(result: PairedComparison, fail_on_undecided: bool, name: str) -> GateCase:
    """``check --compare``: failed when the candidate is worse by more than the margin;
    undecided is not judged when ``fail_on_undecided`` (exit 3), else passed with the
    reason."""
    d = result.decision
    c = d.counts
    message = f"{d.reason}; difference [{_pct(d.lower)}, {_pct(d.upper)}] over {c.pairs} pair(s)"
    if result.pairs.height == 0:
        return GateCase("paired comparison", name, "not_judged", "no pairs: no case is shared")
    if d.verdict == "worse":
        status = "failed"
    elif d.verdict == "undecided" and fail_on_undecided:
        status = "not_judged"
    else:
        status = "passed"
    counts = {"pairs": c.pairs, "wins": c.wins, "losses": c.losses, "ties": c.ties}
    return GateCase("paired comparison", name, status, message, c.mean, None, counts)


# ------------------------------------------------------------------------ command line


@dataclass(frozen=True)
class Shown:
    """A paired comparison ready to print: the result, its rule and the two sides' names."""

    result: PairedComparison
    rule: NonInferiority
    baseline: str
    candidate: str

    def print(self, console: Console) -> None:
        print_paired(self.result, console, self.rule, self.baseline, self.candidate)

    def view(self) -> PairedView:
        """The comparison as the HTML pages show it (chart included)."""
        return paired_view(self.result, self.rule, self.baseline, self.candidate)


def _frames(run: Run, agent: str | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    criteria, jobs = run.for_agent(agent)
    return jobs, criteria


def from_args(
    args: argparse.Namespace,
    run_a: Run,
    run_b: Run | None,
    agent_a: str | None = None,
    agent_b: str | None = None,
) -> Shown | str:
    """The comparison the arguments ask for: two arms of ``run_a`` (``run_b`` None: ``--a``
    and ``--b`` required) or ``run_a`` against ``run_b``. Bad options raise a one-line
    ``ValueError``; two runs that cannot be paired as given (several agents per case, an axis
    only one has) and no selectors asked for return a note saying why instead."""
    make_rule(args.margin, args.alpha, args.max_pairs, 1, args.error_as)
    explicit = bool(args.a or args.b)
    if run_b is None:
        for flag, sel in (("--a", args.a), ("--b", args.b)):
            if not sel:
                raise ValueError(
                    f"{flag}: two arms of one run need --a and --b "
                    "(agent=LABEL or matrix.AXIS=VALUE)"
                )
        base = cand = _frames(run_a, None)
        names = " ".join(args.a), " ".join(args.b)
    else:
        base, cand = _frames(run_a, agent_a), _frames(run_b, agent_b)
        names = (
            " ".join([str(run_a.path), *([agent_a] if agent_a else []), *args.a]),
            " ".join([str(run_b.path), *([agent_b] if agent_b else []), *args.b]),
        )
    sides = pick_sides(base, cand, args.a, args.b)
    missing = [c for c in args.of if c not in _criterion_ids(sides)]
    if missing:
        raise ValueError(f"--of: no criterion {missing[0]!r} in the compared jobs")
    try:
        result, rule = paired_comparison(
            sides,
            margin=args.margin,
            alpha=args.alpha,
            max_pairs=args.max_pairs,
            of=args.of,
            error_as=args.error_as,
        )
    except ValueError as exc:
        if explicit or run_b is None:
            raise
        return f"not computed: {exc}"
    return Shown(result, rule, *names)


def _criterion_ids(sides: PairedSides) -> set[str]:
    ids: set[str] = set()
    for _, criteria in (sides.baseline, sides.candidate):
        ids |= set(criteria["criterion_id"].unique().to_list())
    return ids


def check_compare(
    args: argparse.Namespace, run: Run, load: Callable[[Path], Run]
) -> tuple[Shown | None, tuple[GateCase, ...]]:
    """``check RUN --compare [RUN_B]``: the comparison and its gate case (none without
    ``--compare``). Pairing problems are bad input here (the user asked for the gate)."""
    if args.compare is None:
        for flag in ("a", "b"):
            if getattr(args, flag):
                raise ValueError(f"--{flag}: only with --compare")
        return None, ()
    other = load(Path(args.compare)) if args.compare else None
    shown = from_args(args, run, other)
    if isinstance(shown, str):
        raise ValueError(f"--compare: {shown.removeprefix('not computed: ')}")
    name = f"{shown.candidate} vs {shown.baseline}"
    return shown, (gate_case(shown.result, args.fail_on_undecided, name),)


def decision_line(decision: Decision, max_pairs: int, margin: float) -> str:
    """A ``compare:`` run's decision in one line (the end-of-run summary)."""
    c = decision.counts
    where = (
        f"decided after {decision.decided_at} of {max_pairs} pairs"
        if decision.decided_at is not None
        else f"{c.pairs} of {max_pairs} pairs"
    )
    return (
        f"compare: {decision.verdict.upper()} (margin {margin:g}), {where}; difference in pass "
        f"rate {_pct(c.mean)}, confidence sequence [{_pct(decision.lower)}, "
        f"{_pct(decision.upper)}]; {c.wins} won, {c.losses} lost, {c.ties} tied"
    )


def arm_flags(arm: Mapping[str, str], flag: str) -> str:
    """A ``compare:`` arm as the ``compare`` command's selectors."""
    return " ".join(f"{flag} {k}={v}" for k, v in arm.items())
