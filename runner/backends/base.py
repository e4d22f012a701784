"""What every backend is to the engine: the interface, and what one attempt returns.

The engine, retries, store and analysis do not care which API produced a conversation: a
backend turns a job into a ``SimulationResult`` or raises ``AttemptError`` (one attempt each).
It tells the engine about the reply as soon as its status is known, through the ``on_reply``
it is handed (a stream's 200 arrives long before its analysis), so the concurrency controller
acts within one round trip, not one simulation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from runner.adaptive import SignalKind
from runner.jobs import Job
from runner.wire.pricing import Charging
from runner.wire.simulate import Analysis, TranscriptMessage

ReplyListener = Callable[[SignalKind, int | None, int | None], None]
"""``(what the reply says about the quota, maximum header, current header)``: called at most
once per attempt. A backend that cannot tell leaves it uncalled; the engine then judges the
attempt by its outcome."""


class Backend(Protocol):
    async def simulate(self, job: Job, on_reply: ReplyListener) -> SimulationResult: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class Timings:
    """Seconds from the moment the request was sent; None when the attempt never got there."""

    headers: float | None = None
    first_frame: float | None = None
    analysis: float | None = None
    total: float | None = None
    frames: int | None = 0
    """None when the backend has no frames (agent-testing)."""
    mean_gap: float | None = None
    max_gap: float | None = None


@dataclass(frozen=True, slots=True)
class BucketRecord:
    """A vendor result bucket holding a job's test run (agent-testing backend)."""

    invocation_id: str
    test_id: str
    test_run_id: str
    title: str
    reason: str
    status: str
    runs: int


@dataclass(slots=True)
class SimulationResult:
    """A completed simulation as returned by a backend."""

    http_status: int
    messages: list[TranscriptMessage]
    arrivals: Sequence[float | None]
    """Per message: seconds after the request when it arrived (None: not observed)."""
    analysis: Analysis
    timings: Timings
    credits_used: int | None = None
    """Credits the vendor billed for the run (agent-testing)."""
    charging: Charging | None = None
    """The test run's charging breakdown, when the vendor sent one (agent-testing)."""
    invocation_total_price: float | None = None
    """USD billed for the whole test invocation the run belongs to (agent-testing)."""
    triggered_guardrails: list[str] | None = None
    """Names (else types) of the guardrails that fired during the run; None: not reported."""
    criterion_names: dict[str, str] = field(default_factory=dict)
    """Names of criteria the backend itself sent (e.g. agent-testing's merged conditions):
    recorded like the config's extra criteria."""
    buckets: list[BucketRecord] = field(default_factory=list)
    max_concurrent: int | None = None
    """``maximum-concurrent-requests`` of the reply, when sent (adaptive concurrency reads it)."""
    current_concurrent: int | None = None
    """``current-concurrent-requests`` of the reply, when sent."""
