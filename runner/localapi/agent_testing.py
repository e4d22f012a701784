"""The local API's agent-testing endpoints: simulation tests that run on the server, later.

The vendor's successor to the simulate endpoints, emulated with the same conversation model,
judge, timing and faults as the simulate endpoints, so the agent-testing backend is tested end
to end over a real socket:

* ``POST /v1/convai/agent-testing/create`` stores a simulation test (other test types: 422);
  ``GET`` / ``DELETE /v1/convai/agent-testing/{id}`` and ``GET /v1/convai/agent-testing``
  (paged; ``search`` in the name, ``parent_folder_id``) read and remove them.
* ``POST /v1/convai/agents/{agent_id}/run-tests`` answers at once with an invocation whose runs
  (tests x ``repeat_count``) are ``pending``. Each run then plays in the background:
  ``plan_conversation`` on the request the test describes, a sleep of the conversation's
  simulated duration x ``--time-scale``, then ``passed`` or ``failed`` by the judge's verdict on
  the success conditions. With ``repeat_count > 1`` the runs are bucketed afterwards (after the
  analysis delay): one bucket per (status, call title).
* ``GET /v1/convai/test-invocations/{id}``, ``GET /v1/convai/test-invocations`` (paged, by
  ``agent_id``) and ``POST /v1/convai/test-invocations/{id}/cancel``.

A test as a simulate request: ``simulation_scenario`` is the persona, except the labelled lines
the runner writes for the first message, the language and the user's facts (see
``runner.backends.agent_testing.scenario_text``); success condition n is the extra criterion
``condition_<n>``; ``simulation_max_turns`` is ``new_turns_limit``; the tools that
``tool_mock_config`` mocks (a tool's id is its name here) reply with their first
``tool_mock_overrides`` entry whose ``parameter_conditions`` the call's parameters pass (see
``condition_met``), or, none passing, an error when the fallback is ``raise_error`` (else the
tool answers itself); ``chat_history`` and ``dynamic_variables`` pass through.

The merged result is the judge's call outcome over the conditions (failure if any failed,
success if one succeeded, else unknown); a run ``passed`` only on success. ``credits_used``,
``charging`` and an invocation summary's ``total_price`` are priced by ``localapi.pricing``.
Runs queue behind ``--max-concurrency`` rather than being refused, and count as simulations
in ``/_local/stats``.
Every request draws a fault like a simulate request: a POST that draws an error, a dropped
connection or a malformed reply does nothing (the server never processed it); a stall delays
the reply; a GET's malformed reply is its body cut in half. State lives in memory: a restarted
server knows no test and no invocation.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import secrets
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from pydantic import Field, model_validator

from runner.localapi.agents import AgentDef, with_override
from runner.localapi.conversation import (
    ConversationPlan,
    ToolMock,
    call_params,
    message_json,
    plan_conversation,
)
from runner.localapi.faults import (
    ERROR_REPLY_KINDS,
    FaultKind,
    derive_seed,
)
from runner.localapi.judge import call_outcome
from runner.localapi.pricing import charging, conversation_cost
from runner.localapi.replies import DropConnection, fault_response
from runner.localapi.state import LocalAPIState
from runner.localapi.truth import case_label
from runner.wire.agent_testing import (
    FACTS_LABEL,
    FIRST_MESSAGE_LABEL,
    LANGUAGE_LABEL,
    MAX_REPEAT_COUNT,
    ExactEval,
    ParameterCondition,
    RegexEval,
    SimulationTest,
    ToolCallExpectation,
    ToolCallTest,
    ToolMockBehavior,
    ToolResponseMock,
)
from runner.wire.simulate import (
    DynamicVariablesConfig,
    EvaluationCriterion,
    PromptConfig,
    Result,
    SimulatedUserConfig,
    SimulationRequest,
    SimulationSpecification,
    ToolMockConfig,
    WireModel,
)

__all__ = [
    "AgentTestingEmulator",
    "CreateSimulationTestBody",
    "condition_met",
    "parse_scenario",
    "simulation_request",
    "tool_mock",
]

_CRITERION_PROMPT_MAX = 2000


# ---------------------------------------------------------------------------- request bodies


class CreateSimulationTestBody(SimulationTest):
    """``CreateSimulationTestRequest`` as the server validates it."""

    @model_validator(mode="after")
    def _has_condition(self) -> CreateSimulationTestBody:
        if not self.success_conditions and not self.success_condition:
            raise ValueError("at least one of success_condition or success_conditions is required")
        return self

    @property
    def conditions(self) -> list[str]:
        return list(self.success_conditions) or [self.success_condition or ""]


class CreateToolTestBody(ToolCallTest):
    """``CreateToolCallUnitTestRequest`` as the server validates it."""


TestBody = CreateToolTestBody | CreateSimulationTestBody
"""A test's definition: a tool-call test (``type: tool``) or a simulation test."""

LOCAL_USER_ID = "local_user"
"""The one user of the local API: every invocation is theirs (``created_by_user_id``)."""
TOOL_TEST_TURNS = 4
"""New messages a tool-call test lets the agent add to its chat history."""
SCOPE_GUARDRAIL = "Stay within scope"


class RenameBody(WireModel):
    """``PATCH /v1/convai/test-invocations/{id}``: null restores the generated title."""

    name: str | None = None


class SingleTestRun(WireModel):
    test_id: str


class RunTestsBody(WireModel):
    """``RunAgentTestsRequestModel``."""

    tests: list[SingleTestRun] = Field(min_length=1, max_length=5000)
    repeat_count: int = Field(default=1, ge=1, le=MAX_REPEAT_COUNT)
    name: str | None = None
    branch_id: str | None = None
    agent_config_override: dict[str, Any] | None = None


# ---------------------------------------------------------------------------- test -> request


def parse_scenario(text: str) -> tuple[str, str, str, dict[str, Any]]:
    """(persona, first message, language, the user's facts) from ``simulation_scenario``."""
    persona: list[str] = []
    first, language, facts = "", "en", {}
    for line in text.splitlines():
        if line.startswith(FIRST_MESSAGE_LABEL):
            rest = line.removeprefix(FIRST_MESSAGE_LABEL)
            try:
                value = json.loads(rest)
            except ValueError:
                value = rest
            first = value if isinstance(value, str) else rest
        elif line.startswith(LANGUAGE_LABEL):
            language = line.removeprefix(LANGUAGE_LABEL).strip() or "en"
        elif line.startswith(FACTS_LABEL):
            try:
                value = json.loads(line.removeprefix(FACTS_LABEL))
            except ValueError:
                value = None
            facts = value if isinstance(value, dict) else {}
        else:
            persona.append(line)
    return "\n".join(persona).strip(), first, language, facts


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _mocked(behaviour: ToolMockBehavior, tool: str) -> bool:
    if behaviour.mocking_strategy == "all":
        return True
    return behaviour.mocking_strategy == "selected" and tool in behaviour.mocked_tool_ids


def _conditional(overrides: list[ToolResponseMock]) -> bool:
    return any(o.parameter_conditions for o in overrides)


def condition_met(condition: ParameterCondition, params: dict[str, Any]) -> bool:
    """The call's parameter at ``path`` (dots go into objects; absent: not met), as text
    (JSON unless a string), passes ``eval``: ``exact`` equals, ``regex`` is found in it,
    ``anything`` always; ``llm`` too, there being no model here to judge a description."""
    value: Any = params
    for part in condition.path.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    text = value if isinstance(value, str) else json.dumps(value)
    check = condition.eval
    if isinstance(check, ExactEval):
        return text == check.expected_value
    if isinstance(check, RegexEval):
        try:
            return re.search(check.pattern, text) is not None
        except re.error:
            return False
    return True


def tool_mock(test: CreateSimulationTestBody) -> ToolMock | None:
    """The mock of the tools whose overrides have ``parameter_conditions``: a call gets the
    first override whose conditions all pass; none passing, the tool answers itself (or an
    error, with fallback ``raise_error``). None when no override has conditions."""
    behaviour = test.tool_mock_config
    conditional = {
        tool: overrides
        for tool, overrides in test.tool_mock_overrides.items()
        if _conditional(overrides) and _mocked(behaviour, tool)
    }
    if not conditional:
        return None

    def mock(tool: str, params: dict[str, Any]) -> ToolMockConfig | None:
        for override in conditional.get(tool, []):
            conditions = override.parameter_conditions or []
            if all(condition_met(c, params) for c in conditions):
                return ToolMockConfig(
                    default_return_value=override.mock_result, default_is_error=override.is_error
                )
        if tool in conditional and behaviour.fallback_strategy == "raise_error":
            return ToolMockConfig(
                default_return_value="No mock matched this tool call.", default_is_error=True
            )
        return None

    return mock


def simulation_request(
    test: CreateSimulationTestBody, tool_names: Iterable[str] = ()
) -> SimulationRequest:
    """The simulate request a simulation test describes (see the module docstring); the
    tools with conditional mocks are left to ``tool_mock``."""
    persona, first, language, facts = parse_scenario(test.simulation_scenario)
    behaviour = test.tool_mock_config
    mocks: dict[str, ToolMockConfig] = {}
    for tool in sorted({*tool_names, *test.tool_mock_overrides}):
        overrides = test.tool_mock_overrides.get(tool) or []
        if not _mocked(behaviour, tool) or _conditional(overrides):
            continue
        if overrides:
            mock = overrides[0]
            mocks[tool] = ToolMockConfig(
                default_return_value=mock.mock_result, default_is_error=mock.is_error
            )
        elif behaviour.fallback_strategy == "raise_error":
            mocks[tool] = ToolMockConfig(
                default_return_value="No mock matched this tool call.", default_is_error=True
            )
    criteria = [
        EvaluationCriterion(
            id=f"condition_{i}",
            name=_clip(condition, 80),
            conversation_goal_prompt=condition[:_CRITERION_PROMPT_MAX],
        )
        for i, condition in enumerate(test.conditions, start=1)
    ]
    return SimulationRequest(
        simulation_specification=SimulationSpecification(
            simulated_user_config=SimulatedUserConfig(
                first_message=first,
                language=language,
                prompt=PromptConfig(prompt=persona, llm=test.simulated_user_model),
                dynamic_variables=(
                    DynamicVariablesConfig(dynamic_variable_placeholders=facts) if facts else None
                ),
            ),
            tool_mock_config=mocks or None,
            partial_conversation_history=test.chat_history or None,
            dynamic_variables=test.dynamic_variables or None,
        ),
        extra_evaluation_criteria=criteria,
        new_turns_limit=test.simulation_max_turns,
    )


# ---------------------------------------------------------------------------- state


def _now() -> int:
    return int(time.time())


@dataclass
class _Test:
    id: str
    body: TestBody
    created_at: int
    updated_at: int


@dataclass
class _Run:
    id: str
    test: _Test
    status: str = "pending"
    responses: list[dict[str, Any]] | None = None
    condition: dict[str, Any] | None = None
    credits: int | None = None
    price: float | None = None
    """USD of the conversation's LLM usage (``charging.llm_price``)."""
    title: str | None = None
    guardrails: list[dict[str, Any]] | None = None
    """``triggered_guardrails`` once the run is judged."""
    updated_at: int = field(default_factory=_now)


@dataclass
class _Invocation:
    id: str
    agent_id: str
    created_at: int
    repeat_count: int
    name: str | None
    runs: list[_Run]
    branch_id: str | None = None
    override: dict[str, Any] | None = None
    cancelled: bool = False
    bucketing_status: str | None = None
    result_groups: list[dict[str, Any]] = field(default_factory=list)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": {"status": code, "message": message}}, status_code=status)


class AgentTestingEmulator:
    """In-memory tests and invocations of one server, and the routes that serve them."""

    def __init__(self, state: LocalAPIState) -> None:
        self.state = state
        self.salt = secrets.token_hex(3)  # ids of a restarted server never repeat old ones
        self.tests: dict[str, _Test] = {}
        self.invocations: dict[str, _Invocation] = {}
        self.counts: Counter[str] = Counter()
        self.run_counts: dict[bytes, int] = {}
        self._serial = 0
        self.finished: list[dict[str, Any]] = []
        """Every run that finished: its ids, test name and wall-clock end (the benchmark
        measures how long after this the client has the result)."""
        self._slots: asyncio.Semaphore | None = None
        self._background: set[asyncio.Task[None]] = set()

    def _id(self, kind: str) -> str:
        self._serial += 1
        return f"{kind}_{self.salt}{self._serial:08d}"

    def snapshot(self) -> dict[str, int]:
        """Counters for ``/_local/stats`` (key ``agent_testing``)."""
        keys = (
            "tests_created",
            "tests_deleted",
            "invocations_created",
            "runs_started",
            "runs_completed",
            "runs_cancelled",
            "invocation_polls",
            "run_replies_lost",
        )
        return {k: self.counts[k] for k in keys} | {"tests": len(self.tests)}

    # -------------------------------------------------------------- faults

    async def _fault(self, *, mutating: bool) -> tuple[Response | None, bool]:
        """(reply to send instead, truncate the real reply) for this request's fault draw."""
        state = self.state
        kind = state.next_fault().kind
        if kind is None:
            return None, False
        state.stats.fault_injected(kind.value)
        if kind in ERROR_REPLY_KINDS:
            return fault_response(state, kind), False
        if kind in (FaultKind.RESET, FaultKind.DISCONNECT):
            state.stats.stream_broken(kind.value)
            return DropConnection(state, reset=kind is FaultKind.RESET), False
        if kind is FaultKind.STALL:
            await anyio.sleep(state.settings.faults.stall_secs)
            return None, False
        state.stats.stream_broken("malformed")
        if mutating:
            return Response(b'{"detail": {"sta', media_type="application/json"), False
        return None, True

    @staticmethod
    def _json(payload: Any, truncate: bool = False) -> Response:
        body = json.dumps(payload).encode()
        return Response(body[: len(body) // 2] if truncate else body, media_type="application/json")

    # -------------------------------------------------------------- JSON views

    def test_json(self, test: _Test) -> dict[str, Any]:
        """``GetSimulationTestResponseModel``."""
        data = test.body.model_dump(mode="json", exclude_none=True)
        data["chat_history"] = [message_json(m) for m in test.body.chat_history]
        return {"id": test.id, **data}

    @staticmethod
    def test_summary(test: _Test) -> dict[str, Any]:
        """``UnitTestSummaryResponseModel``."""
        return {
            "id": test.id,
            "name": test.body.name,
            "type": test.body.type,
            "entity_type": "test",
            "created_at_unix_secs": test.created_at,
            "last_updated_at_unix_secs": test.updated_at,
            "folder_parent_id": test.body.parent_folder_id,
        }

    def run_json(self, invocation: _Invocation, run: _Run) -> dict[str, Any]:
        """``UnitTestRunResponseModel``."""
        info = run.test.body.model_dump(mode="json", exclude_none=True, exclude={"name"})
        info["chat_history"] = [message_json(m) for m in run.test.body.chat_history]
        data: dict[str, Any] = {
            "test_run_id": run.id,
            "test_invocation_id": invocation.id,
            "agent_id": invocation.agent_id,
            "status": run.status,
            "test_id": run.test.id,
            "test_name": run.test.body.name,
            "agent_responses": run.responses,
            "condition_result": run.condition,
            "test_info": info,
            "last_updated_at_unix": run.updated_at,
            "metadata": {
                "workspace_id": "local",
                "test_name": run.test.body.name,
                "ran_by_user_email": "local@localhost",
                "test_type": run.test.body.type,
            },
        }
        if run.guardrails is not None:
            data["triggered_guardrails"] = run.guardrails
        if run.credits is not None:
            data["credits_used"] = run.credits
            data["charging"] = charging(run.price or 0.0, run.credits)
        return data

    def invocation_json(self, invocation: _Invocation) -> dict[str, Any]:
        """``GetTestSuiteInvocationResponseModel``."""
        data: dict[str, Any] = {
            "id": invocation.id,
            "agent_id": invocation.agent_id,
            "branch_id": invocation.branch_id,
            "ran_against_draft": False,
            "created_at": invocation.created_at,
            "repeat_count": invocation.repeat_count,
            "cancelled": invocation.cancelled,
            "bucketing_status": invocation.bucketing_status,
            "result_groups": invocation.result_groups,
            "test_runs": [self.run_json(invocation, run) for run in invocation.runs],
        }
        if invocation.name is not None:
            data["name"] = invocation.name
        return data

    @staticmethod
    def invocation_summary(invocation: _Invocation) -> dict[str, Any]:
        """``TestInvocationSummaryResponseModel``."""
        statuses = Counter(run.status for run in invocation.runs)
        data: dict[str, Any] = {
            "id": invocation.id,
            "agent_id": invocation.agent_id,
            "branch_id": invocation.branch_id,
            "ran_against_draft": False,
            "created_at_unix_secs": invocation.created_at,
            "repeat_count": invocation.repeat_count,
            "cancelled": invocation.cancelled,
            "test_run_count": len(invocation.runs),
            "passed_count": statuses["passed"],
            "failed_count": statuses["failed"],
            "pending_count": statuses["pending"],
            "cancelled_count": statuses["cancelled"],
            "title": invocation.name or f"{len(invocation.runs)} test run(s)",
            "credits_used": sum(run.credits or 0 for run in invocation.runs),
            "total_price": round(sum(run.price or 0.0 for run in invocation.runs), 10),
        }
        if invocation.name is not None:
            data["name"] = invocation.name
        return data

    # -------------------------------------------------------------- running

    def _plan(self, invocation: _Invocation, run: _Run, agent: AgentDef) -> ConversationPlan:
        """The run's conversation, judged (with the judge's noise) and recorded by the state."""
        test, body = run.test, run.test.body
        assert isinstance(body, CreateSimulationTestBody)
        tools = [i.tool.name for i in agent.intents if i.tool is not None]
        request = simulation_request(body, tools)
        canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        key = hashlib.sha256(f"{agent.agent_id}\0{canonical}".encode()).digest()
        n = self.run_counts.get(key, 0)
        self.run_counts[key] = n + 1
        seed = derive_seed(self.state.seed, "agent-testing", agent.agent_id, canonical, n)
        settings = self.state.settings
        mock = tool_mock(body)
        plan = plan_conversation(
            agent, request, random.Random(seed), settings.timing, mock, settings.user_drift
        )
        identity = ["test", agent.agent_id, invocation.branch_id, invocation.override, canonical]
        label = case_label(
            agent,
            request,
            kind="agent-testing",
            branch_id=invocation.branch_id,
            override=invocation.override,
            test_name=test.body.name,
        )
        case = self.state.case(identity, agent, request, mock, label)
        return self.state.serve(case, plan, run.id)

    def _plan_tool_test(self, agent: AgentDef, body: CreateToolTestBody) -> ConversationPlan:
        """The agent continues the test's chat history for a few messages."""
        request = SimulationRequest(
            simulation_specification=SimulationSpecification(
                simulated_user_config=SimulatedUserConfig(),
                partial_conversation_history=body.chat_history or None,
                dynamic_variables=body.dynamic_variables or None,
            ),
            new_turns_limit=TOOL_TEST_TURNS,
        )
        canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True)
        key = hashlib.sha256(f"{agent.agent_id}\0{canonical}".encode()).digest()
        n = self.run_counts.get(key, 0)
        self.run_counts[key] = n + 1
        seed = derive_seed(self.state.seed, "tool-test", agent.agent_id, canonical, n)
        return plan_conversation(agent, request, random.Random(seed), self.state.settings.timing)

    def _finish(self, run: _Run, plan: ConversationPlan) -> None:
        analysis = plan.analysis
        body = run.test.body
        if isinstance(body, CreateToolTestBody):
            merged, messages = tool_call_verdict(body, plan)
            summary = messages[0]
        else:
            n = len(body.conditions)
            results = [
                analysis.evaluation_criteria_results[f"condition_{i}"]
                for i in range(1, n + 1)
                if f"condition_{i}" in analysis.evaluation_criteria_results
            ]
            merged = call_outcome(results)
            met = sum(r.result == "success" for r in results)
            messages = [r.rationale for r in results]
            summary = f"{met} of {len(results)} success condition(s) met. "
            summary += analysis.transcript_summary
        usd, _, credits = conversation_cost(m.message.llm_usage for m in plan.messages)
        run.status = "passed" if merged == "success" else "failed"
        run.responses = [message_json(m.message) for m in plan.messages]
        run.condition = {"result": merged, "rationale": {"messages": messages, "summary": summary}}
        run.guardrails = triggered_guardrails(plan)
        run.credits = credits
        run.price = usd
        self.state.stats.bill(usd, credits)
        run.title = analysis.call_summary_title
        run.updated_at = _now()
        self.finished.append(
            {
                "test_run_id": run.id,
                "test_id": run.test.id,
                "test_name": run.test.body.name,
                "finished_at": time.time(),
            }
        )
        self.state.stats.messages_sent += len(plan.messages)

    async def _execute(self, invocation: _Invocation, run: _Run, agent: AgentDef) -> None:
        """One run in the background: queue for a slot, play the conversation, judge it."""
        stats = self.state.stats
        cap = self.state.settings.max_concurrency
        if cap is not None and self._slots is None:
            self._slots = asyncio.Semaphore(cap)
        try:
            if self._slots is not None:
                await self._slots.acquire()
            try:
                self.counts["runs_started"] += 1
                stats.simulation_started()
                completed = False
                try:
                    if isinstance(run.test.body, CreateToolTestBody):
                        plan = self._plan_tool_test(agent, run.test.body)
                    else:
                        plan = self._plan(invocation, run, agent)
                    delay = sum(m.delay_secs for m in plan.messages) + plan.analysis_delay_secs
                    await asyncio.sleep(delay * self.state.settings.time_scale)
                    self._finish(run, plan)
                    completed = True
                    self.counts["runs_completed"] += 1
                finally:
                    stats.simulation_ended(completed=completed)
            finally:
                if self._slots is not None:
                    self._slots.release()
        except asyncio.CancelledError:
            self._cancel_run(run)  # cancelling this task is how a run is cancelled
        finally:
            invocation.tasks.pop(run.id, None)
            self._after_run(invocation)

    def _cancel_run(self, run: _Run) -> None:
        if run.status == "pending":
            run.status = "cancelled"
            run.updated_at = _now()
            self.counts["runs_cancelled"] += 1

    def _after_run(self, invocation: _Invocation) -> None:
        """Once every run is done: bucket them (``repeat_count > 1``) after the analysis delay."""
        if invocation.repeat_count <= 1 or invocation.bucketing_status is not None:
            return
        if any(run.status == "pending" for run in invocation.runs):
            return
        invocation.bucketing_status = "pending"
        delay = self.state.settings.timing.analysis_secs * self.state.settings.time_scale
        self._spawn(self._bucket_later(invocation, delay))

    async def _bucket_later(self, invocation: _Invocation, delay: float) -> None:
        await asyncio.sleep(delay)
        groups = []
        for test_id in dict.fromkeys(run.test.id for run in invocation.runs):
            runs = [r for r in invocation.runs if r.test.id == test_id]
            judged = [r for r in runs if r.status in ("passed", "failed")]
            buckets: dict[tuple[str, str], list[_Run]] = {}
            for run in judged:
                buckets.setdefault((run.status, run.title or "Conversation"), []).append(run)
            groups.append(
                {
                    "test_id": test_id,
                    "test_name": runs[0].test.body.name,
                    "buckets": [
                        {
                            "test_run_ids": [r.id for r in members],
                            "title": f"{status.capitalize()}: {title}",
                            "reason": f"{len(members)} of {len(runs)} run(s) {status}. "
                            + _clip(
                                (members[0].condition or {})
                                .get("rationale", {})
                                .get("summary", ""),
                                240,
                            ),
                            "status": status,
                        }
                        for (status, title), members in buckets.items()
                    ],
                }
            )
        invocation.result_groups = groups
        any_judged = any(g["buckets"] for g in groups)
        invocation.bucketing_status = "completed" if any_judged else "failed"

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)  # a reference, or the loop may drop the task
        task.add_done_callback(self._background.discard)
        return task

    # -------------------------------------------------------------- routes

    def router(self) -> APIRouter:
        router = APIRouter()
        state = self.state

        @router.get("/_local/agent-testing/finished", include_in_schema=False)
        async def finished_runs() -> Response:
            return self._json({"runs": self.finished})

        @router.post("/v1/convai/agent-testing/create")
        async def create_test(body: TestBody) -> Response:
            fault, _ = await self._fault(mutating=True)
            if fault is not None:
                return fault
            now = _now()
            test = _Test(self._id("test"), body, now, now)
            self.tests[test.id] = test
            self.counts["tests_created"] += 1
            return self._json({"id": test.id})

        @router.get("/v1/convai/agent-testing")
        async def list_tests(
            cursor: str | None = None,
            page_size: Annotated[int, Query(ge=1, le=100)] = 30,
            search: str | None = None,
            parent_folder_id: str | None = None,
        ) -> Response:
            fault, truncate = await self._fault(mutating=False)
            if fault is not None:
                return fault
            tests = list(self.tests.values())
            if search:
                needle = search.lower()
                tests = [t for t in tests if needle in t.body.name.lower()]
            if parent_folder_id is not None:
                folder = None if parent_folder_id == "root" else parent_folder_id
                tests = [t for t in tests if t.body.parent_folder_id == folder]
            start = int(cursor) if cursor is not None and cursor.isdigit() else 0
            more = start + page_size < len(tests)
            page = {
                "tests": [self.test_summary(t) for t in tests[start : start + page_size]],
                "has_more": more,
                "next_cursor": str(start + page_size) if more else None,
            }
            return self._json(page, truncate)

        @router.get("/v1/convai/agent-testing/{test_id}")
        async def get_test(test_id: str) -> Response:
            test = self.tests.get(test_id)
            if test is None:
                return _test_not_found(test_id)
            fault, truncate = await self._fault(mutating=False)
            return fault or self._json(self.test_json(test), truncate)

        @router.delete("/v1/convai/agent-testing/{test_id}")
        async def delete_test(test_id: str) -> Response:
            if test_id not in self.tests:
                return _test_not_found(test_id)
            fault, _ = await self._fault(mutating=True)
            if fault is not None:
                return fault
            del self.tests[test_id]
            self.counts["tests_deleted"] += 1
            return self._json({})

        @router.post("/v1/convai/agents/{agent_id}/run-tests")
        async def run_tests(agent_id: str, body: RunTestsBody) -> Response:
            agent = state.agents.get(agent_id)
            if agent is None:
                return _error(404, "agent_not_found", f"Agent with id {agent_id!r} was not found.")
            try:
                branch = agent.branch(body.branch_id)
            except KeyError:
                return _error(
                    404,
                    "branch_not_found",
                    f"Branch {body.branch_id!r} of agent {agent_id!r} was not found.",
                )
            missing = [t.test_id for t in body.tests if t.test_id not in self.tests]
            if missing:
                return _test_not_found(missing[0])
            fault, _ = await self._fault(mutating=True)
            if fault is not None:
                return fault
            invocation = _Invocation(
                id=self._id("tinv"),
                agent_id=agent_id,
                created_at=_now(),
                repeat_count=body.repeat_count,
                name=body.name,
                branch_id=body.branch_id or agent.main_branch_id,
                override=body.agent_config_override,
                runs=[
                    _Run(self._id("trun"), self.tests[t.test_id])
                    for t in body.tests
                    for _ in range(body.repeat_count)
                ],
            )
            self.invocations[invocation.id] = invocation
            self.counts["invocations_created"] += 1
            variant = with_override(agent, branch, body.agent_config_override)
            for run in invocation.runs:
                invocation.tasks[run.id] = self._spawn(self._execute(invocation, run, variant))
            if self.counts["run_replies_lost"] < state.settings.lose_run_replies:
                self.counts["run_replies_lost"] += 1
                return DropConnection(state, reset=True)
            return self._json(self.invocation_json(invocation))

        @router.get("/v1/convai/test-invocations")
        async def list_invocations(
            agent_id: str | None = None,
            branch_id: str | None = None,
            test_id: str | None = None,
            search: str | None = None,
            start_time: int | None = None,
            end_time: int | None = None,
            created_by_user_id: str | None = None,
            version_id: str | None = None,
            page_size: Annotated[int, Query(ge=1, le=100)] = 30,
            cursor: str | None = None,
        ) -> Response:
            """Newest first; filters as the vendor's (``search``: in the name; the times are
            unix seconds of creation; every local invocation is the one user's, on no
            version)."""
            fault, truncate = await self._fault(mutating=False)
            if fault is not None:
                return fault
            needle = search.lower() if search else None

            def wanted(i: _Invocation) -> bool:
                return (
                    (agent_id is None or i.agent_id == agent_id)
                    and (branch_id is None or i.branch_id == branch_id)
                    and (test_id is None or any(r.test.id == test_id for r in i.runs))
                    and (needle is None or needle in (i.name or "").lower())
                    and (start_time is None or i.created_at >= start_time)
                    and (end_time is None or i.created_at <= end_time)
                    and version_id is None
                    and created_by_user_id in (None, LOCAL_USER_ID)
                )

            found = [i for i in reversed(self.invocations.values()) if wanted(i)]
            start = int(cursor) if cursor is not None and cursor.isdigit() else 0
            more = start + page_size < len(found)
            page = {
                "results": [self.invocation_summary(i) for i in found[start : start + page_size]],
                "has_more": more,
                "next_cursor": str(start + page_size) if more else None,
                "meta": {"page": start // page_size, "page_size": page_size, "total": len(found)},
            }
            return self._json(page, truncate)

        @router.get("/v1/convai/test-invocations/{test_invocation_id}")
        async def get_invocation(test_invocation_id: str) -> Response:
            invocation = self.invocations.get(test_invocation_id)
            if invocation is None:
                return _invocation_not_found(test_invocation_id)
            fault, truncate = await self._fault(mutating=False)
            if fault is not None:
                return fault
            self.counts["invocation_polls"] += 1
            return self._json(self.invocation_json(invocation), truncate)

        @router.patch("/v1/convai/test-invocations/{test_invocation_id}")
        async def rename_invocation(test_invocation_id: str, body: RenameBody) -> Response:
            """Sets the invocation's name; null restores the generated title."""
            invocation = self.invocations.get(test_invocation_id)
            if invocation is None:
                return _invocation_not_found(test_invocation_id)
            fault, _ = await self._fault(mutating=True)
            if fault is not None:
                return fault
            invocation.name = body.name
            return self._json(self.invocation_json(invocation))

        @router.post("/v1/convai/test-invocations/{test_invocation_id}/cancel")
        async def cancel_invocation(test_invocation_id: str) -> Response:
            invocation = self.invocations.get(test_invocation_id)
            if invocation is None:
                return _invocation_not_found(test_invocation_id)
            fault, _ = await self._fault(mutating=True)
            if fault is not None:
                return fault
            invocation.cancelled = True
            for run in invocation.runs:
                self._cancel_run(run)
            for task in list(invocation.tasks.values()):
                task.cancel()
            self._after_run(invocation)
            return self._json({})

        return router


def tool_call_verdict(body: ToolCallTest, plan: ConversationPlan) -> tuple[Result, list[str]]:
    """A tool-call test's result: the first call (any call, with ``check_any_tool_matches``)
    of the referenced tool passes every parameter condition; ``verify_absence`` inverts it."""
    expected = body.tool_call_parameters or ToolCallExpectation()
    tool = expected.referenced_tool.id if expected.referenced_tool is not None else None
    first = len(body.chat_history) + 1
    calls = [
        (first + i, call)
        for i, planned in enumerate(plan.messages)
        for call in planned.message.tool_calls
    ]
    if not body.check_any_tool_matches:
        calls = calls[:1]
    wanted = [(n, c) for n, c in calls if tool is None or c.tool_name == tool]
    conditions = expected.parameters or []
    passing = [
        (n, c) for n, c in wanted if all(condition_met(p, call_params(c)) for p in conditions)
    ]
    absent = bool(expected.verify_absence)
    ok = not passing if absent else bool(passing)
    if passing:
        n, call = passing[0]
        why = f"turn {n}: the agent called {call.tool_name} with {call.params_as_json}"
    elif wanted:
        n, call = wanted[0]
        why = f"turn {n}: {call.tool_name} was called with {call.params_as_json}, which fails"
        why += " its parameter conditions"
    elif calls:
        why = f"turn {calls[0][0]}: the agent called {calls[0][1].tool_name}, not {tool}"
    else:
        why = "the agent called no tool"
    verdict = "as expected" if ok else "not as expected"
    return ("success" if ok else "failure"), [f"{why}: {verdict}."]


def triggered_guardrails(plan: ConversationPlan) -> list[dict[str, Any]]:
    """The guardrails a run triggered: the scope guardrail when the agent answered a request
    outside its scope (it runs alongside the reply: ``streaming``)."""
    if plan.shown.get("stays_in_scope") is not False:
        return []
    return [
        {
            "guardrail_type": "custom",
            "guardrail_name": SCOPE_GUARDRAIL,
            "execution_mode": "streaming",
            "guardrail_details": {
                "type": "llm",
                "rationale": "The agent answered a request outside its scope.",
            },
        }
    ]


def _test_not_found(test_id: str) -> JSONResponse:
    return _error(404, "test_not_found", f"Test with id {test_id!r} was not found.")


def _invocation_not_found(invocation_id: str) -> JSONResponse:
    return _error(
        404, "test_invocation_not_found", f"Test invocation {invocation_id!r} was not found."
    )
