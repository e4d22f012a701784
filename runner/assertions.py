"""Deterministic assertions on a finished conversation (issue 30). Pure: no I/O, no clock.

A judge can err; much of what a team checks needs none: was a tool called with these
arguments, did the agent ever say a card number, did the call end within N turns, did the agent
answer quickly. Each kind here is a pure function of a transcript (``Message``: the wire's
messages as a finished job holds them, or ``Turn``s read back from the ``messages`` table)
returning a ``Verdict``: ``success`` / ``failure`` / ``unknown`` (the data needed was not
recorded) and a rationale citing the message indexes (``#3``) and quoting them, or saying what
was never seen. The transcript is read as it is, never copied: evaluating five assertions
costs a few percent of the client's CPU per simulation (``python -m bench.assertions``).

The kinds (a closed set; ``runner.config.assertions`` builds them from the config):

- ``ToolCalled``: the agent called ``tool`` at least once, with ``with_`` a subset of its
  arguments (nested mappings match as subsets; keys may be JSON paths: ``$.a.b[0]``, ``a.b``).
- ``AgentNeverMatches``: no agent utterance matches the regex.
- ``AgentSays``: some agent utterance matches one of the regexes (case-insensitive), only in
  messages after ``after_tool``'s first result when given.
- ``MaxTurns``: the conversation has at most ``limit`` spoken turns.
- ``FirstAgentMessageWithin``: the agent's first message after the user's first message came
  within ``secs`` of it (``time_in_call_secs``; whole seconds as the API reports them).

An *utterance* is a run of consecutive agent messages with text, joined with a space: a message
cut by an interruption or delivered in several chunks is matched as one. A user message or an
agent message without text (a pure tool call or tool result) ends an utterance. A *spoken turn*
is such a run for either role: consecutive text messages of one role count once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

import orjson

from runner.analysis.agreement import Agreement as Agreement  # re-exported: one home
from runner.analysis.agreement import agreement as agreement
from runner.analysis.sources import ASSERT_SOURCE as SOURCE
from runner.analysis.sources import is_assert as is_assert
from runner.regex_search import Finder
from runner.wire.simulate import TranscriptMessage

Result = Literal["success", "failure", "unknown"]

QUOTE_CHARS = 80
"""Longest quote in a rationale (the match with some context)."""


# ---------------------------------------------------------------------------- the transcript


class CallLike(Protocol):
    @property
    def tool_name(self) -> str: ...

    @property
    def params_as_json(self) -> str: ...


class ResultLike(Protocol):
    @property
    def tool_name(self) -> str: ...

    @property
    def result_value(self) -> str: ...

    @property
    def is_error(self) -> bool: ...


class Message(Protocol):
    """What an assertion reads of a message: the wire's ``TranscriptMessage`` as a finished job
    holds it, or a ``Turn`` read back from the ``messages`` table (the same names)."""

    @property
    def role(self) -> str: ...

    @property
    def message(self) -> str | None: ...

    @property
    def time_in_call_secs(self) -> float | None: ...

    @property
    def tool_calls(self) -> Sequence[CallLike]: ...

    @property
    def tool_results(self) -> Sequence[ResultLike]: ...


@dataclass(slots=True)
class ToolCallSeen:
    tool_name: str
    params_as_json: str


@dataclass(slots=True)
class ToolResultSeen:
    tool_name: str
    result_value: str
    is_error: bool


@dataclass(slots=True)
class Turn:
    """One stored message: the ``messages`` table's columns an assertion reads. A message's
    position in the transcript is its ``index`` (the rows are read back in order)."""

    role: str
    message: str | None = None
    time_in_call_secs: float | None = None
    tool_calls: tuple[ToolCallSeen, ...] = ()
    tool_results: tuple[ToolResultSeen, ...] = ()
    interrupted: bool = False


def turns_from_messages(messages: Sequence[TranscriptMessage]) -> Sequence[Message]:
    """A finished job's transcript as the assertions read it: as it is (no copy, no CPU)."""
    return messages


def turns_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[Turn]:
    """One job's rows of the stored ``messages`` table (any order) as the assertions read them.
    Missing columns read as absent (null timings: ``unknown`` where a kind needs them)."""
    out = []
    for row in sorted(rows, key=lambda r: r["index"]):
        out.append(
            Turn(
                role=row["role"],
                message=row.get("message"),
                time_in_call_secs=row.get("time_in_call_secs"),
                tool_calls=tuple(
                    ToolCallSeen(c["tool_name"], c.get("params_as_json") or "")
                    for c in row.get("tool_calls") or ()
                ),
                tool_results=tuple(
                    ToolResultSeen(r["tool_name"], r.get("result_value") or "", bool(r["is_error"]))
                    for r in row.get("tool_results") or ()
                ),
                interrupted=bool(row.get("interrupted")),
            )
        )
    return out


class Verdict(NamedTuple):
    """What one assertion concluded of one transcript (a tuple: five are built per job)."""

    result: Result
    rationale: str


@dataclass(slots=True)
class _Utterance:
    """Agent messages joined into one text; ``spans``: (message index, start, end) in it."""

    text: str
    spans: list[tuple[int, int, int]]

    def indexes(self, start: int, end: int) -> list[int]:
        """Messages the text span [start, end) touches."""
        hit = [i for i, a, b in self.spans if a < max(end, start + 1) and b > start]
        return hit or [self.spans[0][0]]


def _runs(said: Sequence[tuple[int, str]]) -> list[_Utterance]:
    """The agent's spoken messages (index, text) as utterances: a message right after another
    of them (index one more) continues its run."""
    out: list[_Utterance] = []
    current: _Utterance | None = None
    previous = -2
    for i, text in said:
        if current is not None and i == previous + 1:
            at = len(current.text) + 1
            current.text += " " + text
            current.spans.append((i, at, at + len(text)))
        else:
            current = _Utterance(text, [(i, 0, len(text))])
            out.append(current)
        previous = i
    return out


class Transcript:
    """A transcript read once per job, in one pass over its messages, into what the kinds ask
    of it: its tool calls and results (index, item), the first message of each spoken turn,
    the user's first message and the agent's first answer to it (index, role, text stripped),
    and the agent's spoken messages (index, text). Utterances and their texts joined (one
    search of a pattern over all of them) are built from those when first asked: a search
    usually needs only the joined text.
    """

    __slots__ = (
        "_joined",
        "_utterances",
        "agent_said",
        "answer",
        "calls",
        "continued",
        "messages",
        "opening",
        "results",
        "turn_starts",
        "user_turns",
    )

    def __init__(self, messages: Sequence[Message]) -> None:
        self.messages = messages
        calls: list[tuple[int, CallLike]] = []
        results: list[tuple[int, ResultLike]] = []
        starts: list[tuple[int, str, str]] = []
        agent_said: list[tuple[int, str]] = []
        opening = answer = None
        user_turns = 0
        role = None
        continued = False
        last_agent = -2
        for i, m in enumerate(messages):
            if m.tool_calls:
                calls.extend([(i, c) for c in m.tool_calls])
            if m.tool_results:
                results.extend([(i, r) for r in m.tool_results])
            text = m.message
            if not text or not (text := text.strip()):
                continue
            if m.role != role:  # a spoken turn starts
                role = m.role
                said = (i, role, text)
                starts.append(said)
                if role == "user":
                    user_turns += 1
                    if opening is None:
                        opening = said
                elif role == "agent" and opening is not None and answer is None:
                    answer = said
            if role == "agent":
                agent_said.append((i, text))
                continued = continued or last_agent == i - 1
                last_agent = i
        self.calls = calls
        """Every tool call with the index of its message, in order."""
        self.results = results
        """Every tool result with the index of its message, in order."""
        self.turn_starts = starts
        self.user_turns = user_turns
        self.opening = opening
        """The user's first spoken message (None: the user never spoke)."""
        self.answer = answer
        """The agent's first spoken message after ``opening``."""
        self.agent_said = agent_said
        """The agent's messages with text (index, text stripped), in order."""
        self.continued = continued
        """Some agent message continues the one before it (an utterance of several)."""
        self._utterances: dict[int, list[_Utterance]] = {}
        self._joined: dict[int, str] = {}

    def said_after(self, after: int = -1) -> list[tuple[int, str]]:
        """The agent's messages with text whose index is above ``after``."""
        said = self.agent_said
        return said if after < 0 else [s for s in said if s[0] > after]

    def utterances(self, after: int = -1) -> list[_Utterance]:
        """Runs of consecutive agent messages with text (index > ``after``), each joined: a
        user message or a message without text (a tool call or result) ends a run."""
        found = self._utterances.get(after)
        if found is None:
            found = self._utterances[after] = _runs(self.said_after(after))
        return found

    def joined(self, after: int = -1) -> str:
        """The texts of ``utterances(after)`` joined by a line break (``Finder.maybe_in``)."""
        found = self._joined.get(after)
        if found is None:
            if self.continued:
                texts = [u.text for u in self.utterances(after)]
            else:  # every utterance is one message
                texts = [text for _, text in self.said_after(after)]
            found = self._joined[after] = _SEPARATOR.join(texts)
        return found


def _transcript(given: Sequence[Message] | Transcript) -> Transcript:
    return given if isinstance(given, Transcript) else Transcript(given)


# ---------------------------------------------------------------------------- searching

_SEPARATOR = "\n"
r"""Between utterances in ``Transcript.joined``: not a word character, so ``\b`` and ``\B`` at
an utterance's edge read the same as at the edge of the utterance alone."""


def _literal(text: str) -> str:
    """``json.dumps(text, ensure_ascii=False)``, the same characters out, without building an
    encoder per call (``json.dumps`` with a keyword does; it was most of a rationale's cost).
    orjson refuses a lone surrogate, which the standard encoder writes as an escape."""
    try:
        return orjson.dumps(text).decode()
    except orjson.JSONEncodeError:
        return json.dumps(text, ensure_ascii=False)


def _quote(text: str, start: int = 0, end: int | None = None) -> str:
    """The text around [start, end), at most ``QUOTE_CHARS`` characters, as a quoted literal."""
    if len(text) <= QUOTE_CHARS or (not start and (end is None or end >= len(text))):
        return _literal(text)  # short, or the span is the whole text: all of it
    end = len(text) if end is None else end
    room = max(QUOTE_CHARS - (end - start), 0)
    lo = max(start - room // 2, 0)
    hi = min(max(end, lo + QUOTE_CHARS), len(text))
    lo = max(min(lo, hi - QUOTE_CHARS), 0)
    body = _literal(text[lo:hi])
    return ("..." if lo > 0 else "") + body + ("..." if hi < len(text) else "")


def _cite(indexes: Sequence[int]) -> str:
    return "+".join(f"#{i}" for i in indexes)


# ---------------------------------------------------------------------------- the kinds


class Assertion(Protocol):
    """What every kind offers: its id, the judged criterion it mirrors, and its evaluation."""

    @property
    def id(self) -> str: ...

    @property
    def mirrors(self) -> str | None: ...

    @property
    def kind(self) -> str: ...

    def evaluate(self, transcript: Sequence[Message] | Transcript) -> Verdict: ...


_PATH_RE = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


def json_path(path: str) -> list[str | int]:
    """``$.a.b[0].c`` (or ``a.b[0].c``) as keys and list indexes; ValueError when malformed."""
    text = path[1:] if path.startswith("$") else path
    steps: list[str | int] = []
    pos = 0
    while pos < len(text):
        match = _PATH_RE.match(text, pos)
        if match is None or (pos == 0 and text.startswith(".") and path[:1] != "$"):
            raise ValueError(f"is not a JSON path like $.order.items[0].sku (got {path!r})")
        steps.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    if not steps:
        raise ValueError(f"is not a JSON path like $.order.items[0].sku (got {path!r})")
    return steps


def _is_path(key: str) -> bool:
    return key.startswith("$") or "." in key or "[" in key


_MISSING = object()


def _at(value: Any, steps: Sequence[str | int]) -> Any:
    for step in steps:
        if isinstance(step, int) and isinstance(value, list) and -len(value) <= step < len(value):
            value = value[step]
        elif isinstance(step, str) and isinstance(value, dict) and step in value:
            value = value[step]
        else:
            return _MISSING
    return value


def _scalar_equal(want: Any, got: Any) -> bool:
    """Equal, or equal as text (YAML's ``20`` matches the JSON string ``"20"``); a boolean only
    equals a boolean."""
    if isinstance(want, bool) or isinstance(got, bool):
        return want is got
    if want == got:
        return True
    if isinstance(want, dict | list) or isinstance(got, dict | list):
        return False
    return want is not None and got is not None and str(want) == str(got)


def _mismatch(want: Any, got: Any, where: str) -> str | None:
    """Why ``got`` does not contain ``want`` (subset match), or None when it does."""
    if isinstance(want, Mapping):
        if not isinstance(got, dict):
            return f"{where or 'arguments'} is {json.dumps(got)[:40]}, not an object"
        for key, value in want.items():
            if _is_path(key):
                found = _at(got, json_path(key))
                label = key
            else:
                found = got.get(key, _MISSING)
                label = f"{where}.{key}" if where else key
            if found is _MISSING:
                return f"no {label}"
            why = _mismatch(value, found, label)
            if why:
                return why
        return None
    if isinstance(want, list):
        if not isinstance(got, list):
            return f"{where} is not a list"
        for i, item in enumerate(want):
            if all(_mismatch(item, g, f"{where}[{i}]") for g in got):
                return f"{where} has no item matching {json.dumps(item, ensure_ascii=False)}"
        return None
    if not _scalar_equal(want, got):
        shown = json.dumps(got, ensure_ascii=False)
        return f"{where} is {shown[:40]}, not {json.dumps(want, ensure_ascii=False)}"
    return None


@dataclass(frozen=True, slots=True)
class ToolCalled:
    id: str
    tool: str
    with_: Mapping[str, Any] | None = None
    mirrors: str | None = None
    kind: str = field(default="tool_called", init=False)

    def evaluate(self, transcript: Sequence[Message] | Transcript) -> Verdict:
        every = _transcript(transcript).calls
        tool = self.tool
        calls = [(i, c) for i, c in every if c.tool_name == tool]
        if not calls:
            others = sorted({c.tool_name for _, c in every})
            called = ", ".join(others) if others else "none"
            return Verdict("failure", f"{self.tool} was never called (tools called: {called})")
        if not self.with_:
            first = calls[0]
            more = f" (of {len(calls)} calls: {_cite([i for i, _ in calls])})" if calls[1:] else ""
            return Verdict(
                "success",
                f"{self.tool} called at #{first[0]} with {_quote(first[1].params_as_json)}{more}",
            )
        misses = []
        for index, call in calls:
            try:
                params = json.loads(call.params_as_json) if call.params_as_json else {}
            except ValueError:
                misses.append(f"#{index}: arguments are not JSON {_quote(call.params_as_json)}")
                continue
            why = _mismatch(self.with_, params, "")
            if why is None:
                return Verdict(
                    "success",
                    f"{self.tool} called at #{index} with {_quote(call.params_as_json)}"
                    + (f" ({len(calls)} calls)" if calls[1:] else ""),
                )
            misses.append(f"#{index}: {why}")
        return Verdict(
            "failure",
            f"{self.tool} called {len(calls)}x, never with the expected arguments: "
            + "; ".join(misses),
        )


@dataclass(frozen=True, slots=True)
class AgentNeverMatches:
    id: str
    pattern: re.Pattern[str]
    mirrors: str | None = None
    kind: str = field(default="agent_never_matches", init=False)
    _finder: Finder = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_finder", Finder(self.pattern))

    def evaluate(self, transcript: Sequence[Message] | Transcript) -> Verdict:
        t = _transcript(transcript)
        said = t.agent_said
        if not said:
            return Verdict("success", "no agent message with text: nothing could match")
        finder = self._finder
        for utterance in t.utterances() if finder.maybe_in(t.joined()) else ():
            match = finder.search(utterance.text)
            if match:
                at = _cite(utterance.indexes(match.start(), match.end()))
                return Verdict(
                    "failure",
                    f"agent at {at}: {_quote(utterance.text, match.start(), match.end())} "
                    f"matches {self.pattern.pattern!r}",
                )
        return Verdict(
            "success",
            f"none of the agent's {len(said)} messages matches {self.pattern.pattern!r}",
        )


@dataclass(frozen=True, slots=True)
class AgentSays:
    id: str
    patterns: tuple[re.Pattern[str], ...]
    after_tool: str | None = None
    mirrors: str | None = None
    kind: str = field(default="agent_says", init=False)
    _finders: tuple[Finder, ...] = field(init=False, repr=False, compare=False)
    _wanted: str = field(init=False, repr=False, compare=False)
    """The patterns as a rationale names them."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_finders", tuple(Finder(p) for p in self.patterns))
        object.__setattr__(self, "_wanted", " or ".join(repr(p.pattern) for p in self.patterns))

    def evaluate(self, given: Sequence[Message] | Transcript) -> Verdict:
        transcript = _transcript(given)
        after, scope = -1, "the agent"
        if self.after_tool is not None:
            tool = self.after_tool
            results = [i for i, r in transcript.results if r.tool_name == tool]
            if not results:
                return Verdict(
                    "failure",
                    f"no result of {self.after_tool} was ever seen, so nothing after it could "
                    f"say {self._wanted}",
                )
            after, scope = (
                results[0],
                f"the agent after {self.after_tool}'s result at #{results[0]}",
            )
        said = transcript.said_after(after)
        if not said:
            return Verdict("failure", f"{scope} said nothing (no agent message with text)")
        finders = self._finders
        if any(f.local for f in finders):
            joined = transcript.joined(after)
            finders = tuple(f for f in finders if f.maybe_in(joined))
        for utterance in transcript.utterances(after) if finders else ():
            for finder in finders:
                match = finder.search(utterance.text)
                if match:
                    pattern = finder.pattern
                    at = _cite(utterance.indexes(match.start(), match.end()))
                    return Verdict(
                        "success",
                        f"agent at {at}: {_quote(utterance.text, match.start(), match.end())} "
                        f"matches {pattern.pattern!r}",
                    )
        return Verdict("failure", f"{scope} never said {self._wanted} (in {len(said)} messages)")


@dataclass(frozen=True, slots=True)
class MaxTurns:
    id: str
    limit: int
    mirrors: str | None = None
    kind: str = field(default="max_turns", init=False)

    def evaluate(self, transcript: Sequence[Message] | Transcript) -> Verdict:
        t = _transcript(transcript)
        starts = t.turn_starts  # the first message of each spoken turn
        n, users = len(starts), t.user_turns
        by_role = ", ".join(
            f"{role} {count}" for role, count in (("user", users), ("agent", n - users)) if count
        )
        counted = f"{n} spoken turns" + (f" ({by_role})" if by_role else "")
        if n <= self.limit:
            return Verdict("success", f"{counted}, at most {self.limit}")
        index, role, text = starts[self.limit]
        return Verdict(
            "failure",
            f"{counted}, more than {self.limit}: turn {self.limit + 1} starts at #{index} "
            f"({role}: {_quote(text)})",
        )


@dataclass(frozen=True, slots=True)
class FirstAgentMessageWithin:
    id: str
    secs: float
    mirrors: str | None = None
    kind: str = field(default="first_agent_message_within_secs", init=False)

    def evaluate(self, transcript: Sequence[Message] | Transcript) -> Verdict:
        t = _transcript(transcript)
        user = t.opening
        if user is None:
            return Verdict("unknown", "no user message, so no agent answer to time")
        agent = t.answer
        if agent is None:
            return Verdict(
                "failure", f"the agent never answered the user's first message (#{user[0]})"
            )
        said = t.messages[user[0]].time_in_call_secs
        answered = t.messages[agent[0]].time_in_call_secs
        if said is None or answered is None:
            missing = _cite([i for i, x in ((user[0], said), (agent[0], answered)) if x is None])
            return Verdict(
                "unknown", f"no time_in_call_secs recorded for {missing}: the delay is not known"
            )
        delay = answered - said
        verdict: Result = "success" if delay <= self.secs else "failure"
        word = "within" if verdict == "success" else "later than"
        return Verdict(
            verdict,
            f"agent answered at #{agent[0]} {delay:g}s after the user's #{user[0]} "
            f"({word} {self.secs:g}s; whole seconds as the API reports them): "
            f"{_quote(agent[2])}",
        )


# ---------------------------------------------------------------------------- rows


def evaluate_all(assertions: Sequence[Assertion], turns: Sequence[Message]) -> list[Verdict]:
    transcript = Transcript(turns)
    return [a.evaluate(transcript) for a in assertions]


def assertion_rows(
    job_key: str, turns: Sequence[Message], assertions: Sequence[Assertion]
) -> list[dict[str, Any]]:
    """One criteria-table row per assertion (``source``: ``assert``) for one finished job."""
    rows = []
    transcript = Transcript(turns)
    for a in assertions:
        verdict = a.evaluate(transcript)
        rows.append(
            {
                "job_key": job_key,
                "criterion_id": a.id,
                "name": a.kind,
                "result": verdict.result,
                "rationale": verdict.rationale,
                "score": None,
                "max_score": None,
                "source": SOURCE,
            }
        )
    return rows
