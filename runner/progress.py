"""Live progress for long runs: a rich bar on a terminal, a status line now and then elsewhere."""

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


def status_line(c: Counters, elapsed: float) -> str:
    rate = c.done / elapsed if elapsed > 0 else 0.0
    kinds = ", ".join(f"{k} {n}" for k, n in c.failures_by_kind.most_common(3))
    return (
        f"{c.done}/{c.total} done  ok {c.ok}  errors {c.errors}  retries {c.retries}  "
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
) -> None:
    """Render until cancelled: a task beside the engine that only reads the counters."""
    out = stream or sys.stderr
    start = time.monotonic()
    if not out.isatty():
        while True:
            await anyio.sleep(plain_interval)
            print(status_line(counters, time.monotonic() - start), file=out, flush=True)
    console = Console(file=out)
    progress = Progress(
        TextColumn("[bold]simulations"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=False,
    )
    task = progress.add_task("", total=counters.total)

    def refresh() -> None:
        c = counters
        progress.update(
            task,
            completed=c.done,
            total=c.total,
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
