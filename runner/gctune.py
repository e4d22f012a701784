"""CPython's cycle collector, made to run seldom for the length of a run.

A run makes almost no reference cycles (none at all in a 500-job run without faults, checked
with ``gc.DEBUG_SAVEALL``): its objects are freed by reference counting. But each decoded
stream allocates hundreds of GC-tracked objects (pydantic models, table rows) that live for the
whole simulation or until the next Parquet flush, so the collector's generation-0 count keeps
climbing, and every collection walks the in-flight state and frees nothing. With Python's
defaults (700) that was about one collection per simulation, ~0.5 ms of client CPU each at 100
in flight (the full passes also walked everything the imports left: polars, pydantic schemas).
A threshold of 20,000 and the pre-run heap frozen out of full passes (``gc.freeze``) made it
~0.1 ms.

100,000 was tried: at 500 in flight it cut the collector's own time from ~0.19 to ~0.08 ms per
simulation (``gc.callbacks``), but two A/B runs of the whole client disagreed (-6%, +4%) and a
collection then pauses the loop for ~60 ms, so 20,000 stays.

The collector still runs, so the cycles failures make (tracebacks holding frames, in
libraries too) are still freed, only later.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

RUN_THRESHOLD = 20_000
"""Generation-0 threshold during a run (Python's default: 700)."""

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] = (0, 0, 0)
_froze = False


@contextlib.contextmanager
def fewer_collections(threshold: int = RUN_THRESHOLD) -> Iterator[None]:
    """Inside the block, collect generation 0 after ``threshold`` allocations and leave the
    heap that existed before it out of full passes; restore both after.

    Process-wide, like the collector: runs that overlap in one process (two in a notebook)
    share one setting, restored when the last one ends. A threshold already higher, or 0 (the
    collector off), is left alone, and so is a freeze someone else made.
    """
    global _depth, _saved, _froze
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            if 0 < _saved[0] < threshold:
                gc.set_threshold(threshold, _saved[1], _saved[2])
            _froze = gc.get_freeze_count() == 0
            if _froze:
                gc.freeze()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.set_threshold(*_saved)
                if _froze:
                    gc.unfreeze()
