"""The pairing planner of a ``compare:`` run (issue 26), without an engine: seeded outcomes in,
the jobs it hands out and its decision out."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from runner.config import parse_config
from runner.jobs import Job, iter_jobs
from runner.paired import NonInferiority
from runner.pairing import WAIT, PairPlanner, Stored, at_repeat, pair_cases
from runner.planner import Finished, case_of

SCENARIOS = [{"id": f"s{i}", "prompt": f"user {i}"} for i in range(5)]


def config(repeats: int = 3, **compare: Any) -> Any:
    return parse_config(
        {
            "agents": [
                {"id": "agent_support", "label": "support"},
                {"id": "agent_support_lite", "label": "lite"},
                {"id": "agent_booking"},
            ],
            "criteria": [{"id": "c", "name": "c", "conversation_goal_prompt": "g"}],
            "scenarios": SCENARIOS,
            "matrix": {"language": ["en", "es"]},
            "run": {"repeats": repeats},
            "compare": {"baseline": "support", "candidate": "lite", **compare},
        },
        "c.yaml",
    )


def cases(cfg: Any) -> list[tuple[Job, Job]]:
    assert cfg.compare is not None
    return pair_cases(iter_jobs(cfg), cfg.compare.arm("baseline"), cfg.compare.arm("candidate"))


Passes = Callable[[Job], bool]


def drive(
    planner: PairPlanner, passes: Passes, stop_after: int | None = None, seed: int = 0
) -> tuple[list[Job], dict[str, Stored]]:
    """Run the planner with up to 6 jobs in flight, finishing them in a shuffled order;
    ``stop_after`` jobs finished: stop (a kill -9). Returns the jobs handed out and what was
    stored, as a resume would read it."""
    rng = random.Random(seed)
    out: list[Job] = []
    flight: list[Job] = []
    stored: dict[str, Stored] = {}
    clock = 0.0
    while True:
        while len(flight) < 6:
            job = planner.next()
            if job is None or job is WAIT:
                break
            out.append(job)
            flight.append(job)
        if not flight:
            return out, stored
        job = flight.pop(rng.randrange(len(flight)))
        result = "success" if passes(job) else "failure"
        clock += 1
        planner.observe(Finished(job.key, case_of(job), job.repeat, "ok", None, (("c", result),)))
        stored[job.key] = Stored("pass" if result == "success" else "fail", clock)
        if stop_after is not None and len(stored) >= stop_after:
            return out, stored


def seeded(p_base: float, p_cand: float, seed: int = 0) -> Passes:
    """A pass is a fixed coin per job key: the same job has the same outcome on resume."""

    def passes(job: Job) -> bool:
        p = p_base if job.agent_label == "support" else p_cand
        return random.Random(f"{seed}:{job.key}").random() < p

    return passes


def test_pairs_share_scenario_cell_and_repeat_and_keys_match_the_sweep() -> None:
    cfg = config(repeats=3)
    pairs = cases(cfg)
    assert len(pairs) == 5 * 2  # scenarios x language; the third agent is not compared
    sweep = {(j.agent_id, j.scenario_id, j.matrix, j.repeat): j.key for j in iter_jobs(cfg)}
    planner = PairPlanner(pairs, NonInferiority(max_pairs=60), seed=3)
    for base, cand in planner.pairs:
        assert (base.agent_label, cand.agent_label) == ("support", "lite")
        assert (base.scenario_id, base.matrix, base.repeat) == (
            cand.scenario_id,
            cand.matrix,
            cand.repeat,
        )
        for job in (base, cand):
            key = sweep.get((job.agent_id, job.scenario_id, job.matrix, job.repeat))
            assert key in (None, job.key)  # beyond run.repeats: the key a longer sweep gives
    assert at_repeat(pairs[0][0], 2).key == sweep[("agent_support", "s0", pairs[0][0].matrix, 2)]


def test_matrix_arms_pair_across_their_axis() -> None:
    cfg = config(baseline={"matrix": {"language": "en"}}, candidate={"matrix": {"language": "es"}})
    pairs = cases(cfg)
    assert len(pairs) == 5 * 3  # scenarios x agents: the agent is part of the case here
    for base, cand in pairs:
        assert dict(base.matrix)["language"] == "en" and dict(cand.matrix)["language"] == "es"
        assert (base.agent_id, base.scenario_id) == (cand.agent_id, cand.scenario_id)


def test_the_draws_are_uniform_seeded_and_blind_to_outcomes() -> None:
    pairs = cases(config())
    a = PairPlanner(pairs, NonInferiority(max_pairs=4000), seed=1)
    b = PairPlanner(pairs, NonInferiority(max_pairs=4000), seed=1)
    assert [p[0].key for p in a.pairs] == [p[0].key for p in b.pairs]
    counts = Counter((p[0].scenario_id, p[0].matrix) for p in a.pairs)
    assert len(counts) == 10 and min(counts.values()) > 300 and max(counts.values()) < 500
    # the order handed out does not depend on the outcomes (before any decision)
    never, always = seeded(0.5, 0.5, 1), seeded(0.5, 0.5, 2)
    x = PairPlanner(pairs, NonInferiority(max_pairs=30, margin=0.0), seed=5)
    y = PairPlanner(pairs, NonInferiority(max_pairs=30, margin=0.0), seed=5)
    jobs_x, _ = drive(x, never)
    jobs_y, _ = drive(y, always)
    n = min(len(jobs_x), len(jobs_y))
    assert [j.key for j in jobs_x[:n]] == [j.key for j in jobs_y[:n]]
    # members of a pair go out together
    for first, second in zip(jobs_x[::2], jobs_x[1::2], strict=False):
        assert first.repeat == second.repeat and first.scenario_id == second.scenario_id


def test_stops_dispatching_once_decided_and_at_max_pairs() -> None:
    pairs = cases(config())
    worse = PairPlanner(pairs, NonInferiority(max_pairs=400), seed=2)
    jobs, _ = drive(worse, seeded(0.9, 0.3))
    d = worse.decision
    assert d.verdict == "worse" and d.decided_at is not None
    assert len(jobs) <= 2 * (d.decided_at + 6)  # at most the pairs with a job in flight
    assert worse.next() is None
    capped = PairPlanner(pairs, NonInferiority(max_pairs=10), seed=2)
    jobs, _ = drive(capped, seeded(0.5, 0.5))
    # undecided: at max_pairs, or earlier once no decision is reachable in the pairs left
    assert len(jobs) <= 20 and capped.decision.verdict == "undecided" and capped.decision.stop


def test_in_flight_cap_waits_but_keeps_a_pair_together() -> None:
    planner = PairPlanner(cases(config()), NonInferiority(max_pairs=50), seed=0, in_flight=4)
    handed = [planner.next() for _ in range(5)]
    assert all(isinstance(j, Job) for j in handed[:4]) and handed[4] is WAIT


@pytest.mark.parametrize("kill_after", [1, 7, 20, 41])
def test_kill_and_resume_give_the_same_decision(kill_after: int) -> None:
    pairs = cases(config())
    rule = NonInferiority(max_pairs=200)
    passes = seeded(0.8, 0.45, 4)
    whole = PairPlanner(pairs, rule, seed=9)
    drive(whole, passes, seed=1)
    # the same run killed after kill_after jobs (in-flight ones lost), then resumed
    first = PairPlanner(pairs, rule, seed=9)
    _, stored = drive(first, passes, stop_after=kill_after, seed=1)
    again = PairPlanner(pairs, rule, seed=9, done=stored)
    assert again.diffs == first.diffs  # the stored pairs, in the order they completed
    more, _ = drive(again, passes, seed=2)
    assert not {j.key for j in more} & set(stored)  # a stored job is never run again
    assert again.decision.verdict == whole.decision.verdict == "worse"
