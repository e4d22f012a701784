"""The runner records each agent-testing job's ``triggered_guardrails`` (SDK 2.78) in the jobs
table: the local API fires its scope guardrail when the agent answers out of scope."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import yaml

from runner.config import load_config
from runner.localapi.server import local_api_process
from runner.store import load_run
from runner.sweep import run_sweep


def test_triggered_guardrails_are_recorded_per_job(tmp_path: Path) -> None:
    with local_api_process(["--time-scale", "0.0005", "--seed", "3"]) as api:
        config: dict[str, Any] = {
            "target": {
                "base_url": api.base_url,
                "backend": "agent-testing",
                "agent_testing": {"poll_interval": 0.02, "poll_interval_max": 0.1},
            },
            "run": {"name": "guardrails", "concurrency": 8, "repeats": 12},
            "agents": [{"id": "agent_support_lite"}],
            "scenarios": [
                {
                    "id": "weather",
                    "first_message": "What's the weather in Lisbon this weekend?",
                    "prompt": "You ask about the weather.",
                    "criteria": [
                        {"id": "scope", "name": "Scope", "conversation_goal_prompt": "In scope."}
                    ],
                }
            ],
        }
        path = tmp_path / "guardrails.yaml"
        path.write_text(yaml.safe_dump(config))
        cfg = load_config(path)
        report = anyio.run(lambda: run_sweep(cfg, results_root=tmp_path / "r", progress=False))
    jobs = load_run(report.run_dir).jobs
    assert jobs.height == 12 and set(jobs["status"]) == {"ok"}
    fired = jobs["triggered_guardrails"].to_list()
    assert set(fired) == {"", "Stay within scope"}, fired
