"""Tests management: delete the simulation tests (named with a config's prefix) that the
config no longer has (``python -m runner tests prune``).

Tests are found by the content hash in their names (``runner.backends.agent_testing``); a test
whose name this prefix does not own is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import httpx

from runner.backends.agent_testing import list_tests, parse_test_hash, test_spec
from runner.config.models import Config
from runner.errors import AttemptError
from runner.http import make_http_client, request_json
from runner.jobs import iter_jobs
from runner.target import SetupError, read_api_key
from runner.wire.agent_testing import TEST_PATH


class PruneError(Exception):
    """``tests prune`` cannot run or a request failed; ``str(e)`` is one line."""


@dataclass
class PruneResult:
    kept: int
    """Tests of this config found and kept."""
    deleted: list[tuple[str, str]]
    """(id, name) of every test deleted (or, with ``dry_run``, to delete)."""
    dry_run: bool


def config_test_hashes(cfg: Config) -> set[str]:
    """Hashes of every test the config's jobs use (repeat 0 covers every scenario and cell)."""
    hashes: set[str] = set()
    for job in iter_jobs(cfg):
        if job.repeat > 0:
            break
        hashes.add(test_spec(job, cfg.target.agent_testing).hash)
    return hashes


async def prune_tests(
    cfg: Config, client: httpx.AsyncClient, *, dry_run: bool = False
) -> PruneResult:
    """Delete the tests named with this config's prefix whose hash the config no longer has."""
    options = cfg.target.agent_testing
    assert options.name_prefix
    keep = config_test_hashes(cfg)
    try:
        tests = await list_tests(client, options.name_prefix, options.folder_id)
        stale = [t for t in tests if parse_test_hash(t.name, options.name_prefix) not in keep]
        if not dry_run:
            for test in stale:
                await request_json(client, "DELETE", TEST_PATH.format(test_id=test.id))
    except AttemptError as exc:
        raise PruneError(exc.failure.message) from exc
    return PruneResult(
        kept=len(tests) - len(stale),
        deleted=[(t.id, t.name) for t in stale],
        dry_run=dry_run,
    )


def prune(cfg: Config, *, base_url: str | None = None, dry_run: bool = False) -> PruneResult:
    """Blocking ``prune_tests`` against ``base_url`` or the config's target (the CLI's entry)."""
    url = base_url or cfg.target.base_url
    if url == "local":
        raise PruneError(
            "target.base_url is 'local': the bundled local API keeps tests only while it runs; "
            "give --base-url of a running one (e.g. `make serve`)"
        )
    try:
        api_key = read_api_key(cfg, url)
    except SetupError as exc:
        raise PruneError(str(exc)) from exc

    async def main() -> PruneResult:
        async with make_http_client(url, api_key, cfg.target.timeouts, 4) as client:
            return await prune_tests(cfg, client, dry_run=dry_run)

    return anyio.run(main)
