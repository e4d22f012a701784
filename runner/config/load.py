"""Loading a config: read, override, validate, then check across fields and files.

A config is read and checked completely before any request is sent: a typo found after an hour
of paid simulations is worth far less than one found in the first second. Loading streams the
scenario files once to validate; memory does not grow with the number of scenarios (apart from
the ids and request digests kept to reject duplicates).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from runner.config.assertions import AssertSpec
from runner.config.assertions import dump as dump_assertions
from runner.config.body import build_body, canonical_json, simulation_test_fields
from runner.config.errors import (
    ConfigError,
    describe,
    did_you_mean,
    display,
    from_validation,
    yaml_error,
)
from runner.config.models import (
    AGENT_AXES,
    DICT_AXES,
    MATRIX_AXES,
    Config,
    ScenarioFileRef,
    ScenarioSpec,
)
from runner.config.scenarios import UniqueKeyLoader, decode, file_stats, iter_located, read_bytes
from runner.wire.agent_testing import CONDITIONS_ID as AT_CONDITIONS_ID

# ---------------------------------------------------------------------------- validation


def _axis_kind(axis: str) -> str | None:
    if axis in MATRIX_AXES or axis in AGENT_AXES:
        return axis
    head, dot, rest = axis.partition(".")
    if dot and head in DICT_AXES and rest:
        return head
    return None


def _check_matrix(cfg: Config, where: str) -> None:
    for axis, values in cfg.matrix.items():
        field = f"matrix.{axis}"
        kind = _axis_kind(axis)
        if kind is None:
            options = [*MATRIX_AXES, *AGENT_AXES, *(f"{d}.<name>" for d in DICT_AXES)]
            raise ConfigError(f"{where}: {field}: unknown matrix axis{did_you_mean(axis, options)}")
        if not values:
            raise ConfigError(f"{where}: {field}: must list at least one value")
        seen: dict[str, int] = {}
        for i, value in enumerate(values):
            ok = {
                "language": isinstance(value, str) and value != "",
                "llm": isinstance(value, str) and value != "",
                "first_message": isinstance(value, str),
                "temperature": isinstance(value, int | float)
                and not isinstance(value, bool)
                and value >= 0,
                "new_turns_limit": isinstance(value, int)
                and not isinstance(value, bool)
                and value >= 1,
                "agent.llm": isinstance(value, str) and value != "",
                "agent.prompt": isinstance(value, str),
                "agent.first_message": isinstance(value, str),
                "agent.temperature": isinstance(value, int | float)
                and not isinstance(value, bool)
                and value >= 0,
            }.get(kind, True)
            if not ok:
                want = {
                    "temperature": "a number >= 0",
                    "agent.temperature": "a number >= 0",
                    "agent.prompt": "a string",
                    "new_turns_limit": "an integer >= 1",
                    "first_message": "a string",
                }.get(kind, "a non-empty string")
                raise ConfigError(f"{where}: {field}[{i}]: must be {want} (got {describe(value)})")
            numeric = kind in ("temperature", "agent.temperature")
            text = canonical_json(float(value) if numeric else value)
            if text in seen:
                raise ConfigError(
                    f"{where}: {field}[{i}]: duplicate value {describe(value)} "
                    f"(same as [{seen[text]}])"
                )
            seen[text] = i


def _check_agent_variants(cfg: Config, where: str) -> None:
    """Branches and agent axes need a backend that can send them: the simulate endpoints take
    no agent configuration, so such a config is refused before any request."""
    if cfg.target.backend == "agent-testing":
        return
    why = (
        f"the {cfg.target.backend} backend cannot express it (the simulate-conversation "
        "endpoints take no agent override or branch); use target.backend: agent-testing"
    )
    for axis in cfg.matrix:
        if axis in AGENT_AXES:
            raise ConfigError(f"{where}: matrix.{axis}: {why}")
    for i, agent in enumerate(cfg.agents):
        if agent.branch_id is not None:
            raise ConfigError(f"{where}: agents[{i}].branch_id: {why}")


def _check_test_fields(cfg: Config, spec: ScenarioSpec, where: str) -> None:
    """A scenario's simulation-test fields need the backend that sends them: elsewhere a
    conditional mock would answer every call, so such a config is refused before any
    request."""
    if cfg.target.backend == "agent-testing":
        return
    why = (
        f"the {cfg.target.backend} backend cannot express it (the simulate-conversation "
        "endpoints have no such field); use target.backend: agent-testing"
    )
    for name in ("environment", "evaluation_model"):
        if getattr(spec, name) is not None:
            raise ConfigError(f"{where}{name}: {why}")
    for tool, mocks in spec.mocks().items():
        if len(mocks) > 1:
            raise ConfigError(
                f"{where}tool_mocks.{tool}: the {cfg.target.backend} backend takes one mock per "
                "tool (the simulate-conversation endpoints have no parameter conditions); use "
                "target.backend: agent-testing"
            )
        if mocks[0].parameter_conditions:
            raise ConfigError(f"{where}tool_mocks.{tool}.parameter_conditions: {why}")


def _check_unique(items: Iterable[tuple[str, str]], where: str, what: str) -> None:
    seen: dict[str, str] = {}
    for field, ident in items:
        if ident in seen:
            raise ConfigError(f"{where}: {field}: duplicate {what} {ident!r} (also {seen[ident]})")
        seen[ident] = field


def _projection(body: dict[str, Any], axes: Iterable[str]) -> bytes:
    """The body without what the matrix overrides: equal projections mean colliding jobs."""
    dropped = json.loads(canonical_json(body))
    d_spec = dropped["simulation_specification"]
    d_user = d_spec["simulated_user_config"]
    for axis in axes:
        head, _, rest = axis.partition(".")
        if axis == "new_turns_limit":
            dropped.pop("new_turns_limit", None)
        elif axis in ("language", "first_message"):
            d_user.pop(axis, None)
        elif axis in ("llm", "temperature"):
            d_user.get("prompt", {}).pop(axis, None)
        elif head == "dynamic_variables":
            d_spec.get("dynamic_variables", {}).pop(rest, None)
        elif head == "user_dynamic_variables":
            placeholders = d_user.get("dynamic_variables", {})
            placeholders.get("dynamic_variable_placeholders", {}).pop(rest, None)
    return hashlib.sha256(canonical_json(dropped).encode()).digest()[:16]


def _validate_scenarios(cfg: Config, where: str) -> None:
    """Stream every scenario once: ids, criteria ids and colliding requests."""
    global_ids = {c.id: i for i, c in enumerate(cfg.criteria)}
    # Kept small on purpose (a few ints and a 16-byte digest a scenario): files may be huge.
    ids: dict[str, tuple[int, int]] = {}
    bodies: dict[bytes, str] = {}
    files = {
        i: display(cfg.resolve(e.file))
        for i, e in enumerate(cfg.scenarios)
        if isinstance(e, ScenarioFileRef)
    }

    def label(scenario_id: str) -> str:
        index, line = ids[scenario_id]
        return f"{files[index]}:{line}" if line else f"scenarios[{index}]"

    axes = list(cfg.matrix)
    judged = set(global_ids)  # the criteria a judge decides (agent-testing: merged into one)
    global_ids.update(_check_assert_ids(cfg.assert_, global_ids, where, "assert"))
    criterion_ids = set(global_ids)
    for located in iter_located(cfg, check_unchanged=False):
        spec = located.spec
        here, prefix = located.where, located.prefix
        if spec.id in ids:
            raise ConfigError(
                f"{here}: {prefix}id: duplicate scenario id {spec.id!r} (also {label(spec.id)})"
            )
        ids[spec.id] = (located.index, located.line)
        own: set[str] = set()
        for j, criterion in enumerate(spec.criteria):
            field = f"{prefix}criteria[{j}].id"
            if criterion.id in global_ids:
                raise ConfigError(
                    f"{here}: {field}: criterion id {criterion.id!r} is already used by "
                    f"criteria[{global_ids[criterion.id]}] (ids must be unique within a job)"
                )
            if criterion.id in own:
                raise ConfigError(f"{here}: {field}: duplicate criterion id {criterion.id!r}")
            own.add(criterion.id)
        judged |= own
        own |= set(
            _check_assert_ids(
                spec.assert_, {**global_ids, **dict.fromkeys(own, -1)}, here, f"{prefix}assert"
            )
        )
        criterion_ids |= own
        _check_test_fields(cfg, spec, f"{here}: {prefix}")
        digest = _projection(build_body(cfg, spec, ()), axes)
        fields = simulation_test_fields(cfg, spec)
        if fields:  # sent in the test beside the body: scenarios differing there differ
            digest = hashlib.sha256(digest + canonical_json(fields).encode()).digest()[:16]
        if digest in bodies:
            other = bodies[digest]
            raise ConfigError(
                f"{here}: {prefix}id: scenario {spec.id!r} sends the same requests as "
                f"{other!r} ({label(other)}); make them differ or use run.repeats"
            )
        bodies[digest] = spec.id
    if cfg.target.backend == "agent-testing":
        _check_merged_criteria(cfg, judged, where)
        criterion_ids = (criterion_ids - judged) | {AT_CONDITIONS_ID}
    _check_verdict_criteria(cfg, criterion_ids, where)
    if cfg.compare is not None:
        agents = [name for a in cfg.agents for name in (a.display, a.variant_name, a.id)]
        cfg.compare.check_against(agents, cfg.matrix, criterion_ids, where)
        seq = cfg.run.sequential
        if seq is not None and seq.until == "verdict":
            raise ConfigError(
                f"{where}: compare: a comparison decides how many pairs to run; it cannot be "
                "combined with run.repeats until: verdict (give run.repeats a number)"
            )


def _check_assert_ids(
    specs: list[AssertSpec], taken: Mapping[str, int], where: str, field: str
) -> dict[str, int]:
    """Assertion ids become criterion ids: unique within a job, criteria's included."""
    ids: dict[str, int] = {}
    for j, spec in enumerate(specs):
        here = f"{where}: {field}[{j}].id"
        if spec.id in taken:
            raise ConfigError(
                f"{here}: id {spec.id!r} is already a criterion or assertion id "
                "(ids must be unique within a job)"
            )
        if spec.id in ids:
            raise ConfigError(f"{here}: duplicate assertion id {spec.id!r}")
        ids[spec.id] = j
    return ids


def _check_merged_criteria(cfg: Config, judged: set[str], where: str) -> None:
    """Agent-testing judges every criterion in one result (``success_conditions``): an
    ``of`` that names one of them would never see it."""
    seq, compare = cfg.run.sequential, cfg.compare
    for field, of in (
        ("run.repeats.of", seq.of if seq is not None else "all"),
        ("compare.of", compare.of if compare is not None else "all"),
    ):
        for i, cid in enumerate([] if of == "all" else of):
            if cid in judged:
                raise ConfigError(
                    f"{where}: {field}[{i}]: backend agent-testing judges the criteria as one "
                    f"result, {AT_CONDITIONS_ID!r}; criterion {cid!r} has none of its own (use "
                    f"of: all, or {AT_CONDITIONS_ID})"
                )


def _check_verdict_criteria(cfg: Config, criterion_ids: set[str], where: str) -> None:
    """``run.repeats.of`` may list only criteria the config declares (globally or in a scenario)."""
    settings = cfg.run.sequential
    if settings is None or settings.of == "all":
        return
    for i, criterion in enumerate(settings.of):
        if criterion not in criterion_ids:
            known = ", ".join(sorted(criterion_ids)) or "none declared"
            raise ConfigError(
                f"{where}: run.repeats.of[{i}]: unknown criterion {criterion!r} (criteria: {known})"
            )


def _apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any], where: str) -> None:
    for dotted, value in overrides.items():
        parts: list[str] = dotted.split(".")
        if parts[0] == "matrix" and len(parts) > 1:
            parts = ["matrix", ".".join(parts[1:])]  # axis names contain dots
        node: Any = raw
        for depth, part in enumerate(parts[:-1]):
            here = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"{where}: {dotted}: override: no item {here}")
                node = node[int(part)]
            elif isinstance(node, dict):
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
            else:
                raise ConfigError(f"{where}: {dotted}: override: {here} is not a mapping")
        last = parts[-1]
        if isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"{where}: {dotted}: override: cannot set {dotted}")


def parse_config(
    data: Mapping[str, Any],
    source_path: str | Path,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Validate an already-read config mapping as if it came from ``source_path``."""
    source = Path(source_path).absolute()
    where = display(source)
    raw: dict[str, Any] = json.loads(json.dumps(data, default=str)) if data else {}
    # ``x-`` keys at the top hold YAML anchors for reuse (as in docker-compose files).
    raw = {k: v for k, v in raw.items() if not str(k).startswith("x-")}
    if "source_path" in raw:
        raise ConfigError(f"{where}: source_path: unknown key")
    _apply_overrides(raw, overrides or {}, where)
    try:
        cfg = Config.model_validate({**raw, "source_path": source})
    except ValidationError as exc:
        raise from_validation(where, exc, Config, overridden=list(overrides or {})) from None
    _check_unique(
        ((f"agents[{i}].id", a.variant_name) for i, a in enumerate(cfg.agents)),
        where,
        "agent id",
    )
    _check_unique(
        ((f"criteria[{i}].id", c.id) for i, c in enumerate(cfg.criteria)), where, "criterion id"
    )
    _check_matrix(cfg, where)
    _check_agent_variants(cfg, where)
    if cfg.run.name is None:
        cfg.run.name = _default_name(source)
    if cfg.target.local.seed is None:
        cfg.target.local.seed = cfg.run.seed
    if cfg.target.agent_testing.name_prefix is None:
        cfg.target.agent_testing.name_prefix = "convsim/" + _default_name(source)
    _validate_scenarios(cfg, where)
    return cfg


def _default_name(source: Path) -> str:
    """The file's stem, made a valid run name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", source.stem).strip(".") or "run"


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read, override and validate a config and every scenario file it names.

    ``overrides`` are dotted paths set before validation (``{"run.concurrency": 4}``). Raises
    ``ConfigError`` with one line naming the file, the field and the problem.
    """
    source = Path(path)
    where = display(source)
    data = read_bytes(source, where, "config file")
    try:
        raw = yaml.load(decode(data, where), Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise yaml_error(where, exc) from None
    if raw is None:
        raise ConfigError(f"{where}: <top level>: the file is empty")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{where}: <top level>: must be a mapping of sections (got {describe(raw)})"
        )
    return parse_config(raw, source, overrides)


def resolved_config(cfg: Config) -> dict[str, Any]:
    """The config with every default filled in, as JSON-able data; never holds a secret.

    Scenario files appear as their path (as written), sha256 and row count, so the digest of
    this dict changes whenever a file's content does.
    """
    out = cfg.model_dump(mode="json", exclude={"scenarios", "source_path", "assert_", "compare"})
    if cfg.compare is not None:  # absent when unset: configs without it keep their hash
        out["compare"] = cfg.compare.dump()
    if cfg.assert_:  # absent when empty: configs without assertions keep their hash
        out["assert"] = dump_assertions(cfg.assert_)
    if cfg.gate is None:  # absent when unset: configs without a gate keep their hash
        out.pop("gate", None)
    scenarios: list[dict[str, Any]] = []
    for entry in cfg.scenarios:
        if isinstance(entry, ScenarioFileRef):
            sha, count = file_stats(cfg, entry)
            scenarios.append({"file": entry.file, "sha256": sha, "scenarios": count})
        else:
            scenario = entry.model_dump(mode="json", exclude={"assert_"})
            if entry.assert_:
                scenario["assert"] = dump_assertions(entry.assert_)
            scenarios.append(scenario)
    out["scenarios"] = scenarios
    for agent, ref in zip(out["agents"], cfg.agents, strict=True):
        agent["label"] = ref.display
        if agent.get("branch_id") is None:
            agent.pop("branch_id", None)  # as before branches existed: the hash stays
    return out


def config_hash(cfg: Config) -> str:
    """sha256 of the resolved config (scenario files' content included by their digest)."""
    return hashlib.sha256(canonical_json(resolved_config(cfg)).encode()).hexdigest()
