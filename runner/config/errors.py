"""One-line config errors: ``ConfigError`` and how a problem, a value and a path are shown.

Every problem becomes one ``ConfigError`` whose text is ``<file>: <field path>: <problem>``, so
the CLI prints one line and exits 2. Pydantic's errors are rewritten as short sentences, and a
misspelt key gets a "did you mean" hint.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ValidationError

# Tags of the scenario union; they contain a space so they never clash with a key in error paths.
TAG_INLINE = "inline scenario"
TAG_FILE = "scenario file"
# Tags of a tool's mocks: one mock, or a list of them (agent-testing).
TAG_ONE_MOCK = "one mock"
TAG_MOCK_LIST = "mock list"
# Tags of run.repeats: a number (fixed repeats) or a mapping (repeats until a verdict).
TAG_FIXED_REPEATS = "fixed repeats"
TAG_SEQUENTIAL = "repeats until a verdict"
UNION_TAGS = (TAG_INLINE, TAG_FILE, TAG_ONE_MOCK, TAG_MOCK_LIST, TAG_FIXED_REPEATS, TAG_SEQUENTIAL)


class ConfigError(Exception):
    """An invalid config; ``str(e)`` is one line: ``<file>: <field path>: <problem>``."""


def display(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def describe(value: Any) -> str:
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


def number(value: Any) -> Any:
    """``0.0`` reads as ``0`` in messages about limits."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def loc_text(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if part in UNION_TAGS:
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def unwrap(tp: Any) -> list[Any]:
    """The concrete types inside ``Annotated``/``Optional``/unions."""
    import types
    import typing

    origin = typing.get_origin(tp)
    if origin is Annotated:
        return unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(tp) for t in unwrap(a)]
    return [tp]


def model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that owns the key at ``loc``: for the "did you mean" hint."""
    import typing

    candidates: list[Any] = [root]
    for part in loc:
        if part in UNION_TAGS:
            candidates = [
                c
                for c in candidates
                if getattr(c, "union_tag", None) == part
                or (part == TAG_MOCK_LIST and typing.get_origin(c) is list)
            ]
            continue
        nxt: list[Any] = []
        for cand in candidates:
            for tp in unwrap(cand):
                if isinstance(tp, type) and issubclass(tp, BaseModel):
                    field = tp.model_fields.get(str(part))
                    if field is not None:
                        nxt.extend(unwrap(field.annotation))
                elif typing.get_origin(tp) is list and isinstance(part, int):
                    nxt.extend(unwrap(typing.get_args(tp)[0]))
                elif typing.get_origin(tp) is dict and isinstance(part, str):
                    nxt.extend(unwrap(typing.get_args(tp)[1]))
        candidates = nxt
    models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if len(models) == 1 else None


SYNONYMS = {
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


def did_you_mean(word: str, options: Iterable[str]) -> str:
    options = sorted(options)
    if SYNONYMS.get(word) in options:
        return f" (did you mean {SYNONYMS[word]!r}?)"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (allowed: {', '.join(options)})" if options else ""


def problem(err: Mapping[str, Any], root: type[BaseModel]) -> str:
    """One pydantic error as a short sentence, without pydantic's boilerplate."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    got = f" (got {describe(value)})"
    ctx = {k: number(v) for k, v in ctx.items()}
    if kind == "missing":
        return "is required"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind == "extra_forbidden":
        loc = tuple(err["loc"])
        model = model_at(root, loc[:-1])
        options = [k for k in model.model_fields if k != "source_path"] if model else []
        options += getattr(model, "sibling_keys", ())  # e.g. `- flie: x.jsonl`
        return "unknown key" + did_you_mean(str(loc[-1]), options)
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


def from_validation(
    where: str,
    exc: ValidationError,
    root: type[BaseModel],
    overridden: Iterable[str] = (),
) -> ConfigError:
    # A misspelt key also shows up as a missing one: the unknown key is the real news.
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    path = loc_text(first["loc"]) or "<top level>"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    by_override = any(path == o or path.startswith((f"{o}.", f"{o}[")) for o in overridden)
    note = " (set by an override)" if by_override else ""
    return ConfigError(f"{where}: {path}: {problem(first, root)}{note}{more}")


def yaml_error(where: str, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        problem += f" ({context} at line {context_mark.line + 1})"
    if mark is not None:
        return ConfigError(f"{where}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {problem}")
    return ConfigError(f"{where}: invalid YAML: {problem}")


def os_error(exc: OSError, where: str, what: str) -> ConfigError:
    if isinstance(exc, FileNotFoundError):
        return ConfigError(f"{where}: {what} not found")
    if isinstance(exc, IsADirectoryError):
        return ConfigError(f"{where}: {what} is a directory, not a file")
    if isinstance(exc, PermissionError):
        return ConfigError(f"{where}: cannot read {what}: permission denied")
    return ConfigError(f"{where}: cannot read {what}: {exc.strerror or exc}")
