"""The viewer's I/O: which runs a results directory holds, their state, lazy scans of their tables.

Read-only by construction: nothing here opens a file for writing, creates a directory or takes
a lock (whether a runner holds a run's ``.lock`` is read from ``/proc/locks``, not tested by
locking). A run is found by matching its name against the directory listing, so a name that
came from a URL is never joined into a path: ``..``, ``/etc`` or ``a/b`` simply match nothing.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from runner.manifest import Manifest
from runner.schema import TABLES, TABLES_BY_NAME, jobs_schema
from runner.store import (
    LOCK,
    MANIFEST,
    PARTS,
    SHARDS,
    TMP_PREFIX,
    Repeats,
    read_manifest,
    scan_part_files,
    scan_parts,
)

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


# ----------------------------------------------------------------- a run in progress

HELD_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "jobs": (
        "job_key",
        "agent_id",
        "agent_label",
        "scenario_id",
        "repeat",
        # the matrix columns go here
        "status",
        "error_kind",
        "attempts",
        "message_count",
        "call_successful",
        "started_at",
        "finished_at",
        "queue_wait_secs",
        "time_to_first_frame_secs",
        "time_to_analysis_secs",
        "mean_frame_gap_secs",
        "total_secs",
        "llm_price",
        "credits_used",
        "cost_usd",
    ),
    "attempts": (
        "attempt",
        "started_at",
        "status",
        "error_kind",
        "duration_secs",
        "concurrency_limit",
    ),
    "criteria": ("job_key", "criterion_id", "result"),
}
"""The columns of a running run's parts read when a part first appears, per table (jobs:
and the matrix columns). Jobs and attempts are kept in memory: what the run page's figures
and charts read of them, and what finds the parts that hold a job or a case. Criteria are
only digested (``Digest``): with a row per job and criterion, kept they would be most of the
viewer's memory. The rest stays on disk and is scanned."""

KEPT = ("jobs", "attempts")
DIGESTED = "criteria"

READ_AT_ONCE = 64
"""Part files of a table read in one go: bounds the memory a first read of a long run takes."""

RUNS_HELD = 4
"""Runs in progress whose parts the viewer keeps in memory at once (the least recent go)."""

Digest = Callable[[pl.LazyFrame, pl.LazyFrame], pl.DataFrame]
"""What is kept of some criteria parts: (their rows, the run's jobs) -> a frame
(``analysis.judged_counts``)."""
Combine = Callable[[Sequence[pl.DataFrame]], pl.DataFrame]
"""Digests of disjoint parts -> the digest of them all (``analysis.combine_counts``)."""


@dataclass(frozen=True)
class LiveRun:
    """A run in progress as the viewer holds it: its vetted part files, the held columns of
    its jobs and attempts, and its criteria's digests (each part read once)."""

    axes: tuple[str, ...]
    paths: dict[str, list[Path]]
    """Per table, its committed part files: the held tables' readable ones; the others' are
    vetted (``vet``) when first scanned, not before (a footer read each)."""
    vet: Callable[[str, list[Path]], list[Path]]
    held: dict[str, pl.DataFrame]
    """``jobs`` (with the part's name in ``_part``) and ``attempts``: chunks of the cached
    frames, not copies."""
    digests: list[pl.DataFrame]
    """The criteria's digest (none before the first criteria part)."""
    repeats: Repeats

    def scans(self) -> dict[str, pl.LazyFrame]:
        """Every table, de-duplicated, scanned lazily from the readable parts."""
        paths = {t: self.vet(t, ps) for t, ps in self.paths.items()}
        return scan_part_files(paths, self.axes, self.repeats)

    def quick_tables(self) -> dict[str, pl.LazyFrame]:
        """The tables for the run's figures, charts and case list: jobs and attempts from
        memory, their ``HELD_COLUMNS`` only, when no key repeats (nothing to de-duplicate;
        else all scanned), the others scanned."""
        tables = self.scans()
        if self.repeats.keys:
            return tables
        tables.update({t: f.drop("_part", strict=False).lazy() for t, f in self.held.items()})
        return tables

    def parts_of(self, condition: pl.Expr) -> list[str]:
        """Names of the parts whose jobs rows match ``condition`` (an expression on jobs)."""
        found = self.held["jobs"].filter(condition).get_column("_part").unique()
        return sorted(found.to_list())

    def job_tables(
        self, job_key: str, same_case: Callable[[Mapping[str, Any]], pl.Expr]
    ) -> tuple[dict[str, pl.LazyFrame], dict[str, pl.LazyFrame]] | None:
        """The tables holding one job, and those holding every job of its case (the jobs
        ``same_case(its row)`` matches); None when the run has no such job."""
        rows = self.held["jobs"].filter(pl.col("job_key") == job_key)
        if rows.height == 0:
            return None
        own = self.narrowed(rows.get_column("_part").unique().to_list())
        return own, self.narrowed(self.parts_of(same_case(rows.row(0, named=True))))

    def holding(self, keys: Sequence[str]) -> dict[str, pl.LazyFrame]:
        """The tables read from the parts that hold the jobs ``keys`` only."""
        return self.narrowed(self.parts_of(pl.col("job_key").is_in(list(keys))))

    def narrowed(self, names: Sequence[str]) -> dict[str, pl.LazyFrame]:
        """The tables read from the parts called ``names`` only: right for the jobs they
        hold (a job's rows are all in the parts its ``jobs`` rows are in)."""
        wanted = set(names)
        paths = {
            t: self.vet(t, [p for p in ps if p.name in wanted]) for t, ps in self.paths.items()
        }
        jobs = self.held["jobs"].filter(pl.col("_part").is_in(list(wanted)))
        return scan_part_files(paths, self.axes, _repeats(jobs))


def _repeats(jobs: pl.DataFrame) -> Repeats:
    """Whether keys repeat, counted by their 64-bit hashes as ``runner.store`` counts them (a
    collision can only take the de-duplicating path, which is right either way)."""
    key = pl.col("job_key").hash()
    row = jobs.select(
        pl.len().alias("rows"),
        key.n_unique().alias("keys"),
        (pl.col("status") == "ok").sum().alias("ok_rows"),
        key.filter(pl.col("status") == "ok").n_unique().alias("ok_keys"),
    ).row(0, named=True)
    return Repeats(keys=row["rows"] != row["keys"], ok_keys=row["ok_rows"] != row["ok_keys"])


@dataclass
class _RunParts:
    """One run's parts as read so far: each file's (mtime_ns, size) and whether it reads, the
    kept columns one frame per read, and the criteria's digests."""

    stamps: dict[tuple[str, str], tuple[int, int]]
    readable: dict[tuple[str, str], bool]
    kept: dict[str, list[pl.DataFrame]]
    digests: list[pl.DataFrame]


class PartCache:
    """What the viewer has read of runs' part files, in this process's memory only (nothing is
    written to the results directory), keyed by path and (mtime, size): a refresh of a run in
    progress stats its parts but reads only those it has not seen. Parts are written once
    under a new name, so one that changed or went away (a compaction) starts the run over."""

    def __init__(self, digest: Digest, combine: Combine, runs: int = RUNS_HELD) -> None:
        self._digest = digest
        self._combine = combine
        self._runs: OrderedDict[Path, _RunParts] = OrderedDict()
        self._limit = runs
        self._guard = threading.Lock()

    def forget(self, run_dir: Path) -> None:
        with self._guard:
            self._runs.pop(run_dir, None)

    def live(self, state: RunState) -> LiveRun:
        """The run's committed parts, each table's readable ones, kept columns and digests."""
        names = set(committed_parts(state.path))
        axes = tuple(state.manifest.matrix_axes) if state.manifest else _axes_of(state, names)
        current = _stamps(state.path, names)
        with self._guard:
            run = self._runs.pop(state.path, None)
            if run is None or any(current.get(k) != v for k, v in run.stamps.items()):
                run = _RunParts({}, {}, {t: [] for t in KEPT}, [])
            new = sorted(k for k in current if k not in run.stamps)
            jobs: pl.DataFrame | None = None
            for table in TABLES:  # jobs first: a criteria digest reads the jobs
                directory = state.path / PARTS / table.name
                paths = [directory / n for t, n in new if t == table.name]
                if table.name == DIGESTED and paths:
                    jobs = _concat(run.kept["jobs"], "jobs", axes)
                for at in range(0, len(paths), READ_AT_ONCE):
                    self._read(run, table.name, paths[at : at + READ_AT_ONCE], axes, jobs)
            if len(run.digests) > 1:
                run.digests = [self._combine(run.digests)]
            run.stamps.update({k: current[k] for k in new})
            self._runs[state.path] = run
            while len(self._runs) > self._limit:
                self._runs.popitem(last=False)
            kept = {t: _concat(frames, t, axes) for t, frames in run.kept.items()}
            digests = list(run.digests)
            readable = dict(run.readable)
        paths_by_table: dict[str, list[Path]] = {t.name: [] for t in TABLES}
        for key in sorted(current):
            if readable.get(key, key[0] not in HELD_COLUMNS):
                paths_by_table[key[0]].append(state.path / PARTS / key[0] / key[1])
        vet = functools.partial(self._vetted, state.path)
        return LiveRun(axes, paths_by_table, vet, kept, digests, _repeats(kept["jobs"]))

    def _vetted(self, run_dir: Path, table: str, paths: list[Path]) -> list[Path]:
        """The readable ones of some part files of one table (each vetted once)."""
        with self._guard:
            run = self._runs.get(run_dir)
            known = dict(run.readable) if run is not None else {}
        unknown = [p for p in paths if (table, p.name) not in known]
        found = {(table, p.name): _readable(p) for p in unknown}
        if found:
            with self._guard:
                run = self._runs.get(run_dir)
                if run is not None:
                    run.readable.update(found)
        known.update(found)
        return [p for p in paths if known[(table, p.name)]]

    def _read(
        self,
        run: _RunParts,
        table: str,
        paths: list[Path],
        axes: Sequence[str],
        jobs: pl.DataFrame | None,
    ) -> None:
        """Some new part files of one table: read, keep or digest the held columns (which
        vets them); the other tables' are left for ``_vetted``."""
        if table in HELD_COLUMNS:
            frame, readable = _read_held(paths, table, axes)
            if table in KEPT:
                run.kept[table].append(frame.rechunk())
            elif jobs is not None:  # a flush's criteria are of that flush's jobs
                own = jobs.filter(pl.col("_part").is_in([p.name for p in paths])).drop("_part")
                run.digests.append(self._digest(frame.lazy(), own.lazy()))
        else:
            return  # vetted when first scanned
        for name, ok in readable.items():
            run.readable[(table, name)] = ok


def _stamps(run_dir: Path, names: set[str]) -> dict[tuple[str, str], tuple[int, int]]:
    """(mtime_ns, size) of every table's committed part files."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for table in TABLES:
        try:
            entries = list(os.scandir(run_dir / PARTS / table.name))
        except OSError:
            continue
        for entry in entries:
            if entry.name not in names:
                continue
            try:
                st = entry.stat()
            except OSError:
                continue
            out[(table.name, entry.name)] = (st.st_mtime_ns, st.st_size)
    return out


def _readable(path: Path) -> bool:
    """Whether a part file reads (as ``runner.store`` vets it: its footer parses)."""
    try:
        pl.read_parquet_schema(path)
    except Exception:  # any damage: the runner reports it; the viewer reads the other parts
        return False
    return True


def _axes_of(state: RunState, names: set[str]) -> tuple[str, ...]:
    """The matrix axes a jobs part names, for a run without a manifest."""
    for name in sorted(names, reverse=True):
        try:
            schema = pl.read_parquet_schema(state.path / PARTS / "jobs" / name)
        except Exception:
            continue
        return tuple(n.removeprefix("matrix.") for n in schema if n.startswith("matrix."))
    return ()


def _held_schema(table: str, axes: Sequence[str]) -> pl.Schema:
    full = jobs_schema(list(axes)) if table == "jobs" else TABLES_BY_NAME[table].schema
    wanted = set(HELD_COLUMNS[table])
    return pl.Schema([(c, t) for c, t in full.items() if c in wanted or c.startswith("matrix.")])


def _read_held(
    paths: list[Path], table: str, axes: Sequence[str]
) -> tuple[pl.DataFrame, dict[str, bool]]:
    """The held columns of some part files of one table, in one read when they all read (the
    file's name in ``_part``), else file by file, the damaged ones left out."""
    full = jobs_schema(list(axes)) if table == "jobs" else TABLES_BY_NAME[table].schema
    held = _held_schema(table, axes)
    try:
        frame = (
            pl.scan_parquet(
                paths,
                schema=full,
                missing_columns="insert",
                extra_columns="ignore",
                include_file_paths="_path",
            )
            .select(*held.names(), pl.col("_path").str.extract(r"([^/\\]+)$").alias("_part"))
            .collect(engine="streaming")
        )
        if table != "jobs":
            frame = frame.drop("_part")
        return frame, {p.name: True for p in paths}
    except Exception:  # some file among them is damaged: read them one by one
        pass
    frames, readable = [], {}
    for path in paths:
        try:
            present = pl.read_parquet_schema(path)
            part = pl.read_parquet(path, columns=[c for c in held.names() if c in present])
            frames.append(
                part.select(
                    *((pl.col(c) if c in present else pl.lit(None)).cast(t).alias(c)
                      for c, t in held.items()),
                    *([pl.lit(path.name).alias("_part")] if table == "jobs" else []),
                )
            )  # fmt: skip
            readable[path.name] = True
        except Exception:  # any damage: the runner reports it; the viewer reads the others
            readable[path.name] = False
    return _concat(frames, table, axes), readable


def _concat(frames: list[pl.DataFrame], table: str, axes: Sequence[str]) -> pl.DataFrame:
    """The frames as one, sharing their memory (chunks, not a copy)."""
    if not frames:
        part = {"_part": pl.String()} if table == "jobs" else {}
        return pl.DataFrame(schema={**_held_schema(table, axes), **part})
    return pl.concat(frames, how="vertical", rechunk=False)


def iter_states(root: Path) -> Iterator[RunState]:
    for name, path in list_runs(root).items():
        yield run_state(name, path)
