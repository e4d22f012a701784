"""The sequential verdict rules (runner.verdicts) against independent computations."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from runner import verdicts as v


def _simpson(f, lo: float, hi: float, n: int = 4000) -> float:
    h = (hi - lo) / n
    total = f(lo) + f(hi)
    for i in range(1, n):
        total += (4 if i % 2 else 2) * f(lo + i * h)
    return total * h / 3


@pytest.mark.parametrize(
    ("a", "b", "x"), [(2.0, 3.0, 0.3), (9.9, 0.1, 0.8), (30.0, 5.0, 0.8), (1.5, 40.0, 0.02)]
)
def test_incomplete_beta_matches_quadrature(a: float, b: float, x: float) -> None:
    def dens(q: float) -> float:
        return math.exp((a - 1) * math.log(q) + (b - 1) * math.log1p(-q) - v.log_beta(a, b))

    # substitute q = x u^k to tame the endpoint singularity of q^(a-1) when a < 1
    lower = _simpson(lambda u: dens(x * u**4) * 4 * x * u**3 if u > 0 else 0.0, 0.0, 1.0)
    assert math.exp(v.log_betainc(a, b, x)) == pytest.approx(lower, rel=1e-5)
    assert math.exp(v.log_betainc(a, b, x, upper=True)) == pytest.approx(
        1 - lower, rel=1e-4, abs=1e-9
    )


@pytest.mark.parametrize(
    ("prior", "x", "n", "s"),
    [
        (v.SidePrior("above", 0.95, 10.0), 0.8, 14, 14),
        (v.SidePrior("above", 0.9, 300.0), 0.8, 40, 37),
        (v.SidePrior("below", 0.125, 10.0), 0.8, 10, 3),
        (v.SidePrior("below", 0.5, 300.0), 0.8, 30, 20),
        (v.SidePrior("above", 0.75, 30.0), 0.5, 12, 9),
    ],
)
def test_mixture_matches_numerical_integration(
    prior: v.SidePrior, x: float, n: int, s: int
) -> None:
    """M_n(x) = int (q/x)^s ((1-q)/(1-x))^(n-s) dpi(q) with pi the restricted Beta, by Simpson."""
    a, b = prior.beta(x)
    # substitute q = 1 - (1 - x) u^k (above) or q = x u^k (below), k = 20: the Beta density
    # may be singular at the far end (b - 1 > -1), the substituted integrand is not. Logs of
    # q and 1 - q are taken in u so that neither underflows near the end.
    k = 20

    def logs(u: float) -> tuple[float, float, float]:
        if prior.side == "above":
            log_1mq = math.log(1 - x) + k * math.log(u)
            return (
                math.log1p(-math.exp(log_1mq)),
                log_1mq,
                math.log(k * (1 - x)) + (k - 1) * math.log(u),
            )
        log_q = math.log(x) + k * math.log(u)
        return log_q, math.log1p(-math.exp(log_q)), math.log(k * x) + (k - 1) * math.log(u)

    def weight(u: float, lr: bool = False) -> float:
        if u == 0.0:
            return 0.0
        log_q, log_1mq, log_dq = logs(u)
        total = (a - 1) * log_q + (b - 1) * log_1mq + log_dq
        if lr:
            total += s * (log_q - math.log(x)) + (n - s) * (log_1mq - math.log(1 - x))
        return math.exp(total)

    def integrand(u: float) -> float:
        return weight(u, lr=True)

    expected = _simpson(integrand, 0.0, 1.0, 4000) / _simpson(weight, 0.0, 1.0, 4000)
    assert v.log_mixture(prior, x, n, s) == pytest.approx(math.log(expected), abs=2e-4)


def _exact_probabilities(rule, max_repeats: int, p: float) -> dict[str, float]:
    """Brute force over every pass/fail sequence of length max: where the rule stops first."""
    totals = {"pass": 0.0, "fail": 0.0, "undecided": 0.0}
    seen: dict[tuple[bool, ...], str] = {}
    for seq in itertools.product((True, False), repeat=max_repeats):
        n = s = 0
        verdict = "undecided"
        for i, ok in enumerate(seq):
            n, s = n + 1, s + ok
            prefix = seq[: i + 1]
            if prefix not in seen:
                seen[prefix] = rule.state(n, s)
            if seen[prefix]:
                verdict = seen[prefix] if seen[prefix] != "" else verdict
                break
        k = sum(seq)
        totals[verdict] += p**k * (1 - p) ** (max_repeats - k)
    return totals


@pytest.mark.parametrize(("pass_rate", "max_repeats"), [(0.8, 14), (0.6, 12)])
def test_anytime_error_at_the_null_boundary_is_at_most_alpha(
    pass_rate: float, max_repeats: int
) -> None:
    rule = v.Anytime(pass_rate=pass_rate, alpha=0.05, max_repeats=max_repeats)
    exact = _exact_probabilities(rule, max_repeats, pass_rate)
    assert sum(exact.values()) == pytest.approx(1.0)
    # p = pass_rate is the boundary of both nulls: a PASS there is wrong, and so would be a
    # FAIL at any p just above it (continuity)
    assert exact["pass"] <= 0.05
    assert exact["fail"] <= 0.05
    assert exact["pass"] + exact["fail"] > 0  # the rule does decide sometimes


@pytest.mark.parametrize(
    "prior",
    [
        v.SidePrior("above", 0.95, 10.0),
        v.SidePrior("above", 0.5, 1000.0),
        v.SidePrior("below", 0.125, 10.0),
        v.SidePrior("below", 0.025, 1000.0),
    ],
)
@pytest.mark.parametrize("x", [0.05, 0.5, 0.8, 0.97])
def test_incremental_boundaries_match_bisection(prior: v.SidePrior, x: float) -> None:
    assert v._row(prior, x, 0.05, 60) == tuple(v._thresholds(prior, x, 0.05, n) for n in range(61))


def test_stop_lattice_matches_the_direct_reachability_check() -> None:
    for max_repeats, min_repeats in ((20, 1), (40, 1), (30, 5), (12, 12)):
        rule = v.Anytime(max_repeats=max_repeats, min_repeats=min_repeats)
        table = rule.table()
        direct = [
            [v._state(table, n, s, n, max_repeats, min_repeats) for s in range(n + 1)]
            for n in range(max_repeats + 1)
        ]
        assert v._stop_lattice(table, max_repeats, min_repeats) == direct


def test_anytime_boundaries_satisfy_ville_at_every_horizon() -> None:
    """Exact P(ever PASS by n | p = pass_rate) by recursion over (n, s), up to n = 60 (past max)."""
    rule = v.Anytime(pass_rate=0.8, alpha=0.05, max_repeats=20)
    table = v._table(rule.above, rule.below, 0.8, 0.05, 60)
    for side, p in (("pass", 0.8), ("fail", 0.8)):
        probs = {0: 1.0}
        crossed = 0.0
        for n in range(1, 61):
            nxt: dict[int, float] = {}
            for s, mass in probs.items():
                for ds, q in ((1, p), (0, 1 - p)):
                    nxt[s + ds] = nxt.get(s + ds, 0.0) + mass * q
            probs = {}
            for s, mass in nxt.items():
                hit = s >= table.pass_at[n] if side == "pass" else s <= table.fail_at[n]
                if hit:
                    crossed += mass
                else:
                    probs[s] = mass
        assert crossed <= 0.05


def test_anytime_stops_early_once_no_verdict_is_reachable() -> None:
    rule = v.Anytime(pass_rate=0.8, alpha=0.05, max_repeats=20)
    table = rule.table()
    first_pass = int(table.pass_at.index(next(t for t in table.pass_at if t != math.inf)))
    assert first_pass <= 15  # an unbroken run of passes decides well before max
    decision = rule.decide(["pass"] * first_pass)
    assert (decision.verdict, decision.stop) == ("pass", True)
    assert decision.lower > 0.8
    # one failure at 20 leaves no PASS reachable and a FAIL needs many failures
    decision = rule.decide(["pass"] * 5 + ["fail"] + ["pass"] * 5)
    assert (decision.verdict, decision.stop) == ("undecided", True)
    assert "no verdict reachable" in decision.reason
    decision = rule.decide(["fail"] * 3)
    assert decision.verdict in ("fail", "undecided")


def test_anytime_verdict_agrees_with_its_reported_bounds() -> None:
    rule = v.Anytime(pass_rate=0.8, alpha=0.05, max_repeats=16)
    for n in range(1, 17):
        for s in range(n + 1):
            d = rule.decide(["pass"] * s + ["fail"] * (n - s))
            if d.verdict == "pass":
                assert d.lower > 0.8 - 1e-4
            if d.verdict == "fail":
                assert d.upper < 0.8 + 1e-4
            if d.lower > 0.8 + 1e-3:
                assert d.verdict == "pass", (n, s, d)
            if d.upper < 0.8 - 1e-3:
                assert d.verdict == "fail", (n, s, d)


def _simulate(rule, p: float, rng: random.Random) -> list[v.Outcome]:
    out: list[v.Outcome] = []
    while True:
        out.append("pass" if rng.random() < p else "fail")
        n = len(out)
        state = rule.state(n, out.count("pass"))
        if state or n >= rule.max_repeats:
            return out


def _exact_miss_and_wrong(rule: v.Anytime, p: float, horizon: int) -> tuple[float, float]:
    """By recursion over (n, s) to ``horizon``: P(the sequence ever excludes p), and
    P(the rule's verdict is wrong) when it runs to ``rule.max_repeats``."""
    # by bisection at every n, independently of the incremental rows the rule uses
    above = [v._thresholds(rule.above, p, rule.alpha, n) for n in range(horizon + 1)]
    below = [v._thresholds(rule.below, p, rule.alpha, n) for n in range(horizon + 1)]
    miss, probs = 0.0, {0: 1.0}
    for n in range(1, horizon + 1):
        nxt: dict[int, float] = {}
        for s, mass in probs.items():
            nxt[s + 1] = nxt.get(s + 1, 0.0) + mass * p
            nxt[s] = nxt.get(s, 0.0) + mass * (1 - p)
        probs = {}
        for s, mass in nxt.items():
            if s >= above[n] or s <= below[n]:
                miss += mass
            else:
                probs[s] = mass
    wrong, probs = 0.0, {0: 1.0}
    for n in range(1, rule.max_repeats + 1):
        nxt = {}
        for s, mass in probs.items():
            nxt[s + 1] = nxt.get(s + 1, 0.0) + mass * p
            nxt[s] = nxt.get(s, 0.0) + mass * (1 - p)
        probs = {}
        for s, mass in nxt.items():
            state = rule.state(n, s)
            if (state == "pass" and p <= rule.pass_rate) or (
                state == "fail" and p > rule.pass_rate
            ):
                wrong += mass
            elif not state:
                probs[s] = mass
    return miss, wrong


@pytest.mark.parametrize("p", [0.2, 0.6, 0.8, 0.81, 0.9, 0.97])
def test_anytime_coverage_and_wrong_verdicts_exactly(p: float) -> None:
    """Per side alpha: a wrong verdict <= alpha; the two-sided sequence misses <= 2 alpha,
    to n = 60 (past max: an extension keeps both)."""
    rule = v.Anytime(pass_rate=0.8, alpha=0.05, max_repeats=40)
    miss, wrong = _exact_miss_and_wrong(rule, p, 60)
    assert miss <= 2 * 0.05
    assert wrong <= 0.05


def test_anytime_covers_the_benchmark_mix_in_95_percent() -> None:
    """On the issue's mix of true rates (on a 0.01 grid) the sequence covers at every n <= 40."""
    rng = random.Random(7)
    rule = v.Anytime(pass_rate=0.8, alpha=0.05, max_repeats=40)
    covered = reps = 0
    for _ in range(400):
        u = rng.random()
        lo, hi = (0.95, 1.0) if u < 0.6 else (0.0, 0.3) if u < 0.8 else (0.5, 0.9)
        p = min(0.995, max(0.005, round(rng.uniform(lo, hi), 2)))
        seq: list[v.Outcome] = [("pass" if rng.random() < p else "fail") for _ in range(40)]
        covered += v.covers(rule, p, seq)
        reps += 1
    assert covered / reps >= 0.95


def test_an_extension_keeps_the_recorded_priors() -> None:
    first = v.Anytime(pass_rate=0.8, alpha=0.05, max_repeats=20)
    extended = v.Anytime(0.8, 0.05, 40, priors=v.Anytime.recorded_priors(first.params()))
    assert extended.priors == first.priors != v.Anytime(0.8, 0.05, 40).priors
    # the same martingale: what decided at n <= 20 decides the same way after the extension
    table20, table40 = first.table(), extended.table()
    assert table40.pass_at[:21] == table20.pass_at and table40.fail_at[:21] == table20.fail_at
    outcomes: list[v.Outcome] = ["pass"] * 5 + ["fail"] + ["pass"] * 14
    assert first.decide(outcomes).verdict == "undecided"  # no PASS reachable by 20
    # by 40 it is: one failure is outweighed once 35 of 36 passed
    stopped, decision = v.first_stop(extended, outcomes + ["pass"] * 20)
    assert (stopped, decision.verdict) == (36, "pass")
    assert extended.state(35, 34) == "" and extended.state(36, 35) == "pass"


def test_repeats_to_verdict_counts_the_best_case() -> None:
    anytime = v.Anytime(0.8, 0.05, 20)
    assert v.repeats_to_verdict(anytime, ["pass"] * 10) == 4  # an unbroken run PASSes at 14
    assert v.repeats_to_verdict(anytime, ["pass"] * 14) == 0
    assert v.repeats_to_verdict(anytime, ["pass"] * 5 + ["fail"] * 1 + ["pass"] * 5) is None
    curtail = v.Curtail(0.8, 20)  # 16 of 20
    assert v.repeats_to_verdict(curtail, ["pass"] * 10 + ["fail"] * 3) == 2  # 2 fails: 5 > 4
    assert v.repeats_to_verdict(curtail, ["pass"] * 15) == 1
    sprt = v.Sprt(0.8, 0.6, 0.05, 0.05, 60)
    k = math.ceil(math.log(19) / math.log(0.8 / 0.6))
    assert v.repeats_to_verdict(sprt, []) == min(k, math.ceil(math.log(19) / math.log(0.4 / 0.2)))


def test_unknowns_and_errors_never_pass() -> None:
    t = v.tally(["pass", "unknown", "error", "fail"])
    assert (t.repeats, t.trials, t.successes) == (4, 3, 1)
    t = v.tally(["pass", "unknown", "error"], v.Treatment(unknown_as="skip", error_as="fail"))
    assert (t.trials, t.successes) == (2, 1)
    rule = v.Anytime(pass_rate=0.8, alpha=0.05, max_repeats=20)
    assert rule.decide(["unknown"] * 20).verdict != "pass"
    assert rule.decide(["error"] * 20).verdict == "undecided"


@pytest.mark.parametrize(("max_repeats", "passes"), [(6, None), (7, 5), (5, 0), (5, 5)])
def test_curtail_gives_the_fixed_rules_verdicts(max_repeats: int, passes: int | None) -> None:
    rule = v.Curtail(pass_rate=0.8, max_repeats=max_repeats, passes=passes)
    need = rule.needed
    saved = 0
    for seq in itertools.product(v.OUTCOMES, repeat=max_repeats):
        fixed = "pass" if seq.count("pass") >= need else "fail"
        for i in range(1, max_repeats + 1):
            d = rule.decide(seq[:i])
            if d.stop:
                break
        assert d.stop and d.verdict == fixed
        saved += max_repeats - i
    assert saved > 0


def test_sprt_error_rates_by_brute_force() -> None:
    rule = v.Sprt(pass_rate=0.9, pass_rate_low=0.6, alpha=0.05, beta=0.1, max_repeats=14)
    at_low = _exact_probabilities(rule, 14, 0.6)
    at_high = _exact_probabilities(rule, 14, 0.9)
    assert at_low["pass"] <= 0.05 / (1 - 0.1)
    assert at_high["fail"] <= 0.1 / (1 - 0.05)
    assert at_high["pass"] > 0.5 and at_low["fail"] > 0.5


def test_sprt_boundaries_are_walds() -> None:
    rule = v.Sprt(pass_rate=0.8, pass_rate_low=0.6, alpha=0.05, beta=0.05, max_repeats=100)
    low, high = rule.bounds()
    assert high == pytest.approx(math.log(19)) and low == pytest.approx(-math.log(19))
    # passes needed with no failure: ceil(log 19 / log(0.8/0.6))
    k = math.ceil(math.log(19) / math.log(0.8 / 0.6))
    assert rule.state(k, k) == "pass" and rule.state(k - 1, k - 1) == ""


def test_fixed_design_has_the_stated_power() -> None:
    n, c = v.fixed_design(0.6, 0.8, 0.05, 0.05)
    assert v._binom_tail(n, c, 0.6) <= 0.05 and 1 - v._binom_tail(n, c, 0.8) <= 0.05
    assert all(
        v._binom_tail(n - 1, c2, 0.6) > 0.05 or 1 - v._binom_tail(n - 1, c2, 0.8) > 0.05
        for c2 in range(n)
    )


def test_fixed_wilson_baseline() -> None:
    assert v.fixed_wilson(["pass"] * 20, 0.8).verdict == "pass"
    assert v.fixed_wilson(["pass"] * 19 + ["fail"], 0.8).verdict == "undecided"
    assert v.fixed_wilson(["pass"] * 12 + ["fail"] * 8, 0.8).verdict == "fail"


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: v.Anytime(pass_rate=1.0), "pass_rate"),
        (lambda: v.Anytime(pass_rate=0.0), "pass_rate"),
        (lambda: v.Anytime(alpha=0.7), "alpha"),
        (lambda: v.Anytime(max_repeats=5, min_repeats=6), "min"),
        (lambda: v.Sprt(pass_rate=0.8, pass_rate_low=0.9), "pass_rate_low"),
        (lambda: v.Sprt(beta=0.0), "beta"),
        (lambda: v.Curtail(max_repeats=5, passes=6), "passes"),
        (lambda: v.tally(["maybe"]), "outcome"),  # type: ignore[list-item]
    ],
)
def test_bad_parameters_are_refused_in_one_line(make, field: str) -> None:
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert message.startswith(field) and "\n" not in message


# ------------------------------------------------------------------------------- config


def _config(tmp_path, repeats) -> object:
    import yaml

    from runner.config.load import load_config

    path = tmp_path / f"c{abs(hash(str(repeats)))}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "run": {"repeats": repeats},
                "agents": [{"id": "agent_a"}, {"id": "agent_b"}],
                "criteria": [
                    {"id": "refund", "name": "Refund", "conversation_goal_prompt": "Refunds."}
                ],
                "scenarios": [{"id": "s1", "prompt": "A refund."}, {"id": "s2", "prompt": "Hi."}],
            }
        )
    )
    return load_config(path)


def test_sequential_repeats_keep_the_fixed_runs_job_keys(tmp_path) -> None:
    from runner.jobs import count_jobs, iter_jobs

    fixed = _config(tmp_path, 20)
    sequential = _config(tmp_path, {"max": 20, "pass_rate": 0.8, "of": ["refund"]})
    assert fixed.run.sequential is None and fixed.run.max_repeats == 20
    settings = sequential.run.sequential
    assert settings is not None and sequential.run.max_repeats == 20
    keys = [(j.key, j.repeat, j.scenario_id, j.agent_id) for j in iter_jobs(fixed)]
    assert keys == [(j.key, j.repeat, j.scenario_id, j.agent_id) for j in iter_jobs(sequential)]
    assert count_jobs(sequential) == len(keys) == 2 * 2 * 20
    rule = settings.rule_for()
    assert isinstance(rule, v.Anytime) and rule.max_repeats == 20 and rule.pass_rate == 0.8
    sprt = _config(tmp_path, {"max": 30, "pass_rate": 0.8, "rule": "sprt", "pass_rate_low": 0.6})
    assert isinstance(sprt.run.sequential.rule_for(), v.Sprt)
    curtail = _config(tmp_path, {"max": 10, "pass_rate": 0.8, "rule": "curtail", "passes": 7})
    assert curtail.run.sequential.rule_for().needed == 7


@pytest.mark.parametrize(
    ("repeats", "expected"),
    [
        ({"max": 20, "pass_rate": 0}, "run.repeats.pass_rate: must be between 0 and 1"),
        ({"max": 5, "min": 6, "pass_rate": 0.8}, "run.repeats: min (6) must not exceed max (5)"),
        ({"max": 5, "pass_rate": 0.8, "of": ["nope"]}, "run.repeats.of[0]: unknown criterion"),
        ({"max": 5, "pass_rate": 0.8, "rule": "sprt"}, "pass_rate_low is required"),
        (
            {"max": 5, "pass_rate": 0.8, "alpha": 0.6},
            "run.repeats.alpha: must be between 0 and 0.5",
        ),
        ({"max": 5, "pass_rate": 0.8, "maxx": 3}, "run.repeats.maxx: unknown key"),
        ({"pass_rate": 0.8}, "run.repeats.max: is required"),
    ],
)
def test_bad_repeats_settings_are_refused_in_one_line(tmp_path, repeats, expected: str) -> None:
    from runner.config.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        _config(tmp_path, repeats)
    assert expected in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------------------- replay


def _run_frames() -> tuple[object, object]:
    """A fixed run of 20 repeats: case a always passes, case b passes 1 in 4 (deterministic),
    case c passes except one unknown and one errored job; two criteria, every job $0.10."""
    import polars as pl

    jobs, crit = [], []
    for scenario in ("a", "b", "c"):
        for r in range(20):
            key = f"{scenario}{r}"
            status = "error" if scenario == "c" and r == 3 else "ok"
            jobs.append(
                {"job_key": key, "agent_id": "ag", "agent_label": "ag", "scenario_id": scenario,
                 "repeat": r, "status": status, "cost_usd": 0.1, "credits_used": None}
            )  # fmt: skip
            if status == "error":
                continue
            ok = scenario != "b" or r % 4 == 0
            second = "unknown" if scenario == "c" and r == 5 else "success"
            crit.append({"job_key": key, "criterion_id": "goal",
                         "result": "success" if ok else "failure"})  # fmt: skip
            crit.append({"job_key": key, "criterion_id": "tone", "result": second})
    return pl.DataFrame(jobs), pl.DataFrame(crit)


def test_replay_reports_where_each_rule_stops_and_what_it_saves() -> None:
    from runner.replay import render, replay, summary

    jobs, crit = _run_frames()
    rules = [v.Anytime(0.8, 0.05, 20), v.Curtail(0.8, 20)]
    out = replay(jobs, crit, rules)
    got = {(r["scenario_id"], r["rule"]): r for r in out.iter_rows(named=True)}
    a = got[("a", "anytime")]
    first_pass = next(n for n, t in enumerate(rules[0].table().pass_at) if t <= n)
    assert (a["verdict"], a["stopped_at"], a["full_verdict"]) == ("pass", first_pass, "pass")
    assert a["sims_saved"] == 20 - first_pass and a["usd_saved"] == pytest.approx(
        0.1 * a["sims_saved"]
    )
    b = got[("b", "anytime")]
    assert b["verdict"] == "fail" and b["full_verdict"] == "fail" and b["stopped_at"] < 10
    c = got[("c", "anytime")]  # one unknown (a non-pass trial) and one error (no trial)
    assert c["verdict"] == "undecided" and c["stopped_at"] < 20 and not c["contradicts"]
    assert got[("a", "curtail")]["stopped_at"] == 16 and got[("b", "curtail")]["stopped_at"] == 7
    assert got[("c", "curtail")]["verdict"] == "pass"  # 18 passes of 20: the fixed rule's too
    totals = {r["rule"]: r for r in summary(out).iter_rows(named=True)}
    assert totals["anytime"]["cases"] == 3 and totals["anytime"]["contradict"] == 0
    assert totals["anytime"]["sims_saved"] == sum(
        r["sims_saved"] for r in got.values() if r["rule"] == "anytime"
    )
    assert "anytime: 2 of 3 verdicts settled" in render(out)


def test_replay_per_criterion_when_of_lists_several() -> None:
    from runner.replay import repeat_outcomes

    jobs, crit = _run_frames()
    seqs = repeat_outcomes(jobs, crit, of=["goal", "tone"])
    c_tone = seqs.filter((pl_col("scenario_id") == "c") & (pl_col("criterion_id") == "tone"))
    outcomes = c_tone["outcomes"][0].to_list()
    assert outcomes[3] == "error" and outcomes[5] == "unknown" and outcomes.count("pass") == 18
    assert len(seqs) == 6
    # a listed criterion never judged in a case has no verdict there
    assert len(repeat_outcomes(jobs, crit, of=["goal", "absent"])) == 3


def test_outcome_of_one_job_matches_the_replays_frames() -> None:
    import polars as pl

    from runner.replay import repeat_outcomes

    jobs, crit = _run_frames()
    by_job: dict[str, list[str]] = {}
    for row in crit.iter_rows(named=True):
        by_job.setdefault(row["job_key"], []).append(row["result"])
    seqs = repeat_outcomes(jobs, crit)
    for scenario in ("a", "b", "c"):
        rows = jobs.filter(pl.col("scenario_id") == scenario).sort("repeat")
        mine = [
            v.outcome_of(r["status"], by_job.get(r["job_key"], []))
            for r in rows.iter_rows(named=True)
        ]
        theirs = seqs.filter(pl.col("scenario_id") == scenario)["outcomes"][0].to_list()
        assert mine == theirs
    assert v.outcome_of("ok", []) == "unknown" and v.outcome_of("cancelled", ["success"]) is None


def test_replay_per_criterion_saves_only_when_every_criterion_stopped() -> None:
    from runner.replay import replay, summary

    jobs, crit = _run_frames()
    out = replay(jobs, crit, [v.Anytime(0.8, 0.05, 20)], of=["goal", "tone"])
    for case in out.partition_by("scenario_id"):
        last = case["stopped_at"].max()
        assert (case["case_stopped_at"] == last).all()
        assert (case["sims_saved"] == 20 - last).all()
    totals = summary(out).row(0, named=True)
    assert totals["cases"] == 6 and totals["sims_run"] == 60
    assert totals["sims_saved"] == sum(
        20 - c["stopped_at"].max() for c in out.partition_by("scenario_id")
    )


def pl_col(name: str):
    import polars as pl

    return pl.col(name)


def test_the_verdicts_table_schema_names_what_the_issue_asks() -> None:
    from runner.schema import TABLES, VERDICTS, markdown

    names = VERDICTS.schema.names()
    assert len(names) == len(set(names)) and VERDICTS.file == "verdicts.parquet"
    for column in ("rule", "params", "repeats", "passes", "failures", "unknowns", "errors",
                   "lower", "upper", "verdict", "settled_at", "ran_past", "cost_usd"):  # fmt: skip
        assert column in names
    assert VERDICTS not in TABLES  # derived per case, not written from each job
    assert "| `verdict` |" in markdown(VERDICTS)
