"""What the README promises of the command line, through the command line (a subprocess):
``--no-retry-errors`` leaves a run's errors alone on resume, ``RUNNER_DEBUG=1`` shows the
traceback of an unexpected error (one line without it), ``view --host`` warns for an address
beyond the loopback, and ``merge`` exits 2 on bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from runner.localapi.server import local_api_process
from runner.store import load_run

ROOT = Path(__file__).resolve().parents[1]
UNASSIGNED = "192.0.2.1"
"""TEST-NET-1 (RFC 5737): an address beyond the loopback that no interface here has, so a
server told to bind it fails at once and nothing is ever served."""


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def write_config(path: Path, base_url: str, jobs: int = 10, **run: Any) -> Path:
    config = {
        "target": {"base_url": base_url},
        "run": {"name": "documented", "concurrency": 2, "new_turns_limit": 4, **run},
        "agents": [{"id": "agent_support"}],
        "scenarios": [{"id": f"s{i}", "prompt": f"Customer {i}."} for i in range(jobs)],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_no_retry_errors_leaves_the_errors_of_a_resumed_run_alone(tmp_path: Path) -> None:
    server = ["--time-scale", "0.001", "--seed", "2", "--fault-http-503", "0.4"]
    with local_api_process(server) as api:
        config = write_config(tmp_path / "c.yaml", api.base_url, retry={"max_attempts": 1})
        results = ["--results", str(tmp_path / "r"), "--no-progress"]
        cli("run", str(config), *results)
        jobs = load_run(tmp_path / "r" / "documented").jobs
        errors = int((jobs["status"] == "error").sum())
        assert 0 < errors < jobs.height
        sent = api.stats()["simulate_requests"]
        again = cli("run", str(config), *results, "--no-retry-errors")
        assert "completed: nothing to run" in again.stderr, again.stdout + again.stderr
        assert api.stats()["simulate_requests"] == sent  # nothing sent again
        cli("run", str(config), *results)  # the default: the errors are run again
        assert api.stats()["simulate_requests"] == sent + errors


BOOM = """
import sys
import runner.sweep
from runner.cli import main

def boom(*args, **kwargs):
    raise RuntimeError("boom")

runner.sweep.run = boom
sys.exit(main(sys.argv[1:]))
"""
"""The CLI with a run that fails in a way nothing expects."""


def test_runner_debug_shows_the_traceback_of_an_unexpected_error(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", "local")
    command = [sys.executable, "-c", BOOM, "run", str(config), "--results", str(tmp_path)]
    plain = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr, plain.stderr
    (line,) = plain.stderr.strip().splitlines()
    assert line.startswith("error: the run stopped on an unexpected RuntimeError: boom"), line
    assert line.endswith("please report this with the traceback that RUNNER_DEBUG=1 shows")
    debug = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RUNNER_DEBUG": "1"},
    )
    assert debug.returncode == 1, debug.stderr
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == "RuntimeError: boom"


def test_the_viewer_warns_when_it_serves_beyond_the_loopback(tmp_path: Path) -> None:
    done = cli("view", str(tmp_path), "--host", UNASSIGNED, "--port", "0")
    first = done.stderr.splitlines()[0]
    assert first == (
        f"warning: serving {tmp_path} on {UNASSIGNED}: anyone who can reach this port can read"
        " every conversation in it"
    )
    assert done.returncode != 0  # and the address cannot be bound here


def test_merge_exits_2_on_bad_input(tmp_path: Path) -> None:
    missing = cli("merge", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: no run directory at {tmp_path / 'nope'}"
    not_a_run = cli("merge", str(tmp_path))  # a directory, but no run in it
    assert not_a_run.returncode == 2, not_a_run.stderr
    assert not_a_run.stderr.startswith("error: "), not_a_run.stderr
