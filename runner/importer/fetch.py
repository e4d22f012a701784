"""Reading production conversations: the agent, the filtered list (cursor pages), and each
conversation in full, with retries like a run's and a resumable cache.

Every call goes through ``runner.http.request_json`` (the error taxonomy of ``runner.errors``);
a 429 or a 5xx is retried after ``runner.engine.backoff_seconds`` (``Retry-After`` when the
server sends one, else exponential with jitter), a 429 ``too_many_concurrent_requests`` with
more patience, as the engine does. Details are fetched with at most ``concurrency`` requests in
flight. A finished conversation never changes, so each one fetched is kept as JSON in the cache
folder and read from there next time: an interrupted import resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from runner.config.models import RetryPolicy
from runner.engine import CAPACITY_WAITS_PER_ATTEMPT, backoff_seconds
from runner.errors import Action, AttemptError, Failure
from runner.http import request_json
from runner.wire.conversations import CONVERSATION_PATH, CONVERSATIONS_PATH, PAGE_SIZE_MAX

AGENT_PATH = "/v1/convai/agents/{agent_id}"


class FetchError(Exception):
    """A request failed for good; ``str(e)`` is one line."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Counters:
    requests: int = 0
    retries: int = 0
    cached: int = 0
    fetched: int = 0


@dataclass
class Fetcher:
    client: httpx.AsyncClient
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    counters: Counters = field(default_factory=Counters)
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """One GET, retried as a run retries; ``FetchError`` once it cannot succeed."""
        return await self.call("GET", path, params=params)

    async def call(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None
    ) -> Any:
        """One API call, retried as a run retries; ``FetchError`` once it cannot succeed."""
        failures = waits = 0
        while True:
            self.counters.requests += 1
            try:
                return await request_json(self.client, method, path, params=params, json_body=body)
            except AttemptError as exc:
                failure: Failure = exc.failure
            if failure.action is Action.WAIT_CAPACITY:
                waits += 1
                attempt, give_up = (
                    waits,
                    waits >= self.retry.max_attempts * (CAPACITY_WAITS_PER_ATTEMPT),
                )
            else:
                failures += 1
                attempt, give_up = failures, failures >= self.retry.max_attempts
            if not failure.retryable or give_up:
                raise FetchError(f"{method} {path}: {failure.message}", failure.status)
            self.counters.retries += 1
            await self.sleep(backoff_seconds(failure, attempt, self.retry, self.rng))

    async def agent(self, agent_id: str) -> dict[str, Any]:
        reply = await self.get(AGENT_PATH.format(agent_id=agent_id))
        return reply if isinstance(reply, dict) else {}

    async def list_ids(
        self,
        params: dict[str, Any],
        limit: int | None,
        on_page: Callable[[int], None] = lambda n: None,
    ) -> list[dict[str, Any]]:
        """Summaries matching ``params``, newest first, every page (up to ``limit``)."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        page_size = min(PAGE_SIZE_MAX, limit) if limit else PAGE_SIZE_MAX
        while True:
            query = {**params, "page_size": page_size}
            if cursor:
                query["cursor"] = cursor
            page = await self.get(CONVERSATIONS_PATH, query)
            items = page.get("conversations") if isinstance(page, dict) else None
            if not isinstance(items, list):
                raise FetchError(f"GET {CONVERSATIONS_PATH}: the reply has no conversations list")
            found += [i for i in items if isinstance(i, dict) and "conversation_id" in i]
            on_page(len(found))
            if limit is not None and len(found) >= limit:
                return found[:limit]
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                return found

    async def details(
        self,
        ids: list[str],
        cache: Cache | None,
        concurrency: int,
        on_done: Callable[[int], None] = lambda n: None,
    ) -> dict[str, dict[str, Any] | FetchError]:
        """Each conversation in full (or why not), at most ``concurrency`` in flight."""
        out: dict[str, dict[str, Any] | FetchError] = {}
        limiter = anyio.CapacityLimiter(max(1, concurrency))

        async def one(conversation_id: str) -> None:
            cached = cache.get(conversation_id) if cache is not None else None
            if cached is not None:
                self.counters.cached += 1
                out[conversation_id] = cached
            else:
                async with limiter:
                    path = CONVERSATION_PATH.format(conversation_id=conversation_id)
                    try:
                        reply = await self.get(path)
                    except FetchError as exc:
                        out[conversation_id] = exc
                        on_done(len(out))
                        return
                self.counters.fetched += 1
                out[conversation_id] = reply
                if cache is not None and isinstance(reply, dict) and reply.get("status") == "done":
                    cache.put(conversation_id, reply)
            on_done(len(out))

        async with anyio.create_task_group() as tg:
            for conversation_id in ids:
                tg.start_soon(one, conversation_id)
        return out


class Cache:
    """One JSON file per finished conversation; written atomically (a crash leaves none)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, conversation_id: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in conversation_id)
        return self.folder / f"{safe}.json"

    def get(self, conversation_id: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._path(conversation_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def put(self, conversation_id: str, reply: dict[str, Any]) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(reply, handle)
            os.replace(tmp, self._path(conversation_id))
        except OSError:
            pass  # a cache that cannot be written only costs a refetch
