"""The baseline a user would write: a plain httpx stream per simulation, ``asyncio.gather``
under a semaphore, every line decoded with ``json.loads`` (twice: the frames are JSON strings
holding JSON). It keeps the decoded frames, as a user collecting results would, and counts a
failed simulation (e.g. a reused keep-alive connection the server had just closed) instead of
retrying it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx

PATH = "/v1/convai/agents/{agent_id}/simulate-conversation/stream"


def _nothing() -> None:
    pass


async def run_naive(
    base_url: str,
    agent_id: str,
    body: dict[str, Any],
    jobs: int,
    concurrency: int,
    on_done: Callable[[], None] = _nothing,
) -> list[list[Any] | None]:
    """``jobs`` simulations, ``concurrency`` at a time; the frames of each (None: failed).
    ``on_done`` is called as each simulation ends (the benchmark stamps its CPU clock)."""
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:

        async def simulate() -> list[Any] | None:
            async with semaphore:
                url = PATH.format(agent_id=agent_id)
                try:
                    async with client.stream("POST", url, json=body) as response:
                        response.raise_for_status()
                        frames = []
                        async for line in response.aiter_lines():
                            if line.strip():
                                frame = json.loads(line)
                                frames.append(
                                    json.loads(frame) if isinstance(frame, str) else frame
                                )
                        return frames
                except httpx.HTTPError:
                    return None
                finally:
                    on_done()

        return await asyncio.gather(*(simulate() for _ in range(jobs)))


async def run_raw_aiohttp(
    base_url: str,
    agent_id: str,
    body: dict[str, Any],
    jobs: int,
    concurrency: int,
    on_done: Callable[[], None] = _nothing,
) -> list[list[Any] | None]:
    """The floor, not a baseline: aiohttp's stream read line by line with ``json.loads``, no
    httpx, no timing, no retries, nothing kept but the frames. What any client pays here."""
    import aiohttp

    semaphore = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url, connector=connector) as session:

        async def simulate() -> list[Any] | None:
            async with semaphore:
                try:
                    async with session.post(PATH.format(agent_id=agent_id), json=body) as reply:
                        reply.raise_for_status()
                        frames = []
                        async for line in reply.content:
                            if line.strip():
                                frame = json.loads(line)
                                frames.append(
                                    json.loads(frame) if isinstance(frame, str) else frame
                                )
                        return frames
                except aiohttp.ClientError:
                    return None
                finally:
                    on_done()

        return await asyncio.gather(*(simulate() for _ in range(jobs)))
