"""The engine's retry, abort, concurrency and batching behaviour, with a scripted backend.

The backend here is a stand-in for the network (the engine only sees the ``Backend``
interface); the same paths run over a real socket in ``test_run_e2e.py``.
"""

from __future__ import annotations

import gc
import weakref
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from runner.backends.base import ReplyListener, SimulationResult, Timings
from runner.config import RetryPolicy
from runner.engine import BatchSink, Engine, RunAborted
from runner.errors import Action, AttemptError, ErrorKind, Failure
from runner.jobs import Job
from runner.outcome import Batch
from runner.wire.simulate import Analysis, CriterionResult, TranscriptMessage

POLICY = RetryPolicy(max_attempts=3, backoff_base=1.0, backoff_cap=8.0, jitter=0.0)


def make_job(i: int) -> Job:
    return Job(
        key=f"k{i:04d}",
        agent_id="agent_a",
        agent_label="a",
        scenario_id=f"s{i}",
        matrix=(),
        repeat=0,
        body={"simulation_specification": {"simulated_user_config": {}}, "new_turns_limit": 4},
    )


def ok_result() -> SimulationResult:
    return SimulationResult(
        http_status=200,
        messages=[TranscriptMessage(role="agent", time_in_call_secs=0, message="hi")],
        arrivals=[0.01],
        analysis=Analysis(
            call_successful="success",
            transcript_summary="ok",
            evaluation_criteria_results={
                "c": CriterionResult(criteria_id="c", result="success", rationale="r")
            },
        ),
        timings=Timings(headers=0.001, first_frame=0.01, analysis=0.02, total=0.02, frames=2),
    )


def fail(kind: ErrorKind, action: Action, status: int | None = None, **kw: Any) -> AttemptError:
    return AttemptError(Failure(kind, action, f"{kind} happened", status, **kw))


class ScriptedBackend:
    """Plays a per-job script of failures, then succeeds; tracks concurrency."""

    def __init__(self, script: Callable[[Job, int], AttemptError | None], delay: float = 0) -> None:
        self.script = script
        self.delay = delay
        self.calls: dict[str, int] = defaultdict(int)
        self.in_flight = 0
        self.peak = 0

    async def simulate(self, job: Job, on_reply: ReplyListener) -> SimulationResult:
        self.calls[job.key] += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await anyio.sleep(self.delay)
            error = self.script(job, self.calls[job.key])
            if error is not None:
                raise error
            return ok_result()
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        pass


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await anyio.lowlevel.checkpoint()


def engine_for(backend: ScriptedBackend, sleeps: Sleeps, concurrency: int = 4) -> Engine:
    return Engine(backend, concurrency=concurrency, retry=POLICY, run_id="r1", sleep=sleeps)


class Sink:
    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def __call__(self, batch: Batch) -> None:
        self.batches.append(batch)

    def rows(self, table: str) -> list[dict]:
        return [r for b in self.batches for r in b.rows(table)]


async def test_retries_then_succeeds_and_records_every_attempt() -> None:
    def script(job: Job, n: int) -> AttemptError | None:
        return fail(ErrorKind.SERVER_ERROR, Action.RETRY, 503) if n < 3 else None

    backend, sleeps, sink = ScriptedBackend(script), Sleeps(), Sink()
    counters = await engine_for(backend, sleeps).run([make_job(0)], sink)
    assert counters.ok == 1 and counters.retries == 2
    assert sleeps.waits == [1.0, 2.0]  # exponential, jitter 0
    attempts = sink.rows("attempts")
    assert [a["status"] for a in attempts] == ["error", "error", "ok"]
    assert [a["backoff_before_secs"] for a in attempts] == [0.0, 1.0, 2.0]
    assert attempts[0]["http_status"] == 503 and attempts[0]["action"] == "retry"
    (job,) = sink.rows("jobs")
    assert job["status"] == "ok" and job["attempts"] == 3 and job["backoff_secs"] == 3.0


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    backend = ScriptedBackend(lambda j, n: fail(ErrorKind.STREAM_BROKEN, Action.RETRY))
    sleeps, sink = Sleeps(), Sink()
    counters = await engine_for(backend, sleeps).run([make_job(0)], sink)
    assert backend.calls["k0000"] == POLICY.max_attempts
    assert counters.errors == 1 and counters.errors_by_kind == {"stream_broken": 1}
    (job,) = sink.rows("jobs")
    assert job["status"] == "error" and job["error_kind"] == "stream_broken"
    assert sink.rows("messages") == [] and sink.rows("criteria") == []
    # the last attempt records what the engine did (gave up), the earlier ones the retry
    actions = [a["action"] for a in sink.rows("attempts")]
    assert actions == ["retry"] * (POLICY.max_attempts - 1) + ["give_up"]


async def test_retry_after_is_the_wait_not_added_to_backoff() -> None:
    def script(job: Job, n: int) -> AttemptError | None:
        return fail(ErrorKind.SYSTEM_BUSY, Action.RETRY, 429, retry_after=0.25) if n == 1 else None

    sleeps = Sleeps()
    await engine_for(ScriptedBackend(script), sleeps).run([make_job(0)], Sink())
    assert sleeps.waits == [0.25]


@pytest.mark.parametrize("kind", [ErrorKind.NOT_FOUND, ErrorKind.INVALID_REQUEST])
async def test_terminal_errors_are_not_retried(kind: ErrorKind) -> None:
    backend = ScriptedBackend(lambda j, n: fail(kind, Action.FAIL_JOB, 404))
    sleeps, sink = Sleeps(), Sink()
    counters = await engine_for(backend, sleeps).run([make_job(i) for i in range(3)], sink)
    assert dict(backend.calls) == {"k0000": 1, "k0001": 1, "k0002": 1}
    assert sleeps.waits == [] and counters.errors == 3


async def test_capacity_waits_do_not_use_up_the_attempt_budget() -> None:
    def script(job: Job, n: int) -> AttemptError | None:
        if n <= 6:  # twice max_attempts: would fail the job if counted as attempts
            return fail(ErrorKind.CONCURRENCY_LIMIT, Action.WAIT_CAPACITY, 429)
        return None

    sink = Sink()
    counters = await engine_for(ScriptedBackend(script), Sleeps()).run([make_job(0)], sink)
    assert counters.ok == 1
    assert sink.rows("jobs")[0]["attempts"] == 7


async def test_auth_failure_aborts_the_run_and_flushes_what_finished() -> None:
    def script(job: Job, n: int) -> AttemptError | None:
        if job.key == "k0005":
            return fail(ErrorKind.AUTH, Action.ABORT_RUN, 401)
        return None

    backend, sink = ScriptedBackend(script, delay=0.001), Sink()
    engine = Engine(backend, concurrency=1, retry=POLICY, run_id="r", sleep=Sleeps(), seed=0)
    with pytest.raises(RunAborted) as info:
        await engine.run([make_job(i) for i in range(100)], sink, workers=1)
    assert info.value.failure.kind is ErrorKind.AUTH
    assert backend.calls["k0005"] == 1  # not retried
    assert sum(backend.calls.values()) <= 7  # stopped dispatching at once
    keys = [r["job_key"] for r in sink.rows("jobs")]
    assert keys[:5] == [f"k{i:04d}" for i in range(5)]  # finished work was flushed


async def test_concurrency_cap_holds_and_every_job_is_written_once() -> None:
    backend, sink = ScriptedBackend(lambda j, n: None, delay=0.002), Sink()
    engine = engine_for(backend, Sleeps(), concurrency=5)
    counters = await engine.run([make_job(i) for i in range(60)], sink, batch_jobs=7)
    assert backend.peak == 5 == counters.peak_in_flight
    keys = [r["job_key"] for r in sink.rows("jobs")]
    assert sorted(keys) == [f"k{i:04d}" for i in range(60)]
    assert max(b.jobs for b in sink.batches) <= 7  # flushed in batches, not at the end
    assert len(sink.batches) >= 60 // 7


class SyncingSink(BatchSink):
    """A sink that ``Syncs``: counts its syncs and records how many jobs were pending at each."""

    def __init__(self) -> None:
        self.written: list[Batch] = []
        super().__init__(self.written.append)
        self.synced_at: list[int] = []

    def sync(self) -> None:
        self.synced_at.append(self.batch.jobs)


async def test_between_flushes_the_sink_is_synced_every_sync_secs() -> None:
    """Flushes far apart, syncs close together: what was journaled reaches the disk between
    flushes (a power loss loses about ``sync_secs`` of jobs), and every job is written once."""
    backend, sink = ScriptedBackend(lambda j, n: None, delay=0.01), SyncingSink()
    engine = engine_for(backend, Sleeps(), concurrency=2)
    jobs = [make_job(i) for i in range(40)]  # ~0.2 s at 2 in flight
    await engine.run(jobs, sink, batch_jobs=1000, batch_secs=60, sync_secs=0.02)
    assert len(sink.synced_at) >= 3
    assert max(sink.synced_at) > 0  # synced while jobs waited for their flush
    assert len(sink.written) == 1 and sink.written[0].jobs == 40  # one flush, at the end


async def test_jobs_are_pulled_lazily() -> None:
    """The engine never materialises the job list: a generator is consumed as workers free up."""
    produced = 0

    def jobs():  # type: ignore[no-untyped-def]
        nonlocal produced
        for i in range(10_000):
            produced += 1
            yield make_job(i)

    seen_ahead = []

    def script(job: Job, n: int) -> AttemptError | None:
        seen_ahead.append(produced - int(job.key[1:]))
        return None

    engine = engine_for(ScriptedBackend(script), Sleeps(), concurrency=2)
    await engine.run(jobs(), Sink(), workers=4)
    assert produced == 10_000
    assert max(seen_ahead) <= 4 + 4 + 2  # bounded by the channel and worker count


async def test_circuit_breaker_stops_a_run_against_a_dead_endpoint() -> None:
    backend = ScriptedBackend(lambda j, n: fail(ErrorKind.CONNECT, Action.RETRY), delay=0.001)
    engine = Engine(
        backend, concurrency=2, retry=POLICY, run_id="r", sleep=Sleeps(), circuit_breaker=10
    )
    with pytest.raises(RunAborted) as info:
        await engine.run([make_job(i) for i in range(1000)], Sink())
    assert "circuit breaker: the last 10 attempts all failed with connect" in str(info.value)
    assert sum(backend.calls.values()) <= 10 + 2  # the window, plus what was in flight


async def test_circuit_breaker_ignores_mixed_failures_and_capacity_waits() -> None:
    def script(job: Job, n: int) -> AttemptError | None:
        if n == 1:
            return fail(ErrorKind.CONCURRENCY_LIMIT, Action.WAIT_CAPACITY, 429)
        if n == 2 and int(job.key[1:]) % 2:
            return fail(ErrorKind.SERVER_ERROR, Action.RETRY, 503)
        return None

    engine = Engine(
        ScriptedBackend(script),
        concurrency=4,
        retry=POLICY,
        run_id="r",
        sleep=Sleeps(),
        circuit_breaker=3,
    )
    counters = await engine.run([make_job(i) for i in range(50)], Sink())
    assert counters.ok == 50


def breaker_engine(kinds: list[ErrorKind]) -> tuple[Engine, ScriptedBackend]:
    """Every attempt fails, one at a time, with ``kinds`` in turn; the breaker at 4."""
    attempts = iter(range(10**6))

    def script(job: Job, n: int) -> AttemptError:
        return fail(kinds[next(attempts) % len(kinds)], Action.RETRY, 503)

    backend = ScriptedBackend(script)
    engine = Engine(
        backend, concurrency=1, retry=POLICY, run_id="r", sleep=Sleeps(), circuit_breaker=4
    )
    return engine, backend


async def test_the_breaker_trips_on_failures_of_one_kind_only() -> None:
    """ "Failed the same way": N failures in a row of two kinds, alternating, are no dead
    endpoint (every job fails on its own, the run goes on); N of one kind are."""
    engine, backend = breaker_engine([ErrorKind.SERVER_ERROR, ErrorKind.CONNECT])
    counters = await engine.run([make_job(i) for i in range(6)], Sink())
    assert counters.errors == 6 and sum(backend.calls.values()) == 6 * POLICY.max_attempts
    engine, backend = breaker_engine([ErrorKind.SERVER_ERROR])
    with pytest.raises(RunAborted) as info:
        await engine.run([make_job(i) for i in range(6)], Sink())
    assert "the last 4 attempts all failed with server_error" in str(info.value)
    assert sum(backend.calls.values()) == 4


async def test_a_failed_job_is_freed_without_the_cycle_collector() -> None:
    """During a run the collector runs seldom (``runner.gctune``): what a failed attempt held
    (here in the backend's frame, as a transcript is) must go when the job ends."""

    class Held:
        pass

    held: list[weakref.ref[Held]] = []

    async def simulate(job: Job, on_reply: ReplyListener) -> SimulationResult:
        transcript = Held()
        held.append(weakref.ref(transcript))
        raise fail(ErrorKind.NOT_FOUND, Action.FAIL_JOB, 404)

    backend = ScriptedBackend(lambda j, n: None)
    backend.simulate = simulate  # type: ignore[method-assign]
    engine = engine_for(backend, Sleeps())
    gc.disable()
    try:
        outcome = await engine.run_job(make_job(0))
        assert outcome.failure is not None and outcome.failure.kind is ErrorKind.NOT_FOUND
        assert len(held) == 1 and held[0]() is None
    finally:
        gc.enable()
