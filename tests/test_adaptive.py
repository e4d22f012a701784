"""Adaptive concurrency: the controller's rules (pure), the engine applying them, a sweep on
``concurrency: auto`` against the local API's real quota, and the requests-per-minute cap."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.lowlevel
import polars as pl
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from bench.policies import HalveOn429
from runner.adaptive import (
    DEFAULT_INITIAL,
    MAX_PROBE_ROUNDS,
    AdaptiveLimit,
    ConcurrencyController,
    Signal,
    SignalKind,
    concurrency_headers,
)
from runner.backends.base import ReplyListener, SimulationResult, Timings
from runner.config import RetryPolicy, load_config
from runner.engine import Counters, Engine
from runner.errors import Action, AttemptError, ErrorKind, Failure
from runner.jobs import Job
from runner.localapi.server import LocalAPI
from runner.outcome import Batch
from runner.progress import status_line
from runner.ratelimit import TokenBucket
from runner.store import load_run
from runner.sweep import run_sweep
from runner.wire.simulate import Analysis, TranscriptMessage

ADMITTED, REJECTED, NEUTRAL = SignalKind.ADMITTED, SignalKind.REJECTED, SignalKind.NEUTRAL


def make_job(i: int) -> Job:
    body = {"simulation_specification": {"simulated_user_config": {}}, "new_turns_limit": 2}
    return Job(f"k{i:04d}", "agent_a", "a", f"s{i}", (), 0, body)


def ok_result(maximum: int | None = None, current: int | None = None) -> SimulationResult:
    message = TranscriptMessage(role="agent", time_in_call_secs=0, message="hi")
    analysis = Analysis(call_successful="success", transcript_summary="ok")
    timings = Timings(headers=0.001, first_frame=0.01, analysis=0.01, total=0.01, frames=1)
    return SimulationResult(
        200,
        [message],
        [0.01],
        analysis,
        timings,
        max_concurrent=maximum,
        current_concurrent=current,
    )


class Sink:
    def __init__(self) -> None:
        self.rows: dict[str, list[dict]] = {}

    def __call__(self, batch: Batch) -> None:
        for table in batch.columns:
            self.rows.setdefault(table, []).extend(batch.rows(table))


def full(kind: SignalKind, c: AdaptiveLimit, **headers: int) -> Signal:
    """A signal from an attempt that started with the limit in force fully used."""
    return Signal(kind, in_flight=c.limit, limit=c.limit, **headers)


# ---------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"maximum-concurrent-requests": "20", "current-concurrent-requests": "3"}, (20, 3)),
        ({"maximum-concurrent-requests": " 30 "}, (30, None)),
        ({}, (None, None)),
        (
            {"maximum-concurrent-requests": "lots", "current-concurrent-requests": "-1"},
            (None, None),
        ),
    ],
)
def test_concurrency_headers_are_read_leniently(
    headers: dict[str, str], expected: tuple[int | None, int | None]
) -> None:
    assert concurrency_headers(headers) == expected


# ---------------------------------------------------------------------------- with the quota


def test_starts_modestly_within_the_cap() -> None:
    assert AdaptiveLimit(64).limit == DEFAULT_INITIAL
    assert AdaptiveLimit(2).limit == 2
    with pytest.raises(ValueError):
        AdaptiveLimit(0)


def test_an_advertised_quota_is_taken_at_once() -> None:
    c = AdaptiveLimit(64)
    assert c.observe(Signal(ADMITTED, 1, 4, maximum=20, current=1)) == 20


def test_a_quota_above_the_cap_is_only_a_ceiling_never_a_jump() -> None:
    c = AdaptiveLimit(64)  # the local API advertises 1000 and enforces nothing
    assert c.observe(full(ADMITTED, c, maximum=1000, current=4)) == DEFAULT_INITIAL + 1
    for _ in range(500):
        c.observe(full(ADMITTED, c, maximum=1000, current=c.limit))
    assert c.limit == 64  # probed up to the cap, no further
    small = AdaptiveLimit(64)
    for _ in range(100):
        small.observe(full(ADMITTED, small, maximum=10))
    assert small.limit == 10  # a quota below the cap bounds it


def test_other_clients_of_the_account_are_left_their_share() -> None:
    c = AdaptiveLimit(64)
    for _ in range(5):  # 26 in flight on the account, 20 of them ours: someone holds 6
        c.observe(Signal(ADMITTED, 20, 20, maximum=30, current=26))
    assert c.others == 6 and c.limit == 24
    c.observe(Signal(ADMITTED, 20, 24, maximum=30, current=40))  # one odd sample
    assert c.limit == 24  # the median of recent samples, not the last one


def test_a_429_at_the_quota_steps_down_once_per_burst_then_probes_back() -> None:
    c = AdaptiveLimit(64)
    c.observe(Signal(ADMITTED, 1, 4, maximum=20, current=1))
    stale = [Signal(REJECTED, 20, 20, maximum=20, current=20) for _ in range(5)]
    assert c.observe(stale[0]) == 19
    for signal in stale[1:]:  # the rest of the burst started under the old limit
        assert c.observe(signal) == 19
    for _ in range(19):  # one round of admitted attempts at full load: probe the quota
        c.observe(full(ADMITTED, c, maximum=20, current=19))
    assert c.limit == 20 and c.margin == 0


def test_neutral_failures_never_move_the_limit() -> None:
    c = AdaptiveLimit(64)
    c.observe(Signal(ADMITTED, 1, 4, maximum=20, current=1))
    for _ in range(50):  # system_busy, 5xx, timeouts, resets
        assert c.observe(full(NEUTRAL, c, maximum=20, current=20)) == 20


# ---------------------------------------------------------------------------- without headers


def test_slow_start_adds_a_slot_per_admitted_attempt_at_full_load_only() -> None:
    c = AdaptiveLimit(64, use_headers=False)
    c.observe(Signal(ADMITTED, in_flight=2, limit=4))  # the limit was not binding
    assert c.limit == 4
    for expected in (5, 6, 7):
        assert c.observe(full(ADMITTED, c, maximum=20)) == expected  # headers ignored


def test_a_429_steps_down_to_what_was_admitted_not_by_half() -> None:
    c = AdaptiveLimit(64, use_headers=False)
    c.limit = 30  # slow start overshot a quota of 20
    burst = [Signal(REJECTED, n, 30) for n in (24, 21, 23, 22, 21, 25)]
    for signal in burst:
        c.observe(signal)
    assert c.limit == 20 and not c.slow_start
    assert c.observe(Signal(NEUTRAL, 20, 20)) == 20


def test_failed_probes_space_out_and_a_holding_probe_comes_sooner() -> None:
    c = AdaptiveLimit(64, use_headers=False)
    c.limit, c.slow_start = 10, False
    for _ in range(10):  # one round at full load: probe
        c.observe(full(ADMITTED, c))
    assert c.limit == 11
    c.observe(full(REJECTED, c))  # the probe failed
    assert c.limit == 10 and c.probe_interval == 2
    for _ in range(19):
        c.observe(full(ADMITTED, c))
    assert c.limit == 10  # two rounds now, not one
    c.observe(full(ADMITTED, c))
    assert c.limit == 11  # this probe holds (the quota grew) ...
    for _ in range(2 * 11):
        c.observe(full(ADMITTED, c))
    assert c.limit == 12 and c.probe_interval == 1  # ... so the next one came sooner
    for _ in range(20):
        c.observe(full(REJECTED, c))
    assert c.probe_interval == MAX_PROBE_ROUNDS  # capped: a grown quota is still found


signals = st.builds(
    Signal,
    kind=st.sampled_from(list(SignalKind)),
    in_flight=st.integers(0, 200),
    limit=st.integers(1, 200),
    maximum=st.none() | st.integers(0, 2000),
    current=st.none() | st.integers(0, 2000),
)


@given(cap=st.integers(1, 100), stream=st.lists(signals, max_size=200))
def test_the_limit_stays_between_one_and_the_cap(cap: int, stream: list[Signal]) -> None:
    c = AdaptiveLimit(cap)
    for signal in stream:
        limit = c.observe(signal)
        assert 1 <= limit <= cap
        if c.quota is not None:
            assert limit <= c.quota


# ---------------------------------------------------------------------------- against a quota


def simulate_quota(
    controller: ConcurrencyController, quota: int, steps: int = 3000, length: int = 10
) -> tuple[list[int], list[int], int, int]:
    """A server with a quota, in steps: every simulation lasts ``length`` steps; each step the
    client fills its limit and the server admits while under the quota. Returns the limit and
    the server's in-flight per step, 429s and attempts."""
    running: list[int] = []  # end step of each admitted simulation
    limits, in_flight = [], []
    rejected = attempts = 0
    for step in range(steps):
        running = [end for end in running if end > step]
        while len(running) < controller.limit:
            attempts += 1
            mine = len(running) + 1
            limit = controller.limit
            if len(running) >= quota:
                rejected += 1
                controller.observe(Signal(REJECTED, mine, limit))
                break  # the job waits out its backoff
            running.append(step + length)
            controller.observe(Signal(ADMITTED, mine, limit))
        limits.append(controller.limit)
        in_flight.append(len(running))
    return limits, in_flight, rejected, attempts


def test_probing_holds_the_quota_where_halving_saws_below_it() -> None:
    limits, in_flight, rejected, attempts = simulate_quota(AdaptiveLimit(64, use_headers=False), 20)
    settled = in_flight[300:]
    assert sum(settled) / len(settled) >= 0.95 * 20
    assert min(limits[300:]) >= 19  # never collapses
    assert rejected / attempts <= 0.02
    _, aimd_in_flight, _, _ = simulate_quota(HalveOn429(64), 20)
    assert sum(aimd_in_flight[300:]) / len(settled) < 0.9 * 20


# ---------------------------------------------------------------------------- in the engine


class QuotaBackend:
    """Admits ``quota`` simulations at a time; beyond it answers 429 too_many_concurrent_requests
    with the quota headers, as the real API documents. Reports at the attempt's end only (the
    engine's fallback for backends that do not report replies as they come)."""

    def __init__(self, quota: int) -> None:
        self.quota = quota
        self.in_flight = 0
        self.peak = 0

    async def simulate(self, job: Job, on_reply: ReplyListener) -> SimulationResult:
        if self.in_flight >= self.quota:
            await anyio.lowlevel.checkpoint()
            raise AttemptError(
                Failure(
                    ErrorKind.CONCURRENCY_LIMIT,
                    Action.WAIT_CAPACITY,
                    "HTTP 429 too_many_concurrent_requests",
                    429,
                    max_concurrent=self.quota,
                    current_concurrent=self.in_flight,
                )
            )
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            for _ in range(20):
                await anyio.lowlevel.checkpoint()
            return ok_result(self.quota, self.in_flight)
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        pass


async def no_sleep(seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


POLICY = RetryPolicy(max_attempts=5, backoff_base=0.01, backoff_cap=0.01, jitter=0.0)


async def test_the_engine_applies_the_limit_and_records_it_per_attempt() -> None:
    backend = QuotaBackend(6)
    engine = Engine(
        backend, concurrency=AdaptiveLimit(32), retry=POLICY, run_id="r", sleep=no_sleep
    )
    sink = Sink()
    counters = await engine.run([make_job(i) for i in range(60)], sink)
    assert counters.ok == 60 and backend.peak == 6
    assert counters.concurrency_auto and counters.concurrency_limit == 6
    assert counters.server_quota == 6 and counters.limit_changes >= 1
    limits = [a["concurrency_limit"] for a in sink.rows["attempts"]]
    assert limits[0] == DEFAULT_INITIAL and max(limits) == 6  # the limit when each started


async def test_a_fixed_concurrency_ignores_the_headers() -> None:
    backend = QuotaBackend(3)
    engine = Engine(backend, concurrency=2, retry=POLICY, run_id="r", sleep=no_sleep)
    counters = await engine.run([make_job(i) for i in range(10)], Sink())
    assert counters.concurrency_limit == 2 and not counters.concurrency_auto
    assert counters.server_quota == 3 and backend.peak == 2


def write_config(tmp_path: Path, base_url: str, run: dict[str, object]) -> Path:
    config = {
        "target": {"base_url": base_url},
        "run": {
            "name": "auto",
            "new_turns_limit": 4,
            "repeats": 30,
            "retry": {"max_attempts": 5, "backoff_base": 0.01, "backoff_cap": 0.05, "jitter": 0.01},
            **run,
        },
        "agents": [{"id": "agent_support"}],
        "scenarios": [{"id": "refund", "prompt": "You want a refund for order B-2211."}],
    }
    path = tmp_path / "auto.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def test_auto_finds_and_holds_the_local_api_quota(
    tmp_path: Path, local_api_factory: Callable[..., LocalAPI]
) -> None:
    api = local_api_factory(["--time-scale", "0.002", "--seed", "4", "--max-concurrency", "5"])
    cfg = load_config(write_config(tmp_path, api.base_url, {"concurrency": "auto"}))
    report = await run_sweep(cfg, results_root=tmp_path / "results", progress=False)
    stats = api.stats()
    assert report.counters.ok == 30 and report.counters.concurrency_limit == 5
    # the quota came with the first reply: at most a race at a slot's release meets a 429
    assert stats["peak_in_flight"] == 5 and stats["concurrency_rejections"] <= 2
    attempts = load_run(report.run_dir).attempts.sort("started_at")
    assert attempts["concurrency_limit"][0] == DEFAULT_INITIAL
    assert attempts["concurrency_limit"].max() == 5  # the limit over time, recorded
    manifest = json.loads((report.run_dir / "manifest.json").read_text())
    assert manifest["sessions"][-1]["concurrency_limit"] == 5


async def test_auto_without_the_headers_probes_to_the_quota(
    tmp_path: Path, local_api_factory: Callable[..., LocalAPI], monkeypatch: pytest.MonkeyPatch
) -> None:
    import runner.sweep

    monkeypatch.setattr(
        runner.sweep, "concurrency_policy", lambda cfg: AdaptiveLimit(16, use_headers=False)
    )
    api = local_api_factory(["--time-scale", "0.01", "--seed", "4", "--max-concurrency", "5"])
    cfg = load_config(write_config(tmp_path, api.base_url, {"concurrency": "auto"}))
    report = await run_sweep(cfg, results_root=tmp_path / "results", progress=False)
    stats = api.stats()
    assert report.counters.ok == 30 and stats["peak_in_flight"] == 5
    attempts = load_run(report.run_dir).attempts.sort("started_at")
    rejected = attempts.filter(pl.col("error_kind") == "concurrency_limit")
    assert 1 <= rejected.height == stats["concurrency_rejections"] <= 5  # it found the quota
    after = attempts.filter(pl.col("started_at") > rejected["started_at"].min())
    assert after["concurrency_limit"].min() >= 4  # and stepped down by one, not by half


def test_the_progress_line_shows_the_limit_in_force() -> None:
    auto = Counters(total=9, in_flight=5, concurrency_limit=20, concurrency_auto=True)
    auto.server_quota = 20
    assert "in flight 5/20 auto (server max 20)" in status_line(auto, 1.0)
    assert "in flight 0/8  " in status_line(Counters(total=9, concurrency_limit=8), 1.0)


# ---------------------------------------------------------------------------- requests per minute


def test_the_token_bucket_spaces_starts_at_the_rate() -> None:
    now = [100.0]
    bucket = TokenBucket(60, clock=lambda: now[0])  # one a second, bursts of one
    assert bucket.delay() == 0.0
    bucket.tokens -= 1
    assert bucket.delay() == pytest.approx(1.0)
    now[0] += 0.25
    assert bucket.delay() == pytest.approx(0.75)
    now[0] += 10
    assert bucket.delay() == 0.0 and bucket.tokens == 1.0  # no credit beyond the burst
    with pytest.raises(ValueError):
        TokenBucket(0)


async def test_requests_per_minute_caps_the_engine_start_rate() -> None:
    backend = QuotaBackend(100)
    engine = Engine(
        backend, concurrency=8, retry=POLICY, run_id="r", requests_per_minute=1200, sleep=no_sleep
    )
    sink = Sink()
    started = time.monotonic()
    await engine.run([make_job(i) for i in range(11)], sink)
    assert time.monotonic() - started >= 0.45  # 20 a second: ten gaps of 50 ms at least
    starts: list[datetime] = sorted(a["started_at"] for a in sink.rows["attempts"])
    assert all(s.tzinfo is UTC for s in starts)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.04
