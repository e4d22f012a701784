"""The error classification table, case by case."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from runner.config import RetryPolicy
from runner.engine import MAX_RETRY_AFTER, backoff_seconds
from runner.errors import (
    Action,
    ErrorKind,
    Failure,
    classify_exception,
    classify_response,
    parse_retry_after,
)
from runner.stream import StreamDecodeError


def body(status: str, message: str = "m") -> bytes:
    return json.dumps({"detail": {"status": status, "message": message}}).encode()


@pytest.mark.parametrize(
    ("status", "payload", "kind", "action"),
    [
        (401, body("invalid_api_key"), ErrorKind.AUTH, Action.ABORT_RUN),
        (401, body("needs_authorization"), ErrorKind.AUTH, Action.ABORT_RUN),
        (403, b"forbidden", ErrorKind.AUTH, Action.ABORT_RUN),
        (404, body("agent_not_found"), ErrorKind.NOT_FOUND, Action.FAIL_JOB),
        (
            422,
            b'{"detail":[{"type":"missing","loc":["body","x"],"msg":"Field required"}]}',
            ErrorKind.INVALID_REQUEST,
            Action.FAIL_JOB,
        ),
        (400, b"bad", ErrorKind.INVALID_REQUEST, Action.FAIL_JOB),
        (408, b"", ErrorKind.REQUEST_TIMEOUT, Action.RETRY),
        (
            429,
            body("too_many_concurrent_requests"),
            ErrorKind.CONCURRENCY_LIMIT,
            Action.WAIT_CAPACITY,
        ),
        (429, body("system_busy"), ErrorKind.SYSTEM_BUSY, Action.RETRY),
        (429, b"slow down", ErrorKind.SYSTEM_BUSY, Action.RETRY),
        (500, body("internal_error"), ErrorKind.SERVER_ERROR, Action.RETRY),
        (502, b"<html>bad gateway</html>", ErrorKind.SERVER_ERROR, Action.RETRY),
        (503, b"", ErrorKind.SERVER_ERROR, Action.RETRY),
    ],
)
def test_classify_response(status: int, payload: bytes, kind: ErrorKind, action: Action) -> None:
    failure = classify_response(status, payload, {})
    assert failure.kind is kind
    assert failure.action is action
    assert failure.status == status
    assert str(status) in failure.message
    assert failure.retryable == (action in (Action.RETRY, Action.WAIT_CAPACITY))


def test_error_message_names_the_status_word_and_the_422_field() -> None:
    f = classify_response(429, body("system_busy", "retry later with exponential backoff"))
    assert "system_busy" in f.message and "retry later" in f.message
    f = classify_response(
        422,
        b'{"detail":[{"type":"missing","loc":["body","simulation_specification"],'
        b'"msg":"Field required","input":{}}]}',
    )
    assert "body.simulation_specification: Field required" in f.message


@pytest.mark.parametrize(
    ("exc", "phase", "kind"),
    [
        (httpx.ConnectError("refused"), "connect", ErrorKind.CONNECT),
        (httpx.ConnectTimeout("slow"), "connect", ErrorKind.CONNECT_TIMEOUT),
        (httpx.ReadTimeout("quiet"), "headers", ErrorKind.FIRST_BYTE_TIMEOUT),
        (httpx.ReadTimeout("quiet"), "body", ErrorKind.IDLE_TIMEOUT),
        (httpx.RemoteProtocolError("closed"), "connect", ErrorKind.CONNECT),
        (httpx.RemoteProtocolError("closed"), "body", ErrorKind.STREAM_BROKEN),
        (httpx.ReadError("reset"), "body", ErrorKind.STREAM_BROKEN),
        (ConnectionResetError("reset"), "headers", ErrorKind.CONNECT),
        (StreamDecodeError("not JSON", b"xx"), "body", ErrorKind.MALFORMED),
    ],
)
def test_classify_exception(exc: BaseException, phase: str, kind: ErrorKind) -> None:
    failure = classify_exception(exc, phase)  # type: ignore[arg-type]
    assert failure.kind is kind
    assert failure.action is Action.RETRY


def test_classify_exception_reraises_what_it_does_not_know() -> None:
    with pytest.raises(ZeroDivisionError):
        classify_exception(ZeroDivisionError("bug"), "body")


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 1.5 ", now) == 1.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    assert parse_retry_after("-3", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("", now) is None
    f = classify_response(503, b"", {"retry-after": "12"})
    assert f.retry_after == 12.0


def test_backoff_honours_retry_after_once_and_otherwise_grows_with_jitter() -> None:
    policy = RetryPolicy(max_attempts=5, backoff_base=1.0, backoff_cap=10.0, jitter=0.5)
    rng = random.Random(1)
    with_header = Failure(ErrorKind.SYSTEM_BUSY, Action.RETRY, "x", 429, retry_after=3.0)
    # Retry-After is the wait itself: not added to the exponential backoff, whatever the attempt
    assert backoff_seconds(with_header, 4, policy, rng) == 3.0
    huge = Failure(ErrorKind.SYSTEM_BUSY, Action.RETRY, "x", 429, retry_after=1e9)
    assert backoff_seconds(huge, 1, policy, rng) == MAX_RETRY_AFTER
    plain = Failure(ErrorKind.SERVER_ERROR, Action.RETRY, "x", 500)
    waits = [backoff_seconds(plain, n, policy, rng) for n in range(1, 7)]
    for n, wait in enumerate(waits, start=1):
        base = min(1.0 * 2 ** (n - 1), 10.0)
        assert base <= wait <= base + 0.5
    assert waits[-1] >= 10.0
