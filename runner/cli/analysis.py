"""``report``, ``compare`` (two runs, or two arms of one) and ``replay``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from runner.cli.common import (
    EXIT_OK,
    EXIT_REGRESSION,
    EXIT_USAGE,
    JSON_HELP,
    _add_paired_options,
    _console,
    _err,
    _load,
)

if TYPE_CHECKING:
    from runner.cli.common import SubParsers


def _add_report_command(sub: SubParsers) -> None:
    report = sub.add_parser(
        "report", help="print a run's analysis and write RUN_DIR/report.html (never re-runs)"
    )
    report.add_argument("run_dir", type=Path, help="a results/<run>/ directory")
    report.add_argument("--out", type=Path, help="HTML path (default: RUN_DIR/report.html)")
    report.add_argument(
        "--by",
        action="append",
        default=[],
        metavar="COL[,COL]",
        help="also print pass rates grouped by these columns, e.g. scenario_id,criterion_id "
        "or matrix.language (repeatable)",
    )
    report.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="SOURCE",
        help="only criteria of this source: extra, agent, assert or judge (extra and agent); "
        "repeatable",
    )
    report.add_argument("--json", action="store_true", help=JSON_HELP.format("ReportJSON"))


def _add_compare_command(sub: SubParsers) -> None:
    compare = sub.add_parser(
        "compare", help="change in pass rate from RUN_A to RUN_B, flagged when significant"
    )
    compare.add_argument("run_a", type=Path, help="the baseline run directory")
    compare.add_argument(
        "run_b",
        type=Path,
        nargs="?",
        help="the candidate run directory (none: two arms of RUN_A, named by --a and --b)",
    )
    compare.add_argument("--html", type=Path, help="also write the comparison page here")
    compare.add_argument(
        "--by",
        action="append",
        default=[],
        metavar="COL",
        help="compare per criterion and this column too: scenario, agent or any jobs column",
    )
    compare.add_argument("--agent-a", help="only this agent (label or id) from RUN_A")
    compare.add_argument("--agent-b", help="only this agent (label or id) from RUN_B")
    compare.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when any group is a significant regression",
    )
    _add_paired_options(compare)
    compare.add_argument("--json", action="store_true", help=JSON_HELP.format("CompareJSON"))


def _add_replay_command(sub: SubParsers) -> None:
    replay = sub.add_parser(
        "replay",
        help="shadow mode: where a sequential rule would have stopped a finished run's repeats",
    )
    replay.add_argument("run_dir", type=Path, help="a results/<run>/ directory")
    replay.add_argument("--rule", choices=("anytime", "sprt", "curtail"), default="anytime")
    replay.add_argument("--pass-rate", type=float, required=True, help="the verdict's threshold")
    replay.add_argument("--alpha", type=float, default=0.05, help="chance of a wrong verdict")
    replay.add_argument("--max", type=int, help="most repeats (default: the run's repeats)")
    replay.add_argument("--min", type=int, default=1, help="repeats before any verdict")
    replay.add_argument("--pass-rate-low", type=float, help="sprt only: the rate that fails")
    replay.add_argument("--beta", type=float, default=0.05, help="sprt only")
    replay.add_argument("--passes", type=int, help="curtail only: passes needed of --max")
    replay.add_argument(
        "--of",
        action="append",
        default=[],
        metavar="ID",
        help="judge this criterion alone (repeatable; default: all criteria together)",
    )


def _cmd_report(args: argparse.Namespace) -> int:
    from runner.analysis import check_sources
    from runner.report import build_report
    from runner.report.terminal import print_run_tables

    try:
        run = _load(args.run_dir)
    except FileNotFoundError as exc:
        _err(str(exc))
        return EXIT_USAGE
    groupings = [[c.strip() for c in spec.split(",") if c.strip()] for spec in args.by]
    try:
        sources = check_sources(args.source)
    except ValueError as exc:
        _err(str(exc))
        return EXIT_USAGE
    if args.json:
        from runner.report.shapes import report_json

        try:
            print(report_json(run, groupings, sources).model_dump_json(indent=2))
        except ValueError as exc:  # an unknown --by column
            _err(str(exc))
            return EXIT_USAGE
        return EXIT_OK
    console = _console()
    try:
        print_run_tables(run, console, by=groupings, sources=sources)
    except ValueError as exc:  # an unknown --by column
        _err(str(exc))
        return EXIT_USAGE
    from runner.reassert import report_agreement

    for line in report_agreement(args.run_dir):
        console.print(line, markup=False)
    out = args.out or args.run_dir / "report.html"
    out.write_text(build_report(run, sources=sources), encoding="utf-8")
    console.print(f"wrote {out}")
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from runner.analysis import VERDICTS, align_criteria, compare_runs, compare_spend
    from runner.gate import resolve_by
    from runner.report import build_compare_page
    from runner.report.pages import spend_diff_frame
    from runner.report.paired import from_args
    from runner.report.terminal import frame_table, print_verdict_changes

    if args.run_b is None:
        return _cmd_compare_arms(args)
    try:
        run_a, run_b = _load(args.run_a), _load(args.run_b)
        shown = from_args(args, run_a, run_b, args.agent_a, args.agent_b)
        a_criteria, a_jobs = run_a.for_agent(args.agent_a)
        b_criteria, b_jobs = run_b.for_agent(args.agent_b)
        backends = [r.manifest.target.backend if r.manifest else None for r in (run_a, run_b)]
        a_criteria, b_criteria, notes = align_criteria(
            a_criteria, b_criteria, *backends, jobs=(a_jobs, b_jobs)
        )
        by = [*resolve_by(args.by), "criterion_id"]
        table = compare_runs(a_criteria, a_jobs, b_criteria, b_jobs, by=by)
        costs = compare_spend(a_criteria, a_jobs, b_criteria, b_jobs)
    except (FileNotFoundError, ValueError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    failing = args.fail_on_regression and (table["verdict"] == "regression").any()
    if args.json:
        from runner.report.shapes import compare_json

        a_side = f"{args.run_a}" + (f" [{args.agent_a}]" if args.agent_a else "")
        b_side = f"{args.run_b}" + (f" [{args.agent_b}]" if args.agent_b else "")
        print(compare_json(a_side, b_side, by, table, costs).model_dump_json(indent=2))
        return EXIT_REGRESSION if failing else EXIT_OK
    console = _console()
    a_name = f"{args.run_a}" + (f" [{args.agent_a}]" if args.agent_a else "")
    b_name = f"{args.run_b}" + (f" [{args.agent_b}]" if args.agent_b else "")
    console.print(
        frame_table(table, f"pass rate A = {a_name} -> B = {b_name} (95% Newcombe interval)"),
        markup=False,
    )
    counts = dict(table["verdict"].value_counts().iter_rows())
    summary = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts)
    console.print(f"verdicts: {summary}", markup=False)
    console.print(
        frame_table(spend_diff_frame(costs), "what each side cost (as the vendor billed it)"),
        markup=False,
    )
    print_verdict_changes(run_a, run_b, console)
    if isinstance(shown, str):
        console.print(f"paired comparison: {shown}", markup=False)
    else:
        shown.print(console)
    if args.html:
        page = build_compare_page(
            run_a,
            run_b,
            table,
            by,
            a_label=args.agent_a,
            b_label=args.agent_b,
            costs=costs,
            paired=shown if isinstance(shown, str) else shown.view(),
        )
        args.html.write_text(page, encoding="utf-8")
        console.print(f"wrote {args.html}", markup=False)
    if args.fail_on_regression and (table["verdict"] == "regression").any():
        return EXIT_REGRESSION
    return EXIT_OK


def _cmd_compare_arms(args: argparse.Namespace) -> int:
    """``compare RUN --a SEL --b SEL``: two arms of one run, paired."""
    from runner.report.paired import from_args

    try:
        shown = from_args(args, _load(args.run_a), None)
    except (FileNotFoundError, ValueError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    assert not isinstance(shown, str)  # one run: a pairing problem raises
    shown.print(_console())
    return EXIT_OK


def _cmd_replay(args: argparse.Namespace) -> int:
    import polars as pl

    from runner.replay import render, replay, rule_from

    try:
        run = _load(args.run_dir)
        top = (
            args.max
            or int(run.jobs.lazy().select(pl.col("repeat").max()).collect().item() or 0) + 1
        )
        rule = rule_from(
            args.rule,
            args.pass_rate,
            top,
            alpha=args.alpha,
            min_repeats=args.min,
            pass_rate_low=args.pass_rate_low,
            beta=args.beta,
            passes=args.passes,
        )
    except (FileNotFoundError, ValueError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    print(render(replay(run.jobs, run.criteria, [rule], of=args.of or "all")))
    return EXIT_OK
