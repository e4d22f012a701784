"""configs/config.schema.json: current with `python -m runner schema`, and the examples fit it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from runner.config import load_config

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO / "configs/config.schema.json"
EDITOR_HINT = "# yaml-language-server: $schema=./config.schema.json"
NOT_SWEEP_CONFIGS = {"agents.yaml"}  # the local API's agent list: another format


def shipped_examples() -> list[Path]:
    """The example configs the project ships: tracked by git. A user's own config in configs/
    (the README suggests keeping one there) is not an example and is not held to the hint."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--", "configs/*.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = [REPO / n for n in tracked.split("\0") if n]
    return sorted(
        p for p in names if p.parent == REPO / "configs" and p.name not in NOT_SWEEP_CONFIGS
    )


EXAMPLES = shipped_examples()
GOOD = sorted((REPO / "tests/configs/good").glob("*.yaml"))
BAD = REPO / "tests/configs/bad"


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator: jsonschema.Draft202012Validator, path: Path) -> list[str]:
    data: Any = yaml.safe_load(path.read_text())
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(data)
    ]


def test_committed_schema_is_the_commands_output() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "runner", "schema"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out)["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA_PATH.read_text() == out, (
        f"{rel(SCHEMA_PATH)} differs from `python -m runner schema`: "
        "run `make schema` and commit the file"
    )


def test_examples_are_found() -> None:
    assert REPO / "configs/example.yaml" in EXAMPLES
    assert len(EXAMPLES) >= 3


def test_a_users_own_config_is_not_an_example() -> None:
    # the README suggests adding a config beside the examples; `make test` must not judge it
    own = REPO / "configs" / "zz-a-users-own-config.yaml"
    own.write_text("run: {name: mine}\n")
    try:
        assert own not in shipped_examples()
    finally:
        own.unlink()


@pytest.mark.parametrize("path", EXAMPLES, ids=rel)
def test_example_starts_with_the_editor_hint(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    assert first == EDITOR_HINT, f"{rel(path)}: the first line must be `{EDITOR_HINT}`"
    assert (path.parent / "config.schema.json").is_file()
    load_config(path)  # the comment changes nothing for the loader


@pytest.mark.parametrize("path", [*EXAMPLES, *GOOD], ids=rel)
def test_config_the_loader_accepts_validates(
    validator: jsonschema.Draft202012Validator, path: Path
) -> None:
    # the schema may be looser than the loader, never stricter: an editor must not flag a
    # config that runs
    assert errors(validator, path) == []


@pytest.mark.parametrize(
    "name",
    [
        "unknown_top_key.yaml",
        "unknown_nested_key.yaml",
        "unknown_scenario_key.yaml",
        "backend_unknown.yaml",
        "concurrency_wrong_type.yaml",
        "repeats_zero.yaml",
        "rpm_zero.yaml",
        "source_path_key.yaml",
    ],
)
def test_schema_flags_what_an_editor_should(
    validator: jsonschema.Draft202012Validator, name: str
) -> None:
    assert errors(validator, BAD / name), f"{name}: the schema accepts it"
