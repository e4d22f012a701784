"""``assert:`` in the config (``runner.config.assertions``): what it builds, and what it keeps."""

from __future__ import annotations

from pathlib import Path

import yaml

from runner.assertions import AgentNeverMatches, AgentSays, ToolCalled, turns_from_messages
from runner.config import config_hash, load_config, parse_config
from runner.config.assertions import build_all, unknown_tools
from runner.wire.simulate import TranscriptMessage

REPO = Path(__file__).resolve().parents[1]
GOOD = REPO / "tests/configs/good/asserts.yaml"


def test_the_config_and_scenario_entries_build_the_pure_kinds() -> None:
    cfg = load_config(GOOD)
    scenario = cfg.scenarios[0]
    built = build_all(cfg.assert_, scenario.assert_)  # type: ignore[union-attr]
    assert [a.id for a in built] == [
        "no_card_numbers",
        "short_call",
        "fast_first_reply",
        "refund_called",
        "no_false_approval",
        "quotes_eta",
    ]
    refund, approval, eta = built[3:]
    assert isinstance(refund, ToolCalled) and refund.with_ == {
        "order_id": "B-55871",
        "$.meta.reason": "late",
    }
    assert isinstance(approval, AgentNeverMatches) and approval.mirrors == "honest_about_failure"
    assert isinstance(eta, AgentSays) and eta.after_tool == "lookup_order"
    said = [TranscriptMessage(role="agent", time_in_call_secs=0, message="Refund APPROVED!")]
    assert approval.evaluate(turns_from_messages(said)).result == "failure"


def test_an_empty_assert_list_keeps_the_config_hash() -> None:
    raw = yaml.safe_load((REPO / "configs/example.yaml").read_text())
    path = REPO / "configs/example.yaml"
    with_empty = {**raw, "assert": []}
    assert config_hash(parse_config(with_empty, path)) == config_hash(load_config(path))
    with_one = {**raw, "assert": [{"id": "short", "max_turns": 8}]}
    assert config_hash(parse_config(with_one, path)) != config_hash(load_config(path))


def test_repeats_of_may_name_an_assertion() -> None:
    raw = yaml.safe_load(GOOD.read_text())
    raw["run"] = {"repeats": {"max": 5, "pass_rate": 0.8, "of": ["refund_called", "short_call"]}}
    assert parse_config(raw, GOOD).run.sequential is not None


def test_unknown_tools_one_line_each() -> None:
    cfg = load_config(GOOD)
    lines = unknown_tools(cfg.scenarios[0].assert_, ["issue_refund"])  # type: ignore[union-attr]
    assert lines == [
        "assert quotes_eta: after_tool: no agent has a tool 'lookup_order' (issue_refund)"
    ]
