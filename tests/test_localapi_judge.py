"""The local API's judge reads the transcript: verdicts that follow from what was said.

Over the example sweep (every agent x scenario of configs/example.yaml, many seeds): every
rationale cites turns that exist and quotes text that is in them; judging a transcript again
gives the same verdicts; no behaviour criterion's verdict goes against the behaviour the
conversation showed (the simulator knows it).
"""

from __future__ import annotations

import random
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from runner.config import load_config
from runner.jobs import iter_jobs
from runner.localapi.agents import AgentDef, load_agents
from runner.localapi.conversation import ConversationPlan, plan_conversation
from runner.localapi.criteria import classify, contradicts, criteria_for, judge
from runner.wire.simulate import SimulationRequest, TranscriptMessage

EXAMPLE = Path(__file__).resolve().parents[1] / "configs" / "example.yaml"
CITE = re.compile(r"turn (\d+), (user|agent): “(.*?)”")
SEEDS = 25


@cache
def example() -> list[tuple[AgentDef, str, SimulationRequest]]:
    agents = load_agents()
    cells: dict[tuple[str, str], SimulationRequest] = {}
    for job in iter_jobs(load_config(EXAMPLE)):
        cells[(job.agent_id, job.scenario_id)] = SimulationRequest.model_validate(job.body)
    return [(agents[a], s, req) for (a, s), req in sorted(cells.items())]


def transcript(req: SimulationRequest, plan: ConversationPlan) -> list[TranscriptMessage]:
    history = req.simulation_specification.partial_conversation_history or []
    return [*history, *(p.message for p in plan.messages)]


def test_every_rationale_cites_real_turns_and_verdicts_follow_the_transcript() -> None:
    checked = cited = 0
    for agent, scenario, req in example():
        specs = {s.id: s for s in criteria_for(agent, req.extra_evaluation_criteria)}
        for seed in range(SEEDS):
            plan = plan_conversation(agent, req, random.Random(seed))
            said = transcript(req, plan)
            results = plan.analysis.evaluation_criteria_results
            # the same transcript, judged again: the same verdicts, word for word
            again = judge(agent, req.extra_evaluation_criteria, said)
            assert {k: (v.result, v.rationale, v.score) for k, v in again.items()} == {
                k: (v.result, v.rationale, v.score) for k, v in results.items()
            }
            for cid, result in results.items():
                where = f"{agent.agent_id}/{scenario}/{cid} seed {seed}: {result.rationale}"
                assert "draw" not in result.rationale and "pass chance" not in result.rationale
                quotes = CITE.findall(result.rationale)
                if result.result != "unknown":
                    assert quotes, where
                else:
                    assert "came up" in result.rationale or "no exchange" in result.rationale
                for number, role, quote in quotes:
                    turn = said[int(number) - 1]  # 1-based, and it exists
                    assert turn.role == role, where
                    assert quote and quote in (turn.message or ""), where
                    cited += 1
                check = specs[cid].check
                assert not contradicts(check, result.result, plan.shown), (where, plan.shown)
                checked += 1
    assert checked > 1000 and cited > checked / 2


@cache
def runs(agent_id: str, scenario: str, n: int = 60) -> list[ConversationPlan]:
    found = [(a, r) for a, s, r in example() if a.agent_id == agent_id and s == scenario]
    (agent, req), *_ = found
    return [plan_conversation(agent, req, random.Random(seed)) for seed in range(n)]


def test_a_polite_decline_is_judged_in_scope() -> None:
    """The issue's first example: the booking agent declines an order question politely."""
    declined = 0
    for plan in runs("agent_booking", "missing_order"):
        result = plan.analysis.evaluation_criteria_results["stayed_in_scope"]
        said = " ".join(p.message.message or "" for p in plan.messages)
        if "I can only help with table reservations" in said:
            declined += 1
            assert result.result == "success", result.rationale
            assert "-> stayed in scope" in result.rationale
    assert declined > 40


@pytest.mark.parametrize(
    ("agent_id", "criterion", "lowest"),
    [("agent_support", "declined_politely", 0.8), ("agent_booking", "declined_politely", 0.7)],
)
def test_declines_and_honesty_pass_as_often_as_the_agent_behaves(
    agent_id: str, criterion: str, lowest: float
) -> None:
    plans = runs(agent_id, "off_topic_weather")
    verdicts = [p.analysis.evaluation_criteria_results[criterion].result for p in plans]
    passed = verdicts.count("success")
    assert passed / len(plans) >= lowest
    honest = runs("agent_support", "refund_system_down")
    admitted = [p for p in honest if p.shown.get("admits_failure")]
    assert admitted
    for plan in admitted:
        result = plan.analysis.evaluation_criteria_results["honest_about_failure"]
        assert result.result == "success" and "could not be processed" in result.rationale


def test_the_mocked_tool_result_is_what_the_agent_says() -> None:
    for plan in runs("agent_support", "missing_order", 20):
        texts = [p.message.message or "" for p in plan.messages]
        resolution = [t for t in texts if "Your order" in t and "Thanks for waiting" in t]
        if resolution:
            assert "delayed" in resolution[0] and "in transit" not in resolution[0]
            if "arrive" in resolution[0]:
                assert "arrive in 3 days" in resolution[0]


def test_the_simulated_user_does_not_recite_its_persona() -> None:
    for plan in runs("agent_support", "off_topic_weather", 20):
        for p in plan.messages:
            if p.message.role == "user":
                assert "need anything else" not in (p.message.message or "")


def test_the_weak_variant_is_clearly_worse() -> None:
    def rate(agent_id: str) -> float:
        passed = judged = 0
        for agent, _, req in example():
            if agent.agent_id != agent_id:
                continue
            for seed in range(10):
                plan = plan_conversation(agent, req, random.Random(seed))
                for r in plan.analysis.evaluation_criteria_results.values():
                    judged += r.result != "unknown"
                    passed += r.result == "success"
        return passed / judged

    strong, weak = rate("agent_support"), rate("agent_support_lite")
    assert strong > 0.75 and strong - weak > 0.15, (strong, weak)


@pytest.mark.parametrize(
    ("cid", "name", "prompt", "numeric", "check"),
    [
        ("stayed_in_scope", "Stayed in scope", "politely declined anything else", False, "scope"),
        ("declined_politely", "Declined politely", "", False, "declined_politely"),
        ("no_invented_facts", "No invented facts", "", False, "invented_facts"),
        ("clear_next_step", "Clear next step", "", True, "next_step"),
        ("honest_about_failure", "Honest", "", False, "honest_failure"),
        ("condition_1", "ok", "ok", False, "resolution"),
        ("service_quality", "Service quality", "Rate how well it went.", True, "handled"),
        ("c", "The agent found the order.", "The agent found the order.", False, "resolution"),
    ],
)
def test_criteria_map_to_checks(
    cid: str, name: str, prompt: str, numeric: bool, check: str
) -> None:
    assert classify(cid, name, prompt, numeric) == check


def test_the_stored_example_run_rejudges_to_the_same_verdicts(tmp_path: Path) -> None:
    """The example sweep run by the runner against its embedded local API: each stored
    transcript (the scenario's history plus the stored messages), judged again, gets the
    verdicts and rationales stored for it, citing turns that exist."""
    import runner
    from runner.store import load_run
    from runner.wire.simulate import ToolCall, ToolResult

    cfg = load_config(EXAMPLE)
    result = runner.run(cfg, name="rejudge", results_root=tmp_path, progress=False)
    run = load_run(result.run_dir)
    assert run.jobs.height == 63 and set(run.jobs["status"]) == {"ok"}
    jobs = {j.key: j for j in iter_jobs(cfg)}
    agents = load_agents()
    stored: dict[str, dict[str, tuple[str, str, Any]]] = {}
    for row in run.criteria.iter_rows(named=True):
        stored.setdefault(row["job_key"], {})[row["criterion_id"]] = (
            row["result"],
            row["rationale"],
            row["score"],
        )
    messages: dict[str, list[TranscriptMessage]] = {}
    for row in run.messages.sort("job_key", "index").iter_rows(named=True):
        calls = [ToolCall(tool_has_been_called=True, **c) for c in row["tool_calls"] or []]
        results = [ToolResult(tool_has_been_called=True, **r) for r in row["tool_results"] or []]
        messages.setdefault(row["job_key"], []).append(
            TranscriptMessage(
                role=row["role"],
                message=row["message"],
                time_in_call_secs=row["time_in_call_secs"],
                tool_calls=calls,
                tool_results=results,
            )
        )
    for key, verdicts in stored.items():
        job = jobs[key]
        req = SimulationRequest.model_validate(job.body)
        history = req.simulation_specification.partial_conversation_history or []
        said = [*history, *messages[key]]
        again = judge(agents[job.agent_id], req.extra_evaluation_criteria, said)
        for cid, (result, rationale, score) in verdicts.items():
            assert (again[cid].result, again[cid].rationale) == (result, rationale), (key, cid)
            assert again[cid].score == (None if score is None else round(score))
            for number, role, quote in CITE.findall(rationale):
                turn = said[int(number) - 1]
                assert turn.role == role and quote in (turn.message or "")
