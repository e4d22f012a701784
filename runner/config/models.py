"""The config's pydantic models: every section, field, default and per-field check.

Unknown keys are rejected everywhere (``Strict``) because a misspelt option silently falls back
to a default otherwise. Checks that span fields or files (duplicate ids, colliding scenarios)
are ``runner.config.load``'s.

(Over 600 lines because it declares every section of the config, each field with its
docstring, which the JSON schema and the config reference are generated from.)
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

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

from runner import verdicts
from runner.config.assertions import AssertSpec
from runner.config.errors import (
    TAG_FILE,
    TAG_FIXED_REPEATS,
    TAG_INLINE,
    TAG_MOCK_LIST,
    TAG_ONE_MOCK,
    TAG_SEQUENTIAL,
    describe,
)
from runner.config.gate import GateConfig
from runner.config.selection import Selection
from runner.wire.simulate import EvaluationCriterion, TranscriptMessage

SCENARIO_FILE_SUFFIXES = (".jsonl", ".csv", ".yaml", ".yml")
MATRIX_AXES = ("language", "llm", "temperature", "first_message", "new_turns_limit")
"""Scalar matrix axes; ``dynamic_variables.<name>`` and ``user_dynamic_variables.<name>`` too."""
DICT_AXES = ("dynamic_variables", "user_dynamic_variables")
AGENT_AXES = ("agent.llm", "agent.temperature", "agent.prompt", "agent.first_message")
"""Agent-side axes: sent as the run's ``agent_config_override`` (agent-testing backend only),
so a sweep can A/B agent configurations without creating agents."""
_ID_RE = re.compile(r"[A-Za-z0-9_-]+")
_SCENARIO_ID_RE = re.compile(r"[A-Za-z0-9_.:-]+")
_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UPPER_SNAKE_RE = re.compile(r"[A-Z_][A-Z0-9_]*")
_KEY_PREFIXES = ("sk_", "sk-", "xi_", "xi-")


# ---------------------------------------------------------------------------- field types


def _reject_bool(kind: str) -> Any:
    """YAML turns ``yes``/``true`` into booleans, which pydantic would quietly read as 1."""

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"must be {kind} (got {describe(value)})")
        return value

    return BeforeValidator(check)


Int = Annotated[int, _reject_bool("an integer")]
Float = Annotated[float, _reject_bool("a number")]


def _check_scalar(value: Any) -> Any:
    if value is None or not isinstance(value, str | int | float | bool):
        raise ValueError(f"must be a string, number or boolean (got {describe(value)})")
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
    ``runner.backends.agent_testing``). Seconds for the times."""

    poll_interval: Float = Field(default=2.0, gt=0)
    """First wait between polls of an invocation (grows 1.5x per poll up to the max while
    nothing has finished), and the longest while runs finish."""
    poll_interval_max: Float = Field(default=30.0, gt=0)
    poll_interval_min: Float = Field(default=0.5, gt=0)
    """The shortest wait between polls of an invocation, however fast its runs finish."""
    poll_budget: Float = Field(default=0.15, gt=0)
    """Polls per finished run while runs finish: an invocation whose runs finish faster is
    polled more often (down to ``poll_interval_min``) at the same cost per result, and never
    faster than ``poll_interval`` while its polls so far exceed this per finished run."""
    deadline: Float = Field(default=3600.0, gt=0)
    """From starting (or re-attaching to) an invocation until its jobs fail ``total_timeout``;
    a later run re-attaches to it."""
    batch_wait: Float = Field(default=0.5, ge=0)
    """How long the first test of an agent (variant) waits for others to share its run-tests
    call: one call and one poll serve them all."""
    batch_max_tests: Int = Field(default=100, ge=1, le=1000)
    """At most this many tests in one run-tests call."""
    bucketing_wait: Float = Field(default=120.0, ge=0)
    """Once every run is done, how long to wait for the vendor's result buckets."""
    name_prefix: str | None = Field(default=None, min_length=1, max_length=80)
    """Tests are named ``<prefix> <scenario> [<hash>]``; ``None`` in the file means
    ``convsim/<config file name>`` (``load_config`` fills it in)."""
    folder_id: str | None = None
    """Create (and look for) the tests in this folder (``parent_folder_id``)."""
    evaluation_model: str | None = None
    """LLM that judges the success conditions (the vendor's default when unset)."""
    environment: str | None = Field(default=None, min_length=1)
    """The test's ``environment`` (the vendor's environment name to run against; its default
    when unset)."""
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
            raise ValueError(f"must be an integer or 'auto' (got {describe(value)})") from None
        raise PydanticKnownError(error["type"], error.get("ctx")) from None  # type: ignore[arg-type]


class Budget(Strict):
    """``run.budget``: stop dispatching before the run's spend would pass either limit."""

    usd: Float | None = Field(default=None, gt=0)
    """US dollars, as the vendor prices jobs (``jobs.cost_usd``)."""
    credits: Float | None = Field(default=None, gt=0)
    """Credits, as the vendor bills test runs (``jobs.credits_used``; agent-testing)."""


def _open_unit(value: float | None, high: float = 1.0) -> float | None:
    if value is not None and not 0 < value < high:
        raise ValueError(f"must be between 0 and {high:g}, exclusive (got {value:g})")
    return value


# the bounds the validators below check, for editors (their messages are ours, not pydantic's)
_UNIT: dict[str, Any] = {"exclusiveMinimum": 0, "exclusiveMaximum": 1}
_HALF: dict[str, Any] = {"exclusiveMinimum": 0, "exclusiveMaximum": 0.5}


class Repeats(Strict):
    """``run.repeats`` as a mapping: repeat each case until its verdict is settled (issue 25).

    The rules and what each guarantees are ``runner.verdicts``'s; ``rule_for()`` builds one. A
    case's n-th repeat has the same job key as in a fixed run of ``max`` repeats."""

    max: Int = Field(ge=1)
    """Most repeats of one case."""
    min: Int = Field(default=1, ge=1)
    """Repeats of every case before any verdict."""
    until: Literal["verdict", "max"] = "verdict"
    """``verdict``: stop a case's repeats once its verdict is settled; ``max``: run them all."""
    pass_rate: Float = Field(json_schema_extra=_UNIT)
    """The verdict: does the case pass at least this often?"""
    alpha: Float = Field(default=0.05, json_schema_extra=_HALF)
    """Chance of a wrong verdict (anytime: at every n; sprt: a wrong PASS at pass_rate_low)."""
    rule: Literal["anytime", "sprt", "curtail"] = "anytime"
    of: Literal["all"] | list[str] = "all"
    """``all``: a repeat passes when every criterion succeeds; a list of criterion ids: one
    verdict per listed criterion."""
    pass_rate_low: Float | None = Field(default=None, json_schema_extra=_UNIT)
    """``sprt`` only: the pass rate that should FAIL (the indifference zone's low end)."""
    beta: Float = Field(default=0.05, json_schema_extra=_HALF)
    """``sprt`` only: chance of a FAIL at ``pass_rate``."""
    passes: Int | None = Field(default=None, ge=0)
    """``curtail`` only: passes needed of ``max`` (default ceil(pass_rate x max))."""
    unknown_as: Literal["fail", "skip"] = "fail"
    """An ``unknown`` repeat: a non-pass trial, or no trial. Never a pass."""
    error_as: Literal["fail", "skip"] = "skip"
    """An errored job: a non-pass trial, or no trial. Never a pass; always a repeat run."""

    @field_validator("pass_rate", "pass_rate_low")
    @classmethod
    def _rate(cls, value: float | None) -> float | None:
        return _open_unit(value)

    @field_validator("alpha", "beta")
    @classmethod
    def _error_rate(cls, value: float) -> float | None:
        return _open_unit(value, 0.5)

    @field_validator("of")
    @classmethod
    def _of(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list):
            if not value:
                raise ValueError("must be 'all' or a non-empty list of criterion ids")
            for item in value:
                _check_id(item, _ID_RE, "letters, digits, '_' and '-'")
            if len(set(value)) != len(value):
                raise ValueError(f"lists a criterion twice (got {value})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Repeats:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        if self.rule == "sprt" and self.pass_rate_low is None:
            raise ValueError("pass_rate_low is required by rule: sprt")
        if self.pass_rate_low is not None and self.rule != "sprt":
            raise ValueError(f"pass_rate_low is only used by rule: sprt (rule is {self.rule})")
        if self.pass_rate_low is not None and self.pass_rate_low >= self.pass_rate:
            raise ValueError(
                f"pass_rate_low ({self.pass_rate_low:g}) must be below pass_rate "
                f"({self.pass_rate:g})"
            )
        if self.passes is not None and self.rule != "curtail":
            raise ValueError(f"passes is only used by rule: curtail (rule is {self.rule})")
        if self.passes is not None and self.passes > self.max:
            raise ValueError(f"passes ({self.passes}) must not exceed max ({self.max})")
        return self

    def treatment(self) -> verdicts.Treatment:
        return verdicts.Treatment(unknown_as=self.unknown_as, error_as=self.error_as)

    def rule_for(self) -> verdicts.Rule:
        """The verdict rule these settings describe (``runner.verdicts``)."""
        if self.rule == "sprt":
            assert self.pass_rate_low is not None
            return verdicts.Sprt(
                self.pass_rate,
                self.pass_rate_low,
                self.alpha,
                self.beta,
                self.max,
                self.min,
                self.treatment(),
            )
        if self.rule == "curtail":
            return verdicts.Curtail(self.pass_rate, self.max, self.passes, self.min)
        return verdicts.Anytime(self.pass_rate, self.alpha, self.max, self.min, self.treatment())


def _repeats_kind(value: Any) -> str:
    return TAG_SEQUENTIAL if isinstance(value, dict | Repeats) else TAG_FIXED_REPEATS


RepeatsEntry = Annotated[
    Annotated[Int, Field(ge=1), Tag(TAG_FIXED_REPEATS)] | Annotated[Repeats, Tag(TAG_SEQUENTIAL)],
    Discriminator(_repeats_kind),
]


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
    repeats: RepeatsEntry = 1
    """Repeats of every case: a number (fixed), or a mapping (``Repeats``: until a verdict)."""
    seed: Int = 0
    shutdown_grace: Float = Field(default=30.0, ge=0)
    """Seconds in-flight simulations get to finish after Ctrl-C / SIGTERM."""
    circuit_breaker: Int = Field(default=50, ge=0)
    """Stop the run when this many attempts in a row failed the same way (0: never)."""
    budget: Budget | None = None
    """Spend limit of the whole run (every session); none: no limit."""

    @property
    def max_repeats(self) -> int:
        """Most repeats of a case: ``repeats``, or its ``max``. Job keys run over these."""
        return self.repeats.max if isinstance(self.repeats, Repeats) else self.repeats

    @property
    def sequential(self) -> Repeats | None:
        """The verdict settings when ``repeats`` is a mapping; None for fixed repeats."""
        return self.repeats if isinstance(self.repeats, Repeats) else None

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
    branch_id: str | None = Field(default=None, min_length=1)
    """Run against this branch of the agent (agent-testing backend; default: the main one)."""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _check_id(value, _ID_RE, "letters, digits, '_' and '-'")

    @property
    def variant_name(self) -> str:
        """``id``, or ``id@branch_id``: one agent may be listed once per branch."""
        return self.id if self.branch_id is None else f"{self.id}@{self.branch_id}"

    @property
    def display(self) -> str:
        return self.label or self.variant_name


class CriterionSpec(EvaluationCriterion):
    """An extra evaluation criterion: the wire model's fields, but typos are errors here."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _check_id(value, _ID_RE, "letters, digits, '_' and '-'")


# ---------------------------------------------------------------------------- scenarios


class AnythingEval(Strict):
    type: Literal["anything"]


class ExactEval(Strict):
    type: Literal["exact"]
    expected_value: str


class RegexEval(Strict):
    type: Literal["regex"]
    pattern: str = Field(min_length=1)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"is not a valid regular expression ({exc})") from exc
        return value


class LlmEval(Strict):
    type: Literal["llm"]
    description: str = Field(min_length=1)


class ParameterCondition(Strict):
    """``UnitTestToolCallParameter``: the mock answers only a call whose parameter at
    ``path`` passes ``eval`` (anything, an exact value, a regex, or an LLM's judgement of a
    description)."""

    path: str = Field(min_length=1)
    eval: Annotated[AnythingEval | ExactEval | RegexEval | LlmEval, Field(discriminator="type")]


class ToolMock(Strict):
    union_tag: ClassVar[str] = TAG_ONE_MOCK

    return_value: str = "Tool Called."
    is_error: bool = False
    parameter_conditions: list[ParameterCondition] = Field(default_factory=list)
    """Agent-testing only: the mock answers only calls whose parameters pass every condition
    (other calls fall back to the real tool); empty: every call."""

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

    def override(self) -> dict[str, Any]:
        """The vendor's ``ToolResponseMockConfig`` for this mock."""
        entry: dict[str, Any] = {"mock_result": self.return_value, "is_error": self.is_error}
        if self.parameter_conditions:
            entry["parameter_conditions"] = [c.model_dump() for c in self.parameter_conditions]
        return entry


def _mock_kind(value: Any) -> str:
    return TAG_MOCK_LIST if isinstance(value, list) else TAG_ONE_MOCK


ToolMocks = Annotated[
    Annotated[ToolMock, Tag(TAG_ONE_MOCK)]
    | Annotated[list[ToolMock], Tag(TAG_MOCK_LIST), Field(min_length=1)],
    Discriminator(_mock_kind),
]
"""A tool's mock, or (agent-testing, as the vendor's ``tool_mock_overrides``) several, the
first whose ``parameter_conditions`` a call passes answering it."""


class ScenarioSpec(Strict):
    """One simulated user: persona, opening line, variables, mocks and extra criteria."""

    union_tag: ClassVar[str] = TAG_INLINE
    sibling_keys: ClassVar[tuple[str, ...]] = ("file",)
    """Keys of the other member of the scenario union, for "did you mean" hints."""

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
    tool_mocks: dict[str, ToolMocks] = Field(default_factory=dict)
    criteria: list[CriterionSpec] = Field(default_factory=list)
    assert_: list[AssertSpec] = Field(default_factory=list, alias="assert")
    """Deterministic checks of this scenario's conversations, after the config's own."""
    environment: str | None = Field(default=None, min_length=1)
    """Agent-testing only: the test's ``environment``, over ``agent_testing.environment``."""
    evaluation_model: str | None = Field(default=None, min_length=1)
    """Agent-testing only: the LLM judging this scenario's success conditions, over
    ``agent_testing.evaluation_model``."""
    tags: list[str] = Field(default_factory=list)
    """Free labels for grouping results; not sent."""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _check_id(value, _SCENARIO_ID_RE, "letters, digits, '_', '-', '.' and ':'")

    def mocks(self) -> dict[str, list[ToolMock]]:
        """Each mocked tool's mocks, in order (one or several)."""
        return {
            tool: mock if isinstance(mock, list) else [mock]
            for tool, mock in self.tool_mocks.items()
        }

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        if isinstance(value, str):  # CSV cells: "a;b"
            return [t.strip() for t in value.split(";") if t.strip()]
        return value


class ScenarioFileRef(Strict):
    """Scenarios from a file, relative to the config file."""

    union_tag: ClassVar[str] = TAG_FILE

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
    return TAG_FILE if isinstance(value, dict) and "file" in value else TAG_INLINE


ScenarioEntry = Annotated[
    Annotated[ScenarioSpec, Tag(TAG_INLINE)] | Annotated[ScenarioFileRef, Tag(TAG_FILE)],
    Discriminator(_scenario_kind),
]


# ---------------------------------------------------------------------------- config


class Config(Strict):
    target: TargetConfig = Field(default_factory=TargetConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    agents: list[AgentRef] = Field(min_length=1)
    criteria: list[CriterionSpec] = Field(default_factory=list)
    assert_: list[AssertSpec] = Field(default_factory=list, alias="assert")
    """Deterministic checks of every conversation (``runner.assertions``), beside ``criteria``."""
    scenarios: list[ScenarioEntry] = Field(min_length=1)
    matrix: dict[str, list[Scalar]] = Field(default_factory=dict)
    compare: CompareConfig | None = None
    """Compare two variants pair by pair and stop once decided (``runner.config.compare``)."""
    gate: GateConfig | None = None
    """Thresholds the run must meet (``runner.config.gate``): ``run`` applies them at its end,
    ``check`` reads them by default."""
    source_path: Path = Field(default_factory=lambda: Path("config.yaml").absolute(), exclude=True)
    """Absolute path of the config file; scenario files are relative to its folder."""
    _selection: Selection = PrivateAttr(default_factory=Selection)

    @property
    def selection(self) -> Selection:
        """The part of the sweep this session runs (``run --agent/--scenario/--tag``); not part
        of the config's hash, nor of any job's key."""
        return self._selection

    def select(self, selection: Selection) -> Config:
        """A copy that runs only ``selection`` (checked: ``ConfigError`` naming a pattern that
        matches nothing)."""
        from runner.config.selection import check_selection

        if selection:
            check_selection(self, selection)
        copy = self.model_copy()
        copy._selection = selection
        return copy

    def resolve(self, relative: str | Path) -> Path:
        """A path written in the config, relative to the config file's folder."""
        return self.source_path.parent / Path(relative).expanduser()

    def matrix_cells(self) -> Iterator[tuple[tuple[str, Any], ...]]:
        """Every combination of the matrix axes, in config order; one empty cell if none."""
        axes = list(self.matrix)
        for values in itertools.product(*(self.matrix[a] for a in axes)):
            yield tuple(zip(axes, values, strict=True))

    def cell_count(self) -> int:
        return math.prod(len(values) for values in self.matrix.values())


# ``compare`` builds on this module's field types: imported once they exist, then the model
# that refers to it is completed (``runner.config`` always imports this module first).
from runner.config.compare import CompareConfig  # noqa: E402

Config.model_rebuild()
