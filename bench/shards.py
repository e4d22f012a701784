"""One sharded run on a local Ray cluster, in a process of its own:
``python -m bench.shards '<spec JSON>'``. Prints one JSON line of figures.

``spec``: ``url`` (the local API), ``mode`` (``cluster``: one quota actor, ``auto`` from the
headers and 429s; ``cluster-fixed``: one quota actor holding ``quota``; ``static``: each shard
its own fixed ``quota // shards``; ``independent``: each shard ``auto`` on its own), ``shards``,
``jobs``, ``quota``, ``new_turns_limit``, and ``kill`` (SIGKILL one shard's process once a
third of its jobs are done, with some in flight). Figures: the window figures of
``bench.metrics`` over every shard's attempts, the server's own counts, and whether every job
is there once.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import yaml

from bench.metrics import window_figures
from bench.worker import AGENT, FIRST_MESSAGE, PERSONA
from tests.ray_helpers import ray_env


def config(spec: dict[str, Any]) -> dict[str, Any]:
    mode, quota, shards = spec["mode"], spec["quota"], spec["shards"]
    auto = mode in ("cluster", "independent")
    concurrency: int | str = (
        "auto" if auto else quota if mode == "cluster-fixed" else max(1, quota // shards)
    )
    return {
        "target": {
            "base_url": spec["url"],
            "timeouts": {"connect": 30, "first_byte": 120, "idle": 120, "total": 600},
        },
        "run": {
            "name": "bench-shards",
            "concurrency": concurrency,
            **({"max_concurrency": 64} if auto else {}),
            "new_turns_limit": spec["new_turns_limit"],
            "repeats": spec["jobs"],
            "retry": {"max_attempts": 8, "backoff_base": 0.05, "backoff_cap": 1.0, "jitter": 0.05},
            "circuit_breaker": 0,
        },
        "agents": [{"id": AGENT}],
        "scenarios": [{"id": "six_goals", "first_message": FIRST_MESSAGE, "prompt": PERSONA}],
    }


def stats(url: str) -> dict[str, Any]:
    reply: dict[str, Any] = httpx.get(f"{url}/_local/stats", timeout=10).json()
    return reply


def main(argv: list[str]) -> int:
    import ray

    from runner.cluster import init_local_ray, run_on_ray
    from runner.config import load_config
    from runner.store import load_run, read_shard_manifest

    spec = json.loads(argv[0])
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        # the tests' Ray environment: nothing beyond the loopback, nothing in $HOME or /tmp/ray
        os.environ.update(ray_env(Path(tmp)))
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(config(spec)))
        cfg = load_config(path)
        init_local_ray(num_cpus=2, logging_level="WARNING", log_to_driver=False)
        killed: list[int] = []
        in_flight: list[int] = []

        def kill_one(actors: list[Any]) -> None:
            def killer() -> None:
                # mid-run for the shard itself: a third of its jobs done, some in flight
                while True:
                    p = ray.get(actors[1].progress.remote())
                    if p["total"] and p["done"] >= p["total"] // 3 and p["in_flight"] > 0:
                        break
                    time.sleep(0.02)
                pid = ray.get(actors[1].pid.remote())
                in_flight.append(p["in_flight"])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

            threading.Thread(target=killer, daemon=True).start()

        sent_before = stats(spec["url"])["simulate_requests"]
        rejected_before = stats(spec["url"])["concurrency_rejections"]
        try:
            outcome = run_on_ray(
                cfg,
                shards=spec["shards"],
                results_root=Path(tmp) / "results",
                progress=False,
                base_url=spec["url"],
                cluster_quota=spec["mode"].startswith("cluster"),
                on_started=kill_one if spec.get("kill") else None,
            )
            after = stats(spec["url"])
            run = load_run(outcome.run_dir)
            attempts = run.attempts
            jobs = run.jobs
            assert isinstance(attempts, pl.DataFrame) and isinstance(jobs, pl.DataFrame)
            sessions = [
                len(m.sessions)
                for i in range(spec["shards"])
                if (m := read_shard_manifest(outcome.run_dir, f"{i}-of-{spec['shards']}"))
            ]
        finally:
            ray.shutdown()
    figures = {
        "sims": jobs.height,
        "complete": bool(outcome.merged and outcome.merged.complete),
        "every_job_once": jobs.height == spec["jobs"] and jobs["job_key"].n_unique() == jobs.height,
        "killed": len(killed),
        "in_flight_when_killed": in_flight[0] if in_flight else None,
        "shard_sessions": sum(sessions),
        "sent": after["simulate_requests"] - sent_before,
        "server_rejections": after["concurrency_rejections"] - rejected_before,
        "server_peak_in_flight": after["peak_in_flight"],
        "cluster_peak_in_flight": outcome.peak_in_flight,
        "wall_secs": outcome.wall_secs,
        "message": outcome.message,
        **window_figures(attempts, spec["quota"]),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
