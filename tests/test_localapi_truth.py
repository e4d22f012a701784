"""The local API's known truth and its two knobs, over a real socket.

``/_local/truth`` states the true pass rates; served verdicts agree with it within sampling
error; ``--judge-noise P`` flips a share P of the verdicts (each flip recorded, the stats count
them); ``--user-drift P`` makes a share P of the simulated users abandon their goal, visibly.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import httpx

from runner.localapi.conversation import DRIFTS
from runner.localapi.server import LocalAPI

MISSING_ORDER = {
    "simulation_specification": {
        "simulated_user_config": {
            "first_message": "Hi, my order never arrived.",
            "prompt": {"prompt": "You want to know where your package is."},
            "dynamic_variables": {"dynamic_variable_placeholders": {"order_number": "A-10234"}},
        },
        "tool_mock_config": {
            "lookup_order": {
                "default_return_value": '{"status": "delayed", "carrier": "DHL", "eta_days": 3}'
            }
        },
    },
    "extra_evaluation_criteria": [
        {
            "id": "no_invented_facts",
            "name": "No invented facts",
            "conversation_goal_prompt": "The agent did not make up order details or dates.",
        }
    ],
    "new_turns_limit": 12,
}
PATH = "/v1/convai/agents/{}/simulate-conversation"


def simulate(c: httpx.Client, agent: str, n: int) -> list[dict[str, Any]]:
    replies = []
    for _ in range(n):
        reply = c.post(PATH.format(agent), json=MISSING_ORDER)
        assert reply.status_code == 200, reply.text
        replies.append(reply.json())
    return replies


def within(observed: float, p: float, n: int, sigmas: float = 4.0) -> bool:
    """``observed`` is a share of n draws with chance p: within ``sigmas`` binomial standard
    errors (plus half a count, for the discreteness)."""
    return abs(observed - p) <= sigmas * math.sqrt(max(p * (1 - p), 1e-9) / n) + 0.5 / n


def test_truth_states_the_rates_the_server_serves(local_api_factory: Any) -> None:
    api: LocalAPI = local_api_factory(["--time-scale", "0", "--seed", "4"])
    n = 150
    with httpx.Client(base_url=api.base_url, timeout=120) as c:
        replies = {
            agent: simulate(c, agent, n) for agent in ("agent_support", "agent_support_lite")
        }
        truth = c.get("/_local/truth", params={"samples": 400}).json()
        assert truth["judge_noise"] == 0 and len(truth["cases"]) == 2
        by_agent = {case["agent_id"]: case for case in truth["cases"]}
        for agent, served in replies.items():
            case = by_agent[agent]
            assert case["served"]["conversations"] == n
            for cid, rates in case["criteria"].items():
                seen = Counter(
                    r["analysis"]["evaluation_criteria_results"][cid]["result"] for r in served
                )
                assert within(seen["success"] / n, rates["p_success"], n), (agent, cid, rates)
                assert rates["p_success_served"] == rates["p_success"]
        strong, weak = (by_agent[a]["criteria"] for a in ("agent_support", "agent_support_lite"))
        for cid in ("issue_resolved", "order_verified", "no_invented_facts"):
            assert strong[cid]["p_success"] - weak[cid]["p_success"] > 0.1, cid
        # one case on demand, without simulating it first: the same numbers
        asked = c.post(
            "/_local/truth",
            json={"agent_id": "agent_support", "simulation": MISSING_ORDER, "samples": 400},
        ).json()
        assert asked["criteria"] == strong
        # a branch on a weaker LLM is a weaker variant
        branch = c.post(
            "/_local/truth",
            json={
                "agent_id": "agent_support",
                "branch_id": "agtbrch_support_lite_llm",
                "simulation": MISSING_ORDER,
            },
        ).json()["criteria"]
        assert branch["order_verified"]["p_success"] < strong["order_verified"]["p_success"] - 0.1
        assert c.post("/_local/truth", json={"agent_id": "nope"}).status_code == 404
        stats = c.get("/_local/stats").json()
        assert stats["judge"]["flipped"] == 0 and stats["judge"]["contradicting_behaviour"] == 0


def test_judge_noise_flips_its_share_and_says_which(local_api_factory: Any) -> None:
    api: LocalAPI = local_api_factory(["--time-scale", "0", "--seed", "9", "--judge-noise", "0.1"])
    with httpx.Client(base_url=api.base_url, timeout=120) as c:
        served = simulate(c, "agent_support", 200)
        judge = c.get("/_local/stats").json()["judge"]
        assert judge["conversations"] == 200 and judge["verdicts"] > 400
        assert within(judge["flipped"] / judge["verdicts"], 0.1, judge["verdicts"], 3.0)
        records = c.get("/_local/truth/conversations").json()["conversations"]
        assert len(records) == 200
        flips = 0
        for reply, record in zip(served, records, strict=True):
            results = reply["analysis"]["evaluation_criteria_results"]
            for cid, verdict in record["verdicts"].items():
                assert results[cid]["result"] == verdict["served"]
                assert (verdict["served"] != verdict["judged"]) == verdict["flipped"]
                flips += verdict["flipped"]
        assert flips == judge["flipped"]
        only = c.get("/_local/truth/conversations", params={"flipped": True}).json()
        assert 0 < len(only["conversations"]) < 200
        case = c.get("/_local/truth", params={"samples": 50}).json()["cases"][0]
        assert case["served"]["flipped_verdicts"] == flips
        rates = case["criteria"]["issue_resolved"]
        expected = rates["p_success"] * 0.9 + rates["p_failure"] * 0.1
        assert math.isclose(rates["p_success_served"], expected, abs_tol=1e-3)


def test_user_drift_abandons_the_goal_visibly(local_api_factory: Any) -> None:
    api: LocalAPI = local_api_factory(["--time-scale", "0", "--seed", "2", "--user-drift", "0.5"])
    n = 120
    with httpx.Client(base_url=api.base_url, timeout=120) as c:
        served = simulate(c, "agent_support", n)
        drift = c.get("/_local/stats").json()["user_drift"]
        assert drift["conversations"] == n and within(drift["drifted"] / n, 0.5, n)
        records = c.get("/_local/truth/conversations").json()["conversations"]
        for reply, record in zip(served, records, strict=True):
            said = [m["message"] for m in reply["simulated_conversation"] if m["role"] == "user"]
            assert record["user_drifted"] == any(line in DRIFTS for line in said)
        # the truth is the agent's, without the simulator's drift
        truth = c.get("/_local/truth").json()
        assert truth["user_drift"] == 0.5
        assert truth["cases"][0]["criteria"]["issue_resolved"]["p_success"] > 0.9
