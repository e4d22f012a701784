"""The viewer's queries and sources, on runs made against the local API and on synthetic and
hand-written run directories (no browser here: tests/test_view_browser.py drives one)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal
from sweep_data import ORDER_STATUS_CRITERION, SUPPORT_SCENARIOS
from view_helpers import PartFeeder, job_row, snapshot, write_run

import runner
from bench.view_data import Shape, write_synthetic_run
from runner import analysis
from runner.localapi.server import LocalAPI, local_api_process
from runner.report import charts
from runner.store import Repeats
from runner.view import queries, source
from runner.view.queries import CaseQuery

# ---------------------------------------------------------------------------- fixtures


def sweep(path: Path, agents: list[dict[str, str]]) -> Path:
    config: dict[str, Any] = {
        "target": {"base_url": "local", "timeouts": {"connect": 5, "first_byte": 10, "idle": 5}},
        "run": {
            "concurrency": 6,
            "new_turns_limit": 8,
            "repeats": 3,
            "seed": 3,
            "retry": {"max_attempts": 2, "backoff_base": 0.01, "backoff_cap": 0.02, "jitter": 0.0},
        },
        "agents": agents,
        "criteria": [dict(ORDER_STATUS_CRITERION)],
        "scenarios": [dict(s) for s in SUPPORT_SCENARIOS],
        "matrix": {"language": ["en", "es"]},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def server() -> Iterator[LocalAPI]:
    with local_api_process(["--time-scale", "0.002", "--seed", "7"]) as api:
        yield api


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, server: LocalAPI) -> Path:
    """``base``: two agents and one that does not exist (its jobs end in a 404 error);
    ``cand``: the weaker agent alone; plus a synthetic run and a non-run folder."""
    root = tmp_path_factory.mktemp("results")
    configs = tmp_path_factory.mktemp("configs")
    base = sweep(
        configs / "base.yaml",
        [
            {"id": "agent_support", "label": "support"},
            {"id": "agent_support_lite", "label": "lite"},
            {"id": "agent_does_not_exist", "label": "ghost"},
        ],
    )
    cand = sweep(configs / "cand.yaml", [{"id": "agent_support_lite", "label": "lite"}])
    for name, config in (("base", base), ("cand", cand)):
        runner.run(
            config,
            name=name,
            results_root=root,
            progress=False,
            base_url=server.base_url,
            preflight=False,  # its ghost agent is meant to end in errors
        )
    write_synthetic_run(root / "synthetic", Shape(agents=2, scenarios=3, repeats=4, error_every=9))
    (root / "bench").mkdir()
    (root / "bench" / "latest.json").write_text("{}")
    return root


def tables_of(root: Path, name: str) -> dict[str, pl.LazyFrame]:
    path = source.find_run(root, name)
    assert path is not None
    return source.scan_tables(source.run_state(name, path))


def keys(frame: pl.DataFrame | pl.LazyFrame) -> set[str]:
    data = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    return set(data["job_key"].to_list())


def all_pages(tables: dict[str, pl.LazyFrame], query: CaseQuery, flaky: pl.DataFrame) -> list[str]:
    first = queries.filter_cases(tables, query, flaky)
    out = [r["job_key"] for r in first.rows]
    for page in range(2, first.pages + 1):
        later = queries.filter_cases(tables, replace(query, page=page), flaky)
        out += [r["job_key"] for r in later.rows]
    return out


# ---------------------------------------------------------------------- the directory


def test_runs_are_found_by_listing_and_a_name_never_becomes_a_path(
    results: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    write_run(outside / "secret", {"jobs": [job_row("k1")]})
    link = results / "linked"
    os.symlink(outside / "secret", link)
    try:
        assert list(source.list_runs(results)) == ["base", "cand", "synthetic"]
        for name in ("..", "../base", "/etc", str(results / "base"), "base/", "bench", "linked"):
            assert source.find_run(results, name) is None, name
        assert source.find_run(results, "base") == results / "base"
    finally:
        link.unlink()
    assert source.list_runs(tmp_path / "missing") == {}


def test_a_finished_run_reads_its_final_tables(results: Path) -> None:
    state = source.run_state("base", results / "base")
    assert state.status == "finished" and state.uses_final_tables and not state.running
    assert state.parts >= 1
    loaded = runner.load_run(results / "base")
    tables = source.scan_tables(state)
    assert tables["jobs"].collect().sort("job_key").equals(loaded.jobs.sort("job_key"))


def test_a_running_run_reads_committed_parts_and_its_version_moves(tmp_path: Path) -> None:
    done = write_synthetic_run(tmp_path / "done", Shape(agents=1, scenarios=2, repeats=5))
    feeder = PartFeeder(done, tmp_path / "results" / "live", per_part=6)
    try:
        state = source.run_state("live", feeder.run_dir)
        assert state.status == "running" and state.running and state.parts == 0
        assert queries.run_totals(source.scan_tables(state)).jobs == 0
        feeder.add_part()
        feeder.add_part(commit=False)  # children written, no jobs part: not committed
        (feeder.run_dir / "parts" / "jobs" / ".tmp-live-000009.parquet").write_bytes(b"half")
        later = source.run_state("live", feeder.run_dir)
        assert later.version != state.version and later.parts == 1
        tables = source.scan_tables(later)
        assert queries.run_totals(tables).jobs == 6
        assert keys(tables["messages"]) == keys(tables["jobs"].filter(pl.col("status") == "ok"))
        progress = queries.run_progress(later.manifest, 6)
        assert (progress.done, progress.planned) == (6, 20)
    finally:
        feeder.release()
    stopped = source.run_state("live", feeder.run_dir)
    assert stopped.status == "incomplete"  # not finalized, nobody holds the lock: crashed


def live_figures(held: source.LiveRun) -> queries.RunFigures:
    return queries.run_figures(held.quick_tables(), analysis.combine_counts(held.digests))


def same_figures(got: queries.RunFigures, want: queries.RunFigures) -> None:
    sums = {"llm_price": None, "cost_usd": None}
    assert replace(got.totals, **sums) == replace(want.totals, **sums)
    for name in sums:  # summed in another order
        assert getattr(got.totals, name) == pytest.approx(getattr(want.totals, name))
    for name in ("by_criterion", "by_agent", "cells", "errors", "flakiness", "latency"):
        assert_frame_equal(getattr(got, name), getattr(want, name), check_dtypes=False)
    cols = want.flaky_cases.columns
    assert_frame_equal(got.flaky_cases.sort(cols), want.flaky_cases.sort(cols))
    assert got.ks == want.ks
    assert [r["criterion_id"] for r in got.repeat_rates] == [
        r["criterion_id"] for r in want.repeat_rates
    ]
    for g, w in zip(got.repeat_rates, want.repeat_rates, strict=True):
        for k in got.ks:  # the same means, summed in another order
            assert g["rates"][k] == pytest.approx(w["rates"][k])
    assert (got.agents, got.scenarios, got.criteria) == (want.agents, want.scenarios, want.criteria)
    assert got.matrix == want.matrix and got.error_kinds == want.error_kinds


def test_a_run_read_part_by_part_agrees_with_a_full_scan_and_reads_each_part_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shape = Shape(agents=2, scenarios=3, languages=2, repeats=5, error_every=7)
    done = write_synthetic_run(tmp_path / "done", shape)
    feeder = PartFeeder(done, tmp_path / "results" / "live", per_part=7)  # cases span parts
    read: list[str] = []
    real_read = source._read_held

    def counting(paths: list[Path], table: str, axes: Any) -> Any:
        read.extend(f"{table}/{p.name}" for p in paths)
        return real_read(paths, table, axes)

    monkeypatch.setattr(source, "_read_held", counting)
    cache = source.PartCache(analysis.judged_counts, analysis.combine_counts)
    try:
        for _ in range(4):
            feeder.add_part()
        state = source.run_state("live", feeder.run_dir)
        held = cache.live(state)
        assert held.repeats == Repeats(keys=False, ok_keys=False)
        full = source.scan_tables(state)
        same_figures(live_figures(held), queries.run_figures(full))
        # a job page reads the parts holding the job and its case, and says what a full scan says
        for key in keys(full["jobs"]):
            found = held.job_tables(key, queries.same_case)
            assert found is not None
            own, case = found
            assert queries.job_detail(own, key, case_tables=case) == queries.job_detail(full, key)
        assert held.job_tables("nope", queries.same_case) is None
        # the case list from memory, its page's outcomes from the parts that hold them
        figs = live_figures(held)
        for params in (
            {},
            {"criterion": "politeness", "result": "failure"},
            {"q": "refund"},
            {"flaky": "1", "sort": "failed", "desc": "1"},
            {"status": "error"},
        ):
            query = CaseQuery.from_params(params)
            got = queries.filter_cases(
                held.quick_tables(), query, figs.flaky_cases, page_tables=held.holding
            )
            assert got == queries.filter_cases(full, query, figs.flaky_cases)
        # a refresh reads only the part that landed since
        assert len(read) == 3 * 4
        read.clear()
        feeder.add_part()
        later = cache.live(source.run_state("live", feeder.run_dir))
        assert sorted(read) == [
            f"{t}/live-000005.parquet" for t in ("attempts", "criteria", "jobs")
        ]
        full = source.scan_tables(source.run_state("live", feeder.run_dir))
        same_figures(live_figures(later), queries.run_figures(full))
    finally:
        feeder.release()


def test_a_damaged_part_is_left_out_and_repeated_keys_are_noticed(tmp_path: Path) -> None:
    done = write_synthetic_run(tmp_path / "done", Shape(agents=1, scenarios=2, repeats=3))
    feeder = PartFeeder(done, tmp_path / "results" / "live", per_part=2)
    cache = source.PartCache(analysis.judged_counts, analysis.combine_counts)
    try:
        feeder.add_part()
        feeder.add_part()
        damaged = feeder.run_dir / "parts" / "messages" / "live-000002.parquet"
        damaged.write_bytes(b"not parquet")
        held = cache.live(source.run_state("live", feeder.run_dir))
        assert len(held.paths["jobs"]) == 2
        readable = held.vet("messages", held.paths["messages"])  # when first scanned
        assert [p.name for p in readable] == ["live-000001.parquet"]
        assert keys(held.scans()["messages"]) <= keys(held.scans()["jobs"])
        # a later session ran a job of the first part again: its key is in two parts
        first = pl.read_parquet(feeder.run_dir / "parts" / "jobs" / "live-000001.parquet")
        again = feeder.run_dir / "parts" / "jobs" / "again-000001.parquet"
        first.head(1).with_columns(pl.lit("error").alias("status")).write_parquet(again)
        for table in ("messages", "criteria", "data_collection", "attempts", "buckets"):
            name = feeder.run_dir / "parts" / table / "live-000001.parquet"
            pl.read_parquet(name).head(0).write_parquet(name.with_name(again.name))
        held = cache.live(source.run_state("live", feeder.run_dir))
        assert held.repeats == Repeats(keys=True, ok_keys=False)
        key = first["job_key"][0]
        found = held.job_tables(key, queries.same_case)
        assert found is not None
        full = source.scan_tables(source.run_state("live", feeder.run_dir))
        assert queries.job_detail(found[0], key, case_tables=found[1]) == queries.job_detail(
            full, key
        )
    finally:
        feeder.release()


def test_runs_listing_rows(results: Path) -> None:
    tables = tables_of(results, "base")
    state = source.run_state("base", results / "base")
    totals = queries.run_totals(tables)
    jobs = tables["jobs"].collect()
    crit = tables["criteria"].collect()
    assert totals.jobs == jobs.height == 54
    assert totals.errors == 18 and totals.ok == 36  # every ghost job: not_found
    s, f = (crit["result"] == "success").sum(), (crit["result"] == "failure").sum()
    assert totals.pass_rate == pytest.approx(s / (s + f))
    assert totals.llm_price == pytest.approx(jobs["llm_price"].sum())
    assert totals.credits is None
    row = queries.run_row("base", state.status, state.manifest, totals)
    assert (row.backend, row.status, row.sessions) == ("stream", "finished", 1)
    assert state.manifest is not None and row.started == state.manifest.created_at.isoformat()


# ---------------------------------------------------------------------------- a run


def test_run_figures_agree_with_the_analysis(results: Path) -> None:
    tables = tables_of(results, "base")
    figs = queries.run_figures(tables)
    jobs, crit = tables["jobs"].collect(), tables["criteria"].collect()
    assert_frame_equal(figs.by_criterion, analysis.pass_rates(crit, jobs))
    assert_frame_equal(figs.by_agent, analysis.pass_rates(crit, jobs, by=["agent_label"]))
    assert figs.cells.equals(
        analysis.pass_rates(crit, jobs, by=["agent_label", "scenario_id", "criterion_id"])
    )
    flaky = analysis.flakiness(crit, jobs)
    assert figs.flakiness.select("criterion_id", "cases", "flaky").equals(
        flaky.select("criterion_id", "cases", "flaky")
    )
    expected = analysis.flaky_cases(crit, jobs)
    assert figs.flaky_cases.height == expected.height
    assert figs.ks == [1, 3]
    want = analysis.repeat_pass_rates(crit, jobs, ks=(1, 3)).filter(
        pl.col("criterion_id").is_not_null()
    )
    for row in want.iter_rows(named=True):
        got = next(r for r in figs.repeat_rates if r["criterion_id"] == row["criterion_id"])
        cases, at, hat = got["rates"][row["k"]]
        assert cases == row["cases"]
        assert at == pytest.approx(row["pass_at_k"]) and hat == pytest.approx(row["pass_hat_k"])
    assert_frame_equal(figs.latency, analysis.latency_percentiles(jobs))
    assert figs.errors.to_dicts() == [{"error_kind": "not_found", "jobs": 18}]
    assert figs.agents == ["ghost", "lite", "support"]
    assert figs.matrix == {"language": ["en", "es"]}
    assert figs.scenarios == sorted(s["id"] for s in SUPPORT_SCENARIOS)


def test_the_run_charts_bin_as_the_report_does_and_each_bar_opens_its_jobs(
    results: Path,
) -> None:
    tables = tables_of(results, "synthetic")
    figs = queries.run_figures(tables)
    drawn = queries.run_charts(tables, figs.latency)
    ok = tables["jobs"].filter(pl.col("status") == "ok").collect()
    assert [h.metric for h in drawn.histograms] == list(queries.LATENCY_SORTS)
    for h in drawn.histograms:
        values = ok[f"{h.metric}_secs"].drop_nulls().to_list()
        assert (h.counts, h.high) == charts.histogram_bins(values)
        assert set(h.marks) == {"p50", "p90", "p99"}
        # every bar's link lists exactly its jobs: together, every ok job once
        seen: list[str] = []
        for i, link in enumerate(queries.histogram_links("/runs/synthetic", h)):
            params = dict(parse_qsl(link.split("?", 1)[1]))
            query = CaseQuery.from_params(params)
            assert (query.lat, query.lat_bin, query.lat_top) == (h.sort, i, h.high)
            got = all_pages(tables, query, figs.flaky_cases)
            assert len(got) == h.counts[i]
            seen += got
        assert sorted(seen) == sorted(ok["job_key"].to_list())
    attempts = tables["attempts"].collect()
    assert_frame_equal(drawn.attempts, analysis.attempts_over_time(attempts))
    assert_frame_equal(drawn.in_flight, analysis.in_flight_over_time(attempts))  # few: as is
    with pytest.raises(ValueError, match="lat must be one of"):
        CaseQuery.from_params({"lat": "duration", "lat_bin": "3"})
    with pytest.raises(ValueError, match="lat_bin must be 0 to 29"):
        CaseQuery.from_params({"lat": "duration", "lat_bin": "30", "lat_top": "2.5"})


def test_message_latencies_are_the_reports_on_a_small_run(results: Path) -> None:
    """Under ``SAMPLE_JOBS`` ok jobs the sample is every ok job: the same percentiles,
    histograms and drawings as report.html's (``analysis`` and ``charts.histogram``)."""
    tables = tables_of(results, "base")
    jobs, messages = tables["jobs"].collect(), tables["messages"].collect()
    ok = jobs.filter(pl.col("status") == "ok").height
    sample = queries.extend_sample(None, tables["jobs"], lambda _: tables["messages"])
    got = queries.message_latency(sample, ok)
    assert got.exact and got.sampled == got.ok_jobs == ok > 0
    expected = analysis.latency_percentiles(jobs, [], messages=messages)
    assert_frame_equal(got.table, expected)
    assert got.table["n"].min() > 0  # the local API's conversations have both metrics
    long = analysis.latency_samples(jobs, [], messages).collect()
    assert [h.metric for h in got.histograms] == list(analysis.MESSAGE_METRICS)
    for h in got.histograms:
        values = long.filter(pl.col("metric") == h.metric)["secs"].to_list()
        row = expected.filter(pl.col("metric") == h.metric).row(0, named=True)
        marks = {p: float(row[p]) for p in ("p50", "p90", "p99")}
        assert (h.counts, h.high, h.marks) == (*charts.histogram_bins(values), marks)
        assert h.sort is None and queries.histogram_links("/runs/base", h) is None
        drawn = charts.histogram_svg(h.counts, h.high, h.metric, h.marks)
        assert drawn == charts.histogram(values, h.metric, marks)


def test_the_message_sample_is_bounded_stable_and_grows_part_by_part(tmp_path: Path) -> None:
    """Over ``limit`` ok jobs: the ``limit`` whose keys hash lowest, the same every time, and
    the same whether the jobs come at once or a part at a time (each part's messages read
    only for its own newly sampled jobs)."""
    run = write_synthetic_run(tmp_path / "s", Shape(agents=2, scenarios=5, repeats=6))
    tables = source.scan_tables(source.run_state("s", run))
    jobs, messages = tables["jobs"].collect(), tables["messages"].collect()
    ok = jobs.filter(pl.col("status") == "ok")
    assert ok.height > 40
    whole = queries.extend_sample(None, jobs.lazy(), lambda _: messages.lazy(), limit=40)
    again = queries.extend_sample(None, jobs.lazy(), lambda _: messages.lazy(), limit=40)
    assert_frame_equal(whole.keys, again.keys)
    lowest = (
        ok.select("job_key", pl.col("job_key").hash(queries.SAMPLE_SEED).alias("_h"))
        .sort("_h", "job_key")
        .head(40)
    )
    assert_frame_equal(whole.keys, lowest)
    expected = (
        analysis.message_latencies(messages.filter(pl.col("job_key").is_in(lowest["job_key"])))
        .collect()
        .sort("job_key", "metric", "secs")
    )
    order = ("job_key", "metric", "secs")
    assert_frame_equal(whole.samples.sort(order), expected, check_dtypes=False)
    got = queries.message_latency(whole, ok.height)
    assert not got.exact and (got.sampled, got.ok_jobs) == (40, ok.height)
    assert sum(got.histograms[0].counts) == got.table["n"][0] > 0

    sample, asked = None, []
    for chunk in jobs.iter_slices(17):  # the parts of a run in progress, one by one
        own = messages.filter(pl.col("job_key").is_in(chunk["job_key"].implode()))

        def messages_of(keys: pl.DataFrame, own: pl.DataFrame = own) -> pl.LazyFrame:
            asked.append(set(keys["job_key"]))
            return own.lazy()

        sample = queries.extend_sample(sample, chunk.lazy(), messages_of, limit=40)
    assert sample is not None
    assert_frame_equal(sample.keys, whole.keys)
    assert_frame_equal(sample.samples.sort(order), whole.samples.sort(order))
    assert all(len(a) <= 17 for a in asked)  # never an earlier part's jobs again


def test_requests_in_flight_keep_each_time_slots_peak(tmp_path: Path) -> None:
    shape = Shape(agents=2, scenarios=25, languages=2, repeats=10)  # 1,000 jobs, 2,000+ steps
    run = write_synthetic_run(tmp_path / "many", shape)
    tables = source.scan_tables(source.run_state("many", run))
    drawn = queries.run_charts(tables, queries.run_figures(tables).latency)
    full = analysis.in_flight_over_time(tables["attempts"].collect())
    assert full.height > queries.IN_FLIGHT_POINTS >= drawn.in_flight.height > 0
    assert drawn.in_flight["in_flight"].max() == full["in_flight"].max()
    assert drawn.in_flight["t_secs"].is_sorted()


def test_heatmap_puts_the_worst_rows_first_and_pages_them(results: Path) -> None:
    figs = queries.run_figures(tables_of(results, "synthetic"))
    heat = queries.heatmap(figs.cells, rows_per_page=4)
    assert heat.multi_agent and heat.total_rows == 6 and heat.pages == 2
    worst = [r.worst for r in heat.rows]
    assert worst == sorted(worst)
    rest = queries.heatmap(figs.cells, page=2, rows_per_page=4)
    assert len(rest.rows) == 2 and rest.rows[0].worst >= worst[-1]
    assert queries.heatmap(figs.cells, page=99, rows_per_page=4).page == 2
    cell = heat.rows[0].cells[0]
    assert cell is not None and cell.shade == f"h{round(cell.rate * 10)}"


def test_a_heatmap_cell_opens_exactly_its_failing_jobs(results: Path) -> None:
    tables = tables_of(results, "synthetic")
    figs = queries.run_figures(tables)
    heat = queries.heatmap(figs.cells)
    row = heat.rows[0]
    cell = next(c for c in row.cells if c is not None and c.failure)
    query = CaseQuery(
        agent=row.agent, scenario=row.scenario, criterion=cell.criterion, result="failure"
    )
    page = queries.filter_cases(tables, query, figs.flaky_cases)
    assert page.total == cell.failure
    jobs, crit = tables["jobs"].collect(), tables["criteria"].collect()
    expected = crit.filter(
        (pl.col("criterion_id") == cell.criterion) & (pl.col("result") == "failure")
    ).join(
        jobs.filter((pl.col("agent_label") == row.agent) & (pl.col("scenario_id") == row.scenario)),
        on="job_key",
        how="semi",
    )
    assert set(all_pages(tables, query, figs.flaky_cases)) == keys(expected)
    for r in page.rows:
        assert (cell.criterion, "failure") in r["outcomes"]
        assert r["outcomes"][0][1] == "failure"  # failed criteria listed first


# ---------------------------------------------------------------------------- cases


def test_filters_narrow_the_jobs_as_their_columns_say(results: Path) -> None:
    tables = tables_of(results, "synthetic")
    figs = queries.run_figures(tables)
    jobs = tables["jobs"].collect()
    flaky = figs.flaky_cases

    def total(**kw: Any) -> int:
        return queries.filter_cases(tables, CaseQuery(**kw), flaky).total

    assert total() == jobs.height == 48
    assert total(agent="agent-1") == 24
    assert total(agent="agent_1") == 24  # the agent id works too
    assert total(scenario="scenario_002", matrix=(("language", "es"),)) == 8
    errors = jobs.filter(pl.col("status") == "error")
    assert total(status="error") == errors.height > 0
    kind = errors["error_kind"][0]
    assert total(error_kind=kind) == (errors["error_kind"] == kind).sum()
    crit = tables["criteria"].collect()
    unknown = crit.filter(pl.col("result") == "unknown")["job_key"].n_unique()
    assert total(result="unknown") == unknown
    assert (
        total(criterion="politeness") == crit.filter(pl.col("criterion_id") == "politeness").height
    )
    with pytest.raises(ValueError, match="axis"):
        total(matrix=(("llm", "x"),))


def test_flaky_only_keeps_the_cases_that_both_passed_and_failed(results: Path) -> None:
    tables = tables_of(results, "synthetic")
    figs = queries.run_figures(tables)
    crit, jobs = tables["criteria"].collect(), tables["jobs"].collect()
    flaky = analysis.flaky_cases(crit, jobs).filter(pl.col("criterion_id") == "politeness")
    cases = flaky.select("agent_id", "scenario_id", "matrix.language")
    judged = crit.filter(pl.col("criterion_id") == "politeness").select("job_key")
    expected = jobs.join(cases, on=["agent_id", "scenario_id", "matrix.language"], how="semi").join(
        judged, on="job_key", how="semi"
    )  # errored jobs were not judged on it
    query = CaseQuery(criterion="politeness", flaky=True, per_page=200)
    page = queries.filter_cases(tables, query, figs.flaky_cases)
    assert {r["job_key"] for r in page.rows} == keys(expected) and page.total > 0
    assert queries.filter_cases(tables, CaseQuery(flaky=True), figs.flaky_cases).total >= page.total


def test_search_finds_text_in_messages_and_rationales_literally(results: Path) -> None:
    tables = tables_of(results, "synthetic")
    figs = queries.run_figures(tables)
    # message text, case-insensitive; "A-1." as a literal, not a regex (no A-10, A-1x)
    page = queries.filter_cases(tables, CaseQuery(q="my ORDER is a-1."), figs.flaky_cases)
    assert [r["job_key"] for r in page.rows] == ["k0000000001"]
    assert "My order is A-1." in page.rows[0]["snippet"]
    # a rationale: "draw 0.5" appears in criteria rationales only
    crit = tables["criteria"].collect()
    hits = crit.filter(pl.col("rationale").str.contains("draw 0.5", literal=True))
    page = queries.filter_cases(tables, CaseQuery(q="DRAW 0.5", per_page=200), figs.flaky_cases)
    assert {r["job_key"] for r in page.rows} == keys(hits) and page.total > 0
    assert queries.filter_cases(tables, CaseQuery(q="(unbalanced["), figs.flaky_cases).total == 0


def test_sorting_and_pages_cover_every_job_once(results: Path) -> None:
    tables = tables_of(results, "synthetic")
    figs = queries.run_figures(tables)
    query = CaseQuery(sort="duration", desc=True, per_page=7)
    seen = all_pages(tables, query, figs.flaky_cases)
    assert len(seen) == len(set(seen)) == 48
    first = queries.filter_cases(tables, query, figs.flaky_cases)
    durations = [r["total_secs"] for r in first.rows]
    assert durations == sorted(durations, reverse=True) and first.pages == 7
    by_failed = queries.filter_cases(tables, CaseQuery(sort="failed", desc=True), figs.flaky_cases)
    failed = [r["failed"] for r in by_failed.rows]
    assert failed == sorted(failed, reverse=True)
    beyond = queries.filter_cases(tables, CaseQuery(page=999, per_page=7), figs.flaky_cases)
    assert beyond.query.page == 7  # clamped to the last page


def test_the_case_query_round_trips_through_its_url() -> None:
    query = CaseQuery(
        agent="lite",
        scenario="refund & returns",
        matrix=(("language", "es"),),
        criterion="no_invented_facts",
        result="failure",
        flaky=True,
        q="<script>",
        sort="duration",
        desc=True,
        page=3,
        per_page=25,
    )
    from urllib.parse import parse_qsl

    assert CaseQuery.from_params(dict(parse_qsl(query.params()))) == query
    assert CaseQuery().params() == ""
    assert "&page=" not in query.params(page=1) and query.params().endswith("&page=3")
    for bad in ({"result": "maybe"}, {"sort": "evil"}, {"page": "x"}, {"q": "x" * 201}):
        with pytest.raises(ValueError):
            CaseQuery.from_params(bad)


# ------------------------------------------------------------------------------ a job


def test_one_job_has_its_conversation_criteria_attempts_and_repeats(results: Path) -> None:
    tables = tables_of(results, "synthetic")
    detail = queries.job_detail(tables, "k0000000001")
    assert detail is not None
    assert detail.job["scenario_id"] == "scenario_000" and detail.matrix == {"language": "en"}
    assert [m["index"] for m in detail.messages] == list(range(10))
    calls = [c for m in detail.messages for c in m["tool_calls"]]
    assert calls == [
        {
            "request_id": "lookup_1",
            "tool_name": "lookup_order",
            "params_as_json": '{"order_id": "A-1"}',
        }
    ]
    assert any(m["interrupted"] for m in detail.messages)
    results_seen = [c["result"] for c in detail.criteria]
    order = {"failure": 0, "unknown": 1, "success": 2}
    assert results_seen == sorted(results_seen, key=order.__getitem__)
    assert [a["attempt"] for a in detail.attempts] == list(range(1, len(detail.attempts) + 1))
    assert {d["data_collection_id"] for d in detail.data_collection} == {"order_number", "email"}
    assert [r["repeat"] for r in detail.repeats] == [0, 1, 2, 3]
    assert "k0000000001" in {r["job_key"] for r in detail.repeats}
    assert queries.job_detail(tables, "nope") is None


def test_a_real_job_and_an_errored_one(results: Path) -> None:
    tables = tables_of(results, "base")
    jobs = tables["jobs"].collect()
    ok_key = jobs.filter(pl.col("status") == "ok")["job_key"][0]
    detail = queries.job_detail(tables, ok_key)
    assert detail is not None and detail.messages and detail.criteria
    assert all(c["rationale"] for c in detail.criteria)
    ghost = jobs.filter(pl.col("status") == "error")["job_key"][0]
    failed = queries.job_detail(tables, ghost)
    assert failed is not None and failed.messages == [] and failed.criteria == []
    assert failed.job["error_kind"] == "not_found"
    assert failed.attempts and failed.attempts[-1]["error_kind"] == "not_found"
    assert len(failed.repeats) == 3


# ---------------------------------------------------------------------------- compare


def set_results(run_dir: Path, criterion: str, by_scenario: dict[str, str]) -> None:
    """Make every result of ``criterion`` in each scenario the one given."""
    crit = pl.read_parquet(run_dir / "criteria.parquet")
    jobs = pl.read_parquet(run_dir / "jobs.parquet").select("job_key", "scenario_id")
    result = pl.col("result")
    for scenario, value in by_scenario.items():
        hit = (pl.col("criterion_id") == criterion) & (pl.col("scenario_id") == scenario)
        result = pl.when(hit).then(pl.lit(value)).otherwise(result)
    changed = crit.join(jobs, on="job_key", maintain_order="left").with_columns(
        result.alias("result")
    )
    changed.drop("scenario_id").write_parquet(run_dir / "criteria.parquet")


def compared(a: dict[str, pl.LazyFrame], b: dict[str, pl.LazyFrame]) -> queries.Comparison:
    return queries.compare(queries.run_figures(a), queries.run_figures(b))


def test_compare_lists_the_cases_that_got_worse_first(tmp_path: Path) -> None:
    shape = Shape(agents=1, scenarios=2, languages=1, repeats=3, criteria=2, error_every=0)
    a = write_synthetic_run(tmp_path / "a", shape)
    b = write_synthetic_run(tmp_path / "b", shape)
    set_results(a, "no_invented_facts", {"scenario_000": "success", "scenario_001": "failure"})
    set_results(b, "no_invented_facts", {"scenario_000": "failure", "scenario_001": "success"})
    ta, tb = (tables_of(tmp_path, n) for n in ("a", "b"))
    diff = compared(ta, tb).cases
    assert diff.height == 4  # 2 scenarios x 2 criteria
    rows = {(r["scenario_id"], r["criterion_id"]): r for r in diff.iter_rows(named=True)}
    worse = rows[("scenario_000", "no_invented_facts")]
    assert (worse["a_pass_rate"], worse["b_pass_rate"]) == (1.0, 0.0)
    assert (worse["verdict"], worse["kind"]) == ("regression", "regression")  # 3/3 -> 0/3
    assert worse["diff_high"] < 0
    better = rows[("scenario_001", "no_invented_facts")]
    assert (better["a_pass_rate"], better["b_pass_rate"], better["kind"]) == (
        0.0,
        1.0,
        "improvement",
    )
    assert diff["kind"].to_list()[:2] == ["regression", "improvement"]
    assert set(diff["kind"].to_list()[2:]) <= {"unchanged", "lower", "higher"}
    itself = compared(ta, ta).cases
    assert set(itself["kind"]) == {"unchanged"}
    assert set(itself["verdict"]) <= {"no significant change", "insufficient data"}

    key = queries.case_key(worse)
    a_jobs, b_jobs = queries.case_jobs(ta, key), queries.case_jobs(tb, key)
    assert [r["repeat"] for r in b_jobs] == [0, 1, 2]
    assert {r["result"] for r in b_jobs} == {"failure"}
    assert {r["result"] for r in a_jobs} == {"success"}
    assert queries.pick_pair(a_jobs, b_jobs) == (a_jobs[0]["job_key"], b_jobs[0]["job_key"])
    mixed = [{**a_jobs[0], "result": "failure"}, a_jobs[1]]
    assert queries.pick_pair(mixed, b_jobs)[0] == a_jobs[1]["job_key"]  # A's passing one
    params = dict(p.split("=", 1) for p in key.params().split("&"))
    assert queries.CaseKey.from_params(params) == key


def test_a_raw_difference_within_the_noise_is_not_a_regression(tmp_path: Path) -> None:
    """3/3 -> 2/3 on a case is a raw drop, not a significant one (issue 29, defect 1): the
    viewer judges it as ``compare`` does, from the same counts and the same rule."""
    shape = Shape(agents=1, scenarios=2, languages=1, repeats=3, criteria=1, error_every=0)
    a = write_synthetic_run(tmp_path / "a", shape)
    b = write_synthetic_run(tmp_path / "b", shape)
    set_results(a, "no_invented_facts", {"scenario_000": "success", "scenario_001": "success"})
    set_results(b, "no_invented_facts", {"scenario_000": "success", "scenario_001": "success"})
    crit = pl.read_parquet(b / "criteria.parquet")
    first = pl.read_parquet(b / "jobs.parquet").filter(pl.col("scenario_id") == "scenario_000")
    one = first.sort("repeat")["job_key"][0]
    hit = (pl.col("job_key") == one) & (pl.col("criterion_id") == "no_invented_facts")
    crit.with_columns(
        pl.when(hit).then(pl.lit("failure")).otherwise(pl.col("result")).alias("result")
    ).write_parquet(b / "criteria.parquet")
    ta, tb = (tables_of(tmp_path, n) for n in ("a", "b"))
    found = compared(ta, tb)
    case = found.cases.row(0, named=True)
    assert (case["a_success"], case["b_success"], case["b_failure"]) == (3, 2, 1)
    assert case["diff"] == pytest.approx(-1 / 3)
    assert case["verdict"] == "no significant change" and case["kind"] == "lower"
    assert case["diff_low"] < 0 < case["diff_high"]
    # the run-level table is the command's, verdicts and intervals alike
    cli = analysis.compare_runs(
        ta["criteria"].collect(),
        ta["jobs"].collect(),
        tb["criteria"].collect(),
        tb["jobs"].collect(),
    )
    assert_frame_equal(found.by_criterion, cli)
    assert found.verdicts() == {"no significant change": 1}


def test_compare_real_runs_by_agent_and_cell(results: Path) -> None:
    ta, tb = tables_of(results, "base"), tables_of(results, "cand")
    found = compared(ta, tb)
    diff = found.cases
    assert set(diff.columns) >= {"agent_id", "scenario_id", "matrix.language", "criterion_id"}
    only_a = diff.filter(pl.col("kind") == "only in A")
    assert set(only_a["agent_id"]) == {"agent_support"}  # cand ran the lite agent only
    lite = diff.filter(pl.col("agent_id") == "agent_support_lite")
    assert lite.height > 0 and set(lite["kind"]) <= set(analysis.CASE_ORDER) - {"only in A"}
    cli = analysis.compare_runs(
        ta["criteria"].collect(),
        ta["jobs"].collect(),
        tb["criteria"].collect(),
        tb["jobs"].collect(),
    )
    assert_frame_equal(found.by_criterion, cli)


# ------------------------------------------------------------------------- read-only


def test_nothing_in_the_results_directory_changes(results: Path) -> None:
    before = snapshot(results)
    for name in source.list_runs(results):
        state = source.run_state(name, results / name)
        tables = source.scan_tables(state)
        figs = queries.run_figures(tables)
        queries.filter_cases(tables, CaseQuery(q="order", sort="failed"), figs.flaky_cases)
        key = tables["jobs"].select("job_key").head(1).collect()["job_key"][0]
        queries.job_detail(tables, key)
    compared(tables_of(results, "base"), tables_of(results, "cand"))
    assert snapshot(results) == before
