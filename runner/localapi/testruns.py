"""The agent-testing emulator's records (stored tests, invocations and their runs) and their
JSON views, the vendor's response models (pure: no I/O)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from runner.localapi.conversation import (
    message_json,
)
from runner.localapi.pricing import charging
from runner.localapi.testbodies import TestBody


def unix_now() -> int:
    return int(time.time())


@dataclass
class StoredTest:
    id: str
    body: TestBody
    created_at: int
    updated_at: int


@dataclass
class TestRun:
    id: str
    test: StoredTest
    status: str = "pending"
    responses: list[dict[str, Any]] | None = None
    condition: dict[str, Any] | None = None
    credits: int | None = None
    price: float | None = None
    """USD of the conversation's LLM usage (``charging.llm_price``)."""
    title: str | None = None
    guardrails: list[dict[str, Any]] | None = None
    """``triggered_guardrails`` once the run is judged."""
    updated_at: int = field(default_factory=unix_now)


@dataclass
class Invocation:
    id: str
    agent_id: str
    created_at: int
    repeat_count: int
    name: str | None
    runs: list[TestRun]
    branch_id: str | None = None
    override: dict[str, Any] | None = None
    cancelled: bool = False
    bucketing_status: str | None = None
    result_groups: list[dict[str, Any]] = field(default_factory=list)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)


def test_json(test: StoredTest) -> dict[str, Any]:
    """``GetSimulationTestResponseModel``."""
    data = test.body.model_dump(mode="json", exclude_none=True)
    data["chat_history"] = [message_json(m) for m in test.body.chat_history]
    return {"id": test.id, **data}


def test_summary(test: StoredTest) -> dict[str, Any]:
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


def run_json(invocation: Invocation, run: TestRun) -> dict[str, Any]:
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


def invocation_json(invocation: Invocation) -> dict[str, Any]:
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
        "test_runs": [run_json(invocation, run) for run in invocation.runs],
    }
    if invocation.name is not None:
        data["name"] = invocation.name
    return data


def invocation_summary(invocation: Invocation) -> dict[str, Any]:
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
