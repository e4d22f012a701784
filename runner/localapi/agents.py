"""The local API's agent definitions: what each simulated agent knows, says and is judged by.

Agents live in a YAML file (default ``configs/agents.yaml``) so that a test or a demo can add an
agent without touching code. Models forbid unknown keys: a typo in a hand-written agents file
should fail loudly at start-up, not silently produce a different agent.

Text fields may hold ``{{name}}`` placeholders, filled from the data the user gave in the
conversation, then the request's dynamic variables, then the agent's ``variable_defaults``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_AGENTS_PATH: Path = Path(__file__).resolve().parents[2] / "configs" / "agents.yaml"

Extractor = Literal["order_number", "email", "date", "time", "party_size", "phone", "name"]
"""Built-in value extractors for data collection (see ``judge.EXTRACTOR_PATTERNS``)."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolDef(StrictModel):
    """A tool the agent calls while handling an intent."""

    name: str = Field(min_length=1)
    type: Literal["webhook", "client"] = "webhook"
    params: dict[str, str] = Field(default_factory=dict)
    """Parameter name -> template (``{{order_number}}``); sent as ``params_as_json``."""
    result: str = '{"status": "ok"}'
    """Template of the result when the request's ``tool_mock_config`` does not mock the tool."""
    error_reply: str = "I'm sorry, I couldn't complete that in our system right now."
    """What the agent says when the tool result is an error; the goal stays unresolved."""


class IntentDef(StrictModel):
    """One thing the agent can help with, recognised by keywords in the user's message."""

    id: str = Field(min_length=1)
    title: str = ""
    """Short label used in summaries and the call's title (defaults to the id)."""
    keywords: list[str] = Field(min_length=1)
    reply: str = ""
    """Said when the intent is recognised, before asking for data (may be empty)."""
    asks_for: list[str] = Field(default_factory=list)
    """Data-collection field ids the agent needs from the user before it can resolve."""
    tool: ToolDef | None = None
    resolution: str = Field(min_length=1)
    """Said once the data is in and the tool (if any) succeeded: the goal is then resolved.
    ``{{result.KEY}}`` is filled from the tool's result (a JSON object), so a mocked result
    is what the agent says."""
    brief: str = ""
    """The resolution without repeating the details, said when the agent does not recap
    (default: the resolution)."""
    next_step: str = ""
    """What happens next and when, said after the resolution when the agent gives next steps."""
    invented: str = ""
    """A detail the agent makes up when it does not stick to the facts (it must hold a fact
    with a digit that no tool, user or instruction gave, so a reader can tell)."""

    @field_validator("keywords")
    @classmethod
    def _nonblank_keywords(cls, value: list[str]) -> list[str]:
        cleaned = [k.strip().lower() for k in value]
        if any(not k for k in cleaned):
            raise ValueError("keywords must not be blank")
        return cleaned


class CriterionDef(StrictModel):
    """A built-in evaluation criterion, judged like the request's extra criteria."""

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    conversation_goal_prompt: str = Field(min_length=1, max_length=2000)
    scoring_mode: Literal["binary", "numeric_uniform"] = "binary"
    max_score: int = Field(default=100, ge=1)


class DataFieldDef(StrictModel):
    """A data-collection field: extracted from the user's messages by the judge."""

    id: str = Field(min_length=1)
    label: str = ""
    """How the agent names it when asking ("order number"); defaults to the id, spaced."""
    type: Literal["string", "integer", "number", "boolean"] = "string"
    description: str = ""
    extractor: Extractor | None = None
    pattern: str | None = None
    """A regex instead of a built-in extractor; group 1 (or the whole match) is the value."""
    variables: list[str] = Field(default_factory=list)
    """Dynamic-variable names the simulated user reads the value from (default: the id)."""
    ask: str = ""
    """The agent's question (default "Could you tell me your {label}?")."""
    answer: str = ""
    """The simulated user's answer template with ``{value}`` (default "My {label} is {value}.")."""
    identity: bool = False
    """Verifying it is checking who the caller is: an agent that skips verification acts
    without asking for it (and uses ``unverified`` instead)."""
    unverified: str = "on file"
    """What the agent goes by when it skips asking for an identity field."""

    @model_validator(mode="after")
    def _one_extractor(self) -> DataFieldDef:
        if (self.extractor is None) == (self.pattern is None):
            raise ValueError("exactly one of 'extractor' or 'pattern' must be set")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regex: {exc}") from exc
        if self.answer and "{value}" not in self.answer:
            raise ValueError("answer must contain '{value}'")
        return self

    @property
    def spoken_label(self) -> str:
        return self.label or self.id.replace("_", " ")

    @property
    def variable_names(self) -> list[str]:
        return self.variables or [self.id]


class QualityKnobs(StrictModel):
    """How good the agent is: the knobs that make a weaker variant score lower."""

    understanding: float = Field(default=0.95, ge=0.0, le=1.0)
    """Chance the agent recognises an intent whose keywords the user used."""
    hangup_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Chance, per agent turn, that the agent ends the call prematurely."""


class Tendencies(StrictModel):
    """How often the agent behaves well, per behaviour: each is drawn once per conversation
    (seeded), so the whole conversation shows it and the judge can see it."""

    stays_in_scope: float = Field(default=0.95, ge=0.0, le=1.0)
    """Declines a request outside its scope (else improvises an answer)."""
    verifies_identity: float = Field(default=0.95, ge=0.0, le=1.0)
    """Asks for identity fields before acting (else acts on the record ``on file``)."""
    admits_failure: float = Field(default=0.95, ge=0.0, le=1.0)
    """Says so when a tool failed (else claims the request went through)."""
    sticks_to_facts: float = Field(default=0.95, ge=0.0, le=1.0)
    """States only what a tool, the user or its instructions gave (else adds ``invented``)."""
    gives_next_step: float = Field(default=0.9, ge=0.0, le=1.0)
    """Says what happens next and when (the intent's ``next_step``)."""
    escalates: float = Field(default=0.7, ge=0.0, le=1.0)
    """Offers a transfer to a human colleague when a tool failed (a ``transfer_to_agent``
    system tool call)."""
    polite: float = Field(default=0.97, ge=0.0, le=1.0)
    """Courteous wording (else curt: "Not my job.", "Anything else?", "Bye.")."""
    recaps: float = Field(default=0.9, ge=0.0, le=1.0)
    """Repeats the details back in the confirmation (else the intent's ``brief``)."""


class BranchDef(StrictModel):
    """A branch of an agent (the vendor's agent versioning): another configuration under the
    same agent id, chosen by ``branch_id`` on run-tests and agent reads."""

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    llm: str | None = None
    """The branch's LLM (default: the agent's); a weaker one scores lower (``with_override``)."""
    first_message: str | None = None


class AgentDef(StrictModel):
    """One agent of the local API."""

    agent_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    description: str = ""
    llm: str = "gemini-2.5-flash"
    """Model name used as the key of ``llm_usage`` (must be one of the vendor's LLM names)."""
    first_message: str = ""
    """Opens every new conversation; if empty, the user speaks first."""
    scope: str = "your questions"
    """What the agent helps with, used when it declines an off-topic request."""
    out_of_scope_reply: str = (
        "I'm sorry, I can't help with that. I can only help with {{scope}}. Is there anything else?"
    )
    clarify_reply: str = "Sorry, I didn't quite catch that. Could you rephrase?"
    prompt_reply: str = "How can I help you today?"
    """Said when the user's message asks for nothing (a greeting, an empty line)."""
    anything_else: str = "Is there anything else I can help you with?"
    closing_message: str = "Thank you for calling. Goodbye!"
    variable_defaults: dict[str, str] = Field(default_factory=dict)
    intents: list[IntentDef] = Field(default_factory=list)
    evaluation_criteria: list[CriterionDef] = Field(default_factory=list)
    data_collection: list[DataFieldDef] = Field(default_factory=list)
    improvised_answer: str = (
        "Sure! As far as I know, yes: I'd say about 80 percent, going by what I read last week."
    )
    """Said to a request outside the scope when the agent does not stay in scope."""
    quality: QualityKnobs = Field(default_factory=QualityKnobs)
    tendencies: Tendencies = Field(default_factory=Tendencies)
    branches: list[BranchDef] = Field(default_factory=list)
    """Branches besides the main one (``main_branch_id``)."""

    @property
    def main_branch_id(self) -> str:
        return f"agtbrch_{self.agent_id}_main"

    def branch(self, branch_id: str | None) -> BranchDef | None:
        """The branch by id (None or the main branch's id: the agent itself); KeyError if none."""
        if branch_id is None or branch_id == self.main_branch_id:
            return None
        for branch in self.branches:
            if branch.id == branch_id:
                return branch
        raise KeyError(branch_id)

    @model_validator(mode="after")
    def _consistent(self) -> AgentDef:
        field_ids = [f.id for f in self.data_collection]
        for kind, ids in (
            ("intents", [i.id for i in self.intents]),
            ("evaluation_criteria", [c.id for c in self.evaluation_criteria]),
            ("data_collection", field_ids),
        ):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"duplicate ids in {kind}: {', '.join(dupes)}")
        for intent in self.intents:
            missing = [f for f in intent.asks_for if f not in field_ids]
            if missing:
                raise ValueError(
                    f"intent {intent.id!r} asks_for unknown data_collection ids: "
                    + ", ".join(missing)
                )
        return self

    def field(self, field_id: str) -> DataFieldDef:
        return next(f for f in self.data_collection if f.id == field_id)


class AgentsFile(StrictModel):
    agents: list[AgentDef] = Field(min_length=1)


def _format_error(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        lines.append(f"{path}: {loc or '<root>'}: {err['msg']}")
    return "invalid agents file:\n" + "\n".join(lines)


def load_agents(path: Path | None = None) -> dict[str, AgentDef]:
    """Read and validate an agents file, keyed by ``agent_id``.

    Raises ``ValueError`` naming the file and the offending field (``agents[1].intents[0].
    keywords``) so a bad edit is found without reading a traceback.
    """
    path = Path(path) if path is not None else DEFAULT_AGENTS_PATH
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read agents file: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if isinstance(raw, dict):
        # Top-level keys other than ``agents`` starting with "x-" or "_" hold YAML anchors.
        raw = {k: v for k, v in raw.items() if not str(k).startswith(("x-", "_"))}
    try:
        parsed = AgentsFile.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(_format_error(path, exc)) from None
    agents: dict[str, AgentDef] = {}
    for i, agent in enumerate(parsed.agents):
        if agent.agent_id in agents:
            raise ValueError(f"{path}: agents[{i}].agent_id: duplicate id {agent.agent_id!r}")
        agents[agent.agent_id] = agent
    return agents


# ---------------------------------------------------------------------------- variants

LLM_STRENGTH: dict[str, float] = {
    "gpt-4o": 1.0,
    "gpt-4.1": 1.0,
    "gpt-5": 1.0,
    "claude-sonnet-4": 1.0,
    "gemini-2.5-pro": 1.0,
    "gemini-2.5-flash": 0.97,
    "gemini-2.0-flash": 0.92,
    "gpt-4o-mini": 0.85,
    "gpt-4.1-mini": 0.85,
    "claude-3-5-haiku": 0.85,
    "gemini-2.5-flash-lite": 0.78,
    "gemini-2.0-flash-lite": 0.72,
    "gpt-4.1-nano": 0.7,
}
"""How capable the local API takes each LLM to be, relative to the best (1.0). Unknown names
guess from their suffix (``-lite`` / ``-nano`` 0.72, ``-mini`` / ``haiku`` 0.85, else 0.95)."""


def llm_strength(llm: str) -> float:
    name = llm.lower()
    if name in LLM_STRENGTH:
        return LLM_STRENGTH[name]
    if "lite" in name or "nano" in name:
        return 0.72
    if "mini" in name or "haiku" in name:
        return 0.85
    return 0.95


def _override_value(override: dict[str, Any] | None, *path: str) -> Any:
    node: Any = override
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def with_override(
    agent: AgentDef, branch: BranchDef | None, override: dict[str, Any] | None
) -> AgentDef:
    """The agent as a branch and an ``agent_config_override`` make it.

    Read from the override's ``conversation_config.agent``: ``prompt.llm`` (a weaker LLM scales
    down understanding and every tendency by ``llm_strength`` new / old, and raises the
    hang-up rate), ``prompt.temperature`` (above 1 the agent understands less),
    ``prompt.prompt`` (the description) and ``first_message``. A branch's ``llm`` and
    ``first_message`` apply first. Without either, the agent itself.
    """
    if branch is None and not override:
        return agent
    llm = agent.llm
    first = agent.first_message
    description = agent.description
    if branch is not None:
        llm = branch.llm or llm
        first = branch.first_message if branch.first_message is not None else first
    conf = _override_value(override, "conversation_config", "agent") or {}
    prompt = conf.get("prompt") if isinstance(conf, dict) else None
    prompt = prompt if isinstance(prompt, dict) else {}
    if isinstance(prompt.get("llm"), str) and prompt["llm"]:
        llm = prompt["llm"]
    if isinstance(prompt.get("prompt"), str):
        description = prompt["prompt"]
    if isinstance(conf, dict) and isinstance(conf.get("first_message"), str):
        first = conf["first_message"]
    temperature = prompt.get("temperature")
    ratio = min(1.0, llm_strength(llm) / llm_strength(agent.llm))
    understanding = agent.quality.understanding * ratio
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        understanding *= 1.0 - 0.25 * max(0.0, min(float(temperature), 2.0) - 1.0)
    quality = agent.quality.model_copy(
        update={
            "understanding": understanding,
            "hangup_rate": min(1.0, agent.quality.hangup_rate + 0.1 * (1.0 - ratio)),
        }
    )
    tendencies = agent.tendencies.model_copy(
        update={name: value * ratio for name, value in agent.tendencies.model_dump().items()}
    )
    return agent.model_copy(
        update={
            "llm": llm,
            "first_message": first,
            "description": description,
            "quality": quality,
            "tendencies": tendencies,
        }
    )
