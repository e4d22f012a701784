"""Fault soak: a sweep against a local API with every fault switched on, accounted job by job.

``python -m bench.soak [--jobs N]`` (``make soak``) prints jobs, ok, errors by kind, retries,
lost and duplicated jobs (both must be 0) and wall time, and checks the runner's figures
against the local API's own counters. The test suite runs the same code at a small size.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import polars as pl
import yaml

from runner.config import load_config
from runner.jobs import iter_jobs
from runner.localapi.server import local_api_process
from runner.store import load_run
from runner.sweep import run_sweep

FAULTS: dict[str, float] = {
    "--fault-too-many-concurrent-requests": 0.05,
    "--fault-system-busy": 0.05,
    "--fault-http-500": 0.02,
    "--fault-http-502": 0.015,
    "--fault-http-503": 0.015,
    "--fault-disconnect": 0.05,
    "--fault-stall": 0.02,
    "--fault-malformed": 0.01,
    "--fault-reset": 0.02,
}
"""10% 429 of both kinds, 5% 5xx, 5% mid-stream disconnects, 2% stalls, 1% malformed frames,
2% connection resets."""


def soak_config(directory: Path, base_url: str, jobs: int, concurrency: int) -> Path:
    scenarios = max(1, math.ceil(jobs / 2))
    config = {
        "target": {
            "base_url": base_url,
            # stalls (1.5 s) are longer than these: they must be cut, not waited out
            "timeouts": {"connect": 5, "first_byte": 1.0, "idle": 0.5, "total": 30},
        },
        "run": {
            "name": "soak",
            "concurrency": concurrency,
            "new_turns_limit": 6,
            "retry": {"max_attempts": 6, "backoff_base": 0.02, "backoff_cap": 0.2, "jitter": 0.02},
            "circuit_breaker": 0,
        },
        "agents": [{"id": "agent_support"}, {"id": "agent_booking"}],
        "scenarios": [
            {
                "id": f"soak-{i}",
                "first_message": f"Where is my order A-{10000 + i}?",
                "prompt": f"You are customer {i}. Your order A-{10000 + i} is late.",
            }
            for i in range(scenarios)
        ],
    }
    path = directory / "soak.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def soak(
    jobs: int = 200,
    *,
    concurrency: int = 12,
    server_cap: int = 8,
    time_scale: float = 0.002,
    seed: int = 1,
    results: Path | None = None,
) -> dict[str, Any]:
    """Run the soak; returns the figures and the cross-checks (see ``problems``)."""
    args = ["--time-scale", str(time_scale), "--seed", str(seed), "--stall-secs", "1.5"]
    args += ["--max-concurrency", str(server_cap), "--retry-after", "0.05"]
    for flag, rate in FAULTS.items():
        args += [flag, str(rate)]
    with tempfile.TemporaryDirectory() as tmp:
        root = results or Path(tmp)
        with local_api_process(args) as api:
            cfg = load_config(soak_config(root, api.base_url, jobs, concurrency))
            expected = {job.key for job in iter_jobs(cfg)}
            started = time.monotonic()
            report = await run_sweep(cfg, results_root=root / "results", progress=False)
            wall = time.monotonic() - started
            server = api.stats()
        run = load_run(report.run_dir)
        assert isinstance(run.jobs, pl.DataFrame) and isinstance(run.attempts, pl.DataFrame)
        jobs_df, attempts = run.jobs, run.attempts
    keys = jobs_df["job_key"].to_list()
    ok_attempts = attempts.filter(pl.col("status") == "ok").height
    malformed = attempts.filter(pl.col("error_kind") == "malformed").height
    after_busy = (
        attempts.sort("job_key", "attempt")
        .with_columns(pl.col("retry_after_secs").shift(1).over("job_key").alias("asked"))
        .filter(pl.col("asked").is_not_null())
    )
    figures: dict[str, Any] = {
        "jobs": len(expected),
        "ok": jobs_df.filter(pl.col("status") == "ok").height,
        "errors": jobs_df.filter(pl.col("status") == "error").height,
        "errors_by_kind": dict(
            jobs_df.filter(pl.col("status") == "error")["error_kind"].value_counts().iter_rows()
        ),
        "failed_attempts_by_kind": dict(
            attempts["error_kind"].drop_nulls().value_counts().iter_rows()
        ),
        "attempts": attempts.height,
        "retries": attempts.height - len(keys),
        "lost": len(expected - set(keys)),
        "duplicated": len(keys) - len(set(keys)),
        "unexpected": len(set(keys) - expected),
        "wall_secs": round(wall, 2),
        "server": {
            "simulate_requests": server["simulate_requests"],
            "simulations_completed": server["simulations_completed"],
            "peak_in_flight": server["peak_in_flight"],
            "faults_injected": server["faults_injected"],
            "concurrency_rejections": server["concurrency_rejections"],
        },
    }
    problems = []
    if figures["lost"] or figures["duplicated"] or figures["unexpected"]:
        problems.append("jobs lost, duplicated or unexpected")
    if server["simulate_requests"] != attempts.height:
        problems.append(
            f"server saw {server['simulate_requests']} requests, runner recorded "
            f"{attempts.height} attempts"
        )
    # a simulation the server finished is an ok job, or a stream the runner rejected as
    # malformed (the runner hangs up at the bad frame, so the server may or may not have
    # finished sending it by then)
    if not ok_attempts <= server["simulations_completed"] <= ok_attempts + malformed:
        problems.append(
            f"server completed {server['simulations_completed']} simulations, runner has "
            f"{ok_attempts} ok + {malformed} malformed"
        )
    stalled = figures["failed_attempts_by_kind"]
    if server["faults_injected"].get("stall", 0) and not (
        stalled.get("idle_timeout", 0) + stalled.get("first_byte_timeout", 0)
    ):
        problems.append("stalls were not cut by a timeout")
    if after_busy.height and set(after_busy["backoff_before_secs"]) != {0.05}:
        problems.append("Retry-After was not honoured as the wait")
    figures["retry_after_honoured"] = after_busy.height
    figures["problems"] = problems
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--server-cap", type=int, default=24)
    parser.add_argument("--time-scale", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    figures = anyio.run(
        lambda: soak(
            args.jobs,
            concurrency=args.concurrency,
            server_cap=args.server_cap,
            time_scale=args.time_scale,
            seed=args.seed,
        )
    )
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    return 1 if figures["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
