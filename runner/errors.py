"""The error taxonomy: every failed attempt is classified here, once, into a kind and an action.

The engine never looks at status codes or exception types itself; it asks this module what a
failure means. That keeps the retry policy in one table that tests can read case by case.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Literal

import httpx

from runner.stream import StreamDecodeError


class ErrorKind(StrEnum):
    AUTH = "auth"  # 401 / 403: the key is wrong; nothing will work
    NOT_FOUND = "not_found"  # 404: unknown agent
    INVALID_REQUEST = "invalid_request"  # 400 / 422 / other 4xx: the body is wrong
    CONCURRENCY_LIMIT = "concurrency_limit"  # 429 too_many_concurrent_requests
    SYSTEM_BUSY = "system_busy"  # 429 system_busy (or any other 429)
    REQUEST_TIMEOUT = "request_timeout"  # 408
    SERVER_ERROR = "server_error"  # 5xx
    CONNECT = "connect"  # could not connect, or the connection dropped before a reply
    CONNECT_TIMEOUT = "connect_timeout"
    FIRST_BYTE_TIMEOUT = "first_byte_timeout"  # no reply / no first frame in time
    IDLE_TIMEOUT = "idle_timeout"  # the stream went quiet for too long
    TOTAL_TIMEOUT = "total_timeout"  # the whole simulation took too long
    STREAM_BROKEN = "stream_broken"  # the stream ended or failed before the analysis
    MALFORMED = "malformed"  # a frame or reply that does not decode
    CANCELLED = "cancelled"  # agent-testing: the test run was cancelled (vendor or Ctrl-C)
    ENDPOINT_GONE = "endpoint_gone"  # 404 / 405 / 410 not about an agent: the endpoint is gone


class Action(StrEnum):
    ABORT_RUN = "abort_run"  # stop the whole run now
    FAIL_JOB = "fail_job"  # terminal for this job; retrying cannot help
    RETRY = "retry"  # back off, then try again
    WAIT_CAPACITY = "wait_capacity"  # the account is at its concurrency quota: wait, then retry
    GIVE_UP = "give_up"  # recorded only: a retryable failure the engine tried no more after


Phase = Literal["connect", "headers", "body"]


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong with one attempt, and what to do about it."""

    kind: ErrorKind
    action: Action
    message: str
    status: int | None = None
    retry_after: float | None = None  # seconds, when the server said so
    max_concurrent: int | None = None  # maximum-concurrent-requests of the reply, if sent
    current_concurrent: int | None = None  # current-concurrent-requests of the reply, if sent

    @property
    def retryable(self) -> bool:
        return self.action in (Action.RETRY, Action.WAIT_CAPACITY)


class AttemptError(Exception):
    """Raised by a backend for a failed attempt; carries its classification."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


_MAX_MESSAGE = 300


def _detail(body: bytes) -> tuple[str | None, str]:
    """(status code word, human message) from an error body in either of the API's forms."""
    text = body.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return None, text[:_MAX_MESSAGE]
    detail = parsed.get("detail") if isinstance(parsed, dict) else None
    if isinstance(detail, dict):
        status = detail.get("status")
        message = detail.get("message")
        return (str(status) if status is not None else None), str(message or text)[:_MAX_MESSAGE]
    if isinstance(detail, list) and detail:
        # 422: [{"type", "loc", "msg", "input"}]
        parts = []
        for item in detail[:3]:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []))
                parts.append(f"{loc}: {item.get('msg', '')}")
        return None, "; ".join(parts)[:_MAX_MESSAGE]
    if isinstance(detail, str):
        return None, detail[:_MAX_MESSAGE]
    return None, text[:_MAX_MESSAGE]


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def classify_response(
    status: int,
    body: bytes,
    headers: httpx.Headers | dict[str, str] | None = None,
    now: datetime | None = None,
) -> Failure:
    """Classify a non-2xx reply."""
    word, message = _detail(body)
    retry_after = parse_retry_after((headers or {}).get("retry-after"), now)
    text = f"HTTP {status}" + (f" {word}" if word else "") + (f": {message}" if message else "")
    if status in (401, 403):
        return Failure(ErrorKind.AUTH, Action.ABORT_RUN, text, status)
    if status == 404:
        return Failure(ErrorKind.NOT_FOUND, Action.FAIL_JOB, text, status)
    if status == 408:
        return Failure(ErrorKind.REQUEST_TIMEOUT, Action.RETRY, text, status, retry_after)
    if status == 429:
        if word == "too_many_concurrent_requests":
            return Failure(
                ErrorKind.CONCURRENCY_LIMIT, Action.WAIT_CAPACITY, text, status, retry_after
            )
        return Failure(ErrorKind.SYSTEM_BUSY, Action.RETRY, text, status, retry_after)
    if status >= 500:
        return Failure(ErrorKind.SERVER_ERROR, Action.RETRY, text, status, retry_after)
    return Failure(ErrorKind.INVALID_REQUEST, Action.FAIL_JOB, text, status)


GONE_STATUSES = (404, 405, 410)


def is_about_agent(body: bytes, agent_id: str) -> bool:
    """Whether an error reply is about the agent (an unknown agent, per job) rather than the
    endpoint: its status word names an agent, or its message names the agent's id."""
    word, message = _detail(body)
    if word:
        return "agent" in word.lower()
    # the id inside a path ("POST /v1/convai/agents/<id>/simulate-conversation has been
    # removed") names the endpoint, not the agent
    return bool(agent_id) and agent_id in message.replace(f"/{agent_id}/", "/")


def endpoint_gone(status: int, endpoint: str) -> Failure:
    """The simulate endpoint answered as a removed route: the whole run stops with this one
    line (the CLI prints it after ``run aborted:``)."""
    return Failure(
        ErrorKind.ENDPOINT_GONE,
        Action.ABORT_RUN,
        f"{endpoint} answered HTTP {status}: the vendor has removed this simulate-conversation "
        "endpoint; set target.backend: agent-testing in the config to run the same sweep "
        "through the agent-testing API",
        status,
    )


def classify_endpoint_reply(
    status: int,
    body: bytes,
    headers: httpx.Headers | dict[str, str] | None,
    *,
    endpoint: str,
    agent_id: str,
) -> Failure:
    """``classify_response`` for a call to ``endpoint`` about ``agent_id``: a 404 / 405 / 410
    that is not about the agent means the endpoint itself is gone (``endpoint_gone``)."""
    if status in GONE_STATUSES and not is_about_agent(body, agent_id):
        return endpoint_gone(status, endpoint)
    return classify_response(status, body, headers)


def classify_exception(exc: BaseException, phase: Phase) -> Failure:
    """Classify an exception raised while connecting, awaiting headers or reading the body."""
    message = f"{type(exc).__name__}: {exc}"[:_MAX_MESSAGE] if str(exc) else type(exc).__name__
    if isinstance(exc, AttemptError):
        return exc.failure
    if isinstance(exc, StreamDecodeError):
        return Failure(ErrorKind.MALFORMED, Action.RETRY, message)
    if isinstance(exc, httpx.ConnectTimeout):
        return Failure(ErrorKind.CONNECT_TIMEOUT, Action.RETRY, message)
    if isinstance(exc, httpx.TimeoutException):
        kind = ErrorKind.IDLE_TIMEOUT if phase == "body" else ErrorKind.FIRST_BYTE_TIMEOUT
        return Failure(kind, Action.RETRY, message)
    if isinstance(exc, httpx.ConnectError):
        return Failure(ErrorKind.CONNECT, Action.RETRY, message)
    if isinstance(exc, httpx.TransportError | OSError):
        kind = ErrorKind.STREAM_BROKEN if phase == "body" else ErrorKind.CONNECT
        return Failure(kind, Action.RETRY, message)
    raise exc


def timeout_failure(which: Literal["first_byte", "idle", "total"], seconds: float) -> Failure:
    kind = {
        "first_byte": ErrorKind.FIRST_BYTE_TIMEOUT,
        "idle": ErrorKind.IDLE_TIMEOUT,
        "total": ErrorKind.TOTAL_TIMEOUT,
    }[which]
    what = {
        "first_byte": "no first frame",
        "idle": "no frame",
        "total": "simulation not finished",
    }[which]
    return Failure(kind, Action.RETRY, f"{what} within {seconds:g}s ({which} timeout)")


def stream_ended_without_analysis(frames: int) -> Failure:
    return Failure(
        ErrorKind.STREAM_BROKEN,
        Action.RETRY,
        f"stream ended after {frames} frame(s) without an analysis",
    )
