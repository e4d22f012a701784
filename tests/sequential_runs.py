"""Tiny run directories with sequential verdicts and a paired comparison, for the report's and
the viewer's tests: written as the runner writes them (``view_helpers.write_run``), the
``verdicts.parquet`` computed by the runner's own ``replay.verdict_table`` and a
``config.resolved.json`` holding the ``compare:`` block of a comparison run.

- ``seq_a`` / ``seq_b``: one agent, three scenarios, ``Anytime(0.8, 0.05, max 20)``; from A to
  B ``s1`` goes pass -> fail, ``s3`` undecided -> pass, ``s2`` stays fail.
- ``cmp``: a ``compare:`` run, ``support`` (baseline) against ``lite`` (candidate) on three
  scenarios, 12 repeats each; ``lite`` fails ``hard`` and ``mid`` often, so it ends worse.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
from view_helpers import T0, job_row, write_run

from runner.replay import verdict_table
from runner.verdicts import Anytime

RULE = Anytime(0.8, 0.05, 20)
COST = 0.01

P, F = "success", "failure"

SEQ_A: dict[tuple[str, str], list[str]] = {
    ("support", "s1"): [P] * 15,  # settled pass at 14, one ran past
    ("support", "s2"): [F, F],  # fail at 2
    ("support", "s3"): [P, F, P, P, P, F, P, P],  # open: a session ended first
}
SEQ_B: dict[tuple[str, str], list[str]] = {
    ("support", "s1"): [F, F],
    ("support", "s2"): [F, F],
    ("support", "s3"): [P] * 14,
}
CMP: dict[tuple[str, str], list[str]] = {
    ("support", "easy"): [P] * 12,
    ("lite", "easy"): [P] * 12,
    ("support", "hard"): [P] * 12,
    ("lite", "hard"): [F, P, F, F, P, F, F, F, P, F, F, F],
    ("support", "mid"): [P] * 12,
    ("lite", "mid"): [P, F, F, P, F, P, F, F, P, F, F, P],
}
COMPARE = {
    "baseline": "support",
    "candidate": "lite",
    "margin": 0.05,
    "alpha": 0.05,
    "max_pairs": 400,
    "of": "all",
    "error_as": "fail",
}


def write_cases(
    run_dir: Path,
    cases: Mapping[tuple[str, str], Sequence[str]],
    *,
    verdicts: bool = True,
    compare: Mapping[str, Any] | None = None,
) -> Path:
    """A finished run holding ``cases`` ((agent label, scenario) -> the one criterion's
    result per repeat, in repeat order); jobs finish repeat by repeat, each costing ``COST``."""
    jobs, criteria = [], []
    longest = max(len(v) for v in cases.values())
    i = 0
    for repeat in range(longest):
        for (agent, scenario), results in cases.items():
            if repeat >= len(results):
                continue
            key = f"{run_dir.name}-{agent}-{scenario}-{repeat}"
            jobs.append(
                job_row(
                    key,
                    i,
                    agent_id=f"agent_{agent}",
                    agent_label=agent,
                    scenario_id=scenario,
                    repeat=repeat,
                    cost_usd=COST,
                    finished_at=T0 + timedelta(seconds=i + 2),
                )
            )
            criteria.append({"job_key": key, "criterion_id": "resolved", "result": results[repeat]})
            i += 1
    write_run(run_dir, {"jobs": jobs, "criteria": criteria})
    if verdicts:
        table = verdict_table(
            pl.read_parquet(run_dir / "jobs.parquet"),
            pl.read_parquet(run_dir / "criteria.parquet"),
            RULE,
        )
        table.write_parquet(run_dir / "verdicts.parquet")
    if compare is not None:
        (run_dir / "config.resolved.json").write_text(json.dumps({"compare": dict(compare)}))
    return run_dir


def sequential_runs(root: Path) -> dict[str, Path]:
    """``seq_a``, ``seq_b``, ``cmp`` and ``plain`` (``seq_a``'s jobs without verdicts) under
    ``root``."""
    return {
        "seq_a": write_cases(root / "seq_a", SEQ_A),
        "seq_b": write_cases(root / "seq_b", SEQ_B),
        "cmp": write_cases(root / "cmp", CMP, verdicts=False, compare=COMPARE),
        "plain": write_cases(root / "plain", SEQ_A, verdicts=False),
    }
