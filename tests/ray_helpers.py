"""What the Ray tests share: a sweep config whose concurrency is the cluster's quota, a local
API capped at that quota, and the check that every job was stored exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from runner.localapi.server import LocalAPI, local_api_process
from runner.store import load_run


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
