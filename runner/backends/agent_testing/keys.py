"""Which invocation a job belongs to, and how that invocation is named (pure).

The repeats of one (agent, test) in one repeat window are one invocation (``GroupKey``); groups
of one agent variant and window may share one run-tests call (``BatchKey``). An invocation's
name carries a tag (``InvocationNames.batch_tag``) by which a later session finds it again in
the vendor's list.

A job's window (``Window``) is a pure function of the job, the same in every session, so a
resumed run re-attaches to the invocation an earlier one started: fixed repeats in chunks of
50 (``fixed_windows``); sequential verdicts in waves whose bounds grow geometrically
(``wave_bounds``, ``wave_windows``); a paired comparison in the windows its planner draws
(``runner.pairing.PairPlanner.window_of``).
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from runner.config import canonical_json
from runner.jobs import Job
from runner.wire.agent_testing import MAX_REPEAT_COUNT

HASH_LEN = 16
"""Hex digits of a content hash (a test's, an agent variant's)."""
_NAME_MAX = 200


class BatchKey(NamedTuple):
    """Groups that may share one run-tests call (one ``repeat_count`` for all its tests)."""

    agent_id: str
    variant: str
    label: str
    """The window's first repeat, or a wave's label (``Window.wave``)."""
    repeat_count: int


class Window(NamedTuple):
    """The repeats of a test that one invocation runs: ``first`` .. ``first + repeat_count``."""

    first: int
    repeat_count: int
    wave: str = ""
    """Groups of one agent variant with the same wave and count share a run-tests call and a
    name tag; empty: the window's first repeat is the label (fixed runs, verdict waves, where
    every test's window starts at the same repeat). A comparison's wave holds tests at
    different repeats, so it names the wave."""

    @property
    def label(self) -> str:
        return self.wave or str(self.first)


WindowOf = Callable[[Job], Window]
"""The window of a job (a pure function, the same in every session)."""


class GroupKey(NamedTuple):
    """One invocation: the repeats ``first_repeat`` .. ``+ repeat_count`` of one test on one
    agent variant. A NamedTuple, so a record read back compares equal to a plain tuple."""

    agent_id: str
    test_hash: str
    first_repeat: int
    repeat_count: int
    variant: str
    """Empty for the agent's main branch without override, else ``variant_hash``."""

    def batch(self, label: str = "") -> BatchKey:
        return BatchKey(
            self.agent_id, self.variant, label or str(self.first_repeat), self.repeat_count
        )


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


def fixed_windows(repeats: int) -> WindowOf:
    """Fixed repeats: every repeat of a test in one invocation (chunks of 50)."""
    return lambda job: Window(*repeat_window(job.repeat, repeats))


def wave_bounds(
    first: int, max_repeats: int, growth: float = 2.0, cap: int = MAX_REPEAT_COUNT
) -> tuple[int, ...]:
    """The repeat indices where sequential waves start, and ``max_repeats`` last: 0, then
    ``first``, then each total ``growth`` times the one before (at least one more), each wave
    at most ``cap`` (default 50 repeats, the API's ``repeat_count``) and the last ending at
    ``max_repeats``. (A comparison's waves of pairs are bounded the same way.)
    E.g. first 2, max 20: 0, 2, 4, 8, 16, 20. Geometric waves keep the invocations per case
    logarithmic in its repeats while a case decided in a wave ran at most that wave past it."""
    if max_repeats < 1:
        raise ValueError(f"max repeats must be at least 1 (got {max_repeats})")
    if growth <= 1 or cap < 1:
        raise ValueError(f"wave growth must exceed 1 and cap be positive (got {growth}, {cap})")
    bounds = [0]
    end = min(max(1, first), cap, max_repeats)
    while True:
        bounds.append(end)
        if end >= max_repeats:
            return tuple(bounds)
        grown = max(end + 1, math.ceil(end * growth))
        end = min(grown, end + cap, max_repeats)


def wave_window(repeat: int, bounds: Sequence[int]) -> Window:
    """The wave of ``bounds`` (``wave_bounds``) that holds ``repeat``. A repeat past the last
    bound (a run extended beyond the schedule) falls in chunks of 50 after it."""
    if repeat >= bounds[-1]:
        start = bounds[-1] + (repeat - bounds[-1]) // MAX_REPEAT_COUNT * MAX_REPEAT_COUNT
        return Window(start, MAX_REPEAT_COUNT)
    i = bisect.bisect_right(bounds, repeat) - 1
    return Window(bounds[i], bounds[i + 1] - bounds[i])


def wave_windows(bounds: Sequence[int]) -> WindowOf:
    """Sequential verdicts: a job's window is its repeat's wave."""
    frozen = tuple(bounds)
    return lambda job: wave_window(job.repeat, frozen)


def group_key(job: Job, test_hash: str, window: Window) -> GroupKey:
    return GroupKey(job.agent_id, test_hash, window.first, window.repeat_count, variant_hash(job))


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

    def batch_tag(self, batch: BatchKey) -> str:
        """``<run token>.<variant>.<first repeat or wave>-<count>``: names the run and which
        groups an invocation may hold (its tests say which)."""
        return f"{self.run_token}.{batch.variant or 'main'}.{batch.label}-{batch.repeat_count}"

    def name(self, batch: BatchKey, label: str) -> str:
        """``<prefix> <batch tag> <run name> session <id>: <label>``: the vendor's list shows
        which run and session started it, and a lost journal finds it again."""
        head = f"{self.prefix} {self.batch_tag(batch)} {self.run_name} session {self.session_id}: "
        return (head + label)[:_NAME_MAX]

    def tag_of(self, name: str | None) -> str:
        """The batch tag in an invocation's name ("" or another word if not one of ours)."""
        return (name or "").removeprefix(self.prefix + " ").split(" ", 1)[0]

    def is_this_runs(self, name: str | None) -> bool:
        return self.tag_of(name).startswith(self.run_token + ".")
