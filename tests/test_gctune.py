"""The cycle collector's threshold during a run: raised, restored, shared by overlapping runs."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_run_e2e import sweep_config

from runner.config import load_config
from runner.engine import Engine
from runner.gctune import RUN_THRESHOLD, fewer_collections
from runner.localapi.server import LocalAPI
from runner.sweep import run_sweep


@pytest.fixture(autouse=True)
def default_thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


def test_the_threshold_is_raised_inside_and_restored_after() -> None:
    with fewer_collections():
        assert gc.get_threshold() == (RUN_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_it_is_restored_when_the_block_raises() -> None:
    with pytest.raises(KeyError), fewer_collections():
        raise KeyError("boom")
    assert gc.get_threshold() == (700, 10, 10)


def test_overlapping_runs_restore_when_the_last_one_ends() -> None:
    outer, inner = fewer_collections(), fewer_collections()
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)  # the first run ends while the second still runs
    assert gc.get_threshold()[0] == RUN_THRESHOLD
    inner.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.parametrize("mine", [0, 2 * RUN_THRESHOLD])
def test_a_setting_of_the_users_own_is_left_alone(mine: int) -> None:
    """0 turns automatic collection off; a higher threshold already collects less often."""
    gc.set_threshold(mine, 5, 5)
    with fewer_collections():
        assert gc.get_threshold() == (mine, 5, 5)
    assert gc.get_threshold() == (mine, 5, 5)


async def test_a_run_raises_it_while_jobs_run_and_restores_it(
    tmp_path: Path, local_api: LocalAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    engine_run = Engine.run

    async def run(self: Engine, *args: Any, **kwargs: Any) -> Any:
        seen.append(gc.get_threshold()[0])
        return await engine_run(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "run", run)
    monkeypatch.setenv("E2E_TEST_KEY", "test-key")
    config = sweep_config(tmp_path, local_api.base_url, **{"run.repeats": 1, "matrix": {}})
    report = await run_sweep(load_config(config), results_root=tmp_path / "results", progress=False)
    assert report.counters.ok == 6
    assert seen == [RUN_THRESHOLD]
    assert gc.get_threshold() == (700, 10, 10)
