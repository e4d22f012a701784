"""``run --ray [ADDRESS] --shards N``: the shards of a run as Ray actors, under one quota.

Ray is the engine (an optional extra, ``.[ray]``); nothing here is a cluster of our own:

- **Shard actors.** Each runs ``run_sweep(..., shard=Shard(i, N))``, the same shard protocol
  a Kubernetes or Slurm worker runs, into one run directory the cluster's nodes share. Ray
  restarts an actor whose process dies (``max_restarts``) and re-submits its task
  (``max_task_retries``); the restarted shard resumes from the store as any shard does.
- **One quota for the cluster.** A named actor holds the account's concurrency limit for every
  shard: a ``SlotLedger`` (``runner.adaptive``) with the limit fixed (``run.concurrency: N``,
  for the whole cluster) or adaptive (``auto``: the same controller a single process uses, fed
  every shard's replies). A shard's engine takes its slots through ``ClusterSlots`` in place
  of its own limiter, and keeps a slot for its own next attempt while within its fair share
  (the actor's round trips are off the path of every simulation). Slots are leases: a shard
  that stops sending heartbeats has its slots returned after ``LEASE_SECS``.
- **One progress display.** The driver sums every shard's live counters, then runs ``merge``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import ray

from runner.adaptive import DEFAULT_CAP
from runner.cluster_quota import ClusterSlots, QuotaActor
from runner.config import Config
from runner.costing import dry_run_estimate, remaining
from runner.engine import Counters
from runner.merge import MergeResult, merge
from runner.progress import show_progress
from runner.shard import Shard
from runner.store import StoreError
from runner.sweep import DEFAULT_RESULTS, run_name, run_sweep
from runner.target import target_url

NAMESPACE = "convsim"
RESTARTS = 3
"""How often Ray restarts a shard actor whose process died (each restart resumes the shard)."""
SHARD_CPUS = 0.001
"""What a shard actor reserves: its work is waiting on the network, but Ray's ``SPREAD``
places actors that reserve nothing wherever it likes (often all on one node), and spreads
those that reserve some CPU, however little, over the nodes."""


class ClusterError(Exception):
    """The cluster could not run the shards (Ray could not start, a shard failed for good)."""


# ------------------------------------------------------------------------ the shard actors


def _counters_dict(c: Counters) -> dict[str, Any]:
    return {
        "total": c.total,
        "skipped": c.skipped,
        "done": c.done,
        "ok": c.ok,
        "errors": c.errors,
        "retries": c.retries,
        "in_flight": c.in_flight,
        "attempts": c.attempts,
        "concurrency_limit": c.concurrency_limit,
        "server_quota": c.server_quota,
        "failures_by_kind": dict(c.failures_by_kind),
    }


class ShardActor:
    """One shard of the run (a Ray actor). Constructed again by Ray after its process died;
    its ``run`` is then re-submitted and resumes the shard from the store."""

    def __init__(self, shard: Shard, quota: str | None) -> None:
        self.shard = shard
        self.quota = quota
        self.counters = Counters()
        self.incarnation = uuid.uuid4().hex[:8]

    async def pid(self) -> int:
        return os.getpid()

    async def progress(self) -> dict[str, Any]:
        return _counters_dict(self.counters)

    def _watch(self, counters: Counters) -> None:
        self.counters = counters

    async def run(self, cfg: Config, kwargs: dict[str, Any]) -> dict[str, Any]:
        slots = None
        if self.quota is not None:
            # Any: under ray's own types mypy judges every line after the await unreachable
            actor: Any = ray.get_actor(self.quota, namespace=NAMESPACE)
            stats = await actor.stats.remote()
            auto = cfg.run.concurrency == "auto"
            cap = int(cfg.run.max_concurrency or DEFAULT_CAP) if auto else int(stats["limit"])
            holder = f"shard-{self.shard.name}-{self.incarnation}"
            slots = ClusterSlots(actor, holder, cap, int(stats["limit"]), auto)
        try:
            result = await run_sweep(
                cfg, shard=self.shard, slots=slots, watch=self._watch, progress=False, **kwargs
            )
        finally:
            if slots is not None:
                slots.close()
        out = _counters_dict(result.counters)
        out.update(
            interrupted=result.interrupted,
            aborted=result.aborted.message if result.aborted else None,
            peak_in_flight=result.counters.peak_in_flight,
            wall_secs=result.wall_secs,
            node_id=ray.get_runtime_context().get_node_id(),
        )
        return out


# ------------------------------------------------------------------------ the driver


@dataclass
class ClusterOutcome:
    run_dir: Path
    counters: Counters
    wall_secs: float
    merged: MergeResult | None
    peak_in_flight: int
    """The most slots in use at once across the cluster (the quota actor's count); without a
    cluster quota, the sum of the shards' own peaks (an upper bound)."""
    shard_results: list[dict[str, Any]] = field(default_factory=list)
    restarts: int = 0
    message: str = ""


SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
USAGE_STATS_ENV = "RAY_USAGE_STATS_ENABLED"


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Keep Ray on 127.0.0.1 while it starts or connects, then put everything back.

    Told ``127.0.0.1``, Ray still resolves it to the machine's own address (both a node it
    starts, whose servers then listen on every interface, and a cluster address it connects
    to, which then misses a head listening on the loopback only), unless it is told this is no
    multi-node cluster: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read by every process it
    starts, and by this one when Ray was imported (hence the constant too).
    """
    from ray._private import ray_constants

    before_env, before_flag = os.environ.get(SINGLE_NODE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_NODE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before_flag
        if before_env is None:
            os.environ.pop(SINGLE_NODE_ENV, None)
        else:
            os.environ[SINGLE_NODE_ENV] = before_env


def is_loopback(address: str) -> bool:
    """``127.0.0.1:6379`` or ``localhost:6379``: a head on this machine's loopback interface
    (``ray start --head --node-ip-address=127.0.0.1``), joined as a node of it. (A Ray Client
    address, ``ray://``, joins no node: Ray leaves it as given.)"""
    return "://" not in address and address.rsplit(":", 1)[0] in LOOPBACK_HOSTS


def init_local_ray(num_cpus: int | None = None, **options: Any) -> None:
    """Start a local Ray cluster on the loopback interface only (127.0.0.1), with Ray's usage
    statistics off (``RAY_USAGE_STATS_ENABLED=0``, read by every process it starts; a user's
    own ``=1`` stands): a run reports nothing to Ray's usage service."""
    os.environ.setdefault(USAGE_STATS_ENV, "0")
    with loopback_only():
        ray.init(
            address="local",
            num_cpus=num_cpus or max(2, os.cpu_count() or 2),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            **options,
        )


def _start_ray(address: str, num_cpus: int | None) -> bool:
    """Connect to (or start) Ray; True when this call started it (and so shuts it down)."""
    if ray.is_initialized():
        return False
    if not (sys.stdout.isatty() and sys.stderr.isatty()):
        # the shards' lines reach the driver with a coloured "(ShardActor pid=...)" prefix:
        # plain in a log or a pipe (read by the driver, as it prints them)
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    options: dict[str, Any] = {"log_to_driver": True, "logging_level": "WARNING"}
    try:
        if address == "local":
            init_local_ray(num_cpus, **options)
        elif is_loopback(address):
            with loopback_only():
                ray.init(
                    address=address,
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    **options,
                )
        else:
            ray.init(address=address, include_dashboard=False, **options)
    except Exception as exc:  # Ray's own errors: no cluster at that address, ...
        raise ClusterError(f"cannot start or reach Ray at {address}: {exc}") from exc
    return True


def _sum(into: Counters, parts: list[dict[str, Any]]) -> None:
    for name in ("total", "skipped", "done", "ok", "errors", "retries", "in_flight", "attempts"):
        setattr(into, name, sum(p.get(name, 0) for p in parts))
    into.failures_by_kind.clear()
    for p in parts:
        into.failures_by_kind.update(p.get("failures_by_kind", {}))
    quotas = [p["server_quota"] for p in parts if p.get("server_quota") is not None]
    into.server_quota = max(quotas) if quotas else into.server_quota


def _print_estimate(
    cfg: Config, limit: int | None, results_root: Path, retry_errors: bool, url: str | None
) -> None:
    """The sweep's expected cost, once, from the driver (each shard prints its own share's)."""
    try:
        plan = remaining(cfg, limit=limit, results_root=results_root, retry_errors=retry_errors)
        estimates = dry_run_estimate(cfg, plan, limit, url)
    except Exception as exc:  # an estimate is advice: the run goes ahead without one
        print(f"expected cost: not estimated ({str(exc).splitlines()[0][:200]})", file=sys.stderr)
        return
    if not estimates:
        print("expected cost: not estimated (the target quoted no prices)", file=sys.stderr)
    for estimate in estimates:
        print(f"the sweep's {estimate.describe()}", file=sys.stderr)


def run_on_ray(
    cfg: Config,
    *,
    address: str = "local",
    shards: int,
    limit: int | None = None,
    results_root: Path = DEFAULT_RESULTS,
    progress: bool = True,
    retry_errors: bool = True,
    base_url: str | None = None,
    cluster_quota: bool = True,
    num_cpus: int | None = None,
    on_started: Any = None,
) -> ClusterOutcome:
    """Run ``cfg`` as ``shards`` shard actors on Ray, then ``merge``.

    ``cluster_quota`` (the default) puts every shard under one quota actor holding
    ``run.concurrency`` for the whole cluster; False leaves each shard its own limiter (each
    with ``run.concurrency``: the baselines the benchmark compares). A ``local`` target is
    started once, here, for every shard (so only on a local cluster). ``on_started`` is called
    with the shard actors once they run (tests kill one).
    """
    started = _start_ray(address, num_cpus)
    name = run_name(cfg)
    run_dir = results_root / name  # as given: printed as a run without Ray prints it
    quota_name = f"quota-{name}-{uuid.uuid4().hex[:6]}" if cluster_quota else None
    actors: list[Any] = []
    quota: Any = None
    t0 = time.monotonic()
    try:
        local = base_url is None and cfg.target.base_url == "local"
        if local and address != "local":
            print(
                "warning: target.base_url is local: the local API runs on this machine, "
                "which the cluster's other nodes may not reach",
                file=sys.stderr,
            )
        with target_url(cfg) if local else contextlib.nullcontext(base_url) as url:
            _print_estimate(cfg, limit, results_root, retry_errors, url)
            if quota_name is not None:
                auto = cfg.run.concurrency == "auto"
                cap = cfg.run.max_concurrency or DEFAULT_CAP
                quota = (
                    ray.remote(QuotaActor)
                    .options(
                        name=quota_name, namespace=NAMESPACE, max_concurrency=100_000, num_cpus=0
                    )
                    .remote("auto" if auto else cfg.run.concurrency, cap)
                )
                ray.get(quota.stats.remote())
            remote_shard = ray.remote(ShardActor).options(
                max_restarts=RESTARTS,
                max_task_retries=RESTARTS,
                max_concurrency=1000,
                num_cpus=SHARD_CPUS,
                scheduling_strategy="SPREAD",
            )
            actors = [remote_shard.remote(Shard(i, shards), quota_name) for i in range(shards)]
            kwargs = {
                "limit": limit,
                "results_root": results_root.resolve(),
                "retry_errors": retry_errors,
                "base_url": url,
            }
            refs = [a.run.remote(cfg, kwargs) for a in actors]
            if on_started is not None:
                on_started(actors)
            counters = Counters(concurrency_auto=cfg.run.concurrency == "auto")
            results = anyio.run(_drive, actors, refs, quota, counters, progress)
            # a shard that failed for good (out of restarts, or its actor never started):
            # once more in a new actor, which resumes it from the store
            failed = [i for i, r in enumerate(results) if "failed" in r]
            if failed:
                reasons = "; ".join(f"shard {i}: {results[i]['failed']}" for i in failed)
                print(f"warning: starting failed shards again ({reasons})", file=sys.stderr)
                for i in failed:
                    with contextlib.suppress(Exception):
                        ray.kill(actors[i], no_restart=True)
                    actors[i] = remote_shard.remote(Shard(i, shards), quota_name)
                again_refs = [actors[i].run.remote(cfg, kwargs) for i in failed]
                again = anyio.run(
                    _drive, [actors[i] for i in failed], again_refs, quota, counters, progress
                )
                for i, result in zip(failed, again, strict=True):
                    results[i] = result
        wall = time.monotonic() - t0
        peak = (
            int(ray.get(quota.stats.remote())["peak"])
            if quota is not None
            else sum(int(r.get("peak_in_flight") or 0) for r in results)
        )
        _sum(counters, results)
        message = "; ".join(
            f"shard {i}: {r['failed']}" for i, r in enumerate(results) if "failed" in r
        )
        merged: MergeResult | None = None
        try:
            merged = merge(run_dir, config=cfg.source_path, limit=limit)
        except StoreError as exc:  # e.g. a shard running elsewhere holds the directory
            message += f"{'; ' if message else ''}not merged: {exc}"
        if merged is not None and not merged.complete:
            message += (
                f"{'; ' if message else ''}{merged.missing_count} job(s) have no result; "
                "run the same command again to resume"
            )
        return ClusterOutcome(run_dir, counters, wall, merged, peak, results, message=message)
    finally:
        for actor in [*actors, *([quota] if quota is not None else [])]:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        if started:
            ray.shutdown()


async def _drive(
    actors: list[Any], refs: list[Any], quota: Any, counters: Counters, progress: bool
) -> list[dict[str, Any]]:
    """Wait for every shard while one display shows them all."""
    results: list[dict[str, Any]] = [{} for _ in refs]

    async def poll() -> None:
        while True:
            parts = []
            for actor in actors:
                try:
                    with anyio.fail_after(5):
                        parts.append(await actor.progress.remote())
                except Exception:  # a shard being restarted: no figures this time
                    continue
            _sum(counters, parts)
            if quota is not None:
                with contextlib.suppress(Exception):
                    stats = await quota.stats.remote()
                    counters.concurrency_limit = stats["limit"]
                    counters.in_flight = stats["in_use"]
                    counters.peak_in_flight = stats["peak"]
            await anyio.sleep(0.25)

    async def wait(i: int) -> None:
        try:
            results[i] = await refs[i]
        except Exception as exc:  # out of restarts, or a bug: merge names what is missing
            first = str(exc).strip().splitlines()
            results[i] = {"failed": first[-1] if first else type(exc).__name__}

    async with anyio.create_task_group() as tg:
        tg.start_soon(poll)
        if progress:
            tg.start_soon(show_progress, counters)
        async with anyio.create_task_group() as waits:
            for i in range(len(refs)):
                waits.start_soon(wait, i)
        tg.cancel_scope.cancel()
    return results
