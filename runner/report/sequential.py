"""The sequential verdicts (issue 25) and the paired comparison (issue 26) as a person reads
them: in ``report`` (terminal and ``report.html``), ``compare --html`` and the viewer.

Nothing is computed twice: a run's verdicts are its ``verdicts.parquet`` (written by the run
from ``runner.verdicts``; ``runner.replay`` words its summary line and finds the cases whose
verdict changed between two runs), and the paired comparison is ``runner.paired_runs`` /
``runner.paired`` (its confidence sequence along the pairs: ``paired.confidence_path``). This
module shapes those results for a page: the display frames, the lines, the HTML sections
(``runner.report.charts`` draws the chart). ``read_verdicts`` and ``recorded_compare`` are the
only reads: a run directory's two files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import ValidationError

from runner.config.compare import CompareConfig
from runner.estimate import money
from runner.paired import NonInferiority, PathPoint, confidence_path
from runner.paired_runs import PairedComparison, compare_arms
from runner.replay import verdict_changes, verdict_summary
from runner.report.charts import esc, sequence_chart
from runner.schema import VERDICTS
from runner.store import RESOLVED_CONFIG

VERDICT_ORDER = ("fail", "undecided", "pass")
"""How the verdicts are listed: failures first."""


# ------------------------------------------------------------------------------ reading


def read_verdicts(run_dir: Path) -> pl.DataFrame | None:
    """The run's ``verdicts.parquet`` (None: the run has none, ``run.repeats`` was a number or
    ``until: max``, or it is not readable)."""
    path = Path(run_dir) / VERDICTS.file
    try:
        return pl.read_parquet(path) if path.is_file() else None
    except (OSError, pl.exceptions.PolarsError):
        return None


def recorded_compare(run_dir: Path) -> CompareConfig | None:
    """The ``compare:`` block of the config the run was made with (``config.resolved.json``);
    None when it had none or the file cannot be read as one."""
    try:
        recorded = json.loads((Path(run_dir) / RESOLVED_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    block = recorded.get("compare") if isinstance(recorded, dict) else None
    if block is None:
        return None
    try:
        return CompareConfig.model_validate(block)
    except ValidationError:
        return None


# ----------------------------------------------------------------------------- verdicts


def _cell(row: dict[str, Any], axes: Sequence[str]) -> str:
    return " ".join(f"{a.removeprefix('matrix.')}={row[a]}" for a in axes if row[a] is not None)


def verdict_frame(table: pl.DataFrame) -> pl.DataFrame:
    """A ``verdicts`` table as the report lists it, failures first, then undecided, then
    passes: per case (and criterion) the rule, repeats run of ``max``, passes, failures,
    unknowns, errors, the interval's bounds, the verdict, the repeat at which it settled, the
    repeats that ran past it, and why it stopped."""
    axes = [c for c in table.columns if c.startswith("matrix.")]
    rank = pl.col("verdict").replace_strict(
        {v: i for i, v in enumerate(VERDICT_ORDER)}, default=len(VERDICT_ORDER)
    )
    ordered = table.with_columns(rank.alias("_rank")).sort(
        ["_rank", "agent_label", "scenario_id", *axes, "criterion_id"], nulls_last=True
    )
    rows = []
    per_criterion = table["criterion_id"].is_not_null().any()
    for row in ordered.iter_rows(named=True):
        out: dict[str, Any] = {
            "verdict": row["verdict"],
            "agent": row["agent_label"],
            "scenario": row["scenario_id"],
        }
        if axes:
            out["cell"] = _cell(row, axes)
        if per_criterion:
            out["criterion"] = row["criterion_id"]
        out.update(
            rule=row["rule"],
            repeats=row["repeats"],
            max=row["max_repeats"],
            passes=row["passes"],
            failures=row["failures"],
            unknowns=row["unknowns"],
            errors=row["errors"],
            lower=row["lower"],
            upper=row["upper"],
            settled_at=row["settled_at"],
            ran_past=row["ran_past"],
            reason=row["reason"],
        )
        rows.append(out)
    schema: dict[str, Any] = {"verdict": pl.String, "agent": pl.String, "scenario": pl.String}
    if axes:
        schema["cell"] = pl.String
    if per_criterion:
        schema["criterion"] = pl.String
    schema.update(
        rule=pl.String,
        repeats=pl.Int64,
        max=pl.Int64,
        passes=pl.Int64,
        failures=pl.Int64,
        unknowns=pl.Int64,
        errors=pl.Int64,
        lower=pl.Float64,
        upper=pl.Float64,
        settled_at=pl.Int64,
        ran_past=pl.Int64,
        reason=pl.String,
    )
    return pl.DataFrame(rows, schema=schema)


def verdict_counts(table: pl.DataFrame) -> dict[str, int]:
    """Cases (or case x criterion) per verdict: pass, fail, undecided."""
    counts = dict(table["verdict"].value_counts().iter_rows())
    return {v: int(counts.get(v, 0)) for v in ("pass", "fail", "undecided")}


def rule_line(table: pl.DataFrame) -> str:
    """The rule and its parameters as the table recorded them (one line per distinct rule;
    a run that was extended may hold two ``max``)."""
    lines = []
    for params in table["params"].unique(maintain_order=True).to_list():
        try:
            value = json.loads(params)
        except (TypeError, ValueError):
            continue
        shown = [
            f"{k} {value[k]}"
            for k in ("pass_rate", "pass_rate_low", "alpha", "beta", "passes", "max", "min")
            if k in value
        ]
        shown += [f"{k}: {value[k]}" for k in ("unknown_as", "error_as") if k in value]
        lines.append(f"rule {value.get('rule', '?')}: {', '.join(shown)}")
    return "; ".join(lines)


@dataclass(frozen=True)
class VerdictsView:
    """What a page shows of a run's verdicts."""

    rows: pl.DataFrame
    counts: dict[str, int]
    summary: str
    """``runner.replay.verdict_summary``: "settled after N of M repeats; K simulations and
    $X not spent against fixed repeats"."""
    rule: str


def verdicts_view(table: pl.DataFrame) -> VerdictsView:
    return VerdictsView(
        verdict_frame(table), verdict_counts(table), verdict_summary(table), rule_line(table)
    )


def change_frame(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """``runner.replay.verdict_changes`` as the report lists it: the change, the case, each
    side's verdict with its repeats and passes."""
    changes = verdict_changes(a, b)
    axes = [c for c in changes.columns if c.startswith("matrix.")]
    rows = []
    for row in changes.iter_rows(named=True):
        out: dict[str, Any] = {
            "change": row["change"],
            "agent": row["agent_label"],
            "scenario": row["scenario_id"],
            "cell": _cell(row, axes),
            "criterion": row["criterion_id"],
        }
        for side in ("a", "b"):
            verdict = row[f"verdict_{side}"]
            out[side.upper()] = (
                "-"
                if verdict is None
                else f"{verdict} ({row[f'passes_{side}']} of {row[f'repeats_{side}']} passed)"
            )
        rows.append(out)
    names = ("change", "agent", "scenario", "cell", "criterion", "A", "B")
    frame = pl.DataFrame(rows, schema=dict.fromkeys(names, pl.String))
    drop = [] if axes else ["cell"]
    if frame["criterion"].is_null().all():
        drop.append("criterion")
    return frame.drop(drop)


# ------------------------------------------------------------------- paired comparison


@dataclass(frozen=True)
class PairedView:
    """What a page shows of a paired comparison, from ``runner.paired_runs``'s result and
    its rule (nothing recomputed but the confidence sequence along the pairs)."""

    baseline: str
    candidate: str
    verdict: str
    reason: str
    headline: str
    """"decided after N of max_pairs pairs, $X" (or where it stands)."""
    margin: float
    alpha: float
    max_pairs: int
    pairs: int
    decided_at: int | None
    mean: float | None
    lower: float
    upper: float
    wins: int
    ties: int
    losses: int
    skipped: int
    unpaired: dict[str, int]
    key: list[str]
    path: list[PathPoint]
    scenarios: pl.DataFrame
    lost: list[tuple[str, float]]
    spend: pl.DataFrame
    """Per variant: paired jobs and USD (null: nothing priced)."""
    usd: float | None

    @property
    def chart_points(self) -> list[tuple[int, float | None, float, float]]:
        return [(p.n, p.mean, p.lower, p.upper) for p in self.path]


def _usd(values: pl.Series) -> float | None:
    return None if values.null_count() == values.len() else float(values.sum())


def paired_view(
    result: PairedComparison,
    rule: NonInferiority,
    baseline: str,
    candidate: str,
    points: int = 60,
) -> PairedView:
    """The comparison laid out: the decision and "decided after N of ``max_pairs`` pairs,
    $X" ($X: what every paired job cost, both variants, pairs past the decision included),
    the confidence sequence at about ``points`` places along the pairs, per-scenario
    differences (most lost first), the scenarios the candidate lost and spend per variant."""
    d, pairs = result.decision, result.pairs
    c = d.counts
    names = {"baseline": baseline, "candidate": candidate}
    usds = {side: _usd(pairs[f"{side}_usd"]) for side in names}
    spend = pl.DataFrame(
        {
            "variant": [f"{side} ({name})" for side, name in names.items()],
            "jobs": [pairs.height] * 2,
            "usd": list(usds.values()),
        },
        schema={"variant": pl.String, "jobs": pl.Int64, "usd": pl.Float64},
    )
    priced = [v for v in usds.values() if v is not None]
    usd = float(sum(priced)) if priced else None
    where = (
        f"decided after {d.decided_at} of {rule.max_pairs} pairs"
        if d.decided_at is not None
        else f"undecided after {c.pairs} of {rule.max_pairs} pairs"
    )
    past = c.pairs - d.decided_at if d.decided_at is not None else 0
    headline = (
        where
        + (f" ({past} more finished after it, counted)" if past else "")
        + f", {money(usd) if usd is not None else 'spend not priced'}"
        + f" ({2 * pairs.height} simulations)"
    )
    diffs = pairs["d"].to_list() if "d" in pairs.columns else []
    path = confidence_path(
        diffs, rule.alpha, rule.prior, points, [d.decided_at] if d.decided_at else []
    )
    lost = [
        (str(r["scenario_id"]), float(r["diff"]))
        for r in result.scenarios.iter_rows(named=True)
        if r["diff"] is not None and r["diff"] < 0
    ]
    return PairedView(
        baseline=baseline,
        candidate=candidate,
        verdict=d.verdict,
        reason=d.reason,
        headline=headline,
        margin=rule.margin,
        alpha=rule.alpha,
        max_pairs=rule.max_pairs,
        pairs=c.pairs,
        decided_at=d.decided_at,
        mean=c.mean,
        lower=d.lower,
        upper=d.upper,
        wins=c.wins,
        ties=c.ties,
        losses=c.losses,
        skipped=c.skipped,
        unpaired=dict(result.unpaired),
        key=list(result.key),
        path=path,
        scenarios=result.scenarios,
        lost=lost,
        spend=spend,
        usd=usd,
    )


def _arm_name(arm: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in arm.items())


def run_paired(
    jobs: pl.DataFrame, criteria: pl.DataFrame, settings: CompareConfig
) -> PairedView | str:
    """A ``compare:`` run's comparison of its two arms, by its recorded settings (the pairs in
    the order they finished; ``max_pairs`` the block's): the view, or why it could not be
    made (one line)."""
    base, cand = settings.arm("baseline"), settings.arm("candidate")
    try:
        result = compare_arms(jobs, criteria, base, cand, settings.rule(), settings.of)
    except ValueError as exc:
        return f"not computed: {exc}"
    return paired_view(result, settings.rule(), _arm_name(base), _arm_name(cand))


# ---------------------------------------------------------------------------------- HTML


def _pp(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f} pp"


def _cards(items: Sequence[tuple[str, str, str]]) -> str:
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card{(" " + cls) if cls else ""}"><b>{esc(v)}</b>'
            f"<span>{esc(k)}</span></div>"
            for k, v, cls in items
        )
        + "</div>"
    )


def _table(frame: pl.DataFrame, percent: Sequence[str] = (), pp: Sequence[str] = ()) -> str:
    head = "".join(
        f'<th class="{"s" if frame.schema[c] == pl.String else ""}">{esc(c)}</th>'
        for c in frame.columns
    )
    body = []
    for row in frame.iter_rows(named=True):
        cells = []
        for c, v in row.items():
            if v is None:
                text = "–"
            elif c in percent:
                text = f"{100 * v:.1f}%"
            elif c in pp:
                text = _pp(v)
            elif isinstance(v, float):
                text = f"{v:.3g}"
            else:
                text = esc(v)
            cls = "s" if frame.schema[c] == pl.String else ""
            if c in ("verdict", "change") and isinstance(v, str):
                bad = v in ("fail", "now fails")
                good = v in ("pass", "now passes")
                cls += " bad" if bad else " good" if good else ""
            cells.append(f'<td class="{cls.strip()}">{text}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def verdicts_section(table: pl.DataFrame) -> list[str]:
    """``report.html``'s verdicts: counts, the summary line, the rule, one row per case."""
    view = verdicts_view(table)
    n = view.counts
    return [
        '<h2 id="verdicts">Verdicts: repeats until a verdict</h2>',
        _cards(
            [
                ("pass", str(n["pass"]), "good"),
                ("fail", str(n["fail"]), "bad"),
                ("undecided", str(n["undecided"]), ""),
            ]
        ),
        f'<p id="verdict-summary">{esc(view.summary)}</p>',
        f'<p class="note">{esc(view.rule)}. lower / upper: the bounds on the pass rate the rule'
        " holds (anytime: its confidence sequence); settled_at: the repeat at which the verdict"
        " was settled; ran_past: repeats in flight then, finished and counted. unknown and"
        " errored repeats are never passes.</p>",
        _table(view.rows, percent=("lower", "upper")),
    ]


def verdict_changes_section(a: pl.DataFrame, b: pl.DataFrame) -> list[str]:
    """The compare page's cases whose verdict changed from A to B."""
    changes = change_frame(a, b)
    out = ['<h2 id="verdict-changes">Verdicts that changed</h2>']
    if changes.height == 0:
        return [*out, '<p class="note">Every case has the same verdict in both runs.</p>']
    out.append(
        '<p class="note">Each run\'s own verdict (its rule and parameters, from its'
        " <code>verdicts.parquet</code>), for every case whose verdict differs.</p>"
    )
    out.append(_table(changes))
    return out


def paired_section(view: PairedView | str) -> list[str]:
    """The paired comparison: decision, pairs, the confidence sequence drawn along the pairs,
    per-scenario differences, spend per variant."""
    out = ['<h2 id="paired">Paired comparison (anytime-valid)</h2>']
    if isinstance(view, str):
        return [*out, f'<p class="note">{esc(view)}</p>']
    if view.pairs == 0:
        return [*out, '<p class="note">No pairs: the two sides share no case.</p>']
    verdict_class = {"worse": "bad", "not worse": "good"}.get(view.verdict, "")
    out.append(
        f'<p class="meta">candidate {esc(view.candidate)} vs baseline {esc(view.baseline)};'
        f" margin {view.margin:g}, alpha {view.alpha:g}; pairs on {esc(', '.join(view.key))}</p>"
    )
    out.append(
        _cards(
            [
                ("decision", view.verdict.upper(), verdict_class),
                ("pairs", f"{view.pairs} of {view.max_pairs}", ""),
                ("difference in pass rate", _pp(view.mean), ""),
                ("confidence sequence", f"[{_pp(view.lower)}, {_pp(view.upper)}]", ""),
                ("won / tied / lost", f"{view.wins} / {view.ties} / {view.losses}", ""),
            ]
        )
    )
    out.append(f'<p id="paired-headline"><b>{esc(view.headline)}</b>. {esc(view.reason)}.</p>')
    out.append(
        sequence_chart(
            view.chart_points,
            view.margin,
            view.decided_at,
            "difference in pass rate (candidate - baseline) with its confidence sequence",
        )
    )
    out.append(
        f'<p class="note">The band holds the true difference at every pair at once with'
        f" probability at least {100 * (1 - 2 * view.alpha):.0f}%: the comparison is"
        f" <b>not worse</b> once the band is above -{100 * view.margin:g} pp (the margin),"
        f" <b>worse</b> (by more than the margin) once it is below, and stays valid however"
        f" often it is looked at.</p>"
    )
    if view.lost:
        names = ", ".join(f"{s} ({_pp(d)})" for s, d in view.lost)
        out.append(f'<p id="paired-lost">Scenarios the candidate lost: {esc(names)}</p>')
    out.append("<h3>Per scenario (unadjusted: where to look, not findings)</h3>")
    out.append(
        _table(
            view.scenarios,
            percent=("baseline_pass_rate", "candidate_pass_rate"),
            pp=("diff",),
        )
    )
    out.append("<h3>Spend per variant (paired jobs, as the vendor billed them)</h3>")
    spend = view.spend.with_columns(
        pl.col("usd").map_elements(money, return_dtype=pl.String).fill_null("-")
    )
    out.append(_table(spend))
    if any(view.unpaired.values()):
        out.append(
            f'<p class="note">Jobs without a partner, left out: baseline'
            f" {view.unpaired['baseline']}, candidate {view.unpaired['candidate']}.</p>"
        )
    return out
