"""The ``compare:`` block (issue 26): which two variants a run compares, and how strictly.

```yaml
compare:
  baseline: support                 # an agent label (or id, or id@branch)
  candidate: {matrix: {agent.llm: gemini-2.0-flash-lite}}   # or a matrix arm
  margin: 0.05                      # non-inferiority margin on the pass rate, 0 <= margin < 1
  alpha: 0.05                       # each decision's error rate, 0 < alpha < 1
  max_pairs: 400                    # most (baseline, candidate) pairs
  of: all                           # what passing means: all criteria, or a list of ids
  error_as: fail                    # an errored job: a non-pass (fail) or drops its pair (skip)
```

``CompareConfig`` checks each field on its own (pydantic, one line through
``runner.config.errors``); ``check_against`` checks the fields against the rest of the config
(agents, matrix axes, criteria) and raises ``ConfigError`` naming the field, before any request.
``Config.compare`` holds it; ``load`` calls ``check_against`` once the scenarios are read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, ValidationError, WithJsonSchema

from runner.config import body  # a module, not a name: body imports models, which imports us
from runner.config.errors import (
    ConfigError,
    describe,
    display,
    from_validation,
    loc_text,
    problem,
)
from runner.config.models import Float, Int, Scalar, Strict
from runner.paired import NonInferiority


class MatrixArm(Strict):
    """One arm of the run's matrix: ``{matrix: {axis: value, ...}}``."""

    matrix: dict[str, Scalar] = Field(min_length=1)


def _variant(value: Any) -> str | MatrixArm:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict):
        try:
            return MatrixArm.model_validate(value)
        except ValidationError as exc:
            err = exc.errors()[0]
            path = loc_text(err["loc"])
            raise ValueError(f"{path}: {problem(err, MatrixArm)}") from None
    raise ValueError(
        "must be an agent label or a matrix arm {matrix: {axis: value}}"
        f" (got {describe(value)})"
    )


def _of(value: Any) -> Literal["all"] | list[str]:
    if value == "all":
        return "all"
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"must be all or a list of criterion ids (got {describe(value)})")
    if not value:
        raise ValueError("must not be empty")
    if len(set(value)) != len(value):
        raise ValueError(f"lists a criterion twice (got {value})")
    return list(value)


_VARIANT_SCHEMA = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {
            "type": "object",
            "properties": {"matrix": {"type": "object", "minProperties": 1}},
            "required": ["matrix"],
            "additionalProperties": False,
        },
    ]
}
_OF_SCHEMA = {
    "anyOf": [
        {"const": "all"},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
    ]
}
Variant = Annotated[str | MatrixArm, PlainValidator(_variant), WithJsonSchema(_VARIANT_SCHEMA)]
Of = Annotated[Literal["all"] | list[str], PlainValidator(_of), WithJsonSchema(_OF_SCHEMA)]


class CompareConfig(Strict):
    baseline: Variant
    candidate: Variant
    margin: Annotated[Float, Field(ge=0, lt=1)] = 0.05
    alpha: Annotated[Float, Field(gt=0, lt=1)] = 0.05
    max_pairs: Annotated[Int, Field(ge=1)] = 400
    of: Of = "all"
    error_as: Literal["fail", "skip"] = "fail"

    def dump(self) -> dict[str, Any]:
        """As JSON-able data (the resolved config)."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            out[name] = value.model_dump(mode="json") if isinstance(value, MatrixArm) else value
        return out

    def rule(self) -> NonInferiority:
        return NonInferiority(self.margin, self.alpha, self.max_pairs, self.error_as)

    def arm(self, side: Literal["baseline", "candidate"]) -> dict[str, str]:
        """The selector ``runner.paired_runs.select_arm`` takes: ``{"agent": label}`` or
        ``{"matrix.<axis>": value}`` (values as the jobs table spells them: strings)."""
        variant = getattr(self, side)
        if isinstance(variant, str):
            return {"agent": variant}
        return {f"matrix.{axis}": _cell_text(v) for axis, v in variant.matrix.items()}

    def check_against(
        self,
        agents: Iterable[str],
        matrix: Mapping[str, Sequence[Any]],
        criteria: Iterable[str],
        where: str = "config",
    ) -> None:
        """Each variant names a known agent (label, id or id@branch) or matrix value, the two
        differ, and ``of`` lists known criteria; one ``ConfigError`` line naming the field."""
        known_agents = list(dict.fromkeys(agents))
        for side in ("baseline", "candidate"):
            variant = getattr(self, side)
            if isinstance(variant, str):
                if variant not in known_agents:
                    raise ConfigError(
                        f"{where}: compare.{side}: no agent {variant!r} "
                        f"(agents: {', '.join(known_agents)})"
                    )
                continue
            for axis, value in variant.matrix.items():
                if axis not in matrix:
                    axes = ", ".join(matrix) or "none"
                    raise ConfigError(
                        f"{where}: compare.{side}.matrix.{axis}: no such matrix axis (axes: {axes})"
                    )
                if _cell_text(value) not in {_cell_text(v) for v in matrix[axis]}:
                    raise ConfigError(
                        f"{where}: compare.{side}.matrix.{axis}: {describe(value)} is not one of "
                        f"the axis's values"
                    )
        if self.arm("baseline") == self.arm("candidate"):
            raise ConfigError(f"{where}: compare.candidate: the same variant as the baseline")
        if self.of != "all":
            known = set(criteria)
            for i, cid in enumerate(self.of):
                if cid not in known:
                    raise ConfigError(f"{where}: compare.of[{i}]: no criterion {cid!r}")


def _cell_text(value: Any) -> str:
    """A matrix value as the ``matrix.*`` jobs column holds it (``runner.jobs.cell_text``)."""
    return value if isinstance(value, str) else body.canonical_json(value)


def parse_compare(data: Any, source_path: str | Path = "config.yaml") -> CompareConfig:
    """The ``compare:`` mapping, validated; errors read ``<file>: compare.<field>: ...``."""
    where = display(Path(source_path))
    try:
        return CompareConfig.model_validate(data)
    except ValidationError as exc:
        err = from_validation(where, exc, CompareConfig)
        text = str(err).replace(f"{where}: ", f"{where}: compare.", 1)
        raise ConfigError(text.replace("compare.<top level>", "compare")) from None
