"""A stored test's definition and what it means (pure): the request bodies of the
agent-testing endpoints, the simulate request a simulation test describes, the mock of its
conditional tools, and how a finished run is judged (a tool-call test's verdict, the guardrails a
run triggered). The mapping itself is described in ``runner.localapi.agent_testing``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from pydantic import Field, model_validator

from runner.localapi.conversation import (
    ConversationPlan,
    ToolMock,
    call_params,
)
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


def clip(text: str, limit: int) -> str:
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
            name=clip(condition, 80),
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
