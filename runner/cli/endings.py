"""How a ``run`` ends: its last line on stderr (what happened, what to do, the command that
resumes), its exit code, and what it prints after the summary (the gate, the comparison)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from runner.cli.common import EXIT_ABORTED, EXIT_GATE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, _err

if TYPE_CHECKING:
    from runner.config import Config
    from runner.errors import Failure
    from runner.paired import Decision
    from runner.sweep import RunResult


def _apply_gate(run_dir: Path, cfg: Config, args: argparse.Namespace) -> tuple[int, str]:
    """The config's gate over the finished run: its lines (unless ``--quiet``), JUnit on
    request, exit 1 when a case failed, and the words the last line adds."""
    from runner.gate import GateError, junit_xml
    from runner.report.gating import gate_lines, judge, verdict
    from runner.store import load_run

    assert cfg.gate is not None
    try:
        result = judge(load_run(run_dir), cfg.gate)
    except GateError as exc:  # e.g. gate.criteria names a criterion the run does not have
        _err(f"gate: {exc}")
        return EXIT_GATE, "; the gate could not be applied"
    if not args.quiet:
        for line in gate_lines(result):
            print(line)
    if args.junit:
        args.junit.write_text(junit_xml(result, f"runner run {run_dir}"), encoding="utf-8")
    code = EXIT_GATE if result.failed else EXIT_OK
    return code, f"; {verdict(result)}"


def _print_compare(decision: Decision, cfg: Config, run_dir: Path) -> None:
    from runner.report.paired import arm_flags, decision_line

    settings = cfg.compare
    assert settings is not None
    print(decision_line(decision, settings.max_pairs, settings.margin))
    flags = " ".join(
        [
            arm_flags(settings.arm("baseline"), "--a"),
            arm_flags(settings.arm("candidate"), "--b"),
            f"--margin {settings.margin:g} --alpha {settings.alpha:g}",
            *(f"--of {c}" for c in (settings.of if settings.of != "all" else [])),
        ]
    )
    print(f"per scenario and spend: python -m runner compare {run_dir} {flags}")


def _completed(ok: int, errors: int, skipped: int, run_dir: Path) -> None:
    """The last line of a run that completed (with or without Ray)."""
    done = f", {skipped} done before" if skipped else ""
    print(
        f"completed: {ok} job(s) ok, {errors} in error{done}; results in {run_dir}"
        f" (python -m runner report {run_dir})",
        file=sys.stderr,
    )


def _abort_advice(failure: Failure, cfg: Config, args: argparse.Namespace) -> str:
    """What to do after an abort, by its cause; finished jobs are always saved."""
    from runner.errors import ErrorKind

    resume = f"run the same command to resume: {_resume_command(args)}"
    if failure.kind is ErrorKind.AUTH:
        return (
            f"; the API key in ${cfg.target.api_key_env} was rejected: set a valid key, then "
            + resume
        )
    if failure.kind is ErrorKind.ENDPOINT_GONE:  # its message says what to do
        return f" (finished jobs are saved in the run directory; {_resume_command(args)} resumes)"
    if failure.message.startswith("circuit breaker"):
        where = "the local API" if cfg.target.is_local else cfg.target.base_url
        return f"; check that {where} works, then {resume}"
    return f"; finished jobs are saved, {resume}"


def _leaf(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-member exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _run_failed(exc: BaseException, args: argparse.Namespace) -> int:
    """A run that raised: one line saying what happened and what to do, and its exit code."""
    import os

    from runner.preflight import PreflightFailed
    from runner.store import StoreError
    from runner.sweep import WriteFailed
    from runner.target import SetupError

    exc = _leaf(exc)
    if isinstance(exc, PreflightFailed):
        for problem in exc.problems:
            _err(f"pre-flight: {problem}")
        _err(
            f"pre-flight: {len(exc.problems)} problem(s) above; nothing was sent that costs "
            f"money. Fix them and run the same command: {_resume_command(args)}"
        )
        return EXIT_USAGE
    if isinstance(exc, WriteFailed):
        _err(str(exc))
        return EXIT_ABORTED
    if isinstance(exc, SetupError | StoreError):
        _err(str(exc))
        return EXIT_USAGE
    if isinstance(exc, KeyboardInterrupt):
        _err(f"interrupted; finished jobs are saved. To resume: {_resume_command(args)}")
        return EXIT_INTERRUPTED
    if os.environ.get("RUNNER_DEBUG") == "1" or not isinstance(exc, Exception):
        raise exc
    _err(
        f"the run stopped on an unexpected {type(exc).__name__}: {exc}. Finished jobs are "
        f"saved; run the same command to resume ({_resume_command(args)}), and please report "
        "this with the traceback that RUNNER_DEBUG=1 shows"
    )
    return EXIT_ABORTED


def _budget_line(report: RunResult, args: argparse.Namespace) -> str:
    """The one line a run stopped by its budget ends with, and the command that resumes it."""
    from runner.budget import resume_limit
    from runner.estimate import money

    limit = report.budget.stopped if report.budget is not None else None
    if limit is None:  # cannot happen: a budget stop names the limit that stopped it
        return f"budget reached ({report.not_run} job(s) not run)"
    unit = limit.unit
    larger = resume_limit(limit, report.not_run)
    flag = "--budget-usd" if unit == "usd" else "--budget-credits"
    amount = f"{larger:.2f}" if unit == "usd" else f"{larger:.0f}"
    return (
        f"budget reached: spent {money(limit.spent, unit)} of {money(limit.limit, unit)} "
        f"({report.not_run} job(s) not run). To resume with a larger budget: "
        f"{_resume_command(args)} {flag} {amount}"
    )


def _resume_command(args: argparse.Namespace) -> str:
    parts = ["python -m runner run", str(args.config)]
    if args.name:
        parts += ["--name", args.name]
    if args.results != Path("results"):
        parts += ["--results", str(args.results)]
    for flag in ("agent", "scenario", "tag"):
        for pattern in getattr(args, flag, None) or []:
            parts += [f"--{flag}", pattern]
    if getattr(args, "shard", None):
        parts += ["--shard", args.shard] + (["--shards", str(args.shards)] if args.shards else [])
    return " ".join(parts)
