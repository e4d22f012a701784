"""The sequential verdicts and the paired comparison in ``report`` (terminal and HTML) and
``compare --html``: the shaping (``runner.report.sequential``), the confidence sequence along
the pairs (``paired.confidence_path``), the cases whose verdict changed
(``replay.verdict_changes``), on tiny runs written by ``sequential_runs``."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console
from sequential_runs import COMPARE, sequential_runs

from runner.analysis import compare_runs
from runner.config.compare import CompareConfig
from runner.paired import NonInferiority, confidence_bounds, confidence_path, count
from runner.paired_runs import compare_arms
from runner.replay import verdict_changes
from runner.report import build_compare_page, build_report
from runner.report.sequential import (
    paired_view,
    read_verdicts,
    recorded_compare,
    verdict_frame,
    verdicts_view,
)
from runner.report.terminal import print_run_tables, print_verdict_changes
from runner.schema import VERDICTS
from runner.store import Run, load_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    paths = sequential_runs(tmp_path_factory.mktemp("seq"))
    return {name: load_run(path) for name, path in paths.items()}


# ------------------------------------------------------------------------- pure shaping


def test_the_confidence_path_is_the_rules_bounds_after_each_prefix() -> None:
    rng = random.Random(3)
    diffs: list[int | None] = [rng.choice((-1, -1, 0, 0, 0, 1, None)) for _ in range(45)]
    path = confidence_path(diffs, 0.05, points=10, at=[7])
    ns = [p.n for p in path]
    assert ns == sorted(set(ns)) and ns[-1] == 45 and 7 in ns and len(ns) <= 12
    for p in path:
        c = count(diffs[: p.n])
        assert (p.lower, p.upper) == confidence_bounds(c, 0.05)
        assert p.mean == c.mean
    final = NonInferiority(0.05, 0.05, 400).decide(diffs)
    assert (path[-1].lower, path[-1].upper) == (final.lower, final.upper)
    assert confidence_path([], 0.05) == []


def verdict_rows(rows: list[dict[str, object]], axes: tuple[str, ...] = ()) -> pl.DataFrame:
    base = {c: None for c in VERDICTS.schema}
    base.update(agent_id="a", agent_label="A", rule="anytime", params="{}", repeats=3, passes=1)
    schema = {**VERDICTS.schema, **dict.fromkeys(axes, pl.String)}
    return pl.DataFrame([{**base, **r} for r in rows], schema=schema)


def test_verdict_changes_list_what_differs_worst_first() -> None:
    a = verdict_rows(
        [
            {"scenario_id": "same", "verdict": "fail"},
            {"scenario_id": "up", "verdict": "fail"},
            {"scenario_id": "down", "verdict": "pass"},
            {"scenario_id": "open", "verdict": "pass"},
            {"scenario_id": "gone", "verdict": "pass"},
        ]
    )
    b = verdict_rows(
        [
            {"scenario_id": "new", "verdict": "pass"},
            {"scenario_id": "up", "verdict": "pass"},
            {"scenario_id": "open", "verdict": "undecided"},
            {"scenario_id": "down", "verdict": "fail"},
            {"scenario_id": "same", "verdict": "fail"},
        ]
    )
    changes = verdict_changes(a, b)
    assert list(zip(changes["change"], changes["scenario_id"], strict=True)) == [
        ("now fails", "down"),
        ("now undecided", "open"),
        ("now passes", "up"),
        ("only in A", "gone"),
        ("only in B", "new"),
    ]
    assert changes.row(0, named=True)["verdict_a"] == "pass"


def test_verdict_changes_match_cases_on_the_axes_both_runs_have() -> None:
    a = verdict_rows(
        [
            {"scenario_id": "s", "matrix.lang": "en", "verdict": "pass"},
            {"scenario_id": "s", "matrix.lang": "es", "verdict": "pass"},
        ],
        ("matrix.lang",),
    )
    b = verdict_rows(
        [
            {"scenario_id": "s", "matrix.lang": "en", "verdict": "pass"},
            {"scenario_id": "s", "matrix.lang": "es", "verdict": "fail"},
        ],
        ("matrix.lang",),
    )
    changes = verdict_changes(a, b)
    assert changes.select("change", "matrix.lang").rows() == [("now fails", "es")]
    no_axis = verdict_rows([{"scenario_id": "s", "verdict": "fail"}])
    assert verdict_changes(a, no_axis)["change"].to_list() == ["now fails", "now fails"]


def test_the_verdict_rows_list_failures_first_with_where_each_settled(
    runs: dict[str, Run],
) -> None:
    table = read_verdicts(runs["seq_a"].path)
    assert table is not None
    rows = verdict_frame(table)
    assert rows["verdict"].to_list() == ["fail", "undecided", "pass"]
    passed = rows.row(2, named=True)
    assert (passed["scenario"], passed["repeats"], passed["settled_at"], passed["ran_past"]) == (
        "s1",
        15,
        14,
        1,
    )
    assert rows.row(1, named=True)["settled_at"] is None
    view = verdicts_view(table)
    assert view.counts == {"pass": 1, "fail": 1, "undecided": 1}
    # 20 - 2 (s2) and 20 - 15 (s1) not run; s3 had not stopped; $0.01 a repeat
    assert view.summary.endswith("23 simulations and $0.23 not spent against fixed repeats")
    assert view.rule.startswith("rule anytime: pass_rate 0.8, alpha 0.05, max 20")
    assert read_verdicts(runs["plain"].path) is None


def test_the_paired_view_says_when_it_decided_and_what_it_cost(runs: dict[str, Run]) -> None:
    run = runs["cmp"]
    settings = recorded_compare(run.path)
    assert settings == CompareConfig.model_validate(COMPARE)
    jobs, criteria = run.for_agent(None)[1], run.for_agent(None)[0]
    result = compare_arms(
        jobs, criteria, {"agent": "support"}, {"agent": "lite"}, settings.rule(), "all"
    )
    view = paired_view(result, settings.rule(), "support", "lite")
    diffs = result.pairs["d"].to_list()
    rule = settings.rule()
    first = next(n for n in range(1, len(diffs) + 1) if rule.state(count(diffs[:n])))
    assert view.verdict == "worse" and view.decided_at == first
    assert view.headline.startswith(f"decided after {first} of 400 pairs")
    assert view.headline.endswith("$0.7200 (72 simulations)")
    assert view.spend["usd"].to_list() == pytest.approx([0.36, 0.36])
    assert [s for s, _ in view.lost] == ["hard", "mid"]
    assert first in [p.n for p in view.path] and view.path[-1].n == 36
    assert (view.lower, view.upper) == (result.decision.lower, result.decision.upper)


# --------------------------------------------------------------------- report and compare


def test_the_html_report_shows_verdicts_and_the_paired_comparison(runs: dict[str, Run]) -> None:
    page = build_report(runs["seq_a"])
    assert 'id="verdicts"' in page and 'id="paired"' not in page
    assert "23 simulations and $0.23 not spent against fixed repeats" in page
    section = page[page.index('id="verdicts"') : page.index('id="latency"')]
    assert section.count("<tr>") == 4  # the header and three cases
    assert 'id="verdicts"' not in build_report(runs["plain"])
    page = build_report(runs["cmp"])
    assert 'id="paired"' in page and 'id="verdicts"' not in page
    assert '<polygon class="sequence"' in page and "decided at " in page
    # both decisions at the margin's line: the chart's labels and the note below it
    assert ">-5 pp (margin):<" in page and ">worse below<" in page and "0: worse" not in page
    assert "<b>worse</b> (by more than the margin) once it is below" in page
    assert "decided after " in page and " of 400 pairs" in page
    assert "Scenarios the candidate lost: hard (-75.0 pp), mid (-58.3 pp)" in page


def test_the_compare_page_lists_changed_verdicts_and_the_paired_section(
    runs: dict[str, Run],
) -> None:
    a, b = runs["seq_a"], runs["seq_b"]
    table = compare_runs(a.criteria, a.jobs, b.criteria, b.jobs, by=["criterion_id"])
    page = build_compare_page(a, b, table, paired="not computed: a reason")
    section = page[page.index('id="verdict-changes"') :]
    assert section.index("now fails") < section.index("now passes")
    assert "not computed: a reason" in section
    plain = build_compare_page(a, runs["plain"], table)
    assert 'id="verdict-changes"' not in plain and 'id="paired"' not in plain


def test_report_and_compare_print_them_in_the_terminal(runs: dict[str, Run]) -> None:
    console = Console(record=True, width=240)
    print_run_tables(runs["seq_a"], console)
    print_run_tables(runs["cmp"], console)
    print_verdict_changes(runs["seq_a"], runs["seq_b"], console)
    print_verdict_changes(runs["seq_a"], runs["plain"], console)
    text = console.export_text()
    assert "cases: 1 pass, 1 fail, 1 undecided; settled after 8.0 of 20 repeats" in text
    assert "WORSE: decided after " in text and "scenarios the candidate lost: hard" in text
    assert "verdicts that changed (A -> B)" in text and "now fails" in text
    assert "verdicts: run B has no verdicts table" in text


def test_a_run_without_either_prints_as_before(runs: dict[str, Run], tmp_path: Path) -> None:
    console = Console(record=True, width=240)
    print_run_tables(runs["plain"], console)
    text = console.export_text()
    assert "verdicts" not in text and "paired comparison" not in text


def test_the_commands_show_them(runs: dict[str, Run], tmp_path: Path) -> None:
    """``report`` and ``compare --html`` end to end (one process each)."""
    root = runs["seq_a"].path.parent
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "runner", *args], capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = cli("report", str(root / "cmp"), "--out", str(tmp_path / "cmp.html"))
    assert "WORSE: decided after " in out
    assert 'id="paired"' in (tmp_path / "cmp.html").read_text()
    html = tmp_path / "ab.html"
    out = cli("compare", str(root / "seq_a"), str(root / "seq_b"), "--html", str(html))
    assert "verdicts that changed (A -> B)" in out and "now fails" in out
    page = html.read_text()
    assert 'id="verdict-changes"' in page and 'id="paired"' in page
    assert "undecided after 12 of 12 pairs" in page
