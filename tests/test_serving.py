"""The child-process plumbing shared by the local API and the viewer (``runner.serving``),
against real child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner import serving


def child(code: str) -> subprocess.Popen[bytes]:
    return serving.spawn([sys.executable, "-c", code], stderr=subprocess.DEVNULL)


def test_the_ready_line_is_a_whole_line_and_what_came_before_is_kept() -> None:
    """A line cut in two by the pipe is read whole: a port half-written is never taken."""
    process = child(
        "import sys, time\n"
        "print('starting', flush=True)\n"
        "sys.stdout.write('ready: http://127.0.0.1:12'); sys.stdout.flush()\n"
        "time.sleep(0.3)\n"
        "print('345/', flush=True)\n"
        "time.sleep(30)\n"
    )
    try:
        line, output = serving.read_ready_line(process, "ready: ", time.monotonic() + 20)
        assert line == "ready: http://127.0.0.1:12345/"
        assert output.startswith("starting\n")
    finally:
        serving.stop(process, timeout=5)
    assert process.returncode is not None
    assert process.stdout is not None and process.stdout.closed


def test_a_child_that_exits_without_the_line_is_not_waited_for() -> None:
    process = child("print('error: no results directory', flush=True)")
    started = time.monotonic()
    line, output = serving.read_ready_line(process, "ready: ", started + 20)
    assert line is None
    assert output == "error: no results directory\n"
    assert time.monotonic() - started < 10
    serving.stop(process, timeout=5)


def test_a_child_that_will_not_go_is_killed() -> None:
    process = child(
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    assert serving.read_ready_line(process, "up", time.monotonic() + 20)[0] == "up"
    serving.stop(process, timeout=0.5)
    assert process.returncode == -9


def test_urls_bracket_an_ipv6_host() -> None:
    assert serving.url("127.0.0.1", 80) == "http://127.0.0.1:80"
    assert serving.url("::1", 8710) == "http://[::1]:8710"


def gone(pid: int) -> bool:
    """Exited (a zombie counts: whoever adopted it may not reap it at once)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("server", ["local API", "viewer"])
def test_a_server_exits_when_the_process_that_started_it_is_killed(
    server: str, tmp_path: Path
) -> None:
    """kill -9 of the parent (which cannot stop its child) leaves no server behind."""
    start = (
        "from runner.localapi.server import start_local_api as s; c = s()"
        if server == "local API"
        else f"from runner.view.server import start_viewer as s; c = s({str(tmp_path)!r})"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", f"{start}; print(c.process.pid, flush=True); input()"],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
    )
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert not gone(child_pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 20
        while not gone(child_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gone(child_pid), f"the {server} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        for stream in (parent.stdout, parent.stdin):
            if stream is not None:
                stream.close()
