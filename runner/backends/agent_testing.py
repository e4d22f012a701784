"""The agent-testing backend: every scenario (x matrix cell) as a server-side simulation test.

The vendor retires both simulate-conversation endpoints on 31 Oct 2026 in favour of simulation
tests that run on its side. This backend speaks that API behind the same ``Backend`` interface,
so the engine, retries, store and analysis do not change and a sweep fills the same tables.

The mapping (pure: ``test_spec``, ``run_result``):

* A job's request body becomes a ``CreateSimulationTestRequest``: the persona, first message,
  language and the user's own variables become ``simulation_scenario`` (labelled lines, see
  ``scenario_text``); the criteria's goal prompts become ``success_conditions`` (a scenario
  without criteria gets ``agent_testing.default_success_condition``); ``new_turns_limit``
  becomes ``simulation_max_turns`` (the API allows 1..50); the history ``chat_history``; the
  specification's variables ``dynamic_variables``; tool mocks a ``selected`` mocking strategy
  with one override per tool (keyed by tool id: on the real API key ``tool_mocks`` by tool id),
  or the tool's list of mocks with their ``parameter_conditions``; the scenario's
  ``environment`` and ``evaluation_model`` (else the config's) go to the fields of those
  names (``Job.test_fields``); the user's ``llm`` ``simulated_user_model``.
  A user ``temperature`` has no counterpart.
* A test is created once and found again by the content hash in its name
  (``<name_prefix> <scenario>[ <cell>] [<hash>]``), so re-running never creates duplicates and
  ``prune_tests`` can delete the tests a config no longer has.
* The repeats of one (agent, test) are ONE invocation with ``repeat_count = run.repeats``
  (chunks of 50, the API's maximum). The first job of a group to arrive starts it, or
  re-attaches to the id recorded in ``invocations.jsonl`` by an earlier session, and polls it
  (backing off until a run finishes, then paced by the finish rate: ``_next_delay``) until no
  run is pending (and bucketing is done, up to ``bucketing_wait``), within
  ``agent_testing.deadline``. Every job of the group takes the run at its repeat index (runs
  sorted by ``test_run_id``); a group already resolved answers without a request.
* A run becomes a ``SimulationResult``: ``agent_responses`` are the messages; the merged
  condition result is one criterion, ``success_conditions`` (named after the criteria it
  merges), whose rationale is the summary followed by each rationale message on its own line;
  ``credits_used`` goes to the jobs table; the result buckets holding the run go to
  ``buckets``. ``total_secs`` is run-tests -> the poll that saw the run finished (re-attached:
  the vendor's timestamps); the stream timings stay null. A cancelled run is the error
  ``cancelled``.

Every request goes through the shared httpx client and the error taxonomy: a failed create,
run or poll is one failed attempt, retried by the engine like any other; the group keeps its
invocation id, so a retry polls again and never starts a second invocation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
from pydantic import ValidationError

from runner.backends.base import BucketRecord, ReplyListener, SimulationResult, Timings
from runner.config import AgentTestingConfig, canonical_json
from runner.errors import Action, AttemptError, ErrorKind, Failure
from runner.http import request_json
from runner.jobs import Job
from runner.wire.agent_testing import (
    CANCEL_PATH,
    CREATE_PATH,
    FACTS_LABEL,
    FIRST_MESSAGE_LABEL,
    INVOCATION_PATH,
    INVOCATIONS_PATH,
    LANGUAGE_LABEL,
    MAX_REPEAT_COUNT,
    MAX_TURNS,
    RUN_PATH,
    TESTS_PATH,
    ConditionResult,
    CreatedTest,
    InvocationsPage,
    InvocationSummary,
    TestInvocation,
    TestRun,
    TestsPage,
    TestSummary,
    guardrail_names,
)
from runner.wire.simulate import Analysis, CriterionResult, Result, WireModel

__all__ = [
    "CONDITIONS_ID",
    "INVOCATIONS_FILE",
    "INVOCATIONS_GLOB",
    "AgentTestingBackend",
    "TestSpec",
    "list_tests",
    "parse_test_hash",
    "run_result",
    "scenario_text",
    "test_spec",
]

CONDITIONS_ID = "success_conditions"
"""Criterion id of the merged condition result in the criteria table."""
INVOCATIONS_FILE = "invocations.jsonl"
INVOCATIONS_GLOB = "invocations*.jsonl"
"""A shard records into a file of its own (``invocations-2-of-8.jsonl``): appends from several
machines to one file on shared storage are not atomic everywhere (NFS)."""
TIMING_FILE = ".agent_testing_timing.json"
"""In the results root: per test name prefix, the shortest run-tests -> finished run seen (a
later session's invocations sleep until about then before their first poll)."""
"""In the run directory: one line per invocation started, written (and fsync'd) at once."""
_HASH_LEN = 16
_LABEL_MAX = 100
_BACKOFF = 1.5
_PRICE_PAGES = 3
"""Pages of the invocations list searched for an invocation's ``total_price``."""
_RATE_POLLS = 4
"""The finish rate is measured over this many intervals between the last polls."""


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


def _label(job: Job, *, agent_axes: bool = False) -> str:
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
    test_hash = digest[:_HASH_LEN]
    name = f"{options.name_prefix} {_label(job)} [{test_hash}]"
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
    match = re.search(rf" \[([0-9a-f]{{{_HASH_LEN}}})\]$", name)
    return match.group(1) if match else None


def finish_rate(done_counts: list[tuple[float, int]], span: float) -> float:
    """Runs finished per second between the oldest and the newest of (time, finished) polls,
    over at most the last ``span`` seconds: the first runs to finish after a long wait are
    counted as finishing within ``span``, not spread over the wait. 0 before two polls."""
    if len(done_counts) < 2:
        return 0.0
    (t0, n0), (t1, n1) = done_counts[0], done_counts[-1]
    elapsed = min(t1 - t0, span)
    return (n1 - n0) / elapsed if elapsed > 0 else 0.0


def repeat_window(repeat: int, repeats: int) -> tuple[int, int]:
    """(first repeat, repeat_count) of the invocation that runs ``repeat``: chunks of 50."""
    start = repeat - repeat % MAX_REPEAT_COUNT
    return start, min(MAX_REPEAT_COUNT, repeats - start)


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


def _cancelled(invocation_id: str, run_id: str | None) -> AttemptError:
    what = f"test run {run_id}" if run_id else "its test run"
    return AttemptError(
        Failure(
            ErrorKind.CANCELLED,
            Action.FAIL_JOB,
            f"{what} of test invocation {invocation_id} was cancelled",
        )
    )


# ---------------------------------------------------------------------------- HTTP


M = TypeVar("M", bound=WireModel)


def _parse(model: type[M], data: Any, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message = f"{what}: unexpected reply: {exc}".replace("\n", " ")[:300]
        raise AttemptError(Failure(ErrorKind.MALFORMED, Action.RETRY, message)) from exc


async def list_tests(
    client: httpx.AsyncClient, prefix: str, folder_id: str | None
) -> list[TestSummary]:
    """Every test whose name this prefix owns (all pages)."""
    found: list[TestSummary] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"search": prefix, "page_size": 100}
        if cursor:
            params["cursor"] = cursor
        if folder_id:
            params["parent_folder_id"] = folder_id
        page = _parse(
            TestsPage, await request_json(client, "GET", TESTS_PATH, params=params), "list"
        )
        found += [t for t in page.tests if parse_test_hash(t.name, prefix) is not None]
        if not page.has_more or not page.next_cursor or page.next_cursor == cursor:
            return found
        cursor = page.next_cursor


# ---------------------------------------------------------------------------- the backend


GroupKey = tuple[str, str, int, int, str]
"""(agent id, test hash, first repeat, repeat_count, variant): one invocation. ``variant`` is
"" for the agent's main branch without override, else a hash of its branch and override."""


def variant_hash(job: Job) -> str:
    if job.branch_id is None and not job.agent_override:
        return ""
    text = canonical_json({"branch_id": job.branch_id, "override": job.agent_override})
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LEN]


BatchKey = tuple[str, str, int, int]
"""(agent id, variant, first repeat, repeat_count): groups that may share one run-tests call."""


def batch_key(key: GroupKey) -> BatchKey:
    return (key[0], key[4], key[2], key[3])


@dataclass
class _Poll:
    """One invocation, polled once for every group it runs (shared by their jobs)."""

    id: str
    polling: bool = False
    """One job polls for every job of the invocation; the others wait for ``updated``."""
    updated: anyio.Event = field(default_factory=anyio.Event)
    attached: bool = False
    """Re-attached (recorded by an earlier session, or found by the list): not started here."""
    sent_at: float | None = None
    deadline_at: float | None = None
    runs_done_at: float | None = None
    seen_done: dict[str, float] = field(default_factory=dict)
    final: TestInvocation | None = None
    """The invocation once no run of it is pending (or it was cancelled)."""
    total_price: float | None = None
    """USD the vendor billed for the whole invocation (its summary's ``total_price``)."""
    latest: TestInvocation | None = None
    """The last poll's reply."""
    runs_by_test: dict[str, list[TestRun]] = field(default_factory=dict)
    """``latest``'s runs per test, sorted by id: each waiting job looks up its own at once
    rather than scanning every run of a large invocation."""
    done_counts: list[tuple[float, int]] = field(default_factory=list)
    """(time, runs finished) of the last polls: the finish rate that sets the interval."""
    finishing_polls: int = 0
    """Polls since one saw a run finished: with ``seen_done``, the spend per result so far."""
    delay: float | None = None
    next_at: float | None = None
    """When the next poll is due (one schedule for every test of the invocation)."""
    groups: list[GroupKey] = field(default_factory=list)


@dataclass
class _Group:
    """The repeats of one (agent, test) in one invocation, shared by their jobs."""

    key: GroupKey
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    poll: _Poll | None = None
    test_id: str | None = None
    start_unsure: bool = False
    """A run-tests call failed without a clear refusal: the server may have started it (its
    reply lost in transit), so look for it by name before starting another."""


@dataclass
class _Batch:
    """Groups of one agent variant and repeat window waiting to be started by one call."""

    key: BatchKey
    members: list[tuple[_Group, Job, str]] = field(default_factory=list)
    done: anyio.Event = field(default_factory=anyio.Event)
    error: AttemptError | None = None


class AgentTestingBackend:
    """``Backend`` over the agent-testing API (see the module docstring for the mapping)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        options: AgentTestingConfig,
        *,
        repeats: int,
        run_dir: Path | None = None,
        session_id: str | None = None,
        run_key: str = "",
        record_name: str = INVOCATIONS_FILE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if not options.name_prefix:
            raise ValueError("agent_testing.name_prefix must be set (load_config fills it in)")
        self.client = client
        self.options = options
        self.prefix = options.name_prefix
        self.repeats = repeats
        self.record_path = run_dir / record_name if run_dir is not None else None
        self._clock = clock
        self._sleep = sleep
        self._tests: dict[str, str] | None = None  # hash -> test id, once listed
        self._index_lock = anyio.Lock()
        self._test_locks: dict[str, anyio.Lock] = {}
        self._groups: dict[GroupKey, _Group] = {}
        self._polls: dict[str, _Poll] = {}
        self._batches: dict[BatchKey, _Batch] = {}
        self.timing_path = run_dir.parent / TIMING_FILE if run_dir is not None else None
        self.shortest: float | None = read_shortest(self.timing_path, self.prefix)
        self._learned_dirty = False
        recorded = dict(read_all_records(run_dir, self.record_path))
        self._recorded: dict[GroupKey, str] = {k: v for k, v in recorded.items() if v}
        self.run_name = run_dir.name if run_dir is not None else "run"
        identity = f"{self.prefix}\0{self.run_name}\0{run_key}"
        self.run_token = "r" + hashlib.sha256(identity.encode()).hexdigest()[:10]
        """In every invocation name of this run (its prefix, name and ``run_key``, the run's
        creation time: the same for every session, new after ``--fresh``): the list
        endpoint's ``search`` finds them."""
        self.session_id = session_id or "-"
        # agent id -> (batch tag, test id) -> invocation id, from one listing per agent
        self._listed: dict[str, dict[tuple[str, str], str]] = {}
        self._list_lock = anyio.Lock()
        self.tests_created = 0
        self.invocations_started = 0
        self.reattached = 0
        self.found_by_list = 0
        self.requests = Counter[str]()
        """Requests made, by kind (create, list, run, poll, cancel)."""

    async def aclose(self) -> None:
        if self._learned_dirty and self.shortest is not None and self.timing_path is not None:
            with contextlib.suppress(OSError):  # only a hint for the next session
                await anyio.to_thread.run_sync(
                    write_shortest, self.timing_path, self.prefix, self.shortest
                )
        await self.client.aclose()

    async def _call(self, kind: str, method: str, path: str, **kwargs: Any) -> Any:
        self.requests[kind] += 1
        return await request_json(self.client, method, path, **kwargs)

    async def simulate(self, job: Job, on_reply: ReplyListener) -> SimulationResult:
        """``on_reply`` is left uncalled: a run-tests reply says nothing of the quota of the
        simulations, which run later on the vendor's side."""
        spec = test_spec(job, self.options)
        test_id = await self._test_id(spec)
        start, count = repeat_window(job.repeat, self.repeats)
        key: GroupKey = (job.agent_id, spec.hash, start, count, variant_hash(job))
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(key)
        while True:
            async with group.lock:
                if group.poll is None:
                    await self._attach_or_start(group, job, test_id)
            poll = group.poll
            assert poll is not None
            invocation = await self._drive(poll, test_id)
            if invocation is None:
                continue  # the re-attached invocation is gone: find or start another
            return self._take(poll, invocation, spec, test_id, job.repeat - start, count)

    # -------------------------------------------------------------- tests

    async def _test_id(self, spec: TestSpec) -> str:
        async with self._index_lock:
            if self._tests is None:
                self.requests["list"] += 1
                listed = await list_tests(self.client, self.prefix, self.options.folder_id)
                index: dict[str, str] = {}
                for test in sorted(listed, key=lambda t: t.id):
                    index.setdefault(parse_test_hash(test.name, self.prefix) or "", test.id)
                self._tests = index
        tests = self._tests
        if spec.hash in tests:
            return tests[spec.hash]
        lock = self._test_locks.setdefault(spec.hash, anyio.Lock())
        async with lock:
            if spec.hash not in tests:
                reply = await self._call("create", "POST", CREATE_PATH, json_body=spec.body)
                tests[spec.hash] = _parse(CreatedTest, reply, "create test").id
                self.tests_created += 1
        return tests[spec.hash]

    # -------------------------------------------------------------- invocations

    def batch_tag(self, key: GroupKey) -> str:
        """``<run token>.<variant>.<first repeat>-<count>``: names the run and which groups an
        invocation may hold (its tests say which)."""
        return f"{self.run_token}.{key[4] or 'main'}.{key[2]}-{key[3]}"

    def invocation_name(self, key: GroupKey, label: str) -> str:
        """``<prefix> <batch tag> <run name> session <id>: <label>``: the vendor's list shows
        which run and session started it, and a lost journal finds it again."""
        head = f"{self.prefix} {self.batch_tag(key)} {self.run_name} session {self.session_id}: "
        return (head + label)[:200]

    def _tag_of(self, name: str | None) -> str:
        return (name or "").removeprefix(self.prefix + " ").split(" ", 1)[0]

    async def _list_invocations(
        self, agent_id: str, search: str, test_id: str | None = None
    ) -> list[InvocationSummary]:
        """This run's not-cancelled invocations named so, newest first (every page)."""
        found: list[InvocationSummary] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"agent_id": agent_id, "search": search, "page_size": 100}
            if test_id:
                params["test_id"] = test_id
            if cursor:
                params["cursor"] = cursor
            reply = await self._call("list", "GET", INVOCATIONS_PATH, params=params)
            page = _parse(InvocationsPage, reply, "list test invocations")
            found += [
                item
                for item in page.results
                if self._tag_of(item.name).startswith(self.run_token + ".") and not item.cancelled
            ]
            if not page.has_more or not page.next_cursor or page.next_cursor == cursor:
                return found
            cursor = page.next_cursor

    async def _find_listed(self, group: _Group, test_id: str) -> str | None:
        """The invocation of this group the vendor lists (an earlier session's whose journal
        line is lost, or this session's whose run-tests reply was lost), else None. One
        listing per agent and session serves every group (a fresh run's is empty); after an
        unsure start, the group is looked up on its own."""
        agent_id, tag = group.key[0], self.batch_tag(group.key)
        if group.start_unsure:
            found = await self._list_invocations(agent_id, tag, test_id)
            return next((i.id for i in found if self._tag_of(i.name) == tag), None)
        async with self._list_lock:
            if agent_id not in self._listed:
                index: dict[tuple[str, str], str] = {}
                known = set(self._recorded.values())
                for item in await self._list_invocations(agent_id, self.run_token):
                    if item.id in known:
                        continue  # in the journal already: its groups are recorded
                    reply = await self._call(
                        "poll", "GET", INVOCATION_PATH.format(invocation_id=item.id)
                    )
                    invocation = _parse(TestInvocation, reply, f"test invocation {item.id}")
                    for run in invocation.test_runs:
                        index.setdefault((self._tag_of(item.name), run.test_id), item.id)
                self._listed[agent_id] = index
        return self._listed[agent_id].get((tag, test_id))

    async def _record(self, key: GroupKey, test_id: str, invocation_id: str, **extra: Any) -> None:
        if invocation_id:
            self._recorded[key] = invocation_id
        else:
            self._recorded.pop(key, None)
        if self.record_path is not None:
            line = {
                "agent_id": key[0],
                "test_hash": key[1],
                "first_repeat": key[2],
                "repeat_count": key[3],
                "variant": key[4],
                "test_id": test_id,
                "invocation_id": invocation_id,
                **extra,
            }
            await anyio.to_thread.run_sync(append_record, self.record_path, line)

    def _poll_for(self, invocation_id: str, *, attached: bool) -> _Poll:
        poll = self._polls.get(invocation_id)
        if poll is None:
            poll = self._polls[invocation_id] = _Poll(invocation_id, attached=attached)
        return poll

    async def _attach_or_start(self, group: _Group, job: Job, test_id: str) -> None:
        """Find the group's invocation (recorded, or listed by the vendor), else start it in
        a batch with the other groups of the same agent variant arriving meanwhile."""
        group.test_id = test_id
        recorded = self._recorded.get(group.key)
        if recorded is None:
            recorded = await self._find_listed(group, test_id)
            if recorded is not None:
                self.found_by_list += 1
                await self._record(group.key, test_id, recorded)
        if recorded is not None:
            group.poll = self._poll_for(recorded, attached=True)
            group.poll.groups.append(group.key)
            group.start_unsure = False
            self.reattached += 1
            return
        await self._join_batch(group, job, test_id)

    async def _join_batch(self, group: _Group, job: Job, test_id: str) -> None:
        bkey = batch_key(group.key)
        batch = self._batches.get(bkey)
        if batch is None or len(batch.members) >= self.options.batch_max_tests:
            batch = self._batches[bkey] = _Batch(bkey)
            batch.members.append((group, job, test_id))
            await self._sleep(self.options.batch_wait)
            if self._batches.get(bkey) is batch:
                del self._batches[bkey]
            try:
                await self._start(batch)
            except AttemptError as exc:
                batch.error = exc
            finally:
                batch.done.set()
        else:
            batch.members.append((group, job, test_id))
            await batch.done.wait()
        if group.poll is None:
            assert batch.error is not None
            raise AttemptError(batch.error.failure)

    async def _start(self, batch: _Batch) -> None:
        members = batch.members
        first_group, first_job, _ = members[0]
        count = first_group.key[3]
        label = _label(first_job, agent_axes=True) if len(members) == 1 else f"{len(members)} tests"
        body: dict[str, Any] = {
            "tests": [{"test_id": test_id} for _, _, test_id in members],
            "repeat_count": count,
            "name": self.invocation_name(first_group.key, label),
        }
        if first_job.branch_id is not None:
            body["branch_id"] = first_job.branch_id
        if first_job.agent_override:
            body["agent_config_override"] = first_job.agent_override
        sent = self._clock()
        try:
            reply = await self._call(
                "run", "POST", RUN_PATH.format(agent_id=first_job.agent_id), json_body=body
            )
        except AttemptError as exc:
            # a refusal (4xx) started nothing; anything else may have started it
            unsure = exc.failure.status is None or exc.failure.status >= 500
            for group, _, _ in members:
                group.start_unsure = unsure
            raise
        invocation = _parse(TestInvocation, reply, "run tests")
        poll = self._poll_for(invocation.id, attached=False)
        poll.sent_at = sent
        poll.deadline_at = sent + self.options.deadline
        self.invocations_started += 1
        for group, _, test_id in members:
            group.poll = poll
            group.start_unsure = False
            poll.groups.append(group.key)
            await self._record(group.key, test_id, invocation.id)

    def _learn(self, secs: float) -> None:
        """The shortest time from run-tests to a finished run seen so far (this run's
        sessions included: kept in the journal), so later invocations sleep until then."""
        if secs > 0 and (self.shortest is None or secs < self.shortest):
            self.shortest = secs
            self._learned_dirty = True

    def _next_delay(self, poll: _Poll, now: float) -> float:
        """Runs finishing: ``1 / (poll_budget x finish rate)`` within ``poll_interval_min``
        .. ``poll_interval``, so a large invocation whose runs finish fast is polled often
        at the same cost per result and a sparse one no more than every ``poll_interval``;
        never faster than ``poll_interval`` while the polls since the first finished run
        exceed ``poll_budget`` per run finished (the sparse phases' polls are paid back
        first). Nothing finished yet: sleep until 90% of the shortest run seen (when known),
        else back off x1.5 up to ``poll_interval_max``."""
        o = self.options
        if poll.seen_done:
            rate = finish_rate(poll.done_counts, 2 * o.poll_interval)
            fastest = min(o.poll_interval_min, o.poll_interval)
            in_credit = poll.finishing_polls < o.poll_budget * len(poll.seen_done)
            if rate <= 0 or not in_credit:
                return o.poll_interval
            return min(o.poll_interval, max(fastest, 1 / (o.poll_budget * rate)))
        if self.shortest is not None and poll.sent_at is not None:
            expected = poll.sent_at + 0.9 * self.shortest
            return max(o.poll_interval, expected - now)
        if poll.delay is None:
            return o.poll_interval
        return min(poll.delay * _BACKOFF, o.poll_interval_max)

    def _ready(self, poll: _Poll, test_id: str, now: float) -> TestInvocation | None:
        """The last polled invocation when it holds this test's result: its runs are done
        (or the invocation was cancelled) and, with repeats, the buckets are in or waited
        for long enough. Other tests of the same invocation may still be running."""
        invocation = poll.latest
        if invocation is None:
            return None
        runs = poll.runs_by_test.get(test_id, [])
        if not invocation.cancelled and (not runs or any(r.status == "pending" for r in runs)):
            return None
        if (invocation.repeat_count or 1) > 1 and not invocation.cancelled:
            # repeats are bucketed once every run of the invocation is done: wait for that
            if poll.final is None:
                return None
            done_at = poll.runs_done_at = poll.runs_done_at or now
            deadline = poll.deadline_at if poll.deadline_at is not None else now
            bucketing = invocation.bucketing_status == "pending"
            if bucketing and now < min(deadline, done_at + self.options.bucketing_wait):
                return None
        return invocation

    async def _drive(self, poll: _Poll, test_id: str) -> TestInvocation | None:
        """Poll until this test's result is in (the invocation), or raise what went wrong.
        None: a re-attached invocation the server no longer knows (e.g. a restarted local
        API), forgotten for every group that waited on it.

        One poll serves every test of the invocation: polls back off (x1.5 from
        ``poll_interval`` up to ``poll_interval_max``) while nothing has finished, then come
        at the pace ``_next_delay`` sets from the finish rate (at most ``poll_interval``
        apart), so each result is in the store within one poll interval of its run's end."""
        o = self.options
        if poll.deadline_at is None:
            poll.deadline_at = self._clock() + o.deadline
        deadline = poll.deadline_at
        while True:
            now = self._clock()
            ready = self._ready(poll, test_id, now)
            if ready is not None:
                return ready
            if poll.latest is not None and now >= deadline:
                raise AttemptError(
                    Failure(
                        ErrorKind.TOTAL_TIMEOUT,
                        Action.FAIL_JOB,
                        f"test invocation {poll.id}: runs still pending after "
                        f"{o.deadline:g}s (agent_testing.deadline); run again to re-attach",
                    )
                )
            if poll.polling:  # another job polls for all of them: wait for its reply
                await poll.updated.wait()
                continue
            poll.polling = True
            try:
                if poll.latest is not None:
                    due = poll.next_at if poll.next_at is not None else now
                    if due > now:
                        await self._sleep(min(due, deadline) - now)
                if not await self._poll_once(poll):
                    return None
            finally:
                poll.polling = False
                woken, poll.updated = poll.updated, anyio.Event()
                woken.set()

    async def _poll_once(self, poll: _Poll) -> bool:
        """One GET of the invocation into ``poll.latest``; False: a re-attached invocation
        the server no longer knows, forgotten for every group that waited on it."""
        path = INVOCATION_PATH.format(invocation_id=poll.id)
        try:
            reply = await self._call("poll", "GET", path)
        except AttemptError as exc:
            if exc.failure.kind is ErrorKind.NOT_FOUND and poll.attached:
                # The recorded invocation is gone (e.g. a restarted local API): the only
                # way to a result is a new one, for every group that waits on it.
                for key in poll.groups:
                    self._recorded.pop(key, None)
                    stale = self._groups.get(key)
                    if stale is not None and stale.poll is poll:
                        stale.poll = None
                self._polls.pop(poll.id, None)
                return False
            raise
        invocation = _parse(TestInvocation, reply, f"test invocation {poll.id}")
        now = self._clock()
        poll.latest = invocation
        by_test: dict[str, list[TestRun]] = {}
        for run in sorted(invocation.test_runs, key=lambda r: r.test_run_id):
            by_test.setdefault(run.test_id, []).append(run)
            if run.status != "pending":
                poll.seen_done.setdefault(run.test_run_id, now)
        poll.runs_by_test = by_test
        if poll.seen_done:
            poll.finishing_polls += 1
        poll.done_counts = [*poll.done_counts[-_RATE_POLLS:], (now, len(poll.seen_done))]
        pending = not invocation.test_runs or any(
            r.status == "pending" for r in invocation.test_runs
        )
        if invocation.cancelled or not pending:
            agent_id = invocation.agent_id or (poll.groups[0][0] if poll.groups else None)
            if agent_id is not None:
                poll.total_price = await self._total_price(agent_id, invocation.id)
            poll.final = invocation
        if poll.seen_done and poll.sent_at is not None:
            # the vendor's own timestamps when it sends them (a poll sees a run finish late)
            stamped = [
                r.last_updated_at_unix - invocation.created_at
                for r in invocation.test_runs
                if r.status in ("passed", "failed")
                and r.last_updated_at_unix is not None
                and invocation.created_at is not None
            ]
            seen = min(poll.seen_done.values()) - poll.sent_at
            self._learn(min(seen, float(min(stamped))) if stamped else seen)
        poll.delay = self._next_delay(poll, now)
        poll.next_at = now + poll.delay
        return True

    async def cancel_started(self) -> list[str]:
        """Cancel the invocations this session started that are not finished (Ctrl-C /
        SIGTERM), and forget them in the journal, so a resume starts them again rather than
        re-attaching to a cancelled run. Returns the ids cancelled."""
        cancelled: list[str] = []
        for poll in list(self._polls.values()):
            if poll.attached or poll.final is not None:
                continue
            path = CANCEL_PATH.format(invocation_id=poll.id)
            try:
                await self._call("cancel", "POST", path)
            except AttemptError:
                continue  # best effort: it may have finished meanwhile
            cancelled.append(poll.id)
            for key in poll.groups:
                group = self._groups.get(key)
                test_id = group.test_id if group is not None and group.test_id else ""
                await self._record(key, test_id, "", cancelled=poll.id)
        return cancelled

    def _take(
        self,
        poll: _Poll,
        invocation: TestInvocation,
        spec: TestSpec,
        test_id: str,
        index: int,
        count: int,
    ) -> SimulationResult:
        """The job's run (its repeat index among the test's runs sorted by id) as a result."""
        runs = poll.runs_by_test.get(test_id, [])
        if index >= len(runs):
            if invocation.cancelled:
                raise _cancelled(invocation.id, None)
            raise AttemptError(
                Failure(
                    ErrorKind.MALFORMED,
                    Action.FAIL_JOB,
                    f"test invocation {invocation.id} has {len(runs)} run(s) of test "
                    f"{test_id}, expected {count}",
                )
            )
        run = runs[index]
        if run.status in ("cancelled", "pending"):  # pending here: the invocation was cancelled
            raise _cancelled(invocation.id, run.test_run_id)
        total: float | None = None
        if poll.sent_at is not None and run.test_run_id in poll.seen_done:
            total = poll.seen_done[run.test_run_id] - poll.sent_at
        elif run.last_updated_at_unix is not None and invocation.created_at is not None:
            total = float(max(0, run.last_updated_at_unix - invocation.created_at))
        result = run_result(
            run,
            criterion_name=spec.criterion_name,
            buckets=run_buckets(invocation, run),
            total_secs=total,
        )
        result.invocation_total_price = poll.total_price
        return result

    async def _total_price(self, agent_id: str, invocation_id: str) -> float | None:
        """The invocation's ``total_price`` from its summary in the invocations list (newest
        first; the first pages only). Best effort: the price is also in each run's
        ``charging``, so a failed lookup leaves this figure null and fails no job."""
        params: dict[str, Any] = {"agent_id": agent_id, "page_size": 100}
        for _ in range(_PRICE_PAGES):
            try:
                reply = await self._call("list", "GET", INVOCATIONS_PATH, params=params)
                page = _parse(InvocationsPage, reply, "list test invocations")
            except AttemptError:
                return None
            for item in page.results:
                if item.id == invocation_id:
                    return item.total_price
            if not page.has_more or not page.next_cursor:
                return None
            params["cursor"] = page.next_cursor
        return None


# ---------------------------------------------------------------------------- the record


def append_record(path: Path, line: dict[str, Any]) -> None:
    """Append one invocation and fsync: a kill -9 right after must not lose the id."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_shortest(path: Path | None, prefix: str) -> float | None:
    """The shortest run-tests -> finished run an earlier session with this prefix saw."""
    if path is None:
        return None
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))[prefix])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_shortest(path: Path, prefix: str, secs: float) -> None:
    """Record it for the prefix (replacing the file, so a reader never sees half of it)."""
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError):
        known = {}
    known[prefix] = round(secs, 3)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(known, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def read_all_records(run_dir: Path | None, own: Path | None) -> Iterator[tuple[GroupKey, str]]:
    """Every shard's records of the run, this session's own file last (its lines win): a
    group is normally in one shard's file, but a run whose shard count changed finds a group
    another shard started."""
    if run_dir is None:
        return
    for path in sorted(run_dir.glob(INVOCATIONS_GLOB)):
        if path != own:
            yield from read_records(path)
    yield from read_records(own)


def read_records(path: Path | None) -> Iterator[tuple[GroupKey, str]]:
    """Recorded invocations, oldest first (a later line for the same group wins; an empty id
    means forgotten: cancelled by the runner); a line cut short by a crash is skipped."""
    if path is None or not path.exists():
        return
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(text)
            key: GroupKey = (
                str(row["agent_id"]),
                str(row["test_hash"]),
                int(row["first_repeat"]),
                int(row["repeat_count"]),
                str(row.get("variant", "")),
            )
            yield key, str(row["invocation_id"])
        except (ValueError, KeyError, TypeError):
            continue
