"""``assert:`` entries, per config and per scenario: deterministic checks beside ``criteria``.

One entry names exactly one kind of ``runner.assertions`` (the kinds and what each checks are
documented there) with its options; every regex and JSON path is checked here, at load, so a
mistake is one line naming the field before any request. Which tools an agent has is known only
at run time (the vendor's agent holds them, not the config), so tool names are not checked
against the agents here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runner import assertions as kinds

KINDS = (
    "tool_called",
    "agent_never_matches",
    "agent_says",
    "max_turns",
    "first_agent_message_within_secs",
)
"""The closed set of kinds: an entry names exactly one of them."""

_ID_RE = re.compile(r"[A-Za-z0-9_-]+")


def _compiles(value: str, flags: int = 0) -> re.Pattern[str]:
    try:
        return re.compile(value, flags)
    except re.error as exc:
        raise ValueError(f"is not a valid regular expression ({exc}): {value!r}") from None


def _paths(value: Any, where: str = "") -> None:
    """Every JSON-path key of a ``with`` mapping parses (nested mappings too)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("$") or "." in key or "[" in key:
                try:
                    kinds.json_path(key)
                except ValueError as exc:
                    raise ValueError(f"key {where}{key!r} {exc}") from None
            _paths(item, f"{where}{key}.")
    elif isinstance(value, list):
        for item in value:
            _paths(item, where)


class AssertSpec(BaseModel):
    """One ``assert:`` entry: an id, one kind with its options, and optionally the judged
    criterion it mirrors (for agreement with the judge)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str
    mirrors: str | None = None
    """Id of a judged criterion this assertion checks too: the report shows how often the two
    agree."""
    tool_called: str | None = Field(default=None, min_length=1)
    """The agent called this tool (an errored call counts: it was called)."""
    with_: dict[str, Any] | None = Field(default=None, alias="with")
    """With these arguments: a subset match; keys may be JSON paths (``$.items[0].sku``)."""
    agent_never_matches: str | None = Field(default=None, min_length=1)
    """No agent utterance matches this regex (as written: add ``(?i)`` to ignore case)."""
    agent_says: str | list[str] | None = None
    """Some agent utterance matches this regex, case-insensitive; a list: any of them."""
    after_tool: str | None = Field(default=None, min_length=1)
    """With ``agent_says``: only agent messages after this tool's first result count."""
    max_turns: int | None = Field(default=None, ge=1, strict=True)
    """At most this many spoken turns (consecutive messages of one speaker count once)."""
    first_agent_message_within_secs: float | None = Field(default=None, gt=0)
    """The agent's first answer to the user came within this many seconds of call time."""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID_RE.fullmatch(value):
            raise ValueError(
                f"must be non-empty and contain only letters, digits, '_' and '-' (got {value!r})"
            )
        return value

    @field_validator("agent_never_matches")
    @classmethod
    def _never(cls, value: str | None) -> str | None:
        if value is not None:
            _compiles(value)
        return value

    @field_validator("agent_says")
    @classmethod
    def _says(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and not value:
            raise ValueError("must be a regex or a non-empty list of regexes")
        for i, item in enumerate([value] if isinstance(value, str) else value or []):
            if not item:
                raise ValueError(f"item {i} is empty")
            try:
                _compiles(item, re.IGNORECASE)
            except ValueError as exc:
                where = "" if isinstance(value, str) else f"item {i} "
                raise ValueError(f"{where}{exc}") from None
        return value

    @field_validator("with_")
    @classmethod
    def _with(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        _paths(value)
        return value

    @field_validator("first_agent_message_within_secs", mode="before")
    @classmethod
    def _secs(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> AssertSpec:
        named = [k for k in KINDS if getattr(self, k) is not None]
        if not named:
            raise ValueError(f"names no kind of assertion (one of: {', '.join(KINDS)})")
        if len(named) > 1:
            raise ValueError(
                f"names {len(named)} kinds ({', '.join(named)}); write one entry per kind"
            )
        if self.with_ is not None and self.tool_called is None:
            raise ValueError("'with' goes with tool_called only")
        if self.after_tool is not None and self.agent_says is None:
            raise ValueError("'after_tool' goes with agent_says only")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    def tools(self) -> list[str]:
        """The tool names this entry refers to (for a check against an agent's tools)."""
        return [t for t in (self.tool_called, self.after_tool) if t is not None]

    def build(self) -> kinds.Assertion:
        """The pure assertion this entry describes (its regexes compiled)."""
        if self.tool_called is not None:
            return kinds.ToolCalled(self.id, self.tool_called, self.with_, self.mirrors)
        if self.agent_never_matches is not None:
            return kinds.AgentNeverMatches(
                self.id, re.compile(self.agent_never_matches), self.mirrors
            )
        if self.agent_says is not None:
            texts = [self.agent_says] if isinstance(self.agent_says, str) else self.agent_says
            return kinds.AgentSays(
                self.id,
                tuple(re.compile(t, re.IGNORECASE) for t in texts),
                self.after_tool,
                self.mirrors,
            )
        if self.max_turns is not None:
            return kinds.MaxTurns(self.id, self.max_turns, self.mirrors)
        assert self.first_agent_message_within_secs is not None
        return kinds.FirstAgentMessageWithin(
            self.id, self.first_agent_message_within_secs, self.mirrors
        )


def build_all(*groups: Iterable[AssertSpec]) -> tuple[kinds.Assertion, ...]:
    """The pure assertions of several ``assert:`` lists (the config's, then a scenario's)."""
    return tuple(spec.build() for group in groups for spec in group)


def unknown_tools(specs: Iterable[AssertSpec], tools: Iterable[str]) -> list[str]:
    """One line per entry naming a tool not in ``tools`` (an agent's tools, when known)."""
    have = set(tools)
    out = []
    for spec in specs:
        for field, tool in (("tool_called", spec.tool_called), ("after_tool", spec.after_tool)):
            if tool is not None and tool not in have:
                known = ", ".join(sorted(have)) or "none"
                out.append(f"assert {spec.id}: {field}: no agent has a tool {tool!r} ({known})")
    return out


def dump(specs: Iterable[AssertSpec]) -> list[dict[str, Any]]:
    """Entries as the config file would write them (for the resolved config and its hash)."""
    return [spec.model_dump(mode="json", by_alias=True, exclude_none=True) for spec in specs]
