"""What the jobs still to run are expected to cost, as a (low, high) range (pure).

Two ways, in this order of preference:

* **From earlier sessions of the same run** (``from_history``): n jobs x the mean spend of the
  jobs earlier sessions priced, give or take two standard errors of a sum of n
  (``2 x sqrt(n) x sd``), never below n x the cheapest job seen nor above n x the dearest.
* **From the vendor's prices** (``from_prices``): the "Calculate expected LLM usage" endpoint
  gives, per agent, a price per message for each LLM. A job costs at least one agent message
  and at most ``new_turns_limit`` agent messages, each at ``HIGH_FACTOR`` x the quoted price
  (a message's input grows with the transcript, so late messages cost more than the quote).
  The agent's own LLM is used when known, else the cheapest and dearest LLM quoted.

Either way the range is a guess about the future, printed with how it was made; the tables only
ever hold what the vendor billed. A run that stops early (repeats until a verdict, a
comparison) sends *up to* its jobs: ``Expected`` says how many it is expected to send
(``runner.expected``), and the range is given for both.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

HIGH_FACTOR = 2.0
"""Upper bound's allowance for a message's input growing with the transcript."""


@dataclass(frozen=True)
class Expected:
    """What a run that stops early is expected to send: ``up_to`` jobs at most (every open
    case to ``max``, every pair to ``max_pairs``), about ``mean``, computed as ``how`` says."""

    up_to: int
    mean: float
    how: str

    def describe(self) -> str:
        return (
            f"up to {self.up_to} simulation(s) (max); expected about {self.mean:.0f} ({self.how})"
        )


@dataclass(frozen=True)
class Estimate:
    low: float
    high: float
    unit: str
    """``usd`` or ``credits``."""
    jobs: int
    how: str
    """One line: what the range was made from."""
    expected: Expected | None = None
    """Set when the run stops early: ``jobs`` is then the most it sends."""
    lead: bool = True
    """Whether ``describe`` starts with the expected simulations (the first estimate does)."""

    @property
    def per_job(self) -> float | None:
        """A point figure per job: the geometric mean of the range's ends (the range spans an
        order of magnitude or so; the budget expects this before anything is priced)."""
        if not self.jobs:
            return None
        return math.sqrt(max(self.low, 0.0) * max(self.high, 0.0)) / self.jobs

    def describe(self) -> str:
        if not self.jobs:
            return f"expected cost: {money(0.0, self.unit)} ({self.how})"
        e = self.expected
        if e is None:
            return (
                f"expected cost of {self.jobs} job(s) to run: {money(self.low, self.unit)} to "
                f"{money(self.high, self.unit)} ({self.how})"
            )
        share = min(e.mean / self.jobs, 1.0)
        line = (
            f"expected cost of the expected {e.mean:.0f} job(s): "
            f"{money(self.low * share, self.unit)} to {money(self.high * share, self.unit)}; "
            f"of all {self.jobs}: {money(self.low, self.unit)} to "
            f"{money(self.high, self.unit)} ({self.how})"
        )
        return f"{e.describe()}\n{line}" if self.lead else line

    def with_expected(self, expected: Expected | None, lead: bool = True) -> Estimate:
        """This range for a run that sends up to ``jobs``, about ``expected.mean``."""
        return replace(self, expected=expected, lead=lead)


def money(value: float, unit: str = "usd", *, signed: bool = False) -> str:
    """An amount as every page shows money: the sign before the currency (``-$0.0161``, and
    ``+$0.0001`` when ``signed``, for differences), cents from a dollar up, four decimals
    below, and under $0.0001 two significant digits in plain decimals (``$0.000087``)."""
    sign = "-" if value < 0 else "+" if signed and value > 0 else ""
    size = abs(value)
    if unit == "credits":
        return f"{sign}{size:,.0f} credits"
    if size == 0:
        return "$0"
    if size >= 1:
        return f"{sign}${size:,.2f}"
    if size >= 0.0001:
        return f"{sign}${size:.4f}"
    decimals = 1 - math.floor(math.log10(size))  # two significant digits
    return f"{sign}${size:.{decimals}f}"


def from_history(jobs: int, earlier: Sequence[float], unit: str = "usd") -> Estimate | None:
    """From the spend of the jobs earlier sessions of this run priced (None: none priced)."""
    if not earlier:
        return None
    k = len(earlier)
    mean = sum(earlier) / k
    sd = math.sqrt(sum((x - mean) ** 2 for x in earlier) / (k - 1)) if k > 1 else 0.0
    margin = 2 * math.sqrt(jobs) * sd
    low = max(jobs * min(earlier), jobs * mean - margin)
    high = min(jobs * max(earlier), jobs * mean + margin)
    return Estimate(
        low,
        high,
        unit,
        jobs,
        f"the mean spend of the {k} job(s) earlier sessions of this run paid for, "
        f"{money(mean, unit)} a job, +/- 2 standard errors",
    )


@dataclass(frozen=True)
class AgentPrices:
    """What the calculate endpoint quoted for one agent."""

    per_message: Mapping[str, float]
    """LLM -> USD per message."""
    llm: str | None = None
    """The agent's own LLM, when known."""

    def bounds(self) -> tuple[float, float] | None:
        if self.llm is not None and self.llm in self.per_message:
            price = self.per_message[self.llm]
            return price, price
        if not self.per_message:
            return None
        return min(self.per_message.values()), max(self.per_message.values())


def from_prices(
    jobs: Iterable[tuple[str, int]], prices: Mapping[str, AgentPrices]
) -> Estimate | None:
    """``jobs``: (agent id, ``new_turns_limit``) of each job to run. None when an agent has no
    quote (the range would leave its jobs out)."""
    low = high = 0.0
    n = 0
    own = True
    for agent_id, turns in jobs:
        quote = prices.get(agent_id)
        bounds = quote.bounds() if quote is not None else None
        if bounds is None:
            return None
        own = own and quote is not None and quote.llm in quote.per_message
        n += 1
        low += bounds[0]
        high += max(turns, 1) * bounds[1] * HIGH_FACTOR
    if n == 0:
        return Estimate(0.0, 0.0, "usd", 0, "nothing to run")
    which = "the agent's LLM" if own else "the cheapest to the dearest LLM quoted"
    return Estimate(
        low,
        high,
        "usd",
        n,
        f"the vendor's price per message for {which} (llm-usage/calculate): from 1 agent "
        f"message a job to new_turns_limit messages at {HIGH_FACTOR:g}x the quote",
    )
