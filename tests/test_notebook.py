"""``notebooks/pass_rates.ipynb`` runs top to bottom against a run this test makes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from nbclient import NotebookClient
from sweep_data import MISSING_ORDER, OFF_TOPIC, ORDER_STATUS_CRITERION

import runner

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "pass_rates.ipynb"


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


def test_notebook_executes_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = runner.run(small_config(tmp_path / "nb.yaml"), results_root=tmp_path, progress=False)
    assert report.counters.done == 12
    monkeypatch.setenv("RUNNER_RUN_DIR", str(report.run_dir))  # the kernel inherits it
    monkeypatch.delenv("RUNNER_AGENT_A", raising=False)
    monkeypatch.delenv("RUNNER_AGENT_B", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), (
        "commit the notebook without outputs"
    )

    NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()  # raises CellExecutionError, with the traceback, if any cell fails

    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # pass rates, pass@k / pass^k, latency, the comparison
    text = "\n".join(_text(o) for o in outputs)
    assert f"{report.run_dir}: 12 jobs" in text
    assert "order_status_given" in text
    assert "A = support, B = support-lite" in text
    assert "verdict" in text
