"""The local API's agent-testing endpoints: simulation tests that run on the server, later.

This module is the routes (with their fault draws and ids); a test's definition and its
meaning are ``testbodies`` (pure), the records and their JSON views ``testruns``, and the runs
played in the background ``playback``. The names the tests import from here are re-exported.

The vendor's successor to the simulate endpoints, emulated with the same conversation model,
judge, timing and faults as the simulate endpoints, so the agent-testing backend is tested end
to end over a real socket:

* ``POST /v1/convai/agent-testing/create`` stores a simulation test (other test types: 422);
  ``GET`` / ``DELETE /v1/convai/agent-testing/{id}`` and ``GET /v1/convai/agent-testing``
  (paged; ``search`` in the name, ``parent_folder_id``) read and remove them.
* ``POST /v1/convai/agents/{agent_id}/run-tests`` answers at once with an invocation whose runs
  (tests x ``repeat_count``) are ``pending``. Each run then plays in the background:
  ``plan_conversation`` on the request the test describes, a sleep of the conversation's
  simulated duration x ``--time-scale``, then ``passed`` or ``failed`` by the judge's verdict on
  the success conditions. With ``repeat_count > 1`` the runs are bucketed afterwards (after the
  analysis delay): one bucket per (status, call title).
* ``GET /v1/convai/test-invocations/{id}``, ``GET /v1/convai/test-invocations`` (paged, by
  ``agent_id``) and ``POST /v1/convai/test-invocations/{id}/cancel``.

A test as a simulate request: ``simulation_scenario`` is the persona, except the labelled lines
the runner writes for the first message, the language and the user's facts (see
``runner.backends.agent_testing.scenario_text``); success condition n is the extra criterion
``condition_<n>``; ``simulation_max_turns`` is ``new_turns_limit``; the tools that
``tool_mock_config`` mocks (a tool's id is its name here) reply with their first
``tool_mock_overrides`` entry whose ``parameter_conditions`` the call's parameters pass (see
``condition_met``), or, none passing, an error when the fallback is ``raise_error`` (else the
tool answers itself); ``chat_history`` and ``dynamic_variables`` pass through.

The merged result is the judge's call outcome over the conditions (failure if any failed,
success if one succeeded, else unknown); a run ``passed`` only on success. ``credits_used``,
``charging`` and an invocation summary's ``total_price`` are priced by ``localapi.pricing``.
Runs queue behind ``--max-concurrency`` rather than being refused, and count as simulations
in ``/_local/stats``.
Every request draws a fault like a simulate request: a POST that draws an error, a dropped
connection or a malformed reply does nothing (the server never processed it); a stall delays
the reply; a GET's malformed reply is its body cut in half. State lives in memory: a restarted
server knows no test and no invocation.
"""

from __future__ import annotations

import json
import secrets
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from runner.localapi.agents import with_override
from runner.localapi.faults import (
    ERROR_REPLY_KINDS,
    FaultKind,
)
from runner.localapi.playback import Playback
from runner.localapi.replies import DropConnection, fault_response
from runner.localapi.state import LocalAPIState
from runner.localapi.testbodies import (
    LOCAL_USER_ID,
    CreateSimulationTestBody,
    RenameBody,
    RunTestsBody,
    TestBody,
    condition_met,
    parse_scenario,
    simulation_request,
    tool_mock,
)
from runner.localapi.testruns import (
    Invocation,
    StoredTest,
    TestRun,
    invocation_json,
    invocation_summary,
    test_json,
    test_summary,
    unix_now,
)
from runner.wire.agent_testing import (
    ParameterCondition,
)

__all__ = [
    "AgentTestingEmulator",
    "CreateSimulationTestBody",
    "ParameterCondition",
    "condition_met",
    "parse_scenario",
    "simulation_request",
    "tool_mock",
]


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": {"status": code, "message": message}}, status_code=status)


class AgentTestingEmulator(Playback):
    """In-memory tests and invocations of one server, and the routes that serve them."""

    def __init__(self, state: LocalAPIState) -> None:
        super().__init__(state)
        self.salt = secrets.token_hex(3)  # ids of a restarted server never repeat old ones
        self.tests: dict[str, StoredTest] = {}
        self.invocations: dict[str, Invocation] = {}
        self._serial = 0

    def _id(self, kind: str) -> str:
        self._serial += 1
        return f"{kind}_{self.salt}{self._serial:08d}"

    def snapshot(self) -> dict[str, int]:
        """Counters for ``/_local/stats`` (key ``agent_testing``)."""
        keys = (
            "tests_created",
            "tests_deleted",
            "invocations_created",
            "runs_started",
            "runs_completed",
            "runs_cancelled",
            "invocation_polls",
            "run_replies_lost",
        )
        return {k: self.counts[k] for k in keys} | {"tests": len(self.tests)}

    # -------------------------------------------------------------- faults

    async def _fault(self, *, mutating: bool) -> tuple[Response | None, bool]:
        """(reply to send instead, truncate the real reply) for this request's fault draw."""
        state = self.state
        kind = state.next_fault().kind
        if kind is None:
            return None, False
        state.stats.fault_injected(kind.value)
        if kind in ERROR_REPLY_KINDS:
            return fault_response(state, kind), False
        if kind in (FaultKind.RESET, FaultKind.DISCONNECT):
            state.stats.stream_broken(kind.value)
            return DropConnection(state, reset=kind is FaultKind.RESET), False
        if kind is FaultKind.STALL:
            await anyio.sleep(state.settings.faults.stall_secs)
            return None, False
        state.stats.stream_broken("malformed")
        if mutating:
            return Response(b'{"detail": {"sta', media_type="application/json"), False
        return None, True

    @staticmethod
    def _json(payload: Any, truncate: bool = False) -> Response:
        body = json.dumps(payload).encode()
        return Response(body[: len(body) // 2] if truncate else body, media_type="application/json")

    # -------------------------------------------------------------- JSON views
    # -------------------------------------------------------------- routes

    def router(self) -> APIRouter:
        router = APIRouter()
        state = self.state

        @router.get("/_local/agent-testing/finished", include_in_schema=False)
        async def finished_runs() -> Response:
            return self._json({"runs": self.finished})

        @router.post("/v1/convai/agent-testing/create")
        async def create_test(body: TestBody) -> Response:
            fault, _ = await self._fault(mutating=True)
            if fault is not None:
                return fault
            now = unix_now()
            test = StoredTest(self._id("test"), body, now, now)
            self.tests[test.id] = test
            self.counts["tests_created"] += 1
            return self._json({"id": test.id})

        @router.get("/v1/convai/agent-testing")
        async def list_tests(
            cursor: str | None = None,
            page_size: Annotated[int, Query(ge=1, le=100)] = 30,
            search: str | None = None,
            parent_folder_id: str | None = None,
        ) -> Response:
            fault, truncate = await self._fault(mutating=False)
            if fault is not None:
                return fault
            tests = list(self.tests.values())
            if search:
                needle = search.lower()
                tests = [t for t in tests if needle in t.body.name.lower()]
            if parent_folder_id is not None:
                folder = None if parent_folder_id == "root" else parent_folder_id
                tests = [t for t in tests if t.body.parent_folder_id == folder]
            start = int(cursor) if cursor is not None and cursor.isdigit() else 0
            more = start + page_size < len(tests)
            page = {
                "tests": [test_summary(t) for t in tests[start : start + page_size]],
                "has_more": more,
                "next_cursor": str(start + page_size) if more else None,
            }
            return self._json(page, truncate)

        @router.get("/v1/convai/agent-testing/{test_id}")
        async def get_test(test_id: str) -> Response:
            test = self.tests.get(test_id)
            if test is None:
                return _test_not_found(test_id)
            fault, truncate = await self._fault(mutating=False)
            return fault or self._json(test_json(test), truncate)

        @router.delete("/v1/convai/agent-testing/{test_id}")
        async def delete_test(test_id: str) -> Response:
            if test_id not in self.tests:
                return _test_not_found(test_id)
            fault, _ = await self._fault(mutating=True)
            if fault is not None:
                return fault
            del self.tests[test_id]
            self.counts["tests_deleted"] += 1
            return self._json({})

        @router.post("/v1/convai/agents/{agent_id}/run-tests")
        async def run_tests(agent_id: str, body: RunTestsBody) -> Response:
            agent = state.agents.get(agent_id)
            if agent is None:
                return _error(404, "agent_not_found", f"Agent with id {agent_id!r} was not found.")
            try:
                branch = agent.branch(body.branch_id)
            except KeyError:
                return _error(
                    404,
                    "branch_not_found",
                    f"Branch {body.branch_id!r} of agent {agent_id!r} was not found.",
                )
            missing = [t.test_id for t in body.tests if t.test_id not in self.tests]
            if missing:
                return _test_not_found(missing[0])
            fault, _ = await self._fault(mutating=True)
            if fault is not None:
                return fault
            invocation = Invocation(
                id=self._id("tinv"),
                agent_id=agent_id,
                created_at=unix_now(),
                repeat_count=body.repeat_count,
                name=body.name,
                branch_id=body.branch_id or agent.main_branch_id,
                override=body.agent_config_override,
                runs=[
                    TestRun(self._id("trun"), self.tests[t.test_id])
                    for t in body.tests
                    for _ in range(body.repeat_count)
                ],
            )
            self.invocations[invocation.id] = invocation
            self.counts["invocations_created"] += 1
            variant = with_override(agent, branch, body.agent_config_override)
            for run in invocation.runs:
                invocation.tasks[run.id] = self._spawn(self._execute(invocation, run, variant))
            if self.counts["run_replies_lost"] < state.settings.lose_run_replies:
                self.counts["run_replies_lost"] += 1
                return DropConnection(state, reset=True)
            return self._json(invocation_json(invocation))

        @router.get("/v1/convai/test-invocations")
        async def list_invocations(
            agent_id: str | None = None,
            branch_id: str | None = None,
            test_id: str | None = None,
            search: str | None = None,
            start_time: int | None = None,
            end_time: int | None = None,
            created_by_user_id: str | None = None,
            version_id: str | None = None,
            page_size: Annotated[int, Query(ge=1, le=100)] = 30,
            cursor: str | None = None,
        ) -> Response:
            """Newest first; filters as the vendor's (``search``: in the name; the times are
            unix seconds of creation; every local invocation is the one user's, on no
            version)."""
            fault, truncate = await self._fault(mutating=False)
            if fault is not None:
                return fault
            needle = search.lower() if search else None

            def wanted(i: Invocation) -> bool:
                return (
                    (agent_id is None or i.agent_id == agent_id)
                    and (branch_id is None or i.branch_id == branch_id)
                    and (test_id is None or any(r.test.id == test_id for r in i.runs))
                    and (needle is None or needle in (i.name or "").lower())
                    and (start_time is None or i.created_at >= start_time)
                    and (end_time is None or i.created_at <= end_time)
                    and version_id is None
                    and created_by_user_id in (None, LOCAL_USER_ID)
                )

            found = [i for i in reversed(self.invocations.values()) if wanted(i)]
            start = int(cursor) if cursor is not None and cursor.isdigit() else 0
            more = start + page_size < len(found)
            page = {
                "results": [invocation_summary(i) for i in found[start : start + page_size]],
                "has_more": more,
                "next_cursor": str(start + page_size) if more else None,
                "meta": {"page": start // page_size, "page_size": page_size, "total": len(found)},
            }
            return self._json(page, truncate)

        @router.get("/v1/convai/test-invocations/{test_invocation_id}")
        async def get_invocation(test_invocation_id: str) -> Response:
            invocation = self.invocations.get(test_invocation_id)
            if invocation is None:
                return _invocation_not_found(test_invocation_id)
            fault, truncate = await self._fault(mutating=False)
            if fault is not None:
                return fault
            self.counts["invocation_polls"] += 1
            return self._json(invocation_json(invocation), truncate)

        @router.patch("/v1/convai/test-invocations/{test_invocation_id}")
        async def rename_invocation(test_invocation_id: str, body: RenameBody) -> Response:
            """Sets the invocation's name; null restores the generated title."""
            invocation = self.invocations.get(test_invocation_id)
            if invocation is None:
                return _invocation_not_found(test_invocation_id)
            fault, _ = await self._fault(mutating=True)
            if fault is not None:
                return fault
            invocation.name = body.name
            return self._json(invocation_json(invocation))

        @router.post("/v1/convai/test-invocations/{test_invocation_id}/cancel")
        async def cancel_invocation(test_invocation_id: str) -> Response:
            invocation = self.invocations.get(test_invocation_id)
            if invocation is None:
                return _invocation_not_found(test_invocation_id)
            fault, _ = await self._fault(mutating=True)
            if fault is not None:
                return fault
            invocation.cancelled = True
            for run in invocation.runs:
                self._cancel_run(run)
            for task in list(invocation.tasks.values()):
                task.cancel()
            self._after_run(invocation)
            return self._json({})

        return router


def _test_not_found(test_id: str) -> JSONResponse:
    return _error(404, "test_not_found", f"Test with id {test_id!r} was not found.")


def _invocation_not_found(invocation_id: str) -> JSONResponse:
    return _error(
        404, "test_invocation_not_found", f"Test invocation {invocation_id!r} was not found."
    )
