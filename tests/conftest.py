"""Shared fixtures: the local API as a real server in a subprocess on a free loopback port.

- ``local_api``: one server for the whole session, default options at a fast time scale. Its
  counters are shared: a test that asserts on stats should use ``local_api_factory`` (or
  compare before/after snapshots).
- ``local_api_factory(args, **kwargs)``: a fresh server with custom ``serve`` options (and
  e.g. ``api_key=``), stopped when the test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from runner.localapi.server import LocalAPI, start_local_api

FAST_ARGS: tuple[str, ...] = ("--time-scale", "0.001")
"""Options of the shared server: a simulated minute passes in 60 ms."""

LocalAPIFactory = Callable[..., LocalAPI]


@pytest.fixture(scope="session")
def local_api() -> Iterator[LocalAPI]:
    """The session's shared local API (default options, ``--time-scale 0.001``)."""
    api = start_local_api(FAST_ARGS)
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def local_api_factory() -> Iterator[LocalAPIFactory]:
    """Start local APIs with custom options: ``local_api_factory(["--seed", "1"])``.

    Keyword arguments go to ``start_local_api`` (``api_key=...``, ``timeout=...``). Every
    server started is stopped at the end of the test.
    """
    started: list[LocalAPI] = []

    def start(args: Sequence[str] = FAST_ARGS, **kwargs: Any) -> LocalAPI:
        api = start_local_api(args, **kwargs)
        started.append(api)
        return api

    try:
        yield start
    finally:
        for api in started:
            api.stop()
