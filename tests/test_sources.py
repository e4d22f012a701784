"""Issue 30: the criteria tables filtered by ``source`` (``report --source``, the viewer's
``?source=``) and the agreement of an assertion with the criterion it mirrors, in the HTML
report. Pure: a tiny run written as the runner writes it, no server."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from view_helpers import job_row, write_run

from runner import analysis
from runner.cli import main
from runner.report import build_report
from runner.report.agreement import recorded_mirrors
from runner.report.shapes import report_json
from runner.store import load_run

JUDGED = "honest_about_failure"
MIRROR = "no_false_approval"


def criteria_rows() -> list[dict[str, str | None]]:
    """4 jobs: the judge S F S F, its mirror S S S F (agree on 3 of 4; once only the
    assertion passed), an unmirrored assertion always S, and an agent's criterion F S F S."""
    rows: list[dict[str, str | None]] = []
    for i, (judge, mine, agent) in enumerate(zip("SFSF", "SSSF", "FSFS", strict=True)):
        word = {"S": "success", "F": "failure"}
        rows += [
            {"job_key": f"j{i}", "criterion_id": JUDGED, "result": word[judge], "source": "extra"},
            {"job_key": f"j{i}", "criterion_id": MIRROR, "result": word[mine], "source": "assert"},
            {
                "job_key": f"j{i}",
                "criterion_id": "short_call",
                "result": "success",
                "source": "assert",
            },
            {
                "job_key": f"j{i}",
                "criterion_id": "polite",
                "result": word[agent],
                "source": "agent",
            },
        ]
    return rows


def tiny_run(root: Path) -> Path:
    run_dir = write_run(
        root / "tiny",
        {
            "jobs": [job_row(f"j{i}", i, repeat=i) for i in range(4)],
            "criteria": criteria_rows(),
        },
        manifest={"config_path": str(root / "gone.yaml")},  # not on disk: the recorded one
    )
    resolved = {
        "assert": [{"id": "short_call", "max_turns": 8}],
        "scenarios": [
            {
                "id": "refund",
                "assert": [{"id": MIRROR, "agent_never_matches": "x", "mirrors": JUDGED}],
            },
            {"file": "more.csv", "sha256": "0", "scenarios": 3},
        ],
    }
    (run_dir / "config.resolved.json").write_text(json.dumps(resolved))
    return run_dir


def test_rows_narrow_to_the_sources_asked_for() -> None:
    criteria = pl.DataFrame(criteria_rows()).vstack(
        pl.DataFrame(
            [{"job_key": "old", "criterion_id": "legacy", "result": "success", "source": None}],
            schema={
                "job_key": pl.String,
                "criterion_id": pl.String,
                "result": pl.String,
                "source": pl.String,
            },
        )
    )

    def ids(*sources: str) -> set[str]:
        return set(analysis.of_sources(criteria, list(sources))["criterion_id"])

    assert ids("assert") == {MIRROR, "short_call"}
    assert ids("extra", "agent") == {JUDGED, "polite"}
    assert ids("judge") == {JUDGED, "polite", "legacy"}  # a null source is the judge's
    assert ids() == {JUDGED, MIRROR, "short_call", "polite", "legacy"}
    older = criteria.drop("source")  # a run before the column: every row the judge's
    assert analysis.of_sources(older, ["assert"]).height == 0
    assert analysis.of_sources(older.lazy(), ["judge"]).collect().height == criteria.height
    with pytest.raises(ValueError, match=r"^--source: no source 'asserts' \(one of extra, agent"):
        analysis.check_sources(["asserts"])


def test_report_source_narrows_every_pass_rate(tmp_path: Path) -> None:
    run = load_run(tiny_run(tmp_path))
    shape = report_json(run, [], ["assert"])
    assert [r.model_extra["criterion_id"] for r in shape.criteria if r.model_extra] == [
        MIRROR,
        "short_call",
    ]
    assert (shape.pass_rate.success, shape.pass_rate.failure) == (7, 1)  # pooled: asserts only
    assert shape.sources == ["assert"]
    full = report_json(run, [])
    assert (full.pass_rate.success, full.pass_rate.failure) == (11, 5)


def test_report_source_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tiny_run(tmp_path)
    out = tmp_path / "r.html"
    assert main(["report", str(run_dir), "--source", "agent", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "criteria of source agent only" in printed
    assert "polite" in printed and JUDGED not in printed.split("pass rate per criterion")[1]
    assert main(["report", str(run_dir), "--source", "bogus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--source: no source 'bogus'" in err[0]


def test_the_html_report_shows_the_judges_agreement_and_its_sources(tmp_path: Path) -> None:
    run_dir = tiny_run(tmp_path)
    assert recorded_mirrors(run_dir) == {MIRROR: JUDGED}
    run = load_run(run_dir)
    page = build_report(run, sources=["assert"])
    assert 'id="sources"' in page and "Criteria of source assert only" in page
    table = page.split('id="agreement-table"', 1)[1].split("</table>", 1)[0]
    cells = [c.split(">", 1)[1] for c in table.split("<td")[1:]]
    # agree on 3 of 4 (j0 S/S, j2 S/S, j3 F/F); j1: only the assertion passed
    assert [c.removesuffix("</td>").removesuffix("</td></tr>") for c in cells] == [
        MIRROR,
        JUDGED,
        "3",
        "4",
        "75.0%",
        "1",
        "0",
    ]
    rates = page.split('id="pass-rates"', 1)[1].split('id="agreement"', 1)[0]
    assert "short_call" in rates and "polite" not in rates and ">" + JUDGED + "<" not in rates
    assert "Agreement with the judge" not in build_report(run, mirrors={})
