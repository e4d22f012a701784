"""``merge``: a sharded run's coverage check, then its final tables and ``manifest.json``.

Shards write part files into one run directory and never its final tables (another shard may
be reading them). ``merge`` runs once no shard does (it takes the run's lock exclusively):
it folds any journal a killed shard left, checks that every job of the sweep has a result
(``ok`` or ``error``) and names the ones that have none; when none is missing it compacts the
parts into the final tables and writes ``manifest.json`` with every shard's sessions. Running
it again rebuilds the same tables: it is idempotent.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runner.config import Config, config_hash, load_config
from runner.jobs import Job
from runner.journal import recover
from runner.manifest import Manifest
from runner.plan import run_name, shard_homes, sweep_jobs
from runner.planner import UntilVerdict
from runner.store import (
    RunLock,
    StoreError,
    compact,
    done_job_keys,
    job_totals,
    read_manifest,
    shard_manifests,
    stored_outcomes,
    write_manifest,
)
from runner.sweep import write_verdicts


@dataclass
class Missing:
    """A job of the sweep that no shard has finished."""

    key: str
    agent_id: str
    scenario_id: str
    repeat: int
    matrix: tuple[tuple[str, str], ...]
    shard: int | None
    """Its shard of the run's shard count (None when the run was not sharded)."""


@dataclass
class MergeResult:
    run_dir: Path
    planned: int
    finished: int
    missing_count: int
    missing: list[Missing] = field(default_factory=list)
    """The first missing jobs (at most ``show`` of them)."""
    missing_by_shard: dict[int, int] = field(default_factory=dict)
    recovered: int = 0
    table_counts: dict[str, int] = field(default_factory=dict)
    shard_count: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.missing_count == 0


def sweep_config(run_dir: Path, config: Path | None) -> tuple[Config, list[str]]:
    """The sweep whose coverage to check: ``config`` when given, else the config the shards
    recorded (an absolute path). A config whose hash differs from the shards' is used with a
    warning (its job list is what is checked)."""
    manifest = read_manifest(run_dir)
    if manifest is None:
        raise StoreError(f"{run_dir} is not a run directory (no manifest.json nor shards/)")
    path = config or Path(manifest.config_path)
    if not path.is_file():
        raise StoreError(f"the run's config {path} is not here; give it with --config CONFIG")
    cfg = load_config(path)
    if run_name(cfg) != manifest.run_name:
        # the shards ran under ``--name`` (this directory's name): the override they ran
        # with, applied again, is not a change of the config
        cfg = load_config(path, {"run.name": manifest.run_name})
    warnings = []
    if config_hash(cfg) != manifest.config_hash:
        warnings.append(
            f"{path} differs from the config the run's latest session used; "
            "checking the jobs it describes"
        )
    return cfg, warnings


def _shard_count(run_dir: Path) -> int | None:
    counts = {int(m.shard.split("/")[1]) for m in shard_manifests(run_dir) if m.shard}
    return max(counts) if counts else None


def _limit(run_dir: Path) -> int | None:
    limits = [m.limit for m in shard_manifests(run_dir)]
    return None if not limits or None in limits else max(x for x in limits if x is not None)


def _covered(cfg: Config, limit: int | None, run_dir: Path, finished: set[str]) -> Iterator[Job]:
    """The jobs a complete run has: every job of the sweep; with ``run.repeats: {until:
    verdict}`` those finished plus the next repeat of each case whose rule has not stopped
    (the others were never needed)."""
    seq = cfg.run.sequential
    if seq is None or seq.until != "verdict":
        yield from sweep_jobs(cfg, limit)
        return
    yield from (job for job in sweep_jobs(cfg, limit) if job.key in finished)
    planner = UntilVerdict(
        sweep_jobs(cfg, limit),
        seq.rule_for(),
        None if seq.of == "all" else seq.of,
        stored_outcomes(run_dir, finished),
    )
    yield from planner.needed()


def merge(
    run_dir: Path,
    *,
    config: Path | None = None,
    limit: int | None = None,
    show: int = 20,
) -> MergeResult:
    """Check coverage and, when every job has a result, build the tables (see the module)."""
    if not run_dir.is_dir():
        raise StoreError(f"no run directory at {run_dir}")
    with RunLock(run_dir):
        recovered = recover(run_dir)
        cfg, warnings = sweep_config(run_dir, config)
        limit = limit if limit is not None else _limit(run_dir)
        count = _shard_count(run_dir)
        finished = done_job_keys(run_dir, include_errors=True)
        result = MergeResult(
            run_dir, 0, 0, 0, recovered=recovered, shard_count=count, warnings=warnings
        )
        missing: list[Job] = []
        home_of = shard_homes(cfg, limit, count) if count else None
        for job in _covered(cfg, limit, run_dir, finished):
            result.planned += 1
            if job.key in finished:
                result.finished += 1
                continue
            result.missing_count += 1
            home = home_of(job) if home_of else None
            if home is not None:
                result.missing_by_shard[home] = result.missing_by_shard.get(home, 0) + 1
            if len(missing) < show:
                missing.append(job)
        result.missing = [
            Missing(
                j.key,
                j.agent_id,
                j.scenario_id,
                j.repeat,
                j.matrix,
                home_of(j) if home_of else None,
            )
            for j in itertools.islice(missing, show)
        ]
        if not result.complete:
            return result
        axes = tuple(cfg.matrix)
        result.table_counts = compact(run_dir, axes)
        write_verdicts(cfg, run_dir)
        manifest = read_manifest(run_dir)
        assert manifest is not None  # sweep_config read it
        totals = job_totals(run_dir)
        merged = Manifest.model_validate(
            {
                **manifest.model_dump(),
                "finalized": True,
                "counts": {**result.table_counts, **totals},
                "shard": None,
                "limit": limit,
            }
        )
        write_manifest(run_dir, merged)
        return result
