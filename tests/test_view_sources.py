"""Issue 30 in the viewer, in Chromium: the run page's criteria filtered by source (a control,
``?source=``) and the agreement of an assertion with the criterion it mirrors. One tiny run
(``test_sources.tiny_run``); the browser as ``test_view_browser`` drives it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest
from playwright.sync_api import expect, sync_playwright
from test_sources import JUDGED, MIRROR, tiny_run
from test_view_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, chromium_env

from runner.view.server import Viewer, viewer_process


@pytest.fixture(scope="module")
def viewer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Viewer]:
    root = tmp_path_factory.mktemp("results")
    tiny_run(root)
    with viewer_process(root) as running:
        yield running


def test_a_source_that_is_none_is_refused_in_one_line(viewer: Viewer) -> None:
    with pytest.raises(HTTPError) as caught:
        urlopen(viewer.base_url + "/runs/tiny?source=bogus")
    with caught.value as reply:
        assert reply.code == 400
        assert b"no source &#39;bogus&#39;" in reply.read()


def test_the_run_page_filters_its_criteria_by_source_and_shows_agreement(
    viewer: Viewer, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing (the browser tests never skip)")
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, env=chromium_env(tmp_path)
        )
        page: Any = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(viewer.base_url + "/runs/tiny")
        rows = page.locator("#criteria tbody tr td:first-child")
        expect(rows).to_have_count(4)
        agreement = page.locator("#agreement-table tbody tr td")
        expect(agreement).to_have_text([MIRROR, JUDGED, "3", "4", "75.0%", "1", "0"])

        page.check("#source-filter input[value=assert]")
        page.click("#source-filter button")
        page.wait_for_url("**/runs/tiny?source=assert")
        expect(rows).to_have_text([MIRROR, "short_call"])
        expect(page.locator("#source-filter input[value=assert]")).to_be_checked()
        expect(page.locator(".cards")).to_contain_text("87.5%")  # 7 of 8 assertion rows

        page.goto(viewer.base_url + "/runs/tiny?source=extra&source=agent")
        expect(rows).to_have_text([JUDGED, "polite"])
        browser.close()
    assert errors == []


def _html(url: str) -> str:
    with urlopen(url) as reply:
        return str(reply.read().decode())


def test_the_source_filter_is_kept_into_the_cases_page_which_filters_by_it(viewer: Viewer) -> None:
    run = _html(viewer.base_url + "/runs/tiny?source=assert")
    assert "/runs/tiny/cases?criterion=short_call&amp;source=assert" in run
    assert 'href="/runs/tiny/cases?source=assert"' in run  # a link without a query of its own
    assert "/runs/tiny/cases?criterion=polite" not in run  # a judged criterion: filtered out

    everything = _html(viewer.base_url + "/runs/tiny/cases")
    judged = _html(viewer.base_url + "/runs/tiny/cases?source=extra&source=agent")
    for html in (everything, judged):
        assert f"<option>{JUDGED}</option>" in html
    assert "<option>short_call</option>" in everything
    assert "<option>short_call</option>" not in judged  # an assertion: not a judged source
    assert judged.count('name="source" value=') == 2  # kept by the filter form
    with pytest.raises(HTTPError) as caught:
        urlopen(viewer.base_url + "/runs/tiny/cases?source=bogus")
    caught.value.close()
    assert caught.value.code == 400
