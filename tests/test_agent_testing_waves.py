"""Sequential verdicts and the paired comparison on the agent-testing backend: waves.

Pure tests of the wave planning (the bounds, the verdict planner's and the pairing planner's
waves and invocation windows, resume), then one small run each against the local API over a
real socket, and a kill -9 mid-run then resume that starts no invocation twice."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import polars as pl
import pytest
import yaml
from sweep_data import ORDER_STATUS_CRITERION, SUPPORT_SCENARIOS

from runner.backends import agent_testing as at
from runner.comparing import pair_waves
from runner.config import ConfigError, load_config, parse_config
from runner.jobs import Job, iter_jobs
from runner.localapi.server import LocalAPI, local_api_process
from runner.paired import NonInferiority
from runner.pairing import PairPlanner, Stored, pair_cases
from runner.plan import verdict_waves
from runner.planner import WAIT, Finished, UntilVerdict, case_of
from runner.store import done_job_keys, load_run
from runner.sweep import run_sweep
from runner.verdicts import Anytime

ROOT = Path(__file__).resolve().parents[1]
RUN = [sys.executable, "-m", "runner", "run"]
PASS = (("success_conditions", "success"),)
FAIL = (("success_conditions", "failure"),)
AGENTS = [
    {"id": "agent_support", "label": "support"},
    {"id": "agent_support_lite", "label": "lite"},
]


def raw_config(repeats: Any, scenarios: int = 3, **extra: Any) -> dict[str, Any]:
    return {
        "target": {
            "base_url": "http://127.0.0.1:1",
            "backend": "agent-testing",
            "agent_testing": {"name_prefix": "waves", "poll_interval": 0.01},
        },
        "run": {"name": "w", "repeats": repeats, "concurrency": 16, "new_turns_limit": 8},
        "agents": AGENTS,
        "criteria": [dict(ORDER_STATUS_CRITERION)],
        "scenarios": [dict(s) for s in SUPPORT_SCENARIOS[:scenarios]],
        **extra,
    }


SEQ = {"max": 20, "min": 2, "until": "verdict", "pass_rate": 0.8}


# ---------------------------------------------------------------------------- the bounds


def test_wave_bounds_double_the_repeats_so_far_within_the_apis_cap() -> None:
    assert at.wave_bounds(2, 20) == (0, 2, 4, 8, 16, 20)
    assert at.wave_bounds(3, 200) == (0, 3, 6, 12, 24, 48, 96, 146, 196, 200)  # <= 50 a wave
    assert at.wave_bounds(20, 20) == (0, 20)  # one wave: what fixed repeats send
    assert at.wave_bounds(1, 3) == (0, 1, 2, 3)
    assert at.wave_bounds(7, 40, cap=4) == (0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40)
    bounds = at.wave_bounds(2, 20)
    windows = [at.wave_window(r, bounds) for r in range(20)]
    assert [(w.first, w.repeat_count) for w in windows[:5]] == [(0, 2)] * 2 + [(2, 2)] * 2 + [
        (4, 4)
    ]
    assert all(w.first <= r < w.first + w.repeat_count for r, w in enumerate(windows))
    with pytest.raises(ValueError, match="growth"):
        at.wave_bounds(2, 20, growth=1)


def test_the_first_wave_is_min_or_the_fewest_repeats_that_could_settle(tmp_path: Path) -> None:
    cfg = parse_config(raw_config(SEQ), "c.yaml")
    assert verdict_waves(cfg) == (0, 2, 4, 8, 16, 20)
    cfg = parse_config(raw_config({**SEQ, "min": 1}), "c.yaml")
    assert verdict_waves(cfg) == (0, 2, 4, 8, 16, 20)  # one repeat settles nothing
    cfg = parse_config(raw_config({**SEQ, "min": 5}), "c.yaml")
    assert verdict_waves(cfg) == (0, 5, 10, 20)
    assert verdict_waves(parse_config(raw_config(20), "c.yaml")) is None
    raw = raw_config(SEQ)
    raw["target"]["backend"] = "stream"
    del raw["target"]["agent_testing"]
    assert verdict_waves(parse_config(raw, "c.yaml")) is None


def write(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_until_verdict_loads_and_of_may_not_name_a_merged_criterion(tmp_path: Path) -> None:
    assert load_config(write(tmp_path / "c.yaml", raw_config(SEQ))).run.sequential is not None
    listed = raw_config({**SEQ, "of": ["order_status_given"]})
    with pytest.raises(ConfigError, match=r"run.repeats.of\[0\]: backend agent-testing judges"):
        load_config(write(tmp_path / "c.yaml", listed))
    ok = raw_config({**SEQ, "of": ["success_conditions"]})
    assert load_config(write(tmp_path / "c.yaml", ok)).run.sequential is not None
    compare = raw_config(2, compare={"baseline": "support", "candidate": "lite", "of": ["x"]})
    with pytest.raises(ConfigError, match=r"compare.of\[0\]: no criterion 'x'"):
        load_config(write(tmp_path / "c.yaml", compare))


# ---------------------------------------------------------------------------- verdict waves


def test_the_verdict_planner_hands_out_whole_waves_with_the_fixed_runs_keys() -> None:
    cfg = parse_config(raw_config(SEQ), "c.yaml")
    jobs = list(iter_jobs(cfg))
    bounds = verdict_waves(cfg)
    assert bounds is not None
    planner = UntilVerdict(jobs, Anytime(0.8, 0.05, 20, 2), waves=bounds)
    first = []
    while (job := planner.next()) not in (WAIT, None):
        assert isinstance(job, Job)
        first.append(job)
    assert sorted(j.repeat for j in first) == [0] * 6 + [1] * 6  # min 2 of each of 6 cases
    assert planner.next() is WAIT
    fixed = {j.key for j in jobs}
    assert {j.key for j in first} <= fixed
    # one case fails both, the others pass both: each gets its next waves, whole
    outcomes = {j.key: FAIL if case_of(j) == case_of(first[0]) else PASS for j in first}
    for job in first:
        planner.observe(
            Finished(job.key, case_of(job), job.repeat, "ok", criteria=outcomes[job.key])
        )
    second: list[Job] = []
    while (job := planner.next()) not in (WAIT, None):
        assert isinstance(job, Job)
        second.append(job)
    by_case = Counter(case_of(j) for j in second)
    for case, n in by_case.items():
        repeats = sorted(j.repeat for j in second if case_of(j) == case)
        windows = {at.wave_window(r, bounds) for r in repeats}
        # whole waves, in order, and each one needed: it starts below known + what could settle
        assert sum(w.repeat_count for w in windows) == n
        assert repeats == list(range(2, 2 + n))
    assert {j.key for j in second} <= fixed


def test_a_resumed_case_continues_its_wave_with_the_same_windows() -> None:
    cfg = parse_config(raw_config(SEQ, scenarios=1), "c.yaml")
    jobs = [j for j in iter_jobs(cfg) if j.agent_id == "agent_support"]
    bounds = verdict_waves(cfg)
    assert bounds is not None
    stored = {j.key: ("ok", PASS) for j in jobs if j.repeat < 3}  # killed within wave [2, 4)
    planner = UntilVerdict(jobs, Anytime(0.8, 0.05, 20, 2), stored=stored, waves=bounds)
    job = planner.next()
    assert isinstance(job, Job) and job.repeat == 3
    assert at.wave_window(3, bounds) == at.Window(2, 2)  # the invocation it re-attaches to


# ---------------------------------------------------------------------------- pair waves


def pair_planner(
    max_pairs: int = 40, in_flight: int = 8, done: dict[str, Stored] | None = None
) -> PairPlanner:
    cfg = parse_config(raw_config(2, compare={"baseline": "support", "candidate": "lite"}), "c")
    assert cfg.compare is not None
    cases = pair_cases(iter_jobs(cfg), cfg.compare.arm("baseline"), cfg.compare.arm("candidate"))
    rule = NonInferiority(max_pairs=max_pairs)
    waves = pair_waves(rule, in_flight)
    return PairPlanner(cases, rule, seed=3, done=done, in_flight=in_flight, waves=waves)


def take_wave(planner: PairPlanner) -> list[Job]:
    out: list[Job] = []
    while isinstance(job := planner.next(), Job):
        out.append(job)
    return out


def test_pairs_go_out_a_wave_at_a_time_both_members_in_one_window_each() -> None:
    planner = pair_planner()
    assert planner.waves == at.wave_bounds(4, 40, cap=4)  # 7 pairs could decide; cap 8 / 2
    wave = take_wave(planner)
    assert len(wave) == 8 and planner.next() is WAIT  # 4 pairs; the next once these ended
    assert wave == [job for pair in planner.pairs[:4] for job in pair]
    for base, cand in planner.pairs[:4]:
        assert planner.window_of(base)[:2] == planner.window_of(cand)[:2]
        first, count, label = planner.window_of(base)
        assert label == "p0" and first <= base.repeat < first + count
    # a case's draws within a wave are one window: consecutive repeats, counted once each
    groups = Counter((*planner.window_of(j), j.agent_id, j.scenario_id) for j in wave)
    for (_, count, *_), n in groups.items():
        assert n == count
    for job in wave:
        planner.observe(Finished(job.key, case_of(job), job.repeat, "ok", criteria=PASS))
    assert len(take_wave(planner)) == 8  # undecided (all ties): the next wave


def test_a_decided_comparison_sends_no_further_wave_and_resume_keeps_the_windows() -> None:
    planner = pair_planner()
    sent: list[Job] = []
    stored: dict[str, Stored] = {}
    t = 0.0
    while not planner.decision.stop:
        wave = take_wave(planner)
        if not wave:
            break
        for job in wave:  # the candidate fails every time: "worse"
            t += 1
            ok = job.agent_id == "agent_support"
            criteria = PASS if ok else FAIL
            planner.observe(Finished(job.key, case_of(job), job.repeat, "ok", criteria=criteria))
            stored[job.key] = Stored("pass" if ok else "fail", t)
        sent += wave
    assert planner.decision.verdict == "worse"
    assert planner.next() is None
    assert len(sent) == 2 * planner.decision.counts.pairs  # whole waves, both members
    # resume from half a wave: the missing members, in the windows the first session used
    cut = len(sent) - 3
    resumed = pair_planner(
        done={k: v for k, v in stored.items() if k in {j.key for j in sent[:cut]}}
    )
    again = take_wave(resumed)
    first = pair_planner()
    assert {j.key for j in again} == {j.key for j in sent[cut:]}
    assert all(resumed.window_of(j) == first.window_of(j) for j in again)


# ---------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def api() -> Iterator[LocalAPI]:
    with local_api_process(["--time-scale", "0.002", "--seed", "21"]) as server:
        yield server


def stats(server: LocalAPI) -> dict[str, int]:
    found: dict[str, int] = server.stats()["agent_testing"]
    return found


def records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / at.INVOCATIONS_FILE
    return [json.loads(line) for line in path.read_text().splitlines()]


def e2e(
    tmp_path: Path, base_url: str, repeats: Any, name: str, concurrency: int = 16, **extra: Any
) -> Path:
    raw = raw_config(repeats, **extra)
    raw["run"]["concurrency"] = concurrency
    raw["target"]["base_url"] = base_url
    raw["target"]["agent_testing"] = {
        "name_prefix": name,
        "poll_interval": 0.01,
        "poll_interval_max": 0.05,
        "batch_wait": 0.02,
    }
    raw["run"]["name"] = name
    return write(tmp_path / f"{name}.yaml", raw)


def sweep(path: Path, results: Path) -> Any:
    cfg = load_config(path)
    return anyio.run(lambda: run_sweep(cfg, results_root=results, progress=False))


def test_verdicts_run_in_waves_end_to_end(tmp_path: Path, api: LocalAPI) -> None:
    path = e2e(tmp_path, api.base_url, {**SEQ, "max": 16, "alpha": 0.1}, "vw")
    before = stats(api)
    report = sweep(path, tmp_path / "r")
    jobs = load_run(report.run_dir).jobs
    assert report.verdicts is not None and report.verdicts.height == 6
    fixed = {j.key: j for j in iter_jobs(load_config(path))}
    assert set(jobs["job_key"]) <= set(fixed) and jobs["job_key"].is_unique().all()
    assert jobs.height < len(fixed)  # some case stopped before max
    bounds = at.wave_bounds(2, 16)
    lines = records(report.run_dir)
    for line in lines:  # every invocation is one wave of its test
        assert (line["first_repeat"], line["repeat_count"]) in set(waves_of(bounds))
    after = stats(api)
    invocations = {line["invocation_id"] for line in lines}
    assert after["invocations_created"] - before["invocations_created"] == len(invocations)
    runs = after["runs_started"] - before["runs_started"]
    assert runs == sum(line["repeat_count"] for line in lines) == jobs.height  # all taken
    # a case's repeats are whole waves from 0
    per_case = jobs.group_by("agent_id", "scenario_id").agg(pl.col("repeat").max() + 1)
    assert set(per_case["repeat"]) <= set(bounds[1:])


def waves_of(bounds: tuple[int, ...]) -> Iterator[tuple[int, int]]:
    """(first repeat, repeat count) of each wave."""
    for a, b in itertools.pairwise(bounds):
        yield a, b - a


def test_a_comparison_runs_in_waves_of_pairs_end_to_end(tmp_path: Path, api: LocalAPI) -> None:
    compare = {"baseline": "support", "candidate": "lite", "max_pairs": 60}
    path = e2e(tmp_path, api.base_url, 1, "cw", concurrency=40, compare=compare)  # 20-pair waves
    before = stats(api)
    report = sweep(path, tmp_path / "r")
    decision = report.compare
    assert decision is not None and decision.stop, decision
    jobs = load_run(report.run_dir).jobs
    assert jobs["status"].to_list() == ["ok"] * jobs.height
    assert jobs.height == 2 * decision.counts.pairs  # both members of every pair ran
    sides = Counter(jobs["agent_id"])
    assert sides["agent_support"] == sides["agent_support_lite"]
    lines = records(report.run_dir)
    after = stats(api)
    assert after["invocations_created"] - before["invocations_created"] == len(
        {line["invocation_id"] for line in lines}
    )
    assert after["runs_started"] - before["runs_started"] == jobs.height


def test_kill_9_mid_run_then_resume_starts_no_invocation_twice(tmp_path: Path) -> None:
    with local_api_process(["--time-scale", "0.01", "--seed", "22"]) as server:
        path = e2e(tmp_path, server.base_url, {**SEQ, "max": 16, "alpha": 0.1}, "kw")
        results = tmp_path / "r"
        record = results / "kw" / at.INVOCATIONS_FILE
        before = stats(server)
        proc = subprocess.Popen(
            [*RUN, str(path), "--results", str(results), "--no-progress", "--no-preflight"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # a second wave started: kill it mid-run
                if record.exists() and any(r["first_repeat"] > 0 for r in records(record.parent)):
                    break
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(10)
        at_kill = records(record.parent)
        assert any(r["first_repeat"] > 0 for r in at_kill)
        done_at_kill = done_job_keys(record.parent)
        report = sweep(path, results)
        lines = records(record.parent)
        after = stats(server)
    started: dict[tuple[Any, ...], set[str]] = {}
    for line in lines:
        key = (line["agent_id"], line["test_hash"], line["first_repeat"], line["repeat_count"])
        started.setdefault(key, set()).add(line["invocation_id"])
    assert all(len(ids) == 1 for ids in started.values())  # no group started twice
    ids = {line["invocation_id"] for line in lines}
    assert after["invocations_created"] - before["invocations_created"] == len(ids)
    jobs = load_run(report.run_dir).jobs
    assert jobs["status"].to_list() == ["ok"] * jobs.height and jobs["job_key"].is_unique().all()
    assert len(done_at_kill) < jobs.height  # killed mid-run: the resume finished it
    assert set(jobs["job_key"]) <= {j.key for j in iter_jobs(load_config(path))}
    assert after["runs_started"] - before["runs_started"] == sum(
        len({(line["test_hash"]) for line in lines if line["invocation_id"] == i})
        * next(line["repeat_count"] for line in lines if line["invocation_id"] == i)
        for i in ids
    )
    assert report.verdicts is not None and report.verdicts.height == 6
