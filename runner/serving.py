"""Serving an ASGI app from a child process: both sides of it, for the local API and the viewer.

The child (``serve``) runs uvicorn, prints one ready line once it accepts connections and exits
0 on SIGTERM / SIGINT, or by itself once the parent that started it is gone (so a parent killed
with kill -9 leaves no server behind). The parent (``spawn``, ``read_ready_line``, ``stop``)
starts such a child, waits for that line and stops it.

Imports nothing of the runner: the local API, which may import only the wire shapes, imports it
too. uvicorn is imported inside ``serve`` only (the CLI's parser imports the server modules).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

_PARENT_CHECK_SECS = 0.5
_READ_SLICE_SECS = 0.1


def url(host: str, port: int) -> str:
    """``http://host:port`` (an IPv6 host in brackets), without a trailing slash."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# ---------------------------------------------------------------------------- the child


def _exit_with_parent(server: Any, parent_pid: int) -> None:
    """Ask uvicorn to shut down once the parent process has gone (re-parented away)."""
    while not server.should_exit:
        if os.getppid() != parent_pid:
            server.should_exit = True
            return
        time.sleep(_PARENT_CHECK_SECS)


def serve(
    app: Any,
    *,
    host: str,
    port: int,
    ready_line: Callable[[str], str],
    parent_pid: int | None = None,
    on_server: Callable[[Any], None] | None = None,
    **options: Any,
) -> int:
    """Run ``app`` until SIGINT / SIGTERM (or the parent's exit); the exit code to return.

    Prints ``ready_line(url)`` (port 0: the port bound) once the server accepts connections.
    ``options`` go to ``uvicorn.Config`` over these defaults: no lifespan, no ``server`` header,
    and no proxy headers (the peer address stays the real one: the local API's faults find a
    request's connection by it). ``on_server`` sees the ``uvicorn.Server`` before it starts.
    """
    import uvicorn

    config = uvicorn.Config(
        app,
        **{
            "host": host,
            "port": port,
            "lifespan": "off",
            "server_header": False,
            "proxy_headers": False,
            **options,
        },
    )

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.should_exit or not self.servers:
                return
            bound = self.servers[0].sockets[0].getsockname()[1]
            print(ready_line(url(host, bound)), flush=True)
            if parent_pid is not None:
                threading.Thread(
                    target=_exit_with_parent, args=(self, parent_pid), daemon=True
                ).start()

    server = Server(config)
    if on_server is not None:
        on_server(server)

    # uvicorn re-raises the signal that stopped it once it has shut down; exit 0 then instead
    # of dying by SIGTERM or a KeyboardInterrupt traceback.
    def exit_cleanly(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, exit_cleanly)
    signal.signal(signal.SIGINT, exit_cleanly)
    try:
        server.run()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0 if server.started else 1


# ---------------------------------------------------------------------------- the parent


def spawn(
    command: Sequence[str], *, stderr: IO[bytes] | int, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start the child: stdout piped (for the ready line), unbuffered, no stdin."""
    return subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        env=dict(env if env is not None else os.environ, PYTHONUNBUFFERED="1"),
    )


def read_ready_line(
    process: subprocess.Popen[bytes], prefix: str, deadline: float
) -> tuple[str | None, str]:
    """(the child's first whole line starting with ``prefix``, or None if it exited or the
    ``time.monotonic()`` deadline passed first; everything it printed until then). Then keeps
    draining its stdout in the background, so it can never block on a full pipe."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    buffer = b""
    found: str | None = None
    while found is None and time.monotonic() < deadline:
        wait = min(_READ_SLICE_SECS, max(0.0, deadline - time.monotonic()))
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            if process.poll() is not None:
                break
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buffer += chunk
        *whole, _ = buffer.decode(errors="replace").split("\n")
        found = next((text for text in whole if text.startswith(prefix)), None)
    if found is not None:
        threading.Thread(target=_drain, args=(process.stdout,), daemon=True).start()
    return found, buffer.decode(errors="replace")


def _drain(stream: IO[bytes]) -> None:
    with contextlib.suppress(OSError, ValueError):
        while stream.read(65536):
            pass


def stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, wait, SIGKILL if it will not go; then close its stdout."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    if process.stdout is not None:
        process.stdout.close()
