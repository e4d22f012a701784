"""The engine: jobs flow through a bounded channel to workers in an anyio task group.

A ``CapacityLimiter`` caps simulations in flight; workers outnumber its tokens so a job sleeping
in backoff never holds a slot another job could use. Its tokens are fixed, or moved at every
reply by a controller (``runner.adaptive``, ``run.concurrency: auto``) that reads the quota
headers and 429s. Retries are tenacity's, driven by the error taxonomy in ``runner.errors``.
Which job goes next is the planner's choice (``runner.planner``): a producer task asks it
whenever the channel has room, sleeps until a job ends when it answers ``WAIT``, and each
finished job is reported back to it. Each finished job goes to the sink at once (the run's sink
journals it: ``runner.journal``), and a writer task flushes batches to the store from a worker
thread, so memory stays flat however many jobs a sweep has.

(Over 600 lines as one module on purpose: dispatch, attempts, backoff, the stop paths, the
budget and the writer share one set of stop and abort state, which a split would pass around.)
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import anyio
from anyio.abc import ObjectSendStream
from anyio.streams.memory import MemoryObjectReceiveStream
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from runner.adaptive import ConcurrencyController, Signal, SignalKind
from runner.backends.base import Backend
from runner.budget import BudgetTracker, Verdict
from runner.config.models import RetryPolicy
from runner.errors import Action, AttemptError, ErrorKind, Failure
from runner.gctune import fewer_collections
from runner.jobs import Job
from runner.outcome import AttemptRecord, Batch, JobOutcome, outcome_spend
from runner.planner import WAIT, Finished, Planner, Walk, case_of
from runner.ratelimit import TokenBucket

MAX_RETRY_AFTER = 900.0
"""A ``Retry-After`` longer than this is treated as this: a sweep should not sleep for hours."""

CAPACITY_WAITS_PER_ATTEMPT = 10
"""A job may wait for capacity (429 too_many_concurrent_requests) this many times per attempt of
its budget: being at the quota is normal under load and says nothing about the job."""


BACKLOG_BATCHES = 4
"""Workers wait for the writer once this many full batches are waiting to be written: memory
stays bounded when writing is slower than simulating."""

BATCH_JOBS = 1000
BATCH_SECS = 10.0
"""A batch becomes part files at this many jobs or this many seconds, whichever comes first. A
flush has a fixed cost (six Parquet files, however few rows) paid per flush, not per job, so
small frequent flushes made the results the largest cost per simulation a slow run pays. The
journal makes every job durable on arrival, so the cadence sets only how fresh the part files
are (what a viewer of a run in progress sees) and how much a batch holds in memory."""

SYNC_SECS = 2.0
"""Between flushes, what the sink journaled is synced to disk this often (``Syncs``), so a
power loss still loses at most about this many seconds of finished jobs."""


@runtime_checkable
class Sink(Protocol):
    """Where finished jobs go. ``add`` runs on the event loop as each job finishes, so it must
    be quick (``runner.journal`` makes the job durable there); ``seal`` hands over what was
    added since the last seal, which ``write`` stores from a worker thread."""

    @property
    def pending(self) -> int: ...

    def add(self, outcome: JobOutcome) -> None: ...

    def seal(self) -> Any: ...

    def write(self, sealed: Any) -> None: ...


@runtime_checkable
class Syncs(Protocol):
    """A sink whose jobs, once added, can be forced to stable storage (a journal's ``fsync``),
    called from a worker thread every ``SYNC_SECS`` between flushes."""

    def sync(self) -> None: ...


@runtime_checkable
class SharedSlots(Protocol):
    """A concurrency limit shared with other processes, used in place of the engine's own
    ``CapacityLimiter``: the cluster's quota (``runner.cluster``). Entering takes a slot and
    returns ``(in flight, limit)`` as the holder of the limit saw them at that moment (every
    process's attempts counted, this one included); ``observe`` reports a reply to it."""

    cap: int
    limit: int
    total_tokens: float
    """The limit in force, as last heard."""
    auto: bool
    """The limit adapts (from the quota headers and 429s)."""

    async def __aenter__(self) -> tuple[int, int]: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def observe(self, signal: Signal) -> None: ...


class BatchSink:
    """A sink that hands each ``Batch`` to ``write``, keeping nothing on disk itself (tests,
    benchmarks, and callers that store results their own way)."""

    def __init__(self, write: Callable[[Batch], None]) -> None:
        self._write = write
        self.batch = Batch()

    @property
    def pending(self) -> int:
        return self.batch.jobs

    def add(self, outcome: JobOutcome) -> None:
        self.batch.add(outcome)

    def seal(self) -> Batch | None:
        if not self.batch.jobs:
            return None
        full, self.batch = self.batch, Batch()
        return full

    def write(self, sealed: Batch) -> None:
        self._write(sealed)


class RunAborted(Exception):
    """The run stopped early for a reason that concerns every job (e.g. a rejected API key)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


@dataclass
class Counters:
    """Live figures for the progress display and the end-of-run summary."""

    total: int = 0
    skipped: int = 0
    done: int = 0
    ok: int = 0
    errors: int = 0
    retries: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    attempts: int = 0
    interrupted: int = 0  # jobs cut short by a graceful stop (recorded as errors, re-run later)
    cancelled: int = 0  # agent-testing runs cancelled (status ``cancelled``: not an error)
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    failures_by_kind: Counter[str] = field(default_factory=Counter)
    concurrency_limit: int = 0
    concurrency_auto: bool = False  # the limit adapts (``run.concurrency: auto``)
    limit_changes: int = 0
    server_quota: int | None = None  # the last ``maximum-concurrent-requests`` the server sent
    active_jobs: int = 0  # jobs dispatched and not finished (retries included): the budget's
    budget_stopped: bool = False  # ``run.budget`` stopped dispatching (in-flight jobs finished)
    cases: Callable[[], tuple[int, int]] | None = None
    """Sequential repeats: (cases stopped, cases open) now (``UntilVerdict.tally``)."""


@dataclass
class _JobState:
    records: list[AttemptRecord] = field(default_factory=list)
    capacity_waits: int = 0
    other_failures: int = 0
    last_sleep: float = 0.0
    last_error: AttemptError | None = None


def _retryable(exc: BaseException) -> bool:
    """Whether a failed attempt may be tried again (the first attempt's and tenacity's test)."""
    return isinstance(exc, AttemptError) and exc.failure.retryable


def backoff_seconds(
    failure: Failure, attempt: int, policy: RetryPolicy, rng: random.Random
) -> float:
    """How long to wait before the next attempt.

    ``Retry-After``, when the server sent one, is the wait (honoured as is, not added to the
    backoff). Otherwise: exponential from ``backoff_base``, capped at ``backoff_cap``, plus up to
    ``jitter`` seconds of uniform jitter so that retries of a burst do not arrive together.
    """
    if failure.retry_after is not None:
        return min(failure.retry_after, MAX_RETRY_AFTER)
    exp = policy.backoff_base * (2 ** max(attempt - 1, 0))
    return min(exp, policy.backoff_cap) + rng.uniform(0, policy.jitter)


class Engine:
    def __init__(
        self,
        backend: Backend,
        *,
        concurrency: int | ConcurrencyController | SharedSlots,
        retry: RetryPolicy,
        run_id: str,
        requests_per_minute: float | None = None,
        seed: int = 0,
        circuit_breaker: int = 0,
        budget: BudgetTracker | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.backend = backend
        self.budget = budget if budget is not None and budget.active else None
        self._job_ended = anyio.Event()  # set (and replaced) as a job ends, when one waits
        self._waiting = 0  # tasks waiting for a job to end (the budget's, the planner's)
        self._outstanding = 0  # jobs handed to the channel and not ended
        self.retry = retry
        self.run_id = run_id
        self.slots: SharedSlots | None = None
        self.controller: ConcurrencyController | None = None
        if isinstance(concurrency, int):
            limit = self.max_limit = concurrency
        elif isinstance(concurrency, SharedSlots):
            self.slots = concurrency
            limit, self.max_limit = concurrency.limit, concurrency.cap
        else:
            self.controller = concurrency
            limit, self.max_limit = concurrency.limit, concurrency.cap
        self.limiter: anyio.CapacityLimiter | SharedSlots = (
            anyio.CapacityLimiter(limit) if self.slots is None else self.slots
        )
        self.bucket = TokenBucket(requests_per_minute) if requests_per_minute else None
        auto = self.controller is not None or (self.slots is not None and self.slots.auto)
        self.counters = Counters(concurrency_limit=limit, concurrency_auto=auto)
        self.rng = random.Random(seed)
        self._sleep = sleep
        self.abort: Failure | None = None
        self._recent: deque[str] = deque(maxlen=circuit_breaker or None)
        self._breaker = circuit_breaker
        self.stopping = anyio.Event()
        self._dispatch_scope = anyio.CancelScope()
        self._backoffs: set[anyio.CancelScope] = set()
        self._tg: anyio.abc.TaskGroup | None = None
        self._grace_scope = anyio.CancelScope()  # the grace timer; cancelled when workers are done
        self._workers = 0
        self.sink: Sink = BatchSink(lambda batch: None)
        self._batch_jobs = BATCH_JOBS
        self._flush_wanted = anyio.Event()
        self._sealed: deque[Any] = deque()  # sealed by a worker when a batch was full
        self._written = anyio.Event()
        self.write_error: BaseException | None = None
        """Why writing results failed, when it did (the run stopped at once)."""

    # ---------------------------------------------------------------------------- stopping

    def request_stop(self, grace: float) -> None:
        """Graceful stop: dispatch nothing new, cut backoffs short, give in-flight attempts
        ``grace`` seconds to finish, then cancel them (they are re-run on resume)."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self._dispatch_scope.cancel()
        for scope in self._backoffs:
            scope.cancel()
        if self._tg is not None:
            self._tg.start_soon(self._cancel_after, grace)

    async def _budget_admits(self, budget: BudgetTracker) -> bool:
        """Wait until the budget admits one more job (a job in flight ending may make room,
        or sharpen what a job is expected to cost); False once it never will."""
        while True:
            verdict = budget.verdict(self.counters.active_jobs)
            if verdict is Verdict.ADMIT:
                return True
            if verdict is Verdict.STOP:
                self._stop_for_budget()
                return False
            await self._job_ended_wait()
            if self.stopping.is_set():
                return False

    async def _job_ended_wait(self) -> None:
        """Sleep until the next job ends (its outcome counted and observed)."""
        self._waiting += 1
        try:
            await self._job_ended.wait()
        finally:
            self._waiting -= 1

    def _stop_for_budget(self) -> None:
        """The budget would be passed: dispatch nothing more; jobs in flight (their retries
        included) finish and are saved as usual."""
        self.counters.budget_stopped = True
        self._dispatch_scope.cancel()

    def hard_stop(self) -> None:
        """Stop now: in-flight attempts are abandoned; what finished is still flushed."""
        self.stopping.set()
        self._dispatch_scope.cancel()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def _cancel_after(self, grace: float) -> None:
        with self._grace_scope:
            await anyio.sleep(grace)
            self.hard_stop()

    def _trip_breaker_if_dead(self, failure: Failure) -> None:
        """Stop the run when the last N attempts all failed the same way: retrying a dead
        endpoint for hours helps nobody. Capacity waits do not count (they mean "busy")."""
        if not self._breaker:
            return
        self._recent.append(failure.kind.value)
        if len(self._recent) == self._breaker and len(set(self._recent)) == 1:
            if self.abort is None:
                self.abort = Failure(
                    failure.kind,
                    Action.ABORT_RUN,
                    f"circuit breaker: the last {self._breaker} attempts all failed with "
                    f"{failure.kind.value} (last: {failure.message})",
                    failure.status,
                )
            self.hard_stop()

    def _adapt(self, signal: Signal) -> None:
        """Feed the controller one attempt's reply and apply the limit it answers. The client
        reports a reply as soon as its status is known (``on_reply``), so the quota
        headers act within one round trip, not one simulation; otherwise the attempt's end
        reports it. A lower limit takes effect as slots are released: nothing in flight is
        cut."""
        if signal.maximum is not None:
            self.counters.server_quota = signal.maximum
        if self.slots is not None:  # the limit is held elsewhere: report, read it back
            self.slots.observe(signal)
            shared = int(self.slots.total_tokens)
            if shared != self.counters.concurrency_limit:
                self.counters.concurrency_limit = shared
                self.counters.limit_changes += 1
            return
        if self.controller is None:
            return
        limit = self.controller.observe(signal)
        if limit != self.limiter.total_tokens:
            self.limiter.total_tokens = limit
            self.counters.concurrency_limit = limit
            self.counters.limit_changes += 1

    # ---------------------------------------------------------------------------- one job

    def _gives_up(self, state: _JobState) -> bool:
        """No further attempt: stopping, or the job's budget of either kind is spent."""
        return (
            self.stopping.is_set()
            or state.other_failures >= self.retry.max_attempts
            or state.capacity_waits >= self.retry.max_attempts * CAPACITY_WAITS_PER_ATTEMPT
        )

    def _backoff(self, failure: Failure, state: _JobState) -> float:
        n = state.capacity_waits if failure.action is Action.WAIT_CAPACITY else state.other_failures
        return backoff_seconds(failure, n, self.retry, self.rng)

    def _retrying(self, state: _JobState) -> AsyncRetrying:
        """tenacity's controller for a job's attempts after the first."""

        def wait(rs: RetryCallState) -> float:
            exc = rs.outcome.exception() if rs.outcome else None
            assert isinstance(exc, AttemptError)
            return self._backoff(exc.failure, state)

        return AsyncRetrying(
            stop=lambda _: self._gives_up(state),
            wait=wait,
            retry=retry_if_exception(_retryable),
            sleep=lambda seconds: self._back_off(seconds, state),
            reraise=True,
        )

    async def _back_off(self, seconds: float, state: _JobState) -> None:
        """Sleep before a retry; a graceful stop cuts the sleep short."""
        self.counters.retries += 1
        state.last_sleep = float(seconds)  # tenacity passes a float subclass (DoSleep)
        with anyio.CancelScope() as scope:
            self._backoffs.add(scope)
            try:
                if not self.stopping.is_set():
                    await self._sleep(seconds)
            finally:
                self._backoffs.discard(scope)

    async def _attempt(self, job: Job, state: _JobState) -> JobOutcome:
        """One attempt: the job's outcome, or ``AttemptError`` for tenacity to judge."""
        if self.stopping.is_set() and state.last_error is not None:
            raise state.last_error  # stopping: do not start another attempt
        number = len(state.records) + 1
        queued = time.perf_counter()
        async with self.limiter as lease:
            queue_wait = time.perf_counter() - queued
            if self.bucket is not None:
                await self.bucket.acquire()
            c = self.counters
            c.in_flight += 1
            c.attempts += 1
            c.peak_in_flight = max(c.peak_in_flight, c.in_flight)
            in_flight, limit = c.in_flight, int(self.limiter.total_tokens)
            if lease is not None:  # a shared limit: the figures of every process
                in_flight, limit = lease
            replied = False

            def on_reply(kind: SignalKind, maximum: int | None, current: int | None) -> None:
                nonlocal replied
                replied = True
                self._adapt(Signal(kind, in_flight, limit, maximum, current))

            started_at = datetime.now(UTC)
            t0 = time.perf_counter()

            def record(status: str, http_status: int | None, f: Failure | None = None) -> None:
                state.records.append(
                    AttemptRecord(
                        attempt=number,
                        started_at=started_at,
                        status=status,
                        duration_secs=time.perf_counter() - t0,
                        queue_wait_secs=queue_wait,
                        backoff_before_secs=state.last_sleep,
                        concurrency_limit=limit,
                        http_status=http_status,
                        error_kind=f.kind.value if f else None,
                        error_message=f.message if f else None,
                        action=f.action.value if f else None,
                        retry_after_secs=f.retry_after if f else None,
                    )
                )

            try:
                result = await self.backend.simulate(job, on_reply)
            except AttemptError as exc:
                f = exc.failure
                record("error", f.status, f)
                c.failures_by_kind[f.kind.value] += 1
                if not replied:  # a backend that does not report replies as they come
                    rejected = f.kind is ErrorKind.CONCURRENCY_LIMIT
                    kind = SignalKind.REJECTED if rejected else SignalKind.NEUTRAL
                    on_reply(kind, f.max_concurrent, f.current_concurrent)
                if f.action is Action.ABORT_RUN:
                    # stop before this slot is handed to another request: a rejected key
                    # must cost no more than the requests already in flight
                    self.abort = self.abort or f
                    self.hard_stop()
                if f.action is Action.WAIT_CAPACITY:
                    state.capacity_waits += 1
                else:
                    state.other_failures += 1
                    self._trip_breaker_if_dead(f)
                state.last_error = exc
                raise
            else:
                if not replied:
                    on_reply(SignalKind.ADMITTED, result.max_concurrent, result.current_concurrent)
            finally:
                c.in_flight -= 1
        if self._breaker:
            self._recent.append("ok")
        record("ok", result.http_status)
        return JobOutcome(
            job=job,
            run_id=self.run_id,
            started_at=state.records[0].started_at,
            finished_at=datetime.now(UTC),
            attempts=state.records,
            result=result,
        )

    async def run_job(self, job: Job) -> JobOutcome:
        """The job's attempts until one succeeds or the retry policy gives up.

        The first attempt runs outside tenacity and the retries under it, with the same
        decisions (``_retryable``, ``_gives_up``, ``_backoff``): most jobs need one attempt,
        and a tenacity controller inspects its callables at every step (~0.18 ms of CPU per
        job, over a third of the engine's own cost, measured with a backend that returns at
        once).
        """
        state = _JobState()
        dispatched = datetime.now(UTC)
        try:
            try:
                return await self._attempt(job, state)
            except AttemptError as exc:
                if not _retryable(exc) or self._gives_up(state):
                    raise
                await self._back_off(self._backoff(exc.failure, state), state)
            outcome: JobOutcome = await self._retrying(state)(self._attempt, job, state)
            return outcome
        except AttemptError as exc:
            if exc.failure.action is Action.ABORT_RUN and self.abort is None:
                self.abort = exc.failure
            if self.stopping.is_set() and exc.failure.retryable:
                self.counters.interrupted += 1
            if state.records and exc.failure.retryable:
                # the last attempt's action is what the engine did, not what the failure asked
                state.records[-1].action = Action.GIVE_UP.value
            return JobOutcome(
                job=job,
                run_id=self.run_id,
                started_at=state.records[0].started_at if state.records else dispatched,
                finished_at=datetime.now(UTC),
                attempts=state.records,
                failure=exc.failure,
            )
        finally:
            # the error's traceback holds the attempt's frame, which holds ``state``: a cycle
            # that would keep the failed attempt's transcript and response alive until the
            # cycle collector runs, which during a run is seldom (``runner.gctune``)
            state.last_error = None

    # ---------------------------------------------------------------------------- the sweep

    async def run(
        self,
        jobs: Planner | Iterable[Job],
        sink: Sink | Callable[[Batch], None],
        *,
        batch_jobs: int | None = None,
        batch_secs: float | None = None,
        sync_secs: float | None = None,
        workers: int | None = None,
    ) -> Counters:
        """Run the jobs the planner hands out (an iterable of jobs: all of them, in order, as
        ``planner.Walk``). Each finished job goes to ``sink.add`` at once (on the event loop);
        every ``batch_jobs`` jobs or ``batch_secs`` seconds what was added is sealed and
        written from a worker thread, and in between, every ``sync_secs``, a sink that
        ``Syncs`` is synced (each None: ``BATCH_JOBS``, ``BATCH_SECS``, ``SYNC_SECS`` as they
        are when the run starts). A plain callable is a sink that receives ``Batch``es.

        Returns the counters. Raises ``RunAborted`` after flushing when a failure stopped the
        run. A failed write stops the run at once (``write_error``; what was written stays).
        """
        n_workers = workers or max(2, self.max_limit * 2)
        self.sink = sink if isinstance(sink, Sink) else BatchSink(sink)
        self._batch_jobs = BATCH_JOBS if batch_jobs is None else batch_jobs
        batch_secs = BATCH_SECS if batch_secs is None else batch_secs
        sync_secs = SYNC_SECS if sync_secs is None else sync_secs
        planner = jobs if isinstance(jobs, Planner) else Walk(jobs)
        with fewer_collections():
            await self._run(planner, batch_secs, sync_secs, n_workers)
        self._tg = None
        if self.abort is not None:
            raise RunAborted(self.abort)
        return self.counters

    async def _run(
        self, planner: Planner, batch_secs: float, sync_secs: float, n_workers: int
    ) -> None:
        job_send, job_recv = anyio.create_memory_object_stream[Job](n_workers)
        async with anyio.create_task_group() as outer:
            outer.start_soon(self._writer, batch_secs, sync_secs)
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._produce, planner, job_send)
                async with job_recv:
                    for _ in range(n_workers):
                        tg.start_soon(self._work, job_recv.clone(), planner)
            outer.cancel_scope.cancel()  # every worker is done: the writer's last flush

    async def _produce(self, planner: Planner, send: ObjectSendStream[Job]) -> None:
        """Queue what the planner hands out; on ``WAIT`` sleep until a job ends (no polling)."""
        async with send:
            with self._dispatch_scope:
                while True:
                    job = planner.next()
                    if job is None:
                        return
                    if job is WAIT:
                        if not self._outstanding:
                            raise RuntimeError(
                                "the planner answered WAIT with no job in flight: "
                                "nothing would ever wake it"
                            )
                        await self._job_ended_wait()
                        continue
                    self._outstanding += 1
                    await send.send(job)

    async def _work(self, recv: MemoryObjectReceiveStream[Job], planner: Planner) -> None:
        self._workers += 1
        try:
            await self._work_loop(recv, planner)
        except anyio.EndOfStream:
            pass  # every job dispatched
        finally:
            self._workers -= 1
            if self._workers == 0:
                self._grace_scope.cancel()

    async def _work_loop(self, recv: MemoryObjectReceiveStream[Job], planner: Planner) -> None:
        observes = getattr(planner, "observes", True)
        async with recv:
            while True:
                try:  # a job already queued, without a checkpoint (the attempt yields anyway)
                    job = recv.receive_nowait()
                except anyio.WouldBlock:
                    job = await recv.receive()
                if self.stopping.is_set():
                    return
                c = self.counters
                budget = self.budget
                if budget is not None and not await self._budget_admits(budget):
                    return
                c.active_jobs += 1
                try:
                    outcome = await self.run_job(job)
                finally:
                    c.active_jobs -= 1
                if budget is not None or observes:
                    usd, credits = outcome_spend(outcome)
                    if budget is not None:
                        budget.record(usd, credits)
                c.done += 1
                if outcome.ok:
                    c.ok += 1
                elif outcome.status == "cancelled":
                    c.cancelled += 1
                else:
                    c.errors += 1
                    if outcome.failure is not None:
                        c.errors_by_kind[outcome.failure.kind.value] += 1
                try:
                    self.sink.add(outcome)  # durable now, before anything else can happen
                except OSError as exc:
                    self._write_failed(exc)
                    return
                if observes:
                    planner.observe(_finished(outcome, usd, credits))
                self._outstanding -= 1
                if self._waiting:  # the budget or the planner waits for a job to end
                    ended, self._job_ended = self._job_ended, anyio.Event()
                    ended.set()
                if self.sink.pending >= self._batch_jobs:
                    self._sealed.append(self.sink.seal())
                    self._flush_wanted.set()
                    while len(self._sealed) >= BACKLOG_BATCHES:  # the writer is behind
                        await self._written.wait()
                if self.abort is not None:
                    self.hard_stop()
                    return

    def _write_failed(self, exc: BaseException) -> None:
        if self.write_error is None:
            self.write_error = exc
        self.hard_stop()

    async def _writer(self, batch_secs: float, sync_secs: float) -> None:
        """Write the batches workers sealed when full, and every ``batch_secs`` seal and write
        what waits; between flushes sync the sink every ``sync_secs`` (when it ``Syncs``). The
        last flush survives cancellation."""
        last = synced = time.monotonic()
        sync = self.sink.sync if isinstance(self.sink, Syncs) else None

        async def flush(seal_pending: bool) -> None:
            nonlocal last
            if seal_pending:
                self._sealed.append(self.sink.seal())
                last = time.monotonic()
            while self._sealed:
                sealed = self._sealed[0]  # taken off once written: a cancelled flush loses none
                if sealed is not None and self.write_error is None:
                    try:
                        await anyio.to_thread.run_sync(self.sink.write, sealed)
                    except Exception as exc:  # disk full, no directory: stop, keep what is written
                        self._write_failed(exc)
                self._sealed.popleft()
                written, self._written = self._written, anyio.Event()
                written.set()

        try:
            while True:
                due = (
                    last + batch_secs
                    if sync is None
                    else min(last + batch_secs, synced + sync_secs)
                )
                with anyio.move_on_after(max(due - time.monotonic(), 0.01)):
                    await self._flush_wanted.wait()
                self._flush_wanted = anyio.Event()
                now = time.monotonic()
                await flush(seal_pending=now - last >= batch_secs)
                if sync is not None and now - synced >= sync_secs:
                    synced = now
                    if self.write_error is None:
                        try:
                            await anyio.to_thread.run_sync(sync)
                        except OSError as exc:
                            self._write_failed(exc)
        finally:
            with anyio.CancelScope(shield=True):
                await flush(seal_pending=True)


def _finished(outcome: JobOutcome, usd: float | None, credits: float | None) -> Finished:
    """A finished job as the planner sees it (plain data, no transcript)."""
    job, result = outcome.job, outcome.result
    failure = outcome.failure
    return Finished(
        key=job.key,
        case=case_of(job),
        repeat=job.repeat,
        status=outcome.status,
        error_kind=None if result is not None or failure is None else failure.kind.value,
        criteria=()
        if result is None
        else tuple(
            (cid, r.result) for cid, r in result.analysis.evaluation_criteria_results.items()
        ),
        usd=usd,
        credits=None if credits is None else float(credits),
    )
