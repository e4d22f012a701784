"""The paired comparison (issue 26): error rates by seeded simulation, the e-processes against
independent computations, resume and bad input."""

from __future__ import annotations

import itertools
import math
import random
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import Any

import polars as pl
import pytest

from bench.paired import Model, simulate
from runner import paired as pr
from runner import paired_runs as pruns
from runner.config.compare import parse_compare
from runner.config.errors import ConfigError


def test_unknown_and_error_never_count_as_a_pass() -> None:
    assert pr.difference("fail", "pass") == 1 and pr.difference("pass", "fail") == -1
    assert pr.difference("pass", "unknown") == -1 and pr.difference("unknown", "pass") == 1
    assert pr.difference("pass", "error") == -1 and pr.difference("error", "error") == 0
    assert pr.difference("pass", "error", error_as="skip") is None
    assert pr.difference("unknown", "fail") == 0
    with pytest.raises(ValueError, match=r"^candidate: outcome must be one of"):
        pr.difference("pass", "passed")  # type: ignore[arg-type]
    counts = pr.count([1, 0, -1, -1, None])
    assert (counts.wins, counts.ties, counts.losses, counts.skipped) == (1, 1, 2, 1)
    assert counts.pairs == 5 and counts.tested == 4 and counts.mean == -0.25


def direct_wealth(diffs: list[int], m: float, side: str, prior: pr.BetPrior) -> float:
    """K_n(m) as the mixture of products along the sequence, weights built from the prior's
    definition (log-spaced u, weight u^tilt), not from the module's tables."""
    us = [prior.low * (prior.high / prior.low) ** (k / (prior.size - 1)) for k in range(prior.size)]
    raw = [u**prior.tilt for u in us]
    total = 0.0
    for u, w in zip(us, raw, strict=True):
        product = 1.0
        for d in diffs:
            product *= 1 + u * ((d - m) / (1 + m) if side == "above" else (m - d) / (1 - m))
        total += w / sum(raw) * product
    return total


@pytest.mark.parametrize("m", [-0.05, 0.0, 0.3, -0.6])
@pytest.mark.parametrize("side", ["above", "below"])
def test_log_wealth_is_the_mixture_of_products(m: float, side: str) -> None:
    rng = random.Random(7)
    diffs = [rng.choice((-1, 0, 1)) for _ in range(60)]
    for n in (0, 1, 5, 60):
        got = pr.log_wealth(pr.count(diffs[:n]), m, side, pr.DEFAULT_PRIOR)  # type: ignore[arg-type]
        assert got == pytest.approx(math.log(direct_wealth(diffs[:n], m, side, pr.DEFAULT_PRIOR)))


def null_laws(m: float) -> list[tuple[float, float, float]]:
    """(P(D=1), P(D=0), P(D=-1)) with mean exactly m, from few discordant pairs to all."""
    laws = []
    for psi in (abs(m) + 0.02, 0.2, 0.5, 0.9, 1.0):
        win, loss = (psi + m) / 2, (psi - m) / 2
        laws.append((win, 1 - psi, loss))
    return laws


@pytest.mark.parametrize("m", [-0.05, 0.0, 0.25])
def test_the_wealth_is_a_martingale_at_the_null_and_shrinks_beyond_it(m: float) -> None:
    """E[K_{n+1} | past] = K_n when E[D] = m, and < K_n on the null's side, at any counts."""
    for counts in (pr.Counts(), pr.Counts(3, 10, 1), pr.Counts(0, 2, 9), pr.Counts(40, 100, 25)):
        for side, sign in (("above", -1), ("below", 1)):
            now = pr.log_wealth(counts, m, side)  # type: ignore[arg-type]
            after = [pr.log_wealth(counts.add(d), m, side) - now for d in (1, 0, -1)]  # type: ignore[arg-type]

            def expected(law: tuple[float, float, float], after: list[float] = after) -> float:
                return sum(p * math.exp(a) for p, a in zip(law, after, strict=True))

            for law in null_laws(m):
                assert expected(law) == pytest.approx(1.0, abs=1e-12)
                # moved 0.02 further into the null (a tie turned into a loss, or a win)
                win, tie, loss = law
                inside = (
                    (win, tie - 0.02, loss + 0.02) if sign < 0 else (win + 0.02, tie - 0.02, loss)
                )
                if min(inside) >= 0:
                    assert expected(inside) < 1.0


def crossing_probabilities(
    rule: pr.NonInferiority, laws: list[tuple[float, float, float]], n: int, test: str
) -> list[float]:
    """Per law, P(the test rejects at some pair <= n), summed over all 3^n sequences of D
    (the e-value at each prefix's counts computed once)."""
    rejects: dict[pr.Counts, bool] = {}
    totals = [0.0] * len(laws)
    for seq in itertools.product((1, 0, -1), repeat=n):
        counts, crossed = pr.Counts(), False
        for d in seq:
            counts = counts.add(d)
            if counts not in rejects:
                nw, w = rule.e_values(counts)
                rejects[counts] = (nw if test == "not worse" else w) >= rule.level
            crossed = crossed or rejects[counts]
        if crossed:
            for i, (win, tie, loss) in enumerate(laws):
                totals[i] += win**counts.wins * tie**counts.ties * loss**counts.losses
    return totals


@pytest.mark.parametrize("test", ["worse", "not worse"])
def test_exact_crossing_probability_is_at_most_alpha_under_the_least_favourable_nulls(
    test: str,
) -> None:
    """Brute force over every sequence of 9 pairs at the null's edge (mean -margin, for both
    tests) and every discordance: the chance of ever rejecting is <= alpha, and it is not zero
    (the rule does reject that early)."""
    rule = pr.NonInferiority(margin=0.1, alpha=0.3, max_pairs=9)
    found = crossing_probabilities(rule, null_laws(-0.1), 9, test)
    assert max(found) <= rule.alpha
    assert max(found) > 0.02


def test_error_rates_by_simulation_with_correlated_scenarios() -> None:
    """Scenarios of varying difficulty, the pair's scenario drawn at random: at a true
    difference of 0 the false "worse" rate, at -margin both decisions' rates (both nulls hold
    on the boundary), <= alpha."""
    rule = pr.NonInferiority(margin=0.05, alpha=0.05, max_pairs=150)
    at_zero = simulate(Model.at(0.0), rule, True, 300, seed=11)
    at_margin = simulate(Model.at(-0.05), rule, True, 300, seed=12)
    worse = sum(d == "worse" for d, _, _ in at_zero) / 300
    not_worse = sum(d == "not worse" for d, _, _ in at_margin) / 300
    assert worse <= 0.05 and not_worse <= 0.05
    assert sum(d == "worse" for d, _, _ in at_margin) / 300 <= 0.05
    # the confidence sequence held the truth at every pair (guarantee: 1 - 2 alpha)
    assert sum(c for _, _, c in at_zero + at_margin) / 600 >= 0.9
    # the rule does decide at 0 (the true answer there)
    assert sum(d == "not worse" for d, _, _ in at_zero) > 0
    model = Model.at(-0.05)
    win, loss = model.win_loss(True)
    assert model.diff == pytest.approx(-0.05, abs=1e-9) and win - loss == pytest.approx(-0.05)
    assert win + loss < sum(model.win_loss(False))  # pairing removes the scenario's variance


def test_a_variant_against_itself_is_almost_never_worse() -> None:
    """At a true difference of 0, 3,000 seeded comparisons of 60 pairs: "worse" (the sequence
    below -margin, missing the truth by the whole margin) in at most a fifth of alpha, and in
    under half as many as a "worse" tested against 0 on the same draws."""
    rule = pr.NonInferiority(margin=0.05, alpha=0.05, max_pairs=60)
    model, replicates, seed = Model.at(0.0), 3000, 21
    found = simulate(model, rule, True, replicates, seed)
    worse = sum(d == "worse" for d, _, _ in found)
    against_zero, memo = 0, {}
    for r in range(replicates):  # the same draws as ``simulate``: its seeding, its model
        rng, counts = random.Random(seed * 1_000_003 + r), pr.Counts()
        for _ in range(rule.max_pairs):
            counts = counts.add(model.draw(rng, True))
            if counts not in memo:
                memo[counts] = pr.log_wealth(counts, 0.0, "below") >= rule.level
            if memo[counts]:
                against_zero += 1
                break
    assert worse <= 0.01 * replicates
    assert 2 * worse < against_zero


def test_a_clearly_worse_candidate_is_still_decided_worse() -> None:
    rule = pr.NonInferiority(margin=0.05, alpha=0.05, max_pairs=150)
    found = simulate(Model.at(-0.3), rule, True, 200, seed=22)
    assert all(d == "worse" for d, _, _ in found)
    assert sorted(n for _, n, _ in found)[100] < 60


def test_a_large_difference_is_decided_before_the_fixed_design() -> None:
    """The fixed design tests the same hypotheses as the rule: H0 mu >= -margin at -0.2."""
    rule = pr.NonInferiority(margin=0.05, alpha=0.05, max_pairs=400)
    model = Model.at(-0.2)
    found = simulate(model, rule, True, 101, seed=3)
    pairs = sorted(n for _, n, _ in found)
    assert all(d == "worse" for d, _, _ in found)
    assert pairs[50] < pr.fixed_paired_pairs(*model.win_loss(True), null=-0.05, alpha=0.05)


def direct_first_crossings(diffs: list[int], margin: float, alpha: float) -> dict[str, int]:
    """The first pair at which each direct mixture (``direct_wealth``'s products, updated
    pair by pair) reaches 1 / alpha: K+(-margin) "not worse", K-(-margin) "worse", K-(0)
    "zero" (a "worse" tested against 0)."""
    prior = pr.DEFAULT_PRIOR
    us = [prior.low * (prior.high / prior.low) ** (k / (prior.size - 1)) for k in range(prior.size)]
    raw = [u**prior.tilt for u in us]
    weights = [w / sum(raw) for w in raw]
    tests = {"not worse": (-margin, "above"), "worse": (-margin, "below"), "zero": (0.0, "below")}
    products = {name: [1.0] * len(us) for name in tests}
    first: dict[str, int] = {}
    for n, d in enumerate(diffs, 1):
        for name, (m, side) in tests.items():
            step = (d - m) / (1 + m) if side == "above" else (m - d) / (1 - m)
            products[name] = [p * (1 + u * step) for p, u in zip(products[name], us, strict=True)]
            wealth = sum(w * p for w, p in zip(weights, products[name], strict=True))
            if name not in first and wealth >= 1 / alpha:
                first[name] = n
    return first


def test_the_decision_is_the_first_crossing_at_the_margin() -> None:
    """Against an independent computation: along seeded sequences (differences from clearly
    worse to equal), the rule decides at the first pair where a directly computed mixture
    against -margin reaches 1 / alpha ("worse" on a tie); K-(0) alone decides nothing."""
    margin, alpha = 0.1, 0.05
    rule = pr.NonInferiority(margin=margin, alpha=alpha, max_pairs=10_000)
    rng = random.Random(31)
    seen = set()
    for law in ((0.05, 0.55, 0.4), (0.1, 0.6, 0.3), (0.2, 0.6, 0.2), (0.15, 0.7, 0.15)) * 3:
        diffs = rng.choices((1, 0, -1), weights=law, k=150)
        first = direct_first_crossings(diffs, margin, alpha)
        decision = rule.decide(list(diffs))
        candidates = [(n, name) for name, n in first.items() if name != "zero"]
        if not candidates:
            assert decision.verdict == "undecided" and decision.decided_at is None
        else:
            at, verdict = min(candidates, key=lambda c: (c[0], c[1] != "worse"))
            assert (decision.verdict, decision.decided_at) == (verdict, at), (law, first)
        seen.add(decision.verdict)
        if "zero" in first and first["zero"] < first.get("worse", 10**9):
            seen.add("worse against 0 first")
    assert seen >= {"worse", "not worse", "worse against 0 first"}
    # a self-comparison a "worse" against 0 ended (bench, seed 9): 0 won, 7 lost, then ties
    seed_9 = [-1] * 7 + [0] * 54
    assert "zero" in direct_first_crossings(seed_9, 0.05, 0.05)
    assert pr.NonInferiority().decide(list(seed_9)).verdict == "undecided"


def test_decision_is_a_pure_function_of_the_ordered_outcomes() -> None:
    """Resume: the same pairs give the same result; pairs finishing after the decision are
    counted but do not undo it; a prefix before the decision asks for more pairs."""
    rule = pr.NonInferiority(margin=0.05, alpha=0.05, max_pairs=400)
    rng = random.Random(5)
    diffs: list[int | None] = [rng.choice((-1, -1, 0, 0, 0, 1)) for _ in range(200)]
    full = rule.decide(diffs)
    assert full.verdict == "worse" and full.stop and full.decided_at is not None
    at = full.decided_at
    assert rule.decide(diffs[:at]).verdict == "worse"
    assert rule.decide(diffs[:at]).counts.pairs == at
    before = rule.decide(diffs[: at - 1])
    assert before.verdict == "undecided" and not before.stop
    resumed = rule.decide(list(diffs))
    assert resumed == full
    # pairs in flight at the decision that then favour the candidate: still worse, from pair `at`
    late = rule.decide([*diffs[:at], *([1] * 30)])
    assert late.verdict == "worse" and late.decided_at == at and late.counts.pairs == at + 30


def test_extending_max_pairs_continues_the_same_test() -> None:
    """The bets do not depend on max_pairs: a comparison undecided at 60 pairs, extended to
    400, sees the same wealth at pair 60 and goes on from there."""
    rng = random.Random(9)
    diffs: list[int | None] = [rng.choice((-1, 0, 0, 0, 1, 1)) for _ in range(400)]
    short = pr.NonInferiority(max_pairs=60).decide(diffs[:60])
    longer = pr.NonInferiority(max_pairs=400)
    assert short.stop and short.verdict == "undecided"
    assert longer.e_values(short.counts) == (short.log_e_not_worse, short.log_e_worse)
    extended = longer.decide(diffs)
    assert extended.verdict == "not worse" and extended.decided_at is not None
    assert extended.decided_at > 60


def test_outcome_pairs_and_skipped_errors() -> None:
    rule = pr.NonInferiority(margin=0.05, alpha=0.05, max_pairs=10, error_as="skip")
    result = rule.decide_outcomes([("pass", "error"), ("pass", "pass"), ("error", "fail")])
    assert result.counts == pr.Counts(wins=0, ties=1, losses=0, skipped=2)
    assert not result.stop


def test_the_confidence_sequence_agrees_with_the_two_tests() -> None:
    rule = pr.NonInferiority(margin=0.05, alpha=0.05, max_pairs=1000)
    for wins, ties, losses in itertools.product(range(0, 60, 11), (0, 30, 200), range(0, 60, 11)):
        counts = pr.Counts(wins, ties, losses)
        lower, upper = pr.confidence_bounds(counts, rule.alpha, tol=1e-7)
        nw, w = rule.e_values(counts)
        assert lower <= upper
        if counts.tested:
            assert lower - 1e-6 <= (counts.mean or 0) <= upper + 1e-6
        assert (nw >= rule.level) == (lower > -0.05) or abs(lower + 0.05) < 1e-5
        assert (w >= rule.level) == (upper < -0.05) or abs(upper + 0.05) < 1e-5


def test_undecided_when_no_decision_can_be_reached() -> None:
    rule = pr.NonInferiority(margin=0.05, alpha=0.05, max_pairs=30)
    result = rule.decide([1, -1] * 12 + [0])
    assert result.verdict == "undecided" and result.stop
    assert "no decision reachable in the 5 pairs left" in result.reason
    at_max = pr.NonInferiority(margin=0.05, alpha=0.05, max_pairs=3).decide([1, 0, -1])
    assert at_max.stop and "max_pairs 3 reached" in at_max.reason
    assert not pr.NonInferiority(max_pairs=30).decide([0] * 5).stop


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"margin": -0.01}, "margin: must be at least 0 and below 1 (got -0.01)"),
        ({"margin": 1.0}, "margin: must be at least 0 and below 1 (got 1.0)"),
        ({"alpha": 0.0}, "alpha: must be between 0 and 1, exclusive (got 0.0)"),
        ({"alpha": 1.5}, "alpha: must be between 0 and 1, exclusive (got 1.5)"),
        ({"max_pairs": 0}, "max_pairs: must be at least 1 (got 0)"),
        ({"error_as": "pass"}, "error_as: must be fail or skip (got 'pass')"),
    ],
)
def test_bad_parameters_are_refused_in_one_line(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        pr.NonInferiority(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message and "\n" not in str(caught.value)


def normal_power(n: int, win: float, loss: float, null: float, alpha: float) -> float:
    """Power of the fixed one-sided z test of the paired mean with n pairs (null variance
    psi - null^2, true variance psi - mu^2, psi held fixed)."""
    psi, mu = win + loss, win - loss
    z = NormalDist()
    crit = z.inv_cdf(1 - alpha) * math.sqrt(psi - null * null)
    return z.cdf((abs(mu - null) * math.sqrt(n) - crit) / math.sqrt(psi - mu * mu))


@pytest.mark.parametrize(
    ("win", "loss", "null"), [(0.1, 0.3, 0.0), (0.23, 0.13, -0.05), (0.05, 0.05, -0.1)]
)
def test_fixed_design_is_the_least_n_with_the_power(win: float, loss: float, null: float) -> None:
    n = pr.fixed_paired_pairs(win, loss, null, 0.05, 0.9)
    assert (
        normal_power(n, win, loss, null, 0.05) >= 0.9 > normal_power(n - 1, win, loss, null, 0.05)
    )
    arm = pr.fixed_unpaired_per_arm(0.6, 0.4, 0.0, 0.05, 0.9)
    z = NormalDist().inv_cdf
    assert arm == math.ceil((z(0.95) + z(0.9)) ** 2 * (0.24 + 0.24) / 0.04)


# ------------------------------------------------------------------------------- pairing


def run_frames(
    agent: str,
    rates: dict[str, float],
    seed: int,
    repeats: int = 3,
    languages: tuple[str, ...] = ("en", "de"),
    axis: str = "matrix.language",
    extra: dict[str, str] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A finished run: per scenario x language x repeat one job whose two criteria succeed
    with the scenario's rate; every 7th job errors; rows shuffled."""
    rng = random.Random(seed)
    jobs, crit = [], []
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for scenario, rate in rates.items():
        for lang in languages:
            for r in range(repeats):
                key = f"{agent}-{scenario}-{lang}-{r}"
                status = "error" if rng.random() < 1 / 7 else "ok"
                jobs.append(
                    {
                        "job_key": key,
                        "agent_id": f"id-{agent}",
                        "agent_label": agent,
                        "scenario_id": scenario,
                        "repeat": r,
                        axis: lang,
                        **(extra or {}),
                        "status": status,
                        "finished_at": t0 + timedelta(seconds=rng.random() * 1000),
                        "cost_usd": 0.01,
                    }
                )
                if status == "ok":
                    for cid in ("greets", "resolves"):
                        result = "success" if rng.random() < rate else "failure"
                        crit.append({"job_key": key, "criterion_id": cid, "result": result})
    rng.shuffle(jobs)
    return pl.DataFrame(jobs), pl.DataFrame(crit)


def test_pairs_share_scenario_cell_and_repeat() -> None:
    rates = {"s1": 0.9, "s2": 0.5, "s3": 0.2}
    a_jobs, a_crit = run_frames("support", rates, 1)
    b_jobs, b_crit = run_frames("support-lite", rates, 2, repeats=4)  # one extra repeat
    b_jobs = b_jobs.filter(pl.col("job_key") != "support-lite-s2-de-1")  # one case-repeat lost
    found = pruns.compare_paired(a_jobs, a_crit, b_jobs, b_crit, pr.NonInferiority())
    assert found.key == ["scenario_id", "matrix.language", "repeat"]
    assert found.pairs.height == 3 * 2 * 3 - 1
    assert found.unpaired == {"baseline": 1, "candidate": 3 * 2 * 4 - 1 - found.pairs.height}
    by_key = {
        side: {row["job_key"]: row for row in frame.iter_rows(named=True)}
        for side, frame in (("baseline", a_jobs), ("candidate", b_jobs))
    }
    for pair in found.pairs.iter_rows(named=True):
        base = by_key["baseline"][pair["baseline_job_key"]]
        cand = by_key["candidate"][pair["candidate_job_key"]]
        for column in ("scenario_id", "matrix.language", "repeat"):
            assert base[column] == cand[column] == pair[column]
    # in the order the later member finished
    finished = [
        max(by_key["baseline"][b]["finished_at"], by_key["candidate"][c]["finished_at"])
        for b, c in found.pairs.select("baseline_job_key", "candidate_job_key").iter_rows()
    ]
    assert finished == sorted(finished)
    assert found.decision.counts.pairs == found.pairs.height
    assert found.scenarios["pairs"].sum() == found.pairs.height
    assert found.scenarios["diff"].to_list() == sorted(found.scenarios["diff"].to_list())


def test_job_outcomes_of_all_or_listed_criteria() -> None:
    jobs = pl.DataFrame(
        {
            "job_key": ["a", "b", "c", "d", "e", "f"],
            "status": ["ok", "ok", "ok", "error", "ok", "cancelled"],
        }
    )
    crit = pl.DataFrame(
        {
            "job_key": ["a", "a", "b", "b", "c", "c"],
            "criterion_id": ["x", "y", "x", "y", "x", "y"],
            "result": ["success", "success", "success", "unknown", "success", "failure"],
        }
    )
    outcome = dict(pruns.job_outcomes(jobs, crit).select("job_key", "outcome").iter_rows())
    assert outcome == {"a": "pass", "b": "unknown", "c": "fail", "d": "error", "e": "unknown"}
    only_x = dict(pruns.job_outcomes(jobs, crit, ["x"]).select("job_key", "outcome").iter_rows())
    assert only_x == {"a": "pass", "b": "pass", "c": "pass", "d": "error", "e": "unknown"}
    missing = dict(
        pruns.job_outcomes(jobs, crit, ["x", "z"]).select("job_key", "outcome").iter_rows()
    )
    assert missing["a"] == "unknown"  # z was never reported: not a pass
    # the planner's plain-data version agrees, job by job
    for of in ("all", ["x"], ["x", "z"]):
        table = dict(pruns.job_outcomes(jobs, crit, of).select("job_key", "outcome").iter_rows())
        for key, status in jobs.select("job_key", "status").iter_rows():
            rows = crit.filter(pl.col("job_key") == key).select("criterion_id", "result").rows()
            assert pr.job_outcome(status, rows, of) == table.get(key), (key, of)


def test_two_arms_of_one_run_are_paired_across_their_axis() -> None:
    rates = {f"s{i}": 0.3 + 0.6 * i / 9 for i in range(10)}
    worse = {s: r - 0.35 for s, r in rates.items()}
    a_jobs, a_crit = run_frames(
        "support", rates, 3, repeats=12, languages=("pro",), axis="matrix.agent.llm"
    )
    b_jobs, b_crit = run_frames(
        "support", worse, 4, repeats=12, languages=("lite",), axis="matrix.agent.llm"
    )
    jobs, crit = pl.concat([a_jobs, b_jobs]), pl.concat([a_crit, b_crit])
    rule = pr.NonInferiority(margin=0.05, alpha=0.05, max_pairs=400)
    found = pruns.compare_arms(
        jobs, crit, {"matrix.agent.llm": "pro"}, {"matrix.agent.llm": "lite"}, rule
    )
    assert found.key == ["scenario_id", "repeat"]
    assert found.pairs.height == 120
    assert found.decision.verdict == "worse"
    assert (found.pairs["baseline_job_key"].str.contains("-pro-")).all()
    same = pruns.compare_arms(
        jobs, crit, {"matrix.agent.llm": "pro"}, {"matrix.agent.llm": "pro"}, rule
    )
    assert same.decision.verdict != "worse" and (same.pairs["d"] == 0).all()


def test_pairing_refuses_ambiguous_input_in_one_line() -> None:
    a_jobs, a_crit = run_frames("support", {"s1": 0.5}, 1)
    b_jobs, b_crit = run_frames("lite", {"s1": 0.5}, 2)
    rule = pr.NonInferiority()
    both = pl.concat([a_jobs, b_jobs])
    with pytest.raises(
        ValueError,
        match=r"^baseline: 2 jobs for one case \(scenario_id=s1, matrix.language=\w+, repeat=\d\);"
        r" select one agent or matrix arm$",
    ):
        pruns.compare_paired(both, pl.concat([a_crit, b_crit]), b_jobs, b_crit, rule)
    with pytest.raises(
        ValueError,
        match=r"^matrix.tone: only the candidate has this matrix axis; ignore it to pair across",
    ):
        pruns.compare_paired(
            a_jobs, a_crit, b_jobs.with_columns(pl.lit("x").alias("matrix.tone")), b_crit, rule
        )
    with pytest.raises(ValueError, match=r"^candidate: no jobs with agent=nobody$"):
        pruns.compare_arms(both, a_crit, {"agent": "support"}, {"agent": "nobody"}, rule)
    with pytest.raises(ValueError, match=r"^baseline: no matrix axis 'matrix.llm' in this run$"):
        pruns.compare_arms(both, a_crit, {"matrix.llm": "x"}, {"agent": "lite"}, rule)


# -------------------------------------------------------------------------------- config


def test_the_compare_block_parses_into_a_rule_and_arm_selectors() -> None:
    found = parse_compare(
        {
            "baseline": "support",
            "candidate": {"matrix": {"agent.llm": "gemini-2.0-flash-lite", "temperature": 0.5}},
            "margin": 0.1,
            "max_pairs": 50,
            "of": ["greets", "resolves"],
        }
    )
    assert found.rule() == pr.NonInferiority(margin=0.1, alpha=0.05, max_pairs=50)
    assert found.arm("baseline") == {"agent": "support"}
    assert found.arm("candidate") == {
        "matrix.agent.llm": "gemini-2.0-flash-lite",
        "matrix.temperature": "0.5",
    }
    found.check_against(
        ["support", "support-lite"],
        {"agent.llm": ["gemini-2.0-flash-lite", "gpt-4o"], "temperature": [0.5, 1.0]},
        ["greets", "resolves"],
    )
    assert parse_compare({"baseline": "a", "candidate": "b"}).of == "all"


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"baseline": None}, "config.yaml: compare.baseline: is required"),
        (
            {"candidate": {"matrix": {}}},
            "config.yaml: compare.candidate: matrix: must not be empty",
        ),
        (
            {"candidate": ["x"]},
            "config.yaml: compare.candidate: must be an agent label or a matrix arm",
        ),
        ({"of": "some"}, "config.yaml: compare.of: must be all or a list of criterion ids"),
        ({"margin": -0.1}, "config.yaml: compare.margin: must be at least 0 (got -0.1)"),
        ({"margin": True}, "config.yaml: compare.margin: must be a number (got true)"),
        ({"alpha": 1}, "config.yaml: compare.alpha: must be less than 1 (got 1)"),
        ({"alpha": 0}, "config.yaml: compare.alpha: must be greater than 0 (got 0)"),
        ({"max_pairs": 0}, "config.yaml: compare.max_pairs: must be at least 1 (got 0)"),
        ({"of": []}, "config.yaml: compare.of: must not be empty"),
        ({"of": ["x", "x"]}, "config.yaml: compare.of: lists a criterion twice (got ['x', 'x'])"),
        ({"margins": 0.1}, "config.yaml: compare.margins: unknown key (did you mean 'margin'?)"),
    ],
)
def test_bad_compare_fields_are_refused_in_one_line(block: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        data = {"baseline": "a", "candidate": "b", **block}
        parse_compare({k: v for k, v in data.items() if v is not None})
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"baseline": "nobody"}, "c.yaml: compare.baseline: no agent 'nobody' (agents: a, b)"),
        (
            {"candidate": {"matrix": {"llm": "x"}}},
            "c.yaml: compare.candidate.matrix.llm: no such matrix axis (axes: agent.llm)",
        ),
        (
            {"candidate": {"matrix": {"agent.llm": "gpt-5"}}},
            "c.yaml: compare.candidate.matrix.agent.llm: 'gpt-5' is not one of the axis's values",
        ),
        ({"candidate": "a"}, "c.yaml: compare.candidate: the same variant as the baseline"),
        ({"of": ["greets", "nope"]}, "c.yaml: compare.of[1]: no criterion 'nope'"),
    ],
)
def test_compare_refers_to_known_agents_axes_and_criteria(
    block: dict[str, Any], message: str
) -> None:
    found = parse_compare({"baseline": "a", "candidate": "b", **block})
    with pytest.raises(ConfigError) as caught:
        found.check_against(["a", "b"], {"agent.llm": ["gpt-4o"]}, ["greets"], where="c.yaml")
    assert str(caught.value) == message
