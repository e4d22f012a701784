"""The viewer's routes: FastAPI over ``source`` (what is on disk) and ``queries`` (what a page
shows), rendered with Jinja2 templates that escape everything they print.

Safety: every route is a GET that only reads; a run is looked up by name in the directory
listing (an unknown name, ``..`` or an absolute path is a 404); pages carry a Content Security
Policy that allows only the viewer's own script and stylesheet, so even a string that escaped
escaping could not run; the Host header must name this machine unless the viewer was bound to
another interface on purpose (no DNS rebinding from a web page).
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlencode

import polars as pl
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from runner import analysis
from runner.estimate import money
from runner.report import charts, sequential
from runner.report.agreement import recorded_mirrors
from runner.view import queries, source
from runner.view.source import RunState

T = TypeVar("T")

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
COMPARE_PER_PAGE = 100
CACHE_ENTRIES = 24


# ------------------------------------------------------------------------------ formatting


def fmt_pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def fmt_pts(value: float | None) -> str:
    """A difference of two rates in percentage points, signed."""
    return "–" if value is None else f"{100 * value:+.1f} pts"


def fmt_secs(value: float | None) -> str:
    if value is None:
        return "–"
    if abs(value) < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def fmt_num(value: int | float | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    return f"{int(value):,}"


def fmt_when(value: Any) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if value.tzinfo else "")
    return str(value)


def fmt_json(value: str | None) -> str:
    """A JSON string pretty-printed (as it came when it is not JSON)."""
    if value is None:
        return ""
    try:
        return json.dumps(json.loads(value), indent=2, ensure_ascii=False)
    except ValueError:
        return value


def fmt_money(value: float | None, unit: str = "usd") -> str:
    """Spend with its currency: ``$0.0846``, ``1,234 credits`` (``runner.estimate.money``)."""
    return "–" if value is None else money(value, unit)


def seg(value: object) -> str:
    """A value as one URL path segment."""
    return quote(str(value), safe="")


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("runner.view", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=fmt_pct, secs=fmt_secs, num=fmt_num, when=fmt_when, pretty=fmt_json)
    env.filters["pts"] = fmt_pts
    env.filters["seg"] = seg
    env.filters["money"] = fmt_money
    return env


# ----------------------------------------------------------------------------------- cache


class Cache:
    """Per-run results computed once per version of the run (in this process only: nothing is
    ever written to the results directory). Bounded: the least recently used go first."""

    def __init__(self, entries: int = CACHE_ENTRIES) -> None:
        self._entries = entries
        self._values: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, state: RunState, what: str, compute: Callable[[], T]) -> T:
        key = (state.name, state.version, what)
        with self._guard:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]  # type: ignore[no-any-return]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one computation per key, however many requests ask at once
            with self._guard:
                if key in self._values:
                    return self._values[key]  # type: ignore[no-any-return]
            value = compute()
            with self._guard:
                self._values[key] = value
                self._locks.pop(key, None)
                stale = [k for k in self._values if k[0] == state.name and k[1] != state.version]
                for k in stale:
                    del self._values[k]
                while len(self._values) > self._entries:
                    self._values.popitem(last=False)
        return value


# ------------------------------------------------------------------------------------- app


def create_app(root: Path, *, allowed_hosts: list[str] | None = None) -> FastAPI:
    """The viewer over the results directory ``root`` (read-only)."""
    root = Path(root)
    env = _environment()
    cache = Cache()
    parts = source.PartCache(analysis.judged_counts, analysis.combine_counts)
    app = FastAPI(title="runner view", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.root = root
    app.router.redirect_slashes = False  # "/runs/../" is a 404, not a redirect to "/runs/.."
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["*"])
    static = resources.files("runner.view") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        template = env.get_template(name)
        return HTMLResponse(template.render(**context), status_code=status_code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        return render("error.html", exc.status_code, status=exc.status_code, detail=exc.detail)

    def state_of(name: str) -> RunState:
        path = source.find_run(root, name)
        if path is None:
            raise HTTPException(404, f"no run named {name!r} in the results directory")
        return source.run_state(name, path)

    def live(state: RunState) -> source.LiveRun | None:
        """A run read from its parts, as held in memory (None: read from its final tables)."""
        if state.uses_final_tables or state.parts == 0:
            parts.forget(state.path)
            return None
        return cache.get(state, "live", lambda: parts.live(state))

    def tables(state: RunState) -> dict[str, pl.LazyFrame]:
        held = live(state)
        if held is not None:
            return cache.get(state, "tables", held.scans)
        return cache.get(state, "tables", lambda: source.scan_tables(state))

    def figure_input(state: RunState) -> tuple[dict[str, pl.LazyFrame], pl.DataFrame | None]:
        """The tables a run's figures read, and its criteria's counts when already summed
        part by part (a run in progress whose keys do not repeat)."""
        held = live(state)
        if held is None:
            return tables(state), None
        if held.repeats.keys or not held.digests:
            return tables(state), None
        return held.quick_tables(), analysis.combine_counts(held.digests)

    def totals(state: RunState) -> queries.Totals:
        return cache.get(state, "totals", lambda: queries.run_totals(*figure_input(state)))

    def figures(state: RunState) -> queries.RunFigures:
        return cache.get(state, "figures", lambda: queries.run_figures(*figure_input(state)))

    def run_charts(state: RunState) -> queries.RunCharts:
        return cache.get(
            state,
            "charts",
            lambda: queries.run_charts(figure_input(state)[0], figures(state).latency),
        )

    sampled: OrderedDict[Path, tuple[frozenset[str], queries.MessageSample]] = OrderedDict()
    sampled_guard = threading.Lock()

    def message_sample(state: RunState) -> queries.MessageSample:
        """A run's message-latency sample; of a run in progress, extended by its new parts'
        jobs only (the parts read before are not read again)."""
        held = live(state)
        if held is None or held.repeats.keys:
            with sampled_guard:
                sampled.pop(state.path, None)
            scanned = tables(state)
            return queries.extend_sample(None, scanned["jobs"], lambda _: scanned["messages"])
        names = frozenset(p.name for p in held.paths["jobs"])
        with sampled_guard:
            seen, earlier = sampled.pop(state.path, (frozenset(), None))
        if not seen <= names:  # a part went away (a compaction): start over
            seen, earlier = frozenset(), None
        new = held.held["jobs"].filter(pl.col("_part").is_in(list(names - seen)))

        def messages_of(keys: pl.DataFrame) -> pl.LazyFrame:
            return held.holding(keys["job_key"].to_list())["messages"]

        sample = queries.extend_sample(earlier, new.drop("_part").lazy(), messages_of)
        with sampled_guard:
            sampled[state.path] = (names, sample)
            while len(sampled) > source.RUNS_HELD:
                sampled.popitem(last=False)
        return sample

    def message_latency(state: RunState) -> queries.MessageLatency:
        return cache.get(
            state,
            "messages",
            lambda: queries.message_latency(message_sample(state), figures(state).totals.ok),
        )

    def job(state: RunState, job_key: str) -> queries.JobDetail | None:
        """One job; of a run in progress, read from the few parts that hold it and its case."""
        held = live(state)
        if held is None:
            return queries.job_detail(tables(state), job_key)
        found = held.job_tables(job_key, queries.same_case)
        if found is None:
            return None
        own, case = found
        return queries.job_detail(own, job_key, case_tables=case)

    def verdicts_of(state: RunState) -> pl.DataFrame | None:
        return cache.get(state, "verdicts", lambda: sequential.read_verdicts(state.path))

    def sequential_context(state: RunState) -> dict[str, Any]:
        """The run page's verdicts and, for a ``compare:`` run, its paired comparison."""

        def paired() -> sequential.PairedView | str | None:
            settings = sequential.recorded_compare(state.path)
            return queries.paired_of_run(tables(state), settings)

        view = cache.get(state, "paired", paired)
        return {
            "verdicts": queries.run_verdicts(verdicts_of(state)),
            "paired": view,
            "paired_svg": paired_svg(view),
        }

    def bad_request(exc: ValueError) -> HTTPException:
        return HTTPException(400, str(exc))

    # ---------------------------------------------------------------------------- pages

    @app.get("/", response_class=HTMLResponse)
    def runs_page() -> HTMLResponse:
        states = list(source.iter_states(root))
        rows = queries.newest_first(
            [queries.run_row(s.name, s.status, s.manifest, totals(s)) for s in states]
        )
        live = any(s.running for s in states)
        return render(
            "runs.html",
            rows=rows,
            root=str(root),
            live_url="/api/version" if live else "",
            version=_overall_version(states),
        )

    def source_figures(state: RunState, sources: tuple[str, ...]) -> queries.RunFigures:
        """A run's figures over the criteria rows of ``sources`` only (``?source=``)."""
        return cache.get(
            state,
            "figures:" + ",".join(sources),
            lambda: queries.run_figures(queries.of_sources(tables(state), sources)),
        )

    def source_links(sources: tuple[str, ...]) -> tuple[str, str]:
        """``?source=`` kept across a page's links: ``src_q`` for a URL without a query,
        ``src_and`` to append to one."""
        pairs = urlencode([("source", s) for s in sources])
        return (f"?{pairs}", f"&{pairs}") if pairs else ("", "")

    def agreement(state: RunState) -> list[dict[str, Any]]:
        mirrors = cache.get(state, "mirrors", lambda: recorded_mirrors(state.path))
        return cache.get(state, "agreement", lambda: queries.run_agreement(tables(state), mirrors))

    @app.get("/runs/{name}", response_class=HTMLResponse)
    def run_page(
        name: str,
        heat: int = 1,
        asked: Annotated[list[str] | None, Query(alias="source")] = None,
    ) -> HTMLResponse:
        state = state_of(name)
        try:
            sources = analysis.check_sources(asked or [])
        except ValueError as exc:
            raise bad_request(exc) from None
        figs = source_figures(state, sources) if sources else figures(state)
        msgs = message_latency(state)
        return render(
            "run.html",
            run=state,
            row=queries.run_row(state.name, state.status, state.manifest, figs.totals),
            figs=figs,
            svg=chart_svgs(f"/runs/{seg(name)}", run_charts(state), msgs),
            msgs=msgs,
            heat=queries.heatmap(figs.cells, page=heat),
            report=(state.path / "report.html").is_file(),
            **sequential_context(state),
            latency_sorts=queries.LATENCY_SORTS,
            sources=sources,
            source_names=analysis.SOURCES,
            src_q=source_links(sources)[0],
            src_and=source_links(sources)[1],
            agreement=agreement(state),
            live_url=f"/api/version?run={seg(name)}" if state.running else "",
            version=state.version,
        )

    @app.get("/runs/{name}/cases", response_class=HTMLResponse)
    def cases_page(name: str, request: Request) -> HTMLResponse:
        state = state_of(name)
        try:
            sources = analysis.check_sources(request.query_params.getlist("source"))
            query = replace(
                queries.CaseQuery.from_params(dict(request.query_params)), sources=sources
            )
            figs = source_figures(state, sources) if sources else figures(state)
            held = live(state)
            if held is None or held.repeats.keys:
                page = queries.filter_cases(
                    queries.of_sources(tables(state), sources), query, figs.flaky_cases
                )
            else:
                page = queries.filter_cases(
                    queries.of_sources(held.quick_tables(), sources),
                    query,
                    figs.flaky_cases,
                    page_tables=lambda keys: queries.of_sources(held.holding(keys), sources),
                )
        except ValueError as exc:
            raise bad_request(exc) from None
        return render(
            "cases.html",
            run=state,
            figs=figs,
            page=page,
            q=page.query,
            sorts=list(queries.SORTS),
            extra_column=(
                queries.SORTS[page.query.sort]
                if page.query.sort in queries.LATENCY_SORTS.values()
                and page.query.sort != "duration"
                else None
            ),
            results=queries.RESULTS,
            sources=sources,
            src_q=source_links(sources)[0],
            src_and=source_links(sources)[1],
            live_url=f"/api/version?run={seg(name)}" if state.running else "",
            version=state.version,
        )

    @app.get("/runs/{name}/jobs/{job_key}", response_class=HTMLResponse)
    def job_page(name: str, job_key: str) -> HTMLResponse:
        state = state_of(name)
        detail = job(state, job_key)
        if detail is None:
            raise HTTPException(404, f"no job {job_key!r} in run {name!r}")
        return render("job.html", run=state, d=detail, job=detail.job)

    @app.get("/runs/{name}/report.html")
    def report_file(name: str) -> Response:
        state = state_of(name)
        path = state.path / "report.html"
        if not path.is_file() or not path.resolve().is_relative_to(root.resolve()):
            raise HTTPException(404, "this run has no report.html (python -m runner report)")
        response = FileResponse(path, media_type="text/html; charset=utf-8")
        response.headers["Content-Security-Policy"] = REPORT_CSP
        return response

    @app.get("/compare", response_class=HTMLResponse)
    def compare_page(
        a: str | None = None,
        b: str | None = None,
        page: int = 1,
        show_all: str | None = Query(None, alias="all"),
    ) -> HTMLResponse:
        names = queries.newest_names({s.name: s.manifest for s in source.iter_states(root)})
        picked = (a, b) if a and b else (names[1], names[0]) if len(names) > 1 else (a, b)
        context: dict[str, Any] = {
            "names": names,
            "a": a,
            "b": b,
            "pick_a": picked[0],
            "pick_b": picked[1],
            "table": None,
        }
        if a and b:
            sa, sb = state_of(a), state_of(b)
            found = _compare(cache, sa, sb, figures)
            diff = found.cases
            shown = diff if show_all else diff.filter(pl.col("kind") != "unchanged")
            pages = max(1, math.ceil(shown.height / COMPARE_PER_PAGE))
            page = min(max(1, page), pages)
            rows = shown.slice((page - 1) * COMPARE_PER_PAGE, COMPARE_PER_PAGE).to_dicts()
            for row in rows:
                row["key"] = queries.case_key(row)
                row["matrix"] = {
                    k.removeprefix("matrix."): v for k, v in row.items() if k.startswith("matrix.")
                }
            view = cache.get(
                sb,
                f"paired:{sa.name}:{sa.version}",
                lambda: queries.paired_of_runs(tables(sa), tables(sb), sa.name, sb.name),
            )
            context.update(
                verdict_changes=queries.verdict_changes(verdicts_of(sa), verdicts_of(sb)),
                paired=view,
                paired_svg=paired_svg(view),
                criteria=found.by_criterion.to_dicts(),
                verdicts=found.verdicts(),
                verdict_names=analysis.VERDICTS,
                kinds=found.kinds(),
                kind_names=analysis.CASE_ORDER,
                table=rows,
                total=shown.height,
                page=page,
                pages=pages,
                all=bool(show_all),
            )
        return render("compare.html", **context)

    @app.get("/compare/case", response_class=HTMLResponse)
    def compare_case_page(request: Request, a: str, b: str) -> HTMLResponse:
        sa, sb = state_of(a), state_of(b)
        params = dict(request.query_params)
        try:
            key = queries.CaseKey.from_params(params)
        except ValueError as exc:
            raise bad_request(exc) from None
        ta, tb = tables(sa), tables(sb)
        a_jobs, b_jobs = queries.case_jobs(ta, key), queries.case_jobs(tb, key)
        pick_a, pick_b = queries.pick_pair(a_jobs, b_jobs)
        ja = params.get("ja") or pick_a
        jb = params.get("jb") or pick_b
        if ja is not None and all(r["job_key"] != ja for r in a_jobs):
            raise HTTPException(404, f"job {ja!r} is not a repeat of this case in {a!r}")
        if jb is not None and all(r["job_key"] != jb for r in b_jobs):
            raise HTTPException(404, f"job {jb!r} is not a repeat of this case in {b!r}")
        return render(
            "compare_case.html",
            a=sa,
            b=sb,
            key=key,
            a_jobs=a_jobs,
            b_jobs=b_jobs,
            ja=ja,
            jb=jb,
            da=queries.job_detail(ta, ja) if ja else None,
            db=queries.job_detail(tb, jb) if jb else None,
        )

    # ------------------------------------------------------------------------------ api

    @app.get("/api/version")
    def version(run: str | None = None) -> JSONResponse:
        """What the live pages poll: a token that changes when the page would."""
        if run is not None:
            state = state_of(run)
            return JSONResponse(
                {"version": state.version, "running": state.running, "parts": state.parts}
            )
        states = list(source.iter_states(root))
        return JSONResponse(
            {"version": _overall_version(states), "running": any(s.running for s in states)}
        )

    return app


def chart_svgs(
    base: str, run: queries.RunCharts, msgs: queries.MessageLatency | None = None
) -> dict[str, Any]:
    """The run page's charts as inline SVG (``runner.report.charts``, as ``report.html``
    draws them; every string in them escaped there); each jobs histogram's bar opens its
    jobs."""

    def drawn(hs: list[queries.Histogram]) -> list[Markup]:
        return [
            Markup(
                charts.histogram_svg(
                    h.counts, h.high, h.metric, h.marks, links=queries.histogram_links(base, h)
                )
            )
            for h in hs
        ]

    return {
        "histograms": drawn(run.histograms),
        "messages": drawn(msgs.histograms) if msgs is not None else [],
        "attempts": Markup(charts.attempts_chart(run.attempts, "attempts over time")),
        "in_flight": Markup(charts.in_flight_chart(run.in_flight, "requests in flight")),
    }


def paired_svg(view: sequential.PairedView | str | None) -> Markup | None:
    """The paired comparison's confidence sequence drawn as ``report.html`` draws it."""
    if view is None or isinstance(view, str) or view.pairs == 0:
        return None
    return Markup(
        charts.sequence_chart(
            view.chart_points,
            view.margin,
            view.decided_at,
            "difference in pass rate (candidate - baseline) with its confidence sequence",
        )
    )


def _overall_version(states: list[RunState]) -> str:
    return "|".join(f"{s.name}:{s.version}" for s in states)


def _compare(
    cache: Cache, a: RunState, b: RunState, figures: Callable[[RunState], queries.RunFigures]
) -> queries.Comparison:
    """The comparison of two runs from their figures' counts, cached under B's entry for both
    versions."""
    return cache.get(
        b, f"compare:{a.name}:{a.version}", lambda: queries.compare(figures(a), figures(b))
    )


def allowed_hosts_for(host: str) -> list[str] | None:
    """Host headers to accept: this machine's names when bound to loopback, else any."""
    if host in LOOPBACK_HOSTS or host.startswith("127."):
        return [*LOOPBACK_HOSTS, host]
    return None
