"""``python -m bench.view --against REF [--rounds N]``: the viewer's page times and peak RSS of
this checkout beside a git revision's, measured in alternating rounds in one run.

REF is checked out into a temporary worktree (``bench.ab.checkouts``). Each round runs REF's
own ``bench.view`` and this checkout's (uncommitted changes included), each in a fresh process
with its own tree first on the path, at the same ``--jobs``/``--requests``/``--per-part``; the
side that goes first alternates from round to round, so drift on a shared machine touches both
alike. Each side builds its synthetic run with its own ``bench.view_data`` (same shape, same
seed; the table schema is its own runner's). Per page and case, each side's figure is the
median over the rounds of its per-round median; the verdict is "within 10%":

- a page is met when now / before <= 1.10; but when both medians are under ``FAST_SECS``
  (10 ms) the ratio is mostly timer and scheduler noise, so such a page is "too fast to
  compare" and met when now is at most ``FAST_SLACK_SECS`` (1 ms, 10% of 10 ms) slower;
- the viewer's peak RSS of each case is met when now / before <= 1.10.

Prints the table and writes ``view-ab.json`` to ``--out`` (``results/bench/``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.ab import checkouts
from bench.suite import ROOT, spread
from bench.text import render_table

LIMIT = 1.10
"""now / before above this is a miss (the issue's "within 10%")."""
FAST_SECS = 0.010
"""Pages whose medians are both below this are compared by absolute difference."""
FAST_SLACK_SECS = 0.001
"""How much slower a too-fast-to-compare page may be (10% of ``FAST_SECS``)."""
RSS = "viewer peak RSS"

Report = dict[str, Any]
"""One ``bench.view`` run's ``view.json``."""


@dataclass(frozen=True)
class Row:
    """One page (or the peak RSS) of one case: both sides' medians over the rounds."""

    case: str
    item: str
    before: float | None
    now: float | None
    before_spread: float | None
    now_spread: float | None
    rule: str
    """``ratio``, ``absolute`` (too fast to compare) or ``one side`` (no verdict)."""
    met: bool | None

    @property
    def ratio(self) -> float | None:
        if self.before is None or self.now is None or self.before <= 0:
            return None
        return self.now / self.before


def judge(before: float, now: float, *, seconds: bool) -> tuple[str, bool]:
    """The rule that applies and whether ``now`` is within 10% of ``before``."""
    if seconds and before < FAST_SECS and now < FAST_SECS:
        return "absolute", now - before <= FAST_SLACK_SECS
    return "ratio", now <= before * LIMIT


def _series(reports: Sequence[Report]) -> dict[tuple[str, str], list[float]]:
    """Every (case, page)'s median seconds and every case's peak RSS, one value a round."""
    out: dict[tuple[str, str], list[float]] = {}
    for report in reports:
        for case, figures in report["cases"].items():
            for page in figures["pages"]:
                out.setdefault((case, page["page"]), []).append(page["median_secs"])
            out.setdefault((case, RSS), []).append(figures["rss_mb"]["peak"])
    return out


def compare(before: Sequence[Report], now: Sequence[Report]) -> list[Row]:
    """Both sides' rounds, page by page in this checkout's order (then pages only REF has).

    Raises ``ValueError`` when the two sides did not measure the same synthetic run."""
    if not before or not now:
        raise ValueError("compare: each side needs at least one round")
    for field in ("shape", "parts", "requests_per_page"):
        values = {json.dumps(r.get(field), sort_keys=True) for r in (*before, *now)}
        if len(values) > 1:
            raise ValueError(f"compare: the sides measured different runs ({field}: {values})")
    old, new = _series(before), _series(now)
    rows = []
    for key in [*new, *(k for k in old if k not in new)]:
        case, item = key
        b = statistics.median(old[key]) if key in old else None
        n = statistics.median(new[key]) if key in new else None
        if b is None or n is None:
            rule, met = "one side", None
        else:
            rule, met = judge(b, n, seconds=item != RSS)
        rows.append(
            Row(
                case,
                item,
                b,
                n,
                spread(old[key]) if key in old else None,
                spread(new[key]) if key in new else None,
                rule,
                met,
            )
        )
    return rows


def missed(rows: Sequence[Row]) -> list[Row]:
    return [r for r in rows if r.met is False]


def table(rows: Sequence[Row]) -> str:
    def cells(r: Row) -> dict[str, Any]:
        scale, unit = (1.0, "MB") if r.item == RSS else (1000.0, "ms")
        value = {
            f"{side}": None if v is None else f"{v * scale:,.1f} {unit}"
            for side, v in (("before", r.before), ("now", r.now))
        }
        fast = f"too fast: diff <= {FAST_SLACK_SECS * 1000:g} ms"
        rule = {"ratio": "ratio", "absolute": fast, "one side": "one side"}
        return {
            "case": r.case,
            "item": r.item,
            **value,
            "spreads": None
            if r.before_spread is None or r.now_spread is None
            else f"{r.before_spread:.0%} / {r.now_spread:.0%}",
            "ratio": r.ratio,
            "rule": rule[r.rule],
            "met": None if r.met is None else ("met" if r.met else "MISSED"),
        }

    columns = [
        ("case", "case", "{}"),
        ("item", "page", "{}"),
        ("before", "before", "{}"),
        ("now", "now", "{}"),
        ("ratio", "now/before", "{:.3f}x"),
        ("spreads", "spread b/n", "{}"),
        ("rule", "rule", "{}"),
        ("met", "within 10%", "{}"),
    ]
    return render_table(columns, [cells(r) for r in rows])


def _run_side(tree: Path, out: Path, view_args: Sequence[str]) -> Report:
    """One ``bench.view`` of ``tree``'s own code in a fresh process; its ``view.json``."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.view", *view_args, "--out", str(out)],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=False,
    )
    path = out / "view.json"
    # exit status 1 means a target of the issue was missed: still a measurement
    if done.returncode not in (0, 1) or not path.exists():
        raise RuntimeError(
            f"bench.view failed in {tree} (exit {done.returncode}):\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
    report: Report = json.loads(path.read_text())
    return report


def _data_note(ref: str) -> str:
    same = (
        ref == "."
        or 0
        == subprocess.run(
            ["git", "diff", "--quiet", ref, "--", "bench/view_data.py"], cwd=ROOT, check=False
        ).returncode
    )
    how = "identical" if same else "different"
    return (
        f"data: each side writes its run with its own bench/view_data.py ({how} in {ref} and"
        " here), same shape and seed"
    )


def run(ref: str, rounds: int, view_args: Sequence[str], out_dir: Path) -> int:
    """Alternate REF's and this checkout's ``bench.view`` for ``rounds`` rounds; print and
    write the comparison; 0 when every page and RSS is within 10%, else 1."""
    if rounds < 1:
        raise SystemExit("--rounds: must be at least 1")
    reports: dict[str, list[Report]] = {"before": [], "now": []}
    with checkouts([ref]) as trees, tempfile.TemporaryDirectory(prefix="view-ab-") as tmp:
        tree = {"before": trees[ref], "now": ROOT}
        if not (tree["before"] / "bench" / "view.py").exists():
            raise SystemExit(f"--against {ref}: that revision has no bench/view.py")
        print(_data_note(ref), flush=True)
        for round_no in range(1, rounds + 1):
            order = ("before", "now") if round_no % 2 else ("now", "before")
            for side in order:
                started = time.perf_counter()
                out = Path(tmp) / f"{side}-{round_no}"
                report = _run_side(tree[side], out, view_args)
                reports[side].append(report)
                peaks = "/".join(f"{c['rss_mb']['peak']:.0f}" for c in report["cases"].values())
                print(
                    f"round {round_no}/{rounds}: {side} ({report['commit']})"
                    f" {time.perf_counter() - started:.0f} s, peak RSS {peaks} MB",
                    flush=True,
                )
    rows = compare(reports["before"], reports["now"])
    first = reports["now"][0]
    print(
        f"\nviewer A/B on {first['jobs']:,} jobs ({first['parts']} parts in progress):"
        f" {ref} (before) vs this checkout (now), median over {rounds} rounds of each"
        f" round's median of {first['requests_per_page']} warm requests; ratio rule"
        f" now/before <= {LIMIT:.2f}; pages under {FAST_SECS * 1000:.0f} ms on both sides are"
        f" too fast to compare: met when now is at most {FAST_SLACK_SECS * 1000:.0f} ms slower"
    )
    print(table(rows))
    bad = missed(rows)
    verdict = "met" if not bad else "MISSED (" + "; ".join(f"{r.case}: {r.item}" for r in bad) + ")"
    print(f"within 10%: {verdict}")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "view-ab.json"
    figures = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "against": ref,
        "commits": {side: [r["commit"] for r in reps] for side, reps in reports.items()},
        "rounds": rounds,
        "jobs": first["jobs"],
        "shape": first["shape"],
        "parts": first["parts"],
        "requests_per_page": first["requests_per_page"],
        "rules": {"limit": LIMIT, "fast_secs": FAST_SECS, "fast_slack_secs": FAST_SLACK_SECS},
        "rows": [{**asdict(r), "ratio": r.ratio} for r in rows],
        "all_met": not bad,
        "runs": reports,
    }
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {path}")
    return 0 if not bad else 1
