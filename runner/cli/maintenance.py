"""The commands around runs: ``tests prune``, ``scenarios import`` (``runner.importer``),
``assert`` and ``schema``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from runner.cli.common import EXIT_OK, EXIT_USAGE, _err

if TYPE_CHECKING:
    from runner.cli.common import SubParsers


def _add_tests_command(sub: SubParsers) -> None:
    tests = sub.add_parser("tests", help="manage the agent-testing backend's simulation tests")
    tests_sub = tests.add_subparsers(dest="tests_command", required=True)
    prune = tests_sub.add_parser(
        "prune", help="delete the simulation tests (named with its prefix) a config no longer has"
    )
    prune.add_argument("config", type=Path, help="sweep config (YAML)")
    prune.add_argument("--base-url", help="target this server instead of target.base_url")
    prune.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")


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


def _add_scenarios_command(sub: SubParsers) -> None:
    from runner.importer.command import add_parser as add_import_parser

    add_import_parser(sub)  # `scenarios import` (runner/importer)


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


def _add_schema_command(sub: SubParsers) -> None:
    sub.add_parser(
        "schema", help="print the sweep config's JSON Schema (as in configs/config.schema.json)"
    )


def _cmd_schema(args: argparse.Namespace) -> int:
    from runner.config.jsonschema import config_schema_text

    sys.stdout.write(config_schema_text())
    return EXIT_OK
