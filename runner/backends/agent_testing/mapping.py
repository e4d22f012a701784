"""Job -> simulation test, test run -> result rows (pure; see the package docstring).

``test_spec`` builds the create-request body of the test a job runs and the content hash that
names it; ``run_result`` turns a finished run into the ``SimulationResult`` every backend
returns, so the store and the analysis see the same tables whichever API ran the job.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from runner.backends.agent_testing.keys import HASH_LEN
from runner.backends.base import BucketRecord, SimulationResult, Timings
from runner.config import AgentTestingConfig, canonical_json
from runner.errors import Action, AttemptError, ErrorKind, Failure
from runner.jobs import Job
from runner.wire.agent_testing import (
    CONDITIONS_ID,
    FACTS_LABEL,
    FIRST_MESSAGE_LABEL,
    LANGUAGE_LABEL,
    MAX_TURNS,
    ConditionResult,
    TestInvocation,
    TestRun,
    guardrail_names,
)
from runner.wire.simulate import Analysis, CriterionResult, Result

_LABEL_MAX = 100


# ---------------------------------------------------------------------------- job -> test


@dataclass(frozen=True, slots=True)
class TestSpec:
    """The simulation test one job runs: its content hash, name and create-request body."""

    __test__ = False  # not a pytest test class, whatever its name

    hash: str
    name: str
    body: dict[str, Any]
    criterion_name: str
    """Name of the merged criterion: the names of the criteria it merges."""


def _fill(text: str, variables: dict[str, Any]) -> str:
    """``{{name}}`` from the user's variables, as the simulate endpoints fill the persona."""

    def value(match: re.Match[str]) -> str:
        found = variables.get(match.group(1))
        if found is None:
            return match.group(0)
        return found if isinstance(found, str) else json.dumps(found)

    return re.sub(r"\{\{\s*([^{}]*?)\s*\}\}", value, text)


def scenario_text(body: dict[str, Any]) -> str:
    """``simulation_scenario``: the persona and situation, then labelled lines for the first
    message (JSON-quoted), a non-English language and the user's own variables (JSON), which
    have no field of their own in a simulation test."""
    spec = body["simulation_specification"]
    user = spec["simulated_user_config"]
    placeholders = (user.get("dynamic_variables") or {}).get("dynamic_variable_placeholders") or {}
    variables = {**(spec.get("dynamic_variables") or {}), **placeholders}
    lines = [_fill((user.get("prompt") or {}).get("prompt", ""), variables).strip()]
    extra = []
    if user.get("first_message"):
        first = _fill(user["first_message"], variables)
        extra.append(FIRST_MESSAGE_LABEL + json.dumps(first, ensure_ascii=False))
    if user.get("language", "en") != "en":
        extra.append(LANGUAGE_LABEL + user["language"])
    if placeholders:
        extra.append(FACTS_LABEL + canonical_json(placeholders))
    if extra:
        lines += ["", *extra]
    return "\n".join(lines).strip()


def _tool_mocks(spec: dict[str, Any], own: dict[str, list[Any]]) -> dict[str, Any]:
    """A ``selected`` mocking strategy: one override per mocked tool from its result, or the
    scenario's own overrides for the tool (several, or with ``parameter_conditions``)."""
    mocks: dict[str, Any] = spec.get("tool_mock_config") or {}
    if not mocks:
        return {}

    def overrides(name: str, mock: dict[str, Any]) -> list[dict[str, Any]]:
        if own.get(name):
            return own[name]
        return [
            {
                "mock_result": mock.get("default_return_value", "Tool Called."),
                "is_error": mock.get("default_is_error", False),
            }
        ]

    return {
        "tool_mock_config": {
            "mocking_strategy": "selected",
            "fallback_strategy": "call_real_tool",
            "mocked_tool_ids": sorted(mocks),
        },
        "tool_mock_overrides": {
            name: overrides(name, mock) for name, mock in sorted(mocks.items())
        },
    }


def job_label(job: Job, *, agent_axes: bool = False) -> str:
    """Scenario and cell; a test's name leaves the agent axes out (one test serves every agent
    variant), an invocation's name keeps them."""
    label = job.scenario_id
    cell = [(a, v) for a, v in job.matrix if agent_axes or not a.startswith("agent.")]
    if cell:
        label += " " + ",".join(f"{axis}={value}" for axis, value in cell)
    label = " ".join(label.replace("[", "(").replace("]", ")").split())
    return label if len(label) <= _LABEL_MAX else label[: _LABEL_MAX - 1] + "…"


def test_spec(job: Job, options: AgentTestingConfig) -> TestSpec:
    """The simulation test for ``job`` (the same for every agent and repeat).

    The hash covers the job's request body and the test built from it (the scenario's own
    ``environment``, ``evaluation_model`` and parameter conditions included, which override
    the config's), so a changed scenario, cell or mapping is a new test, and two cells the API
    cannot tell apart (e.g. differing only in temperature) are still two tests.
    """
    body = job.body
    own = job.test_fields or {}
    spec = body["simulation_specification"]
    user = spec["simulated_user_config"]
    criteria = body.get("extra_evaluation_criteria") or []
    conditions = [c["conversation_goal_prompt"] for c in criteria] or [
        options.default_success_condition
    ]
    test: dict[str, Any] = {
        "type": "simulation",
        "simulation_scenario": scenario_text(body),
        "success_conditions": conditions,
        "simulation_max_turns": max(1, min(int(body.get("new_turns_limit", 5)), MAX_TURNS)),
    }
    if spec.get("partial_conversation_history"):
        test["chat_history"] = spec["partial_conversation_history"]
    if spec.get("dynamic_variables"):
        test["dynamic_variables"] = spec["dynamic_variables"]
    test.update(_tool_mocks(spec, own.get("tool_mock_overrides") or {}))
    llm = (user.get("prompt") or {}).get("llm")
    if llm:
        test["simulated_user_model"] = llm
    evaluation_model = own.get("evaluation_model") or options.evaluation_model
    if evaluation_model:
        test["evaluation_model"] = evaluation_model
    environment = own.get("environment") or options.environment
    if environment:
        test["environment"] = environment
    if options.folder_id:
        test["parent_folder_id"] = options.folder_id
    digest = hashlib.sha256(canonical_json({"body": body, "test": test}).encode()).hexdigest()
    test_hash = digest[:HASH_LEN]
    name = f"{options.name_prefix} {job_label(job)} [{test_hash}]"
    names = [c.get("name") or c["id"] for c in criteria] or ["default success condition"]
    return TestSpec(
        hash=test_hash,
        name=name,
        body={"name": name, **test},
        criterion_name="; ".join(names),
    )


def parse_test_hash(name: str, prefix: str) -> str | None:
    """The content hash in a test name this prefix owns, else None (not ours: never touched)."""
    if not name.startswith(prefix + " "):
        return None
    match = re.search(rf" \[([0-9a-f]{{{HASH_LEN}}})\]$", name)
    return match.group(1) if match else None


# ---------------------------------------------------------------------------- run -> result


def _rationale_text(condition: ConditionResult | None, status: str) -> tuple[str, str]:
    """(summary, rationale): the summary, then each rationale message on its own line."""
    rationale = condition.rationale if condition else None
    summary = (rationale.summary if rationale else None) or f"test run {status}"
    messages = [m for m in (rationale.messages or []) if m] if rationale else []
    return summary, "\n".join([summary, *(f"- {m}" for m in messages)])


def run_result(
    run: TestRun,
    *,
    criterion_name: str,
    buckets: list[BucketRecord],
    total_secs: float | None,
) -> SimulationResult:
    """A finished (passed / failed) test run as a ``SimulationResult`` (see the module doc)."""
    condition = run.condition_result
    if condition is not None:
        result: Result = condition.result
    else:
        result = "success" if run.status == "passed" else "failure"
    summary, rationale = _rationale_text(condition, run.status)
    messages = list(run.agent_responses or [])
    analysis = Analysis(
        call_successful=result,
        transcript_summary=summary,
        evaluation_criteria_results={
            CONDITIONS_ID: CriterionResult(
                criteria_id=CONDITIONS_ID, result=result, rationale=rationale
            )
        },
        call_summary_title=buckets[0].title if buckets else None,
    )
    return SimulationResult(
        http_status=200,
        messages=messages,
        arrivals=[None] * len(messages),
        analysis=analysis,
        timings=Timings(total=total_secs, frames=None),
        credits_used=None if run.credits_used is None else round(run.credits_used),
        charging=run.charging,
        triggered_guardrails=guardrail_names(run),
        criterion_names={CONDITIONS_ID: criterion_name},
        buckets=buckets,
    )


def run_buckets(invocation: TestInvocation, run: TestRun) -> list[BucketRecord]:
    """The invocation's result buckets that hold this run (its ``buckets`` rows)."""
    return [
        BucketRecord(
            invocation_id=invocation.id,
            test_id=group.test_id,
            test_run_id=run.test_run_id,
            title=bucket.title,
            reason=bucket.reason,
            status=bucket.status,
            runs=len(bucket.test_run_ids),
        )
        for group in invocation.result_groups or []
        for bucket in group.buckets
        if run.test_run_id in bucket.test_run_ids
    ]


def cancelled_error(invocation_id: str, run_id: str | None) -> AttemptError:
    """A cancelled run (or an invocation cancelled before this job's run): not retried."""
    what = f"test run {run_id}" if run_id else "its test run"
    return AttemptError(
        Failure(
            ErrorKind.CANCELLED,
            Action.FAIL_JOB,
            f"{what} of test invocation {invocation_id} was cancelled",
        )
    )
