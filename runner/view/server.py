"""``python -m runner view [RESULTS_DIR] [--host 127.0.0.1] [--port N]``: serve the viewer.

Binds 127.0.0.1 unless told otherwise (the results hold conversations: anyone who can reach
the port can read them). Prints one ready line, ``viewer: http://HOST:PORT/``, once it accepts
connections (``--port 0`` picks a free port). ``start_viewer`` runs it in a subprocess for the
tests and the benchmark (the plumbing shared with the local API is ``runner.serving``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from runner import serving

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8710
READY_PREFIX = "viewer: "


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results_dir",
        nargs="?",
        type=Path,
        default=Path("results"),
        help="the results directory (default: results)",
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="interface to bind (default 127.0.0.1: this machine only)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any)"
    )
    parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)


def main(args: argparse.Namespace) -> int:
    from runner.view.app import allowed_hosts_for, create_app

    root: Path = args.results_dir
    if not root.is_dir():
        print(f"error: no results directory at {root}", file=sys.stderr)
        return 2
    allowed = allowed_hosts_for(args.host)
    if allowed is None:
        print(
            f"warning: serving {root} on {args.host}: anyone who can reach this port can read"
            " every conversation in it",
            file=sys.stderr,
        )
    app = create_app(root, allowed_hosts=allowed)
    return serving.serve(
        app,
        host=args.host,
        port=args.port,
        ready_line=lambda url: f"{READY_PREFIX}{url}/  ({root}, read-only)",
        parent_pid=args.parent_pid,
        access_log=False,
        log_level="warning",
    )


# ------------------------------------------------------------------------ subprocess handle


@dataclass
class Viewer:
    """A viewer running in a subprocess (tests, benchmark)."""

    base_url: str
    process: subprocess.Popen[bytes]
    stderr: IO[bytes] | None = None

    _stderr_seen: str = ""

    def stderr_text(self) -> str:
        """What the viewer wrote to stderr (warnings, tracebacks), also after ``stop``."""
        if self.stderr is None or self.stderr.closed:
            return self._stderr_seen
        self.stderr.seek(0)
        self._stderr_seen = self.stderr.read().decode(errors="replace")
        return self._stderr_seen

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        serving.stop(self.process, timeout=10)
        if self.stderr is not None and not self.stderr.closed:
            self.stderr_text()
            self.stderr.close()


def start_viewer(
    results_dir: Path, *, extra_args: Sequence[str] = (), timeout: float = 30.0
) -> Viewer:
    """Spawn ``python -m runner view RESULTS_DIR --port 0`` and wait for its ready line."""
    command = [sys.executable, "-m", "runner", "view", str(results_dir), "--port", "0"]
    command += ["--parent-pid", str(os.getpid()), *extra_args]
    stderr = tempfile.TemporaryFile()
    process = serving.spawn(command, stderr=stderr)
    line, output = serving.read_ready_line(process, READY_PREFIX, time.monotonic() + timeout)
    match = re.search(r"(http://\S+/)", line or "")
    if match is None:
        failed = Viewer("", process, stderr)
        failed.stop()
        tail = failed.stderr_text()[-2000:]
        raise RuntimeError(f"viewer did not start within {timeout:g}s: {output[-1000:]}\n{tail}")
    return Viewer(match.group(1).rstrip("/"), process, stderr)


@contextlib.contextmanager
def viewer_process(results_dir: Path, **kwargs: Any) -> Iterator[Viewer]:
    viewer = start_viewer(results_dir, **kwargs)
    try:
        yield viewer
    finally:
        viewer.stop()
