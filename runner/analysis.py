"""Statistics over a run's tables: pure functions from Polars frames to Polars frames.

Conventions, the same in every function here, the report, the gate and the notebook:

- A criterion's pass rate is ``success / (success + failure)``. ``unknown`` (the judge could
  not tell) is neither a pass nor a failure and is counted on its own; job errors are not
  outcomes at all and never enter a pass rate, but are counted beside it (``errors``).
- An errored job has no criteria rows. It is charged to the criteria that the ok jobs of the
  same agent and scenario were judged on; when none of them succeeded its criteria are not
  known, and it lands in a row whose ``criterion_id`` is null.
- Intervals are 95% Wilson score intervals (they behave at 0% and 100%, unlike the normal
  approximation). They treat every trial as independent; repeats of one scenario are not
  quite, so read an interval pooled over few scenarios as optimistic.
- A *case* is what repeats repeat: one agent x scenario x matrix cell. The repeat statistics
  (pass@k, pass^k, flakiness) are computed per case and criterion, then averaged.
- Latency metrics come from ok jobs only (a failed attempt has no analysis to time).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import polars as pl

Frame = pl.DataFrame | pl.LazyFrame

Z95 = 1.959964
"""Two-sided 95% standard normal quantile."""

LATENCY_COLUMNS = (
    "time_to_first_frame_secs",
    "time_to_analysis_secs",
    "mean_frame_gap_secs",
    "total_secs",
    "queue_wait_secs",
)
"""Per-job latency columns of ``jobs`` summarised by default."""

MESSAGE_METRICS = ("message_gap", "agent_turn")
"""Latency metrics derived from ``messages`` (see ``message_latencies``)."""

VERDICTS = ("regression", "improvement", "no significant change", "insufficient data")
CASE_COLUMNS = ("agent_id", "scenario_id")
"""With the ``matrix.*`` columns, what identifies a case (the repeats of one job)."""


# ------------------------------------------------------------------------------- scalars


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion; (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(
    successes_a: int, n_a: int, successes_b: int, n_b: int, z: float = Z95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval (his method 10) for ``p_b - p_a``.

    Built from the two Wilson intervals, so it stays inside [-1, 1] and behaves at 0 and 1.
    Raises ``ValueError`` when either sample is empty (there is no difference to bound).
    """
    if n_a <= 0 or n_b <= 0:
        raise ValueError("both samples need at least one outcome")
    pa, pb = successes_a / n_a, successes_b / n_b
    la, ua = wilson_interval(successes_a, n_a, z)
    lb, ub = wilson_interval(successes_b, n_b, z)
    d = pb - pa
    low = d - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2)
    high = d + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2)
    return max(-1.0, low), min(1.0, high)


def two_proportion_p_value(successes_a: int, n_a: int, successes_b: int, n_b: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (1.0 when it is undefined)."""
    if n_a <= 0 or n_b <= 0:
        return 1.0
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return 1.0
    z = abs(successes_b / n_b - successes_a / n_a) / se
    return math.erfc(z / math.sqrt(2))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of P(at least one of k trials passes) from c passes in n trials.

    ``1 - C(n-c, k) / C(n, k)`` (Chen et al. 2021): the chance that k trials drawn without
    replacement from the n observed include a pass.
    """
    _check_nck(n, c, k)
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of P(all k trials pass) from c passes in n trials: ``C(c,k)/C(n,k)``.

    The pass^k of tau-bench: a measure of reliability, where pass@k measures capability.
    """
    _check_nck(n, c, k)
    return math.comb(c, k) / math.comb(n, k)


def _check_nck(n: int, c: int, k: int) -> None:
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")


# ---------------------------------------------------------------------------- helpers


def _lazy(frame: Frame) -> pl.LazyFrame:
    return frame.lazy() if isinstance(frame, pl.DataFrame) else frame


def _names(frame: pl.LazyFrame) -> list[str]:
    return frame.collect_schema().names()


def _group(frame: pl.LazyFrame, by: Sequence[str], *aggs: pl.Expr) -> pl.LazyFrame:
    """``group_by(by).agg(...)`` sorted by the groups; one row over everything when by is empty."""
    if not by:
        return frame.select(*aggs)
    return frame.group_by(list(by)).agg(*aggs).sort(list(by), nulls_last=True)


def _wilson_exprs(successes: str, n: str, z: float = Z95) -> list[pl.Expr]:
    """``pass_rate``, ``ci_low``, ``ci_high`` as expressions (the same formula as above)."""
    s, t = pl.col(successes).cast(pl.Float64), pl.col(n).cast(pl.Float64)
    p = s / t
    denom = 1 + z * z / t
    centre = (p + z * z / (2 * t)) / denom
    half = z * ((p * (1 - p) / t + z * z / (4 * t * t)).sqrt()) / denom
    valid = pl.col(n) > 0
    return [
        pl.when(valid).then(p).otherwise(None).alias("pass_rate"),
        pl.when(valid).then((centre - half).clip(0.0, 1.0)).otherwise(0.0).alias("ci_low"),
        pl.when(valid).then((centre + half).clip(0.0, 1.0)).otherwise(1.0).alias("ci_high"),
    ]


def case_columns(jobs: Frame) -> list[str]:
    """The columns that identify a case in these jobs: agent, scenario and the matrix axes."""
    names = _names(_lazy(jobs))
    return [*CASE_COLUMNS, *(n for n in names if n.startswith("matrix."))]


def outcomes(criteria: Frame, jobs: Frame | None = None, by: Sequence[str] = ()) -> pl.LazyFrame:
    """One row per (job, criterion) slot: ``result`` is success / failure / unknown / error.

    ``by`` names columns to carry along: criteria columns (``source``, ``name``) or jobs
    columns (joined by ``job_key``). Without ``jobs`` there are no error rows. Errored jobs
    are charged to the criteria their agent and scenario were judged on in ok jobs (null
    ``criterion_id`` when there were none).
    """
    crit_all = _lazy(criteria)
    crit_names = _names(crit_all)
    base = ["job_key", "criterion_id", "result"]
    crit_carry = [c for c in dict.fromkeys(by) if c in crit_names and c not in base]
    crit = crit_all.select(*base, *crit_carry)
    if jobs is None:
        missing = [c for c in by if c not in crit_names]
        if missing:
            raise ValueError(f"grouping by {missing} needs the jobs frame")
        return crit
    job = _lazy(jobs)
    job_carry = [c for c in dict.fromkeys([*by, *CASE_COLUMNS]) if c not in crit_names]
    unknown_cols = [c for c in job_carry if c not in _names(job)]
    if unknown_cols:
        raise ValueError(f"no such column in criteria or jobs: {', '.join(unknown_cols)}")
    job = job.select("job_key", "status", *job_carry)
    ok = crit.join(job.drop("status"), on="job_key", how="inner")
    expected = ok.select(*CASE_COLUMNS, "criterion_id", *crit_carry).unique()
    failed = (
        job.filter(pl.col("status") == "error")
        .drop("status")
        .join(expected, on=list(CASE_COLUMNS), how="left")
        .with_columns(pl.lit("error").alias("result"))
    )
    columns = [*base, *crit_carry, *job_carry]
    return pl.concat([ok.select(columns), failed.select(columns)], how="vertical")


# --------------------------------------------------------------------------- pass rates


def pass_rates(
    criteria: Frame,
    jobs: Frame | None = None,
    by: Sequence[str] = ("criterion_id",),
    z: float = Z95,
) -> pl.DataFrame:
    """Counts of success / failure / unknown / errors per group, pass rate and Wilson interval.

    Grouping columns may come from ``jobs`` (e.g. ``agent_label``, ``scenario_id``,
    ``matrix.language``, ``repeat``): they are joined in by ``job_key`` when ``jobs`` is
    given. ``errors`` counts the errored jobs in the group (null without ``jobs``).
    """
    frame = outcomes(criteria, jobs, by)
    result = pl.col("result")
    errors: pl.Expr = (
        pl.col("job_key").filter(result == "error").n_unique()
        if jobs is not None
        else pl.lit(None, dtype=pl.UInt32)
    )
    counts = _group(
        frame,
        by,
        (result == "success").sum().alias("success"),
        (result == "failure").sum().alias("failure"),
        (result == "unknown").sum().alias("unknown"),
        errors.cast(pl.UInt32).alias("errors"),
    )
    return (
        counts.with_columns((pl.col("success") + pl.col("failure")).alias("_n"))
        .with_columns(_wilson_exprs("success", "_n", z))
        .drop("_n")
        .collect()
    )


def error_rates(jobs: Frame, by: Sequence[str] = (), z: float = Z95) -> pl.DataFrame:
    """Jobs, ok, errors and the error rate (share of jobs that ended in error) with its interval."""
    counts = _group(
        _lazy(jobs),
        by,
        pl.len().cast(pl.UInt32).alias("jobs"),
        (pl.col("status") == "ok").sum().cast(pl.UInt32).alias("ok"),
        (pl.col("status") == "error").sum().cast(pl.UInt32).alias("errors"),
        (pl.col("attempts") - 1).clip(0).sum().cast(pl.Int64).alias("retries"),
    )
    return (
        counts.with_columns(_wilson_exprs("errors", "jobs", z))
        .rename({"pass_rate": "error_rate"})
        .collect()
    )


def error_counts(jobs: Frame) -> pl.DataFrame:
    """Jobs that ended in error, by kind."""
    return (
        _lazy(jobs)
        .filter(pl.col("status") == "error")
        .group_by("error_kind")
        .agg(pl.len().alias("jobs"))
        .sort(["jobs", "error_kind"], descending=[True, False])
        .collect()
    )


# ---------------------------------------------------------------------- across repeats


def repeat_cases(
    criteria: Frame, jobs: Frame, by: Sequence[str] = ("criterion_id",)
) -> pl.DataFrame:
    """One row per case and criterion: its trials across repeats.

    ``trials`` = success + failure (the decided outcomes the estimators use); ``sequence``
    spells the outcomes in repeat order (``S`` success, ``F`` failure, ``U`` unknown,
    ``E`` job error); ``flaky`` is true when the case both passed and failed.
    """
    cases = case_columns(jobs)
    keys = list(dict.fromkeys([*cases, "criterion_id", *by]))
    extra = [c for c in ("agent_label", "repeat") if c not in keys]
    # errored jobs whose criteria are unknown have nothing to repeat: left out
    frame = outcomes(criteria, jobs, [*keys, *extra]).filter(pl.col("criterion_id").is_not_null())
    letter = (
        pl.col("result")
        .replace_strict({"success": "S", "failure": "F", "unknown": "U", "error": "E"}, default="?")
        .alias("_letter")
    )
    labels = [pl.col("agent_label").first()] if "agent_label" in extra else []
    counts = ["success", "failure", "unknown", "errors"]
    result = pl.col("result")
    return (
        frame.with_columns(letter)
        .sort([*keys, "repeat"], nulls_last=True)
        .group_by(keys, maintain_order=True)
        .agg(
            *labels,
            (result == "success").sum().cast(pl.UInt32).alias("success"),
            (result == "failure").sum().cast(pl.UInt32).alias("failure"),
            (result == "unknown").sum().cast(pl.UInt32).alias("unknown"),
            (result == "error").sum().cast(pl.UInt32).alias("errors"),
            pl.col("_letter").str.join("").alias("sequence"),
        )
        .with_columns((pl.col("success") + pl.col("failure")).alias("trials"))
        .with_columns(((pl.col("success") > 0) & (pl.col("failure") > 0)).alias("flaky"))
        .select(*_label_first(keys, extra), "sequence", *counts, "trials", "flaky")
        .collect()
    )


def _label_first(keys: list[str], extra: list[str]) -> list[str]:
    """Key columns for display: the agent's label right after its id."""
    if "agent_label" not in extra:
        return keys
    at = keys.index("agent_id") + 1
    return [*keys[:at], "agent_label", *keys[at:]]


def _pass_at_k_expr(k: int) -> pl.Expr:
    """``1 - C(n-c, k)/C(n, k)`` as a product, valid where ``trials >= k``."""
    n, c = pl.col("trials").cast(pl.Float64), pl.col("success").cast(pl.Float64)
    miss = pl.lit(1.0)
    for i in range(k):
        miss = miss * ((n - c - i) / (n - i)).clip(lower_bound=0.0)
    return 1.0 - miss


def _pass_hat_k_expr(k: int) -> pl.Expr:
    """``C(c, k)/C(n, k)`` as a product, valid where ``trials >= k``."""
    n, c = pl.col("trials").cast(pl.Float64), pl.col("success").cast(pl.Float64)
    hit = pl.lit(1.0)
    for i in range(k):
        hit = hit * ((c - i) / (n - i)).clip(lower_bound=0.0)
    return hit


def repeat_pass_rates(
    criteria: Frame,
    jobs: Frame,
    ks: Sequence[int] = (1, 3),
    by: Sequence[str] = ("criterion_id",),
) -> pl.DataFrame:
    """pass@k and pass^k per group: the unbiased per-case estimates, averaged over cases.

    One row per group and k. ``cases`` counts the cases with at least k decided trials (the
    only ones the estimators are defined for); ``cases_short`` those with fewer, left out.
    ``pass@1`` equals ``pass^1``: the mean of the per-case pass rates.
    """
    if not ks or min(ks) < 1:
        raise ValueError("every k must be >= 1")
    per_case = repeat_cases(criteria, jobs, by).lazy()
    frames = []
    for k in sorted(set(ks)):
        enough = pl.col("trials") >= k
        frames.append(
            _group(
                per_case.with_columns(
                    pl.when(enough).then(_pass_at_k_expr(k)).alias("_at"),
                    pl.when(enough).then(_pass_hat_k_expr(k)).alias("_hat"),
                ),
                by,
                pl.lit(k, dtype=pl.Int32).alias("k"),
                enough.sum().cast(pl.UInt32).alias("cases"),
                (~enough).sum().cast(pl.UInt32).alias("cases_short"),
                pl.col("_at").mean().alias("pass_at_k"),
                pl.col("_hat").mean().alias("pass_hat_k"),
            )
        )
    out = pl.concat(frames, how="vertical")
    return out.sort([*by, "k"], nulls_last=True).collect() if by else out.collect()


def flakiness(
    criteria: Frame, jobs: Frame, by: Sequence[str] = ("criterion_id",), z: float = Z95
) -> pl.DataFrame:
    """Share of cases with mixed outcomes (passed in one repeat, failed in another).

    With ``criterion_id`` in ``by`` the units are case x criterion; without it they are cases,
    flaky when any of their criteria is. Only units with at least two decided trials can
    flip, so only those are counted (``cases``).
    """
    per_case = repeat_cases(criteria, jobs, by).lazy()
    if "criterion_id" not in by:
        keys = list(dict.fromkeys([*case_columns(jobs), *by]))
        per_case = per_case.group_by(keys).agg(
            pl.col("flaky").any(), (pl.col("trials") >= 2).any().alias("_eligible")
        )
    else:
        per_case = per_case.with_columns((pl.col("trials") >= 2).alias("_eligible"))
    counts = _group(
        per_case.filter(pl.col("_eligible")),
        by,
        pl.len().cast(pl.UInt32).alias("cases"),
        pl.col("flaky").sum().cast(pl.UInt32).alias("flaky"),
    )
    return (
        counts.with_columns(_wilson_exprs("flaky", "cases", z))
        .rename({"pass_rate": "flaky_share"})
        .collect()
    )


def flaky_cases(
    criteria: Frame, jobs: Frame, by: Sequence[str] = ("criterion_id",)
) -> pl.DataFrame:
    """The case x criterion units that flipped, the most evenly split first."""
    per_case = repeat_cases(criteria, jobs, by)
    return (
        per_case.filter(pl.col("flaky"))
        .with_columns(
            (pl.min_horizontal("success", "failure") / pl.col("trials")).alias("_balance")
        )
        .sort(["_balance", "trials", "criterion_id"], descending=[True, True, False])
        .drop("_balance", "flaky")
    )


# ------------------------------------------------------------------------------ latency


def message_latencies(messages: Frame) -> pl.LazyFrame:
    """Latency samples derived from ``messages``: one row per ``job_key``, ``metric``, ``secs``.

    - ``message_gap``: time between the arrivals of two consecutive messages of a job.
    - ``agent_turn``: for each turn of the agent (a maximal run of consecutive agent messages,
      tool calls and results included), the arrival of its last message minus the arrival of
      the message before it, i.e. how long the user waited for the agent to finish. A turn
      that opens the stream has no message before it and is left out (its time includes
      connection setup: see ``time_to_first_frame``).

    Messages replayed from a scenario's ``history`` are not in the table, so they count for
    nothing here.
    """
    frame = _lazy(messages).select("job_key", "index", "role", "arrival_secs")
    ordered = frame.sort(["job_key", "index"]).with_columns(
        pl.col("arrival_secs").shift(1).over("job_key").alias("_prev"),
        (pl.col("role") != pl.col("role").shift(1).over("job_key"))
        .fill_null(True)
        .cast(pl.Int32)
        .cum_sum()
        .over("job_key")
        .alias("_turn"),
    )
    gaps = ordered.filter(pl.col("_prev").is_not_null()).select(
        "job_key",
        pl.lit("message_gap").alias("metric"),
        (pl.col("arrival_secs") - pl.col("_prev")).alias("secs"),
    )
    turns = (
        ordered.group_by(["job_key", "_turn"], maintain_order=True)
        .agg(
            pl.col("role").first(),
            pl.col("_prev").first().alias("_start"),
            pl.col("arrival_secs").last().alias("_end"),
        )
        .filter((pl.col("role") == "agent") & pl.col("_start").is_not_null())
        .select(
            "job_key",
            pl.lit("agent_turn").alias("metric"),
            (pl.col("_end") - pl.col("_start")).alias("secs"),
        )
    )
    return pl.concat([gaps, turns], how="vertical")


def latency_samples(
    jobs: Frame,
    columns: Sequence[str] = LATENCY_COLUMNS,
    messages: Frame | None = None,
    by: Sequence[str] = (),
) -> pl.LazyFrame:
    """Every latency sample of ok jobs, long: ``by`` columns, ``job_key``, ``metric``, ``secs``.

    ``metric`` is the jobs column without ``_secs``, or one of ``MESSAGE_METRICS`` when
    ``messages`` is given.
    """
    ok = _lazy(jobs).filter(pl.col("status") == "ok")
    index = list(dict.fromkeys(["job_key", *by]))
    parts = []
    if columns:
        parts.append(
            ok.select(*index, *(pl.col(c).cast(pl.Float64) for c in columns))
            .unpivot(index=index, on=list(columns), variable_name="metric", value_name="secs")
            .with_columns(pl.col("metric").str.strip_suffix("_secs"))
        )
    if messages is not None:
        parts.append(
            message_latencies(messages)
            .join(ok.select(*index), on="job_key", how="inner")
            .select(*index, "metric", "secs")
        )
    if not parts:
        raise ValueError("no latency metric asked for")
    return pl.concat(parts, how="vertical").filter(pl.col("secs").is_not_null())


def latency_percentiles(
    jobs: Frame,
    columns: Sequence[str] = LATENCY_COLUMNS,
    quantiles: Sequence[float] = (0.5, 0.9, 0.95, 0.99),
    *,
    by: Sequence[str] = (),
    messages: Frame | None = None,
) -> pl.DataFrame:
    """Percentiles of each latency metric over ok jobs: one row per group and metric.

    With ``messages``, adds ``message_gap`` and ``agent_turn`` (see ``message_latencies``).
    Percentiles interpolate linearly; ``n`` is the number of samples.
    """
    metrics = [c.removesuffix("_secs") for c in columns]
    if messages is not None:
        metrics += list(MESSAGE_METRICS)
    samples = latency_samples(jobs, columns, messages, by)
    order = pl.col("metric").replace_strict(
        {m: i for i, m in enumerate(metrics)}, default=len(metrics), return_dtype=pl.Int32
    )
    exprs = [
        pl.col("secs").quantile(q, interpolation="linear").alias(f"p{_pct(q)}") for q in quantiles
    ]
    grid = pl.LazyFrame({"metric": metrics})
    if by:
        grid = samples.select(*by).unique().join(grid, how="cross")
    stats = samples.group_by([*by, "metric"]).agg(
        pl.col("secs").count().cast(pl.UInt32).alias("n"), *exprs
    )
    return (
        grid.join(stats, on=[*by, "metric"], how="left", nulls_equal=True)
        .with_columns(pl.col("n").fill_null(0), order.alias("_order"))
        .sort([*by, "_order"], nulls_last=True)
        .drop("_order")
        .collect()
    )


def _pct(q: float) -> str:
    value = q * 100
    return str(round(value)) if abs(value - round(value)) < 1e-9 else f"{value:g}".replace(".", "_")


# ---------------------------------------------------------------------------- over time


def _attempt_times(attempts: Frame) -> pl.LazyFrame:
    frame = _lazy(attempts)
    origin = pl.col("started_at").min()
    return frame.with_columns(
        ((pl.col("started_at") - origin).dt.total_microseconds() / 1e6).alias("t_start"),
    ).with_columns(
        (pl.col("t_start") + pl.col("duration_secs").fill_null(0.0)).alias("t_end"),
    )


def attempts_over_time(attempts: Frame, buckets: int = 40) -> pl.DataFrame:
    """Attempts per time bucket, long: ``t_secs`` (bucket start, seconds after the first
    attempt), ``bucket_secs``, ``outcome`` (``ok`` or the error kind), ``attempts`` and
    ``retries`` (attempts after a job's first)."""
    frame = _attempt_times(attempts)
    span = frame.select(pl.col("t_start").max()).collect().item()
    if span is None:
        return pl.DataFrame(
            schema={
                "t_secs": pl.Float64,
                "bucket_secs": pl.Float64,
                "outcome": pl.String,
                "attempts": pl.UInt32,
                "retries": pl.UInt32,
            }
        )
    width = max(span, 1e-3) / max(1, buckets) * (1 + 1e-9)
    return (
        frame.with_columns(
            ((pl.col("t_start") / width).floor() * width).alias("t_secs"),
            pl.when(pl.col("status") == "ok")
            .then(pl.lit("ok"))
            .otherwise(pl.col("error_kind").fill_null("error"))
            .alias("outcome"),
        )
        .group_by(["t_secs", "outcome"])
        .agg(
            pl.len().cast(pl.UInt32).alias("attempts"),
            (pl.col("attempt") > 1).sum().cast(pl.UInt32).alias("retries"),
        )
        .with_columns(pl.lit(width).alias("bucket_secs"))
        .select("t_secs", "bucket_secs", "outcome", "attempts", "retries")
        .sort(["t_secs", "outcome"])
        .collect()
    )


def in_flight_over_time(attempts: Frame) -> pl.DataFrame:
    """Requests in flight as a step function: ``t_secs`` (after the first attempt), the count
    from then on, and the concurrency limit in force. An attempt is in flight from its start
    to start + ``duration_secs``; at equal times, ends are counted before starts."""
    frame = _attempt_times(attempts)
    starts = frame.select(
        pl.col("t_start").alias("t_secs"),
        pl.lit(1, dtype=pl.Int32).alias("delta"),
        pl.col("concurrency_limit").cast(pl.Int32),
    )
    ends = frame.select(
        pl.col("t_end").alias("t_secs"),
        pl.lit(-1, dtype=pl.Int32).alias("delta"),
        pl.lit(None, dtype=pl.Int32).alias("concurrency_limit"),
    )
    return (
        pl.concat([starts, ends], how="vertical")
        .sort(["t_secs", "delta"])
        .with_columns(
            pl.col("delta").cum_sum().alias("in_flight"),
            pl.col("concurrency_limit").forward_fill(),
        )
        .group_by("t_secs", maintain_order=True)
        .last()
        .select("t_secs", "in_flight", "concurrency_limit")
        .collect()
    )


# ---------------------------------------------------------------------------- comparing


_COMPARE_COLUMNS: tuple[tuple[str, pl.DataType], ...] = (
    ("a_n", pl.Int64()),
    ("a_pass_rate", pl.Float64()),
    ("b_n", pl.Int64()),
    ("b_pass_rate", pl.Float64()),
    ("diff", pl.Float64()),
    ("diff_low", pl.Float64()),
    ("diff_high", pl.Float64()),
    ("p_value", pl.Float64()),
    ("verdict", pl.String()),
)


def compare_pass_rates(
    a: pl.DataFrame, b: pl.DataFrame, by: Sequence[str] = ("criterion_id",), z: float = Z95
) -> pl.DataFrame:
    """Change in pass rate from ``a`` to ``b`` (two ``pass_rates`` frames grouped by ``by``).

    Per group: each side's decided outcomes and rate, ``diff`` = rate_b - rate_a with its
    Newcombe interval, the two-proportion test's p-value, and a ``verdict``: ``regression``
    when the whole interval is below 0, ``improvement`` when above, ``no significant change``
    when it spans 0, ``insufficient data`` when a side has no decided outcome. Each group is
    judged at 95% on its own: with many criteria, expect about one in twenty to be flagged
    by chance.
    """
    keys = list(by)
    side = ["success", "failure", "unknown", "errors"]
    left = a.select(*keys, *side).rename({c: f"a_{c}" for c in side})
    right = b.select(*keys, *side).rename({c: f"b_{c}" for c in side})
    joined = left.join(right, on=keys, how="full", coalesce=True, nulls_equal=True)
    if keys:
        joined = joined.sort(keys, nulls_last=True)
    rows = []
    for row in joined.iter_rows(named=True):
        sa, na = row["a_success"] or 0, (row["a_success"] or 0) + (row["a_failure"] or 0)
        sb, nb = row["b_success"] or 0, (row["b_success"] or 0) + (row["b_failure"] or 0)
        out = {k: row[k] for k in keys}
        out |= {
            "a_n": na,
            "a_pass_rate": sa / na if na else None,
            "b_n": nb,
            "b_pass_rate": sb / nb if nb else None,
        }
        if na and nb:
            low, high = newcombe_interval(sa, na, sb, nb, z)
            verdict = (
                "regression" if high < 0 else "improvement" if low > 0 else "no significant change"
            )
            out |= {
                "diff": sb / nb - sa / na,
                "diff_low": low,
                "diff_high": high,
                "p_value": two_proportion_p_value(sa, na, sb, nb),
                "verdict": verdict,
            }
        else:
            out |= {
                "diff": None,
                "diff_low": None,
                "diff_high": None,
                "p_value": None,
                "verdict": "insufficient data",
            }
        rows.append(out)
    schema: dict[str, pl.DataType] = {k: joined.schema[k] for k in keys}
    for name, dtype in _COMPARE_COLUMNS:
        schema[name] = dtype
    return pl.DataFrame(rows, schema=schema, orient="row")


def compare_runs(
    a_criteria: Frame,
    a_jobs: Frame,
    b_criteria: Frame,
    b_jobs: Frame,
    by: Sequence[str] = ("criterion_id",),
    z: float = Z95,
) -> pl.DataFrame:
    """``compare_pass_rates`` of two runs (or two slices of one, e.g. two agents).

    Errored jobs whose criteria are unknown (null ``criterion_id``) have no pass rate to
    compare and are left out.
    """

    def rates(criteria: Frame, jobs: Frame) -> pl.DataFrame:
        table = pass_rates(criteria, jobs, by, z)
        if "criterion_id" in by:
            table = table.filter(pl.col("criterion_id").is_not_null())
        return table

    return compare_pass_rates(rates(a_criteria, a_jobs), rates(b_criteria, b_jobs), by, z)


# ------------------------------------------------------------------------------- spend

SPEND_COLUMNS = ("usd", "credits", "usd_per_job", "usd_per_pass", "credits_per_pass")
"""Money columns of ``spend`` (the report formats them as money, not rates)."""


def _cost(jobs: pl.LazyFrame) -> pl.LazyFrame:
    """``jobs`` with ``_usd`` and ``_credits``: what each job cost as the vendor priced it.
    Tables written before ``cost_usd`` existed fall back to ``llm_price``; nothing is
    invented where neither is there (null)."""
    names = _names(jobs)
    if "cost_usd" in names:
        usd = pl.col("cost_usd")
    elif "llm_price" in names:
        usd = pl.col("llm_price")
    else:
        usd = pl.lit(None, dtype=pl.Float64)
    credits = (
        pl.col("credits_used").cast(pl.Float64)
        if "credits_used" in names
        else pl.lit(None, dtype=pl.Float64)
    )
    return jobs.with_columns(usd.cast(pl.Float64).alias("_usd"), credits.alias("_credits"))


def passed_jobs(criteria: Frame) -> pl.LazyFrame:
    """Keys of the jobs that *passed*: judged on at least one criterion, and every criterion
    ``success`` (a ``failure`` or an ``unknown`` is not a pass)."""
    return (
        _lazy(criteria)
        .group_by("job_key")
        .agg((pl.col("result") == "success").all().alias("_passed"))
        .filter(pl.col("_passed"))
        .select("job_key")
    )


def spend(jobs: Frame, criteria: Frame | None = None, by: Sequence[str] = ()) -> pl.DataFrame:
    """What the jobs cost, per group: ``jobs``; ``priced`` (jobs the vendor put a USD price
    on); ``usd`` (their sum, null when none was priced); ``credits`` (null when none was
    billed in credits); ``usd_per_job`` (over the priced jobs); with ``criteria``, ``passed``
    (jobs whose every criterion succeeded) and ``usd_per_pass`` / ``credits_per_pass``: the
    whole group's spend, failures and errors included, over its passed jobs (null when none
    passed). Retried and resumed jobs count once per row the tables hold."""
    frame = _cost(_lazy(jobs))
    if criteria is not None:
        passed = passed_jobs(criteria).with_columns(pl.lit(True).alias("_pass"))
        frame = frame.join(passed, on="job_key", how="left").with_columns(
            pl.col("_pass").fill_null(False)
        )
    aggs = [
        pl.len().cast(pl.Int64).alias("jobs"),
        pl.col("_usd").count().cast(pl.Int64).alias("priced"),
        pl.when(pl.col("_usd").count() > 0).then(pl.col("_usd").sum()).alias("usd"),
        pl.when(pl.col("_credits").count() > 0).then(pl.col("_credits").sum()).alias("credits"),
    ]
    if criteria is not None:
        aggs.append(pl.col("_pass").sum().cast(pl.Int64).alias("passed"))
    out = _group(frame, by, *aggs).with_columns(
        pl.when(pl.col("priced") > 0)
        .then(pl.col("usd") / pl.col("priced"))
        .otherwise(None)
        .alias("usd_per_job")
    )
    if criteria is not None:
        per_pass = pl.when(pl.col("passed") > 0)
        out = out.with_columns(
            per_pass.then(pl.col("usd") / pl.col("passed")).otherwise(None).alias("usd_per_pass"),
            per_pass.then(pl.col("credits") / pl.col("passed"))
            .otherwise(None)
            .alias("credits_per_pass"),
        )
    return out.collect()


def spend_over_time(jobs: Frame) -> pl.DataFrame:
    """Cumulative spend as jobs finished: ``t_secs`` (after the first job started), ``usd``
    and ``credits`` so far (null until the first priced job). One row per finished job that
    carried a price, in finishing order; resumed sessions follow on."""
    frame = _cost(_lazy(jobs))
    start = frame.select(pl.col("started_at").min()).collect().item()
    priced = frame.filter(pl.col("_usd").is_not_null() | pl.col("_credits").is_not_null())
    if start is None:
        return pl.DataFrame(schema={"t_secs": pl.Float64, "usd": pl.Float64, "credits": pl.Float64})
    return (
        priced.sort("finished_at")
        .select(
            ((pl.col("finished_at") - pl.lit(start)).dt.total_microseconds() / 1e6).alias("t_secs"),
            pl.col("_usd").fill_null(0.0).cum_sum().alias("usd"),
            pl.col("_credits").fill_null(0.0).cum_sum().alias("credits"),
            pl.col("_usd").is_not_null().cum_sum().alias("_n_usd"),
            pl.col("_credits").is_not_null().cum_sum().alias("_n_credits"),
        )
        .with_columns(
            pl.when(pl.col("_n_usd") > 0).then(pl.col("usd")).alias("usd"),
            pl.when(pl.col("_n_credits") > 0).then(pl.col("credits")).alias("credits"),
        )
        .drop("_n_usd", "_n_credits")
        .collect()
    )


def compare_spend(
    a_criteria: Frame, a_jobs: Frame, b_criteria: Frame, b_jobs: Frame
) -> pl.DataFrame:
    """What each side cost beside what it passed: one row per measure (``usd``,
    ``usd_per_job``, ``usd_per_pass``, ``credits``, ``credits_per_pass``) with ``a``, ``b``,
    ``diff`` = b - a and ``ratio`` = b / a (null where a side has no figure). Read it with
    the pass-rate change: is B better, and at what price?"""
    a = spend(a_jobs, a_criteria).row(0, named=True)
    b = spend(b_jobs, b_criteria).row(0, named=True)
    rows = []
    for measure in ("usd", "usd_per_job", "usd_per_pass", "credits", "credits_per_pass"):
        va, vb = a.get(measure), b.get(measure)
        rows.append(
            {
                "measure": measure,
                "a": va,
                "b": vb,
                "diff": vb - va if va is not None and vb is not None else None,
                "ratio": vb / va if va and vb is not None else None,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "measure": pl.String,
            "a": pl.Float64,
            "b": pl.Float64,
            "diff": pl.Float64,
            "ratio": pl.Float64,
        },
        orient="row",
    )
