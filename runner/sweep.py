"""One sweep end to end: a loaded config in, a results directory out.

This is the I/O shell around the engine, in three steps under the run directory's lock:
``open_session`` (what is done already, the manifest entry, the part writer), ``execute`` (the
target, the expected cost and the budget from ``runner.costing``, the backend from
``runner.backends.factory``, the engine pulling the session's jobs from the planner
``runner.run_planner`` chooses, with its progress display and signal handling) and
``finalize`` (the session's figures, the compacted tables, the manifest). Everything it
decides is plain data.

(Over 600 lines because it is the one shell that wires a session's three steps together around
the ``OpenSession`` and ``RunResult`` they share; the decisions it wires live in ``plan``,
``run_planner``, ``costing``, ``comparing`` and ``backends.factory``.)
"""

from __future__ import annotations

import contextlib
import platform
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TextIO

import anyio
import polars as pl

import runner
from runner.adaptive import DEFAULT_CAP, AdaptiveLimit, ConcurrencyController
from runner.backends.agent_testing import AgentTestingBackend
from runner.backends.factory import make_backend
from runner.budget import BudgetTracker
from runner.comparing import compare_counts
from runner.config import Config, config_hash, resolved_config
from runner.costing import estimate_cost, make_budget, open_jobs, outlook
from runner.engine import Counters, Engine, RunAborted, SharedSlots
from runner.errors import AttemptError, Failure
from runner.estimate import Estimate
from runner.http import make_http_client
from runner.journal import JournaledParts, recover
from runner.manifest import Manifest, Session, Target
from runner.paired import Decision
from runner.pairing import PairPlanner
from runner.plan import (
    DEFAULT_RESULTS,
    planned_total,
    run_name,
    select_jobs,
)
from runner.planner import UntilVerdict
from runner.preflight import PreflightFailed, check_target
from runner.progress import show_progress
from runner.replay import verdict_table
from runner.run_planner import planner_windows, run_planner
from runner.schema import VERDICTS
from runner.shard import Shard
from runner.store import (
    RESOLVED_CONFIG,
    PartWriter,
    RunLock,
    ShardLock,
    StoreError,
    compact,
    done_job_keys,
    earlier_spend,
    job_totals,
    read_manifest,
    read_shard_manifest,
    session_spend,
    set_aside,
    write_json,
    write_manifest,
    write_shard_manifest,
)
from runner.target import SetupError, read_api_key, target_url

__all__ = [
    "DEFAULT_RESULTS",
    "RunReport",
    "RunResult",
    "WriteFailed",
    "concurrency_policy",
    "preflight_only",
    "run",
    "run_name",
    "run_sweep",
]


class WriteFailed(StoreError):
    """Results could not be written mid-run; the run stopped, what was flushed is kept."""


@dataclass
class RunResult:
    """What one session of a run did (``runner.run`` returns it)."""

    run_dir: Path
    run_id: str
    counters: Counters
    wall_secs: float
    aborted: Failure | None = None
    interrupted: bool = False
    table_counts: dict[str, int] = field(default_factory=dict)
    budget: BudgetTracker | None = None
    """The run's budget (``run.budget``), with the spend it counted."""
    compare: Decision | None = None
    """``compare:`` runs: where the paired comparison stands after this session."""
    budget_stopped: bool = False
    """The budget stopped dispatching; ``not_run`` jobs were left for a resume."""
    not_run: int = 0
    estimate: list[Estimate] = field(default_factory=list)
    shard: Shard | None = None
    """The shard this session ran (``run --shard I/N``); its tables are built by ``merge``."""
    verdicts: pl.DataFrame | None = None
    """The ``verdicts`` table written at the end (``run.repeats`` with ``until: verdict``)."""


RunReport = RunResult
"""The former name of ``RunResult``, kept for code written against it."""


def _versions() -> dict[str, str]:
    versions = {"runner": runner.__version__, "python": platform.python_version()}
    for package in ("anyio", "httpx", "polars", "pydantic", "tenacity"):
        with contextlib.suppress(PackageNotFoundError):
            versions[package] = version(package)
    return versions


def concurrency_policy(cfg: Config) -> int | ConcurrencyController:
    """``run.concurrency`` as the engine takes it: a fixed limit, or an adaptive one."""
    if cfg.run.concurrency == "auto":
        return AdaptiveLimit(cfg.run.max_concurrency or DEFAULT_CAP)
    return cfg.run.concurrency


async def _watch_signals(engine: Engine, grace: float, out: TextIO) -> None:
    """First Ctrl-C / SIGTERM: graceful stop; second: stop now. Finished work is kept either way."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if not engine.stopping.is_set():
                print(
                    f"\n{signal.Signals(signum).name}: no new simulations; giving those in flight "
                    f"up to {grace:g}s to finish (Ctrl-C again to stop now)",
                    file=out,
                    flush=True,
                )
                engine.request_stop(grace)
            else:
                print("stopping now", file=out, flush=True)
                engine.hard_stop()


async def run_sweep(
    cfg: Config,
    *,
    name: str | None = None,
    limit: int | None = None,
    results_root: Path = DEFAULT_RESULTS,
    progress: bool = True,
    base_url: str | None = None,
    retry_errors: bool = True,
    fresh: bool = False,
    handle_signals: bool = False,
    preflight: bool = True,
    keep_remote: bool = False,
    shard: Shard | None = None,
    slots: SharedSlots | None = None,
    watch: Callable[[Counters], None] | None = None,
    quiet: bool = False,
) -> RunResult:
    """Run a sweep into ``results_root/<name>/``, resuming what is there.

    Jobs already ``ok`` in the run directory are never sent again; jobs that ended in error are
    re-run unless ``retry_errors`` is false. ``fresh`` sets an existing run directory aside and
    starts anew. ``base_url`` overrides the config's target (tests point it at a server).
    ``handle_signals`` (the CLI) turns Ctrl-C / SIGTERM into a graceful stop. ``preflight``
    (default) checks the key, the agents and the endpoint for free before the first paid
    request (``runner.preflight``) and raises ``PreflightFailed`` with one line per problem.
    An interrupted agent-testing run cancels the invocations this session started and left
    unfinished, unless ``keep_remote``.

    ``shard`` runs only that shard's jobs, under its own lock and manifest
    (``shards/I-of-N.json``), beside the other shards; ``merge`` builds the tables.
    ``slots`` replaces the local concurrency limiter (the cluster's quota, ``runner.cluster``);
    ``watch`` is handed the live counters once the engine exists (a progress display elsewhere).
    ``quiet`` (``run --quiet``) prints no notices (the expected cost, recovered jobs); warnings
    and errors still go to stderr.
    """
    if shard is not None and fresh:
        raise StoreError("--fresh cannot be used with --shard: set the run directory aside first")
    api_key = read_api_key(cfg, base_url)
    run_dir = results_root / run_name(cfg, name)
    now = datetime.now(UTC)
    run_id = now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    if fresh:
        moved = set_aside(run_dir, now.strftime("%Y%m%dT%H%M%SZ"))
        if moved is not None and not quiet:
            print(f"previous run kept at {moved}", file=sys.stderr)
    # a run that pre-flight stops before its first request leaves no directory behind, unless
    # it had one (a resume keeps its sessions; shards share the directory with each other)
    discard_if_stopped = shard is None and not run_dir.exists()
    discard = False
    lock: RunLock | ShardLock = (
        RunLock(run_dir) if shard is None else ShardLock(run_dir, shard.index, shard.count)
    )
    try:
        lock.acquire()
    except OSError as exc:
        raise StoreError(
            f"cannot write results to {run_dir}: {exc.strerror}; nothing was sent: make the "
            "results directory writable or choose another"
        ) from exc
    try:
        opened = open_session(
            cfg, run_dir, run_id, limit=limit, retry_errors=retry_errors, shard=shard, quiet=quiet
        )
        result = RunResult(
            run_dir=run_dir, run_id=run_id, counters=Counters(), wall_secs=0.0, shard=shard
        )
        start = time.monotonic()
        try:
            await execute(
                cfg,
                opened,
                result,
                api_key,
                limit=limit,
                progress=progress,
                base_url=base_url,
                handle_signals=handle_signals,
                preflight=preflight,
                keep_remote=keep_remote,
                slots=slots,
                watch=watch,
                quiet=quiet,
            )
        except BaseException:
            if opened.session.ended == "running":  # not already "write_failed"
                opened.session.ended = "interrupted"
            result.interrupted = True
            raise
        finally:
            result.wall_secs = time.monotonic() - start
            with anyio.CancelScope(shield=True):
                await finalize(opened, result)
        return result
    except PreflightFailed:
        discard = discard_if_stopped
        raise
    finally:
        lock.release()
        if discard:
            shutil.rmtree(run_dir, ignore_errors=True)


@dataclass
class OpenSession:
    """A session under way: its manifest entry, what to skip and where its parts go."""

    run_dir: Path
    manifest: Manifest
    session: Session
    writer: PartWriter
    axes: tuple[str, ...]
    done: set[str]
    recovered: int
    """Finished jobs of earlier sessions recovered from the journal."""
    earlier_usd: list[float] = field(default_factory=list)
    """USD of each job earlier sessions paid for (``store.earlier_spend``)."""
    earlier_credits: list[float] = field(default_factory=list)
    shard: Shard | None = None
    cfg: Config | None = None


def open_session(
    cfg: Config,
    run_dir: Path,
    run_id: str,
    *,
    limit: int | None,
    retry_errors: bool,
    shard: Shard | None = None,
    quiet: bool = False,
) -> OpenSession:
    """Prepare the directory, count what is left to do and record the session as running.
    A shard touches only what is its own: its leftovers, its journal, its manifest."""
    axes = tuple(cfg.matrix)
    writer = PartWriter(run_dir, run_id, axes)
    earlier = read_manifest(run_dir) if shard is None else read_shard_manifest(run_dir, shard.name)
    own = None if shard is None else [s.run_id for s in earlier.sessions] if earlier else []
    writer.prepare(own)
    recovered = recover(run_dir, own)
    if recovered and not quiet:
        print(
            f"recovered {recovered} finished job(s) from the journal of an interrupted session",
            file=sys.stderr,
        )
    done = done_job_keys(run_dir, include_errors=not retry_errors)
    earlier_usd, earlier_credits = earlier_spend(run_dir)
    if cfg.compare is None:
        total, skipped = planned_total(cfg, limit, done, shard)
    elif shard is not None and shard.count > 1:  # each shard would run its own comparison
        raise SetupError("compare: a comparison runs as one process, not in shards")
    else:  # a comparison's planner decides how many pairs it dispatches
        total, skipped = compare_counts(cfg, run_dir, done)
    started = datetime.now(UTC)
    session = Session(
        run_id=run_id,
        started_at=started,
        config_hash=config_hash(cfg),
        planned=total,
        skipped=skipped,
        recovered=recovered,
    )
    manifest = Manifest(
        run_name=run_dir.name,
        created_at=earlier.created_at if earlier else started,
        config_path=str(cfg.source_path if shard is None else cfg.source_path.resolve()),
        config_hash=session.config_hash,
        target=Target(base_url=cfg.target.base_url, backend=cfg.target.backend),
        matrix_axes=list(axes),
        versions=_versions(),
        finalized=False,
        counts=earlier.counts if earlier else {},
        sessions=[*(earlier.sessions if earlier else []), session],
    )
    if shard is None:
        try:
            write_manifest(run_dir, manifest)
            write_json(run_dir / RESOLVED_CONFIG, resolved_config(cfg))
        except OSError as exc:
            raise StoreError(
                f"cannot write results to {run_dir}: {exc.strerror or exc}; nothing was sent"
            ) from exc
    else:
        manifest.shard, manifest.limit, manifest.counts = str(shard), limit, {}
        write_shard_manifest(run_dir, shard.name, manifest)
        write_json(run_dir / RESOLVED_CONFIG, resolved_config(cfg), unique=True)
    return OpenSession(
        run_dir,
        manifest,
        session,
        writer,
        axes,
        done,
        recovered,
        earlier_usd=earlier_usd,
        earlier_credits=earlier_credits,
        shard=shard,
        cfg=cfg,
    )


async def execute(
    cfg: Config,
    opened: OpenSession,
    result: RunResult,
    api_key: str | None,
    *,
    limit: int | None,
    progress: bool,
    base_url: str | None,
    handle_signals: bool,
    preflight: bool = True,
    keep_remote: bool = False,
    slots: SharedSlots | None = None,
    watch: Callable[[Counters], None] | None = None,
    quiet: bool = False,
) -> None:
    """Run the session's jobs against the target; ``result`` is filled in as it goes."""
    session, run_dir = opened.session, opened.run_dir
    total = session.planned
    concurrency: int | ConcurrencyController | SharedSlots = (
        concurrency_policy(cfg) if slots is None else slots
    )
    pool = concurrency if isinstance(concurrency, int) else concurrency.cap
    local = base_url is None and total > 0
    with target_url(cfg) if local else contextlib.nullcontext(base_url or "") as url:
        if preflight and total > 0:
            problems = await check_target(cfg, url, api_key)
            if problems:
                session.ended = "aborted"
                session.abort_reason = problems[0]
                raise PreflightFailed(problems)
        # the planner first: a run that stops early is priced for what it may still send,
        # and says what it is expected to send (``costing.outlook``)
        planner = run_planner(cfg, opened.run_dir, opened.done, limit, opened.shard)
        most, expected = outlook(
            planner, opened.done, select_jobs(cfg, limit, opened.done, opened.shard)
        )
        if most >= 0:  # the most it may send, not every job of its cases left
            session.planned = total = most
        if total:
            jobs = open_jobs(
                planner, select_jobs(cfg, limit, opened.done, opened.shard), opened.done
            )
            try:
                async with make_http_client(url, api_key, cfg.target.timeouts, 2) as client:
                    result.estimate = await estimate_cost(
                        cfg,
                        jobs,
                        total,
                        opened.earlier_usd,
                        opened.earlier_credits,
                        client,
                        expected,
                    )
            except AttemptError as exc:  # the key was rejected: stop before any simulation
                result.aborted = exc.failure
                return
            for estimate in [] if quiet else result.estimate:
                print(estimate.describe(), file=sys.stderr)
            if not result.estimate and not quiet:
                if expected is not None:
                    print(expected.describe(), file=sys.stderr)
                print("expected cost: not estimated (the target quoted no prices)", file=sys.stderr)
        if result.estimate:
            e = result.estimate[0]
            session.estimate = {
                "low": e.low,
                "high": e.high,
                "unit": e.unit,
                "jobs": e.jobs,
                "how": e.how,
            }
            if expected is not None:
                session.estimate["expected_jobs"] = round(expected.mean, 1)
                session.estimate["expected_how"] = expected.how
        result.budget = make_budget(
            cfg, opened.earlier_usd, opened.earlier_credits, result.estimate
        )
        backend = make_backend(
            cfg,
            make_http_client(url, api_key, cfg.target.timeouts, pool),
            run_dir=run_dir,
            session_id=result.run_id,
            run_key=opened.manifest.created_at.isoformat(),
            shard=opened.shard,
            windows=planner_windows(planner),
        )
        engine = Engine(
            backend,
            concurrency=concurrency,
            retry=cfg.run.retry,
            run_id=result.run_id,
            requests_per_minute=cfg.run.requests_per_minute,
            seed=cfg.run.seed,
            circuit_breaker=cfg.run.circuit_breaker,
            budget=result.budget,
        )
        engine.counters.total = total
        engine.counters.skipped = session.skipped
        result.counters = engine.counters
        if watch is not None:
            watch(engine.counters)
        # a failed write (disk full, directory gone) stops the run at once: what was written
        # or journaled before stays, nothing more is paid for
        sink = JournaledParts(opened.writer)
        if isinstance(planner, UntilVerdict):
            engine.counters.cases = planner.tally
        try:
            async with anyio.create_task_group() as tg:
                if progress and total:
                    tg.start_soon(
                        partial(
                            show_progress,
                            engine.counters,
                            up_to=expected is not None,
                            expected=None if expected is None else expected.mean,
                        )
                    )
                if handle_signals:
                    tg.start_soon(_watch_signals, engine, cfg.run.shutdown_grace, sys.stderr)
                try:
                    await engine.run(planner, sink)
                except RunAborted as exc:  # caught here, not as a task group's exception group
                    result.aborted = exc.failure
                finally:
                    tg.cancel_scope.cancel()
                    if isinstance(planner, PairPlanner):
                        result.compare = planner.decision
        finally:
            sink.close()
            result.interrupted = engine.stopping.is_set() and result.aborted is None
            result.budget_stopped = engine.counters.budget_stopped and not result.interrupted
            if result.budget_stopped:
                result.not_run = max(total - engine.counters.done, 0)
            with anyio.CancelScope(shield=True):
                if result.interrupted and isinstance(backend, AgentTestingBackend):
                    await _cancel_remote(backend, keep_remote)
                await backend.aclose()
        if engine.write_error is not None:
            session.ended = "write_failed"
            error = engine.write_error
            reason = str(error) if isinstance(error, StoreError) else _os_reason(error)
            raise WriteFailed(
                f"{reason}; stopped the run. Jobs finished before are kept in "
                f"{run_dir}; free space and run the same command to resume"
            )


def write_verdicts(cfg: Config, run_dir: Path) -> pl.DataFrame | None:
    """``verdicts.parquet`` from the run's stored outcomes (final tables), when ``run.repeats``
    is a mapping; None otherwise."""
    seq = cfg.run.sequential
    if seq is None:
        return None
    jobs, criteria = run_dir / "jobs.parquet", run_dir / "criteria.parquet"
    if not jobs.exists() or not criteria.exists():
        return None
    table = verdict_table(pl.scan_parquet(jobs), pl.scan_parquet(criteria), seq.rule_for(), seq.of)
    target = run_dir / VERDICTS.file
    tmp = target.with_name(".tmp-" + target.name)
    table.write_parquet(tmp)
    tmp.replace(target)
    return table


async def _cancel_remote(backend: AgentTestingBackend, keep: bool) -> None:
    """Ctrl-C / SIGTERM: the invocations this session started stop costing money."""
    if keep:
        print(
            "--keep-remote: the test invocations this session started keep running; a resume "
            "re-attaches to them",
            file=sys.stderr,
        )
        return
    with anyio.move_on_after(30):
        cancelled = await backend.cancel_started()
        if cancelled:
            print(
                f"cancelled {len(cancelled)} unfinished test invocation(s) this session started "
                "(--keep-remote leaves them running)",
                file=sys.stderr,
            )


def _os_reason(error: BaseException) -> str:
    strerror = getattr(error, "strerror", None)
    return f"cannot write results: {strerror or error}"


async def finalize(opened: OpenSession, result: RunResult) -> None:
    """Record how the session ended and its figures, rebuild the tables, write the manifest.
    The part files stay the truth when the tables cannot be rebuilt (``load_run`` reads them)."""
    session, manifest, run_dir = opened.session, opened.manifest, opened.run_dir
    c = result.counters
    if session.ended == "running":
        session.ended = (
            "aborted"
            if result.aborted
            else "interrupted"
            if result.interrupted
            else "budget"
            if result.budget_stopped
            else "completed"
        )
    session.ended_at = datetime.now(UTC)
    session.wall_secs = round(result.wall_secs, 3)
    session.done, session.ok, session.errors = c.done, c.ok, c.errors
    session.retries, session.attempts = c.retries, c.attempts
    session.concurrency_limit = c.concurrency_limit
    session.peak_in_flight = c.peak_in_flight
    session.server_quota = c.server_quota
    if result.aborted:
        session.abort_reason = result.aborted.message
    _record_spend(session, result)
    if opened.shard is not None:
        # the final tables are built by ``merge``: other shards may be reading them now
        try:
            write_shard_manifest(run_dir, opened.shard.name, manifest)
        except OSError as exc:
            print(f"warning: could not write the shard manifest: {exc}", file=sys.stderr)
        return
    try:
        spend = await anyio.to_thread.run_sync(session_spend, run_dir, session.run_id)
        session.spent_usd, session.spent_credits = spend
        result.table_counts = await anyio.to_thread.run_sync(compact, run_dir, opened.axes)
        if opened.cfg is not None:
            result.verdicts = await anyio.to_thread.run_sync(write_verdicts, opened.cfg, run_dir)
        totals = await anyio.to_thread.run_sync(job_totals, run_dir)
        manifest.counts = {**result.table_counts, **totals}
        manifest.finalized = True
        write_manifest(run_dir, manifest)
    except OSError as exc:
        print(
            f"warning: could not rebuild the tables in {run_dir}: {exc.strerror or exc}",
            file=sys.stderr,
        )


def _record_spend(session: Session, result: RunResult) -> None:
    budget = result.budget
    if budget is not None:
        usd, credits = budget.limit_of("usd"), budget.limit_of("credits")
        session.budget_usd = usd.limit if usd else None
        session.budget_credits = credits.limit if credits else None
        session.run_spent_usd = usd.spent if usd else None
        session.run_spent_credits = credits.spent if credits else None
    if result.budget_stopped:
        session.not_run = result.not_run


def preflight_only(cfg: Config, base_url: str | None = None) -> list[str]:
    """The pre-flight problems of a config's target (``--dry-run``): the key is read and a
    local target is started as for a run; only free requests are sent."""
    api_key = read_api_key(cfg, base_url)

    async def check() -> list[str]:
        with target_url(cfg) if base_url is None else contextlib.nullcontext(base_url) as url:
            return await check_target(cfg, url, api_key)

    return anyio.run(check)


def run(config: Config | str | Path, **kwargs: Any) -> RunResult:
    """Blocking entry point (the public ``runner.run``): a config or its path in, a result out."""
    from runner.config import load_config

    cfg = config if isinstance(config, Config) else load_config(config)
    return anyio.run(
        lambda: run_sweep(cfg, **kwargs),
        backend_options={"use_uvloop": sys.platform != "win32"},
    )
