"""The ASGI app: ``create_app(farm)`` for tests and embedding, ``serve(...)`` for the CLI."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from orchestrator.server import dashboard, errors
from orchestrator.server.auth import RateLimiter, TokenCache
from orchestrator.server.routes import artifacts, jobs
from orchestrator.server.routes import farm as farm_routes
from orchestrator.services import Farm
from orchestrator.settings import Settings

API_PREFIX = "/api/v1"
#: Threads for blocking calls (database, long-polls, submissions) in one server process.
THREADS = 64


def create_app(farm: Farm | None = None) -> FastAPI:
    """The API of ``farm`` (default: the farm of the process's settings)."""
    the_farm = farm or Farm()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import anyio.to_thread

        # Long-polls hold a thread each; the default of 40 would let 40 waits stall the rest.
        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
        yield

    app = FastAPI(
        title="orchestrate",
        summary="The build farm's API: submit models, follow jobs, fetch engines and results.",
        version="1",
        lifespan=lifespan,
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.farm = the_farm
    app.state.rate_limiter = RateLimiter(the_farm.settings.api_rate_limit, the_farm.settings.api_rate_burst)
    app.state.token_cache = TokenCache(the_farm.settings.api_token_cache_seconds)
    errors.install(app, the_farm.settings.database_url, the_farm.settings.broker_url)
    for router in (jobs.router, artifacts.router, farm_routes.router):
        app.include_router(router, prefix=API_PREFIX)
    # The dashboard answers with pages, not JSON: an app of its own with its own error pages.
    app.mount(
        dashboard.PREFIX,
        dashboard.create_dashboard(the_farm, app.state.rate_limiter, app.state.token_cache),
        name="dashboard",
    )

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(f"{dashboard.PREFIX}/jobs", status_code=303)

    @app.get("/healthz", tags=["farm"], summary="Liveness (no token needed)")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app


def serve(host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None, log_level: str = "info") -> None:
    """Run the API until interrupted (``orchestrate serve``)."""
    import uvicorn

    app = create_app(Farm(settings) if settings is not None else None)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
