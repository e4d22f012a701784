"""``python -m bench.view [--jobs N] [--requests N] [--out DIR]``: the viewer on a big run.

Builds a synthetic run of ``--jobs`` jobs (default 100,000: 4 agents x 125 scenarios x 2
languages x 100 repeats, 6 criteria and 10 messages a job, 2% errors; ``bench.view_data``)
and a second one to compare it with, in a temporary results directory; starts the viewer
(``python -m runner view``) on it in its own process; times each page over HTTP (the first
request, which computes and caches the run's figures, and the median of ``--requests`` more,
each job page a different job); reads the viewer's peak RSS from /proc. Prints a table with
the issue's targets and writes ``results/bench/view.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.view_data import Shape, shape_for, write_synthetic_run
from runner.view.server import start_viewer

ROOT = Path(__file__).resolve().parents[1]
RSS_TARGET_MB = 300.0


@dataclass(frozen=True)
class Page:
    name: str
    paths: tuple[str, ...]
    """Requested in turn: the first cold, the rest warm (cycled when fewer than needed)."""
    target_secs: float | None


@dataclass
class Timing:
    page: str
    target_secs: float | None
    first_secs: float
    median_secs: float
    max_secs: float
    bytes: int

    @property
    def met(self) -> bool | None:
        return None if self.target_secs is None else self.median_secs <= self.target_secs


def pages(shape: Shape) -> list[Page]:
    jobs = [f"/runs/big/jobs/k{i:010d}" for i in range(1, shape.jobs, max(1, shape.jobs // 11))]
    cases = "/runs/big/cases"
    return [
        Page("runs page", ("/",), 1.0),
        Page("run page", ("/runs/big",), 1.0),
        Page("run page, heatmap rows 41-80", ("/runs/big?heat=2",), 1.0),
        Page(
            "cases: agent + criterion + failure",
            (f"{cases}?agent=agent-1&criterion=no_invented_facts&result=failure",),
            1.0,
        ),
        Page(
            "cases: heatmap cell (agent, scenario, criterion)",
            (f"{cases}?agent=agent-2&scenario=scenario_017&criterion=politeness&result=failure",),
            1.0,
        ),
        Page("cases: language + error kind", (f"{cases}?m.language=es&status=error",), 1.0),
        Page(
            "cases: flaky only, sorted by failures", (f"{cases}?flaky=1&sort=failed&desc=1",), 1.0
        ),
        Page("cases: full-text search", (f"{cases}?q=order+A-54321",), 1.0),
        Page("cases: search, common word, page 40", (f"{cases}?q=refund&page=40",), 1.0),
        Page("job page", tuple(jobs), 0.2),
        Page("compare two runs", ("/compare?a=big&b=big-b",), None),
    ]


def rss_mb(pid: int) -> tuple[float, float]:
    """Current and peak resident set size of a process, MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def measure(client: httpx.Client, page: Page, requests: int) -> Timing:
    times, size = [], 0
    for i in range(requests + 1):
        path = page.paths[i % len(page.paths)]
        start = time.perf_counter()
        reply = client.get(path)
        times.append(time.perf_counter() - start)
        if reply.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {reply.status_code}: {reply.text[:300]}")
        size = max(size, len(reply.content))
    warm = times[1:]
    return Timing(page.name, page.target_secs, times[0], statistics.median(warm), max(warm), size)


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _fmt(secs: float) -> str:
    return f"{secs * 1000:,.0f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.view", description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs in the run (100,000)")
    parser.add_argument("--requests", type=int, default=5, help="warm requests per page (5)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    parser.add_argument("--verbose", action="store_true", help="RSS after each page")
    args = parser.parse_args(argv)

    shape = shape_for(args.jobs)
    work = Path(tempfile.mkdtemp(prefix="bench-view-"))
    try:
        started = time.perf_counter()
        write_synthetic_run(work / "big", shape)
        write_synthetic_run(work / "big-b", replace(shape, seed=1))
        built = time.perf_counter() - started
        size_mb = sum(p.stat().st_size for p in (work / "big").iterdir()) / 1e6
        print(
            f"synthetic run: {shape.jobs:,} jobs ({shape.agents} agents x {shape.scenarios}"
            f" scenarios x {shape.languages} languages x {shape.repeats} repeats,"
            f" {shape.criteria} criteria and {shape.messages} messages a job),"
            f" {size_mb:.1f} MB of Parquet, built in {built:.1f} s (two of them)"
        )
        viewer = start_viewer(work)
        try:
            base_rss, _ = rss_mb(viewer.pid)
            timings = []
            with httpx.Client(base_url=viewer.base_url, timeout=120) as client:
                for page in pages(shape):
                    timings.append(measure(client, page, args.requests))
                    if args.verbose:
                        now, high = rss_mb(viewer.pid)
                        print(f"  after {page.name}: RSS {now:.0f} MB, peak {high:.0f} MB")
            rss, peak = rss_mb(viewer.pid)
            stderr = viewer.stderr_text()
        finally:
            viewer.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = [("page", "target", "first request", "median", "max", "HTML", "met")]
    for t in timings:
        target = "–" if t.target_secs is None else f"≤ {_fmt(t.target_secs)}"
        met = "–" if t.met is None else ("met" if t.met else "MISSED")
        rows.append(
            (t.page, target, _fmt(t.first_secs), _fmt(t.median_secs), _fmt(t.max_secs),
             f"{t.bytes / 1000:,.0f} KB", met)
        )  # fmt: skip
    rss_met = peak <= RSS_TARGET_MB
    rows.append(
        ("viewer RSS", f"≤ {RSS_TARGET_MB:.0f} MB", f"{base_rss:.0f} MB at start",
         f"{rss:.0f} MB at end", f"{peak:.0f} MB peak", "", "met" if rss_met else "MISSED")
    )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"\nviewer on {shape.jobs:,} jobs ({args.requests} warm requests a page, median):")
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if stderr:
        print(f"\nviewer stderr:\n{stderr}")

    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": {"cores": _cores(), "python": platform.python_version()},
        "jobs": shape.jobs,
        "shape": asdict(shape),
        "requests_per_page": args.requests,
        "pages": [{**asdict(t), "met": t.met} for t in timings],
        "rss_mb": {"start": base_rss, "end": rss, "peak": peak, "target": RSS_TARGET_MB},
        "all_met": all(t.met is not False for t in timings) and rss_met,
    }
    path = args.out / "view.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path}")
    return 0 if report["all_met"] else 1


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    raise SystemExit(main())
