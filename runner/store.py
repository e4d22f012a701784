"""Results on disk: Parquet part files written as jobs finish, compacted into the final tables.

Layout of ``results/<run>/``::

    parts/<table>/<session>-<seq>.parquet   one file per table per flush, written atomically
    jobs.parquet messages.parquet ...       the final tables, rebuilt from the parts at the end
    manifest.json  config.resolved.json
    shards/<I>-of-<N>.json                  a shard's own manifest (``run --shard I/N``)

A flush writes the child tables first and the ``jobs`` part last: the ``jobs`` part is the
commit record of that flush. A crash between the two leaves child parts with no ``jobs`` part,
which readers ignore, so a killed run never shows half a job. Every part is written to a
temporary name and renamed, so a file that exists is a whole file.

The run directory's locks live in ``runner.locks`` (re-exported here).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from runner.locks import LOCK as LOCK  # re-exported: the locks' old home
from runner.locks import RunLock as RunLock
from runner.locks import ShardLock as ShardLock
from runner.locks import StoreError as StoreError
from runner.locks import set_aside as set_aside
from runner.locks import shard_lock_name as shard_lock_name
from runner.manifest import Manifest, combine
from runner.outcome import MATRIX_CELLS, Batch
from runner.schema import (
    ATTEMPTS,
    BUCKETS,
    JOBS,
    MATRIX_PREFIX,
    TABLES,
    TABLES_BY_NAME,
    jobs_schema,
)

PARTS = "parts"
MANIFEST = "manifest.json"
SHARDS = "shards"
"""The run directory's folder of shard manifests."""
RESOLVED_CONFIG = "config.resolved.json"


TMP_PREFIX = ".tmp-"
"""What a file is named while it is written; renamed when whole, so a file without it is whole."""


def _temporary(path: Path, unique: bool = False) -> Path:
    """The name ``path`` is written under; ``unique`` (a file several shards may write at
    once, each the same content) adds the pid so that no writer truncates another's."""
    return path.with_name(TMP_PREFIX + (f"{os.getpid()}-" if unique else "") + path.name)


def _atomic_write_bytes(path: Path, data: bytes, unique: bool = False) -> None:
    tmp = _temporary(path, unique)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, value: Any, *, unique: bool = False) -> None:
    data = (json.dumps(value, indent=2, default=str) + "\n").encode()
    _atomic_write_bytes(path, data, unique)


def _write_parquet_atomic(frame: pl.DataFrame, path: Path) -> None:
    tmp = _temporary(path)
    frame.write_parquet(tmp, statistics=True)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def table_frame(
    table: str, columns: dict[str, list[Any]], axes: Iterable[str] = ()
) -> pl.DataFrame:
    """One table's columns (``Batch.columns[table]``) as a frame with exactly its schema.

    List-of-struct columns (a message's tool calls and results) are built apart: Polars spends
    ~20 µs on each such list it converts from Python, even an empty one, which made building
    the ``messages`` part the largest client cost per simulation after the HTTP itself.
    """
    axes = list(axes)
    schema = jobs_schema(axes) if table == "jobs" else _schema(table)
    columns = dict(columns)
    cells = columns.pop(MATRIX_CELLS, None)
    if cells is not None:
        for axis in axes:
            columns[MATRIX_PREFIX + axis] = [dict(cell).get(axis) for cell in cells]
    height = len(next(iter(columns.values()), []))
    missing = [None] * height
    nested = [n for n, dtype in schema.items() if _is_list_of_structs(dtype)]
    flat = pl.Schema([(n, dtype) for n, dtype in schema.items() if n not in nested])
    frame = pl.DataFrame(
        [
            _datetimes(n, columns.get(n, missing), dtype)
            if isinstance(dtype, pl.Datetime)
            else pl.Series(n, columns.get(n, missing), dtype=dtype)
            for n, dtype in flat.items()
        ]
    )
    if not nested:
        return frame
    lists = [_list_of_structs(n, columns.get(n, missing), schema[n]) for n in nested]
    return frame.with_columns(lists).select(schema.names())


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _datetimes(name: str, values: list[datetime | None], dtype: pl.DataType) -> pl.Series:
    """Aware datetimes as a column: by way of epoch microseconds, which Polars takes ~7x faster
    than datetime objects (~4 ms of a 200-job flush otherwise)."""
    micros = [None if v is None else (v - _EPOCH) // _MICROSECOND for v in values]
    return pl.Series(name, micros, dtype=pl.Int64).cast(dtype)


def _is_list_of_structs(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct)


def _list_of_structs(name: str, values: list[Any], dtype: pl.DataType) -> pl.Series:
    """A ``List(Struct)`` column from per-row lists of dicts (None and [] both become []):
    the items go through the fast row constructor as one flat frame, then are grouped back
    to their rows."""
    assert isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct)
    empty = pl.Series(name, [[]], dtype=dtype)
    owners = [i for i, items in enumerate(values) if items for _ in items]
    if not owners:
        return empty.new_from_index(0, len(values))
    item_schema = pl.Schema({f.name: f.dtype for f in dtype.inner.fields})
    items = pl.DataFrame(
        [item for row_items in values if row_items for item in row_items],
        schema=item_schema,
        orient="row",
    ).to_struct(name)
    lists = (
        pl.DataFrame({"_row": pl.Series(owners, dtype=pl.UInt32), name: items})
        .group_by("_row", maintain_order=True)
        .agg(pl.col(name))
    )
    every_row = pl.DataFrame({"_row": pl.int_range(0, len(values), dtype=pl.UInt32, eager=True)})
    joined = every_row.join(lists, on="_row", how="left", maintain_order="left")
    return joined[name].fill_null(empty)


def _schema(table: str) -> pl.Schema:
    return TABLES_BY_NAME[table].schema


@dataclass
class PartWriter:
    """Writes flush batches of one session as part files (called from a worker thread)."""

    run_dir: Path
    session_id: str
    axes: tuple[str, ...]
    seq: int = 0

    def prepare(self, own_sessions: Iterable[str] | None = None) -> None:
        """Create the part directories and remove the ``.tmp-`` files of writes a crash cut
        short (never read; the caller holds the run's lock, so none is still being written).
        A shard passes ``own_sessions``: other shards may be writing theirs, so it removes
        only those of its own sessions."""
        owned = None if own_sessions is None else tuple(f"{TMP_PREFIX}{s}-" for s in own_sessions)
        try:
            for table in TABLES:
                parts = self.run_dir / PARTS / table.name
                parts.mkdir(parents=True, exist_ok=True)
                for leftover in parts.glob(f"{TMP_PREFIX}*"):
                    if owned is None or leftover.name.startswith(owned):
                        leftover.unlink(missing_ok=True)
            if owned is None:
                for leftover in self.run_dir.glob(f"{TMP_PREFIX}*"):  # a compaction or manifest
                    leftover.unlink()
            probe = self.run_dir / f".write-probe-{self.session_id}"  # shards probe side by side
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise StoreError(
                f"cannot write results to {self.run_dir}: {exc.strerror}; nothing was sent: "
                "make the results directory writable or choose another"
            ) from exc

    def write(self, batch: Batch, seq: int | None = None) -> None:
        """One flush: child tables first, ``jobs`` last (the commit record). ``seq`` names the
        part (``<session>-<seq>``; default: the next one); the journal passes its own."""
        if not batch.jobs:
            return
        self.seq = self.seq + 1 if seq is None else seq
        name = f"{self.session_id}-{self.seq:06d}.parquet"
        try:
            for table in (*(t.name for t in TABLES if t is not JOBS), "jobs"):
                frame = table_frame(table, batch.columns[table], self.axes)
                _write_parquet_atomic(frame, self.run_dir / PARTS / table / name)
        except (OSError, pl.exceptions.PolarsError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
            raise StoreError(f"cannot write results to {self.run_dir}: {reason}") from exc


# ----------------------------------------------------------------------------------- reading


def _part_files(directory: Path) -> list[Path]:
    """The part files in ``directory``, without the ``.tmp-`` files of writes that never
    finished (pathlib's glob, unlike a shell's, matches names that start with a dot)."""
    return sorted(p for p in directory.glob("*.parquet") if not p.name.startswith(TMP_PREFIX))


def _readable_parts(run_dir: Path, table: str) -> list[Path]:
    """Committed, readable part files of a table; damaged ones are skipped with a warning."""
    committed = {p.name for p in _part_files(run_dir / PARTS / "jobs")}
    good = []
    for path in _part_files(run_dir / PARTS / table):
        if path.name not in committed:
            continue  # a flush that never completed: its jobs are not done
        try:
            pl.read_parquet_schema(path)
        except Exception as exc:  # any damage: truncated footer, garbage bytes, ...
            warnings.warn(f"ignoring damaged part file {path}: {exc}", stacklevel=2)
            continue
        good.append(path)
    return good


_WIDEN = pl.ScanCastOptions(integer_cast="upcast", float_cast="upcast")
"""Older parts may hold a column in a narrower type than the schema now says."""


def _scan(paths: list[Path], schema: pl.Schema, *, with_part: bool = False) -> pl.LazyFrame:
    """One streaming scan over part files; ``with_part`` adds each row's part file name."""
    columns = [pl.col(name).cast(dtype) for name, dtype in schema.items()]
    if with_part:
        columns.append(pl.col("_path").str.extract(r"([^/\\]+)$").alias("_part"))
    if not paths:
        empty = {**schema, "_part": pl.String()} if with_part else schema
        return pl.LazyFrame(schema=empty)
    # The schema is given, not taken from the first file: a run resumed by a newer runner has
    # parts with and without a newer column (``cost_usd``), in either order.
    return pl.scan_parquet(
        paths,
        schema=schema,
        missing_columns="insert",
        extra_columns="ignore",
        cast_options=_WIDEN,
        include_file_paths="_path" if with_part else None,
    ).select(columns)


def scan_parts(run_dir: Path, axes: Iterable[str] = ()) -> dict[str, pl.LazyFrame]:
    """The deduplicated tables, lazily, from the part files.

    ``jobs`` keeps one row per job key: its ``ok`` row if any session finished it, else the
    latest error. Child tables keep the rows of ok jobs only from the part that holds that ok
    row, so every job appears once whichever session produced it. ``attempts`` keeps history.

    Child tables hold rows of ok jobs only, and an ok job is never run again, so normally each
    key has one row in the parts and everything streams through as it is (memory stays flat
    however large the run). The de-duplication below, which has to hold the jobs table in
    memory, runs only when some key really appears twice (errors re-run in a later session).
    """
    paths = {t.name: _readable_parts(run_dir, t.name) for t in TABLES}
    return scan_part_files(paths, axes)


@dataclass(frozen=True)
class Repeats:
    """Whether some job key has more than one row in the ``jobs`` parts (``keys``), and more
    than one ``ok`` row (``ok_keys``): what decides how much de-duplication a scan needs."""

    keys: bool
    ok_keys: bool


def scan_part_files(
    paths: Mapping[str, Sequence[Path]], axes: Iterable[str] = (), repeats: Repeats | None = None
) -> dict[str, pl.LazyFrame]:
    """``scan_parts`` over part files already vetted (committed and readable), by table.

    ``repeats``, when the caller already knows it, saves counting the keys of every part. A
    caller may pass only the parts that hold some keys: the rule that picks a key's row looks
    at that key's rows alone, so the result is right for those keys."""
    jobs_paths = list(paths.get("jobs", ()))
    axes = list(axes)
    if not axes and jobs_paths:
        axes = [
            n.removeprefix("matrix.")
            for n in pl.read_parquet_schema(jobs_paths[-1])
            if n.startswith("matrix.")
        ]
    schema = jobs_schema(axes)
    # Keys are counted by their 64-bit hashes: a tenth of the memory of the strings at 100k
    # jobs, and a collision can only undercount, which takes the (correct) de-duplicating path.
    if repeats is None:
        key = pl.col("job_key").hash()
        counts = (
            _scan(jobs_paths, schema)
            .select(
                pl.len().alias("rows"),
                key.n_unique().alias("keys"),
                (pl.col("status") == "ok").sum().alias("ok_rows"),
                key.filter(pl.col("status") == "ok").n_unique().alias("ok_keys"),
            )
            .collect()
            .row(0, named=True)
        )
        repeats = Repeats(
            keys=counts["rows"] != counts["keys"], ok_keys=counts["ok_rows"] != counts["ok_keys"]
        )
    out: dict[str, pl.LazyFrame] = {}
    ok_parts: pl.LazyFrame | None = None
    if not repeats.keys:
        out["jobs"] = _scan(jobs_paths, schema)
    else:
        winners = (
            _scan(jobs_paths, schema, with_part=True)
            .with_columns((pl.col("status") == "ok").alias("_ok"))
            .sort(["job_key", "_ok", "finished_at"], nulls_last=False)
            .group_by("job_key", maintain_order=True)
            .last()
            .select(*schema.names(), "_part")
        )
        out["jobs"] = winners.drop("_part").sort(["started_at", "job_key"])
        if repeats.ok_keys:
            ok = winners.filter(pl.col("status") == "ok").select("job_key", "_part")
            ok_parts = ok.collect().lazy()
    for table in TABLES:
        if table is JOBS:
            continue
        table_paths = list(paths.get(table.name, ()))
        schema_t = _schema(table.name)
        if table is ATTEMPTS or ok_parts is None:
            out[table.name] = _scan(table_paths, schema_t)
        else:
            frame = _scan(table_paths, schema_t, with_part=True)
            kept = frame.join(ok_parts, on=["job_key", "_part"], how="semi")
            out[table.name] = kept.drop("_part")
    return out


def done_job_keys(run_dir: Path, *, include_errors: bool = False) -> set[str]:
    """Keys of jobs not to send again: those finished ``ok`` (never worth paying for twice),
    and with ``include_errors`` those that ended in error too."""
    paths = _readable_parts(run_dir, "jobs")
    if not paths:
        return set()
    frame = _scan(paths, jobs_schema([]))
    if not include_errors:
        frame = frame.filter(pl.col("status") == "ok")
    keys = frame.select("job_key").unique().collect()
    return set(keys["job_key"].to_list())


def stored_outcomes(
    run_dir: Path, keys: set[str]
) -> dict[str, tuple[str, tuple[tuple[str, str], ...]]]:
    """What earlier sessions' finished jobs ``keys`` gave, as the verdict planner takes it
    (``planner.Stored``): key -> (status, (criterion id, result) per criterion)."""
    if not keys:
        return {}
    frames = scan_parts(run_dir)
    wanted = pl.col("job_key").is_in(list(keys))
    jobs = frames["jobs"].filter(wanted).select("job_key", "status").collect()
    rows = (
        frames["criteria"]
        .filter(wanted)
        .select("job_key", "criterion_id", "result")
        .sort("job_key", "criterion_id")
        .collect()
    )
    results: dict[str, list[tuple[str, str]]] = {}
    for key, cid, result in rows.iter_rows():
        results.setdefault(key, []).append((cid, result))
    return {key: (status, tuple(results.get(key, ()))) for key, status in jobs.iter_rows()}


def earlier_spend(run_dir: Path) -> tuple[list[float], list[float]]:
    """What every job row in the parts cost: (USD of each priced job, credits of each job
    billed in credits). Every row counts, errors re-run later included: each is a session's
    attempt at a job, paid for as the vendor priced it (an ok job is never run twice)."""
    paths = _readable_parts(run_dir, "jobs")
    if not paths:
        return [], []
    frame = _scan(paths, jobs_schema([])).select("cost_usd", "credits_used").collect()
    usd = frame["cost_usd"].drop_nulls().to_list()
    credits = [float(c) for c in frame["credits_used"].drop_nulls().to_list()]
    return usd, credits


def session_spend(run_dir: Path, run_id: str) -> tuple[float | None, float | None]:
    """(USD, credits) the jobs of one session cost (None: none of them was priced so)."""
    paths = _readable_parts(run_dir, "jobs")
    if not paths:
        return None, None
    row = (
        _scan(paths, jobs_schema([]))
        .filter(pl.col("run_id") == run_id)
        .select(
            pl.col("cost_usd").sum().alias("usd"),
            pl.col("cost_usd").count().alias("n_usd"),
            pl.col("credits_used").sum().alias("credits"),
            pl.col("credits_used").count().alias("n_credits"),
        )
        .collect()
        .row(0, named=True)
    )
    return (
        float(row["usd"]) if row["n_usd"] else None,
        float(row["credits"]) if row["n_credits"] else None,
    )


FINAL_ROW_GROUP_ROWS = 16_384
"""Rows per row group of the final tables. The streaming writer buffers a whole row group, so
this, not the run's size, bounds compaction memory (measured: Polars' default row group grew
peak RSS from 94 MB at 10k jobs to 183 MB at 100k; 16k rows keeps it near 110 MB)."""


def compact(run_dir: Path, axes: Iterable[str] = ()) -> dict[str, int]:
    """Rebuild the final tables from the parts; returns row counts per table."""
    counts = {}
    for name, frame in scan_parts(run_dir, axes).items():
        target = run_dir / f"{name}.parquet"
        tmp = _temporary(target)
        frame.sink_parquet(tmp, row_group_size=FINAL_ROW_GROUP_ROWS)
        os.replace(tmp, target)
        counts[name] = pl.scan_parquet(target).select(pl.len()).collect().item()
    return counts


def job_totals(run_dir: Path) -> dict[str, int]:
    """Jobs ok / in error in the final ``jobs`` table (all sessions)."""
    jobs = pl.scan_parquet(run_dir / JOBS.file)
    row = jobs.select(
        (pl.col("status") == "ok").sum().alias("jobs_ok"),
        (pl.col("status") == "error").sum().alias("jobs_error"),
    ).collect()
    return {k: int(v[0]) for k, v in row.to_dict(as_series=False).items()}


def _read_manifest_file(path: Path) -> Manifest | None:
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        return None


def shard_manifests(run_dir: Path) -> list[Manifest]:
    """Every shard's own manifest (``shards/I-of-N.json``), unreadable ones left out."""
    paths = sorted((run_dir / SHARDS).glob("*.json"))
    found = [_read_manifest_file(p) for p in paths if not p.name.startswith(TMP_PREFIX)]
    return [m for m in found if m is not None]


def read_manifest(run_dir: Path) -> Manifest | None:
    """The run's manifest; None when there is none, or it cannot be read (a new one is made).
    A sharded run's is ``manifest.json`` with every shard's sessions (``manifest.combine``),
    finalized only when the last ``merge`` saw every shard session."""
    return combine(_read_manifest_file(run_dir / MANIFEST), shard_manifests(run_dir))


def shard_manifest_path(run_dir: Path, shard_name: str) -> Path:
    return run_dir / SHARDS / f"{shard_name}.json"


def read_shard_manifest(run_dir: Path, shard_name: str) -> Manifest | None:
    return _read_manifest_file(shard_manifest_path(run_dir, shard_name))


def _manifest_bytes(manifest: Manifest) -> bytes:
    return (manifest.model_dump_json(indent=2, exclude_none=True) + "\n").encode()


def write_manifest(run_dir: Path, manifest: Manifest) -> None:
    _atomic_write_bytes(run_dir / MANIFEST, _manifest_bytes(manifest))


def write_shard_manifest(run_dir: Path, shard_name: str, manifest: Manifest) -> None:
    path = shard_manifest_path(run_dir, shard_name)
    path.parent.mkdir(exist_ok=True)
    _atomic_write_bytes(path, _manifest_bytes(manifest))


@dataclass
class Run:
    """A run read back: one frame per table (lazy when asked), and its manifest."""

    path: Path
    manifest: Manifest | None
    """None for a directory of part files without a (readable) manifest."""
    jobs: pl.DataFrame | pl.LazyFrame
    messages: pl.DataFrame | pl.LazyFrame
    criteria: pl.DataFrame | pl.LazyFrame
    data_collection: pl.DataFrame | pl.LazyFrame
    attempts: pl.DataFrame | pl.LazyFrame
    buckets: pl.DataFrame | pl.LazyFrame = field(
        default_factory=lambda: pl.DataFrame(schema=BUCKETS.schema)
    )
    """Vendor result buckets (agent-testing backend); empty for the other backends."""

    def for_agent(self, agent: str | None) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(criteria, jobs) of one agent, named by its label or its id (None: every agent);
        ``ValueError`` naming it when the run has no such agent."""
        criteria, jobs = _collected(self.criteria), _collected(self.jobs)
        if agent is None:
            return criteria, jobs
        jobs = jobs.filter((pl.col("agent_label") == agent) | (pl.col("agent_id") == agent))
        if jobs.height == 0:
            raise ValueError(f"no agent {agent!r} in {self.path}")
        return criteria.join(jobs.select("job_key"), on="job_key", how="semi"), jobs


def _collected(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    return frame.collect() if isinstance(frame, pl.LazyFrame) else frame


RUN_MARKERS = ("manifest.json", "jobs.parquet", "shards", "parts/jobs")
"""What makes a directory a run directory (``open_run``)."""


def open_run(path: Path) -> Run:
    """``load_run`` of a directory a user named: ``FileNotFoundError`` with one clear line
    when it is not a run directory."""
    if not any((path / marker).exists() for marker in RUN_MARKERS):
        raise FileNotFoundError(f"{path} is not a run directory (no manifest.json)")
    return load_run(path)


def load_run(path: str | Path, *, lazy: bool = False) -> Run:
    """Read a run directory: the final tables when present, else straight from the parts."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run directory at {run_dir}")
    manifest = read_manifest(run_dir)
    finals = {t.name: run_dir / t.file for t in TABLES}
    frames: dict[str, pl.LazyFrame]
    complete = (
        manifest is not None and manifest.finalized and all(p.exists() for p in finals.values())
    )
    if complete:
        frames = {name: pl.scan_parquet(p) for name, p in finals.items()}
    else:
        frames = scan_parts(run_dir)
    loaded = {name: (f if lazy else f.collect()) for name, f in frames.items()}
    return Run(path=run_dir, manifest=manifest, **loaded)  # type: ignore[arg-type]
