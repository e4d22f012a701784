"""Crash safety and resume: kill -9 at any point, Ctrl-C, re-runs and edits never re-buy work.

Each test owns a local API on 127.0.0.1 and counts at the server what the runner sent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from runner.config import load_config
from runner.jobs import iter_jobs
from runner.localapi.server import LocalAPI, local_api_process
from runner.store import TMP_PREFIX, RunLock, done_job_keys, load_run
from runner.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]
JOBS = 40


def write_config(tmp_path: Path, base_url: str, scenarios: int = 10, **run: Any) -> Path:
    """10 scenarios x 2 agents x 2 repeats = 40 jobs, ~0.3 s each at concurrency 4."""
    config = {
        "target": {"base_url": base_url, "timeouts": {"first_byte": 10, "idle": 10, "total": 60}},
        "run": {"name": "resume", "concurrency": 4, "repeats": 2, "new_turns_limit": 6, **run},
        "agents": [{"id": "agent_support"}, {"id": "agent_booking"}],
        "scenarios": [
            {
                "id": f"s{i}",
                "first_message": f"Where is my order A-{1000 + i}?",
                "prompt": f"You are customer {i}; order A-{1000 + i} is late.",
            }
            for i in range(scenarios)
        ],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def api() -> Iterator[LocalAPI]:
    with local_api_process(["--time-scale", "0.05", "--seed", "11"]) as server:
        yield server


def spawn(args: list[str], script: str | None = None) -> subprocess.Popen[str]:
    command = (
        [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "runner", *args]
    )
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def resume_and_check(config: Path, results: Path, api: LocalAPI) -> None:
    """Resume to the end; check every job once, and that only unfinished jobs were sent."""
    run_dir = results / "resume"
    done_before = done_job_keys(run_dir) if run_dir.exists() else set()
    api.reset_stats()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner",
            "run",
            str(config),
            "--results",
            str(results),
            "--no-progress",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    expected = {job.key for job in iter_jobs(load_config(config))}
    run = load_run(run_dir)
    assert isinstance(run.jobs, pl.DataFrame)
    assert run.jobs.height == JOBS and set(run.jobs["job_key"]) == expected  # each exactly once
    assert set(run.jobs["status"]) == {"ok"}
    assert run.messages.group_by("job_key", "index").len()["len"].max() == 1  # no duplicates
    assert run.criteria.group_by("job_key", "criterion_id").len()["len"].max() == 1
    sent = api.stats()["simulate_requests"]
    assert run.manifest is not None
    recovered = run.manifest.sessions[-1].recovered  # finished, journaled, not yet in a part
    assert sent == JOBS - len(done_before) - recovered  # finished work was not sent again
    if recovered:  # the resume says so
        assert f"recovered {recovered} finished job(s) from the journal" in done.stderr


def test_kill_9_before_the_first_flush_then_resume(tmp_path: Path, api: LocalAPI) -> None:
    config = write_config(tmp_path, api.base_url)
    proc = spawn(["run", str(config), "--results", str(tmp_path / "r"), "--no-progress"])
    deadline = time.monotonic() + 20
    while api.stats()["simulate_requests"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.communicate()
    assert done_job_keys(tmp_path / "r" / "resume") == set()
    resume_and_check(config, tmp_path / "r", api)


SMALL_BATCHES = textwrap.dedent(
    """
    import sys
    import runner.engine
    runner.engine.BATCH_JOBS = 8  # parts while the run goes on (a 40-job run is one batch)
    from runner.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_kill_9_mid_run_then_resume(tmp_path: Path, api: LocalAPI) -> None:
    config = write_config(tmp_path, api.base_url)
    results = tmp_path / "r"
    proc = spawn(["run", str(config), "--results", str(results), "--no-progress"], SMALL_BATCHES)
    jobs_parts = results / "resume" / "parts" / "jobs"
    deadline = time.monotonic() + 30
    # a committed part: pathlib's glob also matches the ``.tmp-`` file of a write under way
    while time.monotonic() < deadline and not [
        p for p in jobs_parts.glob("*.parquet") if not p.name.startswith(TMP_PREFIX)
    ]:
        time.sleep(0.05)
    proc.kill()
    proc.communicate()
    finished = done_job_keys(results / "resume")
    assert 0 < len(finished) < JOBS
    resume_and_check(config, results, api)


SLOW_FLUSH = textwrap.dedent(
    """
    import sys, time
    import runner.store as store
    write = store._write_parquet_atomic
    def slow(frame, path):
        write(frame, path)
        if "/parts/criteria/" in str(path):
            print("FLUSHING", flush=True)
            time.sleep(60)
    store._write_parquet_atomic = slow
    from runner.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_kill_9_during_a_flush_then_resume(tmp_path: Path, api: LocalAPI) -> None:
    config = write_config(tmp_path, api.base_url)
    results = tmp_path / "r"
    proc = spawn(["run", str(config), "--results", str(results), "--no-progress"], SLOW_FLUSH)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "FLUSHING"  # child tables written, jobs part not
    proc.kill()
    proc.communicate()
    parts = results / "resume" / "parts"
    assert list((parts / "criteria").glob("*.parquet"))
    assert not list((parts / "jobs").glob("*.parquet"))
    assert done_job_keys(results / "resume") == set()  # the half flush counts for nothing
    resume_and_check(config, results, api)


def test_ctrl_c_stops_gracefully_and_resume_completes_the_same_job_set(
    tmp_path: Path, api: LocalAPI
) -> None:
    config = write_config(tmp_path, api.base_url)
    results = tmp_path / "r"
    proc = spawn(["run", str(config), "--results", str(results), "--no-progress"])
    deadline = time.monotonic() + 20
    while api.stats()["simulations_completed"] < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "To resume: python -m runner run" in stderr
    stats = api.stats()
    assert stats["in_flight"] == 0
    # the in-flight simulations were allowed to finish, and all of them were saved
    finished = done_job_keys(results / "resume")
    assert len(finished) == stats["simulations_completed"] < JOBS
    manifest = load_run(results / "resume").manifest
    assert manifest is not None and manifest.sessions[-1].ended == "interrupted"
    resume_and_check(config, results, api)


async def test_adding_a_scenario_sends_only_the_new_jobs(tmp_path: Path, api: LocalAPI) -> None:
    results = tmp_path / "r"
    first = load_config(write_config(tmp_path, api.base_url, scenarios=3))
    await run_sweep(first, results_root=results, progress=False)
    assert api.stats()["simulate_requests"] == 12
    api.reset_stats()
    second = load_config(write_config(tmp_path, api.base_url, scenarios=4, repeats=3))
    report = await run_sweep(second, results_root=results, progress=False)
    # 4 scenarios x 2 agents x 3 repeats = 24 jobs, of which 12 were already done
    assert api.stats()["simulate_requests"] == 12
    assert report.counters.skipped == 12
    jobs = load_run(report.run_dir).jobs
    assert jobs.height == 24
    manifest = load_run(report.run_dir).manifest
    assert manifest is not None
    assert [s.ended for s in manifest.sessions] == ["completed", "completed"]
    assert manifest.counts["jobs"] == 24 and manifest.counts["jobs_ok"] == 24


async def test_errors_are_re_run_unless_told_not_to(tmp_path: Path) -> None:
    results = tmp_path / "r"
    with local_api_process(["--time-scale", "0", "--fault-http-500", "1.0"]) as broken:
        cfg = load_config(
            write_config(tmp_path, broken.base_url, scenarios=2, retry={"max_attempts": 1})
        )
        await run_sweep(cfg, results_root=results, progress=False)
    jobs = load_run(results / "resume").jobs
    assert set(jobs["status"]) == {"error"} and jobs.height == 8
    with local_api_process(["--time-scale", "0"]) as healthy:
        cfg = load_config(write_config(tmp_path, healthy.base_url, scenarios=2))
        report = await run_sweep(cfg, results_root=results, progress=False, retry_errors=False)
        assert healthy.stats()["simulate_requests"] == 0 and report.counters.skipped == 8
        await run_sweep(cfg, results_root=results, progress=False)
        assert healthy.stats()["simulate_requests"] == 8
    jobs = load_run(results / "resume").jobs
    assert set(jobs["status"]) == {"ok"} and jobs.height == 8


async def test_fresh_sets_the_old_run_aside(tmp_path: Path, api: LocalAPI) -> None:
    results = tmp_path / "r"
    cfg = load_config(write_config(tmp_path, api.base_url, scenarios=1))
    await run_sweep(cfg, results_root=results, progress=False)
    await run_sweep(cfg, results_root=results, progress=False, fresh=True)
    assert api.stats()["simulate_requests"] == 8  # the fresh run sent everything again
    kept = [p for p in results.iterdir() if p.name.startswith("resume.")]
    assert len(kept) == 1 and load_run(kept[0]).jobs.height == 4
    assert load_run(results / "resume").jobs.height == 4


def test_a_second_runner_on_the_same_run_is_refused(tmp_path: Path, api: LocalAPI) -> None:
    config = write_config(tmp_path, api.base_url)
    with RunLock(tmp_path / "r" / "resume"):
        done = subprocess.run(
            [sys.executable, "-m", "runner", "run", str(config), "--results", str(tmp_path / "r")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert "in use by a running runner" in done.stderr and f"pid {os.getpid()}" in done.stderr
    assert api.stats()["simulate_requests"] == 0


def test_a_killed_runner_leaves_no_local_api_behind(tmp_path: Path) -> None:
    """The runner's own local API (target ``local``) exits when the runner is killed -9."""
    config = write_config(tmp_path, "local")
    text = config.read_text().replace(
        "base_url: local", "base_url: local\n  local: {time_scale: 0.05}"
    )
    config.write_text(text)
    proc = spawn(["run", str(config), "--results", str(tmp_path / "r"), "--no-progress"])
    jobs_parts = tmp_path / "r" / "resume" / "parts" / "jobs"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list(jobs_parts.glob("*.parquet")):
        time.sleep(0.05)
    children = subprocess.run(
        ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
    ).stdout.split()
    assert children, "the runner should have started a local API"
    proc.kill()
    proc.communicate()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{c}").exists() for c in children):
        time.sleep(0.1)
    alive = [
        c
        for c in children
        if Path(f"/proc/{c}/status").exists()
        and "zombie" not in Path(f"/proc/{c}/status").read_text()
    ]
    assert not alive
