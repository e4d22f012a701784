"""A seeded production history per agent, served as the vendor's conversation-history API.

Real teams import failed production calls as regression scenarios (``runner scenarios
import``); the local API needs a production to import from. Each agent gets ``CALLS_PER_AGENT``
conversations spread over the ``HISTORY_DAYS`` days before ``HISTORY_END_UNIX``, each one a
conversation of ``conversation.plan_conversation`` with the agent's own tendencies and judged by
the same transcript-reading judge as a simulation, so some failed and the failures show in the
transcript. What production adds over a simulation: real callers with names, e-mail addresses,
phone numbers and now and then a card number said aloud; now and then a request outside the
agent's scope; and now and then a tool outage (the tool's result is an error).

Everything follows from (server seed, agent id, call index): ids, callers, times and transcripts
are the same for a seed on every start. The end of the history is a fixed date rather than
"now", so a conversation fetched today and one fetched next week are the same conversation.

Routes (``router``): ``GET /v1/convai/conversations`` (filters ``agent_id``,
``call_successful``, ``call_start_after_unix`` / ``call_start_before_unix``,
``evaluation_params`` ``criteria_id:result``, ``user_id``; newest first, or ``sort_direction=asc``;
``page_size`` up to 100, opaque ``cursor``; ``evaluation_criteria_ids`` / ``data_collection_ids``
add those results to each summary) and ``GET /v1/convai/conversations/{conversation_id}``.
Injected faults that are error replies (429s, 5xx) apply to them as to any API call.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from runner.localapi.agents import AgentDef, IntentDef
from runner.localapi.conversation import ConversationPlan, message_json, plan_conversation
from runner.localapi.faults import ERROR_REPLY_KINDS, derive_seed
from runner.localapi.judge import analysis_json, match_intent
from runner.localapi.pricing import conversation_cost
from runner.localapi.replies import fault_response
from runner.localapi.state import LocalAPIState
from runner.wire.conversations import (
    CONVERSATION_PATH,
    CONVERSATIONS_PATH,
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
)
from runner.wire.simulate import (
    DynamicVariablesConfig,
    PromptConfig,
    SimulatedUserConfig,
    SimulationRequest,
    SimulationSpecification,
    ToolMockConfig,
)

CALLS_PER_AGENT = 240
HISTORY_DAYS = 28
HISTORY_END_UNIX = 1_796_083_200
"""2026-12-01T00:00:00Z: the history covers the four weeks before it."""
TURN_LIMIT = 40
OFF_TOPIC_RATE = 0.15
TOOL_OUTAGE_RATE = 0.12
PHONE_RATE = 0.35
"""Share of calls by phone: the caller id is a dynamic variable, and callers say it. The
other calls come from the shop's web widget, which passes the logged-in customer's identity
fields (under their second variable name, e.g. ``order_id``, ``customer_email``) as dynamic
variables, as a site that knows its visitor does."""
CARD_RATE = 0.08
"""Share of callers who read a card number aloud (what redaction must catch)."""

FIRST_NAMES = (
    "Dana", "Omar", "Lena", "Kofi", "Mia", "Tomas", "Aiko", "Priya", "Jonas", "Sofia",
    "Mateo", "Ines", "Noah", "Zara", "Elif", "Lucas", "Hana", "Ravi", "Clara", "Ben",
)  # fmt: skip
LAST_NAMES = (
    "Whitfield", "Haddad", "Berg", "Mensah", "Rossi", "Novak", "Tanaka", "Sharma", "Keller",
    "Lopez", "Silva", "Moreau", "Baker", "Ali", "Yilmaz", "Costa", "Sato", "Iyer", "Vogel",
)  # fmt: skip
OFF_TOPIC = (
    "You also ask whether they can recommend a good plumber.",
    "You also ask what the weather will be like this weekend.",
    "You also ask who won last night's football match.",
    "You also ask whether they sell gift cards for a cinema.",
)
DATES = ("Friday", "Saturday", "tomorrow", "March 14", "next Sunday")
TIMES = ("7 pm", "8 pm", "12:30", "7:30 pm", "1 pm")


@dataclass(frozen=True)
class HistoricCall:
    """One production conversation, as both list item and detail reply."""

    conversation_id: str
    agent_id: str
    start_unix: int
    summary: dict[str, Any]
    """``ConversationSummaryResponseModel`` without the optional result maps."""
    detail: dict[str, Any]
    """``GetConversationResponseModel``."""


def _facts(agent: AgentDef, rng: random.Random) -> tuple[dict[str, str], str, str]:
    """(the caller's values by variable name, first name, full name)."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    values: dict[str, str] = {}
    for field in agent.data_collection:
        extractor = field.extractor
        if extractor == "order_number":
            value = f"A-{rng.randint(10000, 99999)}"
        elif extractor == "email":
            value = f"{first.lower()}.{last.lower()}@example.com"
        elif extractor == "phone":
            value = f"+1 415 555 {rng.randint(1000, 9999)}"
        elif extractor == "name":
            value = f"{first} {last}"
        elif extractor == "date":
            value = rng.choice(DATES)
        elif extractor == "time":
            value = rng.choice(TIMES)
        elif extractor == "party_size":
            value = str(rng.randint(2, 8))
        else:
            continue
        values[field.variable_names[0]] = value
    return values, first, f"{first} {last}"


def _goal_sentence(agent: AgentDef, intent: IntentDef) -> str:
    """A persona sentence the simulated user states as a goal that hits ``intent``."""
    title = intent.title or intent.id.replace("_", " ")
    for sentence in (
        f"You want help with your {title}.",
        f"You want help with your {intent.keywords[0]}.",
    ):
        found = match_intent(agent, sentence)
        if found is not None and found.id == intent.id:
            return sentence
    return f"You want help with: {', '.join(intent.keywords[:2])}."


def _card_number(rng: random.Random) -> str:
    groups = [str(rng.choice((4, 5)))] + [str(rng.randint(0, 9)) for _ in range(15)]
    digits = "".join(groups)
    return " ".join(digits[i : i + 4] for i in range(0, 16, 4))


def _request(
    agent: AgentDef, rng: random.Random
) -> tuple[SimulationRequest, dict[str, Any], str | None]:
    """(the call as a simulation request, the agent's dynamic variables, the caller's phone)."""
    values, first, full = _facts(agent, rng)
    intents = [i for i in agent.intents]
    goals = rng.sample(intents, k=min(len(intents), 2 if rng.random() < 0.3 else 1))
    lines = [f"You are {full}, a customer of {agent.name}."]
    lines += [_goal_sentence(agent, g) for g in goals]
    if rng.random() < OFF_TOPIC_RATE:
        lines.append(rng.choice(OFF_TOPIC))
    lines.append("You do not need anything else.")
    phone = f"+1 415 555 {rng.randint(1000, 9999)}" if rng.random() < PHONE_RATE else None
    opening = ""
    if phone is not None and rng.random() < 0.5:
        opening = f"Hi, this is {first}, my number is {phone} in case we get cut off."
    elif rng.random() < CARD_RATE:
        opening = f"Hi, this is {first}, I paid with my card {_card_number(rng)}."
    mocks: dict[str, ToolMockConfig] = {}
    tools = [g.tool for g in goals if g.tool is not None]
    if tools and rng.random() < TOOL_OUTAGE_RATE:
        tool = rng.choice(tools)
        mocks[tool.name] = ToolMockConfig(
            default_return_value='{"error": "upstream timeout"}', default_is_error=True
        )
    agent_vars: dict[str, Any] = {}
    if "customer_name" in agent.variable_defaults:
        agent_vars["customer_name"] = first
    if phone is None:  # a logged-in web visitor: the site passes what it knows of them
        for field in agent.data_collection:
            known = [n for n in field.variable_names[1:] if field.variable_names[0] in values]
            if field.identity and known:
                agent_vars[known[0]] = values[field.variable_names[0]]
    request = SimulationRequest(
        simulation_specification=SimulationSpecification(
            simulated_user_config=SimulatedUserConfig(
                first_message=opening,
                prompt=PromptConfig(prompt=" ".join(lines)),
                dynamic_variables=DynamicVariablesConfig(dynamic_variable_placeholders=values),
            ),
            tool_mock_config=mocks or None,
            dynamic_variables=agent_vars or None,
        ),
        new_turns_limit=TURN_LIMIT,
    )
    return request, agent_vars, phone


def _text_turns(plan: ConversationPlan, role: str | None = None) -> int:
    return sum(
        1 for m in plan.messages if m.message.message and (role is None or m.message.role == role)
    )


def historic_call(agent: AgentDef, seed: int, index: int, start_unix: int) -> HistoricCall:
    """Production call ``index`` of ``agent``: pure, the same for the same arguments."""
    rng = random.Random(derive_seed(seed, "history", agent.agent_id, index))
    request, agent_vars, phone = _request(agent, rng)
    plan = plan_conversation(agent, request, rng)
    digest = hashlib.sha256(f"{seed}\0{agent.agent_id}\0{index}".encode()).hexdigest()
    conversation_id = f"conv_{digest[:26]}"
    messages = [message_json(m.message) for m in plan.messages]
    duration = (plan.messages[-1].message.time_in_call_secs + 2) if plan.messages else 0
    _, _, credits = conversation_cost(m.message.llm_usage for m in plan.messages)
    source = "twilio" if phone is not None else "widget"
    system_vars: dict[str, Any] = {
        "system__agent_id": agent.agent_id,
        "system__conversation_id": conversation_id,
        "system__call_duration_secs": duration,
        "system__time_utc": start_unix,
    }
    if phone is not None:
        system_vars["system__caller_id"] = phone
    analysis = analysis_json(plan.analysis)
    last = plan.messages[-1].message if plan.messages else None
    ended = (
        "end_call tool was called."
        if last is not None and last.role == "agent"
        else ("Client disconnected: the user left the call.")
    )
    tool_names = sorted({c.tool_name for m in plan.messages for c in m.message.tool_calls})
    detail: dict[str, Any] = {
        "agent_id": agent.agent_id,
        "agent_name": agent.name,
        "conversation_id": conversation_id,
        "status": "done",
        "branch_id": agent.main_branch_id,
        "user_id": None,
        "metadata": {
            "start_time_unix_secs": start_unix,
            "accepted_time_unix_secs": start_unix,
            "call_duration_secs": duration,
            "cost": credits,
            "termination_reason": ended,
            "main_language": "en",
            "conversation_initiation_source": source,
            "text_only": phone is None,
        },
        "analysis": analysis,
        "conversation_initiation_client_data": {
            "dynamic_variables": {**agent_vars, **system_vars},
            "branch_id": agent.main_branch_id,
        },
        "has_audio": phone is not None,
        "has_user_audio": phone is not None,
        "has_response_audio": phone is not None,
        "has_auxiliary_audio": False,
        "transcript": messages,
        "user_message_count": _text_turns(plan, "user"),
        "agent_message_count": _text_turns(plan, "agent"),
    }
    summary: dict[str, Any] = {
        "agent_id": agent.agent_id,
        "agent_name": agent.name,
        "branch_id": agent.main_branch_id,
        "conversation_id": conversation_id,
        "start_time_unix_secs": start_unix,
        "call_duration_secs": duration,
        "cost": credits,
        "message_count": _text_turns(plan),
        "user_message_count": detail["user_message_count"],
        "agent_message_count": detail["agent_message_count"],
        "status": "done",
        "termination_reason": ended,
        "call_successful": analysis["call_successful"],
        "call_success_score": analysis.get("call_success_score"),
        "transcript_summary": analysis["transcript_summary"],
        "call_summary_title": analysis.get("call_summary_title"),
        "main_language": "en",
        "conversation_initiation_source": source,
        "tool_names": tool_names,
        "direction": "inbound" if phone is not None else None,
    }
    return HistoricCall(conversation_id, agent.agent_id, start_unix, summary, detail)


def start_times(seed: int, agent_id: str, n: int) -> list[int]:
    """``n`` call start times over the history window, newest first, seeded."""
    rng = random.Random(derive_seed(seed, "history-times", agent_id))
    window = HISTORY_DAYS * 86_400
    return sorted((HISTORY_END_UNIX - rng.randrange(window) for _ in range(n)), reverse=True)


def agent_history(agent: AgentDef, seed: int, n: int = CALLS_PER_AGENT) -> list[HistoricCall]:
    """The agent's production history, newest first."""
    times = start_times(seed, agent.agent_id, n)
    return [historic_call(agent, seed, i, t) for i, t in enumerate(times)]


# ---------------------------------------------------------------------------- serving


def _criteria_filter(params: Sequence[str]) -> list[tuple[str, str]] | str:
    """``evaluation_params`` as (criterion id, result) pairs, or the one-line problem."""
    pairs = []
    for param in params:
        criterion, sep, result = param.rpartition(":")
        if not sep or not criterion or result not in ("success", "failure", "unknown"):
            return f"evaluation_params: {param!r} is not criteria_id:success|failure|unknown"
        pairs.append((criterion, result))
    return pairs


def _cursor_key(call: HistoricCall) -> str:
    return f"{call.start_unix}.{call.conversation_id}"


class ProductionHistory:
    """Every loaded agent's history, each built once on first use (in a worker thread): a
    list filtered by agent builds that agent's only; a conversation looked up by id builds
    the agents' histories one at a time until it is found."""

    def __init__(self, state: LocalAPIState, calls_per_agent: int = CALLS_PER_AGENT) -> None:
        self.state = state
        self.calls_per_agent = calls_per_agent
        self._built: dict[str, list[HistoricCall]] = {}
        self._by_id: dict[str, HistoricCall] = {}
        self._lock = threading.Lock()

    def _agent_calls(self, agent_id: str) -> list[HistoricCall]:
        with self._lock:
            if agent_id not in self._built:
                calls = agent_history(
                    self.state.agents[agent_id], self.state.seed, self.calls_per_agent
                )
                self._by_id.update((c.conversation_id, c) for c in calls)
                self._built[agent_id] = calls
            return self._built[agent_id]

    def _select(self, agent_id: str | None) -> list[HistoricCall]:
        if agent_id is not None:
            return self._agent_calls(agent_id) if agent_id in self.state.agents else []
        calls = [c for a in self.state.agents for c in self._agent_calls(a)]
        return sorted(calls, key=lambda c: (c.start_unix, c.conversation_id), reverse=True)

    def _find(self, conversation_id: str) -> HistoricCall | None:
        for agent_id in self.state.agents:
            if conversation_id in self._by_id:
                break
            self._agent_calls(agent_id)
        return self._by_id.get(conversation_id)

    async def calls(self, agent_id: str | None = None) -> list[HistoricCall]:
        """Newest first: one agent's calls, or every agent's."""
        if agent_id is not None and agent_id in self._built:
            return self._built[agent_id]
        return await anyio.to_thread.run_sync(self._select, agent_id)

    async def find(self, conversation_id: str) -> HistoricCall | None:
        if conversation_id in self._by_id:
            return self._by_id[conversation_id]
        return await anyio.to_thread.run_sync(self._find, conversation_id)

    def _fault(self) -> Response | None:
        state = self.state
        kind = state.next_fault().kind
        if kind is None or kind not in ERROR_REPLY_KINDS:
            return None
        state.stats.fault_injected(kind.value)
        return fault_response(state, kind)

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.get(CONVERSATIONS_PATH)
        async def list_conversations(
            agent_id: str | None = None,
            call_successful: Literal["success", "failure", "unknown", "error"] | None = None,
            call_start_before_unix: int | None = None,
            call_start_after_unix: int | None = None,
            user_id: str | None = None,
            evaluation_params: Annotated[list[str] | None, Query()] = None,
            evaluation_criteria_ids: Annotated[list[str] | None, Query()] = None,
            data_collection_ids: Annotated[list[str] | None, Query()] = None,
            page_size: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = PAGE_SIZE_DEFAULT,
            sort_direction: Literal["asc", "desc"] = "desc",
            cursor: str | None = None,
        ) -> Response:
            fault = self._fault()
            if fault is not None:
                return fault
            wanted = _criteria_filter(evaluation_params or [])
            if isinstance(wanted, str):
                return JSONResponse(
                    {"detail": {"status": "invalid_request", "message": wanted}}, status_code=422
                )
            found = [
                c
                for c in await self.calls(agent_id)
                if (call_successful is None or c.summary["call_successful"] == call_successful)
                and (call_start_after_unix is None or c.start_unix > call_start_after_unix)
                and (call_start_before_unix is None or c.start_unix < call_start_before_unix)
                and (user_id is None or c.detail["user_id"] == user_id)
                and all(_result(c, cid) == result for cid, result in wanted)
            ]
            if sort_direction == "asc":
                found.reverse()
            start = 0
            if cursor:
                keys = [_cursor_key(c) for c in found]
                start = keys.index(cursor) + 1 if cursor in keys else len(found)
            page = found[start : start + page_size]
            more = start + page_size < len(found)
            return JSONResponse(
                {
                    "conversations": [
                        _summary_json(c, evaluation_criteria_ids, data_collection_ids) for c in page
                    ],
                    "has_more": more,
                    "next_cursor": _cursor_key(page[-1]) if more and page else None,
                }
            )

        @router.get(CONVERSATION_PATH)
        async def get_conversation(conversation_id: str) -> Response:
            fault = self._fault()
            if fault is not None:
                return fault
            call = await self.find(conversation_id)
            if call is None:
                return JSONResponse(
                    {
                        "detail": {
                            "status": "conversation_not_found",
                            "message": f"Conversation {conversation_id!r} was not found.",
                        }
                    },
                    status_code=404,
                )
            return JSONResponse(call.detail)

        return router


def _result(call: HistoricCall, criterion_id: str) -> str | None:
    results = (call.detail["analysis"] or {}).get("evaluation_criteria_results", {})
    item = results.get(criterion_id)
    return item.get("result") if item else None


def _summary_json(
    call: HistoricCall, criteria: list[str] | None, fields: list[str] | None
) -> dict[str, Any]:
    """The list item; the result maps only for the ids asked for, as the vendor's list does."""
    body = {k: v for k, v in call.summary.items() if v is not None}
    analysis = call.detail["analysis"] or {}
    if criteria:
        results = analysis.get("evaluation_criteria_results", {})
        body["evaluation_criteria_results"] = {
            cid: {k: results[cid][k] for k in ("result", "score", "max_score") if k in results[cid]}
            for cid in criteria
            if cid in results
        }
    if fields:
        data = analysis.get("data_collection_results", {})
        body["data_collection_results"] = {
            fid: data[fid].get("value") for fid in fields if fid in data
        }
    return body
