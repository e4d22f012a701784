"""What evaluating assertions costs per finished job (issue 30: at most 5% of client CPU).

``python -m bench.assertions [--jobs N] [--rounds N]``. Transcripts come from the local API's own
conversation model (``plan_conversation``, the agent ``agent_support`` of configs/agents.yaml,
``new_turns_limit`` 20 as in the overhead section), for the two scenarios with tools of
configs/example.yaml; the issue's five assertions are configured. The figure is the process
CPU of ``runner.outcome.assert_rows`` (the hook a finished job passes through: five evaluations
on its transcript, five rows) per job, beside the runner's client CPU per simulation from the
overhead section of a ``python -m bench`` figures file (``--figures``; default
``results/bench/latest.json``) when there is one: measure both on the same machine.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.assertions import Transcript
from runner.backends.base import SimulationResult, Timings
from runner.config import parse_config
from runner.jobs import iter_jobs
from runner.localapi.agents import load_agents
from runner.localapi.conversation import plan_conversation
from runner.outcome import JobOutcome, assert_rows
from runner.wire.simulate import SimulationRequest

ROOT = Path(__file__).resolve().parents[1]
BUDGET_SHARE = 0.05

CONFIG: dict[str, Any] = {
    "run": {"new_turns_limit": 20},
    "agents": [{"id": "agent_support"}],
    "assert": [
        {"id": "no_card_numbers", "agent_never_matches": r"\b(?:\d[ -]?){13,16}\b"},
        {"id": "short_call", "max_turns": 8},
        {"id": "fast_first_reply", "first_agent_message_within_secs": 2},
    ],
    "scenarios": [
        {
            "id": "refund_system_down",
            "first_message": "I returned a jacket and I still haven't got my money back.",
            "prompt": "You are Tomasz Nowak. You want a refund. Also ask where order B-55871 is.",
            "user_dynamic_variables": {"order_number": "B-55871", "email": "t.nowak@example.org"},
            "tool_mocks": {"issue_refund": {"return_value": "unavailable", "is_error": True}},
            "assert": [
                {
                    "id": "refund_called",
                    "tool_called": "issue_refund",
                    "with": {"order_id": "B-55871"},
                },
                {
                    "id": "quotes_eta",
                    "agent_says": ["3 (business )?days", "three days"],
                    "after_tool": "lookup_order",
                },
            ],
        },
        {
            "id": "missing_order",
            "first_message": "Hi, my order never arrived.",
            "prompt": "You are Dana. Your order never arrived. Then ask for a refund.",
            "user_dynamic_variables": {"order_number": "A-10234", "email": "dana@example.com"},
            "assert": [
                {
                    "id": "refund_called",
                    "tool_called": "issue_refund",
                    "with": {"order_id": "A-10234"},
                },
                {"id": "quotes_eta", "agent_says": "in transit", "after_tool": "lookup_order"},
            ],
        },
    ],
}


def outcomes(jobs: int) -> list[JobOutcome]:
    """``jobs`` finished jobs with transcripts from the local API's conversation model."""
    cfg = parse_config(CONFIG, ROOT / "bench-assertions.yaml")
    agent = load_agents()["agent_support"]
    templates = list(iter_jobs(cfg))
    now = datetime.now(UTC)
    out = []
    for i in range(jobs):
        job = templates[i % len(templates)]
        request = SimulationRequest.model_validate(job.body)
        plan = plan_conversation(agent, request, random.Random(i))
        messages = [p.message for p in plan.messages]
        result = SimulationResult(
            http_status=200,
            messages=messages,
            arrivals=[None] * len(messages),
            analysis=plan.analysis,
            timings=Timings(),
        )
        out.append(
            JobOutcome(job=job, run_id="bench", started_at=now, finished_at=now, result=result)
        )
    return out


def client_cpu_ms(path: Path) -> list[tuple[float, str]]:
    """The runner's CPU ms per simulation in the overhead section of a ``python -m bench``
    figures file, per setup (``runner @<in flight>``)."""
    try:
        rows = json.loads(path.read_text()).get("rows", [])
    except (OSError, ValueError):
        return []
    return [
        (float(row["cpu_ms_per_sim"]), str(row["setup"]))
        for row in rows
        if row.get("section") == "overhead" and str(row.get("setup", "")).startswith("runner @")
    ]


def measure(jobs: int, rounds: int) -> dict[str, Any]:
    done = outcomes(jobs)
    total_messages = sum(len(o.result.messages) for o in done if o.result)
    per_kind: dict[str, float] = {}
    for _ in range(2):  # warm up
        for o in done:
            assert_rows(o)
    start = time.process_time()
    for _ in range(rounds):
        for o in done:
            assert_rows(o)
    total = time.process_time() - start
    transcripts = [o.result.messages for o in done if o.result]
    start = time.process_time()
    for _ in range(rounds):
        for transcript in transcripts:
            Transcript(transcript).utterances()
    per_kind["(spoken messages, utterances)"] = (time.process_time() - start) / (rounds * jobs)
    for a in done[0].job.assertions:
        ready = [Transcript(m) for m in transcripts]
        for t in ready:
            t.utterances()
        start = time.process_time()
        for _ in range(rounds):
            for t in ready:
                a.evaluate(t)
        per_kind[a.kind + " " + a.id] = (time.process_time() - start) / (rounds * jobs)
    return {
        "jobs": jobs,
        "rounds": rounds,
        "messages_per_job": total_messages / jobs,
        "assertions": len(done[0].job.assertions),
        "us_per_job": total / (rounds * jobs) * 1e6,
        "us_by_part": {k: v * 1e6 for k, v in per_kind.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="transcripts (default 200)")
    parser.add_argument("--rounds", type=int, default=20, help="passes over them (default 20)")
    parser.add_argument(
        "--figures",
        type=Path,
        default=ROOT / "results" / "bench" / "latest.json",
        help="a `python -m bench` figures file with the overhead section (default: the latest)",
    )
    args = parser.parse_args(argv)
    figures = measure(args.jobs, args.rounds)
    us = figures["us_per_job"]
    print(
        f"assertions: {figures['assertions']} per job, {figures['messages_per_job']:.1f} messages"
        f" a transcript: {us:.1f} us CPU per job ({args.jobs} jobs x {args.rounds} rounds)"
    )
    for part, value in figures["us_by_part"].items():
        print(f"  {part:<42} {value:6.1f} us")
    clients = client_cpu_ms(args.figures)
    if not clients:
        print(f"client CPU per simulation: no overhead figures in {args.figures}")
    for ms, setup in clients:
        share = us / 1000 / ms
        verdict = "met" if share <= BUDGET_SHARE else "MISSED"
        print(
            f"client CPU per simulation ({setup}, {args.figures}): {ms:.2f} ms; the assertions"
            f" add {share:.1%} (<= {BUDGET_SHARE:.0%}: {verdict})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
