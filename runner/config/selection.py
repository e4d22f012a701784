"""Part of a sweep: ``run --agent``, ``--scenario`` and ``--tag`` (glob patterns, repeatable).

A selection narrows which of the sweep's jobs a session sends; it never changes a job's key,
so a later run of the whole sweep (or a resume) reuses every result the part paid for. Patterns
of one kind are alternatives (any matches); kinds combine (every kind given must match).
An agent pattern matches the agent's id, its label or ``id@branch_id``; a tag pattern matches
any of the scenario's ``tags``. Checked against the config before anything is sent: a pattern
that matches nothing is a one-line error naming it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from runner.config.errors import ConfigError

if TYPE_CHECKING:  # models holds a Selection: these two import it
    from runner.config.models import AgentRef, Config

SHOWN = 8
"""How many known names a "matches nothing" error lists."""


def _any(patterns: Sequence[str], names: Iterable[str]) -> bool:
    names = list(names)
    return any(fnmatchcase(name, p) for p in patterns for name in names)


def agent_names(agent: AgentRef) -> tuple[str, ...]:
    """The names an ``--agent`` pattern is matched against."""
    return tuple(dict.fromkeys((agent.id, agent.display, agent.variant_name)))


@dataclass(frozen=True)
class Selection:
    """Which agents, scenarios and tags a session runs (empty: no narrowing of that kind)."""

    agents: tuple[str, ...] = ()
    scenarios: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.agents or self.scenarios or self.tags)

    def agent(self, names: Iterable[str]) -> bool:
        return not self.agents or _any(self.agents, names)

    def scenario(self, scenario_id: str, tags: Iterable[str]) -> bool:
        if self.scenarios and not _any(self.scenarios, [scenario_id]):
            return False
        return not self.tags or _any(self.tags, tags)

    def describe(self) -> str:
        """``--agent a --tag t`` as typed (for messages and the resume command)."""
        parts = [
            f"--{flag} {p}"
            for flag, patterns in (("agent", self.agents), ("scenario", self.scenarios))
            for p in patterns
        ]
        parts += [f"--tag {p}" for p in self.tags]
        return " ".join(parts)


def _none_matched(flag: str, pattern: str, known: list[str], what: str) -> ConfigError:
    listed = ", ".join(known[:SHOWN]) + (", ..." if len(known) > SHOWN else "")
    return ConfigError(
        f"--{flag} {pattern!r} matches no {what} of the config ({what}s: {listed or 'none'})"
    )


def check_selection(cfg: Config, selection: Selection) -> None:
    """Every pattern matches something, and some job is left: else ``ConfigError`` naming the
    pattern (before anything is sent)."""
    from runner.config.scenarios import iter_scenarios

    names = [n for agent in cfg.agents for n in agent_names(agent)]
    for pattern in selection.agents:
        if not _any([pattern], names):
            raise _none_matched("agent", pattern, [a.display for a in cfg.agents], "agent")
    scenarios = [(spec.id, tuple(spec.tags)) for spec in iter_scenarios(cfg)]
    for pattern in selection.scenarios:
        if not _any([pattern], (sid for sid, _ in scenarios)):
            raise _none_matched("scenario", pattern, [sid for sid, _ in scenarios], "scenario")
    all_tags = sorted({t for _, tags in scenarios for t in tags})
    for pattern in selection.tags:
        if not _any([pattern], all_tags):
            raise _none_matched("tag", pattern, all_tags, "tag")
    if not any(selection.scenario(sid, tags) for sid, tags in scenarios):
        raise ConfigError(f"{selection.describe()}: no scenario matches every option together")
