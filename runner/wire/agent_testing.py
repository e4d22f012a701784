"""The agent-testing API's wire shapes (the vendor's SDK models we read and send).

Shared by the runner's agent-testing backend and the local API that emulates it. Like the
simulate shapes, every model keeps unknown keys. The scenario-text labels are ours: the runner
writes a job's first message, language and facts into ``simulation_scenario`` on labelled lines
(a simulation test has no fields for them) and the local API reads them back.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from runner.wire.pricing import Charging
from runner.wire.simulate import Result, TranscriptMessage, WireModel

CREATE_PATH = "/v1/convai/agent-testing/create"
TESTS_PATH = "/v1/convai/agent-testing"
TEST_PATH = "/v1/convai/agent-testing/{test_id}"
RUN_PATH = "/v1/convai/agents/{agent_id}/run-tests"
INVOCATION_PATH = "/v1/convai/test-invocations/{invocation_id}"
INVOCATIONS_PATH = "/v1/convai/test-invocations"
CANCEL_PATH = "/v1/convai/test-invocations/{invocation_id}/cancel"

MAX_REPEAT_COUNT = 50
"""The largest ``repeat_count`` of one run-tests call."""
CONDITIONS_ID = "success_conditions"
"""The criterion id under which the runner records a test run's merged condition result."""
MAX_TURNS = 50
"""The largest ``simulation_max_turns`` of a simulation test."""

# Our labels of the scenario text's structured lines; the local API reads them back.
FIRST_MESSAGE_LABEL = "Open the conversation by saying: "
LANGUAGE_LABEL = "Conversation language: "
FACTS_LABEL = "Facts you know, to give when asked: "


# ---------------------------------------------------------------------------- wire models


class ToolMockBehavior(WireModel):
    """``SimulationToolMockBehaviorConfig``."""

    mocking_strategy: Literal["all", "selected", "none"] = "none"
    fallback_strategy: Literal["call_real_tool", "raise_error"] = "raise_error"
    mocked_tool_ids: list[str] = Field(default_factory=list)


class AnythingEval(WireModel):
    type: Literal["anything"]


class ExactEval(WireModel):
    type: Literal["exact"]
    expected_value: str


class RegexEval(WireModel):
    type: Literal["regex"]
    pattern: str


class LlmEval(WireModel):
    type: Literal["llm"]
    description: str


class ParameterCondition(WireModel):
    """``UnitTestToolCallParameter``: the call's parameter at ``path`` must pass ``eval``
    (``UnitTestToolCallParameterEval``, by ``type``)."""

    path: str
    eval: Annotated[AnythingEval | ExactEval | RegexEval | LlmEval, Field(discriminator="type")]


class ToolResponseMock(WireModel):
    """``ToolResponseMockConfig``: one mocked reply of a tool, for the calls whose parameters
    pass every condition (empty: every call)."""

    mock_result: str
    is_error: bool = False
    parameter_conditions: list[ParameterCondition] | None = None


class SimulationTest(WireModel):
    """``CreateSimulationTestRequest`` (the definition of a simulation test)."""

    type: Literal["simulation"] = "simulation"
    name: str
    simulation_scenario: str = ""
    success_conditions: list[str] = Field(default_factory=list, max_length=30)
    success_condition: str | None = None
    simulation_max_turns: int = Field(default=5, ge=1, le=MAX_TURNS)
    chat_history: list[TranscriptMessage] = Field(default_factory=list, max_length=200)
    dynamic_variables: dict[str, Any] = Field(default_factory=dict)
    tool_mock_config: ToolMockBehavior = Field(default_factory=ToolMockBehavior)
    tool_mock_overrides: dict[str, list[ToolResponseMock]] = Field(default_factory=dict)
    evaluation_model: str | None = None
    simulated_user_model: str | None = None
    environment: str | None = None
    parent_folder_id: str | None = None


class ReferencedTool(WireModel):
    """``ReferencedToolCommonModel``: the tool a tool-call test is about."""

    id: str
    type: str = "webhook"


class ToolCallExpectation(WireModel):
    """``UnitTestToolCallEvaluationModelInput``: the call the agent should (or, with
    ``verify_absence``, should not) make, its parameters passing every condition."""

    parameters: list[ParameterCondition] | None = None
    referenced_tool: ReferencedTool | None = None
    verify_absence: bool | None = None


class ToolCallTest(WireModel):
    """``CreateToolCallUnitTestRequest``: does the agent, continuing ``chat_history``, call a
    tool as expected."""

    type: Literal["tool"]
    name: str
    chat_history: list[TranscriptMessage] = Field(default_factory=list, max_length=200)
    dynamic_variables: dict[str, Any] = Field(default_factory=dict)
    tool_call_parameters: ToolCallExpectation | None = None
    check_any_tool_matches: bool | None = None
    environment: str | None = None
    parent_folder_id: str | None = None


class TriggeredGuardrail(WireModel):
    """``TriggeredGuardrailCommonModel`` (SDK 2.78): a guardrail that fired during a run."""

    guardrail_type: str
    guardrail_name: str | None = None
    execution_mode: str | None = None
    guardrail_details: dict[str, Any] | None = None


class CreatedTest(WireModel):
    id: str


class TestSummary(WireModel):
    __test__ = False

    id: str
    name: str
    type: str | None = None


class TestsPage(WireModel):
    """``GetTestsPageResponseModel``."""

    __test__ = False

    tests: list[TestSummary]
    has_more: bool = False
    next_cursor: str | None = None


class ConditionRationale(WireModel):
    messages: list[str] | None = None
    summary: str | None = None


class ConditionResult(WireModel):
    """``TestConditionResultCommonModel``: all success conditions merged into one result."""

    result: Result
    rationale: ConditionRationale | None = None


class TestRun(WireModel):
    """``UnitTestRunResponseModel``. ``status`` stays a string: new statuses must not break us."""

    __test__ = False

    test_run_id: str
    test_invocation_id: str | None = None
    agent_id: str | None = None
    test_id: str
    test_name: str | None = None
    status: str
    agent_responses: list[TranscriptMessage] | None = None
    condition_result: ConditionResult | None = None
    last_updated_at_unix: int | None = None
    credits_used: float | None = None
    charging: Charging | None = None
    triggered_guardrails: list[TriggeredGuardrail] | None = None
    """New in SDK 2.78: the guardrails that fired during the run (absent from older replies)."""


def guardrail_names(run: TestRun) -> list[str] | None:
    """The run's triggered guardrails by name (their type when unnamed); None: not sent."""
    if run.triggered_guardrails is None:
        return None
    return [g.guardrail_name or g.guardrail_type for g in run.triggered_guardrails]


class ResultBucket(WireModel):
    test_run_ids: list[str]
    title: str
    reason: str
    status: str


class ResultGroup(WireModel):
    test_id: str
    test_name: str | None = None
    buckets: list[ResultBucket] = Field(default_factory=list)


class TestInvocation(WireModel):
    """``GetTestSuiteInvocationResponseModel``."""

    __test__ = False

    id: str
    name: str | None = None
    agent_id: str | None = None
    created_at: int | None = None
    repeat_count: int | None = None
    cancelled: bool | None = None
    bucketing_status: str | None = None
    result_groups: list[ResultGroup] | None = None
    test_runs: list[TestRun]


class InvocationSummary(WireModel):
    """``TestInvocationSummaryResponseModel`` (items of the invocations list)."""

    id: str
    name: str | None = None
    agent_id: str | None = None
    branch_id: str | None = None
    created_at_unix_secs: int | None = None
    cancelled: bool | None = None
    test_run_count: int | None = None
    pending_count: int | None = None
    cancelled_count: int | None = None
    credits_used: float | None = None
    total_price: float | None = None
    """USD billed for the whole invocation."""


class InvocationsPage(WireModel):
    """``GetTestInvocationsPageResponseModel``."""

    results: list[InvocationSummary]
    has_more: bool = False
    next_cursor: str | None = None
