"""The HTML report of a run and the page comparing two runs: one self-contained file each.

Charts are inline SVG (``runner.report.charts``); the only style is an inline ``<style>`` block
and there is no script, so a page opens offline, in any browser, forever. Building a page only
reads the run's tables (``runner.analysis`` does the arithmetic): it never runs a job.
``build_report`` / ``build_compare_page`` are pure (frames in, text out; the report reads the
run's config for the assertions that mirror a criterion when not given them); ``write_report``
is the I/O at the edge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from runner import analysis
from runner.estimate import money
from runner.report.agreement import agreement_section, recorded_mirrors
from runner.report.charts import (
    IntervalRow,
    attempts_chart,
    cumulative_chart,
    esc,
    forest_plot,
    heatmap,
    histogram,
    in_flight_chart,
    interval_chart,
    max_int,
    pct,
    secs,
)
from runner.report.failures import failures_section
from runner.report.sequential import (
    PairedView,
    paired_section,
    read_verdicts,
    recorded_compare,
    run_paired,
    verdict_changes_section,
    verdicts_section,
)
from runner.store import Run, load_run

REPORT_FILE = "report.html"

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


def _run_name(run: Run) -> str:
    return run.manifest.run_name if run.manifest else run.path.name


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


def build_report(
    run: Run,
    *,
    generated_at: datetime | None = None,
    ks: Sequence[int] = (),
    sources: Sequence[str] = (),
    mirrors: Mapping[str, str] | None = None,
) -> str:
    """The whole report page for a run, as text (reads only the run's frames, and its config
    for the assertions that mirror a criterion unless ``mirrors`` is given). ``sources``: only
    the criteria rows of these sources (``analysis.of_sources``) feed its figures."""
    jobs, everything = _collect(run.jobs), _collect(run.criteria)
    criteria = analysis.of_sources(everything, sources)
    if mirrors is None:
        mirrors = recorded_mirrors(run.path)
    messages, attempts = _collect(run.messages), _collect(run.attempts)
    name = _run_name(run)
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    manifest = run.manifest
    sessions = manifest.sessions if manifest else []
    repeats = max_int(jobs.group_by(analysis.case_columns(jobs)).len()["len"])
    ks = tuple(ks) or tuple(sorted({1, repeats} - {0}))
    errors = analysis.error_rates(jobs).row(0, named=True)
    agents = sorted(set(jobs["agent_label"].drop_nulls().to_list()))
    wall = sum(s.wall_secs or 0.0 for s in sessions)
    out = [
        f"<h1>Run {esc(name)}</h1>",
        f'<p class="meta">{esc(run.path)} · {len(sessions)} session(s) · target'
        f" {esc(manifest.target.base_url if manifest else '?')} · config"
        f" {esc(manifest.config_hash[:12] if manifest else '')} · report generated {when}"
        " (from the saved tables; nothing was re-run)</p>",
        '<nav><a href="#pass-rates">pass rates</a><a href="#heatmap">outcomes</a>'
        '<a href="#repeats">repeats &amp; flakiness</a><a href="#latency">latency</a>'
        '<a href="#errors">errors &amp; retries</a><a href="#concurrency">concurrency</a>'
        '<a href="#spend">spend</a><a href="#reading">how to read</a></nav>',
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
    out += _pass_rate_section(criteria, jobs, agents, sources)
    out += agreement_section(everything, mirrors)
    out += _heatmap_section(criteria, jobs, agents)
    out += failures_section(criteria, jobs, messages)
    out += _repeat_section(criteria, jobs, ks)
    out += sequential_sections(run, jobs, criteria)
    out += _latency_section(jobs, messages)
    out += _errors_section(jobs, attempts)
    out += spend_section(jobs, criteria)
    out.append(CONVENTIONS)
    return _page(f"Run {name}", out)


def sequential_sections(run: Run, jobs: pl.DataFrame, criteria: pl.DataFrame) -> list[str]:
    """The run's verdicts (its ``verdicts.parquet``) and, for a run with a ``compare:`` block,
    the paired comparison of its two arms; nothing for a run with neither."""
    out: list[str] = []
    verdicts = read_verdicts(run.path)
    if verdicts is not None and verdicts.height:
        out += verdicts_section(verdicts)
    settings = recorded_compare(run.path)
    if settings is not None:
        out += paired_section(run_paired(jobs, criteria, settings))
    return out


def money_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Money columns as text (``$0.0123``, ``1,234 credits``; ``-`` when not priced); a
    money column with no figure at all (credits of a run billed in USD only) is left out."""
    out = frame
    for column in frame.columns:
        if column in analysis.SPEND_COLUMNS and frame[column].null_count() == frame.height:
            out = out.drop(column)
            continue
        unit = "credits" if column.startswith("credits") else "usd"
        if column in analysis.SPEND_COLUMNS and frame[column].dtype != pl.String:
            out = out.with_columns(
                pl.Series(
                    column,
                    ["-" if v is None else money(v, unit) for v in frame[column].to_list()],
                    dtype=pl.String,
                )
            )
    return out


def spend_diff_frame(table: pl.DataFrame) -> pl.DataFrame:
    """``analysis.compare_spend`` with its figures as text, each in its row's unit."""
    rows = []
    for row in table.iter_rows(named=True):
        if row["a"] is None and row["b"] is None:
            continue  # neither side was priced so (credits of a USD-billed run)
        unit = "credits" if row["measure"].startswith("credits") else "usd"

        def fmt(value: float | None, unit: str = unit, signed: bool = False) -> str:
            return "-" if value is None else money(value, unit, signed=signed)

        rows.append(
            {
                "measure": row["measure"],
                "a": fmt(row["a"]),
                "b": fmt(row["b"]),
                "b - a": fmt(row["diff"], signed=True),
                "b / a": "-" if row["ratio"] is None else f"{row['ratio']:.2f}x",
            }
        )
    return pl.DataFrame(
        rows, schema=dict.fromkeys(("measure", "a", "b", "b - a", "b / a"), pl.String)
    )


def spend_section(jobs: pl.DataFrame, criteria: pl.DataFrame) -> list[str]:
    """Total spend, spend per agent and per matrix cell, cost per passed conversation, and
    cumulative spend over time; says so plainly when the vendor priced nothing."""
    out = ['<h2 id="spend">Spend</h2>']
    total = analysis.spend(jobs, criteria).row(0, named=True)
    if not total["priced"] and total["credits"] is None:
        out.append(
            '<p class="note">No cost data: the target priced none of these jobs (no'
            " <code>llm_usage</code> prices, no <code>charging</code> or credits), so no spend"
            " is shown rather than a guess.</p>"
        )
        return out
    cards = [
        ("total spend", money(total["usd"]) if total["usd"] is not None else "-"),
        ("per job", money(total["usd_per_job"]) if total["usd_per_job"] is not None else "-"),
        (
            "per passed conversation",
            money(total["usd_per_pass"]) if total["usd_per_pass"] is not None else "-",
        ),
        ("jobs priced", f"{total['priced']} of {total['jobs']}"),
    ]
    if total["credits"] is not None:
        cards.append(("credits", money(total["credits"], "credits")))
    out.append(_cards(cards))
    out.append(
        "<h3>Per agent</h3>"
        + frame_html(money_frame(analysis.spend(jobs, criteria, by=["agent_label"])))
    )
    cells = [c for c in jobs.columns if c.startswith("matrix.")]
    if cells:
        out.append(
            "<h3>Per matrix cell</h3>"
            + frame_html(money_frame(analysis.spend(jobs, criteria, by=cells)))
        )
    over_time = analysis.spend_over_time(jobs)
    if total["usd"] is not None:
        out.append(cumulative_chart(over_time, "usd", "cumulative spend (USD)", "USD"))
    if total["credits"] is not None:
        out.append(cumulative_chart(over_time, "credits", "cumulative spend (credits)", "credits"))
    out.append(
        '<p class="note">Spend is what the vendor billed, as it reported it: <code>cost_usd</code>'
        " (a test run's <code>charging</code>, else the messages' <code>llm_usage</code> prices)"
        " and <code>credits_used</code>; jobs it priced nothing for count as unpriced, never as"
        " free. A <b>passed conversation</b> is a job whose every criterion succeeded; cost per"
        " passed conversation is the whole spend, failures and errors included, over them."
        " Time is seconds after the first job started; resumed sessions follow on.</p>"
    )
    return out


def _pass_rate_section(
    criteria: pl.DataFrame, jobs: pl.DataFrame, agents: list[str], sources: Sequence[str] = ()
) -> list[str]:
    out = ['<h2 id="pass-rates">Pass rate per criterion</h2>']
    if sources:
        out.append(
            f'<p class="note" id="sources">Criteria of source {esc(", ".join(sources))} only'
            " (<code>report --source</code>): every pass rate, outcome and repeat figure of this"
            " page reads these rows.</p>"
        )
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
    costs: pl.DataFrame | None = None,
    paired: PairedView | str | None = None,
) -> str:
    """The comparison page: a forest plot of the changes and the table.

    ``a_label`` / ``b_label`` name each side when it is a slice of its run (e.g. one agent).
    ``paired``: the paired comparison's section (``sequential.paired_view``; a string says
    why it was not computed). Cases whose verdict changed are listed when both runs have a
    ``verdicts.parquet``.
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
    if costs is not None:
        out += [
            "<h2>What each side cost</h2>",
            frame_html(spend_diff_frame(costs)),
            '<p class="note">Spend as the vendor billed it (null where it priced nothing);'
            " per pass: the whole spend over the jobs whose every criterion succeeded. Read it"
            " beside the change in pass rate: is B better, and at what price?</p>",
        ]
    verdicts_a, verdicts_b = read_verdicts(a.path), read_verdicts(b.path)
    if verdicts_a is not None and verdicts_b is not None:
        out += verdict_changes_section(verdicts_a, verdicts_b)
    if paired is not None:
        out += paired_section(paired)
    return _page(f"{name_a} vs {name_b}", out)
