"""Concurrency policies the benchmark compares ``runner.adaptive.AdaptiveLimit`` with."""

from __future__ import annotations

from runner.adaptive import DEFAULT_INITIAL, Signal, SignalKind


class HalveOn429:
    """The common peer policy (AIMD): one slot more per round of admitted attempts, half the
    limit on every 429. Each 429 of a burst halves again, so it saws well below the quota."""

    def __init__(self, cap: int, initial: int = DEFAULT_INITIAL) -> None:
        self.cap = cap
        self.limit = min(initial, cap)
        self._credit = 0.0

    def observe(self, signal: Signal) -> int:
        if signal.kind is SignalKind.REJECTED:
            self.limit = max(1, self.limit // 2)
            self._credit = 0.0
        elif signal.kind is SignalKind.ADMITTED:
            self._credit += 1 / self.limit
            if self._credit >= 1:
                self.limit = min(self.cap, self.limit + 1)
                self._credit = 0.0
        return self.limit
