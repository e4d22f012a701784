"""``check``: the CI gate over a finished run (thresholds or a config's ``gate:``, verdicts,
the paired comparison)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.cli.common import EXIT_USAGE, JSON_HELP, _add_paired_options, _console, _err, _load

if TYPE_CHECKING:
    from runner.cli.common import SubParsers


def _add_check_command(sub: SubParsers) -> None:
    check = sub.add_parser(
        "check", help="CI gate: exit non-zero when pass rates, error rates or spend miss"
    )
    check.add_argument("run_dir", type=Path, help="a results/<run>/ directory")
    check.add_argument("--min-pass-rate", type=float, help="minimum pass rate per criterion")
    check.add_argument(
        "--criterion",
        action="append",
        default=[],
        metavar="ID",
        help="gate only this criterion (repeatable; default: every criterion)",
    )
    check.add_argument(
        "--use-lower-bound",
        action="store_true",
        help="compare the 95%% Wilson lower bound, not the observed rate, to the minimum",
    )
    check.add_argument(
        "--max-error-rate", type=float, help="maximum share of jobs that ended in error"
    )
    check.add_argument(
        "--by",
        action="append",
        default=[],
        metavar="COL",
        help="gate each criterion per scenario, agent or any jobs column (repeatable)",
    )
    check.add_argument(
        "--max-cost",
        type=float,
        metavar="USD",
        help="maximum total spend of the run in USD (jobs.cost_usd, every session)",
    )
    check.add_argument(
        "--max-credits",
        type=float,
        metavar="CREDITS",
        help="maximum total credits billed (jobs.credits_used; agent-testing)",
    )
    check.add_argument("--junit", type=Path, help="write JUnit XML here")
    check.add_argument(
        "--verdicts",
        action="store_true",
        help="exit 1 when any case's verdict is fail (RUN_DIR/verdicts.parquet: run.repeats "
        "with until: verdict)",
    )
    check.add_argument(
        "--undecided",
        choices=("pass", "fail"),
        default="pass",
        help="with --verdicts: how an undecided case counts (default: pass; it is listed)",
    )

    check.add_argument("--json", action="store_true", help=JSON_HELP.format("CheckJSON"))
    check.add_argument(
        "--config",
        type=Path,
        help="without threshold flags: apply this config's gate: (default: the gate: of the "
        "config the run was made with)",
    )

    _add_paired_options(check, check=True)


GATE_FLAGS = ("min_pass_rate", "max_error_rate", "max_cost", "max_credits")


def _cmd_check(args: argparse.Namespace) -> int:
    if args.verdicts:
        code = _check_verdicts(args)
        others = any(getattr(args, f) is not None for f in GATE_FLAGS) or args.compare is not None
        if code == EXIT_USAGE or not others:
            return code
        return max(code, _check_gates(args))
    return _check_gates(args)


def _check_verdicts(args: argparse.Namespace) -> int:
    import polars as pl

    from runner.replay import verdict_gate, verdict_summary

    path = args.run_dir / "verdicts.parquet"
    if not path.exists():
        _err(f"no verdicts table at {path}: the run's run.repeats needs until: verdict")
        return EXIT_USAGE
    table = pl.read_parquet(path)
    code, lines = verdict_gate(table, args.undecided)
    for line in lines:
        print(line)
    print(f"{verdict_summary(table)}; exit {code}")
    return code


def _check_gates(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from runner.config import ConfigError
    from runner.gate import GateError, GateResult, evaluate, junit_xml
    from runner.report.gating import NoGate
    from runner.report.paired import check_compare

    try:
        run = _load(args.run_dir)
        shown, paired_cases = check_compare(args, run, _load)
        gates = (args.min_pass_rate, args.max_error_rate, args.max_cost, args.max_credits)
        result = (
            GateResult(())
            if shown and all(g is None for g in gates)
            else evaluate(run.criteria, run.jobs, **_check_thresholds(args))
        )
        result = GateResult((*result.cases, *paired_cases))
    except (FileNotFoundError, GateError, NoGate, ConfigError, ValueError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    if args.junit:
        args.junit.write_text(junit_xml(result, f"runner check {args.run_dir}"), encoding="utf-8")
    if args.json:
        from runner.report.shapes import check_json

        print(check_json(str(args.run_dir), result).model_dump_json(indent=2))
        return result.exit_code
    console = _console()
    if shown is not None:
        shown.print(console)
    table = Table(title=escape(f"check {args.run_dir}"), title_justify="left")
    for column in ("group", "case", "result", "detail"):
        table.add_column(column)
    marks = {"passed": "PASS", "failed": "FAIL", "not_judged": "NOT JUDGED"}
    for case in result.cases:
        table.add_row(
            *(escape(s) for s in (case.suite, case.name, marks[case.status], case.message))
        )
    console.print(table)
    if args.junit:
        console.print(f"wrote {args.junit}", markup=False)
    code = result.exit_code
    verdict = {0: "all gates hold", 1: "a gate failed", 3: "a gate could not be judged"}[code]
    console.print(
        f"{verdict}: {len(result.failed)} failed, {len(result.not_judged)} not judged,"
        f" {len(result.cases)} case(s); exit {code}",
        markup=False,
    )
    return code


def _check_thresholds(args: argparse.Namespace) -> dict[str, Any]:
    """``check``'s thresholds: the flags when any is given, else a config's ``gate:`` (the
    ``--config`` file's, else the one the run recorded); ``--criterion``, ``--by`` and
    ``--use-lower-bound`` apply to either."""
    from runner.config import load_config
    from runner.report.gating import NoGate, recorded_gate

    flags = {
        "min_pass_rate": args.min_pass_rate,
        "max_error_rate": args.max_error_rate,
        "max_cost": args.max_cost,
        "max_credits": args.max_credits,
    }
    common: dict[str, Any] = {"criterion_ids": args.criterion}
    if args.by:
        common["by"] = args.by
    if args.use_lower_bound:
        common["use_lower_bound"] = True
    if any(v is not None for v in flags.values()):
        return {"by": args.by, "use_lower_bound": args.use_lower_bound, **flags, **common}
    gate = load_config(args.config).gate if args.config else recorded_gate(args.run_dir)
    if gate is None:
        where = args.config or f"the config {args.run_dir} was made with"
        raise NoGate(
            f"nothing to check: give --min-pass-rate, --max-error-rate, --max-cost or "
            f"--max-credits, or add a gate: block to {where}"
        )
    return {**gate.evaluate_kwargs(), **common}
