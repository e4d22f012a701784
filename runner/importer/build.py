"""A production conversation as a regression scenario, and the scenario file they go into.

Pure: a conversation (``runner.wire.conversations.Conversation``) and the agent's criteria in,
a scenario mapping in the config's format (``runner.config.models.ScenarioSpec``) out.

- ``prompt``: who the caller is and what the vendor's analysis says happened (its summary and
  the data it collected), then the caller's own lines, so the simulated user pursues the same
  requests; ``first_message``: the caller's first line (when the replay starts from scratch).
- ``user_dynamic_variables``: the caller's facts, i.e. the data collection's values;
  ``dynamic_variables``: the call's own dynamic variables without the vendor's ``system__*``.
- ``tool_mocks``: each tool the agent called, returning what it returned on that call (an
  error stays an error), so the replay meets the same outage or the same record.
- ``history`` (``--cut``): ``start`` keeps the opening up to the caller's first line;
  ``first-failure`` keeps everything before the first agent turn a failing criterion's
  rationale cites ("turn N", 1-based, as the vendor's and the local judge's rationales count),
  falling back to the first failed tool result, then to ``start``. The simulation then replays
  the lead-up and tests what the agent says next.
- ``criteria``: the criteria that failed (restricted to ``--criterion``), as the agent defines
  them, so the verdict the import is about is judged again.
- ``tags``: ``imported``, ``source:<conversation id>`` and ``source-hash:<16 hex>`` (sha256 of
  what the scenario was built from, after redaction, and the options): a second import finds
  its entry by the source id and replaces it, and tells unchanged from updated by the hash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from runner.importer.redact import redact
from runner.wire.conversations import Conversation
from runner.wire.simulate import TranscriptMessage

Cut = Literal["none", "start", "first-failure"]
SOURCE_TAG = "source:"
HASH_TAG = "source-hash:"
IMPORTED_TAG = "imported"
SYSTEM_PREFIX = "system__"
SYSTEM_TOOLS = frozenset({"transfer_to_agent", "transfer_to_number", "end_call", "skip_turn"})
"""The vendor's system tools: the platform runs them, there is nothing to mock."""
_TURN = re.compile(r"\bturn (\d+)\b")


@dataclass(frozen=True)
class Options:
    cut: Cut = "none"
    criterion: str | None = None
    redact: bool = True


@dataclass(frozen=True)
class Built:
    source_id: str
    source_hash: str
    entry: dict[str, Any]
    """The scenario, as written (``ScenarioSpec`` fields, in the config's key order)."""
    comment: str


@dataclass(frozen=True)
class Skipped:
    source_id: str
    reason: str


def _text_turns(transcript: list[TranscriptMessage], role: str) -> list[str]:
    return [m.message for m in transcript if m.role == role and m.message and m.message.strip()]


def _first_user_index(transcript: list[TranscriptMessage]) -> int | None:
    return next(
        (i for i, m in enumerate(transcript) if m.role == "user" and (m.message or "").strip()),
        None,
    )


def first_failure_index(conv: Conversation, failed: list[str]) -> int | None:
    """0-based index of the first agent turn a failing criterion cites, else of the first
    failed tool result; None when neither is found."""
    transcript = conv.transcript
    results = conv.analysis.evaluation_criteria_results if conv.analysis else {}
    cited: list[int] = []
    for cid in failed:
        item = results.get(cid)
        if item is None:
            continue
        for match in _TURN.finditer(item.rationale):
            index = int(match.group(1)) - 1
            if 0 <= index < len(transcript) and transcript[index].role == "agent":
                cited.append(index)
    if cited:
        return min(cited)
    return next(
        (i for i, m in enumerate(transcript) if any(r.is_error for r in m.tool_results)), None
    )


def cut_history(conv: Conversation, failed: list[str], cut: Cut) -> list[TranscriptMessage]:
    if cut == "none":
        return []
    opening = _first_user_index(conv.transcript)
    start = [] if opening is None else conv.transcript[: opening + 1]
    if cut == "start":
        return list(start)
    index = first_failure_index(conv, failed)
    if index is None or index <= len(start):
        return list(start)
    return conv.transcript[:index]


def _history_json(messages: list[TranscriptMessage]) -> list[dict[str, Any]]:
    """History messages with what a replay needs: role, text, tool calls and results, time."""
    out = []
    for m in messages:
        item: dict[str, Any] = {"role": m.role, "time_in_call_secs": m.time_in_call_secs}
        item["message"] = m.message
        if m.tool_calls:
            item["tool_calls"] = [
                c.model_dump(mode="json", exclude_none=True, include=_CALL_KEYS)
                for c in m.tool_calls
            ]
        if m.tool_results:
            item["tool_results"] = [
                r.model_dump(mode="json", exclude_none=True, include=_RESULT_KEYS)
                for r in m.tool_results
            ]
        out.append(item)
    return out


_CALL_KEYS = {"type", "request_id", "tool_name", "params_as_json", "tool_has_been_called"}
_RESULT_KEYS = {
    "type",
    "request_id",
    "tool_name",
    "result_value",
    "is_error",
    "tool_has_been_called",
    "tool_latency_secs",
}


def tool_mocks(conv: Conversation) -> dict[str, dict[str, Any]]:
    """Each non-system tool's first result in the call, as ``{return_value, is_error}``."""
    mocks: dict[str, dict[str, Any]] = {}
    for m in conv.transcript:
        for r in m.tool_results:
            if r.tool_name in SYSTEM_TOOLS or r.type == "system" or r.tool_name in mocks:
                continue
            mocks[r.tool_name] = {"return_value": r.result_value, "is_error": r.is_error}
    return dict(sorted(mocks.items()))


def _scalar(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def caller_facts(conv: Conversation) -> dict[str, Any]:
    data = conv.analysis.data_collection_results if conv.analysis else {}
    return {k: _scalar(v.value) for k, v in sorted(data.items()) if v.value not in (None, "")}


def agent_variables(conv: Conversation) -> dict[str, Any]:
    client = conv.conversation_initiation_client_data
    raw = (client.dynamic_variables if client else None) or {}
    return {
        k: _scalar(v)
        for k, v in sorted(raw.items())
        if not k.startswith(SYSTEM_PREFIX) and v is not None
    }


def failed_criteria(conv: Conversation) -> list[str]:
    results = conv.analysis.evaluation_criteria_results if conv.analysis else {}
    return [cid for cid, r in results.items() if r.result == "failure"]


def _prompt(conv: Conversation, facts: dict[str, Any], caller_lines: list[str]) -> str:
    agent = conv.agent_name or conv.agent_id
    parts = [f"You are a customer calling {agent}, as in a real call."]
    if caller_lines:  # first: the caller's own words are the requests to pursue
        said = " ".join(f"“{line.strip()}”" for line in caller_lines)
        parts.append(f"What you said on that call: {said}")
    if facts:
        given = "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in facts.items())
        parts.append(f"Your details, to give when asked: {given}.")
    if conv.analysis is not None and conv.analysis.transcript_summary.strip():
        parts.append(f"How that call went: {conv.analysis.transcript_summary.strip()}")
    return "\n".join(parts)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def build_scenario(
    conv: Conversation, criteria_defs: dict[str, dict[str, Any]], options: Options
) -> Built | Skipped:
    """The regression scenario of one conversation, or why there is none."""
    if not conv.transcript or not _text_turns(conv.transcript, "user"):
        return Skipped(conv.conversation_id, "no transcript (or the caller never spoke)")
    if conv.analysis is None:
        return Skipped(conv.conversation_id, "no analysis yet (the call is still processed)")
    failed = failed_criteria(conv)
    if options.criterion is not None:
        if options.criterion not in failed:
            return Skipped(conv.conversation_id, f"criterion {options.criterion} did not fail")
        failed = [options.criterion]
    criteria = [_criterion(cid, criteria_defs) for cid in failed if cid in criteria_defs]
    history = cut_history(conv, failed, options.cut)
    caller_lines = _text_turns(conv.transcript, "user")
    facts = caller_facts(conv)
    entry: dict[str, Any] = {
        "id": conv.conversation_id,
        "first_message": "" if history else caller_lines[0],
        "prompt": _prompt(conv, facts, caller_lines),
    }
    variables = agent_variables(conv)
    if variables:
        entry["dynamic_variables"] = variables
    if facts:
        entry["user_dynamic_variables"] = facts
    if history:
        entry["history"] = _history_json(history)
    mocks = tool_mocks(conv)
    if mocks:
        entry["tool_mocks"] = mocks
    if criteria:
        entry["criteria"] = criteria
    if options.redact:
        entry = redact(entry)
    source = {
        "options": {"cut": options.cut, "criterion": options.criterion, "redact": options.redact},
        "scenario": entry,
    }
    digest = hashlib.sha256(_canonical(source).encode()).hexdigest()[:16]
    entry["tags"] = [IMPORTED_TAG, f"{SOURCE_TAG}{conv.conversation_id}", f"{HASH_TAG}{digest}"]
    started = dt.datetime.fromtimestamp(conv.metadata.start_time_unix_secs, dt.UTC)
    outcome = conv.analysis.call_successful
    why = f"failed: {', '.join(failed)}" if failed else "no criterion failed"
    comment = f"{conv.conversation_id} (started {started:%Y-%m-%dT%H:%MZ}, call {outcome}; {why})"
    return Built(conv.conversation_id, digest, entry, comment)


def _criterion(cid: str, defs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    d = defs[cid]
    out: dict[str, Any] = {
        "id": cid,
        "name": d.get("name") or cid,
        "conversation_goal_prompt": d["conversation_goal_prompt"],
    }
    if d.get("scoring_mode") == "numeric_uniform":
        out["scoring_mode"] = "numeric_uniform"
        if d.get("max_score") is not None:
            out["max_score"] = d["max_score"]
    return out


# ---------------------------------------------------------------------------- the file

HEADER = (
    "# Regression scenarios imported from production conversations by\n"
    "#   python -m runner scenarios import --agent {agent}\n"
    "# One scenario per conversation; its tags name the source conversation and a hash of\n"
    "# what it was built from: importing again replaces an entry, it never duplicates it.\n"
)


def source_of(entry: Any) -> str | None:
    tags = entry.get("tags") if isinstance(entry, dict) else None
    for tag in tags or []:
        if isinstance(tag, str) and tag.startswith(SOURCE_TAG):
            return tag[len(SOURCE_TAG) :]
    return None


def hash_of(entry: Any) -> str | None:
    tags = entry.get("tags") if isinstance(entry, dict) else None
    for tag in tags or []:
        if isinstance(tag, str) and tag.startswith(HASH_TAG):
            return tag[len(HASH_TAG) :]
    return None


@dataclass(frozen=True)
class Merged:
    text: str
    added: int
    updated: int
    unchanged: int
    kept: int
    """Entries of the file that this import did not touch."""


def _dump(entry: dict[str, Any]) -> str:
    return yaml.safe_dump(
        [entry], sort_keys=False, allow_unicode=True, width=100, default_flow_style=False
    )


def merge_file(existing: list[Any], built: list[Built], agent_id: str) -> Merged:
    """The file's new text: existing entries in place (an imported one replaced by its new
    build), then the new ones in the order given. Same inputs, same bytes."""
    fresh = {b.source_id: b for b in built}
    used: set[str] = set()
    blocks: list[str] = []
    updated = unchanged = kept = 0
    for entry in existing:
        source = source_of(entry)
        if source is not None and source in fresh and source not in used:
            new = fresh[source]
            used.add(source)
            if hash_of(entry) == new.source_hash and entry == new.entry:
                unchanged += 1  # built from the same input, and not edited since
            else:
                updated += 1
            blocks.append(f"# {new.comment}\n{_dump(new.entry)}")
        elif source is not None and source in used:
            continue  # a duplicate left by hand: the one above replaced it
        else:
            kept += 1
            blocks.append(_dump(entry))
    added = 0
    for b in built:
        if b.source_id not in used:
            used.add(b.source_id)
            added += 1
            blocks.append(f"# {b.comment}\n{_dump(b.entry)}")
    text = HEADER.format(agent=agent_id) + "\n" + "\n".join(blocks)
    return Merged(text, added, updated, unchanged, kept)
