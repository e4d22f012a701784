"""``report``, ``compare`` and ``check`` end to end on runs made against the local API, and the
gate's logic on frames built by hand."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from sweep_data import ORDER_STATUS_CRITERION, SUPPORT_SCENARIOS

import runner
from runner import analysis
from runner.cli import main
from runner.gate import (
    EXIT_FAILED,
    EXIT_NOT_JUDGED,
    EXIT_PASSED,
    GateError,
    evaluate,
    junit_xml,
)
from runner.localapi.server import LocalAPI, local_api_process
from runner.manifest import Manifest, Target
from runner.report import build_report
from runner.schema import jobs_schema
from runner.store import Run, table_frame

EXIT_USAGE = 2


def write_config(path: Path, agents: list[dict[str, str]]) -> Path:
    """3 scenarios x 3 repeats per agent; fast retries so injected faults show as retries."""
    config: dict[str, Any] = {
        "target": {"base_url": "local", "timeouts": {"connect": 5, "first_byte": 10, "idle": 5}},
        "run": {
            "concurrency": 4,
            "new_turns_limit": 8,
            "repeats": 3,
            "seed": 5,
            "retry": {"max_attempts": 3, "backoff_base": 0.01, "backoff_cap": 0.02, "jitter": 0.0},
        },
        "agents": agents,
        "criteria": [dict(ORDER_STATUS_CRITERION)],
        "scenarios": [dict(s) for s in SUPPORT_SCENARIOS],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def server() -> Iterator[LocalAPI]:
    with local_api_process(
        ["--time-scale", "0.002", "--seed", "7", "--fault-http-503", "0.1"]
    ) as api:
        yield api


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, server: LocalAPI) -> dict[str, Path]:
    """``base``: two agents plus one that does not exist (its jobs all end in a 404 error);
    ``cand``: the weaker agent alone."""
    root = tmp_path_factory.mktemp("runs")
    base = write_config(
        root / "base.yaml",
        [
            {"id": "agent_support", "label": "support"},
            {"id": "agent_support_lite", "label": "lite"},
            {"id": "agent_does_not_exist", "label": "ghost"},
        ],
    )
    cand = write_config(root / "cand.yaml", [{"id": "agent_support_lite", "label": "lite"}])
    out = {}
    for name, config in (("base", base), ("cand", cand)):
        report = runner.run(
            config,
            name=name,
            results_root=root,
            progress=False,
            base_url=server.base_url,
            preflight=False,  # its ghost agent is meant to end in errors
        )
        out[name] = report.run_dir
    return out


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != "report.html"
    }


def assert_self_contained(page: str) -> None:
    """No script, no stylesheet or image from anywhere, every chart well-formed SVG."""
    assert page.startswith("<!doctype html>")
    lowered = page.lower()
    for banned in ("<script", "<link", "<img", "<iframe", "@import", "url(", " src="):
        assert banned not in lowered, banned
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls
    for svg in re.findall(r"<svg\b.*?</svg>", page, flags=re.S):
        ET.fromstring(svg)  # raises on malformed markup


# ----------------------------------------------------------------------------- report


def test_report_prints_the_tables_and_writes_one_self_contained_page(
    runs: dict[str, Path], server: LocalAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = runs["base"]
    before, requests = _snapshot(run_dir), server.stats()["simulate_requests"]

    assert main(["report", str(run_dir), "--by", "scenario_id,criterion_id"]) == 0

    printed = capsys.readouterr().out
    loaded = runner.load_run(run_dir)
    rates = analysis.pass_rates(loaded.criteria, loaded.jobs)
    for line in ("pass rate per criterion", "pass rate per agent", "pass rate by scenario_id"):
        assert line in printed
    for criterion in rates["criterion_id"].drop_nulls():
        assert criterion in printed
    assert "not_found" in printed  # the ghost agent's jobs, by kind
    page = (run_dir / "report.html").read_text()
    assert_self_contained(page)
    assert page.count("<svg") >= 8  # interval charts, heatmap, 5 histograms, over-time charts
    for anchor in ("pass-rates", "heatmap", "repeats", "latency", "errors", "concurrency"):
        assert f'id="{anchor}"' in page
    for row in rates.filter(pl.col("pass_rate").is_not_null()).iter_rows(named=True):
        assert f"{100 * row['pass_rate']:.1f}%" in page  # the table shows the computed rates
    # the jobs that never reached an ok sibling are shown as errors with no criterion known
    assert "(unknown: jobs errored)" in page
    # regenerating reads the saved tables only: nothing re-run, nothing rewritten
    assert _snapshot(run_dir) == before
    assert server.stats()["simulate_requests"] == requests
    out = run_dir / "again.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    assert out.read_text().count("<svg") == page.count("<svg")


def test_report_rejects_what_is_not_a_run(
    tmp_path: Path, runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path / "nothing")]) == EXIT_USAGE
    assert main(["report", str(tmp_path)]) == EXIT_USAGE
    capsys.readouterr()
    assert main(["report", str(runs["base"]), "--by", "matrix.nope"]) == EXIT_USAGE
    printed = capsys.readouterr()
    # refused first: one line, no table printed before it
    assert printed.out == ""
    assert printed.err.count("\n") == 1 and "no such column" in printed.err
    assert "matrix.nope" in printed.err


# ---------------------------------------------------------------------------- compare


def test_compare_two_runs_prints_the_table_and_writes_the_page(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page_path = tmp_path / "compare.html"
    args = ["compare", str(runs["base"]), str(runs["cand"]), "--html", str(page_path)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    a, b = runner.load_run(runs["base"]), runner.load_run(runs["cand"])
    table = analysis.compare_runs(a.criteria, a.jobs, b.criteria, b.jobs)
    for row in table.iter_rows(named=True):
        assert row["criterion_id"] in printed
        assert row["verdict"] in analysis.VERDICTS
        if row["diff"] is not None:
            assert row["diff_low"] <= row["diff"] <= row["diff_high"]
            significant = row["diff_high"] < 0 or row["diff_low"] > 0
            assert (row["verdict"] != "no significant change") == significant
    assert "verdicts:" in printed
    page = page_path.read_text()
    assert_self_contained(page)
    assert "Newcombe" in page and page.count("<svg") == 1


def test_compare_a_run_with_itself_and_two_agents_of_one_run(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base = str(runs["base"])
    assert main(["compare", base, base, "--by", "scenario", "--fail-on-regression"]) == 0
    run = runner.load_run(base)
    same = analysis.compare_runs(
        run.criteria, run.jobs, run.criteria, run.jobs, by=("scenario_id", "criterion_id")
    )
    assert set(same["verdict"]) <= {"no significant change", "insufficient data"}
    assert set(same["diff"].drop_nulls()) == {0.0}
    # support -> lite inside one run: the exit code follows the computed verdicts
    sup, lite = (run.jobs.filter(pl.col("agent_label") == label) for label in ("support", "lite"))
    table = analysis.compare_runs(
        run.criteria.join(sup.select("job_key"), on="job_key"),
        sup,
        run.criteria.join(lite.select("job_key"), on="job_key"),
        lite,
    )
    regressed = "regression" in table["verdict"].to_list()
    code = main(
        ["compare", base, base, "--agent-a", "support", "--agent-b", "lite", "--fail-on-regression"]
    )
    assert code == (1 if regressed else 0)
    assert main(["compare", base, base, "--agent-a", "nobody"]) == EXIT_USAGE
    assert "no agent 'nobody'" in capsys.readouterr().err


# ------------------------------------------------------------------------------ check


def _junit(path: Path) -> ET.Element:
    return ET.fromstring(path.read_text())


def test_check_judges_every_criterion_and_writes_junit(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = runs["base"]
    run = runner.load_run(run_dir)
    rates = analysis.pass_rates(run.criteria, run.jobs).filter(pl.col("criterion_id").is_not_null())
    undecided = rates.filter(pl.col("success") + pl.col("failure") == 0).height
    junit = tmp_path / "junit.xml"

    code = main(["check", str(run_dir), "--min-pass-rate", "0", "--junit", str(junit)])

    assert code == (EXIT_NOT_JUDGED if undecided else EXIT_PASSED)
    root = _junit(junit)
    cases = root.findall(".//testcase")
    assert sorted(c.get("name") for c in cases) == sorted(rates["criterion_id"])
    assert root.get("failures") == "0" and root.get("skipped") == str(undecided)

    # a criterion that failed at least once cannot pass a 100% gate
    failing = rates.filter(pl.col("failure") > 0)["criterion_id"]
    assert failing.len() > 0
    code = main(["check", str(run_dir), "--min-pass-rate", "1", "--criterion", failing[0]])
    assert code == EXIT_FAILED


def test_check_lower_bound_is_stricter_than_the_rate(runs: dict[str, Path]) -> None:
    run_dir = str(runs["base"])
    run = runner.load_run(run_dir)
    rates = analysis.pass_rates(run.criteria, run.jobs)
    row = rates.filter(pl.col("pass_rate") > 0).sort("pass_rate").row(0, named=True)
    gate = ["check", run_dir, "--criterion", row["criterion_id"]]
    threshold = f"{row['pass_rate'] - 1e-9:.12f}"
    assert main([*gate, "--min-pass-rate", threshold]) == EXIT_PASSED
    assert main([*gate, "--min-pass-rate", threshold, "--use-lower-bound"]) == EXIT_FAILED


def test_check_by_scenario_has_one_case_per_scenario_and_criterion(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = runs["base"]
    run = runner.load_run(run_dir)
    pairs = (
        analysis.pass_rates(run.criteria, run.jobs, by=["scenario_id", "criterion_id"])
        .filter(pl.col("criterion_id").is_not_null())
        .select("scenario_id", "criterion_id")
        .rows()
    )
    junit = tmp_path / "by-scenario.xml"
    main(
        ["check", str(run_dir), "--min-pass-rate", "0.5", "--by", "scenario", "--junit", str(junit)]
    )
    cases = _junit(junit).findall(".//testcase")
    assert sorted((c.get("classname"), c.get("name")) for c in cases) == sorted(
        (f"scenario_id={s}", c) for s, c in pairs
    )


def test_check_error_rate_gate(runs: dict[str, Path]) -> None:
    run_dir = str(runs["base"])
    jobs = runner.load_run(run_dir).jobs
    rate = jobs.filter(pl.col("status") == "error").height / jobs.height
    assert rate >= 1 / 3  # the ghost agent's jobs all end in 404
    assert main(["check", run_dir, "--max-error-rate", repr(rate)]) == EXIT_PASSED
    assert main(["check", run_dir, "--max-error-rate", f"{rate - 0.01:.6f}"]) == EXIT_FAILED


@pytest.mark.parametrize(
    "args",
    [
        [],  # no gate at all
        ["--min-pass-rate", "1.5"],
        ["--max-error-rate", "-0.1"],
        ["--min-pass-rate", "0.5", "--criterion", "no_such_criterion"],
        ["--min-pass-rate", "0.5", "--by", "matrix.nope"],
    ],
)
def test_check_bad_input_is_a_usage_error(runs: dict[str, Path], args: list[str]) -> None:
    assert main(["check", str(runs["cand"]), *args]) == EXIT_USAGE


def test_check_on_a_missing_run_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["check", str(tmp_path / "missing"), "--min-pass-rate", "0.5"]) == EXIT_USAGE


# ------------------------------------------------------------------- the gate, by hand


def frames(results: dict[str, list[str]], errors: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One job per position; ``results[criterion][i]`` is job i's result for it."""
    n = max(len(v) for v in results.values())
    schema = jobs_schema([])
    rows = []
    for i in range(n + errors):
        row: dict[str, Any] = dict.fromkeys(schema.names())
        row |= {
            "job_key": f"k{i}",
            "agent_id": "a",
            "agent_label": "a",
            "scenario_id": "s",
            "repeat": i,
            "status": "ok" if i < n else "error",
            "attempts": 1,
        }
        rows.append(row)
    jobs = pl.DataFrame(rows, schema=schema, orient="row")
    criteria = pl.DataFrame(
        [
            {"job_key": f"k{i}", "criterion_id": c, "result": r}
            for c, values in results.items()
            for i, r in enumerate(values)
        ]
    )
    return criteria, jobs


def test_gate_boundaries_and_exit_codes() -> None:
    criteria, jobs = frames({"c1": ["success"] * 9 + ["failure"], "c2": ["unknown"] * 10})
    exact = evaluate(criteria, jobs, min_pass_rate=0.9, criterion_ids=["c1"])
    assert [c.status for c in exact.cases] == ["passed"] and exact.exit_code == EXIT_PASSED
    assert exact.cases[0].value == pytest.approx(0.9)
    above = evaluate(criteria, jobs, min_pass_rate=0.91, criterion_ids=["c1"])
    assert above.exit_code == EXIT_FAILED
    lower = evaluate(criteria, jobs, min_pass_rate=0.9, criterion_ids=["c1"], use_lower_bound=True)
    assert lower.exit_code == EXIT_FAILED
    assert lower.cases[0].value == pytest.approx(analysis.wilson_interval(9, 10)[0])
    # all unknown: neither passed nor failed, and not silently green
    unknown = evaluate(criteria, jobs, min_pass_rate=0.5, criterion_ids=["c2"])
    assert [c.status for c in unknown.cases] == ["not_judged"]
    assert unknown.exit_code == EXIT_NOT_JUDGED
    both = evaluate(criteria, jobs, min_pass_rate=0.95)
    assert both.exit_code == EXIT_FAILED  # a failure outranks a case that could not be judged


def test_gate_error_rate_and_empty_runs() -> None:
    criteria, jobs = frames({"c1": ["success"] * 3}, errors=1)
    assert evaluate(criteria, jobs, max_error_rate=0.25).exit_code == EXIT_PASSED
    assert evaluate(criteria, jobs, max_error_rate=0.2).exit_code == EXIT_FAILED
    nothing = evaluate(criteria.clear(), jobs.clear(), min_pass_rate=0.5, max_error_rate=0.1)
    assert [c.status for c in nothing.cases] == ["not_judged", "not_judged"]
    with pytest.raises(GateError):
        evaluate(criteria, jobs)
    with pytest.raises(GateError, match="between 0 and 1"):
        evaluate(criteria, jobs, min_pass_rate=float("nan"))


def test_junit_xml_counts_and_messages() -> None:
    criteria, jobs = frames(
        {"good": ["success"] * 4, "bad": ["failure"] * 4, "unsure": ["unknown"] * 4}
    )
    result = evaluate(criteria, jobs, min_pass_rate=0.5, max_error_rate=0.0)
    root = ET.fromstring(junit_xml(result, "gate"))
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("4", "1", "1")
    by_name = {c.get("name"): c for c in root.iter("testcase")}
    assert set(by_name) == {"good", "bad", "unsure", "job error rate"}
    failure = by_name["bad"].find("failure")
    assert failure is not None and "0/4 passed" in (failure.get("message") or "")
    assert by_name["unsure"].find("skipped") is not None
    assert by_name["good"].find("failure") is None and by_name["good"].find("skipped") is None


# ------------------------------------------------------------- the page, from frames


def table_from_rows(table: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """``table_frame`` from partial rows: the columns they name, nulls elsewhere."""
    names = {n for row in rows for n in row}
    return table_frame(table, {n: [row.get(n) for row in rows] for n in names})


def synthetic_run(tmp_path: Path, name: str) -> Run:
    """A tiny run built in memory: one ok job and one errored job of a scenario ``name``."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    job = {
        "run_id": "r",
        "agent_id": "a1",
        "agent_label": "a",
        "scenario_id": name,
        "attempts": 1,
        "started_at": t0,
        "time_to_first_frame_secs": 0.2,
        "time_to_analysis_secs": 1.5,
        "total_secs": 1.6,
    }
    jobs = table_from_rows(
        "jobs",
        [
            job | {"job_key": "k0", "repeat": 0, "status": "ok"},
            job | {"job_key": "k1", "repeat": 1, "status": "error", "error_kind": "server_error"},
        ],
    )
    criteria = table_from_rows(
        "criteria", [{"job_key": "k0", "criterion_id": "c&1", "result": "success"}]
    )
    messages = table_from_rows(
        "messages",
        [
            {"job_key": "k0", "index": 0, "role": "user", "arrival_secs": 0.3},
            {"job_key": "k0", "index": 1, "role": "agent", "arrival_secs": 0.9},
        ],
    )
    attempts = table_from_rows(
        "attempts",
        [
            {"job_key": k, "attempt": 1, "started_at": t0, "status": s, "duration_secs": 1.0}
            | {"concurrency_limit": 2, "error_kind": None if s == "ok" else "server_error"}
            for k, s in (("k0", "ok"), ("k1", "error"))
        ],
    )
    empty = table_from_rows("data_collection", [])
    manifest = Manifest(
        run_name="<x>",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        config_path="<x>.yaml",
        config_hash="0" * 64,
        target=Target(base_url="local", backend="stream"),
    )
    return Run(tmp_path, manifest, jobs, messages, criteria, empty, attempts)


def test_the_page_escapes_whatever_the_data_holds(tmp_path: Path) -> None:
    page = build_report(synthetic_run(tmp_path, '<script>alert("x")</script>'))
    assert_self_contained(page)  # no <script> got through
    assert "&lt;script&gt;alert(&quot;x&quot;)" in page and "c&amp;1" in page
    assert "<h1>Run &lt;x&gt;</h1>" in page


def test_the_page_of_an_empty_run_says_so(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path, "a")
    empty = Run(
        tmp_path,
        None,
        run.jobs.clear(),
        run.messages.clear(),
        run.criteria.clear(),
        run.data_collection,
        run.attempts.clear(),
    )
    page = build_report(empty)
    assert_self_contained(page)
    assert "No criteria results" in page and "No attempts." in page
