"""The viewer's I/O: which runs a results directory holds, their state, lazy scans of their tables.

Read-only by construction: nothing here opens a file for writing, creates a directory or takes
a lock (whether a runner holds a run's ``.lock`` is read from ``/proc/locks``, not tested by
locking). A run is found by matching its name against the directory listing, so a name that
came from a URL is never joined into a path: ``..``, ``/etc`` or ``a/b`` simply match nothing.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from runner.manifest import Manifest
from runner.schema import TABLES
from runner.store import LOCK, MANIFEST, PARTS, SHARDS, TMP_PREFIX, read_manifest, scan_parts

TABLE_NAMES = tuple(t.name for t in TABLES)


def list_runs(root: Path) -> dict[str, Path]:
    """The run directories directly under ``root``, by name (sorted).

    A run directory has a ``manifest.json``, a final ``jobs.parquet``, a ``parts/jobs``
    folder or (a sharded run) a ``shards`` folder. Entries that resolve outside ``root`` (a
    symlink pointing elsewhere) are left out.
    """
    try:
        base = root.resolve(strict=True)
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except OSError:
        return {}
    runs: dict[str, Path] = {}
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        path = Path(entry.path)
        try:
            if not path.resolve(strict=True).is_relative_to(base):
                continue
        except OSError:
            continue
        if (
            (path / MANIFEST).is_file()
            or (path / "jobs.parquet").is_file()
            or (path / PARTS / "jobs").is_dir()
            or (path / SHARDS).is_dir()
        ):
            runs[entry.name] = path
    return runs


def find_run(root: Path, name: str) -> Path | None:
    """The run called ``name`` in ``root``'s listing, or None (never a path built from it)."""
    return list_runs(root).get(name)


def committed_parts(run_dir: Path) -> list[str]:
    """Names of the committed flushes (their ``jobs`` part exists; ``.tmp-`` files are not)."""
    try:
        names = os.listdir(run_dir / PARTS / "jobs")
    except OSError:
        return []
    return sorted(n for n in names if n.endswith(".parquet") and not n.startswith(TMP_PREFIX))


def lock_held(run_dir: Path) -> bool:
    """Whether a runner holds the run's ``.lock`` (an ``flock``), without touching it."""
    path = run_dir / LOCK
    try:
        inode = os.stat(path).st_ino
    except OSError:
        return False
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            table = f.read()
    except OSError:
        return _holder_alive(path)
    suffix = f":{inode}"
    for line in table.splitlines():
        fields = line.split()
        if "FLOCK" in fields and any(field.endswith(suffix) for field in fields):
            return True
    return False


def _holder_alive(path: Path) -> bool:
    """Fallback without ``/proc/locks``: the pid the lock file names is alive."""
    try:
        text = path.read_text(encoding="ascii", errors="replace").split()
        pid = int(text[-1]) if text else 0
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mtime_ns(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


@dataclass(frozen=True)
class RunState:
    """What the viewer knows of a run without reading its tables."""

    name: str
    path: Path
    manifest: Manifest | None
    finalized: bool
    running: bool
    parts: int
    version: str
    """Changes whenever anything the pages show may have changed (a part landed, the manifest
    or a final table was rewritten)."""

    @property
    def status(self) -> str:
        if self.running:
            return "running"
        return "finished" if self.finalized else "incomplete"

    @property
    def uses_final_tables(self) -> bool:
        return self.finalized and all((self.path / f"{t}.parquet").is_file() for t in TABLE_NAMES)


def _shards_mtime_ns(run_dir: Path) -> int:
    """The latest change to a shard's manifest (0 for a run that is not sharded)."""
    try:
        return max((_mtime_ns(p) for p in (run_dir / SHARDS).glob("*.json")), default=0)
    except OSError:
        return 0


def run_state(name: str, run_dir: Path) -> RunState:
    manifest = read_manifest(run_dir)
    parts = committed_parts(run_dir)
    finalized = manifest is not None and manifest.finalized
    # a shard holds ``.lock`` shared, so a sharded run in progress reads as running too
    running = not finalized and lock_held(run_dir)
    version = "-".join(
        str(x)
        for x in (
            _mtime_ns(run_dir / MANIFEST),
            _shards_mtime_ns(run_dir),
            len(parts),
            parts[-1] if parts else "",
            _mtime_ns(run_dir / "jobs.parquet"),
            int(running),
        )
    )
    return RunState(name, run_dir, manifest, finalized, running, len(parts), version)


def scan_tables(state: RunState) -> dict[str, pl.LazyFrame]:
    """Lazy scans of every table: the final tables of a finalized run, else the committed parts
    (de-duplicated as ``runner.store.scan_parts`` does). Nothing is read until collected."""
    if state.uses_final_tables:
        return {t: pl.scan_parquet(state.path / f"{t}.parquet") for t in TABLE_NAMES}
    if state.parts == 0 and (state.path / "jobs.parquet").is_file():
        frames = {}
        for t in TABLES:
            path = state.path / t.file
            frames[t.name] = (
                pl.scan_parquet(path) if path.is_file() else pl.LazyFrame(schema=t.schema)
            )
        return frames
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a damaged part is skipped; the runner reports it
        return scan_parts(state.path, state.manifest.matrix_axes if state.manifest else ())


def iter_states(root: Path) -> Iterator[RunState]:
    for name, path in list_runs(root).items():
        yield run_state(name, path)
