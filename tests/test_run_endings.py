"""Every way a run ends prints one line saying what happened and what to do, with the
documented exit code, and never a traceback: through the CLI as a subprocess, for every target
form (``local``, a URL on loopback, a remote URL), with and without the progress display, and
for every backend.

The remote URL is ``http://api.elevenlabs.invalid``, reached through an HTTP proxy on
127.0.0.1 (the local API, which takes absolute-form requests): the runner treats it as remote
(a key is required) while every byte stays on loopback.
"""

from __future__ import annotations

import os
import pty
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from runner.localapi.server import LocalAPI, local_api_process
from runner.store import load_run

ROOT = Path(__file__).resolve().parents[1]
REMOTE = "http://api.elevenlabs.invalid"
KEY_ENV = "ENDINGS_TEST_KEY"
RESUME = r"python -m runner run \S+config\.yaml"
GRACE = 90
"""``shutdown_grace`` of the signal cases: far longer than any of them may take."""
STOP_NOW_SECS = 10.0
"""How soon after a second signal the run has ended (the grace and a stalled simulation
are many times longer)."""


@dataclass(frozen=True)
class Case:
    server: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    run: dict[str, Any] = field(default_factory=dict)
    key: str = "the-key"
    jobs: int = 4
    signals: tuple[int, ...] = ()
    file_limit: int | None = None
    unwritable: bool = False
    time_scale: str = "0.01"
    settle: float = 0.0
    """Seconds between the first finished job and the first signal."""
    code: int = 0
    line: str = ""


CASES = {
    "completed": Case(code=0, line=r"^completed: 4 job\(s\) ok, 0 in error; results in \S+"),
    "key rejected": Case(
        server=("--api-key", "right-key"),
        key="wrong-key",
        code=2,
        line=r"^error: pre-flight: 1 problem\(s\) above; nothing was sent that costs money\. "
        r"Fix them and run the same command: " + RESUME,
    ),
    "key rejected mid-run": Case(
        server=("--api-key", "right-key"),
        args=("--no-preflight",),
        key="wrong-key",
        code=1,
        line=r"^error: run aborted: HTTP 401 invalid_api_key: .*the API key in \$"
        + KEY_ENV
        + r" was rejected.*"
        + RESUME,
    ),
    "endpoint gone": Case(
        server=("--simulate-endpoints", "gone"),
        args=("--no-preflight",),
        code=1,
        line=r"^error: run aborted: .*simulate-conversation.*set target\.backend: agent-testing",
    ),
    "endpoint gone, pre-flight": Case(
        server=("--simulate-endpoints", "gone"),
        code=2,
        line=r"^error: pre-flight: 1 problem\(s\) above; nothing was sent that costs money",
    ),
    "circuit breaker": Case(
        server=("--fault-http-503", "1"),
        run={"circuit_breaker": 3, "retry": {"max_attempts": 2, "backoff_base": 0.01}},
        jobs=8,
        code=1,
        line=r"^error: run aborted: circuit breaker: the last 3 attempts all failed with "
        r"server_error.*check that .+ works.*" + RESUME,
    ),
    "results not writable": Case(
        unwritable=True, code=2, line=r"^error: cannot write results to \S+: Not a directory"
    ),
    "disk full": Case(
        jobs=40,
        file_limit=48_000,
        code=1,
        line=r"^error: cannot write results.*File too large; stopped the run.*free space and "
        r"run the same command to resume",
    ),
    "budget reached": Case(
        jobs=40,
        run={"budget": {"usd": 0.003}},
        code=3,
        line=r"^error: budget reached: spent \$\S+ of \$\S+ \(\d+ job\(s\) not run\)\. To "
        r"resume with a larger budget: " + RESUME + r".* --budget-usd \S+$",
    ),
    # a long grace: a single signal lets every simulation in flight finish (about a second
    # each), a second one stops those in flight at once (stalled for 100 s each, by then)
    "ctrl-c": Case(
        jobs=40,
        signals=(signal.SIGINT,),
        run={"shutdown_grace": GRACE},
        time_scale="0.3",
        code=130,
        line=r"^error: interrupted: \d+ job\(s\) finished this session are saved in \S+\. "
        r"To resume: " + RESUME,
    ),
    "sigterm": Case(
        jobs=40,
        signals=(signal.SIGTERM,),
        run={"shutdown_grace": GRACE},
        time_scale="0.3",
        code=130,
        line=r"^error: interrupted: \d+ job\(s\) finished .* To resume: " + RESUME,
    ),
    "second ctrl-c": Case(
        # seed 10: the first two simulations finish, the next two stall (then both slots)
        server=("--seed", "10", "--fault-stall", "0.5", "--stall-secs", "100"),
        jobs=40,
        signals=(signal.SIGINT, signal.SIGINT),
        run={"shutdown_grace": GRACE},
        settle=1.5,
        code=130,
        line=r"^error: interrupted: \d+ job\(s\) finished .* To resume: " + RESUME,
    ),
}


@contextmanager
def target(
    form: str, case: Case
) -> Iterator[tuple[dict[str, Any], dict[str, str], LocalAPI | None]]:
    """The config's ``target`` section, the environment for one target form, and the server
    (none for ``local``: the runner starts its own)."""
    time_scale = case.time_scale
    server = ["--time-scale", time_scale, "--seed", "3", *case.server]
    if form == "local":
        yield (
            {"base_url": "local", "local": {"args": server[4:], "time_scale": float(time_scale)}},
            {},
            None,
        )
        return
    with local_api_process(server) as api:
        if form == "loopback":
            yield {"base_url": api.base_url}, {}, api
        else:
            env = {"HTTP_PROXY": api.base_url, "http_proxy": api.base_url, "NO_PROXY": ""}
            yield {"base_url": REMOTE}, env, api


@dataclass
class Ending:
    code: int
    output: str
    """Everything printed (stdout and stderr)."""
    after_last_signal: float = 0.0
    """Seconds from the last signal to the exit."""
    sent: int | None = None
    """Simulations the server was asked for (``None`` for ``local``)."""


def write_config(tmp_path: Path, case: Case, target_section: dict[str, Any], backend: str) -> Path:
    scenarios = [{"id": f"s{i}", "prompt": f"You are customer {i}."} for i in range(case.jobs)]
    config = {
        "target": {
            **target_section,
            "backend": backend,
            "api_key_env": KEY_ENV,
            "agent_testing": {"poll_interval": 0.05, "poll_interval_max": 0.2},
        },
        "run": {
            "name": "endings",
            "concurrency": 2,
            "new_turns_limit": 4,
            "shutdown_grace": 0.5,
            **case.run,
        },
        "agents": [{"id": "agent_support"}],
        "scenarios": scenarios,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_cli(
    tmp_path: Path, case: Case, form: str, progress: bool, backend: str = "stream"
) -> Ending:
    results = tmp_path / "results"
    if case.unwritable:
        results.parent.mkdir(exist_ok=True)
        (tmp_path / "a-file").write_text("x")
        results = tmp_path / "a-file" / "results"
    with target(form, case) as (target_section, env, api):
        config = write_config(tmp_path, case, target_section, backend)
        command = [sys.executable, "-m", "runner", "run", str(config), "--results", str(results)]
        if not progress:
            command.append("--no-progress")
        command += case.args
        limit = case.file_limit
        preexec: Callable[[], None] | None = None
        if limit is not None:

            def preexec() -> None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        full_env = {**os.environ, **env, KEY_ENV: case.key, "PYTHONUNBUFFERED": "1"}
        # with the progress display: stderr is a terminal, so rich draws its live display
        master, slave = pty.openpty() if progress else (None, None)
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=slave if slave is not None else subprocess.PIPE,
            preexec_fn=preexec,
        )
        if slave is not None:
            os.close(slave)
        signalled = 0.0
        try:
            if case.signals:
                wait_until_running(results / "endings")
                time.sleep(case.settle)
                for i, signum in enumerate(case.signals):
                    time.sleep(0.3 if i else 0)
                    process.send_signal(signum)
                    signalled = time.monotonic()
            out, err = communicate(process, master)
            ended = time.monotonic()
        finally:
            if process.poll() is None:
                process.kill()
            if master is not None:
                os.close(master)
        counted = api is not None and backend != "agent-testing"
        sent = int(api.stats()["simulate_requests"]) if counted else None
    return Ending(process.returncode, out + err, ended - signalled, sent)


def wait_until_running(run_dir: Path) -> None:
    deadline = time.monotonic() + 30
    while not (run_dir / "journal").exists():  # the first job has finished
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.05)


def communicate(process: subprocess.Popen[bytes], master: int | None) -> tuple[str, str]:
    if master is None:
        out, err = process.communicate(timeout=120)
        return out.decode(), err.decode()
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert process.stdout is not None
    with process.stdout:
        out = process.stdout.read()
    process.wait(120)
    return out.decode(), b"".join(chunks).decode(errors="replace")


def last_line(text: str) -> str:
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "\n")
    return [line for line in plain.splitlines() if line.strip()][-1].strip()


def check(ending: Ending, case: Case, run_dir: Path | None = None) -> None:
    code, output = ending.code, ending.output
    assert "Traceback" not in output and "ExceptionGroup" not in output, output[-3000:]
    assert code == case.code, output[-3000:]
    assert re.search(case.line, last_line(output)), last_line(output)
    assert "the-key" not in output and "wrong-key" not in output  # a key is never printed
    if case.signals and run_dir is not None:
        check_interrupted(ending, case, run_dir)


def check_interrupted(ending: Ending, case: Case, run_dir: Path) -> None:
    """What each ending of a signalled run keeps: the jobs it names are stored, ok. One signal:
    every simulation started was let finish (nothing cut short), long after the signal if need
    be. A second: the run stops at once, not waiting for the grace nor the stalled ones."""
    if len(case.signals) == 1:
        assert "stopping now" not in ending.output
    else:
        assert "stopping now" in ending.output, ending.output[-3000:]
        assert ending.after_last_signal < STOP_NOW_SECS, ending.after_last_signal
    finished = int(re.search(r"interrupted: (\d+) job", last_line(ending.output))[1])  # type: ignore[index]
    jobs = load_run(run_dir).jobs
    assert isinstance(jobs, pl.DataFrame)
    # the jobs the line names are stored, all ok: none was recorded as cut short
    assert finished >= 1 and jobs.height == finished, jobs.group_by("status").len()
    assert (jobs["status"] == "ok").all(), jobs.group_by("status").len()
    if len(case.signals) == 1:
        # one job had finished at the signal, two were in flight (40 jobs, 2 at a time): both
        # are let finish
        assert finished >= 2, ending.output[-3000:]
    if ending.sent is not None and len(case.signals) == 1:
        assert ending.sent == finished  # every simulation sent was finished and saved
    elif ending.sent is not None:
        assert ending.sent > finished  # the ones stalled in flight were not waited for


FORMS = ("local", "loopback", "remote")


def pairwise() -> list[tuple[str, str, bool]]:
    """Every ending on every target form, with and without the progress display, as a
    pairwise design: each (ending, form) pair runs once, its display chosen so that each ending
    runs both with and without it and each (form, display) pair occurs (half the runs of the
    full product; an ending's last line depends on its form and on its display, not on the two
    together beyond what the (form, display) pairs cover)."""
    return [
        (name, form, (i + j) % 2 == 1)
        for i, name in enumerate(CASES)
        for j, form in enumerate(FORMS)
    ]


def test_the_design_covers_every_pair() -> None:
    runs = pairwise()
    assert {(n, f) for n, f, _ in runs} == {(n, f) for n in CASES for f in FORMS}
    assert {(n, p) for n, _, p in runs} == {(n, p) for n in CASES for p in (False, True)}
    assert {(f, p) for _, f, p in runs} == {(f, p) for f in FORMS for p in (False, True)}
    assert len(runs) == len(CASES) * len(FORMS)


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("name", "form", "progress"),
    pairwise(),
    ids=[f"{n}-{f}-{'progress' if p else 'plain'}" for n, f, p in pairwise()],
)
def test_every_ending_is_one_line_with_its_exit_code(
    tmp_path: Path, name: str, form: str, progress: bool
) -> None:
    case = CASES[name]
    check(run_cli(tmp_path, case, form, progress), case, tmp_path / "results" / "endings")


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("backend", ["buffered", "agent-testing"])
@pytest.mark.parametrize("name", ["completed", "key rejected", "key rejected mid-run", "ctrl-c"])
def test_every_backend_ends_the_same_way(tmp_path: Path, name: str, backend: str) -> None:
    case = CASES[name]
    check(
        run_cli(tmp_path, case, "loopback", False, backend), case, tmp_path / "results" / "endings"
    )


def test_a_missing_key_for_a_remote_target_is_one_line_and_nothing_is_sent(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, Case(), {"base_url": REMOTE}, "stream")
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "runner", "run", str(config), "--results", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert last_line(done.stderr).startswith(f"error: environment variable {KEY_ENV} is not set")
    assert not (tmp_path / "endings").exists()
