"""HTTP for every backend: an httpx client over aiohttp, and one way to read an error reply.

The code is written against httpx (requests, responses, errors); the bytes move through aiohttp
(``AiohttpTransport``), chosen by measurement: see docs/performance.md. ``read_error_body``
is the one bounded read of an error reply; ``request_json`` is one JSON API call with its
failure classified by ``runner.errors`` (the agent-testing backend and tests management use it).
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import AsyncIterator
from typing import Any, Literal

import aiohttp
import httpx
import yarl

from runner.config.models import Timeouts
from runner.errors import (
    Action,
    AttemptError,
    ErrorKind,
    Failure,
    Phase,
    classify_exception,
    classify_response,
)

ERROR_BODY_LIMIT = 64 * 1024
"""An error reply's body is read up to this many bytes: enough for any message, and a broken
server streaming garbage with an error status cannot fill memory."""


_TARGETS_KEPT = 256
"""URLs whose aiohttp form ``AiohttpTransport`` keeps (more: it starts again)."""


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

    Chosen by measurement (docs/performance.md): on httpx's own transport the runner spent
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
        self._targets: dict[object, tuple[yarl.URL, str | None, ssl.SSLContext | bool]] = {}
        self._timeouts: dict[tuple[float | None, float | None], aiohttp.ClientTimeout] = {}

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

    def _target(self, url: httpx.URL) -> tuple[yarl.URL, str | None, ssl.SSLContext | bool]:
        """The request URL as aiohttp's, with its proxy and TLS settings, made once per URL:
        keyed by httpx's parsed form of it (a tuple of its parts, which every copy of a URL
        shares), so neither ``str(url)`` nor a parse runs per request. A few hundred URLs at
        most are kept, so URLs made per call (the JSON API calls) cannot fill memory."""
        key = getattr(url, "_uri_reference", None) or str(url)
        target = self._targets.get(key)
        if target is None:
            target = (yarl.URL(str(url), encoded=True), self._proxy_for(url), self._tls_for(url))
            if len(self._targets) >= _TARGETS_KEPT:
                self._targets.clear()
            self._targets[key] = target
        return target

    def _timeout(self, timeout: dict[str, float | None] | None) -> aiohttp.ClientTimeout:
        """aiohttp's timeouts for httpx's, made once per distinct pair (connect, read)."""
        timeout = timeout or {}
        key = (timeout.get("connect"), timeout.get("read"))
        made = self._timeouts.get(key)
        if made is None:
            made = aiohttp.ClientTimeout(total=None, sock_connect=key[0], sock_read=key[1])
            self._timeouts[key] = made
        return made

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
        url, proxy, tls = self._target(request.url)
        try:
            response = await session.request(
                request.method,
                url,
                headers=request.headers.multi_items(),
                data=await request.aread() or None,
                allow_redirects=False,
                proxy=proxy,
                ssl=tls,
                timeout=self._timeout(request.extensions.get("timeout")),
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
    per simulation here, a tenth of the runner's (docs/performance.md). Requests and
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


async def read_error_body(response: httpx.Response) -> bytes:
    """The start of an error reply's body (up to ``ERROR_BODY_LIMIT``), for its message."""
    body = b""
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > ERROR_BODY_LIMIT:
            break
    return body


async def request_json(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    params: dict[str, Any] | None = None,
) -> Any:
    """One API call: its JSON reply, or ``AttemptError`` classified by the error taxonomy."""
    phase: Phase = "connect"
    try:
        request = client.build_request(method, path, json=json_body, params=params)
        response = await client.send(request, stream=True)
        phase = "headers"
        try:
            if response.status_code >= 300:
                body = await read_error_body(response)
                raise AttemptError(classify_response(response.status_code, body, response.headers))
            phase = "body"
            raw = await response.aread()
        finally:
            await response.aclose()
    except (httpx.HTTPError, OSError) as exc:
        raise AttemptError(classify_exception(exc, phase)) from exc
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError as exc:
        message = f"{method} {path}: reply is not JSON: {exc}".splitlines()[0][:300]
        raise AttemptError(Failure(ErrorKind.MALFORMED, Action.RETRY, message)) from exc
