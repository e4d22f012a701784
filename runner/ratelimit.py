"""A requests-per-minute cap: an async token bucket, for accounts with rate limits."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio


class TokenBucket:
    """Allows ``rate_per_minute`` request starts per minute with bursts of up to ``burst``.

    Waiters are served one at a time (a lock), so a burst of workers cannot overdraw it.
    """

    def __init__(
        self,
        rate_per_minute: float,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self.rate = rate_per_minute / 60.0
        self.capacity = max(1.0, burst)
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()
        self._lock = anyio.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def delay(self) -> float:
        """Seconds until a token is available (0 if one is there now)."""
        self._refill()
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    async def acquire(self) -> float:
        """Take a token, sleeping as needed; returns the seconds waited."""
        waited = 0.0
        async with self._lock:
            while (wait := self.delay()) > 0:
                await anyio.sleep(wait)
                waited += wait
            self.tokens -= 1
        return waited
