"""Figures of one load run, computed from the runner's own attempts table (pure).

The saturated window runs from the first attempt's start to the last attempt's start: while
jobs were still waiting, the runner had work to keep in flight, so the ramp-up is the
policy's cost and counts; the drain at the end (fewer jobs left than slots) is nobody's and
does not. Throughput is the simulations completed in that window over its length. That is
conservative: nothing can complete during the first simulation length of any run, so a window
``n`` simulation lengths long reads about ``0.45 / n`` below the steady state the Little's-law
bound describes (lognormal lengths, all slots filled at once). Bigger runs read closer.
"""

from __future__ import annotations

from typing import Any

import polars as pl


def _num(value: Any) -> float:
    """A polars scalar (or None) as a float."""
    return float(value) if value is not None else 0.0


def _seconds(frame: pl.DataFrame) -> pl.DataFrame:
    """Attempts as (start, end) seconds from the first start, with their status and limit."""
    t0 = frame["started_at"].min()
    return frame.select(
        start=(pl.col("started_at") - pl.lit(t0)).dt.total_microseconds() / 1e6,
        duration=pl.col("duration_secs"),
        ok=pl.col("status") == "ok",
        rejected=(pl.col("error_kind") == "concurrency_limit").fill_null(False),
        limit=pl.col("concurrency_limit"),
    ).with_columns(end=pl.col("start") + pl.col("duration"))


def window_figures(attempts: pl.DataFrame, quota: int) -> dict[str, Any]:
    """Mean in-flight and throughput in the saturated window, against the Little's-law bound.

    ``quota``: the concurrency the server allows. The bound is ``quota / mean simulation time``
    (simulations admitted and completed); ``in_flight_ratio`` and ``throughput_ratio`` are the
    achieved mean in-flight and completion rate over that quota and bound.
    """
    if attempts.height == 0:
        return {"attempts": 0}
    a = _seconds(attempts)
    w_end = _num(a["start"].max())
    ok = a.filter(pl.col("ok"))
    mean_sim = _num(ok["duration"].mean()) if ok.height else 0.0
    figures: dict[str, Any] = {
        "attempts": a.height,
        "ok": ok.height,
        "rejected": int(a["rejected"].sum()),
        "rejected_share": _num(a["rejected"].mean()),
        "mean_sim_secs": mean_sim,
        "window_secs": w_end,
    }
    if w_end <= 0 or mean_sim <= 0:
        return figures
    clipped = ok.select(
        (pl.min_horizontal(pl.col("end"), pl.lit(w_end)) - pl.col("start")).clip(lower_bound=0)
    )
    busy = float(clipped.to_series().sum())
    completed = ok.filter(pl.col("end") <= w_end).height
    bound = quota / mean_sim
    figures.update(
        mean_in_flight=busy / w_end,
        in_flight_ratio=busy / w_end / quota,
        throughput=completed / w_end,
        bound=bound,
        throughput_ratio=completed / w_end / bound,
    )
    return figures


def limit_trace(attempts: pl.DataFrame, quota: int | None = None) -> dict[str, Any]:
    """How the limit in force moved: first, last, lowest after the first 429, changes, and
    when it first reached ``quota`` (seconds after the first attempt)."""
    if attempts.height == 0:
        return {}
    a = _seconds(attempts).sort("start")
    limits = a["limit"]
    changes = int((limits.diff().fill_null(0) != 0).sum())
    trace: dict[str, Any] = {
        "limit_first": int(limits[0]),
        "limit_last": int(limits[-1]),
        "limit_max": int(_num(limits.max())),
        "limit_changes": changes,
    }
    if quota is not None:
        reached = a.filter(pl.col("limit") >= quota)
        trace["secs_to_quota"] = float(reached["start"][0]) if reached.height else None
        rejected = a.filter(pl.col("rejected"))
        if rejected.height:
            after = a.filter(pl.col("start") > rejected["start"][0])
            trace["limit_min_after_429"] = int(_num(after["limit"].min())) if after.height else None
    return trace
