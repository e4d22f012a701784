"""What the Ray tests (and the benchmark's shards section) share: the environment every Ray
start runs in, a short temp dir for it, a sweep config whose concurrency is the cluster's
quota, a local API capped at that quota, and the check that every job was stored exactly once.

The environment keeps Ray on this machine and out of ``$HOME``: Ray's usage-stats module probes
cloud metadata (``169.254.169.254``, ``metadata.google.internal``) even with the dashboard off,
and a cluster told to disable usage stats still posts a "disabled" report; with every proxy
variable on a dead loopback port (``127.0.0.1:9``, the discard port, where nothing listens) and
the report URL on the loopback, neither leaves the machine. Ray 2.60 turns token auth on for a
new local cluster and saves a token in ``~/.ray/auth_token`` unless one is given: each start gets
its own. ``RAY_TMPDIR`` keeps its sessions out of ``/tmp/ray``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from runner.localapi.server import LocalAPI, local_api_process
from runner.store import load_run

DEAD_PROXY = "http://127.0.0.1:9"
"""A loopback port nothing listens on: a request sent through this proxy is refused here."""
LOOPBACK = "127.0.0.1,localhost"
SOCKET_PATH_MAX = 107
"""AF_UNIX paths end at 107 bytes, and Ray puts its sockets under its temp dir
(``ray/session_<time>_<pid>/sockets/plasma_store``: up to 68 characters more)."""
SESSION_SOCKET = 68


def ray_env(temp_dir: Path, token: str | None = None) -> dict[str, str]:
    """The variables every Ray start in the tests and the benchmark runs with (see above).

    With a ``token``, token authentication with that token (what a fresh process, ``ray
    start`` or the CLI, reads at import); without, authentication off: a process that imported
    Ray already keeps the mode it read then (off), and a cluster it starts must agree."""
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token} if token else {}
    return {
        **{name: DEAD_PROXY for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")},
        "no_proxy": LOOPBACK,
        "NO_PROXY": LOOPBACK,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_USAGE_STATS_REPORT_URL": f"{DEAD_PROXY}/",
        "RAY_AUTH_MODE": "disabled",
        **auth,
        "RAY_TMPDIR": str(temp_dir),
        "RAY_ADDRESS": "",
    }


@contextmanager
def ray_environment(temp_dir: Path) -> Iterator[dict[str, str]]:
    """``ray_env`` in this process's environment (what ``ray.init`` and the processes it starts
    read), and the environment as it was afterwards."""
    env = ray_env(temp_dir)
    before = {name: os.environ.get(name) for name in [*env, "RAY_AUTH_TOKEN"]}
    os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ.update(env)
    try:
        yield env
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def short_tmp(factory: Any) -> Iterator[Path]:
    """Ray's temp dir: under pytest's own (``.../pytest-N/ray0``, from ``factory``, a
    ``pytest.TempPathFactory``) when its socket paths fit there (a test's ``tmp_path`` is too
    long for them), else a short one under ``/tmp``, removed afterwards."""
    under_pytest = Path(factory.mktemp("ray"))
    if len(str(under_pytest)) + SESSION_SOCKET <= SOCKET_PATH_MAX:
        yield under_pytest
        return
    with tempfile.TemporaryDirectory(prefix="ray-", dir="/tmp") as short:
        yield Path(short)


def write_config(path: Path, base_url: str, quota: int, scenarios: int, **run: Any) -> Path:
    """``scenarios`` x 2 agents, ``quota`` in flight for the whole cluster."""
    config = {
        "target": {"base_url": base_url, "timeouts": {"first_byte": 10, "idle": 10, "total": 60}},
        "run": {"name": "ray", "concurrency": quota, "new_turns_limit": 6, **run},
        "agents": [{"id": "agent_support"}, {"id": "agent_booking"}],
        "scenarios": [
            {"id": f"s{i}", "first_message": f"Order A-{i}?", "prompt": f"Customer {i}."}
            for i in range(scenarios)
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextmanager
def capped_api(quota: int, time_scale: float) -> Iterator[LocalAPI]:
    """A server that answers 429 beyond ``quota`` simulations in flight, and counts."""
    with local_api_process(
        ["--time-scale", str(time_scale), "--seed", "4", "--max-concurrency", str(quota)]
    ) as server:
        yield server


def every_job_once(run_dir: Path, jobs: int) -> pl.DataFrame:
    run = load_run(run_dir)
    assert isinstance(run.jobs, pl.DataFrame)
    assert run.jobs.height == jobs and run.jobs["job_key"].n_unique() == jobs
    assert set(run.jobs["status"]) == {"ok"}
    assert run.messages.group_by("job_key", "index").len()["len"].max() == 1
    return run.jobs
