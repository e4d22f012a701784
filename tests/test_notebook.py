"""``notebooks/pass_rates.ipynb`` runs top to bottom against a run this test makes, and the
commands the docs give to open and run it are installed by the command they give."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import yaml
from sweep_data import MISSING_ORDER, OFF_TOPIC, ORDER_STATUS_CRITERION

import runner

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "pass_rates.ipynb"
DOCS_PAGE = REPO / "docs" / "analysis.md"


def small_config(path: Path) -> Path:
    """Two agents (the labels the notebook compares by default) x 2 scenarios x 3 repeats,
    against the bundled local API, sped up."""
    config: dict[str, Any] = {
        "target": {"base_url": "local", "local": {"time_scale": 0.002, "seed": 3}},
        "run": {"name": "nb", "concurrency": 6, "new_turns_limit": 8, "repeats": 3, "seed": 3},
        "agents": [
            {"id": "agent_support", "label": "support"},
            {"id": "agent_support_lite", "label": "support-lite"},
        ],
        "criteria": [dict(ORDER_STATUS_CRITERION)],
        "scenarios": [dict(MISSING_ORDER), dict(OFF_TOPIC)],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _text(output: Any) -> str:
    if output.get("output_type") == "stream":
        return str(output.get("text", ""))
    return str(output.get("data", {}).get("text/plain", ""))


def test_the_docs_say_how_to_open_and_run_it_and_make_notebook_installs_that() -> None:
    text = DOCS_PAGE.read_text()
    commands = re.findall(r"^(make notebook|\.venv/bin/jupyter \w+ \S+)", text, re.M)
    assert commands == [
        "make notebook",
        ".venv/bin/jupyter lab notebooks/pass_rates.ipynb",
        ".venv/bin/jupyter execute notebooks/pass_rates.ipynb",
    ]
    # make notebook: the notebook extra's lock into .venv (the pattern rule for extras)
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^notebook: \$\(VENV\)/\.extra-notebook$", makefile, re.M)
    assert "pip install --quiet --require-hashes -r requirements-$*.lock" in makefile
    lock = (REPO / "requirements-notebook.lock").read_text()
    for tool in ("jupyterlab", "nbclient", "ipykernel", "matplotlib"):
        assert re.search(rf"^{tool}==", lock, re.M), f"requirements-notebook.lock lacks {tool}"


def test_jupyter_execute_as_the_docs_give_it(tmp_path: Path) -> None:
    """The docs' headless command, run for real (the test venv holds the notebook extra) against
    a run this test makes; ``--output`` keeps the executed copy (in the temp dir) to read what
    every cell printed and drew."""
    report = runner.run(small_config(tmp_path / "nb.yaml"), results_root=tmp_path, progress=False)
    assert report.counters.done == 12
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), (
        "commit the notebook without outputs"
    )
    jupyter = Path(sys.executable).parent / "jupyter"
    env = {**os.environ, "RUNNER_RUN_DIR": str(report.run_dir)}  # the kernel inherits it
    for name in ("RUNNER_AGENT_A", "RUNNER_AGENT_B"):
        env.pop(name, None)
    before = NOTEBOOK.read_bytes()
    executed = tmp_path / "executed"  # absolute: nbclient joins it to the notebook's folder
    done = subprocess.run(
        [str(jupyter), "execute", str(NOTEBOOK), f"--output={executed}"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]  # a failing cell fails the command
    assert NOTEBOOK.read_bytes() == before  # the committed file is left as it is

    ran = nbformat.read(executed.with_suffix(".ipynb"), as_version=4)
    outputs = [o for c in ran.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # pass rates, pass@k / pass^k, latency, the comparison
    text = "\n".join(_text(o) for o in outputs)
    assert f"{report.run_dir}: 12 jobs" in text
    assert "order_status_given" in text
    assert "A = support, B = support-lite" in text
    assert "verdict" in text
    lab = subprocess.run(
        [str(jupyter), "lab", "--version"], capture_output=True, text=True, timeout=60
    )
    assert lab.returncode == 0 and re.match(r"\d+\.\d+", lab.stdout), lab.stderr
