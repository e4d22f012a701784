"""The agent-testing emulator's runs played in the background: each run queues for a slot,
plays its conversation for its simulated duration, is judged; an invocation's runs are bucketed
once all are done (``repeat_count > 1``), and a cancelled run stops where it is."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections import Counter
from typing import Any

from runner.localapi.agents import AgentDef
from runner.localapi.conversation import (
    ConversationPlan,
    message_json,
    plan_conversation,
)
from runner.localapi.faults import (
    derive_seed,
)
from runner.localapi.judge import call_outcome
from runner.localapi.pricing import conversation_cost
from runner.localapi.state import LocalAPIState
from runner.localapi.testbodies import (
    TOOL_TEST_TURNS,
    CreateSimulationTestBody,
    CreateToolTestBody,
    clip,
    simulation_request,
    tool_call_verdict,
    tool_mock,
    triggered_guardrails,
)
from runner.localapi.testruns import Invocation, TestRun, unix_now
from runner.localapi.truth import case_label
from runner.wire.simulate import (
    SimulatedUserConfig,
    SimulationRequest,
    SimulationSpecification,
)


class Playback:
    """The runs of one server's invocations, played in the background."""

    def __init__(self, state: LocalAPIState) -> None:
        self.state = state
        self.counts: Counter[str] = Counter()
        self.run_counts: dict[bytes, int] = {}
        self.finished: list[dict[str, Any]] = []
        """Every run that finished: its ids, test name and wall-clock end (the benchmark
        measures how long after this the client has the result)."""
        self._slots: asyncio.Semaphore | None = None
        self._background: set[asyncio.Task[None]] = set()

    def _plan(self, invocation: Invocation, run: TestRun, agent: AgentDef) -> ConversationPlan:
        """The run's conversation, judged (with the judge's noise) and recorded by the state."""
        test, body = run.test, run.test.body
        assert isinstance(body, CreateSimulationTestBody)
        tools = [i.tool.name for i in agent.intents if i.tool is not None]
        request = simulation_request(body, tools)
        canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        key = hashlib.sha256(f"{agent.agent_id}\0{canonical}".encode()).digest()
        n = self.run_counts.get(key, 0)
        self.run_counts[key] = n + 1
        seed = derive_seed(self.state.seed, "agent-testing", agent.agent_id, canonical, n)
        settings = self.state.settings
        mock = tool_mock(body)
        plan = plan_conversation(
            agent, request, random.Random(seed), settings.timing, mock, settings.user_drift
        )
        identity = ["test", agent.agent_id, invocation.branch_id, invocation.override, canonical]
        label = case_label(
            agent,
            request,
            kind="agent-testing",
            branch_id=invocation.branch_id,
            override=invocation.override,
            test_name=test.body.name,
        )
        case = self.state.case(identity, agent, request, mock, label)
        return self.state.serve(case, plan, run.id)

    def _plan_tool_test(self, agent: AgentDef, body: CreateToolTestBody) -> ConversationPlan:
        """The agent continues the test's chat history for a few messages."""
        request = SimulationRequest(
            simulation_specification=SimulationSpecification(
                simulated_user_config=SimulatedUserConfig(),
                partial_conversation_history=body.chat_history or None,
                dynamic_variables=body.dynamic_variables or None,
            ),
            new_turns_limit=TOOL_TEST_TURNS,
        )
        canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True)
        key = hashlib.sha256(f"{agent.agent_id}\0{canonical}".encode()).digest()
        n = self.run_counts.get(key, 0)
        self.run_counts[key] = n + 1
        seed = derive_seed(self.state.seed, "tool-test", agent.agent_id, canonical, n)
        return plan_conversation(agent, request, random.Random(seed), self.state.settings.timing)

    def _finish(self, run: TestRun, plan: ConversationPlan) -> None:
        analysis = plan.analysis
        body = run.test.body
        if isinstance(body, CreateToolTestBody):
            merged, messages = tool_call_verdict(body, plan)
            summary = messages[0]
        else:
            n = len(body.conditions)
            results = [
                analysis.evaluation_criteria_results[f"condition_{i}"]
                for i in range(1, n + 1)
                if f"condition_{i}" in analysis.evaluation_criteria_results
            ]
            merged = call_outcome(results)
            met = sum(r.result == "success" for r in results)
            messages = [r.rationale for r in results]
            summary = f"{met} of {len(results)} success condition(s) met. "
            summary += analysis.transcript_summary
        usd, _, credits = conversation_cost(m.message.llm_usage for m in plan.messages)
        run.status = "passed" if merged == "success" else "failed"
        run.responses = [message_json(m.message) for m in plan.messages]
        run.condition = {"result": merged, "rationale": {"messages": messages, "summary": summary}}
        run.guardrails = triggered_guardrails(plan)
        run.credits = credits
        run.price = usd
        self.state.stats.bill(usd, credits)
        run.title = analysis.call_summary_title
        run.updated_at = unix_now()
        self.finished.append(
            {
                "test_run_id": run.id,
                "test_id": run.test.id,
                "test_name": run.test.body.name,
                "finished_at": time.time(),
            }
        )
        self.state.stats.messages_sent += len(plan.messages)

    async def _execute(self, invocation: Invocation, run: TestRun, agent: AgentDef) -> None:
        """One run in the background: queue for a slot, play the conversation, judge it."""
        stats = self.state.stats
        cap = self.state.settings.max_concurrency
        if cap is not None and self._slots is None:
            self._slots = asyncio.Semaphore(cap)
        try:
            if self._slots is not None:
                await self._slots.acquire()
            try:
                self.counts["runs_started"] += 1
                stats.simulation_started()
                completed = False
                try:
                    if isinstance(run.test.body, CreateToolTestBody):
                        plan = self._plan_tool_test(agent, run.test.body)
                    else:
                        plan = self._plan(invocation, run, agent)
                    delay = sum(m.delay_secs for m in plan.messages) + plan.analysis_delay_secs
                    await asyncio.sleep(delay * self.state.settings.time_scale)
                    self._finish(run, plan)
                    completed = True
                    self.counts["runs_completed"] += 1
                finally:
                    stats.simulation_ended(completed=completed)
            finally:
                if self._slots is not None:
                    self._slots.release()
        except asyncio.CancelledError:
            self._cancel_run(run)  # cancelling this task is how a run is cancelled
        finally:
            invocation.tasks.pop(run.id, None)
            self._after_run(invocation)

    def _cancel_run(self, run: TestRun) -> None:
        if run.status == "pending":
            run.status = "cancelled"
            run.updated_at = unix_now()
            self.counts["runs_cancelled"] += 1

    def _after_run(self, invocation: Invocation) -> None:
        """Once every run is done: bucket them (``repeat_count > 1``) after the analysis delay."""
        if invocation.repeat_count <= 1 or invocation.bucketing_status is not None:
            return
        if any(run.status == "pending" for run in invocation.runs):
            return
        invocation.bucketing_status = "pending"
        delay = self.state.settings.timing.analysis_secs * self.state.settings.time_scale
        self._spawn(self._bucket_later(invocation, delay))

    async def _bucket_later(self, invocation: Invocation, delay: float) -> None:
        await asyncio.sleep(delay)
        groups = []
        for test_id in dict.fromkeys(run.test.id for run in invocation.runs):
            runs = [r for r in invocation.runs if r.test.id == test_id]
            judged = [r for r in runs if r.status in ("passed", "failed")]
            buckets: dict[tuple[str, str], list[TestRun]] = {}
            for run in judged:
                buckets.setdefault((run.status, run.title or "Conversation"), []).append(run)
            groups.append(
                {
                    "test_id": test_id,
                    "test_name": runs[0].test.body.name,
                    "buckets": [
                        {
                            "test_run_ids": [r.id for r in members],
                            "title": f"{status.capitalize()}: {title}",
                            "reason": f"{len(members)} of {len(runs)} run(s) {status}. "
                            + clip(
                                (members[0].condition or {})
                                .get("rationale", {})
                                .get("summary", ""),
                                240,
                            ),
                            "status": status,
                        }
                        for (status, title), members in buckets.items()
                    ],
                }
            )
        invocation.result_groups = groups
        any_judged = any(g["buckets"] for g in groups)
        invocation.bucketing_status = "completed" if any_judged else "failed"

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)  # a reference, or the loop may drop the task
        task.add_done_callback(self._background.discard)
        return task
