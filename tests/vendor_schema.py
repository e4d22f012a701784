"""The vendor's published OpenAPI document: the outside truth our shapes are checked against.

A byte-identical copy of the vendor's public document lives in the repository at
``tests/vendor/elevenlabs-openapi-subset.json`` (a fresh clone tests against it; no fallback,
no skip). One loader for every test that validates a body against it.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

NAME = "elevenlabs-openapi-subset.json"
OPENAPI_PATH = Path(__file__).resolve().parent / "vendor" / NAME


def openapi_path() -> Path:
    return OPENAPI_PATH


@cache
def vendor_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(openapi_path().read_text(encoding="utf-8"))
    return doc


@cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    """Draft 2020-12 validator for ``#/components/schemas/<name>`` of the vendor document."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": vendor_doc()["components"]}
    return jsonschema.Draft202012Validator(schema)


def vendor_errors(name: str, instance: Any) -> list[str]:
    errors = sorted(validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors]


def assert_vendor_valid(name: str, instance: Any) -> None:
    errors = vendor_errors(name, instance)
    assert not errors, f"not a valid {name}: " + "; ".join(errors[:5])
