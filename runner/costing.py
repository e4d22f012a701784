"""What a session is expected to cost, and the budget it runs under.

The expected cost comes from earlier sessions' spend per job when there is some, else from the
target's own prices: the calculate endpoint's quote per agent and the agent's LLM, asked over
HTTP (``fetch_prices``; free requests, no simulation). ``make_budget`` turns ``run.budget``
into the tracker the engine consults (``runner.budget``), primed with that figure.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx

from runner.budget import BudgetTracker
from runner.config import Config
from runner.errors import Action, AttemptError
from runner.estimate import AgentPrices, Estimate, from_history, from_prices
from runner.http import make_http_client, request_json
from runner.jobs import Job
from runner.plan import DEFAULT_RESULTS, planned_total, run_name, select_jobs
from runner.store import done_job_keys, earlier_spend
from runner.target import read_api_key, target_url
from runner.wire.pricing import CALCULATE_PATH, LLMUsageCalculation


def _agent_llm(agent: Any) -> str | None:
    try:
        llm = agent["conversation_config"]["agent"]["prompt"]["llm"]
    except (KeyError, TypeError):
        return None
    return llm if isinstance(llm, str) else None


async def fetch_prices(client: httpx.AsyncClient, agent_ids: set[str]) -> dict[str, AgentPrices]:
    """Each agent's quote from the calculate endpoint, and its LLM from its config. The first
    call that fails ends the asking (an estimate is advice, not worth hammering a target for);
    a rejected key is raised, as it would stop the run at its first simulation anyway."""
    out: dict[str, AgentPrices] = {}
    for agent_id in sorted(agent_ids):
        try:
            reply = await request_json(
                client, "POST", CALCULATE_PATH.format(agent_id=agent_id), json_body={}
            )
            quote = LLMUsageCalculation.model_validate(reply)
            agent = await request_json(client, "GET", f"/v1/convai/agents/{agent_id}")
        except AttemptError as exc:
            if exc.failure.action is Action.ABORT_RUN:
                raise
            break
        except ValueError:
            break
        prices = {p.llm: p.price_per_message for p in quote.llm_prices}
        out[agent_id] = AgentPrices(prices, _agent_llm(agent))
    return out


async def estimate_cost(
    cfg: Config,
    jobs: Iterator[Job],
    total: int,
    earlier_usd: list[float],
    earlier_credits: list[float],
    client: httpx.AsyncClient | None,
) -> list[Estimate]:
    """The expected cost of ``total`` jobs still to run: from earlier sessions' spend per job
    when some were priced, else from the calculate endpoint's prices (``client``)."""
    out = []
    usd = from_history(total, earlier_usd, "usd")
    if usd is None and client is not None and total:
        prices = await fetch_prices(client, {agent.id for agent in cfg.agents})
        # streamed: a 100,000-job sweep is never held in memory for its estimate
        pairs = ((job.agent_id, int(job.body.get("new_turns_limit") or 1)) for job in jobs)
        usd = from_prices(pairs, prices)
    if usd is not None:
        out.append(usd)
    credits = from_history(total, earlier_credits, "credits")
    if credits is not None:
        out.append(credits)
    return out


def dry_run_estimate(
    cfg: Config, *, limit: int | None = None, results_root: Path = DEFAULT_RESULTS
) -> list[Estimate]:
    """``--dry-run``'s estimate: what the jobs a run would send still cost (earlier sessions
    of ``results_root/<name>/`` read, not locked). Asks the calculate endpoint (starting the
    local API for it when the target is local), which sends no simulation."""
    run_dir = results_root / run_name(cfg)
    done = done_job_keys(run_dir) if run_dir.exists() else set()
    earlier_usd, earlier_credits = earlier_spend(run_dir) if run_dir.exists() else ([], [])
    total, _ = planned_total(cfg, limit, done)
    if total and from_history(total, earlier_usd) is not None:
        return anyio.run(estimate_cost, cfg, iter(()), total, earlier_usd, earlier_credits, None)
    api_key = read_api_key(cfg)

    async def ask(url: str) -> list[Estimate]:
        async with make_http_client(url, api_key, cfg.target.timeouts, 2) as client:
            jobs = select_jobs(cfg, limit, done)
            return await estimate_cost(cfg, jobs, total, earlier_usd, earlier_credits, client)

    if not total:
        return []
    local = cfg.target.base_url == "local"
    with target_url(cfg) if local else contextlib.nullcontext(cfg.target.base_url) as url:
        return anyio.run(ask, url)


def make_budget(
    cfg: Config, earlier_usd: list[float], earlier_credits: list[float], estimates: list[Estimate]
) -> BudgetTracker | None:
    """``run.budget`` as the engine consults it: earlier sessions' spend counted, and the
    expected cost of a job before this session priced one (earlier sessions' mean, else the
    estimate's geometric middle per job)."""
    budget = cfg.run.budget
    if budget is None or (budget.usd is None and budget.credits is None):
        return None

    def prior(earlier: list[float], unit: str) -> float | None:
        if earlier:
            return sum(earlier) / len(earlier)
        found = next((e for e in estimates if e.unit == unit and e.jobs), None)
        return found.per_job if found else None

    return BudgetTracker(
        usd=budget.usd,
        credits=budget.credits,
        spent_usd=sum(earlier_usd),
        spent_credits=sum(earlier_credits),
        prior_usd=prior(earlier_usd, "usd"),
        prior_credits=prior(earlier_credits, "credits"),
    )
