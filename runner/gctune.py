"""CPython's cycle collector, made to run seldom for the length of a run.

A run makes almost no reference cycles (none at all in a 500-job run without faults, with
``gc.DEBUG_SAVEALL``): its objects are freed by reference counting. But CPython starts a
generation-0 collection whenever tracked allocations outnumber deallocations by 700, and a run
keeps tipping that count over: each job's state lives for its whole simulation and finished
jobs wait in a batch for the next Parquet flush. Every such collection walks the in-flight
state and frees nothing; at 500 simulations in flight that was ~4% of the client's CPU
(~190 collections for 3,000 simulations), and raising the first threshold to 100,000 cut the
client's CPU per simulation by ~6% (``bench.ab``, alternating rounds; see the README).

The collector still runs, just seldom, so cycles made by failures (exception tracebacks
holding frames, in libraries too) are still freed, at most ~100,000 objects late.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

RUN_THRESHOLD = 100_000
"""Generation-0 threshold during a run (CPython's default: 700)."""

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] = (0, 0, 0)


@contextlib.contextmanager
def fewer_collections(threshold: int = RUN_THRESHOLD) -> Iterator[None]:
    """Raise the generation-0 threshold to ``threshold`` inside the block, restore it after.

    Process-wide, like the collector: runs that overlap in one process (two in a notebook)
    share one setting, restored when the last ends. A threshold already higher, or 0 (the
    collector off), is left alone.
    """
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            if 0 < _saved[0] < threshold:
                gc.set_threshold(threshold, _saved[1], _saved[2])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.set_threshold(*_saved)
