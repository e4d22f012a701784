"""What a sweep costs: the cost columns against what the local API billed, the budget, the
estimate (end to end over a real socket), and the pure pieces behind them."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import polars as pl
import pytest
from conftest import LocalAPIFactory
from test_agent_testing import write_config

from runner.budget import BudgetTracker, Limit, Verdict, resume_limit
from runner.config import load_config
from runner.estimate import AgentPrices, from_history, from_prices
from runner.jobs import iter_jobs
from runner.store import load_run, read_manifest
from runner.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]
SEEDED = ("--time-scale", "0.001", "--seed", "11")


def sweep(cfg: Any, results: Path, **kwargs: Any) -> Any:
    return anyio.run(lambda: run_sweep(cfg, results_root=results, progress=False, **kwargs))


def billing(api: Any) -> dict[str, float]:
    found: dict[str, float] = api.stats()["billing"]
    return found


# ---------------------------------------------------------------------------- the columns


@pytest.mark.parametrize("backend", ["stream", "buffered"])
def test_spend_in_the_tables_is_what_the_local_api_billed(
    tmp_path: Path, local_api_factory: LocalAPIFactory, backend: str
) -> None:
    api = local_api_factory(SEEDED)
    cfg = load_config(write_config(tmp_path / "c.yaml", api.base_url, backend=backend))
    result = sweep(cfg, tmp_path / "results")
    run = load_run(result.run_dir)
    billed = billing(api)
    assert run.jobs.height == 24 and (run.jobs["status"] == "ok").all()
    assert billed["conversations"] == 24
    assert billed["usd"] > 0
    assert run.jobs["cost_usd"].sum() == pytest.approx(billed["usd"], rel=1e-9)
    assert run.jobs["llm_price"].sum() == pytest.approx(billed["usd"], rel=1e-9)
    assert run.messages["llm_price"].sum() == pytest.approx(billed["usd"], rel=1e-9)
    # the simulate endpoints bill in USD only: the credit columns stay null, not zero
    for column in ("credits_used", "llm_charge", "call_charge", "charging_llm_price"):
        assert run.jobs[column].null_count() == 24, column
    # user messages carry no llm_usage: their price is null, never a made-up zero
    users = run.messages.filter(pl.col("role") == "user")
    assert users["llm_price"].null_count() == users.height
    session = read_manifest(result.run_dir).sessions[-1]  # type: ignore[union-attr]
    assert session.spent_usd == pytest.approx(billed["usd"], rel=1e-9)


def test_retried_attempts_are_not_billed_twice_and_the_tables_still_add_up(
    tmp_path: Path, local_api_factory: LocalAPIFactory
) -> None:
    faults = ["--fault-disconnect", "0.15", "--fault-malformed", "0.1", "--fault-http-503", "0.1"]
    api = local_api_factory([*SEEDED, *faults])
    cfg = load_config(write_config(tmp_path / "c.yaml", api.base_url, backend="stream"))
    result = sweep(cfg, tmp_path / "results")
    run = load_run(result.run_dir)
    stats = api.stats()
    assert result.counters.retries > 0 and stats["streams_broken"]["disconnect"] > 0
    ok = run.jobs.filter(pl.col("status") == "ok")
    # a conversation the client never received whole was not billed: one bill per ok job
    assert stats["billing"]["conversations"] == ok.height
    assert run.jobs["cost_usd"].sum() == pytest.approx(stats["billing"]["usd"], rel=1e-9)
    assert run.jobs.filter(pl.col("status") == "error")["cost_usd"].null_count() == (
        run.jobs.height - ok.height
    )


def test_agent_testing_spend_and_credits_are_what_the_local_api_billed(
    tmp_path: Path, local_api_factory: LocalAPIFactory
) -> None:
    api = local_api_factory(SEEDED)
    cfg = load_config(write_config(tmp_path / "c.yaml", api.base_url, prefix="costs"))
    result = sweep(cfg, tmp_path / "results")
    jobs = load_run(result.run_dir).jobs
    billed = billing(api)
    assert (jobs["status"] == "ok").all() and billed["conversations"] == jobs.height == 24
    assert jobs["cost_usd"].sum() == pytest.approx(billed["usd"], rel=1e-9)
    assert jobs["charging_llm_price"].sum() == pytest.approx(billed["usd"], rel=1e-9)
    assert jobs["credits_used"].sum() == billed["credits"]
    assert jobs["llm_charge"].sum() == billed["credits"]
    assert jobs["call_charge"].sum() == 0 and jobs["platform_charge"].sum() == 0
    session = read_manifest(result.run_dir).sessions[-1]  # type: ignore[union-attr]
    assert session.spent_credits == billed["credits"]
    # an invocation's total_price and credits_used are the sums over its runs
    listed = httpx.get(f"{api.base_url}/v1/convai/test-invocations", params={"page_size": 100})
    summaries = listed.json()["results"]
    assert sum(s["total_price"] for s in summaries) == pytest.approx(billed["usd"], rel=1e-9)
    assert sum(s["credits_used"] for s in summaries) == billed["credits"]
    # and the jobs carry their invocation's total_price (one figure per invocation)
    assert jobs["invocation_total_price"].null_count() == 0
    per_invocation = {s["id"]: s["total_price"] for s in summaries}
    buckets = load_run(result.run_dir).buckets
    assert isinstance(buckets, pl.DataFrame)
    joined = jobs.join(buckets.select("job_key", "invocation_id").unique(), on="job_key")
    assert joined.height == 24
    for row in joined.iter_rows(named=True):
        assert row["invocation_total_price"] == pytest.approx(per_invocation[row["invocation_id"]])


def test_the_calculate_endpoint_quotes_every_llm_for_an_agent(
    local_api_factory: LocalAPIFactory,
) -> None:
    api = local_api_factory(SEEDED)
    url = f"{api.base_url}/v1/convai/agent/agent_support/llm-usage/calculate"
    quoted = httpx.post(url, json={}).json()["llm_prices"]
    assert {"gemini-2.5-flash", "gpt-4o"} <= {p["llm"] for p in quoted}
    for price in quoted:
        assert price["price_per_message"] > 0
        assert price["price_per_minute"] > price["price_per_message"]
    longer = httpx.post(url, json={"prompt_length": 50_000}).json()["llm_prices"]
    assert longer[0]["price_per_message"] > quoted[0]["price_per_message"]
    missing = httpx.post(f"{api.base_url}/v1/convai/agent/nobody/llm-usage/calculate", json={})
    assert missing.status_code == 404
    anyone = httpx.post(f"{api.base_url}/v1/convai/llm-usage/calculate", json={})
    assert anyone.status_code == 200 and anyone.json()["llm_prices"]


# ---------------------------------------------------------------------------- the budget


def test_a_budget_stops_within_the_in_flight_margin_and_a_larger_one_finishes_it(
    tmp_path: Path, local_api_factory: LocalAPIFactory
) -> None:
    # what the whole sweep costs, measured on a server with the same seed
    reference = local_api_factory(SEEDED)
    ref_cfg = load_config(write_config(tmp_path / "ref.yaml", reference.base_url, backend="stream"))
    full = load_run(sweep(ref_cfg, tmp_path / "ref").run_dir).jobs
    total = full["cost_usd"].sum()
    dearest = full["cost_usd"].max()

    api = local_api_factory(SEEDED)
    budget = 0.4 * total
    path = write_config(tmp_path / "c.yaml", api.base_url, backend="stream")
    cfg = load_config(path, {"run.budget.usd": budget})
    first = sweep(cfg, tmp_path / "results")
    assert first.budget_stopped and not first.interrupted and first.aborted is None
    jobs = load_run(first.run_dir).jobs
    spent = jobs["cost_usd"].sum()
    concurrency = cfg.run.concurrency
    assert isinstance(concurrency, int)
    assert spent <= budget + concurrency * dearest  # at most the jobs in flight over
    assert 0 < jobs.height < 24 and first.not_run == 24 - jobs.height
    assert spent == pytest.approx(billing(api)["usd"], rel=1e-9)
    session = read_manifest(first.run_dir).sessions[-1]  # type: ignore[union-attr]
    assert session.ended == "budget" and session.not_run == first.not_run
    assert session.budget_usd == pytest.approx(budget)
    assert session.run_spent_usd == pytest.approx(spent, rel=1e-9)

    second = sweep(load_config(path, {"run.budget.usd": 10 * total}), tmp_path / "results")
    assert not second.budget_stopped
    run = load_run(second.run_dir)
    assert run.jobs.height == 24 and (run.jobs["status"] == "ok").all()
    billed = billing(api)
    assert billed["conversations"] == 24  # nothing paid twice
    assert run.jobs["cost_usd"].sum() == pytest.approx(billed["usd"], rel=1e-9)
    sessions = read_manifest(second.run_dir).sessions  # type: ignore[union-attr]
    assert [s.ended for s in sessions] == ["budget", "completed"]
    assert sessions[-1].run_spent_usd == pytest.approx(billed["usd"], rel=1e-9)
    # the second session started from the first one's spend
    assert sessions[-1].spent_usd == pytest.approx(billed["usd"] - spent, rel=1e-9)
    # and expected the rest to cost what the first one's jobs did
    (estimate,) = second.estimate
    assert "earlier sessions" in estimate.how and estimate.jobs == 24 - jobs.height
    assert estimate.low <= billed["usd"] - spent <= estimate.high


def test_a_credits_budget_holds_for_agent_testing_and_a_resume_reattaches(
    tmp_path: Path, local_api_factory: LocalAPIFactory
) -> None:
    api = local_api_factory(SEEDED)
    path = write_config(tmp_path / "c.yaml", api.base_url, prefix="budget")
    first = sweep(load_config(path, {"run.budget.credits": 150}), tmp_path / "results")
    assert first.budget_stopped
    jobs = load_run(first.run_dir).jobs
    billed = billing(api)
    assert jobs["credits_used"].sum() <= billed["credits"]  # a group's other runs are paid too
    cfg = load_config(path)
    dearest = jobs["credits_used"].max()
    concurrency = cfg.run.concurrency
    assert isinstance(concurrency, int)
    # at most the groups in flight (each runs all its repeats) over the budget
    assert billed["credits"] <= 150 + concurrency * cfg.run.repeats * dearest
    second = sweep(load_config(path, {"run.budget.credits": 100_000}), tmp_path / "results")
    assert not second.budget_stopped
    run = load_run(second.run_dir)
    assert run.jobs.height == 24 and (run.jobs["status"] == "ok").all()
    after = billing(api)
    assert after["conversations"] == 24  # re-attached to the groups already started
    assert run.jobs["credits_used"].sum() == after["credits"]


def test_the_cli_ends_a_budget_stop_with_one_line_and_exit_3(
    tmp_path: Path, local_api_factory: LocalAPIFactory
) -> None:
    api = local_api_factory(SEEDED)
    path = write_config(tmp_path / "c.yaml", api.base_url, backend="stream")
    command = [sys.executable, "-m", "runner", "run", str(path), "--no-progress"]
    command += ["--results", str(tmp_path / "results"), "--budget-usd", "0.002"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 3, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    pattern = (
        r"error: budget reached: spent \$[0-9.]+ of \$0\.0020 \((\d+) job\(s\) not run\)\. "
        r"To resume with a larger budget: python -m runner run (\S+) --results \S+ "
        r"--budget-usd ([0-9.]+)"
    )
    match = re.fullmatch(pattern, last)
    assert match, last
    assert int(match[1]) > 0 and match[2] == str(path) and float(match[3]) > 0.002
    resumed = subprocess.run(
        [*command[:-1], match[3]], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr  # the larger budget covers every job left
    assert billing(api)["conversations"] == load_run(tmp_path / "results" / "r").jobs.height


# ---------------------------------------------------------------------------- the estimate


def test_the_estimate_brackets_the_measured_spend_of_the_example_sweep(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "configs" / "example.yaml")
    result = sweep(cfg, tmp_path)
    (usd,) = result.estimate
    spent = load_run(result.run_dir).jobs["cost_usd"].sum()
    assert usd.unit == "usd" and usd.jobs == 63
    assert "llm-usage/calculate" in usd.how
    assert usd.low < spent < usd.high
    session = json.loads((result.run_dir / "manifest.json").read_text())["sessions"][-1]
    assert session["estimate"]["low"] == usd.low and session["spent_usd"] == pytest.approx(spent)


def test_dry_run_prints_the_estimate(tmp_path: Path, local_api_factory: LocalAPIFactory) -> None:
    api = local_api_factory(SEEDED)
    path = write_config(tmp_path / "c.yaml", api.base_url, backend="stream")
    command = [sys.executable, "-m", "runner", "run", str(path), "--dry-run"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.search(r"expected cost of 24 job\(s\) to run: \$[0-9.]+ to \$[0-9.]+", done.stdout)
    assert billing(api)["conversations"] == 0  # a dry run pays for nothing


def test_dry_run_says_what_is_left_and_prints_only_the_jobs_still_to_run(
    tmp_path: Path, local_api_factory: LocalAPIFactory
) -> None:
    """On a run half done: the jobs left of the sweep, their expected cost from the spend of
    the jobs earlier sessions paid for, and request bodies of jobs still to run only. On a
    finished run: 0 left, $0 to spend, no request printed."""
    api = local_api_factory(SEEDED)
    path = write_config(tmp_path / "c.yaml", api.base_url, backend="stream")
    results = tmp_path / "results"
    first = sweep(load_config(path), results, limit=10)
    done = set(load_run(first.run_dir).jobs["job_key"])
    command = [sys.executable, "-m", "runner", "run", str(path), "--dry-run", "--no-preflight"]
    command += ["--results", str(results)]

    def dry_run() -> str:
        out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    half = dry_run()
    assert "valid; 14 of 24 job(s) left" in half
    assert re.search(r"expected cost of 14 job\(s\) to run: .*earlier sessions", half)
    printed = re.findall(r"^# job (\S+)", half, flags=re.M)
    assert len(printed) == 3 and not set(printed) & done
    sweep(load_config(path), results)
    finished = dry_run()
    assert "valid; 0 of 24 job(s) left" in finished
    assert "expected cost: $0 (nothing left to run; earlier sessions spent $" in finished
    assert "# job" not in finished and "simulation_specification" not in finished
    assert billing(api)["conversations"] == 24  # the dry runs paid for nothing


# ---------------------------------------------------------------------------- pure


def test_budget_admits_waits_and_stops() -> None:
    tracker = BudgetTracker(usd=1.0, prior_usd=0.3, window=3)
    assert tracker.verdict(0) is Verdict.ADMIT  # 0 + 1 x 0.3
    assert tracker.verdict(2) is Verdict.ADMIT  # 0 + 3 x 0.3 = 0.9
    assert tracker.verdict(3) is Verdict.WAIT  # 1.2 > 1: wait for a job to end
    tracker.record(0.05, None)  # one cheap job does not make every job in flight cheap:
    assert tracker.verdict(3) is Verdict.WAIT  # the prior stands (0.05 + 4 x 0.3 > 1) ...
    tracker.record(0.05, None)
    tracker.record(0.1, None)  # ... until a window of jobs was priced: then the dearest of
    assert tracker.verdict(3) is Verdict.ADMIT  # them, not their mean (0.2 + 4 x 0.1)
    assert tracker.verdict(7) is Verdict.ADMIT  # 0.2 + 8 x 0.1 = 1.0
    assert tracker.verdict(8) is Verdict.WAIT
    tracker.record(0.7, None)  # dearer than any before: the spend may pass the limit only so
    assert tracker.verdict(1) is Verdict.WAIT
    assert tracker.verdict(0) is Verdict.STOP  # 0.9 + 0.7 > 1 with nothing in flight
    assert tracker.verdict(0) is Verdict.STOP and tracker.stopped is not None
    assert tracker.stopped.unit == "usd" and tracker.stopped.spent == pytest.approx(0.9)


def test_a_resumed_budget_starts_from_the_jobs_earlier_sessions_priced() -> None:
    tracker = BudgetTracker(usd=1.0, spent_usd=0.3, prior_usd=0.01, seen_usd=[0.1, 0.2], window=2)
    assert tracker.verdict(2) is Verdict.ADMIT  # 0.3 + 3 x 0.2 (the dearest seen) <= 1 ...
    assert tracker.verdict(3) is Verdict.WAIT  # ... and 0.3 + 4 x 0.2 > 1


def test_the_example_at_concurrency_8_ends_within_5_percent_of_a_2_cent_budget(
    tmp_path: Path,
) -> None:
    """Every job in flight charged as the dearest recent one (and the estimate's, until a
    window of jobs was priced): the spend passes the limit only by what a job dearer than any
    before costs more. (Charged at the mean, this run ended 29% over.)"""
    budget = 0.02
    cfg = load_config(
        ROOT / "configs" / "example.yaml", {"run.budget.usd": budget, "run.concurrency": 8}
    )
    result = sweep(cfg, tmp_path)
    assert result.budget_stopped
    spent = load_run(result.run_dir).jobs["cost_usd"].sum()
    assert 0 < spent <= 1.05 * budget


def test_budget_counts_earlier_sessions_and_either_unit() -> None:
    tracker = BudgetTracker(credits=100, spent_credits=95, prior_credits=10)
    assert tracker.verdict(0) is Verdict.STOP
    assert BudgetTracker().active is False and BudgetTracker().verdict(50) is Verdict.ADMIT
    both = BudgetTracker(usd=10, credits=10)
    both.record(None, 6)  # unpriced in USD: only the credits move
    assert both.verdict(0) is Verdict.STOP and both.stopped and both.stopped.unit == "credits"


def test_estimate_from_prices_and_from_history() -> None:
    prices = {
        "a": AgentPrices({"cheap": 0.001, "dear": 0.01}, llm="cheap"),
        "b": AgentPrices({"cheap": 0.001, "dear": 0.01}),  # LLM unknown: cheapest to dearest
    }
    est = from_prices([("a", 10), ("b", 10)], prices)
    assert est is not None
    assert est.low == pytest.approx(0.001 + 0.001)
    assert est.high == pytest.approx(10 * 0.001 * 2 + 10 * 0.01 * 2)
    assert from_prices([("c", 5)], prices) is None  # an agent without a quote: no estimate
    hist = from_history(100, [0.01, 0.02, 0.03])
    assert hist is not None and hist.low < 2.0 < hist.high
    assert 100 * 0.01 <= hist.low and hist.high <= 100 * 0.03
    assert from_history(10, []) is None


def test_jobs_carry_the_turn_limit_the_estimate_reads(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", "http://127.0.0.1:9", backend="stream"))
    assert {job.body["new_turns_limit"] for job in iter_jobs(cfg)} == {8}


# ---------------------------------------------------------------------------- analysis, views


@pytest.fixture(scope="module")
def priced_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24-job stream run with a matrix axis, against its own local API."""
    from runner.localapi.server import local_api_process

    root = tmp_path_factory.mktemp("priced")
    with local_api_process(list(SEEDED)) as api:
        cfg = load_config(write_config(root / "c.yaml", api.base_url, backend="stream"))
        return Path(sweep(cfg, root / "results").run_dir)


def _frames(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    run = load_run(path)
    assert isinstance(run.jobs, pl.DataFrame) and isinstance(run.criteria, pl.DataFrame)
    return run.jobs, run.criteria


def test_spend_per_agent_cell_and_passed_conversation(priced_run: Path) -> None:
    from runner import analysis

    jobs, criteria = _frames(priced_run)
    total = analysis.spend(jobs, criteria).row(0, named=True)
    assert total["jobs"] == total["priced"] == 24
    assert total["usd"] == pytest.approx(jobs["cost_usd"].sum())
    assert total["credits"] is None  # billed in USD only: no credits, not zero credits
    failing = criteria.filter(pl.col("result") != "success")["job_key"].unique()
    passed = criteria.filter(~pl.col("job_key").is_in(failing.implode()))["job_key"].n_unique()
    assert total["passed"] == passed
    if passed:
        assert total["usd_per_pass"] == pytest.approx(total["usd"] / passed)
    per_agent = analysis.spend(jobs, criteria, by=["agent_label"])
    assert per_agent["usd"].sum() == pytest.approx(total["usd"])
    per_cell = analysis.spend(jobs, criteria, by=["matrix.language"])
    assert sorted(per_cell["matrix.language"]) == ["en", "es"]
    assert per_cell["usd"].sum() == pytest.approx(total["usd"])
    over_time = analysis.spend_over_time(jobs)
    assert over_time.height == 24 and over_time["t_secs"].is_sorted()
    assert over_time["usd"].is_sorted() and over_time["usd"][-1] == pytest.approx(total["usd"])
    unpriced = jobs.with_columns(pl.lit(None, dtype=pl.Float64).alias("cost_usd"))
    none = analysis.spend(unpriced, criteria).row(0, named=True)
    assert none["priced"] == 0 and none["usd"] is None and none["usd_per_pass"] is None
    assert analysis.spend_over_time(unpriced).height == 0


def test_compare_gives_the_cost_difference(priced_run: Path) -> None:
    from runner import analysis

    jobs, criteria = _frames(priced_run)
    support = jobs.filter(pl.col("agent_id") == "agent_support")
    booking = jobs.filter(pl.col("agent_id") == "agent_booking")
    table = analysis.compare_spend(criteria, support, criteria, booking)
    usd = table.filter(pl.col("measure") == "usd").row(0, named=True)
    assert usd["a"] == pytest.approx(support["cost_usd"].sum())
    assert usd["diff"] == pytest.approx(booking["cost_usd"].sum() - support["cost_usd"].sum())
    assert usd["ratio"] == pytest.approx(booking["cost_usd"].sum() / support["cost_usd"].sum())


def test_compare_cli_prints_the_cost_beside_the_pass_rates(
    priced_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runner.cli import main

    page = tmp_path / "compare.html"
    assert main(["compare", str(priced_run), str(priced_run), "--html", str(page)]) == 0
    printed = capsys.readouterr().out
    assert "what each side cost" in printed and "usd_per_pass" in printed
    assert "What each side cost" in page.read_text()


def test_report_has_a_cost_section_with_and_without_cost_data(
    priced_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runner.cli import main
    from runner.estimate import money
    from runner.report import build_report

    assert main(["report", str(priced_run), "--out", str(tmp_path / "r.html")]) == 0
    printed = capsys.readouterr().out
    jobs, _ = _frames(priced_run)
    assert f"spend: {money(jobs['cost_usd'].sum())} for 24 priced job(s)" in printed
    assert "spend by agent_label" in printed and "spend by matrix.language" in printed
    page = (tmp_path / "r.html").read_text()
    assert 'id="spend"' in page and "cumulative spend (USD)" in page
    assert "per passed conversation" in page and "Per matrix cell" in page
    assert money(jobs["cost_usd"].sum()) in page

    run = load_run(priced_run)
    nothing = pl.lit(None, dtype=pl.Float64)
    bare = dataclasses.replace(
        run,
        jobs=jobs.with_columns(nothing.alias("cost_usd"), nothing.alias("llm_price")),
    )
    page = build_report(bare)
    assert 'id="spend"' in page and "No cost data" in page
    assert "cumulative spend" not in page


def test_check_max_cost_exit_codes_and_junit(
    priced_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import xml.etree.ElementTree as ET

    from runner.cli import main
    from runner.gate import evaluate

    jobs, criteria = _frames(priced_run)
    spent = jobs["cost_usd"].sum()
    junit = tmp_path / "j.xml"
    base = ["check", str(priced_run), "--junit", str(junit)]
    assert main([*base, "--max-cost", str(spent * 2)]) == 0
    assert main([*base, "--max-cost", str(spent / 2)]) == 1
    root = ET.parse(junit).getroot()
    (case,) = root.iter("testcase")
    assert case.get("name") == "total spend (USD)" and case.find("failure") is not None
    assert main([*base, "--max-credits", "5"]) == 3  # billed in USD: credits cannot be judged
    assert ET.parse(junit).getroot().find(".//skipped") is not None
    assert main(["check", str(priced_run), "--max-cost", "-1"]) == 2
    capsys.readouterr()
    unpriced = jobs.with_columns(pl.lit(None, dtype=pl.Float64).alias("cost_usd"))
    assert evaluate(criteria, unpriced, max_cost=1.0).exit_code == 3


def test_budget_without_any_figure_risks_one_job_at_a_time() -> None:
    tracker = BudgetTracker(credits=100)
    assert tracker.verdict(0) is Verdict.ADMIT
    assert tracker.verdict(1) is Verdict.WAIT  # nothing priced yet: one at a time
    tracker.record(None, 10)
    assert tracker.verdict(5) is Verdict.ADMIT  # 10 + 6 x 10 <= 100


def test_the_larger_budget_to_resume_with_covers_the_jobs_left() -> None:
    """Spend so far plus the jobs left at the expected cost, rounded up to the cent (the
    credit), and always a step above the limit that stopped the run."""
    usd = Limit("usd", 0.02, spent=0.0193, prior=0.004)
    assert resume_limit(usd, 10) == pytest.approx(0.06)  # 0.0193 + 10 x 0.004 = 0.0593
    assert resume_limit(usd, 0) == pytest.approx(0.03)  # at least one cent above 0.02
    credits = Limit("credits", 100, spent=98.0)
    credits.recent.extend([3.0, 5.0])
    assert resume_limit(credits, 3) == 110.0  # 98 + 3 x 4
