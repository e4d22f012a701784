"""The invocation record files: which invocation each group started, in the run directory.

One line per invocation started, appended and fsync'd at once, so a session killed right after
a run-tests call re-attaches to that invocation on resume instead of starting (and paying for)
it again. A shard records into a file of its own; a session reads every shard's file.
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
