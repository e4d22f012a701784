"""The local API's known truth: true pass rates, the judge's noise and the user's drift.

Since the verdicts follow from the transcript and the randomness lives in the conversation,
the chance that a criterion passes is a property of (agent variant, scenario body, criterion).
``true_rates`` estimates it by simulating ``samples`` conversations offline with seeds of its
own (Monte Carlo: the share of each verdict, with its binomial standard error
``sqrt(p (1 - p) / n)``), without judge noise and without user drift, so it is the agent's
quality and not the simulator's errors.

The two knobs model what goes wrong on the vendor's side, both off by default:

* ``judge_noise`` P: each success or failure verdict is flipped with probability P (a numeric
  score is mirrored, ``max_score - score``); every flip is recorded, so the truth stays known.
  A served verdict then passes with probability ``p (1 - P) + q P`` (p, q: the true shares of
  success and failure).
* ``user_drift`` P: with probability P per conversation the simulated user abandons its goal
  mid-call, visibly (``conversation.DRIFTS``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runner.localapi.agents import AgentDef
from runner.localapi.conversation import ConversationPlan, TimingModel, ToolMock, plan_conversation
from runner.localapi.criteria import BEHAVIOURS_OF, contradicts, criteria_for
from runner.localapi.faults import derive_seed
from runner.localapi.judge import call_outcome, success_score
from runner.wire.simulate import CriterionResult, SimulationRequest, TranscriptMessage

DEFAULT_SAMPLES = 200
"""Conversations simulated per truth estimate: a standard error of at most 0.036."""
MAX_SAMPLES = 5000
TRUTH_SEED = 20_261_207
"""The truth's own seed: the same estimate whatever the server's ``--seed``."""


def canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def digest(data: Any) -> str:
    return hashlib.sha256(canonical(data).encode()).hexdigest()


def transcript_digest(messages: Sequence[TranscriptMessage]) -> str:
    """SHA-256 of ``role: message`` lines of the new messages: what a client that stored the
    transcript can compute to find a conversation in ``/_local/truth/conversations``."""
    lines = "\n".join(f"{m.role}: {m.message or ''}" for m in messages)
    return hashlib.sha256(lines.encode()).hexdigest()


def true_rates(
    agent: AgentDef,
    request: SimulationRequest,
    tool_mock: ToolMock | None = None,
    samples: int = DEFAULT_SAMPLES,
    timing: TimingModel = TimingModel(),  # noqa: B008 (frozen, so one shared default is safe)
    user_drift: float = 0.0,
) -> dict[str, dict[str, Any]]:
    """Per criterion: the share of success, failure and unknown over ``samples`` simulated
    conversations, the standard error of the success share, the check and its behaviours."""
    counts: dict[str, Counter[str]] = {}
    body = canonical(request.model_dump(mode="json"))
    for i in range(samples):
        rng = random.Random(derive_seed(TRUTH_SEED, agent.agent_id, body, i))
        plan = plan_conversation(agent, request, rng, timing, tool_mock, user_drift)
        for cid, result in plan.analysis.evaluation_criteria_results.items():
            counts.setdefault(cid, Counter())[result.result] += 1
    specs = {s.id: s for s in criteria_for(agent, request.extra_evaluation_criteria)}
    out: dict[str, dict[str, Any]] = {}
    for cid, seen in counts.items():
        p = seen["success"] / samples
        check = specs[cid].check
        out[cid] = {
            "p_success": round(p, 4),
            "p_failure": round(seen["failure"] / samples, 4),
            "p_unknown": round(seen["unknown"] / samples, 4),
            "stderr": round(math.sqrt(p * (1 - p) / samples), 4),
            "samples": samples,
            "check": check,
            "behaviours": list(BEHAVIOURS_OF.get(check, ())),
        }
    return out


def served_rate(truth: dict[str, Any], judge_noise: float) -> float:
    """The chance a served verdict is a success under judge noise P: p (1 - P) + q P."""
    p, q = truth["p_success"], truth["p_failure"]
    return round(p * (1 - judge_noise) + q * judge_noise, 4)


def _flip(result: CriterionResult) -> CriterionResult:
    update: dict[str, Any] = {"result": "failure" if result.result == "success" else "success"}
    if result.score is not None and result.max_score is not None:
        update["score"] = max(result.max_score - result.score, 0)
    return result.model_copy(update=update)


def add_judge_noise(
    plan: ConversationPlan, judge_noise: float, rng: random.Random
) -> tuple[ConversationPlan, list[str]]:
    """The plan with each success or failure verdict flipped with probability ``judge_noise``
    (one draw per criterion, in id order), and the ids flipped."""
    if judge_noise <= 0:
        return plan, []
    results = dict(plan.analysis.evaluation_criteria_results)
    flipped = []
    for cid in sorted(results):
        if results[cid].result != "unknown" and rng.random() < judge_noise:
            results[cid] = _flip(results[cid])
            flipped.append(cid)
    if not flipped:
        return plan, []
    analysis = plan.analysis.model_copy(
        update={
            "evaluation_criteria_results": results,
            "call_successful": call_outcome(list(results.values())),
            "call_success_score": success_score(list(results.values())),
        }
    )
    return dataclasses.replace(plan, analysis=analysis), flipped


@dataclass
class Case:
    """One (agent variant, scenario body) the server simulated, with what it needs to
    estimate the truth again."""

    key: str
    agent: AgentDef
    request: SimulationRequest
    tool_mock: ToolMock | None
    label: dict[str, Any]
    served: Counter[str] = dataclasses.field(default_factory=Counter)
    truth: dict[int, dict[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)
    """Estimates by sample count, computed once."""


def case_label(
    agent: AgentDef,
    request: SimulationRequest,
    *,
    kind: str,
    branch_id: str | None = None,
    override: dict[str, Any] | None = None,
    test_name: str | None = None,
) -> dict[str, Any]:
    """What identifies a case to a reader: the agent, the variant and the scenario's words."""
    user = request.simulation_specification.simulated_user_config
    label: dict[str, Any] = {
        "kind": kind,
        "agent_id": agent.agent_id,
        "branch_id": branch_id,
        "agent_config_override": override,
        "first_message": user.first_message,
        "prompt": user.prompt.prompt[:200],
        "criteria": [s.id for s in criteria_for(agent, request.extra_evaluation_criteria)],
    }
    if test_name is not None:
        label["test_name"] = test_name
    return label


def conversation_record(
    case: Case,
    plan: ConversationPlan,
    judged: ConversationPlan,
    flipped: list[str],
    conversation_id: str,
) -> dict[str, Any]:
    """What the server knows of one served conversation: the drawn behaviour, each verdict
    as judged and as served (flipped or not), and whether the user drifted."""
    verdicts = {}
    specs = {s.id: s for s in criteria_for(case.agent, case.request.extra_evaluation_criteria)}
    for cid, result in plan.analysis.evaluation_criteria_results.items():
        served = judged.analysis.evaluation_criteria_results[cid]
        verdicts[cid] = {
            "judged": result.result,
            "served": served.result,
            "flipped": cid in flipped,
            "contradicts_behaviour": contradicts(specs[cid].check, result.result, plan.shown)
            if cid in specs
            else False,
        }
    return {
        "conversation_id": conversation_id,
        "case": case.key,
        "agent_id": case.agent.agent_id,
        "transcript_sha256": transcript_digest([m.message for m in plan.messages]),
        "behaviour": plan.behaviour,
        "shown": plan.shown,
        "user_drifted": plan.drifted,
        "verdicts": verdicts,
    }
