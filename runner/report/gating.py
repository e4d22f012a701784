"""A run's ``gate:`` block applied to its results: what ``run`` does at its end and what
``check`` does without threshold flags. The checks are ``runner.gate``'s; this module finds the
gate (a config file, else the config the run recorded) and words the result in a few lines.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from runner.config.gate import GateConfig
from runner.gate import GateResult, evaluate
from runner.store import RESOLVED_CONFIG, Run

SHOWN = 5
"""How many failed or unjudged cases the end of a run lists (``check`` lists them all)."""


class NoGate(ValueError):
    """No gate to apply: no threshold flags and no ``gate:`` in the config."""


def recorded_gate(run_dir: Path) -> GateConfig | None:
    """The ``gate:`` of the config the run was made with (``config.resolved.json``); None
    when it had none. ``NoGate`` when the recorded file cannot be read as one."""
    path = run_dir / RESOLVED_CONFIG
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise NoGate(f"cannot read the run's recorded config {path}: {exc}") from None
    block = recorded.get("gate") if isinstance(recorded, dict) else None
    if block is None:
        return None
    try:
        return GateConfig.model_validate(block)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in ("gate", *first["loc"]))
        raise NoGate(f"{path}: {where}: {first['msg']}") from None


def judge(run: Run, gate: GateConfig) -> GateResult:
    """The gate's cases over the run's tables (``runner.gate.evaluate``)."""
    return evaluate(run.criteria, run.jobs, **gate.evaluate_kwargs())


def verdict(result: GateResult) -> str:
    """``gate: all 12 case(s) hold`` / ``gate FAILED: 2 of 12 case(s) ...``."""
    n = len(result.cases)
    if result.failed:
        unjudged = f", {len(result.not_judged)} not judged" if result.not_judged else ""
        return f"gate FAILED: {len(result.failed)} of {n} case(s) failed{unjudged}"
    if result.not_judged:
        return f"gate: {len(result.not_judged)} of {n} case(s) could not be judged, none failed"
    return f"gate: all {n} case(s) hold"


def gate_lines(result: GateResult, shown: int = SHOWN) -> list[str]:
    """The verdict, then the failed and unjudged cases (at most ``shown``)."""
    bad = [*result.failed, *result.not_judged]
    lines = [verdict(result)]
    for case in bad[:shown]:
        mark = "FAIL" if case.status == "failed" else "NOT JUDGED"
        where = "" if case.suite in ("pass rate", "errors", "cost") else f" [{case.suite}]"
        lines.append(f"  {mark} {case.name}{where}: {case.message}")
    if len(bad) > shown:
        lines.append(f"  ... {len(bad) - shown} more (python -m runner check)")
    return lines
