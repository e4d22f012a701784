"""``report``, ``compare`` and ``check`` with ``--json``: one JSON document each, valid against
its shape in ``runner.report.shapes`` (unknown keys refused), with the figures the analysis
gives. Two small runs against the local API on 127.0.0.1, one with errors (a missing agent)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import runner
from runner import analysis
from runner.cli import main
from runner.localapi.server import LocalAPI, local_api_process
from runner.report.shapes import SHAPES, CheckJSON, CompareJSON, ReportJSON
from runner.store import load_run


def write_config(path: Path, agents: list[dict[str, str]]) -> Path:
    config = {
        "target": {"base_url": "local"},
        "run": {"concurrency": 4, "new_turns_limit": 6, "repeats": 2, "seed": 3},
        "agents": agents,
        "scenarios": [
            {"id": "late", "prompt": "My order is late.", "tags": ["orders"]},
            {"id": "refund", "prompt": "I want a refund."},
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def server() -> Iterator[LocalAPI]:
    with local_api_process(["--time-scale", "0", "--seed", "9"]) as api:
        yield api


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, server: LocalAPI) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("json")
    agents = {
        "a": [{"id": "agent_support", "label": "support"}, {"id": "agent_nope", "label": "x"}],
        "b": [{"id": "agent_support_lite", "label": "support"}],
    }
    return {
        name: runner.run(
            write_config(root / f"{name}.yaml", agent_list),
            name=name,
            results_root=root,
            progress=False,
            base_url=server.base_url,
            preflight=False,  # agent_nope is meant to end in errors
        ).run_dir
        for name, agent_list in agents.items()
    }


def printed(capsys: pytest.CaptureFixture[str], args: list[str], code: int = 0) -> str:
    assert main(args) == code
    out = capsys.readouterr().out
    json.loads(out)  # one document, nothing else on stdout
    return out


def test_report_json_has_its_shape_and_the_analysis_figures(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = printed(capsys, ["report", str(runs["a"]), "--json", "--by", "scenario_id"])
    doc = ReportJSON.model_validate_json(out)
    run = load_run(runs["a"])
    assert (doc.totals.jobs, doc.totals.errors) == (8, 4)
    assert [e.error_kind for e in doc.errors] and sum(e.jobs for e in doc.errors) == 4
    expected = analysis.pass_rates(run.criteria, run.jobs, by=("criterion_id",))
    assert {r.model_extra["criterion_id"]: r.pass_rate for r in doc.criteria} == dict(  # type: ignore[index]
        zip(expected["criterion_id"], expected["pass_rate"], strict=True)
    )
    assert [g.by for g in doc.groupings] == [["scenario_id"]]
    assert {r.model_extra["scenario_id"] for r in doc.groupings[0].rows} == {"late", "refund"}  # type: ignore[index]
    assert doc.spend.usd == pytest.approx(float(run.jobs["cost_usd"].sum()))
    assert main(["report", str(runs["a"]), "--json", "--by", "matrix.nope"]) == 2


def test_compare_json_has_its_shape_and_every_verdict_counted(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = printed(capsys, ["compare", str(runs["a"]), str(runs["b"]), "--json"])
    doc = CompareJSON.model_validate_json(out)
    assert set(doc.verdicts) == set(analysis.VERDICTS)
    assert sum(doc.verdicts.values()) == len(doc.rows) > 0
    assert all(r.verdict in analysis.VERDICTS for r in doc.rows)
    assert {s.measure: s.unit for s in doc.spend}["usd"] == "usd"
    usd = next(s for s in doc.spend if s.measure == "usd")
    assert isinstance(usd.a, float)  # a number, not "$0.0123"


def test_check_json_has_its_shape_and_exit_code(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = printed(capsys, ["check", str(runs["a"]), "--max-error-rate", "0.25", "--json"], 1)
    doc = CheckJSON.model_validate_json(out)
    assert (doc.exit_code, doc.failed) == (1, 1)
    (case,) = doc.cases
    assert (case.name, case.status, case.value) == ("job error rate", "failed", 0.5)
    assert case.counts == {"jobs": 8, "errors": 4}


def test_every_shape_is_closed() -> None:
    for name, shape in SHAPES.items():
        schema = shape.model_json_schema()
        assert schema.get("additionalProperties") is False, name
