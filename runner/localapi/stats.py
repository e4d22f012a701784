"""Counters behind ``GET /_local/stats``: what the local API did, for tests and benchmarks.

A test asserts on what the server saw (a fault rate, that a concurrency cap held, that a run
retried) instead of trusting the client's own account. Plain counters mutated from the event
loop thread only, so no locking is needed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from runner.localapi.faults import FaultKind

BROKEN_KINDS: tuple[str, ...] = ("disconnect", "malformed", "reset")
"""How a reply can break on the wire (``streams_broken`` keys, always present)."""


@dataclass
class ServerStats:
    """Mutable counters of one server process (``snapshot`` gives the JSON view)."""

    requests_total: int = 0
    """Requests to the vendor paths (``/v1/...``); ``/_local/...`` is not counted."""
    responses_by_status: Counter[int] = field(default_factory=Counter)
    simulate_requests: int = 0
    """Simulate requests that passed auth, validation and the agent lookup."""
    simulations_started: int = 0
    simulations_completed: int = 0
    """Replies sent in full (stream: the analysis frame went out)."""
    client_disconnects: int = 0
    """Simulations the client abandoned before the reply was complete."""
    held: int = 0
    """Simulate requests held unanswered by ``--hold-request`` (until their client left)."""
    streams_broken: Counter[str] = field(default_factory=Counter)
    faults_injected: Counter[str] = field(default_factory=Counter)
    concurrency_rejections: int = 0
    """429s from the real ``--max-concurrency`` cap (not injected faults)."""
    in_flight: int = 0
    peak_in_flight: int = 0
    messages_sent: int = 0
    frames_sent: int = 0
    billed_conversations: int = 0
    """Conversations billed: replies sent in full, test runs finished (``localapi.pricing``)."""
    billed_usd: float = 0.0
    billed_credits: int = 0
    verdicts_judged: int = 0
    """Success or failure verdicts the judge gave (before its noise)."""
    verdicts_flipped: int = 0
    """Of those, the ones ``--judge-noise`` flipped before serving."""
    verdicts_contradicting: int = 0
    """Verdicts against the behaviour the conversation showed (the judge's own error: 0)."""
    conversations_judged: int = 0
    users_drifted: int = 0
    """Conversations whose simulated user abandoned its goal (``--user-drift``)."""

    def judged(self, *, verdicts: int, flipped: int, contradictions: int, drifted: bool) -> None:
        self.conversations_judged += 1
        self.verdicts_judged += verdicts
        self.verdicts_flipped += flipped
        self.verdicts_contradicting += contradictions
        self.users_drifted += drifted

    def bill(self, usd: float, credits: int) -> None:
        self.billed_conversations += 1
        self.billed_usd += usd
        self.billed_credits += credits

    def request_seen(self) -> None:
        self.requests_total += 1

    def response_started(self, status: int) -> None:
        self.responses_by_status[status] += 1

    def simulation_started(self) -> None:
        self.simulations_started += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def simulation_ended(self, *, completed: bool) -> None:
        self.in_flight -= 1
        if completed:
            self.simulations_completed += 1

    def fault_injected(self, kind: str) -> None:
        self.faults_injected[kind] += 1

    def stream_broken(self, how: str) -> None:
        self.streams_broken[how] += 1

    def reset(self) -> None:
        """Zero every counter; in-flight work is still running, so the gauges carry over."""
        in_flight = self.in_flight
        fresh = ServerStats(in_flight=in_flight, peak_in_flight=in_flight)
        self.__dict__.update(fresh.__dict__)

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests_total": self.requests_total,
            "responses_by_status": {str(k): v for k, v in sorted(self.responses_by_status.items())},
            "simulate_requests": self.simulate_requests,
            "simulations_started": self.simulations_started,
            "simulations_completed": self.simulations_completed,
            "client_disconnects": self.client_disconnects,
            "held": self.held,
            "streams_broken": {k: self.streams_broken.get(k, 0) for k in BROKEN_KINDS},
            "faults_injected": {k.value: self.faults_injected.get(k.value, 0) for k in FaultKind},
            "concurrency_rejections": self.concurrency_rejections,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "messages_sent": self.messages_sent,
            "frames_sent": self.frames_sent,
            "judge": {
                "conversations": self.conversations_judged,
                "verdicts": self.verdicts_judged,
                "flipped": self.verdicts_flipped,
                "contradicting_behaviour": self.verdicts_contradicting,
            },
            "user_drift": {
                "conversations": self.conversations_judged,
                "drifted": self.users_drifted,
            },
            "billing": {
                "conversations": self.billed_conversations,
                "usd": self.billed_usd,
                "credits": self.billed_credits,
            },
        }
