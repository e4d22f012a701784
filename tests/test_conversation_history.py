"""The local API's production history (``runner/localapi/history.py``): the two
conversation-history endpoints validated strictly against the official Python SDK 2.78 models,
read by the official JS SDK, filtered and paged as the vendor documents, the same for a seed.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import httpx
import pytest
from elevenlabs import types as sdk
from pydantic import TypeAdapter

from runner.localapi.agents import load_agents
from runner.localapi.history import CALLS_PER_AGENT, HISTORY_END_UNIX, agent_history
from runner.localapi.server import LocalAPI
from runner.wire.conversations import Conversation, ConversationsPage
from tests.test_js_sdk import JS, _node


def strict(model: Any, body: Any) -> Any:
    return TypeAdapter(model).validate_python(body)


@pytest.fixture(scope="module")
def api() -> Any:
    from runner.localapi.server import start_local_api

    server = start_local_api(["--time-scale", "0", "--seed", "3"])
    try:
        yield server
    finally:
        server.stop()


def _all(c: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = c.get("/v1/convai/conversations", params={**params, "cursor": cursor}).json()
        strict(sdk.GetConversationsPageResponseModel, page)
        ConversationsPage.model_validate(page)
        found += page["conversations"]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            return found
        cursor = page["next_cursor"]


def test_list_and_detail_validate_strictly_and_filter(api: LocalAPI) -> None:
    with httpx.Client(base_url=api.base_url, timeout=60) as c:
        everything = _all(c, agent_id="agent_support", page_size=100)
        assert len(everything) == CALLS_PER_AGENT
        starts = [s["start_time_unix_secs"] for s in everything]
        assert starts == sorted(starts, reverse=True) and starts[0] <= HISTORY_END_UNIX
        assert len({s["conversation_id"] for s in everything}) == len(everything)
        failed = _all(c, agent_id="agent_support", call_successful="failure", page_size=9)
        outcomes = {s["call_successful"] for s in everything}
        assert outcomes == {"success", "failure"}
        assert 0 < len(failed) < len(everything) / 2
        assert failed == [s for s in everything if s["call_successful"] == "failure"]
        after = starts[len(starts) // 2]
        window = _all(c, agent_id="agent_support", call_start_after_unix=after)
        assert window == [s for s in everything if s["start_time_unix_secs"] > after]
        crit = _all(
            c,
            agent_id="agent_support",
            evaluation_params="order_verified:failure",
            evaluation_criteria_ids="order_verified",
        )
        assert crit and all(
            s["evaluation_criteria_results"]["order_verified"]["result"] == "failure" for s in crit
        )
        assert "evaluation_criteria_results" not in everything[0]
        for summary in failed[:10]:
            reply = c.get(f"/v1/convai/conversations/{summary['conversation_id']}")
            assert reply.status_code == 200
            detail = reply.json()
            strict(sdk.GetConversationResponseModel, detail)
            parsed = Conversation.model_validate(detail)
            assert parsed.analysis is not None and parsed.analysis.call_successful == "failure"
            assert parsed.transcript and parsed.conversation_initiation_client_data is not None
            dynamic = parsed.conversation_initiation_client_data.dynamic_variables or {}
            assert dynamic["system__conversation_id"] == summary["conversation_id"]
        missing = c.get("/v1/convai/conversations/conv_nope")
        assert missing.status_code == 404
        assert missing.json()["detail"]["status"] == "conversation_not_found"
        assert c.get("/v1/convai/conversations", params={"page_size": 101}).status_code == 422


def test_the_history_is_the_same_for_a_seed_and_differs_between_seeds() -> None:
    agent = load_agents()["agent_booking"]
    a, b = agent_history(agent, 11, 12), agent_history(agent, 11, 12)
    assert [x.detail for x in a] == [x.detail for x in b]
    other = agent_history(agent, 12, 12)
    assert [x.conversation_id for x in a] != [x.conversation_id for x in other]


def test_the_js_sdk_reads_the_history(api: LocalAPI) -> None:
    node = _node()
    done = subprocess.run(
        [node, "conversations.mjs", api.base_url],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    with httpx.Client(base_url=api.base_url, timeout=60) as c:
        failed = _all(c, agent_id="agent_support", call_successful="failure", page_size=100)
    assert seen["ids"] == [s["conversation_id"] for s in failed]
    assert seen["pages"] == -(-len(failed) // 7)
    assert seen["agentId"] == "agent_support" and seen["callSuccessful"] == "failure"
    assert "system__conversation_id" in seen["dynamicVariables"]
