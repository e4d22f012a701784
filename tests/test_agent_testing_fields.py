"""The simulation test's own fields a scenario sets: ``environment``, ``evaluation_model`` and
the tool mocks' ``parameter_conditions`` (the vendor's ``UnitTestToolCallParameter``), from the
config to the create body, the job key, and the local API's tool mock."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import polars as pl
import pytest
import vendor_schema
import yaml

from runner.backends import agent_testing as at
from runner.config import Config, ConfigError, load_config
from runner.jobs import iter_jobs
from runner.localapi import agent_testing as emulator
from runner.localapi.agents import load_agents
from runner.localapi.conversation import plan_conversation
from runner.localapi.server import LocalAPI, local_api_process
from runner.store import load_run
from runner.sweep import run_sweep
from runner.wire.agent_testing import FACTS_LABEL, FIRST_MESSAGE_LABEL

ROOT = Path(__file__).resolve().parents[1]
IS_LOST = [{"path": "order_id", "eval": {"type": "regex", "pattern": "^A-1001$"}}]


@pytest.fixture(scope="module")
def api() -> Iterator[LocalAPI]:
    with local_api_process(["--time-scale", "0.002", "--seed", "7"]) as server:
        yield server


def write(path: Path, base_url: str, scenarios: list[dict[str, Any]], **target: Any) -> Path:
    config = {
        "target": {
            "base_url": base_url,
            "backend": "agent-testing",
            "agent_testing": {"name_prefix": "fields", "poll_interval": 0.01},
            **target,
        },
        "run": {"name": "r", "concurrency": 4, "new_turns_limit": 10},
        "agents": [{"id": "agent_support"}],
        "scenarios": scenarios,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def order(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"s{i}",
        "first_message": f"Where is my order A-{1000 + i}?",
        "prompt": "Your order is late. You want to know when it arrives.",
        "user_dynamic_variables": {"order_number": f"A-{1000 + i}"},
        **extra,
    }


def lost_mock() -> dict[str, Any]:
    """``lookup_order`` fails for order A-1001 only; other orders reach the real tool."""
    return {
        "lookup_order": {
            "return_value": "no such order",
            "is_error": True,
            "parameter_conditions": IS_LOST,
        }
    }


def specs(cfg: Config) -> dict[str, at.TestSpec]:
    return {j.scenario_id: at.test_spec(j, cfg.target.agent_testing) for j in iter_jobs(cfg)}


# ---------------------------------------------------------------------------- config -> body


def test_scenario_fields_override_the_configs_and_make_their_own_tests(tmp_path: Path) -> None:
    scenarios = [
        order(0),
        order(1, environment="staging", evaluation_model="gpt-4o", tool_mocks=lost_mock()),
        order(2, environment="production"),
    ]
    target = {
        "agent_testing": {
            "name_prefix": "fields",
            "environment": "production",
            "evaluation_model": "gemini-2.5-flash",
        }
    }
    cfg = load_config(write(tmp_path / "c.yaml", "http://127.0.0.1:1", scenarios, **target))
    bodies = {sid: s.body for sid, s in specs(cfg).items()}
    assert bodies["s0"]["environment"] == "production"
    assert bodies["s0"]["evaluation_model"] == "gemini-2.5-flash"
    assert bodies["s1"]["environment"] == "staging" and bodies["s1"]["evaluation_model"] == "gpt-4o"
    assert bodies["s1"]["tool_mock_overrides"] == {
        "lookup_order": [
            {"mock_result": "no such order", "is_error": True, "parameter_conditions": IS_LOST}
        ]
    }
    for body in bodies.values():
        vendor_schema.assert_vendor_valid("CreateSimulationTestRequest", body)

    # the same scenario with another environment or judge is another test and another job
    def identity(**extra: Any) -> tuple[str, str]:
        path = write(tmp_path / "v.yaml", "http://127.0.0.1:1", [order(5, **extra)], **target)
        job = next(iter_jobs(load_config(path)))
        return job.key, at.test_spec(job, load_config(path).target.agent_testing).hash

    plain = identity()
    assert identity(environment="production")[1] == plain[1]  # the config's value: same test
    variants = [
        identity(environment="staging"),
        identity(evaluation_model="gpt-4o"),
        identity(tool_mocks=lost_mock()),
        identity(tool_mocks={"lookup_order": {"return_value": "no such order", "is_error": True}}),
    ]
    assert len({plain[1], *(h for _, h in variants)}) == 5
    assert len({k for k, _ in variants[:3]}) == 3 and plain[0] not in {k for k, _ in variants}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"environment": "staging"}, "environment"),
        ({"evaluation_model": "gpt-4o"}, "evaluation_model"),
        ({"tool_mocks": lost_mock()}, "tool_mocks.lookup_order.parameter_conditions"),
    ],
    ids=["environment", "evaluation_model", "parameter_conditions"],
)
def test_the_stream_backend_refuses_the_test_fields_before_any_request(
    tmp_path: Path, extra: dict[str, Any], field: str
) -> None:
    """The simulate endpoints have no such fields: a conditional mock would answer every call."""
    path = write(tmp_path / "s.yaml", "http://127.0.0.1:1", [order(0, **extra)], backend="stream")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"scenarios[0].{field}: the stream backend cannot express it" in str(info.value)


def test_scenarios_differing_only_in_their_test_fields_are_not_a_collision(
    tmp_path: Path,
) -> None:
    scenarios = [order(0), {**order(0), "id": "s0-staging", "environment": "staging"}]
    cfg = load_config(write(tmp_path / "c.yaml", "http://127.0.0.1:1", scenarios))
    assert len({s.hash for s in specs(cfg).values()}) == 2


@pytest.mark.parametrize(
    ("mock", "field"),
    [
        (
            {"parameter_conditions": [{"path": "order_id", "eval": {"type": "fuzzy"}}]},
            "parameter_conditions[0].eval",
        ),
        (
            {
                "parameter_conditions": [
                    {"path": "order_id", "eval": {"type": "regex", "pattern": "A-("}}
                ]
            },
            "parameter_conditions[0].eval.regex.pattern",
        ),
        (
            {"parameter_conditions": [{"path": "", "eval": {"type": "anything"}}]},
            "parameter_conditions[0].path",
        ),
        (
            {"parameter_conditions": [{"path": "x", "eval": {"type": "exact"}}]},
            "parameter_conditions[0].eval.exact.expected_value",
        ),
        (
            {"parameter_conditions": [{"eval": {"type": "anything"}, "path": "x", "when": 1}]},
            "parameter_conditions[0].when",
        ),
    ],
    ids=["unknown-type", "bad-regex", "empty-path", "missing-value", "unknown-key"],
)
def test_a_bad_parameter_condition_fails_at_load_naming_the_field(
    tmp_path: Path, mock: dict[str, Any], field: str
) -> None:
    path = write(
        tmp_path / "c.yaml", "http://127.0.0.1:1", [order(0, tool_mocks={"lookup_order": mock})]
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert f"scenarios[0].tool_mocks.lookup_order.{field}:" in message


def two_mocks() -> dict[str, Any]:
    """``lookup_order`` answers A-1001 "lost", A-1002 "delivered"; other orders: the real tool."""
    return {
        "lookup_order": [
            {"return_value": "lost", "is_error": True, "parameter_conditions": IS_LOST},
            {
                "return_value": "delivered",
                "parameter_conditions": [
                    {"path": "order_id", "eval": {"type": "exact", "expected_value": "A-1002"}}
                ],
            },
        ]
    }


def test_a_tool_with_several_mocks_sends_them_in_order(tmp_path: Path) -> None:
    """The vendor's ``tool_mock_overrides`` holds a list per tool: the config takes one too."""
    cfg = load_config(
        write(tmp_path / "c.yaml", "http://127.0.0.1:1", [order(0, tool_mocks=two_mocks())])
    )
    body = specs(cfg)["s0"].body
    overrides = body["tool_mock_overrides"]["lookup_order"]
    assert [(o["mock_result"], o["is_error"]) for o in overrides] == [
        ("lost", True),
        ("delivered", False),
    ]
    assert overrides[0]["parameter_conditions"] == IS_LOST
    assert body["tool_mock_config"]["mocked_tool_ids"] == ["lookup_order"]
    vendor_schema.assert_vendor_valid("CreateSimulationTestRequest", body)
    # the list with its first mock alone is another test
    one = {"lookup_order": two_mocks()["lookup_order"][:1]}
    alone = load_config(
        write(tmp_path / "d.yaml", "http://127.0.0.1:1", [order(0, tool_mocks=one)])
    )
    assert specs(alone)["s0"].hash != specs(cfg)["s0"].hash


def test_several_mocks_of_a_tool_are_refused_by_the_stream_backend(tmp_path: Path) -> None:
    mocks = {"lookup_order": [{"return_value": "a"}, {"return_value": "b"}]}
    path = write(
        tmp_path / "s.yaml", "http://127.0.0.1:1", [order(0, tool_mocks=mocks)], backend="stream"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert (
        "scenarios[0].tool_mocks.lookup_order: the stream backend takes one mock per tool"
        in message
    )
    # a list of one is the single form, which every backend takes
    one = {"lookup_order": [{"return_value": "a"}]}
    ok = write(
        tmp_path / "o.yaml", "http://127.0.0.1:1", [order(0, tool_mocks=one)], backend="stream"
    )
    assert load_config(ok).scenarios[0].mocks()["lookup_order"][0].return_value == "a"


@pytest.mark.parametrize(
    ("mocks", "field"),
    [
        ([{"return_value": "a"}, {"is_error": "maybe"}], "tool_mocks.lookup_order[1].is_error"),
        ([], "tool_mocks.lookup_order"),
        ([{"retrun_value": "a"}], "tool_mocks.lookup_order[0].retrun_value"),
    ],
    ids=["bad-field", "empty", "misspelt"],
)
def test_a_bad_mock_in_a_list_is_named_by_its_index(
    tmp_path: Path, mocks: list[Any], field: str
) -> None:
    path = write(
        tmp_path / "c.yaml", "http://127.0.0.1:1", [order(0, tool_mocks={"lookup_order": mocks})]
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and f"scenarios[0].{field}:" in message
    if "retrun" in field:
        assert "did you mean 'return_value'" in message


@pytest.mark.parametrize("bad", [{"environment": ""}, {"evaluation_model": ""}])
def test_an_empty_scenario_environment_or_judge_fails_at_load(
    tmp_path: Path, bad: dict[str, Any]
) -> None:
    path = write(tmp_path / "c.yaml", "http://127.0.0.1:1", [order(0, **bad)])
    with pytest.raises(ConfigError, match=rf"scenarios\[0\]\.{next(iter(bad))}: "):
        load_config(path)


# ---------------------------------------------------------------------------- the local API


def test_the_local_api_answers_a_call_with_the_first_mock_whose_conditions_pass() -> None:
    def condition(kind: str, **fields: Any) -> Any:
        return emulator.ParameterCondition.model_validate(
            {"path": "order.id", "eval": {"type": kind, **fields}}
        )

    params = {"order": {"id": "A-1001", "qty": 2}}
    assert emulator.condition_met(condition("exact", expected_value="A-1001"), params)
    assert not emulator.condition_met(condition("exact", expected_value="A-1002"), params)
    assert emulator.condition_met(condition("regex", pattern=r"\d{4}$"), params)
    assert not emulator.condition_met(condition("regex", pattern="^B"), params)
    assert emulator.condition_met(condition("anything"), params)
    assert not emulator.condition_met(condition("anything"), {"order": {}})  # absent
    assert emulator.condition_met(condition("llm", description="an order id"), params)

    body = emulator.CreateSimulationTestBody.model_validate(
        {
            "name": "t",
            "simulation_scenario": "Your order A-1001 is late.",
            "success_conditions": ["ok"],
            "tool_mock_config": {
                "mocking_strategy": "selected",
                "fallback_strategy": "call_real_tool",
                "mocked_tool_ids": ["lookup_order"],
            },
            "tool_mock_overrides": {
                "lookup_order": [
                    {"mock_result": "lost", "is_error": True, "parameter_conditions": IS_LOST},
                    {
                        "mock_result": "late",
                        "parameter_conditions": [
                            {"path": "order_id", "eval": {"type": "exact", "expected_value": "A-1"}}
                        ],
                    },
                ]
            },
        }
    )
    # conditional tools are the resolver's, not the unconditional mocks'
    request = emulator.simulation_request(body, ["lookup_order"])
    assert not request.simulation_specification.tool_mock_config
    mock = emulator.tool_mock(body)
    assert mock is not None
    lost = mock("lookup_order", {"order_id": "A-1001"})
    assert lost is not None and (lost.default_return_value, lost.default_is_error) == ("lost", True)
    late = mock("lookup_order", {"order_id": "A-1"})
    assert late is not None and late.default_return_value == "late"
    assert mock("lookup_order", {"order_id": "A-7"}) is None  # call_real_tool
    assert mock("other_tool", {}) is None
    strict = body.model_copy(
        update={
            "tool_mock_config": body.tool_mock_config.model_copy(
                update={"fallback_strategy": "raise_error"}
            )
        }
    )
    unmatched = emulator.tool_mock(strict)
    assert unmatched is not None
    refused = unmatched("lookup_order", {"order_id": "A-7"})
    assert refused is not None and refused.default_is_error

    # and in planned conversations, every lookup of order A-1001 gets the matching mock
    agent = load_agents(ROOT / "configs" / "agents.yaml")["agent_support"]
    scenario = (
        "Your order is late; you want to know when it arrives.\n\n"
        + FIRST_MESSAGE_LABEL
        + '"Where is my order A-1001?"\n'
        + FACTS_LABEL
        + '{"order_number":"A-1001"}'
    )
    facts = body.model_copy(update={"simulation_scenario": scenario, "simulation_max_turns": 12})
    lookups = [
        (r.result_value, r.is_error)
        for seed in range(5)
        for m in plan_conversation(
            agent,
            emulator.simulation_request(facts),
            random.Random(seed),
            tool_mock=emulator.tool_mock(facts),
        ).messages
        for r in m.message.tool_results
        if r.tool_name == "lookup_order"
    ]
    assert lookups and set(lookups) == {("lost", True)}


def test_a_sweep_sends_the_fields_and_the_local_api_honours_the_conditions(
    tmp_path: Path, api: LocalAPI
) -> None:
    scenarios = [
        order(0, tool_mocks=lost_mock()),
        order(1, tool_mocks=lost_mock(), environment="staging", evaluation_model="gpt-4o"),
    ]
    cfg = load_config(write(tmp_path / "c.yaml", api.base_url, scenarios))
    report = anyio.run(lambda: run_sweep(cfg, results_root=tmp_path / "r", progress=False))
    run = load_run(report.run_dir)
    assert isinstance(run.jobs, pl.DataFrame) and run.jobs["status"].to_list() == ["ok", "ok"]

    # the tests on the server carry the fields
    listed = httpx.get(
        f"{api.base_url}/v1/convai/agent-testing", params={"search": "fields", "page_size": 100}
    ).json()["tests"]
    by_scenario = {t["name"].split(" ")[1]: t["id"] for t in listed}
    s1 = httpx.get(f"{api.base_url}/v1/convai/agent-testing/{by_scenario['s1']}").json()
    assert s1["environment"] == "staging" and s1["evaluation_model"] == "gpt-4o"
    assert s1["tool_mock_overrides"]["lookup_order"][0]["parameter_conditions"] == IS_LOST

    # the mock answered order A-1001 only; A-1000 reached the agent's own tool
    messages = run.messages.join(run.jobs.select("job_key", "scenario_id"), on="job_key")
    tool = {
        row["scenario_id"]: (r["result_value"], r["is_error"])
        for row in messages.iter_rows(named=True)
        for r in row["tool_results"] or []
        if r["tool_name"] == "lookup_order"
    }
    assert tool["s1"] == ("no such order", True)
    assert json.loads(tool["s0"][0])["status"] == "in transit" and tool["s0"][1] is False
