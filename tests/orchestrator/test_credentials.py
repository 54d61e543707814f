"""The least-privilege PostgreSQL roles of deploy/README.md ("Credentials in production") run
the farm: an owner role migrates, and the role every worker, CLI and server uses can do all a
job needs with table privileges alone (no DDL). On a PostgreSQL cluster of the test's own (trust
authentication: what is tested is the privileges, not the passwords)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ProgrammingError

from orchestrator import db as farm_db
from orchestrator import services
from orchestrator.routing import Target
from orchestrator.services import Farm
from orchestrator.settings import Settings
from orchestrator.testing import PostgresServer

# the statements the deploy guide gives, with its placeholders filled in
ROLES = """
CREATE ROLE orchestrate_owner LOGIN PASSWORD 'owner-pw';
CREATE ROLE orchestrate_app LOGIN PASSWORD 'app-pw';
CREATE DATABASE orchestrate OWNER orchestrate_owner;
REVOKE ALL ON DATABASE orchestrate FROM PUBLIC;
GRANT CONNECT ON DATABASE orchestrate TO orchestrate_app;
"""
GRANTS = """
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO orchestrate_app;
ALTER DEFAULT PRIVILEGES FOR ROLE orchestrate_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO orchestrate_app;
ALTER DEFAULT PRIVILEGES FOR ROLE orchestrate_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO orchestrate_app;
"""


@pytest.fixture
def cluster() -> Iterator[PostgresServer]:
    if not PostgresServer.available():
        pytest.skip("needs PostgreSQL's initdb and pg_ctl")
    root = Path(tempfile.mkdtemp(prefix="orchestrate-roles-"))
    with PostgresServer(root / "pg") as server:
        yield server
    shutil.rmtree(root, ignore_errors=True)


def _run(url: str, statements: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        for statement in filter(str.strip, statements.split(";")):
            connection.execute(text(statement))
    engine.dispose()


def test_the_app_role_runs_jobs_with_table_privileges_only(cluster: PostgresServer, tmp_path: Path, tiny_model: Path) -> None:
    base = f"127.0.0.1:{cluster.port}/orchestrate"
    _run(cluster.url(), ROLES)
    # as the database owner: the schema grants are made in the database itself (PostgreSQL 15
    # no longer lets PUBLIC create in public, the REVOKE keeps it so on older servers)
    _run(cluster.url("orchestrate"), GRANTS)
    owner = f"postgresql+psycopg://orchestrate_owner:owner-pw@{base}"
    app = f"postgresql+psycopg://orchestrate_app:app-pw@{base}"
    farm_db.upgrade(owner)  # `orchestrate db upgrade`, run once by the migration job

    farm = Farm(Settings.embedded(tmp_path / "home", database_url=app), eager=True)
    (job,) = services.submit(farm, tiny_model, [Target("x86_64")], services.resolve_spec({"validation": {"samples": 2}})).jobs
    assert services.get_job(farm, job.id).state == "succeeded"
    assert [a.id for a in services.list_artifacts(farm)] == [services.get_job(farm, job.id).artifact_id]

    engine = create_engine(app)
    with engine.connect() as connection, pytest.raises(ProgrammingError, match="permission denied"):
        connection.execute(text("CREATE TABLE intruder (id int)"))
    engine.dispose()
    farm_db.dispose_engines()
