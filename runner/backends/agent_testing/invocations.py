"""The files the backend keeps between sessions: the invocation records and the timing hint.

The records, in the run directory: one line per invocation started, appended and fsync'd at
once, so a session killed right after a run-tests call re-attaches to that invocation on resume
instead of starting (and paying for) it again. A shard records into a file of its own; a
session reads every shard's file. The timing hint, in the results root: how soon a run may
finish (``pacing.next_delay`` sleeps until about then before the first poll).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.backends.agent_testing.keys import GroupKey

INVOCATIONS_FILE = "invocations.jsonl"
"""In the run directory: one line per invocation started, written (and fsync'd) at once."""
INVOCATIONS_GLOB = "invocations*.jsonl"
"""A shard records into a file of its own (``invocations-2-of-8.jsonl``): appends from several
machines to one file on shared storage are not atomic everywhere (NFS)."""

TIMING_FILE = ".agent_testing_timing.json"
"""In the results root: per test name prefix, the shortest run-tests -> finished run seen (a
later session's invocations sleep until about then before their first poll)."""


def record_line(key: GroupKey, test_id: str, invocation_id: str, **extra: Any) -> dict[str, Any]:
    """One record: the group, its test and its invocation (empty: forgotten)."""
    return {**key._asdict(), "test_id": test_id, "invocation_id": invocation_id, **extra}


def append_record(path: Path, line: dict[str, Any]) -> None:
    """Append one invocation and fsync: a kill -9 right after must not lose the id."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_all_records(run_dir: Path | None, own: Path | None) -> Iterator[tuple[GroupKey, str]]:
    """Every shard's records of the run, this session's own file last (its lines win): a
    group is normally in one shard's file, but a run whose shard count changed finds a group
    another shard started."""
    if run_dir is None:
        return
    for path in sorted(run_dir.glob(INVOCATIONS_GLOB)):
        if path != own:
            yield from read_records(path)
    yield from read_records(own)


def read_records(path: Path | None) -> Iterator[tuple[GroupKey, str]]:
    """Recorded invocations, oldest first (a later line for the same group wins; an empty id
    means forgotten: cancelled by the runner); a line cut short by a crash is skipped."""
    if path is None or not path.exists():
        return
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(text)
            key = GroupKey(
                str(row["agent_id"]),
                str(row["test_hash"]),
                int(row["first_repeat"]),
                int(row["repeat_count"]),
                str(row.get("variant", "")),
            )
            yield key, str(row["invocation_id"])
        except (ValueError, KeyError, TypeError):
            continue


def read_shortest(path: Path | None, prefix: str) -> float | None:
    """The shortest run-tests -> finished run an earlier session with this prefix saw."""
    if path is None:
        return None
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))[prefix])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_shortest(path: Path, prefix: str, secs: float) -> None:
    """Record it for the prefix (replacing the file, so a reader never sees half of it)."""
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError):
        known = {}
    known[prefix] = round(secs, 3)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(known, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
