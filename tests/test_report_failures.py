"""The report's failure section: which conversations it picks, that it is bounded, escaped."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
from view_helpers import XSS, xss_run

from bench.view_data import Shape, write_synthetic_run
from runner.report import build_report
from runner.report.failures import (
    BUDGET,
    MAX_MESSAGES,
    failures_section,
    pick_failures,
    section_size,
)
from runner.store import load_run


def scans(run_dir: Path) -> tuple[pl.LazyFrame, pl.LazyFrame, pl.LazyFrame]:
    return tuple(  # type: ignore[return-value]
        pl.scan_parquet(run_dir / f"{t}.parquet") for t in ("criteria", "jobs", "messages")
    )


def test_it_picks_different_scenarios_before_a_second_of_one(tmp_path: Path) -> None:
    run = write_synthetic_run(tmp_path / "r", Shape(agents=2, scenarios=4, repeats=5))
    criteria, jobs, _ = scans(run)
    picked = pick_failures(criteria, jobs, per_criterion=3, max_criteria=2)
    fails = criteria.filter(pl.col("result") == "failure").collect()
    top = (
        fails.group_by("criterion_id").len().sort(["len", "criterion_id"], descending=[True, False])
    )
    assert (
        picked["criterion_id"].unique(maintain_order=True).to_list()
        == top["criterion_id"][:2].to_list()
    )
    for criterion, group in picked.group_by("criterion_id"):
        failed_in = (
            fails.filter(pl.col("criterion_id") == criterion[0])
            .join(jobs.collect(), on="job_key")["scenario_id"]
            .n_unique()
        )
        assert group.height == 3
        assert group["scenario_id"].n_unique() == min(3, failed_in)  # spread over scenarios
        truth = fails.filter(pl.col("criterion_id") == criterion[0])
        assert set(group["job_key"]) <= set(truth["job_key"])  # only real failures


def test_the_section_stays_bounded_however_big_the_run(tmp_path: Path) -> None:
    run = write_synthetic_run(tmp_path / "big", Shape(agents=2, scenarios=25, repeats=100))
    criteria, jobs, messages = scans(run)
    section = failures_section(criteria, jobs, messages)
    assert section_size(section) <= BUDGET
    html = "".join(section)
    assert html.count('<details class="fx-case">') == 6 * 3  # 6 criteria x 3 conversations
    # a budget too small for them all: conversations are dropped and counted, never cut mid-way
    small = failures_section(criteria, jobs, messages, budget=20_000)
    assert section_size(small) <= 20_000
    assert re.search(r"\d+ more conversation\(s\) left out", "".join(small))
    assert "".join(small).count("<details") == "".join(small).count("</details>")


def test_long_conversations_are_cut_and_markup_escaped(tmp_path: Path) -> None:
    run = xss_run(tmp_path)
    long_run = load_run(run)
    extra = pl.DataFrame(
        {
            "job_key": ["k1"] * 100,
            "index": list(range(2, 102)),
            "role": ["agent", "user"] * 50,
            "message": ["x" * 5000] * 100,
        }
    )
    messages = pl.concat([long_run.messages, extra], how="diagonal_relaxed")
    section = "".join(failures_section(long_run.criteria, long_run.jobs, messages))
    assert "<script>" not in section and "<img" not in section
    assert "Judge says &lt;script&gt;window.__xss = 1&lt;/script&gt;" in section
    assert "… 62 more message(s) not shown" in section  # 102 messages, 40 shown
    assert "x" * 600 not in section and "x" * 599 + "…" in section
    assert MAX_MESSAGES == 40
    page = build_report(load_run(run))
    assert 'id="failures"' in page and "<script" not in page.lower()
    assert XSS not in page


def test_a_run_without_failures_says_so(tmp_path: Path) -> None:
    run = write_synthetic_run(tmp_path / "r", Shape(agents=1, scenarios=1, repeats=2, criteria=1))
    criteria, jobs, messages = scans(run)
    passing = criteria.with_columns(pl.lit("success").alias("result"))
    section = "".join(failures_section(passing, jobs, messages))
    assert "No criterion failed" in section and "<details" not in section
