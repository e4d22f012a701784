"""Live progress for long runs: a rich bar on a terminal, a status line now and then elsewhere.

A run that stops early (repeats until a verdict, a comparison) counts its simulations done of
*up to* its total (the most it may send) and says how many it is expected to send: its bar is
drawn against the expectation, not the maximum (``runner.expected``)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import anyio
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from runner.engine import Counters


def in_flight_text(c: Counters) -> str:
    """``in flight 17/20``, plus ``auto`` when the limit adapts and the server's advertised
    quota when it sends one: the limit in force is the figure to watch on a slow run."""
    text = f"in flight {c.in_flight}/{c.concurrency_limit}"
    if c.concurrency_auto:
        text += " auto"
    if c.server_quota is not None:
        text += f" (server max {c.server_quota})"
    return text


def cases_text(c: Counters) -> str:
    """``cases 12 decided, 9 open`` with sequential repeats (the planner's count); else empty."""
    if c.cases is None:
        return ""
    stopped, open_ = c.cases()
    return f"  cases {stopped} decided, {open_} open"


def done_text(c: Counters, up_to: bool = False, expected: float | None = None) -> str:
    """``37/420`` or, for a run that stops early, ``37/up to 420 (expected about 70)``."""
    if not up_to:
        return f"{c.done}/{c.total}"
    about = "" if expected is None else f" (expected about {expected:.0f})"
    return f"{c.done}/up to {c.total}{about}"


def status_line(
    c: Counters, elapsed: float, up_to: bool = False, expected: float | None = None
) -> str:
    rate = c.done / elapsed if elapsed > 0 else 0.0
    kinds = ", ".join(f"{k} {n}" for k, n in c.failures_by_kind.most_common(3))
    return (
        f"{done_text(c, up_to, expected)} done  ok {c.ok}  errors {c.errors}  "
        f"retries {c.retries}  "
        f"{in_flight_text(c)}  {rate:.1f} jobs/s"
        + cases_text(c)
        + (f"  failures: {kinds}" if kinds else "")
    )


async def show_progress(
    counters: Counters,
    *,
    stream: TextIO | None = None,
    interval: float = 0.2,
    plain_interval: float = 5.0,
    up_to: bool = False,
    expected: float | None = None,
) -> None:
    """Render until cancelled: a task beside the engine that only reads the counters.
    ``up_to``: ``counters.total`` is the most the run may send; ``expected``: what it is
    expected to send (the bar's length then, stretched if the run goes past it)."""
    out = stream or sys.stderr
    start = time.monotonic()
    if not out.isatty():
        while True:
            await anyio.sleep(plain_interval)
            line = status_line(counters, time.monotonic() - start, up_to, expected)
            print(line, file=out, flush=True)
    console = Console(file=out)
    columns = (
        [TextColumn("{task.fields[done]}")]
        if up_to
        else [MofNCompleteColumn(), TaskProgressColumn()]
    )
    progress = Progress(
        TextColumn("[bold]simulations"),
        BarColumn(),
        *columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=False,
    )
    task = progress.add_task("", total=bar_total(counters, up_to, expected), done="")

    def refresh() -> None:
        c = counters
        progress.update(
            task,
            completed=c.done,
            total=bar_total(c, up_to, expected),
            done=done_text(c, up_to, expected),
            description=(
                f"ok [green]{c.ok}[/]  err [red]{c.errors}[/]  retries {c.retries}  "
                f"{in_flight_text(c)}{cases_text(c)}"
            ),
        )

    with progress:
        try:
            while True:
                refresh()
                await anyio.sleep(interval)
        finally:
            refresh()  # the last frame shows the final counts, not those of 0.2 s before


def bar_total(c: Counters, up_to: bool, expected: float | None) -> float:
    """The bar's length: the total, or for a run that stops early the expected simulations
    (never less than those done, never more than the most it may send)."""
    if not up_to or expected is None:
        return c.total
    return min(float(c.total), max(expected, float(c.done)))
