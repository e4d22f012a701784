"""``python -m runner scenarios import`` (runner/importer) against the local API's production
history: the issue's done-when end to end (import, then a sweep over the file), the same bytes
on a second import, --since / --limit, redaction, --cut, 429s, and one-line bad input.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
import yaml

import runner
from runner.config.scenarios import Digest, iter_file
from runner.importer.redact import find_personal_data, redact_text
from runner.localapi.server import LocalAPI, start_local_api

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "configs" / "example.yaml"


def import_cmd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "runner", "scenarios", "import", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def api() -> Iterator[LocalAPI]:
    """One local API for the tests that pass --base-url (seed 0, as the default import's)."""
    server = start_local_api(["--time-scale", "0", "--seed", "0"])
    try:
        yield server
    finally:
        server.stop()


def entries(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, list)
    return data


def starts(path: Path) -> list[str]:
    """Start times from the comment line above each imported scenario."""
    return re.findall(r"^# conv_\w+ \(started (\S+),", path.read_text(), re.MULTILINE)


# ---------------------------------------------------------------------------- done-when


def test_imported_failures_fail_more_than_hand_written_and_separate_the_variants(
    tmp_path: Path,
) -> None:
    done = import_cmd(
        "--agent", "agent_support", "--failed", "--out", "regressions.yaml", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    n = len(entries(tmp_path / "regressions.yaml"))
    assert summary.startswith(f"read {n} conversations of agent_support") and n >= 10
    assert f"{n} new" in summary and "skipped 0" in summary
    assert (tmp_path / "results" / ".import-cache" / "local-seed0").is_dir()

    example = yaml.safe_load(EXAMPLE.read_text())
    hand = [s for s in example["scenarios"] if "id" in s]
    config = {
        "target": {"base_url": "local", "local": {"time_scale": 0}},
        "run": {"name": "regressions", "repeats": 2, "concurrency": 16, "new_turns_limit": 30},
        "agents": [{"id": "agent_support"}, {"id": "agent_support_lite"}],
        "scenarios": [*hand, {"file": "regressions.yaml"}],
    }
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    runner.run(tmp_path / "sweep.yaml", results_root=tmp_path / "results", progress=False)
    jobs = runner.load_run(tmp_path / "results" / "regressions").jobs
    jobs = jobs.collect() if isinstance(jobs, pl.LazyFrame) else jobs
    assert jobs.height == 2 * 2 * (len(hand) + n)
    rates = {
        (row["agent_id"], row["imported"]): row["failed"]
        for row in jobs.with_columns(imported=pl.col("scenario_id").str.starts_with("conv_"))
        .group_by("agent_id", "imported")
        .agg(failed=(pl.col("call_successful") == "failure").mean())
        .iter_rows(named=True)
    }
    # chosen because they failed: they fail more often than the hand-written ones ...
    assert rates["agent_support", True] > rates["agent_support", False] + 0.2
    # ... and they tell the variants apart: the stronger one passes more of them
    assert rates["agent_support", True] < rates["agent_support_lite", True]


# ---------------------------------------------------------------------------- the file


def test_importing_again_writes_the_same_bytes_and_updates_in_place(
    api: LocalAPI, tmp_path: Path
) -> None:
    args = ["--agent", "agent_support", "--failed", "--base-url", api.base_url]
    first = import_cmd(*args, "--out", "a.yaml", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    text = (tmp_path / "a.yaml").read_bytes()
    again = import_cmd(*args, "--out", "a.yaml", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    n = len(entries(tmp_path / "a.yaml"))
    assert f"0 new, 0 updated, {n} unchanged" in again.stdout
    assert f"{n} from the cache" in again.stdout
    assert (tmp_path / "a.yaml").read_bytes() == text
    fresh = import_cmd(*args, "--out", "b.yaml", "--no-cache", cwd=tmp_path)
    assert fresh.returncode == 0 and (tmp_path / "b.yaml").read_bytes() == text
    # a hand-written entry is kept, an imported one edited by hand is replaced, not duplicated
    data = entries(tmp_path / "a.yaml")
    data[0]["prompt"] = "edited"
    mine = {"id": "my_own", "prompt": "You want to know where your order is."}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump([mine, *data], sort_keys=False))
    third = import_cmd(*args, "--out", "a.yaml", cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert f"0 new, 1 updated, {n - 1} unchanged, 1 other entries kept" in third.stdout
    merged = entries(tmp_path / "a.yaml")
    assert [e["id"] for e in merged] == ["my_own", *[e["id"] for e in data]]
    assert merged[1:] == entries(tmp_path / "b.yaml")


def test_since_and_limit_narrow_the_import(api: LocalAPI, tmp_path: Path) -> None:
    base = ["--agent", "agent_support", "--base-url", api.base_url]
    assert import_cmd(*base, "--out", "all.yaml", cwd=tmp_path).returncode == 0
    everything = starts(tmp_path / "all.yaml")
    assert everything == sorted(everything, reverse=True) and len(everything) > 100
    since = import_cmd(*base, "--since", "2026-11-20", "--out", "since.yaml", cwd=tmp_path)
    assert since.returncode == 0, since.stderr
    narrowed = starts(tmp_path / "since.yaml")
    assert narrowed == [s for s in everything if s >= "2026-11-20"]
    assert 0 < len(narrowed) < len(everything)
    limited = import_cmd(*base, "--limit", "5", "--out", "five.yaml", cwd=tmp_path)
    assert limited.returncode == 0, limited.stderr
    assert starts(tmp_path / "five.yaml") == everything[:5]
    crit = import_cmd(*base, "--criterion", "order_verified", "--out", "c.yaml", cwd=tmp_path)
    assert crit.returncode == 0, crit.stderr
    for entry in entries(tmp_path / "c.yaml"):
        assert [c["id"] for c in entry["criteria"]] == ["order_verified"]


# ---------------------------------------------------------------------------- redaction

EMAIL_LIKE = re.compile(r"@")
LONG_DIGITS = re.compile(r"\d(?:[ ().+-]*\d){7,}")
"""Any run of 8+ digits, whatever separates them: an independent, blunter rule than redact's."""


def test_redaction_leaves_no_email_phone_or_card_number(api: LocalAPI, tmp_path: Path) -> None:
    base = ["--agent", "agent_support", "--base-url", api.base_url, "--limit", "120"]
    assert import_cmd(*base, "--no-redact", "--out", "raw.yaml", cwd=tmp_path).returncode == 0
    raw = (tmp_path / "raw.yaml").read_text()
    # the source conversations do hold personal data (else this test could not fail)
    assert EMAIL_LIKE.search(raw) and re.search(r"\+1 415 555 \d{4}", raw)
    assert re.search(r"\b\d{4} \d{4} \d{4} \d{4}\b", raw)
    done = import_cmd(*base, "--out", "safe.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    safe = (tmp_path / "safe.yaml").read_text()
    without_ids = re.sub(r"conv_\w+|source-hash:\w+|started \S+", "", safe)
    assert not EMAIL_LIKE.search(safe)
    assert not LONG_DIGITS.search(without_ids), LONG_DIGITS.search(without_ids)
    assert find_personal_data(safe) == []
    assert "[email]" in safe and "[phone]" in safe and "[card]" in safe
    assert len(entries(tmp_path / "safe.yaml")) == len(entries(tmp_path / "raw.yaml"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at dana.w+x@example.co.uk now", "mail me at [email] now"),
        ("card 4111 1111 1111 1111.", "card [card]."),
        ("card 4111-1111-1111-1111", "card [card]"),
        ("call +1 (415) 555-0134 please", "call [phone] please"),
        ("order A-10234 at 7:30 pm on 2026-11-03, 3 days", None),
        ('{"order_id": "A-77595", "eta_days": 2}', None),
    ],
)
def test_redaction_rules(text: str, expected: str | None) -> None:
    assert redact_text(text) == (text if expected is None else expected)


# ---------------------------------------------------------------------------- history cuts


def test_cut_replays_the_lead_up_to_the_first_failing_turn(api: LocalAPI, tmp_path: Path) -> None:
    base = ["--agent", "agent_support", "--failed", "--base-url", api.base_url]
    for cut in ("start", "first-failure"):
        done = import_cmd(*base, "--cut", cut, "--out", f"{cut}.yaml", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        specs = [s for _, s in iter_file(tmp_path / f"{cut}.yaml", "x", Digest())]
        assert specs and all(s.history for s in specs)
        for spec in specs:
            assert spec.first_message == ""
            if cut == "start":
                assert spec.history[-1].role == "user"
                assert [m.role for m in spec.history[:-1]] == ["agent"] * (len(spec.history) - 1)
    start = {s.id: s for _, s in iter_file(tmp_path / "start.yaml", "x", Digest())}
    first = [s for _, s in iter_file(tmp_path / "first-failure.yaml", "x", Digest())]
    longer = [s for s in first if len(s.history) > len(start[s.id].history)]
    assert longer, "no conversation was cut later than its opening"
    with httpx.Client(base_url=api.base_url, timeout=30) as c:
        for spec in longer[:10]:
            detail = c.get(f"/v1/convai/conversations/{spec.id}").json()
            k = len(spec.history)
            # the history is the transcript's start, and the turn cut off is the agent's
            assert [m.role for m in spec.history] == [m["role"] for m in detail["transcript"][:k]]
            assert detail["transcript"][k]["role"] == "agent"
    # the replay runs: the simulation continues from the lead-up and the agent speaks next
    sweep = {
        "target": {"base_url": api.base_url},
        "run": {"name": "cut", "repeats": 1, "concurrency": 8, "new_turns_limit": 20},
        "agents": [{"id": "agent_support"}],
        "scenarios": [{"file": "first-failure.yaml"}],
    }
    (tmp_path / "cut.yaml").write_text(yaml.safe_dump(sweep))
    runner.run(tmp_path / "cut.yaml", results_root=tmp_path / "results", progress=False)
    run = runner.load_run(tmp_path / "results" / "cut")
    jobs = run.jobs.collect() if isinstance(run.jobs, pl.LazyFrame) else run.jobs
    messages = run.messages.collect() if isinstance(run.messages, pl.LazyFrame) else run.messages
    assert jobs.height == len(first) and set(jobs["status"]) == {"ok"}
    opening = messages.filter(pl.col("index") == 0)
    assert opening.height == len(first) and set(opening["role"]) == {"agent"}


# ---------------------------------------------------------------------------- quota


def test_429s_are_retried_and_change_nothing(tmp_path: Path) -> None:
    busy = start_local_api(
        [
            "--time-scale", "0", "--seed", "0", "--retry-after", "0",
            "--fault-too-many-concurrent-requests", "0.3",
        ]
    )  # fmt: skip
    try:
        base = ["--agent", "agent_support", "--failed", "--no-cache"]
        done = import_cmd(*base, "--base-url", busy.base_url, "--out", "busy.yaml", cwd=tmp_path)
        faults = httpx.get(f"{busy.base_url}/_local/stats").json()
    finally:
        busy.stop()
    assert done.returncode == 0, done.stderr
    retried = int(re.search(r"(\d+) retried", done.stdout).group(1))  # type: ignore[union-attr]
    assert retried > 0
    assert faults["faults_injected"].get("too_many_concurrent_requests", 0) == retried
    calm = import_cmd(*base, "--out", "calm.yaml", cwd=tmp_path)
    assert calm.returncode == 0
    assert (tmp_path / "busy.yaml").read_bytes() == (tmp_path / "calm.yaml").read_bytes()


# ---------------------------------------------------------------------------- bad input


def test_bad_input_is_one_line_and_exit_2(api: LocalAPI, tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "not_scenarios.yaml").write_text("run: {}\n")
    url = ["--base-url", api.base_url]
    cases = {
        "--agent: unknown agent 'agent_nope'": ["--agent", "agent_nope", *url],
        "--since: '2026-13-01' is not a date": [
            "--agent",
            "agent_support",
            "--since",
            "2026-13-01",
        ],
        "--until: 'yesterday' is not a date": ["--agent", "agent_support", "--until", "yesterday"],
        "--out: cannot create": ["--agent", "agent_support", "--out", "a_file/out.yaml"],
        "is a directory": ["--agent", "agent_support", "--out", str(tmp_path)],
        "is not a scenario file": ["--agent", "agent_support", "--out", "not_scenarios.yaml"],
        "--limit: must be at least 1": ["--agent", "agent_support", "--limit", "0"],
        "--base-url": ["--agent", "agent_support", "--base-url", "ftp://x"],
    }
    for expected, args in cases.items():
        done = import_cmd(*args, cwd=tmp_path)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (args, done.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "configs").exists()  # nothing written for bad input


def test_a_conversation_without_transcript_is_skipped_with_its_reason() -> None:
    from runner.importer.build import Options, Skipped, build_scenario
    from runner.wire.conversations import Conversation

    conv = Conversation.model_validate(
        {
            "agent_id": "a",
            "conversation_id": "conv_1",
            "status": "done",
            "metadata": {"start_time_unix_secs": 0, "call_duration_secs": 0},
            "transcript": [],
        }
    )
    result = build_scenario(conv, {}, Options())
    assert isinstance(result, Skipped) and "no transcript" in result.reason


# ---------------------------------------------------------------------------- --as-tests


def test_as_tests_creates_simulation_tests_that_prune_recognises(tmp_path: Path) -> None:
    from elevenlabs import types as sdk
    from pydantic import TypeAdapter

    server = start_local_api(["--time-scale", "0", "--seed", "0"])
    try:
        args = ["--agent", "agent_support", "--failed", "--limit", "6", "--as-tests"]
        args += ["--base-url", server.base_url, "--out", "r.yaml"]
        first = import_cmd(*args, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert "6 created, 0 already there" in first.stdout
        again = import_cmd(*args, cwd=tmp_path)
        assert "0 created, 6 already there" in again.stdout
        with httpx.Client(base_url=server.base_url, timeout=30) as c:
            tests = c.get("/v1/convai/agent-testing").json()["tests"]
            assert len(tests) == 6
            ids = {e["id"] for e in entries(tmp_path / "r.yaml")}
            for test in tests:
                body = c.get(f"/v1/convai/agent-testing/{test['id']}").json()
                TypeAdapter(sdk.GetSimulationTestResponseModel).validate_python(body)
                meta = body["from_conversation_metadata"]
                assert meta["conversation_id"] in ids and meta["agent_id"] == "agent_support"
                assert test["name"].startswith(f"convsim/regressions {meta['conversation_id']} [")
        sweep = {
            "target": {
                "base_url": server.base_url,
                "backend": "agent-testing",
                "agent_testing": {"name_prefix": "convsim/regressions"},
            },
            "agents": [{"id": "agent_support"}],
            "scenarios": [{"file": "r.yaml"}],
        }
        (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        prune = [sys.executable, "-m", "runner", "tests", "prune", "sweep.yaml", "--dry-run"]
        kept = subprocess.run(prune, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert "would delete 0 test(s); kept 6" in kept.stdout, kept.stderr
        (tmp_path / "r.yaml").write_text(yaml.safe_dump(entries(tmp_path / "r.yaml")[2:]))
        stale = subprocess.run(prune, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert "would delete 2 test(s); kept 4" in stale.stdout, stale.stderr
    finally:
        server.stop()
    local = import_cmd("--agent", "agent_support", "--as-tests", cwd=tmp_path)
    assert local.returncode == 2 and "--as-tests" in local.stderr
