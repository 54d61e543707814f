"""Alembic environment: runs the farm's migrations against the configured database.

The URL comes from, in order: ``-x url=...`` on the command line, the ``url`` attribute set by
``orchestrator.db.alembic_config``, ``sqlalchemy.url`` in alembic.ini, the farm's settings.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from orchestrator.db import make_engine
from orchestrator.models import Base
from orchestrator.settings import get_settings

config = context.config
target_metadata = Base.metadata

# Only the `alembic` command line reads the ini file; library callers keep their own logging.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# Any fixed number works; it only has to be the same in every process that migrates.
_PG_MIGRATION_LOCK = 7_203_114_551


def _database_url() -> str:
    x_args = context.get_x_argument(as_dictionary=True)
    url = (
        x_args.get("url")
        or config.attributes.get("url")
        or config.get_main_option("sqlalchemy.url")
    )
    return url or get_settings().database_url


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    url = _database_url()
    _configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    is_sqlite = connection.dialect.name == "sqlite"
    _configure(
        connection=connection,
        # SQLite alters a table by rebuilding it; batch mode writes those rebuilds.
        render_as_batch=is_sqlite,
        # One transaction for the whole upgrade on both databases, so a failed migration
        # leaves the previous schema and a concurrent migrator waits, then finds it done.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_database_url(), sqlite_foreign_keys=False, poolclass=NullPool)
    if engine.dialect.name == "sqlite":
        # pysqlite would otherwise run DDL outside any transaction; take the write lock up
        # front so two processes starting on a fresh file migrate one after the other.
        @event.listens_for(engine, "connect")
        def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
