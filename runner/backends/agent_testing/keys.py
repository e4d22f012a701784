"""Which invocation a job belongs to, and how that invocation is named (pure).

The repeats of one (agent, test) are one invocation (``GroupKey``); groups of one agent variant
and repeat window may share one run-tests call (``BatchKey``). An invocation's name carries a
tag (``InvocationNames.batch_tag``) by which a later session finds it again in the vendor's list.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import NamedTuple

from runner.config import canonical_json
from runner.jobs import Job
from runner.wire.agent_testing import MAX_REPEAT_COUNT

HASH_LEN = 16
"""Hex digits of a content hash (a test's, an agent variant's)."""
_NAME_MAX = 200


class BatchKey(NamedTuple):
    """Groups that may share one run-tests call."""

    agent_id: str
    variant: str
    first_repeat: int
    repeat_count: int


class GroupKey(NamedTuple):
    """One invocation: the repeats ``first_repeat`` .. ``+ repeat_count`` of one test on one
    agent variant. A NamedTuple, so a record read back compares equal to a plain tuple."""

    agent_id: str
    test_hash: str
    first_repeat: int
    repeat_count: int
    variant: str
    """Empty for the agent's main branch without override, else ``variant_hash``."""

    @property
    def batch(self) -> BatchKey:
        return BatchKey(self.agent_id, self.variant, self.first_repeat, self.repeat_count)


def variant_hash(job: Job) -> str:
    """Empty for the agent's main branch without override, else a hash of branch and
    override."""
    if job.branch_id is None and not job.agent_override:
        return ""
    text = canonical_json({"branch_id": job.branch_id, "override": job.agent_override})
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LEN]


def repeat_window(repeat: int, repeats: int) -> tuple[int, int]:
    """(first repeat, repeat_count) of the invocation that runs ``repeat``: chunks of 50."""
    start = repeat - repeat % MAX_REPEAT_COUNT
    return start, min(MAX_REPEAT_COUNT, repeats - start)


def group_key(job: Job, test_hash: str, repeats: int) -> GroupKey:
    start, count = repeat_window(job.repeat, repeats)
    return GroupKey(job.agent_id, test_hash, start, count, variant_hash(job))


@dataclass(frozen=True, slots=True)
class InvocationNames:
    """The names of one run's invocations, for one session."""

    prefix: str
    run_name: str
    run_token: str
    """In every invocation name of this run (from its prefix, name and ``run_key``, the run's
    creation time: the same for every session, new after ``--fresh``): the list endpoint's
    ``search`` finds them."""
    session_id: str

    @classmethod
    def of(cls, prefix: str, run_name: str, run_key: str, session_id: str) -> InvocationNames:
        identity = f"{prefix}\0{run_name}\0{run_key}"
        token = "r" + hashlib.sha256(identity.encode()).hexdigest()[:10]
        return cls(prefix, run_name, token, session_id)

    def batch_tag(self, key: GroupKey) -> str:
        """``<run token>.<variant>.<first repeat>-<count>``: names the run and which groups an
        invocation may hold (its tests say which)."""
        return f"{self.run_token}.{key.variant or 'main'}.{key.first_repeat}-{key.repeat_count}"

    def name(self, key: GroupKey, label: str) -> str:
        """``<prefix> <batch tag> <run name> session <id>: <label>``: the vendor's list shows
        which run and session started it, and a lost journal finds it again."""
        head = f"{self.prefix} {self.batch_tag(key)} {self.run_name} session {self.session_id}: "
        return (head + label)[:_NAME_MAX]

    def tag_of(self, name: str | None) -> str:
        """The batch tag in an invocation's name ("" or another word if not one of ours)."""
        return (name or "").removeprefix(self.prefix + " ").split(" ", 1)[0]

    def is_this_runs(self, name: str | None) -> bool:
        return self.tag_of(name).startswith(self.run_token + ".")
