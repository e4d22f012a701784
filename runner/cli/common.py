"""What every command shares: the exit codes, the one error line, the console, opening a run,
and the paired comparison's options (``compare`` and ``check`` both take them)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the commands import their modules when run: `--help` stays quick
    from rich.console import Console

    from runner.store import Run

    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_OK, EXIT_ABORTED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_BUDGET = 3  # run: run.budget stopped dispatching
EXIT_REGRESSION = 1  # compare --fail-on-regression; check's codes live in runner.gate
EXIT_GATE = 1  # run: the config's gate: failed (the run itself completed)

JSON_HELP = "print one JSON document instead of tables (its shape: runner.report.shapes.{})"


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _console() -> Console:
    """A rich console; when output is not a terminal (CI logs), wide enough for the tables."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 140))


def _load(path: Path) -> Run:
    from runner.store import open_run

    return open_run(path)


def _add_paired_options(parser: argparse.ArgumentParser, *, check: bool = False) -> None:
    """The paired comparison's options, shared by ``compare`` and ``check``."""
    group = parser.add_argument_group(
        "paired comparison (anytime-valid: is the candidate worse than the baseline by more "
        "than the margin?)"
    )
    if check:
        group.add_argument(
            "--compare",
            nargs="?",
            const="",
            metavar="RUN_B",
            help="gate on the paired comparison: RUN_DIR (baseline) against RUN_B (candidate), "
            "or, without RUN_B, two arms of RUN_DIR named by --a and --b; fails when the "
            "candidate is worse by more than the margin",
        )
    group.add_argument(
        "--a",
        action="append",
        default=[],
        metavar="SEL",
        help="the baseline: agent=LABEL or matrix.AXIS=VALUE (repeatable); with one run, one "
        "of its arms",
    )
    group.add_argument(
        "--b", action="append", default=[], metavar="SEL", help="the candidate, as --a"
    )
    group.add_argument(
        "--margin",
        type=float,
        help="non-inferiority margin on the pass rate, >= 0 (default 0.05)",
    )
    group.add_argument(
        "--alpha", type=float, help="each decision's error rate, in (0, 1) (default 0.05)"
    )
    group.add_argument(
        "--max-pairs",
        type=int,
        help="decide on at most the first N pairs in finishing order (default: every pair)",
    )
    group.add_argument(
        "--of",
        action="append",
        default=[],
        metavar="CRITERION",
        help="passing means these criteria passed (repeatable; default: every criterion)",
    )
    group.add_argument(
        "--error-as",
        choices=("fail", "skip"),
        default="fail",
        help="a job in error: a non-pass (fail, default) or drops its pair (skip)",
    )
    if check:
        group.add_argument(
            "--fail-on-undecided",
            action="store_true",
            help="an undecided comparison is not judged (exit 3) rather than passing",
        )
