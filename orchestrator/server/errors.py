"""Errors as JSON: ``{"error": {"kind": ..., "message": ..., "exit_code": ...}}``.

``kind`` names the farm's error class; ``exit_code`` is what ``orchestrate`` exits with for the
same error in direct mode, so a client over HTTP can exit exactly as the CLI does.
"""

from __future__ import annotations

import logging
import sys

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator import services
from orchestrator.cli.exit_codes import EXIT_JOB_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, exit_code_of
from orchestrator.services import (
    FarmError,
    InvalidRequestError,
    InvalidStateError,
    NotFoundError,
    UnreachableError,
)
from orchestrator.settings import redact, scrub

log = logging.getLogger("orchestrate.server")


class ApiError(Exception):
    """An error the server answers with: HTTP status, kind, message, and the CLI's exit code."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        exit_code: int = EXIT_USAGE,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.exit_code = exit_code
        self.headers = headers or {}


# Most specific first: the first class an error is an instance of decides.
FARM_ERRORS: list[tuple[type[FarmError], int, str]] = [
    (NotFoundError, 404, "not_found"),
    (InvalidStateError, 409, "invalid_state"),
    (InvalidRequestError, 400, "invalid_request"),
    (UnreachableError, 503, "unreachable"),
    (services.NoWorkerError, 503, "no_worker"),
    (services.WaitTimeoutError, 504, "timeout"),
    (services.JobCancelledError, 409, "cancelled"),
    (services.JobFailedError, 409, "job_failed"),
]


def from_farm_error(exc: FarmError) -> ApiError:
    for cls, status, kind in FARM_ERRORS:
        if isinstance(exc, cls):
            return ApiError(status, kind, str(exc), exit_code_of(exc))
    return ApiError(500, "failed", str(exc), exit_code_of(exc))


def unauthenticated() -> ApiError:
    # One message for a missing, malformed, unknown or revoked token: which one it was would
    # tell a guesser something.
    return ApiError(
        401,
        "unauthenticated",
        "missing or invalid API token: send 'Authorization: Bearer <token>'",
        headers={"WWW-Authenticate": "Bearer"},
    )


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def body(kind: str, message: str, exit_code: int) -> dict[str, dict[str, object]]:
    return {"error": {"kind": kind, "message": message, "exit_code": exit_code}}


def respond(error: ApiError) -> JSONResponse:
    return JSONResponse(
        body(error.kind, error.message, error.exit_code), status_code=error.status, headers=error.headers
    )


def known_infrastructure_error(exc: BaseException, database_url: str, broker_url: str) -> ApiError | None:
    """The errors of the farm's own libraries that mean "unreachable", as the CLI maps them."""
    db = sys.modules.get("orchestrator.db")
    if db is not None and isinstance(exc, db.SchemaOutOfDateError):
        return ApiError(503, "unreachable", str(exc), EXIT_UNREACHABLE)
    kombu_exc = sys.modules.get("kombu.exceptions")
    if kombu_exc is not None and isinstance(exc, kombu_exc.OperationalError):
        return ApiError(
            503, "unreachable", f"the broker is unreachable: {scrub(redact(str(exc)), broker_url)}", EXIT_UNREACHABLE
        )
    store = sys.modules.get("orchestrator.store")
    if store is not None and isinstance(exc, store.ArtifactStoreUnavailableError):
        return ApiError(503, "unreachable", str(exc), EXIT_UNREACHABLE)
    return None


def install(app: object, database_url: str, broker_url: str) -> None:
    """Register the handlers on a FastAPI app."""
    from fastapi import FastAPI

    assert isinstance(app, FastAPI)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return respond(exc)

    @app.exception_handler(FarmError)
    async def _farm_error(request: Request, exc: FarmError) -> JSONResponse:
        return respond(from_farm_error(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
            for err in exc.errors()
        )
        return respond(ApiError(400, "invalid_request", problems or "invalid request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return respond(ApiError(exc.status_code, kind, str(exc.detail), EXIT_USAGE, dict(exc.headers or {})))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        known = known_infrastructure_error(exc, database_url, broker_url)
        if known is not None:
            return respond(known)
        # The details go to the server's log, never to the caller.
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return respond(ApiError(500, "internal", "internal server error; see the server's log", EXIT_JOB_FAILED))
