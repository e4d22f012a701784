"""The local API against outside truth: the vendor's OpenAPI document, schemathesis and the SDK.

Our own pydantic models could share a mistake with the server that uses them; these checks use
only the vendor's published schema (``tests/vendor/elevenlabs-openapi-subset.json``) and
the vendor's own Python SDK, so they catch a reply that our models accept but the real
clients would not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import vendor_schema

from runner.localapi.server import LocalAPI

VENDOR_OPENAPI = vendor_schema.openapi_path()
SIMULATE = "/v1/convai/agents/{agent_id}/simulate-conversation"
REQUEST_SCHEMA = (
    "Body_Simulates_a_conversation__Stream__v1_convai_agents__agent_id__simulate_conversation"
    "_stream_post"
)

vendor_doc = vendor_schema.vendor_doc
validator = vendor_schema.validator
assert_vendor_valid = vendor_schema.assert_vendor_valid


def decode_lines(text: str) -> list[dict[str, Any]]:
    """Stream body -> frames (each non-blank line is a JSON string literal holding a frame)."""
    return [json.loads(json.loads(line)) for line in text.splitlines() if line.strip()]


# Vendor-shaped request bodies covering the optional fields and the agents' paths (tool calls,
# tool errors, history, extra criteria, dynamic variables).
SCENARIOS: list[dict[str, Any]] = [
    {
        "simulation_specification": {
            "simulated_user_config": {
                "first_message": "My order never arrived.",
                "language": "en",
                "prompt": {"prompt": "You want to know where your order A-10234 is."},
            }
        },
        "new_turns_limit": 20,
    },
    {
        "simulation_specification": {
            "simulated_user_config": {
                "first_message": "",
                "prompt": {
                    "prompt": "You want a refund for order A-555. Your email is ann@example.com.",
                    "llm": "gemini-2.5-flash",
                    "temperature": 0.3,
                    "max_tokens": -1,
                },
                "dynamic_variables": {"dynamic_variable_placeholders": {"customer_name": "Ann"}},
                "disable_first_message_interruptions": False,
            },
            "tool_mock_config": {
                "issue_refund": {"default_return_value": "refund failed", "default_is_error": True}
            },
            "dynamic_variables": {"customer_name": "Ann", "order_number": "A-555"},
        },
        "extra_evaluation_criteria": [
            {
                "id": "refund_handled",
                "name": "Refund handled",
                "conversation_goal_prompt": "The agent handled the refund request.",
                "type": "prompt",
                "use_knowledge_base": False,
                "scoring_mode": "binary",
                "max_score": 100,
            },
            {
                "id": "helpfulness",
                "name": "Helpfulness",
                "conversation_goal_prompt": "Rate how helpful the agent was.",
                "scoring_mode": "numeric_uniform",
                "max_score": 10,
                "score_instructions": "10 is perfect.",
            },
        ],
        "new_turns_limit": 30,
    },
    {
        "simulation_specification": {
            "simulated_user_config": {
                "first_message": "I'd like to book a table for 4 on Friday at 8 pm.",
                "prompt": {"prompt": "Your name is Sam Lee."},
            },
            "partial_conversation_history": [
                {
                    "role": "agent",
                    "message": "Good evening, how can I help?",
                    "time_in_call_secs": 0,
                },
                {"role": "user", "message": "Hello!", "time_in_call_secs": 2},
            ],
        },
        "new_turns_limit": 12,
    },
]


@pytest.fixture(scope="module")
def agent_ids(local_api: LocalAPI) -> list[str]:
    reply = httpx.get(f"{local_api.base_url}/v1/convai/agents")
    return [a["agent_id"] for a in reply.json()["agents"]]


def test_scenario_bodies_are_vendor_requests() -> None:
    for body in SCENARIOS:
        assert_vendor_valid(REQUEST_SCHEMA, body)


@pytest.mark.parametrize("scenario", range(len(SCENARIOS)))
def test_replies_validate_against_vendor_schema(
    local_api: LocalAPI, agent_ids: list[str], scenario: int
) -> None:
    body = SCENARIOS[scenario]
    with httpx.Client(base_url=local_api.base_url, timeout=30) as client:
        for agent_id in agent_ids:
            path = SIMULATE.format(agent_id=agent_id)
            buffered = client.post(path, json=body)
            assert buffered.status_code == 200, buffered.text
            assert_vendor_valid("AgentSimulatedChatTestResponseModel", buffered.json())

            streamed = client.post(path + "/stream", json=body)
            assert streamed.status_code == 200, streamed.text
            frames = decode_lines(streamed.text)
            messages: list[Any] = []
            for frame in frames[:-1]:
                assert frame["analysis"] is None
                for message in frame["simulated_conversation"]:
                    assert_vendor_valid("ConversationHistoryTranscriptResponseModel", message)
                    messages.append(message)
            final = frames[-1]
            assert final["simulated_conversation"] is None
            assert_vendor_valid("ConversationHistoryAnalysisCommonModel", final["analysis"])
            assembled = {"simulated_conversation": messages, "analysis": final["analysis"]}
            assert_vendor_valid("AgentSimulatedChatTestResponseModel", assembled)
            assert messages, "a conversation with no message"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"simulation_specification": {}},
        {"simulation_specification": {"simulated_user_config": {}}, "new_turns_limit": "many"},
        {"simulation_specification": {"simulated_user_config": {"prompt": "not an object"}}},
        {
            "simulation_specification": {"simulated_user_config": {}},
            "extra_evaluation_criteria": [{"id": "x"}],
        },
        [],
    ],
)
def test_validation_errors_validate_against_vendor_schema(
    local_api: LocalAPI, agent_ids: list[str], body: Any
) -> None:
    path = SIMULATE.format(agent_id=agent_ids[0])
    for suffix in ("", "/stream"):
        reply = httpx.post(local_api.base_url + path + suffix, json=body)
        assert reply.status_code == 422
        assert_vendor_valid("HTTPValidationError", reply.json())
        assert reply.json()["detail"], "a 422 must say what is wrong"
    not_json = httpx.post(
        local_api.base_url + path,
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert not_json.status_code == 422
    assert_vendor_valid("HTTPValidationError", not_json.json())


def test_agent_get_and_list_validate_against_vendor_schema(
    local_api: LocalAPI, agent_ids: list[str]
) -> None:
    listed = httpx.get(f"{local_api.base_url}/v1/convai/agents").json()
    assert_vendor_valid("GetAgentsPageResponseModel", listed)
    assert listed["has_more"] is False and listed["next_cursor"] is None
    assert agent_ids
    for agent_id in agent_ids:
        agent = httpx.get(f"{local_api.base_url}/v1/convai/agents/{agent_id}").json()
        assert_vendor_valid("GetAgentResponseModel", agent)
        assert agent["agent_id"] == agent_id
    page = httpx.get(f"{local_api.base_url}/v1/convai/agents", params={"page_size": 1}).json()
    assert_vendor_valid("GetAgentsPageResponseModel", page)
    assert len(page["agents"]) == 1
    assert page["has_more"] is (len(agent_ids) > 1)


# ---------------------------------------------------------------------------- schemathesis

SCHEMATHESIS_OPERATIONS = [
    "run_conversation_simulation_route",
    "run_conversation_simulation_route_stream",
    "get_agent_route",
    "get_agents_route",
]


@pytest.fixture(scope="module")
def local_api_module() -> Iterator[LocalAPI]:
    """A server of its own: schemathesis sends many requests and must not disturb the shared one."""
    from runner.localapi.server import start_local_api

    api = start_local_api(["--time-scale", "0", "--seed", "5"])
    try:
        yield api
    finally:
        api.stop()


vendor_schema = schemathesis.openapi.from_dict(
    vendor_doc(),
    config=schemathesis.Config.from_dict(
        {
            "seed": 20260801,
            "generation": {"max-examples": 15, "mode": "all"},
            "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
            "checks": {
                # 404 (unknown agent id) and 401 are real replies the spec does not list.
                "status_code_conformance": {"enabled": False},
                # FastAPI, like the vendor's server, coerces "5" to 5 and "yes" to true.
                "negative_data_rejection": {"enabled": False},
            },
        }
    ),
).include(operation_id=SCHEMATHESIS_OPERATIONS)


@vendor_schema.parametrize()
def test_schemathesis_no_server_errors_and_conforming_replies(
    case: Any, local_api_module: LocalAPI
) -> None:
    """No 5xx, and every 200 matches the vendor's schema; simulate cases hit a real agent."""
    agents = httpx.get(f"{local_api_module.base_url}/v1/convai/agents").json()["agents"]
    if case.method == "POST" and "agent_id" in (case.path_parameters or {}):
        case.path_parameters["agent_id"] = agents[0]["agent_id"]
    case.call_and_validate(base_url=local_api_module.base_url)


# ---------------------------------------------------------------------------- the vendor's SDK


def test_official_sdk_reads_our_replies(local_api: LocalAPI, agent_ids: list[str]) -> None:
    """The ``elevenlabs`` SDK, pointed at the local API, parses every reply into its own models."""
    from elevenlabs import AgentConfig, ConversationSimulationSpecification, ElevenLabs
    from elevenlabs.types import AgentSimulatedChatTestResponseModel

    with httpx.Client(timeout=30) as http:
        client = ElevenLabs(
            api_key="local-test-key", base_url=local_api.base_url, httpx_client=http
        )
        agents = client.conversational_ai.agents
        reply = agents.simulate_conversation(
            agent_ids[0],
            simulation_specification=ConversationSimulationSpecification(
                simulated_user_config=AgentConfig(
                    first_message="My order never arrived.",
                    language="en",
                )
            ),
            new_turns_limit=20,
        )
        got = agents.get(agent_ids[0])
        listed = agents.list()
    assert isinstance(reply, AgentSimulatedChatTestResponseModel)
    assert reply.simulated_conversation
    roles = {m.role for m in reply.simulated_conversation}
    assert roles <= {"user", "agent"} and "agent" in roles
    assert all(isinstance(m.time_in_call_secs, int) for m in reply.simulated_conversation)
    assert reply.analysis.call_successful in ("success", "failure", "unknown")
    assert reply.analysis.transcript_summary
    assert reply.analysis.evaluation_criteria_results

    assert got.agent_id == agent_ids[0] and got.name
    assert [a.agent_id for a in listed.agents] == agent_ids
