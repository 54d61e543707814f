"""Shared fixtures for the farm's tests: isolated settings, SQLite and PostgreSQL databases."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from orchestrator import db as farm_db
from orchestrator.settings import get_settings
from orchestrator.testing import scratch_postgres_schema

# The server the suite uses where one runs (this machine and CI): trust auth, database `test`.
POSTGRES_URL = os.environ.get(
    "ORCHESTRATE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _clear_caches() -> None:
    get_settings.cache_clear()
    farm_db.dispose_engines()
    from orchestrator.store import get_artifact_store

    get_artifact_store.cache_clear()


@pytest.fixture(autouse=True)
def _isolated_settings(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """No test reads the developer's ORCHESTRATE_* variables or writes their data directory."""
    for key in list(os.environ):
        if key.startswith("ORCHESTRATE_") and key != "ORCHESTRATE_TEST_POSTGRES_URL":
            monkeypatch.delenv(key)
    home = tmp_path_factory.mktemp("orchestrate-home")
    monkeypatch.setenv("ORCHESTRATE_HOME", str(home))
    _clear_caches()
    yield home
    _clear_caches()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The test server's URL, or a skip saying why it cannot be used."""
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "not available"
        engine.dispose()
        pytest.skip(
            f"PostgreSQL is not reachable at {make_url(POSTGRES_URL).render_as_string()}: "
            f"{str(exc).splitlines()[0]}"
        )
    engine.dispose()
    yield POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A URL whose connections live in a fresh, empty schema that is dropped afterwards."""
    with scratch_postgres_schema(postgres_server) as url:
        yield url


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a fresh SQLite file, or a fresh schema on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'farm.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    """A session on a database whose schema was built by ``alembic upgrade head``."""
    farm_db.upgrade(database_url)
    engine = farm_db.make_engine(database_url)
    with Session(engine, expire_on_commit=False) as s:
        yield s
    engine.dispose()
