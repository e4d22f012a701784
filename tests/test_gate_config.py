"""The config's ``gate:`` block: one-line load errors naming the field; per-criterion and
pooled minimums judged like an independent count; ``run`` applies it at the end (exit 1,
JUnit on request) against the local API on 127.0.0.1; ``check`` reads it by default."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from runner import analysis
from runner.config import ConfigError, config_hash, load_config, resolved_config
from runner.gate import EXIT_FAILED, EXIT_PASSED, GateError, evaluate
from runner.localapi.server import local_api_process
from runner.schema import jobs_schema

ROOT = Path(__file__).resolve().parents[1]


def write_config(path: Path, gate: Any = None, base_url: str = "local", jobs: int = 6) -> Path:
    config: dict[str, Any] = {
        "target": {"base_url": base_url},
        "run": {"name": "gated", "concurrency": 3, "new_turns_limit": 4},
        "agents": [{"id": "agent_support"}],
        "scenarios": [{"id": f"s{i}", "prompt": f"Customer {i}."} for i in range(jobs)],
    }
    if gate is not None:
        config["gate"] = gate
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ({"min_pass_rate": 1.5}, "gate.min_pass_rate: must be at most 1 (got 1.5)"),
        ({"max_error_rate": -0.1}, "gate.max_error_rate: must be at least 0"),
        ({"max_cost": True}, "gate.max_cost: must be a number (got True)"),
        ({"criteria": {"a b": 0.5}}, "gate.criteria: key 'a b' must be a criterion id"),
        ({"criteria": {"c": 2}}, "gate.criteria.c: must be at most 1"),
        ({"min_pas_rate": 0.5}, "gate.min_pas_rate: unknown key (did you mean 'min_pass_rate'?)"),
        ({}, "gate: gives no threshold"),
    ],
)
def test_a_bad_gate_is_one_line_naming_the_field(
    tmp_path: Path, gate: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path / "c.yaml", gate))
    text = str(caught.value)
    assert message in text and "\n" not in text, text


def test_a_config_without_a_gate_keeps_its_hash(tmp_path: Path) -> None:
    plain = load_config(write_config(tmp_path / "a.yaml"))
    assert "gate" not in resolved_config(plain)
    gated = load_config(write_config(tmp_path / "b.yaml", {"max_error_rate": 0.1}))
    assert resolved_config(gated)["gate"]["max_error_rate"] == 0.1
    assert config_hash(gated) != config_hash(plain)


def frames(results: dict[str, list[str]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    n = max(len(v) for v in results.values())
    schema = jobs_schema([])
    rows = []
    for i in range(n):
        row: dict[str, Any] = dict.fromkeys(schema.names())
        row |= {
            "job_key": f"k{i}",
            "agent_id": "a",
            "agent_label": "a",
            "scenario_id": "s",
            "repeat": i,
            "status": "ok",
            "attempts": 1,
        }
        rows.append(row)
    criteria = pl.DataFrame(
        [
            {"job_key": f"k{i}", "criterion_id": c, "result": r}
            for c, values in results.items()
            for i, r in enumerate(values)
        ]
    )
    return criteria, pl.DataFrame(rows, schema=schema, orient="row")


def test_per_criterion_and_pooled_minimums() -> None:
    # c1 passes 8 of 10, c2 passes 5 of 10 (and 2 unknown): pooled 13 of 18 decided
    criteria, jobs = frames(
        {
            "c1": ["success"] * 8 + ["failure"] * 2,
            "c2": ["success"] * 5 + ["failure"] * 3 + ["unknown"] * 2,
        }
    )
    own = evaluate(criteria, jobs, min_pass_rate=0.7, criterion_minimums={"c2": 0.6})
    assert {c.name: c.status for c in own.cases} == {"c1": "passed", "c2": "passed"}
    assert {c.name: c.threshold for c in own.cases} == {"c1": 0.7, "c2": 0.6}
    stricter = evaluate(criteria, jobs, criterion_minimums={"c2": 0.63})  # 5/8 = 0.625
    assert [(c.name, c.status) for c in stricter.cases] == [("c2", "failed")]
    assert stricter.exit_code == EXIT_FAILED

    rate = 13 / 18
    pooled = evaluate(criteria, jobs, min_overall_pass_rate=rate)
    (case,) = pooled.cases
    assert (case.suite, case.status, case.value) == ("overall", "passed", pytest.approx(rate))
    assert evaluate(criteria, jobs, min_overall_pass_rate=rate + 1e-9).exit_code == EXIT_FAILED
    low = analysis.wilson_interval(13, 18)[0]
    bound = evaluate(criteria, jobs, min_overall_pass_rate=low, use_lower_bound=True)
    assert bound.exit_code == EXIT_PASSED and bound.cases[0].value == pytest.approx(low)
    with pytest.raises(GateError, match="no such criterion in this run: c9"):
        evaluate(criteria, jobs, criterion_minimums={"c9": 0.5})


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )


def test_run_applies_the_gate_and_check_reads_it(tmp_path: Path) -> None:
    # the local API prices every job, so a spend of at most $0 fails; no job errors
    gate = {"max_cost": 0, "max_error_rate": 0.5}
    with local_api_process(["--time-scale", "0", "--seed", "5"]) as api:
        config = write_config(tmp_path / "c.yaml", gate, base_url=api.base_url)
        junit = tmp_path / "gate.xml"
        results = ["--results", str(tmp_path / "r"), "--no-progress"]
        done = cli("run", str(config), *results, "--junit", str(junit))
        run_dir = tmp_path / "r" / "gated"
        assert done.returncode == 1, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("completed: 6 job(s) ok, 0 in error; gate FAILED: 1 of 2 case(s)")
        assert "FAIL total spend (USD): spent $" in done.stdout
        root = ET.fromstring(junit.read_text())
        assert (root.get("tests"), root.get("failures")) == ("2", "1")

        quiet = cli("run", str(config), *results, "--quiet")  # nothing left; the gate again
        assert quiet.returncode == 1 and quiet.stdout == ""
        assert len(quiet.stderr.strip().splitlines()) == 1

        # check: the recorded gate by default; a config's on request; flags over both
        assert cli("check", str(run_dir)).returncode == EXIT_FAILED
        passing = write_config(tmp_path / "p.yaml", {"max_error_rate": 0.5, "max_cost": 10})
        assert cli("check", str(run_dir), "--config", str(passing)).returncode == EXIT_PASSED
        assert cli("check", str(run_dir), "--max-error-rate", "0").returncode == EXIT_PASSED

        no_gate = write_config(tmp_path / "n.yaml", base_url=api.base_url)
        refused = cli("run", str(no_gate), *results, "--junit", str(junit))
        assert refused.returncode == 2
        assert "has no gate: block" in refused.stderr
