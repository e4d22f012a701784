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
* The repeats of one (agent, test) in one window are ONE invocation with ``repeat_count`` the
  window's size (``keys.Window``): fixed repeats in one window of ``run.repeats`` (chunks of
  50, the API's maximum); sequential verdicts (``run.repeats: {until: verdict}``) in waves
  whose bounds grow geometrically (``keys.wave_bounds``: e.g. 2, then 2, 4, 8 more), the
  verdict planner releasing a case's next wave only while it is undecided; a paired
  comparison in the waves of pairs its planner draws. A job's window is a pure function of
  the job, so every session groups it alike. The first job of a group to arrive starts it, or
  re-attaches to the id recorded in ``invocations.jsonl`` by an earlier session, and polls it
  (backing off until a run finishes, then paced by the finish rate: ``pacing.next_delay``) until no
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

The modules, one job each: ``keys`` (which invocation a job belongs to, and its name),
``mapping`` (job -> test body, run -> result rows; pure), ``listing`` (the vendor's lists),
``pacing`` (when to poll next; pure), ``invocations`` (the files kept between sessions) and
``backend`` (the ``Backend`` that drives them).
"""

from runner.backends.agent_testing.backend import AgentTestingBackend
from runner.backends.agent_testing.invocations import (
    INVOCATIONS_FILE,
    INVOCATIONS_GLOB,
    append_record,
    read_all_records,
    read_records,
)
from runner.backends.agent_testing.keys import (
    GroupKey,
    Window,
    WindowOf,
    fixed_windows,
    repeat_window,
    variant_hash,
    wave_bounds,
    wave_window,
    wave_windows,
)
from runner.backends.agent_testing.listing import list_tests
from runner.backends.agent_testing.mapping import (
    CONDITIONS_ID,
    TestSpec,
    parse_test_hash,
    run_buckets,
    run_result,
    scenario_text,
    test_spec,
)
from runner.backends.agent_testing.pacing import finish_rate

__all__ = [
    "CONDITIONS_ID",
    "INVOCATIONS_FILE",
    "INVOCATIONS_GLOB",
    "AgentTestingBackend",
    "GroupKey",
    "TestSpec",
    "Window",
    "WindowOf",
    "append_record",
    "finish_rate",
    "fixed_windows",
    "list_tests",
    "parse_test_hash",
    "read_all_records",
    "read_records",
    "repeat_window",
    "run_buckets",
    "run_result",
    "scenario_text",
    "test_spec",
    "variant_hash",
    "wave_bounds",
    "wave_window",
    "wave_windows",
]
