"""The viewer in a real browser: Debian's Chromium (/usr/bin/chromium) driven by Playwright.

Playwright's own browser download is not available here, so it is pointed at the installed
Chromium (``.ci/run`` installs it with apt-get where it is missing). A missing browser fails
these tests loudly; they never skip. Every page visited must log no console error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from playwright.sync_api import expect, sync_playwright
from sweep_data import ORDER_STATUS_CRITERION, SUPPORT_SCENARIOS
from view_helpers import MARKED, XSS, PartFeeder, snapshot, xss_run

import runner
from bench.view_data import Shape, write_synthetic_run
from runner import analysis
from runner.localapi.server import local_api_process
from runner.report import write_report
from runner.view.server import Viewer, viewer_process

CHROMIUM = Path(shutil.which("chromium") or "chromium")
"""Debian's chromium (``.ci/run`` installs it where missing), found on PATH."""
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # every host name but the viewer's address fails to resolve: Chromium looks up Google's
    # hosts (accounts, updates) despite the switches above, and nothing may leave the machine
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
TIMEOUT_MS = 15_000


def sweep(path: Path, agents: list[dict[str, str]]) -> Path:
    config: dict[str, Any] = {
        "target": {"base_url": "local", "timeouts": {"connect": 5, "first_byte": 10, "idle": 5}},
        "run": {
            "concurrency": 6,
            "new_turns_limit": 8,
            "repeats": 3,
            "seed": 11,
            "retry": {"max_attempts": 2, "backoff_base": 0.01, "backoff_cap": 0.02, "jitter": 0.0},
        },
        "agents": agents,
        "criteria": [dict(ORDER_STATUS_CRITERION)],
        "scenarios": [dict(s) for s in SUPPORT_SCENARIOS],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two runs made against the local API (``base``: two agents; ``cand``: the weaker one),
    with ``base``'s report.html written, and a run full of markup (``xss``)."""
    root = tmp_path_factory.mktemp("results")
    configs = tmp_path_factory.mktemp("configs")
    agents = [
        {"id": "agent_support", "label": "support"},
        {"id": "agent_support_lite", "label": "lite"},
    ]
    with local_api_process(["--time-scale", "0.002", "--seed", "7"]) as api:
        for name, chosen in (("base", agents), ("cand", agents[1:])):
            config = sweep(configs / f"{name}.yaml", chosen)
            runner.run(config, name=name, results_root=root, progress=False, base_url=api.base_url)
    write_report(root / "base")
    xss_run(root)
    return root


@pytest.fixture(scope="module")
def viewer(results: Path) -> Iterator[Viewer]:
    before = snapshot(results)
    with viewer_process(results) as running:
        yield running
    assert running.stderr_text() == ""
    assert snapshot(results) == before  # browsing changed nothing


def chromium_env(home: Path) -> dict[str, str]:
    """Chromium's environment: ``HOME`` a directory of the test's (Chromium and Debian's
    wrapper write their profile, caches and crash reports under it), the rest as it is."""
    return {**os.environ, "HOME": str(home)}


@pytest.fixture(scope="module")
def browser(results: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Chromium, started after ``results``: Playwright's sync API keeps an event loop on this
    thread, and the sweeps that make the runs need it free."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium;"
            " .ci/run does it). The browser tests never skip."
        )
    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            env=chromium_env(tmp_path_factory.mktemp("home")),
        )
        yield launched
        launched.close()


class Console:
    """Console errors and uncaught exceptions of a page."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", self._message)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _message(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console.error: {message.text}")


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    console = Console(tab)
    tab.on("dialog", lambda d: console.errors.append(f"dialog opened: {d.message}"))
    yield tab
    context.close()
    assert console.errors == []


# --------------------------------------------------------------------------------- flows


def test_the_runs_page_lists_every_run(page: Any, viewer: Viewer, results: Path) -> None:
    page.goto(viewer.base_url + "/")
    rows = page.locator("#runs tbody tr")
    expect(rows).to_have_count(3)
    started = {
        name: json.loads((results / name / "manifest.json").read_text())["created_at"]
        for name in ("base", "cand", "xss")
    }
    newest = sorted(started, key=lambda n: (started[n], n), reverse=True)
    assert [r.get_attribute("data-run") for r in rows.all()] == newest  # newest first
    picked = [page.locator(f"select[name={s}]").input_value() for s in ("a", "b")]
    assert picked == [newest[1], newest[0]]  # the compare picker: the two newest
    base = page.locator('#runs tr[data-run="base"]')
    expect(base).to_contain_text("finished")
    expect(base).to_contain_text("stream")
    expect(page.locator("#live")).to_be_hidden()  # nothing is running


def test_a_red_heatmap_cell_leads_to_a_failing_transcript(page: Any, viewer: Viewer) -> None:
    page.goto(viewer.base_url + "/")
    page.get_by_role("link", name="base", exact=True).click()
    expect(page.locator("h1")).to_contain_text("Run base")
    cells = page.locator("#heat td a[href*='result=failure']")
    rates = [float(a.get_attribute("data-rate") or 1) for a in cells.all()]
    assert rates, "no cell with a failure in the heatmap"
    red = cells.nth(rates.index(min(rates)))
    shade = red.locator("xpath=..").get_attribute("class")
    assert shade in {"h0", "h1", "h2", "h3", "h4"}, shade  # red side of the scale
    criterion = re.search(r"criterion=([^&]+)", red.get_attribute("href") or "")
    assert criterion is not None
    red.click()
    expect(page).to_have_url(re.compile(r"/runs/base/cases\?.*result=failure"))
    rows = page.locator("#cases tbody tr")
    expect(rows.first).to_be_visible()
    failing = rows.first.locator(".pill.failure", has_text=criterion.group(1))
    expect(failing).to_have_count(1)
    rows.first.locator("a.job-link").click()
    expect(page).to_have_url(re.compile(r"/runs/base/jobs/"))
    row = page.locator(".criteria-results tr", has_text=criterion.group(1))
    expect(row.locator(".pill.failure")).to_have_count(1)
    assert (row.locator(".rationale").text_content() or "").strip()  # the judge's why
    expect(page.locator(".chat .msg").first).to_be_visible()
    assert page.locator(".chat .msg.agent").count() > 0
    assert page.locator(".chat .msg.user").count() > 0
    # the other repeats of the case are one click away
    current = page.url
    page.locator("#repeats ~ .repeats a.repeat").first.click()
    expect(page).not_to_have_url(current)
    expect(page.locator(".repeat.current")).to_have_count(1)


def test_filter_sort_and_search_the_cases(page: Any, viewer: Viewer, results: Path) -> None:
    page.goto(viewer.base_url + "/runs/base/cases")
    page.select_option("select[name=agent]", "lite")
    page.select_option("select[name=result]", "failure")
    page.get_by_role("button", name="apply").click()
    expect(page).to_have_url(re.compile(r"agent=lite.*result=failure"))
    rows = page.locator("#cases tbody tr")
    expect(rows.first).to_be_visible()
    for row in rows.all():
        expect(row.locator("td").first).to_have_text("lite")
        assert row.locator(".pill.failure").count() >= 1
    # sort by a column header: the link keeps the filters
    page.locator("#cases thead a", has_text="duration").click()
    expect(page).to_have_url(re.compile(r"agent=lite.*sort=duration"))
    # full-text search over the messages
    messages = pl.read_parquet(results / "base" / "messages.parquet")
    word = next(
        w
        for m in messages["message"].drop_nulls().to_list()
        for w in re.findall(r"[A-Za-z]{7,}", m)
    )
    page.goto(viewer.base_url + "/runs/base/cases")
    page.fill("input[name=q]", word.upper())
    page.press("input[name=q]", "Enter")
    expect(page).to_have_url(re.compile(r"q=" + word.upper()))
    snippet = page.locator("#cases .snippet").first
    expect(snippet).to_contain_text(re.compile(word, re.IGNORECASE))
    count = page.locator("#count").text_content() or ""
    expected = messages.filter(
        pl.col("message").str.to_lowercase().str.contains(word.lower(), literal=True)
    )["job_key"].n_unique()
    assert count.startswith(f"{expected} job(s) match")


def test_compare_two_runs_side_by_side(page: Any, viewer: Viewer) -> None:
    page.goto(viewer.base_url + "/compare")
    page.select_option("select[name=a]", "base")
    page.select_option("select[name=b]", "cand")
    page.get_by_role("button", name="compare").click()
    expect(page).to_have_url(re.compile(r"/compare\?a=base&b=cand"))
    rows = page.locator("#changes tbody tr")
    expect(rows.first).to_be_visible()
    changes = [r.locator("td").first.text_content() for r in rows.all()]
    rank = list(analysis.CASE_ORDER)  # significant changes, raw ones, one-sided, unchanged
    assert changes == sorted(changes, key=lambda c: rank.index((c or "").strip()))
    assert (page.locator("#verdicts").text_content() or "").startswith("verdicts: ")
    expect(page.locator("#by-criterion tbody tr").first).to_be_visible()
    rows.first.locator("a.side-by-side").click()
    expect(page).to_have_url(re.compile(r"/compare/case\?"))
    for side in ("#side-A", "#side-B"):
        expect(page.locator(f"{side} h2")).to_be_visible()
    expect(page.locator("#side-A .chat .msg, #side-B .chat .msg").first).to_be_visible()


def test_markup_in_a_transcript_shows_as_text(page: Any, viewer: Viewer) -> None:
    page.goto(viewer.base_url + "/runs/xss/jobs/k1")
    text = page.locator("#content").inner_text()
    assert "Hello " + XSS in text  # the message, verbatim
    assert "Judge says " + XSS in text  # the rationale, verbatim
    assert "</pre><script>x()</script>" in text  # a tool call's parameters
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("#content script, #content img").count() == 0
    page.goto(viewer.base_url + "/runs/xss/jobs/k2")  # an error message with markup
    assert XSS in page.locator(".errmsg").inner_text()
    page.goto(viewer.base_url + "/runs/xss/cases?q=script")
    expect(page.locator("#cases .snippet")).to_contain_text("<script>window.__xss")
    assert page.evaluate("typeof window.__xss") == "undefined"
    # the ids, labels and names with markup, on the run and compare pages too
    for path in ("/runs/xss", "/runs/xss/jobs/k1", "/compare?a=xss&b=xss&all=1"):
        page.goto(viewer.base_url + path)
        expect(page.locator("#content")).to_contain_text("<script>window.__scenario = 1")
        ran = page.evaluate(f"[{', '.join(f'typeof window.__{f}' for f in MARKED)}]")
        assert set(ran) == {"undefined"}, (path, ran)


def test_the_run_page_draws_the_reports_charts(page: Any, viewer: Viewer) -> None:
    """The latency histograms (the jobs' and the messages'), attempts and retries, and
    requests in flight, drawn inline (no console error: the page's CSP lets them render); a
    bar opens its jobs."""
    page.goto(viewer.base_url + "/runs/base")
    histograms = page.locator("#latency-charts svg")
    expect(histograms).to_have_count(5)
    expect(page.locator("#message-charts svg")).to_have_count(2)
    expect(page.locator("#message-sample")).to_contain_text("ok jobs")
    expect(page.locator("#attempts-chart svg rect").first).to_be_attached()
    expect(page.locator("#in-flight-chart svg polyline").first).to_be_attached()
    box = histograms.first.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 50  # laid out, not hidden
    bar = page.locator("#latency-charts svg a").first
    bar.click()
    expect(page).to_have_url(re.compile(r"/runs/base/cases\?.*lat=first_frame.*lat_bin="))
    expect(page.locator("#cases tbody tr").first).to_be_visible()


def test_reading_needs_no_script(browser: Any, viewer: Viewer) -> None:
    """With JavaScript off every page still reads and every link and filter still works."""
    context = browser.new_context(java_script_enabled=False)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        tab = context.new_page()
        console = Console(tab)
        tab.goto(viewer.base_url + "/")
        tab.get_by_role("link", name="base", exact=True).click()
        expect(tab.locator("#latency-charts svg")).to_have_count(5)  # drawn without script
        expect(tab.locator("#message-charts svg")).to_have_count(2)
        expect(tab.locator("#message-latency-table tbody tr")).to_have_count(2)
        tab.locator("#heat td a").first.click()
        expect(tab).to_have_url(re.compile(r"/runs/base/cases\?"))
        tab.select_option("select[name=status]", "ok")
        tab.get_by_role("button", name="apply").click()
        expect(tab).to_have_url(re.compile(r"status=ok"))
        tab.locator("#cases a.job-link").first.click()
        expect(tab.locator(".chat .msg").first).to_be_visible()
        assert console.errors == []
    finally:
        context.close()


def test_names_outside_the_results_directory_answer_404(browser: Any, viewer: Viewer) -> None:
    context = browser.new_context()
    try:
        tab = context.new_page()
        # (a browser resolves "/runs/.." and "/runs/%2e%2e" to "/" before asking; the raw
        # dot segments are sent over a socket in tests/test_view_app.py)
        for path in (
            "/runs/%2Fetc%2Fpasswd",
            "/runs/..%2F..%2Fetc",
            "/runs/nope",
            "/runs/base/jobs/..%2Fmanifest.json",
            "/runs/base/jobs/..%2F..%2Fcand",
        ):
            reply = tab.goto(viewer.base_url + path)
            assert reply is not None and reply.status == 404, path
            expect(tab.locator("h1")).to_have_text("404")
    finally:
        context.close()


def test_the_static_report_explains_its_failures(page: Any, results: Path) -> None:
    report = results / "base" / "report.html"
    page.goto(report.as_uri())
    section = page.locator("#failures")
    expect(section).to_be_visible()
    first = page.locator("details.fx-case").first
    expect(first.locator(".fx-chat")).to_be_hidden()
    first.locator("summary").click()
    expect(first).to_have_attribute("open", "")
    expect(first.locator(".fx-why")).to_be_visible()
    expect(first.locator(".fx-chat li").first).to_be_visible()
    assert page.locator("script").count() == 0


# ----------------------------------------------------------------------------------- live


def test_a_running_run_advances_in_the_browser(page: Any, tmp_path: Path) -> None:
    source = write_synthetic_run(tmp_path / "source", Shape(agents=1, scenarios=3, repeats=10))
    root = tmp_path / "results"
    feeder = PartFeeder(source, root / "live", per_part=20)
    try:
        feeder.add_part()
        with viewer_process(root) as viewer:
            page.goto(viewer.base_url + "/runs/live")
            expect(page.locator("h1 .badge")).to_have_text("running")
            expect(page.locator("#progress")).to_have_text("20 of 60 jobs")
            expect(page.locator("#live")).to_be_visible()
            page.evaluate("window.__marker = 42")
            feeder.add_part()
            expect(page.locator("#progress")).to_have_text("40 of 60 jobs")
            cards = page.locator(".cards .card").first
            expect(cards).to_contain_text("40")
            assert page.evaluate("window.__marker") == 42  # updated in place, not reloaded
            # the runs page follows too, and the run finishing stops the polling
            page.goto(viewer.base_url + "/")
            row = page.locator('#runs tr[data-run="live"]')
            expect(row).to_contain_text("40 of 60 jobs")
            page.evaluate("window.__marker = 7")
            feeder.add_part()
            expect(row).to_contain_text("60 of 60 jobs")
            feeder.finish()
            expect(page.locator('#runs tr[data-run="live"] .badge')).to_have_text("finished")
            expect(page.locator("#live")).to_be_hidden()
            assert page.evaluate("window.__marker") == 7
        assert viewer.stderr_text() == ""
    finally:
        feeder.release()
