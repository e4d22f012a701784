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


def test_the_local_api_may_import_only_the_wire_shapes() -> None:
    (rule,) = [c for c in contracts() if c.get("source_modules") == ["runner.localapi"]]
    allowed = {"runner.localapi", "runner.wire"}
    assert set(rule["forbidden_modules"]) == runner_modules() - allowed


def test_every_module_of_a_layered_package_has_a_layer() -> None:
    """The statistics core and the viewer's queries order their own modules."""
    inner = {c["containers"][0]: c for c in contracts() if c.get("containers")}
    assert set(inner) == {"runner.analysis", "runner.view.queries"}
    for package, contract in inner.items():
        placed = [m.strip() for layer in contract["layers"] for m in layer.split("|")]
        assert len(placed) == len(set(placed)), f"a module of {package} is in two layers"
        folder = ROOT.joinpath(*package.split("."))
        assert set(placed) == {p.stem for p in folder.glob("*.py")} - {"__init__"}, package
