"""Agent variants: ``agents[].branch_id`` and the agent-side matrix axes, sent as the run's
``branch_id`` / ``agent_config_override``, end to end against the local API (whose
conversation model honours them: a weaker LLM scores lower)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import polars as pl
import pytest
import yaml

import runner
from runner.cli import main as cli_main
from runner.config import ConfigError, load_config
from runner.jobs import iter_jobs, job_key
from runner.localapi.server import LocalAPI, local_api_process
from runner.store import load_run
from runner.sweep import run_sweep

FAST_POLL = {"poll_interval": 0.02, "poll_interval_max": 0.1}


@pytest.fixture(scope="module")
def api() -> Iterator[LocalAPI]:
    with local_api_process(["--time-scale", "0.0005", "--seed", "11"]) as server:
        yield server


def write(path: Path, base_url: str, **extra: Any) -> Path:
    config: dict[str, Any] = {
        "target": {
            "base_url": base_url,
            "backend": "agent-testing",
            "agent_testing": {"name_prefix": path.stem, **FAST_POLL},
        },
        "run": {"name": path.stem, "concurrency": 16, "repeats": 50, "new_turns_limit": 8},
        "agents": [{"id": "agent_support"}],
        "scenarios": [
            {
                "id": f"late{i}",
                "first_message": f"Where is my order A-104{i}? It is late.",
                "prompt": f"Your order A-104{i} is late; you want to know when it arrives.",
                "criteria": [
                    {
                        "id": "resolved",
                        "name": "Resolved",
                        "conversation_goal_prompt": "The agent resolved the order issue.",
                    }
                ],
            }
            for i in range(2)
        ],
    }
    for key, value in extra.items():
        config[key] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_agent_axes_are_columns_keys_and_the_override(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path / "c.yaml",
            "http://127.0.0.1:1",
            matrix={"agent.llm": ["gemini-2.5-flash", "gemini-2.0-flash-lite"]},
        )
    )
    jobs = [j for j in iter_jobs(cfg) if j.repeat == 0 and j.scenario_id == "late0"]
    assert [dict(j.matrix)["agent.llm"] for j in jobs] == [
        "gemini-2.5-flash",
        "gemini-2.0-flash-lite",
    ]
    # same request body, different job keys: the override is part of "to whom"
    assert jobs[0].body == jobs[1].body and jobs[0].key != jobs[1].key
    assert jobs[1].agent_override == {
        "conversation_config": {"agent": {"prompt": {"llm": "gemini-2.0-flash-lite"}}},
        "platform_settings": {},
    }
    assert jobs[1].key == job_key("agent_support", jobs[1].body, 0, override=jobs[1].agent_override)
    # without a variant the key is what it always was
    plain = load_config(write(tmp_path / "p.yaml", "http://127.0.0.1:1"))
    job = next(iter_jobs(plain))
    assert job.key == job_key("agent_support", job.body, 0) and job.agent_override is None


@pytest.mark.parametrize("backend", ["stream", "buffered"])
def test_simulate_backends_refuse_agent_variants_in_one_line(tmp_path: Path, backend: str) -> None:
    path = write(
        tmp_path / "c.yaml",
        "http://127.0.0.1:1",
        matrix={"agent.temperature": [0.2, 0.9]},
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, {"target.backend": backend})
    message = str(err.value)
    assert "\n" not in message
    assert "matrix.agent.temperature" in message and "agent-testing" in message
    path = write(
        tmp_path / "b.yaml",
        "http://127.0.0.1:1",
        agents=[{"id": "agent_support", "branch_id": "agtbrch_support_lite_llm"}],
    )
    with pytest.raises(ConfigError, match=r"agents\[0\]\.branch_id: .*agent-testing"):
        load_config(path, {"target.backend": backend})


def test_an_llm_override_sweep_changes_pass_rates_and_compare_shows_it(
    tmp_path: Path, api: LocalAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    runs = {}
    for name, llm in (("strong", "gemini-2.5-flash"), ("weak", "gemini-2.0-flash-lite")):
        cfg = load_config(
            write(tmp_path / f"{name}.yaml", api.base_url, matrix={"agent.llm": [llm]})
        )
        report = anyio.run(lambda cfg=cfg: run_sweep(cfg, results_root=results, progress=False))
        runs[name] = report.run_dir
        run = load_run(report.run_dir)
        assert set(run.jobs["status"]) == {"ok"} and run.jobs.height == 100
        assert set(run.jobs["matrix.agent.llm"]) == {llm}
    rates = {
        name: runner.pass_rates(load_run(d).criteria, load_run(d).jobs, by=["criterion_id"])
        for name, d in runs.items()
    }
    strong = rates["strong"]["pass_rate"][0]
    weak = rates["weak"]["pass_rate"][0]
    assert strong - weak > 0.15, (strong, weak)
    # compare A -> B flags it
    code = cli_main(["compare", str(runs["strong"]), str(runs["weak"])])
    out = capsys.readouterr().out
    assert "regression" in out, out
    assert code == 0


def test_one_run_with_both_llms_reports_by_the_axis_and_checks_by_it(
    tmp_path: Path, api: LocalAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = load_config(
        write(
            tmp_path / "ab.yaml",
            api.base_url,
            matrix={"agent.llm": ["gemini-2.5-flash", "gemini-2.0-flash-lite"]},
        )
    )
    report = anyio.run(lambda: run_sweep(cfg, results_root=tmp_path / "r", progress=False))
    run = load_run(report.run_dir)
    assert run.jobs.height == 200 and set(run.jobs["status"]) == {"ok"}
    by = runner.pass_rates(run.criteria, run.jobs, by=["matrix.agent.llm"])
    rate = dict(zip(by["matrix.agent.llm"], by["pass_rate"], strict=True))
    assert rate["gemini-2.5-flash"] - rate["gemini-2.0-flash-lite"] > 0.15
    # report --by and check --by take the axis
    assert cli_main(["report", str(report.run_dir), "--by", "matrix.agent.llm"]) == 0
    assert "gemini-2.0-flash-lite" in capsys.readouterr().out
    code = cli_main(
        ["check", str(report.run_dir), "--min-pass-rate", "0.8", "--by", "matrix.agent.llm"]
    )
    assert code == 1  # the weak LLM's group fails the gate, the strong one's passes


def test_a_branch_runs_on_the_branch(tmp_path: Path, api: LocalAPI) -> None:
    cfg = load_config(
        write(
            tmp_path / "br.yaml",
            api.base_url,
            agents=[
                {"id": "agent_support", "label": "main"},
                {"id": "agent_support", "branch_id": "agtbrch_support_lite_llm", "label": "br"},
            ],
        )
    )
    report = anyio.run(lambda: run_sweep(cfg, results_root=tmp_path / "r", progress=False))
    run = load_run(report.run_dir)
    assert run.jobs.height == 200 and set(run.jobs["status"]) == {"ok"}
    by = runner.pass_rates(run.criteria, run.jobs, by=["agent_label"])
    rate = dict(zip(by["agent_label"], by["pass_rate"], strict=True))
    assert rate["main"] - rate["br"] > 0.15, rate
    # the server saw the branch on the invocations it ran
    records = [
        json.loads(line) for line in (report.run_dir / "invocations.jsonl").read_text().splitlines()
    ]
    assert len(records) == 4 and len({r["variant"] for r in records}) == 2
    import httpx

    listed = httpx.get(
        f"{api.base_url}/v1/convai/test-invocations",
        params={"branch_id": "agtbrch_support_lite_llm", "search": "br "},
    ).json()["results"]
    assert any(r["id"] in {x["invocation_id"] for x in records} for r in listed)
    assert pl.Series(run.jobs["agent_id"]).unique().to_list() == ["agent_support"]
