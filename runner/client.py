"""One simulation over HTTP: send the request, read the reply, time it. The only network code.

Backends share one small interface (``Backend``) so the engine, retries, store and analysis do
not care which API produced a conversation. Each ``simulate`` call is one attempt: it returns a
``SimulationResult`` or raises ``AttemptError`` carrying the classified failure; retrying is the
engine's business.
"""

from __future__ import annotations

import itertools
import time
from typing import Protocol

import anyio
import httpx

from runner.config import Job, Timeouts
from runner.errors import (
    Action,
    AttemptError,
    ErrorKind,
    Failure,
    Phase,
    classify_exception,
    classify_response,
    stream_ended_without_analysis,
    timeout_failure,
)
from runner.outcome import SimulationResult, Timings
from runner.stream import FrameDecoder, StreamDecodeError, Transcript
from runner.wire import SimulationResponse

STREAM_PATH = "/v1/convai/agents/{agent_id}/simulate-conversation/stream"
BUFFERED_PATH = "/v1/convai/agents/{agent_id}/simulate-conversation"
_ERROR_BODY_LIMIT = 64 * 1024


class Backend(Protocol):
    async def simulate(self, job: Job) -> SimulationResult: ...

    async def aclose(self) -> None: ...


def make_http_client(
    base_url: str,
    api_key: str | None,
    timeouts: Timeouts,
    max_connections: int,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """One shared client whose pool matches the concurrency: an undersized pool silently caps
    throughput, so the pool never waits (``pool=None``) and holds a connection per slot."""
    headers = {"content-type": "application/json", "accept": "*/*"}
    if api_key:
        headers["xi-api-key"] = api_key
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        headers=headers,
        timeout=httpx.Timeout(
            connect=timeouts.connect,
            read=max(timeouts.first_byte, timeouts.idle),
            write=timeouts.connect,
            pool=None,
        ),
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30,
        ),
        transport=transport,
        follow_redirects=False,
    )


async def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 300:
        return
    body = b""
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > _ERROR_BODY_LIMIT:
            break
    raise AttemptError(classify_response(response.status_code, body, response.headers))


def _gaps(times: list[float]) -> tuple[float | None, float | None]:
    if len(times) < 2:
        return None, None
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return sum(gaps) / len(gaps), max(gaps)


class StreamBackend:
    """``POST .../simulate-conversation/stream``, decoded incrementally as bytes arrive.

    Deadlines: ``first_byte`` runs from sending the request to the first frame, ``idle`` bounds
    every later gap between reads, ``total`` bounds the whole attempt; ``connect`` is httpx's.
    """

    def __init__(self, client: httpx.AsyncClient, timeouts: Timeouts) -> None:
        self.client = client
        self.timeouts = timeouts

    async def aclose(self) -> None:
        await self.client.aclose()

    async def simulate(self, job: Job) -> SimulationResult:
        t = self.timeouts
        start = time.perf_counter()
        phase: Phase = "connect"
        timings = Timings()
        transcript = Transcript()
        with anyio.move_on_after(t.total) as total_scope:
            try:
                request = self.client.build_request(
                    "POST", STREAM_PATH.format(agent_id=job.agent_id), json=job.body
                )
                with anyio.move_on_after(t.first_byte) as headers_scope:
                    response = await self.client.send(request, stream=True)
                if headers_scope.cancelled_caught:
                    raise AttemptError(timeout_failure("first_byte", t.first_byte))
                phase = "headers"
                try:
                    timings.headers = time.perf_counter() - start
                    await _raise_for_status(response)
                    phase = "body"
                    decoder = FrameDecoder()
                    chunks = response.aiter_raw()
                    while True:
                        if transcript.frame_times:
                            wait = t.idle
                        else:
                            wait = t.first_byte - (time.perf_counter() - start)
                        with anyio.move_on_after(max(wait, 0.0)) as read_scope:
                            chunk = await anext(chunks, None)
                        if read_scope.cancelled_caught:
                            if transcript.frame_times:
                                raise AttemptError(timeout_failure("idle", t.idle))
                            raise AttemptError(timeout_failure("first_byte", t.first_byte))
                        frames = decoder.close() if chunk is None else decoder.feed(chunk)
                        if frames:
                            now = time.perf_counter() - start
                            for frame in frames:
                                transcript.add(frame, now)
                        if chunk is None:
                            break
                finally:
                    await response.aclose()
            except (httpx.HTTPError, OSError, StreamDecodeError) as exc:
                raise AttemptError(classify_exception(exc, phase)) from exc
        if total_scope.cancelled_caught:
            raise AttemptError(timeout_failure("total", t.total))
        timings.total = time.perf_counter() - start
        timings.frames = len(transcript.frame_times)
        if transcript.analysis is None:
            raise AttemptError(stream_ended_without_analysis(timings.frames))
        timings.first_frame = transcript.frame_times[0]
        timings.analysis = transcript.frame_times[-1]
        timings.mean_gap, timings.max_gap = _gaps(transcript.frame_times)
        return SimulationResult(
            http_status=response.status_code,
            messages=transcript.messages,
            arrivals=transcript.arrivals,
            analysis=transcript.analysis,
            timings=timings,
        )


class BufferedBackend:
    """``POST .../simulate-conversation``: the whole conversation as one JSON reply."""

    def __init__(self, client: httpx.AsyncClient, timeouts: Timeouts) -> None:
        self.client = client
        self.timeouts = timeouts

    async def aclose(self) -> None:
        await self.client.aclose()

    async def simulate(self, job: Job) -> SimulationResult:
        t = self.timeouts
        start = time.perf_counter()
        phase: Phase = "connect"
        with anyio.move_on_after(t.total) as total_scope:
            try:
                request = self.client.build_request(
                    "POST", BUFFERED_PATH.format(agent_id=job.agent_id), json=job.body
                )
                response = await self.client.send(request, stream=True)
                phase = "headers"
                try:
                    headers_at = time.perf_counter() - start
                    await _raise_for_status(response)
                    phase = "body"
                    body = await response.aread()
                finally:
                    await response.aclose()
            except (httpx.HTTPError, OSError) as exc:
                raise AttemptError(classify_exception(exc, phase)) from exc
        if total_scope.cancelled_caught:
            raise AttemptError(timeout_failure("total", t.total))
        done = time.perf_counter() - start
        try:
            reply = SimulationResponse.model_validate_json(body)
        except ValueError as exc:
            message = f"reply is not a simulation result: {exc}".splitlines()[0][:300]
            raise AttemptError(Failure(ErrorKind.MALFORMED, Action.RETRY, message)) from exc
        timings = Timings(headers=headers_at, first_frame=done, analysis=done, total=done, frames=1)
        return SimulationResult(
            http_status=response.status_code,
            messages=reply.simulated_conversation,
            arrivals=[done] * len(reply.simulated_conversation),
            analysis=reply.analysis,
            timings=timings,
        )
