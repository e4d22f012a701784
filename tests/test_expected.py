"""What a run that stops early is expected to send (``runner.expected``): the verdicts' exact
recursion against brute force over every outcome sequence and against a simulation; the
comparison's threshold tables against the rule itself at every count, and its Monte Carlo
against an exact recursion over (wins, ties, losses); and where the figures are shown (the
dry run's estimate, the progress line)."""

from __future__ import annotations

import itertools
import math
import random
from functools import cache
from pathlib import Path

import pytest
import yaml

from runner.config import load_config
from runner.costing import open_jobs, outlook, remaining
from runner.engine import Counters
from runner.estimate import Estimate, Expected
from runner.expected import (
    _Thresholds,
    compare_expected,
    further_pairs,
    further_repeats,
    grid,
    prior_from,
    verdict_expected,
)
from runner.jobs import iter_jobs
from runner.paired import Counts, NonInferiority
from runner.pairing import PairPlanner, Stored, pair_cases
from runner.progress import bar_total, status_line
from runner.verdicts import Anytime, Curtail, Outcome, Rule, Sprt, Treatment, first_stop

RULES: list[Rule] = [
    Anytime(0.8, 0.05, 8, 2),
    Curtail(0.8, 8),
    Sprt(0.8, 0.5, 0.05, 0.1, 8),
]


@cache
def walks(rule: Rule, head: tuple[Outcome, ...]) -> list[tuple[int, int, int]]:
    """Every sequence of the repeats left after ``head``, walked by the rule itself
    (``first_stop``): (passes, length, repeats it ran after the head) per sequence."""
    left = rule.max_repeats - len(head)
    out = []
    for tail in itertools.product((True, False), repeat=left):
        outcomes: list[Outcome] = [*head, *("pass" if x else "fail" for x in tail)]
        stopped, _ = first_stop(rule, outcomes)
        out.append((sum(tail), left, max(stopped, len(head)) - len(head)))
    return out


def brute_force(rule: Rule, p: float, head: list[Outcome]) -> float:
    """E[repeats after ``head``]: the mean over every sequence, weighted by its chance."""
    return sum(
        p**passes * (1 - p) ** (left - passes) * ran
        for passes, left, ran in walks(rule, tuple(head))
    )


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_the_recursion_is_the_mean_over_every_outcome_sequence(rule: Rule) -> None:
    for p in (0.2, 0.8, 0.97):
        assert further_repeats(rule, (0, 0, 0), p) == pytest.approx(brute_force(rule, p, []))
    head: list[Outcome] = ["pass", "fail", "pass"]
    assert further_repeats(rule, (3, 2, 3), 0.7) == pytest.approx(brute_force(rule, 0.7, head))


def test_a_skipped_error_still_uses_up_a_repeat() -> None:
    rule = Anytime(0.8, 0.05, 8, 1, Treatment("fail", "skip"))
    head: list[Outcome] = ["error", "pass"]
    expected, most, _ = verdict_expected(rule, [[head]])
    # under a uniform prior updated by one pass: the mean over the grid, weighted by p
    weights = [p / sum(grid()) for p in grid()]
    exact = sum(
        w * further_repeats(rule, (1, 1, 2), p) for w, p in zip(weights, grid(), strict=True)
    )
    assert most == 6 and expected == pytest.approx(exact)
    assert exact == pytest.approx(
        sum(w * brute_force(rule, p, head) for w, p in zip(weights, grid(), strict=True))
    )


def test_the_prior_mean_agrees_with_a_simulation_of_the_rule() -> None:
    """Cases whose pass rates are drawn from the grid prior, each walked repeat by repeat until
    the rule's state stops it: the mean repeats agree with the recursion within four standard
    errors."""
    rule = Anytime(0.8, 0.05, 20)
    expected, most, how = verdict_expected(rule, [[[]]])
    assert most == 20 and "uniform prior" in how
    rng = random.Random(7)
    runs = []
    for _ in range(4000):
        p = rng.choice(grid())
        n = s = 0
        while n < 20 and not rule.state(n, s):
            n, s = n + 1, s + (rng.random() < p)
        runs.append(n)
    mean = sum(runs) / len(runs)
    se = math.sqrt(sum((r - mean) ** 2 for r in runs) / (len(runs) - 1) / len(runs))
    assert abs(mean - expected) < 4 * se


def test_earlier_sessions_move_the_prior_and_stopped_cases_add_nothing() -> None:
    rule = Anytime(0.8, 0.05, 20)
    uniform, _, _ = verdict_expected(rule, [[[]]])
    failing = prior_from([(0, 3)] * 10)
    assert failing is not None and sum(failing[:10]) > 0.5  # most mass below 0.2
    low, _, how = verdict_expected(rule, [[[]]], [(0, 3)] * 10)
    high, _, _ = verdict_expected(rule, [[[]]], [(14, 14)] * 10)
    assert "earlier sessions" in how
    assert low < uniform < high  # a failing suite fails fast; a passing one needs 14 in a row
    fails: list[Outcome] = ["fail"] * 3
    assert verdict_expected(rule, [[fails], [[]]])[:2] == verdict_expected(rule, [[[]]])[:2]
    # a --limit that leaves a case 5 jobs: at most 5, and fewer expected
    capped, most, _ = verdict_expected(rule, [[[]]], available=[5])
    assert most == 5 and capped < min(5.0, uniform)


@pytest.mark.parametrize("margin", [0.05, 0.0, 0.3])
def test_the_comparisons_thresholds_are_the_rules_stop_at_every_count(margin: float) -> None:
    rule = NonInferiority(margin, 0.05, 30)
    table = _Thresholds(rule)
    for w, t, l_ in itertools.product(range(31), repeat=3):
        if w + t + l_ > 30:
            continue
        counts = Counts(w, t, l_)
        stops = rule.state(counts) is not None or not rule.reachable(counts)
        assert table.stop(w, t, l_) == stops, (w, t, l_)


def test_the_thresholds_hold_on_long_comparisons_with_skipped_pairs() -> None:
    """Past the small lattice: seeded counts up to 300 pairs, some skipped, the tables'
    stop against the rule's own (both tests against -margin, the reachability included)."""
    rule = NonInferiority(0.05, 0.05, 300)
    table = _Thresholds(rule)
    rng = random.Random(4)
    for _ in range(600):
        n = rng.randrange(1, 301)
        mean = rng.uniform(-0.3, 0.2)
        w = l_ = t = 0
        for _ in range(n):  # a walk with a drift, so the counts lie near both boundaries
            u = rng.random()
            w, l_, t = (
                (w + 1, l_, t)
                if u < 0.2 + mean / 2
                else (w, l_ + 1, t)
                if u < 0.4
                else (w, l_, t + 1)
            )
        skipped = rng.choice((0, 0, rng.randrange(0, 301 - n)))
        counts = Counts(w, t, l_, skipped)
        stops = rule.state(counts) is not None or not rule.reachable(counts)
        assert table.stop(w, t, l_, skipped) == stops, (w, t, l_, skipped)
    for _ in range(40):  # each table entry against every count of wins at (n, losses)
        n = rng.randrange(1, 301)
        l_ = rng.randrange(0, n + 1)
        tests = [rule.e_values(Counts(w, n - l_ - w, l_)) for w in range(n - l_ + 1)]
        worse = max((w for w, (_, k) in enumerate(tests) if k >= rule.level), default=-1)
        nw = min((w for w, (k, _) in enumerate(tests) if k >= rule.level), default=math.inf)
        assert (table.worse(n, l_), table.nw(n, l_)) == (worse, nw), (n, l_)
        assert (table.worse_final(n, l_), table.nw_final(n, l_)) == (worse, nw), (n, l_)


def exact_pairs(rule: NonInferiority, a: tuple[float, float, float]) -> float:
    """E[pairs] under the Dirichlet(a) urn by recursion over (wins, ties, losses), each state
    judged by the rule itself (independent of the threshold tables)."""
    level: dict[tuple[int, int, int], float] = {(0, 0, 0): 1.0}
    total = 0.0
    whole = sum(a)
    for n in range(rule.max_pairs):
        nxt: dict[tuple[int, int, int], float] = {}
        for (w, t, l_), mass in level.items():
            counts = Counts(w, t, l_)
            if n and (rule.state(counts) is not None or not rule.reachable(counts)):
                continue
            total += mass
            for i, step in enumerate(((1, 0, 0), (0, 1, 0), (0, 0, 1))):
                chance = (a[i] + (w, t, l_)[i]) / (whole + n)
                key = (w + step[0], t + step[1], l_ + step[2])
                nxt[key] = nxt.get(key, 0.0) + mass * chance
        level = nxt
    return total


def test_the_comparisons_simulation_agrees_with_the_exact_recursion() -> None:
    rule = NonInferiority(0.05, 0.05, 30)
    for a in ((1.0, 1.0, 1.0), (2.0, 10.0, 6.0)):
        exact = exact_pairs(rule, a)
        found = further_pairs(rule, Counts(), prior=a, replicates=4000)
        # pairs lie in [0, 30]: a standard error of at most 15 / sqrt(4000)
        assert abs(found - exact) < 4 * 15 / math.sqrt(4000), (a, found, exact)


def test_a_decided_or_full_comparison_expects_nothing_more() -> None:
    rule = NonInferiority(0.05, 0.05, 400)
    assert compare_expected(rule, Counts(0, 0, 20), stopped=True)[:2] == (0.0, 0)
    mean, most, how = compare_expected(rule, Counts(3, 10, 2), stopped=False, replicates=200)
    assert most == 385 and 0 < mean <= 385 and "15 pair(s) run so far" in how


# ------------------------------------------------------------------- where it is shown


def write(tmp_path: Path, **extra: object) -> Path:
    config = {
        "target": {"base_url": "http://127.0.0.1:1"},
        "run": {"name": "e"},
        "agents": [{"id": "agent_a", "label": "a"}, {"id": "agent_b", "label": "b"}],
        "scenarios": [{"id": f"s{i}", "first_message": "hi", "prompt": f"p{i}"} for i in range(3)],
        **extra,
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_dry_runs_plan_says_up_to_and_expected(tmp_path: Path) -> None:
    seq = {"max": 20, "until": "verdict", "pass_rate": 0.8}
    path = write(tmp_path, run={"name": "e", "repeats": seq})
    plan = remaining(load_config(path), results_root=tmp_path / "r")
    per_case, _, _ = verdict_expected(Anytime(0.8, 0.05, 20), [[[]]])
    assert plan.left == 6 * 20 and plan.expected is not None
    assert plan.expected.up_to == 120 and plan.expected.mean == pytest.approx(6 * per_case)
    compare = {"baseline": "a", "candidate": "b", "max_pairs": 50}
    plan = remaining(load_config(write(tmp_path, compare=compare)), results_root=tmp_path / "r")
    assert plan.left == 100 and plan.expected is not None and plan.expected.up_to == 100
    assert 0 < plan.expected.mean < 100
    assert len(list(plan.jobs(load_config(write(tmp_path, compare=compare)), None))) == 100


def test_the_estimate_and_the_progress_line_say_up_to_and_expected() -> None:
    expected = Expected(up_to=120, mean=47.6, how="the rule's expected repeats")
    text = Estimate(1.2, 6.0, "usd", 120, "prices", expected).describe()
    first, second = text.splitlines()
    assert first == "up to 120 simulation(s) (max); expected about 48 (the rule's expected repeats)"
    assert second.startswith("expected cost of the expected 48 job(s): $0.4760 to $2.38; of all")
    counters = Counters(total=120, done=30)
    line = status_line(counters, 1.0, up_to=True, expected=47.6)
    assert line.startswith("30/up to 120 (expected about 48) done")
    assert bar_total(counters, True, 47.6) == 47.6
    assert bar_total(Counters(total=120, done=60), True, 47.6) == 60  # past the expectation
    assert status_line(counters, 1.0).startswith("30/120 done")


def test_a_resumed_comparison_is_priced_for_the_jobs_it_has_not_run(tmp_path: Path) -> None:
    compare = {"baseline": "a", "candidate": "b", "max_pairs": 50}
    cfg = load_config(write(tmp_path, compare=compare))
    cases = pair_cases(iter_jobs(cfg), {"agent": "a"}, {"agent": "b"})
    rule = NonInferiority(0.05, 0.05, 50)
    first = PairPlanner(cases, rule, seed=3)
    (b0, c0), (b1, _) = first.pairs[0], first.pairs[1]
    done = {b0.key: Stored("pass", 1.0), c0.key: Stored("fail", 2.0), b1.key: Stored("pass", 3.0)}
    planner = PairPlanner(cases, rule, seed=3, done=done)
    left, expected = outlook(planner, set(done))
    assert left == 100 - 3 and expected is not None and expected.up_to == 97
    # one half-done pair's missing member, and about two jobs per further pair
    assert 1 < expected.mean <= 97
    assert len(list(open_jobs(planner, iter(()), set(done)))) == 97
