"""One statistics core: the viewer's figures and the report's come out of the same functions of
``runner.analysis``, on a finished run and on a run in progress read part by part, and the
viewer computes no statistic of its own."""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from pkgutil import iter_modules
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from view_helpers import PartFeeder

from bench.view_data import Shape, write_synthetic_run
from runner import analysis
from runner.report.pages import build_report
from runner.store import load_run
from runner.view import queries, source

SHARED = (
    "rates_from",
    "case_trials",
    "pass_k_from",
    "flakiness_from",
    "latency_percentiles",
    "histograms",
)
"""The functions both the report and the viewer must compute their figures with."""

RECORDED = (*SHARED, "judged_counts", "combine_counts", "errored_counts")

Calls = dict[str, list[Any]]


@pytest.fixture
def record(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Calls]]:
    """Every call of the core's functions (under every name they are imported as in
    ``runner.analysis``), with what it returned; ``record()`` starts a new log."""
    log: list[Calls] = [defaultdict(list)]
    modules = [m for n, m in sys.modules.items() if n.split(".")[:2] == ["runner", "analysis"]]
    for name in RECORDED:
        real = getattr(analysis, name)

        def spy(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            out = _real(*args, **kwargs)
            log[-1][_name].append(out)
            return out

        for module in modules:
            if getattr(module, name, None) is real:
                monkeypatch.setattr(module, name, spy)

    def fresh() -> Calls:
        log.append(defaultdict(list))
        return log[-1]

    yield fresh


def one_of(frames: list[Any], want: pl.DataFrame) -> None:
    """``want`` is one of the frames a function returned."""
    for frame in frames:
        if isinstance(frame, pl.DataFrame) and frame.columns == want.columns:
            try:
                assert_frame_equal(frame, want)
            except AssertionError:
                continue
            return
    raise AssertionError(f"no call returned this frame:\n{want}")


def same_functions(report: Calls, viewer: Calls, figs: queries.RunFigures) -> None:
    for name in SHARED:
        assert report[name], f"the report does not compute with analysis.{name}"
        assert viewer[name], f"the viewer does not compute with analysis.{name}"
    one_of(report["rates_from"], figs.by_criterion)
    one_of(report["rates_from"], figs.by_agent)
    one_of(report["rates_from"], figs.cells)
    one_of(report["flakiness_from"], figs.flakiness)
    jobs_metrics = figs.latency["metric"].to_list()
    table = report["latency_percentiles"][0]  # the run's table (then per agent)
    assert_frame_equal(table.filter(pl.col("metric").is_in(jobs_metrics)), figs.latency)


def test_a_finished_run(tmp_path: Path, record: Callable[[], Calls]) -> None:
    run_dir = write_synthetic_run(tmp_path / "done", Shape(agents=2, scenarios=3, repeats=4))
    report = record()
    build_report(load_run(run_dir))
    viewer = record()
    tables = source.scan_tables(source.run_state("done", run_dir))
    figs = queries.run_figures(tables)
    queries.run_charts(tables, figs.latency)
    same_functions(report, viewer, figs)
    assert viewer["judged_counts"] and viewer["errored_counts"]


def test_a_run_in_progress(tmp_path: Path, record: Callable[[], Calls]) -> None:
    done = write_synthetic_run(tmp_path / "done", Shape(agents=2, scenarios=3, repeats=5))
    feeder = PartFeeder(done, tmp_path / "results" / "live", per_part=7)  # cases span parts
    try:
        viewer = record()
        cache = source.PartCache(analysis.judged_counts, analysis.combine_counts)
        for _ in range(6):  # a refresh after each part: each read once, digested, summed
            feeder.add_part()
            state = source.run_state("live", feeder.run_dir)
            held = cache.live(state)
        assert state.running and not held.repeats.keys
        figs = queries.run_figures(held.quick_tables(), analysis.combine_counts(held.digests))
        queries.run_charts(held.quick_tables(), figs.latency)
        assert len(viewer["judged_counts"]) == 6 and viewer["combine_counts"]
        assert figs.totals.jobs == 42 < 60 and len(figs.agents) == 2  # part of the sweep
        report = record()
        build_report(load_run(feeder.run_dir))
        same_functions(report, viewer, figs)
    finally:
        feeder.release()


def test_the_viewer_computes_no_statistic_of_its_own() -> None:
    """Percentiles, intervals, estimators and bins live in ``runner.analysis`` only."""
    modules = [
        importlib.import_module(f"runner.view.queries.{m.name}")
        for m in iter_modules(queries.__path__)
    ]
    for module in (queries, *modules, source):
        code = inspect.getsource(module)
        found = re.findall(r"\.quantile\(|\.sqrt\(|math\.comb|Z95|def _?bin_of", code)
        assert not found, f"{module.__name__} computes {found}"
        assert "def wilson" not in code and "def pass_at_k" not in code
    # every page kind of the queries' layers contract was read (a new module is checked too)
    names = {m.__name__.rsplit(".", 1)[1] for m in modules}
    assert names == {"runs", "figures", "cases", "jobs", "compare", "charts", "sequential"}
