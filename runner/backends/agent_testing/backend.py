"""The agent-testing backend: jobs in, one shared invocation per group, results out.

The state of the invocations in flight (which group polls which invocation, which batches wait
to be started) and the requests that drive them; the mapping, the listing, the pacing and the
record files are the package's other modules.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import httpx

from runner.backends.agent_testing.invocations import (
    INVOCATIONS_FILE,
    TIMING_FILE,
    append_record,
    read_all_records,
    read_shortest,
    record_line,
    write_shortest,
)
from runner.backends.agent_testing.keys import (
    BatchKey,
    GroupKey,
    InvocationNames,
    WindowOf,
    fixed_windows,
    group_key,
)
from runner.backends.agent_testing.listing import (
    list_invocations,
    list_tests,
    parse_reply,
    total_price,
)
from runner.backends.agent_testing.mapping import (
    TestSpec,
    cancelled_error,
    job_label,
    parse_test_hash,
    run_buckets,
    run_result,
    test_spec,
)
from runner.backends.agent_testing.pacing import RATE_POLLS, next_delay
from runner.backends.base import ReplyListener, SimulationResult
from runner.config import AgentTestingConfig
from runner.errors import Action, AttemptError, ErrorKind, Failure
from runner.http import request_json
from runner.jobs import Job
from runner.wire.agent_testing import (
    CANCEL_PATH,
    CREATE_PATH,
    INVOCATION_PATH,
    RUN_PATH,
    CreatedTest,
    TestInvocation,
    TestRun,
)


@dataclass
class _Poll:
    """One invocation, polled once for every group it runs (shared by their jobs)."""

    id: str
    polling: bool = False
    """One job polls for every job of the invocation; the others wait for ``updated``."""
    updated: anyio.Event = field(default_factory=anyio.Event)
    attached: bool = False
    """Re-attached (recorded by an earlier session, or found by the list): not started here."""
    sent_at: float | None = None
    deadline_at: float | None = None
    runs_done_at: float | None = None
    seen_done: dict[str, float] = field(default_factory=dict)
    final: TestInvocation | None = None
    """The invocation once no run of it is pending (or it was cancelled)."""
    total_price: float | None = None
    """USD the vendor billed for the whole invocation (its summary's ``total_price``)."""
    latest: TestInvocation | None = None
    """The last poll's reply."""
    runs_by_test: dict[str, list[TestRun]] = field(default_factory=dict)
    """``latest``'s runs per test, sorted by id: each waiting job looks up its own at once
    rather than scanning every run of a large invocation."""
    done_counts: list[tuple[float, int]] = field(default_factory=list)
    """(time, runs finished) of the last polls: the finish rate that sets the interval."""
    finishing_polls: int = 0
    """Polls since one saw a run finished: with ``seen_done``, the spend per result so far."""
    delay: float | None = None
    next_at: float | None = None
    """When the next poll is due (one schedule for every test of the invocation)."""
    groups: list[GroupKey] = field(default_factory=list)


@dataclass
class _Group:
    """The repeats of one (agent, test) in one invocation, shared by their jobs."""

    key: GroupKey
    batch: BatchKey
    """The run-tests call it may share (its window's wave and repeat count)."""
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    poll: _Poll | None = None
    test_id: str | None = None
    start_unsure: bool = False
    """A run-tests call failed without a clear refusal: the server may have started it (its
    reply lost in transit), so look for it by name before starting another."""


class _Member(NamedTuple):
    """A group waiting in a batch, with the job that brought it and its test's id."""

    group: _Group
    job: Job
    test_id: str


@dataclass
class _Batch:
    """Groups of one agent variant and repeat window waiting to be started by one call."""

    key: BatchKey
    members: list[_Member] = field(default_factory=list)
    done: anyio.Event = field(default_factory=anyio.Event)
    error: AttemptError | None = None


class AgentTestingBackend:
    """``Backend`` over the agent-testing API (the package docstring has the mapping)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        options: AgentTestingConfig,
        *,
        repeats: int,
        windows: WindowOf | None = None,
        run_dir: Path | None = None,
        session_id: str | None = None,
        run_key: str = "",
        record_name: str = INVOCATIONS_FILE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if not options.name_prefix:
            raise ValueError("agent_testing.name_prefix must be set (load_config fills it in)")
        self.client = client
        self.options = options
        self.prefix = options.name_prefix
        self.repeats = repeats
        self.window_of = windows or fixed_windows(repeats)
        """Which repeats of a test share a job's invocation (``keys.Window``)."""
        self.record_path = run_dir / record_name if run_dir is not None else None
        self._clock = clock
        self._sleep = sleep
        self._tests: dict[str, str] | None = None  # hash -> test id, once listed
        self._index_lock = anyio.Lock()
        self._test_locks: dict[str, anyio.Lock] = {}
        self._groups: dict[GroupKey, _Group] = {}
        self._polls: dict[str, _Poll] = {}
        self._batches: dict[BatchKey, _Batch] = {}
        self.timing_path = run_dir.parent / TIMING_FILE if run_dir is not None else None
        self.shortest: float | None = read_shortest(self.timing_path, self.prefix)
        self._learned_dirty = False
        recorded = dict(read_all_records(run_dir, self.record_path))
        self._recorded: dict[GroupKey, str] = {k: v for k, v in recorded.items() if v}
        self._covers: dict[tuple[str, str, str], set[GroupKey]] = {}
        for k in self._recorded:
            self._covers.setdefault((k.agent_id, k.test_hash, k.variant), set()).add(k)
        self.names = InvocationNames.of(
            self.prefix,
            run_dir.name if run_dir is not None else "run",
            run_key,
            session_id or "-",
        )
        # agent id -> (batch tag, test id) -> invocation id, from one listing per agent
        self._listed: dict[str, dict[tuple[str, str], str]] = {}
        self._list_lock = anyio.Lock()
        self.tests_created = 0
        self.invocations_started = 0
        self.reattached = 0
        self.found_by_list = 0
        self.requests = Counter[str]()
        """Requests made, by kind (create, list, run, poll, cancel)."""

    async def aclose(self) -> None:
        if self._learned_dirty and self.shortest is not None and self.timing_path is not None:
            with contextlib.suppress(OSError):  # only a hint for the next session
                await anyio.to_thread.run_sync(
                    write_shortest, self.timing_path, self.prefix, self.shortest
                )
        await self.client.aclose()

    async def _call(self, kind: str, method: str, path: str, **kwargs: Any) -> Any:
        self.requests[kind] += 1
        return await request_json(self.client, method, path, **kwargs)

    async def simulate(self, job: Job, on_reply: ReplyListener) -> SimulationResult:
        """``on_reply`` is left uncalled: a run-tests reply says nothing of the quota of the
        simulations, which run later on the vendor's side."""
        spec = test_spec(job, self.options)
        test_id = await self._test_id(spec)
        window = self.window_of(job)
        key = self._covering(job, group_key(job, spec.hash, window))
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(key, key.batch(window.wave))
        while True:
            async with group.lock:
                if group.poll is None:
                    await self._attach_or_start(group, job, test_id)
            poll = group.poll
            assert poll is not None
            invocation = await self._drive(poll, test_id)
            if invocation is None:
                continue  # the re-attached invocation is gone: find or start another
            index = job.repeat - key.first_repeat
            return self._take(poll, invocation, spec, test_id, index, key.repeat_count)

    def _covering(self, job: Job, key: GroupKey) -> GroupKey:
        """``key``, or a recorded invocation of the same test and agent variant whose window
        holds the job's repeat (an earlier session with other windows: another ``run.repeats``,
        fixed repeats continued in waves): its run is paid for already, so the job takes it."""
        if key in self._recorded:
            return key
        for other in self._covers.get((key.agent_id, key.test_hash, key.variant), ()):
            if other.first_repeat <= job.repeat < other.first_repeat + other.repeat_count:
                if other in self._recorded:
                    return other
        return key

    # -------------------------------------------------------------- tests

    async def _test_id(self, spec: TestSpec) -> str:
        async with self._index_lock:
            if self._tests is None:
                self.requests["list"] += 1
                listed = await list_tests(self.client, self.prefix, self.options.folder_id)
                index: dict[str, str] = {}
                for test in sorted(listed, key=lambda t: t.id):
                    index.setdefault(parse_test_hash(test.name, self.prefix) or "", test.id)
                self._tests = index
        tests = self._tests
        if spec.hash in tests:
            return tests[spec.hash]
        lock = self._test_locks.setdefault(spec.hash, anyio.Lock())
        async with lock:
            if spec.hash not in tests:
                reply = await self._call("create", "POST", CREATE_PATH, json_body=spec.body)
                tests[spec.hash] = parse_reply(CreatedTest, reply, "create test").id
                self.tests_created += 1
        return tests[spec.hash]

    # -------------------------------------------------------------- invocations

    async def _find_listed(self, group: _Group, test_id: str) -> str | None:
        """The invocation of this group the vendor lists (an earlier session's whose journal
        line is lost, or this session's whose run-tests reply was lost), else None. One
        listing per agent and session serves every group (a fresh run's is empty); after an
        unsure start, the group is looked up on its own."""
        names = self.names
        agent_id, tag = group.key.agent_id, names.batch_tag(group.batch)
        if group.start_unsure:
            found = await list_invocations(self._call, names, agent_id, tag, test_id)
            return next((i.id for i in found if names.tag_of(i.name) == tag), None)
        async with self._list_lock:
            if agent_id not in self._listed:
                index: dict[tuple[str, str], str] = {}
                known = set(self._recorded.values())
                for item in await list_invocations(self._call, names, agent_id, names.run_token):
                    if item.id in known:
                        continue  # in the journal already: its groups are recorded
                    reply = await self._call(
                        "poll", "GET", INVOCATION_PATH.format(invocation_id=item.id)
                    )
                    invocation = parse_reply(TestInvocation, reply, f"test invocation {item.id}")
                    for run in invocation.test_runs:
                        index.setdefault((names.tag_of(item.name), run.test_id), item.id)
                self._listed[agent_id] = index
        return self._listed[agent_id].get((tag, test_id))

    async def _record(self, key: GroupKey, test_id: str, invocation_id: str, **extra: Any) -> None:
        if invocation_id:
            self._recorded[key] = invocation_id
            self._covers.setdefault((key.agent_id, key.test_hash, key.variant), set()).add(key)
        else:
            self._recorded.pop(key, None)
        if self.record_path is not None:
            line = record_line(key, test_id, invocation_id, **extra)
            await anyio.to_thread.run_sync(append_record, self.record_path, line)

    def _poll_for(self, invocation_id: str, *, attached: bool) -> _Poll:
        poll = self._polls.get(invocation_id)
        if poll is None:
            poll = self._polls[invocation_id] = _Poll(invocation_id, attached=attached)
        return poll

    async def _attach_or_start(self, group: _Group, job: Job, test_id: str) -> None:
        """Find the group's invocation (recorded, or listed by the vendor), else start it in
        a batch with the other groups of the same agent variant arriving meanwhile."""
        group.test_id = test_id
        recorded = self._recorded.get(group.key)
        if recorded is None:
            recorded = await self._find_listed(group, test_id)
            if recorded is not None:
                self.found_by_list += 1
                await self._record(group.key, test_id, recorded)
        if recorded is not None:
            group.poll = self._poll_for(recorded, attached=True)
            group.poll.groups.append(group.key)
            group.start_unsure = False
            self.reattached += 1
            return
        await self._join_batch(group, job, test_id)

    async def _join_batch(self, group: _Group, job: Job, test_id: str) -> None:
        bkey = group.batch
        batch = self._batches.get(bkey)
        if batch is None or len(batch.members) >= self.options.batch_max_tests:
            batch = self._batches[bkey] = _Batch(bkey)
            batch.members.append(_Member(group, job, test_id))
            await self._sleep(self.options.batch_wait)
            if self._batches.get(bkey) is batch:
                del self._batches[bkey]
            try:
                await self._start(batch)
            except AttemptError as exc:
                batch.error = exc
            finally:
                batch.done.set()
        else:
            batch.members.append(_Member(group, job, test_id))
            await batch.done.wait()
        if group.poll is None:
            assert batch.error is not None
            raise AttemptError(batch.error.failure)

    async def _start(self, batch: _Batch) -> None:
        members = batch.members
        first_group, first_job = members[0].group, members[0].job
        count = first_group.key.repeat_count
        label = (
            job_label(first_job, agent_axes=True) if len(members) == 1 else f"{len(members)} tests"
        )
        body: dict[str, Any] = {
            "tests": [{"test_id": m.test_id} for m in members],
            "repeat_count": count,
            "name": self.names.name(first_group.batch, label),
        }
        if first_job.branch_id is not None:
            body["branch_id"] = first_job.branch_id
        if first_job.agent_override:
            body["agent_config_override"] = first_job.agent_override
        sent = self._clock()
        try:
            reply = await self._call(
                "run", "POST", RUN_PATH.format(agent_id=first_job.agent_id), json_body=body
            )
        except AttemptError as exc:
            # a refusal (4xx) started nothing; anything else may have started it
            unsure = exc.failure.status is None or exc.failure.status >= 500
            for member in members:
                member.group.start_unsure = unsure
            raise
        invocation = parse_reply(TestInvocation, reply, "run tests")
        poll = self._poll_for(invocation.id, attached=False)
        poll.sent_at = sent
        poll.deadline_at = sent + self.options.deadline
        self.invocations_started += 1
        for group, _, test_id in members:
            group.poll = poll
            group.start_unsure = False
            poll.groups.append(group.key)
            await self._record(group.key, test_id, invocation.id)

    def _learn(self, secs: float) -> None:
        """The shortest time from run-tests to a finished run seen so far (this run's
        sessions included: kept in the journal), so later invocations sleep until then."""
        if secs > 0 and (self.shortest is None or secs < self.shortest):
            self.shortest = secs
            self._learned_dirty = True

    def _next_delay(self, poll: _Poll, now: float) -> float:
        """``pacing.next_delay`` for this invocation."""
        return next_delay(
            self.options,
            now=now,
            finished=len(poll.seen_done),
            done_counts=poll.done_counts,
            finishing_polls=poll.finishing_polls,
            previous=poll.delay,
            sent_at=poll.sent_at,
            shortest=self.shortest,
        )

    def _ready(self, poll: _Poll, test_id: str, now: float) -> TestInvocation | None:
        """The last polled invocation when it holds this test's result: its runs are done
        (or the invocation was cancelled) and, with repeats, the buckets are in or waited
        for long enough. Other tests of the same invocation may still be running."""
        invocation = poll.latest
        if invocation is None:
            return None
        runs = poll.runs_by_test.get(test_id, [])
        if not invocation.cancelled and (not runs or any(r.status == "pending" for r in runs)):
            return None
        if (invocation.repeat_count or 1) > 1 and not invocation.cancelled:
            # repeats are bucketed once every run of the invocation is done: wait for that
            if poll.final is None:
                return None
            done_at = poll.runs_done_at = poll.runs_done_at or now
            deadline = poll.deadline_at if poll.deadline_at is not None else now
            bucketing = invocation.bucketing_status == "pending"
            if bucketing and now < min(deadline, done_at + self.options.bucketing_wait):
                return None
        return invocation

    async def _drive(self, poll: _Poll, test_id: str) -> TestInvocation | None:
        """Poll until this test's result is in (the invocation), or raise what went wrong.
        None: a re-attached invocation the server no longer knows (e.g. a restarted local
        API), forgotten for every group that waited on it.

        One poll serves every test of the invocation: polls back off (x1.5 from
        ``poll_interval`` up to ``poll_interval_max``) while nothing has finished, then come
        at the pace ``pacing.next_delay`` sets from the finish rate (at most ``poll_interval``
        apart), so each result is in the store within one poll interval of its run's end."""
        o = self.options
        if poll.deadline_at is None:
            poll.deadline_at = self._clock() + o.deadline
        deadline = poll.deadline_at
        while True:
            now = self._clock()
            ready = self._ready(poll, test_id, now)
            if ready is not None:
                return ready
            if poll.latest is not None and now >= deadline:
                raise AttemptError(
                    Failure(
                        ErrorKind.TOTAL_TIMEOUT,
                        Action.FAIL_JOB,
                        f"test invocation {poll.id}: runs still pending after "
                        f"{o.deadline:g}s (agent_testing.deadline); run again to re-attach",
                    )
                )
            if poll.polling:  # another job polls for all of them: wait for its reply
                await poll.updated.wait()
                continue
            poll.polling = True
            try:
                if poll.latest is not None:
                    due = poll.next_at if poll.next_at is not None else now
                    if due > now:
                        await self._sleep(min(due, deadline) - now)
                if not await self._poll_once(poll):
                    return None
            finally:
                poll.polling = False
                woken, poll.updated = poll.updated, anyio.Event()
                woken.set()

    async def _poll_once(self, poll: _Poll) -> bool:
        """One GET of the invocation into ``poll.latest``; False: a re-attached invocation
        the server no longer knows, forgotten for every group that waited on it."""
        path = INVOCATION_PATH.format(invocation_id=poll.id)
        try:
            reply = await self._call("poll", "GET", path)
        except AttemptError as exc:
            if exc.failure.kind is ErrorKind.NOT_FOUND and poll.attached:
                # The recorded invocation is gone (e.g. a restarted local API): the only
                # way to a result is a new one, for every group that waits on it.
                for key in poll.groups:
                    self._recorded.pop(key, None)
                    stale = self._groups.get(key)
                    if stale is not None and stale.poll is poll:
                        stale.poll = None
                self._polls.pop(poll.id, None)
                return False
            raise
        invocation = parse_reply(TestInvocation, reply, f"test invocation {poll.id}")
        now = self._clock()
        poll.latest = invocation
        by_test: dict[str, list[TestRun]] = {}
        for run in sorted(invocation.test_runs, key=lambda r: r.test_run_id):
            by_test.setdefault(run.test_id, []).append(run)
            if run.status != "pending":
                poll.seen_done.setdefault(run.test_run_id, now)
        poll.runs_by_test = by_test
        if poll.seen_done:
            poll.finishing_polls += 1
        poll.done_counts = [*poll.done_counts[-RATE_POLLS:], (now, len(poll.seen_done))]
        pending = not invocation.test_runs or any(
            r.status == "pending" for r in invocation.test_runs
        )
        if invocation.cancelled or not pending:
            agent_id = invocation.agent_id or (poll.groups[0].agent_id if poll.groups else None)
            if agent_id is not None:
                poll.total_price = await total_price(self._call, agent_id, invocation.id)
            poll.final = invocation
        if poll.seen_done and poll.sent_at is not None:
            # the vendor's own timestamps when it sends them (a poll sees a run finish late)
            stamped = [
                r.last_updated_at_unix - invocation.created_at
                for r in invocation.test_runs
                if r.status in ("passed", "failed")
                and r.last_updated_at_unix is not None
                and invocation.created_at is not None
            ]
            seen = min(poll.seen_done.values()) - poll.sent_at
            self._learn(min(seen, float(min(stamped))) if stamped else seen)
        poll.delay = self._next_delay(poll, now)
        poll.next_at = now + poll.delay
        return True

    async def cancel_started(self) -> list[str]:
        """Cancel the invocations this session started that are not finished (Ctrl-C /
        SIGTERM), and forget them in the journal, so a resume starts them again rather than
        re-attaching to a cancelled run. Returns the ids cancelled."""
        cancelled: list[str] = []
        for poll in list(self._polls.values()):
            if poll.attached or poll.final is not None:
                continue
            path = CANCEL_PATH.format(invocation_id=poll.id)
            try:
                await self._call("cancel", "POST", path)
            except AttemptError:
                continue  # best effort: it may have finished meanwhile
            cancelled.append(poll.id)
            for key in poll.groups:
                group = self._groups.get(key)
                test_id = group.test_id if group is not None and group.test_id else ""
                await self._record(key, test_id, "", cancelled=poll.id)
        return cancelled

    def _take(
        self,
        poll: _Poll,
        invocation: TestInvocation,
        spec: TestSpec,
        test_id: str,
        index: int,
        count: int,
    ) -> SimulationResult:
        """The job's run (its repeat index among the test's runs sorted by id) as a result."""
        runs = poll.runs_by_test.get(test_id, [])
        if index >= len(runs):
            if invocation.cancelled:
                raise cancelled_error(invocation.id, None)
            raise AttemptError(
                Failure(
                    ErrorKind.MALFORMED,
                    Action.FAIL_JOB,
                    f"test invocation {invocation.id} has {len(runs)} run(s) of test "
                    f"{test_id}, expected {count}",
                )
            )
        run = runs[index]
        if run.status in ("cancelled", "pending"):  # pending here: the invocation was cancelled
            raise cancelled_error(invocation.id, run.test_run_id)
        total: float | None = None
        if poll.sent_at is not None and run.test_run_id in poll.seen_done:
            total = poll.seen_done[run.test_run_id] - poll.sent_at
        elif run.last_updated_at_unix is not None and invocation.created_at is not None:
            total = float(max(0, run.last_updated_at_unix - invocation.created_at))
        result = run_result(
            run,
            criterion_name=spec.criterion_name,
            buckets=run_buckets(invocation, run),
            total_secs=total,
        )
        result.invocation_total_price = poll.total_price
        return result
