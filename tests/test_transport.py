"""The aiohttp transport under httpx: every failure classified as with httpx's own transport,
the quota headers reported as soon as a reply starts, proxies from the environment."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import aiohttp
import anyio
import httpx
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from runner.adaptive import SignalKind
from runner.backends.simulate import BufferedBackend, StreamBackend
from runner.config import Timeouts
from runner.errors import AttemptError, classify_exception
from runner.http import AiohttpTransport, _httpx_error, make_http_client
from runner.jobs import Job
from runner.localapi.server import LocalAPI

TRANSPORTS = ["aiohttp", "httpx"]
TIMEOUTS = Timeouts(connect=2, first_byte=2, idle=0.3, total=10)
JOB = Job(
    key="k",
    agent_id="agent_support",
    agent_label="support",
    scenario_id="s",
    matrix=(),
    repeat=0,
    body={
        "simulation_specification": {
            "simulated_user_config": {"prompt": {"prompt": "You want to know where order A-1 is."}}
        },
        "new_turns_limit": 6,
    },
)


def ignore_reply(kind: SignalKind, maximum: int | None, current: int | None) -> None:
    """A reply listener for attempts whose reports the test does not look at."""


async def attempt(
    base_url: str, transport: str, backend: type[StreamBackend | BufferedBackend] = StreamBackend
) -> tuple[str, list[tuple[SignalKind, int | None, int | None]], Any]:
    """One attempt: its error kind (or ``ok``), what it reported to the listener, the result."""
    reports: list[tuple[SignalKind, int | None, int | None]] = []
    client = backend(make_http_client(base_url, None, TIMEOUTS, 4, transport), TIMEOUTS)
    try:
        return "ok", reports, await client.simulate(JOB, lambda *report: reports.append(report))
    except AttemptError as exc:
        return exc.failure.kind.value, reports, exc.failure
    finally:
        await client.aclose()


FAULTS = {
    "--fault-reset": "connect",
    "--fault-disconnect": "stream_broken",
    "--fault-stall": "idle_timeout",
    "--fault-malformed": "malformed",
    "--fault-http-503": "server_error",
    "--fault-too-many-concurrent-requests": "concurrency_limit",
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_faults_are_classified_alike_on_both_transports(
    fault: str, local_api_factory: Callable[..., LocalAPI]
) -> None:
    api = local_api_factory(
        ["--time-scale", "0.001", "--seed", "2", fault, "1", "--stall-secs", "2"]
    )
    kinds = {transport: (await attempt(api.base_url, transport))[0] for transport in TRANSPORTS}
    assert kinds == {"aiohttp": FAULTS[fault], "httpx": FAULTS[fault]}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_refused_connection_is_a_connect_failure(transport: str) -> None:
    kind, reports, _ = await attempt("http://127.0.0.1:9", transport)  # discard port: closed
    assert kind == "connect" and reports == []


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("backend", [StreamBackend, BufferedBackend])
async def test_the_reply_and_its_quota_headers_are_reported_once(
    transport: str, backend: type[StreamBackend | BufferedBackend], local_api: LocalAPI
) -> None:
    kind, reports, result = await attempt(local_api.base_url, transport, backend)
    assert kind == "ok" and len(reports) == 1
    reported, maximum, current = reports[0]
    assert reported is SignalKind.ADMITTED and maximum == 1000 and current is not None
    assert (result.max_concurrent, result.current_concurrent) == (maximum, current)
    assert result.analysis is not None and len(result.messages) >= 2


async def test_a_429_reports_a_rejection_with_the_quota(
    local_api_factory: Callable[..., LocalAPI],
) -> None:
    api = local_api_factory(["--time-scale", "0.001", "--fault-too-many-concurrent-requests", "1"])
    kind, reports, failure = await attempt(api.base_url, "aiohttp")
    assert kind == "concurrency_limit" and failure.status == 429
    assert reports == [(SignalKind.REJECTED, 1000, 0)]
    assert (failure.max_concurrent, failure.current_concurrent) == (1000, 0)


def request_info() -> aiohttp.RequestInfo:
    url = URL("http://127.0.0.1/x")
    return aiohttp.RequestInfo(url, "POST", CIMultiDictProxy(CIMultiDict()), url)


@pytest.mark.parametrize(
    ("error", "expected", "kind_in_body"),
    [
        (aiohttp.ConnectionTimeoutError("connect"), httpx.ConnectTimeout, "connect_timeout"),
        (aiohttp.SocketTimeoutError("read"), httpx.ReadTimeout, "idle_timeout"),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), httpx.ReadError, "stream_broken"),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError, "stream_broken"),
        (aiohttp.ClientPayloadError("incomplete"), httpx.RemoteProtocolError, "stream_broken"),
        (
            aiohttp.ClientResponseError(request_info(), ()),
            httpx.RemoteProtocolError,
            "stream_broken",
        ),
        (aiohttp.ClientError("other"), httpx.TransportError, "stream_broken"),
    ],
)
def test_aiohttp_errors_become_the_httpx_errors_the_taxonomy_knows(
    error: aiohttp.ClientError, expected: type[httpx.TransportError], kind_in_body: str
) -> None:
    mapped = _httpx_error(error)
    assert type(mapped) is expected and str(mapped)
    assert classify_exception(mapped, "body").kind.value == kind_in_body


def test_a_refused_connection_maps_to_connect_error() -> None:
    key: Any = type("Key", (), {"ssl": False, "host": "127.0.0.1", "port": 9})()
    error = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))
    assert type(_httpx_error(error)) is httpx.ConnectError
    assert classify_exception(_httpx_error(error), "connect").kind.value == "connect"


def test_tls_uses_httpx_ca_settings_and_is_made_only_for_https() -> None:
    transport = AiohttpTransport(max_connections=1)
    assert transport._tls_for(httpx.URL("http://127.0.0.1:8000/v1")) is True
    assert transport._tls is None  # plain HTTP never loads the CA bundle
    context = transport._tls_for(httpx.URL("https://api.elevenlabs.io/v1"))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert transport._tls_for(httpx.URL("https://api.elevenlabs.io/v1")) is context  # once


def test_proxies_come_from_the_environment_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    transport = AiohttpTransport(max_connections=1)
    assert transport._proxy_for(httpx.URL("https://api.example.com/v1")) == (
        "http://proxy.invalid:3128"
    )
    assert transport._proxy_for(httpx.URL("https://127.0.0.1:8000/v1")) is None
    assert transport._proxy_for(httpx.URL("http://api.example.com/v1")) is None  # no HTTP_PROXY
    monkeypatch.delenv("HTTPS_PROXY")
    assert transport._proxy_for(httpx.URL("https://api.example.com/v1")) is not None  # cached


# ---------------------------------------------------------------------------- deadlines

FRAME = (
    b'{"simulated_conversation": [{"role": "agent", "time_in_call_secs": 0, "message": "Hi"}]}\n'
)
ANALYSIS = b'{"analysis": {"call_successful": "success", "transcript_summary": "ok"}}\n'


class Paced(httpx.AsyncBaseTransport):
    """A reply whose status line comes after ``headers`` seconds, then each chunk after its
    own delay: a stream that is slow exactly where a test wants it."""

    def __init__(self, headers: float, chunks: list[tuple[float, bytes]]) -> None:
        self.headers = headers
        self.chunks = chunks

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await anyio.sleep(self.headers)
        chunks = self.chunks

        class Body(httpx.AsyncByteStream):
            async def __aiter__(self) -> Any:
                for delay, chunk in chunks:
                    await anyio.sleep(delay)
                    yield chunk

        return httpx.Response(200, stream=Body(), request=request)


@pytest.mark.parametrize(
    ("timeouts", "headers", "chunks", "expected"),
    [
        # the status line never comes in time
        ((0.2, 5, 5), 1.0, [(0, FRAME)], "first_byte_timeout"),
        # headers at once, but no frame before the first-byte deadline (a partial line is none)
        ((0.3, 5, 5), 0, [(0.1, FRAME[:10]), (0.5, FRAME[10:])], "first_byte_timeout"),
        # frames, then a gap longer than idle
        ((1, 0.2, 5), 0, [(0, FRAME), (0.05, FRAME), (0.6, ANALYSIS)], "idle_timeout"),
        # every gap shorter than idle, but the whole longer than total
        ((1, 0.3, 0.5), 0, [(0.1, FRAME)] * 8 + [(0.1, ANALYSIS)], "total_timeout"),
        # total shorter than first_byte: total decides
        ((5, 5, 0.2), 0.6, [(0, FRAME)], "total_timeout"),
        # slow but never too slow: longer than first_byte and idle in all, well within total
        ((0.3, 0.3, 5), 0.1, [(0.1, FRAME)] * 6 + [(0.1, ANALYSIS)], "ok"),
    ],
)
async def test_each_deadline_cuts_its_own_kind_of_slowness(
    timeouts: tuple[float, float, float],
    headers: float,
    chunks: list[tuple[float, bytes]],
    expected: str,
) -> None:
    first_byte, idle, total = timeouts
    t = Timeouts(connect=2, first_byte=first_byte, idle=idle, total=total)
    backend = StreamBackend(
        make_http_client("http://127.0.0.1:9", None, t, 1, Paced(headers, chunks)), t
    )
    started = anyio.current_time()
    try:
        result = await backend.simulate(JOB, ignore_reply)
        kind = "ok"
    except AttemptError as exc:
        kind = exc.failure.kind.value
    finally:
        await backend.aclose()
    assert kind == expected
    if kind == "ok":
        assert len(result.messages) == 6 and result.timings.frames == 7
    else:  # cut at its deadline, well before the stream would have ended
        assert anyio.current_time() - started < headers + sum(d for d, _ in chunks) - 0.1


# ---------------------------------------------------------------------------- the request


class Capture(httpx.AsyncBaseTransport):
    """Keeps the requests it is sent; answers each with a one-frame conversation."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        return httpx.Response(200, content=FRAME + ANALYSIS, request=request)


async def test_the_request_is_the_one_httpx_builds_from_the_body() -> None:
    """The backends assemble the request's headers themselves (Host, the client's,
    Content-Length): they must be exactly what ``httpx.Request(content=...)`` would send."""
    capture = Capture()
    http = make_http_client("http://127.0.0.1:8000/base", "sk-test", TIMEOUTS, 4, capture)
    backend = StreamBackend(http, TIMEOUTS)
    try:
        await backend.simulate(JOB, ignore_reply)
    finally:
        await backend.aclose()
    (sent,) = capture.requests
    url = "http://127.0.0.1:8000/base/v1/convai/agents/agent_support/simulate-conversation/stream"
    expected = httpx.Request("POST", url, headers=http.headers, content=JOB.content)
    assert (sent.method, sent.url) == ("POST", expected.url)
    assert sent.headers.raw == expected.headers.raw
    assert sent.headers["xi-api-key"] == "sk-test"
    assert sent.content == JOB.content == expected.content
