"""The verdict planner (``planner.UntilVerdict``, issue 25): pure tests of what it dispatches,
and a run against the local API that stops cases' repeats once their verdicts are settled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import yaml

import runner
from runner.config import load_config
from runner.jobs import Job, iter_jobs
from runner.localapi.server import LocalAPI, local_api_process
from runner.planner import WAIT, Case, Finished, UntilVerdict, case_of
from runner.replay import repeat_outcomes
from runner.schema import VERDICTS
from runner.verdicts import Anytime, Curtail, fixed_wilson

ROOT = Path(__file__).resolve().parents[1]

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


# ------------------------------------------------------------------ end to end, local API

E2E_SCENARIOS = 4


def e2e_config(
    tmp_path: Path, base_url: str, repeats: Any, name: str, concurrency: int = 8
) -> Path:
    """2 agents x 4 scenarios of the local API; its agents' criteria judge every job."""
    config = {
        "target": {"base_url": base_url, "timeouts": {"first_byte": 10, "idle": 10, "total": 60}},
        "run": {
            "name": name,
            "concurrency": concurrency,
            "repeats": repeats,
            "new_turns_limit": 6,
        },
        "agents": [{"id": "agent_support"}, {"id": "agent_booking"}],
        "scenarios": [
            {
                "id": f"s{i}",
                "first_message": f"Where is my order A-{1000 + i}?",
                "prompt": f"You are customer {i}; order A-{1000 + i} is late.",
            }
            for i in range(E2E_SCENARIOS)
        ],
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


SEQ = {"max": 20, "until": "verdict", "pass_rate": 0.8}


def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def verdicts_of(run_dir: Path) -> dict[tuple[str, str], str]:
    table = pl.read_parquet(run_dir / "verdicts.parquet")
    return {(r["agent_id"], r["scenario_id"]): r["verdict"] for r in table.iter_rows(named=True)}


def test_a_sequential_run_spends_less_than_fixed_repeats_and_agrees(tmp_path: Path) -> None:
    results = tmp_path / "r"
    with local_api_process(["--time-scale", "0.02", "--seed", "11"]) as api:
        seq = run_cli(
            "run",
            str(e2e_config(tmp_path, api.base_url, SEQ, "seq")),
            "--results",
            str(results),
            "--no-progress",
        )
        assert seq.returncode in (0,), seq.stderr
        sent_seq = api.stats()["simulate_requests"]
    with local_api_process(["--time-scale", "0.02", "--seed", "11"]) as api:
        fixed = run_cli(
            "run",
            str(e2e_config(tmp_path, api.base_url, 20, "fixed")),
            "--results",
            str(results),
            "--no-progress",
        )
        assert fixed.returncode == 0, fixed.stderr
        sent_fixed = api.stats()["simulate_requests"]
    assert sent_fixed == 2 * E2E_SCENARIOS * 20
    assert sent_seq < sent_fixed * 0.75  # at least 25% fewer (the target)
    assert "not spent against fixed repeats" in seq.stdout
    table = pl.read_parquet(results / "seq" / "verdicts.parquet")
    assert table.height == 2 * E2E_SCENARIOS
    assert int(table["repeats"].sum()) == sent_seq  # every simulation sent is a counted repeat
    # where the fixed run's Wilson verdict and the sequential one are both settled, they agree
    jobs, criteria = (
        pl.read_parquet(results / "fixed" / f"{t}.parquet") for t in ("jobs", "criteria")
    )
    full = {
        (r["agent_id"], r["scenario_id"]): fixed_wilson(r["outcomes"], 0.8).verdict
        for r in repeat_outcomes(jobs, criteria).iter_rows(named=True)
    }
    settled = {k: v for k, v in verdicts_of(results / "seq").items() if v != "undecided"}
    assert settled
    assert all(full[k] in (v, "undecided") for k, v in settled.items())
    # the replay command over the fixed run
    shadow = run_cli(
        "replay",
        str(results / "fixed"),
        "--rule",
        "anytime",
        "--pass-rate",
        "0.8",
        "--alpha",
        "0.05",
    )
    assert shadow.returncode == 0, shadow.stderr
    assert (
        shadow.stdout.startswith("anytime: ") and "of 160 simulations not needed" in shadow.stdout
    )
    bad = run_cli("replay", str(results / "fixed"), "--rule", "sprt", "--pass-rate", "0.8")
    assert bad.returncode == 2 and "--pass-rate-low is required" in bad.stderr


FAST = ["--time-scale", "0.001", "--seed", "11"]
"""Conversations of a few milliseconds, the same draws on every start (per agent and body)."""


def kill_at_hold(api: LocalAPI, config: Path, results: Path, timeout: float = 60) -> None:
    """``python -m runner run`` against a local API started with ``--hold-request``: SIGKILL
    the runner once the held request is waiting (every earlier job is journaled then: one at
    a time). The caller resumes it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", str(config), "--results", str(results), "-q"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    while api.stats()["held"] == 0:
        assert proc.poll() is None and time.monotonic() < deadline, "the hold was never reached"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def test_kill_9_then_resume_gives_the_same_verdicts(tmp_path: Path) -> None:
    """Outcomes reproducible per job: one job at a time, each (agent, body)'s n-th request is
    its n-th repeat and gets the local API's n-th draw for it. The killed run's server stays
    up across the kill (``--hold-request``: the request it dies waiting for takes no draw), so
    every repeat gets the outcome the uninterrupted run's got, and the verdicts, where each
    settled and every outcome on the way, are the same."""
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    serial = {**SEQ, "max": 12}
    with local_api_process(FAST) as api:
        config = e2e_config(tmp_path, api.base_url, serial, "seq", concurrency=1)
        runner.run(config, results_root=whole, progress=False, quiet=True)
        sent = api.stats()["simulate_requests"]
    with local_api_process([*FAST, "--hold-request", str(sent // 2)]) as api:
        config = e2e_config(tmp_path, api.base_url, serial, "seq", concurrency=1)
        kill_at_hold(api, config, broken)
        assert api.stats()["simulations_completed"] == sent // 2 - 1  # killed mid-run
        runner.run(config, results_root=broken, progress=False, quiet=True)  # the resume
    jobs = pl.read_parquet(broken / "seq" / "jobs.parquet")
    assert jobs["run_id"].n_unique() == 2  # two sessions: killed mid-run, then resumed
    assert jobs["job_key"].n_unique() == jobs.height  # nothing paid for twice
    for (_, _), group in jobs.group_by("agent_id", "scenario_id"):
        assert sorted(group["repeat"]) == list(range(group.height))  # the n-th repeat, no gaps
    columns = ["agent_id", "scenario_id", "verdict", "settled_at", "passes", "repeats"]
    a, b = (
        pl.read_parquet(d / "seq" / "verdicts.parquet").select(columns).sort(columns[:2])
        for d in (whole, broken)
    )
    assert a.equals(b), (a, b)
    assert set(a["verdict"]) >= {"fail"} and a["settled_at"].is_not_null().any()


def test_extending_max_continues_only_the_cases_still_open(tmp_path: Path) -> None:
    results = tmp_path / "r"
    with local_api_process(["--time-scale", "0.02", "--seed", "11"]) as api:
        short = {**SEQ, "max": 3}
        first = run_cli(
            "run",
            str(e2e_config(tmp_path, api.base_url, short, "ext")),
            "--results",
            str(results),
            "--no-progress",
        )
        assert first.returncode == 0, first.stderr
        table = pl.read_parquet(results / "ext" / "verdicts.parquet")
        settled = {
            (r["agent_id"], r["scenario_id"])
            for r in table.iter_rows(named=True)
            if r["verdict"] != "undecided"
        }
        keys_before = set(pl.read_parquet(results / "ext" / "jobs.parquet")["job_key"])
        second = run_cli(
            "run",
            str(e2e_config(tmp_path, api.base_url, SEQ, "ext")),
            "--results",
            str(results),
            "--no-progress",
        )
        assert second.returncode == 0, second.stderr
    jobs = pl.read_parquet(results / "ext" / "jobs.parquet")
    assert keys_before <= set(jobs["job_key"])  # the same keys: the first repeats are kept
    new = jobs.filter(~pl.col("job_key").is_in(list(keys_before)))
    assert not {(r["agent_id"], r["scenario_id"]) for r in new.iter_rows(named=True)} & settled
    after = pl.read_parquet(results / "ext" / "verdicts.parquet")
    assert int(after["max_repeats"].max()) == 20


def test_check_verdicts_exit_codes(tmp_path: Path) -> None:
    def table(*verdicts: str) -> Path:
        run_dir = tmp_path / "-".join(verdicts)
        run_dir.mkdir()
        rows = [
            {
                "agent_id": "a",
                "agent_label": "a",
                "scenario_id": f"s{i}",
                "criterion_id": None,
                "rule": "anytime",
                "params": "{}",
                "pass_rate": 0.8,
                "alpha": 0.05,
                "max_repeats": 20,
                "repeats": 14,
                "passes": 14,
                "failures": 0,
                "unknowns": 0,
                "errors": 0,
                "trials": 14,
                "lower": 0.0,
                "upper": 1.0,
                "verdict": v,
                "reason": "r",
                "stopped": True,
                "settled_at": None if v == "undecided" else 14,
                "ran_past": 0,
                "cost_usd": 0.1,
                "credits_used": 0,
            }
            for i, v in enumerate(verdicts)
        ]
        pl.DataFrame(rows, schema=VERDICTS.schema).write_parquet(run_dir / "verdicts.parquet")
        return run_dir

    passing, failing, open_ = table("pass"), table("pass", "fail"), table("pass", "undecided")
    assert run_cli("check", str(passing), "--verdicts").returncode == 0
    out = run_cli("check", str(failing), "--verdicts")
    assert out.returncode == 1 and "FAIL a / s1: r" in out.stdout
    assert run_cli("check", str(open_), "--verdicts").returncode == 0  # undecided: pass
    assert run_cli("check", str(open_), "--verdicts", "--undecided", "fail").returncode == 1
    missing = run_cli("check", str(tmp_path), "--verdicts")
    assert missing.returncode == 2 and "no verdicts table" in missing.stderr


def test_shards_keep_a_case_whole_and_merge_writes_the_verdicts(tmp_path: Path) -> None:
    results = tmp_path / "r"
    with local_api_process(["--time-scale", "0.02", "--seed", "11"]) as api:
        config = e2e_config(tmp_path, api.base_url, SEQ, "sh")
        homes: dict[tuple[str, str], set[int]] = {}
        for i in range(2):
            out = run_cli(
                "run", str(config), "--results", str(results), "--no-progress", "--shard", f"{i}/2"
            )
            assert out.returncode == 0, out.stderr
        merged = run_cli("merge", str(results / "sh"))
        assert merged.returncode == 0, merged.stdout + merged.stderr
    jobs = pl.read_parquet(results / "sh" / "jobs.parquet")
    for row in jobs.iter_rows(named=True):
        homes.setdefault((row["agent_id"], row["scenario_id"]), set()).add(row["run_id"])
    assert all(len(runs) == 1 for runs in homes.values())  # one shard's session per case
    table = pl.read_parquet(results / "sh" / "verdicts.parquet")
    assert table.height == 2 * E2E_SCENARIOS and table["stopped"].all()
    assert jobs.height < 2 * E2E_SCENARIOS * 20


def test_with_a_budget_the_case_closest_to_a_verdict_goes_first(tmp_path: Path) -> None:
    """Curtail at 16 of 20: A (2 passes, 4 failures) is one failure from FAIL; B (5 passes)
    is five repeats from anything. Repeat-major order sends B's next repeat first (fewer
    repeats so far); ``closest_first`` (a run with a budget) sends A's."""
    jobs = [j for j in jobs_of(tmp_path) if j.agent_id == "agent_a" and j.scenario_id != "s2"]
    a = [j for j in jobs if j.scenario_id == "s0"]
    b = [j for j in jobs if j.scenario_id == "s1"]
    stored = {j.key: ("ok", ALL_PASS if j.repeat < 2 else ALL_FAIL) for j in a[:6]}
    stored |= {j.key: ("ok", ALL_PASS) for j in b[:5]}
    plain = UntilVerdict(jobs, Curtail(0.8, 20), stored=stored).next()
    closest = UntilVerdict(jobs, Curtail(0.8, 20), stored=stored, closest_first=True).next()
    assert isinstance(plain, Job) and isinstance(closest, Job)
    assert (plain.scenario_id, plain.repeat) == ("s1", 5)
    assert (closest.scenario_id, closest.repeat) == ("s0", 6)
