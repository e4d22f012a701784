"""What a session is expected to cost, and the budget it runs under.

The expected cost comes from earlier sessions' spend per job when there is some, else from the
target's own prices: the calculate endpoint's quote per agent and the agent's LLM, asked over
HTTP (``fetch_prices``; free requests, no simulation). ``make_budget`` turns ``run.budget``
into the tracker the engine consults (``runner.budget``), primed with that figure.

A run that stops early (``run.repeats: {until: verdict}``, a ``compare:`` block) is priced for
the jobs it may still send (open cases' repeats up to ``max``, pairs up to ``max_pairs``) and
says how many it is expected to send (``outlook``; ``runner.expected``).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from runner.budget import BudgetTracker
from runner.config import Config
from runner.errors import Action, AttemptError
from runner.estimate import AgentPrices, Estimate, Expected, from_history, from_prices, money
from runner.expected import compare_expected, expected_jobs, verdict_expected
from runner.http import make_http_client, request_json
from runner.jobs import Job
from runner.pairing import PairPlanner
from runner.plan import DEFAULT_RESULTS, planned_total, run_name, select_jobs
from runner.planner import Case, Planner, UntilVerdict, case_of
from runner.run_planner import run_planner, stops_early
from runner.shard import Shard
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
    expected: Expected | None = None,
) -> list[Estimate]:
    """The expected cost of ``total`` jobs still to run: from earlier sessions' spend per job
    when some were priced, else from the calculate endpoint's prices (``client``). With
    ``expected`` (a run that stops early) each range also says what the expected jobs cost."""
    out = await _estimate_cost(cfg, jobs, total, earlier_usd, earlier_credits, client)
    return [e.with_expected(expected, lead=i == 0) for i, e in enumerate(out)]


async def _estimate_cost(
    cfg: Config,
    jobs: Iterator[Job],
    total: int,
    earlier_usd: list[float],
    earlier_credits: list[float],
    client: httpx.AsyncClient | None,
) -> list[Estimate]:
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


def outlook(
    planner: Planner, done: Collection[str], jobs: Iterable[Job] = ()
) -> tuple[int, Expected | None]:
    """(jobs the session may send at most, what it is expected to send) of a session's planner:
    a verdict planner's open cases up to ``max`` repeats (of ``jobs``, the jobs left: a
    ``--limit`` may leave fewer), a comparison's pairs up to ``max_pairs``
    (``runner.expected``); (-1, None) for any other plan (it sends every job)."""
    if isinstance(planner, UntilVerdict):
        per_case = Counter(case_of(job) for job in open_jobs(planner, jobs, done))
        cases = [planner.outcomes(case) for case in planner.cases]
        available = [per_case.get(case, 0) for case in planner.cases]
        earlier = [
            (sum(o == "pass" for o in outcomes), len(outcomes))
            for verdicts in cases
            for outcomes in verdicts
            if outcomes
        ]
        mean, most, how = verdict_expected(planner.rule, cases, earlier, available)
        return most, expected_jobs(mean, most, how)
    if isinstance(planner, PairPlanner):
        decision = planner.decision
        stored = sum(job.key in done for pair in planner.pairs for job in pair)
        mean, _, how = compare_expected(planner.rule, decision.counts, decision.stop)
        if decision.stop:
            return 0, expected_jobs(0.0, 0, how)
        # the jobs of every pair not stored; expected: the further pairs, and the missing
        # member of each half-done pair
        left = 2 * planner.rule.max_pairs - stored
        half = stored - 2 * decision.counts.pairs
        return left, expected_jobs(min(2 * mean + half, left), left, how)
    return -1, None


def open_jobs(planner: Planner, jobs: Iterable[Job], done: Collection[str]) -> Iterator[Job]:
    """Of ``jobs``, those ``planner`` may still send: a comparison's pairs not stored, a verdict
    planner's jobs of cases still open; every job for any other plan."""
    if isinstance(planner, PairPlanner):
        if planner.decision.stop:
            return iter(())
        return (job for pair in planner.pairs for job in pair if job.key not in done)
    if isinstance(planner, UntilVerdict):
        stopped = {case for case in planner.cases if _stopped(planner, case)}
        return (job for job in jobs if case_of(job) not in stopped)
    return iter(jobs)


def _stopped(planner: UntilVerdict, case: Case) -> bool:
    decisions = planner.decisions(case)
    return bool(decisions) and all(d.stop for d in decisions)


@dataclass(frozen=True)
class Remaining:
    """What a run would send now: the jobs of its sweep (a shard's share when sharded) that
    earlier sessions of ``results/<name>/`` have not finished (read, not locked)."""

    left: int
    """Jobs still to run."""
    total: int
    """Jobs of the sweep (the shard's share), done or not."""
    done: frozenset[str]
    shard: Shard | None
    earlier_usd: list[float]
    earlier_credits: list[float]
    expected: Expected | None = None
    """A run that stops early: ``left`` is the most it sends; this, what it is expected to."""
    planner: Planner | None = None

    def jobs(self, cfg: Config, limit: int | None) -> Iterator[Job]:
        """The jobs still to run, in the order a run sends them (a run that stops early: the
        jobs it may still send)."""
        jobs = select_jobs(cfg, limit, set(self.done), self.shard)
        return jobs if self.planner is None else open_jobs(self.planner, jobs, self.done)


def remaining(
    cfg: Config,
    *,
    limit: int | None = None,
    shard: Shard | None = None,
    results_root: Path = DEFAULT_RESULTS,
    retry_errors: bool = True,
) -> Remaining:
    """The jobs a run of ``cfg`` would still send, as the run itself decides (the same done
    set: ``ok`` jobs, and errored ones too without ``retry_errors``)."""
    run_dir = results_root / run_name(cfg)
    here = run_dir.exists()
    done = done_job_keys(run_dir, include_errors=not retry_errors) if here else set()
    earlier_usd, earlier_credits = earlier_spend(run_dir) if here else ([], [])
    left, skipped = planned_total(cfg, limit, done, shard)
    planner = run_planner(cfg, run_dir, done, limit, shard) if stops_early(cfg) else None
    expected = None
    if planner is not None:
        left, expected = outlook(planner, done, select_jobs(cfg, limit, done, shard))
        if isinstance(planner, PairPlanner):  # what the comparison ran, not the sweep's
            skipped = sum(job.key in done for pair in planner.pairs for job in pair)
    return Remaining(
        left,
        left + skipped,
        frozenset(done),
        shard,
        earlier_usd,
        earlier_credits,
        expected,
        planner,
    )


def dry_run_estimate(
    cfg: Config, plan: Remaining, limit: int | None = None, url: str | None = None
) -> list[Estimate]:
    """What the jobs still to run cost (``--dry-run``, and the Ray driver for the whole
    sweep); nothing left costs nothing. From earlier sessions' spend when they priced some,
    else asks the calculate endpoint at ``url`` (default: the config's target, the local API
    started for it when it is local), which sends no simulation."""
    total, earlier_usd, earlier_credits = plan.left, plan.earlier_usd, plan.earlier_credits
    expected = plan.expected
    if not total:
        paid = f"; earlier sessions spent {money(sum(earlier_usd))}" if earlier_usd else ""
        return [Estimate(0.0, 0.0, "usd", 0, f"nothing left to run{paid}")]
    if from_history(total, earlier_usd) is not None:
        return anyio.run(
            estimate_cost, cfg, iter(()), total, earlier_usd, earlier_credits, None, expected
        )
    api_key = read_api_key(cfg)

    async def ask(url: str) -> list[Estimate]:
        async with make_http_client(url, api_key, cfg.target.timeouts, 2) as client:
            jobs = plan.jobs(cfg, limit)
            return await estimate_cost(
                cfg, jobs, total, earlier_usd, earlier_credits, client, expected
            )

    if url is not None:
        return anyio.run(ask, url)
    local = cfg.target.base_url == "local"
    with target_url(cfg) if local else contextlib.nullcontext(cfg.target.base_url) as found:
        return anyio.run(ask, found)


def make_budget(
    cfg: Config, earlier_usd: list[float], earlier_credits: list[float], estimates: list[Estimate]
) -> BudgetTracker | None:
    """``run.budget`` as the engine consults it: earlier sessions' spend counted, their jobs'
    costs as the recent jobs it starts from, and before any job was priced the estimate's
    geometric middle per job."""
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
        seen_usd=earlier_usd,
        seen_credits=earlier_credits,
    )
