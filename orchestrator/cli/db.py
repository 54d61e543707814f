"""``orchestrate db``: create or migrate the farm's database schema."""

from __future__ import annotations

import click
from sqlalchemy.exc import SQLAlchemyError

from orchestrator import db as database
from orchestrator.cli._common import fail
from orchestrator.cli.exit_codes import EXIT_UNREACHABLE, EXIT_USAGE
from orchestrator.settings import SettingsError, get_settings, redact


def _url(url: str | None) -> str:
    if url is not None:
        return url
    try:
        return get_settings().database_url
    except SettingsError as exc:
        raise fail(str(exc), EXIT_USAGE) from None


def _unreachable(url: str, exc: Exception) -> click.exceptions.Exit:
    """A bad URL is bad usage (exit 2); a server that cannot be used is infrastructure (exit 3)."""
    if isinstance(exc, database.DatabaseURLError):
        return fail(str(exc), EXIT_USAGE)
    return fail(database.describe_error(url, exc), EXIT_UNREACHABLE)


@click.group("db")
def db() -> None:
    """Create or migrate the farm's database schema."""


@db.command("upgrade")
@click.option("--url", help="Database URL (default: ORCHESTRATE_DATABASE_URL or the embedded one).")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def upgrade(url: str | None, revision: str) -> None:
    """Migrate the database to REVISION (creates the schema on an empty database)."""
    target = _url(url)
    try:
        before = database.current_revision(target)
        database.upgrade(target, revision)
        after = database.current_revision(target)
    except (SQLAlchemyError, database.DatabaseURLError) as exc:
        raise _unreachable(target, exc) from exc
    if before == after:
        click.echo(f"{redact(target)}: already at revision {after}")
    else:
        click.echo(f"{redact(target)}: upgraded {before or '(empty)'} -> {after}")


@db.command("current")
@click.option("--url", help="Database URL (default: ORCHESTRATE_DATABASE_URL or the embedded one).")
def current(url: str | None) -> None:
    """Show the database's schema revision and whether it is the newest."""
    target = _url(url)
    try:
        revision = database.current_revision(target)
    except (SQLAlchemyError, database.DatabaseURLError) as exc:
        raise _unreachable(target, exc) from exc
    head = database.head_revision()
    status = (
        "up to date" if revision == head else f"behind head {head}; run `orchestrate db upgrade`"
    )
    click.echo(f"{redact(target)}: {revision or '(empty)'} ({status})")
