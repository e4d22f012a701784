"""The package's public surface is pinned, and the docs document the real table schemas."""

from __future__ import annotations

from pathlib import Path

import runner
from runner.schema import TABLES, markdown

OUTPUT_PAGE = Path(__file__).resolve().parents[1] / "docs" / "output.md"


def test_public_names_are_pinned_and_all_resolve() -> None:
    assert runner.__all__ == [
        "Config",
        "ConfigError",
        "Job",
        "Run",
        "RunReport",
        "RunResult",
        "TABLES",
        "__version__",
        "compare_runs",
        "count_jobs",
        "error_rates",
        "flakiness",
        "flaky_cases",
        "iter_jobs",
        "latency_percentiles",
        "load_config",
        "load_run",
        "pass_rates",
        "repeat_pass_rates",
        "run",
        "run_sweep",
        "wilson_interval",
        "write_report",
    ]
    for name in runner.__all__:
        assert getattr(runner, name) is not None


def test_docs_output_schema_matches_runner_schema() -> None:
    text = OUTPUT_PAGE.read_text()
    for table in TABLES:
        assert markdown(table) in text, f"docs/output.md's {table.file} section is out of date"
