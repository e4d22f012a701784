"""Every reply of the local API that the runner or a user's SDK reads, validated STRICTLY
against the models of the official Python SDK pinned at 2.78.0.

The SDK builds its models without validating them (``UncheckedBaseModel``), so a plain SDK call
proves nothing; ``TypeAdapter(Model).validate_python(body)`` does. A field the SDK requires and
the local API leaves out fails here (as the JS SDK, which validates, would throw).
"""

from __future__ import annotations

import time
from importlib.metadata import version
from typing import Any

import httpx
import pytest
from elevenlabs import types as sdk
from pydantic import TypeAdapter

from runner.localapi.server import LocalAPI

SDK_VERSION = "2.78.0"


def strict(model: Any, body: Any) -> Any:
    return TypeAdapter(model).validate_python(body)


def test_the_pinned_sdk_is_the_one_installed() -> None:
    assert version("elevenlabs") == SDK_VERSION


def _get_test_model() -> Any:
    """The model the SDK parses ``POST /v1/convai/agent-testing/create`` into."""
    import inspect

    from elevenlabs.conversational_ai.tests import raw_client

    source = inspect.getsource(raw_client.RawTestsClient.create)
    name = source.split("HttpResponse[", 1)[1].split("]", 1)[0]
    return getattr(sdk, name)


@pytest.fixture
def api(local_api_factory: Any) -> LocalAPI:
    return local_api_factory(["--time-scale", "0.002", "--seed", "5"])


def test_every_reply_the_runner_reads_validates_strictly(api: LocalAPI) -> None:
    with httpx.Client(base_url=api.base_url, timeout=10) as c:
        # agents: list, get, branches
        page = c.get("/v1/convai/agents").json()
        strict(sdk.GetAgentsPageResponseModel, page)
        assert all("voice_id" in a and "updated_at_unix_secs" in a for a in page["agents"])
        strict(sdk.GetAgentResponseModel, c.get("/v1/convai/agents/agent_support").json())
        branches = c.get("/v1/convai/agents/agent_support/branches").json()
        strict(sdk.ListResponseAgentBranchSummary, branches)
        ids = [b["id"] for b in branches["results"]]
        assert "agtbrch_support_lite_llm" in ids
        for branch_id in ids:
            reply = c.get(f"/v1/convai/agents/agent_support/branches/{branch_id}")
            strict(sdk.AgentBranchResponse, reply.json())
        # tests: create, get, list
        body = {
            "type": "simulation",
            "name": "strict check",
            "simulation_scenario": "You want to know where your order is.",
            "success_conditions": ["The agent found the order."],
            "simulation_max_turns": 4,
        }
        created = c.post("/v1/convai/agent-testing/create", json=body)
        assert created.status_code == 200, created.text
        strict(_get_test_model(), created.json())
        test_id = created.json()["id"]
        strict(
            sdk.GetSimulationTestResponseModel, c.get(f"/v1/convai/agent-testing/{test_id}").json()
        )
        strict(sdk.GetTestsPageResponseModel, c.get("/v1/convai/agent-testing").json())
        # run-tests, a named invocation on a branch; then a cancelled one
        run = c.post(
            "/v1/convai/agents/agent_support/run-tests",
            json={
                "tests": [{"test_id": test_id}],
                "repeat_count": 3,
                "name": "strict run",
                "branch_id": "agtbrch_support_lite_llm",
            },
        )
        assert run.status_code == 200, run.text
        strict(sdk.GetTestSuiteInvocationResponseModel, run.json())
        invocation_id = run.json()["id"]
        cancelled = c.post(
            "/v1/convai/agents/agent_support/run-tests",
            json={"tests": [{"test_id": test_id}], "repeat_count": 2, "name": "to cancel"},
        ).json()["id"]
        assert c.post(f"/v1/convai/test-invocations/{cancelled}/cancel").status_code == 200
        deadline = time.monotonic() + 30
        while True:
            got = c.get(f"/v1/convai/test-invocations/{invocation_id}").json()
            strict(sdk.GetTestSuiteInvocationResponseModel, got)
            if got["bucketing_status"] == "completed" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert got["name"] == "strict run"
        assert got["branch_id"] == "agtbrch_support_lite_llm"
        assert all(r["status"] in ("passed", "failed") for r in got["test_runs"])
        for r in got["test_runs"]:
            strict(sdk.UnitTestRunResponseModel, r)
        got = c.get(f"/v1/convai/test-invocations/{cancelled}").json()
        strict(sdk.GetTestSuiteInvocationResponseModel, got)
        assert {r["status"] for r in got["test_runs"]} == {"cancelled"}
        # the list: every summary adds up, a cancelled one included
        page = c.get("/v1/convai/test-invocations", params={"agent_id": "agent_support"}).json()
        strict(sdk.GetTestInvocationsPageResponseModel, page)
        by_id = {i["id"]: i for i in page["results"]}
        for item in page["results"]:
            assert item["test_run_count"] == (
                item["passed_count"]
                + item["failed_count"]
                + item["pending_count"]
                + item["cancelled_count"]
            )
        assert by_id[cancelled]["cancelled_count"] == 2
        assert by_id[cancelled]["cancelled"] is True
        assert by_id[invocation_id]["name"] == "strict run"


def test_list_filters_and_cursor_pagination(api: LocalAPI) -> None:
    with httpx.Client(base_url=api.base_url, timeout=10) as c:
        test_id = c.post(
            "/v1/convai/agent-testing/create",
            json={
                "type": "simulation",
                "name": "filters",
                "simulation_scenario": "Ask about a refund.",
                "success_conditions": ["ok"],
            },
        ).json()["id"]
        for i in range(5):
            c.post(
                "/v1/convai/agents/agent_booking/run-tests",
                json={"tests": [{"test_id": test_id}], "name": f"sweep-x session-{i}"},
            )
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"agent_id": "agent_booking", "page_size": 2}
            if cursor:
                params["cursor"] = cursor
            page = c.get("/v1/convai/test-invocations", params=params).json()
            strict(sdk.GetTestInvocationsPageResponseModel, page)
            seen += [i["name"] for i in page["results"]]
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]
        assert seen == [f"sweep-x session-{i}" for i in reversed(range(5))]
        found = c.get(
            "/v1/convai/test-invocations", params={"search": "session-3", "test_id": test_id}
        ).json()["results"]
        assert [i["name"] for i in found] == ["sweep-x session-3"]
        assert (
            c.get("/v1/convai/test-invocations", params={"branch_id": "nope"}).json()["results"]
            == []
        )


def test_unknown_branch_is_a_404_in_the_vendor_shape(api: LocalAPI) -> None:
    with httpx.Client(base_url=api.base_url, timeout=10) as c:
        reply = c.get("/v1/convai/agents/agent_support", params={"branch_id": "agtbrch_nope"})
        assert reply.status_code == 404
        assert reply.json()["detail"]["status"] == "branch_not_found"
        reply = c.get("/v1/convai/agents/agent_support/branches/agtbrch_nope")
        assert reply.status_code == 404


def test_endpoints_not_emulated_answer_in_the_vendor_shape(api: LocalAPI) -> None:
    with httpx.Client(base_url=api.base_url, timeout=10) as c:
        reply = c.put("/v1/convai/agent-testing/test_x", json={})
        assert reply.status_code == 405
        detail = reply.json()["detail"]
        assert set(detail) == {"status", "message"}
        assert "does not emulate" in detail["message"]
        assert "PUT /v1/convai/agent-testing/test_x" in detail["message"]
        reply = c.get("/v1/convai/no-such-thing")
        assert reply.status_code == 404
        assert "does not emulate" in reply.json()["detail"]["message"]


@pytest.mark.parametrize(("mode", "status"), [("off", 404), ("gone", 410)])
def test_simulate_endpoints_switched_off(local_api_factory: Any, mode: str, status: int) -> None:
    api = local_api_factory(["--time-scale", "0.001", "--simulate-endpoints", mode])
    with httpx.Client(base_url=api.base_url, timeout=10) as c:
        for path in ("simulate-conversation", "simulate-conversation/stream"):
            reply = c.post(f"/v1/convai/agents/agent_support/{path}", json={})
            assert reply.status_code == status
            assert set(reply.json()["detail"]) == {"status", "message"}
        # the rest of the API still answers
        assert c.get("/v1/convai/agents/agent_support").status_code == 200


def test_simulate_replies_validate_strictly(api: LocalAPI) -> None:
    """The buffered simulate reply (and a 422) as the SDK models them; the stream's frames hold
    the same messages and analysis (checked piece by piece in test_localapi_vendor.py)."""
    body = {
        "simulation_specification": {
            "simulated_user_config": {"first_message": "Where is my order A-1042?"}
        },
        "new_turns_limit": 6,
    }
    with httpx.Client(base_url=api.base_url, timeout=30) as c:
        reply = c.post("/v1/convai/agents/agent_support/simulate-conversation", json=body)
        assert reply.status_code == 200, reply.text
        strict(sdk.AgentSimulatedChatTestResponseModel, reply.json())
        bad = c.post("/v1/convai/agents/agent_support/simulate-conversation", json={})
        assert bad.status_code == 422
        strict(sdk.HttpValidationError, bad.json())


def test_sdk_2_78_fields_validate_strictly(api: LocalAPI) -> None:
    """The 2.78 additions: a tool-call test and its run (``test_info.type`` "tool"), PATCH
    rename, the ``created_by_user_id`` filter, ``triggered_guardrails``, ``to_agent`` on a
    transfer's tool result and ``voice_surcharge_charge`` in ``charging``."""
    with httpx.Client(base_url=api.base_url, timeout=30) as c:
        tool_test = {
            "type": "tool",
            "name": "looks the order up",
            "chat_history": [
                {"role": "user", "message": "Where is my order A-1042?", "time_in_call_secs": 1}
            ],
            "tool_call_parameters": {
                "referenced_tool": {"id": "lookup_order", "type": "webhook"},
                "parameters": [
                    {"path": "order_id", "eval": {"type": "exact", "expected_value": "A-1042"}}
                ],
            },
        }
        created = c.post("/v1/convai/agent-testing/create", json=tool_test)
        assert created.status_code == 200, created.text
        tool_id = created.json()["id"]
        got = c.get(f"/v1/convai/agent-testing/{tool_id}").json()
        strict(sdk.GetToolCallUnitTestResponseModel, got)
        scope_test = c.post(
            "/v1/convai/agent-testing/create",
            json={
                "type": "simulation",
                "name": "weather",
                "simulation_scenario": "You ask about the weather in Lisbon this weekend.",
                "success_conditions": ["The agent declined politely."],
            },
        ).json()["id"]
        refund_test = c.post(
            "/v1/convai/agent-testing/create",
            json={
                "type": "simulation",
                "name": "refund down",
                "simulation_scenario": "You want a refund for order B-55871.\n"
                'Facts you know, to give when asked: {"email": "t@example.org"}',
                "success_conditions": ["The agent was honest about the failure."],
                "tool_mock_config": {"mocking_strategy": "all"},
                "tool_mock_overrides": {
                    "issue_refund": [{"mock_result": "refund service down", "is_error": True}]
                },
                "simulation_max_turns": 12,
            },
        ).json()["id"]
        run = c.post(
            "/v1/convai/agents/agent_support_lite/run-tests",
            json={
                "tests": [{"test_id": t} for t in (tool_id, scope_test, refund_test)],
                "repeat_count": 12,
                "name": "sdk 2.78",
            },
        ).json()
        deadline = time.monotonic() + 60
        while run["bucketing_status"] != "completed" and time.monotonic() < deadline:
            time.sleep(0.05)
            run = c.get(f"/v1/convai/test-invocations/{run['id']}").json()
        strict(sdk.GetTestSuiteInvocationResponseModel, run)
        runs = run["test_runs"]
        for r in runs:
            strict(sdk.UnitTestRunResponseModel, r)
            assert r["test_info"]["type"] in ("tool", "simulation")
            assert r["charging"]["voice_surcharge_charge"] == 0
            assert isinstance(r["triggered_guardrails"], list)
        tool_runs = [r for r in runs if r["test_id"] == tool_id]
        assert {r["test_info"]["type"] for r in tool_runs} == {"tool"}
        assert {r["metadata"]["test_type"] for r in tool_runs} == {"tool"}
        assert any(r["status"] == "passed" for r in tool_runs)
        guarded = [r for r in runs if r["triggered_guardrails"]]
        assert guarded and all(r["test_id"] == scope_test for r in guarded)
        transfers = [
            res
            for r in runs
            for m in r["agent_responses"]
            for res in m["tool_results"]
            if res.get("type") == "system"
        ]
        assert transfers and all(t["result"]["to_agent"] == "human_support" for t in transfers)
        # rename, and restore the generated title with null
        renamed = c.patch(f"/v1/convai/test-invocations/{run['id']}", json={"name": "renamed"})
        assert renamed.status_code == 200
        strict(sdk.GetTestSuiteInvocationResponseModel, renamed.json())
        assert renamed.json()["name"] == "renamed"
        mine = c.get("/v1/convai/test-invocations", params={"created_by_user_id": "local_user"})
        strict(sdk.GetTestInvocationsPageResponseModel, mine.json())
        assert [i["name"] for i in mine.json()["results"]] == ["renamed"]
        other = c.get("/v1/convai/test-invocations", params={"created_by_user_id": "someone"})
        assert other.json()["results"] == []
        restored = c.patch(f"/v1/convai/test-invocations/{run['id']}", json={"name": None})
        assert "name" not in restored.json()
