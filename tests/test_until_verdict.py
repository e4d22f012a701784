"""The verdict planner (``planner.UntilVerdict``, issue 25): pure tests of what it dispatches,
and a run against the local API that stops cases' repeats once their verdicts are settled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from runner.config import load_config
from runner.jobs import Job, iter_jobs
from runner.planner import WAIT, Case, Finished, UntilVerdict, case_of
from runner.verdicts import Anytime, Curtail

ALL_PASS = (("c", "success"),)
ALL_FAIL = (("c", "failure"),)


def write_config(tmp_path: Path, repeats: Any, scenarios: int = 3, **extra: Any) -> Path:
    config = {
        "target": {"base_url": "http://127.0.0.1:1"},
        "run": {"name": "seq", "repeats": repeats, **extra},
        "agents": [{"id": "agent_a"}, {"id": "agent_b"}],
        "scenarios": [
            {"id": f"s{i}", "first_message": "hi", "prompt": f"p{i}"} for i in range(scenarios)
        ],
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def jobs_of(tmp_path: Path, max_repeats: int = 20) -> list[Job]:
    return list(iter_jobs(load_config(write_config(tmp_path, max_repeats))))


def finished(job: Job, criteria: tuple[tuple[str, str], ...]) -> Finished:
    return Finished(job.key, case_of(job), job.repeat, "ok", criteria=criteria)


def drain(planner: UntilVerdict, verdict_of: Any, slots: int = 1) -> list[Job]:
    """Run the planner to the end with ``slots`` jobs in flight, outcomes by ``verdict_of``;
    first in, first out."""
    sent: list[Job] = []
    flight: list[Job] = []
    while True:
        while len(flight) < slots:
            job = planner.next()
            if job is None or job is WAIT:
                break
            assert isinstance(job, Job)
            sent.append(job)
            flight.append(job)
        if not flight:
            assert planner.next() is None
            return sent
        job = flight.pop(0)
        planner.observe(finished(job, verdict_of(job)))


def test_min_repeats_of_every_case_go_first(tmp_path: Path) -> None:
    jobs = jobs_of(tmp_path)
    planner = UntilVerdict(jobs, Anytime(0.8, 0.05, 20, 2))
    first = [planner.next() for _ in range(12)]  # 6 cases x min 2
    assert all(isinstance(j, Job) for j in first)
    cases: dict[Case, int] = {}
    for job in first:
        assert isinstance(job, Job)
        cases[case_of(job)] = cases.get(case_of(job), 0) + 1
    assert len(cases) == 6 and set(cases.values()) == {2}


def test_keys_are_the_fixed_runs_and_only_undecided_cases_continue(tmp_path: Path) -> None:
    jobs = jobs_of(tmp_path)
    fixed = {(case_of(j), j.repeat): j.key for j in jobs}
    failing = {case_of(j) for j in jobs if j.scenario_id == "s0"}
    planner = UntilVerdict(jobs, Anytime(0.8, 0.05, 20))
    sent = drain(planner, lambda j: ALL_FAIL if case_of(j) in failing else ALL_PASS, slots=4)
    assert all(fixed[(case_of(j), j.repeat)] == j.key for j in sent)
    per_case: dict[Case, list[int]] = {}
    for job in sent:
        per_case.setdefault(case_of(job), []).append(job.repeat)
    for case, repeats in per_case.items():
        assert repeats == sorted(repeats) == list(range(len(repeats)))  # the n-th repeat, in order
        decision = planner.decisions(case)[0]
        assert decision.stop
        # failing cases fail after a few repeats; passing ones need their unbroken run
        if case in failing:
            assert decision.verdict == "fail" and len(repeats) < 20
        else:
            assert decision.verdict == "pass" and len(repeats) < 20
    assert len(sent) < len(jobs)


def test_freed_slots_go_to_undecided_cases(tmp_path: Path) -> None:
    """Eight slots: once the failing cases settle, their slots carry the passing cases'
    repeats, also before those cases' own repeats in flight finish."""
    jobs = jobs_of(tmp_path)
    planner = UntilVerdict(jobs, Anytime(0.8, 0.05, 20))
    passing = case_of(next(j for j in jobs if j.scenario_id == "s1"))
    flight = [planner.next() for _ in range(6)]  # min 1: one repeat of each case
    assert planner.next() is not WAIT  # capacity left: a second repeat of an undecided case
    for job in flight:
        assert isinstance(job, Job)
        planner.observe(finished(job, ALL_PASS if case_of(job) == passing else ALL_FAIL))
    more = []
    while (job := planner.next()) not in (None, WAIT):
        assert isinstance(job, Job)
        more.append(job)
    assert more and all(not planner.decisions(case_of(j))[0].stop for j in more)


def test_in_flight_per_case_is_what_could_still_be_needed(tmp_path: Path) -> None:
    """Curtail at 16 of 20: after 4 failures the case needs at most 1 failure more to FAIL;
    the planner sends no second repeat of it until that one is back."""
    jobs = [j for j in jobs_of(tmp_path) if j.agent_id == "agent_a" and j.scenario_id == "s0"]
    planner = UntilVerdict(jobs, Curtail(0.8, 20))
    for _ in range(4):
        job = planner.next()
        assert isinstance(job, Job)
        planner.observe(finished(job, ALL_FAIL))
    assert isinstance(planner.next(), Job)
    assert planner.next() is WAIT


def test_stored_outcomes_continue_a_case_where_it_stood(tmp_path: Path) -> None:
    jobs = jobs_of(tmp_path)
    rule = Anytime(0.8, 0.05, 20)
    whole = drain(UntilVerdict(jobs, rule), lambda j: ALL_PASS)
    head, tail = whole[:30], whole[30:]
    stored = {j.key: ("ok", ALL_PASS) for j in head}
    resumed = drain(UntilVerdict(jobs, rule, stored=stored), lambda j: ALL_PASS)
    assert [j.key for j in resumed] == [j.key for j in tail]


def test_a_case_stops_when_all_its_listed_criteria_settle(tmp_path: Path) -> None:
    jobs = jobs_of(tmp_path)
    planner = UntilVerdict(jobs, Anytime(0.8, 0.05, 20), of=["a", "b"])
    sent = drain(planner, lambda j: (("a", "failure"), ("b", "success")))
    # "a" fails in a few repeats, "b" needs its run of passes: every case runs to b's verdict
    for case in planner.cases:
        a, b = planner.decisions(case)
        assert (a.verdict, b.verdict) == ("fail", "pass")
    assert len(sent) == 6 * 14
