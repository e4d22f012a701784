"""The statistics: published reference values, values worked out by hand, and properties.

Reference intervals are Newcombe (1998): "Two-sided confidence intervals for the single
proportion" (Table I, Wilson score method) and "Interval estimation for the difference between
independent proportions" (Table II, method 10), both in Statistics in Medicine 17.
"""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner import analysis as an
from runner.schema import jobs_schema

# ------------------------------------------------------------------ reference values


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_newcombe_table_i(successes: int, n: int, low: float, high: float) -> None:
    lo, hi = an.wilson_interval(successes, n)
    assert (round(lo, 4), round(hi, 4)) == (low, high)


def test_wilson_by_hand_for_six_of_nine() -> None:
    # p = 2/3, z^2 = 3.8415: centre = (2/3 + z^2/18) / (1 + z^2/9) = 0.61681,
    # half = z * sqrt(p(1-p)/9 + z^2/324) / (1 + z^2/9) = 0.26261
    lo, hi = an.wilson_interval(6, 9)
    assert lo == pytest.approx(0.61681 - 0.26261, abs=1e-4)
    assert hi == pytest.approx(0.61681 + 0.26261, abs=1e-4)
    assert an.wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("b", "a", "low", "high"),
    [
        ((56, 70), (48, 80), 0.0524, 0.3339),
        ((9, 10), (3, 10), 0.1705, 0.8090),
        ((6, 7), (2, 7), 0.0582, 0.8062),
        ((5, 56), (0, 29), -0.0381, 0.1926),
        ((0, 10), (0, 20), -0.1611, 0.2775),
        ((0, 10), (0, 10), -0.2775, 0.2775),
        ((10, 10), (0, 20), 0.6791, 1.0),
        ((10, 10), (0, 10), 0.6075, 1.0),
    ],
)
def test_newcombe_matches_newcombe_table_ii(
    b: tuple[int, int], a: tuple[int, int], low: float, high: float
) -> None:
    lo, hi = an.newcombe_interval(a[0], a[1], b[0], b[1])
    assert (round(lo, 4), round(hi, 4)) == (low, high)


def test_newcombe_needs_outcomes_on_both_sides() -> None:
    with pytest.raises(ValueError):
        an.newcombe_interval(0, 0, 3, 4)


def test_two_proportion_test_by_hand() -> None:
    # 30/50 vs 20/50: pooled 0.5, se = sqrt(0.25 * 0.04) = 0.1, z = 2, p = erfc(2 / sqrt 2)
    assert an.two_proportion_p_value(30, 50, 20, 50) == pytest.approx(0.0455, abs=1e-4)
    assert an.two_proportion_p_value(5, 5, 5, 5) == 1.0  # no variance: no evidence of change


def test_pass_at_k_and_pass_hat_k_by_hand() -> None:
    # 3 trials, 1 pass: a pair of trials includes the pass in 2 of the 3 pairs; all pass in none
    assert an.pass_at_k(3, 1, 2) == pytest.approx(2 / 3)
    assert an.pass_hat_k(3, 1, 2) == 0.0
    # 5 trials, 3 passes: C(2,2)/C(5,2) = 1/10 pairs miss; C(3,2)/C(5,2) = 3/10 pairs all pass
    assert an.pass_at_k(5, 3, 2) == pytest.approx(0.9)
    assert an.pass_hat_k(5, 3, 2) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        an.pass_at_k(2, 1, 3)  # k larger than the trials: not estimable


# ------------------------------------------------------------------------ properties


@given(st.integers(0, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_contains_the_estimate_and_stays_in_range(sn: tuple[int, int]) -> None:
    s, n = sn
    lo, hi = an.wilson_interval(s, n)
    assert 0.0 <= lo <= hi <= 1.0
    if n:
        assert lo <= s / n + 1e-12 and s / n - 1e-12 <= hi
        mirrored = an.wilson_interval(n - s, n)  # failures' interval is the mirror image
        assert mirrored[0] == pytest.approx(1 - hi, abs=1e-12)
        assert mirrored[1] == pytest.approx(1 - lo, abs=1e-12)
        bigger = an.wilson_interval(4 * s, 4 * n)  # more data at the same rate: narrower
        assert bigger[1] - bigger[0] < hi - lo


@given(
    st.integers(1, 200).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
    st.integers(1, 200).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
)
def test_newcombe_contains_the_difference_and_is_antisymmetric(
    a: tuple[int, int], b: tuple[int, int]
) -> None:
    lo, hi = an.newcombe_interval(a[0], a[1], b[0], b[1])
    d = b[0] / b[1] - a[0] / a[1]
    assert -1.0 <= lo <= d + 1e-12 and d - 1e-12 <= hi <= 1.0
    back = an.newcombe_interval(b[0], b[1], a[0], a[1])
    assert back[0] == pytest.approx(-hi, abs=1e-12) and back[1] == pytest.approx(-lo, abs=1e-12)


def _nck(max_n: int = 12) -> st.SearchStrategy[tuple[int, int, int]]:
    return st.integers(1, max_n).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))
    )


@given(_nck())
def test_estimators_equal_the_average_over_every_k_subset_of_the_trials(
    nck: tuple[int, int, int],
) -> None:
    n, c, k = nck
    trials = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(trials, k))
    assert an.pass_at_k(n, c, k) == pytest.approx(sum(map(any, subsets)) / len(subsets))
    assert an.pass_hat_k(n, c, k) == pytest.approx(sum(map(all, subsets)) / len(subsets))


@given(_nck(), st.floats(0.0, 1.0))
def test_estimators_are_unbiased_under_binomial_sampling(
    nck: tuple[int, int, int], p: float
) -> None:
    n, _, k = nck
    weights = [math.comb(n, c) * p**c * (1 - p) ** (n - c) for c in range(n + 1)]
    expected_at = sum(w * an.pass_at_k(n, c, k) for c, w in enumerate(weights))
    expected_hat = sum(w * an.pass_hat_k(n, c, k) for c, w in enumerate(weights))
    assert expected_at == pytest.approx(1 - (1 - p) ** k, abs=1e-9)
    assert expected_hat == pytest.approx(p**k, abs=1e-9)


@given(_nck())
def test_estimator_orderings(nck: tuple[int, int, int]) -> None:
    n, c, k = nck
    at, hat = an.pass_at_k(n, c, k), an.pass_hat_k(n, c, k)
    assert 0.0 <= hat <= c / n + 1e-12 <= at + 2e-12 <= 1.0 + 2e-12
    assert an.pass_at_k(n, c, 1) == pytest.approx(c / n) == an.pass_hat_k(n, c, 1)
    if k < n:  # more tries: at least one pass gets likelier, all passing less likely
        assert an.pass_at_k(n, c, k + 1) >= at - 1e-12
        assert an.pass_hat_k(n, c, k + 1) <= hat + 1e-12


# --------------------------------------------------------------------- frame helpers

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_jobs(rows: list[dict[str, Any]], axes: tuple[str, ...] = ()) -> pl.DataFrame:
    schema = jobs_schema(list(axes))
    full = []
    for i, row in enumerate(rows):
        base = {name: None for name in schema.names()}
        base |= {
            "job_key": f"j{i}",
            "agent_id": "agent_a",
            "agent_label": "a",
            "scenario_id": "s1",
            "repeat": 0,
            "status": "ok",
            "attempts": 1,
            "started_at": T0 + timedelta(seconds=i),
        }
        full.append(base | row)
    return pl.DataFrame(full, schema=schema, orient="row")


def make_criteria(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    """(job_key, criterion_id, result) triples."""
    return pl.DataFrame(
        [
            {"job_key": j, "criterion_id": c, "result": r, "source": "extra", "name": c}
            for j, c, r in rows
        ],
        schema={
            "job_key": pl.String,
            "criterion_id": pl.String,
            "result": pl.String,
            "source": pl.String,
            "name": pl.String,
        },
    )


def repeated(
    outcomes: dict[tuple[str, str], list[str | None]],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Jobs and criteria from {(agent, scenario): [result per repeat, None = job error]}
    for one criterion ``c``."""
    jobs, crit = [], []
    for (agent, scenario), results in outcomes.items():
        for r, result in enumerate(results):
            key = f"{agent}-{scenario}-{r}"
            jobs.append(
                {
                    "job_key": key,
                    "agent_id": agent,
                    "agent_label": agent.upper(),
                    "scenario_id": scenario,
                    "repeat": r,
                    "status": "ok" if result else "error",
                    "error_kind": None if result else "server_error",
                }
            )
            if result:
                crit.append((key, "c", result))
    return make_jobs(jobs), make_criteria(crit)


# ------------------------------------------------------------------------ pass rates


def test_pass_rates_count_unknown_and_errors_apart() -> None:
    jobs, criteria = repeated(
        {
            ("x", "s1"): ["success", "failure", "unknown", None],
            ("x", "s2"): ["success", "success", "success"],
            ("y", "s3"): [None, None],  # never ok: its criteria are not known
        }
    )
    rates = an.pass_rates(criteria, jobs)
    known = rates.filter(pl.col("criterion_id") == "c").row(0, named=True)
    assert (known["success"], known["failure"], known["unknown"], known["errors"]) == (4, 1, 1, 1)
    assert known["pass_rate"] == pytest.approx(4 / 5)
    assert (known["ci_low"], known["ci_high"]) == pytest.approx(an.wilson_interval(4, 5))
    orphan = rates.filter(pl.col("criterion_id").is_null()).row(0, named=True)
    assert orphan["errors"] == 2 and orphan["pass_rate"] is None
    assert (orphan["ci_low"], orphan["ci_high"]) == (0.0, 1.0)
    # without the jobs frame there is nothing to say about errors
    assert an.pass_rates(criteria)["errors"].to_list() == [None]


def test_pass_rates_group_by_any_jobs_or_criteria_column() -> None:
    jobs = make_jobs(
        [
            {"job_key": "k0", "agent_label": "a", "matrix.language": "en"},
            {"job_key": "k1", "agent_label": "a", "matrix.language": "es"},
            {"job_key": "k2", "agent_label": "b", "matrix.language": "es"},
        ],
        axes=("language",),
    )
    criteria = make_criteria(
        [
            ("k0", "c1", "success"),
            ("k0", "c2", "failure"),
            ("k1", "c1", "failure"),
            ("k2", "c1", "success"),
            ("k2", "c2", "unknown"),
        ]
    )
    by_lang = an.pass_rates(criteria, jobs, by=["matrix.language"])
    assert by_lang.select("matrix.language", "success", "failure", "unknown").rows() == [
        ("en", 1, 1, 0),
        ("es", 1, 1, 1),
    ]
    by_agent_crit = an.pass_rates(criteria, jobs, by=["agent_label", "criterion_id"])
    assert by_agent_crit.select("agent_label", "criterion_id", "pass_rate").rows() == [
        ("a", "c1", 0.5),
        ("a", "c2", 0.0),
        ("b", "c1", 1.0),
        ("b", "c2", None),
    ]
    pooled = an.pass_rates(criteria, jobs, by=())
    assert pooled.select("success", "failure", "unknown").row(0) == (2, 2, 1)
    assert an.pass_rates(criteria, jobs, by=["source"])["source"].to_list() == ["extra"]
    with pytest.raises(ValueError, match="no such column"):
        an.pass_rates(criteria, jobs, by=["matrix.nope"])
    # lazy in, same answer out
    lazy = an.pass_rates(criteria.lazy(), jobs.lazy(), by=["agent_label", "criterion_id"])
    assert lazy.equals(by_agent_crit)


def test_error_rates_and_counts() -> None:
    jobs = make_jobs(
        [
            {"attempts": 3},
            {"status": "error", "error_kind": "server_error", "attempts": 5},
            {"status": "error", "error_kind": "stream_broken", "attempts": 2},
            {"status": "error", "error_kind": "server_error", "attempts": 5},
        ]
    )
    row = an.error_rates(jobs).row(0, named=True)
    assert (row["jobs"], row["ok"], row["errors"], row["retries"]) == (4, 1, 3, 11)
    assert row["error_rate"] == 0.75
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(an.wilson_interval(3, 4))
    assert an.error_counts(jobs).rows() == [("server_error", 2), ("stream_broken", 1)]


# ------------------------------------------------------------------------ repeats


def test_repeat_cases_spell_each_case_in_repeat_order() -> None:
    jobs, criteria = repeated(
        {("x", "s1"): ["success", "failure", None], ("x", "s2"): ["unknown", "success"]}
    )
    cases = an.repeat_cases(criteria, jobs)
    assert cases.select("scenario_id", "agent_label", "sequence", "trials", "flaky").rows() == [
        ("s1", "X", "SFE", 2, True),
        ("s2", "X", "US", 1, False),
    ]


def test_repeat_pass_rates_average_the_per_case_estimates() -> None:
    jobs, criteria = repeated(
        {
            ("x", "s1"): ["success", "failure", "failure"],  # n=3, c=1
            ("x", "s2"): ["success", "success", "success"],  # n=3, c=3
            ("x", "s3"): ["success", "unknown", "unknown"],  # n=1: too short for k=2
        }
    )
    table = an.repeat_pass_rates(criteria, jobs, ks=(1, 2))
    k1, k2 = (
        table.filter(pl.col("k") == 1).row(0, named=True),
        table.filter(pl.col("k") == 2).row(0, named=True),
    )
    assert (k1["cases"], k1["cases_short"]) == (3, 0)
    assert k1["pass_at_k"] == pytest.approx((1 / 3 + 1 + 1) / 3) == k1["pass_hat_k"]
    assert (k2["cases"], k2["cases_short"]) == (2, 1)
    assert k2["pass_at_k"] == pytest.approx((2 / 3 + 1) / 2)
    assert k2["pass_hat_k"] == pytest.approx((0 + 1) / 2)
    with pytest.raises(ValueError):
        an.repeat_pass_rates(criteria, jobs, ks=(0,))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(["success", "failure", "unknown", None]), min_size=1, max_size=6),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 4),
)
def test_frame_estimators_agree_with_the_scalar_ones(cases: list[list[str | None]], k: int) -> None:
    jobs, criteria = repeated({("x", f"s{i}"): results for i, results in enumerate(cases)})
    if criteria.height == 0:
        return
    row = an.repeat_pass_rates(criteria, jobs, ks=(k,)).row(0, named=True)
    counts = [(r.count("success") + r.count("failure"), r.count("success")) for r in cases]
    usable = [(n, c) for n, c in counts if n >= k]
    assert row["cases"] == len(usable)
    if usable:
        assert row["pass_at_k"] == pytest.approx(
            sum(an.pass_at_k(n, c, k) for n, c in usable) / len(usable)
        )
        assert row["pass_hat_k"] == pytest.approx(
            sum(an.pass_hat_k(n, c, k) for n, c in usable) / len(usable)
        )
    else:
        assert row["pass_at_k"] is None
    flaky = sum(1 for r in cases if "success" in r and "failure" in r)
    eligible = sum(1 for n, _ in counts if n >= 2)
    share = an.flakiness(criteria, jobs, by=("criterion_id",))
    if eligible:
        assert share.select("cases", "flaky").row(0) == (eligible, flaky)
    assert an.flaky_cases(criteria, jobs).height == flaky


def test_flakiness_per_criterion_and_per_case() -> None:
    jobs = make_jobs(
        [{"job_key": f"k{r}", "scenario_id": "s1", "repeat": r} for r in range(3)]
        + [{"job_key": f"k{r + 3}", "scenario_id": "s2", "repeat": r} for r in range(3)]
    )
    criteria = make_criteria(
        [
            *[("k0", "c1", "success"), ("k1", "c1", "failure"), ("k2", "c1", "success")],
            *[("k0", "c2", "success"), ("k1", "c2", "success"), ("k2", "c2", "success")],
            *[("k3", "c1", "failure"), ("k4", "c1", "failure"), ("k5", "c1", "failure")],
            *[("k3", "c2", "success"), ("k4", "c2", "unknown"), ("k5", "c2", "unknown")],
        ]
    )
    per_criterion = an.flakiness(criteria, jobs)
    assert per_criterion.select("criterion_id", "cases", "flaky").rows() == [
        ("c1", 2, 1),
        ("c2", 1, 0),  # s2's c2 has a single decided trial: it cannot flip
    ]
    per_case = an.flakiness(criteria, jobs, by=())  # s1 flips on c1; s2 flips on nothing
    assert per_case.select("cases", "flaky", "flaky_share").row(0) == (2, 1, 0.5)
    flaky = an.flaky_cases(criteria, jobs)
    assert flaky.select("scenario_id", "criterion_id", "sequence").rows() == [("s1", "c1", "SFS")]


# ------------------------------------------------------------------------- latency


def make_messages(conversations: dict[str, list[tuple[str, float]]]) -> pl.DataFrame:
    rows = [
        {"job_key": job, "index": i, "role": role, "arrival_secs": t}
        for job, messages in conversations.items()
        for i, (role, t) in enumerate(messages)
    ]
    return pl.DataFrame(
        rows,
        schema={
            "job_key": pl.String,
            "index": pl.Int32,
            "role": pl.String,
            "arrival_secs": pl.Float64,
        },
    )


def test_message_gaps_and_agent_turns_by_hand() -> None:
    messages = make_messages(
        {
            # user, then an agent turn of three messages (tool call, result, answer), user, agent
            "k0": [
                *[("user", 0.1), ("agent", 0.3), ("agent", 0.4), ("agent", 0.5)],
                *[("user", 0.6), ("agent", 0.9)],
            ],
            # the agent opens: that turn has no message before it and is left out
            "k1": [("agent", 0.2), ("user", 0.4), ("agent", 0.7)],
        }
    )
    samples = an.message_latencies(messages).collect().sort("job_key", "metric", "secs")
    gaps = samples.filter(pl.col("metric") == "message_gap")
    turns = samples.filter(pl.col("metric") == "agent_turn")
    assert gaps.filter(pl.col("job_key") == "k0")["secs"].to_list() == pytest.approx(
        [0.1, 0.1, 0.1, 0.2, 0.3]
    )
    assert turns.filter(pl.col("job_key") == "k0")["secs"].to_list() == pytest.approx([0.3, 0.4])
    assert turns.filter(pl.col("job_key") == "k1")["secs"].to_list() == pytest.approx([0.3])


def test_latency_percentiles_by_group_interpolate_linearly() -> None:
    jobs = make_jobs(
        [{"agent_label": "a", "time_to_first_frame_secs": float(v)} for v in (1, 2, 3, 4)]
        + [{"agent_label": "b", "time_to_first_frame_secs": 10.0}]
        + [{"agent_label": "b", "status": "error", "time_to_first_frame_secs": 99.0}]
    )
    table = an.latency_percentiles(
        jobs, ["time_to_first_frame_secs", "total_secs"], (0.5, 0.9), by=["agent_label"]
    )
    assert table.columns == ["agent_label", "metric", "n", "p50", "p90"]
    rows = {(r[0], r[1]): r[2:] for r in table.rows()}
    assert rows[("a", "time_to_first_frame")] == pytest.approx((4, 2.5, 3.7))
    assert rows[("b", "time_to_first_frame")] == pytest.approx((1, 10.0, 10.0))  # errors left out
    assert rows[("a", "total")] == (0, None, None)
    # ungrouped, with message metrics appended in a fixed order
    messages = make_messages({"j0": [("user", 0.0), ("agent", 0.5)]})
    plain = an.latency_percentiles(jobs, messages=messages)
    assert plain["metric"].to_list() == [
        *(c.removesuffix("_secs") for c in an.LATENCY_COLUMNS),
        "message_gap",
        "agent_turn",
    ]
    assert plain.filter(pl.col("metric") == "agent_turn")["p50"].to_list() == [0.5]


# ----------------------------------------------------------------------- over time


def make_attempts(rows: list[tuple[float, float, str, int]]) -> pl.DataFrame:
    """(start offset, duration, status, attempt number) rows, concurrency limit 4."""
    return pl.DataFrame(
        [
            {
                "job_key": f"k{i}",
                "attempt": attempt,
                "started_at": T0 + timedelta(seconds=start),
                "status": status,
                "error_kind": None if status == "ok" else "server_error",
                "duration_secs": duration,
                "concurrency_limit": 4,
            }
            for i, (start, duration, status, attempt) in enumerate(rows)
        ],
        schema={
            "job_key": pl.String,
            "attempt": pl.Int32,
            "started_at": pl.Datetime("us", "UTC"),
            "status": pl.String,
            "error_kind": pl.String,
            "duration_secs": pl.Float64,
            "concurrency_limit": pl.Int32,
        },
    )


def test_in_flight_is_a_step_function_of_starts_and_ends() -> None:
    attempts = make_attempts([(0, 2, "ok", 1), (1, 2, "ok", 1), (2, 1, "error", 1)])
    steps = an.in_flight_over_time(attempts)
    # at t=2 one attempt ends as another starts: ends count first, so it stays at 2
    assert steps.rows() == [(0.0, 1, 4), (1.0, 2, 4), (2.0, 2, 4), (3.0, 0, 4)]


def test_attempts_over_time_buckets_every_attempt() -> None:
    attempts = make_attempts(
        [(0, 1, "ok", 1), (0.5, 1, "error", 1), (5, 1, "ok", 2), (9.9, 1, "error", 3)]
    )
    buckets = an.attempts_over_time(attempts, buckets=2)
    assert buckets["attempts"].sum() == 4 and buckets["retries"].sum() == 2
    assert buckets.select("t_secs", "outcome", "attempts").rows() == [
        (0.0, "ok", 1),
        (0.0, "server_error", 1),
        (pytest.approx(4.95), "ok", 1),
        (pytest.approx(4.95), "server_error", 1),
    ]
    assert an.attempts_over_time(attempts.clear()).height == 0
    assert an.in_flight_over_time(attempts.clear()).height == 0


# ------------------------------------------------------------------------ comparing


def _rates(groups: dict[str, tuple[int, int]]) -> pl.DataFrame:
    """A pass_rates-shaped frame from {criterion: (success, failure)}."""
    rows = [
        {"criterion_id": c, "success": s, "failure": f, "unknown": 0, "errors": 0}
        for c, (s, f) in groups.items()
    ]
    counts = dict.fromkeys(("success", "failure", "unknown", "errors"), pl.UInt32)
    return pl.DataFrame(rows, schema={"criterion_id": pl.String, **counts})


def test_compare_flags_regressions_improvements_and_missing_data() -> None:
    a = _rates({"worse": (90, 10), "better": (50, 50), "same": (70, 30), "gone": (5, 5)})
    b = _rates({"worse": (50, 50), "better": (90, 10), "same": (72, 28), "new": (3, 1)})
    table = an.compare_pass_rates(a, b)
    verdicts = dict(table.select("criterion_id", "verdict").rows())
    assert verdicts == {
        "better": "improvement",
        "gone": "insufficient data",
        "new": "insufficient data",
        "same": "no significant change",
        "worse": "regression",
    }
    worse = table.filter(pl.col("criterion_id") == "worse").row(0, named=True)
    assert worse["diff"] == pytest.approx(-0.4)
    assert (worse["diff_low"], worse["diff_high"]) == pytest.approx(
        an.newcombe_interval(90, 100, 50, 100)
    )
    assert worse["p_value"] < 0.001
    assert table.filter(pl.col("criterion_id") == "new")["a_n"].to_list() == [0]


def test_compare_runs_of_a_run_with_itself_changes_nothing() -> None:
    jobs, criteria = repeated({("x", "s1"): ["success", "failure", "success", None]})
    table = an.compare_runs(criteria, jobs, criteria, jobs, by=("scenario_id", "criterion_id"))
    assert table["diff"].to_list() == [0.0]
    assert table["verdict"].to_list() == ["no significant change"]


# ------------------------------------------------------------ one core, summable counts


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40), st.integers(0, 40), st.integers(0, 40), st.integers(0, 40))
def test_frame_intervals_are_the_scalar_formulas(sa: int, na: int, sb: int, nb: int) -> None:
    sa, sb = min(sa, na), min(sb, nb)
    frame = pl.DataFrame(
        {"a_success": [sa], "a_failure": [na - sa], "b_success": [sb], "b_failure": [nb - sb]}
    )
    row = an.judged_difference(frame.lazy()).collect().row(0, named=True)
    if na and nb:
        low, high = an.newcombe_interval(sa, na, sb, nb)
        assert (row["diff_low"], row["diff_high"]) == pytest.approx((low, high), abs=1e-12)
        verdict = (
            "regression" if high < 0 else "improvement" if low > 0 else "no significant change"
        )
        assert row["verdict"] == verdict
    else:
        assert row["verdict"] == "insufficient data" and row["diff_low"] is None
    rates = an.rates_from(
        pl.DataFrame(
            {"criterion_id": ["c"], "success": [sa], "failure": [na - sa], "unknown": [0]},
            schema_overrides={c: pl.UInt32 for c in ("success", "failure", "unknown")},
        ),
        None,
    ).row(0, named=True)
    assert (rates["ci_low"], rates["ci_high"]) == pytest.approx(
        an.wilson_interval(sa, na), abs=1e-12
    )


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.sampled_from(["success", "failure", "unknown", None]), min_size=1, max_size=30),
    st.lists(st.integers(1, 29), max_size=4),
)
def test_counts_summed_part_by_part_give_the_whole_runs_figures(
    results: list[str | None], cuts: list[int]
) -> None:
    cases = {("x", f"s{i % 3}"): [] for i in range(3)}
    for i, r in enumerate(results):
        cases[("x" if i % 2 else "y", f"s{i % 3}")] = [
            *cases.get(("x" if i % 2 else "y", f"s{i % 3}"), []),
            r,
        ]
    jobs, criteria = repeated({k: v for k, v in cases.items() if v})
    bounds = sorted({0, jobs.height, *(c for c in cuts if c < jobs.height)})
    judged, errored = [], []
    for lo, hi in itertools.pairwise(bounds):
        part = jobs.slice(lo, hi - lo)
        crit = criteria.join(part.select("job_key"), on="job_key", how="semi")
        judged.append(an.judged_counts(crit, part))
        errored.append(an.errored_counts(part))
    summed_j, summed_e = an.combine_counts(judged), an.combine_counts(errored)
    for by in (["criterion_id"], ["agent_label"], ["agent_label", "scenario_id", "criterion_id"]):
        assert an.rates_from(summed_j, summed_e, by).equals(an.pass_rates(criteria, jobs, by))
    whole = an.trials_of(criteria, jobs)
    assert an.case_trials(summed_j, summed_e).equals(whole)


def test_case_counts_for_per_case_rules() -> None:
    jobs, criteria = repeated(
        {("x", "s1"): ["success", "failure", "unknown", None], ("x", "s2"): ["success"]}
    )
    counts = an.case_counts(an.judged_counts(criteria, jobs), an.errored_counts(jobs))
    assert counts.select("scenario_id", "passes", "failures", "unknowns", "errors", "n").rows() == [
        ("s1", 1, 1, 1, 1, 4),
        ("s2", 1, 0, 0, 0, 1),
    ]


def test_compare_cases_judges_each_case_and_keeps_raw_drops_apart() -> None:
    a_jobs, a_crit = repeated(
        {
            ("x", "s1"): ["success"] * 3,
            ("x", "s2"): ["success"] * 3,
            ("x", "s3"): ["success"] * 10,
            ("x", "s4"): ["unknown"] * 2,
            ("x", "gone"): ["success"],
        }
    )
    b_jobs, b_crit = repeated(
        {
            ("x", "s1"): ["success", "success", "failure"],  # 3/3 -> 2/3: within the noise
            ("x", "s2"): ["failure"] * 3,  # 3/3 -> 0/3
            ("x", "s3"): ["failure"] * 10,  # 10/10 -> 0/10
            ("x", "s4"): ["unknown"] * 2,  # nothing decided on either side
            ("x", "new"): ["failure"],
        }
    )

    table = an.compare_cases(an.trials_of(a_crit, a_jobs), an.trials_of(b_crit, b_jobs))
    rows = {r["scenario_id"]: r for r in table.iter_rows(named=True)}
    for scenario, (sa, na, sb, nb) in {"s1": (3, 3, 2, 3), "s2": (3, 3, 0, 3)}.items():
        low, high = an.newcombe_interval(sa, na, sb, nb)  # independent: the scalar formula
        assert (rows[scenario]["diff_low"], rows[scenario]["diff_high"]) == pytest.approx(
            (low, high)
        )
    assert (rows["s1"]["verdict"], rows["s1"]["kind"]) == ("no significant change", "lower")
    assert (rows["s2"]["verdict"], rows["s2"]["kind"]) == ("regression", "regression")
    assert (rows["s3"]["verdict"], rows["s3"]["kind"]) == ("regression", "regression")
    assert (rows["s4"]["verdict"], rows["s4"]["kind"]) == ("insufficient data", "unchanged")
    assert (rows["gone"]["kind"], rows["new"]["kind"]) == ("only in A", "only in B")
    assert table["kind"].to_list() == [
        "regression",
        "regression",
        "lower",
        "only in A",
        "only in B",
        "unchanged",
    ]


def test_latency_percentiles_are_type_7_quantiles_and_bins_floor() -> None:
    import statistics

    values = [0.05 * ((i * 37) % 101) for i in range(101)]
    jobs = make_jobs([{"total_secs": v} for v in values])
    row = an.latency_percentiles(jobs, ["total_secs"]).row(0, named=True)
    cuts = statistics.quantiles(values, n=100, method="inclusive")  # Hyndman-Fan type 7
    for q in (50, 90, 95, 99):
        assert row[f"p{q}"] == pytest.approx(cuts[q - 1])
    counts, high = an.histogram_bins(values, 10)
    assert high == max(values)
    assert counts == [
        sum(1 for v in values if min(9, int(v * (10 / high))) == b) for b in range(10)
    ]
