"""The pairing planner of a ``compare:`` run (issue 26): dispatch (baseline, candidate) pairs
until the paired rule decides. Pure: jobs and outcomes in, the next job out.

A *case* is what the two variants share: the scenario, the matrix cell less the axes that
tell the arms apart, and the agent unless an arm names the agent. Pair k is drawn from the
cases uniformly at random by a generator seeded with ``run.seed`` (with replacement: the n-th
draw of a case runs its repeat index n, for both variants), so the sequence of cases is fixed
before any outcome is seen. That is what ``runner.paired``'s guarantee needs: each pair's
difference has the same mean (the average over the cases) whatever came before; a fixed
scenario order would not give it. The two members of a pair are handed out one after the
other, and each pair's difference goes to the rule in the order pairs complete.

Dispatching stops once the rule decides (pairs in flight still finish and are counted) or
at ``max_pairs``.

Waves (``waves``: the agent-testing backend, whose invocations run many repeats of a test at
once): pairs are handed out a wave at a time, the next wave once every job of the one before
ended and only while undecided. Within a wave, a case drawn k times runs k consecutive
repeats for each variant; those are one invocation per variant (``window_of``: the repeats,
and a wave label by which groups of one wave share a run-tests call). The waves and windows
follow from the draw sequence alone, so a resumed run groups its jobs as the first session
did and re-attaches to its invocations.

Resume: the planner is built with the outcomes already stored; the draw
sequence is the same (the same seed), so it skips the pairs that are complete, dispatches the
missing member of a half-done pair, and feeds the complete pairs to the rule in the order
they finished. Its state is a pure function of the stored outcomes.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from runner.config.body import canonical_json
from runner.jobs import Job, key_hasher, variant_identity
from runner.paired import Decision, NonInferiority, Outcome, difference, job_outcome
from runner.planner import WAIT, Finished, Wait

_CHUNK = 50
"""Most repeats of one invocation (the vendor's ``repeat_count``)."""

Side = Literal["baseline", "candidate"]
SIDES: tuple[Side, Side] = ("baseline", "candidate")
Arm = Mapping[str, str]
"""``{"agent": label}`` and / or ``{"matrix.<axis>": value}`` (``CompareConfig.arm``)."""


def at_repeat(job: Job, repeat: int) -> Job:
    """The same job at another repeat index, with the key a sweep of that many repeats gives
    it (``runner.jobs.iter_jobs`` hashes the body, with the test fields when there are)."""
    content = job.body if job.test_fields is None else {"body": job.body, "test": job.test_fields}
    identity = variant_identity(job.agent_id, job.branch_id, job.agent_override)
    key = key_hasher(identity, canonical_json(content))(repeat)
    return replace(job, key=key, repeat=repeat)


def _matches(job: Job, arm: Arm) -> bool:
    cell = dict(job.matrix)
    for column, value in arm.items():
        if column == "agent":
            names = {job.agent_label, job.agent_id}
            if job.branch_id is not None:
                names.add(f"{job.agent_id}@{job.branch_id}")
            if value not in names:
                return False
        elif cell.get(column.removeprefix("matrix.")) != value:
            return False
    return True


def pair_cases(jobs: Iterable[Job], baseline: Arm, candidate: Arm) -> list[tuple[Job, Job]]:
    """(baseline job, candidate job) per case, in the sweep's order, from its repeat-0 jobs.
    Jobs of neither arm are not part of the comparison; a case with only one side is
    skipped; two jobs of one side for a case is a ``ValueError`` (the arms are ambiguous)."""
    axes = {c.removeprefix("matrix.") for arm in (baseline, candidate) for c in arm if c != "agent"}
    by_agent = "agent" in baseline or "agent" in candidate
    found: dict[tuple[object, ...], dict[Side, Job]] = {}
    for job in jobs:
        if job.repeat != 0:
            continue
        for side, arm in zip(SIDES, (baseline, candidate), strict=True):
            if not _matches(job, arm):
                continue
            cell = tuple(item for item in job.matrix if item[0] not in axes)
            agent = None if by_agent else (job.agent_id, job.branch_id)
            case = (job.scenario_id, cell, agent)
            sides = found.setdefault(case, {})
            if side in sides:
                raise ValueError(
                    f"compare.{side}: two jobs for one case (scenario {job.scenario_id}); "
                    "name one agent or matrix arm"
                )
            sides[side] = job
    return [(s["baseline"], s["candidate"]) for s in found.values() if len(s) == 2]


@dataclass(frozen=True)
class Stored:
    """A job of an earlier session, as the planner needs it: its outcome and when it ended
    (any sortable stamp)."""

    outcome: Outcome
    finished: float


class PairPlanner:
    """The planner of a ``compare:`` run (module docstring)."""

    observes = True

    def __init__(
        self,
        cases: Sequence[tuple[Job, Job]],
        rule: NonInferiority,
        of: str | Sequence[str] = "all",
        seed: int = 0,
        done: Mapping[str, Stored] | None = None,
        in_flight: int | None = None,
        waves: Sequence[int] | None = None,
    ) -> None:
        """``in_flight``: most jobs out at once (the run's concurrency): more pairs queued
        ahead of the workers would all run after the decision, paid for and unused.
        ``waves``: the pair indices where waves start, then ``max_pairs`` (module docstring)."""
        if not cases:
            raise ValueError("compare: the baseline and the candidate share no case")
        self.cases, self.rule, self.of = list(cases), rule, of
        self._pairs: list[tuple[Job, Job]] = []
        self._drawn: list[int] = []
        """The case of each pair."""
        rng, drawn = random.Random(seed), [0] * len(self.cases)
        for _ in range(rule.max_pairs):  # the whole draw sequence: outcome-free, reproducible
            i = rng.randrange(len(self.cases))
            base, cand = self.cases[i]
            self._pairs.append((at_repeat(base, drawn[i]), at_repeat(cand, drawn[i])))
            self._drawn.append(i)
            drawn[i] += 1
        self._where = {
            job.key: (k, s) for k, pair in enumerate(self._pairs) for s, job in enumerate(pair)
        }
        self._known: dict[int, dict[int, Outcome]] = {}
        self._queue: list[Job] = []
        self._next = 0
        self.diffs: list[int | None] = []
        """Each complete pair's difference, in the order the pairs completed."""
        self.dispatched = 0
        """Jobs handed out this session."""
        self._cap = None if in_flight is None else max(2, in_flight)
        self._out = 0
        complete: list[tuple[float, int, int | None]] = []
        for k, pair in enumerate(self._pairs):
            stored = [done.get(job.key) if done else None for job in pair]
            for s, item in enumerate(stored):
                if item is not None:
                    self._known.setdefault(k, {})[s] = item.outcome
            if all(item is not None for item in stored):
                b, c = (item.outcome for item in stored if item is not None)
                finished = max(item.finished for item in stored if item is not None)
                complete.append((finished, k, difference(b, c, rule.error_as)))
        self.diffs = [d for _, _, d in sorted(complete, key=lambda t: (t[0], t[1]))]
        self.resumed_pairs = len(self.diffs)
        self.decision: Decision = rule.decide(self.diffs)
        self.waves = None if waves is None else tuple(waves)
        self._wave = 0
        self._windows: dict[str, tuple[int, int, str]] = {}
        if self.waves is not None:
            self._windows = self._wave_windows(self.waves)

    def _wave_windows(self, bounds: tuple[int, ...]) -> dict[str, tuple[int, int, str]]:
        """Job key -> (first repeat, repeats, wave label) of its invocation: a case's draws
        within one wave (consecutive repeats), in chunks of 50 (the vendor's most repeats)."""
        if bounds[0] != 0 or list(bounds) != sorted(set(bounds)) or bounds[-1] < len(self._pairs):
            raise ValueError(f"waves: increasing pair indices from 0 to max_pairs (got {bounds})")
        windows: dict[str, tuple[int, int, str]] = {}
        for w, (start, end) in enumerate(itertools.pairwise(bounds)):
            runs: dict[tuple[int, int], list[Job]] = {}
            for k in range(start, min(end, len(self._pairs))):
                for side, job in enumerate(self._pairs[k]):
                    runs.setdefault((self._drawn[k], side), []).append(job)
            for jobs in runs.values():
                for c in range(0, len(jobs), _CHUNK):
                    chunk = jobs[c : c + _CHUNK]
                    label = f"p{w}" if c == 0 else f"p{w}.{c // _CHUNK}"
                    for job in chunk:
                        windows[job.key] = (chunk[0].repeat, len(chunk), label)
        return windows

    def window_of(self, job: Job) -> tuple[int, int, str]:
        """(first repeat, repeats, wave label) of the invocation that runs ``job``
        (``waves``); a job of no wave (not drawn) runs alone."""
        return self._windows.get(job.key, (job.repeat, 1, f"j{job.repeat}"))

    @property
    def pairs(self) -> Sequence[tuple[Job, Job]]:
        """The draw sequence: pair k is ``pairs[k]`` (``max_pairs`` of them)."""
        return self._pairs

    def next(self) -> Job | Wait | None:
        if self._queue:
            return self._hand(self._queue.pop(0))
        if self.decision.stop:
            return None
        if self.waves is not None:
            return self._next_wave()
        if self._cap is not None and self._out + 2 > self._cap:
            return WAIT
        while self._next < len(self._pairs):
            k = self._next
            self._next += 1
            known = self._known.get(k, {})
            missing = [job for s, job in enumerate(self._pairs[k]) if s not in known]
            if missing:
                self._queue.extend(missing[1:])
                return self._hand(missing[0])
        return None

    def _next_wave(self) -> Job | Wait | None:
        """The next wave's missing jobs, once every job of the one before has ended."""
        assert self.waves is not None
        if self._out:
            return WAIT
        while self._wave + 1 < len(self.waves):
            start, end = self.waves[self._wave], self.waves[self._wave + 1]
            self._wave += 1
            for k in range(start, min(end, len(self._pairs))):
                known = self._known.get(k, {})
                self._queue.extend(job for s, job in enumerate(self._pairs[k]) if s not in known)
            if self._queue:
                return self._hand(self._queue.pop(0))
        return None

    def _hand(self, job: Job) -> Job:
        self.dispatched += 1
        self._out += 1
        return job

    def observe(self, finished: Finished) -> None:
        where = self._where.get(finished.key)
        if where is None:
            return
        self._out -= 1
        outcome = job_outcome(finished.status, finished.criteria, self.of)
        if outcome is None:  # cancelled: the pair never completes
            return
        k, s = where
        known = self._known.setdefault(k, {})
        known[s] = outcome
        if len(known) == 2:
            self.diffs.append(difference(known[0], known[1], self.rule.error_as))
            self.decision = self.rule.decide(self.diffs)
