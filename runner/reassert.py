"""Re-evaluate a config's ``assert:`` checks over a finished run's stored transcripts, offline.

``python -m runner assert RUN [--config CONFIG]``: a team adds a check and sees it over last
week's runs; no request is sent, nothing is paid. The stored ``messages`` are the transcripts.

Each committed part of the run (``parts/criteria/<session>-<seq>.parquet``) gets its assertion
rows replaced: the judge's rows are kept as they are, the earlier assertion rows (``source:
assert``) dropped, and the config's assertions evaluated on the ok jobs of that part's
``messages``. The rows stay in the part that holds their job (the store's rule for which rows a
job keeps), so a re-run job, a resumed run and compaction read them as any criteria rows;
running it twice gives the same table. A finalized run's ``criteria.parquet`` is rebuilt from
the parts. The run's lock is held throughout: never beside a runner writing the same run.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from runner.assertions import Assertion, agreement, assertion_rows, is_assert, turns_from_rows
from runner.config import Config, ConfigError, load_config
from runner.config.assertions import build_all
from runner.config.scenarios import iter_scenarios
from runner.schema import CRITERIA
from runner.store import (
    PARTS,
    TMP_PREFIX,
    RunLock,
    StoreError,
    load_run,
    read_manifest,
    scan_parts,
)

Checks = Callable[[str], Sequence[Assertion]]
"""A scenario id -> the assertions its jobs are checked by."""


@dataclass
class Reasserted:
    """What ``reassert`` did (for the command's output)."""

    jobs: int = 0
    """Ok jobs whose transcripts were checked."""
    rows: int = 0
    """Assertion rows written."""
    replaced: int = 0
    """Earlier assertion rows dropped (by the rows written)."""
    parts_rewritten: int = 0
    unknown_scenarios: set[str] = field(default_factory=set)
    """Scenarios of the run the config no longer has: only the config-level checks ran."""
    results: dict[str, Counter[str]] = field(default_factory=dict)
    """Per assertion id: how many jobs got each result."""


def scenario_checks(cfg: Config) -> tuple[Checks, Callable[[str], bool]]:
    """The config's assertions per scenario id (the config's, then the scenario's own), and
    whether the config has a scenario."""
    by_scenario = {spec.id: build_all(cfg.assert_, spec.assert_) for spec in iter_scenarios(cfg)}
    common = build_all(cfg.assert_)
    return (lambda sid: by_scenario.get(sid, common)), (lambda sid: sid in by_scenario)


def _read(path: Path, schema: pl.Schema) -> pl.DataFrame:
    """A part with exactly ``schema`` (columns an older runner did not write read as null)."""
    return (
        pl.scan_parquet(path, schema=schema, missing_columns="insert", extra_columns="ignore")
        .select([pl.col(n).cast(t) for n, t in schema.items()])
        .collect()
    )


def _write(frame: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f"{TMP_PREFIX}reassert-{path.name}")
    frame.write_parquet(tmp, statistics=True)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


_MESSAGE_COLUMNS = (
    "job_key",
    "index",
    "role",
    "message",
    "time_in_call_secs",
    "tool_calls",
    "tool_results",
    "interrupted",
)


def _part_rows(
    run_dir: Path, name: str, checks: Checks, known: Callable[[str], bool], done: Reasserted
) -> list[dict[str, Any]]:
    """The assertion rows of one part's ok jobs."""
    jobs = pl.read_parquet(run_dir / PARTS / "jobs" / name, columns=["job_key", "scenario_id"])
    scenario = dict(zip(jobs["job_key"], jobs["scenario_id"], strict=True))
    messages = pl.read_parquet(run_dir / PARTS / "messages" / name)
    present = [c for c in _MESSAGE_COLUMNS if c in messages.columns]
    by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in messages.select(present).iter_rows(named=True):
        by_job[row["job_key"]].append(row)
    rows: list[dict[str, Any]] = []
    for key, messages_of in by_job.items():
        sid = scenario.get(key)
        if sid is None:
            continue  # not a job of this flush (never: child rows come with their job)
        if not known(sid):
            done.unknown_scenarios.add(sid)
        mine = assertion_rows(key, turns_from_rows(messages_of), checks(sid))
        done.jobs += 1
        for row in mine:
            done.results.setdefault(row["criterion_id"], Counter())[row["result"]] += 1
        rows.extend(mine)
    return rows


def _merged(judged: pl.DataFrame, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """The judge's rows with each job's assertion rows right after its own, as a run records
    them (a job without judge rows: at the end); an unchanged config rewrites nothing."""
    if not rows:
        return judged
    added = pl.DataFrame(rows, schema=CRITERIA.schema, orient="row")
    last = judged.with_row_index("_pos").group_by("job_key").agg(pl.col("_pos").max())
    placed = (
        added.with_row_index("_sub")
        .join(last, on="job_key", how="left", maintain_order="left")
        .with_columns(pl.col("_pos").fill_null(judged.height))
    )
    return (
        pl.concat(
            [
                judged.with_row_index("_pos").with_columns(_sub=pl.lit(-1, pl.Int64)),
                placed.with_columns(pl.col("_sub").cast(pl.Int64)),
            ],
            how="diagonal_relaxed",
        )
        .sort("_pos", "_sub")
        .select(CRITERIA.schema.names())
    )


def reassert(run_dir: Path, checks: Checks, known: Callable[[str], bool] = bool) -> Reasserted:
    """Replace every assertion row of the run by ``checks`` evaluated on its stored
    transcripts (see the module doc); judge rows are untouched. Raises ``StoreError``."""
    done = Reasserted()
    committed = sorted(
        p.name
        for p in (run_dir / PARTS / "jobs").glob("*.parquet")
        if not p.name.startswith(TMP_PREFIX)
    )
    if not committed:
        raise StoreError(f"{run_dir} has no stored jobs (no parts/jobs/*.parquet)")
    with RunLock(run_dir):
        for name in committed:
            path = run_dir / PARTS / "criteria" / name
            if not (run_dir / PARTS / "messages" / name).exists():
                continue
            old = _read(path, CRITERIA.schema) if path.exists() else CRITERIA.schema.to_frame()
            mine = is_assert(pl.col("source"))
            earlier = old.filter(mine)
            rows = _part_rows(run_dir, name, checks, known, done)
            new = _merged(old.filter(~mine), rows)
            done.rows += len(rows)
            done.replaced += earlier.height
            if not new.equals(old):
                _write(new, path)
                done.parts_rewritten += 1
        manifest = read_manifest(run_dir)
        final = run_dir / CRITERIA.file
        if manifest is not None and manifest.finalized and final.exists():
            tmp = final.with_name(f"{TMP_PREFIX}reassert-{final.name}")
            scan_parts(run_dir)["criteria"].sink_parquet(tmp)
            os.replace(tmp, final)
    return done


def _config_of(run_dir: Path, config: Path | None) -> Path:
    if config is not None:
        return config
    manifest = read_manifest(run_dir)
    if manifest is None:
        raise StoreError(f"{run_dir} is not a run directory (no manifest.json)")
    path = Path(manifest.config_path)
    if not path.is_file():
        raise StoreError(f"the run's config {path} is not here; give it with --config CONFIG")
    return path


def assert_command(run_dir: Path, config: Path | None = None) -> list[str]:
    """``runner assert RUN [--config CONFIG]``: re-assert, then the lines to print. Raises
    ``StoreError`` or ``ConfigError`` with one line."""
    if not run_dir.is_dir():
        raise StoreError(f"no run directory at {run_dir}")
    path = _config_of(run_dir, config)
    cfg = load_config(path)
    checks, known = scenario_checks(cfg)
    done = reassert(run_dir, checks, known)
    lines = [
        f"{run_dir}: {done.jobs} jobs checked against the assertions of {path}"
        " (stored transcripts; nothing sent)",
        f"criteria: {done.rows} assertion rows written, {done.replaced} earlier ones replaced,"
        f" {done.parts_rewritten} parts rewritten",
    ]
    width = max((len(a) for a in done.results), default=0)
    for assertion_id, counts in done.results.items():
        lines.append(
            f"  {assertion_id:<{width}}  success {counts['success']}"
            f"  failure {counts['failure']}  unknown {counts['unknown']}"
        )
    if done.unknown_scenarios:
        missing = ", ".join(sorted(done.unknown_scenarios)[:5])
        lines.append(f"  scenarios not in the config (config-level checks only): {missing}")
    lines += agreement_lines(run_dir, _mirrors(cfg))
    return lines


def _mirrors(cfg: Config) -> dict[str, str]:
    out = {a.id: a.mirrors for a in cfg.assert_ if a.mirrors}
    for spec in iter_scenarios(cfg):
        out.update({a.id: a.mirrors for a in spec.assert_ if a.mirrors})
    return out


def agreement_lines(run_dir: Path, mirrors: Mapping[str, str]) -> list[str]:
    """One line per assertion with ``mirrors``: its agreement with the judge over the run."""
    if not mirrors:
        return []
    criteria = load_run(run_dir, lazy=True).criteria.lazy().collect()
    lines = ["agreement with the judge:"]
    for a in agreement(criteria, mirrors):
        if a.rate is None:
            lines.append(f"  {a.assertion_id} ~ {a.criterion_id}: no job judged by both")
            continue
        lines.append(
            f"  {a.assertion_id} ~ {a.criterion_id}: agree on {a.agree} of {a.compared} jobs"
            f" ({a.rate:.0%}); only the assertion passed {a.assert_only}, only the judge"
            f" {a.judge_only}"
        )
    return lines


def report_agreement(run_dir: Path) -> list[str]:
    """The agreement lines ``report`` prints: for each assertion of the run's config that
    ``mirrors`` a judged criterion (none when the run's config is no longer on disk)."""
    try:
        cfg = load_config(_config_of(run_dir, None))
    except (ConfigError, StoreError, OSError):
        return []
    return agreement_lines(run_dir, _mirrors(cfg))
