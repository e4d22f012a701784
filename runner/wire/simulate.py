"""Pydantic models of the simulate-conversation wire format.

One definition shared by the runner's client (which builds requests and reads replies) and by
the local API (which reads requests and builds replies). Every model accepts unknown keys
(``extra="allow"``): the real service adds optional fields over time and a client that rejects
them breaks for no reason. Field names, requiredness and defaults follow the vendor's OpenAPI
document (a copy is in ``tests/vendor/``; the tests check our shapes against it).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

Result = Literal["success", "failure", "unknown"]
"""The exact strings the API uses for criterion and call outcomes."""

Role = Literal["user", "agent"]

STREAM_PATH = "/v1/convai/agents/{agent_id}/simulate-conversation/stream"
BUFFERED_PATH = "/v1/convai/agents/{agent_id}/simulate-conversation"


class WireModel(BaseModel):
    """Base for wire objects: unknown keys are kept, not rejected."""

    model_config = ConfigDict(extra="allow")


# ---------------------------------------------------------------------------- request side


class PromptConfig(WireModel):
    prompt: str = ""
    llm: str | None = None
    temperature: float | None = None
    max_tokens: int = -1


class DynamicVariablesConfig(WireModel):
    dynamic_variable_placeholders: dict[str, Any] = Field(default_factory=dict)


class SimulatedUserConfig(WireModel):
    """``AgentConfigAPIModel`` as used for the *simulated user*."""

    first_message: str = ""
    language: str = "en"
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    dynamic_variables: DynamicVariablesConfig | None = None
    disable_first_message_interruptions: bool = False


class ToolMockConfig(WireModel):
    default_return_value: str = "Tool Called."
    default_is_error: bool = False


class ToolCall(WireModel):
    type: str | None = None
    request_id: str
    tool_name: str
    params_as_json: str
    tool_has_been_called: bool
    tool_details: Any = None


class ToolResult(WireModel):
    type: str | None = None
    request_id: str
    tool_name: str
    result_value: str
    is_error: bool
    tool_has_been_called: bool
    tool_latency_secs: float = 0
    result: dict[str, Any] | None = None
    """A system tool's structured result (SDK 2.78), e.g. a transfer's ``to_agent`` and
    ``to_node``; absent on other tools."""


# ``llm_usage`` arrives on nearly every agent message, three levels deep. Validated as typed
# dicts rather than models: the same checks for about a third less decoding per stream.


@with_config(ConfigDict(extra="allow"))
class TokenCategoryUsage(TypedDict, total=False):
    tokens: int
    price: float


@with_config(ConfigDict(extra="allow"))
class ModelUsage(TypedDict, total=False):
    input: TokenCategoryUsage | None
    input_cache_read: TokenCategoryUsage | None
    input_cache_write: TokenCategoryUsage | None
    output_total: TokenCategoryUsage | None


@with_config(ConfigDict(extra="allow"))
class LLMUsage(TypedDict, total=False):
    model_usage: dict[str, ModelUsage]


def usage_totals(usage: LLMUsage | None) -> tuple[int, int, float]:
    """(input tokens, output tokens, price) of one message's ``llm_usage``, over every model
    and input category (plain input, cache reads and writes)."""
    tokens_in = tokens_out = 0
    price = 0.0
    for model in (usage or {}).get("model_usage", {}).values():
        for part in (
            model.get("input"),
            model.get("input_cache_read"),
            model.get("input_cache_write"),
        ):
            if part:
                tokens_in += part.get("tokens", 0)
                price += part.get("price", 0.0)
        out = model.get("output_total")
        if out:
            tokens_out += out.get("tokens", 0)
            price += out.get("price", 0.0)
    return tokens_in, tokens_out, price


class TranscriptMessage(WireModel):
    """One message of a transcript, in a request's history or a reply's conversation."""

    role: Role
    time_in_call_secs: int
    message: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_results: list[ToolResult] = Field(default_factory=list)
    interrupted: bool = False
    llm_usage: LLMUsage | None = None


class SimulationSpecification(WireModel):
    simulated_user_config: SimulatedUserConfig
    tool_mock_config: dict[str, ToolMockConfig] | None = None
    partial_conversation_history: list[TranscriptMessage] | None = None
    dynamic_variables: dict[str, Any] | None = None


class EvaluationCriterion(WireModel):
    """``PromptEvaluationCriteria``: an extra criterion the server judges the transcript by."""

    id: str
    name: str
    conversation_goal_prompt: str = Field(max_length=2000)
    type: Literal["prompt"] = "prompt"
    use_knowledge_base: bool = False
    scope: Literal["conversation", "agent"] | None = None
    llm: str | None = None
    scoring_mode: Literal["binary", "numeric_uniform"] = "binary"
    max_score: int = 100
    score_instructions: str | None = None


class SimulationRequest(WireModel):
    """Body of both simulate-conversation endpoints."""

    simulation_specification: SimulationSpecification
    extra_evaluation_criteria: list[EvaluationCriterion] | None = None
    new_turns_limit: int = 10000

    def to_json_body(self) -> dict[str, Any]:
        """The exact body sent: unset optional fields are left out, not sent as null."""
        return self.model_dump(mode="json", exclude_none=True)


# ---------------------------------------------------------------------------- reply side


class CriterionResult(WireModel):
    criteria_id: str
    result: Result
    rationale: str
    scoring_mode: str | None = None
    score: int | None = None
    max_score: int | None = None


class DataCollectionResult(WireModel):
    data_collection_id: str
    value: Any = None
    json_schema: Any = None
    rationale: str


class Analysis(WireModel):
    call_successful: Result
    transcript_summary: str
    evaluation_criteria_results: dict[str, CriterionResult] = Field(default_factory=dict)
    data_collection_results: dict[str, DataCollectionResult] = Field(default_factory=dict)
    call_summary_title: str | None = None
    call_success_score: float | None = None


class SimulationResponse(WireModel):
    """``AgentSimulatedChatTestResponseModel``: the buffered endpoint's reply."""

    simulated_conversation: list[TranscriptMessage]
    analysis: Analysis


class StreamFrame(WireModel):
    """One decoded stream frame: new messages, or (last) the analysis."""

    simulated_conversation: list[TranscriptMessage] | None = None
    analysis: Analysis | None = None


# ---------------------------------------------------------------------------- errors and agents


class ErrorDetail(WireModel):
    status: str
    message: str


class ErrorBody(WireModel):
    """``{"detail": {"status", "message"}}``: the form of 401, 404, 429 and 5xx bodies."""

    detail: ErrorDetail
