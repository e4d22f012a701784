"""Two runs compared (``runner.analysis.compare``), and one case of both side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import polars as pl

from runner import analysis
from runner.view.queries.figures import RunFigures
from runner.view.queries.runs import Tables, matrix_columns, null_safe_eq


@dataclass(frozen=True)
class Comparison:
    """What the compare page shows of two runs, all judged by ``runner.analysis.compare``."""

    by_criterion: pl.DataFrame
    """``analysis.compare_counts`` by criterion: the table ``python -m runner compare A B``
    prints, verdicts and intervals included."""
    cases: pl.DataFrame
    """``analysis.compare_cases``: every case x criterion, the significant changes first."""

    def verdicts(self) -> dict[str, int]:
        """How many criteria got each verdict (the command's ``verdicts:`` line)."""
        return dict(self.by_criterion["verdict"].value_counts().iter_rows())

    def kinds(self) -> dict[str, int]:
        """How many cases are of each ``analysis.CASE_ORDER`` kind."""
        return dict(self.cases["kind"].value_counts().iter_rows())


def compare(a: RunFigures, b: RunFigures) -> Comparison:
    """Two runs compared from their figures: ``analysis.compare_pass_rates`` of their
    ``by_criterion`` (``analysis.rates_from``, as ``compare_runs`` computes them for the
    command) and ``analysis.compare_cases`` of their ``trials``."""

    def known(rates: pl.DataFrame) -> pl.DataFrame:
        return rates.filter(pl.col("criterion_id").is_not_null())

    return Comparison(
        by_criterion=analysis.compare_pass_rates(known(a.by_criterion), known(b.by_criterion)),
        cases=analysis.compare_cases(a.trials, b.trials),
    )


@dataclass(frozen=True)
class CaseKey:
    """One case x criterion, as the comparison links name it."""

    agent_id: str
    scenario_id: str
    criterion_id: str
    matrix: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> CaseKey:
        missing = [k for k in ("agent_id", "scenario_id", "criterion_id") if not params.get(k)]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        matrix = tuple(
            sorted(
                (k.removeprefix("m."), v or None) for k, v in params.items() if k.startswith("m.")
            )
        )
        return cls(params["agent_id"], params["scenario_id"], params["criterion_id"], matrix)

    def params(self) -> str:
        pairs = [
            ("agent_id", self.agent_id),
            ("scenario_id", self.scenario_id),
            ("criterion_id", self.criterion_id),
        ]
        pairs += [(f"m.{k}", v or "") for k, v in self.matrix]
        return urlencode(pairs)


def case_key(row: Mapping[str, Any]) -> CaseKey:
    """The ``CaseKey`` of a ``Comparison.cases`` row."""
    matrix = tuple(
        sorted((k.removeprefix("matrix."), v) for k, v in row.items() if k.startswith("matrix."))
    )
    return CaseKey(row["agent_id"], row["scenario_id"], row["criterion_id"], matrix)


def case_jobs(tables: Tables, key: CaseKey) -> list[dict[str, Any]]:
    """The jobs of a case in one run, by repeat, each with the criterion's result."""
    jobs = tables["jobs"]
    present = set(matrix_columns(jobs))
    cond = (pl.col("agent_id") == key.agent_id) & (pl.col("scenario_id") == key.scenario_id)
    for axis, value in key.matrix:
        if f"matrix.{axis}" in present:
            cond = cond & null_safe_eq(f"matrix.{axis}", value)
    rows = (
        jobs.filter(cond)
        .select("job_key", "repeat", "status", "error_kind")
        .sort("repeat")
        .collect()
    )
    results = (
        tables["criteria"]
        .filter(
            pl.col("job_key").is_in(rows["job_key"].implode())
            & (pl.col("criterion_id") == key.criterion_id)
        )
        .select("job_key", "result")
        .collect()
    )
    by_key = dict(results.iter_rows())
    out = rows.to_dicts()
    for r in out:
        r["result"] = by_key.get(r["job_key"], "error" if r["status"] == "error" else None)
    return out


def pick_pair(
    a_jobs: Sequence[Mapping[str, Any]], b_jobs: Sequence[Mapping[str, Any]]
) -> tuple[str | None, str | None]:
    """The two transcripts to show side by side: a passing one of A and a failing one of B
    when there are (the change at its clearest), else the first of each."""

    def first(rows: Sequence[Mapping[str, Any]], wanted: str) -> str | None:
        for r in rows:
            if r["result"] == wanted:
                return str(r["job_key"])
        return str(rows[0]["job_key"]) if rows else None

    return first(a_jobs, "success"), first(b_jobs, "failure")
