"""``python -m runner scenarios import``: production conversations into a scenario file.

The thin shell around ``fetch`` (the requests) and ``build`` (the pure mapping): every input is
checked before the first request (one line, exit 2), the bundled local API is started for
``--base-url local`` as ``run`` starts it, and the end is a summary: conversations read,
scenarios written (new, updated, unchanged), skipped and why.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from runner.importer.build import Built, Options, Skipped, build_scenario, merge_file
from runner.importer.redact import find_personal_data

if TYPE_CHECKING:
    from runner.importer.fetch import Cache

# The CLI builds its parser from ``add_parser`` on every command: the network stack (httpx,
# aiohttp, anyio, the engine's retry rules) is imported only when an import runs.

DEFAULT_CACHE = Path("results") / ".import-cache"
DEFAULT_TEST_PREFIX = "convsim/regressions"
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class Problem(Exception):
    """Bad input or a failed import: one line for the user."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """``scenarios import`` under the CLI's subcommands (``sub``: its subparsers action)."""
    scenarios = sub.add_parser("scenarios", help="build scenario files (import production calls)")
    scenarios_sub = scenarios.add_subparsers(dest="scenarios_command", required=True)
    p = scenarios_sub.add_parser(
        "import",
        help="turn an agent's production conversations into regression scenarios",
        description="Read an agent's conversations (GET /v1/convai/conversations) and write "
        "one scenario per conversation: the caller's requests and facts, the agent's "
        "variables, its tools' real results as mocks, the failed criteria. Importing again "
        "updates the file's entries instead of duplicating them.",
    )
    p.add_argument("--agent", required=True, help="agent id whose conversations to import")
    p.add_argument("--failed", action="store_true", help="only calls the analysis marked failed")
    p.add_argument("--criterion", help="only calls where this criterion failed (and test it)")
    p.add_argument("--since", help="calls started on or after this date (YYYY-MM-DD, UTC)")
    p.add_argument("--until", help="calls started before this date (YYYY-MM-DD, UTC)")
    p.add_argument("--limit", type=int, help="at most this many conversations (newest first)")
    p.add_argument(
        "--cut",
        choices=["none", "start", "first-failure"],
        default="none",
        help="history to replay: none (default), the opening (start), or everything before "
        "the first failing agent turn (first-failure)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="scenario file to write or update "
        "(default configs/scenarios/<agent>-regressions.yaml)",
    )
    p.add_argument(
        "--redact",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mask e-mail addresses, phone numbers and card-like numbers (default: on)",
    )
    p.add_argument("--base-url", default="local", help="local (default) or the API's URL")
    p.add_argument(
        "--api-key-env", default="ELEVENLABS_API_KEY", help="variable holding the API key"
    )
    p.add_argument("--seed", type=int, default=0, help="the local API's seed (default 0)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    p.add_argument(
        "--as-tests",
        action="store_true",
        help="also create the vendor's simulation tests (agent-testing) from the scenarios, "
        "named '<test prefix> <conversation id> [<hash>]' as the agent-testing backend names "
        "them (needs --base-url of a running API)",
    )
    p.add_argument(
        "--test-prefix",
        default=DEFAULT_TEST_PREFIX,
        help=f"name prefix of those tests: a sweep config's target.agent_testing.name_prefix "
        f"(default {DEFAULT_TEST_PREFIX})",
    )
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="fetched calls")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    return p


# ---------------------------------------------------------------------------- input checks


def parse_date(value: str, flag: str) -> int:
    """Unix seconds of a ``YYYY-MM-DD`` (UTC midnight) or an ISO 8601 time."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            when = dt.datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=dt.UTC)
        else:
            when = dt.datetime.fromisoformat(value)
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
    except ValueError:
        raise Problem(f"{flag}: {value!r} is not a date (YYYY-MM-DD)") from None
    return int(when.timestamp())


def existing_entries(out: Path) -> list[Any]:
    """The scenarios already in ``out`` (none if it does not exist); ``Problem`` if ``out``
    cannot be written or is not a scenario list."""
    if out.is_dir():
        raise Problem(f"--out: {out} is a directory")
    ancestor = out.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise Problem(f"--out: cannot create {out.parent}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise Problem(f"--out: {out} is not writable")
    if not out.exists():
        return []
    try:
        data = yaml.safe_load(out.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise Problem(f"--out: {out} cannot be read as YAML ({type(exc).__name__})") from None
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        raise Problem(f"--out: {out} is not a scenario file (a YAML list of scenarios)")
    return data


@dataclass(frozen=True)
class Request:
    agent_id: str
    params: dict[str, Any]
    limit: int | None
    options: Options
    out: Path
    existing: list[Any]
    base_url: str
    api_key: str | None
    cache: Cache | None
    concurrency: int
    seed: int
    test_prefix: str | None
    """Set with ``--as-tests``: create the simulation tests under this name prefix."""


def check(args: argparse.Namespace) -> Request:
    """Every input, before any request."""
    agent_id = args.agent.strip()
    if not agent_id:
        raise Problem("--agent: empty agent id")
    params: dict[str, Any] = {"agent_id": agent_id}
    if args.failed:
        params["call_successful"] = "failure"
    if args.criterion is not None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", args.criterion):
            raise Problem(f"--criterion: {args.criterion!r} is not a criterion id")
        params["evaluation_params"] = f"{args.criterion}:failure"
    if args.since is not None:
        params["call_start_after_unix"] = parse_date(args.since, "--since") - 1
    if args.until is not None:
        params["call_start_before_unix"] = parse_date(args.until, "--until")
    if args.since is not None and args.until is not None:
        if params["call_start_before_unix"] <= params["call_start_after_unix"] + 1:
            raise Problem("--until: must be after --since")
    if args.limit is not None and args.limit < 1:
        raise Problem(f"--limit: must be at least 1 (got {args.limit})")
    if args.concurrency < 1:
        raise Problem(f"--concurrency: must be at least 1 (got {args.concurrency})")
    out = args.out or Path("configs") / "scenarios" / f"{agent_id}-regressions.yaml"
    existing = existing_entries(out)
    from runner.importer.fetch import Cache
    from runner.target import is_loopback

    base_url = args.base_url
    api_key = os.environ.get(args.api_key_env) or None
    if base_url != "local":
        if not re.match(r"https?://", base_url):
            raise Problem(f"--base-url: {base_url!r} is neither 'local' nor an http(s) URL")
        if api_key is None and not is_loopback(base_url):
            raise Problem(f"environment variable {args.api_key_env} is not set (the API key)")
    if args.as_tests:
        if base_url == "local":
            raise Problem(
                "--as-tests: the bundled local API keeps tests only while it runs; give "
                "--base-url of a running one (e.g. `make serve`) or the vendor's"
            )
        prefix = args.test_prefix
        if not prefix or prefix != prefix.strip() or any(c in prefix for c in "[]\n"):
            raise Problem(
                f"--test-prefix: {prefix!r} must not be empty, hold '[', ']' or edge spaces"
            )
    cache = None
    if not args.no_cache:
        where = f"local-seed{args.seed}" if base_url == "local" else _slug(base_url)
        cache = Cache(args.cache_dir / where)
    options = Options(cut=args.cut, criterion=args.criterion, redact=args.redact)
    return Request(
        agent_id,
        params,
        args.limit,
        options,
        out,
        existing,
        base_url,
        api_key,
        cache,
        args.concurrency,
        args.seed,
        args.test_prefix if args.as_tests else None,
    )


def _slug(url: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", url.split("://", 1)[-1]).strip("_")


# ---------------------------------------------------------------------------- the import


@dataclass
class Outcome:
    read: int
    built: list[Built]
    skipped: list[Skipped]
    requests: int
    retries: int
    cached: int
    tests_created: int = 0
    tests_existing: int = 0


class Progress:
    """A line on stderr now and then: what has been read so far."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.last = 0.0
        self.said = ""

    def say(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if text != self.said and (force or now - self.last >= 1.0):
            self.last, self.said = now, text
            print(f"import: {text}", file=self.stream, flush=True)


async def import_conversations(request: Request, base_url: str, progress: Progress) -> Outcome:
    from pydantic import ValidationError

    from runner.config.models import Timeouts
    from runner.http import make_http_client
    from runner.importer.fetch import Fetcher, FetchError
    from runner.wire.conversations import Conversation

    timeouts = Timeouts()
    async with make_http_client(
        base_url, request.api_key, timeouts, request.concurrency + 1
    ) as client:
        fetcher = Fetcher(client)
        try:
            agent = await fetcher.agent(request.agent_id)
        except FetchError as exc:
            if exc.status == 404:
                raise Problem(f"--agent: unknown agent {request.agent_id!r}") from None
            raise Problem(str(exc), EXIT_FAILED) from None
        criteria_defs = {
            c["id"]: c
            for c in (
                agent.get("platform_settings", {}).get("evaluation", {}).get("criteria") or []
            )
            if isinstance(c, dict) and "id" in c and "conversation_goal_prompt" in c
        }
        try:
            summaries = await fetcher.list_ids(
                request.params,
                request.limit,
                lambda n: progress.say(f"listed {n} conversations"),
            )
            ids = [s["conversation_id"] for s in summaries]
            progress.say(f"listed {len(ids)} conversations", force=True)
            details = await fetcher.details(
                ids,
                request.cache,
                request.concurrency,
                lambda n: progress.say(f"read {n} of {len(ids)} conversations"),
            )
        except FetchError as exc:
            raise Problem(str(exc), EXIT_FAILED) from None
    built: list[Built] = []
    skipped: list[Skipped] = []
    for conversation_id in ids:
        reply = details[conversation_id]
        if isinstance(reply, FetchError):
            reason = "not found" if reply.status == 404 else str(reply)
            skipped.append(Skipped(conversation_id, reason))
            continue
        try:
            conv = Conversation.model_validate(reply)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            skipped.append(Skipped(conversation_id, f"unreadable reply ({where}: {first['msg']})"))
            continue
        result = build_scenario(conv, criteria_defs, request.options)
        (built if isinstance(result, Built) else skipped).append(result)  # type: ignore[arg-type]
    outcome = Outcome(len(ids), built, skipped, 0, 0, 0)
    if request.test_prefix is not None and built:
        from runner.importer.publish import create_tests, test_bodies

        bodies = test_bodies([b.entry for b in built], request.agent_id, None, request.test_prefix)
        async with make_http_client(base_url, request.api_key, timeouts, 2) as client:
            publisher = Fetcher(client, counters=fetcher.counters)
            try:
                published = await create_tests(publisher, bodies, request.test_prefix)
            except FetchError as exc:
                raise Problem(str(exc), EXIT_FAILED) from None
        outcome.tests_created, outcome.tests_existing = published.created, published.existing
    c = fetcher.counters
    outcome.requests, outcome.retries, outcome.cached = c.requests, c.retries, c.cached
    return outcome


def write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def execute(request: Request, out: TextIO, err: TextIO) -> int:
    import anyio

    progress = Progress(err)
    if request.base_url == "local":
        from runner.localapi.server import start_local_api

        try:
            api = start_local_api(["--time-scale", "0", "--seed", str(request.seed)])
        except RuntimeError as exc:
            raise Problem(f"could not start the local API: {exc}", EXIT_FAILED) from None
        try:
            outcome = anyio.run(import_conversations, request, api.base_url, progress)
        finally:
            api.stop()
    else:
        outcome = anyio.run(import_conversations, request, request.base_url, progress)
    merged = merge_file(request.existing, outcome.built, request.agent_id)
    if request.options.redact:
        leaks = find_personal_data(merged.text)
        if leaks:  # the rules missed nothing they check for: a bug, never written
            raise Problem(f"redaction left {len(leaks)} personal data items; nothing written", 1)
    try:
        request.out.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(request.out, merged.text)
    except OSError as exc:
        raise Problem(f"--out: cannot write {request.out}: {exc.strerror}") from None
    reasons = Counter(s.reason for s in outcome.skipped)
    print(
        f"read {outcome.read} conversations of {request.agent_id}; wrote {request.out}: "
        f"{merged.added} new, {merged.updated} updated, {merged.unchanged} unchanged"
        + (f", {merged.kept} other entries kept" if merged.kept else "")
        + f"; skipped {len(outcome.skipped)}"
        + (": " + "; ".join(f"{n} {r}" for r, n in sorted(reasons.items())) if reasons else "")
        + f" ({outcome.requests} requests, {outcome.retries} retried, "
        f"{outcome.cached} from the cache)",
        file=out,
    )
    if request.test_prefix is not None:
        print(
            f"simulation tests named {request.test_prefix!r}: {outcome.tests_created} created, "
            f"{outcome.tests_existing} already there",
            file=out,
        )
    return 0


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The command: exit 0 on success, 2 on bad input, 1 on a failed request."""
    try:
        return execute(check(args), out, err)
    except Problem as exc:
        print(f"error: {exc}", file=err)
        return exc.code


def main(argv: Sequence[str] | None = None) -> int:
    """``scenarios import`` on its own (the CLI hooks ``add_parser`` and ``run``)."""
    parser = argparse.ArgumentParser(prog="python -m runner")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))
