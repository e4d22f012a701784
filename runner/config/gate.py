"""The ``gate:`` block: the thresholds a run must meet, applied by ``run`` at its end and read
by ``check`` by default.

```yaml
gate:
  min_pass_rate: 0.7            # every criterion's pass rate at least this
  criteria:                     # a criterion's own minimum (over min_pass_rate)
    declined_politely: 0.5
  min_pass_rate_overall: 0.6    # all criteria pooled
  use_lower_bound: false        # compare the 95% Wilson lower bound, not the observed rate
  by: []                        # gate each criterion per scenario, agent or jobs column
  max_error_rate: 0.05          # share of jobs that ended in error
  max_cost: 2.50                # USD, the whole run (every session)
  max_credits: null             # credits billed (agent-testing)
```

The checks themselves are ``runner.gate``'s (one implementation for ``run`` and ``check``);
``evaluate_kwargs`` hands it these fields. Its own models (no import of ``models``, which
holds a ``GateConfig``): unknown keys are errors, booleans are not numbers.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

_ID_RE = re.compile(r"[A-Za-z0-9_-]+")


def _number(value: Any) -> Any:
    if isinstance(value, bool):  # YAML reads `yes` as true; pydantic would take it as 1
        raise ValueError(f"must be a number (got {value!r})")
    return value


Rate = Annotated[float, BeforeValidator(_number), Field(ge=0, le=1)]
"""A share between 0 and 1."""
Amount = Annotated[float, BeforeValidator(_number), Field(ge=0)]


class GateConfig(BaseModel):
    """``gate:``: minimum pass rates (per criterion, one criterion's own, all pooled), a
    maximum error rate and a maximum spend. At least one threshold."""

    model_config = ConfigDict(extra="forbid")

    min_pass_rate: Rate | None = None
    """Every criterion's pass rate (success / decided) at least this."""
    criteria: dict[str, Rate] = Field(default_factory=dict)
    """A minimum per criterion id, over ``min_pass_rate``; without ``min_pass_rate`` only
    these criteria are gated."""
    min_pass_rate_overall: Rate | None = None
    """The pass rate of all criteria pooled at least this."""
    use_lower_bound: bool = False
    """Compare the 95% Wilson lower bound, not the observed rate, to the minimums."""
    by: list[str] = Field(default_factory=list)
    """Gate each criterion per group of these columns: scenario, agent or any jobs column."""
    max_error_rate: Rate | None = None
    """The share of jobs that ended in error at most this."""
    max_cost: Amount | None = None
    """The run's spend in USD (``jobs.cost_usd``, every session) at most this."""
    max_credits: Amount | None = None
    """The credits billed (``jobs.credits_used``; agent-testing) at most this."""

    @field_validator("criteria")
    @classmethod
    def _ids(cls, value: dict[str, float]) -> dict[str, float]:
        for key in value:
            if not _ID_RE.fullmatch(key):
                raise ValueError(
                    f"key {key!r} must be a criterion id (letters, digits, '_' and '-')"
                )
        return value

    @field_validator("max_cost", "max_credits")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"must be a finite number (got {value})")
        return value

    @model_validator(mode="after")
    def _some_threshold(self) -> GateConfig:
        thresholds = (
            self.min_pass_rate,
            self.min_pass_rate_overall,
            self.max_error_rate,
            self.max_cost,
            self.max_credits,
        )
        if not self.criteria and all(v is None for v in thresholds):
            raise ValueError(
                "gives no threshold: set min_pass_rate, criteria, min_pass_rate_overall,"
                " max_error_rate, max_cost or max_credits"
            )
        return self

    def evaluate_kwargs(self) -> dict[str, Any]:
        """The arguments of ``runner.gate.evaluate`` these thresholds are."""
        return {
            "min_pass_rate": self.min_pass_rate,
            "criterion_minimums": dict(self.criteria),
            "min_overall_pass_rate": self.min_pass_rate_overall,
            "use_lower_bound": self.use_lower_bound,
            "by": list(self.by),
            "max_error_rate": self.max_error_rate,
            "max_cost": self.max_cost,
            "max_credits": self.max_credits,
        }
