"""``run.budget``: how much a run may spend, and whether one more job may be sent (pure).

The engine asks ``verdict(in_flight)`` before dispatching each job and reports each finished
job's spend with ``record``. A job is admitted only while

    spent so far + (jobs in flight + this one) x a cautious cost of a job <= the limit

for each limit set (USD and/or credits). When it is not, the answer is ``WAIT`` while jobs
are in flight (their spend is then known, and the next job may still fit), and ``STOP`` once
nothing is in flight: dispatching then ends for good.

The cautious cost of a job is the highest spend among the last ``window`` finished jobs that
were priced (not their mean: every job in flight is charged as the dearest recent one, so the
spend passes the limit only when a job costs more than any before it); before any was
priced, the prior the run shell gives (the estimate's geometric middle per job). A resumed
run starts from the jobs earlier sessions priced, as if they were this session's recent ones.
A job stays in flight through all its retries, so a retried job is counted once until it
ends, and its spend (when the vendor priced it) is counted when it ends. Earlier sessions'
spend is the starting point: a resume counts what was paid before. Without any figure to
expect from (no prior, nothing priced yet), one job at a time is sent until the first is
priced: what a job costs is unknown, so only one is risked. ``expected`` (the mean) is what
the jobs left are expected to cost, for the larger budget a resume needs (``resume_limit``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum


class Verdict(Enum):
    ADMIT = "admit"
    WAIT = "wait"
    """Not now: wait for a job in flight to end, then ask again."""
    STOP = "stop"


@dataclass
class Limit:
    unit: str
    """``usd`` or ``credits``."""
    limit: float
    spent: float = 0.0
    """Spend so far, earlier sessions included."""
    prior: float | None = None
    """Expected cost of a job before any finished job of this session was priced."""
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=50))

    @property
    def expected(self) -> float:
        """The expected cost of a job (0 while nothing is known: see ``known``)."""
        if self.recent:
            return sum(self.recent) / len(self.recent)
        return self.prior or 0.0

    @property
    def cautious(self) -> float:
        """What each job in flight is charged when admitting one more: the dearest recent job,
        and the prior too until a window of jobs was priced (the first jobs to end are the
        short, cheap ones: alone they would admit a wave of dearer ones); 0 while nothing is
        known (see ``known``)."""
        dearest = max(self.recent, default=0.0)
        if self.prior is not None and len(self.recent) < (self.recent.maxlen or 0):
            return max(dearest, self.prior)
        return dearest

    @property
    def known(self) -> bool:
        return bool(self.recent) or self.prior is not None

    def would_exceed(self, jobs_in_flight: int) -> bool:
        if not self.known and jobs_in_flight > 0:
            return True  # nothing to expect from yet: one job at a time
        return self.spent + (jobs_in_flight + 1) * self.cautious > self.limit + 1e-12


class BudgetTracker:
    def __init__(
        self,
        *,
        usd: float | None = None,
        credits: float | None = None,
        spent_usd: float = 0.0,
        spent_credits: float = 0.0,
        prior_usd: float | None = None,
        prior_credits: float | None = None,
        seen_usd: Sequence[float] = (),
        seen_credits: Sequence[float] = (),
        window: int = 50,
    ) -> None:
        """``seen_*``: what earlier sessions' jobs cost, oldest first; the last ``window`` of
        them are the recent jobs a resumed run starts from."""
        self.limits: list[Limit] = []
        if usd is not None:
            recent = deque(seen_usd[-window:], maxlen=window)
            self.limits.append(Limit("usd", usd, spent_usd, prior_usd, recent))
        if credits is not None:
            recent = deque(seen_credits[-window:], maxlen=window)
            self.limits.append(Limit("credits", credits, spent_credits, prior_credits, recent))
        self.session_usd = 0.0
        self.session_credits = 0.0
        self.stopped: Limit | None = None
        """The limit that stopped dispatching, once one did."""

    @property
    def active(self) -> bool:
        return bool(self.limits)

    def verdict(self, jobs_in_flight: int) -> Verdict:
        """Whether one more job may be dispatched with ``jobs_in_flight`` still running.
        Once ``STOP``, always ``STOP`` (dispatching has ended for good)."""
        if self.stopped is not None:
            return Verdict.STOP
        for limit in self.limits:
            if limit.would_exceed(jobs_in_flight):
                if jobs_in_flight > 0:
                    return Verdict.WAIT
                self.stopped = limit
                return Verdict.STOP
        return Verdict.ADMIT

    def admits(self, jobs_in_flight: int) -> bool:
        return self.verdict(jobs_in_flight) is Verdict.ADMIT

    def record(self, usd: float | None, credits: float | None) -> None:
        """A finished job's spend (None: the vendor priced nothing in that unit)."""
        if usd is not None:
            self.session_usd += usd
        if credits is not None:
            self.session_credits += credits
        for limit in self.limits:
            value = usd if limit.unit == "usd" else credits
            if value is not None:
                limit.spent += value
                limit.recent.append(value)

    def limit_of(self, unit: str) -> Limit | None:
        return next((limit for limit in self.limits if limit.unit == unit), None)


def resume_limit(limit: Limit, not_run: int) -> float:
    """A limit that lets a budget-stopped run finish: the spend so far plus the ``not_run``
    jobs at the expected cost of a job, rounded up to the cent (USD) or the credit, and at
    least one such step above the limit that stopped it."""
    step = 0.01 if limit.unit == "usd" else 1.0
    wanted = limit.spent + not_run * limit.expected
    return max(math.ceil(wanted / step) * step, limit.limit + step)
