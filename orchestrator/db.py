"""Engines, sessions and schema upgrades for the farm's database (SQLite or PostgreSQL).

A worker process and the CLI often share one SQLite file, so SQLite connections use WAL (readers
never block the writer), a busy timeout (a writer waits for the other instead of failing at once)
and enforced foreign keys.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from orchestrator.settings import get_settings, quote_userinfo, redact, scrub

__all__ = [
    "SQLITE_BUSY_TIMEOUT_S",
    "DatabaseURLError",
    "SchemaOutOfDateError",
    "alembic_config",
    "current_revision",
    "describe_error",
    "is_missing_schema",
    "dispose_engines",
    "ensure_schema",
    "get_engine",
    "get_sessionmaker",
    "head_revision",
    "make_engine",
    "session_factory",
    "session_scope",
    "upgrade",
]

# Long enough to outlast another process's write transaction (they are all short).
SQLITE_BUSY_TIMEOUT_S = 30.0


class DatabaseURLError(ValueError):
    """The database URL cannot be used."""


class SchemaOutOfDateError(RuntimeError):
    """The database schema is not at the revision this code expects."""


def _parse_url(url: str | URL) -> URL:
    if isinstance(url, URL):
        return url
    try:
        return make_url(quote_userinfo(url))
    except (ArgumentError, ValueError) as exc:
        raise DatabaseURLError(
            f"cannot parse database URL {redact(url)}: {scrub(str(exc), url)}; expected e.g. "
            "sqlite:////path/orchestrate.db or postgresql+psycopg://user@host/db"
        ) from None


_AUTH_FAILED = re.compile(
    r"password authentication failed|authentication failed|role \"[^\"]*\" does not exist|"
    r"no pg_hba\.conf entry|password is required|no password supplied|permission denied for database"
)
_NO_DATABASE = re.compile(r"database \"[^\"]*\" does not exist")
_NO_SCHEMA = re.compile(r"no such table|relation \"[^\"]*\" does not exist|UndefinedTable")
# SQLSTATE classes: 28 invalid authorization, 3D invalid catalog (database), 42P01 undefined table.
_SCHEMA_SQLSTATES = frozenset({"42P01", "42703"})


def is_missing_schema(exc: BaseException) -> bool:
    """Whether ``exc`` says that the farm's tables are not there (``db upgrade`` was not run)."""
    orig = getattr(exc, "orig", None) or exc
    if str(getattr(orig, "sqlstate", None) or "") in _SCHEMA_SQLSTATES:
        return True
    return bool(_NO_SCHEMA.search(type(orig).__name__) or _NO_SCHEMA.search(str(orig).split("\n", 1)[0]))


def describe_error(url: str, exc: BaseException) -> str:
    """One line for a user about a database error, naming the likely cause: a refused login,
    a missing database, a missing farm schema, or a server that cannot be reached. Never
    prints the password, nor any piece of it."""
    orig = getattr(exc, "orig", None) or exc
    sqlstate = str(getattr(orig, "sqlstate", None) or "")
    lines = [line.strip() for line in str(orig).strip().splitlines() if line.strip()]
    detail = scrub(lines[0] if lines else type(orig).__name__, url)
    shown = redact(url)
    if sqlstate.startswith("28") or _AUTH_FAILED.search(detail):
        return (
            f"the database at {shown} refused the login ({detail}); check the user and "
            "password in ORCHESTRATE_DATABASE_URL"
        )
    if sqlstate == "3D000" or _NO_DATABASE.search(detail):
        return (
            f"the database server at {shown} has no such database ({detail}); create it "
            "(createdb) or fix ORCHESTRATE_DATABASE_URL"
        )
    if is_missing_schema(exc):
        return (
            f"the database at {shown} has no farm schema ({detail}); run `orchestrate db upgrade`"
        )
    return f"cannot reach the database at {shown}: {detail}"


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    return Path(database)


def _normalise(url: URL) -> URL:
    # Users write postgresql://; the installed driver is psycopg 3, not psycopg2.
    if url.drivername in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    return url


def make_engine(url: str | URL, *, sqlite_foreign_keys: bool = True, **kwargs: Any) -> Engine:
    """A new engine for ``url`` with the farm's connection settings.

    ``sqlite_foreign_keys=False`` is only for migrations: SQLite rebuilds a table to alter it,
    and enforced foreign keys would make dropping the old copy cascade or fail.
    """
    parsed = _normalise(_parse_url(url))
    sqlite_path = _sqlite_file(parsed)
    if parsed.get_backend_name() == "sqlite":
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_S)
        if sqlite_path is not None:
            sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        engine = _create_engine(parsed, connect_args=connect_args, **kwargs)

        @event.listens_for(engine, "connect")
        def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                if sqlite_path is not None:
                    cursor.execute("PRAGMA journal_mode=WAL")
                    # With WAL, NORMAL is durable across application crashes, and much faster.
                    cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
                cursor.execute(f"PRAGMA foreign_keys={'ON' if sqlite_foreign_keys else 'OFF'}")
            finally:
                cursor.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return _create_engine(parsed, **kwargs)


def _create_engine(url: URL, **kwargs: Any) -> Engine:
    """``create_engine``, with an unknown dialect or a driver that is not installed reported
    as a DatabaseURLError (a usage error) instead of SQLAlchemy's or the import's traceback."""
    shown = url.render_as_string(hide_password=True)
    try:
        return create_engine(url, **kwargs)
    except ImportError as exc:
        raise DatabaseURLError(
            f"the database URL {shown} needs the driver {exc.name or url.get_driver_name()!r}, "
            "which is not installed; install it, or use postgresql+psycopg:// (installed) or "
            "sqlite:///"
        ) from None
    except (ArgumentError, ValueError, TypeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatabaseURLError(
            f"cannot use the database URL {shown}: {scrub(detail, url.render_as_string(hide_password=False))}; "
            "expected e.g. sqlite:////path/orchestrate.db or postgresql+psycopg://user@host/db"
        ) from None


def _resolve(url: str | URL | None) -> str:
    if url is None:
        return get_settings().database_url
    return url.render_as_string(hide_password=False) if isinstance(url, URL) else url


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def get_engine(url: str | URL | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: the configured database)."""
    key = _resolve(url)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = make_engine(key)
        return engine


def dispose_engines() -> None:
    """Close every cached engine's pooled connections (tests; worker shutdown)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
    session_factory.cache_clear()
    _schema_checked.clear()


def _after_fork_in_child() -> None:
    # A forked Celery pool process must not reuse the parent's sockets or SQLite handles;
    # close=False drops them without touching the parent's still-open connections.
    for engine in list(_engines.values()):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@functools.lru_cache(maxsize=8)
def session_factory(url: str | None = None) -> sessionmaker[Session]:
    """A session factory for ``url`` (default: the configured database).

    An embedded SQLite database is brought to the current schema on first use, so a laptop
    needs no ``orchestrate db upgrade``; a server database must be upgraded explicitly.
    """
    resolved = _resolve(url)
    if _sqlite_file(_parse_url(resolved)) is not None:
        ensure_schema(resolved)
    # Rows stay readable after commit: the CLI prints them once the transaction is over.
    return sessionmaker(bind=get_engine(resolved), expire_on_commit=False)


def get_sessionmaker() -> sessionmaker[Session]:
    """The session factory of the configured database."""
    return session_factory(None)


@contextlib.contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on any exception."""
    session = session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# ---------------------------------------------------------------------------------------------
# Migrations


def _migrations_dir() -> Path:
    import migrations

    return Path(migrations.__file__).resolve().parent


def alembic_config(url: str | URL | None = None) -> Any:
    """An Alembic ``Config`` for the packaged migrations, pointed at ``url``.

    Works without ``alembic.ini`` (an installed package has none); the URL travels as an
    attribute, not an ini option, so a password with ``%`` in it needs no escaping.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    config.attributes["url"] = _resolve(url)
    return config


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str | URL | None = None) -> str | None:
    """The revision the database at ``url`` is at, ``None`` for an empty database."""
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(_resolve(url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def upgrade(url: str | URL | None = None, revision: str = "head") -> None:
    """Migrate the database at ``url`` (default: the configured one) to ``revision``."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


_schema_checked: set[str] = set()
_schema_lock = threading.Lock()


def ensure_schema(url: str | URL | None = None) -> None:
    """Upgrade the database to head unless it is already there (once per process per URL).

    Concurrent callers in other processes are safe: migrations run under SQLite's write lock
    (or a PostgreSQL advisory lock) and re-read the version inside it (see migrations/env.py).
    """
    resolved = _resolve(url)
    with _schema_lock:
        if resolved in _schema_checked:
            return
        current, head = current_revision(resolved), head_revision()
        if current != head:
            if current is not None and not _is_known_revision(current):
                raise SchemaOutOfDateError(
                    f"the database at {redact(resolved)} is at schema revision {current}, which "
                    "this version of orchestrate does not know (a newer version migrated it); "
                    "upgrade orchestrate on this machine"
                )
            upgrade(resolved)
        _schema_checked.add(resolved)


def _is_known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False
