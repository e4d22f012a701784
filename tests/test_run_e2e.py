"""End to end over a real socket: sweeps against the local API, checked from both sides."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from sweep_data import ORDER_STATUS_CRITERION, SUPPORT_SCENARIOS

from runner.config import load_config
from runner.jobs import iter_jobs
from runner.localapi.server import LocalAPI, local_api_process
from runner.schema import TABLES, jobs_schema
from runner.store import load_run
from runner.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]


def sweep_config(tmp_path: Path, base_url: str, **changes: Any) -> Path:
    """A small sweep: 2 agents x 3 scenarios x 2 languages x 2 repeats = 24 jobs."""
    config: dict[str, Any] = {
        "target": {
            "base_url": base_url,
            "api_key_env": "E2E_TEST_KEY",
            "timeouts": {"connect": 5, "first_byte": 10, "idle": 5, "total": 30},
        },
        "run": {
            "name": "e2e",
            "concurrency": 6,
            "new_turns_limit": 8,
            "repeats": 2,
            "retry": {"max_attempts": 4, "backoff_base": 0.01, "backoff_cap": 0.05, "jitter": 0.01},
        },
        "agents": [{"id": "agent_support"}, {"id": "agent_support_lite", "label": "lite"}],
        "criteria": [dict(ORDER_STATUS_CRITERION)],
        "scenarios": [dict(s) for s in SUPPORT_SCENARIOS],
        "matrix": {"language": ["en", "es"]},
    }
    for dotted, value in changes.items():
        node = config
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def api() -> Iterator[LocalAPI]:
    with local_api_process(["--time-scale", "0.002", "--seed", "7"]) as server:
        yield server


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2E_TEST_KEY", "sk_e2e_local_key")


async def test_a_sweep_writes_every_job_once_with_the_documented_schema(
    tmp_path: Path, api: LocalAPI
) -> None:
    cfg = load_config(sweep_config(tmp_path, api.base_url))
    expected = {job.key for job in iter_jobs(cfg)}
    assert len(expected) == 24

    report = await run_sweep(cfg, results_root=tmp_path / "results", progress=False)

    run = load_run(report.run_dir)
    assert isinstance(run.jobs, pl.DataFrame)
    assert set(run.jobs["job_key"]) == expected and run.jobs.height == 24
    assert run.jobs["status"].to_list() == ["ok"] * 24
    assert run.jobs.schema == jobs_schema(["language"])
    for table in TABLES[1:]:
        frame = getattr(run, table.name)
        assert set(frame.columns) >= set(table.schema.names()), table.name
    # every ok job has its messages and every criterion sent, with one of the three results
    assert set(run.messages["job_key"]) == expected
    extra = run.criteria.filter(pl.col("criterion_id") == "order_status_given")
    assert extra.height == 24 and set(extra["source"]) == {"extra"}
    assert set(run.criteria["result"]) <= {"success", "failure", "unknown"}
    counts = run.jobs.group_by("agent_label", "matrix.language").len()
    assert counts["len"].to_list() == [6, 6, 6, 6]
    # the server agrees: 24 simulations, nothing broken, no more requests than jobs
    stats = api.stats()
    assert stats["simulations_completed"] == 24
    assert stats["simulate_requests"] == 24
    assert stats["peak_in_flight"] <= 6
    # timings are real measurements, ordered as a stream is
    ok = run.jobs
    assert (ok["time_to_first_frame_secs"] <= ok["time_to_analysis_secs"]).all()
    assert (ok["time_to_analysis_secs"] <= ok["total_secs"]).all()
    assert (ok["frames"] >= 2).all()
    manifest = json.loads((report.run_dir / "manifest.json").read_text())
    assert manifest["counts"]["jobs"] == 24 and manifest["finalized"] is True
    assert manifest["sessions"][-1]["ended"] == "completed"


async def test_buffered_backend_fills_the_same_tables(tmp_path: Path, api: LocalAPI) -> None:
    cfg = load_config(sweep_config(tmp_path, api.base_url, **{"target.backend": "buffered"}))
    report = await run_sweep(cfg, results_root=tmp_path / "results", progress=False, limit=6)
    run = load_run(report.run_dir)
    assert run.jobs.height == 6 and set(run.jobs["status"]) == {"ok"}
    assert run.messages.height > 6 and run.criteria.height >= 6
    assert api.stats()["simulate_requests"] == 6


async def test_faults_end_every_job_exactly_once_and_counts_agree_with_the_server(
    tmp_path: Path,
) -> None:
    faults = [
        "--fault-http-503",
        "0.1",
        "--fault-system-busy",
        "0.1",
        "--fault-disconnect",
        "0.1",
        "--fault-malformed",
        "0.05",
        "--fault-reset",
        "0.05",
        "--fault-too-many-concurrent-requests",
        "0.1",
    ]
    with local_api_process(["--time-scale", "0.002", "--seed", "3", *faults]) as server:
        cfg = load_config(sweep_config(tmp_path, server.base_url))
        report = await run_sweep(cfg, results_root=tmp_path / "results", progress=False)
        stats = server.stats()
    run = load_run(report.run_dir)
    assert run.jobs.height == 24 and run.jobs["job_key"].n_unique() == 24
    attempts = run.attempts
    assert attempts.height == stats["simulate_requests"]  # every request sent was recorded
    assert attempts.filter(pl.col("status") == "error").height > 0  # faults really happened
    kinds = set(attempts["error_kind"].drop_nulls())
    assert {"server_error", "system_busy", "stream_broken"} <= kinds
    ok = run.jobs.filter(pl.col("status") == "ok").height
    broken_after_completion = 0  # faults are injected before the analysis frame
    assert stats["simulations_completed"] == ok + broken_after_completion
    assert report.counters.retries == attempts.height - 24


async def test_retry_after_is_honoured(tmp_path: Path) -> None:
    args = [
        "--time-scale",
        "0.001",
        "--seed",
        "5",
        "--fault-system-busy",
        "0.5",
        "--retry-after",
        "0.3",
    ]
    with local_api_process(args) as server:
        cfg = load_config(sweep_config(tmp_path, server.base_url))
        report = await run_sweep(cfg, results_root=tmp_path / "r", progress=False, limit=8)
    attempts = load_run(report.run_dir).attempts.sort("job_key", "attempt")
    busy = attempts.filter(pl.col("error_kind") == "system_busy")
    assert busy.height > 0 and set(busy["retry_after_secs"]) == {0.3}
    after_busy = attempts.with_columns(
        pl.col("error_kind").shift(1).over("job_key").alias("previous")
    ).filter(pl.col("previous") == "system_busy")
    assert set(after_busy["backoff_before_secs"]) == {0.3}  # the wait, not backoff + 0.3


async def test_a_stall_is_cut_by_the_idle_timeout(tmp_path: Path) -> None:
    args = ["--time-scale", "0.001", "--fault-stall", "1.0", "--stall-secs", "20"]
    with local_api_process(args) as server:
        cfg = load_config(
            sweep_config(
                tmp_path,
                server.base_url,
                **{
                    "target.timeouts": {"connect": 5, "first_byte": 0.5, "idle": 0.5, "total": 30},
                    "run.retry": {
                        "max_attempts": 2,
                        "backoff_base": 0.01,
                        "backoff_cap": 0.01,
                        "jitter": 0,
                    },
                },
            )
        )
        report = await run_sweep(cfg, results_root=tmp_path / "r", progress=False, limit=3)
    jobs = load_run(report.run_dir).jobs
    assert set(jobs["status"]) == {"error"}
    assert set(jobs["error_kind"]) <= {"idle_timeout", "first_byte_timeout"}
    assert report.wall_secs < 10  # cut after ~0.5 s per attempt, not the 20 s stall


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_a_rejected_key_stops_the_run_at_the_first_401(tmp_path: Path) -> None:
    """Without pre-flight (which catches it before any job: tests/test_preflight.py)."""
    with local_api_process(["--time-scale", "0.001"], api_key="the-right-key") as server:
        config = sweep_config(tmp_path, server.base_url)
        done = _cli(
            "run",
            str(config),
            "--results",
            str(tmp_path / "r"),
            "--no-progress",
            "--no-preflight",
            env={"E2E_TEST_KEY": "sk_wrong_key_0123456789"},
        )
        stats = server.stats()
    assert done.returncode == 1, done.stderr
    assert "invalid_api_key" in done.stderr
    assert 1 <= stats["responses_by_status"].get("401", 0) <= 6  # at most what was in flight
    assert "sk_wrong_key_0123456789" not in done.stdout + done.stderr


def test_a_bad_config_names_the_field_and_sends_nothing(tmp_path: Path, api: LocalAPI) -> None:
    config = sweep_config(tmp_path, api.base_url, **{"run.concurrency": -3})
    done = _cli("run", str(config), "--results", str(tmp_path / "r"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "run.concurrency" in lines[0] and str(config) in lines[0]
    assert api.stats()["requests_total"] == 0
    assert not (tmp_path / "r").exists()


def test_a_missing_key_for_a_remote_target_is_a_clear_error(tmp_path: Path) -> None:
    config = sweep_config(
        tmp_path, "https://api.invalid.example", **{"target.api_key_env": "NOPE_KEY"}
    )
    env = {k: v for k, v in os.environ.items() if k != "NOPE_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "runner", "run", str(config), "--results", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 2
    assert "NOPE_KEY" in done.stderr and "not set" in done.stderr


def test_dry_run_prints_the_count_and_requests_and_sends_nothing(tmp_path: Path) -> None:
    config = sweep_config(tmp_path, "http://127.0.0.1:9")
    # (pre-flight, on by default in --dry-run, is tested in tests/test_preflight.py)
    done = _cli("run", str(config), "--dry-run", "--concurrency", "auto", "--no-preflight")
    assert done.returncode == 0, done.stderr
    assert "24 job(s)" in done.stdout
    assert '"simulation_specification"' in done.stdout
