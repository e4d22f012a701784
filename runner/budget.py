"""``run.budget``: how much a run may spend, and whether one more job may be sent (pure).

The engine asks ``verdict(in_flight)`` before dispatching each job and reports each finished
job's spend with ``record``. A job is admitted only while

    spent so far + (jobs in flight + this one) x expected cost of a job <= the limit

for each limit set (USD and/or credits). When it is not, the answer is ``WAIT`` while jobs
are in flight (their spend sharpens the expected cost, and the next job may still fit), and
``STOP`` once nothing is in flight: dispatching then ends for good.

The expected cost of a job is the mean spend of the last ``window`` finished jobs that were
priced; before any was, the prior the run shell gives (earlier sessions' mean, or the
estimate's geometric middle per job). A job stays in flight through all its retries, so a retried
job is counted once until it ends, and its spend (when the vendor priced it) is counted when
it ends. Earlier sessions' spend is the starting point: a resume counts what was paid before.
Without any figure to expect from (no prior, nothing priced yet), one job at a time is sent
until the first is priced: what a job costs is unknown, so only one is risked.
"""

from __future__ import annotations

import math
from collections import deque
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
    def known(self) -> bool:
        return bool(self.recent) or self.prior is not None

    def would_exceed(self, jobs_in_flight: int) -> bool:
        if not self.known and jobs_in_flight > 0:
            return True  # nothing to expect from yet: one job at a time
        return self.spent + (jobs_in_flight + 1) * self.expected > self.limit + 1e-12


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
        window: int = 50,
    ) -> None:
        self.limits: list[Limit] = []
        if usd is not None:
            self.limits.append(Limit("usd", usd, spent_usd, prior_usd, deque(maxlen=window)))
        if credits is not None:
            self.limits.append(
                Limit("credits", credits, spent_credits, prior_credits, deque(maxlen=window))
            )
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
