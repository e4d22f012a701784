"""``python -m bench.journal``: what journaling a finished job costs, with and without fsync.

A 21-message job (the load benchmark's simulation) is added to the run's sink
(``runner.journal.JournaledParts``) N times into a temporary run directory on the same disk as
the results, and timed: the batch shaping alone (what the runner did before the journal), plus
encoding and one ``write(2)`` (the default), plus an ``fsync`` per job. Prints microseconds per
job and writes ``results/bench/journal.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from runner.backends.base import SimulationResult, Timings
from runner.engine import BatchSink
from runner.jobs import Job
from runner.journal import JournaledParts
from runner.outcome import AttemptRecord, JobOutcome
from runner.store import PartWriter
from runner.wire.simulate import Analysis, CriterionResult, TranscriptMessage

ROOT = Path(__file__).resolve().parents[1]


def outcome(i: int) -> JobOutcome:
    usage = {"model_usage": {"gpt-4o-mini": {"input": {"tokens": 900, "price": 0.0001}}}}
    messages = [
        TranscriptMessage.model_validate(
            {
                "role": "agent" if n % 2 else "user",
                "message": f"Message {n} of the conversation, about an order that is late. " * 2,
                "time_in_call_secs": n * 3,
                "llm_usage": usage if n % 2 else None,
            }
        )
        for n in range(21)
    ]
    analysis = Analysis(
        call_successful="success",
        transcript_summary="The user asked about a late order; the agent gave its status.",
        evaluation_criteria_results={
            c: CriterionResult(criteria_id=c, result="success", rationale="Because. " * 10)
            for c in ("polite", "resolved", "no_invented_facts")
        },
    )
    now = datetime.now(UTC)
    return JobOutcome(
        job=Job(f"key{i}", "agent", "agent", f"s{i}", (("language", "en"),), 0, {}),
        run_id="bench",
        started_at=now,
        finished_at=now,
        attempts=[AttemptRecord(1, now, "ok", 1.0, 0.0, 0.0, 8, 200)],
        result=SimulationResult(200, messages, [0.1] * 21, analysis, Timings(frames=22)),
    )


def per_job_us(jobs: int, *, journal: bool, fsync: bool = False) -> float:
    outcomes = [outcome(i) for i in range(jobs)]
    with tempfile.TemporaryDirectory(dir=ROOT / "results") as tmp:
        writer = PartWriter(Path(tmp), "bench", ("language",))
        writer.prepare()
        sink = JournaledParts(writer, fsync=fsync) if journal else BatchSink(lambda b: None)
        start = time.perf_counter()
        for o in outcomes:
            sink.add(o)
        elapsed = time.perf_counter() - start
        if isinstance(sink, JournaledParts):
            sink.close()
    return elapsed / jobs * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.journal", description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    args = parser.parse_args(argv)
    (ROOT / "results").mkdir(exist_ok=True)
    figures = {
        "batch_only_us": min(per_job_us(args.jobs, journal=False) for _ in range(3)),
        "journal_us": min(per_job_us(args.jobs, journal=True) for _ in range(3)),
        "journal_fsync_us": min(
            per_job_us(args.jobs // 10, journal=True, fsync=True) for _ in range(3)
        ),
    }
    figures["journal_extra_us"] = figures["journal_us"] - figures["batch_only_us"]
    for name, value in figures.items():
        print(f"{name:>20}: {value:8.1f} us per 21-message job")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "journal.json").write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
