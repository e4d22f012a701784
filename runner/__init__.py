"""Batch load and evaluation runner for conversation simulations.

The public API, importable from ``runner``. Names load lazily so that ``python -m runner serve``
does not pay for Polars and the engine.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "run": "runner.sweep",
    "run_sweep": "runner.sweep",
    "RunResult": "runner.sweep",
    "RunReport": "runner.sweep",
    "load_config": "runner.config",
    "iter_jobs": "runner.jobs",
    "count_jobs": "runner.jobs",
    "Config": "runner.config",
    "ConfigError": "runner.config",
    "Job": "runner.jobs",
    "load_run": "runner.store",
    "Run": "runner.store",
    "pass_rates": "runner.analysis",
    "latency_percentiles": "runner.analysis",
    "wilson_interval": "runner.analysis",
    "error_rates": "runner.analysis",
    "repeat_pass_rates": "runner.analysis",
    "flakiness": "runner.analysis",
    "flaky_cases": "runner.analysis",
    "compare_runs": "runner.analysis",
    "write_report": "runner.report",
    "TABLES": "runner.schema",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
