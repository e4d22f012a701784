"""The sweep config: loading, one-line errors, and expansion into jobs with stable keys."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import types
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import vendor_schema
import yaml

from runner import config as config_module
from runner import jobs as jobs_module
from runner.config import (
    ConfigError,
    config_hash,
    iter_scenarios,
    load_config,
    resolved_config,
)
from runner.jobs import Job, count_jobs, iter_jobs

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ["configs/example.yaml", "configs/sweep.yaml", "configs/elevenlabs.yaml"]
GOOD = REPO / "tests/configs/good"
BAD = REPO / "tests/configs/bad"
BODY_SCHEMA = (
    "Body_Simulates_a_conversation__Stream__v1_convai_agents__agent_id__simulate_conversation_"
    "stream_post"
)


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Error messages show paths relative to the working directory, as a user types them."""
    monkeypatch.chdir(REPO)


def assert_vendor_valid(bodies: list[dict[str, Any]]) -> None:
    validator = vendor_schema.validator(BODY_SCHEMA)
    distinct = {json.dumps(b, sort_keys=True): b for b in bodies}
    for body in distinct.values():
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        assert not errors, f"{errors[0].message} at {list(errors[0].absolute_path)}"


def write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def base_config(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "agents": [{"id": "agent_a"}, {"id": "agent_b", "label": "b"}],
        "criteria": [{"id": "polite", "name": "Polite", "conversation_goal_prompt": "Polite."}],
        "scenarios": [
            {"id": "s1", "prompt": "You want a refund for order A-1001."},
            {"id": "s2", "prompt": "You want a table for two.", "first_message": "Hi"},
            {"id": "s3", "prompt": "You ask about the weather.", "language": "es"},
        ],
        "run": {"repeats": 2},
    }
    data.update(extra)
    return data


def keys_by_identity(cfg: Any) -> dict[tuple[Any, ...], str]:
    return {(j.agent_id, j.scenario_id, j.matrix, j.repeat): j.key for j in iter_jobs(cfg)}


def independent_count(path: Path) -> int:
    """agents x scenarios x cells x repeats, counted from the raw files, not by the loader."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    scenarios = 0
    for entry in raw["scenarios"]:
        if "file" not in entry:
            scenarios += 1
            continue
        lines = (path.parent / entry["file"]).read_text(encoding="utf-8")
        if entry["file"].endswith(".jsonl"):
            scenarios += sum(1 for line in lines.splitlines() if line.strip())
        elif entry["file"].endswith(".csv"):
            import csv
            import io

            scenarios += sum(1 for row in csv.reader(io.StringIO(lines)) if row) - 1
        else:
            scenarios += len(yaml.safe_load(lines))
    cells = math.prod(len(v) for v in (raw.get("matrix") or {}).values())
    repeats = (raw.get("run") or {}).get("repeats", 1)
    return len(raw["agents"]) * scenarios * cells * repeats


# ---------------------------------------------------------------------------- shipped configs


@pytest.mark.parametrize("name", [*SHIPPED, "tests/configs/good/full.yaml"])
def test_config_loads_and_expands_to_unique_vendor_valid_jobs(name: str) -> None:
    cfg = load_config(name)
    jobs = list(iter_jobs(cfg))
    expected = independent_count(REPO / name)
    assert count_jobs(cfg) == len(jobs) == expected
    assert len({j.key for j in jobs}) == len(jobs)
    assert all(re.fullmatch(r"[0-9a-f]{24}", j.key) for j in jobs)
    assert all(j.body["new_turns_limit"] >= 1 for j in jobs)
    assert_vendor_valid([j.body for j in jobs])


def test_example_config_has_the_promised_shape() -> None:
    cfg = load_config("configs/example.yaml")
    assert cfg.target.is_local and cfg.run.concurrency == 8 and cfg.run.repeats == 3
    assert 0 < cfg.target.local.time_scale <= 0.1
    assert [a.id for a in cfg.agents] == ["agent_support", "agent_booking", "agent_support_lite"]
    scenarios = list(iter_scenarios(cfg))
    assert any(s.tool_mocks for s in scenarios)
    assert any(s.history for s in scenarios)
    assert any("off-topic" in s.tags for s in scenarios)
    assert any(isinstance(s, config_module.ScenarioFileRef) for s in cfg.scenarios)
    assert 2 <= len(cfg.criteria) <= 3


def test_example_agents_exist_in_the_local_api_agents_file() -> None:
    agents_file = REPO / "configs/agents.yaml"
    assert agents_file.exists(), "configs/agents.yaml, a tracked file, is missing"
    defined = {a["agent_id"] for a in yaml.safe_load(agents_file.read_text())["agents"]}
    for name in ("configs/example.yaml", "configs/sweep.yaml"):
        assert {a.id for a in load_config(name).agents} <= defined


def test_elevenlabs_config_targets_the_real_api_without_a_key() -> None:
    cfg = load_config("configs/elevenlabs.yaml")
    assert not cfg.target.is_local
    assert cfg.target.base_url == "https://api.elevenlabs.io"
    assert cfg.target.api_key_env == "ELEVENLABS_API_KEY"
    assert (
        cfg.run.concurrency == "auto"
        and cfg.run.max_concurrency == 30
        and cfg.target.timeouts.first_byte == 240
    )


def test_sweep_config_shows_the_matrix() -> None:
    cfg = load_config("configs/sweep.yaml")
    assert set(cfg.matrix) == {"language", "dynamic_variables.customer_tier"}
    assert 1000 <= count_jobs(cfg) <= 10_000 and cfg.run.concurrency >= 32
    assert (REPO / "configs/scenarios/sweep.jsonl").stat().st_size < 100_000


# ---------------------------------------------------------------------------- keys


def test_keys_do_not_depend_on_order_in_the_file(tmp_path: Path) -> None:
    data = base_config(matrix={"language": ["en", "fr"]})
    first = keys_by_identity(load_config(write(tmp_path / "a.yaml", data)))
    flipped = dict(data)
    flipped["agents"] = data["agents"][::-1]
    flipped["scenarios"] = data["scenarios"][::-1]
    flipped["matrix"] = {"language": ["fr", "en"]}
    second = keys_by_identity(load_config(write(tmp_path / "b.yaml", flipped)))
    assert first == second


def test_changing_a_body_field_changes_exactly_the_affected_keys(tmp_path: Path) -> None:
    data = base_config()
    before = keys_by_identity(load_config(write(tmp_path / "a.yaml", data)))
    data["scenarios"][1]["prompt"] = "You want a table for three."
    after = keys_by_identity(load_config(write(tmp_path / "a.yaml", data)))
    changed = {ident for ident in before if before[ident] != after[ident]}
    assert changed == {ident for ident in before if ident[1] == "s2"}
    assert changed  # the test above is not vacuous


def test_settings_that_are_not_sent_keep_every_key(tmp_path: Path) -> None:
    data = base_config()
    before = keys_by_identity(load_config(write(tmp_path / "a.yaml", data)))
    data["run"].update(concurrency=3, name="renamed", seed=9)
    data["agents"][1]["label"] = "other label"
    data["scenarios"][0]["tags"] = ["new-tag"]
    after = keys_by_identity(load_config(write(tmp_path / "a.yaml", data)))
    assert after == before


def test_global_settings_that_are_sent_change_every_key(tmp_path: Path) -> None:
    data = base_config()
    before = keys_by_identity(load_config(write(tmp_path / "a.yaml", data)))
    data["run"]["new_turns_limit"] = 20
    after = keys_by_identity(load_config(write(tmp_path / "a.yaml", data)))
    assert set(after) == set(before)
    assert all(after[i] != before[i] for i in before)


def test_adding_a_scenario_adds_only_new_keys(tmp_path: Path) -> None:
    data = base_config()
    before = keys_by_identity(load_config(write(tmp_path / "a.yaml", data)))
    data["scenarios"].insert(1, {"id": "s_new", "prompt": "You want to change your address."})
    after = keys_by_identity(load_config(write(tmp_path / "a.yaml", data)))
    assert {i: k for i, k in after.items() if i[1] != "s_new"} == before
    new_keys = {k for i, k in after.items() if i[1] == "s_new"}
    assert len(new_keys) == 2 * 2 and not new_keys & set(before.values())


def test_key_is_a_digest_of_agent_body_and_repeat(tmp_path: Path) -> None:
    import hashlib

    job = next(iter_jobs(load_config(write(tmp_path / "a.yaml", base_config()))))
    canonical = json.dumps(
        {"agent_id": job.agent_id, "body": job.body, "repeat": job.repeat},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert job.key == hashlib.sha256(canonical.encode()).hexdigest()[:24]


# ---------------------------------------------------------------------------- expansion


def test_jobs_are_repeat_major_then_scenario_cell_agent(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "a.yaml", base_config(matrix={"language": ["en", "fr"]})))
    order = [
        (j.repeat, j.scenario_id, dict(j.matrix)["language"], j.agent_id) for j in iter_jobs(cfg)
    ]
    expected = [
        (r, s, lang, a)
        for r in range(2)
        for s in ("s1", "s2", "s3")
        for lang in ("en", "fr")
        for a in ("agent_a", "agent_b")
    ]
    assert order == expected


def test_body_maps_every_scenario_field(tmp_path: Path) -> None:
    scenario = {
        "id": "full",
        "first_message": "Hello",
        "prompt": "You are Dana.",
        "llm": "gpt-4o-mini",
        "temperature": 0.4,
        "language": "de",
        "dynamic_variables": {"customer_name": "Dana", "vip": True},
        "user_dynamic_variables": {"order_number": "A-1"},
        "history": [{"role": "agent", "message": "Hi", "time_in_call_secs": 0}],
        "tool_mocks": {"lookup": {"return_value": {"ok": 1}, "is_error": True}, "other": "fine"},
        "criteria": [{"id": "own", "name": "Own", "conversation_goal_prompt": "Own goal."}],
        "tags": ["not-sent"],
    }
    cfg = load_config(write(tmp_path / "a.yaml", base_config(scenarios=[scenario])))
    job = next(iter_jobs(cfg))
    spec = job.body["simulation_specification"]
    user = spec["simulated_user_config"]
    assert user["first_message"] == "Hello" and user["language"] == "de"
    assert user["prompt"]["prompt"] == "You are Dana."
    assert user["prompt"]["llm"] == "gpt-4o-mini" and user["prompt"]["temperature"] == 0.4
    assert user["dynamic_variables"] == {"dynamic_variable_placeholders": {"order_number": "A-1"}}
    assert spec["dynamic_variables"] == {"customer_name": "Dana", "vip": True}
    assert spec["partial_conversation_history"][0]["message"] == "Hi"
    assert spec["tool_mock_config"] == {
        "lookup": {"default_return_value": '{"ok": 1}', "default_is_error": True},
        "other": {"default_return_value": "fine", "default_is_error": False},
    }
    assert [c["id"] for c in job.body["extra_evaluation_criteria"]] == ["polite", "own"]
    assert job.body["new_turns_limit"] == 12
    assert "not-sent" not in json.dumps(job.body)
    assert_vendor_valid([job.body])


def test_unset_optional_fields_are_left_out_of_the_body(tmp_path: Path) -> None:
    data = base_config(criteria=[], scenarios=[{"id": "bare"}])
    job = next(iter_jobs(load_config(write(tmp_path / "a.yaml", data))))
    spec = job.body["simulation_specification"]
    # The vendor's prompt.llm is an enum without null: it must only be sent when set.
    assert "llm" not in spec["simulated_user_config"]["prompt"]
    assert not {"tool_mock_config", "partial_conversation_history", "dynamic_variables"} & set(spec)
    assert "extra_evaluation_criteria" not in job.body
    assert job.body["new_turns_limit"] == 12
    assert_vendor_valid([job.body])
    with_null_llm = json.loads(json.dumps(job.body))
    with_null_llm["simulation_specification"]["simulated_user_config"]["prompt"]["llm"] = None
    assert list(vendor_schema.validator(BODY_SCHEMA).iter_errors(with_null_llm)), (
        "a null llm would be rejected"
    )


def test_matrix_cell_overrides_the_scenario(tmp_path: Path) -> None:
    data = base_config(
        scenarios=[
            {
                "id": "s",
                "language": "en",
                "new_turns_limit": 30,
                "dynamic_variables": {"tier": "silver", "keep": "me"},
            }
        ],
        matrix={
            "language": ["fr"],
            "new_turns_limit": [5],
            "temperature": [1],
            "dynamic_variables.tier": ["gold", 3],
            "user_dynamic_variables.mood": [True],
        },
    )
    jobs = list(iter_jobs(load_config(write(tmp_path / "a.yaml", data))))
    assert {dict(j.matrix)["dynamic_variables.tier"] for j in jobs} == {"gold", "3"}
    job = jobs[0]
    assert job.matrix == (
        ("dynamic_variables.tier", "gold"),
        ("language", "fr"),
        ("new_turns_limit", "5"),
        ("temperature", "1"),
        ("user_dynamic_variables.mood", "true"),
    )
    spec = job.body["simulation_specification"]
    user = spec["simulated_user_config"]
    assert user["language"] == "fr" and user["prompt"]["temperature"] == 1.0
    assert spec["dynamic_variables"] == {"tier": "gold", "keep": "me"}
    assert user["dynamic_variables"]["dynamic_variable_placeholders"] == {"mood": True}
    assert job.body["new_turns_limit"] == 5
    assert_vendor_valid([j.body for j in jobs])


def test_scenario_files_mix_with_inline_scenarios_in_order() -> None:
    cfg = load_config(GOOD / "full.yaml")
    specs = list(iter_scenarios(cfg))
    assert [s.id for s in specs] == [
        "inline_full",
        "inline_minimal",
        "jsonl_1",
        "jsonl_2",
        "csv_1",
        "csv_2",
        "yaml_1",
        "yaml_2",
    ]
    by_id = {s.id: s for s in specs}
    csv_1, csv_2 = by_id["csv_1"], by_id["csv_2"]
    assert csv_1.first_message == "Hello, a table please." and csv_1.temperature == 0.5
    assert csv_1.tags == ["bookings", "csv"]
    assert csv_1.dynamic_variables == {"customer_name": "Priya"}
    assert csv_1.user_dynamic_variables == {"party_size": "4"}
    assert csv_1.language == "en"  # an empty cell is the default
    assert csv_2.prompt == "You want to cancel\nyour booking." and csv_2.new_turns_limit == 3
    assert csv_2.language == "de" and csv_2.temperature is None
    assert by_id["jsonl_2"].tool_mocks["send_reset_link"].is_error is True
    assert by_id["yaml_2"].tags == ["menu"]


def count_bodies(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts request bodies built from here on (``["bodies"]``)."""
    built = Counter[str]()
    real = jobs_module.build_body

    def counting(*args: Any) -> dict[str, Any]:
        built["bodies"] += 1
        return real(*args)

    monkeypatch.setattr(jobs_module, "build_body", counting)
    return built


def test_jobs_carry_their_body_as_the_bytes_sent(tmp_path: Path) -> None:
    jobs = list(iter_jobs(load_config(write(tmp_path / "a.yaml", base_config()))))
    assert all(j.matrix == () for j in jobs)  # no matrix: one empty cell
    for job in jobs:
        assert json.loads(job.content) == job.body
    # one scenario and cell: every agent and repeat shares the body, encoded once
    same = [j for j in jobs if j.scenario_id == "s1"]
    assert len(same) == 4 and len({id(j.content) for j in same}) == 1
    with pytest.raises(AttributeError):
        jobs[0].key = "x"  # type: ignore[misc]


def test_job_keys_are_the_digest_of_agent_body_and_repeat(tmp_path: Path) -> None:
    """The key's definition, written out: results on disk (resume) depend on it never drifting."""
    import hashlib

    for job in iter_jobs(load_config(write(tmp_path / "a.yaml", base_config()))):
        payload = {"repeat": job.repeat, "body": job.body, "agent_id": job.agent_id}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert job.key == hashlib.sha256(text.encode()).hexdigest()[:24]


@pytest.mark.parametrize("reused", [0, 4096])
def test_reused_cells_give_the_same_jobs_as_streaming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reused: int
) -> None:
    """Small sweeps build each body once for all repeats; large ones stream again. Same jobs."""
    rows = [{"id": f"f{i}", "prompt": f"You want item {i}. Ünïcode ✓"} for i in range(5)]
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = base_config(
        scenarios=[{"file": "s.jsonl"}, {"id": "inline", "prompt": "You ask about hours."}],
        matrix={"language": ["en", "de"]},
        run={"repeats": 3},
    )
    cfg = load_config(write(tmp_path / "a.yaml", data))
    built = count_bodies(monkeypatch)
    monkeypatch.setattr(jobs_module, "REUSED_CELLS", reused)
    jobs = list(iter_jobs(cfg))
    assert len(jobs) == count_jobs(cfg) == 2 * 6 * 2 * 3
    assert built["bodies"] == 6 * 2 * (1 if reused else 3)
    expected = [
        (r, s, lang, a)
        for r in range(3)
        for s in [f"f{i}" for i in range(5)] + ["inline"]
        for lang in ["en", "de"]
        for a in ["agent_a", "agent_b"]
    ]
    assert [(j.repeat, j.scenario_id, dict(j.matrix)["language"], j.agent_id) for j in jobs] == (
        expected
    )
    assert len({j.key for j in jobs}) == len(jobs)
    monkeypatch.setattr(jobs_module, "REUSED_CELLS", 4096 - reused)
    assert [(j.key, j.content) for j in iter_jobs(cfg)] == [(j.key, j.content) for j in jobs]


def test_iter_jobs_is_lazy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = [f"v{i}" for i in range(100)]
    data = base_config(
        agents=[{"id": "agent_a"}],
        scenarios=[{"id": "s"}],
        run={"repeats": 10},
        matrix={"dynamic_variables.x": values, "dynamic_variables.y": values},
    )
    cfg = load_config(write(tmp_path / "a.yaml", data))
    assert count_jobs(cfg) == 100_000
    built = count_bodies(monkeypatch)
    jobs = iter_jobs(cfg)
    assert isinstance(jobs, types.GeneratorType)
    assert built["bodies"] == 0
    first = next(jobs)
    assert isinstance(first, Job) and first.matrix == (
        ("dynamic_variables.x", "v0"),
        ("dynamic_variables.y", "v0"),
    )
    assert built["bodies"] == 1


def test_count_jobs_builds_no_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(GOOD / "full.yaml")

    def boom(*args: Any) -> dict[str, Any]:
        raise AssertionError("count_jobs built a body")

    monkeypatch.setattr(jobs_module, "build_body", boom)
    assert count_jobs(cfg) == 2 * 8 * 32 * 2


def test_scenario_files_are_streamed_again_and_checked_unchanged(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "a"}\n{"id": "b", "prompt": "x"}\n', encoding="utf-8")
    data = base_config(agents=[{"id": "agent_a"}], scenarios=[{"file": "rows.jsonl"}])
    cfg = load_config(write(tmp_path / "c.yaml", data))
    jobs = iter_jobs(cfg)
    assert next(jobs).scenario_id == "a"
    # Appending after loading: the job stream notices instead of sending unchecked rows.
    with rows.open("a", encoding="utf-8") as handle:
        handle.write('{"id": "c", "temperature": "hot"}\n')
    with pytest.raises(ConfigError, match=r"rows\.jsonl:3: temperature"):
        list(jobs)
    rows.write_text('{"id": "a"}\n{"id": "b", "prompt": "y"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="changed since the config was loaded"):
        list(iter_jobs(cfg))


# ---------------------------------------------------------------------------- overrides, resolved


def test_overrides_apply_before_validation(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yaml", base_config())
    cfg = load_config(
        path,
        {
            "run.concurrency": "4",
            "run.name": "x",
            "target.timeouts.idle": 5,
            "matrix.language": ["en"],
        },
    )
    assert cfg.run.concurrency == 4 and cfg.run.name == "x"
    assert cfg.target.timeouts.idle == 5 and cfg.matrix == {"language": ["en"]}
    with pytest.raises(ConfigError) as info:
        load_config(path, {"run.concurrency": 0})
    assert str(info.value) == (
        f"{path}: run.concurrency: must be at least 1 (got 0) (set by an override)"
    )
    with pytest.raises(ConfigError, match=r"run\.bogus: unknown key"):
        load_config(path, {"run.bogus": 1})


def test_defaults_are_filled_in(tmp_path: Path) -> None:
    data = base_config(run={"seed": 7})
    cfg = load_config(write(tmp_path / "my-sweep.yaml", data))
    assert cfg.run.name == "my-sweep" and cfg.target.local.seed == 7
    assert cfg.source_path == (tmp_path / "my-sweep.yaml").absolute()
    assert cfg.resolve("x.jsonl") == tmp_path / "x.jsonl"


def test_resolved_config_is_json_with_defaults_and_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_live_secret_value_123")
    cfg = load_config(GOOD / "full.yaml")
    resolved = resolved_config(cfg)
    text = json.dumps(resolved)
    assert "sk_live_secret_value_123" not in text and "source_path" not in text
    assert resolved["target"]["api_key_env"] == "ELEVENLABS_API_KEY"
    assert resolved["target"]["timeouts"] == {
        "connect": 10.0,
        "first_byte": 60.0,
        "idle": 60.0,
        "total": 600.0,
    }
    assert resolved["run"]["name"] == "full" and resolved["run"]["retry"]["max_attempts"] == 5
    assert resolved["agents"][1] == {"id": "agent_booking", "label": "agent_booking"}
    files = [s for s in resolved["scenarios"] if "file" in s]
    assert [(f["file"], f["scenarios"]) for f in files] == [
        ("scenarios/rows.jsonl", 2),
        ("scenarios/rows.csv", 2),
        ("scenarios/rows.yaml", 2),
    ]


def test_config_hash_follows_scenario_file_content(tmp_path: Path) -> None:
    shutil.copytree(GOOD, tmp_path / "good")
    path = tmp_path / "good/full.yaml"
    first = config_hash(load_config(path))
    assert config_hash(load_config(path)) == first
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    rows = tmp_path / "good/scenarios/rows.yaml"
    rows.write_text(rows.read_text().replace("opening hours", "closing hours"))
    assert config_hash(load_config(path)) != first


# ---------------------------------------------------------------------------- broken configs


def _expectation(case: Path) -> tuple[str, str, str]:
    lines = case.read_text(encoding="utf-8").splitlines()
    match = re.fullmatch(r"# expect: (.+?) :: ?(.*)", lines[0] if lines else "")
    assert match, f"{case.name}: first line must be '# expect: <field> :: <problem>'"
    where = str(case.relative_to(REPO))
    if len(lines) > 1 and lines[1].startswith("# where: "):
        where = str((case.parent / lines[1].removeprefix("# where: ")).relative_to(REPO))
    return match.group(1), match.group(2), where


BAD_CASES = sorted(BAD.glob("*.yaml"))


def test_the_broken_corpus_is_big_enough() -> None:
    assert len(BAD_CASES) >= 20


@pytest.mark.parametrize("case", BAD_CASES, ids=[c.stem for c in BAD_CASES])
def test_broken_config_fails_with_one_readable_line(case: Path) -> None:
    field, problem, where = _expectation(case)
    with pytest.raises(ConfigError) as info:
        load_config(case.relative_to(REPO))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{where}:"), message
    assert field in message, message
    assert problem in message, message
    for pydantic_noise in ("validation error", "input_value", "errors.pydantic.dev", "type="):
        assert pydantic_noise not in message, message
    assert "3f9a8b7c6d5e" not in message and "a8F3kq92" not in message  # keys are never echoed


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("configs/does-not-exist.yaml")
    assert str(info.value) == "configs/does-not-exist.yaml: config file not found"


def test_unreadable_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "locked.yaml", base_config())
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root reads any file: refuse as the OS would for others
            real = Path.read_bytes

            def refuse(self: Path) -> bytes:
                if self == path:
                    raise PermissionError(13, "Permission denied")
                return real(self)

            monkeypatch.setattr(Path, "read_bytes", refuse)
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert str(info.value) == f"{path}: cannot read config file: permission denied"
    finally:
        path.chmod(0o644)


def test_unreadable_files_as_root_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """chmod does not stop root: simulate the refusal to check the message anyway."""
    path = write(tmp_path / "c.yaml", base_config(scenarios=[{"file": "rows.jsonl"}]))
    (tmp_path / "rows.jsonl").write_text('{"id": "a"}\n')
    real_open = Path.open

    def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == "rows.jsonl":
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)

    def read_bytes(self: Path) -> bytes:
        with refuse(self, "rb") as handle:
            return bytes(handle.read())

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{tmp_path}/rows.jsonl: cannot read scenario file: permission denied"


def test_did_you_mean_reaches_inside_scenario_files(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text('{"id": "a", "frist_message": "hi"}\n')
    path = write(tmp_path / "c.yaml", base_config(scenarios=[{"file": "rows.jsonl"}]))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{tmp_path}/rows.jsonl:1: frist_message: unknown key (did you mean 'first_message'?)"
    )
