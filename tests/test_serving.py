"""The child-process plumbing shared by the local API and the viewer (``runner.serving``),
against real child processes."""

from __future__ import annotations

import subprocess
import sys
import time

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
