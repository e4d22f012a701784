"""The planner seam (``runner.planner``): pure tests of the plan and its data, and the engine
asking a planner that waits for an outcome before handing out more."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import yaml

from runner.config import load_config
from runner.engine import Engine
from runner.jobs import Job, iter_jobs
from runner.planner import WAIT, Case, Finished, Planner, Wait, Walk, case_of
from tests.test_engine import POLICY, ScriptedBackend, Sink, Sleeps, make_job


def test_walk_hands_out_every_job_in_order_then_none() -> None:
    jobs = [make_job(i) for i in range(3)]
    walk = Walk(jobs)
    assert isinstance(walk, Planner) and walk.observes is False  # the engine builds no outcomes
    assert [walk.next() for _ in range(3)] == jobs
    assert walk.next() is None and walk.next() is None  # done stays done


def test_walk_is_lazy_over_its_iterable() -> None:
    """A sweep of any size: the walk takes one job from the expansion per ``next()``."""
    taken = 0

    def expansion() -> Iterator[Job]:
        nonlocal taken
        for i in range(1_000_000):
            taken += 1
            yield make_job(i)

    walk = Walk(expansion())
    assert taken == 0
    first, second = walk.next(), walk.next()
    assert isinstance(first, Job) and isinstance(second, Job)
    assert (first.key, second.key, taken) == ("k0000", "k0001", 2)


def test_a_case_is_agent_scenario_and_cell_across_repeats(tmp_path: Path) -> None:
    config = {
        "target": {"base_url": "http://127.0.0.1:1", "backend": "agent-testing"},
        "run": {"repeats": 3},
        "agents": [{"id": "agent_a"}, {"id": "agent_a", "branch_id": "b2"}],
        "matrix": {"language": ["en", "de"]},
        "scenarios": [{"id": "s1", "first_message": "hi", "prompt": "p"}],
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    jobs = list(iter_jobs(load_config(path)))
    cases: dict[Case, list[int]] = {}
    for job in jobs:
        cases.setdefault(case_of(job), []).append(job.repeat)
    # 2 agent variants x 1 scenario x 2 cells, each with its 3 repeats
    assert len(cases) == 4 and all(repeats == [0, 1, 2] for repeats in cases.values())
    assert {c.branch_id for c in cases} == {None, "b2"}
    assert {c.matrix for c in cases} == {(("language", "en"),), (("language", "de"),)}


def test_finished_is_plain_data() -> None:
    case = Case("agent_a", "s1", ())
    ok = Finished("k", case, 0, "ok", criteria=(("c", "success"),), usd=0.01)
    error = Finished("k2", case, 1, "error", error_kind="server_error")
    assert ok.ok and not error.ok and error.criteria == () and error.usd is None
    assert ok == Finished("k", case, 0, "ok", criteria=(("c", "success"),), usd=0.01)


class FirstThenRest:
    """A rule-shaped planner: sends the first job, waits for its outcome, then sends the rest
    only when it passed every criterion (as a per-case rule holds back repeats until a
    verdict). Plain object: driven by hand below, by the engine in the next test."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self.sent = 0
        self.seen: list[Finished] = []
        self.answers: list[str] = []

    def next(self) -> Job | Wait | None:
        if self.sent == 1 and not self.seen:
            self.answers.append("wait")
            return WAIT
        if self.sent == 1 and any(r != "success" for _, r in self.seen[0].criteria):
            return None
        if self.sent == len(self.jobs):
            return None
        self.sent += 1
        self.answers.append(self.jobs[self.sent - 1].key)
        return self.jobs[self.sent - 1]

    def observe(self, finished: Finished) -> None:
        self.seen.append(finished)


def test_a_rule_is_tested_without_the_engine() -> None:
    jobs = [make_job(i) for i in range(3)]
    failing = FirstThenRest(jobs)
    assert failing.next() is jobs[0] and failing.next() is WAIT
    failing.observe(Finished("k0000", case_of(jobs[0]), 0, "ok", criteria=(("c", "failure"),)))
    assert failing.next() is None
    passing = FirstThenRest(jobs)
    passing.next()
    passing.observe(Finished("k0000", case_of(jobs[0]), 0, "ok", criteria=(("c", "success"),)))
    assert [passing.next(), passing.next(), passing.next()] == [jobs[1], jobs[2], None]


async def test_the_engine_waits_for_an_outcome_then_sends_what_the_planner_adds() -> None:
    jobs = [make_job(i) for i in range(4)]
    planner = FirstThenRest(jobs)
    started: dict[str, float] = {}
    ended: dict[str, float] = {}

    class Timed(ScriptedBackend):
        async def simulate(self, job, on_reply):  # type: ignore[no-untyped-def]
            started[job.key] = time.perf_counter()
            try:
                return await super().simulate(job, on_reply)
            finally:
                ended[job.key] = time.perf_counter()

    sink = Sink()
    engine = Engine(
        Timed(lambda j, n: None, delay=0.05),
        concurrency=4,
        retry=POLICY,
        run_id="r",
        sleep=Sleeps(),
    )
    counters = await engine.run(planner, sink)
    assert counters.ok == 4 and sorted(r["job_key"] for r in sink.rows("jobs")) == [
        j.key for j in jobs
    ]
    # the rest went out only after the first job's outcome was observed
    assert min(started[j.key] for j in jobs[1:]) >= ended["k0000"]
    # one WAIT, then woken by the job's end: no polling while the first job ran
    assert planner.answers == ["k0000", "wait", "k0001", "k0002", "k0003"]
    first = planner.seen[0]
    assert (first.key, first.case, first.repeat, first.status) == (
        "k0000",
        Case("agent_a", "s0", ()),
        0,
        "ok",
    )
    assert first.criteria == (("c", "success"),) and first.usd is None
    assert sorted(f.key for f in planner.seen) == [j.key for j in jobs]  # each observed once


async def test_a_planner_waiting_with_nothing_in_flight_is_an_error() -> None:
    class Stuck:
        def next(self) -> Wait:
            return WAIT

        def observe(self, finished: Finished) -> None:
            raise AssertionError("nothing ran")

    engine = Engine(
        ScriptedBackend(lambda j, n: None), concurrency=2, retry=POLICY, run_id="r", sleep=Sleeps()
    )
    with pytest.raises(BaseException) as info, anyio.fail_after(5):
        await engine.run(Stuck(), Sink())
    assert "WAIT with no job in flight" in repr(info.value.exceptions)  # type: ignore[attr-defined]
