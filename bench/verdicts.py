"""Sequential verdicts by seeded Monte Carlo (issue 25): what each rule spends and settles.

``python -m bench --only verdicts`` (or ``python -m bench.verdicts``). Every replicate draws
``cases`` true pass rates from ``MIX`` (on a 0.005 grid, so the coverage check can reuse the
boundaries at each rate) and one sequence of pass/fail outcomes per case; every design sees the
same sequences (common random numbers), the sequential ones only the prefix they ask for:

- ``anytime`` at max 20 and 40 (priors tuned for the horizon) against fixed 20 / 40 repeats
  judged once by the Wilson interval, beside a reference anytime rule whose one prior leans to
  the far side of the threshold at every max;
- ``curtail`` ("at least ceil(0.8 K) of K") against the same rule run to K;
- ``sprt`` (0.6 against 0.8, alpha = beta = 0.05) truncated at the n of the fixed design of the
  same power, beside that fixed design.

Wrong verdicts: PASS with a true rate at or below the rule's null (0.8; 0.6 for the SPRT), FAIL
above 0.8. Coverage (``anytime``): the share of cases whose true rate every n <= max of the
confidence sequence holds. Figures go to ``results/bench/verdicts.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.text import render_table
from runner import verdicts as v

ROOT = Path(__file__).resolve().parents[1]
MIX = ((0.6, 0.95, 1.0), (0.2, 0.0, 0.3), (0.2, 0.5, 0.9))
"""(share, low, high): true pass rates uniform on [low, high] in that share of cases."""
GRID = 0.005
PASS_RATE, ALPHA = 0.8, 0.05
SPRT_LOW, SPRT_BETA = 0.6, 0.05
REFERENCE = (v.SidePrior("above", 0.75, 10.0), v.SidePrior("below", 0.25, 10.0))
"""The reference one-sided mixtures: one prior leaning to the far side, whatever max."""

Row = dict[str, Any]


def mix_text() -> str:
    return ", ".join(f"{share:.0%} uniform on {lo:g}-{hi:g}" for share, lo, hi in MIX)


def draw_rate(rng: random.Random) -> float:
    u, acc = rng.random(), 0.0
    lo, hi = MIX[-1][1:]
    for share, low, high in MIX:
        acc += share
        if u < acc:
            lo, hi = low, high
            break
    p = round(rng.uniform(lo, hi) / GRID) * GRID
    return min(1 - GRID, max(GRID, p))


@dataclass
class Tallies:
    """Running sums of one design over every case of every replicate."""

    sims: int = 0
    cases: int = 0
    settled: int = 0
    wrong: int = 0
    covered: int = 0
    agree: int = 0

    def row(self, setup: str, max_repeats: int, replicates: int) -> Row:
        return {
            "setup": setup,
            "max": max_repeats,
            "sims_per_case": self.sims / self.cases,
            "sims_per_replicate": self.sims / replicates,
            "settled_per_replicate": self.settled / replicates,
            "settled_share": self.settled / self.cases,
            "wrong_share": self.wrong / self.cases,
            "covered_share": self.covered / self.cases if self.covered else None,
        }


Stepper = Callable[[int, int], str]


def lattice(rule: v.Anytime | v.Sprt, max_repeats: int) -> list[list[str]]:
    """The rule's state at every (n, s), n <= max, computed once: the Monte Carlo looks up."""
    return [[rule.state(n, s) for s in range(n + 1)] for n in range(max_repeats + 1)]


def run_sequential(table: list[list[str]], seq: list[bool], max_repeats: int) -> tuple[int, str]:
    s = 0
    for n in range(1, max_repeats + 1):
        s += seq[n - 1]
        state = table[n][s]
        if state:
            return n, state
    return max_repeats, "undecided"


def wilson_verdicts(n: int) -> list[str]:
    """The fixed Wilson verdict for each number of passes in n."""
    out: list[str] = []
    for s in range(n + 1):
        outcomes: list[v.Outcome] = ["pass" if i < s else "fail" for i in range(n)]
        out.append(v.fixed_wilson(outcomes, PASS_RATE).verdict)
    return out


def wrong(verdict: str, p: float, null: float = PASS_RATE) -> bool:
    return (verdict == "pass" and p <= null) or (verdict == "fail" and p > PASS_RATE)


def run(replicates: int, cases: int, seed: int = 25) -> dict[str, Any]:
    """All the designs over ``replicates`` x ``cases``; the figures as one JSON-able dict."""
    started = time.perf_counter()
    rng = random.Random(seed)
    anytime = {n: v.Anytime(PASS_RATE, ALPHA, n) for n in (20, 40)}
    reference = {n: v.Anytime(PASS_RATE, ALPHA, n, priors=REFERENCE) for n in (20, 40)}
    tables = {("anytime", n): lattice(r, n) for n, r in anytime.items()}
    tables |= {("reference", n): lattice(r, n) for n, r in reference.items()}
    wilson = {n: wilson_verdicts(n) for n in (20, 40)}
    curtail = {n: v.Curtail(PASS_RATE, n) for n in (20, 40)}
    fixed_n, fixed_c = v.fixed_design(SPRT_LOW, PASS_RATE, ALPHA, SPRT_BETA)
    sprt = v.Sprt(PASS_RATE, SPRT_LOW, ALPHA, SPRT_BETA, max_repeats=fixed_n)
    sprt_table = lattice(sprt, fixed_n)
    horizon = max(40, fixed_n)
    cover_cache: dict[float, tuple[list[float], list[float]]] = {}

    def bounds(p: float) -> tuple[list[float], list[float]]:
        if p not in cover_cache:
            r = anytime[40]
            cover_cache[p] = (
                list(v._row(r.above, p, ALPHA, 40)),
                list(v._row(r.below, p, ALPHA, 40)),
            )
        return cover_cache[p]

    names = [
        "anytime 20", "reference 20", "fixed Wilson 20", "curtail 20", "fixed 16 of 20",
        "anytime 40", "reference 40", "fixed Wilson 40", "curtail 40", "fixed 32 of 40",
        "sprt", "fixed design",
    ]  # fmt: skip
    sums = {name: Tallies() for name in names}
    covered_20 = covered_40 = 0
    for _ in range(replicates):
        for _ in range(cases):
            p = draw_rate(rng)
            seq = [rng.random() < p for _ in range(horizon)]
            prefix_passes = [0]
            for ok in seq:
                prefix_passes.append(prefix_passes[-1] + ok)
            for k in (20, 40):
                for kind in ("anytime", "reference"):
                    n, verdict = run_sequential(tables[(kind, k)], seq, k)
                    _count(sums[f"{kind} {k}"], n, verdict, p)
                _count(sums[f"fixed Wilson {k}"], k, wilson[k][prefix_passes[k]], p)
                rule = curtail[k]
                fixed = "pass" if prefix_passes[k] >= rule.needed else "fail"
                n = next(
                    i
                    for i in range(1, k + 1)
                    if prefix_passes[i] >= rule.needed or i - prefix_passes[i] > k - rule.needed
                )
                verdict = "pass" if prefix_passes[n] >= rule.needed else "fail"
                _count(sums[f"curtail {k}"], n, verdict, p)
                sums[f"curtail {k}"].agree += verdict == fixed
                _count(sums[f"fixed {rule.needed} of {k}"], k, fixed, p)
            n, verdict = run_sequential(sprt_table, seq, fixed_n)
            _count(sums["sprt"], n, verdict, p, SPRT_LOW)
            fixed = "pass" if prefix_passes[fixed_n] >= fixed_c else "fail"
            _count(sums["fixed design"], fixed_n, fixed, p, SPRT_LOW)
            above, below = bounds(p)
            holds = [
                not (prefix_passes[n] >= above[n] or prefix_passes[n] <= below[n])
                for n in range(1, 41)
            ]
            covered_20 += all(holds[:20])
            covered_40 += all(holds)
    total = replicates * cases
    rows = {name: sums[name].row(name, 0, replicates) for name in names}
    for name in names:
        rows[name]["max"] = int(name.split()[-1]) if name[-1].isdigit() else fixed_n
    rows["anytime 20"]["covered_share"] = covered_20 / total
    rows["anytime 40"]["covered_share"] = covered_40 / total
    for k in (20, 40):
        rows[f"curtail {k}"]["agrees_with_fixed"] = sums[f"curtail {k}"].agree / total
    for k, target in ((20, 0.35), (40, 0.50)):
        got, base = rows[f"anytime {k}"], rows[f"fixed Wilson {k}"]
        got["saved_vs_fixed"] = 1 - got["sims_per_case"] / base["sims_per_case"]
        ref = rows[f"reference {k}"]
        ref["saved_vs_fixed"] = 1 - ref["sims_per_case"] / base["sims_per_case"]
        as_many = got["settled_per_replicate"] >= rows["fixed Wilson 20"]["settled_per_replicate"]
        gap = got["settled_per_replicate"] - base["settled_per_replicate"]
        got["target"] = (
            f">= {target:.0%} fewer sims: {'met' if got['saved_vs_fixed'] >= target else 'MISSED'}"
            f"; settles >= fixed Wilson 20: {'met' if as_many else 'MISSED'}"
            f" (vs fixed Wilson {k}: {gap:+.1f}"
            f" cases); beats the reference: "
            f"{'met' if got['saved_vs_fixed'] > ref['saved_vs_fixed'] else 'MISSED'}"
            f"; wrong <= alpha: {'met' if got['wrong_share'] <= ALPHA else 'MISSED'}"
            f"; coverage >= 95%: {'met' if got['covered_share'] >= 0.95 else 'MISSED'}"
        )
        cut = rows[f"curtail {k}"]
        cut["saved_vs_fixed"] = 1 - cut["sims_per_case"] / k
        same = cut["agrees_with_fixed"] == 1.0
        cut["target"] = (
            f"identical verdicts: {'met' if same else 'MISSED'}; >= 15% fewer sims: "
            f"{'met' if cut['saved_vs_fixed'] >= 0.15 else 'MISSED'}"
        )
    rows["sprt"]["saved_vs_fixed"] = 1 - rows["sprt"]["sims_per_case"] / fixed_n
    rows["sprt"]["target"] = (
        f"beside the fixed design of the same power (n {fixed_n}, >= {fixed_c})"
    )
    return {
        "mix": mix_text(),
        "grid": GRID,
        "pass_rate": PASS_RATE,
        "alpha": ALPHA,
        "sprt": {
            "pass_rate_low": SPRT_LOW,
            "beta": SPRT_BETA,
            "fixed_n": fixed_n,
            "fixed_c": fixed_c,
        },
        "priors": {str(k): [str(p) for p in (r.above, r.below)] for k, r in anytime.items()}
        | {"reference": [str(p) for p in REFERENCE]},
        "replicates": replicates,
        "cases": cases,
        "seed": seed,
        "secs": round(time.perf_counter() - started, 1),
        "rows": list(rows.values()),
    }


def _count(t: Tallies, n: int, verdict: str, p: float, null: float = PASS_RATE) -> None:
    t.sims += n
    t.cases += 1
    t.settled += verdict != "undecided"
    t.wrong += wrong(verdict, p, null)


COLUMNS = (
    ("setup", "design", "{}"),
    ("max", "max", "{}"),
    ("sims_per_case", "sims/case", "{:.2f}"),
    ("saved_vs_fixed", "saved", "{:.1%}"),
    ("settled_per_replicate", "settled/200", "{:.1f}"),
    ("wrong_share", "wrong", "{:.2%}"),
    ("covered_share", "coverage", "{:.1%}"),
    ("target", "target", "{}"),
)


def table(figures: dict[str, Any]) -> str:
    cases = figures["cases"]
    header = [title.replace("200", str(cases)) for _, title, _ in COLUMNS]
    return render_table(COLUMNS, figures["rows"], header)


def report(figures: dict[str, Any], out: Path) -> None:
    print(
        f"verdicts: {figures['replicates']} replicates x {figures['cases']} cases, seed "
        f"{figures['seed']}, {figures['secs']} s; true pass rates {figures['mix']} (on a "
        f"{figures['grid']:g} grid); pass_rate {figures['pass_rate']}, alpha {figures['alpha']}"
    )
    print(table(figures))
    out.mkdir(parents=True, exist_ok=True)
    (out / "verdicts.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"figures: {out / 'verdicts.json'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.verdicts", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--seed", type=int, default=25)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    args = parser.parse_args(argv)
    report(run(args.replicates, args.cases, args.seed), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
