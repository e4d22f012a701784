"""One measured load run in a process of its own: ``python -m bench.worker '<spec JSON>'``.

Prints one JSON line of figures. CPU time is counted from just before the run to just after
it (imports and start-up excluded), and again over the run's steady middle (``Window``: from
the end of the first tenth of its simulations, or of the first ``concurrency``, to as many
before its end, so neither the set-up, the ramps up and down nor the compaction is in it);
peak RSS is the process's whole life, as a user sees it.
The runner runs as a user runs it (``runner.run``: engine, client, Parquet parts, compaction)
against the ``url`` given; the naive baseline is ``bench.naive``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

AGENT = "agent_support"
PERSONA = (
    "You want to know where your order A-10234 is. You also want a refund for a broken kettle. "
    "You need to change your address. You want to cancel a subscription. You ask about opening "
    "hours. You want to book an appointment."
)
"""Six goals: the local API's conversation reaches any ``new_turns_limit`` up to 20."""
FIRST_MESSAGE = "My order never arrived."


def request_body(new_turns_limit: int) -> dict[str, Any]:
    """The body every job of a run sends (the runner's config builds the same one)."""
    return {
        "simulation_specification": {
            "simulated_user_config": {
                "first_message": FIRST_MESSAGE,
                "prompt": {"prompt": PERSONA},
            }
        },
        "new_turns_limit": new_turns_limit,
    }


STEADY_CUT = 0.1
"""The share of a run's simulations left out of its steady window at each end."""


class Window:
    """The CPU clock stamped as the ``lo``-th and the ``hi``-th simulation of a run ends: the
    marginal CPU per simulation between them leaves out what a run pays once (set-up, the
    first connections, the last flush and the compaction) and the ramps at either end: at
    least the first ``concurrency`` simulations (started together, on new connections) and the
    last ``concurrency`` (ending with fewer and fewer in flight), but never more than a
    quarter at each end. A middle shorter than two generations of ``concurrency``
    simulations gives no figure: the first generation's simulations end nearly together, so
    a window inside it counts their endings and little of their streams. Every thread of the
    process is counted (the runner's Parquet writer included)."""

    def __init__(self, jobs: int, concurrency: int = 1) -> None:
        cut = max(min(max(int(jobs * STEADY_CUT), concurrency), jobs // 4), 1)
        self.lo, self.hi = cut, jobs - cut
        self.concurrency = concurrency
        self.ended = 0
        self.stamps: dict[int, float] = {}

    def __call__(self) -> None:
        self.ended += 1
        if self.ended == self.lo or self.ended == self.hi:
            self.stamps[self.ended] = time.process_time()

    def figures(self) -> dict[str, Any]:
        if self.hi - self.lo < max(2 * self.concurrency, 1) or len(self.stamps) < 2:
            return {}
        cpu = self.stamps[self.hi] - self.stamps[self.lo]
        return {"steady_cpu_ms_per_sim": cpu * 1000 / (self.hi - self.lo)}


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


CASE_REPEATS = 20
"""Repeats per case when a run is split into cases (``spec["cases"]``): a sweep's usual shape."""

ASSERTIONS: list[dict[str, Any]] = [
    {"id": "refund_called", "tool_called": "issue_refund", "with": {"order_id": "A-10234"}},
    {"id": "no_card_numbers", "agent_never_matches": r"\b(?:\d[ -]?){13,16}\b"},
    {"id": "short_call", "max_turns": 8},
    {"id": "quotes_eta", "agent_says": "3 (business )?days", "after_tool": "lookup_order"},
    {"id": "fast_first_reply", "first_agent_message_within_secs": 2},
]
"""Issue 30's five assertions, one of each kind (``spec["asserts"]``)."""


def repeats(spec: dict[str, Any], per_case: int) -> int | dict[str, Any]:
    """``run.repeats``: fixed, or ``until: verdict`` with ``min`` = ``max`` (``spec["until"]``),
    so every case runs all its repeats and the run matches a fixed one job for job and in
    flight, while the planner judges every case at each of its outcomes as in any verdict run."""
    if spec.get("until") != "verdict":
        return per_case
    return {
        "max": per_case,
        "min": per_case,
        "until": "verdict",
        "pass_rate": 0.8,
        "alpha": 0.05,
        "rule": "anytime",
    }


def sweep_config(spec: dict[str, Any]) -> dict[str, Any]:
    """The runner's config for ``spec``: ``jobs`` simulations of the one scenario, as
    ``spec["cases"]`` cases (a matrix axis the local API ignores, so every request asks for the
    same conversation as the floor's) of ``jobs / cases`` repeats (default: one case)."""
    cases = spec.get("cases", 1)
    if spec["jobs"] % cases:
        raise ValueError(f"{spec['jobs']} jobs do not split into {cases} cases")
    matrix = {"user_dynamic_variables.case": [f"c{i:04d}" for i in range(cases)]}
    return {
        "target": {
            "base_url": spec["url"],
            "timeouts": {"connect": 30, "first_byte": 120, "idle": 120, "total": 600},
        },
        "run": {
            "name": "bench",
            "concurrency": "auto" if spec["policy"] != "fixed" else spec["concurrency"],
            **({"max_concurrency": spec["cap"]} if spec["policy"] != "fixed" else {}),
            "new_turns_limit": spec["new_turns_limit"],
            "repeats": repeats(spec, spec["jobs"] // cases),
            "retry": {"max_attempts": 8, "backoff_base": 0.05, "backoff_cap": 1.0, "jitter": 0.05},
            "circuit_breaker": 0,
        },
        "agents": [{"id": AGENT}],
        "scenarios": [{"id": "six_goals", "first_message": FIRST_MESSAGE, "prompt": PERSONA}],
        **({"matrix": matrix} if cases > 1 else {}),
        **({"assert": ASSERTIONS[: spec["asserts"]]} if spec.get("asserts") else {}),
    }


@contextlib.contextmanager
def variant(
    spec: dict[str, Any], seen: dict[str, float], window: Window | None = None
) -> Iterator[None]:
    """Bench-only seams in ``runner.sweep``, undone on exit: another concurrency policy in
    place of what ``auto`` builds, httpx's own transport, or no Parquet writes; the peak RSS
    reached before the end-of-run compaction, into ``seen["rss_before_compaction"]``; the CPU
    the assertions take to evaluate and shape their rows, into ``seen["assert_cpu_secs"]``; and
    ``window`` told of every job the sink takes."""
    import runner.sweep
    from bench.policies import HalveOn429
    from runner.adaptive import AdaptiveLimit

    saved = (
        runner.sweep.concurrency_policy,
        runner.sweep.make_http_client,
        runner.sweep.JournaledParts,
        runner.sweep.compact,
    )

    def compact(*args: Any, **kwargs: Any) -> Any:
        seen["rss_before_compaction"] = peak_rss_mb()
        return saved[3](*args, **kwargs)

    runner.sweep.compact = compact
    import runner.outcome

    add_asserts = runner.outcome.add_assert_columns
    if spec.get("asserts"):  # the assertions' own CPU, on the thread that runs them

        def timed_asserts(columns: Any, outcome: Any) -> None:
            started = time.thread_time()
            add_asserts(columns, outcome)
            seen["assert_cpu_secs"] = seen.get("assert_cpu_secs", 0.0) + (
                time.thread_time() - started
            )

        runner.outcome.add_assert_columns = timed_asserts
    policy, cap = spec["policy"], spec.get("cap", 64)
    if policy == "aimd":
        runner.sweep.concurrency_policy = lambda cfg: HalveOn429(cap)
    elif policy == "auto-noheaders":
        runner.sweep.concurrency_policy = lambda cfg: AdaptiveLimit(cap, use_headers=False)
    if spec.get("store") is False:  # rows shaped, then discarded: the client path alone

        class Discard(runner.sweep.JournaledParts):
            def add(self, outcome: Any) -> None:
                self.batch.add(outcome)

            def write(self, sealed: Any) -> None:
                pass

        runner.sweep.JournaledParts = Discard  # type: ignore[misc]
    if window is not None:
        sink = runner.sweep.JournaledParts
        stamp: Window = window

        class Stamped(sink):  # type: ignore[valid-type,misc]
            def add(self, outcome: Any) -> None:
                super().add(outcome)
                stamp()

        runner.sweep.JournaledParts = Stamped  # type: ignore[misc]
    if spec.get("transport") == "httpx":
        make = saved[1]

        def httpx_client(*args: Any, **kwargs: Any) -> Any:
            base_url, api_key, timeouts, connections = args[:4]
            return make(base_url, api_key, timeouts, connections, "httpx")

        runner.sweep.make_http_client = httpx_client  # type: ignore[assignment]
    try:
        yield
    finally:
        runner.outcome.add_assert_columns = add_asserts
        (
            runner.sweep.concurrency_policy,
            runner.sweep.make_http_client,
            runner.sweep.JournaledParts,  # type: ignore[misc]
            runner.sweep.compact,
        ) = saved


def run_runner(spec: dict[str, Any]) -> dict[str, Any]:
    import polars as pl

    from bench.metrics import limit_trace, window_figures
    from runner.config import load_config
    from runner.sweep import run

    seen: dict[str, float] = {}
    window = Window(spec["jobs"], spec["concurrency"])
    with variant(spec, seen, window), tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(sweep_config(spec), sort_keys=False))
        cfg = load_config(path)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        report = run(cfg, results_root=Path(tmp) / "results", progress=False)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        rss = peak_rss_mb()  # before reading results back, which is not the run's cost
        c = report.counters
        figures: dict[str, Any] = {
            "sims": c.ok,
            "errors": c.errors,
            "cpu_ms_per_sim": cpu * 1000 / max(c.ok, 1),
            "wall_secs": wall,
            "peak_rss_mb": rss,
            "peak_rss_run_mb": seen.get("rss_before_compaction"),
            **(
                {"assert_ms_per_sim": seen["assert_cpu_secs"] * 1000 / max(c.ok, 1)}
                if "assert_cpu_secs" in seen
                else {}
            ),
            "peak_in_flight": c.peak_in_flight,
            **window.figures(),
        }
        if spec.get("quota"):
            attempts = pl.read_parquet(report.run_dir / "attempts.parquet")
            figures.update(window_figures(attempts, spec["quota"]))
            figures.update(limit_trace(attempts, spec["quota"]))
    return figures


def run_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    """``naive`` on asyncio's own loop, as a user writes it; ``floor`` on uvloop."""
    import aiohttp  # noqa: F401  (imported before the clock starts, like the runner's modules)
    import uvloop

    from bench.naive import run_naive, run_raw_aiohttp

    body = request_body(spec["new_turns_limit"])
    window = Window(spec["jobs"], spec["concurrency"])
    args = (spec["url"], AGENT, body, spec["jobs"], spec["concurrency"], window)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if spec["client"] == "floor":
        results = uvloop.run(run_raw_aiohttp(*args))
    else:
        results = asyncio.run(run_naive(*args))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    done = [r for r in results if r is not None]
    return {
        "sims": len(done),
        "errors": len(results) - len(done),
        "frames_per_sim": sum(len(r) for r in done) / max(len(done), 1),
        "cpu_ms_per_sim": cpu * 1000 / max(len(done), 1),
        "wall_secs": wall,
        "peak_rss_mb": peak_rss_mb(),
        **window.figures(),
    }


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    figures = run_runner(spec) if spec["client"] == "runner" else run_baseline(spec)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
