"""A scenario in a matrix cell as the exact request body sent, and its canonical JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from runner.config.models import Config, ScenarioSpec
from runner.wire.simulate import (
    DynamicVariablesConfig,
    EvaluationCriterion,
    PromptConfig,
    SimulatedUserConfig,
    SimulationRequest,
    SimulationSpecification,
    ToolMockConfig,
)


def encode_body(body: Mapping[str, Any]) -> bytes:
    """A request body as the exact bytes sent."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces: the same data always gives the same text (and digest)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def build_body(
    cfg: Config, spec: ScenarioSpec, cell: tuple[tuple[str, Any], ...]
) -> dict[str, Any]:
    """The exact request body for one scenario in one matrix cell."""
    fields: dict[str, Any] = {
        "first_message": spec.first_message,
        "language": spec.language,
        "llm": spec.llm,
        "temperature": spec.temperature,
        "new_turns_limit": spec.new_turns_limit or cfg.run.new_turns_limit,
    }
    dynamic = dict(spec.dynamic_variables)
    placeholders = dict(spec.user_dynamic_variables)
    for axis, value in cell:
        head, dot, rest = axis.partition(".")
        if head == "agent":
            continue  # the agent's side: ``agent_override``, not the request body
        if head == "dynamic_variables" and dot:
            dynamic[rest] = value
        elif head == "user_dynamic_variables" and dot:
            placeholders[rest] = value
        else:
            fields[axis] = float(value) if axis == "temperature" else value
    criteria = [*cfg.criteria, *spec.criteria]
    request = SimulationRequest(
        simulation_specification=SimulationSpecification(
            simulated_user_config=SimulatedUserConfig(
                first_message=fields["first_message"],
                language=fields["language"],
                prompt=PromptConfig(
                    prompt=spec.prompt, llm=fields["llm"], temperature=fields["temperature"]
                ),
                dynamic_variables=(
                    DynamicVariablesConfig(dynamic_variable_placeholders=placeholders)
                    if placeholders
                    else None
                ),
            ),
            tool_mock_config=(
                {
                    name: ToolMockConfig(
                        default_return_value=mocks[0].return_value,
                        default_is_error=mocks[0].is_error,
                    )
                    for name, mocks in spec.mocks().items()
                }
                or None
            ),
            partial_conversation_history=spec.history or None,
            dynamic_variables=dynamic or None,
        ),
        extra_evaluation_criteria=(
            [EvaluationCriterion.model_validate(c.model_dump()) for c in criteria] or None
        ),
        new_turns_limit=fields["new_turns_limit"],
    )
    return request.to_json_body()


def simulation_test_fields(cfg: Config, spec: ScenarioSpec) -> dict[str, Any] | None:
    """The simulation test's own fields the scenario sets, which a simulate body has no room
    for: ``environment``, ``evaluation_model`` and, by tool, the ``tool_mock_overrides`` of
    a tool with several mocks or with ``parameter_conditions``. Agent-testing only (None with
    other backends, which send none of them), so a job's key changes with them only there."""
    if cfg.target.backend != "agent-testing":
        return None
    fields: dict[str, Any] = {}
    if spec.environment is not None:
        fields["environment"] = spec.environment
    if spec.evaluation_model is not None:
        fields["evaluation_model"] = spec.evaluation_model
    overrides = {
        tool: [m.override() for m in mocks]
        for tool, mocks in spec.mocks().items()
        if len(mocks) > 1 or mocks[0].parameter_conditions
    }
    if overrides:
        fields["tool_mock_overrides"] = overrides
    return fields or None


def agent_override(cell: tuple[tuple[str, Any], ...]) -> dict[str, Any] | None:
    """The ``agent_config_override`` (``AdhocAgentConfigOverrideForTestRequestModel``) the
    cell's agent axes describe, or None: ``agent.llm``, ``agent.temperature`` and
    ``agent.prompt`` go to ``conversation_config.agent.prompt``, ``agent.first_message`` to
    ``conversation_config.agent``."""
    prompt: dict[str, Any] = {}
    agent: dict[str, Any] = {}
    for axis, value in cell:
        if axis == "agent.llm":
            prompt["llm"] = value
        elif axis == "agent.temperature":
            prompt["temperature"] = float(value)
        elif axis == "agent.prompt":
            prompt["prompt"] = value
        elif axis == "agent.first_message":
            agent["first_message"] = value
    if prompt:
        agent["prompt"] = prompt
    if not agent:
        return None
    return {"conversation_config": {"agent": agent}, "platform_settings": {}}
