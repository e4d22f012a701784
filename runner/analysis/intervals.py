"""Intervals and estimators: the scalar formulas, and the same formulas as Polars expressions
for whole frames of counts.

- Wilson score interval for one proportion: Wilson (1927), JASA 22; Newcombe (1998),
  Statistics in Medicine 17, "Two-sided confidence intervals for the single proportion".
- Newcombe's hybrid score interval for a difference (his method 10): Newcombe (1998),
  Statistics in Medicine 17, "Interval estimation for the difference between independent
  proportions".
- pass@k: Chen et al. (2021), "Evaluating Large Language Models Trained on Code"; pass^k:
  Yao et al. (2024), "tau-bench".
"""

from __future__ import annotations

import math

import polars as pl

Z95 = 1.959964
"""Two-sided 95% standard normal quantile."""


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


def wilson_bounds(successes: pl.Expr, n: pl.Expr, z: float = Z95) -> tuple[pl.Expr, pl.Expr]:
    """``wilson_interval`` as two expressions (null where ``n`` is 0)."""
    s, t = successes.cast(pl.Float64), n.cast(pl.Float64)
    p = s / t
    denom = 1 + z * z / t
    centre = (p + z * z / (2 * t)) / denom
    half = z * ((p * (1 - p) / t + z * z / (4 * t * t)).sqrt()) / denom
    valid = n > 0
    return (
        pl.when(valid).then((centre - half).clip(0.0, 1.0)),
        pl.when(valid).then((centre + half).clip(0.0, 1.0)),
    )


def wilson_columns(successes: str, n: str, z: float = Z95) -> list[pl.Expr]:
    """``pass_rate``, ``ci_low``, ``ci_high`` as expressions (the same formula as above;
    an empty sample's interval is (0, 1))."""
    s, t = pl.col(successes), pl.col(n)
    low, high = wilson_bounds(s, t, z)
    return [
        pl.when(t > 0).then(s.cast(pl.Float64) / t.cast(pl.Float64)).alias("pass_rate"),
        low.fill_null(0.0).alias("ci_low"),
        high.fill_null(1.0).alias("ci_high"),
    ]


def newcombe_bounds(
    successes_a: pl.Expr, n_a: pl.Expr, successes_b: pl.Expr, n_b: pl.Expr, z: float = Z95
) -> tuple[pl.Expr, pl.Expr]:
    """``newcombe_interval`` (of ``p_b - p_a``) as two expressions, null where a side has no
    outcome."""
    pa = successes_a.cast(pl.Float64) / n_a.cast(pl.Float64)
    pb = successes_b.cast(pl.Float64) / n_b.cast(pl.Float64)
    la, ua = wilson_bounds(successes_a, n_a, z)
    lb, ub = wilson_bounds(successes_b, n_b, z)
    d = pb - pa
    low = d - ((pb - lb) ** 2 + (ua - pa) ** 2).sqrt()
    high = d + ((ub - pb) ** 2 + (pa - la) ** 2).sqrt()
    valid = (n_a > 0) & (n_b > 0)
    return (
        pl.when(valid).then(low.clip(lower_bound=-1.0)),
        pl.when(valid).then(high.clip(upper_bound=1.0)),
    )
