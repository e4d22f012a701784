"""``--as-tests``: the imported scenarios as the vendor's simulation tests (agent-testing).

Each scenario becomes the test the agent-testing backend would create for it
(``runner.backends.agent_testing.test_spec``: same body, same name ``<prefix> <scenario id>
[<hash>]``), plus ``from_conversation_metadata`` naming the production conversation it came
from, as the vendor's dashboard does when it turns a conversation into a test. Because the
name carries the backend's hash, a sweep config with the same ``name_prefix`` over the written
scenario file runs these very tests, and ``runner tests prune`` on it keeps them and deletes
the ones no longer in the file. A test that already exists (same name) is not created twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.backends.agent_testing import list_tests, test_spec
from runner.config.models import Config
from runner.errors import AttemptError
from runner.importer.build import source_of
from runner.importer.fetch import Fetcher, FetchError
from runner.jobs import iter_jobs
from runner.wire.agent_testing import CREATE_PATH


@dataclass(frozen=True)
class Published:
    created: int
    existing: int


def test_bodies(
    entries: list[dict[str, Any]], agent_id: str, branch_id: str | None, prefix: str
) -> list[dict[str, Any]]:
    """The create-test bodies of ``entries`` (scenario mappings), in order."""
    cfg = Config.model_validate(
        {
            "target": {"backend": "agent-testing", "agent_testing": {"name_prefix": prefix}},
            "agents": [{"id": agent_id}],
            "scenarios": entries,
        }
    )
    bodies = []
    for job in iter_jobs(cfg):
        if job.repeat > 0:
            break
        spec = test_spec(job, cfg.target.agent_testing)
        entry = next(e for e in entries if e["id"] == job.scenario_id)
        meta: dict[str, Any] = {"conversation_id": source_of(entry) or job.scenario_id}
        meta["agent_id"] = agent_id
        if branch_id:
            meta["branch_id"] = branch_id
        bodies.append({**spec.body, "from_conversation_metadata": meta})
    return bodies


async def create_tests(fetcher: Fetcher, bodies: list[dict[str, Any]], prefix: str) -> Published:
    try:
        listed = await list_tests(fetcher.client, prefix, None)
    except AttemptError as exc:
        raise FetchError(f"listing the tests named {prefix!r}: {exc.failure.message}") from None
    names = {t.name for t in listed}
    created = 0
    for body in bodies:
        if body["name"] in names:
            continue
        await fetcher.call("POST", CREATE_PATH, body=body)
        names.add(body["name"])
        created += 1
    return Published(created, len(bodies) - created)
