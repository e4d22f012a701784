"""How many simulations a run that stops early is expected to send (issues 25 and 26). Pure.

A run with ``run.repeats: {until: verdict}`` or a ``compare:`` block sends *at most* its
``max`` repeats (pairs); how many it sends depends on outcomes not seen yet. The estimate and
the live progress say both: "up to M; expected about E", E computed here from a stated prior.

**Verdicts** (``verdict_expected``): per case, E[further repeats] of the case's rule, exactly,
by a backward recursion over the (trials, passes) lattice (dynamic programming over every
outcome sequence):

    V(n, s) = 0                                            if the rule stops at (n, s)
    V(n, s) = 1 + p V(n + 1, s + 1) + (1 - p) V(n + 1, s)   otherwise

for a pass rate p, averaged over a prior on p: a grid of ``GRID`` rates (the midpoints of equal
bins). The prior is the run's earlier sessions' when they have outcomes: the average, over
the cases they ran, of each case's posterior under a uniform prior (what those cases' pass
rates look like); else uniform on (0, 1), the reference the rule's priors are tuned for
(``verdicts.horizon_priors``). A case that has outcomes already continues from where it
stands, with the prior updated by its own outcomes (Bayes: weight_j ~ prior_j p_j^s
(1 - p_j)^f). Further repeats are modelled as trials (pass or not); unknowns and errors are
not. With ``of: [...]`` a case runs until every listed criterion's rule has stopped: the
largest of their expectations is used (a lower bound on the expected largest).

**Comparisons** (``compare_expected``): E[further pairs] of ``paired.NonInferiority``, capped
at ``max_pairs``. Each pair's difference D is a win, tie or loss with chances (w, t, l) drawn
once from a Dirichlet prior (Dirichlet(1, 1, 1): uniform over the simplex; updated by the
comparison's stored pairs, so a resumed comparison continues its own posterior). The rule
depends on the counts only, and its stop region is monotone threshold tables (below); the
expectation is the mean over ``REPLICATES`` comparisons simulated from a fixed seed
(Monte Carlo: a dynamic program over (wins, ties, losses) has max_pairs^3 / 6 states,
millions at 400 pairs).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache, partial

from runner.estimate import Expected
from runner.paired import Counts, NonInferiority
from runner.verdicts import Outcome, Rule, Treatment, tally

GRID = 50
"""Points of the prior on a case's pass rate: (j + 0.5) / GRID."""
REPLICATES = 1000
"""Comparisons simulated for a comparison's expected pairs."""
SEED = 20260126

Start = tuple[int, int, int]
"""Where a verdict stands: (trials, passes, repeats run)."""


# ------------------------------------------------------------------------------ verdicts


def grid() -> list[float]:
    return [(j + 0.5) / GRID for j in range(GRID)]


def _log_likelihoods(passes: int, fails: int) -> list[float]:
    return [passes * math.log(p) + fails * math.log1p(-p) for p in grid()]


def _normalised(logs: Sequence[float]) -> list[float]:
    top = max(logs)
    raw = [math.exp(v - top) for v in logs]
    total = sum(raw)
    return [v / total for v in raw]


def uniform_prior() -> list[float]:
    return [1.0 / GRID] * GRID


def prior_from(counts: Iterable[tuple[int, int]]) -> list[float] | None:
    """The prior the earlier sessions give: the mean over their cases (passes, trials) of each
    case's posterior on the grid under a uniform prior. None when no case had a trial."""
    total = [0.0] * GRID
    cases = 0
    for passes, trials in counts:
        if trials <= 0:
            continue
        cases += 1
        for j, w in enumerate(_normalised(_log_likelihoods(passes, trials - passes))):
            total[j] += w
    if not cases:
        return None
    return [v / cases for v in total]


def stops(rule: Rule) -> Callable[[int, int, int], bool]:
    """Whether ``rule`` stops a case at (trials, passes, repeats), every repeat so far a trial
    unless ``repeats`` says otherwise. The lattice rules answer from their ``state``; the
    others (``curtail``) decide over an outcome sequence with those counts (they count)."""
    state = getattr(rule, "state", None)
    if state is not None:

        def by_state(n: int, s: int, r: int) -> bool:
            return r >= rule.max_repeats or bool(state(n, s, r))

        return by_state

    def by_decision(n: int, s: int, r: int) -> bool:
        passes: list[Outcome] = ["pass"] * s
        fails: list[Outcome] = ["fail"] * (n - s)
        errors: list[Outcome] = ["error"] * (r - n)
        outcomes = passes + fails + errors
        return r >= rule.max_repeats or rule.decide(outcomes).stop

    return by_decision


def further_repeats(rule: Rule, start: Start, p: float) -> float:
    """E[repeats still to run] of one case at pass rate ``p`` from ``start`` (the recursion of
    the module docstring); ``further_by_grid`` does every grid rate at once."""
    return further_by_grid(rule, start, [p])[0]


def further_by_grid(
    rule: Rule, start: Start, rates: Sequence[float], most: int | None = None
) -> list[float]:
    """``further_repeats`` at each of ``rates``; ``most``: the case has only that many jobs
    left (a run with ``--limit``), fewer than ``max`` allows."""
    n0, s0, r0 = start
    horizon = max(0, rule.max_repeats - r0)
    horizon = horizon if most is None else min(horizon, most)
    stop = stops(rule)
    # the stop lattice once, shared by every rate: step k from the start, j further passes
    lattice = [[stop(n0 + k, s0 + j, r0 + k) for j in range(k + 1)] for k in range(horizon + 1)]
    out = []
    for p in rates:
        q = 1.0 - p
        nxt = [0.0] * (horizon + 2)
        for k in range(horizon, -1, -1):
            row = lattice[k]
            cur = [0.0] * (k + 1)
            if k < horizon:
                for j in range(k + 1):
                    if not row[j]:
                        cur[j] = 1.0 + p * nxt[j + 1] + q * nxt[j]
            nxt = cur
        out.append(nxt[0])
    return out


def case_start(outcomes: Sequence[Outcome], treatment: Treatment) -> Start:
    t = tally(outcomes, treatment)
    return t.trials, t.successes, t.repeats


def verdict_expected(
    rule: Rule,
    cases: Sequence[Sequence[Sequence[Outcome]]],
    earlier: Iterable[tuple[int, int]] = (),
    available: Sequence[int] | None = None,
) -> tuple[float, int, str]:
    """(expected further repeats summed over ``cases``, at most, how E was computed).

    ``cases``: per case, per verdict (one, or one per criterion of ``of``), its outcomes so far
    in repeat order; a case whose rule stopped adds nothing. ``earlier``: (passes, trials) of
    the cases earlier sessions ran, for the prior (``prior_from``); none: uniform.
    ``available``: per case, the jobs it has left to send (default: up to ``max``)."""
    treatment: Treatment = getattr(rule, "treatment", Treatment())
    if rule.name == "curtail":
        treatment = Treatment("fail", "fail")
    found = prior_from(earlier)
    prior = uniform_prior() if found is None else found
    rates = grid()
    memo: dict[tuple[Start, int], list[float]] = {}
    stop = stops(rule)
    expected = 0.0
    most = 0
    for i, verdicts in enumerate(cases):
        repeats = max((len(o) for o in verdicts), default=0)
        room = max(0, rule.max_repeats - repeats)
        room = room if available is None else min(room, available[i])
        per_verdict = []
        open_case = False
        for outcomes in verdicts:
            start = case_start(outcomes, treatment)
            n, s, r = start
            if stop(n, s, r):
                per_verdict.append(0.0)
                continue
            open_case = True
            if (start, room) not in memo:
                memo[start, room] = further_by_grid(rule, start, rates, room)
            weights = _normalised(
                [
                    math.log(w) + ll if w > 0 else -math.inf
                    for w, ll in zip(prior, _log_likelihoods(s, n - s), strict=True)
                ]
            )
            further = memo[start, room]
            per_verdict.append(sum(w * v for w, v in zip(weights, further, strict=True)))
        if open_case:
            most += room
            expected += max(per_verdict)
    source = (
        "a uniform prior on each case's pass rate"
        if found is None
        else "a prior on each case's pass rate from the cases earlier sessions ran"
    )
    how = f"the {rule.name} rule's expected repeats per case, exactly, under {source}"
    return expected, most, how


# ---------------------------------------------------------------------------- comparisons


class _Thresholds:
    """The paired rule's stop region by counts, from monotone threshold tables. Both tests are
    against m = -margin (``paired.NonInferiority.e_values``); with n tested pairs of which l
    losses, the wins decide:

    - ``worse``: log K-_n(-margin) falls as a tie becomes a win (a win's factor 1 - u is the
      smallest) and with every tie (a tie's factor 1 - u margin / (1 + margin) is <= 1): it
      rejects iff wins <= worse(n, l). A column (fixed l) starts *saturated* (every pair but
      the losses a win still rejects: worse = n - l) while l losses outweigh that many wins;
      after that, worse(n + 1, l) <= worse(n, l), so it is found by stepping down.
    - ``not worse``: log K+_n(-margin) rises as a tie becomes a win, and with every tie (a
      tie's factor is >= 1): it rejects iff wins >= nw(n, l), and nw(n + 1, l) <= nw(n, l),
      so a column is found by stepping down.
    - reachable (the rule's ``reachable``): every pair left a win (K+) or a loss (K-): wins +
      left >= nw(n + left, l), or wins <= worse(n + left, l + left).
    """

    def __init__(self, rule: NonInferiority) -> None:
        self.rule = rule
        self.max = rule.max_pairs
        self._nw: dict[int, list[float]] = {}
        self._worse: dict[int, list[int]] = {}
        self._final: dict[tuple[int, int], float] = {}
        self._worse_final: dict[tuple[int, int], int] = {}
        self.level = rule.level
        self._spread = math.log(rule.prior.size)
        m = -rule.margin  # K+ and K- at -margin, as ``paired.log_wealth`` builds them
        self._plus = [
            (lw, *(math.log(1 + u * (d - m) / (1 + m)) for d in (1, 0, -1)))
            for u, lw in rule.prior.points
        ]
        self._minus = [
            (lw, *(math.log(1 + u * (m - d) / (1 - m)) for d in (1, 0, -1)))
            for u, lw in rule.prior.points
        ]

    def _crosses(self, terms: list[float]) -> bool:
        """log sum exp(terms) >= level, mostly decided by the largest term alone."""
        top = max(terms)
        if top >= self.level:
            return True
        if top + self._spread < self.level:
            return False
        return top + math.log(sum(math.exp(v - top) for v in terms)) >= self.level

    def _k_plus(self, w: int, t: int, l_: int) -> bool:
        return self._crosses([lw + w * a + t * b + l_ * c for lw, a, b, c in self._plus])

    def _k_minus(self, w: int, t: int, l_: int) -> bool:
        return self._crosses([lw + w * a + t * b + l_ * c for lw, a, b, c in self._minus])

    def worse(self, n: int, losses: int) -> int:
        """The most wins at which n tested pairs with ``losses`` losses reject for "worse"
        (-1: none). Each column (fixed losses) is extended as far as asked: the saturated
        stretch and then each value hold until the first n at which they no longer reject
        (more ties only hurt), found by galloping."""
        column = self._worse.setdefault(losses, [])
        want = n - losses
        while len(column) <= want:
            m = losses + len(column)  # the first n not filled yet
            prev = column[-1] if column else None
            if prev is None or prev == m - 1 - losses:  # saturated so far
                change = self._first(partial(self._all_wins_fail, losses=losses), m, n)
                column.extend(range(m - losses, change - losses))
                if change > n:
                    break
                c = change - losses - 1
            else:
                if prev < 0:
                    column.extend([-1] * (want + 1 - len(column)))
                    break
                change = self._first(partial(self._worse_fails, wins=prev, losses=losses), m, n)
                column.extend([prev] * (change - m))
                if change > n:
                    break
                c = prev - 1
            while c >= 0 and not self._k_minus(c, change - losses - c, losses):
                c -= 1
            column.append(c)
        return column[want]

    def _all_wins_fail(self, n: int, losses: int) -> bool:
        return not self._k_minus(n - losses, 0, losses)

    def _worse_fails(self, n: int, wins: int, losses: int) -> bool:
        return not self._k_minus(wins, n - losses - wins, losses)

    def worse_final(self, n: int, losses: int) -> int:
        """``worse(n, losses)`` by bisection, without the column below it: the reachability
        test asks it at the last pair only."""
        key = (n, losses)
        found = self._worse_final.get(key)
        if found is None:
            top = n - losses
            if top < 0 or not self._k_minus(0, top, losses):
                found = -1
            else:
                lo, hi = 0, top + 1  # crosses at lo, taken as not at hi
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    lo, hi = (mid, hi) if self._k_minus(mid, top - mid, losses) else (lo, mid)
                found = lo
            self._worse_final[key] = found
        return found

    def nw(self, n: int, losses: int) -> float:
        """The fewest wins at which n tested pairs with ``losses`` losses reject for "not
        worse" (inf: none). Each column (fixed losses) is extended as far as asked: the value
        holds until the first m at which one win fewer rejects (more ties only help), found by
        galloping, so a column costs a few evaluations per change rather than one per entry."""
        column = self._nw.setdefault(losses, [])
        want = n - losses
        while len(column) <= want:
            m = losses + len(column)  # the first n not filled yet
            prev = column[-1] if column else math.inf
            if prev == math.inf:  # every pair but the losses a win
                crosses = partial(self._all_wins, losses=losses)
                value = math.inf
            else:
                c = int(prev)
                if c == 0:
                    column.extend([0.0] * (want + 1 - len(column)))
                    break
                crosses = partial(self._one_win_fewer, wins=c, losses=losses)
                value = prev
            change = self._first(crosses, m, n)
            column.extend([value] * (change - m))  # unchanged up to the change
            if change > n:
                break
            c = change - losses if value == math.inf else int(value) - 1
            while c > 0 and self._k_plus(c - 1, change - losses - c + 1, losses):
                c -= 1
            column.append(float(c))
        return column[want]

    def _all_wins(self, n: int, losses: int) -> bool:
        return self._k_plus(n - losses, 0, losses)

    def _one_win_fewer(self, n: int, wins: int, losses: int) -> bool:
        return self._k_plus(wins - 1, n - losses - wins + 1, losses)

    @staticmethod
    def _first(crosses: Callable[[int], bool], lo: int, hi: int) -> int:
        """The least k in [lo, hi] with ``crosses(k)`` (monotone in k), hi + 1 when none."""
        step, prev = 1, lo - 1
        k = lo
        while k <= hi and not crosses(k):
            prev, k = k, k + step
            step *= 2
        if k > hi:
            if prev >= hi or not crosses(hi):
                return hi + 1
            k = hi
        while k - prev > 1:  # crosses(k), not crosses(prev)
            mid = (prev + k) // 2
            prev, k = (prev, mid) if crosses(mid) else (mid, k)
        return k

    def nw_final(self, n: int, losses: int) -> float:
        """``nw(n, losses)`` by bisection, without the column below it: the reachability test
        asks it at the last pair only."""
        key = (n, losses)
        found = self._final.get(key)
        if found is None:
            top = n - losses
            if top < 0 or not self._k_plus(top, 0, losses):
                found = math.inf
            else:
                lo, hi = -1, top  # crosses at hi, taken as not at lo
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    lo, hi = (lo, mid) if self._k_plus(mid, n - losses - mid, losses) else (mid, hi)
                found = float(hi)
            self._final[key] = found
        return found

    def stop(self, w: int, t: int, l_: int, skipped: int = 0) -> bool:
        n = w + t + l_
        if w <= self.worse(n, l_) or w >= self.nw(n, l_):
            return True
        left = self.max - n - skipped
        if left <= 0:
            return True
        return not (
            w + left >= self.nw_final(n + left, l_) or w <= self.worse_final(n + left, l_ + left)
        )


@lru_cache(maxsize=32)
def _thresholds(rule: NonInferiority) -> _Thresholds:
    return _Thresholds(rule)


def further_pairs(
    rule: NonInferiority,
    counts: Counts,
    prior: tuple[float, float, float] = (1.0, 1.0, 1.0),
    replicates: int = REPLICATES,
    seed: int = SEED,
) -> float:
    """E[pairs still to run] of an open comparison at ``counts`` (skipped pairs count towards
    ``max_pairs``; further pairs are modelled as tested): each replicate draws the chances of
    a win, tie and loss from Dirichlet(``prior`` + the counts), then pairs until the rule
    stops (``_Thresholds``). ``replicates`` seeded simulations."""
    table = _thresholds(rule)
    left0 = rule.max_pairs - counts.pairs
    if left0 <= 0:
        return 0.0
    a = (prior[0] + counts.wins, prior[1] + counts.ties, prior[2] + counts.losses)
    rng = random.Random(seed)
    total = 0
    for _ in range(replicates):
        g = [rng.gammavariate(x, 1.0) for x in a]
        whole = sum(g)
        p_win, p_not_loss = g[0] / whole, (g[0] + g[1]) / whole
        w, t, l_ = counts.wins, counts.ties, counts.losses
        steps = 0
        while steps < left0:
            u = rng.random()
            if u < p_win:
                w += 1
            elif u < p_not_loss:
                t += 1
            else:
                l_ += 1
            steps += 1
            if table.stop(w, t, l_, counts.skipped):
                break
        total += steps
    return total / replicates


def compare_expected(
    rule: NonInferiority, counts: Counts, stopped: bool, replicates: int = REPLICATES
) -> tuple[float, int, str]:
    """(expected further pairs, at most, how E was computed) of a comparison at ``counts``;
    ``stopped``: the rule decided already (nothing more is sent)."""
    if stopped:
        return 0.0, 0, "the comparison is decided"
    most = max(0, rule.max_pairs - counts.pairs)
    mean = further_pairs(rule, counts, replicates=replicates)
    source = (
        "a uniform prior on the chances of a win, tie and loss (Dirichlet(1, 1, 1))"
        if counts.pairs == 0
        else f"a uniform prior updated by the {counts.pairs} pair(s) run so far"
    )
    how = (
        f"2 jobs for each of the paired rule's expected pairs, by {replicates} seeded "
        f"simulated comparisons, under {source}"
    )
    return mean, most, how


def expected_jobs(mean: float, most: int, how: str) -> Expected:
    """``Expected`` of a session: ``most`` jobs at most, ``mean`` expected."""
    return Expected(up_to=most, mean=mean, how=how)
