"""Command line: argument parsing and printing only; the work lives in the modules it calls.
(Over 600 lines because it declares every command's arguments and words every ending's last
line; it holds no logic to split out.)

Exit codes of ``run``: 0 the run completed (job errors are results, not a failed run); 1 the
run was aborted (the API key was rejected, the circuit breaker tripped, results could not be
written mid-run, an unexpected error); 2 bad input (config, arguments, missing key, results
directory not writable), nothing sent; 3 ``run.budget`` stopped the run (the jobs in flight
finished and are saved; the same command with a larger budget resumes); 130 interrupted
(Ctrl-C, SIGTERM). Every ending prints one last line on stderr saying what happened and what to
do; finished jobs are always saved.

``report`` and ``compare``: 0 done; 2 bad input (no run directory, unknown column or agent);
``compare --fail-on-regression`` exits 1 when any group is a significant regression.

``merge`` (a sharded run): 0 every job has a result and the tables are built; 1 jobs are
missing (listed); 2 bad input (no run directory, no config, a shard still running).

``check`` (the CI gate): 0 every gate holds; 1 a gate failed (a pass rate under
``--min-pass-rate``, an error rate over ``--max-error-rate``, or a spend over ``--max-cost`` /
``--max-credits``); 2 bad input (arguments, no run directory, a ``--criterion`` the run does
not have); 3 no gate failed but one could not be judged (a criterion with no decided outcome:
all ``unknown`` or job errors, or no results; a cost gate on a run with no cost data).
``check --compare``: 1 also when the candidate is decided worse; with ``--fail-on-undecided``,
3 when the comparison is undecided.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the commands import their modules when run: `--help` stays quick
    from rich.console import Console

    from runner.config import Config
    from runner.costing import Remaining
    from runner.errors import Failure
    from runner.paired import Decision
    from runner.store import Run
    from runner.sweep import RunResult

    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_OK, EXIT_ABORTED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_BUDGET = 3  # run: run.budget stopped dispatching
EXIT_REGRESSION = 1  # compare --fail-on-regression; check's codes live in runner.gate
EXIT_GATE = 1  # run: the config's gate: failed (the run itself completed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runner", description="Batch runner for conversation simulations."
    )
    sub = parser.add_subparsers(dest="command", required=True)

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

    from runner.localapi import server

    serve = sub.add_parser("serve", help="run the local ElevenLabs-compatible API")
    server.add_arguments(serve)
    _add_tests_command(sub)
    _add_scenarios_command(sub)
    _add_assert_command(sub)
    sub.add_parser(
        "schema", help="print the sweep config's JSON Schema (as in configs/config.schema.json)"
    )
    _add_analysis_commands(sub)
    from runner.view import server as view_server

    view_server.add_arguments(sub.add_parser("view", help="browse results in a local web app"))
    return parser


def _concurrency(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or 'auto' (got {text!r})") from None


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


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


def _add_scenarios_command(sub: SubParsers) -> None:
    from runner.importer.command import add_parser as add_import_parser

    add_import_parser(sub)  # `scenarios import` (runner/importer)


def _add_tests_command(sub: SubParsers) -> None:
    tests = sub.add_parser("tests", help="manage the agent-testing backend's simulation tests")
    tests_sub = tests.add_subparsers(dest="tests_command", required=True)
    prune = tests_sub.add_parser(
        "prune", help="delete the simulation tests (named with its prefix) a config no longer has"
    )
    prune.add_argument("config", type=Path, help="sweep config (YAML)")
    prune.add_argument("--base-url", help="target this server instead of target.base_url")
    prune.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")


def _add_assert_command(sub: SubParsers) -> None:
    check = sub.add_parser(
        "assert",
        help="re-run a config's assertions over a run's stored transcripts (sends nothing)",
    )
    check.add_argument("run_dir", type=Path, help="a results/<run>/ directory")
    check.add_argument(
        "--config", type=Path, help="the config whose assertions to apply (default: the run's own)"
    )


def _cmd_assert(args: argparse.Namespace) -> int:
    from runner.config import ConfigError
    from runner.reassert import assert_command
    from runner.store import StoreError

    try:
        lines = assert_command(args.run_dir, args.config)
    except (ConfigError, StoreError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    print("\n".join(lines))
    return EXIT_OK


def _cmd_tests_prune(args: argparse.Namespace) -> int:
    from runner.config import ConfigError, load_config
    from runner.prune import PruneError, prune

    try:
        cfg = load_config(args.config)
        result = prune(cfg, base_url=args.base_url, dry_run=args.dry_run)
    except (ConfigError, PruneError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    verb = "would delete" if result.dry_run else "deleted"
    for test_id, name in result.deleted:
        print(f"{verb} {test_id}  {name}")
    print(f"{verb} {len(result.deleted)} test(s); kept {result.kept}")
    return EXIT_OK


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "serve":
        from runner.localapi import server

        return server.main(args)
    if args.command == "tests":
        return _cmd_tests_prune(args)
    if args.command == "scenarios":
        from runner.importer.command import run as run_import

        return run_import(args)
    if args.command == "merge":
        return _cmd_merge(args)
    if args.command == "assert":
        return _cmd_assert(args)
    if args.command == "schema":
        from runner.config.jsonschema import config_schema_text

        sys.stdout.write(config_schema_text())
        return EXIT_OK
    if args.command in ANALYSIS_COMMANDS:
        return ANALYSIS_COMMANDS[args.command](args)
    if args.command == "view":
        from runner.view import server as view_server

        return view_server.main(args)
    parser.print_help(sys.stderr)
    return EXIT_USAGE


# ------------------------------------------------------------------ report, compare, check


def _add_analysis_commands(sub: SubParsers) -> None:
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

    json_help = "print one JSON document instead of tables (its shape: runner.report.shapes.{})"
    report.add_argument("--json", action="store_true", help=json_help.format("ReportJSON"))

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

    check.add_argument("--json", action="store_true", help=json_help.format("CheckJSON"))
    compare.add_argument("--json", action="store_true", help=json_help.format("CompareJSON"))
    check.add_argument(
        "--config",
        type=Path,
        help="without threshold flags: apply this config's gate: (default: the gate: of the "
        "config the run was made with)",
    )

    _add_paired_options(check, check=True)

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


def _add_paired_options(parser: argparse.ArgumentParser, *, check: bool = False) -> None:
    """The paired comparison's options, shared by ``compare`` and ``check``."""
    group = parser.add_argument_group(
        "paired comparison (anytime-valid: is the candidate worse than the baseline?)"
    )
    if check:
        group.add_argument(
            "--compare",
            nargs="?",
            const="",
            metavar="RUN_B",
            help="gate on the paired comparison: RUN_DIR (baseline) against RUN_B (candidate), "
            "or, without RUN_B, two arms of RUN_DIR named by --a and --b; fails when the "
            "candidate is worse",
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


def _console() -> Console:
    """A rich console; when output is not a terminal (CI logs), wide enough for the tables."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 140))


def _load(path: Path) -> Run:
    from runner.store import open_run

    return open_run(path)


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


GATE_FLAGS = ("min_pass_rate", "max_error_rate", "max_cost", "max_credits")


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


def _cmd_check(args: argparse.Namespace) -> int:
    if args.verdicts:
        code = _check_verdicts(args)
        others = any(getattr(args, f) is not None for f in GATE_FLAGS) or args.compare is not None
        if code == EXIT_USAGE or not others:
            return code
        return max(code, _check_gates(args))
    return _check_gates(args)


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


ANALYSIS_COMMANDS = {
    "report": _cmd_report,
    "compare": _cmd_compare,
    "check": _cmd_check,
    "replay": _cmd_replay,
}
