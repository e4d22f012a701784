"""Adaptive concurrency (``run.concurrency: auto``): find the account's quota and hold it.

Pure: the engine reports every finished attempt as a ``Signal`` and applies the limit that
``observe`` returns; no clock, no I/O, so every rule below is a unit test away.

Throughput against the real service is bounded by the account's concurrency quota (4 to 30 on
most plans) over each simulation's length, so the best a runner can do is keep exactly the quota
in flight. The rules, chosen so that the limit never collapses the way halving on every 429
(AIMD) does:

*Start modestly*: ``initial`` (4, the smallest plan) slots.

*With the quota headers* (``maximum-concurrent-requests``, ``current-concurrent-requests``):
the limit goes straight to the quota, less what other clients of the account hold
(``current`` minus our own attempts in flight when ours started; the median of recent samples),
less a learned ``margin``: a 429 ``too_many_concurrent_requests`` adds a slot of margin and a
probe (below) takes one back. A quota above ``cap`` is no target (the local API advertises
1000 and enforces nothing): it only bounds the probing below.

*Without them*: slow start (one more slot per admitted attempt at full load, so the limit
doubles per simulation length) until the first 429. A 429 for an attempt that started with
``n`` of ours in flight sets the limit to at most ``n - 1``: the quota was reached below ``n``,
so the limit steps down to what the server just admitted, never by half.

*Probing*: after ``probe_interval`` rounds (a round: ``limit`` attempts admitted at full load)
without a 429, the limit tries one slot more. A 429 doubles the interval (up to
``MAX_PROBE_ROUNDS``), a probe that holds for a whole interval halves it, so at a steady quota
the share of attempts that meet a 429 shrinks as the run goes on, and a quota that grows (other
clients leaving) is still found. Several 429s from one burst count once: those that started
under a higher limit than the present one are already answered.

Only 429 ``too_many_concurrent_requests`` moves the limit down. ``system_busy``, 5xx, timeouts
and dropped connections say nothing about the quota: they back off the job, not the run.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

DEFAULT_INITIAL = 4
"""Slots to start with: the smallest plan's quota, so a first burst never meets a 429."""

DEFAULT_CAP = 64
"""``auto``'s ceiling when ``run.max_concurrency`` is not set: above every documented plan
(30) and well within one process's means (1,000 streams measured, docs/benchmarks.md)."""

OTHERS_WINDOW = 9
"""Samples of other clients' usage kept; their median is used, so one race does not count."""

MAX_PROBE_ROUNDS = 64
"""Without headers, a probe is tried at least once every this many rounds of the limit."""

MAX_HEADER = "maximum-concurrent-requests"
CURRENT_HEADER = "current-concurrent-requests"


class SignalKind(StrEnum):
    ADMITTED = "admitted"  # the server accepted the simulation (any 2xx reply)
    REJECTED = "rejected"  # 429 too_many_concurrent_requests: over the quota
    NEUTRAL = "neutral"  # anything else: says nothing about the quota


@dataclass(frozen=True, slots=True)
class Signal:
    """What one finished attempt says about the quota."""

    kind: SignalKind
    in_flight: int
    """Our attempts in flight when this one started, itself included."""
    limit: int
    """The limit in force when it started."""
    maximum: int | None = None
    """``maximum-concurrent-requests`` of the reply, when sent."""
    current: int | None = None
    """``current-concurrent-requests`` of the reply, when sent."""

    @property
    def at_full_load(self) -> bool:
        """The limit was binding: admitting it says the limit itself is safe."""
        return self.in_flight >= self.limit


class ConcurrencyController(Protocol):
    """What the engine asks of a limit policy: ``AdaptiveLimit``, or a benchmark's baseline."""

    cap: int
    """The most the limit can ever be (the engine sizes its workers and pool by it)."""
    limit: int
    """The limit to start with."""

    def observe(self, signal: Signal) -> int:
        """One finished attempt in, the limit to apply from now on out."""
        ...


def _header_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def concurrency_headers(headers: Mapping[str, str]) -> tuple[int | None, int | None]:
    """``(maximum, current)`` from a reply's headers; ``None`` where absent or not a number."""
    return _header_int(headers.get(MAX_HEADER)), _header_int(headers.get(CURRENT_HEADER))


class AdaptiveLimit:
    """The concurrency limit of ``run.concurrency: auto``; ``observe`` each attempt's signal.

    ``cap`` is the hard ceiling (``run.max_concurrency``), never exceeded whatever a header
    says. ``use_headers=False`` ignores the quota headers (the probing path; the benchmark
    measures both).
    """

    def __init__(
        self,
        cap: int = DEFAULT_CAP,
        *,
        initial: int = DEFAULT_INITIAL,
        use_headers: bool = True,
    ) -> None:
        if cap < 1:
            raise ValueError(f"cap must be >= 1, got {cap}")
        self.cap = cap
        self.limit = max(1, min(initial, cap))
        self.use_headers = use_headers
        self.quota: int | None = None
        """The server's advertised maximum, when it sent one (trusted as a target if <= cap)."""
        self.margin = 0
        self.slow_start = True
        self.probe_interval = 1
        """Admitted attempts at full load, in rounds of the limit, before the next probe."""
        self._others: deque[int] = deque(maxlen=OTHERS_WINDOW)
        self._admitted = 0  # at full load since the last probe or 429
        self._probing = False  # the last change was a probe upward

    # ---------------------------------------------------------------------------- views

    @property
    def others(self) -> int:
        """Slots other clients of the account hold, as far as the headers tell."""
        return int(statistics.median_low(self._others)) if self._others else 0

    @property
    def header_target(self) -> int | None:
        """The limit the headers call for, or None when they are absent or above ``cap``."""
        if self.quota is None or self.quota > self.cap:
            return None
        return max(1, self.quota - self.others - self.margin)

    @property
    def ceiling(self) -> int:
        """Never above ``cap``, nor above an advertised quota."""
        return min(self.cap, self.quota) if self.quota is not None else self.cap

    # ---------------------------------------------------------------------------- events

    def observe(self, signal: Signal) -> int:
        """Take one finished attempt into account; returns the limit to apply from now on."""
        if self.use_headers and signal.maximum is not None and signal.maximum >= 1:
            self.quota = signal.maximum
            if signal.current is not None:
                self._others.append(max(0, signal.current - signal.in_flight))
        with_quota = self.header_target is not None
        if signal.kind is SignalKind.REJECTED:
            self._rejected(signal, with_quota)
        elif signal.kind is SignalKind.ADMITTED and signal.at_full_load:
            self._admitted_at_full_load(with_quota)
        target = self.header_target
        if target is not None:
            self.limit = target
        self.limit = max(1, min(self.limit, self.ceiling))
        return self.limit

    def _rejected(self, signal: Signal, with_quota: bool) -> None:
        # The rest of a burst of 429s started under a higher limit and is already answered:
        # it must not step down again (that is how AIMD collapses).
        if signal.limit <= self.limit:
            if self.slow_start:
                self.slow_start = False
                self.probe_interval = 1
            else:
                self.probe_interval = min(self.probe_interval * 2, MAX_PROBE_ROUNDS)
            self._probing = False
            self._admitted = 0
            if with_quota:
                self.margin = min(self.margin + 1, max((self.quota or 1) - 1, 0))
        if not with_quota:
            self.limit = min(self.limit, signal.in_flight - 1)

    def _admitted_at_full_load(self, with_quota: bool) -> None:
        if with_quota and not self.margin:
            return  # at the quota: nothing above it to probe
        if not with_quota and self.slow_start:
            self.limit += 1
            return
        self._admitted += 1
        if self._admitted < self.probe_interval * self.limit:
            return
        if self._probing:  # the last probe held for a whole interval: probe sooner
            self.probe_interval = max(1, self.probe_interval // 2)
        self._probing = True
        self._admitted = 0
        if with_quota:
            self.margin -= 1
        else:
            self.limit += 1


class SlotLedger:
    """One concurrency limit shared by several holders (the shards of a cluster): who holds how
    many slots, and the limit (fixed, or a ``ConcurrencyController`` fed every holder's
    replies). The cluster's quota actor (``runner.cluster``) is this ledger behind a Ray actor;
    one process uses the same controller directly.

    A holder's slots are leases: it reports itself alive (``heartbeat``; returning a slot
    counts too) and ``expire`` returns the slots of a holder silent for ``lease_secs``, so a
    shard that dies does not keep its slots. A request for a slot says nothing: the requests a
    dead shard left waiting are still served after it died, and must neither keep it alive nor
    take slots. So a holder once expired or dropped is *gone*: ``take`` refuses it, until a
    heartbeat shows it alive after all. Pure: the caller passes the time.
    """

    def __init__(self, limit: int | ConcurrencyController, *, lease_secs: float = 10.0) -> None:
        if isinstance(limit, int):
            if limit < 1:
                raise ValueError(f"limit must be >= 1, got {limit}")
            self.controller: ConcurrencyController | None = None
            self.limit = self.cap = limit
        else:
            self.controller = limit
            self.limit, self.cap = limit.limit, limit.cap
        self.lease_secs = lease_secs
        self.in_use = 0
        self.peak = 0
        self.reclaimed = 0
        """Slots returned on behalf of holders that stopped reporting."""
        self.held: dict[str, int] = {}
        self._seen: dict[str, float] = {}
        self._gone: set[str] = set()

    @property
    def auto(self) -> bool:
        return self.controller is not None

    def gone(self, holder: str) -> bool:
        """``holder`` expired or was dropped (and has not sent a heartbeat since)."""
        return holder in self._gone

    def take(self, holder: str, now: float) -> bool:
        """A slot for ``holder`` if one is free (False: wait and try again; always for a
        holder that is gone). A new holder's lease starts with its first slot."""
        if holder in self._gone or self.in_use >= self.limit:
            return False
        self._seen.setdefault(holder, now)
        self.in_use += 1
        self.peak = max(self.peak, self.in_use)
        self.held[holder] = self.held.get(holder, 0) + 1
        return True

    def give_back(self, holder: str, now: float) -> None:
        """One of ``holder``'s slots back (nothing when its lease already expired)."""
        if self.held.get(holder, 0) > 0:
            self.held[holder] -= 1
            self.in_use -= 1
            self._seen[holder] = now

    def heartbeat(self, holder: str, now: float) -> None:
        self._gone.discard(holder)
        self._seen[holder] = now

    def drop(self, holder: str) -> int:
        """Every slot ``holder`` has, back (it is done, or presumed dead); returns how many."""
        n = self.held.pop(holder, 0)
        self._seen.pop(holder, None)
        self._gone.add(holder)
        self.in_use -= n
        return n

    def expire(self, now: float) -> list[str]:
        """Drop the holders silent for longer than the lease; returns them."""
        dead = [h for h, seen in self._seen.items() if now - seen > self.lease_secs]
        for holder in dead:
            self.reclaimed += self.drop(holder)
        return dead

    def observe(self, signal: Signal) -> int:
        """A holder's reply, for the controller (``signal.in_flight``: every holder's attempts
        when it started); returns the limit in force."""
        if self.controller is not None:
            self.limit = self.controller.observe(signal)
        return self.limit
