"""Sequential verdicts: when a case's repeats have said enough (issue 25). Pure, no I/O.

A *case* (agent x scenario x matrix cell) is repeated; each repeat gives one outcome:

- ``pass``: every criterion the verdict is ``of`` succeeded;
- ``fail``: at least one of them failed;
- ``unknown``: none failed but at least one could not be judged;
- ``error``: the job errored (no analysis at all).

The verdict asks whether the case's pass rate ``p`` (the chance that a repeat passes) is above
``pass_rate``. ``unknown`` and ``error`` never count as passes: by default (``Treatment``) an
unknown is a non-pass trial (the repeat did not show the case passing) and an error is no trial
(the analysis conventions of ``runner.analysis``: errors are not outcomes), but both still count
as repeats run (they were paid for), so they use up ``max``.

Three rules, each a pure function of the outcomes so far, decide after every outcome whether to
stop (``Decision``):

- ``Anytime``: two one-sided mixture test martingales (Robbins 1970; Howard, Ramdas, McAuliffe
  and Sekhon 2021, Ann. Statist. 49(2); Waudby-Smith and Ramdas 2023, JRSS-B 86(1)), each at
  level ``alpha``, valid at every n (Ville's inequality), so stopping, resuming and extending
  ``max`` keep the error rate.
- ``Sprt``: Wald's (1945, Ann. Math. Statist. 16(2)) sequential probability ratio test of
  ``pass_rate_low`` against ``pass_rate``, truncated at ``max``.
- ``Curtail``: the fixed rule "at least m of K repeats pass", stopped as soon as the remaining
  repeats cannot change its verdict (curtailed sampling; e.g. Eisenberg and Ghosh 1980).

``fixed_wilson`` is the fixed-n baseline judged once at the end by the Wilson interval.

(Over 600 lines because each rule's derivation and references are written out beside its code,
as the three share the ``Decision`` and outcome conventions; about two thirds is code.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal, Protocol

from runner.analysis import Z95, wilson_interval

Outcome = Literal["pass", "fail", "unknown", "error"]
Verdict = Literal["pass", "fail", "undecided"]
As = Literal["fail", "skip"]
RULES = ("anytime", "sprt", "curtail")
OUTCOMES: tuple[Outcome, ...] = ("pass", "fail", "unknown", "error")


# ------------------------------------------------------------------------------ outcomes


@dataclass(frozen=True)
class Treatment:
    """How the outcomes that are not passes enter a test: ``fail`` (a non-pass trial) or
    ``skip`` (no trial; the repeat still counts towards ``max``). Neither is ever a pass.

    Skipping keeps the tests valid when whether a repeat is unknown or errored does not depend
    on whether it would have passed (the kept trials are then still i.i.d. Bernoulli(p))."""

    unknown_as: As = "fail"
    error_as: As = "skip"


def outcome_of(status: str, results: Iterable[str]) -> Outcome | None:
    """A repeat's outcome from its job's ``status`` and the ``result`` of each criterion the
    verdict is ``of`` (``success`` / ``failure`` / ``unknown``): ``error`` for an errored job,
    None for a cancelled one (no repeat), ``fail`` when one failed, ``pass`` when all
    succeeded, else ``unknown`` (also when none was judged). ``runner.replay`` does the same
    over frames; the planner calls this per finished job."""
    if status == "error":
        return "error"
    if status == "cancelled":
        return None
    seen = list(results)
    if "failure" in seen:
        return "fail"
    if seen and all(r == "success" for r in seen):
        return "pass"
    return "unknown"


@dataclass(frozen=True)
class Tally:
    """Counts of one case's outcomes; ``trials`` and ``successes`` are what the tests see."""

    repeats: int
    passes: int
    failures: int
    unknowns: int
    errors: int
    trials: int
    successes: int


def tally(outcomes: Iterable[Outcome], treatment: Treatment = Treatment()) -> Tally:
    counts = dict.fromkeys(OUTCOMES, 0)
    for outcome in outcomes:
        if outcome not in counts:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)} (got {outcome!r})")
        counts[outcome] += 1
    trials = counts["pass"] + counts["fail"]
    trials += counts["unknown"] if treatment.unknown_as == "fail" else 0
    trials += counts["error"] if treatment.error_as == "fail" else 0
    return Tally(
        repeats=sum(counts.values()),
        passes=counts["pass"],
        failures=counts["fail"],
        unknowns=counts["unknown"],
        errors=counts["error"],
        trials=trials,
        successes=counts["pass"],
    )


@dataclass(frozen=True)
class Decision:
    """Where a case stands. ``stop``: run no more repeats of it (a verdict, ``max`` reached,
    or no verdict reachable by ``max``); ``reason`` says which, in words."""

    verdict: Verdict
    stop: bool
    reason: str
    tally: Tally
    lower: float = 0.0
    upper: float = 1.0


class Rule(Protocol):
    """What the planner needs of a rule (frozen dataclasses: read-only attributes)."""

    @property
    def name(self) -> str: ...

    @property
    def max_repeats(self) -> int: ...

    @property
    def min_repeats(self) -> int: ...

    def decide(self, outcomes: Sequence[Outcome]) -> Decision: ...

    def params(self) -> dict[str, float | int | str]: ...


def _check_common(pass_rate: float, alpha: float, max_repeats: int, min_repeats: int) -> None:
    if not 0 < pass_rate < 1:
        raise ValueError(f"pass_rate: must be between 0 and 1, exclusive (got {pass_rate})")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha: must be between 0 and 0.5, exclusive (got {alpha})")
    if max_repeats < 1:
        raise ValueError(f"max: must be at least 1 (got {max_repeats})")
    if not 1 <= min_repeats <= max_repeats:
        raise ValueError(f"min: must be between 1 and max ({max_repeats}) (got {min_repeats})")


# ------------------------------------------------------------- incomplete beta function


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of I_x(a, b) by modified Lentz (Press et al., Numerical Recipes,
    3rd ed., section 6.4); converges fast for x < (a + 1) / (a + b + 2)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def log_betainc(a: float, b: float, x: float, upper: bool = False) -> float:
    """log I_x(a, b) (``upper``: log(1 - I_x(a, b))), the regularized incomplete beta
    function, computed on the side where the continued fraction converges so that neither
    tail loses precision near 1."""
    if x <= 0.0:
        return 0.0 if upper else -math.inf
    if x >= 1.0:
        return -math.inf if upper else 0.0
    log_front = a * math.log(x) + b * math.log1p(-x) - log_beta(a, b)
    if x < (a + 1.0) / (a + b + 2.0):
        lower_tail = log_front + math.log(_betacf(a, b, x)) - math.log(a)
        return _log1mexp(lower_tail) if upper else lower_tail
    upper_tail = log_front + math.log(_betacf(b, a, 1.0 - x)) - math.log(b)
    return upper_tail if upper else _log1mexp(upper_tail)


def _log1mexp(value: float) -> float:
    """log(1 - exp(value)) for value <= 0, accurate at both ends."""
    if value >= 0.0:
        return -math.inf
    return math.log(-math.expm1(value)) if value > -0.693 else math.log1p(-math.exp(value))


# ----------------------------------------------------------------------------- anytime


@dataclass(frozen=True)
class SidePrior:
    """A Beta(m c, (1 - m) c) mixing distribution restricted to one side of the threshold x.

    ``shift`` places its mean m relative to x: ``above`` (PASS side) m = x + shift (1 - x),
    ``below`` (FAIL side) m = shift x; ``concentration`` is c (large: sharp, small: spread)."""

    side: Literal["above", "below"]
    shift: float
    concentration: float

    def beta(self, x: float) -> tuple[float, float]:
        mean = x + self.shift * (1 - x) if self.side == "above" else self.shift * x
        return mean * self.concentration, (1 - mean) * self.concentration


def log_mixture(prior: SidePrior, x: float, n: int, s: int) -> float:
    """log M_n(x) of the one-sided mixture test martingale after s passes in n trials.

    M_n(x) = int_Q (q / x)^s ((1 - q) / (1 - x))^(n - s) dpi(q), pi = Beta(a, b) restricted
    to Q = [x, 1] (``above``) or [0, x] (``below``). In closed form, for ``above``:

        M_n(x) = B(a + s, b + n - s) (1 - I_x(a + s, b + n - s))
                 / (B(a, b) (1 - I_x(a, b)) x^s (1 - x)^(n - s))

    and with I_x in place of 1 - I_x for ``below``. For each q in [x, 1] the factor
    (q / x)^X ((1 - q) / (1 - x))^(1 - X) has mean p q / x + (1 - p)(1 - q) / (1 - x) <= 1
    whenever p <= x, so M_n(x) is a nonnegative supermartingale with M_0 = 1 under every
    p <= x (a martingale at p = x); symmetrically ``below`` under every p >= x. Ville's
    inequality (Ville 1939) then gives P(exists n: M_n(x) >= 1 / alpha) <= alpha: the test
    may be looked at after every repeat, stopped, resumed or continued past any horizon.
    """
    a, b = prior.beta(x)
    f = n - s
    upper = prior.side == "above"
    return (
        log_beta(a + s, b + f)
        + log_betainc(a + s, b + f, x, upper)
        - log_beta(a, b)
        - log_betainc(a, b, x, upper)
        - s * math.log(x)
        - f * math.log1p(-x)
    )


PASS_SHIFTS = (0.5, 0.75, 0.85, 0.9, 0.95)
FAIL_SHIFTS = (0.025, 0.0625, 0.125, 0.25, 0.5)
CONCENTRATIONS = (10.0, 30.0, 100.0, 300.0, 1000.0)


@dataclass(frozen=True)
class _Table:
    """Per trial count n, the fewest passes that PASS and the most that FAIL (monotone in s)."""

    pass_at: tuple[float, ...]
    fail_at: tuple[float, ...]


@lru_cache(maxsize=4096)
def _thresholds(prior: SidePrior, x: float, alpha: float, n: int) -> float:
    """``above``: the least s with M_n(x) >= 1/alpha (inf: none); ``below``: the largest
    (-inf: none). M_n is monotone in s (a pass multiplies by q/x >= (1-q)/(1-x) on ``above``),
    so bisection finds it."""
    level = math.log(1 / alpha)

    def crosses(s: int) -> bool:
        return log_mixture(prior, x, n, s) >= level

    if prior.side == "above":
        if not crosses(n):
            return math.inf
        lo, hi = -1, n  # crosses(hi) holds; crosses(lo) is taken as false
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if crosses(mid) else (mid, hi)
        return float(hi)
    if not crosses(0):
        return -math.inf
    lo, hi = 0, n + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if crosses(mid) else (lo, mid)
    return float(lo)


@lru_cache(maxsize=1024)
def _row(prior: SidePrior, x: float, alpha: float, n_max: int) -> tuple[float, ...]:
    """``_thresholds`` for n = 0..n_max in O(n_max) evaluations: one more outcome moves the
    threshold by at most one. A failure multiplies M+ by the posterior mean of
    (1 - q)/(1 - x) <= 1 and a pass by that of q/x >= 1 (q >= x), so for ``above``
    t(n - 1) <= t(n) <= t(n - 1) + 1; likewise for ``below``."""
    level = math.log(1 / alpha)
    out = [_thresholds(prior, x, alpha, 0)]
    for n in range(1, n_max + 1):
        prev = out[-1]
        if prior.side == "above":
            lowest = n if prev == math.inf else int(prev)
            found = math.inf
            for s in range(lowest, min(n, lowest + 1) + 1):
                if log_mixture(prior, x, n, s) >= level:
                    found = float(s)
                    break
        else:
            highest = 0 if prev == -math.inf else min(n, int(prev) + 1)
            found = -math.inf
            for s in range(highest, max(-1, highest - 2), -1):
                if s >= 0 and log_mixture(prior, x, n, s) >= level:
                    found = float(s)
                    break
        out.append(found)
    return tuple(out)


def _table(above: SidePrior, below: SidePrior, x: float, alpha: float, n_max: int) -> _Table:
    return _Table(pass_at=_row(above, x, alpha, n_max), fail_at=_row(below, x, alpha, n_max))


def _design_loss(table: _Table, max_repeats: int, min_repeats: int) -> float:
    """Bayes risk E[n] + max P(undecided) with p ~ Uniform(0, 1), by exact recursion.

    Under a uniform p the outcomes are a Polya urn: after s passes in n trials the next passes
    with chance (s + 1) / (n + 2) (Laplace's rule of succession), so one pass over the (n, s)
    lattice gives the risk. A case left undecided costs ``max``: its question is still open."""
    stop = _stop_lattice(table, max_repeats, min_repeats)
    probs = [1.0]
    loss = 0.0
    for n in range(max_repeats + 1):
        nxt = [0.0] * (n + 2)
        for s, mass in enumerate(probs):
            if mass == 0.0:
                continue
            state = stop[n][s] if n < max_repeats else (stop[n][s] or "undecided")
            if state:
                loss += mass * (n + (max_repeats if state == "undecided" else 0))
                continue
            up = (s + 1) / (n + 2)
            nxt[s + 1] += mass * up
            nxt[s] += mass * (1 - up)
        probs = nxt
    return loss


def _stop_lattice(table: _Table, max_repeats: int, min_repeats: int) -> list[list[str]]:
    """``_state`` at every (n, s) with no skipped repeats, by one backward pass: a verdict is
    reachable from (n, s) when it holds there or is reachable from (n + 1, s + 1) (PASS) or
    (n + 1, s) (FAIL), the best cases."""
    out: list[list[str]] = [[] for _ in range(max_repeats + 1)]
    can_pass: list[bool] = []
    can_fail: list[bool] = []
    for n in range(max_repeats, -1, -1):
        judged = n >= min_repeats
        row, row_pass, row_fail = [], [], []
        for s in range(n + 1):
            passes = judged and s >= table.pass_at[n]
            fails = judged and s <= table.fail_at[n]
            reach_pass = passes or (n < max_repeats and can_pass[s + 1])
            reach_fail = fails or (n < max_repeats and can_fail[s])
            row_pass.append(reach_pass)
            row_fail.append(reach_fail)
            if passes:
                row.append("pass")
            elif fails:
                row.append("fail")
            else:
                row.append("" if reach_pass or reach_fail else "undecided")
        out[n], can_pass, can_fail = row, row_pass, row_fail
    return out


def _state(table: _Table, n: int, s: int, repeats: int, max_repeats: int, min_repeats: int) -> str:
    """The anytime rule at n trials, s passes, ``repeats`` run (>= n when some were skipped)."""
    if repeats >= min_repeats:
        if s >= table.pass_at[n]:
            return "pass"
        if s <= table.fail_at[n]:
            return "fail"
    left = max_repeats - repeats
    for j in range(max(0, min_repeats - repeats), left + 1):
        # the best case for PASS is j more passes, for FAIL j more failures (monotone in s)
        if s + j >= table.pass_at[n + j] or s <= table.fail_at[n + j]:
            return ""
    return "undecided"


@lru_cache(maxsize=256)
def horizon_priors(
    pass_rate: float, alpha: float, max_repeats: int, min_repeats: int = 1
) -> tuple[SidePrior, SidePrior]:
    """The mixing distributions (PASS side, FAIL side) tuned for a truncated horizon.

    Any fixed prior keeps the guarantee (the martingale property holds for each), so the
    prior may be chosen freely before the first outcome: here the one of a small grid
    (``PASS_SHIFTS`` / ``FAIL_SHIFTS`` x ``CONCENTRATIONS``) that minimises the Bayes risk
    E[repeats] + max P(undecided) under a uniform true pass rate (``_design_loss``), with
    the early "no verdict reachable" stop included. The reference is neutral (it knows
    nothing of any suite's mix of pass rates); a short ``max`` favours sharp priors at the far
    ends (a PASS must come from an unbroken run of passes), a long one spreads them so that
    a few failures can still PASS by ``max``."""
    _check_common(pass_rate, alpha, max_repeats, min_repeats)
    best: tuple[float, SidePrior, SidePrior] | None = None
    aboves = [SidePrior("above", t, c) for t in PASS_SHIFTS for c in CONCENTRATIONS]
    belows = [SidePrior("below", t, c) for t in FAIL_SHIFTS for c in CONCENTRATIONS]
    pass_rows = {p: _row(p, pass_rate, alpha, max_repeats) for p in aboves}
    fail_rows = {p: _row(p, pass_rate, alpha, max_repeats) for p in belows}
    for above in aboves:
        for below in belows:
            loss = _design_loss(
                _Table(pass_rows[above], fail_rows[below]), max_repeats, min_repeats
            )
            if best is None or loss < best[0] - 1e-12:
                best = (loss, above, below)
    assert best is not None
    return best[1], best[2]


@lru_cache(maxsize=8192)
def _bound(prior: SidePrior, alpha: float, n: int, s: int) -> float:
    """The confidence sequence's bound on this side: the thresholds x it does not reject.

    ``above``: the lower bound, the least x in (0, 1) with M_n(x) < 1/alpha; ``below``: the
    upper bound, the greatest such x. Found by bisection in x to 1e-4. Cached: a pure function
    of the counts, asked by the verdict planner at every outcome of every case (two bisections
    of incomplete beta functions each time, more than a simulation's whole client cost)."""
    level = math.log(1 / alpha)
    if prior.side == "above":
        lo, hi = 1e-9, 1 - 1e-9  # rejected(lo) assumed, not rejected(hi)
        if log_mixture(prior, lo, n, s) < level:
            return 0.0
        while hi - lo > 1e-4:
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if log_mixture(prior, mid, n, s) >= level else (lo, mid)
        return lo
    lo, hi = 1e-9, 1 - 1e-9  # not rejected(lo), rejected(hi)
    if log_mixture(prior, hi, n, s) < level:
        return 1.0
    while hi - lo > 1e-4:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if log_mixture(prior, mid, n, s) >= level else (mid, hi)
    return hi


def _not_settled(
    t: Tally, max_repeats: int, unreachable: bool, what: str, lower: float, upper: float
) -> Decision:
    """A case without a verdict: stopped at ``max``, stopped early because no outcome of the
    repeats left could give a ``what`` (a verdict, a boundary), or open for more repeats."""
    if t.repeats >= max_repeats:
        return Decision("undecided", True, f"max {max_repeats} repeats reached", t, lower, upper)
    if unreachable:
        left = max_repeats - t.repeats
        reason = f"no {what} reachable in the {left} repeats left of max {max_repeats}"
        return Decision("undecided", True, reason, t, lower, upper)
    return Decision("undecided", False, "undecided, more repeats needed", t, lower, upper)


@dataclass(frozen=True)
class Anytime:
    """Anytime-valid verdict: two one-sided mixture test martingales at ``pass_rate``.

    PASS once M+_n(pass_rate) >= 1/alpha (H0: p <= pass_rate rejected), FAIL once
    M-_n(pass_rate) >= 1/alpha (H0: p >= pass_rate rejected); see ``log_mixture``. Each side is
    at level ``alpha`` (not alpha/2): at most one of the two verdicts is wrong for any true p,
    so the chance of a wrong verdict is <= alpha per case, at every n, whatever the stopping.
    The pair of one-sided bounds (``lower``, ``upper``) is a (1 - 2 alpha) confidence sequence
    (Howard et al. 2021): the thresholds x that neither side rejects.

    UNDECIDED at ``max`` repeats, or as soon as neither verdict can be reached by ``max`` even
    if every remaining repeat passed (for PASS) or failed (for FAIL) -- M+ grows with passes,
    M- with failures, so those are the best cases. The priors are fixed by
    ``horizon_priors`` from the parameters before any outcome; extending ``max`` later keeps the
    same priors (recorded in ``params``) and so the same martingales and guarantee.
    """

    pass_rate: float = 0.8
    alpha: float = 0.05
    max_repeats: int = 20
    min_repeats: int = 1
    treatment: Treatment = Treatment()
    priors: tuple[SidePrior, SidePrior] | None = None
    name: str = field(default="anytime", init=False)

    def __post_init__(self) -> None:
        _check_common(self.pass_rate, self.alpha, self.max_repeats, self.min_repeats)
        if self.priors is None:
            object.__setattr__(
                self,
                "priors",
                horizon_priors(self.pass_rate, self.alpha, self.max_repeats, self.min_repeats),
            )
        # ``state`` by its counts (not a field: no part of equality or hash); the verdict
        # planner asks it at every outcome, and ``repeats_to_verdict`` up to 2 x max times
        object.__setattr__(self, "_states", {})
        object.__setattr__(self, "_reach", {})  # ``repeats_to_verdict`` by counts, likewise

    @property
    def above(self) -> SidePrior:
        assert self.priors is not None
        return self.priors[0]

    @property
    def below(self) -> SidePrior:
        assert self.priors is not None
        return self.priors[1]

    def table(self, n_max: int | None = None) -> _Table:
        n_max = self.max_repeats if n_max is None else n_max
        return _table(self.above, self.below, self.pass_rate, self.alpha, n_max)

    def state(self, trials: int, successes: int, repeats: int | None = None) -> str:
        """'pass', 'fail', 'undecided' (stop) or '' (go on) at this point; ``repeats``
        defaults to ``trials`` (nothing skipped)."""
        repeats = trials if repeats is None else repeats
        states: dict[tuple[int, int, int], str] = self._states  # type: ignore[attr-defined]
        known = states.get((trials, successes, repeats))
        if known is not None:
            return known
        # extend the table past max when a run already went further (an extension)
        table = self.table(max(self.max_repeats, trials) + max(0, self.max_repeats - repeats))
        state = _state(
            table, trials, successes, repeats, max(self.max_repeats, repeats), self.min_repeats
        )
        states[trials, successes, repeats] = state
        return state

    def decide(self, outcomes: Sequence[Outcome]) -> Decision:
        t = tally(outcomes, self.treatment)
        state = self.state(t.trials, t.successes, t.repeats)
        lower = _bound(self.above, self.alpha, t.trials, t.successes)
        upper = _bound(self.below, self.alpha, t.trials, t.successes)
        p0 = self.pass_rate
        if state == "pass":
            reason = f"lower bound {lower:.3f} above pass_rate {p0} after {t.repeats} repeats"
            return Decision("pass", True, reason, t, lower, upper)
        if state == "fail":
            reason = f"upper bound {upper:.3f} below pass_rate {p0} after {t.repeats} repeats"
            return Decision("fail", True, reason, t, lower, upper)
        return _not_settled(t, self.max_repeats, state == "undecided", "verdict", lower, upper)

    def params(self) -> dict[str, float | int | str]:
        return {
            "rule": self.name,
            "pass_rate": self.pass_rate,
            "alpha": self.alpha,
            "max": self.max_repeats,
            "min": self.min_repeats,
            "unknown_as": self.treatment.unknown_as,
            "error_as": self.treatment.error_as,
            "above_shift": self.above.shift,
            "above_concentration": self.above.concentration,
            "below_shift": self.below.shift,
            "below_concentration": self.below.concentration,
        }

    @staticmethod
    def recorded_priors(params: dict[str, float | int | str]) -> tuple[SidePrior, SidePrior]:
        """The priors of a case's earlier ``params`` (the verdicts table): a resume or a larger
        ``max`` passes them as ``priors`` so the case keeps its martingales and guarantee
        (priors re-tuned for the new ``max`` after outcomes were seen would not be valid)."""
        return (
            SidePrior("above", float(params["above_shift"]), float(params["above_concentration"])),
            SidePrior("below", float(params["below_shift"]), float(params["below_concentration"])),
        )


def covers(rule: Anytime, p: float, outcomes: Sequence[Outcome]) -> bool:
    """Whether the confidence sequence holds p after every prefix of ``outcomes``: neither
    one-sided test at x = p rejects at any n (the set of x it holds at n is {x: neither
    rejects}). Used by the tests and the benchmark."""
    t_above = _row(rule.above, p, rule.alpha, len(outcomes))
    t_below = _row(rule.below, p, rule.alpha, len(outcomes))
    n = s = 0
    for outcome in outcomes:
        t = tally([outcome], rule.treatment)
        n += t.trials
        s += t.successes
        if s >= t_above[n] or s <= t_below[n]:
            return False
    return True


# -------------------------------------------------------------------------------- sprt


@dataclass(frozen=True)
class Sprt:
    """Wald's truncated SPRT of H0: p = ``pass_rate_low`` against H1: p = ``pass_rate``.

    Log likelihood ratio after s passes in n trials (p0 = pass_rate_low, p1 = pass_rate):

        L_n = s log(p1 / p0) + (n - s) log((1 - p1) / (1 - p0))

    PASS once L_n >= log((1 - beta) / alpha), FAIL once L_n <= log(beta / (1 - alpha))
    (Wald 1945). exp(L_n) is a martingale under p0 (a supermartingale under every p <= p0), so
    Ville's inequality bounds a wrong PASS at p <= p0 by alpha / (1 - beta), and symmetrically
    a wrong FAIL at p >= p1 by beta / (1 - alpha); Wald's approximations alpha and beta are the
    usual figures. Truncated at ``max``: UNDECIDED there (rather than Wald's "nearer boundary"
    rule), which only removes decisions, so the bounds still hold; also UNDECIDED as soon as
    no boundary can be reached by ``max``. Pass rates inside (p0, p1) are the indifference
    zone: either verdict is acceptable there and nothing is promised.
    """

    pass_rate: float = 0.8
    pass_rate_low: float = 0.6
    alpha: float = 0.05
    beta: float = 0.05
    max_repeats: int = 40
    min_repeats: int = 1
    treatment: Treatment = Treatment()
    name: str = field(default="sprt", init=False)

    def __post_init__(self) -> None:
        _check_common(self.pass_rate, self.alpha, self.max_repeats, self.min_repeats)
        if not 0 < self.pass_rate_low < self.pass_rate:
            raise ValueError(
                f"pass_rate_low: must be between 0 and pass_rate ({self.pass_rate}) "
                f"(got {self.pass_rate_low})"
            )
        if not 0 < self.beta < 0.5:
            raise ValueError(f"beta: must be between 0 and 0.5, exclusive (got {self.beta})")

    def llr(self, trials: int, successes: int) -> float:
        p0, p1 = self.pass_rate_low, self.pass_rate
        return successes * math.log(p1 / p0) + (trials - successes) * math.log((1 - p1) / (1 - p0))

    def bounds(self) -> tuple[float, float]:
        """(FAIL boundary, PASS boundary) on the log likelihood ratio."""
        return math.log(self.beta / (1 - self.alpha)), math.log((1 - self.beta) / self.alpha)

    def state(self, trials: int, successes: int, repeats: int | None = None) -> str:
        repeats = trials if repeats is None else repeats
        low, high = self.bounds()
        llr = self.llr(trials, successes)
        if repeats >= self.min_repeats:
            if llr >= high:
                return "pass"
            if llr <= low:
                return "fail"
        left = max(0, self.max_repeats - repeats)
        # LLR moves by +log(p1/p0) per pass and by log((1-p1)/(1-p0)) < 0 per failure
        best = self.llr(trials + left, successes + left)
        worst = self.llr(trials + left, successes)
        reachable_min = repeats + left >= self.min_repeats
        if reachable_min and (best >= high or worst <= low) and left > 0:
            return ""
        return "undecided"

    def decide(self, outcomes: Sequence[Outcome]) -> Decision:
        t = tally(outcomes, self.treatment)
        state = self.state(t.trials, t.successes, t.repeats)
        lower, upper = wilson_interval(t.successes, t.trials, Z95)
        if state in ("pass", "fail"):
            llr = self.llr(t.trials, t.successes)
            reason = f"log likelihood ratio {llr:.2f} crossed the {state} boundary"
            return Decision(state, True, reason, t, lower, upper)  # type: ignore[arg-type]
        return _not_settled(t, self.max_repeats, state == "undecided", "boundary", lower, upper)

    def params(self) -> dict[str, float | int | str]:
        return {
            "rule": self.name,
            "pass_rate": self.pass_rate,
            "pass_rate_low": self.pass_rate_low,
            "alpha": self.alpha,
            "beta": self.beta,
            "max": self.max_repeats,
            "min": self.min_repeats,
            "unknown_as": self.treatment.unknown_as,
            "error_as": self.treatment.error_as,
        }


def fixed_design(
    pass_rate_low: float, pass_rate: float, alpha: float, beta: float, n_limit: int = 1000
) -> tuple[int, int]:
    """The smallest fixed (n, c), "PASS iff at least c of n pass", with P(PASS | p0) <= alpha
    and P(FAIL | p1) <= beta (exact binomial tails): the fixed design of the SPRT's power."""
    for n in range(1, n_limit + 1):
        for c in range(n + 1):
            if _binom_tail(n, c, pass_rate_low) <= alpha:
                if 1 - _binom_tail(n, c, pass_rate) <= beta:
                    return n, c
                break
    raise ValueError(f"no fixed design within {n_limit} repeats")


def _binom_tail(n: int, c: int, p: float) -> float:
    """P(Binomial(n, p) >= c)."""
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(c, n + 1))


# ----------------------------------------------------------------------------- curtail


@dataclass(frozen=True)
class Curtail:
    """The fixed rule "PASS iff at least ``passes`` of ``max_repeats`` repeats pass", curtailed.

    Stops at PASS as soon as ``passes`` repeats passed, at FAIL as soon as more than
    ``max_repeats - passes`` did not pass: either way the repeats left cannot change the fixed
    rule's verdict, so the verdicts are identical to running all of them (curtailed sampling).
    Every repeat that is not a pass (fail, unknown, error) is a non-pass here, as in the fixed
    rule; the treatment does not apply. ``passes`` defaults to ceil(pass_rate * max). The error
    rates are the fixed rule's (exact binomial tails); nothing is promised beyond ``max``.
    """

    pass_rate: float = 0.8
    max_repeats: int = 20
    passes: int | None = None
    min_repeats: int = 1
    name: str = field(default="curtail", init=False)

    def __post_init__(self) -> None:
        _check_common(self.pass_rate, 0.05, self.max_repeats, self.min_repeats)
        if self.passes is None:
            object.__setattr__(self, "passes", math.ceil(self.pass_rate * self.max_repeats - 1e-9))
        if not 0 <= self.needed <= self.max_repeats:
            raise ValueError(
                f"passes: must be between 0 and max ({self.max_repeats}) (got {self.passes})"
            )

    @property
    def needed(self) -> int:
        assert self.passes is not None
        return self.passes

    def decide(self, outcomes: Sequence[Outcome]) -> Decision:
        t = tally(outcomes, Treatment("fail", "fail"))
        non_passes = t.repeats - t.passes
        lower, upper = wilson_interval(t.passes, t.repeats, Z95)
        need = self.needed
        if t.repeats >= self.min_repeats or t.repeats >= self.max_repeats:
            if t.passes >= need:
                return Decision(
                    "pass", True, f"{t.passes} of {t.repeats} passed (need {need})", t, lower, upper
                )
            if non_passes > self.max_repeats - need:
                reason = f"{non_passes} did not pass: fewer than {need} of {self.max_repeats} can"
                return Decision("fail", True, reason, t, lower, upper)
        return Decision("undecided", False, f"{t.passes} of {need} passes so far", t, lower, upper)

    def params(self) -> dict[str, float | int | str]:
        return {
            "rule": self.name,
            "pass_rate": self.pass_rate,
            "passes": self.needed,
            "max": self.max_repeats,
            "min": self.min_repeats,
        }


# ------------------------------------------------------------------------------ walking


def first_stop(rule: Rule, outcomes: Sequence[Outcome]) -> tuple[int, Decision]:
    """Where ``rule`` would have stopped on these outcomes (in repeat order): the number of
    repeats it would have run and its decision there; all of them and the decision on all when
    it would not have stopped (a run with fewer repeats than ``max``). For replays and tests:
    rules with a ``state`` lattice are walked on counts, the decision built once at the stop."""
    state = getattr(rule, "state", None)
    treatment: Treatment = getattr(rule, "treatment", Treatment())
    if state is None:
        for i in range(1, len(outcomes) + 1):
            decision = rule.decide(outcomes[:i])
            if decision.stop:
                return i, decision
        return len(outcomes), rule.decide(outcomes)
    trials = successes = 0
    for i, outcome in enumerate(outcomes, start=1):
        one = tally([outcome], treatment)
        trials += one.trials
        successes += one.successes
        if state(trials, successes, i) or i >= rule.max_repeats:
            return i, rule.decide(outcomes[:i])
    return len(outcomes), rule.decide(outcomes)


def repeats_to_verdict(rule: Rule, outcomes: Sequence[Outcome]) -> int | None:
    """The fewest further repeats that could settle the case (all passing, or all failing),
    within ``max``; 0 when it is settled, None when nothing can. The budget's order when it
    nears its end: the undecided cases closest to a verdict first (issue 25)."""
    reach: dict[tuple[int, int, int], int | None] | None = getattr(rule, "_reach", None)
    if reach is not None:  # a rule whose decisions follow from its counts alone: cached by them
        t = tally(outcomes, getattr(rule, "treatment", Treatment()))
        counts = (t.trials, t.successes, t.repeats)
        if counts not in reach:
            reach[counts] = _repeats_to_verdict(rule, outcomes)
        return reach[counts]
    return _repeats_to_verdict(rule, outcomes)


def _repeats_to_verdict(rule: Rule, outcomes: Sequence[Outcome]) -> int | None:
    decision = rule.decide(outcomes)
    if decision.verdict != "undecided":
        return 0
    if decision.stop:
        return None
    left = rule.max_repeats - len(outcomes)
    state = getattr(rule, "state", None)
    if state is not None:  # on counts, without building a decision per candidate
        t = tally(outcomes, getattr(rule, "treatment", Treatment()))
        for j in range(1, left + 1):
            n, r = t.trials + j, t.repeats + j
            if state(n, t.successes + j, r) == "pass" or state(n, t.successes, r) == "fail":
                return j
        return None
    extras: tuple[Outcome, ...] = ("pass", "fail")
    for j in range(1, left + 1):
        for extra in extras:
            if rule.decide([*outcomes, *(extra for _ in range(j))]).verdict != "undecided":
                return j
    return None


# ------------------------------------------------------------------------------ fixed


def fixed_wilson(
    outcomes: Sequence[Outcome],
    pass_rate: float,
    treatment: Treatment = Treatment(),
    z: float = Z95,
) -> Decision:
    """The fixed-n baseline: judged once, on all the outcomes, by the Wilson score interval
    (Wilson 1927; ``runner.analysis.wilson_interval``): PASS if its lower bound is above
    ``pass_rate``, FAIL if its upper bound is below, else UNDECIDED. Valid only at the n fixed
    in advance: looked at repeatedly it is not (the peeking problem)."""
    t = tally(outcomes, treatment)
    lower, upper = wilson_interval(t.successes, t.trials, z)
    if lower > pass_rate:
        return Decision(
            "pass", True, f"Wilson lower bound {lower:.3f} above {pass_rate}", t, lower, upper
        )
    if upper < pass_rate:
        return Decision(
            "fail", True, f"Wilson upper bound {upper:.3f} below {pass_rate}", t, lower, upper
        )
    return Decision("undecided", True, f"Wilson interval holds {pass_rate}", t, lower, upper)
