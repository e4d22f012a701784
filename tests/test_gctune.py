"""The cycle collector during a run: threshold raised and heap frozen, both restored after."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from test_engine import ScriptedBackend, Sink, Sleeps, engine_for, make_job

from runner.errors import AttemptError
from runner.gctune import RUN_THRESHOLD, fewer_collections
from runner.jobs import Job

DEFAULTS = (700, 10, 10)


@pytest.fixture(autouse=True)
def python_defaults() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(*DEFAULTS)
    assert gc.get_freeze_count() == 0
    yield
    gc.set_threshold(*saved)
    gc.unfreeze()


def test_inside_the_threshold_is_raised_and_the_heap_frozen_and_after_both_are_undone() -> None:
    with fewer_collections():
        assert gc.get_threshold() == (RUN_THRESHOLD, 10, 10)
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == DEFAULTS
    assert gc.get_freeze_count() == 0


def test_both_are_undone_when_the_block_raises() -> None:
    with pytest.raises(KeyError), fewer_collections():
        raise KeyError("boom")
    assert gc.get_threshold() == DEFAULTS and gc.get_freeze_count() == 0


def test_overlapping_runs_restore_when_the_last_one_ends() -> None:
    first, second = fewer_collections(), fewer_collections()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first run ends while the second still runs
    assert gc.get_threshold()[0] == RUN_THRESHOLD and gc.get_freeze_count() > 0
    second.__exit__(None, None, None)
    assert gc.get_threshold() == DEFAULTS and gc.get_freeze_count() == 0


@pytest.mark.parametrize("mine", [0, 2 * RUN_THRESHOLD])
def test_a_threshold_of_the_users_own_is_left_alone(mine: int) -> None:
    """0 turns automatic collection off; a higher threshold already collects less often."""
    gc.set_threshold(mine, 5, 5)
    with fewer_collections():
        assert gc.get_threshold() == (mine, 5, 5)
    assert gc.get_threshold() == (mine, 5, 5)


def test_a_freeze_of_the_users_own_is_left_alone() -> None:
    gc.freeze()
    with fewer_collections():
        pass
    assert gc.get_freeze_count() > 0  # not thawed (the count drops as frozen objects die)


async def test_an_engine_run_holds_it_while_jobs_run_and_undoes_it() -> None:
    seen: list[int] = []

    def script(job: Job, n: int) -> AttemptError | None:
        seen.append(gc.get_threshold()[0])
        return None

    backend = ScriptedBackend(script)
    counters = await engine_for(backend, Sleeps()).run([make_job(i) for i in range(3)], Sink())
    assert counters.ok == 3
    assert seen == [RUN_THRESHOLD] * 3
    assert gc.get_threshold() == DEFAULTS and gc.get_freeze_count() == 0
