"""Agreement with the judge in the report and the viewer: which assertions mirror a judged
criterion (``mirrors:``), read from the run's config, and the block that shows how often the two
agree. The figures are ``runner.analysis.agreement``'s."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runner import analysis
from runner.config import ConfigError, load_config
from runner.config.scenarios import iter_scenarios
from runner.report.charts import esc, pct
from runner.store import RESOLVED_CONFIG, read_manifest


def _from_entries(entries: Any) -> dict[str, str]:
    if not isinstance(entries, list):
        return {}
    return {
        str(e["id"]): str(e["mirrors"])
        for e in entries
        if isinstance(e, dict) and e.get("id") and e.get("mirrors")
    }


def recorded_mirrors(run_dir: Path) -> dict[str, str]:
    """Assertion id -> the judged criterion it mirrors, for the run's assertions: from the
    config the run was made with when it is still on disk (scenario files included), else from
    the run's ``config.resolved.json`` (config-level and inline scenarios' assertions)."""
    manifest = read_manifest(run_dir)
    if manifest is not None and Path(manifest.config_path).is_file():
        try:
            cfg = load_config(Path(manifest.config_path))
            out = {a.id: a.mirrors for a in cfg.assert_ if a.mirrors}
            for spec in iter_scenarios(cfg):
                out.update({a.id: a.mirrors for a in spec.assert_ if a.mirrors})
            return out
        except (ConfigError, OSError):
            pass
    try:
        recorded = json.loads((run_dir / RESOLVED_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(recorded, dict):
        return {}
    out = _from_entries(recorded.get("assert"))
    for scenario in recorded.get("scenarios") or []:
        if isinstance(scenario, dict):
            out.update(_from_entries(scenario.get("assert")))
    return out


def agreement_rows(agreements: Sequence[analysis.Agreement]) -> list[dict[str, Any]]:
    """One plain row per assertion with ``mirrors`` (the HTML block's and the viewer's)."""
    return [
        {
            "assertion": a.assertion_id,
            "mirrors": a.criterion_id,
            "jobs": a.jobs,
            "compared": a.compared,
            "agree": a.agree,
            "rate": a.rate,
            "assert_only": a.assert_only,
            "judge_only": a.judge_only,
        }
        for a in agreements
    ]


def agreement_section(criteria: analysis.Frame, mirrors: Mapping[str, str]) -> list[str]:
    """The report's "Agreement with the judge" block (nothing when no assertion mirrors one)."""
    if not mirrors:
        return []
    rows = agreement_rows(analysis.agreement(criteria, mirrors))
    head = (
        "<tr><th class=s>assertion</th><th class=s>mirrors</th><th>agree</th><th>of</th>"
        "<th>agreement</th><th>only the assertion passed</th><th>only the judge passed</th></tr>"
    )
    body = "".join(
        f"<tr><td class=s>{esc(r['assertion'])}</td><td class=s>{esc(r['mirrors'])}</td>"
        f"<td>{r['agree']}</td><td>{r['compared']}</td>"
        f"<td>{pct(r['rate']) if r['rate'] is not None else '–'}</td>"
        f"<td>{r['assert_only']}</td><td>{r['judge_only']}</td></tr>"
        for r in rows
    )
    return [
        '<h3 id="agreement">Agreement with the judge</h3>',
        '<p class="note">Each assertion that <code>mirrors</code> a judged criterion, over the'
        " jobs with both results (neither unknown): how often the two agree, and the jobs where"
        " only one side passed (a judge error, or an assertion too strict).</p>",
        f'<table id="agreement-table">{head}{body}</table>',
    ]
