"""`make run` installs the run-time lock only: the runner must work without the test tools.

`runner/` may import only what the run-time lock (requirements.lock) installs, Ray excepted
(`run --ray`, the ray extra), and `--ray` without Ray says in one line how to install it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.utils import canonicalize_name
from test_lockfile import locked

REPO = Path(__file__).resolve().parents[1]
RUN_LOCK = REPO / "requirements.lock"
# imported only by `run --ray` (runner/cluster.py), which says how to install it when missing
OPTIONAL = {"ray": {"runner/cluster.py"}}


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module imported by runner/ (outside the standard library) -> the files."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / "runner").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.partition(".")[0]
                if top != "runner" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_runner_imports_only_what_the_run_time_lock_installs() -> None:
    pins = locked(RUN_LOCK)
    dists = packages_distributions()
    imports = third_party_imports()
    assert {"polars", "httpx", "pydantic"} <= imports.keys()
    outside: list[str] = []
    for module, files in sorted(imports.items()):
        if module in OPTIONAL:
            assert files <= OPTIONAL[module], f"{module} imported outside {OPTIONAL[module]}"
            continue
        names = {canonicalize_name(d) for d in dists.get(module, [module])}
        if not names & pins.keys():
            outside.append(f"{module} ({', '.join(sorted(files))})")
    assert not outside, f"imported by runner/ but not in {RUN_LOCK.name}: {outside}"


def test_ray_without_ray_says_how_to_install_it(tmp_path: Path) -> None:
    # a `ray` that cannot be imported, as in the light install
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'ray'\", name='ray')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner",
            "run",
            str(REPO / "configs" / "example.yaml"),
            "--results",
            str(tmp_path / "results"),
            "--ray",
            "--shards",
            "2",
            "--no-preflight",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: --ray needs Ray"), proc.stderr
    assert "make ray" in lines[-1]
    assert "Traceback" not in proc.stderr
