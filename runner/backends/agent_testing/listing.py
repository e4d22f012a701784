"""Reading the vendor's lists: the tests a prefix owns, a run's invocations, an invocation's price.

Every page goes through the shared httpx client and the error taxonomy; a reply of the wrong
shape is a ``malformed`` failed attempt, retried like any other.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

import httpx
from pydantic import ValidationError

from runner.backends.agent_testing.keys import InvocationNames
from runner.backends.agent_testing.mapping import parse_test_hash
from runner.errors import Action, AttemptError, ErrorKind, Failure
from runner.http import request_json
from runner.wire.agent_testing import (
    INVOCATIONS_PATH,
    TESTS_PATH,
    InvocationsPage,
    InvocationSummary,
    TestsPage,
    TestSummary,
)
from runner.wire.simulate import WireModel

_PAGE_SIZE = 100
_PRICE_PAGES = 3
"""Pages of the invocations list searched for an invocation's ``total_price``."""

M = TypeVar("M", bound=WireModel)


class Call(Protocol):
    """The backend's counted request: ``kind`` (create, list, run, poll, cancel) is tallied."""

    async def __call__(self, kind: str, method: str, path: str, **kwargs: Any) -> Any: ...


def parse_reply(model: type[M], data: Any, what: str) -> M:
    """``data`` as ``model``, else a retried ``malformed`` attempt naming ``what``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message = f"{what}: unexpected reply: {exc}".replace("\n", " ")[:300]
        raise AttemptError(Failure(ErrorKind.MALFORMED, Action.RETRY, message)) from exc


async def list_tests(
    client: httpx.AsyncClient, prefix: str, folder_id: str | None
) -> list[TestSummary]:
    """Every test whose name this prefix owns (all pages)."""
    found: list[TestSummary] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"search": prefix, "page_size": _PAGE_SIZE}
        if cursor:
            params["cursor"] = cursor
        if folder_id:
            params["parent_folder_id"] = folder_id
        page = parse_reply(
            TestsPage, await request_json(client, "GET", TESTS_PATH, params=params), "list"
        )
        found += [t for t in page.tests if parse_test_hash(t.name, prefix) is not None]
        if not page.has_more or not page.next_cursor or page.next_cursor == cursor:
            return found
        cursor = page.next_cursor


async def list_invocations(
    call: Call,
    names: InvocationNames,
    agent_id: str,
    search: str,
    test_id: str | None = None,
) -> list[InvocationSummary]:
    """This run's not-cancelled invocations named so, newest first (every page)."""
    found: list[InvocationSummary] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"agent_id": agent_id, "search": search, "page_size": _PAGE_SIZE}
        if test_id:
            params["test_id"] = test_id
        if cursor:
            params["cursor"] = cursor
        reply = await call("list", "GET", INVOCATIONS_PATH, params=params)
        page = parse_reply(InvocationsPage, reply, "list test invocations")
        found += [
            item for item in page.results if names.is_this_runs(item.name) and not item.cancelled
        ]
        if not page.has_more or not page.next_cursor or page.next_cursor == cursor:
            return found
        cursor = page.next_cursor


async def total_price(call: Call, agent_id: str, invocation_id: str) -> float | None:
    """The invocation's ``total_price`` from its summary in the invocations list (newest
    first; the first pages only). Best effort: the price is also in each run's
    ``charging``, so a failed lookup leaves this figure null and fails no job."""
    params: dict[str, Any] = {"agent_id": agent_id, "page_size": _PAGE_SIZE}
    for _ in range(_PRICE_PAGES):
        try:
            reply = await call("list", "GET", INVOCATIONS_PATH, params=params)
            page = parse_reply(InvocationsPage, reply, "list test invocations")
        except AttemptError:
            return None
        for item in page.results:
            if item.id == invocation_id:
                return item.total_price
        if not page.has_more or not page.next_cursor:
            return None
        params["cursor"] = page.next_cursor
    return None
