"""Tokens: 401 for missing, malformed, unknown and revoked ones (same body), 403 for a role
too low, 429 over the rate limit; secrets are stored only as hashes."""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import select

from orchestrator import models as m
from orchestrator import tokens
from orchestrator.server import create_app
from orchestrator.server.auth import RateLimiter, TokenCache
from orchestrator.server.testing import ServerThread
from orchestrator.services import Farm
from orchestrator.testing import embedded_settings
from tests.orchestrator.server.conftest import Api, upload

PROTECTED = [
    ("GET", "/jobs"),
    ("GET", "/jobs/0123456789abcdef"),
    ("GET", "/jobs/0123456789abcdef/wait"),
    ("POST", "/jobs/0123456789abcdef/cancel"),
    ("POST", "/jobs/0123456789abcdef/retry"),
    ("POST", "/jobs"),
    ("GET", "/artifacts"),
    ("GET", "/artifacts/0123456789abcdef/download"),
    ("GET", "/results/0123456789abcdef"),
    ("GET", "/workers"),
]


@pytest.mark.parametrize(
    "header",
    [None, "Bearer orc_wrong", "Bearer not-even-our-format", "Basic dXNlcjpwYXNz", "Bearer"],
    ids=["missing", "wrong", "malformed", "basic", "empty"],
)
def test_missing_or_wrong_tokens_get_401_with_one_body(api: Api, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    bodies = set()
    for method, path in PROTECTED:
        response = httpx.request(method, api.url + "/api/v1" + path, headers=headers)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        bodies.add(response.text)
    assert len(bodies) == 1
    (body,) = bodies
    assert "unauthenticated" in body and "0123456789abcdef" not in body


def test_revoked_token_gets_the_same_401_as_an_unknown_one(api: Api) -> None:
    revoked = httpx.get(api.url + "/api/v1/jobs", headers={"Authorization": f"Bearer {api.secrets['revoked']}"})
    unknown = httpx.get(api.url + "/api/v1/jobs", headers={"Authorization": "Bearer orc_unknown"})
    assert revoked.status_code == unknown.status_code == 401
    assert revoked.text == unknown.text


def test_revoking_takes_effect_on_the_next_request(api: Api) -> None:
    new = tokens.create_token(api.farm, "temp", "read")
    headers = {"Authorization": f"Bearer {new.secret}"}
    assert httpx.get(api.url + "/api/v1/workers", headers=headers).status_code == 200
    tokens.revoke_token(api.farm, new.info.id)
    assert httpx.get(api.url + "/api/v1/workers", headers=headers).status_code == 401


def test_read_token_cannot_submit_and_nothing_is_stored(api: Api, tiny_model) -> None:
    with api.farm.session() as session:
        before = session.query(m.Job).count()
    with api.client("reader") as client:
        response = upload(client, tiny_model)
    assert response.status_code == 403
    assert response.json()["error"]["kind"] == "forbidden"
    with api.farm.session() as session:
        assert session.query(m.Job).count() == before


def test_only_hashes_of_secrets_are_stored(api: Api) -> None:
    with api.farm.session() as session:
        rows = list(session.scalars(select(m.ApiToken)))
    stored = {row.secret_sha256 for row in rows}
    for secret in api.secrets.values():
        assert tokens.hash_secret(secret) in stored
        assert all(secret not in (row.secret_sha256, row.id, row.user) for row in rows)


def test_rate_limiter_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.take("t") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("t") == pytest.approx(0.5)
    assert limiter.take("other") == 0.0  # per token
    now[0] = 0.5
    assert limiter.take("t") == 0.0
    assert RateLimiter(rate=0, burst=1).take("t") == 0.0  # 0: no limit


def test_requests_over_the_rate_limit_get_429_with_retry_after(tmp_path) -> None:
    farm = Farm(embedded_settings(tmp_path / "home", api_rate_limit=0.5, api_rate_burst=2))
    secret = tokens.create_token(farm, "eve", "read").secret
    with ServerThread(create_app(farm)) as server:
        headers = {"Authorization": f"Bearer {secret}"}
        codes = [httpx.get(server.url + "/api/v1/workers", headers=headers).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = httpx.get(server.url + "/api/v1/workers", headers=headers)
        assert limited.json()["error"]["kind"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1


def test_with_a_token_cache_a_revoked_token_works_at_most_that_long(tmp_path) -> None:
    farm = Farm(embedded_settings(tmp_path / "home", api_token_cache_seconds=0.5))
    new = tokens.create_token(farm, "carl", "read")
    headers = {"Authorization": f"Bearer {new.secret}"}
    with ServerThread(create_app(farm)) as server:
        assert httpx.get(server.url + "/api/v1/workers", headers=headers).status_code == 200
        tokens.revoke_token(farm, new.info.id)
        time.sleep(0.6)
        assert httpx.get(server.url + "/api/v1/workers", headers=headers).status_code == 401


def test_token_cache_expires_and_never_holds_unknown_secrets() -> None:
    now = [0.0]
    cache = TokenCache(ttl=1.0, clock=lambda: now[0])
    info = tokens.TokenInfo(id="t", user="u", role="read", created_at=None, revoked_at=None)
    assert cache.get("k") is None
    cache.put("k", info)
    assert cache.get("k") == info
    now[0] = 1.0
    assert cache.get("k") is None
    off = TokenCache(ttl=0)
    off.put("k", info)
    assert off.get("k") is None
