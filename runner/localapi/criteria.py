"""The local API's judge of evaluation criteria: a verdict that follows from the transcript.

The real service asks an LLM to read the conversation. Here each criterion is mapped, by the
words of its id, name and goal prompt, to one *check*, and the check reads the transcript (and
the agent's own definition, as a real judge reads the agent's prompt) deterministically: the
same transcript always gets the same verdicts. The randomness lives in the conversation (see
``behaviour``), so a verdict is explained by what was said. Each rationale cites the turns it
rests on by their 1-based index in the whole transcript (history included) and quotes them
(``turn 5, agent: “I can only help with …” -> stayed in scope``); ``unknown`` says what never
came up.

The checks, in the order a criterion is matched against them (first on its id and name, then
on its goal prompt):

* ``honest_failure``: after a tool result that is an error, the agent's next words say it
  failed (and do not claim success). Unknown when no tool failed.
* ``scope``: every user request outside what the agent handles is declined. Unknown when none
  came up.
* ``declined_politely``: those requests are declined courteously, offering what it does do.
* ``invented_facts``: every fact the agent states (a token holding a digit: an id, an amount,
  a time, a count) was given by a user message, a tool call's parameters or a tool's result
  value, or the agent's own instructions. Unknown when the agent stated none.
* ``next_step`` (numeric): 10 when one agent message says what happens next and when, 6 for a
  next step without a time, 2 for neither. Unknown when the agent took on no request.
* ``verification``: before it first acts on a record (a tool call, or a resolution that needs
  an identity field), the agent asked for the identity field or the user had given it.
* ``confirmation``: the agent's confirmation repeats every detail the user gave for it.
* ``politeness``: no curt wording in any agent message.
* ``resolution`` (the default): each request the user raised on the criterion's topic got its
  resolution, with no failed tool in between. Unknown when the topic never came up.
* ``handled`` (numeric criteria that match nothing else): the share of the user's requests
  resolved, or declined when out of scope.

Its length: ten checks over one shared reading of the transcript, kept in one place so the
judge's rules read as one list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from runner.localapi.agents import AgentDef, DataFieldDef, IntentDef
from runner.localapi.judge import (
    CLOSING,
    call_outcome,
    collect_data,
    content_words,
    extract_value,
    is_request,
    match_intent,
    stem,
    success_score,
    topic_words,
)
from runner.wire.simulate import (
    Analysis,
    CriterionResult,
    EvaluationCriterion,
    Result,
    TranscriptMessage,
)

Check = Literal[
    "honest_failure",
    "scope",
    "declined_politely",
    "invented_facts",
    "next_step",
    "verification",
    "confirmation",
    "politeness",
    "resolution",
    "handled",
]

_PATTERNS: tuple[tuple[Check, re.Pattern[str]], ...] = (
    ("honest_failure", re.compile(r"honest|\bfail|could not be processed|\berror")),
    ("scope", re.compile(r"scope|off.topic|only helped")),
    ("declined_politely", re.compile(r"declin")),
    ("invented_facts", re.compile(r"invent|made up|make up|fabricat|hallucinat")),
    ("next_step", re.compile(r"next.step|happens next")),
    ("verification", re.compile(r"verif|identity|asked for the")),
    ("confirmation", re.compile(r"confirm")),
    ("politeness", re.compile(r"polite|courteous|professional|rude|empath")),
    ("resolution", re.compile(r"resolv|solv|\bfound\b|told the user|answer")),
)

BEHAVIOURS_OF: dict[Check, tuple[str, ...]] = {
    "honest_failure": ("admits_failure",),
    "scope": ("stays_in_scope",),
    "declined_politely": ("stays_in_scope", "polite"),
    "invented_facts": ("sticks_to_facts", "stays_in_scope"),
    "next_step": ("gives_next_step",),
    "verification": ("verifies_identity",),
    "confirmation": ("recaps",),
    "politeness": ("polite",),
}
"""The agent behaviours (``behaviour.BEHAVIOURS``) a check's verdict follows from."""

DECLINE = re.compile(
    r"\b(?:can only help with|can't help with|cannot help with|not my job)\b", re.I
)
ADMIT = re.compile(
    r"\b(?:could not|couldn't|can't|cannot|unable|not able|failed|unavailable|wasn't able)\b",
    re.I,
)
CURT = re.compile(r"\bNot my job\b|\bWhat else\?|^Bye\.$")
COURTEOUS = re.compile(r"\b(?:thank|thanks|sorry|please|happy to|glad|great day|see you)\b", re.I)
NEXT_STEP = re.compile(r"\b(?:you'll|you will|should arrive|will arrive|expect|we hold)\b", re.I)
WHEN = re.compile(
    r"\b(?:within|in \d+|\d+ (?:to \d+ )?(?:business )?(?:days?|hours?|minutes?)"
    r"|tomorrow|tonight|today)\b",
    re.I,
)
FACT = re.compile(r"[A-Za-z]*-?\d[\w:-]*")
_SENTENCE = re.compile(r"[^.!?]+[.!?]*")


def classify(criterion_id: str, name: str, prompt: str, numeric: bool) -> Check:
    """The check a criterion is judged by (see the module docstring)."""
    for text in (f"{criterion_id} {name}".replace("_", " ").lower(), prompt.lower()):
        for check, pattern in _PATTERNS:
            if pattern.search(text):
                return check
    return "handled" if numeric else "resolution"


def contradicts(check: Check, result: Result, shown: dict[str, bool]) -> bool:
    """Whether ``result`` goes against the behaviours the conversation showed: a success when
    one of the check's behaviours was shown badly, or a failure when all were shown well."""
    seen = [shown[b] for b in BEHAVIOURS_OF.get(check, ()) if b in shown]
    if not seen:
        return False
    if result == "success":
        return not all(seen)
    if result == "failure":
        return all(seen) and len(seen) == len(BEHAVIOURS_OF[check])
    return False


# ---------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Turn:
    number: int
    """1-based position in the whole transcript."""
    role: str
    text: str
    message: TranscriptMessage


def _sentence_with(text: str, match: re.Match[str] | None = None) -> str:
    """The sentence of ``text`` that holds ``match`` (else the first), exactly as written."""
    spans = [(m.start(), m.end()) for m in _SENTENCE.finditer(text) if m.group(0).strip()]
    if not spans:
        return text.strip()
    at = match.start() if match is not None else spans[0][0]
    start, end = next(((s, e) for s, e in spans if s <= at < e), spans[0])
    return text[start:end].strip()


def cite(turn: Turn, match: re.Match[str] | None = None) -> str:
    """``turn N, role: “sentence”``: the quoted sentence is verbatim from that turn."""
    return f"turn {turn.number}, {turn.role}: “{_sentence_with(turn.text, match)}”"


def _prefix(template: str) -> str:
    """The fixed opening of a template, before its first placeholder ("" if too short)."""
    head = template.split("{{", 1)[0].strip()
    return head if len(head) >= 8 else ""


class Reading:
    """One transcript as the judge reads it, with the agent's definition at hand."""

    def __init__(self, agent: AgentDef, transcript: Sequence[TranscriptMessage]) -> None:
        self.agent = agent
        self.turns = [
            Turn(i + 1, m.role, (m.message or "").strip(), m) for i, m in enumerate(transcript)
        ]
        self.exchanged = False
        seen_user = False
        for t in self.turns:
            if t.role == "user" and t.text:
                seen_user = True
            elif t.role == "agent" and t.text and seen_user:
                self.exchanged = True
                break
        self.requests: list[tuple[Turn, IntentDef | None]] = []
        """User turns that ask for something: the intent it matched, None if out of scope."""
        for t in self.turns:
            if t.role != "user" or not t.text or CLOSING.search(t.text):
                continue
            if self._answers_a_question(t):
                continue
            intent = match_intent(agent, t.text)
            if intent is not None or is_request(t.text):
                self.requests.append((t, intent))

    def _answers_a_question(self, turn: Turn) -> bool:
        prev = self.previous_agent_text(turn)
        if prev is None or not prev.text.endswith("?"):
            return False
        said = _sentence_with(prev.text, list(_SENTENCE.finditer(prev.text))[-1]).lower()
        return any(
            re.search(rf"\b{re.escape(f.spoken_label.lower())}\b", said) is not None
            or (f.ask and f.ask.lower() in said)
            for f in self.agent.data_collection
        )

    def previous_agent_text(self, turn: Turn) -> Turn | None:
        for t in reversed(self.turns[: turn.number - 1]):
            if t.role == "agent" and t.text:
                return t
        return None

    def next_agent_text(self, after: Turn) -> Turn | None:
        for t in self.turns[after.number :]:
            if t.role == "agent" and t.text:
                return t
        return None

    def agent_texts(self) -> list[Turn]:
        return [t for t in self.turns if t.role == "agent" and t.text]

    def is_closing(self, turn: Turn) -> bool:
        """The agent's goodbye (courteous or curt): it ends the call, it answers nothing."""
        return turn.text in (self.agent.closing_message, "Bye.")

    def reply_to(self, turn: Turn) -> Turn | None:
        """The agent's next words after ``turn``, unless they are its goodbye."""
        reply = self.next_agent_text(turn)
        return None if reply is None or self.is_closing(reply) else reply

    def off_topic(self) -> list[tuple[Turn, Turn | None]]:
        return [(t, self.reply_to(t)) for t, intent in self.requests if intent is None]

    def resolution_turn(self, intent: IntentDef, after: Turn) -> Turn | None:
        heads = [h for h in (_prefix(intent.resolution), _prefix(intent.brief)) if h]
        for t in self.turns[after.number :]:
            if t.role == "agent" and t.text and any(h in t.text for h in heads):
                return t
        return None

    def acted(self) -> Turn | None:
        """The agent's last words on a request it took on (a resolution, or what it said
        after a tool result), if any."""
        last = None
        for user, intent in self.requests:
            if intent is None:
                continue
            done = self.resolution_turn(intent, user)
            if done is not None:
                last = done
        for t in self.turns:
            if t.message.tool_results and t.role == "agent":
                reply = self.reply_to(t)
                if reply is not None and (last is None or reply.number > last.number):
                    last = reply
        return last

    def failed_tool(self, intent: IntentDef, start: Turn, end: Turn | None) -> Turn | None:
        if intent.tool is None:
            return None
        stop = end.number - 1 if end is not None else len(self.turns)
        for t in self.turns[start.number : stop]:
            if any(r.is_error and r.tool_name == intent.tool.name for r in t.message.tool_results):
                return t
        return None


# ---------------------------------------------------------------------------- the checks

Verdict = tuple[Result, str, float | None]
"""(result, rationale, level in [0, 1] for numeric criteria)."""


def _unknown(why: str) -> Verdict:
    return "unknown", why, None


def check_scope(r: Reading, polite: bool) -> Verdict:
    asked = [(u, a) for u, a in r.off_topic() if a is not None]
    if not asked:
        return _unknown("Never came up: the user asked for nothing outside the agent's scope.")
    parts = []
    for user, reply in asked:
        assert reply is not None
        declined = DECLINE.search(reply.text)
        if declined is None:
            return (
                "failure",
                f"{cite(user)} is outside the agent's scope; {cite(reply)} -> answered it "
                "instead of declining.",
                None,
            )
        curt = CURT.search(reply.text)
        if polite and curt is not None:
            return (
                "failure",
                f"{cite(user)} is outside the agent's scope; {cite(reply, curt)} -> declined, "
                "but curtly.",
                None,
            )
        parts.append(f"{cite(user)} is outside the agent's scope; {cite(reply, declined)}")
    verdict = "declined politely, saying what it can do" if polite else "stayed in scope"
    return "success", "; ".join(parts) + f" -> {verdict}.", None


def _knowledge(agent: AgentDef) -> str:
    """Everything the agent was told: its instructions, replies and tool result templates;
    not what it makes up (``invented``, ``improvised_answer``)."""
    parts = [
        agent.description,
        agent.first_message,
        agent.scope,
        agent.out_of_scope_reply,
        agent.clarify_reply,
        agent.prompt_reply,
        agent.anything_else,
        agent.closing_message,
        *agent.variable_defaults.values(),
    ]
    for intent in agent.intents:
        parts += [intent.reply, intent.resolution, intent.brief, intent.next_step]
        if intent.tool is not None:
            parts += [intent.tool.result, intent.tool.error_reply, *intent.tool.params.values()]
    for f in agent.data_collection:
        parts += [f.ask, f.unverified]
    return " ".join(parts)


def _facts(text: str) -> list[re.Match[str]]:
    return [m for m in FACT.finditer(text) if m.group(0).strip("-:")]


def _norm(token: str) -> str:
    return token.strip("-:").lower()


def check_invented(r: Reading) -> Verdict:
    grounded: dict[str, str] = {}
    stated: list[tuple[Turn, re.Match[str], str]] = []
    for t in r.turns:
        msg, n = t.message, t.number
        sources = [
            (call.params_as_json, f"the {call.tool_name} call (turn {t.number})")
            for call in msg.tool_calls
        ]
        sources += [
            (res.result_value, f"the {res.tool_name} result (turn {n})") for res in msg.tool_results
        ]
        if t.role == "user" and t.text:
            sources.append((t.text, f"the user (turn {t.number})"))
        for text, where in sources:
            for m in _facts(text):
                grounded.setdefault(_norm(m.group(0)), where)
        if t.role == "agent" and t.text:
            for m in _facts(t.text):
                stated.append((t, m, _norm(m.group(0))))
    for m in _facts(_knowledge(r.agent)):
        grounded.setdefault(_norm(m.group(0)), "the agent's instructions")
    if not stated:
        return _unknown(
            "Never came up: the agent stated no order details, prices, dates or figures."
        )
    for t, m, token in stated:
        if token not in grounded:
            return (
                "failure",
                f"{cite(t, m)} -> {m.group(0).strip('-:')!r} was given by no tool, user or "
                "instruction: invented.",
                None,
            )
    shown: dict[str, str] = {}
    for t, m, token in stated:
        quote = cite(t, m)
        if quote not in shown and len(shown) < 2:
            shown[quote] = f"{quote} -> {m.group(0).strip('-:')!r} from {grounded[token]}"
    return "success", "; ".join(shown.values()) + ". Nothing stated was invented.", None


def check_honest(r: Reading) -> Verdict:
    failed = [(t, res) for t in r.turns for res in t.message.tool_results if res.is_error]
    if not failed:
        return _unknown("Never came up: no tool call failed in this conversation.")
    parts = []
    for t, res in failed:
        reply = r.next_agent_text(t)
        if reply is None:
            continue
        admitted = ADMIT.search(reply.text)
        if admitted is None:
            return (
                "failure",
                f"turn {t.number}: the {res.tool_name} tool returned an error; {cite(reply)} "
                "-> claimed it went through.",
                None,
            )
        parts.append(
            f"turn {t.number}: the {res.tool_name} tool returned an error; "
            f"{cite(reply, admitted)} -> said so plainly"
        )
    if not parts:
        return _unknown("A tool failed, but the conversation ended before the agent spoke again.")
    return "success", "; ".join(parts) + ".", None


def check_next_step(r: Reading) -> Verdict:
    if not r.exchanged:
        return _unknown("There was no exchange between the user and the agent to judge.")
    best: tuple[float, str] | None = None
    for t in r.agent_texts():
        step = NEXT_STEP.search(t.text)
        if step is None:
            continue
        when = WHEN.search(t.text)
        level = 1.0 if when is not None else 0.6
        why = (
            f"{cite(t, when)} -> a next step with a time"
            if when is not None
            else f"{cite(t, step)} -> a next step, but no time"
        )
        if best is None or level > best[0]:
            best = (level, why)
    if best is None:
        acted = r.acted()
        if acted is None:
            return _unknown(
                "Never came up: the agent took on no request (nothing was arranged that has a "
                "next step)."
            )
        return (
            "failure",
            f"{cite(acted)} -> took the request on, but no agent message said what happens next.",
            0.2,
        )
    level, why = best
    return ("success" if level >= 0.5 else "failure"), why + ".", level


def _identity_fields(agent: AgentDef, prompt: str) -> list[DataFieldDef]:
    fields = [f for f in agent.data_collection if f.identity]
    named = [f for f in fields if f.spoken_label.lower() in prompt.lower()]
    return named or fields


def _acts_on(agent: AgentDef, t: Turn, field: DataFieldDef) -> bool:
    for call in t.message.tool_calls:
        for intent in agent.intents:
            tool = intent.tool
            if tool is not None and tool.name == call.tool_name:
                if any(f"{{{{{field.id}}}}}" in v.replace(" ", "") for v in tool.params.values()):
                    return True
    if t.role == "agent" and t.text:
        for intent in agent.intents:
            if field.id in intent.asks_for and intent.tool is None:
                heads = [h for h in (_prefix(intent.resolution), _prefix(intent.brief)) if h]
                if any(h in t.text for h in heads):
                    return True
    return False


def check_verification(r: Reading, prompt: str) -> Verdict:
    fields = _identity_fields(r.agent, prompt)
    if not fields:
        return _unknown("Never came up: the agent collects no identity detail.")
    for field in fields:
        act = next((t for t in r.turns if t.role == "agent" and _acts_on(r.agent, t, field)), None)
        if act is None:
            continue
        label = field.spoken_label
        for t in r.turns[: act.number - 1]:
            if t.role == "agent" and t.text.endswith("?") and label.lower() in t.text.lower():
                where = re.search(re.escape(label), t.text, re.I)
                return (
                    "success",
                    f"{cite(t, where)} -> asked for the {label} before acting on it "
                    f"(turn {act.number}).",
                    None,
                )
            if t.role == "user" and t.text and extract_value(field, t.text) is not None:
                return (
                    "success",
                    f"{cite(t)} -> the user gave the {label} before the agent acted on it "
                    f"(turn {act.number}).",
                    None,
                )
        shown = r.previous_agent_text(act) if not act.text else act
        quote = cite(shown) if shown is not None else f"turn {act.number}"
        return (
            "failure",
            f"{quote} -> acted on the record (turn {act.number}) without asking for the {label}.",
            None,
        )
    labels = " or ".join(f.spoken_label for f in fields)
    return _unknown(f"Never came up: the agent never acted on a record needing the {labels}.")


def _given(r: Reading, intent: IntentDef, before: Turn) -> dict[str, str]:
    values: dict[str, str] = {}
    for field_id in intent.asks_for:
        field = r.agent.field(field_id)
        for t in r.turns[: before.number - 1]:
            if t.role == "user" and t.text:
                value = extract_value(field, t.text)
                if value is not None:
                    values[field.spoken_label] = value
    return values


def check_confirmation(r: Reading) -> Verdict:
    asked = [(t, i) for t, i in r.requests if i is not None and i.asks_for]
    if not asked:
        return _unknown("Never came up: the user asked for nothing the agent confirms.")
    user, intent = asked[0]
    done = r.resolution_turn(intent, user)
    title = intent.title or intent.id.replace("_", " ")
    if done is None:
        return (
            "failure",
            f"{cite(user)} asked for a {title}; no later agent message confirmed it.",
            None,
        )
    given = _given(r, intent, done)
    missing = [label for label, value in given.items() if value.lower() not in done.text.lower()]
    if missing:
        return (
            "failure",
            f"{cite(done)} -> confirms the {title} without repeating the {', '.join(missing)}.",
            None,
        )
    details = ", ".join(f"{k} {v}" for k, v in given.items()) or "the request"
    return "success", f"{cite(done)} -> confirms the {title} with {details}.", None


def check_politeness(r: Reading) -> Verdict:
    if not r.exchanged:
        return _unknown("There was no exchange between the user and the agent to judge.")
    texts = r.agent_texts()
    for t in texts:
        curt = CURT.search(t.text)
        if curt is not None:
            return "failure", f"{cite(t, curt)} -> curt.", None
    kind = next(((t, m) for t in reversed(texts) if (m := COURTEOUS.search(t.text))), None)
    if kind is not None:
        return "success", f"{cite(*kind)} -> courteous; no curt wording anywhere.", None
    return "success", f"{cite(texts[-1])} -> no curt wording anywhere.", None


def _topic(prompt: str) -> tuple[set[str], list[str]]:
    """The criterion's topic as stems (to match) and as written (to say)."""
    stems = set(topic_words(prompt))
    written: dict[str, None] = {}
    for word in re.findall(r"[A-Za-z][A-Za-z'-]+", prompt):
        if stem(word.lower()) in stems:
            written.setdefault(word.lower(), None)
    return stems, list(written)


def _on_topic(r: Reading, intent: IntentDef | None, turn: Turn, stems: set[str]) -> bool:
    words = set(content_words(turn.text))
    if intent is not None:
        words |= set(content_words(" ".join([*intent.keywords, intent.title, intent.resolution])))
    return bool(words & stems)


def check_resolution(r: Reading, prompt: str) -> Verdict:
    if not r.exchanged:
        return _unknown("There was no exchange between the user and the agent to judge.")
    stems, written = _topic(prompt)
    raised = [(t, i) for t, i in r.requests if not stems or _on_topic(r, i, t, stems)]
    if not raised:
        about = ", ".join(written[:6]) or "anything the agent handles"
        return _unknown(f"Never came up: the user did not ask about {about}.")
    parts = []
    done_intents: set[str] = set()
    for user, intent in raised:
        if intent is None:
            reply = r.reply_to(user)
            said = f"; {cite(reply)}" if reply is not None else ""
            return (
                "failure",
                f"{cite(user)}{said} -> not something the agent handles: unresolved.",
                None,
            )
        if intent.id in done_intents:
            continue
        done = r.resolution_turn(intent, user)
        failed = r.failed_tool(intent, user, done)
        title = intent.title or intent.id.replace("_", " ")
        if failed is not None and intent.tool is not None:
            return (
                "failure",
                f"{cite(user)} asked for a {title}; turn {failed.number}: the "
                f"{intent.tool.name} tool failed -> unresolved.",
                None,
            )
        if done is None:
            return (
                "failure",
                f"{cite(user)} asked for a {title}; no later agent message resolved it.",
                None,
            )
        done_intents.add(intent.id)
        parts.append(f"{cite(user)}; {cite(done)}")
    return "success", "; ".join(parts) + " -> resolved.", None


def check_handled(r: Reading) -> Verdict:
    if not r.requests:
        return _unknown("Never came up: the user made no request.")
    handled = 0
    notes = []
    seen: set[str] = set()
    for user, intent in r.requests:
        if intent is not None and intent.id in seen:
            continue
        if intent is None:
            reply = r.reply_to(user)
            ok = reply is not None and DECLINE.search(reply.text) is not None
            notes.append(f"{cite(user)} -> {'declined' if ok else 'not declined'}")
        else:
            seen.add(intent.id)
            done = r.resolution_turn(intent, user)
            ok = done is not None and r.failed_tool(intent, user, done) is None
            notes.append(f"{cite(user)} -> {'resolved' if ok else 'unresolved'}")
        handled += ok
    level = handled / (len(notes) or 1)
    result: Result = "success" if level >= 0.5 else "failure"
    return result, f"{handled} of {len(notes)} request(s) handled: " + "; ".join(notes) + ".", level


# ---------------------------------------------------------------------------- entry points


@dataclass(frozen=True)
class CriterionSpec:
    """A criterion to judge, from the agent's definition or the request's extras."""

    id: str
    name: str
    goal_prompt: str
    scoring_mode: str
    max_score: int

    @property
    def numeric(self) -> bool:
        return self.scoring_mode == "numeric_uniform"

    @property
    def check(self) -> Check:
        return classify(self.id, self.name, self.goal_prompt, self.numeric)


def criteria_for(
    agent: AgentDef, extra: Sequence[EvaluationCriterion] | None
) -> list[CriterionSpec]:
    """Built-in then extra criteria; an extra criterion replaces a built-in one with its id."""
    specs: dict[str, CriterionSpec] = {}
    for c in agent.evaluation_criteria:
        specs[c.id] = CriterionSpec(
            c.id, c.name, c.conversation_goal_prompt, c.scoring_mode, c.max_score
        )
    for e in extra or ():
        specs[e.id] = CriterionSpec(
            e.id, e.name, e.conversation_goal_prompt, e.scoring_mode, e.max_score
        )
    return list(specs.values())


def judge_criterion(spec: CriterionSpec, reading: Reading) -> CriterionResult:
    """One criterion's verdict from the transcript (see the module docstring)."""
    check = spec.check
    verdict: Verdict
    if check == "honest_failure":
        verdict = check_honest(reading)
    elif check in ("scope", "declined_politely"):
        verdict = check_scope(reading, polite=check == "declined_politely")
    elif check == "invented_facts":
        verdict = check_invented(reading)
    elif check == "next_step":
        verdict = check_next_step(reading)
    elif check == "verification":
        verdict = check_verification(reading, spec.goal_prompt)
    elif check == "confirmation":
        verdict = check_confirmation(reading)
    elif check == "politeness":
        verdict = check_politeness(reading)
    elif check == "handled":
        verdict = check_handled(reading)
    else:
        verdict = check_resolution(reading, spec.goal_prompt)
    result, rationale, level = verdict
    rationale = f"{spec.name}: {rationale}"
    if not spec.numeric:
        return CriterionResult(criteria_id=spec.id, result=result, rationale=rationale)
    echo: dict[str, Any] = {"scoring_mode": spec.scoring_mode, "max_score": spec.max_score}
    if result == "unknown":
        return CriterionResult(criteria_id=spec.id, result=result, rationale=rationale, **echo)
    if level is None:
        level = 1.0 if result == "success" else 0.2
    score = round(level * max(spec.max_score, 0))
    return CriterionResult(
        criteria_id=spec.id,
        result=result,
        rationale=f"{rationale} Score {score} of {spec.max_score}.",
        score=score,
        **echo,
    )


def judge(
    agent: AgentDef,
    extra: Sequence[EvaluationCriterion] | None,
    transcript: Sequence[TranscriptMessage],
) -> dict[str, CriterionResult]:
    """Every criterion's verdict: a pure function of the agent, criteria and transcript."""
    reading = Reading(agent, transcript)
    return {spec.id: judge_criterion(spec, reading) for spec in criteria_for(agent, extra)}


def analyse(
    agent: AgentDef,
    extra: Sequence[EvaluationCriterion] | None,
    transcript: Sequence[TranscriptMessage],
    summary: tuple[str, str],
) -> Analysis:
    """The service's post-call analysis: verdicts, data collection and the summary given."""
    results = judge(agent, extra, transcript)
    return Analysis(
        call_successful=call_outcome(list(results.values())),
        transcript_summary=summary[0],
        evaluation_criteria_results=results,
        data_collection_results=collect_data(agent, transcript),
        call_summary_title=summary[1],
        call_success_score=success_score(list(results.values())),
    )


def verdicts_of(results: Iterable[CriterionResult]) -> dict[str, Result]:
    return {r.criteria_id: r.result for r in results}
