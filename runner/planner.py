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

from collections.abc import Iterable, Iterator
from enum import Enum
from typing import NamedTuple, Protocol, runtime_checkable

from runner.jobs import Job

__all__ = ["WAIT", "Case", "Finished", "Planner", "Wait", "Walk", "case_of"]


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
