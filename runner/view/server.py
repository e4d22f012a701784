"""``python -m runner view [RESULTS_DIR] [--host 127.0.0.1] [--port N]``: serve the viewer.

Binds 127.0.0.1 unless told otherwise (the results hold conversations: anyone who can reach
the port can read them). Prints one ready line, ``viewer: http://HOST:PORT/``, once it accepts
connections (``--port 0`` picks a free port). ``start_viewer`` runs it in a subprocess for the
tests and the benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _exit_with_parent(server: Any, parent_pid: int) -> None:
    while not server.should_exit:
        if os.getppid() != parent_pid:
            server.should_exit = True
            return
        time.sleep(0.5)


def main(args: argparse.Namespace) -> int:
    import uvicorn

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
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
    )

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.should_exit or not self.servers:
                return
            port = self.servers[0].sockets[0].getsockname()[1]
            print(f"{READY_PREFIX}{_url(args.host, port)}  ({root}, read-only)", flush=True)
            if args.parent_pid is not None:
                threading.Thread(
                    target=_exit_with_parent, args=(self, args.parent_pid), daemon=True
                ).start()

    server = Server(config)

    def exit_cleanly(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, exit_cleanly)
    signal.signal(signal.SIGINT, exit_cleanly)
    try:
        server.run()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0 if server.started else 1


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
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self.stderr is not None and not self.stderr.closed:
            self.stderr_text()
            self.stderr.close()


def _drain(stream: IO[bytes]) -> None:
    with contextlib.suppress(OSError, ValueError):
        while stream.read(65536):
            pass


def start_viewer(
    results_dir: Path, *, extra_args: Sequence[str] = (), timeout: float = 30.0
) -> Viewer:
    """Spawn ``python -m runner view RESULTS_DIR --port 0`` and wait for its ready line."""
    command = [sys.executable, "-m", "runner", "view", str(results_dir), "--port", "0"]
    command += ["--parent-pid", str(os.getpid()), *extra_args]
    stderr = tempfile.TemporaryFile()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    deadline = time.monotonic() + timeout
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            line = raw.decode(errors="replace")
            lines.append(line)
            if line.startswith(READY_PREFIX):
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(max(0.0, deadline - time.monotonic()))
    match = re.search(r"(http://\S+/)", lines[-1]) if lines else None
    if match is None or not lines[-1].startswith(READY_PREFIX):
        Viewer("", process, stderr).stop()
        stderr.seek(0)
        tail = stderr.read().decode(errors="replace")[-2000:]
        stderr.close()
        raise RuntimeError(
            f"viewer did not start within {timeout:g}s: {''.join(lines)[-1000:]}\n{tail}"
        )
    threading.Thread(target=_drain, args=(process.stdout,), daemon=True).start()
    return Viewer(match.group(1).rstrip("/"), process, stderr)


@contextlib.contextmanager
def viewer_process(results_dir: Path, **kwargs: Any) -> Iterator[Viewer]:
    viewer = start_viewer(results_dir, **kwargs)
    try:
        yield viewer
    finally:
        viewer.stop()
