"""The local ElevenLabs-compatible API as an ASGI app: routes, auth, fault injection, pacing.

What it serves follows the vendor's API as the README describes it: the two simulate
endpoints (streamed as double-encoded JSON lines, or buffered), agent get/list, and the
vendor's error bodies. The conversations themselves come from ``conversation.plan_conversation``;
this module holds the routes and the edge (auth, validation, counting replies); whether and how
a simulate reply goes out (concurrency cap, faults) and its pacing (``delay_secs * time_scale``
before each message) are ``delivery.SimulationReply``'s.

Order of checks, like the real service: auth (middleware) -> body validation (422) -> agent
lookup (404) -> concurrency cap (429) -> injected fault.

Seeding: a conversation's rng is derived from (seed, agent id, canonical body JSON, n), where n
counts how often this server has seen that exact (agent, body) before. So a fixed ``--seed``
and request sequence reproduce every transcript, while repeats of one scenario still differ.
Fault draws are derived from (seed, "faults", i) for the i-th simulate request. A client that
sends one request at a time gets the n-th draw of an (agent, body) on its n-th request for it;
``--hold-request N`` leaves the N-th request unanswered and undrawn, so a client killed while
it waits, then resumed against the same server, is served what an uninterrupted one was.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import anyio
from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse, Response
from pydantic import Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from runner.localapi.agent_testing import AgentTestingEmulator
from runner.localapi.agents import with_override
from runner.localapi.delivery import (
    SimulationReply,
    error_body,
    send_json,
)
from runner.localapi.history import ProductionHistory
from runner.localapi.pricing import calculate
from runner.localapi.state import (
    LocalAPIState,
    Message,
    Receive,
    Scope,
    Send,
    ServerSettings,
    agent_branches_json,
    branch_json,
)
from runner.localapi.testbodies import CreateSimulationTestBody, simulation_request, tool_mock
from runner.localapi.truth import DEFAULT_SAMPLES, MAX_SAMPLES, Case, served_rate
from runner.wire.pricing import CALCULATE_ANY_PATH, CALCULATE_PATH, CalculateRequest
from runner.wire.simulate import SimulationRequest, WireModel

logger = logging.getLogger("runner.localapi")

SIMULATE_SUFFIXES = ("/simulate-conversation", "/simulate-conversation/stream")


class EdgeMiddleware:
    """Counts replies by status, enforces ``xi-api-key``, adds the concurrency headers.

    Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which buffers and slows
    streaming replies.
    """

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], state: LocalAPIState
    ):
        self.app = app
        self.state = state
        key = state.settings.api_key
        self.api_key = key.encode() if key is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        stats = self.state.stats
        stats.request_seen()
        simulate = path.endswith(SIMULATE_SUFFIXES)
        max_header = self.state.max_header

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                stats.response_started(message["status"])
                if simulate:
                    message["headers"] = [
                        *message.get("headers", ()),
                        (b"current-concurrent-requests", str(stats.in_flight).encode()),
                        (b"maximum-concurrent-requests", max_header),
                    ]
            await send(message)

        if self.api_key is not None:
            denied = self._auth_error(scope)
            if denied is not None:
                await send_json(counted_send, 401, denied)
                return
        if simulate and self.state.settings.simulate_endpoints != "on":
            # switched off: answered like a removed route, before the body is looked at
            status, body = _simulate_removed(self.state, path)
            await send_json(counted_send, status, body)
            return
        await self.app(scope, receive, counted_send)

    def _auth_error(self, scope: Scope) -> dict[str, Any] | None:
        assert self.api_key is not None
        given = next((v for k, v in scope["headers"] if k == b"xi-api-key"), None)
        if given is None:
            return error_body(
                "needs_authorization",
                "Neither authorization header nor xi-api-key received, please provide one.",
            )
        if not hmac.compare_digest(given, self.api_key):
            return error_body("invalid_api_key", "Invalid API key")
        return None


# ---------------------------------------------------------------------------- the app


def _agent_not_found(agent_id: str) -> JSONResponse:
    return JSONResponse(
        error_body("agent_not_found", f"Agent with id {agent_id!r} was not found."), status_code=404
    )


def _branch_not_found(agent_id: str, branch_id: str) -> JSONResponse:
    return JSONResponse(
        error_body(
            "branch_not_found", f"Branch {branch_id!r} of agent {agent_id!r} was not found."
        ),
        status_code=404,
    )


def _simulate_removed(state: LocalAPIState, path: str) -> tuple[int, dict[str, Any]]:
    """The reply of a simulate endpoint switched off (``--simulate-endpoints off|gone``)."""
    state.stats.simulate_requests += 1
    if state.settings.simulate_endpoints == "gone":
        return 410, error_body(
            "endpoint_removed",
            f"POST {path} has been removed; use the agent-testing API "
            "(/v1/convai/agent-testing/create and /v1/convai/agents/:agent_id/run-tests).",
        )
    return 404, error_body("not_found", "Not Found")


class TruthQuery(WireModel):
    """``POST /_local/truth``: an agent variant and one scenario body."""

    agent_id: str
    branch_id: str | None = None
    agent_config_override: dict[str, Any] | None = None
    simulation: SimulationRequest | None = None
    test: CreateSimulationTestBody | None = None
    samples: int = Field(default=DEFAULT_SAMPLES, ge=10, le=MAX_SAMPLES)


def _with_served(state: LocalAPIState, rates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    noise = state.settings.judge_noise
    return {cid: {**r, "p_success_served": served_rate(r, noise)} for cid, r in rates.items()}


def _case_json(state: LocalAPIState, case: Case, rates: dict[str, dict[str, Any]]) -> Any:
    return {
        "case": case.key,
        **case.label,
        "served": dict(case.served),
        "criteria": _with_served(state, rates),
    }


def create_app(settings: ServerSettings) -> FastAPI:
    """The local API for ``settings``: agents are loaded (and replies pre-rendered) here."""
    state = LocalAPIState(settings)
    app = FastAPI(
        title="Local ElevenLabs-compatible API",
        description="The runner's default target; see runner/localapi.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.localapi = state
    app.add_middleware(EdgeMiddleware, state=state)
    testing = AgentTestingEmulator(state)
    app.include_router(testing.router())
    app.include_router(ProductionHistory(state).router())

    @app.exception_handler(StarletteHTTPException)
    async def not_emulated(request: Request, exc: StarletteHTTPException) -> Response:
        """Routing misses (404 no such path, 405 no such method) in the vendor's error shape,
        saying that the local API does not emulate the endpoint."""
        if exc.status_code in (404, 405):
            what = f"{request.method} {request.url.path}"
            status = "not_found" if exc.status_code == 404 else "method_not_allowed"
            return JSONResponse(
                error_body(
                    status,
                    f"{what}: the local API does not emulate this endpoint "
                    "(see runner/localapi in the convsim-runner project)",
                ),
                status_code=exc.status_code,
                headers=getattr(exc, "headers", None),
            )
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.get("/_local/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/_local/stats", include_in_schema=False)
    async def stats() -> dict[str, Any]:
        return {**state.snapshot(), "agent_testing": testing.snapshot()}

    @app.post("/_local/stats/reset", include_in_schema=False)
    async def stats_reset() -> dict[str, Any]:
        state.stats.reset()
        return state.snapshot()

    @app.get("/_local/truth", include_in_schema=False)
    async def truth(
        samples: Annotated[int, Query(ge=10, le=MAX_SAMPLES)] = DEFAULT_SAMPLES,
    ) -> dict[str, Any]:
        """For every (agent variant, scenario body) simulated so far: the true chance of each
        verdict per criterion (``truth.true_rates``), and what was served."""
        cases = list(state.cases.values())
        rates = await anyio.to_thread.run_sync(lambda: [state.truth(c, samples) for c in cases])
        return {
            "judge_noise": state.settings.judge_noise,
            "user_drift": state.settings.user_drift,
            "samples": samples,
            "cases": [_case_json(state, c, r) for c, r in zip(cases, rates, strict=True)],
        }

    @app.post("/_local/truth", include_in_schema=False)
    async def truth_of(query: TruthQuery) -> Response:
        """The truth for one agent (branch, override) and one scenario body: a simulate
        request (``simulation``) or a simulation test (``test``), simulated or not."""
        agent = state.agents.get(query.agent_id)
        if agent is None:
            return _agent_not_found(query.agent_id)
        try:
            branch = agent.branch(query.branch_id)
        except KeyError:
            return _branch_not_found(query.agent_id, query.branch_id or "")
        variant = with_override(agent, branch, query.agent_config_override)
        if query.test is not None:
            tools = [i.tool.name for i in variant.intents if i.tool is not None]
            request = simulation_request(query.test, tools)
            mock = tool_mock(query.test)
        elif query.simulation is not None:
            request, mock = query.simulation, None
        else:
            return JSONResponse(
                error_body("invalid_request", "give `simulation` or `test`"), status_code=422
            )
        case = Case("query", variant, request, mock, {"agent_id": query.agent_id})
        rates = await anyio.to_thread.run_sync(lambda: state.truth(case, query.samples))
        return JSONResponse(
            {"samples": query.samples, "criteria": _with_served(state, rates)},
        )

    @app.get("/_local/truth/conversations", include_in_schema=False)
    async def truth_conversations(
        flipped: bool = False, case: str | None = None, drifted: bool = False
    ) -> dict[str, Any]:
        """Every conversation served (the last 200,000): its drawn behaviour, each verdict
        as judged and as served, and whether the user drifted. ``flipped``: only those with a
        verdict the judge's noise flipped; ``drifted``: only those whose user drifted."""
        found = [
            r
            for r in state.conversations
            if (case is None or r["case"] == case)
            and (not flipped or any(v["flipped"] for v in r["verdicts"].values()))
            and (not drifted or r["user_drifted"])
        ]
        return {"conversations": found}

    @app.get("/v1/convai/agents")
    async def list_agents(
        page_size: Annotated[int, Query(ge=1, le=100)] = 30,
        search: str | None = None,
        archived: bool | None = False,
        show_only_owned_agents: bool = False,
        created_by_user_id: str | None = None,
        sort_direction: Literal["asc", "desc"] = "desc",
        sort_by: Literal["name", "created_at", "call_count_7d"] | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        agents = [] if archived else state.agent_summaries
        if search:
            needle = search.lower()
            agents = [a for a in agents if needle in a["name"].lower()]
        if sort_by == "name":
            agents = sorted(agents, key=lambda a: a["name"], reverse=sort_direction == "desc")
        start = int(cursor) if cursor is not None and cursor.isdigit() else 0
        page = agents[start : start + page_size]
        more = start + page_size < len(agents)
        return {
            "agents": page,
            "has_more": more,
            "next_cursor": str(start + page_size) if more else None,
        }

    @app.get("/v1/convai/agents/{agent_id}")
    async def get_agent(
        agent_id: str, version_id: str | None = None, branch_id: str | None = None
    ) -> Response:
        reply = state.agent_replies.get(agent_id)
        if reply is None:
            return _agent_not_found(agent_id)
        try:
            state.agents[agent_id].branch(branch_id)
        except KeyError:
            return _branch_not_found(agent_id, branch_id or "")
        return Response(reply, media_type="application/json")

    @app.post(CALCULATE_PATH)
    async def calculate_agent_llm_usage(
        agent_id: str, body: CalculateRequest | None = None
    ) -> Response:
        agent = state.agents.get(agent_id)
        if agent is None:
            return _agent_not_found(agent_id)
        given = body.prompt_length if body is not None else None
        prompt = len(agent.model_dump_json()) if given is None else given
        return JSONResponse(calculate(prompt).model_dump(mode="json"))

    @app.post(CALCULATE_ANY_PATH)
    async def calculate_llm_usage(body: CalculateRequest | None = None) -> dict[str, Any]:
        prompt = body.prompt_length if body is not None and body.prompt_length else 0
        return calculate(prompt).model_dump(mode="json")

    @app.get("/v1/convai/agents/{agent_id}/branches")
    async def list_branches(agent_id: str) -> Response:
        agent = state.agents.get(agent_id)
        if agent is None:
            return _agent_not_found(agent_id)
        branches = agent_branches_json(agent)
        return JSONResponse(
            {"meta": {"total": len(branches), "page": 0, "page_size": 100}, "results": branches}
        )

    @app.get("/v1/convai/agents/{agent_id}/branches/{branch_id}")
    async def get_branch(agent_id: str, branch_id: str) -> Response:
        agent = state.agents.get(agent_id)
        if agent is None:
            return _agent_not_found(agent_id)
        try:
            branch = agent.branch(branch_id)
        except KeyError:
            return _branch_not_found(agent_id, branch_id)
        name = "Main" if branch is None else branch.name
        return JSONResponse(branch_json(agent, branch_id, name))

    @app.post("/v1/convai/agents/{agent_id}/simulate-conversation/stream")
    async def simulate_conversation_stream(agent_id: str, body: SimulationRequest) -> Response:
        agent = state.agents.get(agent_id)
        if agent is None:
            return _agent_not_found(agent_id)
        return SimulationReply(state, agent, body, stream=True)

    @app.post("/v1/convai/agents/{agent_id}/simulate-conversation")
    async def simulate_conversation(agent_id: str, body: SimulationRequest) -> Response:
        agent = state.agents.get(agent_id)
        if agent is None:
            return _agent_not_found(agent_id)
        return SimulationReply(state, agent, body, stream=False)

    return app
