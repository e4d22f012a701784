"""``agent-testing`` section of ``make bench``: vendor requests per finished simulation and how
long after a run finishes on the server its result is in the store, the runner beside a naive
client, against one local API whose runs take a simulated 30-60 s.

Everything is in simulated seconds: the local API runs at ``--time-scale`` and both clients'
poll intervals are scaled by the same factor, so the ratios are those of the real service.

* **runner**: ``python -m runner run`` with ``backend: agent-testing`` (the tests of an agent
  share one run-tests call and one poll; polls back off x1.5 from ``poll_interval`` 2 s while
  nothing has finished, then every 2 s while runs finish). Measured at steady state: a first
  session creates the tests, the measured one (a new run) finds them.
* **naive**: one run-tests call per job and a fixed 2 s poll of its invocation, all jobs at
  once (what a user would write first).

Requests are counted at the server (``/_local/stats``); the server records each run's end
(``/_local/agent-testing/finished``), the runner's result is in the store at its job's
``finished_at`` (journaled then), the naive client's when its poll saw the run finished.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import yaml

from runner.localapi.server import LocalAPI, local_api_process

ROOT = Path(__file__).resolve().parents[1]
AGENT = "agent_support"
POLL = 2.0  # simulated seconds
POLL_MIN = 0.5  # the runner's poll_interval_min (its default), simulated seconds
BATCH_MAX = 500  # the runner's batch_max_tests: the whole flow shares one invocation
BATCH_DEFAULT = 100  # the config's default batch_max_tests, measured beside it
# agent and user turns of ~5 s and 4 s: 6-12 message conversations take a simulated 30-60 s
TIMING = ["--agent-message-secs", "5", "--user-message-secs", "4", "--analysis-secs", "2"]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _config(
    path: Path,
    base_url: str,
    name: str,
    sims: int,
    scale: float,
    repeats: int = 1,
    batch_max: int = BATCH_MAX,
) -> Path:
    config = {
        "target": {
            "base_url": base_url,
            "backend": "agent-testing",
            "timeouts": {"total": 3600},
            "agent_testing": {
                "name_prefix": "bench-at",
                "poll_interval": POLL * scale,
                "poll_interval_min": POLL_MIN * scale,
                "poll_interval_max": 30 * scale,
                "batch_wait": 0.5 * scale,
                "batch_max_tests": batch_max,
            },
        },
        "run": {"name": name, "concurrency": sims, "repeats": repeats, "new_turns_limit": 12},
        "agents": [{"id": AGENT}],
        "scenarios": [
            {
                "id": f"s{i:04d}",
                "first_message": f"Where is my order A-{1000 + i}? It is late.",
                "prompt": f"Your order A-{1000 + i} is late; you want to know when it arrives.",
            }
            for i in range(sims)
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _requests(api: LocalAPI) -> int:
    return int(api.stats()["requests_total"])


def _finished(api: LocalAPI) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = httpx.get(
        f"{api.base_url}/_local/agent-testing/finished", timeout=30
    ).json()["runs"]
    return runs


def _run_cli(config: Path, results: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner",
            "run",
            str(config),
            "--results",
            str(results),
            "--no-progress",
            "--no-preflight",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"runner failed: {done.stderr[-2000:]}")


def measure_runner(
    api: LocalAPI, sims: int, scale: float, work: Path, batch_max: int = BATCH_MAX
) -> dict[str, Any]:
    # warm-up run: creates the tests and learns how long runs take (not measured); the
    # measured run finds the tests and starts from what was learned (steady state)
    warm, measured = f"warm-{batch_max}", f"measured-{batch_max}"
    config = _config(work / f"{warm}.yaml", api.base_url, warm, sims, scale, batch_max=batch_max)
    _run_cli(config, work / "r")
    seen = len(_finished(api))
    before = _requests(api)
    config = _config(
        work / f"{measured}.yaml", api.base_url, measured, sims, scale, batch_max=batch_max
    )
    _run_cli(config, work / "r")
    requests = _requests(api) - before
    runs = _finished(api)[seen:]
    jobs = pl.read_parquet(work / "r" / measured / "jobs.parquet")
    ok = jobs.filter(pl.col("status") == "ok")
    stored = {
        row["scenario_id"]: row["finished_at"].timestamp() for row in ok.iter_rows(named=True)
    }
    lags = [
        (stored[run["test_name"].split(" ")[1]] - run["finished_at"]) / scale
        for run in runs
        if run["test_name"].split(" ")[1] in stored
    ]
    durations = [d / scale for d in ok["total_secs"].drop_nulls().to_list()]
    return {
        "client": (
            f"runner, batch_max_tests {batch_max} (shared run-tests, polls paced by the "
            "finish rate)"
        ),
        "sims": ok.height,
        "requests": requests,
        "requests_per_sim": requests / max(1, ok.height),
        "lag_p50": _percentile(lags, 0.5),
        "lag_p95": _percentile(lags, 0.95),
        "duration_p50": _percentile(durations, 0.5),
    }


async def _naive(api: LocalAPI, test_ids: list[str], scale: float) -> dict[str, float]:
    seen_at: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=api.base_url, timeout=60) as client:

        async def one(test_id: str) -> None:
            reply = await client.post(
                f"/v1/convai/agents/{AGENT}/run-tests", json={"tests": [{"test_id": test_id}]}
            )
            invocation_id = reply.json()["id"]
            while True:
                await asyncio.sleep(POLL * scale)
                got = (await client.get(f"/v1/convai/test-invocations/{invocation_id}")).json()
                runs = got["test_runs"]
                if runs and all(r["status"] != "pending" for r in runs):
                    now = time.time()
                    for r in runs:
                        seen_at[r["test_run_id"]] = now
                    return

        await asyncio.gather(*(one(t) for t in test_ids))
    return seen_at


def measure_naive(api: LocalAPI, sims: int, scale: float) -> dict[str, Any]:
    listed = httpx.get(
        f"{api.base_url}/v1/convai/agent-testing",
        params={"search": "bench-at", "page_size": 100},
        timeout=30,
    ).json()
    test_ids: list[str] = []
    cursor = None
    while True:
        test_ids += [t["id"] for t in listed["tests"]]
        cursor = listed.get("next_cursor")
        if not listed.get("has_more") or not cursor:
            break
        listed = httpx.get(
            f"{api.base_url}/v1/convai/agent-testing",
            params={"search": "bench-at", "page_size": 100, "cursor": cursor},
            timeout=30,
        ).json()
    test_ids = test_ids[:sims]
    seen = len(_finished(api))
    before = _requests(api)
    seen_at = asyncio.run(_naive(api, test_ids, scale))
    requests = _requests(api) - before
    runs = _finished(api)[seen:]
    lags = [
        (seen_at[r["test_run_id"]] - r["finished_at"]) / scale
        for r in runs
        if r["test_run_id"] in seen_at
    ]
    return {
        "client": f"naive (one invocation per job, fixed {POLL:g} s polls)",
        "sims": len(seen_at),
        "requests": requests,
        "requests_per_sim": requests / max(1, len(seen_at)),
        "lag_p50": _percentile(lags, 0.5),
        "lag_p95": _percentile(lags, 0.95),
        "duration_p50": None,
    }


def run(sims: int = 200, scale: float = 0.5) -> list[dict[str, Any]]:
    """Both clients against one local API; one dict per client: the runner with the whole
    flow in one invocation, the runner with the default ``batch_max_tests``, the naive one."""
    with (
        local_api_process(["--time-scale", str(scale), "--seed", "5", *TIMING]) as api,
        tempfile.TemporaryDirectory() as tmp,
    ):
        runner_row = measure_runner(api, sims, scale, Path(tmp))
        default_row = measure_runner(api, sims, scale, Path(tmp), BATCH_DEFAULT)
        naive_row = measure_naive(api, sims, scale)
    return [runner_row, default_row, naive_row]


def main() -> int:
    for row in run():
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
