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
at ``max_pairs``. Resume: the planner is built with the outcomes already stored; the draw
sequence is the same (the same seed), so it skips the pairs that are complete, dispatches the
missing member of a half-done pair, and feeds the complete pairs to the rule in the order
they finished. Its state is a pure function of the stored outcomes.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from runner.config.body import canonical_json
from runner.jobs import Job, key_hasher, variant_identity
from runner.paired import Decision, NonInferiority, Outcome, difference, job_outcome
from runner.planner import WAIT, Finished, Wait

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
    ) -> None:
        """``in_flight``: most jobs out at once (the run's concurrency): more pairs queued
        ahead of the workers would all run after the decision, paid for and unused."""
        if not cases:
            raise ValueError("compare: the baseline and the candidate share no case")
        self.cases, self.rule, self.of = list(cases), rule, of
        self._pairs: list[tuple[Job, Job]] = []
        rng, drawn = random.Random(seed), [0] * len(self.cases)
        for _ in range(rule.max_pairs):  # the whole draw sequence: outcome-free, reproducible
            i = rng.randrange(len(self.cases))
            base, cand = self.cases[i]
            self._pairs.append((at_repeat(base, drawn[i]), at_repeat(cand, drawn[i])))
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

    @property
    def pairs(self) -> Sequence[tuple[Job, Job]]:
        """The draw sequence: pair k is ``pairs[k]`` (``max_pairs`` of them)."""
        return self._pairs

    def next(self) -> Job | Wait | None:
        if self._queue:
            return self._hand(self._queue.pop(0))
        if self.decision.stop:
            return None
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
