"""The viewer's routes over HTTP (a real viewer process, an httpx client): what each answers,
escaping, path safety, headers. tests/test_view_browser.py drives the same pages in Chromium."""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import polars as pl
import pytest
from view_helpers import AGENT, CRITERION, MARKED, SCENARIO, PartFeeder, escaped, snapshot, xss_run

from bench.view_data import Shape, write_synthetic_run
from runner import analysis
from runner.estimate import money
from runner.report import charts
from runner.view import queries
from runner.view.app import allowed_hosts_for, create_app
from runner.view.server import Viewer, viewer_process


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("results")
    xss_run(base)
    xss_run(base, "xss2")  # to compare with
    write_synthetic_run(base / "syn", Shape(agents=2, scenarios=3, repeats=3, error_every=7))
    (base / "syn" / "report.html").write_text("<!doctype html><p>report</p>")
    # the same sweep again with another seed: only noise between the two
    write_synthetic_run(
        base / "reseeded", Shape(agents=2, scenarios=3, repeats=3, error_every=7, seed=1)
    )
    fresh = base / "fresh"  # a run that has just started: a manifest, no part yet
    (fresh / "parts" / "jobs").mkdir(parents=True)
    (fresh / "manifest.json").write_text(
        '{"run_name": "fresh", "finalized": false, "matrix_axes": ["language"],'
        ' "created_at": "2026-01-01T00:00:00Z", "config_path": "c.yaml", "config_hash": "0",'
        ' "target": {"base_url": "local", "backend": "stream"},'
        ' "sessions": [{"run_id": "s", "started_at": "2026-01-01T00:00:00Z",'
        ' "config_hash": "0", "planned": 12, "skipped": 0}]}'
    )
    secret = tmp_path_factory.mktemp("outside") / "secret.html"
    secret.write_text("secret")
    (base / "xss" / "report.html").symlink_to(secret)  # points out of the results directory
    return base


@pytest.fixture(scope="module")
def viewer(root: Path) -> Iterator[Viewer]:
    with viewer_process(root) as running:
        yield running
    assert running.stderr_text() == ""  # no traceback, no warning


@pytest.fixture(scope="module")
def client(viewer: Viewer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=viewer.base_url, timeout=30) as c:
        yield c


def test_the_compare_page_gives_the_commands_verdicts_and_keeps_noise_apart(
    root: Path, client: httpx.Client
) -> None:
    """Issue 29, defect 1: two runs that differ only in their seed. The page says what
    ``python -m runner compare`` says, shows the interval, and a case whose pass rate moved
    within the noise is a raw difference, never a red regression."""
    command = subprocess.run(
        [sys.executable, "-m", "runner", "compare", str(root / "syn"), str(root / "reseeded")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    said = next(line for line in command.stdout.splitlines() if line.startswith("verdicts:"))
    page = client.get("/compare", params={"a": "syn", "b": "reseeded"}).text
    shown = re.search(r'<p class="meta" id="verdicts">(.*?)</p>', page, re.S)
    assert shown is not None and shown.group(1).strip() == said
    assert "95% interval" in page and " to " in page
    # each case judged by hand: the Newcombe interval of its own repeats
    keys = ["agent_id", "scenario_id", "matrix.language", "criterion_id"]

    def decided(side: str) -> pl.DataFrame:
        crit = pl.read_parquet(root / side / "criteria.parquet")
        jobs = pl.read_parquet(root / side / "jobs.parquet")
        return (
            crit.join(jobs, on="job_key")
            .group_by(keys)
            .agg(
                (pl.col("result") == "success").sum().alias("s"),
                pl.col("result").is_in(["success", "failure"]).sum().alias("n"),
            )
        )

    significant = raw = 0
    for r in decided("syn").join(decided("reseeded"), on=keys).iter_rows(named=True):
        if r["n"] and r["n_right"]:
            _, high = analysis.newcombe_interval(r["s"], r["n"], r["s_right"], r["n_right"])
            significant += high < 0
            raw += high >= 0 and r["s_right"] / r["n_right"] < r["s"] / r["n"]
    changes = client.get("/compare", params={"a": "syn", "b": "reseeded", "all": "1"}).text
    table = changes[changes.index('id="changes"') :]
    assert table.count('class="badge error"') == significant
    assert table.count(">lower<") == raw > 0  # the raw drops are there, apart
    assert "regressed" not in table


def test_every_page_answers_and_carries_the_security_headers(client: httpx.Client) -> None:
    pages = [
        "/",
        "/runs/syn",
        "/runs/syn?heat=2",
        "/runs/syn/cases",
        "/runs/syn/cases?criterion=politeness&result=failure&flaky=1&sort=failed&desc=1",
        "/runs/syn/cases?m.language=es&q=order&status=ok",
        "/runs/syn/cases?sort=first_frame&desc=1",
        "/runs/syn/jobs/k0000000001",
        "/compare",
        "/compare?a=syn&b=syn&all=1",
        "/compare/case?a=syn&b=syn&agent_id=agent_0&scenario_id=scenario_000"
        "&criterion_id=politeness&m.language=en",
        "/runs/xss",
        "/runs/xss/jobs/k1",
        "/runs/xss/jobs/k2",
        "/runs/fresh",
        "/runs/fresh/cases",
        "/runs/fresh/cases?q=x&flaky=1&criterion=c&result=failure",
        "/compare?a=syn&b=fresh",
    ]
    for path in pages:
        reply = client.get(path)
        assert reply.status_code == 200, (path, reply.text[:500])
        csp = reply.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert reply.headers["x-content-type-options"] == "nosniff"
    assert "0 job(s) match" in client.get("/runs/fresh/cases").text
    assert "incomplete" in client.get("/").text  # nobody holds its lock
    assert client.get("/static/view.js").status_code == 200
    assert client.get("/static/view.css").headers["content-type"].startswith("text/css")


def test_untrusted_text_is_escaped_everywhere(client: httpx.Client) -> None:
    for path in ("/runs/xss/jobs/k1", "/runs/xss/jobs/k2", "/runs/xss/cases?q=script"):
        page = client.get(path).text
        assert "<script>window.__xss" not in page and "<img src=x" not in page
        assert "<b>lookup</b>" not in page and "<i>x</i>" not in page
        # the only script is the viewer's own file
        assert re.findall(r"<script\b[^>]*>", page) == ['<script src="/static/view.js" defer>']
    job = client.get("/runs/xss/jobs/k1").text
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in job  # shown, as text
    assert "Judge says &lt;script&gt;" in job
    assert "&lt;b&gt;lookup&lt;/b&gt;" in job
    assert "&lt;/pre&gt;&lt;script&gt;x()&lt;/script&gt;" in job


ON_A_PAGE = {"criterion", "scenario"}
MARKED_PAGES = {
    "/runs/xss": ON_A_PAGE,
    "/runs/xss/cases": {*ON_A_PAGE, "label"},
    "/runs/xss/jobs/k1": set(MARKED),
    "/runs/xss/jobs/k2": {*ON_A_PAGE, "label", "agent"},
    "/compare?a=xss&b=xss2&all=1": {*ON_A_PAGE, "label"},
    "/compare/case?"
    + urlencode(
        {"a": "xss", "b": "xss2", "agent_id": AGENT, "scenario_id": SCENARIO}
        | {"criterion_id": CRITERION}
    ): {*ON_A_PAGE, "agent", "criterion_name", "tool_result"},
}
"""Which of ``xss_run``'s marked fields each page shows (as text)."""


def test_markup_in_every_id_and_name_shows_as_text(client: httpx.Client) -> None:
    """Labels, ids, criterion names, summaries, tool results, data-collection ids: on the run,
    cases, job and compare pages, each shown as text where the page shows it, never as markup."""
    shown = {}
    for path in MARKED_PAGES:
        reply = client.get(path)
        assert reply.status_code == 200, (path, reply.text[:500])
        page = reply.text
        assert "<script>window.__" not in page, path
        assert re.findall(r"<script\b[^>]*>", page) == ['<script src="/static/view.js" defer>']
        shown[path] = {field for field in MARKED if escaped(field) in page}
    assert shown == MARKED_PAGES


def test_names_outside_the_listing_answer_404(client: httpx.Client, root: Path) -> None:
    for path in (
        "/runs/nope",
        "/runs/%2e%2e",
        "/runs/..%2Fxss",
        "/runs/%2Fetc%2Fpasswd",
        "/runs/%2Fetc",
        "/runs/syn/jobs/..%2F..%2Fmanifest.json",
        "/runs/syn/jobs/missing",
        "/compare?a=syn&b=..",
        "/compare?a=%2Fetc&b=syn",
        "/static/..%2Fapp.py",
        "/runs/nope/report.html",
        "/runs/xss/report.html",  # a symlink out of the results directory
    ):
        reply = client.get(path)
        assert reply.status_code == 404, path
        assert "<script>" not in reply.text
    reply = client.get("/runs/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert reply.status_code == 404 and "<script>alert" not in reply.text


def test_raw_dot_segments_answer_404(viewer: Viewer) -> None:
    """What a client that does not normalise paths sends, over a socket."""
    host, port = viewer.base_url.removeprefix("http://").split(":")
    for path in ("/runs/..", "/runs/../", "/runs/../../etc/passwd", "/runs/syn/../..",
                 "/static/../app.py", "//etc/passwd"):  # fmt: skip
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", path)
        reply = conn.getresponse()
        reply.read()
        conn.close()
        assert reply.status == 404, path


def test_bad_parameters_answer_400_and_hosts_are_checked(client: httpx.Client) -> None:
    assert client.get("/runs/syn/cases?result=maybe").status_code == 400
    assert client.get("/runs/syn/cases?sort=__class__").status_code == 400
    assert client.get("/runs/syn/cases?m.llm=x").status_code == 400
    assert client.get("/compare/case?a=syn&b=syn").status_code == 400
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400
    assert allowed_hosts_for("0.0.0.0") is None  # bound elsewhere on purpose: any host name


def test_the_saved_report_is_served_without_script(client: httpx.Client) -> None:
    reply = client.get("/runs/syn/report.html")
    assert reply.status_code == 200 and "report" in reply.text
    assert "script-src" not in reply.headers["content-security-policy"]  # default-src 'none'


def test_version_api_and_read_only(client: httpx.Client, root: Path) -> None:
    before = snapshot(root)
    one = client.get("/api/version?run=syn").json()
    assert one["running"] is False and one["version"]
    assert client.get("/api/version").json()["running"] is False
    assert client.get("/api/version?run=..").status_code == 404
    for path in ("/", "/runs/syn", "/runs/syn/cases?q=a", "/compare?a=syn&b=xss"):
        client.get(path)
    for method in ("post", "put", "delete", "patch"):
        assert getattr(client, method)("/runs/syn").status_code == 405
    assert snapshot(root) == before


def test_spend_is_cost_usd_and_older_tables_fall_back_to_llm_price(tmp_path: Path) -> None:
    shape = Shape(agents=1, scenarios=2, repeats=2, error_every=0)
    priced = write_synthetic_run(tmp_path / "priced", shape)
    jobs = pl.read_parquet(priced / "jobs.parquet")
    jobs.with_columns((pl.col("llm_price") * 10).alias("cost_usd")).write_parquet(
        priced / "jobs.parquet"
    )
    old = write_synthetic_run(tmp_path / "old", shape)
    pl.read_parquet(old / "jobs.parquet").drop("cost_usd").write_parquet(old / "jobs.parquet")
    cost, price = float(jobs["llm_price"].sum()) * 10, float(jobs["llm_price"].sum())
    with viewer_process(tmp_path) as running, httpx.Client(base_url=running.base_url) as c:
        runs = c.get("/").text
        cells = dict(re.findall(r'data-run="([^"]+)">.*?class="spend" [^>]*>([^<]+)', runs, re.S))
        assert cells == {"old": f"{money(price)} ", "priced": money(cost)}  # with its currency
        assert 'data-source="llm_price"' in runs and 'data-source="cost_usd"' in runs
        assert runs.count("(LLM price)") == 1
        assert f"<b>{money(cost)}</b><span>spend</span>" in c.get("/runs/priced").text
        old_page = c.get("/runs/old").text
        assert f"<b>{money(price)}</b><span>spend: LLM price</span>" in old_page
        assert c.get("/runs/old/cases?sort=price&desc=1").status_code == 200
    assert running.stderr_text() == ""


def test_the_run_page_draws_the_reports_charts_and_their_bars_open_jobs(
    client: httpx.Client,
) -> None:
    def count(path: str) -> int:
        reply = client.get(path.replace("&amp;", "&"))
        assert reply.status_code == 200
        found = re.search(r'id="count">(\d+) job', reply.text)
        assert found is not None
        return int(found.group(1))

    page = client.get("/runs/syn").text
    content = page.split('<main id="content">', 1)[1]
    # 5 latency histograms, 2 message latency histograms, attempts, requests in flight
    assert content.count("<svg") == 9
    assert "<script" not in content and "style=" not in content  # allowed by the CSP as is
    for metric in ("time_to_first_frame", "total", "queue_wait", "message_gap", "agent_turn"):
        assert f'aria-label="{metric}"' in content
    ok = count("/runs/syn/cases?status=ok")
    assert f"Over all {ok:,} ok jobs." in content  # few: exact, not sampled
    messages = content.split('id="message-charts">', 1)[1].split("</div>", 1)[0]
    assert "<a " not in messages  # no case list to open: not a jobs column
    assert 'aria-label="attempts over time"' in content
    assert 'aria-label="requests in flight"' in content
    bars = re.findall(r'<a href="(/runs/syn/cases\?[^"]*lat=[^"]*)"', content)
    assert bars

    # each histogram's bars hold every ok job once
    assert sum(count(href) for href in bars) == 5 * count("/runs/syn/cases?status=ok")
    bad = client.get("/runs/syn/cases?lat=duration&lat_bin=99&lat_top=1")
    assert bad.status_code == 400


def test_a_run_in_progress_answers_from_the_parts_holding_each_job(tmp_path: Path) -> None:
    """Its job page (repeats spread over parts), case list and charts, read part by part,
    say what the same run says once finished; nothing is written next to the parts."""
    done = write_synthetic_run(tmp_path / "done", Shape(agents=1, scenarios=2, repeats=5))
    root = tmp_path / "results"
    feeder = PartFeeder(done, root / "live", per_part=3)  # a case's 5 repeats span 2-3 parts
    try:
        for _ in range(5):
            feeder.add_part()
        before = snapshot(root)
        with viewer_process(root) as running, httpx.Client(base_url=running.base_url) as c:
            job = c.get("/runs/live/jobs/k0000000004")
            assert job.status_code == 200
            repeats = re.findall(r'class="repeat[^"]*" href="[^"]*/jobs/(k\d+)"', job.text)
            assert repeats == [f"k{i:010d}" for i in range(4)]  # and itself, not a link
            assert job.text.count('class="repeat current"') == 1
            assert c.get("/runs/live/jobs/k0000000099").status_code == 404  # not landed yet
            cases = c.get("/runs/live/cases?status=ok&q=refund")
            assert cases.status_code == 200 and 'id="count"' in cases.text
            run = c.get("/runs/live").text
            assert run.split('<main id="content">', 1)[1].count("<svg") == 9
        assert running.stderr_text() == ""
        assert snapshot(root) == before
    finally:
        feeder.release()


def test_a_run_in_progress_samples_its_message_latencies_part_by_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over ``SAMPLE_JOBS`` ok jobs the page says it samples; after each new part its figures
    are those of the same sample drawn at once from the jobs landed so far."""
    done = write_synthetic_run(tmp_path / "done", Shape(agents=1, scenarios=3, repeats=4))
    feeder = PartFeeder(done, tmp_path / "results" / "live", per_part=5)
    monkeypatch.setattr(queries.charts, "SAMPLE_JOBS", 6)
    app = create_app(tmp_path / "results")

    async def page() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            reply = await c.get("/runs/live")
            assert reply.status_code == 200
            return reply.text

    jobs, messages = (pl.read_parquet(done / f"{t}.parquet") for t in ("jobs", "messages"))
    try:
        while feeder.seq < len(feeder.chunks):
            feeder.add_part()
            landed = jobs.head(feeder.done)
            ok = landed.filter(pl.col("status") == "ok").height
            sample = queries.extend_sample(None, landed.lazy(), lambda _: messages.lazy())
            want = queries.message_latency(sample, ok)
            text = asyncio.run(page())
            said = re.search(r'id="message-sample">([^<]*)', text)
            assert said is not None
            if ok > 6:
                assert said.group(1).startswith(f"From a sample of 6 of {ok} jobs")
            else:
                assert said.group(1).startswith(f"Over all {ok} ok jobs.")
            charts_html = text.split('id="message-charts">', 1)[1].split("</div>", 1)[0]
            assert charts_html.strip() == "".join(
                charts.histogram_svg(h.counts, h.high, h.metric, h.marks) for h in want.histograms
            )
    finally:
        feeder.release()


def test_runs_newest_first_the_picker_on_the_two_newest_and_badges_that_say_what_they_mean(
    tmp_path: Path,
) -> None:
    """Issue 29: runs newest first, the compare picker defaulting to the two newest; a job
    whose conversation completed but whose criteria failed is not an ``ok`` badge beside
    "failure"; the repeat chips have a legend."""
    import json

    shape = Shape(agents=1, scenarios=2, repeats=3, error_every=0)
    for name, day in (("b-oldest", 1), ("a-newest", 3), ("c-middle", 2)):
        run_dir = write_synthetic_run(tmp_path / name, shape)
        manifest = json.loads((run_dir / "manifest.json").read_text())
        manifest["created_at"] = f"2026-03-0{day}T10:00:00Z"
        (run_dir / "manifest.json").write_text(json.dumps(manifest))
    with viewer_process(tmp_path) as running, httpx.Client(base_url=running.base_url) as c:
        runs = c.get("/").text
        assert re.findall(r'<tr data-run="([^"]+)"', runs) == ["a-newest", "c-middle", "b-oldest"]
        picker = runs.split('action="/compare"', 1)[1]
        chosen = re.findall(r'<option value="([^"]+)" selected>', picker)
        assert chosen == ["c-middle", "a-newest"]  # A the earlier, B the latest
        compare = c.get("/compare").text
        assert re.findall(r"<option selected>([^<]+)</option>", compare) == chosen

        jobs = pl.read_parquet(tmp_path / "a-newest" / "jobs.parquet")
        criteria = pl.read_parquet(tmp_path / "a-newest" / "criteria.parquet")
        failed = criteria.filter(pl.col("result") == "failure")["job_key"]
        key = jobs.filter((pl.col("status") == "ok") & pl.col("job_key").is_in(failed))["job_key"][
            0
        ]
        page = c.get(f"/runs/a-newest/jobs/{key}").text
        head = page.split("</h1>", 1)[0]
        assert ">conversation completed</span>" in head and 'class="badge ok"' not in head
        assert re.search(r'id="criteria-badge"[^>]*>\d+ criteri(on|a) failed<', head)
        assert 'id="badges-note"' in page and 'id="repeats-legend"' in page
        cases = c.get("/runs/a-newest/cases").text
        assert ">conversation</a>" in cases and '<td class="s">ok</td>' not in cases
    assert running.stderr_text() == ""
