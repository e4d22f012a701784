"""Is the candidate worse than the baseline by more than the margin? An anytime-valid paired
test (issue 26). Pure.

A *pair* is one case (scenario x matrix cell x repeat index) run once with the baseline and
once with the candidate. Its difference is

    D = [candidate passed] - [baseline passed]  in {-1, 0, 1},

where a job *passes* when every criterion the comparison is ``of`` succeeded. ``unknown`` (the
judge could not tell) and ``error`` (no analysis) never count as a pass: an unknown is a
non-pass; an error is a non-pass by default (``error_as="fail"``: a variant that errors more is
worse) or drops the pair (``error_as="skip"``: the pair still uses up ``max_pairs``).

mu = E[D] is the difference in pass rates, candidate minus baseline, over the cases the pairs
are drawn from. ``margin`` delta >= 0 is the user's statement of what difference matters; the
rule runs two one-sided tests against the same boundary -delta, each at level ``alpha``:

- **not worse** (non-inferiority): H0 mu <= -delta rejected. Wrong only when the candidate's
  pass rate is lower by at least the margin: at mu <= -delta, P(wrong "not worse") <= alpha.
- **worse** (worse by more than the margin): H0 mu >= -delta rejected. Wrong only when the
  candidate is in truth within the margin or better: at mu >= -delta, P(wrong "worse") <= alpha.

Why "worse" is tested against -delta and not against 0: a variant compared with itself (mu = 0)
sits exactly on the null mu >= 0, so that test calls it "worse" in up to alpha of comparisons,
and ``check --compare`` would fail a no-op change in CI now and then. Against -delta each
decision has one meaning relative to the margin, and at mu = 0 a "worse" needs the confidence
sequence to miss the truth by the whole margin. The price: near mu = -delta neither test rejects
quickly (undecided, up to ``max_pairs``), and a clearly worse candidate needs upper < -delta
rather than < 0 (somewhat more pairs). The first test to reject decides (both at once, which
needs an empty confidence sequence: "worse", the conservative reading); ``max_pairs`` without a
rejection, or as soon as neither test can reject within the pairs left (``reachable``: every
pair left a win for one, a loss for the other), is undecided.

Each test is a betting e-process for a bounded mean (Waudby-Smith and Ramdas 2023, JRSS-B
86(1), "Estimating means of bounded random variables by betting"; Shafer and Vovk 2019). For
H0 mu <= m, D in [-1, 1]:

    K+_n(m) = sum_k w_k prod_{i <= n} (1 + u_k (D_i - m) / (1 + m)),     u_k in [0, 1)

and for H0 mu >= m, ``K-_n(m)``, the same with (m - D_i) / (1 - m). Each product is a
nonnegative supermartingale with K_0 = 1 under its null: E[1 + u (D - m)/(1 + m) | past] =
1 + u (mu - m)/(1 + m) <= 1 whenever E[D_i | past] <= m, and the factor is >= 1 - u > 0. A
fixed mixture (weights w_k summing to 1, the prior over bets) of such products is one too
(Howard, Ramdas, McAuliffe and Sekhon 2021, Ann. Statist. 49(2): the method of mixtures), so
Ville's inequality (Ville 1939) gives P(exists n: K_n >= 1/alpha) <= alpha. That is what makes
the rule valid under optional stopping (stop at any pair, for any reason), resume (the state is
a pure function of the pair outcomes so far, in order: nothing else is kept) and extension
(``max_pairs`` raised later: the same martingale continues, the prior does not depend on it).

A fixed mixture makes K_n a function of the counts (wins, ties, losses) only: log K+_n(m) =
logsumexp_k (log w_k + wins log(1 + u_k a) + ties log(1 + u_k b) + losses log(1 + u_k c))
with a, b, c the scaled deviations of D = 1, 0, -1.

The confidence sequence for mu is {m : K+_n(m) < 1/alpha and K-_n(m) < 1/alpha}: each factor
of K+ is non-increasing in m (d/dm (D - m)/(1 + m) = -(1 + D)/(1 + m)^2 <= 0) and each of K-
non-decreasing, so the set is an interval [lower, upper] found by bisection; it holds mu at
every n at once with probability >= 1 - 2 alpha, and "not worse" is exactly lower > -delta,
"worse" upper < -delta.

What the guarantee needs: E[D_i | the pairs before] equal to mu (or on the null's side). That
holds when the case of each pair is drawn at random from the cases, independently of the
outcomes (the planner's job), and the two members of a pair are judged alike. It is *not* a
per-scenario statement: per-scenario differences are reported beside it, unadjusted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from statistics import NormalDist
from typing import Literal

Outcome = Literal["pass", "fail", "unknown", "error"]
Verdict = Literal["not worse", "worse", "undecided"]
As = Literal["fail", "skip"]
OUTCOMES: tuple[Outcome, ...] = ("pass", "fail", "unknown", "error")


# ------------------------------------------------------------------------------ outcomes


def difference(baseline: Outcome, candidate: Outcome, error_as: As = "fail") -> int | None:
    """D of one pair: 1 (only the candidate passed), -1 (only the baseline), 0 (both or
    neither); None when an error drops the pair (``error_as="skip"``). Unknowns and errors
    are never passes."""
    for name, outcome in (("baseline", baseline), ("candidate", candidate)):
        if outcome not in OUTCOMES:
            raise ValueError(f"{name}: outcome must be one of {', '.join(OUTCOMES)} ({outcome!r})")
    if error_as == "skip" and "error" in (baseline, candidate):
        return None
    return int(candidate == "pass") - int(baseline == "pass")


def job_outcome(
    status: str, criteria: Iterable[tuple[str, str]], of: str | Sequence[str] = "all"
) -> Outcome | None:
    """One job's outcome from plain data (a planner's ``Finished``: its status and
    (criterion id, result) pairs): ``error`` when it errored; else ``fail`` when a criterion of
    ``of`` failed; else ``unknown`` when one could not be judged or was not reported (an ok job
    with no criteria at all is unknown); else ``pass``. None for a ``cancelled`` job (no
    outcome). ``runner.paired_runs.job_outcomes`` is the same over the tables."""
    if status == "cancelled":
        return None
    if status != "ok":
        return "error"
    wanted = None if of == "all" else set(of)
    results = {cid: r for cid, r in criteria if wanted is None or cid in wanted}
    if "failure" in results.values():
        return "fail"
    judged = len(results) >= (1 if wanted is None else len(wanted))
    if "unknown" in results.values() or not judged:
        return "unknown"
    return "pass"


@dataclass(frozen=True)
class Counts:
    """Pairs seen; of those tested, the candidate's ``wins`` (D = 1), ``ties`` (D = 0) and
    ``losses`` (D = -1); ``skipped``: pairs dropped by ``error_as="skip"``."""

    wins: int = 0
    ties: int = 0
    losses: int = 0
    skipped: int = 0

    @property
    def tested(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def pairs(self) -> int:
        return self.tested + self.skipped

    @property
    def mean(self) -> float | None:
        """The observed difference in pass rates (candidate minus baseline)."""
        return (self.wins - self.losses) / self.tested if self.tested else None

    def add(self, d: int | None) -> Counts:
        if d is None:
            return Counts(self.wins, self.ties, self.losses, self.skipped + 1)
        if d == 1:
            return Counts(self.wins + 1, self.ties, self.losses, self.skipped)
        if d == 0:
            return Counts(self.wins, self.ties + 1, self.losses, self.skipped)
        if d == -1:
            return Counts(self.wins, self.ties, self.losses + 1, self.skipped)
        raise ValueError(f"difference: must be -1, 0 or 1 (got {d!r})")


def count(diffs: Iterable[int | None]) -> Counts:
    out = Counts()
    for d in diffs:
        out = out.add(d)
    return out


# ---------------------------------------------------------------------- the e-processes


@dataclass(frozen=True)
class BetPrior:
    """The mixing distribution over the bet fraction u in [0, 1): ``size`` points spaced
    evenly in log u on [``low``, ``high``], weights proportional to u^``tilt``. ``tilt`` 0 is
    log-uniform; positive tilts lean to bold bets (large differences, decided fast), negative to
    small ones. Fixed before the first pair, so any choice keeps the guarantee."""

    low: float = 0.05
    high: float = 0.9
    size: int = 24
    tilt: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.low <= self.high < 1 or self.size < 1:
            raise ValueError(f"prior: need 0 < low <= high < 1 and size >= 1 (got {self})")

    @property
    def points(self) -> tuple[tuple[float, float], ...]:
        """(u_k, log w_k), weights normalised."""
        return _points(self)


@lru_cache(maxsize=64)
def _points(prior: BetPrior) -> tuple[tuple[float, float], ...]:
    n = prior.size
    if n == 1:
        return ((prior.high, 0.0),)
    step = math.log(prior.high / prior.low) / (n - 1)
    us = [prior.low * math.exp(step * k) for k in range(n)]
    raw = [prior.tilt * math.log(u) for u in us]
    top = max(raw)
    norm = top + math.log(sum(math.exp(r - top) for r in raw))
    return tuple((u, r - norm) for u, r in zip(us, raw, strict=True))


DEFAULT_PRIOR = BetPrior()


@lru_cache(maxsize=4096)
def _logs(
    prior: BetPrior, m: float, side: Literal["above", "below"]
) -> tuple[tuple[float, ...], ...]:
    """Per prior point: (log w, log factor at D = 1, at D = 0, at D = -1)."""
    rows = []
    for u, logw in prior.points:
        if side == "above":  # H0 mu <= m: bet on D above m
            factor = [1 + u * (d - m) / (1 + m) for d in (1, 0, -1)]
        else:  # H0 mu >= m: bet on D below m
            factor = [1 + u * (m - d) / (1 - m) for d in (1, 0, -1)]
        rows.append((logw, *(math.log(f) for f in factor)))
    return tuple(rows)


def log_wealth(
    counts: Counts, m: float, side: Literal["above", "below"], prior: BetPrior = DEFAULT_PRIOR
) -> float:
    """log K+_n(m) (``above``: evidence that mu > m) or log K-_n(m) (``below``: mu < m).

    m must be in (-1, 1): the factors' scale 1 / (1 +- m) keeps every factor >= 1 - u > 0."""
    if not -1 < m < 1:
        raise ValueError(f"m: must be in (-1, 1) (got {m})")
    terms = [
        lw + counts.wins * a + counts.ties * b + counts.losses * c
        for lw, a, b, c in _logs(prior, m, side)
    ]
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms))


def confidence_bounds(
    counts: Counts, alpha: float, prior: BetPrior = DEFAULT_PRIOR, tol: float = 1e-4
) -> tuple[float, float]:
    """[lower, upper] of the confidence sequence for mu at these counts (each side at level
    ``alpha``; jointly 1 - 2 alpha): the m that neither K+ nor K- rejects, by bisection on
    their monotonicity in m."""
    level = math.log(1 / alpha)
    edge = 1 - 1e-9
    if log_wealth(counts, -edge, "above", prior) < level:
        lower = -1.0
    else:
        lo, hi = -edge, edge  # rejected at lo
        if log_wealth(counts, hi, "above", prior) >= level:
            lo = hi
        while hi - lo > tol:
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if log_wealth(counts, mid, "above", prior) >= level else (lo, mid)
        lower = lo
    if log_wealth(counts, edge, "below", prior) < level:
        upper = 1.0
    else:
        lo, hi = -edge, edge  # rejected at hi
        if log_wealth(counts, lo, "below", prior) >= level:
            hi = lo
        while hi - lo > tol:
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if log_wealth(counts, mid, "below", prior) >= level else (mid, hi)
        upper = hi
    return lower, upper


# ---------------------------------------------------------------------------------- rule


@dataclass(frozen=True)
class Decision:
    """Where a comparison stands. ``stop``: dispatch no more pairs. ``decided_at``: the pair
    (1-based, in order) at which the deciding test first rejected (None: undecided);
    ``counts`` covers every pair given, pairs that finished after the decision included.
    ``log_e_not_worse`` / ``log_e_worse``: log K+_n(-margin) and log K-_n(-margin) now."""

    verdict: Verdict
    stop: bool
    reason: str
    counts: Counts
    lower: float
    upper: float
    decided_at: int | None
    log_e_not_worse: float
    log_e_worse: float


def check_parameters(margin: float, alpha: float, max_pairs: int) -> None:
    """One line naming the bad field (the config model and the rule share it)."""
    if not 0 <= margin < 1:
        raise ValueError(f"margin: must be at least 0 and below 1 (got {margin})")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: must be between 0 and 1, exclusive (got {alpha})")
    if max_pairs < 1:
        raise ValueError(f"max_pairs: must be at least 1 (got {max_pairs})")


@dataclass(frozen=True)
class NonInferiority:
    """The paired comparison rule: "not worse" (mu > -margin) or "worse" (mu < -margin: worse
    by more than the margin), each wrong with probability at most ``alpha`` whatever the
    stopping (module docstring)."""

    margin: float = 0.05
    alpha: float = 0.05
    max_pairs: int = 400
    error_as: As = "fail"
    prior: BetPrior = DEFAULT_PRIOR
    name: str = field(default="paired", init=False)

    def __post_init__(self) -> None:
        check_parameters(self.margin, self.alpha, self.max_pairs)
        if self.error_as not in ("fail", "skip"):
            raise ValueError(f"error_as: must be fail or skip (got {self.error_as!r})")

    @property
    def level(self) -> float:
        return math.log(1 / self.alpha)

    def e_values(self, counts: Counts) -> tuple[float, float]:
        """(log K+_n(-margin), log K-_n(-margin)): the two tests' log wealth, both against
        the margin's boundary."""
        return (
            log_wealth(counts, -self.margin, "above", self.prior),
            log_wealth(counts, -self.margin, "below", self.prior),
        )

    def state(self, counts: Counts) -> Verdict | None:
        """The decision these counts reject for (ties to "worse"), or None."""
        not_worse, worse = self.e_values(counts)
        if worse >= self.level:
            return "worse"
        if not_worse >= self.level:
            return "not worse"
        return None

    def reachable(self, counts: Counts) -> bool:
        """Could either test still reject within ``max_pairs``? K+ grows most when every pair
        left is a win (a win's factor is the largest), K- when every one is a loss."""
        left = self.max_pairs - counts.pairs
        if left <= 0:
            return False
        best_up = Counts(counts.wins + left, counts.ties, counts.losses)
        best_down = Counts(counts.wins, counts.ties, counts.losses + left)
        return (
            log_wealth(best_up, -self.margin, "above", self.prior) >= self.level
            or log_wealth(best_down, -self.margin, "below", self.prior) >= self.level
        )

    def decide(self, diffs: Sequence[int | None]) -> Decision:
        """The comparison after these pair differences, in the order they finished. The
        decision is the first rejection along the sequence: stopping there is what the planner
        does, and pairs in flight that finish later are counted but cannot undo it."""
        counts = Counts()
        decided: Verdict | None = None
        decided_at = None
        for i, d in enumerate(diffs, 1):
            counts = counts.add(d)
            if decided is None and d is not None:
                decided = self.state(counts)
                decided_at = i if decided else None
        lower, upper = confidence_bounds(counts, self.alpha, self.prior)
        log_nw, log_w = self.e_values(counts)
        done = f"after {decided_at} of {self.max_pairs} pairs"
        if decided == "worse":
            reason = f"candidate worse by more than {self.margin:g} {done}"
            return Decision("worse", True, reason, counts, lower, upper, decided_at, log_nw, log_w)
        if decided == "not worse":
            reason = f"candidate not worse by more than {self.margin:g} {done}"
            return Decision(
                "not worse", True, reason, counts, lower, upper, decided_at, log_nw, log_w
            )
        if counts.pairs >= self.max_pairs:
            reason = f"undecided: max_pairs {self.max_pairs} reached"
            return Decision("undecided", True, reason, counts, lower, upper, None, log_nw, log_w)
        if not self.reachable(counts):
            left = self.max_pairs - counts.pairs
            reason = (
                f"undecided: no decision reachable in the {left} pairs left of {self.max_pairs}"
            )
            return Decision("undecided", True, reason, counts, lower, upper, None, log_nw, log_w)
        reason = "undecided, more pairs needed"
        return Decision("undecided", False, reason, counts, lower, upper, None, log_nw, log_w)

    def decide_outcomes(self, pairs: Sequence[tuple[Outcome, Outcome]]) -> Decision:
        """``decide`` over (baseline outcome, candidate outcome) pairs."""
        return self.decide([difference(b, c, self.error_as) for b, c in pairs])

    def params(self) -> dict[str, float | int | str]:
        return {
            "rule": self.name,
            "margin": self.margin,
            "alpha": self.alpha,
            "max_pairs": self.max_pairs,
            "error_as": self.error_as,
            "unknown_as": "fail",
            "prior": (
                f"{self.prior.size} bets log-spaced on [{self.prior.low:g}, {self.prior.high:g}]"
                f", weight u^{self.prior.tilt:g}"
            ),
        }


# --------------------------------------------------------------------- fixed designs


def fixed_paired_pairs(
    p_win: float, p_loss: float, null: float, alpha: float, power: float = 0.9
) -> int:
    """Pairs a fixed-size one-sided paired test needs for ``power`` at the true difference
    mu1 = p_win - p_loss against H0 at ``null`` (mu <= null when mu1 > null, else >= null).

    The normal approximation for McNemar-type designs with the discordance psi = p_win +
    p_loss held fixed (Connor 1987, Biometrics 43(1), for null 0; the same form with a
    margin, cf. Nam 1997, Biometrics 53(4)):

        n = ((z_{1-alpha} sqrt(psi - null^2) + z_power sqrt(psi - mu1^2)) / (mu1 - null))^2
    """
    psi, mu1 = p_win + p_loss, p_win - p_loss
    if mu1 == null or psi <= max(null * null, mu1 * mu1):
        raise ValueError("fixed design: the difference must differ from the null, psi > mu^2")
    z = NormalDist().inv_cdf
    root = z(1 - alpha) * math.sqrt(psi - null * null) + z(power) * math.sqrt(psi - mu1 * mu1)
    return math.ceil((root / (mu1 - null)) ** 2)


def fixed_unpaired_per_arm(
    p_baseline: float, p_candidate: float, null: float, alpha: float, power: float = 0.9
) -> int:
    """Jobs per arm a fixed-size one-sided two-proportion test needs (unpaired samples), by
    the Wald normal approximation: n = (z_{1-alpha} + z_power)^2 (p_b q_b + p_c q_c) /
    (p_c - p_b - null)^2 (e.g. Chow, Shao and Wang 2008, Sample Size Calculations in
    Clinical Research, 4.2)."""
    effect = p_candidate - p_baseline - null
    if effect == 0:
        raise ValueError("fixed design: the difference must differ from the null")
    z = NormalDist().inv_cdf
    var = p_baseline * (1 - p_baseline) + p_candidate * (1 - p_candidate)
    return math.ceil((z(1 - alpha) + z(power)) ** 2 * var / effect**2)


# ------------------------------------------------------------------------- the sequence


@dataclass(frozen=True)
class PathPoint:
    """The comparison after its first ``n`` pairs: the observed difference (None before a
    tested pair) and the confidence sequence's bounds there."""

    n: int
    mean: float | None
    lower: float
    upper: float


def confidence_path(
    diffs: Sequence[int | None],
    alpha: float,
    prior: BetPrior = DEFAULT_PRIOR,
    points: int = 60,
    at: Iterable[int] = (),
) -> list[PathPoint]:
    """The confidence sequence along the pairs, for a chart: ``confidence_bounds`` after the
    first n pairs at about ``points`` evenly spaced n (always the last, and each n of ``at``,
    such as the pair that decided). Every bound is the one the rule saw at that n: the
    sequence holds mu at all of them at once with probability >= 1 - 2 alpha."""
    total = len(diffs)
    if total == 0:
        return []
    step = max(1, math.ceil(total / max(points, 1)))
    wanted = sorted({*range(step, total + 1, step), total, *(n for n in at if 1 <= n <= total)})
    out = []
    counts, seen = Counts(), 0
    for n in wanted:
        for d in diffs[seen:n]:
            counts = counts.add(d)
        seen = n
        lower, upper = confidence_bounds(counts, alpha, prior)
        out.append(PathPoint(n, counts.mean, lower, upper))
    return out
