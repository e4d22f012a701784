"""The local API's post-call analysis: criteria judging, data collection and the summary.

The real service asks an LLM to judge each criterion. Here the rule is transparent and cheap, so
that results are explainable from the transcript alone, yet noisy enough (seeded) that repeats
of one scenario disagree sometimes, as they do against the real service:

1. The criterion's *topic words* are the content words of its ``conversation_goal_prompt`` minus
   the vocabulary every criterion shares ("agent", "user", "polite", "resolve", ...).
2. With topic words, the criterion applies only if the user raised at least one of them (in a
   user message, as a keyword of an agent intent a user message triggered, or in a tool call
   the agent made); otherwise the result is ``unknown`` (the conversation never
   reached that topic). Without topic words it is a behaviour criterion ("the agent was
   polite") and applies to any conversation with a user message and an agent reply.
3. The evidence of a topical criterion is ``0.2 * coverage + 0.8 * resolution``: the share of
   the raised topic words the agent's messages also use, and the share of the related user
   goals that got resolved (talking about a problem is not solving it). A behaviour criterion
   depends less on the outcome: ``0.6 + 0.4 * resolution``.
4. The pass chance is ``skill * evidence``, ``skill`` being the criterion's quality knob. A
   seeded draw below the pass chance is a ``success``. Numeric criteria draw a level around
   the pass chance instead (score = level * max_score) and succeed at half marks or more.

``call_successful`` is ``failure`` if any criterion failed, else ``success`` if at least one
succeeded, else ``unknown`` (nothing could be judged).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from runner.localapi.agents import AgentDef, DataFieldDef, IntentDef
from runner.wire.simulate import (
    Analysis,
    CriterionResult,
    DataCollectionResult,
    EvaluationCriterion,
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
    seen: dict[str, None] = {}
    for w in words(text):
        if w in STOPWORDS or len(w) < 3 or w.isdigit() or "'" in w:
            continue
        seen.setdefault(stem(w), None)
    return list(seen)


def topic_words(text: str) -> list[str]:
    """Content words minus the vocabulary all criteria share: what the criterion is *about*."""
    return [w for w in content_words(text) if w not in _GENERIC_STEMS]


def keyword_hits(intent: IntentDef, text: str) -> int:
    """How many of the intent's keywords occur in ``text`` (as words, with common suffixes)."""
    lowered = text.lower()
    return sum(
        1
        for kw in intent.keywords
        if re.search(rf"\b{re.escape(kw)}(?:s|es|ed|ing|d)?\b", lowered) is not None
    )


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


GoalStatus = Literal["pending", "active", "resolved", "failed", "declined"]


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


# ---------------------------------------------------------------------------- criteria


@dataclass(frozen=True)
class CriterionSpec:
    """A criterion to judge, from the agent's definition or the request's extras."""

    id: str
    name: str
    goal_prompt: str
    scoring_mode: str
    max_score: int
    skill: float


def criteria_for(
    agent: AgentDef, extra: Sequence[EvaluationCriterion] | None
) -> list[CriterionSpec]:
    """Built-in then extra criteria; an extra criterion replaces a built-in one with its id."""
    specs: dict[str, CriterionSpec] = {}
    for c in agent.evaluation_criteria:
        specs[c.id] = CriterionSpec(
            id=c.id,
            name=c.name,
            goal_prompt=c.conversation_goal_prompt,
            scoring_mode=c.scoring_mode,
            max_score=c.max_score,
            skill=agent.quality.default_skill if c.skill is None else c.skill,
        )
    for e in extra or ():
        specs[e.id] = CriterionSpec(
            id=e.id,
            name=e.name,
            goal_prompt=e.conversation_goal_prompt,
            scoring_mode=e.scoring_mode,
            max_score=e.max_score,
            skill=agent.quality.default_skill,
        )
    return list(specs.values())


@dataclass(frozen=True)
class TranscriptWords:
    """Stems said by each side, computed once per analysis."""

    user: frozenset[str]
    agent: frozenset[str]
    exchanged: bool
    """At least one user message with text, and an agent text message after it."""


def transcript_words(agent: AgentDef, transcript: Sequence[TranscriptMessage]) -> TranscriptWords:
    """Each side's words include the keywords of the agent intents its messages match (a user
    who asks to "book a table" has raised the topic of a "reservation"), and both include the
    agent's tool calls (what was looked up was raised and acted upon)."""
    user: set[str] = set()
    by_agent: set[str] = set()
    seen_user = exchanged = False
    for msg in transcript:
        text = msg.message or ""
        if msg.role == "user":
            user |= stems_of(text)
            intent = match_intent(agent, text)
            if intent is not None:
                user |= stems_of(" ".join(intent.keywords))
            seen_user = seen_user or bool(text.strip())
        else:
            by_agent |= stems_of(text)
            intent = match_intent(agent, text)
            if intent is not None:
                by_agent |= stems_of(" ".join(intent.keywords))
            exchanged = exchanged or (seen_user and bool(text.strip()))
            for call in msg.tool_calls:
                # What the agent looked up was raised in the conversation and acted upon.
                looked_up = stems_of(call.tool_name.replace("_", " ") + " " + call.params_as_json)
                user |= looked_up
                by_agent |= looked_up
    return TranscriptWords(frozenset(user), frozenset(by_agent), exchanged)


def judge_criterion(
    spec: CriterionSpec,
    said: TranscriptWords,
    goals: Sequence[GoalOutcome],
    rng: random.Random,
) -> CriterionResult:
    """Apply the module's rule to one criterion (see the module docstring)."""
    numeric = spec.scoring_mode == "numeric_uniform"
    echo: dict[str, Any] = (
        {"scoring_mode": spec.scoring_mode, "max_score": spec.max_score} if numeric else {}
    )

    def unknown(why: str) -> CriterionResult:
        return CriterionResult(criteria_id=spec.id, result="unknown", rationale=why, **echo)

    if not said.exchanged:
        return unknown("There was no exchange between the user and the agent to judge.")
    topic = topic_words(spec.goal_prompt)
    if topic:
        raised = [w for w in topic if w in said.user]
        if not raised:
            return unknown(
                "The conversation never reached the criterion's topic ("
                + ", ".join(topic[:6])
                + ")."
            )
        addressed = [w for w in raised if w in said.agent]
        coverage = len(addressed) / len(raised)
        related = [g for g in goals if stems_of(g.text) & set(topic)] or list(goals)
        basis = f"topic words raised by the user: {', '.join(raised[:6])}; "
        basis += f"addressed by the agent: {len(addressed)}/{len(raised)}"
    else:
        coverage = 1.0  # unused: a behaviour criterion has no topic to cover
        related = list(goals)
        basis = "behaviour criterion, judged on the whole conversation"
    resolved = sum(g.status == "resolved" for g in related)
    resolution = resolved / len(related) if related else 1.0
    evidence = 0.2 * coverage + 0.8 * resolution if topic else 0.6 + 0.4 * resolution
    chance = spec.skill * evidence
    basis += f"; user goals resolved: {resolved}/{len(related)}; pass chance {chance:.2f}"
    if numeric:
        level = min(1.0, max(0.0, rng.gauss(chance, 0.15)))
        score = round(level * max(spec.max_score, 0))
        result: Result = "success" if level >= 0.5 else "failure"
        return CriterionResult(
            criteria_id=spec.id,
            result=result,
            rationale=f"{spec.name}: {basis}; judged level {level:.2f} -> score {score}.",
            score=score,
            **echo,
        )
    draw = rng.random()
    result = "success" if draw < chance else "failure"
    return CriterionResult(
        criteria_id=spec.id,
        result=result,
        rationale=f"{spec.name}: {basis}; draw {draw:.2f} -> {result}.",
    )


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
}

END_REASONS = {
    "user_done": "the user had what they needed and the agent closed the call",
    "agent_hung_up": "the agent ended the call before the user was done",
    "agent_closed": "the agent closed the call",
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


# ---------------------------------------------------------------------------- entry point


def analyse(
    agent: AgentDef,
    extra_criteria: Sequence[EvaluationCriterion] | None,
    transcript: Sequence[TranscriptMessage],
    goals: Sequence[GoalOutcome],
    end_reason: str,
    rng: random.Random,
) -> Analysis:
    """Judge the whole transcript (history and new messages) as the service's analysis would."""
    said = transcript_words(agent, transcript)
    results = {
        spec.id: judge_criterion(spec, said, goals, rng)
        for spec in criteria_for(agent, extra_criteria)
    }
    summary, title = summarise(agent, goals, end_reason, len(transcript))
    return Analysis(
        call_successful=call_outcome(list(results.values())),
        transcript_summary=summary,
        evaluation_criteria_results=results,
        data_collection_results=collect_data(agent, transcript),
        call_summary_title=title,
        call_success_score=success_score(list(results.values())),
    )


def analysis_json(analysis: Analysis) -> dict[str, Any]:
    """The analysis as sent on the wire: unset optional fields left out, but a data-collection
    ``value`` that was not found stays an explicit null (the field is always reported)."""
    body = analysis.model_dump(mode="json", exclude_none=True)
    for item in body.get("data_collection_results", {}).values():
        item.setdefault("value", None)
    return body
