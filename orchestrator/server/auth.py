"""Who is calling, and may they: bearer tokens, roles and a per-token rate limit.

``read`` may look at everything; ``submit`` may also submit, and cancel or retry its own
jobs; ``admin`` may cancel or retry anyone's. A missing, unknown or revoked token gets 401 and
the same body whichever it was; a token whose role is too low gets 403.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from orchestrator import tokens
from orchestrator.cli.exit_codes import EXIT_UNREACHABLE
from orchestrator.models import TokenRole
from orchestrator.server.errors import ApiError, forbidden, unauthenticated
from orchestrator.services import Farm, JobInfo
from orchestrator.tokens import TokenInfo

bearer = HTTPBearer(auto_error=False, description="An API token from `orchestrate tokens create`.")


class RateLimiter:
    """A token bucket per API token: ``rate`` requests per second on average, ``burst`` at once.

    Kept in the server process: one ``orchestrate serve`` process is one limit."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            level, stamp = self._buckets.get(key, (self.burst, now))
            level = min(self.burst, level + (now - stamp) * self.rate)
            if level >= 1.0:
                self._buckets[key] = (level - 1.0, now)
                return 0.0
            self._buckets[key] = (level, now)
            return (1.0 - level) / self.rate


@dataclass(frozen=True)
class Caller:
    """The token a request came with."""

    token: TokenInfo

    @property
    def user(self) -> str:
        return self.token.user

    @property
    def role(self) -> TokenRole:
        return TokenRole(self.token.role)

    def may_control(self, job: JobInfo) -> bool:
        """Cancel and retry: any job with admin, one's own with submit."""
        if self.role.allows(TokenRole.ADMIN):
            return True
        return self.role.allows(TokenRole.SUBMIT) and job.submitted_by == self.user


def farm_of(request: Request) -> Farm:
    farm = request.app.state.farm
    assert isinstance(farm, Farm)
    return farm


class TokenCache:
    """Tokens found valid in the last ``ttl`` seconds, by the hash of their secret.

    Spares a database read per request (every status poll); the price is that a revoked token
    keeps working for up to ``ttl`` seconds (ORCHESTRATE_API_TOKEN_CACHE_SECONDS; 0: none).
    Unknown secrets are never cached, so a new token works at once."""

    MAX_ENTRIES = 10_000

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[str, tuple[TokenInfo, float]] = {}

    def get(self, key: str) -> TokenInfo | None:
        if self.ttl <= 0:
            return None
        entry = self._entries.get(key)
        if entry is None or entry[1] <= self.clock():
            return None
        return entry[0]

    def put(self, key: str, token: TokenInfo) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (token, self.clock() + self.ttl)


async def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthenticated()
    return await caller_for_secret(request, credentials.credentials)


async def caller_for_secret(request: Request, secret: str) -> Caller:
    """The caller whose token secret is ``secret`` (from a bearer header or the dashboard's
    cookie), counted against its rate limit; 401 for an unknown or revoked one."""
    cache: TokenCache = request.app.state.token_cache
    key = tokens.hash_secret(secret)
    token = cache.get(key)
    if token is None:
        token = await run_in_threadpool(tokens.authenticate, farm_of(request), secret)
        if token is None:
            raise unauthenticated()
        cache.put(key, token)
    limiter: RateLimiter = request.app.state.rate_limiter
    wait = limiter.take(token.id)
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests for this token; retry in {wait:.2f} s (ORCHESTRATE_API_RATE_LIMIT)",
            EXIT_UNREACHABLE,
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    return Caller(token)


def require(role: TokenRole) -> Callable[..., Awaitable[Caller]]:
    """A dependency that lets through tokens of ``role`` or above."""

    # Async, so that a request whose token is cached reaches its route without a thread hop.
    async def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> Caller:
        caller = await authenticate(request, credentials)
        if not caller.role.allows(role):
            raise forbidden(f"this needs a token with the {role.value} role")
        return caller

    dependency.__name__ = f"require_{role.value}"
    return dependency


reader = require(TokenRole.READ)
submitter = require(TokenRole.SUBMIT)
admin = require(TokenRole.ADMIN)
