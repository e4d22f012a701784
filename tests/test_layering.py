"""The layering contracts (pyproject's ``[tool.importlinter]``, checked by ``lint-imports`` in
``make lint``) name every module of ``runner/``: a new module must be given its place."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    found: list[dict[str, Any]] = config["contracts"]
    return found


def runner_modules() -> set[str]:
    """Top-level modules and packages of ``runner`` (the entry points excepted)."""
    out = set()
    for path in (ROOT / "runner").iterdir():
        if path.suffix == ".py" and path.stem not in ("__init__", "__main__"):
            out.add(f"runner.{path.stem}")
        elif path.is_dir() and (path / "__init__.py").exists():
            out.add(f"runner.{path.name}")
    return out


def test_every_module_has_a_layer() -> None:
    (layers,) = [c for c in contracts() if c["type"] == "layers" and not c.get("containers")]
    placed = [m.strip() for layer in layers["layers"] for m in layer.replace(":", "|").split("|")]
    assert len(placed) == len(set(placed)), "a module is in two layers"
    assert set(placed) == runner_modules()


def test_the_local_api_may_import_only_the_wire_shapes_and_the_serving_plumbing() -> None:
    (rule,) = [c for c in contracts() if c.get("source_modules") == ["runner.localapi"]]
    allowed = {"runner.localapi", "runner.wire", "runner.serving"}
    assert set(rule["forbidden_modules"]) == runner_modules() - allowed


def test_every_module_of_a_layered_package_has_a_layer() -> None:
    """A package split into layers of its own (``containers``) names each of its modules."""
    packaged = [c for c in contracts() if c["type"] == "layers" and c.get("containers")]
    assert packaged, "no package has layers of its own"
    for contract in packaged:
        placed = [m.strip() for layer in contract["layers"] for m in layer.split("|")]
        for container in contract["containers"]:
            folder = ROOT.joinpath(*container.split("."))
            modules = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
            modules |= {p.parent.name for p in folder.glob("*/__init__.py")}
            assert len(placed) == len(set(placed)), f"a module of {container} is in two layers"
            assert sorted(placed) == sorted(modules), container
