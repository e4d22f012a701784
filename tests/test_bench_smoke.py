"""The benchmark's code paths at toy sizes, so they cannot rot (no timing is asserted here:
``make bench`` measures)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import runner.sweep
from bench.ab import main as ab_main
from bench.metrics import limit_trace, window_figures
from bench.suite import ASSERT_BUDGET, ASSERT_VARIANT, paired_rounds, rotated, spread, table
from bench.worker import Window, run_baseline, run_runner
from runner.localapi.server import LocalAPI

ROOT = Path(__file__).resolve().parents[1]


def attempts(*rows: tuple[float, float, str, str | None, int]) -> pl.DataFrame:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "started_at": [t0 + timedelta(seconds=r[0]) for r in rows],
            "duration_secs": [r[1] for r in rows],
            "status": [r[2] for r in rows],
            "error_kind": [r[3] for r in rows],
            "concurrency_limit": [r[4] for r in rows],
        }
    )


def test_window_figures_follow_littles_law_on_a_known_schedule() -> None:
    # two slots, each running back-to-back 1 s simulations from 0 to 10 s, one 429 at 0 s
    rows = [(float(t), 1.0, "ok", None, 2) for t in range(10) for _ in range(2)]
    frame = attempts(*rows, (0.0, 0.001, "error", "concurrency_limit", 2))
    figures = window_figures(frame, quota=2)
    assert figures["window_secs"] == 9.0 and figures["mean_sim_secs"] == 1.0
    assert figures["in_flight_ratio"] == pytest.approx(1.0)
    assert figures["throughput_ratio"] == pytest.approx(1.0)  # 18 completions in 9 s
    assert figures["rejected"] == 1 and figures["rejected_share"] == pytest.approx(1 / 21)
    half = window_figures(attempts(*rows[::2]), quota=2)  # one slot of two used
    assert half["in_flight_ratio"] == pytest.approx(0.5)
    assert half["throughput_ratio"] == pytest.approx(0.5)


def test_limit_trace_reports_the_way_to_the_quota() -> None:
    frame = attempts(
        (0.0, 1.0, "ok", None, 4),
        (0.5, 1.0, "ok", None, 20),
        (1.0, 0.01, "error", "concurrency_limit", 20),
        (1.5, 1.0, "ok", None, 19),
    )
    trace = limit_trace(frame, quota=20)
    assert trace["limit_first"] == 4 and trace["limit_last"] == 19 and trace["limit_max"] == 20
    assert trace["secs_to_quota"] == 0.5 and trace["limit_min_after_429"] == 19
    assert trace["limit_changes"] == 2


def spec(base_url: str, **changes: Any) -> dict[str, Any]:
    base = {"client": "runner", "url": base_url, "jobs": 8, "policy": "fixed", "concurrency": 4}
    return {**base, "cap": 8, "new_turns_limit": 2, **changes}


@pytest.mark.parametrize(
    "changes",
    [
        {"policy": "auto", "quota": 3},
        {"policy": "auto-noheaders", "quota": 3},
        {"policy": "aimd", "quota": 3},
        {"transport": "httpx", "store": False},
    ],
    ids=["auto", "auto-noheaders", "aimd", "httpx-no-store"],
)
def test_runner_variants_run_and_restore_the_runner(
    changes: dict[str, Any], local_api_factory: Callable[..., LocalAPI]
) -> None:
    api = local_api_factory(["--time-scale", "0.001", "--max-concurrency", "3"])
    saved = (runner.sweep.concurrency_policy, runner.sweep.make_http_client, runner.sweep.compact)
    figures = run_runner(spec(api.base_url, **changes))
    assert (runner.sweep.concurrency_policy, runner.sweep.make_http_client) == saved[:2]
    assert runner.sweep.compact is saved[2]
    assert figures["sims"] == 8 and figures["cpu_ms_per_sim"] > 0
    assert figures["peak_rss_mb"] >= figures["peak_rss_run_mb"] > 0
    if "quota" in changes:
        assert figures["attempts"] >= 8 and 0 < figures["in_flight_ratio"] <= 1.0
        assert figures["limit_max"] <= 8


@pytest.mark.parametrize("client", ["naive", "floor"])
def test_the_baselines_decode_every_frame(client: str, local_api: LocalAPI) -> None:
    figures = run_baseline(spec(local_api.base_url, client=client))
    assert figures["sims"] == 8 and figures["errors"] == 0 and figures["frames_per_sim"] == 3


def test_the_steady_window_counts_only_the_middle_of_a_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    window = Window(20)  # the 2nd to the 18th simulation's end (a tenth cut at each end)
    # a clock that reads 0.5 s per simulation ended so far
    monkeypatch.setattr("bench.worker.time.process_time", lambda: 0.5 * window.ended)
    for _ in range(20):
        window()
    assert (window.lo, window.hi) == (2, 18)
    # the clock reads 1.0 s at the 2nd end and 9.0 s at the 18th: 8 s over 16 simulations
    assert window.figures() == {"steady_cpu_ms_per_sim": pytest.approx(500.0)}
    assert Window(1).figures() == {}  # too short a run has no middle
    wide = Window(2000, concurrency=300)  # at least the first and last 300 left out
    assert (wide.lo, wide.hi) == (300, 1700)
    short = Window(1000, concurrency=500)  # at most a quarter at each end
    assert (short.lo, short.hi) == (250, 750)
    for _ in range(1000):
        short()
    assert short.figures() == {}  # a middle shorter than two generations of 500 in flight


def test_spread_is_the_range_over_the_median() -> None:
    assert spread([1.0, 1.1, 0.9, 1.05, 0.95]) == pytest.approx(0.2)
    assert spread([2.0, 2.0]) == 0.0


def test_paired_rounds_give_medians_spreads_and_the_median_ratio(
    local_api: LocalAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    runner_row, floor_row = paired_rounds(local_api, concurrency=3, jobs=12, rounds=3)
    order = [line.split(":")[0].strip() for line in capsys.readouterr().err.splitlines()]
    assert order == ["@3 round 1/3", "@3 round 2/3", "@3 round 3/3"]
    assert runner_row["setup"] == "runner @3" and floor_row["setup"].startswith("floor")
    for row in (runner_row, floor_row):
        runs = row["steady_cpu_ms_per_sim_runs"]
        assert len(runs) == 3 and row["sims"] == 12 and row["rounds"] == 3
        assert row["steady_cpu_ms_per_sim"] == statistics.median(runs)
        assert row["steady_cpu_ms_per_sim_spread"] == (max(runs) - min(runs)) / statistics.median(
            runs
        )
    ratios = [
        r / f
        for r, f in zip(
            runner_row["steady_cpu_ms_per_sim_runs"],
            floor_row["steady_cpu_ms_per_sim_runs"],
            strict=True,
        )
    ]
    assert runner_row["vs_floor"] == pytest.approx(statistics.median(ratios))
    assert floor_row["vs_floor"] == 1.0


def test_the_assertions_are_held_to_their_cost_timed_in_the_run(local_api: LocalAPI) -> None:
    """Issue 30's bound is on evaluating the assertions: their hook's CPU timed in each run,
    over the runner's CPU per simulation without them; the A/B is shown beside it."""
    runner_row, _, row = paired_rounds(
        local_api, concurrency=3, jobs=12, rounds=1, variants=(ASSERT_VARIANT,)
    )
    share = row["assert_ms_per_sim"] / runner_row["cpu_ms_per_sim"]
    assert 0 < share == row["assert_share_of_runner"]
    held = "met" if share <= ASSERT_BUDGET else "MISSED"
    assert f"{share:.1%} of the runner's CPU per simulation, <=5%: {held}" in row["target"]
    assert "the runner with them over without, same rounds" in row["target"]


def test_the_table_leaves_missing_figures_blank() -> None:
    text = table([{"section": "memory", "setup": "10 jobs", "sims": 10, "peak_rss_mb": 99.6}])
    header, rule, row = text.splitlines()
    assert header.startswith("section") and set(rule) <= {"-", " "}
    assert row.split() == ["memory", "10", "jobs", "10", "100"]


def test_make_bench_quick_prints_one_table_and_writes_json(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "memory", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "cores" in done.stdout and "memory" in done.stdout
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert latest["cores"] >= 1 and latest["preset"] == "quick"
    assert [row["setup"] for row in latest["rows"]] == ["100 jobs", "300 jobs"]
    assert "within 20%" in latest["rows"][-1]["target"]
    assert len(list(tmp_path.glob("*-quick.json"))) == 1


def test_ab_alternates_refs_and_reports_each_against_the_first(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert ab_main(["floor", ".", "--jobs", "6", "--concurrency", "3", "--rounds", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    runs = [line.split(" ms/sim")[0] for line in out if line.startswith("round")]
    assert [r.rsplit(" ", 1)[0] for r in runs] == [
        "round 1: floor",
        "round 1: .",
        "round 2: .",  # the order rotated every round
        "round 2: floor",
    ]
    summary = {line.split(":")[0]: line for line in out if "median" in line}
    assert set(summary) == {"floor", "."}
    assert "1.00x floor" in summary["floor"]
    assert float(summary["."].split("median ")[1].split()[0]) > 0


def test_the_viewer_benchmark_runs_at_a_toy_size(tmp_path: Path) -> None:
    from bench.view import main as view_main

    view_main(["--jobs", "240", "--requests", "1", "--per-part", "20", "--out", str(tmp_path)])
    figures = json.loads((tmp_path / "view.json").read_text())
    assert figures["jobs"] == 240 and figures["parts"] == 12
    assert set(figures["cases"]) == {"finished", "in progress"}
    for case in figures["cases"].values():
        assert {p["page"] for p in case["pages"]} >= {"runs page", "run page", "job page"}
        assert case["rss_mb"]["peak"] > 0
    live = {p["page"] for p in figures["cases"]["in progress"]["pages"]}
    assert "run page after a new part lands" in live


def test_agent_testing_section_measures_both_clients_against_one_server() -> None:
    """The bench's agent-testing section at smoke size: the runner asks the vendor far less
    than the naive client (one invocation per job, fixed polls) for the same simulations."""
    from bench import agent_testing

    clients, verdicts = agent_testing.run(sims=20, scale=0.05, verdict_scenarios=2)
    runner_row, default_row, naive_row = clients
    assert runner_row["sims"] == default_row["sims"] == naive_row["sims"] == 20
    for row in (runner_row, default_row):
        assert row["requests_per_sim"] < naive_row["requests_per_sim"] / 3
        assert row["lag_p50"] == row["lag_p50"]  # measured (not NaN)
    assert naive_row["requests_per_sim"] > 2  # at least a run call and a poll per job
    # verdicts: fixed repeats run every repeat of the 2 agents x 2 cases; waves run fewer or
    # as many, over the same cases
    fixed, waves = verdicts
    assert fixed["sims"] == 2 * 2 * 20 and fixed["cases"] == waves["cases"] == 4
    assert 0 < waves["sims"] <= fixed["sims"] and waves["invocations"] >= fixed["invocations"]


def test_the_verdicts_section_runs_at_a_toy_size(tmp_path: Path) -> None:
    """bench.verdicts at 2 x 20: every design counted, curtail identical to its fixed rule."""
    from bench import verdicts

    figures = verdicts.run(replicates=2, cases=20, seed=1)
    verdicts.report(figures, tmp_path)
    rows = {
        row["setup"]: row for row in json.loads((tmp_path / "verdicts.json").read_text())["rows"]
    }
    assert rows["fixed Wilson 20"]["sims_per_case"] == 20
    assert rows["curtail 20"]["agrees_with_fixed"] == 1.0
    assert rows["curtail 20"]["settled_share"] == rows["fixed 16 of 20"]["settled_share"] == 1.0
    assert (
        rows["anytime 20"]["sims_per_case"] < 20 and 0 <= rows["anytime 40"]["covered_share"] <= 1
    )
    assert "60% uniform on 0.95-1" in figures["mix"]


def test_the_compare_section_runs_at_a_toy_size(tmp_path: Path) -> None:
    from bench import paired as pb

    figures = pb.run(replicates=4, max_pairs=40)
    figures["self"] = pb.self_comparison(seeds=2, max_pairs=10)
    pb.report(figures, tmp_path)
    written = json.loads((tmp_path / "compare.json").read_text())
    own = written["self"]
    assert [r["seed"] for r in own["rows"]] == [1, 2] and own["target"].startswith("never worse")
    assert all(r["decision"] in ("not worse", "undecided") for r in own["rows"])
    assert all(r["simulations"] >= 2 * r["pairs"] > 0 for r in own["rows"])
    rows = written["rows"]
    assert [(r["true_diff"], r["design"]) for r in rows[:2]] == [(0.0, "paired"), (0.0, "unpaired")]
    assert len(rows) == 10 and all(r["replicates"] == 4 for r in rows)
    assert all(r["worse"] + r["not_worse"] + r["undecided"] == pytest.approx(1) for r in rows)
    assert [r["true_diff"] for r in rows[::2]] == [0.0, -0.025, -0.05, -0.2, 0.1]
    assert {"fixed_pairs_90", "target"} <= set(rows[6]) and all("target" in r for r in rows)
    assert rows[4]["target"].startswith("false not worse, worse <= 0.05")


def test_ab_rotates_the_order_so_each_version_runs_first_alike() -> None:
    refs = ["e921907", ".", "floor"]
    orders = [rotated(refs, r) for r in range(6)]
    assert all(sorted(order) == sorted(refs) for order in orders)  # every REF every round
    assert orders[0] == refs and orders[1] == [".", "floor", "e921907"]
    for ref in refs:  # first, middle and last equally often over whole cycles
        assert [order.index(ref) for order in orders].count(0) == 2
        assert sorted(order.index(ref) for order in orders) == [0, 0, 1, 1, 2, 2]
