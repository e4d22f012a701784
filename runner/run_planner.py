"""Which planner a session runs (``runner.planner``), and the invocation windows it implies.

Every job left (``Walk``); the pairing planner of a ``compare:`` block; or the verdict planner
of ``run.repeats: {until: verdict}``, fed the outcomes earlier sessions stored so each case
continues where it stood. One choice for the session (``runner.sweep``) and for the estimate
printed before it (``runner.costing``), so both see the same plan.
"""

from __future__ import annotations

from pathlib import Path

from runner.backends.agent_testing import Window, WindowOf, wave_windows
from runner.comparing import compare_planner
from runner.config import Config
from runner.pairing import PairPlanner
from runner.plan import select_jobs, sweep_jobs, verdict_waves
from runner.planner import Planner, UntilVerdict, Walk
from runner.shard import Shard
from runner.store import stored_outcomes


def stops_early(cfg: Config) -> bool:
    """A run whose planner decides from outcomes how much to send (a comparison, or repeats
    until a verdict), rather than walking every job."""
    seq = cfg.run.sequential
    return cfg.compare is not None or (seq is not None and seq.until == "verdict")


def run_planner(
    cfg: Config, run_dir: Path, done: set[str], limit: int | None, shard: Shard | None
) -> Planner:
    """The planner of a session over what ``run_dir`` stores (``done``: its finished keys)."""
    if cfg.compare is not None:
        return compare_planner(cfg, run_dir, done)
    seq = cfg.run.sequential
    if seq is None or seq.until != "verdict":
        return Walk(select_jobs(cfg, limit, done, shard))
    return UntilVerdict(
        sweep_jobs(cfg, limit, shard),
        seq.rule_for(),
        None if seq.of == "all" else seq.of,
        stored_outcomes(run_dir, done) if run_dir.exists() else {},
        closest_first=cfg.run.budget is not None,
        waves=verdict_waves(cfg),
    )


def planner_windows(planner: Planner) -> WindowOf | None:
    """Agent-testing: the invocation windows of a planner that hands out waves (the verdict
    planner's repeat waves, the pairing planner's waves of pairs); None: the backend's own
    (every repeat of a test in one invocation)."""
    if isinstance(planner, UntilVerdict) and planner.waves is not None:
        return wave_windows(planner.waves)
    if isinstance(planner, PairPlanner) and planner.waves is not None:
        window_of = planner.window_of
        return lambda job: Window(*window_of(job))
    return None
