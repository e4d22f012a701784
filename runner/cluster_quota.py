"""The cluster's one quota (``run --ray``): a Ray actor holding the account's concurrency
limit for every shard, and the engine-side limiter through which a shard takes its slots.

Split from ``runner.cluster`` (which starts Ray, the shard actors and the driver) because the
quota is a protocol of its own: slot leases, heartbeats and fair shares, tested apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

from runner.adaptive import AdaptiveLimit, Signal, SignalKind, SlotLedger

LEASE_SECS = 5.0
"""A shard silent this long (no heartbeat, no slot taken or returned) is presumed dead and its
slots are returned to the cluster."""
HEARTBEAT_SECS = 1.0

# ------------------------------------------------------------------------ the quota actor


class QuotaActor:
    """The account's concurrency limit for every shard (a Ray actor, named per run).

    Requests for a slot queue in arrival order and each freed slot is handed to the oldest
    one directly: one wake-up per slot. (Waking every waiting request on each release, for
    all but one to find the limit still reached, made the actor's work grow with the
    cluster's workers times its throughput, on the cores the shards need.)
    """

    def __init__(self, limit: int | str, cap: int, lease_secs: float = LEASE_SECS) -> None:
        policy: int | AdaptiveLimit = AdaptiveLimit(cap) if limit == "auto" else int(limit)
        self.ledger = SlotLedger(policy, lease_secs=lease_secs)
        self._waiting: deque[tuple[str, asyncio.Future[bool]]] = deque()
        self._reaper: asyncio.Task[None] | None = None

    def _start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(self.ledger.lease_secs / 4)
            if self.ledger.expire(time.monotonic()):
                self._hand_out()

    def _hand_out(self) -> None:
        """Free slots to the waiting requests: each to the oldest request of the holder with
        the fewest slots, so the shards share the limit from the start. A request of a holder
        that is gone gets none (its shard died: the answer goes nowhere)."""
        ledger = self.ledger
        while self._waiting and ledger.in_use < ledger.limit:
            best: int | None = None
            fewest = 0
            live: deque[tuple[str, asyncio.Future[bool]]] = deque()
            for holder, granted in self._waiting:
                if granted.done():  # cancelled, or withdrawn
                    continue
                if ledger.gone(holder):
                    granted.set_result(False)
                    continue
                held = ledger.held.get(holder, 0)
                if best is None or held < fewest:
                    best, fewest = len(live), held
                live.append((holder, granted))
            self._waiting = live
            if best is None:
                return
            holder, granted = live[best]
            del live[best]
            ledger.take(holder, time.monotonic())
            granted.set_result(True)
        if self._waiting:  # full: drop what no longer waits, refuse the holders gone
            self._waiting = deque(
                (h, g) for h, g in self._waiting if not g.done() and not self._refused(h, g)
            )

    def _refused(self, holder: str, granted: asyncio.Future[bool]) -> bool:
        if self.ledger.gone(holder):
            granted.set_result(False)
            return True
        return False

    def share(self) -> int:
        """A holder's fair share of the limit: the limit over the holders that hold slots or
        wait for one (rounded up)."""
        wanting = {h for h, n in self.ledger.held.items() if n > 0}
        wanting.update(h for h, granted in self._waiting if not granted.done())
        return -(-self.ledger.limit // max(1, len(wanting)))

    async def acquire(self, holder: str) -> tuple[int, int, int, bool]:
        """Wait for a slot; returns (slots in use across the cluster, the limit, a holder's
        fair share, whether a slot was taken: not for a holder that is gone, nor for a
        request withdrawn)."""
        self._start_reaper()
        ledger = self.ledger
        if not self._waiting and ledger.take(holder, time.monotonic()):
            return ledger.in_use, ledger.limit, self.share(), True
        taken = False
        if not ledger.gone(holder):  # a request its dead shard left: no slot
            granted = asyncio.get_running_loop().create_future()
            self._waiting.append((holder, granted))
            self._hand_out()
            try:
                taken = await granted
            except asyncio.CancelledError:
                if granted.done() and not granted.cancelled() and granted.result():
                    ledger.give_back(holder, time.monotonic())
                    self._hand_out()
                raise
        return ledger.in_use, ledger.limit, self.share(), taken

    async def withdraw(self, holder: str, count: int) -> int:
        """Up to ``count`` of ``holder``'s waiting requests, the newest first, answered
        without a slot: it needs them no more (its own slots served its attempts). Returns
        how many were still waiting."""
        done = 0
        for waiting, granted in reversed(self._waiting):
            if done == count:
                break
            if waiting == holder and not granted.done():
                granted.set_result(False)
                done += 1
        return done

    async def release(self, holder: str) -> None:
        self.ledger.give_back(holder, time.monotonic())
        self._hand_out()

    async def observe(
        self, kind: str, in_flight: int, limit: int, maximum: int | None, current: int | None
    ) -> int:
        before = self.ledger.limit
        after = self.ledger.observe(Signal(SignalKind(kind), in_flight, limit, maximum, current))
        if after > before:
            self._hand_out()
        return after

    async def heartbeat(self, holder: str) -> tuple[int, int, int]:
        """``holder`` is alive; returns (slots in use across the cluster, the limit, a
        holder's fair share)."""
        self._start_reaper()
        self.ledger.heartbeat(holder, time.monotonic())
        return self.ledger.in_use, self.ledger.limit, self.share()

    async def drop(self, holder: str) -> None:
        self.ledger.drop(holder)
        self._hand_out()

    async def stats(self) -> dict[str, Any]:
        ledger = self.ledger
        return {
            "limit": ledger.limit,
            "in_use": ledger.in_use,
            "peak": ledger.peak,
            "reclaimed": ledger.reclaimed,
            "holders": dict(ledger.held),
            "waiting": len(self._waiting),
        }


class ClusterSlots:
    """The cluster's quota as the engine's limiter (``runner.engine.SharedSlots``): slots are
    taken from the quota actor; replies go to its controller. A task sends heartbeats so
    the slots stay ours while this shard lives.

    A slot this shard is done with goes straight to the next of its own attempts waiting for
    one, while the cluster is within its limit and this shard within its fair share of it, as
    last heard: a slot handed back and forth through the actor idles for two round trips
    each time, on every simulation. So a slot returns to the actor only when no attempt of
    ours waits for it (this shard's jobs are running out: the others get it), when the
    cluster is above its limit (it went down), or when this shard holds more than its share
    (another shard, a restarted one say, waits for slots). Each waiting attempt also asks the
    actor for a slot; requests no attempt needs any more are withdrawn, and a slot granted
    when nobody here waits goes back at once.
    """

    def __init__(self, actor: Any, holder: str, cap: int, limit: int, auto: bool) -> None:
        self.actor = actor
        self.holder = holder
        self.cap = cap
        self.limit = limit
        self.total_tokens: float = limit
        self.auto = auto
        self.in_use = 0
        """Slots in use across the cluster, as last heard from the actor."""
        self.share = limit
        """A shard's fair share of the limit, as last heard."""
        self.held = 0
        """Slots this shard holds (each serving one attempt after another)."""
        self._waiting: deque[asyncio.Future[tuple[int, int]]] = deque()
        self._asked = 0  # requests for a slot sent to the actor, not answered yet
        self._withdrawn = 0  # of those, withdrawn
        # on the shard's event loop, awaiting the actor's reply: a blocking ``ray.get`` (in a
        # thread or not) makes Ray warn of a blocking call inside an async actor
        self._beat = asyncio.get_running_loop().create_task(self._heartbeats())

    def _heard(self, in_use: int, limit: int, share: int) -> None:
        self.in_use, self.total_tokens, self.share = in_use, limit, share

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECS)
            with contextlib.suppress(Exception):  # the actor gone: the run is ending
                reply = asyncio.wrap_future(self.actor.heartbeat.remote(self.holder).future())
                self._heard(*await asyncio.wait_for(reply, 30))

    def _ask(self) -> None:
        """One more request for a slot, while fewer are out than attempts wait."""
        if self._asked - self._withdrawn < len(self._waiting):
            self._asked += 1
            reply = asyncio.wrap_future(self.actor.acquire.remote(self.holder).future())
            reply.add_done_callback(self._answered)

    def _answered(self, reply: asyncio.Future[tuple[int, int, int, bool]]) -> None:
        self._asked -= 1
        if reply.cancelled() or reply.exception() is not None:
            return  # the actor gone: the run is ending
        in_use, limit, share, taken = reply.result()
        self._heard(in_use, limit, share)
        if taken:
            self.held += 1
        else:  # withdrawn, or refused while the actor took us for dead
            self._withdrawn = max(0, self._withdrawn - 1)
            if self._waiting:  # once a heartbeat has shown us alive again
                asyncio.get_running_loop().call_later(HEARTBEAT_SECS, self._ask)
        if taken and not self._hand_on((in_use, limit)):
            self._give_back()

    def _hand_on(self, lease: tuple[int, int]) -> bool:
        """A slot to the oldest attempt of ours waiting; False when none waits."""
        if not self._waiting:
            return False
        self._waiting.popleft().set_result(lease)
        return True

    def _give_back(self) -> None:
        """The slot to the actor, the requests nobody here waits for withdrawn first (sent
        first, so the slot mostly reaches another shard's request rather than one of ours,
        which would send it straight back: an async actor does not promise the order)."""
        surplus = self._asked - self._withdrawn - len(self._waiting)
        if surplus > 0:
            self._withdrawn += surplus
            reply = asyncio.wrap_future(self.actor.withdraw.remote(self.holder, surplus).future())
            reply.add_done_callback(lambda r: self._withdrew(surplus, r))
        self.held -= 1
        self.actor.release.remote(self.holder)

    def _withdrew(self, asked: int, reply: asyncio.Future[int]) -> None:
        """Requests granted before the withdrawal reached the actor were not withdrawn."""
        done = 0 if reply.cancelled() or reply.exception() is not None else reply.result()
        self._withdrawn = max(0, self._withdrawn - (asked - done))

    def _release(self) -> None:
        lease = self.in_use, int(self.total_tokens)
        keep = self.in_use <= self.total_tokens and self.held <= self.share
        if not (keep and self._hand_on(lease)):
            self._give_back()

    async def __aenter__(self) -> tuple[int, int]:
        waiter: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._ask()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            elif waiter.done() and not waiter.cancelled():  # handed a slot as it was cancelled
                self._release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def observe(self, signal: Signal) -> None:
        self.actor.observe.remote(
            signal.kind.value, signal.in_flight, signal.limit, signal.maximum, signal.current
        )

    def close(self) -> None:
        """This shard is done: its slots (any a cancelled wait was granted too) go back, and
        the requests it may have left waiting get none."""
        self._beat.cancel()
        with contextlib.suppress(Exception):
            self.actor.drop.remote(self.holder)
