"""The generated parts of the docs, written between markers in the pages that hold them.

A page marks a generated block with ``<!-- gen:NAME -->`` ... ``<!-- /gen:NAME -->``; this
script rewrites each block from the code (the table schemas from ``runner.schema``, the config
reference from the config's JSON Schema, ``runner.config.jsonschema``), so a page cannot drift
from what the runner writes and reads. ``make docs`` runs it before building; ``--check`` (and
the mkdocs hook below, and ``tests/test_docs.py``) fail while a committed page differs.

    python docs/gen.py            # rewrite the blocks
    python docs/gen.py --check    # exit 1, naming the stale pages, if any block is out of date
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
BLOCK = re.compile(
    r"(<!-- gen:(?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- /gen:(?P=name) -->)", re.S
)


def tables() -> str:
    """The results tables' columns, as ``runner.schema`` defines them."""
    from runner.schema import TABLES, VERDICTS, markdown

    return "\n\n".join(markdown(t) for t in (*TABLES, VERDICTS))


# --- the config reference, from the JSON Schema -------------------------------------------


def _ref(node: dict[str, Any]) -> str | None:
    ref = node.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def _type(node: dict[str, Any]) -> str:
    """A JSON Schema node as a short type: models link to their own section."""
    if name := _ref(node):
        return f"[{name}](#{name.lower()})"
    for key in ("anyOf", "oneOf"):
        if key in node:
            return " or ".join(dict.fromkeys(_described(n) for n in node[key]))
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return "one of " + ", ".join(f"`{v}`" for v in node["enum"])
    kind = node.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array":
        return f"list of {_type(node.get('items', {}))}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of {_type(node['additionalProperties'])}"
    return str(kind or "any")


def _described(node: dict[str, Any]) -> str:
    """An alternative of a choice, with its description when it has one."""
    if "description" in node and "properties" not in node:
        return f"{_type(node)} ({_prose(node['description'])})"
    return _type(node)


NOT_EMPTY = {"at least 1 characters": "not empty", "at least 1 items": "not empty"}


def _limits(node: dict[str, Any], describe: bool = True) -> list[str]:
    words = {
        "minimum": ">= {}",
        "exclusiveMinimum": "> {}",
        "maximum": "<= {}",
        "minLength": "at least {} characters",
        "maxLength": "at most {} characters",
        "minItems": "at least {} items",
    }
    found = [fmt.format(node[k]) for k, fmt in words.items() if k in node]
    found = [NOT_EMPTY.get(f, f) for f in found]
    for alt in node.get("anyOf", []) + node.get("oneOf", []):
        found += _limits(alt, describe=False)  # an alternative's description is in its type
    if describe and "description" in node:
        found.append(_prose(node["description"]))
    return found


def _prose(text: str) -> str:
    """A docstring-style description as one Markdown line (reST ``code`` as `code`)."""
    return " ".join(text.replace("``", "`").split())


def _flat_model(node: dict[str, Any], defs: dict[str, Any]) -> str | None:
    """The model a property holds as a whole (possibly null): its keys are listed under it."""
    alts = node.get("anyOf", [node])
    refs = [_ref(a) for a in alts if a.get("type") != "null"]
    if len(refs) == 1 and refs[0] and "properties" in defs[refs[0]]:
        return refs[0]
    return None


def _rows(model: dict[str, Any], defs: dict[str, Any], prefix: str) -> Iterator[str]:
    required = set(model.get("required", []))
    for key, node in sorted(model.get("properties", {}).items()):
        path = f"{prefix}{key}"
        notes = (["required"] if key in required else []) + _limits(node)
        default = f"`{json.dumps(node['default'])}`" if "default" in node else ""
        if name := _flat_model(node, defs):
            if default:  # a nullable block: null unless given
                yield f"| `{path}` | object (the keys below) or null | {default} | |"
            yield from _rows(defs[name], defs, f"{path}.")
            continue
        yield f"| `{path}` | {_type(node)} | {default} | {'; '.join(notes)} |"


def _models_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if name := _ref(node):
            yield name
        for value in node.values():
            yield from _models_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from _models_in(value)


def config_reference() -> str:
    """Every key of a sweep config: type, default and limits, from the JSON Schema."""
    from runner.config.jsonschema import config_schema_text

    schema = json.loads(config_schema_text())
    defs: dict[str, Any] = schema["$defs"]
    head = ["| key | type | default | notes |", "|---|---|---|---|"]
    out = [
        "### The sweep config",
        "",
        *[
            f"Keys matching `{pat}`: {_prose(n.get('description', 'free'))}."
            for pat, n in schema.get("patternProperties", {}).items()
        ],
        "",
        *head,
        *_rows(schema, defs, ""),
    ]
    # the models a key holds in a list, a map or a choice get a section each (flattened ones
    # appear as dotted keys above; a model listed here may be flattened elsewhere too)
    flat: set[str] = set()

    def collect(model: dict[str, Any]) -> None:
        for node in model.get("properties", {}).values():
            if name := _flat_model(node, defs):
                flat.add(name)
                collect(defs[name])

    collect(schema)
    seen: list[str] = []
    # (a flattened model's own keys may hold such models too: run.repeats -> Repeats)
    roots = [schema, *(defs[n] for n in sorted(flat))]
    todo = [n for r in roots for n in _models_in(r.get("properties", {})) if n not in flat]
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.append(name)
        todo += [n for n in _models_in(defs[name]) if n not in flat]
    for name in sorted(seen):
        model = defs[name]
        out += ["", f"### {name}", ""]
        if model.get("description"):
            out += [_prose(model["description"]), ""]
        if "properties" in model:
            out += [*head, *_rows(model, defs, "")]
        else:
            out.append(f"{_type({k: v for k, v in model.items() if k != 'title'})}")
            for alt in model.get("anyOf", []):
                if "properties" in alt:
                    out += ["", "As an object:", "", *head, *_rows(alt, defs, "")]
    return "\n".join(out)


GENERATORS: dict[str, Callable[[], str]] = {"tables": tables, "config-reference": config_reference}


def render(text: str) -> str:
    """The page with every generated block rewritten."""

    def one(m: re.Match[str]) -> str:
        return f"{m.group(1)}{GENERATORS[m.group('name')]()}\n{m.group(4)}"

    return BLOCK.sub(one, text)


def stale() -> list[Path]:
    """The pages whose generated blocks differ from what the code generates now."""
    return [p for p in sorted(DOCS.glob("*.md")) if render(p.read_text()) != p.read_text()]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        if bad := stale():
            names = ", ".join(str(p.relative_to(DOCS.parent)) for p in bad)
            print(f"error: generated docs out of date: {names}; run `make docs`", file=sys.stderr)
            return 1
        return 0
    for page in stale():
        page.write_text(render(page.read_text()))
        print(f"regenerated {page.relative_to(DOCS.parent)}")
    return 0


def on_pre_build(config: Any) -> None:
    """mkdocs hook: a build (``--strict`` or not) fails on a stale generated block."""
    from mkdocs.exceptions import PluginError

    if bad := stale():
        names = ", ".join(p.name for p in bad)
        raise PluginError(f"generated docs out of date: {names}; run `make docs`")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
