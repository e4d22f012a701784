"""Jobs: a config expanded into the requests to send, each with a stable key.

A job is one request: agent x scenario x matrix cell x repeat. Its key is a digest of exactly
what is sent (agent id, body, the simulation test's own fields, repeat), so reordering the
config keeps every key and a changed scenario changes only its own jobs' keys: a resumed run
redoes what changed, nothing else.
``iter_jobs`` streams the scenario files again, so memory does not grow with a sweep's size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from runner.assertions import Assertion
from runner.config.assertions import build_all
from runner.config.body import (
    agent_override,
    build_body,
    canonical_json,
    encode_body,
    simulation_test_fields,
)
from runner.config.models import Config
from runner.config.scenarios import iter_scenarios, scenario_count

__all__ = ["REUSED_CELLS", "Job", "case_key", "count_jobs", "iter_jobs", "job_key"]


@dataclass(frozen=True, slots=True)
class Job:
    """One request to send: agent x scenario x matrix cell x repeat.

    ``body`` is shared by every job of the same scenario and cell (read it, never change it);
    ``content`` is that body as the exact bytes sent, encoded once for all of them.
    """

    key: str
    agent_id: str
    agent_label: str
    scenario_id: str
    matrix: tuple[tuple[str, str], ...]
    repeat: int
    body: dict[str, Any]
    content: bytes = b""
    branch_id: str | None = None
    """The agent's branch (agent-testing; None: the main branch)."""
    agent_override: dict[str, Any] | None = None
    """``agent_config_override`` from the cell's agent axes (agent-testing only)."""
    test_fields: dict[str, Any] | None = None
    """The scenario's own simulation-test fields (agent-testing; ``simulation_test_fields``)."""
    assertions: tuple[Assertion, ...] = ()
    """The config's then the scenario's ``assert:`` entries, built (not sent; not in the key)."""
    tags: tuple[str, ...] = ()
    """The scenario's ``tags`` (not sent; not in the key): ``run --tag`` selects by them."""

    def __post_init__(self) -> None:
        if not self.content:  # a job built by hand: encode its body here, once
            object.__setattr__(self, "content", encode_body(self.body))


def case_key(job: Job) -> str:
    """A case's identity as text (agent, branch, scenario, matrix cell: what repeats repeat).
    A sharded run with sequential repeats hashes it: a case's repeats stay in one shard, the
    only one that sees all of its outcomes."""
    cells = "\0".join(f"{axis}={value}" for axis, value in job.matrix)
    return f"{job.agent_id}\0{job.branch_id or ''}\0{job.scenario_id}\0{cells}"


def job_key(
    agent_id: str,
    body: Mapping[str, Any],
    repeat: int,
    *,
    branch_id: str | None = None,
    override: Mapping[str, Any] | None = None,
) -> str:
    """A job's stable identity: what is sent, to whom, and which repeat (resume relies on it).
    A branch or an agent override is part of "to whom"; without them the key is as before."""
    return key_hasher(variant_identity(agent_id, branch_id, override), canonical_json(body))(repeat)


def variant_identity(
    agent_id: str, branch_id: str | None, override: Mapping[str, Any] | None
) -> str:
    """The agent as the key sees it: its id, plus its branch and override when there are."""
    if branch_id is None and not override:
        return agent_id
    return agent_id + "\0" + canonical_json({"branch_id": branch_id, "override": override})


def key_hasher(agent_id: str, canonical_body: str) -> Callable[[int], str]:
    """``job_key`` for one agent and body, the shared part hashed once: the same digest as
    ``canonical_json({"agent_id", "body", "repeat"})`` (its keys sort in that order)."""
    head = hashlib.sha256(
        f'{{"agent_id":{canonical_json(agent_id)},"body":{canonical_body},"repeat":'.encode()
    )

    def key(repeat: int) -> str:
        h = head.copy()
        h.update(b"%d}" % repeat)
        return h.hexdigest()[:24]

    return key


def cell_text(value: Any) -> str:
    return value if isinstance(value, str) else canonical_json(value)


REUSED_CELLS = 4096
"""Sweeps with at most this many scenario x cell combinations build each request body once and
reuse it for every repeat; larger ones stream their scenario files again for each repeat, so
memory never grows with a sweep's size."""


@dataclass(frozen=True, slots=True)
class _Cell:
    """What every job of one scenario in one matrix cell shares."""

    scenario_id: str
    labels: tuple[tuple[str, str], ...]
    body: dict[str, Any]
    content: bytes
    keys: tuple[Callable[[int], str], ...]  # per agent: repeat -> job key
    override: dict[str, Any] | None
    test_fields: dict[str, Any] | None
    assertions: tuple[Assertion, ...] = ()
    tags: tuple[str, ...] = ()


def _iter_cells(cfg: Config) -> Iterator[_Cell]:
    for spec in iter_scenarios(cfg):
        checks = build_all(cfg.assert_, spec.assert_)
        for cell in cfg.matrix_cells():
            body = build_body(cfg, spec, cell)
            fields = simulation_test_fields(cfg, spec)
            # sent beside the body (in the test): part of the key, which stays as before
            # without them
            canonical = canonical_json(body if fields is None else {"body": body, "test": fields})
            override = agent_override(cell)
            yield _Cell(
                scenario_id=spec.id,
                labels=tuple(sorted((axis, cell_text(value)) for axis, value in cell)),
                body=body,
                content=encode_body(body),
                keys=tuple(
                    key_hasher(variant_identity(agent.id, agent.branch_id, override), canonical)
                    for agent in cfg.agents
                ),
                override=override,
                test_fields=fields,
                assertions=checks,
                tags=tuple(spec.tags),
            )


def iter_jobs(cfg: Config) -> Iterator[Job]:
    """Every job, lazily: for repeat, for scenario, for matrix cell, for agent.

    Repeat-major order means a partial run has covered every scenario early. Scenario files
    are streamed again (and checked unchanged since loading), unless the sweep is small enough
    to keep its cells (``REUSED_CELLS``).
    """
    reuse = cfg.run.max_repeats > 1 and scenario_count(cfg) * cfg.cell_count() <= REUSED_CELLS
    kept: list[_Cell] = []
    for repeat in range(cfg.run.max_repeats):
        cells = kept if reuse and repeat > 0 else _iter_cells(cfg)
        for c in cells:
            if reuse and repeat == 0:
                kept.append(c)
            for agent, key in zip(cfg.agents, c.keys, strict=True):
                yield Job(
                    key=key(repeat),
                    agent_id=agent.id,
                    agent_label=agent.display,
                    scenario_id=c.scenario_id,
                    matrix=c.labels,
                    repeat=repeat,
                    body=c.body,
                    content=c.content,
                    branch_id=agent.branch_id,
                    agent_override=c.override,
                    test_fields=c.test_fields,
                    assertions=c.assertions,
                    tags=c.tags,
                )


def count_jobs(cfg: Config) -> int:
    """agents x scenarios x matrix cells x repeats, without building a job."""
    return len(cfg.agents) * scenario_count(cfg) * cfg.cell_count() * cfg.run.max_repeats
