"""A simulate request's reply as it goes out: the concurrency cap, the fault draw, then the
planned conversation paced (``delay_secs * time_scale`` before each message) and streamed as
double-encoded JSON lines or buffered into one body; and the wire's serialization helpers the
app's other replies share (``error_body``, ``send_json``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
from fastapi.responses import Response

from runner.localapi.agents import AgentDef
from runner.localapi.conversation import (
    ConversationPlan,
    message_json,
)
from runner.localapi.faults import (
    ERROR_REPLY_KINDS,
    FaultDecision,
    FaultKind,
    fault_frame_index,
)
from runner.localapi.pricing import conversation_cost
from runner.localapi.replies import await_disconnect, drop_connection, fault_reply
from runner.localapi.state import (
    LocalAPIState,
    Receive,
    Scope,
    Send,
)
from runner.wire.simulate import Analysis, SimulationRequest

logger = logging.getLogger("runner.localapi")


# ---------------------------------------------------------------------------- serialization


def analysis_json(analysis: Analysis) -> dict[str, Any]:
    data = analysis.model_dump(mode="json", exclude_none=True)
    data.setdefault("call_summary_title", None)
    return data


def frame_line(frame: dict[str, Any]) -> bytes:
    """One stream line: the frame's JSON, as a JSON string literal, newline-terminated."""
    return (json.dumps(json.dumps(frame, separators=(",", ":"))) + "\n").encode()


def error_body(status: str, message: str) -> dict[str, Any]:
    return {"detail": {"status": status, "message": message}}


# ---------------------------------------------------------------------------- raw ASGI helpers


async def send_json(
    send: Send, status: int, body: Any, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": False})


# ---------------------------------------------------------------------------- one simulation


class SimulationReply(Response):
    """ASGI reply of one simulate request: cap, fault draw, then the paced conversation.

    A ``Response`` subclass only so FastAPI hands it to the server untouched. Everything up to
    ``simulation_started`` runs without awaiting, so the concurrency cap's check-and-increment
    is atomic on the event loop.
    """

    def __init__(
        self, state: LocalAPIState, agent: AgentDef, request: SimulationRequest, *, stream: bool
    ) -> None:  # no super().__init__(): there is no body to render up front
        self.background = None
        self.status_code = 200
        self.raw_headers = []
        self.state = state
        self.agent = agent
        self.request = request
        self.stream = stream
        self.dropped = False
        self._ended = False
        self.plan: ConversationPlan | None = None

    def _finish(self, completed: bool) -> None:
        """Free the simulation's slot once, as its last byte is handed over: a client reusing
        the connection may send its next request before this handler has unwound, and that
        request must not find the slot still taken (the cap would reject it spuriously)."""
        if not self._ended:
            self._ended = True
            self.state.stats.simulation_ended(completed=completed)
            if completed and self.plan is not None:
                usd, _, credits = conversation_cost(m.message.llm_usage for m in self.plan.messages)
                self.state.stats.bill(usd, credits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        state = self.state
        stats = state.stats
        cap = state.settings.max_concurrency
        stats.simulate_requests += 1
        if state.settings.hold_request == stats.simulate_requests:
            stats.held += 1  # no reply, no fault draw, no conversation draw: until it leaves
            await await_disconnect(receive)
            return
        if cap is not None and stats.in_flight >= cap:
            stats.concurrency_rejections += 1
            status, body, headers = fault_reply(state, FaultKind.CONCURRENCY_429, limit=cap)
            await send_json(send, status, body, headers)
            return
        decision = state.next_fault()
        kind = decision.kind
        if kind is not None:
            stats.fault_injected(kind.value)
            logger.debug("injecting fault %s", kind.value)
        if kind is not None and kind in ERROR_REPLY_KINDS:
            status, body, headers = fault_reply(state, kind)
            await send_json(send, status, body, headers)
            return
        if kind is FaultKind.RESET:
            stats.stream_broken("reset")
            await self._drop_connection(scope, lambda: await_disconnect(receive), reset=True)
            return
        plan = self.plan = state.plan(self.agent, self.request)
        stats.simulation_started()
        completed = replied = client_gone = False
        try:
            async with anyio.create_task_group() as tg:
                gone = anyio.Event()

                async def watch_client() -> None:
                    nonlocal client_gone
                    await await_disconnect(receive)  # also returns once the reply is complete
                    gone.set()
                    if not (replied or self.dropped):
                        client_gone = True
                        tg.cancel_scope.cancel()

                tg.start_soon(watch_client)
                reply = self._stream_reply if self.stream else self._buffered_reply
                completed = await reply(plan, decision, scope, send, gone.wait)
                replied = True
                tg.cancel_scope.cancel()
        finally:
            if client_gone:
                stats.client_disconnects += 1
            self._finish(completed)

    async def _drop_connection(
        self, scope: Scope, wait_gone: Callable[[], Awaitable[Any]], *, reset: bool
    ) -> None:
        """Close the connection (``replies.drop_connection``), marked as dropped first so the
        disconnect watcher does not count it as the client's."""
        self.dropped = True
        if not await drop_connection(self.state, scope, wait_gone, reset=reset):
            raise RuntimeError("dropping a connection needs the server of runner.localapi.server")

    async def _sleep(self, secs: float) -> None:
        await anyio.sleep(secs * self.state.settings.time_scale)

    async def _stream_reply(
        self,
        plan: ConversationPlan,
        decision: FaultDecision,
        scope: Scope,
        send: Send,
        wait_gone: Callable[[], Awaitable[Any]],
    ) -> bool:
        """Frames one message at a time, each after its delay; True if sent in full."""
        stats = self.state.stats
        kind = decision.kind
        n_messages = len(plan.messages)
        hit = fault_frame_index(decision.position, n_messages + 1) if kind is not None else -1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for index in range(n_messages + 1):
            if index < n_messages:
                planned = plan.messages[index]
                await self._sleep(planned.delay_secs)
                frame: dict[str, Any] = {
                    "simulated_conversation": [message_json(planned.message)],
                    "analysis": None,
                }
            else:
                await self._sleep(plan.analysis_delay_secs)
                frame = {"simulated_conversation": None, "analysis": analysis_json(plan.analysis)}
            line = frame_line(frame)
            if index == hit:
                if kind is FaultKind.STALL:
                    await anyio.sleep(self.state.settings.faults.stall_secs)
                elif kind is FaultKind.DISCONNECT:
                    stats.stream_broken("disconnect")
                    await self._drop_connection(scope, wait_gone, reset=False)
                    return False
                elif kind is FaultKind.MALFORMED:
                    stats.stream_broken("malformed")
                    line = line[: len(line) // 2] + b"\n"
            await send({"type": "http.response.body", "body": line, "more_body": True})
            stats.frames_sent += 1
            stats.messages_sent += index < n_messages
        self._finish(kind is not FaultKind.MALFORMED)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return kind is not FaultKind.MALFORMED

    async def _buffered_reply(
        self,
        plan: ConversationPlan,
        decision: FaultDecision,
        scope: Scope,
        send: Send,
        wait_gone: Callable[[], Awaitable[Any]],
    ) -> bool:
        """One JSON reply after the summed delays; True if sent intact."""
        stats = self.state.stats
        kind = decision.kind
        total = sum(m.delay_secs for m in plan.messages) + plan.analysis_delay_secs
        if kind is FaultKind.DISCONNECT:
            await self._sleep(total * decision.position)
            stats.stream_broken("disconnect")
            await self._drop_connection(scope, wait_gone, reset=False)
            return False
        if kind is FaultKind.STALL:
            await anyio.sleep(self.state.settings.faults.stall_secs)
        await self._sleep(total)
        body = json.dumps(
            {
                "simulated_conversation": [message_json(m.message) for m in plan.messages],
                "analysis": analysis_json(plan.analysis),
            }
        ).encode()
        if kind is FaultKind.MALFORMED:
            stats.stream_broken("malformed")
            body = body[: len(body) // 2]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        stats.messages_sent += len(plan.messages)
        self._finish(kind is not FaultKind.MALFORMED)
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return kind is not FaultKind.MALFORMED
