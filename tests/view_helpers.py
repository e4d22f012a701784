"""Run directories for the viewer's tests, written the way the runner writes them.

- ``write_run``: final tables + a finalized manifest from rows given as dicts (missing columns
  are null), so a test states exactly what a run holds (e.g. a ``<script>`` in a message).
- ``PartFeeder``: a *running* run: a manifest with ``finalized: false``, the ``.lock`` held by
  an ``flock`` as a runner holds it, and part files added one flush at a time (children first,
  the ``jobs`` part last, each written to a ``.tmp-`` name and renamed), cut from a finished run.
- ``snapshot``: every file of a directory with its bytes, to show nothing was changed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from runner.schema import TABLES, jobs_schema
from runner.store import LOCK, PARTS, TMP_PREFIX, RunLock

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def schema_of(table: str, axes: Sequence[str] = ()) -> pl.Schema:
    if table == "jobs":
        return jobs_schema(list(axes))
    return next(t for t in TABLES if t.name == table).schema


def frame(table: str, rows: Sequence[Mapping[str, Any]], axes: Sequence[str] = ()) -> pl.DataFrame:
    schema = schema_of(table, axes)
    return (
        pl.from_dicts([dict(r) for r in rows], schema=schema)
        if rows
        else pl.DataFrame(schema=schema)
    )


def job_row(key: str, i: int = 0, **changes: Any) -> dict[str, Any]:
    """An ok job with plausible timings; ``changes`` override any column."""
    started = T0 + timedelta(seconds=i)
    row: dict[str, Any] = {
        "run_id": "s1",
        "job_key": key,
        "agent_id": "agent_a",
        "agent_label": "agent-a",
        "scenario_id": "refund",
        "repeat": 0,
        "status": "ok",
        "attempts": 1,
        "http_status": 200,
        "started_at": started,
        "finished_at": started + timedelta(seconds=2),
        "queue_wait_secs": 0.0,
        "backoff_secs": 0.0,
        "time_to_first_frame_secs": 0.3,
        "time_to_analysis_secs": 1.9,
        "total_secs": 2.0,
        "frames": 5,
        "message_count": 2,
        "call_successful": "success",
        "transcript_summary": "A short call.",
        "llm_price": 0.001,
    }
    row.update(changes)
    return row


def write_run(
    run_dir: Path,
    rows: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    axes: Sequence[str] = (),
    manifest: Mapping[str, Any] | None = None,
) -> Path:
    """A finalized run holding exactly ``rows`` (table name -> rows)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for t in TABLES:
        frame(t.name, rows.get(t.name, ()), axes).write_parquet(run_dir / t.file)
    jobs = rows.get("jobs", ())
    value: dict[str, Any] = {
        "run_name": run_dir.name,
        "config_path": "config.yaml",
        "config_hash": "0" * 64,
        "target": {"base_url": "local", "backend": "stream"},
        "matrix_axes": list(axes),
        "finalized": True,
        "created_at": T0.isoformat(),
        "sessions": [
            {
                "run_id": "s1",
                "started_at": T0.isoformat(),
                "config_hash": "0" * 64,
                "planned": len(jobs),
                "skipped": 0,
                "ended": "completed",
            }
        ],
    }
    value.update(manifest or {})
    (run_dir / "manifest.json").write_text(json.dumps(value, indent=2))
    return run_dir


class PartFeeder:
    """Turns a finished run (``source``) into a run in progress at ``run_dir``, a flush of
    ``per_part`` jobs at a time, with the run's lock held until ``finish``."""

    def __init__(self, source: Path, run_dir: Path, per_part: int, session: str = "live") -> None:
        self.source = source
        self.run_dir = run_dir
        self.session = session
        self.tables = {t.name: pl.read_parquet(source / t.file) for t in TABLES}
        keys = self.tables["jobs"]["job_key"].to_list()
        self.chunks = [keys[i : i + per_part] for i in range(0, len(keys), per_part)]
        self.seq = 0
        run_dir.mkdir(parents=True)
        for t in TABLES:
            (run_dir / PARTS / t.name).mkdir(parents=True)
        self.lock = RunLock(run_dir)
        self.lock.acquire()
        manifest = json.loads((source / "manifest.json").read_text())
        manifest.update(run_name=run_dir.name, finalized=False)
        manifest["sessions"] = [
            {
                "run_id": session,
                "started_at": T0.isoformat(),
                "config_hash": "0" * 64,
                "ended": "running",
                "planned": len(keys),
                "skipped": 0,
            }
        ]
        manifest.pop("counts", None)
        self.manifest = manifest
        self._write_manifest()

    def _write_manifest(self) -> None:
        path = self.run_dir / "manifest.json"
        tmp = path.with_name(TMP_PREFIX + path.name)
        tmp.write_text(json.dumps(self.manifest, indent=2))
        os.replace(tmp, path)

    @property
    def done(self) -> int:
        return sum(len(c) for c in self.chunks[: self.seq])

    def add_part(self, *, commit: bool = True) -> None:
        """One flush: child tables first, then (``commit``) the ``jobs`` part."""
        keys = pl.Series(self.chunks[self.seq])
        self.seq += 1
        name = f"{self.session}-{self.seq:06d}.parquet"
        order = [t.name for t in TABLES if t.name != "jobs"] + (["jobs"] if commit else [])
        for table in order:
            part = self.tables[table].filter(pl.col("job_key").is_in(keys.implode()))
            target = self.run_dir / PARTS / table / name
            tmp = target.with_name(TMP_PREFIX + target.name)
            part.write_parquet(tmp)
            os.replace(tmp, target)

    def finish(self) -> None:
        """The session ends: final tables, ``finalized: true``, the lock released."""
        for t in TABLES:
            self.tables[t.name].write_parquet(self.run_dir / t.file)
        self.manifest["finalized"] = True
        self.manifest["sessions"][-1]["ended"] = "completed"
        self._write_manifest()
        self.release()

    def release(self) -> None:
        self.lock.release()


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (``.lock`` included)."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'


def markup(field: str) -> str:
    """Markup naming the field it is put in, so a test can say which field was not escaped."""
    return f"<script>window.__{field} = 1</script>"


def escaped(field: str) -> str:
    """``markup(field)`` as the viewer must show it: as text."""
    return f"&lt;script&gt;window.__{field} = 1&lt;/script&gt;"


MARKED = (
    "label",
    "agent",
    "scenario",
    "criterion",
    "criterion_name",
    "summary",
    "tool_result",
    "data_collection",
)
"""The fields ``xss_run`` fills with ``markup``: agent label, agent id, scenario id, criterion
id and name, transcript summary, a tool result, a data-collection id."""
AGENT, SCENARIO, CRITERION = markup("agent"), markup("scenario"), markup("criterion")


def xss_run(root: Path, name: str = "xss") -> Path:
    """A run whose every free-text field and every id carries markup."""
    ids = {"agent_id": AGENT, "agent_label": markup("label"), "scenario_id": SCENARIO}
    return write_run(
        root / name,
        {
            "jobs": [
                job_row("k1", **ids, transcript_summary=markup("summary") + XSS),
                job_row("k2", 1, **ids, repeat=1, status="error", error_kind="server_error",
                        error_message=XSS, message_count=0),
            ],
            "messages": [
                {"job_key": "k1", "index": 0, "role": "agent", "message": "Hello " + XSS,
                 "arrival_secs": 0.4, "tool_calls": [], "tool_results": []},
                {"job_key": "k1", "index": 1, "role": "user", "message": None,
                 "arrival_secs": 0.9,
                 "tool_calls": [{"request_id": "r1", "tool_name": "<b>lookup</b>",
                                 "params_as_json": '{"q": "</pre><script>x()</script>"}'}],
                 "tool_results": [{"request_id": "r1", "tool_name": "<b>lookup</b>",
                                   "result_value": markup("tool_result"), "is_error": False,
                                   "tool_latency_secs": 0.1}]},
            ],
            "criteria": [
                {"job_key": "k1", "criterion_id": CRITERION, "name": markup("criterion_name"),
                 "result": "failure", "rationale": "Judge says " + XSS},
            ],
            "data_collection": [
                {"job_key": "k1", "data_collection_id": markup("data_collection"),
                 "value": '"<i>x</i>"', "rationale": XSS},
            ],
            "attempts": [{"run_id": "s1", "job_key": "k1", "attempt": 1, "status": "ok",
                          "started_at": T0, "duration_secs": 2.0, "concurrency_limit": 4},
                         {"run_id": "s1", "job_key": "k2", "attempt": 1, "status": "error",
                          "error_kind": "server_error", "error_message": XSS,
                          "started_at": T0, "duration_secs": 0.1, "concurrency_limit": 4}],
        },
    )  # fmt: skip


__all__ = [
    "AGENT",
    "CRITERION",
    "LOCK",
    "MARKED",
    "SCENARIO",
    "T0",
    "XSS",
    "PartFeeder",
    "escaped",
    "job_row",
    "markup",
    "snapshot",
    "write_run",
    "xss_run",
]
