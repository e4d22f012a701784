"""The local API's reading helpers and post-call pieces: intents by keyword, data collection,
the call outcome and the summary. The criteria verdicts are ``criteria``'s job."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from runner.localapi.agents import AgentDef, DataFieldDef, IntentDef
from runner.wire.simulate import (
    Analysis,
    CriterionResult,
    DataCollectionResult,
    Result,
    TranscriptMessage,
)

# ---------------------------------------------------------------------------- text helpers

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each either
    else even ever every few for from further get gets got had has have having he her here hers
    him his how i if in into is it its itself just let like made make many may me might more
    most much must my no nor not now of off on once one only or other our out over own per
    please really same shall she should so some such than that the their them then there these
    they this those through to too under until up upon us very was way we well were what when
    where whether which while who whom why will with within without would yes yet you your
    yours""".split()
)

GENERIC_WORDS = frozenset(
    """agent agents user users customer customers caller callers client person conversation
    conversations call calls chat interaction determine evaluate evaluation assess check
    checked ensure ensured verify whether rate rating score judge criterion criteria goal goals
    successfully success successful fully correctly properly completely clearly appropriately
    accurately quickly politely entire entirely throughout overall always never
    polite politeness courteous courtesy friendly professional professionalism respectful
    respect empathetic empathy empathize tone manner helpful help helped helping assist
    assisted assistance clear concise patient patience kind rude calm apologize apologise
    apology greet greeted greeting introduce introduced themselves itself yourself
    resolve resolved resolving resolution solve solved issue issues problem problems
    request requests question questions need needs answer answered answers respond responded
    response responses reply replied handle handled concern concerns provide provided
    information info relevant accurate correct good bad well best stay stayed remain remained
    keep kept offer offered give gave given giving ask asked asking detail details
    end ending next step steps happen happens happened know knew knows understand understood
    expect expected outcome outcomes only anything everything something else make making made
    scope decline declined declining refuse refused invent invented fabricate fabricated
    state stated tell told say said mention mentioned""".split()
)

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def stem(word: str) -> str:
    """A crude suffix stripper: enough for "orders"/"order", "booking"/"booked"/"book"."""
    for suffix in ("ing", "ied", "ies", "ed", "es", "s", "y"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            if suffix == "s" and word.endswith("ss"):
                return word
            return word[: -len(suffix)]
    return word


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def stems_of(text: str) -> set[str]:
    return {stem(w) for w in words(text)}


_GENERIC_STEMS = frozenset(stem(w) for w in GENERIC_WORDS)


def content_words(text: str) -> list[str]:
    """Ordered, de-duplicated stems of the words that carry meaning."""
    return list(_content_words(text))


@functools.lru_cache(maxsize=8192)
def _content_words(text: str) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for w in words(text):
        if w in STOPWORDS or len(w) < 3 or w.isdigit() or "'" in w:
            continue
        seen.setdefault(stem(w), None)
    return tuple(seen)


def topic_words(text: str) -> list[str]:
    """Content words minus the vocabulary all criteria share: what the criterion is *about*."""
    return [w for w in content_words(text) if w not in _GENERIC_STEMS]


REQUEST_CUE = re.compile(
    r"\b(?:want|wants|wanted|need|needs|would like|'d like|like to|ask|asks|request|find out|"
    r"know|wonder|wondering|book|cancel|change|check|help|get|buy|return|complain|question|"
    r"recommend|tell me)\b|\?",
    re.IGNORECASE,
)
CLOSING = re.compile(
    r"\b(?:that's all|that is all|that's it|that is it|nothing else|goodbye|bye)\b",
    re.IGNORECASE,
)


def is_request(text: str) -> bool:
    """A sentence that asks for something (a cue word or a question mark)."""
    return REQUEST_CUE.search(text) is not None


def keyword_hits(intent: IntentDef, text: str) -> int:
    """How many of the intent's keywords occur in ``text`` (as words, with common suffixes)."""
    lowered = text.lower()
    return sum(1 for kw in intent.keywords if _keyword(kw).search(lowered) is not None)


@functools.cache
def _keyword(keyword: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(keyword)}(?:s|es|ed|ing|d)?\b")


def match_intent(agent: AgentDef, text: str) -> IntentDef | None:
    """The intent with the most keyword hits (the earlier one on a tie), if any."""
    best: IntentDef | None = None
    best_hits = 0
    for intent in agent.intents:
        hits = keyword_hits(intent, text)
        if hits > best_hits:
            best, best_hits = intent, hits
    return best


# ---------------------------------------------------------------------------- goals


GoalStatus = Literal[
    "pending", "active", "resolved", "failed", "declined", "improvised", "abandoned"
]


@dataclass(frozen=True)
class GoalOutcome:
    """What became of one of the simulated user's goals."""

    text: str
    intent_id: str | None
    status: GoalStatus


# ---------------------------------------------------------------------------- data collection

_MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
}
_COUNT = r"(\d{1,2}|" + "|".join(_NUMBER_WORDS) + r")"

EXTRACTOR_PATTERNS: dict[str, re.Pattern[str]] = {
    "order_number": re.compile(
        r"\border\b(?:\s+(?:number|no\.?|id|#))?\s*(?:is\s+)?[:#]?\s*([a-z]{0,4}-?\d[\da-z-]{2,})"
        r"|#([a-z]{0,4}-?\d[\da-z-]{2,})",
        re.IGNORECASE,
    ),
    "email": re.compile(r"([\w.+-]+@[\w-]+(?:\.[\w-]+)+)"),
    "date": re.compile(
        r"\b(\d{4}-\d{2}-\d{2}"
        rf"|{_MONTHS}\.? \d{{1,2}}(?:st|nd|rd|th)?(?:,? \d{{4}})?"
        rf"|\d{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTHS}(?: \d{{4}})?"
        r"|(?:next |this )?(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
        r"|tomorrow|today|tonight)\b",
        re.IGNORECASE,
    ),
    "time": re.compile(
        r"\b(\d{1,2}(?::\d{2})?\s?(?:am|pm|a\.m\.|p\.m\.)|\d{1,2}:\d{2})", re.IGNORECASE
    ),
    "party_size": re.compile(
        rf"\b(?:party of|table for|we(?:'ll| will)? be|we are|we're)\s+{_COUNT}\b"
        rf"(?!\s*(?:am|pm|:|o'clock))|\b{_COUNT}\s+(?:people|persons|guests|adults|of us)\b",
        re.IGNORECASE,
    ),
    "phone": re.compile(r"(\+?\d[\d ().-]{6,}\d)"),
    "name": re.compile(
        r"\b(?:[Mm]y name is|[Tt]his is|I'm|I am)\s+([A-Z][a-z]+(?:\s[A-Z][a-z]+)?)"
    ),
}


def field_pattern(field: DataFieldDef) -> re.Pattern[str]:
    if field.pattern is not None:
        return re.compile(field.pattern)
    assert field.extractor is not None  # guaranteed by DataFieldDef's validator
    return EXTRACTOR_PATTERNS[field.extractor]


def extract_value(field: DataFieldDef, text: str) -> str | None:
    """The last value of ``field`` in ``text`` (people correct themselves), or None."""
    found: str | None = None
    for match in field_pattern(field).finditer(text):
        groups = [g for g in match.groups() if g]
        value = (groups[0] if groups else match.group(0)).strip().rstrip("-.,")
        if value:
            found = value
    return found


def coerce_value(field: DataFieldDef, raw: str) -> Any:
    """Turn an extracted string into the field's declared JSON type (or keep the string)."""
    text = raw.strip().lower()
    if field.type == "integer":
        if text in _NUMBER_WORDS:
            return _NUMBER_WORDS[text]
        digits = re.search(r"-?\d+", text)
        return int(digits.group(0)) if digits else raw
    if field.type == "number":
        num = re.search(r"-?\d+(?:\.\d+)?", text)
        return float(num.group(0)) if num else raw
    if field.type == "boolean":
        return text in {"yes", "true", "y", "1", "yeah", "yep", "sure"}
    return raw


def collect_data(
    agent: AgentDef, transcript: Sequence[TranscriptMessage]
) -> dict[str, DataCollectionResult]:
    """Extract each data-collection field from the user's messages; the last mention wins."""
    results: dict[str, DataCollectionResult] = {}
    for field in agent.data_collection:
        value: Any = None
        rationale = f"No user message gave the {field.spoken_label}."
        for index, msg in enumerate(transcript):
            if msg.role != "user" or not msg.message:
                continue
            raw = extract_value(field, msg.message)
            if raw is not None:
                value = coerce_value(field, raw)
                rationale = (
                    f"The user gave the {field.spoken_label} {raw!r} in message {index + 1}."
                )
        results[field.id] = DataCollectionResult(
            data_collection_id=field.id,
            value=value,
            json_schema={
                "type": field.type,
                "description": field.description or f"The user's {field.spoken_label}.",
            },
            rationale=rationale,
        )
    return results


# ---------------------------------------------------------------------------- outcomes


def call_outcome(results: Sequence[CriterionResult]) -> Result:
    """``failure`` if any criterion failed, ``success`` if one succeeded, else ``unknown``."""
    outcomes = {r.result for r in results}
    if "failure" in outcomes:
        return "failure"
    return "success" if "success" in outcomes else "unknown"


def success_score(results: Sequence[CriterionResult]) -> float | None:
    """Mean of the judged criteria: 1/0 for binary, score/max_score for numeric ones."""
    values = []
    for r in results:
        if r.result == "unknown":
            continue
        if r.score is not None and r.max_score:
            values.append(min(1.0, max(0.0, r.score / r.max_score)))
        else:
            values.append(1.0 if r.result == "success" else 0.0)
    return round(sum(values) / len(values), 4) if values else None


# ---------------------------------------------------------------------------- summary

STATUS_WORDS: dict[str, str] = {
    "pending": "not reached",
    "active": "unfinished",
    "resolved": "resolved",
    "failed": "failed",
    "declined": "declined as out of scope",
    "improvised": "answered although out of scope",
    "abandoned": "abandoned by the user",
}

END_REASONS = {
    "user_done": "the user had what they needed and the agent closed the call",
    "agent_hung_up": "the agent ended the call before the user was done",
    "agent_closed": "the agent closed the call",
    "transferred": "the agent transferred the caller to a colleague",
    "user_left": "the user left the call",
    "turn_limit": "the turn limit was reached",
    "no_new_turns": "no new turns were allowed",
}


def summarise(
    agent: AgentDef, goals: Sequence[GoalOutcome], end_reason: str, n_messages: int
) -> tuple[str, str]:
    """A two-to-three sentence summary and a short title, from goal outcomes."""
    titles = {i.id: (i.title or i.id.replace("_", " ")) for i in agent.intents}
    if goals:
        parts = []
        for g in goals:
            topic = titles.get(g.intent_id or "", "") or _clip(g.text.rstrip(".!?"), 60)
            parts.append(f"{topic} ({STATUS_WORDS[g.status]})")
        about = "; ".join(parts)
        summary = f"The user contacted {agent.name} about: {about}."
    else:
        summary = f"The user contacted {agent.name} without a specific request."
    reason = END_REASONS.get(end_reason, end_reason)
    summary += f" The call lasted {n_messages} messages and ended because {reason}."
    first = goals[0] if goals else None
    if first is None:
        title = "Brief call"
    elif first.intent_id in titles:
        title = titles[first.intent_id].capitalize()
    else:
        title = "Out-of-scope request"
    return summary, title


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# ---------------------------------------------------------------------------- wire


def analysis_json(analysis: Analysis) -> dict[str, Any]:
    """The analysis as sent on the wire: unset optional fields left out, but a data-collection
    ``value`` that was not found stays an explicit null (the field is always reported)."""
    body = analysis.model_dump(mode="json", exclude_none=True)
    for item in body.get("data_collection_results", {}).values():
        item.setdefault("value", None)
    return body
