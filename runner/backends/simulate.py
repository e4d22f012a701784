"""The simulate-conversation backends: the stream endpoint (decoded as bytes arrive) and the
buffered one (one JSON reply). Each ``simulate`` call is one attempt: a ``SimulationResult``, or
``AttemptError`` carrying the classified failure; retrying is the engine's business.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from typing import Literal

import anyio
import httpx

from runner.adaptive import SignalKind, concurrency_headers
from runner.backends.base import ReplyListener, SimulationResult, Timings
from runner.config.models import Timeouts
from runner.errors import (
    Action,
    AttemptError,
    ErrorKind,
    Failure,
    Phase,
    classify_endpoint_reply,
    classify_exception,
    stream_ended_without_analysis,
    timeout_failure,
)
from runner.http import HttpClient, read_error_body
from runner.jobs import Job
from runner.stream import FrameDecoder, StreamDecodeError, Transcript
from runner.wire.simulate import BUFFERED_PATH, STREAM_PATH, SimulationResponse


async def _raise_for_status(
    response: httpx.Response,
    maximum: int | None,
    current: int | None,
    on_reply: ReplyListener,
    *,
    path: str,
    agent_id: str,
) -> None:
    """Report the reply to the engine; raise the classified failure of an error reply (a
    404 / 405 / 410 not about the agent: the endpoint is gone, which stops the run)."""
    if response.status_code < 300:
        on_reply(SignalKind.ADMITTED, maximum, current)
        return
    body = await read_error_body(response)
    failure = classify_endpoint_reply(
        response.status_code, body, response.headers, endpoint=f"POST {path}", agent_id=agent_id
    )
    if maximum is not None or current is not None:
        failure = dataclasses.replace(failure, max_concurrent=maximum, current_concurrent=current)
    rejected = failure.kind is ErrorKind.CONCURRENCY_LIMIT
    on_reply(SignalKind.REJECTED if rejected else SignalKind.NEUTRAL, maximum, current)
    raise AttemptError(failure)


def _own_deadlines(client: httpx.AsyncClient) -> httpx.Timeout:
    """The client's timeouts without the read one: the simulate backends keep their own
    deadlines (first byte, idle, total), and a transport read timeout re-arms a timer on every
    packet. Other calls (agent-testing's) keep it as a backstop."""
    t = client.timeout
    return httpx.Timeout(connect=t.connect, read=None, write=t.write, pool=t.pool)


class _Urls:
    """Absolute request URLs per agent, built once: httpx parses and merges a relative URL with
    the base URL on every request, which costs more than decoding a frame."""

    def __init__(self, client: httpx.AsyncClient, path: str) -> None:
        self.client = client
        self.path = path
        self._urls: dict[str, httpx.URL] = {}

    def __call__(self, agent_id: str) -> httpx.URL:
        url = self._urls.get(agent_id)
        if url is None:
            url = self._urls[agent_id] = self.client.base_url.join(
                self.path.format(agent_id=agent_id).lstrip("/")
            )
        return url


class _Deadlines:
    """One stream attempt's three deadlines on one cancel scope and one event-loop timer:
    ``total`` from the start, ``first_byte`` until the first frame, then ``idle`` between reads.

    The timer is re-armed only when it fires (about once per ``idle``): a cancel scope per
    deadline schedules timers of its own, and a deadline moved at every read reschedules one
    per chunk. Asyncio's loop: the aiohttp transport needs it anyway.
    """

    def __init__(self, scope: anyio.CancelScope, timeouts: Timeouts) -> None:
        self._scope = scope
        self._t = timeouts
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self._last: float | None = None
        self.expired: Literal["total", "first_byte", "idle"] | None = None
        first = min(timeouts.first_byte, timeouts.total)
        self._timer = self._loop.call_at(self._start + first, self._check)

    def touch(self) -> None:
        """Bytes arrived after the first frame: the idle deadline starts again."""
        now = self._loop.time()
        if self._last is None:  # the first frame: the timer may be set for a later deadline
            self._timer.cancel()
            due = min(now + self._t.idle, self._start + self._t.total)
            self._timer = self._loop.call_at(due, self._check)
        self._last = now

    def _check(self) -> None:
        kind: Literal["total", "first_byte", "idle"]
        if self._last is None:
            due, kind = self._start + self._t.first_byte, "first_byte"
        else:
            due, kind = self._last + self._t.idle, "idle"
        if self._start + self._t.total <= due:
            due, kind = self._start + self._t.total, "total"
        if due > self._loop.time():
            self._timer = self._loop.call_at(due, self._check)
            return
        self.expired = kind
        self._scope.cancel()

    def stop(self) -> None:
        self._timer.cancel()


def _gaps(times: list[float]) -> tuple[float | None, float | None]:
    if len(times) < 2:
        return None, None
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return sum(gaps) / len(gaps), max(gaps)


class _SimulateBackend:
    """What both simulate-conversation backends share: the client, deadlines and URLs."""

    path: str

    def __init__(self, client: HttpClient, timeouts: Timeouts) -> None:
        self.client = client
        self.timeouts = timeouts
        self._url = _Urls(client, self.path)
        self._extensions = {"timeout": _own_deadlines(client).as_dict()}
        # The headers httpx would send, in its order (Host, the client's, Content-Length)
        self._headers = [(b"Host", client.base_url.netloc), *client.headers.raw]

    async def _send(self, job: Job) -> httpx.Response:
        """The reply to the job's request, its body unread. The request is built directly:
        the body is the job's bytes, encoded once per scenario and cell, and its headers are
        the client's plus Host and Content-Length, as httpx adds them for ``content=``
        (which re-reads and re-merges every header: a third of building a request), with no
        cookies or per-request headers to merge."""
        content = job.content
        request = httpx.Request(
            "POST",
            self._url(job.agent_id),
            headers=[*self._headers, (b"Content-Length", b"%d" % len(content))],
            stream=httpx.ByteStream(content),
            extensions=self._extensions,
        )
        return await self.client.send_stream(request)

    async def aclose(self) -> None:
        await self.client.aclose()


class StreamBackend(_SimulateBackend):
    """``POST .../simulate-conversation/stream``, decoded incrementally as bytes arrive.

    Deadlines: ``first_byte`` runs from sending the request to the first frame, ``idle`` bounds
    every later gap between reads, ``total`` bounds the whole attempt; ``connect`` is the
    transport's.
    """

    path = STREAM_PATH

    async def simulate(self, job: Job, on_reply: ReplyListener) -> SimulationResult:
        t = self.timeouts
        start = time.perf_counter()
        phase: Phase = "connect"
        timings = Timings()
        transcript = Transcript()
        frame_times = transcript.frame_times
        with anyio.CancelScope() as scope:
            deadlines = _Deadlines(scope, t)
            try:
                response = await self._send(job)
                phase = "headers"
                try:
                    timings.headers = time.perf_counter() - start
                    maximum, current = concurrency_headers(response.headers)
                    await _raise_for_status(
                        response, maximum, current, on_reply, path=self.path, agent_id=job.agent_id
                    )
                    phase = "body"
                    decoder = FrameDecoder()
                    body = response.stream
                    assert isinstance(body, httpx.AsyncByteStream)
                    # the byte stream itself: ``aiter_raw`` adds bookkeeping per chunk
                    async for chunk in body:
                        frames = decoder.feed(chunk)
                        if frames:
                            now = time.perf_counter() - start
                            for frame in frames:
                                transcript.add(frame, now)
                        if frame_times:
                            deadlines.touch()
                    frames = decoder.close()
                    if frames:
                        now = time.perf_counter() - start
                        for frame in frames:
                            transcript.add(frame, now)
                finally:
                    await response.aclose()
            except (httpx.HTTPError, OSError, StreamDecodeError) as exc:
                raise AttemptError(classify_exception(exc, phase)) from exc
            finally:
                deadlines.stop()
        if scope.cancelled_caught:
            expired = deadlines.expired or "total"
            raise AttemptError(timeout_failure(expired, getattr(t, expired)))
        timings.total = time.perf_counter() - start
        timings.frames = len(frame_times)
        if transcript.analysis is None:
            raise AttemptError(stream_ended_without_analysis(timings.frames))
        timings.first_frame = frame_times[0]
        timings.analysis = frame_times[-1]
        timings.mean_gap, timings.max_gap = _gaps(frame_times)
        return SimulationResult(
            http_status=response.status_code,
            messages=transcript.messages,
            arrivals=transcript.arrivals,
            analysis=transcript.analysis,
            timings=timings,
            max_concurrent=maximum,
            current_concurrent=current,
        )


class BufferedBackend(_SimulateBackend):
    """``POST .../simulate-conversation``: the whole conversation as one JSON reply."""

    path = BUFFERED_PATH

    async def simulate(self, job: Job, on_reply: ReplyListener) -> SimulationResult:
        t = self.timeouts
        start = time.perf_counter()
        phase: Phase = "connect"
        with anyio.move_on_after(t.total) as total_scope:
            try:
                response = await self._send(job)
                phase = "headers"
                try:
                    headers_at = time.perf_counter() - start
                    maximum, current = concurrency_headers(response.headers)
                    await _raise_for_status(
                        response, maximum, current, on_reply, path=self.path, agent_id=job.agent_id
                    )
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
            max_concurrent=maximum,
            current_concurrent=current,
        )
