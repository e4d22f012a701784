"""The journal: a finished job is on disk the moment the engine has it, so a kill -9 never makes
anyone pay for a finished simulation twice.

Jobs are written to Parquet parts in batches (``engine.BATCH_JOBS`` jobs or ``BATCH_SECS``
seconds: a flush has a fixed cost, so a part per job would cost far more), so without a journal
the jobs waiting for the next flush die with the process. ``JournaledParts`` is the engine's
sink: each finished job's table rows are appended, as one JSON line, to the journal segment of
the batch it joins (``journal/<session>-<seq>.jsonl``) the moment it arrives; when the batch
becomes part files ``<session>-<seq>.parquet`` (``runner.store``), its segment is deleted.
``recover`` (run by the next session, under the run's lock) folds every segment left behind
into the parts it would have become, so a resume never sends those jobs again.

What survives what: a line is written with one ``write(2)`` to the page cache, which the kernel
keeps when the process dies, so a process kill (kill -9, OOM, a crash) loses no finished job.
A power loss or kernel crash can lose what the kernel had not written back yet: parts are
fsync'd at every flush, and between flushes the engine syncs the open segment every
``engine.SYNC_SECS`` from its writer thread (``sync``), so it loses at most the jobs of the last
couple of seconds. ``fsync=True`` (not the default) syncs every line, on the event loop: see
docs/resume.md for what it costs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from runner.outcome import MATRIX_CELLS, Batch, JobOutcome
from runner.schema import TABLES
from runner.store import PARTS, TMP_PREFIX, PartWriter, StoreError

JOURNAL = "journal"
"""The run directory's folder of journal segments."""

_SEGMENT = re.compile(r"(?P<session>.+)-(?P<seq>\d{6})\.jsonl")
_DATETIME_COLUMNS = {
    t.name: [n for n, dtype in t.schema.items() if isinstance(dtype, pl.Datetime)] for t in TABLES
}


def encode_rows(rows: dict[str, dict[str, list[Any]]]) -> bytes:
    """One job's rows (``Batch.since``) as one journal line. orjson: about 60 µs per 21-message
    job with the standard library's encoder, which is on the event loop for every job; a few
    µs with orjson (datetimes as RFC 3339, tuples as lists)."""
    return orjson.dumps(rows, default=_plain, option=orjson.OPT_APPEND_NEWLINE)


def _plain(value: Any) -> Any:
    """What orjson does not take itself (called only then): a float subclass, such as the
    sleep tenacity hands over, as its float."""
    if isinstance(value, float):
        return float(value)
    raise TypeError(f"cannot journal a {type(value).__name__}")


def decode_rows(line: bytes) -> dict[str, dict[str, list[Any]]]:
    """A journal line back into a job's rows: datetimes and matrix cells as the batch has them."""
    rows: dict[str, dict[str, list[Any]]] = orjson.loads(line)
    for table, columns in rows.items():
        for name in _DATETIME_COLUMNS.get(table, ()):
            if name in columns:
                columns[name] = [
                    None if v is None else datetime.fromisoformat(v) for v in columns[name]
                ]
    jobs = rows.get("jobs")
    if jobs is not None and MATRIX_CELLS in jobs:
        jobs[MATRIX_CELLS] = [tuple(tuple(pair) for pair in cell) for cell in jobs[MATRIX_CELLS]]
    return rows


@dataclass
class Sealed:
    """A batch handed over for writing, with the journal segment that holds it."""

    batch: Batch
    seq: int
    segment: Path | None
    fd: int | None


class JournaledParts:
    """The engine's sink for a run: journal each job at once, write batches as part files."""

    def __init__(self, writer: PartWriter, *, fsync: bool = False) -> None:
        self.writer = writer
        self.fsync = fsync
        self.dir = writer.run_dir / JOURNAL
        self.batch = Batch()
        self._seq = writer.seq + 1
        self._fd: int | None = None
        self._segment: Path | None = None
        self._unsynced = False

    @property
    def pending(self) -> int:
        """Jobs added since the last ``seal``."""
        return self.batch.jobs

    def _open_segment(self) -> int:
        self.dir.mkdir(exist_ok=True)
        self._segment = self.dir / f"{self.writer.session_id}-{self._seq:06d}.jsonl"
        fd = os.open(self._segment, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        header = {"axes": list(self.writer.axes)}
        os.write(fd, orjson.dumps(header, option=orjson.OPT_APPEND_NEWLINE))
        self._fd = fd
        return fd

    def add(self, outcome: JobOutcome) -> None:
        """On the event loop, as the job finishes: one line to the page cache (microseconds)."""
        fd = self._fd if self._fd is not None else self._open_segment()
        sizes = self.batch.sizes()
        self.batch.add(outcome)
        os.write(fd, encode_rows(self.batch.since(sizes)))
        if self.fsync:
            os.fsync(fd)
        else:
            self._unsynced = True

    def sync(self) -> None:
        """In a worker thread, between flushes: the open segment's lines to stable storage
        (nothing to do when no line came since the last sync). A segment sealed meanwhile keeps
        its descriptor open until its batch is written, which the same writer does after this."""
        fd = self._fd
        if fd is None or not self._unsynced:
            return
        self._unsynced = False  # before the sync: a line added during it is synced next time
        os.fsync(fd)

    def seal(self) -> Sealed | None:
        """Hand over what was added since the last seal; later jobs start a new segment."""
        if not self.batch.jobs:
            return None
        sealed = Sealed(self.batch, self._seq, self._segment, self._fd)
        self.batch, self._seq, self._segment, self._fd = Batch(), self._seq + 1, None, None
        self._unsynced = False  # its lines become parts, fsync'd when written
        return sealed

    def write(self, sealed: Sealed) -> None:
        """In a worker thread: the batch as part files, then its segment is no longer needed."""
        if sealed.fd is not None:
            os.close(sealed.fd)
        self.writer.write(sealed.batch, seq=sealed.seq)
        if sealed.segment is not None:
            sealed.segment.unlink(missing_ok=True)

    def close(self) -> None:
        """Give up the open segment's descriptor (its jobs stay journaled for ``recover``)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_segment(path: Path) -> tuple[tuple[str, ...], Batch]:
    """A segment's matrix axes and jobs. A last line cut short by a kill is no job (its
    simulation is re-run); any other damage is an error, never silently dropped."""
    lines = path.read_bytes().split(b"\n")
    axes: tuple[str, ...] = ()
    batch = Batch()
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            if number == 0:
                axes = tuple(orjson.loads(line)["axes"])
                continue
            batch.extend(decode_rows(line))
        except (ValueError, KeyError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
            if number == len(lines) - 1:  # the partial last line of a killed writer
                break
            raise StoreError(f"damaged journal {path} (line {number + 1}): {exc}") from exc
    return axes, batch


def recover(run_dir: Path, sessions: Collection[str] | None = None) -> int:
    """Fold the journal segments earlier sessions left into part files; returns the jobs
    recovered. A segment whose part was committed (killed between the two) is just removed.
    The caller holds the run's lock; a shard holds only its own and passes its own
    ``sessions``, so it never touches the segments of a shard still running."""
    directory = run_dir / JOURNAL
    if not directory.is_dir():
        return 0
    recovered = 0
    for segment in sorted(directory.glob("*.jsonl")):
        match = _SEGMENT.fullmatch(segment.name)
        if match is None or segment.name.startswith(TMP_PREFIX):
            continue
        session, seq = match["session"], int(match["seq"])
        if sessions is not None and session not in sessions:
            continue
        committed = run_dir / PARTS / "jobs" / f"{session}-{seq:06d}.parquet"
        if not committed.exists():
            axes, batch = read_segment(segment)
            if batch.jobs:
                PartWriter(run_dir, session, axes).write(batch, seq=seq)
                recovered += batch.jobs
        segment.unlink()
    return recovered
