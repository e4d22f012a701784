"""Bad input, full disks and secrets: clear errors, nothing lost, the key never leaks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from runner import cli
from runner.localapi.server import local_api_process
from runner.store import done_job_keys, load_run

ROOT = Path(__file__).resolve().parents[1]
BAD = sorted((ROOT / "tests" / "configs" / "bad").glob("*.yaml"))


def test_the_broken_config_corpus_is_large() -> None:
    assert len(BAD) >= 30


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_every_broken_config_exits_2_with_one_line_and_sends_nothing(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import runner.sweep

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("a broken config reached the runner")

    monkeypatch.setattr(runner.sweep, "run", must_not_run)
    code = cli.main(["run", str(path.relative_to(ROOT))])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    match = re.fullmatch(r"# expect: (.+?) :: ?(.*)", path.read_text().splitlines()[0])
    assert match is not None
    field, problem = match.groups()
    assert lines[0].startswith("error: tests/configs/bad/")
    assert field in lines[0] and problem in lines[0]


def write_config(tmp_path: Path, base_url: str, jobs: int = 12) -> Path:
    config = {
        "target": {"base_url": base_url, "api_key_env": "SECRET_TEST_KEY"},
        "run": {
            "name": "r",
            "concurrency": 3,
            "new_turns_limit": 6,
            "retry": {"max_attempts": 3, "backoff_base": 0.01, "backoff_cap": 0.02, "jitter": 0},
        },
        "agents": [{"id": "agent_support"}],
        "scenarios": [
            {"id": f"s{i}", "first_message": "Where is my order?", "prompt": f"Customer {i}."}
            for i in range(jobs)
        ],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


FULL_DISK = textwrap.dedent(
    """
    import errno, sys
    import runner.engine as engine
    import runner.store as store
    engine.BATCH_JOBS = 8  # flushes mid-run (the default batch holds the whole run)
    write = store._write_parquet_atomic
    def fill_up(frame, path):
        if "-000001" not in path.name:  # the first flush goes through, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        write(frame, path)
    store._write_parquet_atomic = fill_up
    from runner.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_a_full_disk_stops_the_run_clearly_and_keeps_what_was_flushed(tmp_path: Path) -> None:
    with local_api_process(["--time-scale", "0.05"]) as api:
        config = write_config(tmp_path, api.base_url, jobs=40)
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                FULL_DISK,
                "run",
                str(config),
                "--results",
                str(tmp_path / "res"),
                "--no-progress",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        sent = api.stats()["simulate_requests"]
    assert done.returncode == 1, done.stderr
    assert "No space left on device" in done.stderr and "to resume" in done.stderr
    assert "Traceback" not in done.stderr
    kept = done_job_keys(tmp_path / "res" / "r")
    assert 0 < len(kept) < 40  # the first flush survived, and the run stopped early
    assert sent < 40
    run = load_run(tmp_path / "res" / "r")
    assert run.jobs.height == len(kept)


def test_the_api_key_never_appears_in_anything_the_run_writes_or_prints(tmp_path: Path) -> None:
    key = "sk_SECRET_ab12cd34ef56gh78ij90"
    env = {**os.environ, "SECRET_TEST_KEY": key}
    outputs = []
    # a run that succeeds (with faults and retries), then one whose key is rejected; seed 3
    # puts six faults among the first twelve requests, so retries are certain, not likely
    args = ["--time-scale", "0.002", "--seed", "3"]
    args += ["--fault-http-503", "0.2", "--fault-disconnect", "0.2"]
    with local_api_process(args, api_key=key) as api:
        config = write_config(tmp_path, api.base_url)
        for name, run_env in (("r", env), ("r2", {**env, "SECRET_TEST_KEY": key + "_WRONG"})):
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "runner",
                    "run",
                    str(config),
                    "--results",
                    str(tmp_path / "res"),
                    "--no-progress",
                    "--name",
                    name,
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
                env=run_env,
            )
            outputs.append(done.stdout + done.stderr)
        server_log = api.stderr_tail(10**7)
    # the rejected key stops the second run at pre-flight: no run directory is left
    assert not (tmp_path / "res" / "r2").exists()
    for name in ("r",):  # the report too
        done = subprocess.run(
            [sys.executable, "-m", "runner", "report", str(tmp_path / "res" / name)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout + done.stderr)
    assert (tmp_path / "res" / "r" / "report.html").exists()
    assert "invalid_api_key" in outputs[1]  # the second run really failed on its key
    run = load_run(tmp_path / "res" / "r")
    assert run.attempts.filter(run.attempts["status"] == "error").height > 0
    written = b"".join(p.read_bytes() for p in (tmp_path / "res").rglob("*") if p.is_file())
    assert written  # the run wrote tables, manifest, resolved config
    for text in (*outputs, server_log):
        assert key not in text and "ab12cd34ef56" not in text
    assert key.encode() not in written and b"ab12cd34ef56" not in written
