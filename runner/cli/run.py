"""``run`` (a session, ``--dry-run``, ``--ray``) and ``merge`` (a sharded run's tables)."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from runner.cli.common import (
    EXIT_ABORTED,
    EXIT_BUDGET,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    _console,
    _err,
)
from runner.cli.endings import (
    _abort_advice,
    _apply_gate,
    _budget_line,
    _completed,
    _print_compare,
    _resume_command,
    _run_failed,
)

if TYPE_CHECKING:
    from runner.cli.common import SubParsers
    from runner.config import Config
    from runner.costing import Remaining


def _add_run_commands(sub: SubParsers) -> None:
    run = sub.add_parser("run", help="run a sweep config and write results/<run>/")
    run.add_argument("config", type=Path, help="sweep config (YAML)")
    run.add_argument("--name", help="run name (default: run.name or the config's file name)")
    run.add_argument(
        "--concurrency",
        type=_concurrency,
        help="override run.concurrency: a number, or 'auto' to find the server's quota",
    )
    run.add_argument("--limit", type=int, help="run only the first N jobs of the sweep")
    for flag, what in (
        ("agent", "agent (id, label or id@branch)"),
        ("scenario", "scenario id"),
        ("tag", "scenario tag"),
    ):
        run.add_argument(
            f"--{flag}",
            action="append",
            default=[],
            metavar="GLOB",
            help=f"run only the jobs of this {what}; a glob, repeatable (job keys are the "
            "sweep's: a later full run reuses these results)",
        )
    run.add_argument("--results", type=Path, default=Path("results"), help="results root")
    run.add_argument(
        "--junit", type=Path, metavar="PATH", help="write the config's gate: as JUnit XML here"
    )
    run.add_argument(
        "--dry-run", action="store_true", help="validate, print the job count and a few requests"
    )
    run.add_argument("--no-progress", action="store_true", help="no live progress display")
    run.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="print only the last line (and errors): no progress, estimate or summary",
    )
    run.add_argument(
        "--keep-remote",
        action="store_true",
        help="agent-testing: on Ctrl-C / SIGTERM leave the test invocations this session "
        "started running (default: cancel them)",
    )
    run.add_argument(
        "--no-preflight",
        action="store_true",
        help="skip the free pre-flight checks (key, agents, branches, endpoint) before the run",
    )
    run.add_argument(
        "--retry-errors",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="when resuming, re-run jobs that ended in error (default: yes); jobs already ok "
        "are never re-run",
    )
    run.add_argument(
        "--budget-usd",
        type=float,
        metavar="USD",
        help="override run.budget.usd: stop dispatching before the run's spend would pass it",
    )
    run.add_argument(
        "--budget-credits",
        type=float,
        metavar="CREDITS",
        help="override run.budget.credits (agent-testing bills credits)",
    )
    run.add_argument(
        "--fresh",
        action="store_true",
        help="start a new run: set the existing results/<run>/ aside (renamed with a timestamp)",
    )
    run.add_argument(
        "--shard",
        metavar="I/N|auto",
        help="run only shard I (0-based) of N into the shared run directory; 'auto' reads the "
        "index from JOB_COMPLETION_INDEX (Kubernetes, with --shards N) or SLURM_ARRAY_TASK_ID "
        "and SLURM_ARRAY_TASK_COUNT (Slurm); then `merge` builds the tables",
    )
    run.add_argument("--shards", type=int, metavar="N", help="the number of shards")
    run.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run --shards N shards as Ray actors (a local Ray cluster without ADDRESS) under "
        "one concurrency quota for the whole cluster; needs the ray extra",
    )
    merge = sub.add_parser(
        "merge", help="check a sharded run covers every job, then build its tables"
    )
    merge.add_argument("run_dir", type=Path, help="a results/<run>/ directory")
    merge.add_argument(
        "--config", type=Path, help="the sweep config (default: the one the shards recorded)"
    )
    merge.add_argument("--limit", type=int, help="the sweep is the first N jobs (as run --limit)")


def _concurrency(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or 'auto' (got {text!r})") from None


def _cmd_run(args: argparse.Namespace) -> int:
    import os

    from runner.config import ConfigError, load_config
    from runner.config.selection import Selection
    from runner.shard import ShardError, shard_for_run

    overrides: dict[str, object] = {}
    if args.concurrency is not None:
        overrides["run.concurrency"] = args.concurrency
    if args.name is not None:
        overrides["run.name"] = args.name
    if args.budget_usd is not None:
        overrides["run.budget.usd"] = args.budget_usd
    if args.budget_credits is not None:
        overrides["run.budget.credits"] = args.budget_credits
    if args.limit is not None and args.limit < 1:
        _err("--limit must be at least 1")
        return EXIT_USAGE
    try:
        shard = shard_for_run(args.shard, args.shards, os.environ, ray=args.ray is not None)
    except ShardError as exc:
        _err(str(exc))
        return EXIT_USAGE
    selection = Selection(tuple(args.agent), tuple(args.scenario), tuple(args.tag))
    if selection and (shard is not None or args.ray is not None):
        _err("--agent, --scenario and --tag cannot be combined with --shard or --ray")
        return EXIT_USAGE
    try:
        cfg = load_config(args.config, overrides).select(selection)
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_USAGE

    if args.junit is not None and cfg.gate is None:
        _err(f"--junit writes the config's gate, and {args.config} has no gate: block")
        return EXIT_USAGE
    if args.ray is not None and not args.dry_run:
        return _cmd_run_ray(args, cfg)
    if args.dry_run:
        from runner.costing import remaining

        plan = remaining(
            cfg,
            limit=args.limit,
            shard=shard,
            results_root=args.results,
            retry_errors=args.retry_errors,
        )
        print(
            f"{args.config}: valid; {plan.left} of {plan.total} job(s) left"
            + (f"; shard {shard}" if shard else "")
        )
        if not args.no_preflight:  # first: a rejected key or unknown agent needs no estimate
            from runner.sweep import preflight_only
            from runner.target import SetupError

            try:
                problems = preflight_only(cfg)
            except SetupError as exc:
                _err(str(exc))
                return EXIT_USAGE
            for problem in problems:
                _err(problem)
            if problems:
                return EXIT_USAGE
            print("pre-flight: the key, every agent and branch, and the endpoint answered")
        _print_estimate(cfg, args, plan)
        for job in itertools.islice(plan.jobs(cfg, args.limit), 3):  # still to run only
            print(
                f"\n# job {job.key}  agent={job.agent_id} scenario={job.scenario_id}"
                f" repeat={job.repeat} {dict(job.matrix) or ''}"
            )
            if cfg.target.backend == "agent-testing":
                from runner.backends.agent_testing import test_spec

                spec = test_spec(job, cfg.target.agent_testing)
                print("POST /v1/convai/agent-testing/create  (unless a test named so exists)")
                print(json.dumps(spec.body, indent=2, ensure_ascii=False))
                print(
                    f"POST /v1/convai/agents/{job.agent_id}/run-tests  "
                    f"(repeat_count {min(cfg.run.max_repeats, 50)}, once per agent and test)"
                )
                continue
            print(
                f"POST /v1/convai/agents/{job.agent_id}/simulate-conversation"
                + ("/stream" if cfg.target.backend == "stream" else "")
            )
            print(json.dumps(job.body, indent=2, ensure_ascii=False))
        return EXIT_OK

    from runner.report.terminal import print_summary
    from runner.sweep import run

    try:
        report = run(
            cfg,
            limit=args.limit,
            results_root=args.results,
            progress=not (args.no_progress or args.quiet),
            retry_errors=args.retry_errors,
            fresh=args.fresh,
            handle_signals=True,
            preflight=not args.no_preflight,
            keep_remote=args.keep_remote,
            shard=shard,
            quiet=args.quiet,
        )
    except BaseException as exc:  # every way out is one line and a documented code
        return _run_failed(exc, args)
    c = report.counters
    headline = (
        f"\n[bold]{report.run_dir}[/]  this session: {c.done} job(s) run"
        f" ({c.ok} ok, {c.errors} error), {c.skipped} already done, {c.retries} retries,"
        f" {c.attempts} attempts, peak in flight {c.peak_in_flight},"
        f" {report.wall_secs:.1f}s"
    )
    if args.quiet or not c.done:  # a session that ran nothing says so in its last line
        pass
    elif shard:
        _console().print(headline.replace("this session", f"shard {shard}, this session"))
        print(f"when every shard is done: python -m runner merge {report.run_dir}")
    else:
        print_summary(report.run_dir, headline, _console())
    if report.verdicts is not None and not args.quiet:
        from runner.replay import verdict_summary

        print(verdict_summary(report.verdicts))
    if report.compare is not None and cfg.compare is not None and not args.quiet:
        _print_compare(report.compare, cfg, report.run_dir)
    if report.interrupted:
        _err(
            f"interrupted: {report.counters.done} job(s) finished this session are saved in "
            f"{report.run_dir}. To resume: {_resume_command(args)}"
        )
        return EXIT_INTERRUPTED
    if report.aborted is not None:
        _err(f"run aborted: {report.aborted.message}{_abort_advice(report.aborted, cfg, args)}")
        return EXIT_ABORTED
    if report.budget_stopped:
        _err(_budget_line(report, args))
        return EXIT_BUDGET
    done = f", {c.skipped} done before" if c.skipped else ""
    ran = f"{c.ok} job(s) ok, {c.errors} in error{done}"
    if not c.done:
        ran = "nothing to run" + (f", all {c.skipped} job(s) were done before" if c.skipped else "")
    after = f"python -m runner report {report.run_dir}"
    if shard and not c.done:
        after = f"when every shard is done: python -m runner merge {report.run_dir}"
    code, gated = EXIT_OK, ""
    if cfg.gate is not None and not shard:  # a shard's gate is judged on the merged run
        code, gated = _apply_gate(report.run_dir, cfg, args)
    print(f"completed: {ran}{gated}; results in {report.run_dir} ({after})", file=sys.stderr)
    return code


def _print_estimate(cfg: Config, args: argparse.Namespace, plan: Remaining) -> None:
    """--dry-run: the expected cost of the jobs still to run (asks the calculate endpoint,
    which sends no simulation and costs nothing)."""
    from runner.costing import dry_run_estimate

    try:
        estimates = dry_run_estimate(cfg, plan, args.limit)
    except Exception as exc:  # an estimate is advice: the dry run still validated the config
        print(f"expected cost: not estimated ({str(exc).splitlines()[0][:200]})")
        return
    if not estimates:
        print("expected cost: not estimated (no prices from the target, no earlier sessions)")
    for estimate in estimates:
        print(estimate.describe())


def _cmd_run_ray(args: argparse.Namespace, cfg: Config) -> int:
    """``run --ray [ADDRESS] --shards N``: the shards as Ray actors (``runner.cluster``)."""
    try:
        from runner.cluster import ClusterError, run_on_ray
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] != "ray":
            raise
        _err(
            "--ray needs Ray, which `make run` leaves out: `make ray` installs it into .venv"
            " (elsewhere: pip install -e '.[ray]')"
        )
        return EXIT_USAGE
    from runner.store import StoreError
    from runner.target import SetupError

    if args.shards is None or args.shards < 1:
        _err("--ray needs --shards N (N >= 1)")
        return EXIT_USAGE
    try:
        outcome = run_on_ray(
            cfg,
            address=args.ray,
            shards=args.shards,
            limit=args.limit,
            results_root=args.results,
            progress=not args.no_progress,
            retry_errors=args.retry_errors,
        )
    except (SetupError, StoreError, ClusterError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    from runner.report.terminal import print_summary

    c = outcome.counters
    headline = (
        f"\n[bold]{outcome.run_dir}[/]  {args.shards} shard(s) on Ray: {c.done} job(s) run"
        f" ({c.ok} ok, {c.errors} error), {c.skipped} already done, {c.retries} retries,"
        f" {c.attempts} attempts, peak in flight {outcome.peak_in_flight} (cluster),"
        f" {outcome.wall_secs:.1f}s"
    )
    if outcome.merged is not None and outcome.merged.complete:
        if not args.quiet:
            print_summary(outcome.run_dir, headline, _console())
        _completed(c.ok, c.errors, c.skipped, outcome.run_dir)
        return EXIT_OK
    _err(f"the run is incomplete: {outcome.message}")
    return EXIT_ABORTED


def _cmd_merge(args: argparse.Namespace) -> int:
    from runner.config import ConfigError
    from runner.merge import merge
    from runner.store import StoreError

    try:
        result = merge(args.run_dir, config=args.config, limit=args.limit)
    except (StoreError, ConfigError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if result.recovered:
        print(f"recovered {result.recovered} finished job(s) from the journal of killed shards")
    if not result.complete:
        by_shard = ", ".join(
            f"shard {i}/{result.shard_count}: {n}"
            for i, n in sorted(result.missing_by_shard.items())
        )
        _err(
            f"{result.missing_count} of {result.planned} job(s) have no result yet"
            + (f" ({by_shard})" if by_shard else "")
            + "; run the shards that own them again, then merge"
        )
        for m in result.missing:
            where = f" shard {m.shard}/{result.shard_count}" if m.shard is not None else ""
            cell = f" {dict(m.matrix)}" if m.matrix else ""
            print(
                f"missing {m.key}{where}  agent={m.agent_id} scenario={m.scenario_id}"
                f" repeat={m.repeat}{cell}"
            )
        if result.missing_count > len(result.missing):
            print(f"... and {result.missing_count - len(result.missing)} more")
        return EXIT_ABORTED
    counts = ", ".join(f"{k} {v}" for k, v in result.table_counts.items())
    print(f"{args.run_dir}: all {result.planned} job(s) have a result; tables built ({counts})")
    return EXIT_OK
