"""Issue 29, defect 10: a stream run and an agent-testing run of the same sweep are comparable.
``compare`` warns that they measure different criteria and compares the conversation-level
verdict (every criterion passed) under one name; latency rows a backend cannot measure are not
printed. Both runs against the local API on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

import runner
from runner import analysis
from runner.cli import main
from runner.localapi.server import local_api_process
from runner.report.summary import summary_lines
from runner.report.terminal import measured_latency
from runner.store import load_run


def test_the_conversation_verdict_is_every_criterion_passed() -> None:
    criteria = pl.DataFrame(
        {
            "job_key": ["a", "a", "b", "b", "c", "c"],
            "criterion_id": ["x", "y", "x", "y", "x", "y"],
            "result": ["success", "success", "success", "failure", "success", "unknown"],
        }
    )
    verdicts = analysis.conversation_verdicts(criteria)
    assert verdicts.rows() == [
        ("a", analysis.CONVERSATION, "success"),
        ("b", analysis.CONVERSATION, "failure"),
        ("c", analysis.CONVERSATION, "unknown"),
    ]
    same, same_b, notes = analysis.align_criteria(criteria, criteria, "stream", "stream")
    assert notes == [] and same is criteria and same_b is criteria
    vendor = pl.DataFrame(
        {"job_key": ["d"], "criterion_id": ["success_conditions"], "result": ["failure"]}
    )
    a, b, notes = analysis.align_criteria(criteria, vendor, "stream", "agent-testing")
    assert notes[0] == (
        "A and B measure different criteria; only in A: x, y; only in B: success_conditions"
    )
    assert notes[1].startswith("A ran on stream, B on agent-testing: comparing conversation_passed")
    assert set(a["criterion_id"]) == set(b["criterion_id"]) == {analysis.CONVERSATION}


def test_latency_rows_a_backend_cannot_measure_are_dropped() -> None:
    latency = pl.DataFrame(
        {"metric": ["time_to_first_frame", "total", "queue_wait"], "n": [0, 5, 5]}
    )
    assert measured_latency(latency, "agent-testing")["metric"].to_list() == ["queue_wait"]
    assert measured_latency(latency, "stream")["metric"].to_list() == ["total", "queue_wait"]


def write_config(path: Path, base_url: str, backend: str) -> Path:
    config: dict[str, Any] = {
        "target": {
            "base_url": base_url,
            "backend": backend,
            "agent_testing": {"poll_interval": 0.01, "poll_interval_max": 0.05},
        },
        "run": {"concurrency": 6, "repeats": 4, "new_turns_limit": 6, "seed": 2},
        "agents": [{"id": "agent_support"}],
        "scenarios": [
            {"id": f"s{i}", "first_message": f"Where is my order A-{100 + i}?"} for i in range(4)
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_a_stream_and_an_agent_testing_run_compare_on_the_conversation_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELEVENLABS_API_KEY", "local-test-key")
    with local_api_process(["--time-scale", "0", "--seed", "6"]) as api:
        runs = {
            backend: runner.run(
                write_config(tmp_path / f"{backend}.yaml", api.base_url, backend),
                name=backend,
                results_root=tmp_path,
                progress=False,
                base_url=api.base_url,
            ).run_dir
            for backend in ("stream", "agent-testing")
        }
    capsys.readouterr()
    assert main(["compare", str(runs["stream"]), str(runs["agent-testing"])]) == 0
    out, err = capsys.readouterr()
    assert "warning: A and B measure different criteria" in err
    assert "comparing conversation_passed" in err
    assert "conversation_passed" in out and "insufficient data" not in out
    for backend, run_dir in runs.items():  # recorded on the job rows, by both backends
        run = load_run(run_dir)
        judged = run.criteria.filter(pl.col("source") != "assert")
        expected = analysis.conversation_results(judged)  # the rule, from the criteria
        recorded = run.jobs.filter(pl.col("status") == "ok").select(
            "job_key",
            pl.col("conversation_passed")
            .replace_strict(
                {True: "success", False: "failure"}, default="unknown", return_dtype=pl.String
            )
            .alias("result"),
        )
        assert recorded.sort("job_key").equals(expected), backend
        assert recorded["result"].n_unique() > 1, backend  # both verdicts occur
        check = ["check", str(run_dir), "--criterion", "conversation_passed", "--min-pass-rate"]
        assert main([*check, "0.01"]) == 0 and main([*check, "1"]) == 1, backend

    assert main(["report", str(runs["agent-testing"]), "--out", str(tmp_path / "r.html")]) == 0
    printed = capsys.readouterr().out
    assert "latency of ok jobs" in printed  # queue_wait is measured
    latency = printed.split("latency of ok jobs", 1)[1].split("latency: agent-testing", 1)[0]
    assert "total" not in latency and "time_to_first_frame" not in latency
    assert "latency: agent-testing times a job by polling" in printed

    def notes(name: str) -> list[str]:
        return [x for x in summary_lines(load_run(runs[name])) if x.startswith("note: ")]

    assert notes("agent-testing") and not notes("stream")
