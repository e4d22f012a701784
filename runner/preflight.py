"""Pre-flight: free checks before anything is paid for (also in ``--dry-run``).

Before the first simulation (which costs money) a run makes a few cheap calls and stops with
one line per problem when one fails:

* **the key** is accepted: one ``GET /v1/convai/agents?page_size=1`` (401/403: rejected);
* **every agent** exists (``GET /v1/convai/agents/{id}``) and so does every ``branch_id``
  (``GET /v1/convai/agents/{id}/branches/{branch_id}``);
* **every tool an assertion names** (``tool_called``, ``after_tool``) is one some agent has:
  its inline and built-in tools from that reply, its ``tool_ids`` by name
  (``GET /v1/convai/tools/{id}``). When an agent's tools cannot all be known (not listed,
  from MCP servers, a tool id that does not resolve) nothing is refused;
* **the chosen endpoint** is alive. A simulate endpoint is probed without paying: an empty
  body gets a 422 where the endpoint exists and a 404 / 405 / 410 (not about the agent) where
  it is gone. The agent-testing API answers its tests list
  (``GET /v1/convai/agent-testing?page_size=1``) and its invocations list.

A reply that says nothing either way (429, 5xx, a dropped connection) is not a problem: the
run's own retries deal with a busy server. A server that cannot be reached at all is one.
"""

from __future__ import annotations

import json

import httpx

from runner.config import Config
from runner.config.assertions import AssertSpec, unknown_tools
from runner.config.scenarios import iter_scenarios
from runner.errors import (
    GONE_STATUSES,
    ErrorKind,
    Failure,
    classify_endpoint_reply,
    classify_exception,
    classify_response,
    endpoint_gone,
    is_about_agent,
)
from runner.http import make_http_client, read_error_body
from runner.target import SetupError
from runner.wire.agent_testing import INVOCATIONS_PATH, TESTS_PATH
from runner.wire.simulate import BUFFERED_PATH, STREAM_PATH

__all__ = ["AGENTS_PATH", "PreflightFailed", "preflight"]

AGENTS_PATH = "/v1/convai/agents"
AGENT_PATH = "/v1/convai/agents/{agent_id}"
BRANCH_PATH = "/v1/convai/agents/{agent_id}/branches/{branch_id}"
TOOL_PATH = "/v1/convai/tools/{tool_id}"


class PreflightFailed(SetupError):
    """One or more pre-flight problems; nothing paid was sent. ``problems``: one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


async def _call(
    client: httpx.AsyncClient, method: str, path: str, *, read: bool = False, **kwargs: object
) -> tuple[int, bytes] | Failure:
    """(status, body) of one call, or the failure of a call that got no reply. The body of a
    success is read only when ``read`` asks for it."""
    try:
        request = client.build_request(method, path, **kwargs)  # type: ignore[arg-type]
        response = await client.send(request, stream=True)
    except (httpx.HTTPError, OSError) as exc:
        return classify_exception(exc, "connect")
    try:
        if response.status_code >= 300:
            body = await read_error_body(response)
        else:
            body = await response.aread() if read else b""
    except (httpx.HTTPError, OSError) as exc:
        return classify_exception(exc, "body")
    finally:
        await response.aclose()
    return response.status_code, body


def _named(configs: object) -> set[str]:
    if not isinstance(configs, list):
        return set()
    return {c["name"] for c in configs if isinstance(c, dict) and isinstance(c.get("name"), str)}


def agent_tools(body: bytes) -> tuple[set[str], list[str]] | None:
    """(the tool names an agent's reply lists, the ids of its tools referenced by id) from
    ``GET /v1/convai/agents/{id}``: its inline ``tools``, its ``built_in_tools`` and its
    ``tool_ids``. None when the reply cannot say which tools it has: no ``tools`` /
    ``tool_ids`` field at all, or tools from MCP servers (their names are the servers')."""
    try:
        agent = json.loads(body)
        prompt = agent["conversation_config"]["agent"]["prompt"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(prompt, dict) or ("tools" not in prompt and "tool_ids" not in prompt):
        return None
    if prompt.get("mcp_server_ids") or prompt.get("native_mcp_server_ids"):
        return None
    names = _named(prompt.get("tools"))
    built_in = prompt.get("built_in_tools")
    if isinstance(built_in, dict):
        configured = {k: v for k, v in built_in.items() if v is not None}
        names |= set(configured) | _named(list(configured.values()))
    ids = prompt.get("tool_ids") or []
    return names, [i for i in ids if isinstance(i, str)]


async def _tool_name(client: httpx.AsyncClient, tool_id: str) -> str | None:
    """A workspace tool's name (``GET /v1/convai/tools/{id}``); None when not known."""
    got = await _call(client, "GET", TOOL_PATH.format(tool_id=tool_id), read=True)
    if isinstance(got, Failure) or got[0] != 200:
        return None
    try:
        name = json.loads(got[1])["tool_config"]["name"]
    except (ValueError, KeyError, TypeError):
        return None
    return name if isinstance(name, str) else None


def assertion_specs(cfg: Config) -> list[AssertSpec]:
    """The config's assertions and every scenario's, config-level first."""
    specs = list(cfg.assert_)
    for scenario in iter_scenarios(cfg):
        specs += scenario.assert_
    return specs


async def _tool_problems(
    client: httpx.AsyncClient, replies: list[bytes], specs: list[AssertSpec]
) -> list[str]:
    """One line per assertion naming a tool no agent has; none when an agent's tools cannot
    all be known (an assertion on a tool it may have is never refused)."""
    have: set[str] = set()
    for body in replies:
        found = agent_tools(body)
        if found is None:
            return []
        names, ids = found
        for tool_id in ids:
            name = await _tool_name(client, tool_id)
            if name is None:
                return []
            names.add(name)
        have |= names
    return unknown_tools(specs, have)


def _unreachable(failure: Failure, base_url: str) -> str | None:
    if failure.kind in (ErrorKind.CONNECT, ErrorKind.CONNECT_TIMEOUT):
        return f"cannot reach {base_url}: {failure.message}"
    return None


async def preflight(client: httpx.AsyncClient, cfg: Config, base_url: str) -> list[str]:
    """The problems found (empty: go). Sends only free requests (GETs, an empty-body POST)."""
    problems: list[str] = []
    # 1. the key: one cheap GET
    got = await _call(client, "GET", AGENTS_PATH, params={"page_size": 1})
    if isinstance(got, Failure):
        line = _unreachable(got, base_url)
        return [line] if line else []
    status, body = got
    if status in (401, 403):
        failure = classify_response(status, body)
        return [
            f"the API key in {cfg.target.api_key_env} was rejected by {base_url} "
            f"({failure.message})"
        ]
    # 2. every agent, and every branch (and the agents' tools, when an assertion names one)
    specs = [s for s in assertion_specs(cfg) if s.tool_called or s.after_tool]
    alive: list[str] = []
    replies: list[bytes] | None = [] if specs else None
    for i, agent in enumerate(cfg.agents):
        got = await _call(client, "GET", AGENT_PATH.format(agent_id=agent.id), read=bool(specs))
        if isinstance(got, Failure):
            replies = None
            continue
        status, body = got
        if status == 404:
            problems.append(f"agents[{i}].id: agent {agent.id!r} does not exist at {base_url}")
            continue
        if replies is not None and status == 200:
            replies.append(body)
        elif status != 200:
            replies = None  # an agent whose tools were not read: nothing can be refused
        alive.append(agent.id)
        if agent.branch_id is not None:
            path = BRANCH_PATH.format(agent_id=agent.id, branch_id=agent.branch_id)
            got = await _call(client, "GET", path)
            if not isinstance(got, Failure) and got[0] == 404:
                problems.append(
                    f"agents[{i}].branch_id: agent {agent.id!r} has no branch "
                    f"{agent.branch_id!r} at {base_url}"
                )
    if replies is not None and not problems:
        problems += await _tool_problems(client, replies, specs)
    # 3. the endpoint
    backend = cfg.target.backend
    if backend == "agent-testing":
        for path in (TESTS_PATH, INVOCATIONS_PATH):
            got = await _call(client, "GET", path, params={"page_size": 1})
            if not isinstance(got, Failure) and got[0] in GONE_STATUSES:
                problems.append(
                    f"GET {path} answered HTTP {got[0]}: the agent-testing API is not available "
                    f"at {base_url}"
                )
                break
    else:
        template = STREAM_PATH if backend == "stream" else BUFFERED_PATH
        agent_id = alive[0] if alive else cfg.agents[0].id
        got = await _call(client, "POST", template.format(agent_id=agent_id), json={})
        if not isinstance(got, Failure):
            status, body = got
            if status in GONE_STATUSES and not is_about_agent(body, agent_id):
                problems.append(endpoint_gone(status, f"POST {template}").message)
            elif status < 300 or status in GONE_STATUSES or status == 422:
                pass  # alive (422: it validated the empty body), or about the agent (above)
            else:
                failure = classify_endpoint_reply(
                    status, body, None, endpoint=f"POST {template}", agent_id=agent_id
                )
                if failure.kind is ErrorKind.AUTH:
                    problems.append(
                        f"POST {template}: the API key was rejected ({failure.message})"
                    )
    return problems


async def check_target(cfg: Config, base_url: str, api_key: str | None) -> list[str]:
    """``preflight`` over a client of its own (a few connections, the config's timeouts)."""
    client = make_http_client(base_url, api_key, cfg.target.timeouts, 4)
    try:
        return await preflight(client, cfg, base_url)
    finally:
        await client.aclose()
