"""The HTML report of a run and the page comparing two runs: one self-contained file each.

Charts are inline SVG drawn by the small functions below; the only style is an inline
``<style>`` block and there is no script, so a page opens offline, in any browser, forever.
Building a page only reads the run's tables (``runner.analysis`` does the arithmetic): it
never runs a job. ``build_report`` / ``build_compare_page`` are pure (frames in, text out);
``write_report`` / ``write_compare_page`` are the I/O at the edge.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from runner import analysis
from runner.report_failures import failures_section
from runner.store import Run, load_run

REPORT_FILE = "report.html"
WIDTH = 860

OUTCOME_COLOURS = {
    "success": "#1a9850",
    "failure": "#d73027",
    "unknown": "#9e9e9e",
    "error": "#6a3d9a",
}
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
VERDICT_COLOURS = {
    "regression": "#d73027",
    "improvement": "#1a9850",
    "no significant change": "#7f7f7f",
    "insufficient data": "#bdbdbd",
}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
background:#fafafa}
main{max-width:920px;margin:0 auto;padding:16px 24px 48px;background:#fff}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;margin:32px 0 8px;
border-bottom:1px solid #ddd;padding-bottom:4px}h3{font-size:15px;margin:20px 0 6px}
.meta{color:#666;font-size:12px}nav a{margin-right:12px;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:100px}
.card b{display:block;font-size:20px}.card span{color:#666;font-size:12px}
table{border-collapse:collapse;margin:8px 0;font-size:12.5px}
th,td{border-bottom:1px solid #eee;padding:3px 8px;text-align:right}
th{background:#f3f3f3;position:sticky;top:0}
td.s,th.s{text-align:left}td{white-space:nowrap}.scroll{overflow-x:auto}.note{color:#555;font-size:12.5px;max-width:860px}
svg{display:block;margin:6px 0}svg text{font-family:inherit}
.bad{color:#b2182b;font-weight:600}.good{color:#1a7837;font-weight:600}
details{margin:8px 0}summary{cursor:pointer;color:#333}
"""


# -------------------------------------------------------------------------- formatting


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def secs(value: float | None) -> str:
    if value is None:
        return "–"
    if abs(value) < 1:
        return f"{value * 1000:.0f} ms" if abs(value) >= 0.01 else f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def _num(x: float) -> str:
    return f"{x:.1f}"


def _cell(value: object, column: str, percent: Sequence[str], seconds: Sequence[str]) -> str:
    if value is None:
        return "–"
    if column in percent and isinstance(value, float):
        return pct(value)
    if column in seconds and isinstance(value, float):
        return secs(value)
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.0f}"
    return esc(value)


def frame_html(
    frame: pl.DataFrame,
    percent: Sequence[str] = (),
    seconds: Sequence[str] = (),
    limit: int | None = None,
) -> str:
    """A frame as an HTML table; rates as percentages, durations in ms / s."""
    rows = frame if limit is None else frame.head(limit)
    head = "".join(
        f'<th class="{"s" if frame.schema[c] == pl.String else ""}">{esc(c)}</th>'
        for c in frame.columns
    )
    body = []
    for row in rows.iter_rows(named=True):
        cells = "".join(
            f'<td class="{"s" if frame.schema[c] == pl.String else ""}">'
            f"{_cell(v, c, percent, seconds)}</td>"
            for c, v in row.items()
        )
        body.append(f"<tr>{cells}</tr>")
    more = ""
    if limit is not None and frame.height > limit:
        more = f'<p class="note">… and {frame.height - limit} more rows.</p>'
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>{more}"
    )


RATE_COLUMNS = (
    "pass_rate",
    "ci_low",
    "ci_high",
    "error_rate",
    "flaky_share",
    "pass_at_k",
    "pass_hat_k",
    "a_pass_rate",
    "b_pass_rate",
    "diff",
    "diff_low",
    "diff_high",
)
SECONDS_COLUMNS = ("p50", "p90", "p95", "p99", "secs")


# ------------------------------------------------------------------------------- SVG


def _svg(width: float, height: float, body: Sequence[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_num(width)}" height="{_num(height)}"'
        f' viewBox="0 0 {_num(width)} {_num(height)}" role="img" aria-label="{esc(label)}">'
        + "".join(body)
        + "</svg>"
    )


def _text(
    x: float, y: float, text: object, size: float = 11, anchor: str = "start", **kw: str
) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{esc(v)}"' for k, v in kw.items())
    return (
        f'<text x="{_num(x)}" y="{_num(y)}" font-size="{size}" text-anchor="{anchor}"{extra}>'
        f"{esc(text)}</text>"
    )


def _line(
    x1: float, y1: float, x2: float, y2: float, colour: str, width: float = 1, **kw: str
) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{esc(v)}"' for k, v in kw.items())
    return (
        f'<line x1="{_num(x1)}" y1="{_num(y1)}" x2="{_num(x2)}" y2="{_num(y2)}"'
        f' stroke="{colour}" stroke-width="{width}"{extra}/>'
    )


def _rect(x: float, y: float, w: float, h: float, fill: str, title: str = "", **kw: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{esc(v)}"' for k, v in kw.items())
    tip = f"<title>{esc(title)}</title>" if title else ""
    return (
        f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(max(w, 0))}" height="{_num(max(h, 0))}"'
        f' fill="{fill}"{extra}>{tip}</rect>'
    )


def _truncate(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _nice_step(span: float, target: int = 5) -> float:
    if span <= 0:
        return 1.0
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def _ticks(low: float, high: float, target: int = 5) -> list[float]:
    step = _nice_step(high - low, target)
    start = math.ceil(low / step - 1e-9) * step
    out, x = [], start
    while x <= high + step * 1e-9:
        out.append(round(x, 12))
        x += step
    return out


def _legend(items: Sequence[tuple[str, str]], x: float, y: float) -> list[str]:
    out = []
    for label, colour in items:
        out.append(_rect(x, y - 9, 10, 10, colour))
        out.append(_text(x + 14, y, label, 11))
        x += 24 + 6.5 * len(label)
    return out


@dataclass(frozen=True)
class IntervalRow:
    label: str
    rate: float | None
    low: float
    high: float
    note: str
    series: str = ""


def interval_chart(rows: Sequence[IntervalRow], title: str, series: Sequence[str] = ()) -> str:
    """Pass rates as dots with their 95% interval as a bar, one line per row.

    Rows of one label with several ``series`` (e.g. agents) are drawn together, coloured.
    A row with no decided outcome shows the whole [0, 1] range, dashed: nothing is known.
    """
    colours = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(series)}
    left, right, top, line_h = 200, 180, 34 if series else 24, 16
    plot_w = WIDTH - left - right
    labels: list[str] = list(dict.fromkeys(r.label for r in rows))
    per_label = {lab: [r for r in rows if r.label == lab] for lab in labels}
    height = top + sum(len(v) * line_h + 8 for v in per_label.values()) + 8
    body: list[str] = []
    if series:
        body += _legend([(s, colours[s]) for s in series], left, 12)

    def x_of(p: float) -> float:
        return left + p * plot_w

    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        body.append(_line(x_of(tick), top - 4, x_of(tick), height - 6, "#e3e3e3"))
        body.append(_text(x_of(tick), top - 8, pct(tick, 0), 10, "middle", fill="#666"))
    y = top
    for label in labels:
        group = per_label[label]
        body.append(
            _text(left - 8, y + line_h * len(group) / 2 + 4, _truncate(label, 30), 12, "end")
        )
        for row in group:
            mid = y + line_h / 2
            colour = colours.get(row.series, "#1f4e79")
            tip = f"{row.label} {row.series}: {row.note}".strip()
            if row.rate is None:
                dashed = colour if row.series else "#c7c7c7"
                body.append(
                    _line(
                        x_of(0), mid, x_of(1), mid, dashed, 2, stroke_dasharray="3 3", opacity="0.5"
                    )
                )
            else:
                body.append(
                    _rect(
                        x_of(row.low),
                        mid - 3,
                        x_of(row.high) - x_of(row.low),
                        6,
                        colour,
                        tip,
                        opacity="0.35",
                    )
                )
                body.append(
                    f'<circle cx="{_num(x_of(row.rate))}" cy="{_num(mid)}" r="4" fill="{colour}">'
                    f"<title>{esc(tip)}</title></circle>"
                )
            body.append(_text(WIDTH - right + 8, mid + 4, _truncate(row.note, 32), 11, fill="#444"))
            y += line_h
        y += 8
    return _svg(WIDTH, height, body, title)


def _heat_colour(rate: float) -> str:
    """Red (0) through yellow (0.5) to green (1)."""
    stops = ((0.0, (215, 48, 39)), (0.5, (254, 224, 139)), (1.0, (26, 152, 80)))
    for (p0, c0), (p1, c1) in itertools.pairwise(stops):
        if rate <= p1:
            t = (rate - p0) / (p1 - p0)
            r, g, b = (round(a + (bb - a) * t) for a, bb in zip(c0, c1, strict=True))
            return f"rgb({r},{g},{b})"
    return "rgb(26,152,80)"


def heatmap(cells: pl.DataFrame, row_col: str, title: str) -> str:
    """Outcomes row x criterion: colour = pass rate, text = passed/decided.

    Grey: judged but never decided (all unknown or errors); blank: not judged at all.
    """
    rows = list(dict.fromkeys(cells[row_col].to_list()))
    cols = sorted({c for c in cells["criterion_id"].to_list() if c is not None})
    if not rows or not cols:
        return '<p class="note">No criteria results.</p>'
    cell_w = max(46, min(80, (WIDTH - 230) // max(1, len(cols))))
    cell_h, left, top = 22, 230, 120
    width = left + cell_w * len(cols) + 130
    height = top + cell_h * len(rows) + 10
    body: list[str] = []
    for j, col in enumerate(cols):
        x = left + j * cell_w + cell_w / 2
        body.append(
            f'<text x="{_num(x)}" y="{top - 6}" font-size="11" transform="rotate(-40 {_num(x)}'
            f' {top - 6})">{esc(_truncate(col, 24))}</text>'
        )
    lookup = {(r[row_col], r["criterion_id"]): r for r in cells.iter_rows(named=True)}
    for i, row_label in enumerate(rows):
        y = top + i * cell_h
        body.append(_text(left - 8, y + cell_h / 2 + 4, _truncate(str(row_label), 34), 11, "end"))
        for j, col in enumerate(cols):
            x = left + j * cell_w
            cell = lookup.get((row_label, col))
            if cell is None:
                body.append(
                    _rect(
                        x + 1,
                        y + 1,
                        cell_w - 2,
                        cell_h - 2,
                        "#ffffff",
                        f"{row_label} x {col}: not judged",
                        stroke="#f0f0f0",
                    )
                )
                continue
            s, f, u, e = (int(cell[k] or 0) for k in ("success", "failure", "unknown", "errors"))
            n = s + f
            tip = (
                f"{row_label} x {col}: {s} success, {f} failure, {u} unknown, {e} job error(s)"
                + (f"; pass rate {pct(s / n)}" if n else "")
            )
            fill = _heat_colour(s / n) if n else "#e0e0e0"
            body.append(_rect(x + 1, y + 1, cell_w - 2, cell_h - 2, fill, tip))
            label = f"{s}/{n}" if n else "?"
            dark = n and 0.25 < s / n < 0.8
            body.append(
                _text(
                    x + cell_w / 2,
                    y + cell_h / 2 + 4,
                    label,
                    11,
                    "middle",
                    fill="#222" if (dark or not n) else "#fff",
                )
            )
    return _svg(width, height, body, title)


def histogram(values: Sequence[float], title: str, marks: dict[str, float], bins: int = 30) -> str:
    """A distribution with its percentiles marked (one small chart)."""
    width, height, left, bottom, top = 420, 170, 44, 30, 26
    plot_w, plot_h = width - left - 12, height - top - bottom
    body = [_text(left, 14, title, 12, font_weight="600")]
    if not values:
        body.append(_text(left, top + 30, "no samples", 11, fill="#888"))
        return _svg(width, height, body, title)
    low, high = 0.0, max(values)
    high = high if high > low else low + 1e-3
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int((v - low) / (high - low) * bins)))] += 1
    peak = max(counts)
    bw = plot_w / bins
    for i, c in enumerate(counts):
        h = plot_h * c / peak
        lo_edge = low + (high - low) * i / bins
        hi_edge = low + (high - low) * (i + 1) / bins
        body.append(
            _rect(
                left + i * bw + 0.5,
                top + plot_h - h,
                bw - 1,
                h,
                "#6baed6",
                f"{secs(lo_edge)}–{secs(hi_edge)}: {c}",
            )
        )
    body.append(_line(left, top + plot_h, left + plot_w, top + plot_h, "#999"))
    for tick in _ticks(low, high, 4):
        x = left + (tick - low) / (high - low) * plot_w
        if x <= left + plot_w + 0.5:
            body.append(_line(x, top + plot_h, x, top + plot_h + 4, "#999"))
            body.append(_text(x, top + plot_h + 16, secs(tick), 10, "middle", fill="#555"))
    for i, (name, value) in enumerate(marks.items()):
        x = left + (value - low) / (high - low) * plot_w
        body.append(_line(x, top - 2, x, top + plot_h, "#d62728", 1, stroke_dasharray="3 2"))
        flip = x > left + plot_w * 0.7
        body.append(
            _text(
                x - 2 if flip else x + 2,
                top + 8 + 11 * i,
                f"{name} {secs(value)}",
                10,
                "end" if flip else "start",
                fill="#d62728",
            )
        )
    body.append(_text(4, top + 8, str(peak), 10, fill="#555"))
    return _svg(width, height, body, title)


def _time_axis(
    body: list[str], left: float, top: float, plot_w: float, plot_h: float, span: float
) -> None:
    body.append(_line(left, top + plot_h, left + plot_w, top + plot_h, "#999"))
    for tick in _ticks(0, span, 6):
        x = left + tick / span * plot_w
        body.append(_line(x, top + plot_h, x, top + plot_h + 4, "#999"))
        body.append(_text(x, top + plot_h + 16, f"{tick:g}s", 10, "middle", fill="#555"))


def _y_axis(
    body: list[str], left: float, top: float, plot_w: float, plot_h: float, high: float
) -> None:
    for tick in _ticks(0, high, 4):
        y = top + plot_h - tick / high * plot_h
        body.append(_line(left, y, left + plot_w, y, "#eee"))
        body.append(_text(left - 6, y + 4, f"{tick:g}", 10, "end", fill="#555"))


def attempts_chart(buckets: pl.DataFrame, title: str) -> str:
    """Attempts per time bucket stacked by outcome (ok first), with retries as a line."""
    if buckets.height == 0:
        return '<p class="note">No attempts.</p>'
    width, height, left, top, bottom = WIDTH, 240, 48, 34, 30
    plot_w, plot_h = width - left - 16, height - top - bottom
    outcomes = ["ok", *sorted(o for o in set(buckets["outcome"]) if o != "ok")]
    colours = {"ok": "#74c476"} | {
        o: PALETTE[(i + 3) % len(PALETTE)] for i, o in enumerate(outcomes[1:])
    }
    bucket = float(buckets["bucket_secs"][0])
    times = sorted(set(buckets["t_secs"].to_list()))
    span = max(times) + bucket
    totals = buckets.group_by("t_secs").agg(pl.col("attempts").sum(), pl.col("retries").sum())
    high = max(1, _max_int(totals["attempts"]))
    body = _legend([(o, colours[o]) for o in outcomes] + [("retries", "#000")], left, 14)
    _y_axis(body, left, top, plot_w, plot_h, high)
    lookup = {(r["t_secs"], r["outcome"]): r["attempts"] for r in buckets.iter_rows(named=True)}
    bw = bucket / span * plot_w
    for t in times:
        x = left + t / span * plot_w
        y = top + plot_h
        for o in outcomes:
            c = lookup.get((t, o), 0)
            if c:
                h = c / high * plot_h
                y -= h
                body.append(_rect(x + 0.5, y, bw - 1, h, colours[o], f"{t:.1f}s: {c} {o}"))
    points = []
    for r in totals.sort("t_secs").iter_rows(named=True):
        x = left + (r["t_secs"] + bucket / 2) / span * plot_w
        points.append(f"{_num(x)},{_num(top + plot_h - r['retries'] / high * plot_h)}")
    body.append(
        f'<polyline points="{" ".join(points)}" fill="none" stroke="#000" stroke-width="1.5"/>'
    )
    _time_axis(body, left, top, plot_w, plot_h, span)
    return _svg(width, height, body, title)


def in_flight_chart(steps: pl.DataFrame, title: str) -> str:
    """Requests in flight over time (a step line) under the concurrency limit (dashed)."""
    if steps.height == 0:
        return '<p class="note">No attempts.</p>'
    width, height, left, top, bottom = WIDTH, 220, 48, 30, 30
    plot_w, plot_h = width - left - 16, height - top - bottom
    span = max(_max_float(steps["t_secs"]), 1e-3)
    limits = [v for v in steps["concurrency_limit"].to_list() if v is not None]
    high = max(1, _max_int(steps["in_flight"]), *(int(v) for v in limits))
    body = _legend([("in flight", "#1f77b4"), ("concurrency limit", "#d62728")], left, 14)
    _y_axis(body, left, top, plot_w, plot_h, high)

    def xy(t: float, v: float) -> tuple[float, float]:
        return left + t / span * plot_w, top + plot_h - v / high * plot_h

    flight, limit = [], []
    prev_f: float = 0
    prev_l: float | None = None
    for r in steps.iter_rows(named=True):
        x, y = xy(r["t_secs"], prev_f)
        flight.append(f"{_num(x)},{_num(y)}")
        x, y = xy(r["t_secs"], r["in_flight"])
        flight.append(f"{_num(x)},{_num(y)}")
        prev_f = r["in_flight"]
        if r["concurrency_limit"] is not None:
            if prev_l is not None:
                limit.append("{},{}".format(*map(_num, xy(r["t_secs"], prev_l))))
            limit.append("{},{}".format(*map(_num, xy(r["t_secs"], r["concurrency_limit"]))))
            prev_l = r["concurrency_limit"]
    if prev_l is not None:
        limit.append("{},{}".format(*map(_num, xy(span, prev_l))))
    body.append(f'<polyline points="{" ".join(flight)}" fill="none" stroke="#1f77b4"/>')
    if limit:
        body.append(
            f'<polyline points="{" ".join(limit)}" fill="none" stroke="#d62728"'
            ' stroke-dasharray="5 3"/>'
        )
    _time_axis(body, left, top, plot_w, plot_h, span)
    return _svg(width, height, body, title)


def forest_plot(table: pl.DataFrame, label_cols: Sequence[str], title: str) -> str:
    """Change in pass rate (B - A) with its 95% interval, one line per group, 0 marked."""
    rows = table.filter(pl.col("diff").is_not_null())
    if rows.height == 0:
        return '<p class="note">No group has decided outcomes on both sides.</p>'
    left, right, top, line_h = 230, 190, 30, 18
    plot_w = WIDTH - left - right
    height = top + rows.height * line_h + 10

    def x_of(d: float) -> float:
        return left + (d + 1) / 2 * plot_w

    body: list[str] = []
    for tick in (-1, -0.5, 0, 0.5, 1):
        body.append(
            _line(x_of(tick), top - 4, x_of(tick), height - 4, "#999" if tick == 0 else "#eee")
        )
        body.append(
            _text(
                x_of(tick),
                top - 8,
                f"{100 * tick:+.0f} pp" if tick else "0",
                10,
                "middle",
                fill="#555",
            )
        )
    for i, r in enumerate(rows.iter_rows(named=True)):
        mid = top + i * line_h + line_h / 2
        label = " · ".join(str(r[c]) for c in label_cols)
        colour = VERDICT_COLOURS[r["verdict"]]
        body.append(_text(left - 8, mid + 4, _truncate(label, 34), 11, "end"))
        tip = (
            f"{label}: {pct(r['a_pass_rate'])} -> {pct(r['b_pass_rate'])},"
            f" change {pct(r['diff'])} (95% CI {pct(r['diff_low'])} to {pct(r['diff_high'])})"
            f" {r['verdict']}"
        )
        body.append(_line(x_of(r["diff_low"]), mid, x_of(r["diff_high"]), mid, colour, 3))
        body.append(
            f'<circle cx="{_num(x_of(r["diff"]))}" cy="{_num(mid)}" r="4"'
            f' fill="{colour}"><title>{esc(tip)}</title></circle>'
        )
        body.append(
            _text(
                WIDTH - right + 8,
                mid + 4,
                f"{pct(r['diff'], 0)} [{pct(r['diff_low'], 0)}, {pct(r['diff_high'], 0)}]"
                f" {r['verdict'].replace('no significant change', 'n.s.')}",
                10,
                fill=colour,
            )
        )
    return _svg(WIDTH, height, body, title)


# ------------------------------------------------------------------------------ pages


def _page(title: str, sections: Sequence[str]) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
        + "\n".join(sections)
        + "</main></body></html>\n"
    )


def _rate_note(row: dict[str, Any]) -> str:
    s, f = int(row["success"] or 0), int(row["failure"] or 0)
    u, e = int(row["unknown"] or 0), int(row["errors"] or 0)
    if s + f == 0:
        return f"no decided ({u} unk, {e} err)"
    extra = "".join(x for x in (f", {u} unk" if u else "", f", {e} err" if e else ""))
    return f"{pct(s / (s + f), 0)} of {s + f}{extra}"


def _cards(items: Sequence[tuple[str, str]]) -> str:
    return (
        '<div class="cards">'
        + "".join(f'<div class="card"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for k, v in items)
        + "</div>"
    )


def _max_int(series: pl.Series) -> int:
    value = series.max()
    return int(value) if isinstance(value, int | float) else 0


def _max_float(series: pl.Series) -> float:
    value = series.max()
    return float(value) if isinstance(value, int | float) else 0.0


def _run_name(run: Run) -> str:
    return str(run.manifest.get("run_name") or run.path.name)


def _collect(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    return frame.collect() if isinstance(frame, pl.LazyFrame) else frame


CONVENTIONS = """
<h2 id="reading">How to read this</h2>
<ul class="note">
<li>Pass rate = success / (success + failure). <b>unknown</b> (the judge could not tell) is
neither; job <b>errors</b> are not outcomes at all. Both are counted beside the rate.</li>
<li>Bars are 95% Wilson intervals; they assume independent trials, and repeats of one scenario
are not quite, so treat intervals pooled over few scenarios as optimistic.</li>
<li>A <b>case</b> is one agent x scenario x matrix cell; its repeats are its trials.
pass@k: chance that at least one of k repeats passes; pass^k: that all k pass (unbiased
estimators from the observed repeats, averaged over cases with at least k decided trials).
A case is <b>flaky</b> for a criterion when it both passed and failed.</li>
<li>Latency is over ok jobs. <b>message_gap</b>: time between two consecutive messages;
<b>agent_turn</b>: from the message before an agent turn to that turn's last message.</li>
</ul>
"""


def build_report(run: Run, *, generated_at: datetime | None = None, ks: Sequence[int] = ()) -> str:
    """The whole report page for a run, as text (reads only the run's frames)."""
    jobs, criteria = _collect(run.jobs), _collect(run.criteria)
    messages, attempts = _collect(run.messages), _collect(run.attempts)
    name = _run_name(run)
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    sessions = run.manifest.get("sessions") or []
    repeats = _max_int(jobs.group_by(analysis.case_columns(jobs)).len()["len"])
    ks = tuple(ks) or tuple(sorted({1, repeats} - {0}))
    errors = analysis.error_rates(jobs).row(0, named=True)
    agents = sorted(set(jobs["agent_label"].drop_nulls().to_list()))
    wall = sum(float(s.get("wall_secs") or 0) for s in sessions)
    out = [
        f"<h1>Run {esc(name)}</h1>",
        f'<p class="meta">{esc(run.path)} · {len(sessions)} session(s) · target'
        f" {esc((run.manifest.get('target') or {}).get('base_url', '?'))} · config"
        f" {esc(str(run.manifest.get('config_hash', ''))[:12])} · report generated {when}"
        " (from the saved tables; nothing was re-run)</p>",
        '<nav><a href="#pass-rates">pass rates</a><a href="#heatmap">outcomes</a>'
        '<a href="#repeats">repeats &amp; flakiness</a><a href="#latency">latency</a>'
        '<a href="#errors">errors &amp; retries</a><a href="#concurrency">concurrency</a>'
        '<a href="#reading">how to read</a></nav>',
        _cards(
            [
                ("jobs", str(errors["jobs"])),
                ("ok", str(errors["ok"])),
                ("errors", f"{errors['errors']} ({pct(errors['error_rate'])})"),
                ("attempts", str(attempts.height)),
                ("retries", str(errors["retries"])),
                ("agents", str(len(agents))),
                ("scenarios", str(jobs["scenario_id"].n_unique())),
                ("repeats", str(repeats)),
                ("wall time", f"{wall:.1f} s"),
            ]
        ),
    ]
    out += _pass_rate_section(criteria, jobs, agents)
    out += _heatmap_section(criteria, jobs, agents)
    out += failures_section(criteria, jobs, messages)  # runner/report_failures.py
    out += _repeat_section(criteria, jobs, ks)
    out += _latency_section(jobs, messages)
    out += _errors_section(jobs, attempts)
    out.append(CONVENTIONS)
    return _page(f"Run {name}", out)


def _pass_rate_section(criteria: pl.DataFrame, jobs: pl.DataFrame, agents: list[str]) -> list[str]:
    out = ['<h2 id="pass-rates">Pass rate per criterion</h2>']
    rates = analysis.pass_rates(criteria, jobs)
    if rates.height == 0:
        return [*out, '<p class="note">No criteria results in this run.</p>']
    rows = [
        IntervalRow(
            str(r["criterion_id"] or "(unknown: jobs errored)"),
            r["pass_rate"],
            r["ci_low"],
            r["ci_high"],
            _rate_note(r),
        )
        for r in rates.iter_rows(named=True)
    ]
    out.append(interval_chart(rows, "pass rate per criterion with 95% interval"))
    out.append(frame_html(rates, RATE_COLUMNS))
    if len(agents) > 1:
        by_agent = analysis.pass_rates(criteria, jobs, by=["criterion_id", "agent_label"])
        rows = [
            IntervalRow(
                str(r["criterion_id"] or "(unknown)"),
                r["pass_rate"],
                r["ci_low"],
                r["ci_high"],
                _rate_note(r),
                r["agent_label"],
            )
            for r in by_agent.iter_rows(named=True)
        ]
        out.append("<h3>By agent</h3>")
        out.append(interval_chart(rows, "pass rate per criterion and agent", agents))
        overall = analysis.pass_rates(criteria, jobs, by=["agent_label"])
        out.append('<p class="note">All criteria pooled, per agent:</p>')
        out.append(frame_html(overall, RATE_COLUMNS))
    return out


def _heatmap_section(criteria: pl.DataFrame, jobs: pl.DataFrame, agents: list[str]) -> list[str]:
    out = ['<h2 id="heatmap">Outcomes: scenario x criterion</h2>']
    by = ["agent_label", "scenario_id"] if len(agents) > 1 else ["scenario_id"]
    cells = analysis.pass_rates(criteria, jobs, by=[*by, "criterion_id"])
    cells = cells.with_columns(
        pl.concat_str([pl.col(c).fill_null("?") for c in by], separator=" · ").alias("_row")
    )
    out.append(heatmap(cells, "_row", "outcome heatmap"))
    out.append(
        '<p class="note">Colour: pass rate (red 0% · yellow 50% · green 100%); text:'
        " passed/decided; grey “?”: judged but never decided; blank: criterion not judged"
        " for that scenario. Hover a cell for its counts.</p>"
    )
    return out


def _repeat_section(criteria: pl.DataFrame, jobs: pl.DataFrame, ks: Sequence[int]) -> list[str]:
    out = ['<h2 id="repeats">Across repeats: pass@k, pass^k, flakiness</h2>']
    if criteria.height == 0:
        return [*out, '<p class="note">No criteria results.</p>']
    overall = analysis.flakiness(criteria, jobs, by=())
    row = overall.row(0, named=True) if overall.height else {"cases": 0}
    if row["cases"]:
        out.append(
            f"<p>{row['flaky']} of {row['cases']} cases with at least two decided repeats"
            f" ({pct(row['flaky_share'])}, 95% CI {pct(row['ci_low'])}–{pct(row['ci_high'])})"
            " had a criterion that passed in one repeat and failed in another.</p>"
        )
    else:
        out.append(
            '<p class="note">No case has two decided repeats: flakiness cannot be'
            " measured (run with <code>run.repeats</code> of 2 or more).</p>"
        )
    if ks:
        table = analysis.repeat_pass_rates(criteria, jobs, ks)
        wide = table.pivot(on="k", index="criterion_id", values=["pass_at_k", "pass_hat_k"])
        rename = {}
        for c in wide.columns:
            if c.startswith("pass_at_k_"):
                rename[c] = "pass@" + c.removeprefix("pass_at_k_")
            elif c.startswith("pass_hat_k_"):
                rename[c] = "pass^" + c.removeprefix("pass_hat_k_")
        wide = wide.rename(rename)
        percent = [c for c in wide.columns if c.startswith("pass")]
        out.append("<h3>pass@k and pass^k per criterion</h3>")
        out.append(frame_html(wide, percent))
    flaky_by = analysis.flakiness(criteria, jobs)
    out.append("<h3>Flakiness per criterion</h3>")
    out.append(frame_html(flaky_by, RATE_COLUMNS))
    cases = analysis.flaky_cases(criteria, jobs)
    shown = [c for c in cases.columns if c not in ("agent_id",)]
    out.append(f"<h3>Flaky cases ({cases.height})</h3>")
    if cases.height:
        out.append(
            '<p class="note">sequence: outcomes in repeat order (S success, F failure,'
            " U unknown, E job error).</p>"
        )
        out.append(frame_html(cases.select(shown), limit=50))
    return out


def _latency_section(jobs: pl.DataFrame, messages: pl.DataFrame) -> list[str]:
    out = ['<h2 id="latency">Latency (ok jobs)</h2>']
    metrics = ["time_to_first_frame_secs", "time_to_analysis_secs", "total_secs"]
    table = analysis.latency_percentiles(jobs, analysis.LATENCY_COLUMNS, messages=messages)
    out.append(frame_html(table, seconds=SECONDS_COLUMNS))
    samples = analysis.latency_samples(jobs, metrics, messages).collect()
    charts = []
    for metric in [m.removesuffix("_secs") for m in metrics] + list(analysis.MESSAGE_METRICS):
        values = samples.filter(pl.col("metric") == metric)["secs"].to_list()
        stats = table.filter(pl.col("metric") == metric)
        marks = {}
        if stats.height and stats["n"][0]:
            marks = {p: float(stats[p][0]) for p in ("p50", "p90", "p99")}
        charts.append(histogram(values, metric, marks))
    out.append('<div style="display:flex;flex-wrap:wrap;gap:8px">' + "".join(charts) + "</div>")
    agents = jobs["agent_label"].n_unique()
    if agents > 1:
        per_agent = analysis.latency_percentiles(
            jobs,
            ["time_to_first_frame_secs", "time_to_analysis_secs"],
            by=["agent_label"],
            messages=messages,
        )
        out.append(
            "<details><summary>Per agent</summary>"
            + frame_html(per_agent, seconds=SECONDS_COLUMNS)
            + "</details>"
        )
    return out


def _errors_section(jobs: pl.DataFrame, attempts: pl.DataFrame) -> list[str]:
    out = ['<h2 id="errors">Errors and retries over time</h2>']
    counts = analysis.error_counts(jobs)
    by_kind = (
        attempts.filter(pl.col("status") == "error")
        .group_by("error_kind", "action")
        .agg(pl.len().alias("attempts"))
        .sort(["attempts", "error_kind"], descending=[True, False])
    )
    if counts.height:
        out.append("<h3>Jobs that ended in error, by kind</h3>" + frame_html(counts))
    else:
        out.append('<p class="note">No job ended in error.</p>')
    if by_kind.height:
        out.append(
            "<h3>Failed attempts, by kind and what the runner did</h3>" + frame_html(by_kind)
        )
    out.append(attempts_chart(analysis.attempts_over_time(attempts), "attempts over time"))
    out.append(
        '<p class="note">Attempts started per time slice, by outcome; the line counts'
        " retries (attempts after a job's first). Time is seconds after the first"
        " attempt; resumed sessions appear as later slices.</p>"
    )
    out.append('<h2 id="concurrency">Concurrency over time</h2>')
    out.append(in_flight_chart(analysis.in_flight_over_time(attempts), "requests in flight"))
    out.append(
        '<p class="note">Requests in flight (each attempt from its start for its'
        " duration) and the concurrency limit in force when attempts started.</p>"
    )
    return out


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``RUN_DIR/report.html`` (or ``out``) from the saved tables; returns the path."""
    run = load_run(run_dir)
    target = Path(out) if out is not None else Path(run_dir) / REPORT_FILE
    target.write_text(build_report(run), encoding="utf-8")
    return target


def build_compare_page(
    a: Run,
    b: Run,
    table: pl.DataFrame,
    by: Sequence[str] = ("criterion_id",),
    *,
    a_label: str | None = None,
    b_label: str | None = None,
    generated_at: datetime | None = None,
) -> str:
    """The comparison page: a forest plot of the changes and the table.

    ``a_label`` / ``b_label`` name each side when it is a slice of its run (e.g. one agent).
    """
    name_a = _run_name(a) + (f" [{a_label}]" if a_label else "")
    name_b = _run_name(b) + (f" [{b_label}]" if b_label else "")
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    verdicts = table["verdict"].value_counts().sort("verdict")
    counts = {r["verdict"]: r["count"] for r in verdicts.iter_rows(named=True)}
    out = [
        f"<h1>{esc(name_a)} → {esc(name_b)}</h1>",
        f'<p class="meta">A: {esc(a.path)} · B: {esc(b.path)} · generated {when}</p>',
        _cards([(v, str(counts.get(v, 0))) for v in analysis.VERDICTS]),
        "<h2>Change in pass rate (B − A) with 95% Newcombe interval</h2>",
        forest_plot(table, list(by), "change in pass rate"),
        frame_html(table, RATE_COLUMNS),
        '<p class="note">A group is a <span class="bad">regression</span> when the whole'
        ' interval is below zero and an <span class="good">improvement</span> when it is above;'
        " each is judged at 95% on its own, so with many groups about one in twenty may be"
        " flagged by chance. Pass rates exclude unknown outcomes and job errors.</p>",
    ]
    return _page(f"{name_a} vs {name_b}", out)
