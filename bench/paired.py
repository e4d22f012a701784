"""The paired comparison by seeded Monte Carlo (issue 26): error rates and pairs to a decision.

``python -m bench --only compare`` (or ``python -m bench.paired``). A suite of ``SCENARIOS``
scenarios of varying difficulty: the baseline passes scenario s with probability q_s (evenly
spread over ``DIFFICULTY``), the candidate with logistic(logit(q_s) + theta), theta chosen so
that the true difference in pass rates, averaged over the scenarios, is exactly the setting's
(bisection). A scenario that is hard for one variant is hard for the other, so the two
outcomes of a pair are correlated, as in real sweeps.

Each pair draws its scenario uniformly at random (what the planner does) and runs both
variants on it; the *unpaired* design draws the candidate's and the baseline's scenarios
independently (the same test on unpaired samples). Both see the rule
``runner.paired.NonInferiority`` (margin 0.05, alpha 0.05, max 400 pairs) and the same random
numbers per replicate. Per setting: the share of replicates decided "worse", "not worse",
undecided; the median pairs to the end; the simulations (2 per pair); the share whose
confidence sequence held the true difference at every pair; and the fixed design of 90%
power for that difference. Figures go to ``results/bench/compare.json``.

The targets follow the rule's two tests, both against -margin: a false "worse" (mu >=
-margin) at 0 and at -margin / 2, a false "not worse" (mu <= -margin) at -margin, and at
-margin itself, where both nulls hold, "worse" too; each at most alpha.

The fixed design tests the same hypotheses as the sequential rule, one-sided at alpha: at
-0.20 H0 mu >= -margin, at +0.10 H0 mu <= -margin. Paired (``runner.paired.
fixed_paired_pairs``): the normal approximation for a paired difference D in {-1, 0, 1} with
the discordance psi = P(D != 0) held at its value under the alternative, the null's variance
psi - null^2 for the critical value and the alternative's psi - mu^2 for the power (Connor
1987; with a margin, Nam 1997): n = ((z_{1-alpha} sqrt(psi - null^2) + z_{0.9} sqrt(psi -
mu^2)) / (mu - null))^2. Unpaired: the Wald two-proportion z test
(``fixed_unpaired_per_arm``) x 2 jobs.

``self_comparison``: end to end on the local API, a variant against itself (two arms of a
matrix axis the agent never reads) as a ``compare:`` run, one per ``run.seed``: each must end
"not worse" or undecided, never "worse" (issue 26). Its 20 outcomes and simulations are
printed and written to the same JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.text import render_table
from runner import paired as pr

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = 40
DIFFICULTY = (0.2, 0.99)
"""The baseline's pass rates: evenly spaced over this range, one per scenario."""
MARGIN, ALPHA, MAX_PAIRS = 0.05, 0.05, 400
DIFFS = (0.0, -MARGIN / 2, -MARGIN, -0.20, 0.10)
SEED = 20261207
SELF_MAX_PAIRS = 200
"""``max_pairs`` of the end-to-end self comparison: half the Monte Carlo's 400 (a comparison
of a variant with itself mostly runs to ``max_pairs``; 20 of them at 400 take several
minutes here)."""

Row = dict[str, Any]


def baseline_rates(scenarios: int = SCENARIOS) -> list[float]:
    lo, hi = DIFFICULTY
    return [lo + (hi - lo) * k / (scenarios - 1) for k in range(scenarios)]


def _logistic(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def candidate_rates(base: list[float], diff: float) -> list[float]:
    """The candidate's per-scenario pass rates: a common shift theta on the logit scale with
    mean(candidate) - mean(baseline) = diff (to 1e-12)."""
    logits = [math.log(q / (1 - q)) for q in base]

    def gap(theta: float) -> float:
        return statistics.fmean(_logistic(x + theta) for x in logits) - statistics.fmean(base)

    lo, hi = -20.0, 20.0
    while hi - lo > 1e-13:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if gap(mid) < diff else (lo, mid)
    return [_logistic(x + lo) for x in logits]


@dataclass(frozen=True)
class Model:
    """One setting: per-scenario pass rates of both variants."""

    base: tuple[float, ...]
    cand: tuple[float, ...]

    @classmethod
    def at(cls, diff: float, scenarios: int = SCENARIOS) -> Model:
        base = baseline_rates(scenarios)
        return cls(tuple(base), tuple(candidate_rates(base, diff)))

    @property
    def diff(self) -> float:
        return statistics.fmean(self.cand) - statistics.fmean(self.base)

    def win_loss(self, paired: bool) -> tuple[float, float]:
        """P(D = 1), P(D = -1) of one pair (paired: the same scenario for both)."""
        if paired:
            win = statistics.fmean(c * (1 - b) for b, c in zip(self.base, self.cand, strict=True))
            loss = statistics.fmean(b * (1 - c) for b, c in zip(self.base, self.cand, strict=True))
            return win, loss
        pb, pc = statistics.fmean(self.base), statistics.fmean(self.cand)
        return pc * (1 - pb), pb * (1 - pc)

    def draw(self, rng: random.Random, paired: bool) -> int:
        s = rng.randrange(len(self.base))
        t = s if paired else rng.randrange(len(self.base))
        return int(rng.random() < self.cand[t]) - int(rng.random() < self.base[s])


class Walker:
    """The rule's stop state per (wins, ties, losses), memoised: the rule depends on the
    counts only, so the replicates share one table."""

    def __init__(self, rule: pr.NonInferiority, truth: float) -> None:
        self.rule, self.truth = rule, truth
        self.stops: dict[tuple[int, int, int], str | None] = {}
        self.missed: dict[tuple[int, int, int], bool] = {}

    def stop(self, key: tuple[int, int, int]) -> str | None:
        """'worse', 'not worse', 'undecided' (max reached / unreachable) or None (go on)."""
        if key not in self.stops:
            counts = pr.Counts(*key)
            state: str | None = self.rule.state(counts)
            if state is None and not self.rule.reachable(counts):
                state = "undecided"
            self.stops[key] = state
        return self.stops[key]

    def misses(self, key: tuple[int, int, int]) -> bool:
        """Whether the confidence sequence excludes the true difference at these counts."""
        if key not in self.missed:
            counts, level = pr.Counts(*key), self.rule.level
            self.missed[key] = (
                pr.log_wealth(counts, self.truth, "above", self.rule.prior) >= level
                or pr.log_wealth(counts, self.truth, "below", self.rule.prior) >= level
            )
        return self.missed[key]


def simulate(
    model: Model,
    rule: pr.NonInferiority,
    paired: bool,
    replicates: int,
    seed: int,
    walker: Walker | None = None,
) -> list[tuple[str, int, bool]]:
    """Per replicate: (decision, pairs run, the sequence covered the truth throughout).
    ``walker``: a table to share between runs of the same rule and truth."""
    walker = walker or Walker(rule, model.diff)
    out = []
    for r in range(replicates):
        rng = random.Random(seed * 1_000_003 + r)
        wins = ties = losses = 0
        covered, decision = True, "undecided"
        for _ in range(rule.max_pairs):
            d = model.draw(rng, paired)
            wins, ties, losses = wins + (d == 1), ties + (d == 0), losses + (d == -1)
            key = (wins, ties, losses)
            covered = covered and not walker.misses(key)
            stop = walker.stop(key)
            if stop is not None:
                decision = stop
                break
        out.append((decision, wins + ties + losses, covered))
    return out


def run(replicates: int = 1000, max_pairs: int = MAX_PAIRS, seed: int = SEED) -> dict[str, Any]:
    rule = pr.NonInferiority(MARGIN, ALPHA, max_pairs)
    rows: list[Row] = []
    started = time.perf_counter()
    for diff in DIFFS:
        model = Model.at(diff)
        walker = Walker(rule, model.diff)
        for paired in (True, False):
            win, loss = model.win_loss(paired)
            found = simulate(model, rule, paired, replicates, seed, walker)
            pairs = sorted(n for _, n, _ in found)
            share = {k: sum(d == k for d, _, _ in found) / replicates for k in pr_decisions()}
            row: Row = {
                "true_diff": round(model.diff, 6) + 0.0,  # no -0.0
                "design": "paired" if paired else "unpaired",
                "p_win": win,
                "p_loss": loss,
                "replicates": replicates,
                "worse": share["worse"],
                "not_worse": share["not worse"],
                "undecided": share["undecided"],
                "median_pairs": statistics.median(pairs),
                "mean_pairs": statistics.fmean(pairs),
                "mean_sims": 2 * statistics.fmean(pairs),
                "covered": sum(c for _, _, c in found) / replicates,
            }
            if diff <= -0.1 or diff >= 0.1:
                null = -MARGIN  # both tests' boundary: H0 mu >= null at -0.20, <= at +0.10
                row["fixed_pairs_90"] = pr.fixed_paired_pairs(win, loss, null, ALPHA)
                mb, mc = statistics.fmean(model.base), statistics.fmean(model.cand)
                row["fixed_unpaired_sims_90"] = 2 * pr.fixed_unpaired_per_arm(mb, mc, null, ALPHA)
            rows.append(row)
    judge(rows)
    return {
        "scenarios": SCENARIOS,
        "baseline_rates": f"{SCENARIOS} evenly spaced on {DIFFICULTY[0]}-{DIFFICULTY[1]}",
        "margin": MARGIN,
        "alpha": ALPHA,
        "max_pairs": max_pairs,
        "replicates": replicates,
        "seed": seed,
        "rule": rule.params(),
        "hypotheses": (
            f"worse: H0 mu >= -{MARGIN} rejected; not worse: H0 mu <= -{MARGIN} rejected; "
            f"fixed designs one-sided against -{MARGIN}"
        ),
        "secs": round(time.perf_counter() - started, 1),
        "rows": rows,
    }


SELF_AXIS = "dynamic_variables.customer_tier"
SELF_SCENARIOS = (
    (
        "missing_order",
        "My order never arrived.",
        "You ordered headphones, order A-10234, and they never arrived.",
    ),
    ("late", "Where is my order A-1000?", "You are customer 0; order A-1000 is late."),
    ("refund", "I want a refund.", "You want a refund for a broken kettle, order B-2211."),
)
"""Two the local ``support`` agent passes about nine times in ten (so the two arms' outcomes
differ in some pairs), one it fails."""
CRITERION = {
    "id": "order_status_given",
    "name": "Order status given",
    "conversation_goal_prompt": "The agent tells the customer the order status.",
}


def self_config(path: Path, base_url: str, seed: int, max_pairs: int) -> Path:
    """``support`` against itself: the arms differ only in an axis it never reads."""
    import yaml

    config = {
        "target": {"base_url": base_url},
        "run": {"name": f"self-{seed}", "concurrency": 8, "new_turns_limit": 8, "seed": seed},
        "agents": [{"id": "agent_support", "label": "support"}],
        "criteria": [CRITERION],
        "scenarios": [
            {"id": sid, "first_message": first, "prompt": prompt}
            for sid, first, prompt in SELF_SCENARIOS
        ],
        "matrix": {SELF_AXIS: ["gold", "basic"]},
        "compare": {
            "baseline": {"matrix": {SELF_AXIS: "gold"}},
            "candidate": {"matrix": {SELF_AXIS: "basic"}},
            "max_pairs": max_pairs,
        },
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def self_comparison(seeds: int = 20, max_pairs: int = 200) -> dict[str, Any]:
    """A variant against itself, end to end on the local API, ``seeds`` comparisons."""
    import tempfile

    import runner
    from runner.localapi.server import local_api_process

    rows: list[Row] = []
    started = time.perf_counter()
    with (
        local_api_process(["--time-scale", "0.001", "--seed", "1"], timeout=60.0) as api,
        tempfile.TemporaryDirectory(prefix="bench-self-") as tmp,
    ):
        for seed in range(1, seeds + 1):
            path = self_config(Path(tmp) / f"self-{seed}.yaml", api.base_url, seed, max_pairs)
            result = runner.run(path, results_root=Path(tmp), progress=False, quiet=True)
            decision = result.compare
            assert decision is not None
            c = decision.counts
            rows.append(
                {
                    "seed": seed,
                    "decision": decision.verdict,
                    "pairs": c.pairs,
                    "decided_at": decision.decided_at,
                    "simulations": result.counters.done,
                    "wins": c.wins,
                    "ties": c.ties,
                    "losses": c.losses,
                    "lower": decision.lower,
                    "upper": decision.upper,
                }
            )
    worse = sum(r["decision"] == "worse" for r in rows)
    return {
        "seeds": seeds,
        "max_pairs": max_pairs,
        "margin": MARGIN,
        "alpha": ALPHA,
        "setup": (
            f"support against itself (arms {SELF_AXIS} gold / basic, which it never reads), "
            f"{len(SELF_SCENARIOS)} scenarios, one criterion, local API --time-scale 0.001"
        ),
        "worse": worse,
        "not_worse": sum(r["decision"] == "not worse" for r in rows),
        "undecided": sum(r["decision"] == "undecided" for r in rows),
        "simulations": sum(r["simulations"] for r in rows),
        "pooled": {k: sum(r[k] for r in rows) for k in ("wins", "ties", "losses")},
        "target": f"never worse: {'met' if worse == 0 else 'MISSED'}",
        "secs": round(time.perf_counter() - started, 1),
        "rows": rows,
    }


SELF_COLUMNS = (
    ("seed", "seed", "{}"),
    ("decision", "decision", "{}"),
    ("pairs", "pairs", "{}"),
    ("decided_at", "decided at", "{}"),
    ("simulations", "sims", "{}"),
    ("wins", "won", "{}"),
    ("ties", "tied", "{}"),
    ("losses", "lost", "{}"),
    ("lower", "CS lower", "{:+.3f}"),
    ("upper", "CS upper", "{:+.3f}"),
)


def report_self(figures: dict[str, Any]) -> None:
    print(
        f"compare, end to end: {figures['setup']}; margin {figures['margin']}, alpha "
        f"{figures['alpha']}, max {figures['max_pairs']} pairs, {figures['seeds']} seeds, "
        f"{figures['secs']} s"
    )
    print(render_table(SELF_COLUMNS, figures["rows"]))
    pooled = figures["pooled"]
    print(
        f"worse {figures['worse']}, not worse {figures['not_worse']}, undecided "
        f"{figures['undecided']} of {figures['seeds']}; {figures['simulations']} simulations; "
        f"pooled {pooled['wins']} won, {pooled['ties']} tied, {pooled['losses']} lost; "
        f"{figures['target']} ('worse' here needs the sequence to miss the truth by the whole "
        "margin: chance at most alpha)"
    )


def pr_decisions() -> tuple[str, ...]:
    return ("worse", "not worse", "undecided")


def judge(rows: list[Row]) -> None:
    """Each row's target, in words: the false "worse" rate at 0 and -margin / 2, both rates at
    -margin (the boundary of both nulls); the median below the fixed design and paired below
    unpaired at -0.20 and +0.10."""
    by = {(r["true_diff"], r["design"]): r for r in rows}
    for row in rows:
        diff, design = row["true_diff"], row["design"]
        if -MARGIN < diff <= 0.0:
            ok = row["worse"] <= ALPHA
            row["target"] = f"false worse <= {ALPHA}: {'met' if ok else 'MISSED'}"
        elif diff == -MARGIN:
            ok = row["not_worse"] <= ALPHA and row["worse"] <= ALPHA
            row["target"] = f"false not worse, worse <= {ALPHA}: {'met' if ok else 'MISSED'}"
        elif "fixed_pairs_90" in row:
            below = row["median_pairs"] < row["fixed_pairs_90"]
            text = f"median < fixed 90%: {'met' if below else 'MISSED'}"
            if design == "paired":
                other = by[(diff, "unpaired")]
                fewer = row["mean_sims"] < other["mean_sims"]
                text += f"; fewer sims than unpaired: {'met' if fewer else 'MISSED'}"
            row["target"] = text


COLUMNS = (
    ("true_diff", "true diff", "{:+g}"),
    ("design", "design", "{}"),
    ("p_win", "P(D=1)", "{:.3f}"),
    ("p_loss", "P(D=-1)", "{:.3f}"),
    ("worse", "worse", "{:.3f}"),
    ("not_worse", "not worse", "{:.3f}"),
    ("undecided", "undecided", "{:.3f}"),
    ("median_pairs", "median pairs", "{:g}"),
    ("mean_sims", "mean sims", "{:.0f}"),
    ("fixed_pairs_90", "fixed 90% pairs", "{}"),
    ("fixed_unpaired_sims_90", "fixed unpaired sims", "{}"),
    ("covered", "CS covers", "{:.3f}"),
    ("target", "target", "{}"),
)


def table(rows: list[Row]) -> str:
    return render_table(COLUMNS, rows)


def report(figures: dict[str, Any], out: Path) -> None:
    """The Monte Carlo table (and the end-to-end one when ``figures`` has ``self``), and the
    JSON."""
    print(
        f"compare: {figures['scenarios']} scenarios, baseline pass rates "
        f"{figures['baseline_rates']}; margin {figures['margin']}, alpha {figures['alpha']}, "
        f"max {figures['max_pairs']} pairs, {figures['replicates']} replicates, "
        f"{figures['secs']} s"
    )
    print(table(figures["rows"]))
    if "self" in figures:
        report_self(figures["self"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"figures: {out / 'compare.json'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.paired", description=__doc__)
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--max-pairs", type=int, default=MAX_PAIRS)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    parser.add_argument("--self-seeds", type=int, default=20, help="0: no end-to-end run")
    parser.add_argument("--self-max-pairs", type=int, default=SELF_MAX_PAIRS)
    args = parser.parse_args(argv)
    figures = run(args.replicates, args.max_pairs)
    if args.self_seeds:
        figures["self"] = self_comparison(args.self_seeds, args.self_max_pairs)
    report(figures, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
