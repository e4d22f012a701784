"""The docs hold what the code generates, and the front door's links lead somewhere.

`mkdocs build --strict` (in `make test`) checks the site's own links and anchors; these checks
run without mkdocs: the generated blocks of the pages (docs/gen.py) are current, and every
relative link in README.md names a file that exists.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_gen", DOCS / "gen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_blocks_are_current() -> None:
    stale = _gen().stale()
    assert not stale, f"generated docs out of date: {stale}; run `make docs`"


def test_config_reference_lists_every_key_of_the_schema() -> None:
    from runner.config.jsonschema import config_schema_text

    text = (DOCS / "config.md").read_text()
    assert "<!-- gen:config-reference -->" in text
    for key in ("run.budget.usd", "target.timeouts.idle", "target.agent_testing.poll_budget"):
        assert f"| `{key}` |" in text
    assert '"ELEVENLABS_API_KEY"' in config_schema_text()
    assert '| `target.api_key_env` | string | `"ELEVENLABS_API_KEY"` |' in text


def test_a_stale_block_is_found_and_rewritten() -> None:
    gen = _gen()
    page = "# t\n\n<!-- gen:tables -->\nold text\n<!-- /gen:tables -->\n"
    rendered = gen.render(page)
    assert "old text" not in rendered
    assert "`jobs.parquet`" in rendered
    assert gen.render(rendered) == rendered


def test_readme_links_resolve() -> None:
    text = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert len(local) >= 10
    missing = [t for t in local if not (REPO / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_readme_is_a_front_door() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 300
    assert "make run CONFIG=configs/example.yaml" in "\n".join(lines)
    assert "make test" in "\n".join(lines)
