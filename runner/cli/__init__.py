"""Command line: argument parsing and printing only; the work lives in the modules it calls.
One module a command group: ``run`` (``run``, ``merge``) with ``endings`` (a run's last line and
exit code), ``analysis`` (``report``, ``compare``, ``replay``), ``check``, ``maintenance``
(``tests prune``, ``scenarios import``, ``assert``, ``schema``) and ``common`` (the exit codes and
helpers they share); ``serve`` and ``view`` are declared by their servers. Each command imports
what it runs when it runs, so ``--help`` stays quick.

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
``check --compare``: 1 also when the candidate is decided worse (by more than the margin);
with ``--fail-on-undecided``, 3 when the comparison is undecided.
"""

from __future__ import annotations

import argparse
import sys

from runner.cli.analysis import (
    _add_compare_command,
    _add_replay_command,
    _add_report_command,
    _cmd_compare,
    _cmd_replay,
    _cmd_report,
)
from runner.cli.check import _add_check_command, _cmd_check
from runner.cli.common import EXIT_USAGE
from runner.cli.maintenance import (
    _add_assert_command,
    _add_scenarios_command,
    _add_schema_command,
    _add_tests_command,
    _cmd_assert,
    _cmd_schema,
    _cmd_tests_prune,
)
from runner.cli.run import _add_run_commands, _cmd_merge, _cmd_run

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runner", description="Batch runner for conversation simulations."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_commands(sub)  # run, merge
    from runner.localapi import server

    serve = sub.add_parser("serve", help="run the local ElevenLabs-compatible API")
    server.add_arguments(serve)
    _add_tests_command(sub)
    _add_scenarios_command(sub)
    _add_assert_command(sub)
    _add_schema_command(sub)
    _add_report_command(sub)
    _add_compare_command(sub)
    _add_check_command(sub)
    _add_replay_command(sub)
    from runner.view import server as view_server

    view_server.add_arguments(sub.add_parser("view", help="browse results in a local web app"))
    return parser


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
        return _cmd_schema(args)
    if args.command in ANALYSIS_COMMANDS:
        return ANALYSIS_COMMANDS[args.command](args)
    if args.command == "view":
        from runner.view import server as view_server

        return view_server.main(args)
    parser.print_help(sys.stderr)
    return EXIT_USAGE


ANALYSIS_COMMANDS = {
    "report": _cmd_report,
    "compare": _cmd_compare,
    "check": _cmd_check,
    "replay": _cmd_replay,
}
