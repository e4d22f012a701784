"""A small kit of inline SVG charts and the value formatting they share.

Every chart is a function from plain data (or a small frame) to SVG text: no script, no
external file, so a page that embeds them opens offline in any browser. Every string drawn is
escaped: labels come from configs and conversations.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from runner.analysis import histogram_bins

WIDTH = 860

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


def num(x: float) -> str:
    return f"{x:.1f}"


def max_int(series: pl.Series) -> int:
    value = series.max()
    return int(value) if isinstance(value, int | float) else 0


def max_float(series: pl.Series) -> float:
    value = series.max()
    return float(value) if isinstance(value, int | float) else 0.0


# ------------------------------------------------------------------------------- SVG


def _svg(width: float, height: float, body: Sequence[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{num(width)}" height="{num(height)}"'
        f' viewBox="0 0 {num(width)} {num(height)}" role="img" aria-label="{esc(label)}">'
        + "".join(body)
        + "</svg>"
    )


def _text(
    x: float, y: float, text: object, size: float = 11, anchor: str = "start", **kw: str
) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{esc(v)}"' for k, v in kw.items())
    return (
        f'<text x="{num(x)}" y="{num(y)}" font-size="{size}" text-anchor="{anchor}"{extra}>'
        f"{esc(text)}</text>"
    )


def _line(
    x1: float, y1: float, x2: float, y2: float, colour: str, width: float = 1, **kw: str
) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{esc(v)}"' for k, v in kw.items())
    return (
        f'<line x1="{num(x1)}" y1="{num(y1)}" x2="{num(x2)}" y2="{num(y2)}"'
        f' stroke="{colour}" stroke-width="{width}"{extra}/>'
    )


def _rect(x: float, y: float, w: float, h: float, fill: str, title: str = "", **kw: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{esc(v)}"' for k, v in kw.items())
    tip = f"<title>{esc(title)}</title>" if title else ""
    return (
        f'<rect x="{num(x)}" y="{num(y)}" width="{num(max(w, 0))}" height="{num(max(h, 0))}"'
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
                    f'<circle cx="{num(x_of(row.rate))}" cy="{num(mid)}" r="4" fill="{colour}">'
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
            f'<text x="{num(x)}" y="{top - 6}" font-size="11" transform="rotate(-40 {num(x)}'
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
    if not values:
        return histogram_svg([], 0.0, title, marks)
    counts, high = histogram_bins(values, bins)
    return histogram_svg(counts, high, title, marks)


def histogram_svg(
    counts: Sequence[int],
    high: float,
    title: str,
    marks: dict[str, float],
    links: Sequence[str] | None = None,
) -> str:
    """``histogram`` from its bins' counts (``histogram_bins``: bins from 0 to ``high``);
    with ``links``, each bar is a link (one per bin)."""
    width, height, left, bottom, top = 420, 170, 44, 30, 26
    plot_w, plot_h = width - left - 12, height - top - bottom
    body = [_text(left, 14, title, 12, font_weight="600")]
    if not counts or not sum(counts):
        body.append(_text(left, top + 30, "no samples", 11, fill="#888"))
        return _svg(width, height, body, title)
    low, bins = 0.0, len(counts)
    peak = max(counts)
    bw = plot_w / bins
    for i, c in enumerate(counts):
        h = plot_h * c / peak
        lo_edge = low + (high - low) * i / bins
        hi_edge = low + (high - low) * (i + 1) / bins
        bar = _rect(
            left + i * bw + 0.5,
            top + plot_h - h,
            bw - 1,
            h,
            "#6baed6",
            f"{secs(lo_edge)}–{secs(hi_edge)}: {c}",
        )
        if links is not None and c:
            bar = f'<a href="{esc(links[i])}">{bar}</a>'
        body.append(bar)
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
    high = max(1, max_int(totals["attempts"]))
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
        points.append(f"{num(x)},{num(top + plot_h - r['retries'] / high * plot_h)}")
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
    span = max(max_float(steps["t_secs"]), 1e-3)
    limits = [v for v in steps["concurrency_limit"].to_list() if v is not None]
    high = max(1, max_int(steps["in_flight"]), *(int(v) for v in limits))
    body = _legend([("in flight", "#1f77b4"), ("concurrency limit", "#d62728")], left, 14)
    _y_axis(body, left, top, plot_w, plot_h, high)

    def xy(t: float, v: float) -> tuple[float, float]:
        return left + t / span * plot_w, top + plot_h - v / high * plot_h

    flight, limit = [], []
    prev_f: float = 0
    prev_l: float | None = None
    for r in steps.iter_rows(named=True):
        x, y = xy(r["t_secs"], prev_f)
        flight.append(f"{num(x)},{num(y)}")
        x, y = xy(r["t_secs"], r["in_flight"])
        flight.append(f"{num(x)},{num(y)}")
        prev_f = r["in_flight"]
        if r["concurrency_limit"] is not None:
            if prev_l is not None:
                limit.append("{},{}".format(*map(num, xy(r["t_secs"], prev_l))))
            limit.append("{},{}".format(*map(num, xy(r["t_secs"], r["concurrency_limit"]))))
            prev_l = r["concurrency_limit"]
    if prev_l is not None:
        limit.append("{},{}".format(*map(num, xy(span, prev_l))))
    body.append(f'<polyline points="{" ".join(flight)}" fill="none" stroke="#1f77b4"/>')
    if limit:
        body.append(
            f'<polyline points="{" ".join(limit)}" fill="none" stroke="#d62728"'
            ' stroke-dasharray="5 3"/>'
        )
    _time_axis(body, left, top, plot_w, plot_h, span)
    return _svg(width, height, body, title)


def cumulative_chart(points: pl.DataFrame, column: str, title: str, unit_label: str) -> str:
    """A running total over time (``t_secs`` and ``column``, rows in time order) as a rising
    step line: what a run had spent when each job finished."""
    rows = [r for r in points.iter_rows(named=True) if r[column] is not None]
    if not rows:
        return '<p class="note">Nothing priced: no spend to chart.</p>'
    width, height, left, top, bottom = WIDTH, 220, 64, 30, 30
    plot_w, plot_h = width - left - 16, height - top - bottom
    span = max(max(r["t_secs"] for r in rows), 1e-3)
    high = max(max(r[column] for r in rows), 1e-12)
    body = _legend([(f"spent ({unit_label})", "#2ca02c")], left, 14)
    for tick in _ticks(0, high, 4):
        y = top + plot_h - tick / high * plot_h
        body.append(_line(left, y, left + plot_w, y, "#eee"))
        body.append(_text(left - 6, y + 4, f"{tick:.4g}", 10, "end", fill="#555"))
    line = [f"{num(left)},{num(top + plot_h)}"]
    previous = 0.0
    for r in rows:
        x = left + r["t_secs"] / span * plot_w
        line.append(f"{num(x)},{num(top + plot_h - previous / high * plot_h)}")
        previous = r[column]
        line.append(f"{num(x)},{num(top + plot_h - previous / high * plot_h)}")
    body.append(f'<polyline points="{" ".join(line)}" fill="none" stroke="#2ca02c"/>')
    body.append(_text(left + plot_w, top + 8, f"{previous:.4g} {unit_label}", 10, "end"))
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
            f'<circle cx="{num(x_of(r["diff"]))}" cy="{num(mid)}" r="4"'
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


def sequence_chart(
    points: Sequence[tuple[int, float | None, float, float]],
    margin: float,
    decided_at: int | None,
    title: str,
) -> str:
    """A paired comparison's confidence sequence along the pairs: ``points`` are (pairs,
    observed difference, lower, upper); the band is the sequence, the line the observed
    difference, a dashed line at 0 (no difference) and one at -margin, the boundary of both
    decisions ("worse" once the band is below it, "not worse" once it is above), a vertical
    line the pair that decided."""
    if not points:
        return '<p class="note">No pairs: nothing to chart.</p>'
    width, height, left, top, bottom = WIDTH, 240, 56, 30, 30
    plot_w, plot_h = width - left - 150, height - top - bottom
    last = max(p[0] for p in points)
    low = max(-1.0, min(-margin, *(p[2] for p in points)) - 0.05)
    high = min(1.0, max(0.0, *(p[3] for p in points)) + 0.05)

    def x_of(n: float) -> float:
        return left + n / max(last, 1) * plot_w

    def y_of(v: float) -> float:
        return top + (high - v) / (high - low) * plot_h

    body = _legend(
        [("confidence sequence", "#9ecae1"), ("observed difference", "#1f4e79")], left, 14
    )
    for tick in _ticks(low, high, 5):
        body.append(_line(left, y_of(tick), left + plot_w, y_of(tick), "#eee"))
        label = "0 pp" if abs(tick) < 1e-9 else f"{100 * tick:+.0f} pp"
        body.append(_text(left - 6, y_of(tick) + 4, label, 10, "end", fill="#555"))
    band = [f"{num(x_of(p[0]))},{num(y_of(p[3]))}" for p in points]
    band += [f"{num(x_of(p[0]))},{num(y_of(p[2]))}" for p in reversed(points)]
    if len(points) == 1:  # one point: a thin bar rather than an invisible polygon
        x, top_y, low_y = x_of(points[0][0]), num(y_of(points[0][3])), num(y_of(points[0][2]))
        band = [f"{num(x - 2)},{top_y}", f"{num(x + 2)},{top_y}"]
        band += [f"{num(x + 2)},{low_y}", f"{num(x - 2)},{low_y}"]
    body.append(
        f'<polygon class="sequence" points="{" ".join(band)}" fill="#9ecae1" opacity="0.7">'
        f"<title>{esc(title)}</title></polygon>"
    )
    means = [f"{num(x_of(p[0]))},{num(y_of(p[1]))}" for p in points if p[1] is not None]
    if means:
        body.append(
            f'<polyline class="observed" points="{" ".join(means)}" fill="none" stroke="#1f4e79"'
            ' stroke-width="1.5"/>'
        )
    lines = (
        (0.0, "#555", "0: no difference", -4),
        (-margin, "#d62728", f"-{100 * margin:g} pp (margin):", 12),
    )
    for value, colour, label, dy in lines:
        y = y_of(value)
        body.append(_line(left, y, left + plot_w, y, colour, 1, stroke_dasharray="5 3"))
        body.append(_text(left + plot_w + 6, y + dy, label, 10, fill=colour))
    y = y_of(-margin)
    for text, dy in (("not worse above,", 24), ("worse below", 36)):
        body.append(_text(left + plot_w + 6, y + dy, text, 10, fill="#d62728"))
    if decided_at is not None:
        x = x_of(decided_at)
        body.append(_line(x, top, x, top + plot_h, "#2ca02c", 1.5))
        body.append(_text(x, top - 4, f"decided at {decided_at}", 10, "middle", fill="#2ca02c"))
    body.append(_line(left, top + plot_h, left + plot_w, top + plot_h, "#999"))
    for tick in _ticks(0, last, 6):
        x = x_of(tick)
        body.append(_line(x, top + plot_h, x, top + plot_h + 4, "#999"))
        body.append(_text(x, top + plot_h + 16, f"{tick:g}", 10, "middle", fill="#555"))
    body.append(_text(left + plot_w, top + plot_h + 28, "pairs", 10, "end", fill="#555"))
    return _svg(width, height + 12, body, title)
