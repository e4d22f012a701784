"""Sweep configuration: pydantic models, loading with one-line errors, and expansion into jobs.

A config is read and checked completely before any request is sent: a typo found after an hour
of paid simulations is worth far less than one found in the first second. Every problem becomes
one ``ConfigError`` whose text is ``<file>: <field path>: <problem>``, so the CLI prints one line
and exits 2. Unknown keys are rejected everywhere (with a "did you mean" hint) because a
misspelt option silently falls back to a default otherwise.

Scenarios may come from large files (``.jsonl``, ``.csv``, ``.yaml``). Loading streams them
once to validate, and ``iter_jobs`` streams them again: memory does not grow with the number
of scenarios or jobs (apart from the set of ids and request digests kept to reject duplicates).

A job is one request: agent x scenario x matrix cell x repeat. Its key is a digest of exactly
what is sent (agent id, body, repeat), so reordering the config keeps every key and a changed
scenario changes only its own jobs' keys: a resumed run redoes what changed, nothing else.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    PrivateAttr,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticKnownError

from runner.wire import (
    DynamicVariablesConfig,
    EvaluationCriterion,
    PromptConfig,
    SimulatedUserConfig,
    SimulationRequest,
    SimulationSpecification,
    ToolMockConfig,
    TranscriptMessage,
)

__all__ = [
    "MATRIX_AXES",
    "AgentRef",
    "AgentTestingConfig",
    "Config",
    "ConfigError",
    "CriterionSpec",
    "Job",
    "LocalServerConfig",
    "RetryPolicy",
    "RunConfig",
    "ScenarioFileRef",
    "ScenarioSpec",
    "TargetConfig",
    "Timeouts",
    "ToolMock",
    "build_body",
    "canonical_json",
    "config_hash",
    "count_jobs",
    "iter_jobs",
    "iter_scenarios",
    "job_key",
    "load_config",
    "parse_config",
    "resolved_config",
    "scenario_count",
]

SCENARIO_FILE_SUFFIXES = (".jsonl", ".csv", ".yaml", ".yml")
MATRIX_AXES = ("language", "llm", "temperature", "first_message", "new_turns_limit")
"""Scalar matrix axes; ``dynamic_variables.<name>`` and ``user_dynamic_variables.<name>`` too."""
_DICT_AXES = ("dynamic_variables", "user_dynamic_variables")
_ID_RE = re.compile(r"[A-Za-z0-9_-]+")
_SCENARIO_ID_RE = re.compile(r"[A-Za-z0-9_.:-]+")
_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UPPER_SNAKE_RE = re.compile(r"[A-Z_][A-Z0-9_]*")
_KEY_PREFIXES = ("sk_", "sk-", "xi_", "xi-")
# Tags of the scenario union; they contain a space so they never clash with a key in error paths.
_TAG_INLINE = "inline scenario"
_TAG_FILE = "scenario file"


class ConfigError(Exception):
    """An invalid config; ``str(e)`` is one line: ``<file>: <field path>: <problem>``."""


# ---------------------------------------------------------------------------- field types


def _reject_bool(kind: str) -> Any:
    """YAML turns ``yes``/``true`` into booleans, which pydantic would quietly read as 1."""

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"must be {kind} (got {_describe(value)})")
        return value

    return BeforeValidator(check)


Int = Annotated[int, _reject_bool("an integer")]
Float = Annotated[float, _reject_bool("a number")]


def _check_scalar(value: Any) -> Any:
    if value is None or not isinstance(value, str | int | float | bool):
        raise ValueError(f"must be a string, number or boolean (got {_describe(value)})")
    return value


Scalar = Annotated[str | int | float | bool, BeforeValidator(_check_scalar)]
"""A dynamic variable's value: the API takes strings, numbers and booleans."""


def _check_id(value: str, pattern: re.Pattern[str], allowed: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"must be non-empty and contain only {allowed} (got {value!r})")
    return value


class Strict(BaseModel):
    """Base of config models: a misspelt key is an error, not a silently ignored option."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------- target


class Timeouts(Strict):
    """Seconds. ``first_byte``: until the first frame; ``idle``: longest gap between frames."""

    connect: Float = Field(default=10.0, gt=0)
    first_byte: Float = Field(default=60.0, gt=0)
    idle: Float = Field(default=60.0, gt=0)
    total: Float = Field(default=600.0, gt=0)


class LocalServerConfig(Strict):
    """Options for the bundled local API, used only when ``target.base_url`` is ``local``."""

    time_scale: Float = Field(default=1.0, ge=0)
    seed: Int | None = None
    """``None`` in the file means ``run.seed``; ``load_config`` fills it in."""
    args: list[str] = Field(default_factory=list)
    """Extra flags for ``python -m runner serve``."""


class AgentTestingConfig(Strict):
    """Options of ``backend: agent-testing`` (server-side simulation tests; see
    ``runner.agent_testing``). Seconds for the times."""

    poll_interval: Float = Field(default=2.0, gt=0)
    """First wait between polls of an invocation; grows 1.5x per poll up to the max."""
    poll_interval_max: Float = Field(default=30.0, gt=0)
    deadline: Float = Field(default=3600.0, gt=0)
    """From starting (or re-attaching to) an invocation until its jobs fail ``total_timeout``;
    a later run re-attaches to it."""
    bucketing_wait: Float = Field(default=120.0, ge=0)
    """Once every run is done, how long to wait for the vendor's result buckets."""
    name_prefix: str | None = Field(default=None, min_length=1, max_length=80)
    """Tests are named ``<prefix> <scenario> [<hash>]``; ``None`` in the file means
    ``convsim/<config file name>`` (``load_config`` fills it in)."""
    folder_id: str | None = None
    """Create (and look for) the tests in this folder (``parent_folder_id``)."""
    evaluation_model: str | None = None
    """LLM that judges the success conditions (the vendor's default when unset)."""
    default_success_condition: str = Field(
        default="The agent understood the user's requests and handled them correctly.",
        min_length=1,
    )
    """Used for a scenario with no criteria: a simulation test needs at least one."""

    @field_validator("name_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is not None and (value != value.strip() or any(c in value for c in "[]\n")):
            raise ValueError(
                f"must not contain '[', ']' or line breaks, nor start or end with a space "
                f"(got {value!r})"
            )
        return value

    @model_validator(mode="after")
    def _max_above_first(self) -> AgentTestingConfig:
        if self.poll_interval_max < self.poll_interval:
            raise ValueError(
                f"poll_interval_max ({self.poll_interval_max:g}) must be at least "
                f"poll_interval ({self.poll_interval:g})"
            )
        return self


class TargetConfig(Strict):
    base_url: str = "local"
    backend: Literal["stream", "buffered", "agent-testing"] = "stream"
    api_key_env: str = "ELEVENLABS_API_KEY"
    timeouts: Timeouts = Field(default_factory=Timeouts)
    local: LocalServerConfig = Field(default_factory=LocalServerConfig)
    agent_testing: AgentTestingConfig = Field(default_factory=AgentTestingConfig)

    @property
    def is_local(self) -> bool:
        return self.base_url == "local"

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        if value == "local":
            return value
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in ("http", "https") or not rest.strip("/"):
            raise ValueError(f"must be 'local' or an http(s) URL (got {value!r})")
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        # The value is never echoed: if it is a key, echoing it would put it in logs.
        looks_like_key = value.lower().startswith(_KEY_PREFIXES) or (
            len(value) >= 24
            and not _UPPER_SNAKE_RE.fullmatch(value)
            and any(ch.isdigit() for ch in value)
        )
        if looks_like_key:
            raise ValueError(
                "looks like an API key, not the NAME of an environment variable; put the key in "
                "an environment variable (e.g. ELEVENLABS_API_KEY) and name that variable here"
            )
        if not _ENV_NAME_RE.fullmatch(value):
            raise ValueError(
                "must be the name of an environment variable (letters, digits and '_', "
                "e.g. ELEVENLABS_API_KEY)"
            )
        return value


# ---------------------------------------------------------------------------- run


class RetryPolicy(Strict):
    max_attempts: Int = Field(default=5, ge=1)
    backoff_base: Float = Field(default=1.0, ge=0)
    backoff_cap: Float = Field(default=60.0, ge=0)
    jitter: Float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _cap_above_base(self) -> RetryPolicy:
        if self.backoff_cap < self.backoff_base:
            raise ValueError(
                f"backoff_cap ({self.backoff_cap:g}) must be at least backoff_base "
                f"({self.backoff_base:g})"
            )
        return self


_POSITIVE_INT: TypeAdapter[int] = TypeAdapter(Annotated[Int, Field(ge=1)])


def _concurrency_value(value: Any) -> int | Literal["auto"]:
    """``auto`` or an integer >= 1, with the same messages as every other integer field."""
    if value == "auto":
        return "auto"
    try:
        return _POSITIVE_INT.validate_python(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        if error["type"] in ("int_parsing", "int_type"):
            raise ValueError(f"must be an integer or 'auto' (got {_describe(value)})") from None
        raise PydanticKnownError(error["type"], error.get("ctx")) from None  # type: ignore[arg-type]


class RunConfig(Strict):
    name: str | None = None
    """Results go to ``results/<name>/``; ``load_config`` fills in the config file's stem."""
    concurrency: Annotated[int | Literal["auto"], PlainValidator(_concurrency_value)] = 8
    """Simulations in flight, or ``auto``: find the account's quota and hold it (see
    ``runner.adaptive``)."""
    max_concurrency: Int | None = Field(default=None, ge=1)
    """``auto`` never goes above this (default ``runner.adaptive.DEFAULT_CAP``)."""
    requests_per_minute: Float | None = Field(default=None, gt=0)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    new_turns_limit: Int = Field(default=12, ge=1)
    repeats: Int = Field(default=1, ge=1)
    seed: Int = 0
    shutdown_grace: Float = Field(default=30.0, ge=0)
    """Seconds in-flight simulations get to finish after Ctrl-C / SIGTERM."""
    circuit_breaker: Int = Field(default=50, ge=0)
    """Stop the run when this many attempts in a row failed the same way (0: never)."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None:
            _check_id(value, _NAME_RE, "letters, digits, '.', '_' and '-'")
            if set(value) == {"."}:
                raise ValueError(f"must name a directory, not {value!r}")
        return value

    @field_validator("max_concurrency")
    @classmethod
    def _max_concurrency(cls, value: int | None, info: ValidationInfo) -> int | None:
        concurrency = info.data.get("concurrency", "auto")
        if value is not None and concurrency != "auto":
            raise ValueError(f"only used with concurrency: auto (concurrency is {concurrency})")
        return value


# ---------------------------------------------------------------------------- agents, criteria


class AgentRef(Strict):
    id: str
    label: str | None = None
    """Short name for tables and reports; defaults to the id."""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _check_id(value, _ID_RE, "letters, digits, '_' and '-'")

    @property
    def display(self) -> str:
        return self.label or self.id


class CriterionSpec(EvaluationCriterion):
    """An extra evaluation criterion: the wire model's fields, but typos are errors here."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _check_id(value, _ID_RE, "letters, digits, '_' and '-'")


# ---------------------------------------------------------------------------- scenarios


class ToolMock(Strict):
    return_value: str = "Tool Called."
    is_error: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):  # `lookup_order: "shipped"` means the return value
            return {"return_value": value}
        return value

    @field_validator("return_value", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        # The API wants text; a structured value in YAML is sent as its JSON.
        if isinstance(value, dict | list):
            return json.dumps(value, ensure_ascii=False)
        return value


class ScenarioSpec(Strict):
    """One simulated user: persona, opening line, variables, mocks and extra criteria."""

    id: str
    first_message: str = ""
    prompt: str = ""
    """The simulated user's persona and situation."""
    llm: str | None = None
    """Any string: the server decides which models it accepts."""
    temperature: Float | None = Field(default=None, ge=0)
    language: str = Field(default="en", min_length=1)
    new_turns_limit: Int | None = Field(default=None, ge=1)
    """Overrides ``run.new_turns_limit`` for this scenario."""
    dynamic_variables: dict[str, Scalar] = Field(default_factory=dict)
    user_dynamic_variables: dict[str, Scalar] = Field(default_factory=dict)
    history: list[TranscriptMessage] = Field(default_factory=list)
    tool_mocks: dict[str, ToolMock] = Field(default_factory=dict)
    criteria: list[CriterionSpec] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    """Free labels for grouping results; not sent."""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _check_id(value, _SCENARIO_ID_RE, "letters, digits, '_', '-', '.' and ':'")

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        if isinstance(value, str):  # CSV cells: "a;b"
            return [t.strip() for t in value.split(";") if t.strip()]
        return value


class ScenarioFileRef(Strict):
    """Scenarios from a file, relative to the config file."""

    file: str = Field(min_length=1)
    _sha256: str | None = PrivateAttr(default=None)
    _count: int | None = PrivateAttr(default=None)

    @field_validator("file")
    @classmethod
    def _suffix(cls, value: str) -> str:
        if not value.lower().endswith(SCENARIO_FILE_SUFFIXES):
            raise ValueError(f"must end in {', '.join(SCENARIO_FILE_SUFFIXES)} (got {value!r})")
        return value


def _scenario_kind(value: Any) -> str:
    return _TAG_FILE if isinstance(value, dict) and "file" in value else _TAG_INLINE


ScenarioEntry = Annotated[
    Annotated[ScenarioSpec, Tag(_TAG_INLINE)] | Annotated[ScenarioFileRef, Tag(_TAG_FILE)],
    Discriminator(_scenario_kind),
]


# ---------------------------------------------------------------------------- config


class Config(Strict):
    target: TargetConfig = Field(default_factory=TargetConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    agents: list[AgentRef] = Field(min_length=1)
    criteria: list[CriterionSpec] = Field(default_factory=list)
    scenarios: list[ScenarioEntry] = Field(min_length=1)
    matrix: dict[str, list[Scalar]] = Field(default_factory=dict)
    source_path: Path = Field(default_factory=lambda: Path("config.yaml").absolute(), exclude=True)
    """Absolute path of the config file; scenario files are relative to its folder."""

    def resolve(self, relative: str | Path) -> Path:
        """A path written in the config, relative to the config file's folder."""
        return self.source_path.parent / Path(relative).expanduser()

    def scenario_files(self) -> list[Path]:
        return [self.resolve(s.file) for s in self.scenarios if isinstance(s, ScenarioFileRef)]

    def matrix_cells(self) -> Iterator[tuple[tuple[str, Any], ...]]:
        """Every combination of the matrix axes, in config order; one empty cell if none."""
        axes = list(self.matrix)
        for values in itertools.product(*(self.matrix[a] for a in axes)):
            yield tuple(zip(axes, values, strict=True))

    def cell_count(self) -> int:
        return math.prod(len(values) for values in self.matrix.values())


# ---------------------------------------------------------------------------- errors


def _display(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any) -> Any:
    """``0.0`` reads as ``0`` in messages about limits."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _loc_text(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if part in (_TAG_INLINE, _TAG_FILE):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _unwrap(tp: Any) -> list[Any]:
    """The concrete types inside ``Annotated``/``Optional``/unions."""
    import types
    import typing

    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(tp) for t in _unwrap(a)]
    return [tp]


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that owns the key at ``loc``: for the "did you mean" hint."""
    import typing

    candidates: list[Any] = [root]
    for part in loc:
        if part in (_TAG_INLINE, _TAG_FILE):
            tag_type = ScenarioSpec if part == _TAG_INLINE else ScenarioFileRef
            candidates = [c for c in candidates if c is tag_type]
            continue
        nxt: list[Any] = []
        for cand in candidates:
            for tp in _unwrap(cand):
                if isinstance(tp, type) and issubclass(tp, BaseModel):
                    field = tp.model_fields.get(str(part))
                    if field is not None:
                        nxt.extend(_unwrap(field.annotation))
                elif typing.get_origin(tp) is list and isinstance(part, int):
                    nxt.extend(_unwrap(typing.get_args(tp)[0]))
                elif typing.get_origin(tp) is dict and isinstance(part, str):
                    nxt.extend(_unwrap(typing.get_args(tp)[1]))
        candidates = nxt
    models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if len(models) == 1 else None


_SYNONYMS = {
    "persona": "prompt",
    "system_prompt": "prompt",
    "max_turns": "new_turns_limit",
    "turns": "new_turns_limit",
    "mocks": "tool_mocks",
    "variables": "dynamic_variables",
    "conversation_history": "history",
    "evaluation_criteria": "criteria",
    "workers": "concurrency",
}
"""Keys people reach for from other tools, and what this config calls them."""


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    options = sorted(options)
    if _SYNONYMS.get(word) in options:
        return f" (did you mean {_SYNONYMS[word]!r}?)"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (allowed: {', '.join(options)})" if options else ""


def _problem(err: Mapping[str, Any], root: type[BaseModel]) -> str:
    """One pydantic error as a short sentence, without pydantic's boilerplate."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    got = f" (got {_describe(value)})"
    ctx = {k: _number(v) for k, v in ctx.items()}
    if kind == "missing":
        return "is required"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind == "extra_forbidden":
        loc = tuple(err["loc"])
        model = _model_at(root, loc[:-1])
        options = [k for k in model.model_fields if k != "source_path"] if model else []
        if model is ScenarioSpec:
            options.append("file")  # `- flie: x.jsonl` is a misspelt file entry
        return "unknown key" + _did_you_mean(str(loc[-1]), options)
    if kind in ("value_error", "assertion_error"):
        msg = str(err["msg"])
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        return msg
    simple = {
        "greater_than": f"must be greater than {ctx.get('gt')}",
        "greater_than_equal": f"must be at least {ctx.get('ge')}",
        "less_than": f"must be less than {ctx.get('lt')}",
        "less_than_equal": f"must be at most {ctx.get('le')}",
        "int_parsing": "must be an integer",
        "int_type": "must be an integer",
        "int_from_float": "must be a whole number",
        "float_parsing": "must be a number",
        "float_type": "must be a number",
        "bool_parsing": "must be true or false",
        "bool_type": "must be true or false",
        "list_type": "must be a list",
        "dict_type": "must be a mapping",
        "model_type": "must be a mapping",
        "model_attributes_type": "must be a mapping",
        "literal_error": f"must be {ctx.get('expected')}",
        "string_too_long": f"must be at most {ctx.get('max_length')} characters",
    }
    if kind == "string_type":
        hint = (
            " (quote it: YAML reads yes/no/on/off as booleans)" if isinstance(value, bool) else ""
        )
        return f"must be a string{got}{hint}"
    if kind == "string_too_long":
        return f"{simple[kind]} (got {len(str(value))})"
    if kind in simple:
        return simple[kind] + got
    msg = str(err["msg"])
    return msg[:1].lower() + msg[1:] + got


def _from_validation(
    where: str,
    exc: ValidationError,
    root: type[BaseModel],
    overridden: Iterable[str] = (),
) -> ConfigError:
    # A misspelt key also shows up as a missing one: the unknown key is the real news.
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    path = _loc_text(first["loc"]) or "<top level>"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    by_override = any(path == o or path.startswith((f"{o}.", f"{o}[")) for o in overridden)
    note = " (set by an override)" if by_override else ""
    return ConfigError(f"{where}: {path}: {_problem(first, root)}{note}{more}")


# ---------------------------------------------------------------------------- YAML


class _UniqueKeyLoader(yaml.SafeLoader):
    """A second ``run:`` block would silently replace the first one: reject duplicate keys."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type]
)


def _yaml_error(where: str, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        problem += f" ({context} at line {context_mark.line + 1})"
    if mark is not None:
        return ConfigError(f"{where}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {problem}")
    return ConfigError(f"{where}: invalid YAML: {problem}")


def _os_error(exc: OSError, where: str, what: str) -> ConfigError:
    if isinstance(exc, FileNotFoundError):
        return ConfigError(f"{where}: {what} not found")
    if isinstance(exc, IsADirectoryError):
        return ConfigError(f"{where}: {what} is a directory, not a file")
    if isinstance(exc, PermissionError):
        return ConfigError(f"{where}: cannot read {what}: permission denied")
    return ConfigError(f"{where}: cannot read {what}: {exc.strerror or exc}")


def _read_bytes(path: Path, where: str, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _os_error(exc, where, what) from None


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text (bad byte at offset {exc.start})") from None


# ---------------------------------------------------------------------------- scenario files


_CSV_SCALARS = (
    "id",
    "first_message",
    "prompt",
    "llm",
    "temperature",
    "language",
    "new_turns_limit",
    "tags",
)


class _Digest:
    """sha256 of a file as it is streamed, so a later change can be noticed."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def lines(self, path: Path, where: str) -> Iterator[tuple[int, str]]:
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise _os_error(exc, where, "scenario file") from None
        with handle:
            for lineno, raw in enumerate(handle, start=1):
                self._h.update(raw)
                yield lineno, _decode(raw, f"{where}:{lineno}")

    def update(self, data: bytes) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def _jsonl_rows(path: Path, where: str, digest: _Digest) -> Iterator[tuple[int, Any]]:
    for lineno, text in digest.lines(path, where):
        if not text.strip():
            continue
        try:
            yield lineno, json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}:{lineno}: invalid JSON: {exc.msg}") from None


def _csv_rows(path: Path, where: str, digest: _Digest) -> Iterator[tuple[int, Any]]:
    lines = digest.lines(path, where)
    texts = (text for _, text in lines)
    reader = csv.reader(texts)
    header = next(reader, None)
    if header is None:
        return
    header = [h.strip() for h in header]
    for name in header:
        head, dot, rest = name.partition(".")
        if dot and head in _DICT_AXES and rest:
            continue
        if name not in _CSV_SCALARS:
            options = [*_CSV_SCALARS, "dynamic_variables.<name>", "user_dynamic_variables.<name>"]
            raise ConfigError(
                f"{where}:1: column {name!r}: unknown column{_did_you_mean(name, options)}"
            )
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise ConfigError(f"{where}:1: column {dupes[0]!r}: appears twice")
    start = reader.line_num + 1
    for cells in reader:
        lineno, start = start, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise ConfigError(
                f"{where}:{lineno}: row has {len(cells)} cells but the header has {len(header)}"
            )
        row: dict[str, Any] = {}
        for name, cell in zip(header, cells, strict=True):
            if cell == "":
                continue  # an empty cell means "not set": the field's default
            head, dot, rest = name.partition(".")
            if dot:
                row.setdefault(head, {})[rest] = cell
            else:
                row[name] = cell
        yield lineno, row


def _yaml_rows(path: Path, where: str, digest: _Digest) -> Iterator[tuple[int, Any]]:
    data = _read_bytes(path, where, "scenario file")
    digest.update(data)
    text = _decode(data, where)
    try:
        root = yaml.compose(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise _yaml_error(where, exc) from None
    if root is None:
        return
    if not isinstance(root, yaml.SequenceNode):
        raise ConfigError(f"{where}: top level must be a list of scenarios")
    for node in root.value:
        loader = _UniqueKeyLoader("")
        try:
            item = loader.construct_document(node)
        except yaml.YAMLError as exc:
            raise _yaml_error(where, exc) from None
        yield node.start_mark.line + 1, item


def _iter_file(path: Path, where: str, digest: _Digest) -> Iterator[tuple[int, ScenarioSpec]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = _jsonl_rows(path, where, digest)
    elif suffix == ".csv":
        rows = _csv_rows(path, where, digest)
    else:
        rows = _yaml_rows(path, where, digest)
    for lineno, row in rows:
        if not isinstance(row, dict):
            raise ConfigError(
                f"{where}:{lineno}: a scenario must be a mapping (got {_describe(row)})"
            )
        try:
            yield lineno, ScenarioSpec.model_validate(row)
        except ValidationError as exc:
            raise _from_validation(f"{where}:{lineno}", exc, ScenarioSpec) from None


@dataclass(frozen=True, slots=True)
class _Located:
    """A scenario and where it was written, for error messages."""

    spec: ScenarioSpec
    file: str  # the config file for inline scenarios, else the scenario file (as displayed)
    index: int  # position in the config's `scenarios` list
    line: int  # line in the scenario file; 0 for inline scenarios

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    @property
    def prefix(self) -> str:
        """Field path prefix of the scenario's own fields: "scenarios[3]." when inline."""
        return "" if self.line else f"scenarios[{self.index}]."


def _iter_located(cfg: Config, *, check_unchanged: bool) -> Iterator[_Located]:
    config_where = _display(cfg.source_path)
    for index, entry in enumerate(cfg.scenarios):
        if isinstance(entry, ScenarioSpec):
            yield _Located(entry, config_where, index, 0)
            continue
        path = cfg.resolve(entry.file)
        where = _display(path)
        if not path.exists():
            raise ConfigError(
                f"{config_where}: scenarios[{index}].file: no such file {entry.file!r} "
                f"(looked for {where})"
            )
        digest = _Digest()
        count = 0
        for lineno, spec in _iter_file(path, where, digest):
            count += 1
            yield _Located(spec, where, index, lineno)
        if count == 0:
            raise ConfigError(f"{config_where}: scenarios[{index}].file: {where} has no scenarios")
        if check_unchanged and entry._sha256 not in (None, digest.hexdigest()):
            raise ConfigError(f"{where}: changed since the config was loaded; load it again")
        entry._sha256 = digest.hexdigest()
        entry._count = count


def iter_scenarios(cfg: Config) -> Iterator[ScenarioSpec]:
    """Every scenario in config order, inline ones and file rows alike, streamed."""
    for located in _iter_located(cfg, check_unchanged=True):
        yield located.spec


# ---------------------------------------------------------------------------- validation


def _axis_kind(axis: str) -> str | None:
    if axis in MATRIX_AXES:
        return axis
    head, dot, rest = axis.partition(".")
    if dot and head in _DICT_AXES and rest:
        return head
    return None


def _check_matrix(cfg: Config, where: str) -> None:
    for axis, values in cfg.matrix.items():
        field = f"matrix.{axis}"
        kind = _axis_kind(axis)
        if kind is None:
            options = [*MATRIX_AXES, *(f"{d}.<name>" for d in _DICT_AXES)]
            raise ConfigError(
                f"{where}: {field}: unknown matrix axis{_did_you_mean(axis, options)}"
            )
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
            }.get(kind, True)
            if not ok:
                want = {
                    "temperature": "a number >= 0",
                    "new_turns_limit": "an integer >= 1",
                    "first_message": "a string",
                }.get(kind, "a non-empty string")
                raise ConfigError(f"{where}: {field}[{i}]: must be {want} (got {_describe(value)})")
            text = canonical_json(float(value) if kind == "temperature" else value)
            if text in seen:
                raise ConfigError(
                    f"{where}: {field}[{i}]: duplicate value {_describe(value)} "
                    f"(same as [{seen[text]}])"
                )
            seen[text] = i


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
        i: _display(cfg.resolve(e.file))
        for i, e in enumerate(cfg.scenarios)
        if isinstance(e, ScenarioFileRef)
    }

    def label(scenario_id: str) -> str:
        index, line = ids[scenario_id]
        return f"{files[index]}:{line}" if line else f"scenarios[{index}]"

    axes = list(cfg.matrix)
    for located in _iter_located(cfg, check_unchanged=False):
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
        digest = _projection(build_body(cfg, spec, ()), axes)
        if digest in bodies:
            other = bodies[digest]
            raise ConfigError(
                f"{here}: {prefix}id: scenario {spec.id!r} sends the same requests as "
                f"{other!r} ({label(other)}); make them differ or use run.repeats"
            )
        bodies[digest] = spec.id


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
    where = _display(source)
    raw: dict[str, Any] = json.loads(json.dumps(data, default=str)) if data else {}
    # ``x-`` keys at the top hold YAML anchors for reuse (as in docker-compose files).
    raw = {k: v for k, v in raw.items() if not str(k).startswith("x-")}
    if "source_path" in raw:
        raise ConfigError(f"{where}: source_path: unknown key")
    _apply_overrides(raw, overrides or {}, where)
    try:
        cfg = Config.model_validate({**raw, "source_path": source})
    except ValidationError as exc:
        raise _from_validation(where, exc, Config, overridden=list(overrides or {})) from None
    _check_unique(((f"agents[{i}].id", a.id) for i, a in enumerate(cfg.agents)), where, "agent id")
    _check_unique(
        ((f"criteria[{i}].id", c.id) for i, c in enumerate(cfg.criteria)), where, "criterion id"
    )
    _check_matrix(cfg, where)
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
    where = _display(source)
    data = _read_bytes(source, where, "config file")
    try:
        raw = yaml.load(_decode(data, where), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise _yaml_error(where, exc) from None
    if raw is None:
        raise ConfigError(f"{where}: <top level>: the file is empty")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{where}: <top level>: must be a mapping of sections (got {_describe(raw)})"
        )
    return parse_config(raw, source, overrides)


# ---------------------------------------------------------------------------- jobs


@dataclass(frozen=True, slots=True)
class Job:
    """One request to send: agent x scenario x matrix cell x repeat.

    ``body`` is shared by every job of the same scenario and cell (read it, never change it);
    ``content`` is that body as the exact bytes sent, encoded once for all of them.
    """

    key: str
    agent_id: str
    agent_label: str
    scenario_id: str
    matrix: tuple[tuple[str, str], ...]
    repeat: int
    body: dict[str, Any]
    content: bytes = b""

    def __post_init__(self) -> None:
        if not self.content:  # a job built by hand: encode its body here, once
            object.__setattr__(self, "content", encode_body(self.body))


def encode_body(body: Mapping[str, Any]) -> bytes:
    """A request body as the exact bytes sent."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces: the same data always gives the same text (and digest)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def job_key(agent_id: str, body: Mapping[str, Any], repeat: int) -> str:
    """A job's stable identity: what is sent, to whom, and which repeat (resume relies on it)."""
    return _key_hasher(agent_id, canonical_json(body))(repeat)


def _key_hasher(agent_id: str, canonical_body: str) -> Callable[[int], str]:
    """``job_key`` for one agent and body, the shared part hashed once: the same digest as
    ``canonical_json({"agent_id", "body", "repeat"})`` (its keys sort in that order)."""
    head = hashlib.sha256(
        f'{{"agent_id":{canonical_json(agent_id)},"body":{canonical_body},"repeat":'.encode()
    )

    def key(repeat: int) -> str:
        h = head.copy()
        h.update(b"%d}" % repeat)
        return h.hexdigest()[:24]

    return key


def _cell_text(value: Any) -> str:
    return value if isinstance(value, str) else canonical_json(value)


def build_body(
    cfg: Config, spec: ScenarioSpec, cell: tuple[tuple[str, Any], ...]
) -> dict[str, Any]:
    """The exact request body for one scenario in one matrix cell."""
    fields: dict[str, Any] = {
        "first_message": spec.first_message,
        "language": spec.language,
        "llm": spec.llm,
        "temperature": spec.temperature,
        "new_turns_limit": spec.new_turns_limit or cfg.run.new_turns_limit,
    }
    dynamic = dict(spec.dynamic_variables)
    placeholders = dict(spec.user_dynamic_variables)
    for axis, value in cell:
        head, dot, rest = axis.partition(".")
        if head == "dynamic_variables" and dot:
            dynamic[rest] = value
        elif head == "user_dynamic_variables" and dot:
            placeholders[rest] = value
        else:
            fields[axis] = float(value) if axis == "temperature" else value
    criteria = [*cfg.criteria, *spec.criteria]
    request = SimulationRequest(
        simulation_specification=SimulationSpecification(
            simulated_user_config=SimulatedUserConfig(
                first_message=fields["first_message"],
                language=fields["language"],
                prompt=PromptConfig(
                    prompt=spec.prompt, llm=fields["llm"], temperature=fields["temperature"]
                ),
                dynamic_variables=(
                    DynamicVariablesConfig(dynamic_variable_placeholders=placeholders)
                    if placeholders
                    else None
                ),
            ),
            tool_mock_config=(
                {
                    name: ToolMockConfig(
                        default_return_value=mock.return_value, default_is_error=mock.is_error
                    )
                    for name, mock in spec.tool_mocks.items()
                }
                or None
            ),
            partial_conversation_history=spec.history or None,
            dynamic_variables=dynamic or None,
        ),
        extra_evaluation_criteria=(
            [EvaluationCriterion.model_validate(c.model_dump()) for c in criteria] or None
        ),
        new_turns_limit=fields["new_turns_limit"],
    )
    return request.to_json_body()


REUSED_CELLS = 4096
"""Sweeps with at most this many scenario x cell combinations build each request body once and
reuse it for every repeat; larger ones stream their scenario files again for each repeat, so
memory never grows with a sweep's size."""


@dataclass(frozen=True, slots=True)
class _Cell:
    """What every job of one scenario in one matrix cell shares."""

    scenario_id: str
    labels: tuple[tuple[str, str], ...]
    body: dict[str, Any]
    content: bytes
    keys: tuple[Callable[[int], str], ...]  # per agent: repeat -> job key


def _iter_cells(cfg: Config) -> Iterator[_Cell]:
    for spec in iter_scenarios(cfg):
        for cell in cfg.matrix_cells():
            body = build_body(cfg, spec, cell)
            canonical = canonical_json(body)
            yield _Cell(
                scenario_id=spec.id,
                labels=tuple(sorted((axis, _cell_text(value)) for axis, value in cell)),
                body=body,
                content=encode_body(body),
                keys=tuple(_key_hasher(agent.id, canonical) for agent in cfg.agents),
            )


def iter_jobs(cfg: Config) -> Iterator[Job]:
    """Every job, lazily: for repeat, for scenario, for matrix cell, for agent.

    Repeat-major order means a partial run has covered every scenario early. Scenario files
    are streamed again (and checked unchanged since loading), unless the sweep is small enough
    to keep its cells (``REUSED_CELLS``).
    """
    reuse = cfg.run.repeats > 1 and scenario_count(cfg) * cfg.cell_count() <= REUSED_CELLS
    kept: list[_Cell] = []
    for repeat in range(cfg.run.repeats):
        cells = kept if reuse and repeat > 0 else _iter_cells(cfg)
        for c in cells:
            if reuse and repeat == 0:
                kept.append(c)
            for agent, key in zip(cfg.agents, c.keys, strict=True):
                yield Job(
                    key=key(repeat),
                    agent_id=agent.id,
                    agent_label=agent.display,
                    scenario_id=c.scenario_id,
                    matrix=c.labels,
                    repeat=repeat,
                    body=c.body,
                    content=c.content,
                )


def _file_stats(cfg: Config, ref: ScenarioFileRef) -> tuple[str, int]:
    if ref._sha256 is None or ref._count is None:
        for _ in _iter_located(cfg, check_unchanged=False):
            pass
    assert ref._sha256 is not None and ref._count is not None
    return ref._sha256, ref._count


def scenario_count(cfg: Config) -> int:
    return sum(
        _file_stats(cfg, s)[1] if isinstance(s, ScenarioFileRef) else 1 for s in cfg.scenarios
    )


def count_jobs(cfg: Config) -> int:
    """agents x scenarios x matrix cells x repeats, without building a job."""
    return len(cfg.agents) * scenario_count(cfg) * cfg.cell_count() * cfg.run.repeats


def resolved_config(cfg: Config) -> dict[str, Any]:
    """The config with every default filled in, as JSON-able data; never holds a secret.

    Scenario files appear as their path (as written), sha256 and row count, so the digest of
    this dict changes whenever a file's content does.
    """
    out = cfg.model_dump(mode="json", exclude={"scenarios", "source_path"})
    scenarios: list[dict[str, Any]] = []
    for entry in cfg.scenarios:
        if isinstance(entry, ScenarioFileRef):
            sha, count = _file_stats(cfg, entry)
            scenarios.append({"file": entry.file, "sha256": sha, "scenarios": count})
        else:
            scenarios.append(entry.model_dump(mode="json"))
    out["scenarios"] = scenarios
    for agent in out["agents"]:
        agent["label"] = agent["label"] or agent["id"]
    return out


def config_hash(cfg: Config) -> str:
    """sha256 of the resolved config (scenario files' content included by their digest)."""
    return hashlib.sha256(canonical_json(resolved_config(cfg)).encode()).hexdigest()
