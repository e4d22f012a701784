"""Fault injection for the local API: the settings and a pure per-request decision.

The real service fails in a handful of ways (429s of two kinds, 5xx, dropped connections, a
stream that stops early or stalls). The local API reproduces each at a configured rate so the
runner's retry and error handling is exercised on every run, not only when the vendor has a bad
day. Decisions are pure functions of a uniform draw so they can be tested without sockets, and
the draws are seeded per request so a run with a fixed ``--seed`` injects the same faults into
the same request sequence.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    """What goes wrong with one simulate request; the value is the stats / CLI name."""

    CONCURRENCY_429 = "too_many_concurrent_requests"
    BUSY_429 = "system_busy"
    HTTP_500 = "http_500"
    HTTP_502 = "http_502"
    HTTP_503 = "http_503"
    RESET = "reset"
    """Connection closed (RST) before any response byte."""
    DISCONNECT = "disconnect"
    """Connection closed mid-stream, after some frames, without the analysis frame."""
    MALFORMED = "malformed"
    """One frame replaced by a truncated, undecodable line (stream) or a truncated body."""
    STALL = "stall"
    """No bytes for ``stall_secs`` somewhere in the reply, then it carries on."""


ERROR_REPLY_KINDS: frozenset[FaultKind] = frozenset(
    {
        FaultKind.CONCURRENCY_429,
        FaultKind.BUSY_429,
        FaultKind.HTTP_500,
        FaultKind.HTTP_502,
        FaultKind.HTTP_503,
    }
)
"""Faults answered with an ordinary error reply instead of a simulation."""

_ERROR_REPLIES: dict[FaultKind, tuple[int, str, str]] = {
    FaultKind.CONCURRENCY_429: (
        429,
        "too_many_concurrent_requests",
        "Your subscription has exceeded the maximum of {limit} concurrent requests. "
        "Please wait for in-flight requests to finish before sending more.",
    ),
    FaultKind.BUSY_429: (
        429,
        "system_busy",
        "The system is experiencing heavy traffic, please retry later with exponential backoff.",
    ),
    FaultKind.HTTP_500: (500, "internal_server_error", "An internal error occurred."),
    FaultKind.HTTP_502: (502, "bad_gateway", "The upstream service returned an invalid reply."),
    FaultKind.HTTP_503: (503, "service_unavailable", "The service is temporarily unavailable."),
}


def error_reply(kind: FaultKind, *, limit: int) -> tuple[int, dict[str, Any]]:
    """Status and ``{"detail": {"status", "message"}}`` body of an error-reply fault."""
    status, code, message = _ERROR_REPLIES[kind]
    return status, {"detail": {"status": code, "message": message.format(limit=limit)}}


@dataclass(frozen=True)
class FaultSettings:
    """Per-request probability of each fault; at most one fault per request, so they sum to <= 1."""

    too_many_concurrent_requests: float = 0.0
    system_busy: float = 0.0
    http_500: float = 0.0
    http_502: float = 0.0
    http_503: float = 0.0
    reset: float = 0.0
    disconnect: float = 0.0
    malformed: float = 0.0
    stall: float = 0.0
    stall_secs: float = 30.0
    """How long a stall lasts, in real seconds (not scaled by the time scale)."""

    def __post_init__(self) -> None:
        for kind in FaultKind:
            rate = self.rate(kind)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate {kind.value} must be in [0, 1], got {rate}")
        if self.total_rate > 1.0 + 1e-9:
            raise ValueError(f"fault rates sum to {self.total_rate:.4g}, more than 1")
        if self.stall_secs < 0:
            raise ValueError(f"stall_secs must be >= 0, got {self.stall_secs}")

    def rate(self, kind: FaultKind) -> float:
        return float(getattr(self, kind.value))

    @property
    def total_rate(self) -> float:
        return sum(self.rate(kind) for kind in FaultKind)

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def decide_fault(settings: FaultSettings, u: float) -> FaultKind | None:
    """The fault for a request whose uniform draw is ``u`` in [0, 1), or None.

    The unit interval is cut into consecutive slices, one per kind (in ``FaultKind`` order),
    each as wide as that kind's rate; ``u`` landing in a slice selects it. So each kind happens
    with exactly its rate when ``u`` is uniform.
    """
    edge = 0.0
    for kind in FaultKind:
        rate = settings.rate(kind)
        if rate <= 0.0:
            continue
        edge += rate
        if u < edge:
            return kind
    return None


@dataclass(frozen=True)
class FaultDecision:
    """One request's fault and, for faults inside a reply, where in it they strike."""

    kind: FaultKind | None
    position: float
    """Uniform in [0, 1): which frame a mid-reply fault hits (see ``fault_frame_index``)."""


def derive_seed(*parts: Any) -> int:
    """A 64-bit seed from any JSON-able parts: stable across processes (unlike ``hash``)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def draw_fault(settings: FaultSettings, seed: int, request_index: int) -> FaultDecision:
    """The seeded fault decision for the ``request_index``-th simulate request of a server."""
    if settings.total_rate <= 0.0:
        return FaultDecision(kind=None, position=0.0)
    rng = random.Random(derive_seed(seed, "faults", request_index))
    u = rng.random()
    return FaultDecision(kind=decide_fault(settings, u), position=rng.random())


def fault_frame_index(position: float, n_frames: int) -> int:
    """Index of the frame (messages, then the analysis) a mid-reply fault hits.

    Frames are numbered 0..n_frames-1, the analysis last. A disconnect happens just before the
    chosen frame, a malformed line replaces it, a stall precedes it. The index is at least 1
    whenever there are two or more frames, so a disconnect always breaks a stream that had
    started (at least one frame through) and never yields a complete one.
    """
    if n_frames <= 1:
        return 0
    return 1 + min(int(position * (n_frames - 1)), n_frames - 2)
