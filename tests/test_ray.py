"""Ray as the managed engine: shard actors on a local Ray cluster (127.0.0.1, 2 CPUs) under one
quota actor, counted at the server; a shard actor killed mid-run; the CLI's ``--ray``. Plus the
slot ledger the quota actor holds (pure)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import ray
import ray_helpers
import yaml
from ray_helpers import every_job_once

from runner.adaptive import AdaptiveLimit, Signal, SignalKind, SlotLedger
from runner.cluster import USAGE_STATS_ENV, init_local_ray, run_on_ray
from runner.cluster_quota import ClusterSlots, QuotaActor
from runner.config import load_config
from runner.localapi.server import LocalAPI, local_api_process
from runner.plan import sweep_jobs
from runner.shard import Shard
from runner.store import ShardLock, read_shard_manifest

ROOT = Path(__file__).resolve().parents[1]
QUOTA = 6

# ------------------------------------------------------------------------ the ledger (pure)


def test_the_ledger_holds_the_limit_across_holders() -> None:
    ledger = SlotLedger(3)
    assert [ledger.take("a", 0), ledger.take("b", 0), ledger.take("a", 0)] == [True] * 3
    assert not ledger.take("c", 0)  # full, whoever asks
    ledger.give_back("a", 1)
    assert ledger.take("c", 1) and ledger.in_use == 3 and ledger.peak == 3
    ledger.give_back("zzz", 1)  # not a holder: nothing happens
    assert ledger.in_use == 3


def test_a_silent_holder_returns_its_slots() -> None:
    ledger = SlotLedger(4, lease_secs=10)
    for _ in range(3):
        assert ledger.take("dead", 0)
    assert ledger.take("alive", 0)
    ledger.heartbeat("alive", 8)
    assert ledger.expire(9) == []
    assert ledger.expire(11) == ["dead"]  # 11 s without a word
    assert ledger.in_use == 1 and ledger.reclaimed == 3 and ledger.held == {"alive": 1}
    ledger.give_back("dead", 12)  # a late release from the dead shard changes nothing
    assert ledger.in_use == 1
    # a request the dead shard left waiting gets no slot, and does not make it look alive
    assert ledger.gone("dead") and not ledger.take("dead", 12) and ledger.in_use == 1
    assert ledger.expire(30) == ["alive"]  # silent since 8 s: gone too
    ledger.heartbeat("alive", 31)  # ... but it was only slow: a heartbeat brings it back
    assert not ledger.gone("alive") and ledger.take("alive", 31)


def test_a_holder_that_drops_its_slots_takes_no_more() -> None:
    ledger = SlotLedger(2)
    assert ledger.take("done", 0) and ledger.take("done", 0)
    assert ledger.drop("done") == 2 and ledger.in_use == 0
    assert not ledger.take("done", 1) and ledger.take("other", 1)


def test_the_ledger_adapts_with_the_same_controller_a_process_uses() -> None:
    ledger = SlotLedger(AdaptiveLimit(64))
    assert ledger.auto and ledger.limit == 4
    # the quota headers: straight to the quota, less what others hold
    limit = ledger.observe(Signal(SignalKind.ADMITTED, 4, 4, maximum=20, current=4))
    assert limit == 20
    # a 429 at 20 of the cluster's in flight: one slot of margin
    assert ledger.observe(Signal(SignalKind.REJECTED, 20, 20, maximum=20, current=20)) == 19


# ------------------------------------------------------------------------ on a Ray cluster


@pytest.fixture(scope="module")
def ray_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with ray_helpers.short_tmp(tmp_path_factory) as temp_dir:
        yield temp_dir


@pytest.fixture(scope="module")
def local_ray(ray_tmp: Path) -> Iterator[None]:
    with ray_helpers.ray_environment(ray_tmp):
        init_local_ray(num_cpus=2, logging_level="WARNING")
        try:
            yield
        finally:
            ray.shutdown()


def write_config(path: Path, base_url: str, scenarios: int = 30, **run: Any) -> Path:
    return ray_helpers.write_config(path, base_url, QUOTA, scenarios, **run)


@pytest.fixture
def capped_api() -> Iterator[LocalAPI]:
    with ray_helpers.capped_api(QUOTA, 0.03) as server:
        yield server


def test_four_shards_under_one_quota_actor(
    tmp_path: Path, capped_api: LocalAPI, local_ray: None
) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", capped_api.base_url))
    outcome = run_on_ray(
        cfg, shards=4, results_root=tmp_path / "r", progress=False, base_url=capped_api.base_url
    )
    assert outcome.merged is not None and outcome.merged.complete, outcome.message
    every_job_once(outcome.run_dir, 60)
    # the cluster lives on the loopback interface: its node, and every address it listens on
    assert [node["NodeManagerAddress"] for node in ray.nodes()] == ["127.0.0.1"]
    assert (
        ray.get(ray.remote(lambda: __import__("ray").util.get_node_ip_address()).remote())
        == "127.0.0.1"
    )
    stats = capped_api.stats()
    # counted at the server: the cluster never had more than the quota in flight ...
    assert stats["peak_in_flight"] <= QUOTA
    assert stats["concurrency_rejections"] == 0 and stats["simulate_requests"] == 60
    # ... and held it (the quota actor's own count agrees)
    assert outcome.peak_in_flight == QUOTA
    assert all(r["done"] > 0 for r in outcome.shard_results)  # every shard did its part
    assert sum(r["done"] for r in outcome.shard_results) == 60
    for i in range(4):
        own = read_shard_manifest(outcome.run_dir, f"{i}-of-4")
        assert own is not None and own.sessions[-1].ended == "completed"


def test_repeats_until_a_verdict_on_ray_keep_each_case_in_one_shard_and_resume(
    tmp_path: Path, capped_api: LocalAPI, local_ray: None
) -> None:
    """``until: verdict`` on two shard actors: each case's repeats in one shard, whose planner
    decides when they stop; run again with a larger ``max``, each case continues where it
    stood and ``merge`` writes the verdicts. (``max: 1`` first: no verdict is reachable in
    one repeat, so every case stops undecided and the second run continues all of them.)"""
    seq = {"max": 1, "until": "verdict", "pass_rate": 0.8}
    path = write_config(tmp_path / "c.yaml", capped_api.base_url, scenarios=4, repeats=seq)
    first = run_on_ray(
        load_config(path),
        shards=2,
        results_root=tmp_path / "r",
        progress=False,
        base_url=capped_api.base_url,
    )
    assert first.merged is not None and first.merged.complete, first.message
    table = pl.read_parquet(first.run_dir / "verdicts.parquet")
    assert table.height == 8 and set(table["verdict"]) == {"undecided"}
    before = set(pl.read_parquet(first.run_dir / "jobs.parquet")["job_key"])
    path = write_config(
        tmp_path / "c.yaml", capped_api.base_url, scenarios=4, repeats={**seq, "max": 20}
    )
    second = run_on_ray(
        load_config(path),
        shards=2,
        results_root=tmp_path / "r",
        progress=False,
        base_url=capped_api.base_url,
    )
    assert second.merged is not None and second.merged.complete, second.message
    jobs = pl.read_parquet(second.run_dir / "jobs.parquet")
    assert before <= set(jobs["job_key"]) and jobs["job_key"].n_unique() == jobs.height
    new = jobs.filter(~pl.col("job_key").is_in(list(before)))
    assert new.select("agent_id", "scenario_id").n_unique() == 8  # every case continued
    assert set(new["repeat"]) >= {1}
    home = {
        session.run_id: i
        for i in range(2)
        for session in (read_shard_manifest(second.run_dir, f"{i}-of-2") or pytest.fail()).sessions
    }
    shards = jobs.with_columns(pl.col("run_id").replace_strict(home).alias("shard"))
    assert (
        shards.group_by("agent_id", "scenario_id").agg(pl.col("shard").n_unique())["shard"].max()
        == 1
    )  # one shard per case, across both runs
    assert set(shards["shard"]) == {0, 1}
    verdicts = pl.read_parquet(second.run_dir / "verdicts.parquet")
    assert verdicts.height == 8 and verdicts["stopped"].all()
    assert int(verdicts["max_repeats"].max()) == 20 and jobs.height < 8 * 20


def _has_session(run_dir: Path, shard: str) -> bool:
    try:
        manifest = read_shard_manifest(run_dir, shard)
    except (OSError, ValueError):  # being written
        return False
    return manifest is not None and len(manifest.sessions) > 0


def test_a_shard_actor_killed_mid_run_is_restarted_and_the_run_completes(
    tmp_path: Path, capped_api: LocalAPI, local_ray: None
) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", capped_api.base_url, scenarios=40))
    killed: list[int] = []

    def kill_one(actors: list[Any]) -> None:
        def killer() -> None:
            # kill mid-run: once the shard has recorded its session (an actor slow to start
            # under load could otherwise be killed before it has one) and 20 simulations ended
            deadline = time.monotonic() + 60
            own = tmp_path / "r" / "ray"
            while capped_api.stats()["simulations_completed"] < 20 or not _has_session(
                own, "1-of-4"
            ):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.02)
            pid = ray.get(actors[1].pid.remote())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

        threading.Thread(target=killer, daemon=True).start()

    outcome = run_on_ray(
        cfg,
        shards=4,
        results_root=tmp_path / "r",
        progress=False,
        base_url=capped_api.base_url,
        on_started=kill_one,
    )
    assert killed, "the shard was never killed"
    assert outcome.merged is not None and outcome.merged.complete, outcome.message
    every_job_once(outcome.run_dir, 80)
    own = read_shard_manifest(outcome.run_dir, "1-of-4")
    assert own is not None and len(own.sessions) == 2  # the killed session, the resumed one
    assert own.sessions[0].ended == "running" and own.sessions[1].ended == "completed"
    stats = capped_api.stats()
    # only what was in flight in the killed shard was sent again; the cap held throughout
    assert 80 <= stats["simulate_requests"] <= 80 + QUOTA
    assert stats["peak_in_flight"] <= QUOTA


def test_the_cli_runs_the_shards_on_a_local_ray_cluster(tmp_path: Path, ray_tmp: Path) -> None:
    results = os.path.relpath(tmp_path / "r", ROOT)  # a relative --results, printed as given
    with local_api_process(["--time-scale", "0.01", "--seed", "4"]) as api:
        config = write_config(tmp_path / "c.yaml", api.base_url, scenarios=10)
        done = subprocess.run(
            [
                *(sys.executable, "-m", "runner", "run", str(config)),
                *("--ray", "--shards", "2", "--results", results, "--no-progress"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, **ray_helpers.ray_env(ray_tmp, secrets.token_hex(32))},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "2 shard(s) on Ray: 20 job(s) run" in done.stdout
        assert api.stats()["simulate_requests"] == 20
    every_job_once(tmp_path / "r" / "ray", 20)
    # the output of a run without Ray: its last line, the results path as given, no colour
    # codes in a pipe; and no warning of a blocking call on the shards' event loops
    own = [line for line in done.stderr.splitlines() if not line.startswith("(")]
    last = own[-1]  # the driver's own last line (Ray forwards the shards' lines when it can)
    assert last.startswith("completed: 20 job(s) ok, 0 in error; "), last
    assert f"results in {results}/ray " in last
    assert "\x1b[" not in done.stdout + done.stderr
    assert "blocking ray.get" not in done.stderr
    # the driver estimates the sweep once; each shard its own share
    assert done.stderr.count("the sweep's expected cost of 20 job(s) to run") == 1
    cfg = load_config(config)
    for index in (0, 1):
        share = sum(1 for _ in sweep_jobs(cfg, None, Shard(index, 2)))
        assert f") expected cost of {share} job(s) to run" in done.stderr, done.stderr


def test_a_shard_that_cannot_run_leaves_the_run_incomplete_and_a_rerun_completes_it(
    tmp_path: Path, local_ray: None
) -> None:
    with local_api_process(["--time-scale", "0.005", "--seed", "4"]) as api:
        cfg = load_config(write_config(tmp_path / "c.yaml", api.base_url, scenarios=10))
        run_dir = tmp_path / "r" / "ray"
        # another process runs shard 1 of 2: the cluster's shard 1 is refused, twice (its
        # actor, then the new one it gets once more); shard 0 does its part
        with ShardLock(run_dir, 1, 2):
            outcome = run_on_ray(
                cfg, shards=2, results_root=tmp_path / "r", progress=False, base_url=api.base_url
            )
        # not merged either: the directory is in use by that other process
        assert outcome.merged is None and "not merged" in outcome.message
        assert "shard 1:" in outcome.message and "already running" in outcome.message
        shard_0 = list(sweep_jobs(cfg, None, Shard(0, 2)))
        assert api.stats()["simulate_requests"] == len(shard_0) > 0
        again = run_on_ray(
            cfg, shards=2, results_root=tmp_path / "r", progress=False, base_url=api.base_url
        )
        assert again.merged is not None and again.merged.complete, again.message
        assert api.stats()["simulate_requests"] == 20  # the rest only: nothing paid twice
    every_job_once(run_dir, 20)


# ------------------------------------------------------------------------ the quota's slots


async def test_the_quota_actor_hands_each_freed_slot_to_the_neediest_request() -> None:
    quota = QuotaActor(2, 2)  # the actor's class itself, on this event loop
    assert await quota.acquire("a") == (1, 2, 2, True)
    assert await quota.acquire("a") == (2, 2, 2, True)
    b1, c, d, b2, e = (asyncio.ensure_future(quota.acquire(h)) for h in "bcdbe")
    await asyncio.sleep(0.01)
    assert (await quota.stats())["waiting"] == 5
    assert quota.share() == 1  # 2 slots, 5 holders holding or waiting: 1 each, rounded up
    assert await quota.withdraw("c", 5) == 1  # c needs it no more: answered, no slot
    assert await c == (2, 2, 1, False)
    await quota.drop("d")  # d is done (or dead): its request gets no slot either
    await quota.release("a")
    assert await b1 == (2, 2, 1, True)  # the oldest of those holding fewest ...
    assert await d == (2, 2, 1, False)  # ... and d none
    await quota.release("a")
    assert await e == (2, 2, 1, True)  # e holds none, b one: e first, though b asked first
    assert not b2.done() and quota.ledger.held == {"a": 0, "b": 1, "e": 1}
    await quota.drop("b")
    assert await b2 == (1, 2, 2, False)  # e alone holds or waits: its share is both


async def wait_until(check: Any, secs: float = 5.0) -> None:
    deadline = time.monotonic() + secs
    while not check():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.02)


async def test_a_shard_hands_its_slot_to_its_own_next_attempt_within_its_share(
    local_ray: None,
) -> None:
    quota = ray.remote(QuotaActor).options(max_concurrency=100, num_cpus=0).remote(2, 2)
    a = ClusterSlots(quota, "a", 2, 2, auto=False)
    b = ClusterSlots(quota, "b", 2, 2, auto=False)
    try:
        await a.__aenter__()
        await a.__aenter__()  # a alone: the cluster's two slots are its share
        next_a = asyncio.ensure_future(a.__aenter__())
        await asyncio.sleep(0.3)
        await a.__aexit__()
        await asyncio.wait_for(next_a, 0.05)  # at once, without the actor
        assert (await quota.stats.remote())["holders"] == {"a": 2}
        # b asks: a's share is now one slot (a heartbeat tells it) ...
        first_b = asyncio.ensure_future(b.__aenter__())
        again_a = asyncio.ensure_future(a.__aenter__())
        await wait_until(lambda: a.share == 1)
        await a.__aexit__()  # ... so a slot of a's goes back, to b, though a waits too
        await asyncio.wait_for(first_b, 5)
        assert not again_a.done()
        stats = await quota.stats.remote()
        assert stats["holders"] == {"a": 1, "b": 1} and stats["in_use"] == 2
        await b.__aexit__()  # b has no attempt waiting: its slot back, to a
        await asyncio.wait_for(again_a, 5)
        await wait_until(lambda: a.held == 2 and b.held == 0)
    finally:
        a.close()
        b.close()
        ray.kill(quota)


async def test_heartbeats_are_awaited_on_the_shards_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The heartbeat is a task on the event loop awaiting the actor's reply, never a blocking
    ``ray.get`` (which Ray warns of in an async actor, in whatever thread it runs)."""
    from concurrent.futures import Future

    import runner.cluster_quota as quota

    def no_blocking_get(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("ray.get called")

    monkeypatch.setattr(ray, "get", no_blocking_get)
    monkeypatch.setattr(quota, "HEARTBEAT_SECS", 0.01)
    beats: list[str] = []

    class Call:
        def __init__(self, reply: Any) -> None:
            self.reply = reply

        def remote(self, *args: Any) -> Any:
            beats.append(args[0])
            done: Future[Any] = Future()
            done.set_result(self.reply)
            return type("Ref", (), {"future": lambda _self: done})()

    class Actor:
        heartbeat = Call((1, 4, 2))
        drop = Call(None)

    slots = ClusterSlots(Actor(), "a", 4, 4, auto=False)
    try:
        await wait_until(lambda: slots.share == 2 and len(beats) >= 2)
        assert slots.total_tokens == 4 and slots.in_use == 1
    finally:
        slots.close()
    await asyncio.sleep(0.05)
    seen = len(beats)
    await asyncio.sleep(0.05)
    assert len(beats) == seen  # closed: no more heartbeats


def test_agent_testing_shards_on_ray_start_each_test_run_once(
    tmp_path: Path, local_ray: None
) -> None:
    config = {
        "target": {
            "base_url": "local",
            "backend": "agent-testing",
            "timeouts": {"first_byte": 20, "idle": 20, "total": 60},
            "agent_testing": {"name_prefix": "ray", "poll_interval": 0.01},
        },
        "run": {"name": "tested", "concurrency": 4, "repeats": 3, "new_turns_limit": 4},
        "agents": [{"id": "agent_support"}, {"id": "agent_booking"}],
        "scenarios": [
            {"id": f"s{i}", "first_message": f"Order A-{i}?", "prompt": f"Customer {i}."}
            for i in range(4)
        ],
    }
    with local_api_process(["--time-scale", "0.002", "--seed", "4"]) as api:
        config["target"]["base_url"] = api.base_url  # type: ignore[index]
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        outcome = run_on_ray(
            load_config(path),
            shards=3,
            results_root=tmp_path / "r",
            progress=False,
            base_url=api.base_url,
        )
        assert outcome.merged is not None and outcome.merged.complete, outcome.message
        stats = api.stats()["agent_testing"]
    every_job_once(outcome.run_dir, 24)
    # 4 tests (each serving both agents) in 3 shards: each test created once, each of its
    # 2 x 3 runs started once
    assert stats["tests_created"] == 4 and stats["runs_started"] == 24
    assert sorted(r["done"] for r in outcome.shard_results) == [6, 6, 12]


def test_a_local_cluster_the_runner_starts_reports_no_usage_stats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ray's processes read ``RAY_USAGE_STATS_ENABLED`` when they start: off unless the user
    said otherwise."""
    seen: list[str | None] = []
    monkeypatch.setattr(ray, "init", lambda **_: seen.append(os.environ.get(USAGE_STATS_ENV)))
    monkeypatch.delenv(USAGE_STATS_ENV, raising=False)
    init_local_ray(num_cpus=2)
    monkeypatch.setenv(USAGE_STATS_ENV, "1")
    init_local_ray(num_cpus=2)
    assert seen == ["0", "1"]
