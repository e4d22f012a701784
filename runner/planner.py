"""The planner: which job the engine sends next, decided from the outcomes so far (pure).

The engine owns sending (the channel, the workers, retries, the concurrency limit); the
planner owns choosing. Whenever the engine can queue a job it asks ``next()``:

- a ``Job``: send it;
- ``WAIT``: nothing to send until a job in flight ends (a rule waits for verdicts, or for
  spend to be known); the engine sleeps until the next job finishes, then asks again;
- ``None``: the plan is done; nothing more will be sent.

Every job the engine ran is reported back with ``observe(Finished)``: plain data (the job's key,
its case, its repeat, how it ended, each criterion's result string, its spend), so a planner
and the rules inside it are plain objects, tested without an engine or a network. A planner may
count its own jobs in flight: every job ``next()`` handed out is observed exactly once, unless
the run stops (a stop, an abort or the budget), after which ``next()`` is not asked again.

``Walk`` is the plan of a fixed sweep: the expanded jobs in order, once each, pulled lazily so
memory stays flat however large the sweep. Rules that decide from outcomes (stop a case's
repeats once its verdict is settled, dispatch A/B pairs, admit a job only while the budget
holds) are planners of the same shape, usually wrapping a ``Walk``.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple, Protocol, runtime_checkable

from runner.jobs import Job, case_key
from runner.verdicts import Decision, Outcome, Rule, outcome_of, repeats_to_verdict

__all__ = [
    "WAIT",
    "Case",
    "Finished",
    "Planner",
    "Stored",
    "UntilVerdict",
    "Wait",
    "Walk",
    "case_key",
    "case_of",
]


class Wait(Enum):
    """The type of ``WAIT`` (an enum member, so ``next()``'s answer is typed exactly)."""

    WAIT = "wait"


WAIT = Wait.WAIT
"""``next()``'s answer when nothing may be sent until a job in flight ends."""


class Case(NamedTuple):
    """What repeats repeat: one agent (with its branch) x scenario x matrix cell. The same
    identity as the statistics' cases (``analysis.case_columns``), the branch kept apart.
    (Named tuples, here and in ``Finished``: one is built for every job, and a frozen
    dataclass costs several times as much to build.)"""

    agent_id: str
    scenario_id: str
    matrix: tuple[tuple[str, str], ...]
    branch_id: str | None = None


def case_of(job: Job) -> Case:
    return Case(job.agent_id, job.scenario_id, job.matrix, job.branch_id)


class Finished(NamedTuple):
    """One job the engine ran, as a planner sees it."""

    key: str
    case: Case
    repeat: int
    status: str
    """``ok``, ``error`` or ``cancelled`` (as the job's row)."""
    error_kind: str | None = None
    criteria: tuple[tuple[str, str], ...] = ()
    """(criterion id, result) per criterion: ``success``, ``failure`` or ``unknown``."""
    usd: float | None = None
    """What the vendor reported the job cost (None: it priced nothing)."""
    credits: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@runtime_checkable
class Planner(Protocol):
    """What the engine asks for its next job and tells of each job that ended. A planner
    that decides nothing from outcomes may say so with a class attribute ``observes = False``:
    the engine then builds no ``Finished`` for it (a cost on every job of a large sweep)."""

    def next(self) -> Job | Wait | None: ...

    def observe(self, finished: Finished) -> None: ...


class Walk:
    """Today's plan: every job of ``jobs`` in order, once, never waiting. Lazy over the
    iterable, so a sweep of any size is never held in memory."""

    observes = False

    def __init__(self, jobs: Iterable[Job]) -> None:
        self._jobs: Iterator[Job] = iter(jobs)

    def next(self) -> Job | None:
        return next(self._jobs, None)

    def observe(self, finished: Finished) -> None:
        """The walk decides nothing from outcomes."""


_CHUNK = 50
"""Repeats past the last wave bound go in waves of this many (the vendor's most repeats in one
invocation, as ``agent_testing.wave_window``)."""

Stored = tuple[str, tuple[tuple[str, str], ...]]
"""A finished job of an earlier session as the verdict planner needs it: (status, criteria
results as ``Finished.criteria``)."""


@dataclass(eq=False)
class _CaseState:
    index: int
    jobs: list[Job]
    """The case's jobs not yet sent, in repeat order."""
    outcomes: list[list[Outcome]]
    """Per verdict (one for ``of: all``, one per listed criterion): outcomes as they ended."""
    sent: int = 0
    in_flight: int = 0
    version: int = 0
    decisions: list[Decision] = field(default_factory=list)
    cap: int = 1

    @property
    def known(self) -> int:
        return len(self.outcomes[0])

    @property
    def stopped(self) -> bool:
        return bool(self.decisions) and all(d.stop for d in self.decisions)


class UntilVerdict:
    """``run.repeats: {until: verdict}``: a case's repeats stop once its verdict is settled.

    Cases are the expansion's (``case_of``) and a case's n-th repeat is the expansion's job,
    so its key is a fixed run's. Order: first ``min`` repeats of every case (the case with the
    fewest repeats sent or done goes next: a fixed run's repeat-major order), then further
    repeats only for cases whose rule has not stopped over the outcomes so far (every verdict
    of the case: ``of: all`` is one, a list of criteria one each).

    In flight per case, past ``min``: at most the fewest further repeats that could settle it
    (``verdicts.repeats_to_verdict``, the largest over its open verdicts; at least 1). No
    outcome of fewer repeats can settle it, so every repeat sent is one the case needs (unless
    a mixed run of outcomes makes every verdict unreachable first): free slots go to other
    undecided cases, and a slot stays idle (``WAIT``) only when every undecided case already
    has all it could need in flight. Sending more would fill the quota sooner with repeats a
    decision may make useless, and every repeat is paid for. Repeats in flight when a case
    stops finish and are counted (``outcomes`` keeps them).

    ``stored``: the outcomes of jobs earlier sessions finished (by key); those jobs are not
    sent again and count as the case's repeats, so a resumed run continues each case where it
    stood. ``closest_first`` (a run with a budget): past ``min``, the undecided cases closest
    to a verdict (fewest repeats to a verdict) go first, so what the budget still buys settles
    the most cases.

    ``waves`` (the agent-testing backend, whose invocation runs many repeats of a test at
    once): the repeat indices where waves start, then ``max`` (``agent_testing.wave_bounds``,
    e.g. 0, 2, 4, 8, 16, 20). A case's repeats are then handed out a whole wave at a time (its
    jobs one after the other, so the backend starts them as one invocation), under the same
    rule: a case gets its next wave while it is undecided and its repeats in flight cannot
    settle it (so the waves it gets each hold a repeat it needs; the rest of the last one may
    run past its decision). A repeat past the last bound is a wave of 50.
    """

    observes = True

    def __init__(
        self,
        jobs: Iterable[Job],
        rule: Rule,
        of: Sequence[str] | None = None,
        stored: Mapping[str, Stored] | None = None,
        *,
        closest_first: bool = False,
        waves: Sequence[int] | None = None,
    ) -> None:
        self.rule = rule
        self.of = None if of is None else tuple(of)
        self.closest_first = closest_first
        self.waves = None if waves is None else tuple(waves)
        if self.waves is not None and (
            not self.waves or self.waves[0] != 0 or list(self.waves) != sorted(set(self.waves))
        ):
            raise ValueError(f"waves: increasing repeat indices from 0 (got {self.waves})")
        self._queue: deque[Job] = deque()
        """The rest of a wave handed out (``waves``): sent before anything else."""
        self._min = rule.min_repeats
        self._cases: dict[Case, _CaseState] = {}
        self._heap: list[tuple[int, int, int, int]] = []
        self._in_flight = 0
        stored = stored or {}
        width = 1 if self.of is None else len(self.of)
        for job in jobs:
            case = case_of(job)
            state = self._cases.get(case)
            if state is None:
                state = _CaseState(len(self._cases), [], [[] for _ in range(width)])
                self._cases[case] = state
            done = stored.get(job.key)
            if done is None:
                state.jobs.append(job)
            else:
                self._record(state, *done)
        self._states = list(self._cases.values())
        for state in self._states:
            state.jobs.sort(key=lambda job: job.repeat)
            self._judge(state)
            self._push(state)

    # -------------------------------------------------------------------- the engine's side

    def next(self) -> Job | Wait | None:
        if self._queue:
            return self._queue.popleft()
        while self._heap:
            _, _, index, version = heapq.heappop(self._heap)
            state = self._states[index]
            if version != state.version:
                continue  # a stale entry: the case changed since it was pushed
            job = state.jobs[state.sent]
            size = 1 if self.waves is None else self._wave_size(state)
            state.sent += size
            state.in_flight += size
            self._in_flight += size
            self._queue.extend(state.jobs[state.sent - size + 1 : state.sent])
            self._push(state)
            return job
        return WAIT if self._in_flight else None

    def wave(self, repeat: int) -> int:
        """The number of the wave that holds ``repeat`` (``waves``; 0 without)."""
        if self.waves is None:
            return 0
        last = self.waves[-1]
        if repeat >= last:
            return len(self.waves) + (repeat - last) // _CHUNK
        return bisect.bisect_right(self.waves, repeat) - 1

    def _wave_size(self, state: _CaseState) -> int:
        """How many of the case's jobs not yet sent are in the wave of the next one."""
        wave = self.wave(state.jobs[state.sent].repeat)
        end = state.sent + 1
        while end < len(state.jobs) and self.wave(state.jobs[end].repeat) == wave:
            end += 1
        return end - state.sent

    def observe(self, finished: Finished) -> None:
        state = self._cases[finished.case]
        state.in_flight -= 1
        self._in_flight -= 1
        self._record(state, finished.status, finished.criteria)
        self._judge(state)
        self._push(state)

    # -------------------------------------------------------------------- what it knows

    def decisions(self, case: Case) -> list[Decision]:
        """The case's decisions over its outcomes so far (one per verdict)."""
        return self._cases[case].decisions

    def outcomes(self, case: Case) -> list[list[Outcome]]:
        return self._cases[case].outcomes

    @property
    def cases(self) -> list[Case]:
        return list(self._cases)

    def needed(self) -> list[Job]:
        """The next job of every case that still needs one (fewer than ``min`` repeats, or its
        rule has not stopped): what a sharded run's merge reports missing."""
        return [
            s.jobs[s.sent]
            for s in self._states
            if s.sent < len(s.jobs) and (s.known + s.in_flight < self._min or not s.stopped)
        ]

    def tally(self) -> tuple[int, int]:
        """(cases stopped, cases not stopped) over the outcomes so far: live progress."""
        stopped = sum(1 for s in self._states if s.stopped)
        return stopped, len(self._states) - stopped

    # -------------------------------------------------------------------- inside

    def _record(
        self, state: _CaseState, status: str, criteria: tuple[tuple[str, str], ...]
    ) -> None:
        if self.of is None:
            outcome = outcome_of(status, (result for _, result in criteria))
            if outcome is not None:
                state.outcomes[0].append(outcome)
            return
        results = dict(criteria)
        for i, cid in enumerate(self.of):
            one = outcome_of(status, [results[cid]] if cid in results else [])
            if one is not None:
                state.outcomes[i].append(one)

    def _judge(self, state: _CaseState) -> None:
        state.decisions = [self.rule.decide(o) for o in state.outcomes]
        needed = [
            repeats_to_verdict(self.rule, o) or 0
            for o, d in zip(state.outcomes, state.decisions, strict=True)
            if not d.stop
        ]
        state.cap = max([1, *needed])

    def _eligible(self, state: _CaseState) -> bool:
        if state.sent >= len(state.jobs):
            return False
        if state.known + state.in_flight < self._min:
            return True
        return not state.stopped and state.in_flight < state.cap

    def _push(self, state: _CaseState) -> None:
        state.version += 1
        if not self._eligible(state):
            return
        total = state.known + state.in_flight
        first = -1
        if self.closest_first and total >= self._min:
            first = min(
                (
                    repeats_to_verdict(self.rule, o) or 0
                    for o, d in zip(state.outcomes, state.decisions, strict=True)
                    if not d.stop
                ),
                default=0,
            )
        heapq.heappush(self._heap, (first, total, state.index, state.version))
