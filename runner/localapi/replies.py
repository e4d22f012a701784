"""How an injected fault goes out on the wire, for the simulate and agent-testing routes alike:
an error reply in the vendor's shape (with ``Retry-After`` on 429s when configured), or a
connection dropped with RST or FIN. ``faults`` decides which; this module only delivers it."""

from __future__ import annotations

import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from fastapi.responses import JSONResponse, Response

from runner.localapi.faults import FaultKind, error_reply
from runner.localapi.state import DEFAULT_MAX_CONCURRENCY_HEADER, LocalAPIState, Receive, Scope

DISCONNECT_WAIT_SECS = 5.0
"""How long to wait for the event loop to report a connection we closed as lost."""

Headers = list[tuple[bytes, bytes]]


def retry_after_headers(state: LocalAPIState, status: int) -> Headers:
    """``Retry-After`` on a 429 when ``--retry-after`` is set; else nothing."""
    seconds = state.settings.retry_after
    if status != 429 or seconds is None:
        return []
    return [(b"retry-after", f"{seconds:g}".encode())]


def fault_reply(
    state: LocalAPIState, kind: FaultKind, limit: int | None = None
) -> tuple[int, dict[str, Any], Headers]:
    """Status, body and headers of an error-reply fault (``limit``: the concurrency cap
    named in a 429 ``too_many_concurrent_requests``; default the configured one)."""
    cap = limit or state.settings.max_concurrency or DEFAULT_MAX_CONCURRENCY_HEADER
    status, body = error_reply(kind, limit=cap)
    return status, body, retry_after_headers(state, status)


def fault_response(state: LocalAPIState, kind: FaultKind) -> JSONResponse:
    status, body, headers = fault_reply(state, kind)
    return JSONResponse(
        body, status_code=status, headers={k.decode(): v.decode() for k, v in headers}
    )


async def await_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def drop_connection(
    state: LocalAPIState, scope: Scope, wait_gone: Callable[[], Awaitable[Any]], *, reset: bool
) -> bool:
    """Close this request's connection: RST (``reset``) or FIN after flushing what was sent.

    Then waits until the server has seen the connection go, so that it neither answers a 500
    for a reply that never started nor logs an error for one that never finished. False when
    the connection cannot be found (not under ``runner.localapi.server``'s uvicorn).
    """
    transport = state.transport_of(scope)
    if transport is None:
        return False
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:  # linger 0: the kernel answers with RST, not an orderly FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()
    with anyio.move_on_after(DISCONNECT_WAIT_SECS):
        await wait_gone()
    return True


class DropConnection(Response):
    """A reply that closes the request's connection instead: RST (``reset``) or FIN."""

    def __init__(self, state: LocalAPIState, *, reset: bool) -> None:
        self.background = None
        self.status_code = 200
        self.raw_headers = []
        self.state = state
        self.reset = reset

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:  # type: ignore[override]
        gone = await drop_connection(
            self.state, scope, lambda: await_disconnect(receive), reset=self.reset
        )
        if not gone:  # not under the bundled server: a 503 is the nearest thing
            reply = JSONResponse(
                {"detail": {"status": "service_unavailable", "message": "connection dropped"}},
                status_code=503,
            )
            await reply(scope, receive, send)
