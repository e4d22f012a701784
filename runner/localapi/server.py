"""Serving the local API: CLI options, running uvicorn, and starting it as a subprocess.

``python -m runner serve`` calls ``add_arguments`` and ``main``; the runner and the tests call
``start_local_api`` (or ``local_api_process``), which spawns that command on a free loopback
port and waits until it answers. A real server in its own process, not an in-process mock, so
what the runner meets is a socket with real timing, framing and connection failures.
The uvicorn and child-process plumbing, shared with the viewer, is ``runner.serving``.

This module is imported by the CLI's parser, so heavy imports (FastAPI, uvicorn) happen inside
``main`` only.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from runner import serving

API_KEY_ENV = "LOCALAPI_API_KEY"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
READY_LINE_PREFIX = "local API listening on "
GRACEFUL_SHUTDOWN_SECS = 2.0
"""Streams still open at shutdown get this long before they are cut."""

FAULT_OPTIONS: tuple[tuple[str, str], ...] = (
    ("too_many_concurrent_requests", "429 too_many_concurrent_requests"),
    ("system_busy", "429 system_busy"),
    ("http_500", "500 internal error"),
    ("http_502", "502 bad gateway"),
    ("http_503", "503 service unavailable"),
    ("reset", "connection reset before any response byte"),
    ("disconnect", "connection closed mid-stream, without the analysis frame"),
    ("malformed", "one undecodable frame line (or a truncated buffered body)"),
    ("stall", "no bytes for --stall-secs somewhere in the reply"),
)
"""(FaultSettings field, description): one ``--fault-<name>`` rate option each."""

_TIMING_HELP: dict[str, str] = {
    "agent_message_secs": "mean simulated seconds before an agent message",
    "user_message_secs": "mean simulated seconds before a user message",
    "tool_secs": "mean simulated seconds a tool call takes",
    "analysis_secs": "mean simulated seconds to produce the analysis",
    "jitter": "sigma of the lognormal jitter applied to every delay",
}


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a rate in [0, 1], got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _timing_fields() -> list[dataclasses.Field[Any]]:
    from runner.localapi.conversation import TimingModel

    return list(dataclasses.fields(TimingModel))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` options (every fault rate defaults to 0: a clean server)."""
    parser.add_argument("--host", default=DEFAULT_HOST, help="interface to bind (loopback)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port to bind; 0 picks a free one"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible replies")
    parser.add_argument(
        "--time-scale",
        type=_non_negative,
        default=1.0,
        help="multiplies every simulated delay (0: instant, 0.01: 100x faster)",
    )
    parser.add_argument("--agents", type=Path, default=None, help="agents YAML file")
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"require this xi-api-key (prefer the {API_KEY_ENV} environment variable)",
    )
    parser.add_argument(
        "--max-concurrency",
        type=_positive_int,
        default=None,
        help="simulations in flight beyond this get 429 too_many_concurrent_requests",
    )
    timing = parser.add_argument_group("timing (simulated seconds, before --time-scale)")
    for f in _timing_fields():
        timing.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f"timing_{f.name}",
            type=_non_negative,
            default=None,
            help=f"{_TIMING_HELP.get(f.name, f.name)} (default {f.default})",
        )
    faults = parser.add_argument_group("fault injection (rates per simulate request)")
    for name, what in FAULT_OPTIONS:
        faults.add_argument(
            "--fault-" + name.replace("_", "-"),
            dest=f"fault_{name}",
            type=_rate,
            default=0.0,
            metavar="RATE",
            help=what,
        )
    faults.add_argument(
        "--stall-secs",
        type=_non_negative,
        default=30.0,
        help="length of a stall in real seconds (not scaled; default 30)",
    )
    faults.add_argument(
        "--retry-after",
        type=_non_negative,
        default=None,
        metavar="SECS",
        help="send Retry-After on 429s (off by default: the real API does not document it)",
    )
    vendor = parser.add_argument_group("the vendor's own errors (off by default; /_local/truth)")
    vendor.add_argument(
        "--judge-noise",
        type=_rate,
        default=0.0,
        metavar="P",
        help="the judge flips each success/failure verdict with probability P (recorded)",
    )
    vendor.add_argument(
        "--user-drift",
        type=_rate,
        default=0.0,
        metavar="P",
        help="per conversation, the simulated user abandons its goal mid-call with probability P",
    )
    parser.add_argument(
        "--lose-run-replies",
        type=int,
        default=0,
        metavar="N",
        help="the first N run-tests calls start their invocation, then drop the connection "
        "instead of replying (a reply lost in transit)",
    )
    parser.add_argument(
        "--hold-request",
        type=_positive_int,
        default=None,
        metavar="N",
        help="the N-th simulate request gets no reply until its client leaves and takes no "
        "draw (a test kills the client there; a resumed client gets the same conversations)",
    )
    parser.add_argument(
        "--simulate-endpoints",
        choices=["on", "off", "gone"],
        default="on",
        help="off: both simulate-conversation endpoints answer 404, gone: 410, in the vendor's "
        "error shape (as if the vendor removed them); on (default): they simulate",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
    )
    parser.add_argument(
        "--access-log", action="store_true", help="log every request (off: it costs throughput)"
    )
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="exit when this process is gone (the runner passes its pid, so a runner killed "
        "with kill -9 leaves no server behind)",
    )


def settings_from_args(args: argparse.Namespace) -> Any:
    """``ServerSettings`` from parsed options (the key from the option or the environment)."""
    from runner.localapi.app import ServerSettings
    from runner.localapi.conversation import TimingModel
    from runner.localapi.faults import FaultSettings

    timing_overrides = {
        f.name: getattr(args, f"timing_{f.name}")
        for f in _timing_fields()
        if getattr(args, f"timing_{f.name}", None) is not None
    }
    faults = FaultSettings(
        **{name: getattr(args, f"fault_{name}") for name, _ in FAULT_OPTIONS},
        stall_secs=args.stall_secs,
    )
    return ServerSettings(
        seed=args.seed,
        time_scale=args.time_scale,
        agents_path=args.agents,
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        max_concurrency=args.max_concurrency,
        timing=TimingModel(**timing_overrides),
        faults=faults,
        retry_after=args.retry_after,
        simulate_endpoints=args.simulate_endpoints,
        lose_run_replies=args.lose_run_replies,
        hold_request=args.hold_request,
        judge_noise=args.judge_noise,
        user_drift=args.user_drift,
    )


def _raise_fd_limit() -> None:
    """Lift the soft open-files limit to the hard one: a thousand streams need the sockets."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, ValueError, OSError):
        pass


def main(args: argparse.Namespace) -> int:
    """Run the server until SIGINT/SIGTERM; print the ready line once it accepts connections."""
    from runner.localapi.app import create_app

    try:
        settings = settings_from_args(args)
        app = create_app(settings)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _raise_fd_limit()
    logging.basicConfig(level=args.log_level.upper() if args.log_level != "trace" else 5)
    logging.getLogger("runner").setLevel(logging.getLogger().level)

    have_uvloop = importlib.util.find_spec("uvloop") is not None
    have_httptools = importlib.util.find_spec("httptools") is not None

    def prepare(server: Any) -> None:
        # after uvicorn.Config, which sets its loggers' levels
        if args.access_log:  # uvicorn logs requests at INFO: shown whatever --log-level says
            logging.getLogger("uvicorn.access").setLevel(logging.INFO)
        app.state.localapi.connection_source = lambda: server.server_state.connections

    return serving.serve(
        app,
        host=args.host,
        port=args.port,
        ready_line=lambda url: f"{READY_LINE_PREFIX}{url}",
        parent_pid=args.parent_pid,
        on_server=prepare,
        loop="uvloop" if have_uvloop else "asyncio",
        http="httptools" if have_httptools else "h11",
        access_log=args.access_log,
        log_level=args.log_level,
        backlog=4096,
        timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_SECS),
    )


# ---------------------------------------------------------------------------- subprocess handle


@dataclass
class LocalAPI:
    """Handle of a local API running in a subprocess."""

    base_url: str
    process: subprocess.Popen[bytes]
    stderr_path: Path | None = None
    _stderr_file: IO[bytes] | None = field(default=None, repr=False)

    def stats(self) -> dict[str, Any]:
        """``GET /_local/stats``: what the server saw (see ``runner.localapi.stats``)."""
        import httpx

        reply = httpx.get(f"{self.base_url}/_local/stats", timeout=10.0)
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
        return result

    def reset_stats(self) -> dict[str, Any]:
        import httpx

        reply = httpx.post(f"{self.base_url}/_local/stats/reset", timeout=10.0)
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
        return result

    def stderr_tail(self, max_chars: int = 4000) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_bytes()[-max_chars:].decode(errors="replace")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait, SIGKILL if it will not go; then drop the stderr file."""
        serving.stop(self.process, timeout)
        if self._stderr_file is not None:
            self._stderr_file.close()
            self._stderr_file = None
        if self.stderr_path is not None:
            self.stderr_path.unlink(missing_ok=True)

    def __enter__(self) -> LocalAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_healthy(base_url: str, deadline: float) -> bool:
    import httpx

    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/_local/health", timeout=2.0).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    return False


def _redact(command: Sequence[str]) -> list[str]:
    """The command with any ``--api-key`` value masked, for error messages."""
    shown = list(command)
    for i, arg in enumerate(shown):
        if arg == "--api-key" and i + 1 < len(shown):
            shown[i + 1] = "***"
        elif arg.startswith("--api-key="):
            shown[i] = "--api-key=***"
    return shown


def start_local_api(
    extra_args: Sequence[str] = (),
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    timeout: float = 20.0,
    api_key: str | None = None,
) -> LocalAPI:
    """Spawn ``python -m runner serve`` (port 0: a free one) and wait until it answers.

    ``api_key`` reaches the child through the environment, not its command line (which any
    local user can read). Raises ``RuntimeError`` with the tail of the child's stderr if it
    exits or does not become ready within ``timeout`` seconds.
    """
    command = [sys.executable, "-m", "runner", "serve", "--host", host, "--port", str(port)]
    command += ["--parent-pid", str(os.getpid()), *extra_args]
    env = dict(os.environ)
    if api_key is not None:
        env[API_KEY_ENV] = api_key
    stderr_fd, stderr_name = tempfile.mkstemp(prefix="localapi-", suffix=".stderr")
    stderr_file = os.fdopen(stderr_fd, "wb")
    process = serving.spawn(command, stderr=stderr_file, env=env)
    api = LocalAPI(
        base_url="",
        process=process,
        stderr_path=Path(stderr_name),
        _stderr_file=stderr_file,
    )
    deadline = time.monotonic() + timeout
    line, _ = serving.read_ready_line(process, READY_LINE_PREFIX, deadline)
    match = re.search(r"(https?://\S+)", line or "")
    if match is not None:
        api.base_url = match.group(1)
        if _wait_healthy(api.base_url, deadline):
            return api
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=2)  # its stdout closing can be seen before its exit status
    exit_code = process.poll()
    tail = api.stderr_tail()
    api.stop()
    state = f"exited with code {exit_code}" if exit_code is not None else "did not become ready"
    shown = " ".join(_redact(command))
    raise RuntimeError(
        f"local API {state} within {timeout:g}s: {shown}\n--- stderr tail ---\n{tail}"
    )


@contextlib.contextmanager
def local_api_process(extra_args: Sequence[str] = (), **kwargs: Any) -> Iterator[LocalAPI]:
    """``with local_api_process(["--seed", "1"]) as api: ...``: started, then always stopped."""
    api = start_local_api(extra_args, **kwargs)
    try:
        yield api
    finally:
        api.stop()
