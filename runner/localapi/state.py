"""The local API's per-process state and settings, shared by its simulate and agent-testing
routes: loaded agents, counters, seeds, fault draws, and the agent replies built once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import secrets
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from runner.localapi.agents import AgentDef, load_agents
from runner.localapi.conversation import (
    TRANSFER_TOOL,
    ConversationPlan,
    TimingModel,
    ToolMock,
    plan_conversation,
)
from runner.localapi.faults import FaultDecision, FaultSettings, derive_seed, draw_fault
from runner.localapi.stats import ServerStats
from runner.localapi.truth import (
    Case,
    add_judge_noise,
    case_label,
    conversation_record,
    digest,
    true_rates,
)
from runner.wire.simulate import SimulationRequest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_RECORDS = 200_000
"""Conversations kept for ``/_local/truth/conversations`` (the oldest go first)."""
DEFAULT_MAX_CONCURRENCY_HEADER = 1000
"""``maximum-concurrent-requests`` advertised when no ``--max-concurrency`` cap is set."""

LOCAL_VOICE_ID = "local-voice"
"""The voice every local agent reports (the vendor's agent summaries require one)."""
AGENT_CREATED_AT_UNIX = 1_767_225_600
"""Fixed creation time (2026-01-01) of every local agent: replies stay reproducible."""


@dataclass(frozen=True)
class ServerSettings:
    """Everything that shapes the local API's behaviour (built from the CLI by ``server``)."""

    seed: int | None = None
    """None: a random seed is drawn at start-up (and reported by the stats endpoint)."""
    time_scale: float = 1.0
    """Multiplies every simulated delay: 0 replies at once, 0.01 runs 100 times faster."""
    agents_path: Path | None = None
    api_key: str | None = field(default=None, repr=False)
    """When set, ``xi-api-key`` must equal it on ``/v1/...``; never printed or logged."""
    max_concurrency: int | None = None
    """Simulations in flight beyond this get 429 ``too_many_concurrent_requests``."""
    timing: TimingModel = field(default_factory=TimingModel)
    faults: FaultSettings = field(default_factory=FaultSettings)
    retry_after: float | None = None
    """Seconds sent as ``Retry-After`` on 429s; None (default) sends no such header."""
    lose_run_replies: int = 0
    hold_request: int | None = None
    """The simulate request with this number (1 for the first) gets no reply until its client
    leaves, and takes no draw: a test kills the client there, at a known point, and a resumed
    client against the same server is served the draws it would have been."""
    """The first N run-tests calls start their invocation and then drop the connection
    instead of replying (a reply lost in transit: the client cannot know it was started)."""
    simulate_endpoints: Literal["on", "off", "gone"] = "on"
    """``off``: both simulate endpoints answer 404, ``gone``: 410 (as if the vendor removed
    them), in the vendor's error shape; nothing is simulated."""
    judge_noise: float = 0.0
    """The judge flips each success/failure verdict with this probability (recorded)."""
    user_drift: float = 0.0
    """Per conversation, the chance the simulated user abandons its goal mid-call."""

    def __post_init__(self) -> None:
        if not (self.time_scale >= 0 and math.isfinite(self.time_scale)):
            raise ValueError(f"time_scale must be a finite number >= 0, got {self.time_scale}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError(f"retry_after must be >= 0, got {self.retry_after}")
        for name in ("judge_noise", "user_drift"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a rate in [0, 1], got {value}")


def agent_tools_json(agent: AgentDef) -> list[dict[str, Any]]:
    """The tools its intents call, as the agent's inline ``tools`` (one per name): what a
    pre-flight reads to check an assertion's tool names."""
    out: dict[str, dict[str, Any]] = {}
    for intent in agent.intents:
        tool = intent.tool
        if tool is None or tool.name in out:
            continue
        config: dict[str, Any] = {"type": tool.type, "name": tool.name, "description": intent.title}
        if tool.type == "webhook":
            config["api_schema"] = {"url": f"http://127.0.0.1/tools/{tool.name}"}
        out[tool.name] = config
    return list(out.values())


def agent_json(agent: AgentDef) -> dict[str, Any]:
    """``GetAgentResponseModel``: the required fields, filled from the agent definition."""
    return {
        "agent_id": agent.agent_id,
        "name": agent.name,
        "conversation_config": {
            "agent": {
                "first_message": agent.first_message,
                "language": "en",
                "prompt": {
                    "prompt": agent.description,
                    "llm": agent.llm,
                    "tools": agent_tools_json(agent),
                    "tool_ids": [],
                    "built_in_tools": {
                        TRANSFER_TOOL: {
                            "type": "system",
                            "name": TRANSFER_TOOL,
                            "params": {"system_tool_type": TRANSFER_TOOL, "transfers": []},
                        }
                    },
                },
            }
        },
        "metadata": {
            "created_at_unix_secs": AGENT_CREATED_AT_UNIX,
            "updated_at_unix_secs": AGENT_CREATED_AT_UNIX,
        },
        "platform_settings": {
            "evaluation": {
                "criteria": [
                    {
                        "id": c.id,
                        "name": c.name,
                        "type": "prompt",
                        "conversation_goal_prompt": c.conversation_goal_prompt,
                        "scoring_mode": c.scoring_mode,
                        "max_score": c.max_score,
                    }
                    for c in agent.evaluation_criteria
                ]
            }
        },
        "tags": [],
    }


def branch_json(agent: AgentDef, branch_id: str, name: str) -> dict[str, Any]:
    """``AgentBranchResponse`` / ``AgentBranchSummary``: the required fields."""
    return {
        "id": branch_id,
        "name": name,
        "agent_id": agent.agent_id,
        "description": "",
        "created_at": AGENT_CREATED_AT_UNIX,
        "last_committed_at": AGENT_CREATED_AT_UNIX,
        "is_archived": False,
    }


def agent_branches_json(agent: AgentDef) -> list[dict[str, Any]]:
    main = [branch_json(agent, agent.main_branch_id, "Main")]
    return main + [branch_json(agent, b.id, b.name) for b in agent.branches]


def agent_summary_json(agent: AgentDef) -> dict[str, Any]:
    """``AgentSummaryResponseModel``."""
    return {
        "agent_id": agent.agent_id,
        "name": agent.name,
        "tags": [],
        "created_at_unix_secs": AGENT_CREATED_AT_UNIX,
        "updated_at_unix_secs": AGENT_CREATED_AT_UNIX,
        "voice_id": LOCAL_VOICE_ID,
        "archived": False,
        "access_info": {
            "is_creator": True,
            "creator_name": "Local API",
            "creator_email": "local@localhost",
            "role": "admin",
        },
    }


# ---------------------------------------------------------------------------- server state


class LocalAPIState:
    """Per-process state: loaded agents, counters, seeds. Lives in ``app.state.localapi``."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.seed: int = settings.seed if settings.seed is not None else secrets.randbits(63)
        self.agents: dict[str, AgentDef] = load_agents(settings.agents_path)
        self.agent_replies: dict[str, bytes] = {
            agent_id: json.dumps(agent_json(agent)).encode()
            for agent_id, agent in self.agents.items()
        }
        self.agent_summaries: list[dict[str, Any]] = [
            agent_summary_json(agent) for agent in self.agents.values()
        ]
        self.stats = ServerStats()
        self.request_index = 0
        self.scenario_counts: dict[bytes, int] = {}
        self.max_header = str(settings.max_concurrency or DEFAULT_MAX_CONCURRENCY_HEADER).encode()
        self.connection_source: Callable[[], Iterable[Any]] | None = None
        """Set by the server: live uvicorn protocol objects, to abort a request's connection."""
        self.cases: dict[str, Case] = {}
        """Every (agent variant, scenario body) simulated, by key: what the truth is about."""
        self.conversations: list[dict[str, Any]] = []
        """The last ``MAX_RECORDS`` conversations served (``truth.conversation_record``)."""
        self.simulated = 0

    def next_fault(self) -> FaultDecision:
        index = self.request_index
        self.request_index += 1
        return draw_fault(self.settings.faults, self.seed, index)

    def plan(self, agent: AgentDef, request: SimulationRequest) -> ConversationPlan:
        """A simulate request's conversation, judged (with the judge's noise) and recorded."""
        canonical = json.dumps(
            request.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
        )
        key = hashlib.sha256(f"{agent.agent_id}\0{canonical}".encode()).digest()
        n = self.scenario_counts.get(key, 0)
        self.scenario_counts[key] = n + 1
        rng = random.Random(derive_seed(self.seed, agent.agent_id, canonical, n))
        settings = self.settings
        plan = plan_conversation(agent, request, rng, settings.timing, None, settings.user_drift)
        self.simulated += 1
        case = self.case(
            ["simulate", agent.agent_id, canonical],
            agent,
            request,
            None,
            case_label(agent, request, kind="simulate"),
        )
        return self.serve(case, plan, f"sim_{self.simulated:08d}")

    def case(
        self,
        identity: Any,
        agent: AgentDef,
        request: SimulationRequest,
        tool_mock: ToolMock | None,
        label: dict[str, Any],
    ) -> Case:
        key = digest(identity)[:16]
        case = self.cases.get(key)
        if case is None:
            case = self.cases[key] = Case(key, agent, request, tool_mock, label)
        return case

    def serve(self, case: Case, plan: ConversationPlan, conversation_id: str) -> ConversationPlan:
        """``plan`` as served: the judge's noise added, the conversation recorded and counted."""
        rng = random.Random(derive_seed(self.seed, "judge-noise", conversation_id))
        judged, flipped = add_judge_noise(plan, self.settings.judge_noise, rng)
        record = conversation_record(case, plan, judged, flipped, conversation_id)
        self.conversations.append(record)
        del self.conversations[:-MAX_RECORDS]
        verdicts = record["verdicts"].values()
        self.stats.judged(
            verdicts=sum(v["judged"] != "unknown" for v in verdicts),
            flipped=len(flipped),
            contradictions=sum(v["contradicts_behaviour"] for v in verdicts),
            drifted=plan.drifted,
        )
        case.served["conversations"] += 1
        case.served["flipped_verdicts"] += len(flipped)
        return judged

    def truth(self, case: Case, samples: int) -> dict[str, dict[str, Any]]:
        """The case's true rates (``truth.true_rates``), computed once per sample count."""
        if samples not in case.truth:
            case.truth[samples] = true_rates(
                case.agent, case.request, case.tool_mock, samples, self.settings.timing
            )
        return case.truth[samples]

    def transport_of(self, scope: Scope) -> asyncio.Transport | None:
        client = scope.get("client")
        if self.connection_source is None or client is None:
            return None
        wanted = tuple(client)
        for protocol in self.connection_source():
            if getattr(protocol, "client", None) == wanted:
                transport: asyncio.Transport | None = getattr(protocol, "transport", None)
                return transport
        return None

    def snapshot(self) -> dict[str, Any]:
        settings = self.settings
        return {
            **self.stats.snapshot(),
            "seed": self.seed,
            "time_scale": settings.time_scale,
            "max_concurrency": settings.max_concurrency,
            "auth_enabled": settings.api_key is not None,
            "fault_rates": settings.faults.as_dict(),
            "retry_after": settings.retry_after,
            "judge_noise_rate": settings.judge_noise,
            "user_drift_rate": settings.user_drift,
            "agents": sorted(self.agents),
        }
