"""The local API's conversation simulator: an agent and a simulated user talk, then a judge.

(Over 600 lines because ``_Simulation`` is one state machine of nearly 600 lines: the user's
turns, the agent's turns and the tool calls read and write the same goals, transcript and
variables, so split apart each part would reach into the others. What is not that state
machine lives elsewhere: the wording of texts in ``wording``, the verdicts in ``criteria`` and
``judge``, the behaviour draws in ``behaviour``.)

``plan_conversation`` is pure: given the agent, the request and a seeded ``random.Random`` it
returns the whole conversation up front, each message with the (unscaled) delay after which it
is ready. The server only sleeps and streams, so every behaviour here is testable without a
socket. The rules, chosen to be simple and documented rather than clever:

*Turns.* One turn is one new message (tool calls and tool results count). At most
``min(new_turns_limit, MAX_NEW_MESSAGES)`` messages are produced; ``new_turns_limit <= 0`` means
no new message at all, only the analysis of the history given. A real conversation ends long
before the cap, since the user closes once its goals are covered.

*Opening.* A fresh conversation (no history) is opened by the agent's first message, as a call
is (and as in the reference example). The user's ``first_message``, when set, is then the
user's first line; when empty, the user opens by stating its first goal. If the agent has no
first message, the user speaks first. With a history, the conversation simply continues: the
side that did not speak last speaks next, pending tool calls get their results first, and the
user's ``first_message`` is not repeated.

*The user's goals.* Each sentence of ``first_message`` and the persona prompt that either
matches one of the agent's intents (by keyword) or voices a request ("want", "need", "ask",
"?", ...) is a goal; other sentences ("You are John, a busy parent.") are context. The user
states its goals one at a time (persona sentences turned to the first person), answers the
agent's questions from the dynamic variables (the user's own placeholders first, then the
specification's) or, failing that, from its persona text, rephrases once when misunderstood,
and says "Thanks, that's all." when every goal is resolved, declined or given up.

*The agent.* It recognises an intent by keyword (with probability ``quality.understanding``,
else asks to rephrase), asks for each missing ``asks_for`` field, calls the intent's tool (an
agent message with ``tool_calls`` and ``message: null``, then one with ``tool_results``; the
request's ``tool_mock_config`` for that tool name, or the ``tool_mock`` given, which sees the
call's parameters, wins over the agent's own result template),
then says the resolution. Requests matching no intent are declined as out of scope. With
probability ``quality.hangup_rate`` per turn it ends the call early.

*Language.* Texts stay English; when ``language`` is not English the agent's first reply says
it switches language, which marks the transcript as such.

*Variables.* ``{{name}}`` in agent text is filled from the data the user gave, then the
specification's dynamic variables, then the user's placeholders, then the agent's
``variable_defaults``; ``{{name}}`` in the user's persona and first message from the user's
placeholders, then the specification's. Unknown placeholders are left as they are (the real
service rejects them; the local one shows them).

*Time.* Each message's delay is drawn around the ``TimingModel`` mean with multiplicative
lognormal jitter; ``time_in_call_secs`` is the last history time plus the whole seconds elapsed.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from functools import partial
from typing import Any

from runner.localapi.agents import AgentDef, DataFieldDef, IntentDef, ToolDef
from runner.localapi.behaviour import draw_behaviour
from runner.localapi.criteria import analyse
from runner.localapi.judge import (
    CLOSING,
    GoalOutcome,
    GoalStatus,
    extract_value,
    is_request,
    keyword_hits,
    match_intent,
    summarise,
)
from runner.localapi.pricing import message_usage
from runner.localapi.wording import (
    article,
    clauses,
    first_person,
    lower_first,
    sentences,
    stringify,
    substitute,
    text_vars,
)
from runner.wire.simulate import (
    Analysis,
    LLMUsage,
    SimulationRequest,
    ToolCall,
    ToolMockConfig,
    ToolResult,
    TranscriptMessage,
)

MAX_NEW_MESSAGES = 60
"""Hard cap on new messages per conversation, whatever ``new_turns_limit`` says."""

MAX_GOALS = 6
"""A persona with more request sentences than this is truncated: a call covers a few topics."""


LANGUAGE_NAMES = {
    "de": "German",
    "es": "Spanish",
    "fr": "French",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "pl": "Polish",
    "sv": "Swedish",
    "ja": "Japanese",
    "zh": "Chinese",
    "ko": "Korean",
    "hi": "Hindi",
    "ar": "Arabic",
    "tr": "Turkish",
}
"""Names the agent uses when it announces a language switch; other codes are said as is."""


@dataclass(frozen=True)
class TimingModel:
    """Mean durations, in unscaled seconds, of what a real conversation waits for."""

    agent_message_secs: float = 1.0
    user_message_secs: float = 0.8
    tool_secs: float = 0.4
    analysis_secs: float = 2.0
    jitter: float = 0.35
    """Sigma of the lognormal factor (mean 1) applied to every delay."""

    def draw(self, mean: float, rng: random.Random) -> float:
        if mean <= 0:
            return 0.0
        sigma = max(self.jitter, 0.0)
        if sigma == 0:
            return mean
        return mean * math.exp(rng.gauss(0.0, sigma) - sigma * sigma / 2)


@dataclass(frozen=True)
class PlannedMessage:
    delay_secs: float
    """Simulated seconds between the previous message (or the request) and this one."""
    message: TranscriptMessage


@dataclass(frozen=True)
class ConversationPlan:
    messages: list[PlannedMessage]
    """Only the new messages, not the history passed in."""
    analysis_delay_secs: float
    analysis: Analysis
    behaviour: dict[str, bool] = dc_field(default_factory=dict)
    """The agent's behaviour drawn for this conversation (``behaviour.BEHAVIOURS``)."""
    shown: dict[str, bool] = dc_field(default_factory=dict)
    """The behaviours the conversation put to use, and how: what the verdicts follow from."""
    drifted: bool = False
    """The simulated user abandoned its goal (``--user-drift``)."""


def message_json(message: TranscriptMessage) -> dict[str, Any]:
    """A message as sent on the wire: unset optional fields left out, but ``message`` kept
    (null on tool-only messages) and ``tool_calls``/``tool_results`` always present, as in the
    reference example."""
    body = message.model_dump(mode="json", exclude_none=True)
    body.setdefault("message", None)
    body.setdefault("tool_calls", [])
    body.setdefault("tool_results", [])
    return body


# ---------------------------------------------------------------------------- set lines

_NEGATED_NEED = re.compile(
    r"\b(?:do not|don't|does not|doesn't|no longer|never) (?:need|want)\b|\bnothing else\b",
    re.IGNORECASE,
)
TRANSFER_TOOL = "transfer_to_agent"
"""The system tool an agent calls to hand the caller to a human colleague."""
HUMAN_AGENT = "human_support"
CURT = {"decline": "Not my job. What else?", "anything_else": "What else?", "closing": "Bye."}
"""What an impolite agent says instead of its courteous lines (``criteria.CURT`` reads them)."""
DRIFTS: tuple[str, ...] = (
    "Actually, forget about that. Can you recommend a good film for tonight?",
    "Sorry, something came up, I have to go. Bye.",
)
"""What a drifting simulated user says when it abandons its goal (``--user-drift``)."""
_LACKING = re.compile(r"\bdon't have\b|\bdo not have\b|\bnot sure\b", re.IGNORECASE)


# ---------------------------------------------------------------------------- the simulation


@dataclass
class _Goal:
    text: str
    intent_id: str | None
    status: GoalStatus = "pending"
    attempts: int = 0


ToolMock = Callable[[str, dict[str, Any]], ToolMockConfig | None]
"""(tool name, call parameters) -> the mocked reply, or None: the tool answers itself."""


def call_params(call: ToolCall) -> dict[str, Any]:
    try:
        params = json.loads(call.params_as_json or "{}")
    except ValueError:
        return {}
    return params if isinstance(params, dict) else {}


class _Simulation:
    """Mutable state of one planned conversation; ``plan_conversation`` is its only user."""

    def __init__(
        self,
        agent: AgentDef,
        request: SimulationRequest,
        rng: random.Random,
        timing: TimingModel,
        tool_mock: ToolMock | None = None,
        user_drift: float = 0.0,
    ) -> None:
        spec = request.simulation_specification
        user = spec.simulated_user_config
        self.agent = agent
        self.rng = rng
        self.timing = timing
        self.history: list[TranscriptMessage] = list(spec.partial_conversation_history or [])
        self.new: list[PlannedMessage] = []
        self.limit = min(max(request.new_turns_limit, 0), MAX_NEW_MESSAGES)
        self.mocks = spec.tool_mock_config or {}
        self.tool_mock = tool_mock
        self.prompt_chars = len(agent.model_dump_json())  # stands in for the system prompt
        # Own generators for the behaviour and the drift: the knobs do not shift the rest.
        self.behaviour = draw_behaviour(agent.tendencies, random.Random(rng.getrandbits(64)))
        drift_rng = random.Random(rng.getrandbits(64))
        drifts = drift_rng.random() < user_drift
        self.drift_after = drift_rng.randint(1, 2) if drifts else None
        """The user abandons its goal after this many of its own turns (None: it never does)."""
        self.drift_line = DRIFTS[drift_rng.randrange(len(DRIFTS))]
        self.drifted = False
        self.user_turns = 0
        self.shown: dict[str, bool] = {}
        """The behaviours this conversation showed (drawn, and put to use)."""
        self.result_vars: dict[str, str] = {}

        spec_vars = text_vars(spec.dynamic_variables or {})
        user_vars = text_vars(
            user.dynamic_variables.dynamic_variable_placeholders if user.dynamic_variables else {}
        )
        self.user_vars = {**spec_vars, **user_vars}
        self.agent_vars = {
            "agent_name": agent.name,
            "scope": agent.scope,
            **agent.variable_defaults,
            **user_vars,
            **spec_vars,
        }
        self.persona = substitute(user.prompt.prompt, self.user_vars)
        self.first_message = substitute(user.first_message, self.user_vars).strip()
        code = " ".join((user.language or "").split())[:32]
        english = not code or code.lower() == "en" or code.lower().startswith(("en-", "en_"))
        self.language = "" if english else LANGUAGE_NAMES.get(code.lower().split("-")[0], code)
        self.announced_language = False

        self.goals = self._derive_goals()
        self.collected: dict[str, str] = {}
        self.user_lacks: set[str] = set()
        self.current: _Goal | None = None
        self.intent: IntentDef | None = None
        self.awaiting: DataFieldDef | None = None
        self.last_agent_act = "unknown"
        self.ended = False
        self.end_reason = "turn_limit" if self.limit else "no_new_turns"

        base_times = [m.time_in_call_secs for m in self.history]
        self.base_time = max(base_times) if base_times else 0
        self.elapsed = 0.0
        self._absorb_history()

    # -- setup

    def _derive_goals(self) -> list[_Goal]:
        goals: list[_Goal] = []
        for sentence in self._requests(self.first_message) + self._requests(self.persona):
            if _NEGATED_NEED.search(sentence):
                continue  # "You do not need anything else." is context, not a request
            intent = match_intent(self.agent, sentence)
            if intent is not None:
                if any(g.intent_id == intent.id for g in goals):
                    continue
                goals.append(_Goal(first_person(sentence), intent.id))
            elif is_request(sentence):
                text = first_person(sentence)
                if all(g.text != text for g in goals):
                    goals.append(_Goal(text, None))
            if len(goals) >= MAX_GOALS:
                break
        return goals

    def _requests(self, text: str) -> list[str]:
        """Sentences, split into clauses only where the clauses ask for different things."""
        out: list[str] = []
        for sentence in sentences(text):
            parts = clauses(sentence)
            asked = {self._request_key(p) for p in parts} - {None}
            out.extend(parts if len(asked) > 1 else [sentence])
        return out

    def _request_key(self, clause: str) -> str | None:
        intent = match_intent(self.agent, clause)
        if intent is not None:
            return intent.id
        return clause if is_request(clause) else None

    def _absorb_history(self) -> None:
        """Resume from a history: data already given, goals already raised and answered."""
        for field in self.agent.data_collection:
            for msg in self.history:
                if msg.role == "user" and msg.message:
                    value = extract_value(field, msg.message)
                    if value is not None:
                        self.collected[field.id] = value
        self._resume_question()
        for index, msg in enumerate(self.history):
            if msg.role != "user" or not msg.message:
                continue
            intent = match_intent(self.agent, msg.message)
            goal = self._goal_for(intent.id if intent else None, msg.message)
            if goal is None:
                continue
            answered = any(m.role == "agent" and m.message for m in self.history[index + 1 :])
            goal.status = "resolved" if answered else "active"
            if not answered:
                self.current = goal
        if self.intent is not None:  # the agent's last question is still open
            goal = self._goal_for(self.intent.id, "")
            if goal is not None:
                goal.status, self.current = "active", goal

    def _resume_question(self) -> None:
        """A history that ends with the agent asking for a field: the user answers it next."""
        if not self.history or self.history[-1].role != "agent":
            return
        question = (self.history[-1].message or "").strip()
        if not question.endswith("?"):
            return
        said_by_user = [m.message for m in self.history if m.role == "user" and m.message]
        intent = next(
            (i for i in map(partial(match_intent, self.agent), reversed(said_by_user)) if i),
            None,
        )
        for field in self.agent.data_collection:
            if re.search(rf"\b{re.escape(field.spoken_label)}\b", question, re.IGNORECASE):
                self.awaiting, self.last_agent_act = field, "ask"
                if intent is not None and field.id in intent.asks_for:
                    self.intent = intent
                return

    def _goal_for(self, intent_id: str | None, text: str) -> _Goal | None:
        if intent_id is not None:
            return next((g for g in self.goals if g.intent_id == intent_id), None)
        return next((g for g in self.goals if g.intent_id is None and g.text == text), None)

    # -- output

    @property
    def transcript(self) -> list[TranscriptMessage]:
        return self.history + [p.message for p in self.new]

    def _emit(
        self,
        role: str,
        text: str | None,
        mean_secs: float,
        *,
        tool_calls: list[ToolCall] | None = None,
        tool_results: list[ToolResult] | None = None,
        delay: float | None = None,
    ) -> None:
        if len(self.new) >= self.limit:
            return  # a turn of two messages (words, then a tool call) stops at the limit too
        delay = self.timing.draw(mean_secs, self.rng) if delay is None else delay
        self.elapsed += delay
        usage = None
        if role == "agent" and (text or tool_calls):
            output = text or json.dumps([c.params_as_json for c in tool_calls or []])
            usage = self._usage(output)
        msg = TranscriptMessage(
            role=role,  # type: ignore[arg-type]
            message=text,
            tool_calls=tool_calls or [],
            tool_results=tool_results or [],
            time_in_call_secs=self.base_time + int(self.elapsed),
            llm_usage=usage,
        )
        self.new.append(PlannedMessage(delay_secs=delay, message=msg))

    def _usage(self, output: str) -> LLMUsage:
        """Tokens from text lengths (~4 characters a token): the prompt is the agent's
        definition plus the transcript so far, the output is this message."""
        context = self.prompt_chars + sum(len(m.message or "") + 40 for m in self.transcript)
        return message_usage(self.agent.llm, context, len(output))

    def _show(self, behaviour: str) -> bool:
        """The drawn behaviour, noted as shown in this conversation."""
        self.shown[behaviour] = self.behaviour[behaviour]
        return self.behaviour[behaviour]

    def _line(self, slot: str, courteous: str) -> str:
        return courteous if self._show("polite") else CURT[slot]

    @property
    def anything_else(self) -> str:
        return self._line("anything_else", self.agent.anything_else)

    @property
    def closing(self) -> str:
        return self._line("closing", self.agent.closing_message)

    def _agent_says(self, text: str, act: str) -> None:
        values = {**self.agent_vars, **self.collected, **self.result_vars}
        text = substitute(text, values).strip()
        if self.language and not self.announced_language and act != "greet":
            text = f"Switching to {self.language} for you. {text}"
            self.announced_language = True
        self.last_agent_act = act
        self._emit("agent", text, self.timing.agent_message_secs)

    def _user_says(self, text: str) -> None:
        self.user_turns += 1
        self._emit("user", text.strip(), self.timing.user_message_secs)

    # -- the loop

    def run(self) -> None:
        while len(self.new) < self.limit and not self.ended:
            transcript = self.transcript
            last = transcript[-1] if transcript else None
            if last is None:
                self._open()
            elif last.role == "agent" and self._pending_calls(last):
                self._tool_results(last)
            elif last.role == "agent" and last.tool_results and not (last.message or "").strip():
                self._after_tool(last)
            elif last.role == "agent":
                self._user_turn()
            else:
                self._agent_turn(last.message or "")

    def _open(self) -> None:
        if self.agent.first_message.strip():
            self._agent_says(self.agent.first_message, "greet")
        else:
            self._user_turn()

    # -- the simulated user

    def _next_goal(self) -> _Goal | None:
        return next((g for g in self.goals if g.status == "pending"), None)

    def _drift(self) -> bool:
        """The simulated user abandons its persona and goal, visibly (``--user-drift``)."""
        if self.drift_after is None or self.drifted or self.user_turns < self.drift_after:
            return False
        self.drifted = True
        for goal in self.goals:
            if goal.status in ("pending", "active"):
                goal.status = "abandoned"
        self.current = None
        self.awaiting = None
        self._user_says(self.drift_line)
        return True

    def _user_turn(self) -> None:
        if self._drift():
            return
        act = self.last_agent_act
        if act == "ask" and self.awaiting is not None:
            self._answer(self.awaiting)
            return
        if act == "clarify" and self.current is not None and self.current.status == "active":
            self.current.attempts += 1
            if self.current.attempts <= 1:
                self._user_says("Let me put it another way. " + self._rephrase(self.current))
                return
            self.current.status = "failed"
            self._state_next_goal(prefix="Never mind. ")
            return
        if not self._said_first_line():
            self._first_line()
            return
        self._state_next_goal()

    def _said_first_line(self) -> bool:
        return any(m.role == "user" for m in self.transcript)

    def _first_line(self) -> None:
        if self.first_message:
            # The agent will take up one request of the first line; the others stay pending
            # and the user brings them up again later.
            intent = match_intent(self.agent, self.first_message)
            firsts = [
                self._goal_for(None, first_person(c)) for c in self._requests(self.first_message)
            ]
            goal = self._goal_for(intent.id, "") if intent else next(filter(None, firsts), None)
            if goal is not None and goal.status == "pending":
                goal.status = "active"
                self.current = goal
            self._user_says(self.first_message)
            return
        goal = self._next_goal()
        if goal is None:
            self._user_says(
                "Hi, I was calling to check on something, but it's sorted now. Thanks, that's all."
            )
            return
        goal.status = "active"
        self.current = goal
        self._user_says("Hi. " + goal.text)

    def _state_next_goal(self, prefix: str = "") -> None:
        if self.current is not None and self.current.status == "active":
            self.current.status = "failed"  # the agent moved on without handling it
        handled_one = any(g.status not in ("pending", "active") for g in self.goals)
        goal = self._next_goal()
        if goal is None:
            self._user_says(prefix + "Thanks, that's all.")
            return
        goal.status = "active"
        self.current = goal
        also = handled_one and not re.search(r"\balso\b", goal.text, re.I)
        self._user_says(prefix + ("Also, " + lower_first(goal.text) if also else goal.text))

    def _rephrase(self, goal: _Goal) -> str:
        intent = next((i for i in self.agent.intents if i.id == goal.intent_id), None)
        if intent is None:
            return goal.text
        topic = intent.title or intent.keywords[0]
        if not keyword_hits(intent, topic):
            topic = f"{topic} ({intent.keywords[0]})"
        return f"I need help with {article(topic)} {topic}."

    def _answer(self, field: DataFieldDef) -> None:
        value = next(
            (self.user_vars[name] for name in field.variable_names if name in self.user_vars),
            None,
        )
        if value is None:
            persona = " ".join(first_person(s) for s in sentences(self.persona))
            value = extract_value(field, f"{persona} {self.persona} {self.first_message}")
        if value is None:
            self.user_lacks.add(field.id)
            self._user_says(f"Sorry, I don't have my {field.spoken_label} at hand.")
            return
        template = field.answer or "My {label} is {value}."
        self._user_says(template.replace("{label}", field.spoken_label).replace("{value}", value))

    # -- the agent

    def _agent_turn(self, text: str) -> None:
        agent = self.agent
        if CLOSING.search(text):
            self._agent_says(self.closing, "closing")
            self.ended = True
            if self.drifted:
                self.end_reason = "user_left"
            else:
                self.end_reason = "user_done" if self._next_goal() is None else "agent_closed"
            return
        if agent.quality.hangup_rate and self.rng.random() < agent.quality.hangup_rate:
            self._agent_says(self.closing, "closing")
            self.ended, self.end_reason = True, "agent_hung_up"
            return
        if self.awaiting is not None:
            field, self.awaiting = self.awaiting, None
            value = extract_value(field, text)
            if value is None and not _LACKING.search(text):
                value = text.strip().rstrip(".")
            if value is None:
                self.user_lacks.add(field.id)
            else:
                self.collected[field.id] = value
            if self.intent is not None:
                self._continue_intent(self.intent)
            else:
                self._agent_says(f"Thank you. {self.anything_else}", "prompt")
            return
        intent = match_intent(agent, text)
        if intent is not None:
            if self.rng.random() >= agent.quality.understanding:
                self._agent_says(agent.clarify_reply, "clarify")
                return
            self.intent = intent
            goal = self._goal_for(intent.id, text)
            if goal is not None:
                if self.current not in (None, goal) and self.current.status == "active":
                    self.current.status = "pending"  # put aside; the user raises it again
                if goal.status == "pending":
                    goal.status = "active"
                self.current = goal
            self._continue_intent(intent, prefix=intent.reply)
            return
        if text.strip() and is_request(text):
            in_scope = self._show("stays_in_scope")
            if self.current is not None and self.current.status == "active":
                self.current.status = "declined" if in_scope else "improvised"
            if not in_scope:
                self._agent_says(f"{agent.improvised_answer} {self.anything_else}", "improvise")
            elif self._show("polite"):
                self._agent_says(agent.out_of_scope_reply, "decline")
            else:
                self._agent_says(CURT["decline"], "decline")
            return
        self._agent_says(agent.prompt_reply, "prompt")

    def _continue_intent(self, intent: IntentDef, prefix: str = "") -> None:
        for field_id in intent.asks_for:
            if field_id in self.collected:
                continue
            field = self.agent.field(field_id)
            if field_id in self.user_lacks:
                self._finish_goal(intent, "failed")
                self._agent_says(
                    f"I'm sorry, without your {field.spoken_label} I can't help with that. "
                    + self.anything_else,
                    "missing_info",
                )
                return
            if field.identity and not self._show("verifies_identity"):
                # Acts without checking who is calling: goes by the record on file.
                self.collected[field_id] = field.unverified
                prefix = f"{prefix} Let me pull up the {field.spoken_label} {field.unverified}."
                continue
            self.awaiting = field
            ask = field.ask or f"Could you tell me your {field.spoken_label}?"
            self._agent_says(f"{prefix} {ask}", "ask")
            return
        if intent.tool is not None:
            if prefix.strip():
                self._agent_says(prefix, "working")
            self._call_tool(intent.tool)
            return
        self._finish_goal(intent, "resolved")
        self._agent_says(f"{prefix} {self._resolution(intent)}", "resolve")

    def _resolution(self, intent: IntentDef) -> str:
        """The resolution as this conversation's agent says it: with or without the recap, the
        next step and an invented detail, as its behaviour was drawn."""
        parts = [intent.resolution]
        if intent.brief and not self._show("recaps"):
            parts = [intent.brief]
        if intent.next_step and self._show("gives_next_step"):
            parts.append(intent.next_step)
        if intent.invented and not self._show("sticks_to_facts"):
            parts.append(intent.invented)
        values = {**self.agent_vars, **self.collected, **self.result_vars}
        said = [substitute(p, values) for p in parts]
        if "{{result." in said[0] and "result" in self.result_vars:
            # The tool answered in words, not fields: the agent passes its words on.
            said[0] = f"Here is what our system says: {self.result_vars['result']}."
        said = [p for p in said if "{{result." not in p]
        return " ".join([*said, self.anything_else])

    def _finish_goal(self, intent: IntentDef, status: GoalStatus) -> None:
        self.intent = None
        goal = self._goal_for(intent.id, "")
        if goal is not None and goal.status in ("pending", "active"):
            goal.status = status

    def _call_tool(self, tool: ToolDef) -> None:
        values = {**self.agent_vars, **self.collected}
        params = {name: substitute(template, values) for name, template in tool.params.items()}
        self._emit_call(tool.type, tool.name, params)

    def _emit_call(self, kind: str, name: str, params: dict[str, Any]) -> None:
        call = ToolCall(
            type=kind,
            request_id=f"{name}_{self.rng.getrandbits(64):016x}",
            tool_name=name,
            params_as_json=json.dumps(params),
            tool_has_been_called=True,
        )
        self.last_agent_act = "tool_call"
        self._emit("agent", None, self.timing.agent_message_secs * 0.5, tool_calls=[call])

    def _pending_calls(self, last: TranscriptMessage) -> list[ToolCall]:
        done = {r.request_id for r in last.tool_results}
        return [c for c in last.tool_calls if c.request_id not in done]

    def _tool_def(self, name: str) -> tuple[IntentDef, ToolDef] | None:
        for intent in self.agent.intents:
            if intent.tool is not None and intent.tool.name == name:
                return intent, intent.tool
        return None

    def _tool_results(self, last: TranscriptMessage) -> None:
        latency = self.timing.draw(self.timing.tool_secs, self.rng)
        values = {**self.agent_vars, **self.collected}
        results = []
        for call in self._pending_calls(last):
            if call.tool_name == TRANSFER_TOOL and call.type == "system":
                results.append(self._transfer_result(call, latency))
                continue
            mock = self.mocks.get(call.tool_name)
            if mock is None and self.tool_mock is not None:
                mock = self.tool_mock(call.tool_name, call_params(call))
            known = self._tool_def(call.tool_name)
            if mock is not None:
                value, is_error = mock.default_return_value, mock.default_is_error
            elif known is not None:
                value, is_error = substitute(known[1].result, values), False
            else:
                value, is_error = "Tool Called.", False
            self._read_result(value, is_error)
            tool_type = call.type if call.type in ("client", "webhook", "mcp") else None
            results.append(
                ToolResult(
                    type=tool_type,
                    request_id=call.request_id,
                    tool_name=call.tool_name,
                    result_value=value,
                    is_error=is_error,
                    tool_has_been_called=True,
                    tool_latency_secs=round(latency, 3),
                )
            )
        self._emit("agent", None, 0.0, tool_results=results, delay=latency)

    def _read_result(self, value: str, is_error: bool) -> None:
        """A tool result's fields become ``{{result.KEY}}``: what the tool said is what the
        agent says (a mocked result included)."""
        if is_error:
            return
        try:
            data = json.loads(value)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self.result_vars["result"] = value.strip()
        else:
            for key, item in data.items():
                text = stringify(item)
                if text is not None:
                    self.result_vars[f"result.{key}"] = text.replace("_", " ")

    def _transfer_result(self, call: ToolCall, latency: float) -> ToolResult:
        result = {
            "result_type": "transfer_to_agent_success",
            "status": "success",
            "from_agent": self.agent.agent_id,
            "to_agent": HUMAN_AGENT,
            "to_node": None,
            "condition": "a tool failed and the caller needs a human",
        }
        return ToolResult(
            type="system",
            request_id=call.request_id,
            tool_name=call.tool_name,
            result_value=json.dumps(result),
            is_error=False,
            tool_has_been_called=True,
            tool_latency_secs=round(latency, 3),
            result=result,
        )

    def _after_tool(self, last: TranscriptMessage) -> None:
        if any(r.tool_name == TRANSFER_TOOL for r in last.tool_results):
            self.ended, self.end_reason = True, "transferred"
            return
        known = [self._tool_def(r.tool_name) for r in last.tool_results]
        intent = self.intent or next((k[0] for k in known if k is not None), None)
        failed = [r for r in last.tool_results if r.is_error]
        if failed:
            tool = self._tool_def(failed[0].tool_name)
            if intent is not None:
                self._finish_goal(intent, "failed")
            if intent is not None and not self._show("admits_failure"):
                # Claims it went through, in the words of the tool's usual answer.
                if tool is not None:
                    values = {**self.agent_vars, **self.collected}
                    self._read_result(substitute(tool[1].result, values), False)
                self._agent_says(self._resolution(intent), "resolve")
                return
            reply = tool[1].error_reply if tool else ToolDef(name="x").error_reply
            if self._show("escalates"):
                self._agent_says(
                    f"{reply} Let me transfer you to a colleague who can sort this out.",
                    "tool_error",
                )
                self._emit_call("system", TRANSFER_TOOL, {"agent_number": 0, "reason": reply})
                return
            self._agent_says(f"{reply} {self.anything_else}", "tool_error")
            return
        if intent is None:
            self._agent_says(f"All done. {self.anything_else}", "resolve")
            return
        self._finish_goal(intent, "resolved")
        self._agent_says(self._resolution(intent), "resolve")

    # -- results

    def goal_outcomes(self) -> list[GoalOutcome]:
        return [GoalOutcome(g.text, g.intent_id, g.status) for g in self.goals]


def plan_conversation(
    agent: AgentDef,
    request: SimulationRequest,
    rng: random.Random,
    timing: TimingModel = TimingModel(),  # frozen, so one shared default is safe
    tool_mock: ToolMock | None = None,
    user_drift: float = 0.0,
) -> ConversationPlan:
    """Simulate one conversation and its analysis (see the module docstring for the rules).

    Pure and deterministic given ``rng``; never raises for a request that validates as
    ``SimulationRequest``. The verdicts are ``criteria.analyse``'s, from the transcript alone.
    """
    sim = _Simulation(agent, request, rng, timing, tool_mock, user_drift)
    sim.run()
    transcript = sim.transcript
    summary = summarise(agent, sim.goal_outcomes(), sim.end_reason, len(transcript))
    analysis = analyse(agent, request.extra_evaluation_criteria, transcript, summary)
    return ConversationPlan(
        messages=list(sim.new),
        analysis_delay_secs=timing.draw(timing.analysis_secs, rng),
        analysis=analysis,
        behaviour=dict(sim.behaviour),
        shown=dict(sim.shown),
        drifted=sim.drifted,
    )
