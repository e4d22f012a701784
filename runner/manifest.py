"""``manifest.json``: what a run directory is, and one entry per session that wrote into it.

The one model of the file: the run shell writes it, the store reads it, the report and the
viewer show it. Unknown keys are kept, so a manifest written by a newer runner still reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SessionEnd = Literal["running", "completed", "aborted", "interrupted", "write_failed", "budget"]
"""How a session ended; ``running`` while it runs (and after a kill -9, for good); ``budget``:
``run.budget`` stopped dispatching (the jobs in flight finished and were saved)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Session(_Model):
    """One invocation of ``run`` on this directory."""

    run_id: str
    """Also the ``run_id`` of the rows it wrote (jobs, attempts)."""
    started_at: datetime
    ended_at: datetime | None = None
    ended: SessionEnd = "running"
    config_hash: str
    planned: int
    """Jobs this session set out to run (not done yet when it started)."""
    skipped: int
    """Jobs already done by earlier sessions."""
    recovered: int = 0
    """Finished jobs of an interrupted earlier session recovered from the journal at the start
    of this one (they were paid for once and are not sent again)."""
    wall_secs: float | None = None
    done: int = 0
    ok: int = 0
    errors: int = 0
    retries: int = 0
    attempts: int = 0
    concurrency_limit: int | None = None
    peak_in_flight: int | None = None
    server_quota: int | None = None
    abort_reason: str | None = None
    spent_usd: float | None = None
    """USD the jobs of this session cost, as the vendor priced them (null: nothing priced)."""
    spent_credits: float | None = None
    """Credits the jobs of this session were billed (null: nothing billed in credits)."""
    budget_usd: float | None = None
    """``run.budget.usd`` in force for this session."""
    budget_credits: float | None = None
    run_spent_usd: float | None = None
    """USD spent by the run so far, this session and every earlier one (budgeted runs)."""
    run_spent_credits: float | None = None
    not_run: int | None = None
    """Jobs left unsent when the budget stopped the session."""
    estimate: dict[str, Any] | None = None
    """The expected cost printed at the start: ``low``, ``high``, ``unit``, ``jobs``, ``how``."""


class Target(_Model):
    base_url: str
    backend: str


class Manifest(_Model):
    run_name: str
    created_at: datetime
    config_path: str
    config_hash: str
    """sha256 of the resolved config of the latest session."""
    target: Target
    matrix_axes: list[str] = Field(default_factory=list)
    versions: dict[str, str] = Field(default_factory=dict)
    finalized: bool = False
    """The final tables were rebuilt from the parts after the latest session."""
    counts: dict[str, int] = Field(default_factory=dict)
    """Rows per final table, and ``jobs_ok`` / ``jobs_error``."""
    sessions: list[Session] = Field(default_factory=list)
    shard: str | None = None
    """``I/N`` in a shard's own manifest (``shards/I-of-N.json``); None in ``manifest.json``."""
    limit: int | None = None
    """A shard's ``--limit`` (its sweep is the first ``limit`` jobs); ``merge`` checks those."""


def combine(main: Manifest | None, shards: list[Manifest]) -> Manifest | None:
    """The run as one manifest: ``manifest.json`` (written by a single-process run and by
    ``merge``) with the sessions of every shard's own manifest.

    It is ``finalized`` only when ``manifest.json`` is and already holds every shard session
    exactly as the shard last wrote it: a shard that ran after the last ``merge`` makes the
    final tables stale, and readers then read the part files.
    """
    if not shards:
        return main
    known = {s.run_id: s for s in main.sessions} if main is not None else {}
    sessions = dict(known)
    current = True
    for shard in shards:
        for session in shard.sessions:
            if known.get(session.run_id) != session:
                current = False
            sessions[session.run_id] = session
    latest = max(
        shards, key=lambda m: max((s.started_at for s in m.sessions), default=m.created_at)
    )
    base = main if main is not None and current else latest
    return base.model_copy(
        update={
            "created_at": min(m.created_at for m in [*shards, *([main] if main else [])]),
            "sessions": sorted(sessions.values(), key=lambda s: s.started_at),
            "finalized": main is not None and main.finalized and current,
            "counts": main.counts if main is not None and current else {},
            "shard": None,
        }
    )
