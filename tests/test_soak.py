"""The fault soak at a size CI can afford: every job ends exactly once, and the runner's
figures agree with the local API's own counters (see ``bench/soak.py``)."""

from __future__ import annotations

from bench.soak import soak


async def test_soak_loses_nothing_and_agrees_with_the_server() -> None:
    figures = await soak(240, concurrency=12, server_cap=8, time_scale=0.002, seed=4)
    assert figures["problems"] == []
    assert figures["lost"] == 0 and figures["duplicated"] == 0 and figures["unexpected"] == 0
    assert figures["ok"] + figures["errors"] == figures["jobs"] == 240
    # the faults really were there, and every kind was met and handled
    seen = figures["failed_attempts_by_kind"]
    for kind in ("concurrency_limit", "system_busy", "server_error", "stream_broken", "connect"):
        assert seen.get(kind, 0) > 0, kind
    assert seen.get("idle_timeout", 0) + seen.get("first_byte_timeout", 0) > 0
    assert figures["server"]["peak_in_flight"] <= 8  # the server's cap held
    assert figures["retry_after_honoured"] > 0
