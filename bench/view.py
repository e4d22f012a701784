"""``python -m bench.view [--jobs N] [--requests N] [--out DIR] [--against REF [--rounds N]]``:
the viewer on a big run.

Builds a synthetic run of ``--jobs`` jobs (default 100,000: 4 agents x 125 scenarios x 2
languages x 100 repeats, 6 criteria and 10 messages a job, 2% errors; ``bench.view_data``)
and a second one to compare it with, twice: finished (final tables) and in progress (the same
run as part files of ``--per-part`` jobs, its lock held, as a live sweep looks before its
tables are built). For each, starts the viewer (``python -m runner view``) in its own process;
times each page over HTTP (the first request, which computes and caches the run's figures,
and the median of ``--requests`` more, each job page a different job; in progress, also the
run page right after each new part lands); reads the viewer's peak RSS from /proc. Prints
both side by side with the issue's targets and writes ``results/bench/view.json``.

With ``--against REF``, compares instead this checkout with a git revision in alternating
rounds (``bench.view_ab``) and writes ``results/bench/view-ab.json``.
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

from bench import view_ab
from bench.view_data import Shape, shape_for, write_parts_run, write_synthetic_run
from runner.store import PARTS, RunLock
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


@dataclass
class CaseResult:
    """One viewer over one results directory: its pages' timings and its RSS."""

    case: str
    timings: list[Timing]
    rss_start: float
    rss_end: float
    rss_peak: float
    stderr: str

    @property
    def rss_met(self) -> bool:
        return self.rss_peak <= RSS_TARGET_MB


def measure_case(
    case: str, results: Path, shape: Shape, requests: int, *, verbose: bool, live: LiveFeed | None
) -> CaseResult:
    """Start a viewer over ``results`` and time every page; with ``live``, also the run page
    right after each new part lands (what a refresh of a run in progress costs)."""
    viewer = start_viewer(results)
    try:
        base_rss, _ = rss_mb(viewer.pid)
        timings = []
        with httpx.Client(base_url=viewer.base_url, timeout=120) as client:
            for page in pages(shape):
                timings.append(measure(client, page, requests))
                if verbose:
                    now, high = rss_mb(viewer.pid)
                    print(f"  {case}, after {page.name}: RSS {now:.0f} MB, peak {high:.0f} MB")
            if live is not None:
                timings.append(measure_refresh(client, live, requests))
        rss, peak = rss_mb(viewer.pid)
        stderr = viewer.stderr_text()
    finally:
        viewer.stop()
    return CaseResult(case, timings, base_rss, rss, peak, stderr)


@dataclass
class LiveFeed:
    """The last parts of a run in progress, held back and committed one at a time (the jobs
    part renamed into place, as the runner's flush commits it)."""

    held: list[tuple[Path, Path]]

    @classmethod
    def hold_back(cls, run_dir: Path, count: int) -> LiveFeed:
        jobs_parts = sorted((run_dir / PARTS / "jobs").glob("*.parquet"))[-count:]
        stash = run_dir.parent.parent / ".held"
        stash.mkdir(exist_ok=True)
        held = []
        for path in jobs_parts:
            aside = stash / path.name
            path.rename(aside)
            held.append((aside, path))
        return cls(held)

    def commit_next(self) -> None:
        aside, path = self.held.pop(0)
        aside.rename(path)


def measure_refresh(client: httpx.Client, live: LiveFeed, requests: int) -> Timing:
    """The run page after each new part: every request finds a new version of the run."""
    page = Page(REFRESH_PAGE, ("/runs/big",), 1.0)
    times, size = [], 0
    for _ in range(requests + 1):
        live.commit_next()
        start = time.perf_counter()
        reply = client.get(page.paths[0])
        times.append(time.perf_counter() - start)
        if reply.status_code != 200:
            raise RuntimeError(f"{page.paths[0]}: HTTP {reply.status_code}")
        size = max(size, len(reply.content))
    warm = times[1:]
    return Timing(page.name, page.target_secs, times[0], statistics.median(warm), max(warm), size)


REFRESH_PAGE = "run page after a new part lands"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.view", description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs in the run (100,000)")
    parser.add_argument("--requests", type=int, default=5, help="warm requests per page (5)")
    parser.add_argument("--per-part", type=int, default=200, help="jobs a part file (200)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    parser.add_argument("--verbose", action="store_true", help="RSS after each page")
    parser.add_argument(
        "--against",
        metavar="REF",
        help="compare this checkout with git revision REF, each running its own bench.view in"
        " alternating rounds (writes view-ab.json)",
    )
    parser.add_argument("--rounds", type=int, help="rounds with --against (3)")
    args = parser.parse_args(argv)
    if args.rounds is not None and args.against is None:
        parser.error("--rounds: only with --against REF")
    if args.against is not None:
        sizes = ["--jobs", str(args.jobs), "--requests", str(args.requests)]
        sizes += ["--per-part", str(args.per_part)]
        return view_ab.run(args.against, args.rounds or 3, sizes, args.out)

    shape = shape_for(args.jobs)
    work = Path(tempfile.mkdtemp(prefix="bench-view-"))
    try:
        started = time.perf_counter()
        finished, in_progress = work / "finished", work / "in-progress"
        write_synthetic_run(finished / "big", shape)
        write_synthetic_run(finished / "big-b", replace(shape, seed=1))
        parts = write_parts_run(finished / "big", in_progress / "big", per_part=args.per_part)
        shutil.copytree(finished / "big-b", in_progress / "big-b")
        built = time.perf_counter() - started
        size_mb = sum(p.stat().st_size for p in (finished / "big").iterdir()) / 1e6
        print(
            f"synthetic run: {shape.jobs:,} jobs ({shape.agents} agents x {shape.scenarios}"
            f" scenarios x {shape.languages} languages x {shape.repeats} repeats,"
            f" {shape.criteria} criteria and {shape.messages} messages a job),"
            f" {size_mb:.1f} MB of Parquet; in progress: {parts} parts of {args.per_part} jobs;"
            f" built in {built:.1f} s"
        )
        results = [measure_case("finished", finished, shape, args.requests,
                                verbose=args.verbose, live=None)]  # fmt: skip
        live = LiveFeed.hold_back(in_progress / "big", args.requests + 1)
        with RunLock(in_progress / "big"):  # held as a runner holds it: the run reads as running
            results.append(
                measure_case("in progress", in_progress, shape, args.requests,
                             verbose=args.verbose, live=live)
            )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print_table(results, shape, args.requests, parts)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": {"cores": _cores(), "python": platform.python_version()},
        "jobs": shape.jobs,
        "shape": asdict(shape),
        "parts": parts,
        "requests_per_page": args.requests,
        "cases": {
            r.case: {
                "pages": [{**asdict(t), "met": t.met} for t in r.timings],
                "rss_mb": {
                    "start": r.rss_start,
                    "end": r.rss_end,
                    "peak": r.rss_peak,
                    "target": RSS_TARGET_MB,
                },
            }
            for r in results
        },
        "all_met": all(t.met is not False for r in results for t in r.timings)
        and all(r.rss_met for r in results),
    }
    path = args.out / "view.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path}")
    return 0 if report["all_met"] else 1


def print_table(results: list[CaseResult], shape: Shape, requests: int, parts: int) -> None:
    """The two cases side by side: first request and median for each, met when both are."""
    head = ["page", "target"]
    for r in results:
        head += [f"{r.case}: first", f"{r.case}: median"]
    rows = [(*head, "met")]
    names = list(dict.fromkeys(t.page for r in results for t in r.timings))
    for name in names:
        found = [next((t for t in r.timings if t.page == name), None) for r in results]
        some = next(t for t in found if t is not None)
        target = "–" if some.target_secs is None else f"≤ {_fmt(some.target_secs)}"
        cells = [name, target]
        for t in found:
            cells += ["–", "–"] if t is None else [_fmt(t.first_secs), _fmt(t.median_secs)]
        verdicts = [t.met for t in found if t is not None and t.met is not None]
        cells.append("–" if not verdicts else ("met" if all(verdicts) else "MISSED"))
        rows.append(tuple(cells))
    rss = ["viewer RSS (start / peak)", f"≤ {RSS_TARGET_MB:.0f} MB"]
    for r in results:
        rss += [f"{r.rss_start:.0f} MB", f"{r.rss_peak:.0f} MB peak"]
    rows.append((*rss, "met" if all(r.rss_met for r in results) else "MISSED"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(
        f"\nviewer on {shape.jobs:,} jobs, finished (final tables) and in progress ({parts}"
        f" part files); {requests} warm requests a page, median:"
    )
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for r in results:
        if r.stderr:
            print(f"\nviewer stderr ({r.case}):\n{r.stderr}")


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    raise SystemExit(main())
