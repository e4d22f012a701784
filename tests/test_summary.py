"""The end of a run, through the command line against the bundled local API (127.0.0.1): the
example ends with a short summary (at most ~25 lines before its last), ``--quiet`` prints only
the last line, and a run with nothing left to do says so in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "configs" / "example.yaml"
MAX_LINES = 25


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200"},
    )


def lines_of(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


@pytest.mark.timeout(300)
def test_the_example_ends_with_a_short_summary_quiet_and_nothing_to_run(tmp_path: Path) -> None:
    results = ["--results", str(tmp_path / "r"), "--no-progress"]
    done = cli("run", str(EXAMPLE), *results)
    assert done.returncode == 0, done.stderr
    printed = lines_of(done)
    assert printed[-1].startswith("completed: 63 job(s) ok"), printed[-1]
    assert len(printed) - 1 <= MAX_LINES, "\n".join(printed)
    text = "\n".join(printed)
    for expected in (
        "run totals: 63 job(s)",
        "pass rate, all criteria pooled:",
        "lowest pass rates (5 of ",
        "errors: none",
        "spend: $",
        f"full tables: python -m runner report {tmp_path / 'r' / 'example'}",
    ):
        assert expected in text, text
    # the full tables are report's, not the run's
    assert "pass@2" not in text and "latency of ok jobs" not in text

    again = cli("run", str(EXAMPLE), *results)
    assert again.returncode == 0, again.stderr
    assert lines_of(again) == [
        f"completed: nothing to run, all 63 job(s) were done before; results in "
        f"{tmp_path / 'r' / 'example'} (python -m runner report {tmp_path / 'r' / 'example'})"
    ]

    quiet = cli("run", str(EXAMPLE), *results, "--fresh", "--limit", "6", "--quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == ""
    only = lines_of(quiet)
    assert len(only) == 1 and only[0].startswith("completed: 6 job(s) ok"), only
