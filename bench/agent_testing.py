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

**Verdicts in waves** (``measure_verdicts``): the same cases (two agents, one that mostly
passes and one that mostly fails, x scenarios) with fixed ``repeats: 20`` (one invocation per
agent, every repeat at once) and with ``run.repeats: {max: 20, until: verdict}`` (waves of
2, 2, 4, 8, 4 repeats, only for the cases still open). Per setup: simulations, vendor requests
per simulation, the wall time, when each case's verdict was known (from the first job's start
to the result of the repeat that settled it, by the same anytime rule replayed on the fixed
run) and the repeats that ran past each decision.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import yaml

from runner.localapi.server import LocalAPI, local_api_process
from runner.replay import verdict_table
from runner.verdicts import Anytime

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


# ---------------------------------------------------------------------------- verdicts

VERDICT_AGENTS = ("agent_support", "agent_support_lite")
MAX, MIN, PASS_RATE, ALPHA = 20, 2, 0.8, 0.05
VERDICT: dict[str, Any] = {
    "max": MAX,
    "min": MIN,
    "until": "verdict",
    "pass_rate": PASS_RATE,
    "alpha": ALPHA,
}


def _verdict_config(
    path: Path, base_url: str, name: str, scenarios: int, scale: float, repeats: Any
) -> Path:
    config = yaml.safe_load(_config(path, base_url, name, scenarios, scale).read_text())
    config["agents"] = [{"id": a} for a in VERDICT_AGENTS]
    config["run"].update({"repeats": repeats, "concurrency": len(VERDICT_AGENTS) * scenarios * MAX})
    config["target"]["agent_testing"].update({"name_prefix": "bench-atv", "batch_max_tests": 500})
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _decisions(run_dir: Path, scale: float) -> dict[str, Any]:
    """Wall time, when each case's verdict was known and the repeats past it (simulated s),
    by the anytime rule over the run's outcomes (replayed on a fixed run)."""
    jobs = pl.read_parquet(run_dir / "jobs.parquet")
    criteria = pl.read_parquet(run_dir / "criteria.parquet")
    rule = Anytime(PASS_RATE, ALPHA, MAX, MIN)
    table = verdict_table(jobs, criteria, rule)
    start = jobs["started_at"].min()
    assert isinstance(start, datetime)
    known: list[float] = []
    for case in table.filter(pl.col("settled_at").is_not_null()).iter_rows(named=True):
        done = jobs.filter(
            (pl.col("agent_id") == case["agent_id"])
            & (pl.col("scenario_id") == case["scenario_id"])
            & (pl.col("repeat") < case["settled_at"])
        )["finished_at"].max()
        assert isinstance(done, datetime)
        known.append((done - start).total_seconds() / scale)
    settled = table.filter(pl.col("settled_at").is_not_null())
    end = jobs["finished_at"].max()
    assert isinstance(end, datetime)
    wall = (end - start).total_seconds() / scale
    return {
        "cases": table.height,
        "settled": settled.height,
        "ran_past": int(settled["ran_past"].sum()),
        "ran_past_per_case": settled["ran_past"].sum() / max(1, settled.height),
        "decided_p50": _percentile(known, 0.5),
        "decided_p95": _percentile(known, 0.95),
        "wall_secs": wall,
    }


def measure_verdicts(api: LocalAPI, scenarios: int, scale: float, work: Path) -> list[dict]:
    """Fixed repeats and waves over the same cases (module docstring); tests created first by
    a warm-up run, so neither setup pays for them."""
    warm = _verdict_config(work / "v-warm.yaml", api.base_url, "v-warm", scenarios, scale, 1)
    _run_cli(warm, work / "v")
    rows = []
    for setup, repeats in (
        ("fixed repeats: 20 (one invocation per agent)", MAX),
        ("waves: max 20, until: verdict", VERDICT),
    ):
        name = "v-fixed" if isinstance(repeats, int) else "v-waves"
        config = _verdict_config(
            work / f"{name}.yaml", api.base_url, name, scenarios, scale, repeats
        )
        before = api.stats()
        _run_cli(config, work / "v")
        after = api.stats()
        requests = after["requests_total"] - before["requests_total"]
        sims = after["agent_testing"]["runs_completed"] - before["agent_testing"]["runs_completed"]
        invocations = (
            after["agent_testing"]["invocations_created"]
            - before["agent_testing"]["invocations_created"]
        )
        rows.append(
            {
                "client": setup,
                "sims": sims,
                "requests": requests,
                "requests_per_sim": requests / max(1, sims),
                "invocations": invocations,
                **_decisions(work / "v" / name, scale),
            }
        )
    return rows


def run(
    sims: int = 200, scale: float = 0.5, verdict_scenarios: int = 10
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Both clients against one local API; one dict per client: the runner with the whole
    flow in one invocation, the runner with the default ``batch_max_tests``, the naive one;
    then verdicts with fixed repeats and in waves (``measure_verdicts``)."""
    with (
        local_api_process(["--time-scale", str(scale), "--seed", "5", *TIMING]) as api,
        tempfile.TemporaryDirectory() as tmp,
    ):
        runner_row = measure_runner(api, sims, scale, Path(tmp))
        default_row = measure_runner(api, sims, scale, Path(tmp), BATCH_DEFAULT)
        naive_row = measure_naive(api, sims, scale)
        verdict_rows = measure_verdicts(api, verdict_scenarios, scale, Path(tmp))
    return [runner_row, default_row, naive_row], verdict_rows


def main() -> int:
    clients, verdicts = run()
    for row in [*clients, *verdicts]:
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
