"""What evaluating assertions costs per finished job (issue 30: at most 5% of client CPU).

``python -m bench.assertions [--jobs N] [--rounds N]``. Transcripts come from the local API's own
conversation model (``plan_conversation``, the agent ``agent_support`` of configs/agents.yaml,
``new_turns_limit`` 20), in two sets with the issue's five assertions configured: the overhead
section's own (``bench.worker``'s config: the six-goal conversation and its five assertions,
where the 5% bound is measured in the run) and the two scenarios with tools of
configs/example.yaml. The figure is the process CPU of ``runner.outcome.add_assert_columns``
(the hook every finished job passes through: five evaluations on its transcript, their rows'
columns) per job, beside the runner's client CPU per simulation from the overhead section of a
``python -m bench`` figures file (``--figures``; default ``results/bench/latest.json``) when
there is one. Out of the run the hook runs with hot caches: the overhead section's in-run
figure (``assert_ms_per_sim``) is the one the bound is held to; this one says where the time
goes.
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
from runner.outcome import JobOutcome, add_assert_columns
from runner.schema import CRITERIA
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


def outcomes(jobs: int, transcripts: str = "overhead") -> list[JobOutcome]:
    """``jobs`` finished jobs with transcripts from the local API's conversation model: the
    overhead section's (``overhead``) or the example scenarios' (``example``)."""
    if transcripts == "overhead":
        from bench.suite import overhead_spec
        from bench.worker import sweep_config

        spec = {**overhead_spec(1), "url": "http://127.0.0.1:1", "jobs": 1, "asserts": 5}
        cfg = parse_config(sweep_config(spec), ROOT / "bench-overhead.yaml")
    else:
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


def _hook_secs(done: list[JobOutcome], rounds: int) -> float:
    """Process CPU seconds of ``rounds`` passes of the hook over ``done``, into fresh columns
    each pass (as a run's batch, flushed between)."""
    total = 0.0
    for _ in range(rounds):
        columns: dict[str, list[Any]] = {name: [] for name in CRITERIA.schema.names()}
        start = time.process_time()
        for o in done:
            add_assert_columns(columns, o)
        total += time.process_time() - start
    return total


def measure(jobs: int, rounds: int, transcripts: str = "overhead") -> dict[str, Any]:
    done = outcomes(jobs, transcripts)
    total_messages = sum(len(o.result.messages) for o in done if o.result)
    per_kind: dict[str, float] = {}
    _hook_secs(done, 2)  # warm up
    total = _hook_secs(done, rounds)
    conversations = [o.result.messages for o in done if o.result]
    start = time.process_time()
    for _ in range(rounds):
        for transcript in conversations:
            Transcript(transcript)
    per_kind["(reading the transcript)"] = (time.process_time() - start) / (rounds * jobs)
    for a in done[0].job.assertions:
        ready = [Transcript(m) for m in conversations]
        for t in ready:  # what the transcript builds when first asked, built before timing
            a.evaluate(t)
        start = time.process_time()
        for _ in range(rounds):
            for t in ready:
                a.evaluate(t)
        per_kind[a.kind + " " + a.id] = (time.process_time() - start) / (rounds * jobs)
    return {
        "transcripts": transcripts,
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
    clients = client_cpu_ms(args.figures)
    for transcripts in ("overhead", "example"):
        figures = measure(args.jobs, args.rounds, transcripts)
        us = figures["us_per_job"]
        print(
            f"{transcripts} transcripts: {figures['assertions']} assertions,"
            f" {figures['messages_per_job']:.1f} messages a transcript: {us:.1f} us CPU per job"
            f" ({args.jobs} jobs x {args.rounds} rounds)"
        )
        for part, value in figures["us_by_part"].items():
            print(f"  {part:<50} {value:6.1f} us")
        if transcripts != "overhead":
            continue
        if not clients:
            print(f"client CPU per simulation: no overhead figures in {args.figures}")
        for ms, setup in clients:
            share = us / 1000 / ms
            verdict = "met" if share <= BUDGET_SHARE else "MISSED"
            print(
                f"  beside the client CPU per simulation ({setup}, {args.figures}): {ms:.2f} ms;"
                f" {share:.1%} (<= {BUDGET_SHARE:.0%}: {verdict}; out of the run, hot caches)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
