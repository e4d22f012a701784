"""A ``compare:`` run's planner, built from the config and the outcomes already stored (the
shell side of ``runner.pairing``): the sweep's cases of the two arms, the rule, ``run.seed``,
and each stored job's outcome and finishing time, so a resumed run continues the same
comparison (issue 26)."""

from __future__ import annotations

import itertools
from pathlib import Path

import polars as pl

from runner.backends.agent_testing import wave_bounds
from runner.config import Config
from runner.jobs import iter_jobs
from runner.paired import NonInferiority
from runner.paired_runs import job_outcomes
from runner.pairing import PairPlanner, Stored, pair_cases
from runner.store import load_run


def stored_outcomes(run_dir: Path, done: set[str], of: str | list[str]) -> dict[str, Stored]:
    """The outcome and finishing time (seconds since the epoch) of each ``done`` job."""
    if not done:
        return {}
    run = load_run(run_dir)
    jobs, criteria = run.jobs, run.criteria
    assert isinstance(jobs, pl.DataFrame) and isinstance(criteria, pl.DataFrame)
    jobs = jobs.filter(pl.col("job_key").is_in(list(done)))
    rows = job_outcomes(jobs, criteria, of).select(
        "job_key", "outcome", pl.col("finished_at").dt.epoch("ms").alias("ms")
    )
    return {key: Stored(outcome, (ms or 0) / 1000) for key, outcome, ms in rows.iter_rows()}


def compare_planner(cfg: Config, run_dir: Path, done: set[str]) -> PairPlanner:
    """The pairing planner of ``cfg.compare`` over the sweep's cases (``ValueError``, one
    line, when the arms share none or are ambiguous)."""
    settings = cfg.compare
    if settings is None:
        raise ValueError("compare: not set")
    first = itertools.takewhile(lambda job: job.repeat == 0, iter_jobs(cfg))
    cases = pair_cases(first, settings.arm("baseline"), settings.arm("candidate"))
    of = settings.of
    rule = settings.rule()
    in_flight = cfg.run.concurrency if isinstance(cfg.run.concurrency, int) else None
    return PairPlanner(
        cases,
        rule,
        of,
        seed=cfg.run.seed,
        done=stored_outcomes(run_dir, done, of),
        in_flight=in_flight,
        waves=pair_waves(rule, in_flight) if cfg.target.backend == "agent-testing" else None,
    )


def pair_waves(rule: NonInferiority, in_flight: int | None) -> tuple[int, ...]:
    """Agent-testing: where the waves of pairs start. The first holds the fewest pairs that
    could decide (all wins or all losses), the next ones twice the pairs so far, each at most
    half the run's concurrency (a wave's jobs all wait in a slot while its invocations run:
    more would run in two rounds)."""
    first = next(
        (
            n
            for n in range(1, rule.max_pairs + 1)
            if rule.decide([-1] * n).stop or rule.decide([1] * n).stop
        ),
        rule.max_pairs,
    )
    cap = max(1, in_flight // 2) if in_flight is not None else rule.max_pairs
    return wave_bounds(min(first, cap), rule.max_pairs, cap=cap)


def compare_counts(cfg: Config, run_dir: Path, done: set[str]) -> tuple[int, int]:
    """(jobs this session may run at most, jobs of the comparison already done)."""
    planner = compare_planner(cfg, run_dir, done)
    if planner.decision.stop:
        return 0, 2 * planner.resumed_pairs
    stored = sum(job.key in done for pair in planner.pairs for job in pair)
    return 2 * cfg.compare.max_pairs - stored if cfg.compare else 0, stored
