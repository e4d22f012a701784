"""Invocations as the vendor lists them: named after the run and session, found again through
the list endpoint when the journal is lost or a run-tests reply was lost in transit, and
cancelled on Ctrl-C. End to end over 127.0.0.1; the server's counters are the evidence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import polars as pl
import pytest
import yaml

from runner.backends import agent_testing as at
from runner.config import load_config
from runner.localapi.server import LocalAPI, local_api_process
from runner.store import load_run
from runner.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def slow_api() -> Iterator[LocalAPI]:
    """Runs of a second or two: long enough to interrupt while pending."""
    with local_api_process(["--time-scale", "0.12", "--seed", "21"]) as api:
        yield api


def write(path: Path, base_url: str, prefix: str, **agent_testing: Any) -> Path:
    config: dict[str, Any] = {
        "target": {
            "base_url": base_url,
            "backend": "agent-testing",
            "agent_testing": {
                "name_prefix": prefix,
                "poll_interval": 0.05,
                "poll_interval_max": 0.1,
                **agent_testing,
            },
        },
        "run": {
            "name": "r",
            "concurrency": 6,
            "repeats": 2,
            "new_turns_limit": 6,
            "shutdown_grace": 0,
            "retry": {"backoff_base": 0.01, "backoff_cap": 0.05, "jitter": 0.01},
        },
        "agents": [{"id": "agent_support"}],
        "scenarios": [
            {"id": f"s{i}", "first_message": f"Where is order A-{i}?", "prompt": "late order"}
            for i in range(2)
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def counts(api: LocalAPI) -> dict[str, int]:
    stats: dict[str, int] = api.stats()["agent_testing"]
    return stats


def sweep(path: Path, results: Path) -> Any:
    cfg = load_config(path)
    return anyio.run(lambda: run_sweep(cfg, results_root=results, progress=False))


def listed(api: LocalAPI, search: str) -> list[dict[str, Any]]:
    reply = httpx.get(
        f"{api.base_url}/v1/convai/test-invocations", params={"search": search, "page_size": 100}
    )
    results: list[dict[str, Any]] = reply.json()["results"]
    return results


def test_invocation_names_identify_the_run_and_session(tmp_path: Path) -> None:
    with local_api_process(["--time-scale", "0.001"]) as api:
        report = sweep(write(tmp_path / "c.yaml", api.base_url, "named"), tmp_path / "res")
        found = listed(api, "named ")
    # both tests of the agent shared one run-tests call, named after the run and session
    assert len(found) == 1
    item = found[0]
    assert item["name"].startswith("named r")
    assert item["name"].endswith(f" r session {report.run_id}: 2 tests")
    assert item["test_run_count"] == item["passed_count"] + item["failed_count"] == 4


def test_a_resume_without_the_journal_reattaches_and_starts_nothing_new(
    tmp_path: Path, slow_api: LocalAPI
) -> None:
    results = tmp_path / "res"
    path = write(tmp_path / "c.yaml", slow_api.base_url, "lostjournal", deadline=0.2)
    before = counts(slow_api)
    first = load_run(sweep(path, results).run_dir)  # gives up waiting: total_timeout
    assert set(first.jobs["error_kind"]) == {"total_timeout"}
    started = counts(slow_api)
    assert started["invocations_created"] - before["invocations_created"] == 1
    (results / "r" / at.INVOCATIONS_FILE).unlink()  # the journal is lost

    path = write(tmp_path / "c.yaml", slow_api.base_url, "lostjournal")
    second = load_run(sweep(path, results).run_dir)
    assert second.jobs["status"].to_list() == ["ok"] * 4
    after = counts(slow_api)
    assert after["invocations_created"] == started["invocations_created"]  # found by name
    assert after["runs_started"] - before["runs_started"] == 4  # nothing ran twice
    # and the journal has them again
    assert len((results / "r" / at.INVOCATIONS_FILE).read_text().splitlines()) == 2  # 2 tests


def test_a_lost_run_tests_reply_starts_no_duplicate(tmp_path: Path) -> None:
    with local_api_process(["--time-scale", "0.002", "--lose-run-replies", "1"]) as api:
        report = sweep(write(tmp_path / "c.yaml", api.base_url, "lostreply"), tmp_path / "res")
        stats = counts(api)
    run = load_run(report.run_dir)
    assert run.jobs["status"].to_list() == ["ok"] * 4
    assert stats["run_replies_lost"] == 1
    assert stats["invocations_created"] == 1  # both tests in one call: no duplicate
    assert stats["runs_started"] == 4
    assert set(run.attempts.filter(pl.col("status") == "error")["error_kind"]) <= {
        "connect",
        "stream_broken",
    }


def _interrupt(path: Path, results: Path, api: LocalAPI, *extra: str) -> tuple[str, dict[str, int]]:
    before = counts(api)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner",
            "run",
            str(path),
            "--results",
            str(results),
            "--no-progress",
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = counts(api)
            if (
                now["invocations_created"] - before["invocations_created"] == 1
                and now["invocation_polls"] > before["invocation_polls"]
            ):
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    return stderr, before


def test_ctrl_c_cancels_the_invocations_this_session_started(
    tmp_path: Path, slow_api: LocalAPI
) -> None:
    results = tmp_path / "res"
    path = write(tmp_path / "c.yaml", slow_api.base_url, "ctrlc")
    stderr, before = _interrupt(path, results, slow_api)
    assert "cancelled 1 unfinished test invocation(s)" in stderr, stderr
    mine = listed(slow_api, "ctrlc ")
    assert len(mine) == 1 and all(i["cancelled"] for i in mine)
    assert sum(i["cancelled_count"] for i in mine) == 4
    # a resume starts them again (not re-attached to the cancelled ones) and finishes
    second = load_run(sweep(path, results).run_dir)
    assert second.jobs["status"].to_list() == ["ok"] * 4
    after = counts(slow_api)
    assert (
        after["invocations_created"] - before["invocations_created"] == 2
    )  # the cancelled one, and one new


def test_keep_remote_leaves_them_running_and_a_resume_reattaches(
    tmp_path: Path, slow_api: LocalAPI
) -> None:
    results = tmp_path / "res"
    path = write(tmp_path / "c.yaml", slow_api.base_url, "keep")
    stderr, before = _interrupt(path, results, slow_api, "--keep-remote")
    assert "keep running" in stderr
    assert not any(i["cancelled"] for i in listed(slow_api, "keep "))
    second = load_run(sweep(path, results).run_dir)
    assert second.jobs["status"].to_list() == ["ok"] * 4
    after = counts(slow_api)
    assert after["invocations_created"] - before["invocations_created"] == 1
