"""The load benchmark behind ``python -m bench [--quick | --full] [--only SECTION,...]``.

Four sections, each measured side by side in one run, every client in a process of its own
(``bench.worker``) against a local API in another (``python -m runner serve``) at a fixed
simulated pace:

1. ``saturation``: a server that allows 20 simulations in flight (``--max-concurrency 20``);
   ``auto`` (not told the quota), ``auto`` ignoring the quota headers, a fixed 20 and the
   halve-on-429 policy peers use. Mean in-flight / 20, throughput / the Little's-law bound
   (20 / mean simulation time), share of attempts that got a 429.
2. ``overhead``: client CPU milliseconds per 21-frame simulation at 100 and 500 in flight, the
   runner (cases of 20 repeats) and the raw-aiohttp floor in alternating rounds (medians, each
   with its spread, and the median of the rounds' runner / floor ratios), over whole runs and
   over each run's steady middle; at 100 in flight the same rounds hold the runner with
   ``until: verdict`` and with five assertions, each against the runner (issues 25 and 30);
   then once each the naive baseline (``bench.naive``), the runner with rows discarded (the
   client path without Parquet) and with httpx's own transport.
3. ``scale``: 1,000 streams in flight from one runner process: throughput / bound, peak RSS.
4. ``memory``: peak RSS of the runner for a small and a large number of fast jobs.
5. ``shards``: 4 shards on a local Ray cluster (``bench.shards``) against a server that allows
   20 in flight: one quota actor for the cluster (``auto``, and fixed 20), a static split (5
   each), every shard adapting on its own; throughput / bound and 429 share over every shard's
   attempts. Then the quota actor with one shard killed mid-run: the run completes, each job once.
6. ``verdicts``: sequential verdicts by seeded Monte Carlo, no server (``bench.verdicts``, its own
   table and ``results/bench/verdicts.json``).
7. ``compare``: the paired comparison (issue 26) by seeded Monte Carlo, no server
   (``bench.paired``, its own table and ``results/bench/compare.json``), then a variant
   against itself end to end on the local API, 20 seeds (never "worse").

Prints one table and writes the figures as JSON to ``--out`` (``results/bench/``), named by
commit and time, plus ``latest.json``. Sizes: ``--quick`` (a smoke run, seconds), the default
(about 11 minutes on 2 cores), ``--full`` (the sizes of the issue: 100,000 jobs for memory).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from bench.text import render_table
from bench.worker import CASE_REPEATS
from runner.localapi.server import LocalAPI, local_api_process

SECTIONS = (
    "saturation",
    "overhead",
    "scale",
    "memory",
    "agent-testing",
    "shards",
    "verdicts",
    "compare",
)
SHARDS = 4
QUOTA = 20
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Sizes:
    """How big each section's runs are."""

    saturation_jobs: int
    saturation_scale: float  # --time-scale of the local API (simulation length)
    overhead_jobs: tuple[int, int]  # per run at 100 and 500 in flight (the one-off clients half)
    overhead_concurrency: tuple[int, int]
    overhead_time_scale: tuple[float, float]  # the local API's pace at each concurrency
    scale_concurrency: int
    scale_jobs: int
    scale_time_scale: float
    memory_jobs: tuple[int, int]
    agent_testing_sims: int = 200
    agent_testing_scale: float = 0.5  # runs of a simulated 30-60 s take 15-30 s here
    agent_testing_verdict_scenarios: int = 10  # x 2 agents x max 20: verdicts in waves
    shards_jobs: int = 1200
    shards_scale: float = 0.05  # --time-scale of the local API (same pace as saturation)
    verdicts_replicates: int = 200  # x verdicts_cases: the Monte Carlo of bench.verdicts
    verdicts_cases: int = 200
    compare_replicates: int = 1000  # the Monte Carlo of bench.paired, per setting
    compare_max_pairs: int = 400
    compare_self_seeds: int = 20  # end to end: a variant against itself, one run per seed
    compare_self_max_pairs: int = 200
    overhead_rounds: int = 5  # alternating runner / floor runs at each concurrency


PRESETS: dict[str, Sizes] = {
    "quick": Sizes(
        40,
        0.005,
        (40, 80),
        (10, 20),
        (0.01, 0.01),
        50,
        150,
        0.005,
        (100, 300),
        agent_testing_sims=20,
        agent_testing_scale=0.05,
        agent_testing_verdict_scenarios=3,
        shards_jobs=80,
        shards_scale=0.01,
        verdicts_replicates=2,
        verdicts_cases=20,
        compare_replicates=20,
        compare_max_pairs=100,
        compare_self_seeds=2,
        compare_self_max_pairs=30,
        overhead_rounds=2,
    ),
    "default": Sizes(
        700, 0.05, (2000, 3000), (100, 500), (0.05, 0.25), 1000, 10_000, 0.5, (10_000, 30_000)
    ),
    "full": Sizes(
        2000,
        0.05,
        (3000, 5000),
        (100, 500),
        (0.05, 0.25),
        1000,
        20_000,
        0.5,
        (10_000, 100_000),
        overhead_rounds=7,
    ),
}


# ---------------------------------------------------------------------------- processes


def process_cpu_secs(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_split() -> tuple[set[int], set[int]] | None:
    """(client cores, server core) when the machine has two or more: the local API on the last
    core, the client on the others, so neither's CPU figures include fighting the other for a
    core (on 2 shared cores, unpinned runs varied by ~15% from run to run; pinned, ~5%)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    return set(cores[:-1]), {cores[-1]}


CORES: tuple[set[int], set[int]] | None = None
"""The split in force (``main`` sets it)."""


def pin(pid: int, cores: set[int]) -> None:
    """Every thread of ``pid`` onto ``cores`` (Linux)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cores)


@contextlib.contextmanager
def client_cores() -> Iterator[str]:
    """Sets ``CORES``: this process, and so the workers it starts, on the client cores (each
    local API of ``serve`` moves off them); yields where things run, in words."""
    global CORES
    CORES = core_split()
    if CORES is None:
        yield "client and local API share the machine"
        return
    os.sched_setaffinity(0, CORES[0])
    try:
        yield f"client on core(s) {sorted(CORES[0])}, local API on {sorted(CORES[1])}"
    finally:
        os.sched_setaffinity(0, CORES[0] | CORES[1])


def run_worker(
    spec: dict[str, Any], server: LocalAPI, tree: Path = ROOT, module: str = "bench.worker"
) -> dict[str, Any]:
    """One measured run in a fresh process (``module``), with the runner of source ``tree``;
    its figures plus the server's CPU share."""
    spec = {**spec, "url": server.base_url}
    cpu0 = process_cpu_secs(server.process.pid)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", module, json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        check=False,
    )
    wall = time.perf_counter() - started
    cpu1 = process_cpu_secs(server.process.pid)
    if done.returncode != 0:
        raise RuntimeError(f"bench worker failed in {tree}: {spec}\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if cpu0 is not None and cpu1 is not None:
        figures["server_cpu_share"] = (cpu1 - cpu0) / max(figures.get("wall_secs", wall), 1e-9)
    return figures


@contextlib.contextmanager
def serve(*args: str) -> Iterator[LocalAPI]:
    with local_api_process(["--seed", "1", *args], timeout=60.0) as server:
        if CORES is not None:
            pin(server.process.pid, CORES[1])
        yield server


# ---------------------------------------------------------------------------- sections

Row = dict[str, Any]


def saturation(sizes: Sizes) -> list[Row]:
    policies = [
        ("auto", "auto (quota from the headers)"),
        ("auto-noheaders", "auto, headers ignored (probing)"),
        ("fixed", f"fixed {QUOTA}"),
        ("aimd", "halve on every 429 (AIMD)"),
    ]
    rows = []
    args = ["--max-concurrency", str(QUOTA), "--time-scale", str(sizes.saturation_scale)]
    with serve(*args) as server:
        for policy, setup in policies:
            spec = {
                "client": "runner",
                "policy": policy,
                "concurrency": QUOTA,
                "cap": 64,
                "jobs": sizes.saturation_jobs,
                "new_turns_limit": 6,
                "quota": QUOTA,
            }
            rows.append({"section": "saturation", "setup": setup, **run_worker(spec, server)})
    for row in rows:
        if row["setup"].startswith("auto (") and "throughput_ratio" in row:
            met = row["throughput_ratio"] >= 0.95 and row["rejected_share"] <= 0.02
            row["target"] = ">=0.95 of bound, <=2% 429: " + ("met" if met else "MISSED")
    return rows


def overhead_spec(concurrency: int) -> dict[str, Any]:
    """The load of the overhead section (21-frame streams, a fixed concurrency), which
    ``bench.ab`` measures too; the client and the job count are added per run."""
    return {"policy": "fixed", "concurrency": concurrency, "new_turns_limit": 20}


def cases_for(jobs: int) -> int:
    """How many cases the runner's ``jobs`` simulations are split into: cases of
    ``CASE_REPEATS`` repeats, a sweep's usual shape (one case when they do not split so)."""
    return jobs // CASE_REPEATS if jobs >= CASE_REPEATS and jobs % CASE_REPEATS == 0 else 1


def spread(values: list[float]) -> float:
    """The rounds' whole range as a share of their median, ``(max - min) / median``: with a
    handful of rounds, a conservative figure for how far one run may land from another."""
    return (max(values) - min(values)) / statistics.median(values)


Variant = tuple[str, dict[str, Any]]
"""A runner variant of the overhead section: its name and what its spec adds."""

VERDICT_VARIANT: Variant = ("runner, until: verdict", {"until": "verdict"})
ASSERT_VARIANT: Variant = ("runner, 5 assertions", {"asserts": 5})
VARIANT_BUDGET = 1.05
"""The verdict planner (issue 25) may cost at most 5% more client CPU per simulation than the
runner with fixed repeats; the runner with five assertions is held to the same in the A/B."""
ASSERT_BUDGET = 0.05
"""Evaluating five assertions (issue 30) may cost at most 5% of the runner's client CPU per
simulation: their hook's CPU timed in the run, over the runner's without them."""


def _summary(name: str, done: list[dict[str, Any]]) -> Row:
    """One client's rounds as a row: each figure's median, and its runs and spread."""
    row: Row = {"section": "overhead", "setup": name, "rounds": len(done)}
    for key in done[0]:
        values = [run[key] for run in done if run.get(key) is not None]
        if values and all(isinstance(v, int) for v in values):
            row[key] = statistics.median_low(values)
        elif values and all(isinstance(v, int | float) for v in values):
            row[key] = statistics.median(values)
    for key in ("cpu_ms_per_sim", "steady_cpu_ms_per_sim"):
        row[f"{key}_runs"] = [run[key] for run in done]
        row[f"{key}_spread"] = spread(row[f"{key}_runs"])
    return row


def _ratios(row: Row, runs: list[dict[str, Any]], base: list[dict[str, Any]], out: str) -> None:
    """``out`` (steady against steady) and ``out_run`` (whole runs): the median of each
    round's own ratio of ``runs`` to ``base``, with the rounds' ratios and their spread."""
    for key, name in (("steady_cpu_ms_per_sim", out), ("cpu_ms_per_sim", f"{out}_run")):
        ratios = [r[key] / b[key] for r, b in zip(runs, base, strict=True)]
        row[name] = statistics.median(ratios)
        row[f"{name}_runs"] = ratios
        row[f"{name}_spread"] = spread(ratios)


T = TypeVar("T")


def rotated(items: Sequence[T], round_index: int) -> list[T]:
    """``items`` in the order of round ``round_index`` (from 0): shifted by one each round, so
    each runs first as often as the others. A run's place in its round shows in its CPU per
    simulation here (measured in docs/benchmarks.md), as much as the changes compared."""
    shift = round_index % len(items)
    return [*items[shift:], *items[:shift]]


def paired_rounds(
    server: LocalAPI,
    concurrency: int,
    jobs: int,
    rounds: int,
    variants: Sequence[Variant] = (),
) -> list[Row]:
    """The runner, the floor and any runner ``variants`` in alternating runs against one local
    API, the order rotated every round (floor, runner, ...; runner, ..., floor; ...), so drift
    on a shared machine touches each alike. The runner's simulations are cases of
    ``CASE_REPEATS`` repeats (``cases_for``). Each figure is the median over the rounds, its
    ``spread`` beside it; ``vs_floor`` is the median of each round's own ratio to the floor,
    steady window against steady window (``bench.worker.Window``), ``vs_floor_run`` the same
    over whole runs; a variant's ``vs_runner`` and ``vs_runner_run`` the same against the
    runner. Rows: the runner, the floor, then each variant."""
    if jobs < 4 * concurrency:
        raise ValueError(
            f"overhead: {jobs} simulations a run at {concurrency} in flight leave no steady "
            f"middle; give at least {4 * concurrency}"
        )
    runner = {"client": "runner", "cases": cases_for(jobs)}
    clients: list[tuple[str, dict[str, Any]]] = [
        ("floor", {"client": "floor"}),
        ("runner", runner),
        *((name, {**runner, **extra}) for name, extra in variants),
    ]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in clients}
    for round_no in range(rounds):
        for name, extra in rotated(clients, round_no):
            spec = {**overhead_spec(concurrency), **extra, "jobs": jobs}
            runs[name].append(run_worker(spec, server))
        steady = {name: done[-1]["steady_cpu_ms_per_sim"] for name, done in runs.items()}
        others = "".join(
            f", {name} {steady[name]:.2f} ({steady[name] / steady['runner']:.3f}x runner)"
            for name, _ in variants
        )
        print(
            f"  @{concurrency} round {round_no + 1}/{rounds}: floor {steady['floor']:.2f}, "
            f"runner {steady['runner']:.2f} ms/sim (steady; "
            f"{steady['runner'] / steady['floor']:.2f}x){others}",
            file=sys.stderr,
            flush=True,
        )
    runner_row = _summary(f"runner @{concurrency}", runs["runner"])
    floor_row = _summary(f"floor: raw aiohttp + json.loads @{concurrency}", runs["floor"])
    _ratios(runner_row, runs["runner"], runs["floor"], "vs_floor")
    floor_row["vs_floor"] = floor_row["vs_floor_run"] = 1.0
    rows = [runner_row, floor_row]
    for name, _ in variants:
        row = _summary(f"{name} @{concurrency}", runs[name])
        _ratios(row, runs[name], runs["floor"], "vs_floor")
        _ratios(row, runs[name], runs["runner"], "vs_runner")
        ratio = row["vs_runner"]
        verdict = "met" if ratio <= VARIANT_BUDGET else "MISSED"
        ab = f"{ratio - 1:+.1%} steady, {row['vs_runner_run'] - 1:+.1%} over whole runs"
        row["target"] = f"<={VARIANT_BUDGET - 1:.0%} over the runner: {verdict} ({ab})"
        if "assert_ms_per_sim" in row:
            # The bound is on evaluating them: timed in the run itself, on the thread that runs
            # them, without the round-to-round noise of the A/B (which adds their rows' journal
            # and Parquet writes, and is shown beside it).
            share = row["assert_ms_per_sim"] / runner_row["cpu_ms_per_sim"]
            row["assert_share_of_runner"] = share
            held = "met" if share <= ASSERT_BUDGET else "MISSED"
            row["target"] = (
                f"evaluating them and shaping their rows, timed in the run: "
                f"{row['assert_ms_per_sim'] * 1000:.0f} us/sim, {share:.1%} of the runner's CPU"
                f" per simulation, <={ASSERT_BUDGET:.0%}: {held}"
                f"; the runner with them over without, same rounds: {ab}"
                f" (spread {row.get('vs_runner_spread', float('nan')):.1%})"
            )
        rows.append(row)
    return rows


def overhead(sizes: Sizes) -> list[Row]:
    """Each concurrency against a local API paced to the same ~90 simulations a second (21
    frames each), below what its one core can serve: a saturated server batches frames into
    fewer reads, which flatters every client. Every client's CPU per simulation grows as the
    pace slows (more wake-ups per frame), so each is compared with the floor measured in the
    same rounds (``paired_rounds``); at the first concurrency the verdict planner and five
    assertions join the rounds, each compared with the runner of the same round. The other
    clients run once each, for scale."""
    rows: list[Row] = []
    plan = zip(
        sizes.overhead_jobs, sizes.overhead_concurrency, sizes.overhead_time_scale, strict=True
    )
    for jobs, concurrency, pace in plan:
        first = concurrency == sizes.overhead_concurrency[0]
        with serve("--time-scale", str(pace)) as server:
            variants = (VERDICT_VARIANT, ASSERT_VARIANT) if first else ()
            at = paired_rounds(server, concurrency, jobs, sizes.overhead_rounds, variants)
            runner_row, floor_row = at[:2]
            once: list[Variant] = []
            if first:
                once += [
                    ("runner, rows discarded (no Parquet)", {"client": "runner", "store": False}),
                    ("runner on httpx's own transport", {"client": "runner", "transport": "httpx"}),
                ]
            once.append(("naive: httpx stream + gather", {"client": "naive"}))
            for name, extra in once:
                spec = {**overhead_spec(concurrency), **extra, "jobs": jobs // 2}
                if extra["client"] == "runner":
                    spec["cases"] = cases_for(jobs // 2)
                row: Row = {"section": "overhead", "setup": f"{name} @{concurrency}", "rounds": 1}
                row.update(run_worker(spec, server))
                if row["setup"].startswith("runner"):
                    if "steady_cpu_ms_per_sim" in row:
                        steady = row["steady_cpu_ms_per_sim"]
                        row["vs_floor"] = steady / floor_row["steady_cpu_ms_per_sim"]
                    row["vs_floor_run"] = row["cpu_ms_per_sim"] / floor_row["cpu_ms_per_sim"]
                at.append(row)
            naive = at[-1]["cpu_ms_per_sim"]
            runner_row["vs_naive"] = naive / runner_row["cpu_ms_per_sim"]
            ratio = runner_row["vs_floor"]
            runner_row["target"] = (
                f"<=1.2x the floor: {'met' if ratio <= 1.2 else 'MISSED'} ({ratio:.2f}x steady, "
                f"{runner_row['vs_floor_run']:.2f}x over whole runs); >=4x cheaper than naive: "
                + ("met" if runner_row["vs_naive"] >= 4 else "MISSED")
            )
            rows += at
    return rows


def scale(sizes: Sizes) -> list[Row]:
    n = sizes.scale_concurrency
    with serve("--time-scale", str(sizes.scale_time_scale)) as server:
        spec = {
            "client": "runner",
            "policy": "fixed",
            "concurrency": n,
            "jobs": sizes.scale_jobs,
            "new_turns_limit": 4,
            "quota": n,
        }
        row = {"section": "scale", "setup": f"fixed {n} in flight", **run_worker(spec, server)}
    if "throughput_ratio" in row:
        met = row["throughput_ratio"] >= 0.9
        row["target"] = ">=0.9 of bound: " + ("met" if met else "MISSED")
    return [row]


def memory(sizes: Sizes) -> list[Row]:
    rows = []
    with serve("--time-scale", "0") as server:
        for jobs in sizes.memory_jobs:
            spec = {
                "client": "runner",
                "policy": "fixed",
                "concurrency": 50,
                "jobs": jobs,
                "new_turns_limit": 2,
            }
            rows.append(
                {"section": "memory", "setup": f"{jobs:,} jobs", **run_worker(spec, server)}
            )
    first, last = rows[0], rows[-1]
    run_growth = last["peak_rss_run_mb"] / first["peak_rss_run_mb"]
    growth = last["peak_rss_mb"] / first["peak_rss_mb"]
    last["rss_growth"], last["rss_run_growth"] = growth, run_growth
    last["target"] = (
        f"within 20%: run {run_growth - 1:+.0%} "
        + ("met" if run_growth <= 1.2 else "MISSED")
        + f"; with compaction {growth - 1:+.0%} "
        + ("met" if growth <= 1.2 else "MISSED")
    )
    return rows


def agent_testing(sizes: Sizes) -> list[Row]:
    """Vendor requests per finished simulation and result lag, runner beside a naive client;
    sequential verdicts in waves beside fixed repeats (``bench.agent_testing``)."""
    from bench import agent_testing as at

    clients, verdict_rows = at.run(
        sizes.agent_testing_sims,
        sizes.agent_testing_scale,
        sizes.agent_testing_verdict_scenarios,
    )
    runner_row, default_row, naive_row = clients
    rows = [
        {
            "section": "agent-testing",
            "setup": found["client"],
            "sims": found["sims"],
            "requests_per_sim": found["requests_per_sim"],
            "lag_p50": found["lag_p50"],
            "lag_p95": found["lag_p95"],
        }
        for found in (runner_row, default_row, naive_row)
    ]
    for row, found in zip(rows[:2], (runner_row, default_row), strict=True):
        cheap = found["requests_per_sim"] <= 0.2
        prompt = found["lag_p95"] <= at.POLL
        better = all(found[k] < naive_row[k] for k in ("requests_per_sim", "lag_p50", "lag_p95"))
        row["target"] = (
            f"<= 0.2 req/sim: {'met' if cheap else 'MISSED'}; p95 lag <= {at.POLL:g} s: "
            f"{'met' if prompt else 'MISSED'}; all three better than naive: "
            f"{'met' if better else 'MISSED'}"
        )
    fixed, waves = verdict_rows
    for found in verdict_rows:
        rows.append(
            {
                "section": "agent-testing",
                "setup": f"verdicts, {found['client']}",
                **{k: v for k, v in found.items() if k != "client"},
            }
        )
    saved = 1 - waves["sims"] / max(1, fixed["sims"])
    rows[-1]["target"] = (
        f"{saved:.0%} fewer simulations than fixed; {waves['settled']} of {waves['cases']} "
        f"settled (fixed, replayed: {fixed['settled']}); informational: requests/sim and lag"
    )
    return rows


def shards(sizes: Sizes) -> list[Row]:
    """4 shards on a local Ray cluster (each run starts its own, 2 CPUs, 127.0.0.1) against a
    server that allows ``QUOTA`` in flight, the quota held three ways side by side."""
    modes = [
        ("cluster", "quota actor, auto (one quota for the cluster)", False),
        ("cluster-fixed", f"quota actor, fixed {QUOTA}", False),
        ("static", f"static split ({QUOTA // SHARDS} each)", False),
        ("independent", "each shard auto on its own", False),
        ("cluster", "quota actor, auto, one shard killed mid-run", True),
    ]
    rows = []
    args = ["--max-concurrency", str(QUOTA), "--time-scale", str(sizes.shards_scale)]
    with serve(*args) as server:
        for mode, setup, kill in modes:
            server.reset_stats()
            spec = {
                "mode": mode,
                "shards": SHARDS,
                "jobs": sizes.shards_jobs,
                "quota": QUOTA,
                "new_turns_limit": 6,
                "kill": kill,
            }
            figures = run_worker(spec, server, module="bench.shards")
            rows.append({"section": "shards", "setup": f"{SHARDS} {setup}", **figures})
    for row in rows:
        if "killed" in row["setup"]:
            ok = row["complete"] and row["every_job_once"] and row["killed"] == 1
            lost = row["sent"] - row["sims"]
            row["target"] = (
                f"completes, every job once: {'met' if ok else 'MISSED'}"
                f" ({row['shard_sessions']} shard sessions; killed with"
                f" {row['in_flight_when_killed']} in flight, {lost} sent again)"
            )
        elif row["setup"].startswith(f"{SHARDS} quota actor, auto (") and "throughput_ratio" in row:
            others = [
                r["throughput_ratio"]
                for r in rows
                if r["setup"].startswith((f"{SHARDS} static", f"{SHARDS} each"))
                and "throughput_ratio" in r
            ]
            met = row["throughput_ratio"] >= 0.95 and row["rejected_share"] <= 0.01
            better = all(row["throughput_ratio"] > o for o in others)
            row["target"] = (
                ">=0.95 of bound, <=1% 429: "
                + ("met" if met else "MISSED")
                + "; better than (b), (c): "
                + ("met" if better else "MISSED")
            )
    return rows


def verdicts(sizes: Sizes) -> list[Row]:
    """Sequential verdicts by seeded Monte Carlo (``bench.verdicts``): its own side-by-side
    table and ``verdicts.json``; the anytime, curtail and SPRT rows join the main table."""
    from bench import verdicts as vb

    figures = vb.run(sizes.verdicts_replicates, sizes.verdicts_cases)
    vb.report(figures, ROOT / "results" / "bench")
    keep = ("anytime 20", "anytime 40", "curtail 20", "curtail 40", "sprt")
    return [
        {"section": "verdicts", "setup": row["setup"], "sims": round(row["sims_per_replicate"])}
        | ({"target": row["target"]} if "target" in row else {})
        for row in figures["rows"]
        if row["setup"] in keep
    ]


def compare(sizes: Sizes) -> list[Row]:
    """The paired comparison by seeded Monte Carlo (``bench.paired``): its own side-by-side
    table and ``compare.json``; one row per setting joins the main table."""
    from bench import paired as pb

    figures = pb.run(sizes.compare_replicates, sizes.compare_max_pairs)
    if sizes.compare_self_seeds:
        figures["self"] = pb.self_comparison(sizes.compare_self_seeds, sizes.compare_self_max_pairs)
    pb.report(figures, ROOT / "results" / "bench")
    rows = [
        {
            "section": "compare",
            "setup": f"diff {row['true_diff']:+g} {row['design']}",
            "sims": round(row["mean_sims"]),
        }
        | ({"target": row["target"]} if "target" in row else {})
        for row in figures["rows"]
    ]
    if "self" in figures:
        own = figures["self"]
        rows.append(
            {
                "section": "compare",
                "setup": f"self vs self, {own['seeds']} seeds, local API",
                "sims": own["simulations"],
                "wall_secs": own["secs"],
                "target": own["target"],
            }
        )
    return rows


RUNS: dict[str, Callable[[Sizes], list[Row]]] = {
    "saturation": saturation,
    "overhead": overhead,
    "scale": scale,
    "memory": memory,
    "agent-testing": agent_testing,
    "shards": shards,
    "verdicts": verdicts,
    "compare": compare,
}


# ---------------------------------------------------------------------------- output

COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("section", "section", "{}"),
    ("setup", "setup", "{}"),
    ("sims", "sims", "{:,}"),
    ("in_flight_ratio", "in-flight/quota", "{:.3f}"),
    ("throughput_ratio", "thru/bound", "{:.3f}"),
    ("rejected_share", "429 share", "{:.1%}"),
    ("rounds", "rounds", "{}"),
    ("cpu_ms_per_sim", "cpu ms/sim", "{:.2f}"),
    ("cpu_ms_per_sim_spread", "spread", "{:.1%}"),
    ("steady_cpu_ms_per_sim", "steady ms/sim", "{:.2f}"),
    ("steady_cpu_ms_per_sim_spread", "spread", "{:.1%}"),
    ("vs_naive", "x naive", "{:.1f}"),
    ("vs_floor", "/ floor", "{:.2f}"),
    ("vs_floor_spread", "spread", "{:.1%}"),
    ("vs_floor_run", "/ floor run", "{:.2f}"),
    ("vs_runner", "/ runner", "{:.3f}"),
    ("vs_runner_spread", "spread", "{:.1%}"),
    ("peak_rss_run_mb", "RSS run MB", "{:.0f}"),
    ("peak_rss_mb", "RSS peak MB", "{:.0f}"),
    ("server_cpu_share", "server cpu", "{:.0%}"),
    ("wall_secs", "wall s", "{:.1f}"),
    ("requests_per_sim", "vendor req/sim", "{:.3f}"),
    ("lag_p50", "result lag p50 s", "{:.1f}"),
    ("lag_p95", "p95 s", "{:.1f}"),
    ("invocations", "invocations", "{}"),
    ("decided_p50", "verdict known p50 s", "{:.0f}"),
    ("decided_p95", "p95 s", "{:.0f}"),
    ("ran_past_per_case", "repeats past verdict", "{:.1f}"),
    ("target", "target", "{}"),
)


def table(rows: list[Row]) -> str:
    return render_table(COLUMNS, rows)


def commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    )
    return done.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny sizes: checks the code paths")
    size.add_argument("--full", action="store_true", help="the issue's sizes (slower)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    args = parser.parse_args(argv)
    preset = "quick" if args.quick else "full" if args.full else "default"
    sizes = PRESETS[preset]
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    rows: list[Row] = []
    with client_cores() as placement:
        for section in sections:
            print(f"bench: {section} ...", file=sys.stderr, flush=True)
            rows += RUNS[section](sizes)
    load_after = os.getloadavg()[0]
    meta = {
        "commit": commit(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "preset": preset,
        "sizes": asdict(sizes),
        "bench_secs": round(time.perf_counter() - started, 1),
        "placement": placement,
        # the machine's 1-minute load average before and after: others' work shows in it
        "load": [round(load_before, 2), round(load_after, 2)],
    }
    print(
        f"bench ({preset}): {meta['cores']} cores, Python {meta['python']}, commit "
        f"{meta['commit']}, {meta['bench_secs']} s; {placement}; load average "
        f"{load_before:.2f} before, {load_after:.2f} after"
    )
    print(table(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    document = json.dumps({**meta, "rows": rows}, indent=2) + "\n"
    stamp = datetime.fromisoformat(str(meta["when"])).strftime("%Y%m%dT%H%M%SZ")
    (args.out / f"{stamp}-{meta['commit']}-{preset}.json").write_text(document)
    (args.out / "latest.json").write_text(document)
    print(f"figures: {args.out / 'latest.json'}")
    return 0
