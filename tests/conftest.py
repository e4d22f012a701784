"""Shared fixtures: the local API as a real server in a subprocess on a free loopback port.

- ``local_api``: one server for the whole session, default options at a fast time scale. Its
  counters are shared: a test that asserts on stats should use ``local_api_factory`` (or
  compare before/after snapshots).
- ``local_api_factory(args, **kwargs)``: a fresh server with custom ``serve`` options (and
  e.g. ``api_key=``), stopped when the test ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from runner.localapi.server import LocalAPI, start_local_api

KEEP_HOME = "RUNNER_TESTS_KEEP_HOME"
"""Set to 1 by a test that runs pytest under a ``HOME`` of its own and checks what lands there."""
REAL_HOME = "RUNNER_TESTS_REAL_HOME"
"""The user's home, for a test that checks nothing was written there."""
HOME_VARS = (
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "IPYTHONDIR",
    "JUPYTER_CONFIG_DIR",
    "JUPYTER_DATA_DIR",
    "MPLCONFIGDIR",
)

_HOME_KEY = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """Every test and every child it starts runs with ``HOME`` in a temporary directory:
    Jupyter, IPython, matplotlib, Chromium and Ray write caches and tokens under ``HOME``,
    and nothing of the suite's may land outside the checkout and temp dirs."""
    if os.environ.get(KEEP_HOME) == "1":
        return
    home = tempfile.mkdtemp(prefix="runner-tests-home-")
    os.environ.setdefault(REAL_HOME, os.path.expanduser("~"))
    os.environ["HOME"] = home
    for name in HOME_VARS:
        os.environ.pop(name, None)
    config.stash[_HOME_KEY] = home


def pytest_unconfigure(config: pytest.Config) -> None:
    home = config.stash.get(_HOME_KEY, None)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)


RAY_FILES = frozenset({"test_ray.py", "test_ray_cluster.py", "test_no_egress.py"})
"""Test files that start Ray clusters (test_no_egress runs Ray tests under strace)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``make test`` (pytest-xdist, ``-n auto --dist loadgroup``) each test file runs on
    one worker, so its module and session fixtures start once; the files that start Ray
    clusters share one worker and run one after another (two clusters starting at once on a
    two-core machine time out). Without ``-n`` the marks change nothing."""
    for item in items:
        name = item.path.name
        item.add_marker(pytest.mark.xdist_group("ray" if name in RAY_FILES else name))


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
