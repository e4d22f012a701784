"""The conversation-history API's wire shapes: a page of conversation summaries and one
conversation in full (``GET /v1/convai/conversations`` and ``.../{conversation_id}``).

Shared by the scenario importer (which reads them) and the local API (which serves a seeded
production history in them). Field names and requiredness follow the vendor's Python SDK 2.78
(``GetConversationsPageResponseModel``, ``ConversationSummaryResponseModel``,
``GetConversationResponseModel``); like every wire model here, unknown keys are kept.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from runner.wire.simulate import Analysis, Result, TranscriptMessage, WireModel

CONVERSATIONS_PATH = "/v1/convai/conversations"
CONVERSATION_PATH = "/v1/convai/conversations/{conversation_id}"

PAGE_SIZE_DEFAULT = 30
PAGE_SIZE_MAX = 100
"""``page_size``: "Can not exceed 100, defaults to 30" (the SDK's docstring)."""

CallFilter = Literal["success", "failure", "unknown", "error"]
"""``call_successful`` filter values (the SDK's ``EvaluationResultFilter``)."""

Status = Literal["initiated", "in-progress", "processing", "done", "failed"]


class CriterionSummary(WireModel):
    """``EvaluationCriteriaSummaryResult``: a criterion's verdict as a list item shows it."""

    result: Result
    score: int | None = None
    max_score: int | None = None


class ConversationSummary(WireModel):
    """``ConversationSummaryResponseModel``: one item of the list."""

    agent_id: str
    conversation_id: str
    start_time_unix_secs: int
    call_duration_secs: int
    message_count: int
    status: str
    call_successful: Result
    agent_name: str | None = None
    branch_id: str | None = None
    transcript_summary: str | None = None
    call_summary_title: str | None = None
    main_language: str | None = None
    termination_reason: str | None = None
    tool_names: list[str] | None = None
    evaluation_criteria_results: dict[str, CriterionSummary | None] | None = None
    data_collection_results: dict[str, Any] | None = None


class ConversationsPage(WireModel):
    """``GetConversationsPageResponseModel``: newest first; ``next_cursor`` while ``has_more``."""

    conversations: list[ConversationSummary]
    has_more: bool
    next_cursor: str | None = None


class ConversationMetadata(WireModel):
    """``ConversationHistoryMetadataCommonModel``: the fields the importer reads."""

    start_time_unix_secs: int
    call_duration_secs: int
    cost: int | None = None
    termination_reason: str | None = None
    main_language: str | None = None
    conversation_initiation_source: str | None = None


class InitiationClientData(WireModel):
    """``ConversationInitiationClientDataRequestOutput``: what the call was started with,
    its ``dynamic_variables`` included (the vendor adds its ``system__*`` ones)."""

    dynamic_variables: dict[str, Any] | None = None
    user_id: str | None = None
    branch_id: str | None = None
    conversation_config_override: dict[str, Any] | None = None


class Conversation(WireModel):
    """``GetConversationResponseModel``: one conversation with transcript and analysis."""

    agent_id: str
    conversation_id: str
    status: str
    metadata: ConversationMetadata
    transcript: list[TranscriptMessage] = Field(default_factory=list)
    has_audio: bool = False
    has_user_audio: bool = False
    has_response_audio: bool = False
    has_auxiliary_audio: bool = False
    agent_name: str | None = None
    user_id: str | None = None
    branch_id: str | None = None
    analysis: Analysis | None = None
    conversation_initiation_client_data: InitiationClientData | None = None
