"""Shards: a sweep split into N parts that run anywhere and write into one run directory.

Pure: which shard a job belongs to, and which shard this process is (from ``--shard I/N`` or
the environment an engine sets). A job's shard is a hash of its key modulo N, so the same job
is in the same shard on every machine and in every session (resume needs no coordination),
and a hash spreads the jobs evenly whatever the config's order.

Some jobs must share a shard: the agent-testing backend runs the repeats of one test as one
invocation, which each shard holding some of them would start and pay for. Those jobs are
split by group instead (``split_groups``): whole groups, balanced by their jobs (the groups
themselves: ``runner.plan.shard_homes``).

Engines that run an array of identical workers set an index in the environment:

- Kubernetes Indexed Jobs: ``JOB_COMPLETION_INDEX`` (0-based); the count is the Job's
  ``completions``, given to the runner as ``--shards N``.
- Slurm job arrays: ``SLURM_ARRAY_TASK_ID`` and ``SLURM_ARRAY_TASK_COUNT`` (the index counted
  from ``SLURM_ARRAY_TASK_MIN``, so ``--array=1-8`` works as well as ``0-7``).
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Mapping
from dataclasses import dataclass

K8S_INDEX = "JOB_COMPLETION_INDEX"
SLURM_ID = "SLURM_ARRAY_TASK_ID"
SLURM_COUNT = "SLURM_ARRAY_TASK_COUNT"
SLURM_MIN = "SLURM_ARRAY_TASK_MIN"

MAX_SHARDS = 100_000

_SPEC = re.compile(r"(\d+)/(\d+)")


class ShardError(ValueError):
    """A shard that cannot be: a bad ``I/N``, or no index in the environment."""


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ShardError(f"the shard count must be 1 to {MAX_SHARDS} (got {self.count})")
        if not 0 <= self.index < self.count:
            raise ShardError(
                f"shard index {self.index} is out of range for {self.count} shard(s) "
                f"(0 to {self.count - 1})"
            )

    @property
    def name(self) -> str:
        """How the shard names its files: ``2-of-8``."""
        return f"{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, job_key: str) -> bool:
        """Split by job key (``runner.plan.shard_homes`` says which split a run uses)."""
        return shard_of(job_key, self.count) == self.index


def shard_of(job_key: str, count: int) -> int:
    """The shard a job belongs to: 64 bits of a hash of its key, modulo ``count``."""
    digest = hashlib.blake2b(job_key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def split_groups(sizes: Mapping[str, int], count: int) -> dict[str, int]:
    """Each group (key -> its jobs) to a shard: the largest first, each to the shard with the
    fewest jobs so far (the lowest index on a tie), so no shard is more than one group above
    an even share. Ordered by size, then a hash of the key, then the key: the same split on
    every machine, whatever order the groups came in."""
    order = sorted(sizes, key=lambda key: (-sizes[key], shard_of(key, 1 << 62), key))
    loads = [(0, index) for index in range(count)]
    homes: dict[str, int] = {}
    for key in order:
        load, index = heapq.heappop(loads)
        homes[key] = index
        heapq.heappush(loads, (load + sizes[key], index))
    return homes


def parse_shard(text: str) -> Shard:
    """``I/N`` (0-based index) as a ``Shard``."""
    match = _SPEC.fullmatch(text.strip())
    if match is None:
        raise ShardError(f"--shard takes I/N, e.g. 0/4, or 'auto' (got {text!r})")
    return Shard(int(match[1]), int(match[2]))


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name)
    if value is None or not value.strip():
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise ShardError(f"{name}={value!r} is not a number") from None


def shard_from_env(env: Mapping[str, str], count: int | None = None) -> Shard:
    """This process's shard from an engine's environment (``--shard auto``). ``count`` is
    ``--shards N``: required with Kubernetes, which does not export the count; with Slurm it
    must agree with ``SLURM_ARRAY_TASK_COUNT`` when given."""
    slurm_id = _env_int(env, SLURM_ID)
    if slurm_id is not None:
        slurm_count = _env_int(env, SLURM_COUNT)
        if slurm_count is None:
            raise ShardError(f"{SLURM_ID} is set but {SLURM_COUNT} is not")
        if count is not None and count != slurm_count:
            raise ShardError(f"--shards {count} disagrees with {SLURM_COUNT}={slurm_count}")
        low = _env_int(env, SLURM_MIN) or 0
        return Shard(slurm_id - low, slurm_count)
    k8s_index = _env_int(env, K8S_INDEX)
    if k8s_index is not None:
        if count is None:
            raise ShardError(
                f"{K8S_INDEX} is set: give the shard count with --shards N (the Job's completions)"
            )
        return Shard(k8s_index, count)
    raise ShardError(
        f"--shard auto: no shard index in the environment ({K8S_INDEX} of a Kubernetes "
        f"Indexed Job, or {SLURM_ID} of a Slurm array)"
    )


def resolve_shard(spec: str | None, count: int | None, env: Mapping[str, str]) -> Shard | None:
    """``--shard SPEC`` and ``--shards N`` as a shard (None: not sharded)."""
    if spec is None:
        return None
    if spec.strip() == "auto":
        return shard_from_env(env, count)
    shard = parse_shard(spec)
    if count is not None and count != shard.count:
        raise ShardError(f"--shard {spec} disagrees with --shards {count}")
    return shard


def shard_for_run(
    spec: str | None, count: int | None, env: Mapping[str, str], *, ray: bool = False
) -> Shard | None:
    """The shard ``run`` runs, from ``--shard``, ``--shards`` and ``--ray`` (None: the whole
    sweep, or Ray starting every shard itself); ``ShardError`` when they make no sense."""
    if ray:
        if spec is not None:
            raise ShardError("--ray starts every shard itself: give --shards N, not --shard")
        return None
    shard = resolve_shard(spec, count, env)
    if shard is None and count is not None:
        raise ShardError("--shards N needs --shard I/N or --shard auto (or --ray)")
    return shard
