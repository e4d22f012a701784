"""The plan of a session's jobs: which jobs of the sweep it runs (``--limit``, a shard's share,
what earlier sessions finished) and how many, before anything is sent.

Streams the expansion (``runner.jobs.iter_jobs``) and never holds a sweep in memory. What
order the chosen jobs go out in, and whether all of them do, is the planner's
(``runner.planner``); ``merge`` reads the same plan to check a sharded run's coverage.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from runner.backends.agent_testing import repeat_window, test_spec, wave_bounds
from runner.config import Config
from runner.config.selection import agent_names
from runner.jobs import Job, case_key, count_jobs, iter_jobs
from runner.shard import Shard, shard_of, split_groups
from runner.verdicts import repeats_to_verdict

DEFAULT_RESULTS = Path("results")


def run_name(cfg: Config, override: str | None = None) -> str:
    """The run directory's name under the results root: ``--name``, ``run.name``, else the
    config file's stem."""
    return override or cfg.run.name or cfg.source_path.stem


def _limited(cfg: Config, limit: int | None) -> Iterator[Job]:
    """The sweep's jobs the session may run: those ``cfg.selection`` picks (``run --agent``,
    ``--scenario``, ``--tag``), then the first ``limit`` of them. Keys stay the sweep's."""
    jobs: Iterator[Job] = iter_jobs(cfg)
    selection = cfg.selection
    if selection:
        wanted = {a.variant_name: selection.agent(agent_names(a)) for a in cfg.agents}
        jobs = (
            job
            for job in jobs
            if wanted[job.agent_id if job.branch_id is None else f"{job.agent_id}@{job.branch_id}"]
            and selection.scenario(job.scenario_id, job.tags)
        )
    return itertools.islice(jobs, limit) if limit is not None else jobs


def verdict_waves(cfg: Config) -> tuple[int, ...] | None:
    """Agent-testing with ``run.repeats: {until: verdict}``: the repeat indices where a case's
    waves start, then ``max`` (``agent_testing.wave_bounds``). The first wave is ``min``, or
    the fewest repeats that could settle a case when more (fewer settle nothing), the next
    ones double the repeats so far. None for other runs."""
    seq = cfg.run.sequential
    if cfg.target.backend != "agent-testing" or seq is None or seq.until != "verdict":
        return None
    rule = seq.rule_for()
    first = max(rule.min_repeats, repeats_to_verdict(rule, []) or 1)
    return wave_bounds(first, rule.max_repeats)


def split_unit(cfg: Config) -> Callable[[Job], str]:
    """What agent-testing keeps in one shard: a test and a window of its repeats, for every
    agent and variant. That holds each invocation group whole (agent, variant, test, repeat
    window: its repeats share one invocation, which two shards would each start and pay
    for), and each test is created by one shard only (a test serves every agent; two shards
    creating it at once would make two). With sequential verdicts a test's every repeat: a
    case's repeats stay in the one shard that decides when they stop."""
    options, repeats = cfg.target.agent_testing, cfg.run.max_repeats
    whole = verdict_waves(cfg) is not None

    def unit(job: Job) -> str:
        if whole:
            return test_spec(job, options).hash
        start, count = repeat_window(job.repeat, repeats)
        return f"{test_spec(job, options).hash}:{start}:{count}"

    return unit


def shard_homes(cfg: Config, limit: int | None, count: int) -> Callable[[Job], int]:
    """The shard of ``count`` that runs a job. Simulations: a hash of the job's key; with
    sequential repeats (``run.repeats`` a mapping) a hash of its case (``jobs.case_key``), so
    one shard holds all of a case's repeats and decides when they stop. Agent-testing: whole
    ``split_unit``s, balanced over the shards by their jobs
    (``split_groups``; one pass over the sweep first)."""
    if count == 1:
        return lambda job: 0
    if cfg.target.backend != "agent-testing":
        if cfg.run.sequential is not None:
            return lambda job: shard_of(case_key(job), count)
        return lambda job: shard_of(job.key, count)
    unit_of = split_unit(cfg)
    homes = split_groups(Counter(unit_of(job) for job in _limited(cfg, limit)), count)
    return lambda job: homes[unit_of(job)]


def sweep_jobs(cfg: Config, limit: int | None, shard: Shard | None = None) -> Iterator[Job]:
    """The sweep's jobs (the first ``limit``), only the shard's own when sharded."""
    jobs = _limited(cfg, limit)
    if shard is not None and shard.count > 1:
        home = shard_homes(cfg, limit, shard.count)
        jobs = (job for job in jobs if home(job) == shard.index)
    return jobs


def select_jobs(
    cfg: Config, limit: int | None, done: set[str], shard: Shard | None = None
) -> Iterator[Job]:
    """The jobs this session sends: the sweep's (or the shard's), less those ``done``."""
    return (job for job in sweep_jobs(cfg, limit, shard) if job.key not in done)


def sweep_size(cfg: Config, limit: int | None) -> int:
    """How many jobs the sweep has (the first ``limit``), without building one."""
    if cfg.selection:  # a part of the sweep: counted by walking it
        return sum(1 for _ in _limited(cfg, limit))
    total = count_jobs(cfg)
    return total if limit is None else min(total, limit)


def planned_total(
    cfg: Config, limit: int | None, done: set[str], shard: Shard | None = None
) -> tuple[int, int]:
    """(jobs to run, jobs skipped as already done). Counts without keeping jobs in memory."""
    if shard is not None and shard.count > 1:
        total = skipped = 0
        for job in sweep_jobs(cfg, limit, shard):
            total += 1
            skipped += job.key in done
        return total - skipped, skipped
    total = sweep_size(cfg, limit)
    if not done:
        return total, 0
    skipped = sum(1 for job in _limited(cfg, limit) if job.key in done)
    return total - skipped, skipped
