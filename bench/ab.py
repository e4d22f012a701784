"""``python -m bench.ab REF [REF ...]``: the client CPU per simulation of several versions of
the runner, measured in alternating rounds against one local API.

A REF is ``.`` (this checkout, uncommitted changes included), ``floor`` (the raw aiohttp
client) or a git revision, checked out into a temporary worktree. Each round runs every REF
once, in a fresh process (``bench.worker``), the order rotated every round (``rotated``), so
drift on a shared machine and a run's place in its round touch them alike;
the medians over the rounds, their spreads and each one's ratio to the first REF are printed,
over whole runs and over their steady middles (``bench.worker.Window``). The local API
is pinned to the last core and the clients to the others, as in ``make bench``.

A change worth a few percent needs this: single runs of the same code vary by about 10% here.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.suite import ROOT, client_cores, overhead_spec, rotated, run_worker, serve, spread

FLOOR = "floor"


@contextlib.contextmanager
def checkouts(refs: list[str]) -> Iterator[dict[str, Path]]:
    """Each REF's source tree; revisions in temporary worktrees, removed on exit."""
    trees: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        try:
            for i, ref in enumerate(refs):
                if ref in (".", FLOOR):
                    trees[ref] = ROOT
                    continue
                tree = Path(tmp) / f"ref{i}"
                subprocess.run(
                    ["git", "worktree", "add", "--detach", "-q", str(tree), ref],
                    cwd=ROOT,
                    check=True,
                    capture_output=True,
                )
                trees[ref] = tree
            yield trees
        finally:
            for tree in trees.values():
                if tree != ROOT:
                    subprocess.run(
                        ["git", "worktree", "remove", "--force", str(tree)],
                        cwd=ROOT,
                        check=False,
                        capture_output=True,
                    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.splitlines()[0])
    parser.add_argument("refs", nargs="+", metavar="REF")
    parser.add_argument("--jobs", type=int, default=3000, help="simulations per run")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pace", type=float, default=0.05, help="the local API's --time-scale")
    parser.add_argument(
        "--cases",
        type=int,
        default=1,
        help="split the runner's simulations into this many cases (as the overhead section does;"
        " a REF older than that option runs one case whatever this says)",
    )
    parser.add_argument(
        "--asserts",
        type=int,
        default=0,
        help="configure this many of the overhead section's assertions (up to 5) and print"
        " their own CPU per simulation, timed in the run (a REF older than that: not printed)",
    )
    args = parser.parse_args(argv)

    results: dict[str, list[float]] = {ref: [] for ref in args.refs}
    steady: dict[str, list[float]] = {ref: [] for ref in args.refs}
    asserts: dict[str, list[float]] = {ref: [] for ref in args.refs}
    with (
        client_cores(),
        checkouts(args.refs) as trees,
        serve("--time-scale", str(args.pace)) as server,
    ):
        for round_no in range(1, args.rounds + 1):
            for ref in rotated(args.refs, round_no - 1):
                client = FLOOR if ref == FLOOR else "runner"
                spec = {**overhead_spec(args.concurrency), "client": client, "jobs": args.jobs}
                if args.cases > 1:
                    spec["cases"] = args.cases
                if args.asserts and client != FLOOR:
                    spec["asserts"] = args.asserts
                figures = run_worker(spec, server, trees[ref])
                results[ref].append(figures["cpu_ms_per_sim"])
                steady[ref].append(figures.get("steady_cpu_ms_per_sim", float("nan")))
                if "assert_ms_per_sim" in figures:
                    asserts[ref].append(figures["assert_ms_per_sim"])
                hook = f", assertions {asserts[ref][-1] * 1000:.0f} us/sim" if asserts[ref] else ""
                print(
                    f"round {round_no}: {ref} {results[ref][-1]:.2f} ms/sim"
                    f" (steady {steady[ref][-1]:.2f}{hook})",
                    flush=True,
                )
    first, first_steady = (statistics.median(d[args.refs[0]]) for d in (results, steady))
    for ref, values in results.items():
        median, middle = statistics.median(values), statistics.median(steady[ref])
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(
            f"{ref}: median {median:.2f} ms/sim, {median / first:.2f}x {args.refs[0]} ({runs};"
            f" spread {spread(values):.1%}); steady {middle:.2f} ms/sim,"
            f" {middle / first_steady:.2f}x (spread {spread(steady[ref]):.1%})"
        )
        if asserts[ref]:
            cost = statistics.median(asserts[ref])
            print(
                f"  assertions: median {cost * 1000:.0f} us/sim, {cost / median:.1%} of its CPU"
                f" per simulation ({', '.join(f'{v * 1000:.0f}' for v in asserts[ref])})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
