"""The viewer's verdicts and paired-comparison sections in a real browser (Debian's Chromium
driven by Playwright, as ``test_view_browser``), over tiny runs written by ``sequential_runs``
(no sweep: seconds, not minutes). Every page visited must log no console error."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright
from sequential_runs import sequential_runs
from test_view_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, Console, chromium_env
from view_helpers import snapshot

from runner.view.server import Viewer, viewer_process


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    sequential_runs(root)
    return root


@pytest.fixture(scope="module")
def viewer(results: Path) -> Iterator[Viewer]:
    before = snapshot(results)
    with viewer_process(results) as running:
        yield running
    assert running.stderr_text() == ""
    assert snapshot(results) == before  # browsing changed nothing


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            env=chromium_env(tmp_path_factory.mktemp("home")),
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    console = Console(tab)
    yield tab
    context.close()
    assert console.errors == []


def test_the_run_page_lists_the_verdicts(page: Any, viewer: Viewer) -> None:
    page.goto(viewer.base_url + "/runs/seq_a")
    expect(page.locator("#verdict-summary")).to_contain_text(
        "settled after 8.0 of 20 repeats on average; 23 simulations and $0.23 not spent"
    )
    rows = page.locator("#verdict-table tbody tr")
    expect(rows).to_have_count(3)
    first = [c.strip() for c in rows.first.locator("td").all_inner_texts()]
    assert first[:3] == ["fail", "support", "s2"]
    passed = [c.strip() for c in rows.nth(2).locator("td").all_inner_texts()]
    assert passed[4] == "15 of 20" and passed[11:13] == ["14", "1"]  # settled at, ran past
    rows.first.locator("a").click()  # the scenario opens its jobs
    expect(page).to_have_url(re.compile(r"/runs/seq_a/cases\?scenario=s2"))
    page.goto(viewer.base_url + "/runs/plain")  # no verdicts table: no section
    expect(page.locator("#criteria")).to_be_visible()
    expect(page.locator("#verdicts")).to_have_count(0)


def test_a_compare_runs_page_shows_its_paired_decision(page: Any, viewer: Viewer) -> None:
    page.goto(viewer.base_url + "/runs/cmp")
    expect(page.locator("#paired-decision")).to_have_text("WORSE")
    headline = page.locator("#paired-headline")
    expect(headline).to_contain_text(re.compile(r"decided after \d+ of 400 pairs"))
    expect(page.locator("#paired-lost")).to_contain_text("hard (-75.0 pts), mid (-58.3 pts)")
    chart = page.locator("#paired-chart svg")
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100  # drawn, not hidden
    expect(chart.locator("polygon.sequence")).to_be_attached()
    expect(page.locator("#paired-spend tbody tr")).to_have_count(2)


def test_the_compare_page_shows_changed_verdicts_and_the_paired_section(
    page: Any, viewer: Viewer
) -> None:
    page.goto(viewer.base_url + "/compare?a=seq_a&b=seq_b")
    changes = page.locator("#verdict-change-table tbody tr")
    expect(changes).to_have_count(2)
    assert [r.locator("td").first.inner_text().strip() for r in changes.all()] == [
        "now fails",
        "now passes",
    ]
    expect(changes.first).to_contain_text("pass (15 of 15 passed)")
    expect(page.locator("#paired-decision")).to_have_text("UNDECIDED")
    expect(page.locator("#paired-scenarios tbody tr")).to_have_count(3)
    expect(page.locator("#paired-chart svg polyline.observed")).to_be_attached()
    page.goto(viewer.base_url + "/compare?a=seq_a&b=plain")  # B has no verdicts table
    expect(page.locator("#by-criterion")).to_be_visible()
    expect(page.locator("#verdict-changes")).to_have_count(0)
