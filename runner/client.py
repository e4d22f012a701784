"""One simulation over HTTP: send the request, read the reply, time it. The only network code.

Backends share one small interface (``Backend``) so the engine, retries, store and analysis do
not care which API produced a conversation. Each ``simulate`` call is one attempt: it returns a
``SimulationResult`` or raises ``AttemptError`` carrying the classified failure; retrying is the
engine's business.

The code is written against httpx; the bytes move through aiohttp (``AiohttpTransport``),
chosen by measurement: see README, "Performance".
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any, Literal, Protocol

import aiohttp
import anyio
import httpx
import yarl

from runner.adaptive import SignalKind, concurrency_headers
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


ReplyListener = Callable[[SignalKind, int | None, int | None], None]
"""``(what the reply says about the quota, maximum header, current header)``."""

REPLY_LISTENER: ContextVar[ReplyListener | None] = ContextVar("reply_listener", default=None)
"""Set by the engine around each attempt: the backends call it once per attempt, as soon as
the reply's status is known (a stream's 200 arrives long before its analysis)."""


def _report_reply(kind: SignalKind, maximum: int | None, current: int | None) -> None:
    listener = REPLY_LISTENER.get()
    if listener is not None:
        listener(kind, maximum, current)


class _AiohttpStream(httpx.AsyncByteStream):
    """A reply body read straight from aiohttp's buffer, its errors turned into httpx's."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except aiohttp.ClientError as exc:
            raise _httpx_error(exc) from exc

    async def aclose(self) -> None:
        # A body read to the end hands its connection back to the pool; anything else
        # (a timeout, a cancelled read, an error reply left unread) must not be reused.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


def _httpx_error(exc: aiohttp.ClientError) -> httpx.TransportError:
    """aiohttp's exception as the httpx one ``classify_exception`` knows (kind by meaning)."""
    message = str(exc) or type(exc).__name__
    error: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        error = httpx.ConnectTimeout
    elif isinstance(exc, aiohttp.ServerTimeoutError):
        error = httpx.ReadTimeout
    elif isinstance(exc, aiohttp.ClientConnectorError):
        error = httpx.ConnectError
    elif isinstance(exc, aiohttp.ClientOSError):
        error = httpx.ReadError  # reset / broken pipe on an open connection
    elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        error = httpx.RemoteProtocolError  # closed before the reply or the body was complete
    elif isinstance(exc, aiohttp.ClientResponseError):
        error = httpx.RemoteProtocolError  # not HTTP we can parse
    else:
        error = httpx.TransportError
    return error(message)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx's interface over aiohttp's HTTP/1.1 engine (C parser, buffered reads).

    Chosen by measurement (README, "Performance"): on httpx's own transport the runner spent
    2 to 6 times the client CPU per 21-frame stream, depending on the machine. The code
    stays written against httpx (requests, responses, errors); only the bytes move through
    aiohttp. Timeouts beyond
    connect and read are the backend's own deadlines; cookies are not kept; redirects are not
    followed; proxies come from the environment (``HTTPS_PROXY``, ``NO_PROXY``), as httpx's do.
    """

    def __init__(self, *, max_connections: int, keepalive_expiry: float = 30.0) -> None:
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}
        self._tls: ssl.SSLContext | None = None

    def _tls_for(self, url: httpx.URL) -> ssl.SSLContext | bool:
        """httpx's TLS settings (its CA bundle) for https, made on first use: loading the CA
        bundle costs ~30 ms of CPU, which a run against the local API need not pay."""
        if url.scheme != "https":
            return True  # aiohttp's default; unused without TLS
        if self._tls is None:
            self._tls = httpx.create_ssl_context()
        return self._tls

    def _proxy_for(self, url: httpx.URL) -> str | None:
        """The environment's proxy for this scheme and host, looked up once per pair (aiohttp's
        own ``trust_env`` reads the environment and ``~/.netrc`` on every request)."""
        key = (url.scheme, url.host)
        if key not in self._proxies:
            proxy = urllib.request.getproxies().get(url.scheme)
            bypass = proxy is None or urllib.request.proxy_bypass(url.host)
            self._proxies[key] = None if bypass else proxy
        return self._proxies[key]

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use: aiohttp binds a session to the running event loop.
        connector = aiohttp.TCPConnector(
            limit=self.max_connections,
            keepalive_timeout=self.keepalive_expiry,
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("user-agent", "accept-encoding"),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session
        if session is None:
            session = self._session = self._open()
        timeout = request.extensions.get("timeout", {})
        try:
            response = await session.request(
                request.method,
                yarl.URL(str(request.url), encoded=True),
                headers=request.headers.multi_items(),
                data=await request.aread() or None,
                allow_redirects=False,
                proxy=self._proxy_for(request.url),
                ssl=self._tls_for(request.url),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=timeout.get("connect"), sock_read=timeout.get("read")
                ),
            )
        except aiohttp.ClientError as exc:
            raise _httpx_error(exc) from exc
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_AiohttpStream(response),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class HttpClient(httpx.AsyncClient):
    """httpx's client, plus ``send_stream``: the simulate backends' requests go straight to
    the transport the client was built with.

    ``AsyncClient.send`` runs per-request machinery those requests never use (an auth flow,
    the redirect loop, event hooks, cookie extraction from every reply): about 0.5 ms of CPU
    per simulation here, a tenth of the runner's (README, "Performance"). Requests and
    responses stay httpx's. With httpx's own pool (``transport="httpx"``) the client picks a
    transport per URL (proxies from the environment), so ``send_stream`` is plain ``send``.
    """

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None, **kwargs: Any) -> None:
        super().__init__(transport=transport, **kwargs)
        self._direct = transport

    async def send_stream(self, request: httpx.Request) -> httpx.Response:
        """The reply with its body unread (``send(request, stream=True)``, minus the above)."""
        if self._direct is None:
            return await self.send(request, stream=True)
        response = await self._direct.handle_async_request(request)
        response.request = request
        return response


Transport = Literal["aiohttp", "httpx"]
"""``aiohttp`` (the default: the faster engine) or ``httpx`` (httpx's own, pure Python)."""


def make_http_client(
    base_url: str,
    api_key: str | None,
    timeouts: Timeouts,
    max_connections: int,
    transport: httpx.AsyncBaseTransport | Transport | None = None,
) -> HttpClient:
    """One shared client whose pool matches the concurrency: an undersized pool silently caps
    throughput, so the pool never waits (``pool=None``) and holds a connection per slot.

    ``transport``: ``None`` or ``"aiohttp"`` (the default), ``"httpx"``, or any httpx transport
    (tests pass a mock one)."""
    headers = {"content-type": "application/json", "accept": "*/*"}
    if api_key:
        headers["xi-api-key"] = api_key
    engine: httpx.AsyncBaseTransport | None = None  # None: httpx builds its own from ``limits``
    if transport is None or transport == "aiohttp":
        engine = AiohttpTransport(max_connections=max_connections, keepalive_expiry=30)
    elif not isinstance(transport, str):
        engine = transport
    return HttpClient(
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
        transport=engine,
        follow_redirects=False,
    )


async def _raise_for_status(
    response: httpx.Response, maximum: int | None, current: int | None
) -> None:
    """Report the reply to the engine; raise the classified failure of an error reply."""
    if response.status_code < 300:
        _report_reply(SignalKind.ADMITTED, maximum, current)
        return
    body = b""
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > _ERROR_BODY_LIMIT:
            break
    failure = classify_response(response.status_code, body, response.headers)
    if maximum is not None or current is not None:
        failure = dataclasses.replace(failure, max_concurrent=maximum, current_concurrent=current)
    rejected = failure.kind is ErrorKind.CONCURRENCY_LIMIT
    _report_reply(SignalKind.REJECTED if rejected else SignalKind.NEUTRAL, maximum, current)
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

    async def simulate(self, job: Job) -> SimulationResult:
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
                    await _raise_for_status(response, maximum, current)
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

    async def simulate(self, job: Job) -> SimulationResult:
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
                    await _raise_for_status(response, maximum, current)
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
