"""The report's "why they failed" section: failing conversations, bounded, with no script.

For each criterion that failed (the most failed first, at most ``MAX_CRITERIA``), up to
``PER_CRITERION`` failing conversations chosen to cover different scenarios before showing a
second one of the same scenario; each as a collapsible ``<details>`` with the judge's rationale
and the transcript (at most ``MAX_MESSAGES`` messages of ``MAX_CHARS`` characters). The whole
section never exceeds ``BUDGET`` characters of HTML, whatever the run's size: a conversation
that would cross it is left out (and counted). Every string from a run is escaped.

``failures_section`` is pure: frames in, HTML out. It reads only the rows it shows.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

Frame = pl.DataFrame | pl.LazyFrame

PER_CRITERION = 3
MAX_CRITERIA = 20
MAX_MESSAGES = 40
MAX_CHARS = 600
MAX_RATIONALE = 1500
MAX_TOOL_CHARS = 300
BUDGET = 300_000
"""Characters of HTML the section may take at most (about 300 KB)."""

STYLE = """<style>
.fx-case{border:1px solid #e3e3e3;border-radius:5px;padding:4px 8px;margin:6px 0}
.fx-case summary{font-size:13px}.fx-why{white-space:pre-wrap;background:#fdf1ef;
border-left:3px solid #d73027;padding:4px 8px;margin:6px 0;font-size:12.5px}
.fx-chat{list-style:none;padding:0;margin:4px 0;font-size:12.5px}
.fx-chat li{margin:3px 0;padding:3px 8px;border-radius:6px;white-space:pre-wrap;
overflow-wrap:anywhere;max-width:760px}.fx-agent{background:#eef3fb}
.fx-user{background:#f3f7ee;margin-left:60px}.fx-who{font-weight:600;color:#555}
.fx-t{color:#888;font-size:11px}.fx-tool{display:block;font-family:monospace;font-size:11.5px;
color:#444}.fx-cut{color:#888;font-style:italic}
</style>"""


def _esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _lazy(frame: Frame) -> pl.LazyFrame:
    return frame.lazy() if isinstance(frame, pl.DataFrame) else frame


def pick_failures(
    criteria: Frame,
    jobs: Frame,
    *,
    per_criterion: int = PER_CRITERION,
    max_criteria: int = MAX_CRITERIA,
) -> pl.DataFrame:
    """The failing (job, criterion) rows to show: the most failed criteria first; within one,
    one job per scenario (the scenarios that failed most first) before a second of any.

    Columns: criterion_id, failures (of the criterion), scenarios (that failed it), job_key,
    rationale and the job's agent_label, scenario_id, repeat and ``matrix.*`` columns."""
    job_frame = _lazy(jobs)
    matrix = [c for c in job_frame.collect_schema().names() if c.startswith("matrix.")]
    fails = (
        _lazy(criteria)
        .filter(pl.col("result") == "failure")
        .select("job_key", "criterion_id", "rationale")
        .join(
            job_frame.select("job_key", "agent_label", "scenario_id", "repeat", *matrix),
            on="job_key",
            how="inner",
        )
    )
    per = (
        fails.group_by("criterion_id")
        .agg(
            pl.len().alias("failures"),
            pl.col("scenario_id").n_unique().alias("scenarios"),
        )
        .sort(["failures", "criterion_id"], descending=[True, False])
        .head(max_criteria)
    )
    order = ["agent_label", "repeat", "job_key"]
    return (
        fails.join(per, on="criterion_id", how="inner")
        .with_columns(pl.len().over("criterion_id", "scenario_id").alias("_in_scenario"))
        .sort(["criterion_id", "scenario_id", *order])
        .with_columns(pl.int_range(pl.len()).over("criterion_id", "scenario_id").alias("_nth"))
        .sort(
            ["failures", "criterion_id", "_nth", "_in_scenario", "scenario_id", *order],
            descending=[True, False, False, True, False, False, False, False],
        )
        .group_by("criterion_id", maintain_order=True)
        .head(per_criterion)
        .drop("_in_scenario", "_nth")
        .collect()
    )


def _tool_lines(message: Mapping[str, Any]) -> list[str]:
    lines = []
    for call in message.get("tool_calls") or []:
        params = _cut(str(call.get("params_as_json") or ""), MAX_TOOL_CHARS)
        name = _esc(call.get("tool_name"))
        lines.append(f'<span class="fx-tool">→ tool call {name}({_esc(params)})</span>')
    for result in message.get("tool_results") or []:
        value = _cut(str(result.get("result_value") or ""), MAX_TOOL_CHARS)
        flag = " (error)" if result.get("is_error") else ""
        lines.append(
            f'<span class="fx-tool">← tool result {_esc(result.get("tool_name"))}{flag}:'
            f" {_esc(value)}</span>"
        )
    return lines


def transcript_html(messages: Sequence[Mapping[str, Any]], max_messages: int = MAX_MESSAGES) -> str:
    """A conversation as an ordered list (roles, text, tool calls and results, arrival)."""
    items = []
    for m in messages[:max_messages]:
        role = str(m.get("role") or "?")
        arrival = m.get("arrival_secs")
        when = f' <span class="fx-t">+{arrival:.1f} s</span>' if arrival is not None else ""
        flag = ' <span class="fx-t">(interrupted)</span>' if m.get("interrupted") else ""
        text = m.get("message")
        body = _esc(_cut(str(text), MAX_CHARS)) if text is not None else ""
        tools = "".join(_tool_lines(m))
        cls = "fx-agent" if role == "agent" else "fx-user"
        items.append(
            f'<li class="{cls}"><span class="fx-who">{_esc(role)}</span>{when}{flag}\n'
            f"{body}{tools}</li>"
        )
    more = len(messages) - max_messages
    if more > 0:
        items.append(f'<li class="fx-cut">… {more} more message(s) not shown</li>')
    if not items:
        items.append('<li class="fx-cut">(no messages)</li>')
    return '<ol class="fx-chat">' + "".join(items) + "</ol>"


def _case_html(row: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> str:
    cell = " ".join(
        f"{k.removeprefix('matrix.')}={v}"
        for k, v in row.items()
        if k.startswith("matrix.") and v is not None
    )
    label = " · ".join(
        s
        for s in (
            str(row.get("scenario_id")),
            str(row.get("agent_label")),
            cell,
            f"repeat {row.get('repeat')}",
        )
        if s
    )
    rationale = _cut(str(row.get("rationale") or "(no rationale)"), MAX_RATIONALE)
    first_line = _cut(rationale.splitlines()[0] if rationale else "", 140)
    return (
        f'<details class="fx-case"><summary><b>{_esc(label)}</b> — {_esc(first_line)}</summary>'
        f'<div class="fx-why"><b>Judge:</b> {_esc(rationale)}</div>'
        f"{transcript_html(messages)}"
        f'<p class="note">job {_esc(row.get("job_key"))}</p></details>'
    )


def failures_section(
    criteria: Frame,
    jobs: Frame,
    messages: Frame,
    *,
    per_criterion: int = PER_CRITERION,
    max_criteria: int = MAX_CRITERIA,
    budget: int = BUDGET,
) -> list[str]:
    """The section as HTML fragments (append them to the report's body)."""
    out = [
        '<h2 id="failures">Why they failed: failing conversations</h2>',
        f'<p class="note">Up to {per_criterion} failing conversations for each of the'
        f" {max_criteria} most failed criteria, different scenarios first; click one to open"
        f" its judge's rationale and transcript (at most {MAX_MESSAGES} messages of"
        f" {MAX_CHARS} characters each; this section is capped at about {budget // 1000} KB)."
        " <code>python -m runner view</code> shows every case.</p>",
    ]
    picked = pick_failures(criteria, jobs, per_criterion=per_criterion, max_criteria=max_criteria)
    if picked.height == 0:
        return [*out[:1], '<p class="note">No criterion failed in this run.</p>']
    keys = picked["job_key"].unique()
    convo = (
        _lazy(messages)
        .filter(pl.col("job_key").is_in(keys.implode()))
        .sort("job_key", "index")
        .collect()
    )
    by_job: dict[str, list[dict[str, Any]]] = {}
    for m in convo.iter_rows(named=True):
        by_job.setdefault(m["job_key"], []).append(m)
    out.append(STYLE)
    size = sum(len(s) for s in out)
    closing = 200  # room kept for the closing note
    left_out = 0
    current, pending = None, ""
    for row in picked.iter_rows(named=True):
        if row["criterion_id"] != current:
            current = row["criterion_id"]
            pending = (
                f'<h3>{_esc(current)} <span class="note">— {row["failures"]:,} failure(s) in'
                f" {row['scenarios']:,} scenario(s)</span></h3>"
            )
        block = pending + _case_html(row, by_job.get(row["job_key"], []))
        if size + len(block) > budget - closing:
            left_out += 1
            continue
        out.append(block)
        size += len(block)
        pending = ""  # the heading went out with this criterion's first conversation
    if left_out:
        out.append(
            f'<p class="note">{left_out} more conversation(s) left out to keep this section'
            f" under {budget // 1000} KB.</p>"
        )
    return out


def section_size(fragments: Sequence[str]) -> int:
    """Characters of HTML the section takes (what ``BUDGET`` bounds)."""
    return sum(len(s) for s in fragments)
