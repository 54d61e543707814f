"""API tokens: created and revoked by an admin on the control plane, checked by the server.

A token is ``orc_`` followed by 43 random URL-safe characters (256 bits). The database keeps
only its sha256, so a copy of the database lets nobody call the API; the secret is shown once,
by ``orchestrate tokens create``, and cannot be shown again (revoke it and create another).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select

from orchestrator import models as m
from orchestrator.services import Farm, InvalidRequestError, InvalidStateError, NotFoundError
from orchestrator.untrusted import UnsafeNameError, check_model_name
from orchestrator.views import _iso

TOKEN_PREFIX = "orc_"
ROLES = tuple(role.value for role in m.TokenRole)


@dataclass(frozen=True)
class TokenInfo:
    """A token as an admin sees it: never its secret."""

    id: str
    user: str
    role: str
    created_at: str | None
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "active": self.active}

    @classmethod
    def of(cls, row: m.ApiToken) -> TokenInfo:
        return cls(
            id=row.id,
            user=row.user,
            role=row.role.value,
            created_at=_iso(row.created_at),
            revoked_at=_iso(row.revoked_at),
        )


@dataclass(frozen=True)
class NewToken:
    """A token just created: ``secret`` is what its user sends, shown this once."""

    info: TokenInfo
    secret: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.info.to_dict(), "secret": self.secret}


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def parse_role(role: str) -> m.TokenRole:
    try:
        return m.TokenRole(role.strip().lower())
    except ValueError:
        raise InvalidRequestError(f"unknown role {role!r}: use one of {', '.join(ROLES)}") from None


def create_token(farm: Farm, user: str, role: str) -> NewToken:
    """A new token for ``user`` with ``role``; the returned secret is not stored anywhere."""
    try:
        # A user name is shown in listings and job rows like a model name: same rules.
        user = check_model_name(user.strip()).strip()
    except UnsafeNameError as exc:
        raise InvalidRequestError(str(exc).replace("model name", "user name")) from None
    parsed = parse_role(role)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with farm.session() as session:
        row = m.ApiToken(id=m.new_id(), user=user, role=parsed, secret_sha256=hash_secret(secret))
        session.add(row)
        session.flush()
        info = TokenInfo.of(row)
    return NewToken(info=info, secret=secret)


def _resolve(session: Any, ref: str) -> m.ApiToken:
    ref = ref.strip().lower()
    row = session.get(m.ApiToken, ref)
    if row is not None:
        return row  # type: ignore[no-any-return]
    if len(ref) >= 6 and all(c in "0123456789abcdef" for c in ref):
        stmt = select(m.ApiToken).where(m.ApiToken.id.startswith(ref, autoescape=True)).limit(2)
        matches = list(session.scalars(stmt))
        if len(matches) == 1:
            return matches[0]  # type: ignore[no-any-return]
        if len(matches) > 1:
            raise InvalidRequestError(f"token id prefix {ref!r} is ambiguous; give more characters")
    raise NotFoundError(f"no token {ref!r}; `orchestrate tokens list` lists them")


def revoke_token(farm: Farm, ref: str) -> TokenInfo:
    """Revoke a token (an id or a unique prefix); the server refuses it from the next request."""
    with farm.session() as session:
        row = _resolve(session, ref)
        if row.revoked_at is not None:
            raise InvalidStateError(f"token {row.id} was already revoked at {_iso(row.revoked_at)}")
        row.revoked_at = m.utcnow()
        return TokenInfo.of(row)


def list_tokens(farm: Farm, *, user: str | None = None, include_revoked: bool = True) -> list[TokenInfo]:
    with farm.session() as session:
        stmt = select(m.ApiToken).order_by(m.ApiToken.created_at, m.ApiToken.id)
        if user is not None:
            stmt = stmt.where(m.ApiToken.user == user)
        if not include_revoked:
            stmt = stmt.where(m.ApiToken.revoked_at.is_(None))
        return [TokenInfo.of(row) for row in session.scalars(stmt)]


def authenticate(farm: Farm, secret: str) -> TokenInfo | None:
    """The active token whose secret this is, else None (unknown, malformed or revoked)."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 128:
        return None
    with farm.session() as session:
        row = session.scalar(
            select(m.ApiToken).where(m.ApiToken.secret_sha256 == hash_secret(secret))
        )
        if row is None or row.revoked_at is not None:
            return None
        return TokenInfo.of(row)
