"""One sweep end to end: a loaded config in, a results directory out.

This is the I/O shell around the engine: it reads the API key from the environment, starts
the local API when the config targets it, opens the store, runs the engine with a progress
display, compacts the tables and writes the manifest. Everything it decides is plain data.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx

import runner
from runner.adaptive import DEFAULT_CAP, AdaptiveLimit, ConcurrencyController
from runner.agent_testing import AgentTestingBackend
from runner.client import Backend, BufferedBackend, StreamBackend, make_http_client
from runner.config import Config, Job, config_hash, count_jobs, iter_jobs, resolved_config
from runner.engine import Counters, Engine, RunAborted
from runner.errors import Failure
from runner.outcome import Batch
from runner.progress import show_progress
from runner.store import (
    MANIFEST,
    RESOLVED_CONFIG,
    PartWriter,
    RunLock,
    StoreError,
    compact,
    done_job_keys,
    job_totals,
    set_aside,
    write_json,
)

DEFAULT_RESULTS = Path("results")


class WriteFailed(StoreError):
    """Results could not be written mid-run; the run stopped, what was flushed is kept."""


class SetupError(Exception):
    """The run cannot start (missing API key, local API failed to start, ...): nothing was sent."""


@dataclass
class RunReport:
    run_dir: Path
    run_id: str
    counters: Counters
    wall_secs: float
    aborted: Failure | None = None
    interrupted: bool = False
    table_counts: dict[str, int] = field(default_factory=dict)


def run_name(cfg: Config, override: str | None = None) -> str:
    return override or cfg.run.name or cfg.source_path.stem


def is_loopback(base_url: str) -> bool:
    host = httpx.URL(base_url).host
    return host == "localhost" or host.startswith("127.") or host == "::1"


def read_api_key(cfg: Config) -> str | None:
    """The key from the environment variable the config names.

    Required for a remote target; optional for the local API (``local`` or a loopback URL,
    e.g. a ``make serve`` instance), which only checks keys when started with one.
    """
    key = os.environ.get(cfg.target.api_key_env) or None
    if key is None and not cfg.target.is_local and not is_loopback(cfg.target.base_url):
        raise SetupError(
            f"environment variable {cfg.target.api_key_env} is not set "
            f"(target.api_key_env): it must hold the API key for {cfg.target.base_url}"
        )
    return key


def select_jobs(cfg: Config, limit: int | None, done: set[str]) -> Iterator[Job]:
    jobs: Iterator[Job] = iter_jobs(cfg)
    if limit is not None:
        jobs = itertools.islice(jobs, limit)
    return (job for job in jobs if job.key not in done)


def planned_total(cfg: Config, limit: int | None, done: set[str]) -> tuple[int, int]:
    """(jobs to run, jobs skipped as already done). Counts without keeping jobs in memory."""
    total = count_jobs(cfg)
    if limit is not None:
        total = min(total, limit)
    if not done:
        return total, 0
    skipped = sum(1 for job in itertools.islice(iter_jobs(cfg), total) if job.key in done)
    return total - skipped, skipped


def _versions() -> dict[str, str]:
    versions = {"runner": runner.__version__, "python": platform.python_version()}
    for package in ("anyio", "httpx", "polars", "pydantic", "tenacity"):
        with contextlib.suppress(PackageNotFoundError):
            versions[package] = version(package)
    return versions


def _load_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST
    if path.exists():
        with contextlib.suppress(ValueError, OSError):
            manifest: dict[str, Any] = json.loads(path.read_text())
            return manifest
    return {}


@contextlib.contextmanager
def target_url(cfg: Config) -> Iterator[str]:
    """The base URL to send to; for ``local``, a local API subprocess for the run's duration."""
    if not cfg.target.is_local:
        yield cfg.target.base_url
        return
    from runner.localapi.server import start_local_api

    local = cfg.target.local
    seed = local.seed if local.seed is not None else cfg.run.seed
    args = ["--time-scale", str(local.time_scale), "--seed", str(seed), *local.args]
    try:
        api = start_local_api(args)
    except RuntimeError as exc:
        raise SetupError(f"could not start the local API: {exc}") from exc
    try:
        yield api.base_url
    finally:
        api.stop()


def concurrency_policy(cfg: Config) -> int | ConcurrencyController:
    """``run.concurrency`` as the engine takes it: a fixed limit, or an adaptive one."""
    if cfg.run.concurrency == "auto":
        return AdaptiveLimit(cfg.run.max_concurrency or DEFAULT_CAP)
    return cfg.run.concurrency


def make_backend(
    cfg: Config,
    base_url: str,
    api_key: str | None,
    concurrency: int,
    transport: httpx.AsyncBaseTransport | None = None,
    run_dir: Path | None = None,
) -> Backend:
    """The config's backend over one shared client. ``run_dir`` is where the agent-testing
    backend records its invocations, to re-attach to them after a crash."""
    client = make_http_client(base_url, api_key, cfg.target.timeouts, concurrency, transport)
    if cfg.target.backend == "buffered":
        return BufferedBackend(client, cfg.target.timeouts)
    if cfg.target.backend == "agent-testing":
        return AgentTestingBackend(
            client, cfg.target.agent_testing, repeats=cfg.run.repeats, run_dir=run_dir
        )
    return StreamBackend(client, cfg.target.timeouts)


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
) -> RunReport:
    """Run a sweep into ``results_root/<name>/``, resuming what is there.

    Jobs already ``ok`` in the run directory are never sent again; jobs that ended in error are
    re-run unless ``retry_errors`` is false. ``fresh`` sets an existing run directory aside and
    starts anew. ``base_url`` overrides the config's target (tests point it at a server).
    ``handle_signals`` (the CLI) turns Ctrl-C / SIGTERM into a graceful stop.
    """
    api_key = read_api_key(cfg)
    run_dir = results_root / run_name(cfg, name)
    now = datetime.now(UTC)
    run_id = now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    if fresh:
        moved = set_aside(run_dir, now.strftime("%Y%m%dT%H%M%SZ"))
        if moved is not None:
            print(f"previous run kept at {moved}", file=sys.stderr)
    lock = RunLock(run_dir)
    try:
        lock.acquire()
    except OSError as exc:
        raise StoreError(f"cannot write results to {run_dir}: {exc.strerror}") from exc
    try:
        return await _run_locked(
            cfg,
            run_dir,
            run_id,
            api_key,
            limit=limit,
            progress=progress,
            base_url=base_url,
            retry_errors=retry_errors,
            handle_signals=handle_signals,
        )
    finally:
        lock.release()


async def _run_locked(
    cfg: Config,
    run_dir: Path,
    run_id: str,
    api_key: str | None,
    *,
    limit: int | None,
    progress: bool,
    base_url: str | None,
    retry_errors: bool,
    handle_signals: bool,
) -> RunReport:
    axes = tuple(cfg.matrix)
    writer = PartWriter(run_dir, run_id, axes)
    writer.prepare()
    done = done_job_keys(run_dir, include_errors=not retry_errors)
    total, skipped = planned_total(cfg, limit, done)
    concurrency = concurrency_policy(cfg)
    pool = concurrency if isinstance(concurrency, int) else concurrency.cap

    manifest = _load_manifest(run_dir)
    session: dict[str, Any] = {
        "run_id": run_id,
        "started_at": datetime.now(UTC).isoformat(),
        "ended_at": None,
        "ended": "running",
        "config_hash": config_hash(cfg),
        "planned": total,
        "skipped": skipped,
    }
    manifest.update(
        {
            "run_name": run_dir.name,
            "config_path": str(cfg.source_path),
            "config_hash": session["config_hash"],
            "target": {"base_url": cfg.target.base_url, "backend": cfg.target.backend},
            "matrix_axes": list(axes),
            "versions": _versions(),
            "finalized": False,
        }
    )
    manifest.setdefault("created_at", session["started_at"])
    manifest.setdefault("sessions", []).append(session)
    write_json(run_dir / MANIFEST, manifest)
    write_json(run_dir / RESOLVED_CONFIG, resolved_config(cfg))

    report = RunReport(run_dir=run_dir, run_id=run_id, counters=Counters(), wall_secs=0.0)
    start = time.monotonic()
    try:
        local = base_url is None and total > 0
        with target_url(cfg) if local else contextlib.nullcontext(base_url or "") as url:
            backend = make_backend(cfg, url, api_key, pool, run_dir=run_dir)
            engine = Engine(
                backend,
                concurrency=concurrency,
                retry=cfg.run.retry,
                run_id=run_id,
                requests_per_minute=cfg.run.requests_per_minute,
                seed=cfg.run.seed,
                circuit_breaker=cfg.run.circuit_breaker,
            )
            engine.counters.total = total
            engine.counters.skipped = skipped
            report.counters = engine.counters
            write_failure: list[StoreError] = []

            def write(batch: Batch) -> None:
                """Runs in a worker thread. A failed write (disk full, directory gone) stops
                the run at once: what was flushed before stays, nothing more is paid for."""
                if write_failure:
                    return
                try:
                    writer.write(batch)
                except StoreError as exc:
                    write_failure.append(exc)
                    anyio.from_thread.run_sync(engine.hard_stop)

            try:
                async with anyio.create_task_group() as tg:
                    if progress and total:
                        tg.start_soon(show_progress, engine.counters)
                    if handle_signals:
                        tg.start_soon(_watch_signals, engine, cfg.run.shutdown_grace, sys.stderr)
                    try:
                        await engine.run(select_jobs(cfg, limit, done), write)
                    finally:
                        tg.cancel_scope.cancel()
            except RunAborted as exc:
                report.aborted = exc.failure
            finally:
                report.interrupted = engine.stopping.is_set() and report.aborted is None
                with anyio.CancelScope(shield=True):
                    await backend.aclose()
            if write_failure:
                session["ended"] = "write_failed"
                raise WriteFailed(
                    f"{write_failure[0]}; stopped the run. Jobs flushed before are kept in "
                    f"{run_dir}; free space and run the same command to resume"
                )
    except BaseException:
        session["ended"] = "interrupted"
        report.interrupted = True
        raise
    finally:
        report.wall_secs = time.monotonic() - start
        c = report.counters
        if session["ended"] == "running":
            session["ended"] = (
                "aborted"
                if report.aborted
                else "interrupted"
                if report.interrupted
                else "completed"
            )
        session.update(
            {
                "ended_at": datetime.now(UTC).isoformat(),
                "wall_secs": round(report.wall_secs, 3),
                "done": c.done,
                "ok": c.ok,
                "errors": c.errors,
                "retries": c.retries,
                "attempts": c.attempts,
                "concurrency_limit": c.concurrency_limit,
                "peak_in_flight": c.peak_in_flight,
                "server_quota": c.server_quota,
            }
        )
        if report.aborted:
            session["abort_reason"] = report.aborted.message
        with anyio.CancelScope(shield=True):
            try:
                report.table_counts = await anyio.to_thread.run_sync(compact, run_dir, axes)
                totals = await anyio.to_thread.run_sync(job_totals, run_dir)
                manifest["counts"] = {**report.table_counts, **totals}
                manifest["finalized"] = True
                write_json(run_dir / MANIFEST, manifest)
            except OSError as exc:  # the part files stay the truth; load_run reads them
                print(
                    f"warning: could not rebuild the tables in {run_dir}: {exc.strerror or exc}",
                    file=sys.stderr,
                )
    return report


def run(config: Config | str | Path, **kwargs: Any) -> RunReport:
    """Blocking entry point (the public ``runner.run``): a config or its path in, a report out."""
    from runner.config import load_config

    cfg = config if isinstance(config, Config) else load_config(config)
    return anyio.run(
        lambda: run_sweep(cfg, **kwargs),
        backend_options={"use_uvloop": sys.platform != "win32"},
    )
