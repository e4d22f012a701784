"""Part of a sweep: ``run --agent / --scenario / --tag`` (globs, repeatable) pick jobs without
changing their keys, so the full run afterwards sends only the rest; a pattern that matches
nothing is one line naming it, before anything is sent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.config import ConfigError, load_config
from runner.config.selection import Selection
from runner.jobs import iter_jobs
from runner.localapi.server import local_api_process
from runner.plan import planned_total, select_jobs, sweep_size
from runner.store import load_run

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = [
    {"id": "order_late", "prompt": "Late order.", "tags": ["orders", "slow"]},
    {"id": "order_lost", "prompt": "Lost order.", "tags": ["orders"]},
    {"id": "refund", "prompt": "Refund please.", "tags": ["refunds"]},
    {"id": "book", "prompt": "A table for two.", "tags": ["bookings"]},
]


def write_config(tmp_path: Path, base_url: str = "local") -> Path:
    config = {
        "target": {"base_url": base_url},
        "run": {"name": "part", "concurrency": 4, "new_turns_limit": 4, "repeats": 2},
        "agents": [
            {"id": "agent_support", "label": "support"},
            {"id": "agent_booking", "label": "booking"},
        ],
        "scenarios": SCENARIOS,
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_a_selection_picks_jobs_by_agent_scenario_and_tag_with_the_sweeps_keys(
    tmp_path: Path,
) -> None:
    cfg = load_config(write_config(tmp_path))
    every = {job.key: job for job in iter_jobs(cfg)}
    assert len(every) == 16

    def picked(selection: Selection, limit: int | None = None) -> list[tuple[str, str, int]]:
        part = cfg.select(selection)
        jobs = list(select_jobs(part, limit, set()))
        assert {job.key for job in jobs} <= set(every)  # keys are the sweep's
        assert sweep_size(part, limit) == len(jobs) == planned_total(part, limit, set())[0]
        return [(job.agent_label, job.scenario_id, job.repeat) for job in jobs]

    by_tag = picked(Selection(tags=("ord*",)))
    assert {(a, s) for a, s, _ in by_tag} == {
        (a, s) for a in ("support", "booking") for s in ("order_late", "order_lost")
    }
    # kinds combine; patterns of one kind are alternatives; an agent by id or by label
    assert {(a, s) for a, s, _ in picked(Selection(agents=("agent_sup*",), tags=("slow",)))} == {
        ("support", "order_late")
    }
    assert {s for _, s, _ in picked(Selection(scenarios=("refund", "book")))} == {"refund", "book"}
    assert {a for a, _, _ in picked(Selection(agents=("booking",)))} == {"booking"}
    # --limit counts within the part
    assert len(picked(Selection(tags=("orders",)), limit=3)) == 3
    assert not cfg.selection and cfg.select(Selection(tags=("orders",))).selection


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (Selection(agents=("nobody",)), "--agent 'nobody' matches no agent of the config"),
        (Selection(scenarios=("x*",)), "--scenario 'x*' matches no scenario of the config"),
        (Selection(tags=("urgent",)), "--tag 'urgent' matches no tag of the config (tags: "),
        (
            Selection(scenarios=("refund",), tags=("orders",)),
            "--scenario refund --tag orders: no scenario matches every option together",
        ),
    ],
)
def test_a_pattern_that_matches_nothing_is_one_line(
    tmp_path: Path, selection: Selection, message: str
) -> None:
    cfg = load_config(write_config(tmp_path))
    with pytest.raises(ConfigError) as caught:
        cfg.select(selection)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", "run", *args, "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )


def test_a_part_then_the_full_run_sends_only_the_rest(tmp_path: Path) -> None:
    with local_api_process(["--time-scale", "0", "--seed", "4"]) as api:
        config = str(write_config(tmp_path, api.base_url))
        results = ["--results", str(tmp_path / "r")]
        part = cli(config, *results, "--agent", "support", "--tag", "orders", "--tag", "book*")
        assert part.returncode == 0, part.stderr
        assert "completed: 6 job(s) ok" in part.stderr
        assert api.stats()["simulate_requests"] == 6
        first = set(load_run(tmp_path / "r" / "part").jobs["job_key"])

        whole = cli(config, *results)
        assert whole.returncode == 0, whole.stderr
        assert "completed: 10 job(s) ok, 0 in error, 6 done before" in whole.stderr
        assert api.stats()["simulate_requests"] == 16  # only the other 10 were sent
        jobs = load_run(tmp_path / "r" / "part").jobs
        assert jobs.height == 16 and first <= set(jobs["job_key"])

        nothing = subprocess.run(
            [sys.executable, "-m", "runner", "run", config, *results, "--tag", "nope"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert nothing.returncode == 2
        assert nothing.stderr.startswith("error: --tag 'nope' matches no tag of the config")
        assert api.stats()["simulate_requests"] == 16
