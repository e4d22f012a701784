"""The config's backend, built over a client the caller made (``target.backend``).

The run shell makes the HTTP client (``runner.http.make_http_client``) and hands it here, so
the client stays the shell's to choose (the benchmarks swap it) and this module stays a
switch over the backends beside it.
"""

from __future__ import annotations

from pathlib import Path

from runner.backends.agent_testing import INVOCATIONS_FILE, AgentTestingBackend, WindowOf
from runner.backends.base import Backend
from runner.backends.simulate import BufferedBackend, StreamBackend
from runner.config import Config
from runner.http import HttpClient
from runner.shard import Shard


def make_backend(
    cfg: Config,
    client: HttpClient,
    *,
    run_dir: Path | None = None,
    session_id: str | None = None,
    run_key: str = "",
    shard: Shard | None = None,
    windows: WindowOf | None = None,
) -> Backend:
    """The config's backend over ``client`` (it owns the client from here: ``aclose``).
    ``run_dir`` is where the agent-testing backend records its invocations, to re-attach to
    them after a crash (a shard in a file of its own); ``windows`` which repeats share an
    invocation (default: all of a test's, ``run.repeats``; the session's planner's waves)."""
    if cfg.target.backend == "buffered":
        return BufferedBackend(client, cfg.target.timeouts)
    if cfg.target.backend == "agent-testing":
        return AgentTestingBackend(
            client,
            cfg.target.agent_testing,
            repeats=cfg.run.max_repeats,
            windows=windows,
            run_dir=run_dir,
            session_id=session_id,
            run_key=run_key,
            record_name=(
                f"invocations-{shard.name}.jsonl"
                if shard is not None and shard.count > 1
                else INVOCATIONS_FILE
            ),
        )
    return StreamBackend(client, cfg.target.timeouts)
