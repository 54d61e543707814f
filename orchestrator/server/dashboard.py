"""The dashboard: server-rendered pages (Jinja2, autoescaped) under ``/dashboard``.

Jobs with live states, filters and per-phase timelines; workers with device identity, queues,
current jobs and heartbeat age; a model's artifacts side by side with latency and speedup plots;
an artifact's validation metrics, compile report and download. Every page reads through the
same functions as the JSON API (:mod:`orchestrator.services`, :mod:`orchestrator.compare`,
:mod:`orchestrator.fleet`). Plots are inline SVG drawn on the server (:mod:`.plots`); the one
script (``static/dashboard.js``) only re-fetches a table's rows from the server every few
seconds. Nothing is loaded from another origin.

A browser signs in with an API token (any role) through the login form, or once with
``?token=`` on any page, which redirects to the same page without it; the token then travels
in an HttpOnly, SameSite=Strict cookie that only ``/dashboard`` sees, so the JSON API never
takes a cookie (no cross-site request can act with it).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator import services
from orchestrator.models import JobState
from orchestrator.server import plots
from orchestrator.server.auth import Caller, RateLimiter, TokenCache, caller_for_secret
from orchestrator.server.errors import ApiError, from_farm_error, known_infrastructure_error, log
from orchestrator.services import Farm, FarmError

PREFIX = "/dashboard"
COOKIE = "orchestrate_token"
#: Rows per page of the jobs and artifacts tables.
PAGE_ROWS = 50
#: How often the pages' tables fetch their rows again (milliseconds; the script reads it).
REFRESH_MS = 3000
TIMELINE_WIDTH = 260.0

HERE = Path(__file__).resolve().parent

# Scripts, styles and images only from this server; no inline script; no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """No valid token: answer with the login form (401)."""

    def __init__(self, message: str | None = None, *, forget_cookie: bool = False) -> None:
        super().__init__(message or "")
        self.message = message
        self.forget_cookie = forget_cookie


class SetTokenCookie(Exception):
    """A valid ``?token=``: redirect to ``url`` with the token in the cookie."""

    def __init__(self, url: str, secret: str) -> None:
        super().__init__(url)
        self.url = url
        self.secret = secret


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every page: model names, messages and ops are user-chosen text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        segment=lambda text: quote(str(text), safe=""),
        figure=figure,
        size=human_size,
        age=human_age,
        short=lambda text: "" if text is None else str(text)[:12],
        when=when,
    )
    env.globals.update(prefix=PREFIX, refresh_ms=REFRESH_MS, phase_class=plots.phase_class)
    return env


def figure(value: float | None, spec: str = ".3g", suffix: str = "") -> str:
    """A number for a table, or an en dash where nothing was measured."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{format(value, spec)}{suffix}"


def human_size(size: int | None) -> str:
    if size is None:
        return "–"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def when(iso: str | None) -> str:
    """An ISO timestamp as ``2026-01-31 12:34:56`` (UTC)."""
    if not iso:
        return "–"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path on this server, never elsewhere."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/jobs"


def _without_token(request: Request) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    path = request.url.path
    return f"{path}?{urlencode(query)}" if query else path


def create_dashboard(farm: Farm, rate_limiter: RateLimiter, token_cache: TokenCache) -> FastAPI:
    """The dashboard app, mounted at ``/dashboard`` by :func:`orchestrator.server.create_app`;
    it shares the API's farm, rate limits and token cache."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.farm = farm
    app.state.rate_limiter = rate_limiter
    app.state.token_cache = token_cache
    templates = Jinja2Templates(env=_environment())
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def page(request: Request, name: str, context: Mapping[str, Any], status: int = 200) -> HTMLResponse:
        response = templates.TemplateResponse(request, name, dict(context), status_code=status)
        response.headers.update(SECURITY_HEADERS)
        return response

    def rows_of(name: str, context: Mapping[str, Any]) -> tuple[Markup, str]:
        """A table's rows, rendered, and their ETag: the page's script asks again with it and
        swaps the rows only when they changed (nothing moves under the reader's pointer)."""
        html = templates.env.get_template(name).render(context)
        return Markup(html), '"' + hashlib.sha256(html.encode()).hexdigest()[:32] + '"'

    def rows_response(request: Request, name: str, context: Mapping[str, Any]) -> Response:
        html, etag = rows_of(name, context)
        headers = {**SECURITY_HEADERS, "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return HTMLResponse(str(html), headers=headers)

    async def viewer(request: Request) -> Caller:
        """Any valid token (read is the lowest role): from ``?token=`` once, then the cookie."""
        given = request.query_params.get("token")
        if given is not None:
            try:
                await caller_for_secret(request, given)
            except ApiError as exc:
                if exc.status == 401:
                    raise LoginRequired("that token is not valid (unknown or revoked)") from None
                raise
            raise SetTokenCookie(_without_token(request), given)
        secret = request.cookies.get(COOKIE)
        if not secret:
            raise LoginRequired()
        try:
            return await caller_for_secret(request, secret)
        except ApiError as exc:
            if exc.status == 401:
                raise LoginRequired("your token is no longer valid; sign in again", forget_cookie=True) from None
            raise

    def login_page(request: Request, message: str | None, status: int, next_url: str) -> HTMLResponse:
        return page(request, "login.html", {"message": message, "next_url": _safe_next(next_url)}, status)

    def error_page(request: Request, status: int, kind: str, message: str) -> HTMLResponse:
        return page(request, "error.html", {"status": status, "kind": kind, "message": message}, status)

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        response: Response
        if request.url.path.endswith("/rows"):
            # A table's refresh: the script stops and offers to sign in again.
            response = Response(status_code=401, headers=SECURITY_HEADERS)
        else:
            response = login_page(request, exc.message, 401, _without_token(request))
        if exc.forget_cookie:
            response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
        return response

    @app.exception_handler(SetTokenCookie)
    async def _set_cookie(request: Request, exc: SetTokenCookie) -> Response:
        return _signed_in(request, exc.url, exc.secret)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        response = error_page(request, exc.status, exc.kind, exc.message)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(FarmError)
    async def _farm_error(request: Request, exc: FarmError) -> Response:
        error = from_farm_error(exc)
        return error_page(request, error.status, error.kind, error.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_page(request, exc.status_code, kind, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        known = known_infrastructure_error(exc, farm.settings.database_url, farm.settings.broker_url)
        if known is not None:
            return error_page(request, known.status, known.kind, known.message)
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return error_page(request, 500, "internal", "internal server error; see the server's log")

    def _signed_in(request: Request, url: str, secret: str) -> Response:
        response = RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)
        response.set_cookie(
            COOKIE,
            secret,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=PREFIX,
        )
        return response

    # -- signing in and out ------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str | None = None) -> HTMLResponse:
        return login_page(request, None, 200, next or f"{PREFIX}/jobs")

    @app.post("/login")
    async def login(request: Request, token: str = Form(""), next: str = Form("")) -> Response:
        try:
            await caller_for_secret(request, token.strip())
        except ApiError as exc:
            if exc.status != 401:
                raise
            return login_page(request, "that token is not valid (unknown or revoked)", 401, next)
        return _signed_in(request, _safe_next(next), token.strip())

    @app.post("/logout")
    def logout() -> Response:
        response = RedirectResponse(f"{PREFIX}/login", status_code=303, headers=SECURITY_HEADERS)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    @app.get("/")
    def home(caller: Caller = Depends(viewer)) -> Response:
        return RedirectResponse(f"{PREFIX}/jobs", status_code=303)

    # -- jobs --------------------------------------------------------------------------------
    def jobs_context(
        state: str | None = None,
        model: str | None = None,
        target: str | None = None,
        backend: str | None = None,
        submitter: str | None = None,
        page_number: int = Query(1, alias="page", ge=1, le=100_000),
    ) -> dict[str, Any]:
        """The jobs table from the query's filters (a dependency of the page and its rows)."""
        filters = {"state": state, "model": model, "target": target, "backend": backend, "submitter": submitter}
        given = {k: v.strip() for k, v in filters.items() if v and v.strip()}
        jobs = services.list_jobs(
            farm,
            state=given.get("state"),
            model=given.get("model"),
            target=given.get("target"),
            backend=given.get("backend"),
            submitted_by=given.get("submitter"),
            # One more than a page: whether there is an older page.
            limit=PAGE_ROWS + 1,
            offset=(page_number - 1) * PAGE_ROWS,
        )
        more = len(jobs) > PAGE_ROWS
        jobs = jobs[:PAGE_ROWS]
        scale = plots.timeline_scale([job.phase_timings for job in jobs])
        return {
            "jobs": jobs,
            "timelines": {job.id: plots.timeline(job.phase_timings, scale, TIMELINE_WIDTH) for job in jobs},
            "scale_s": scale,
            "timeline_width": TIMELINE_WIDTH,
            "filters": {k: given.get(k, "") for k in filters},
            "states": [s.value for s in JobState],
            "page_number": page_number,
            "more": more,
            "query": urlencode(given),
            "phases": sorted({phase for job in jobs for phase in job.phase_timings}, key=plots.phase_order),
        }

    @app.get("/jobs", response_class=HTMLResponse)
    def jobs_page(
        # the caller first: an unauthenticated request is refused before the jobs are read
        request: Request, caller: Caller = Depends(viewer), context: dict[str, Any] = Depends(jobs_context)
    ) -> HTMLResponse:
        rows, etag = rows_of("jobs_rows.html", context)
        return page(request, "jobs.html", {**context, "who": caller, "rows": rows, "etag": etag})

    @app.get("/jobs/rows", response_class=HTMLResponse)
    def jobs_rows(
        request: Request, caller: Caller = Depends(viewer), context: dict[str, Any] = Depends(jobs_context)
    ) -> Response:
        """The jobs table's rows alone, for the page's refresh (304 when unchanged)."""
        return rows_response(request, "jobs_rows.html", context)

    # -- workers -----------------------------------------------------------------------------
    def workers_context(offline: bool) -> dict[str, Any]:
        from orchestrator.fleet import worker_statuses

        workers = worker_statuses(farm, include_offline=offline)
        return {"workers": workers, "offline": offline}

    @app.get("/workers", response_class=HTMLResponse)
    def workers_page(request: Request, offline: bool = False, caller: Caller = Depends(viewer)) -> HTMLResponse:
        context = workers_context(offline)
        rows, etag = rows_of("workers_rows.html", context)
        return page(request, "workers.html", {**context, "who": caller, "rows": rows, "etag": etag})

    @app.get("/workers/rows", response_class=HTMLResponse)
    def workers_rows(request: Request, offline: bool = False, caller: Caller = Depends(viewer)) -> Response:
        return rows_response(request, "workers_rows.html", workers_context(offline))

    # -- a model -----------------------------------------------------------------------------
    @app.get("/models/{model:path}", response_class=HTMLResponse)
    def model_page(
        request: Request,
        model: str,
        page_number: int = Query(1, alias="page", ge=1, le=100_000),
        caller: Caller = Depends(viewer),
    ) -> HTMLResponse:
        from orchestrator.compare import model_comparison

        compared = model_comparison(farm, model, limit=PAGE_ROWS, offset=(page_number - 1) * PAGE_ROWS)
        if not compared.total:
            raise services.NotFoundError(f"no artifacts of model {model!r}; the jobs page lists models")
        labels = [f"{g.target} · {g.backend} · {g.precision}" for g in compared.groups]
        latency = plots.bar_chart(
            labels,
            {
                "compiled": [c.compiled_p50_ms for c in compared.newest],
                "eager": [c.eager_p50_ms for c in compared.newest],
            },
            unit="ms",
        )
        speedup = plots.bar_chart(labels, {"speedup": [c.speedup for c in compared.newest]}, unit="×", reference=1.0)
        pages = max(1, math.ceil(compared.total / PAGE_ROWS))
        return page(
            request,
            "model.html",
            {
                "who": caller,
                "compared": compared,
                "model_name": model,
                "rows": list(zip(compared.groups, compared.newest, strict=True)),
                "latency": latency,
                "speedup": speedup,
                "page_number": page_number,
                "pages": pages,
                "accepted": sum(g.accepted for g in compared.groups),
                "rejected": sum(g.rejected for g in compared.groups),
            },
        )

    # -- an artifact -------------------------------------------------------------------------
    @app.get("/artifacts/{artifact_id}", response_class=HTMLResponse)
    def artifact_page(request: Request, artifact_id: str, caller: Caller = Depends(viewer)) -> HTMLResponse:
        from orchestrator.compare import PERFORMANCE_OUTPUT, comparison_of

        artifact = services.get_artifact(farm, artifact_id)
        results = services.results(farm, artifact.id)
        stats = artifact.partition_stats or {}
        reasons = stats.get("fallback_reasons") or {}
        fallback = [
            (op, count, reasons.get(op)) for op, count in sorted((stats.get("fallback_ops") or {}).items())
        ]
        return page(
            request,
            "artifact.html",
            {
                "who": caller,
                "artifact": artifact,
                "summary": comparison_of(artifact, results),
                "accuracy": [r for r in results if r.output != PERFORMANCE_OUTPUT],
                "performance": [r for r in results if r.output == PERFORMANCE_OUTPUT],
                "stats": stats,
                "partitions": list(stats.get("partitions") or []),
                "fallback": fallback,
            },
        )

    @app.get("/artifacts/{artifact_id}/download")
    def artifact_download(artifact_id: str, caller: Caller = Depends(viewer)) -> Response:
        """The API's streamed download, for a browser signed in with the cookie."""
        from orchestrator.server.routes.artifacts import stream_artifact

        return stream_artifact(farm, artifact_id)

    return app
