"""``orchestrate tokens create|revoke|list``: API tokens for `orchestrate serve`."""

from __future__ import annotations

import click

from orchestrator.cli._common import json_option, print_json, state, styled, table


@click.group("tokens")
def tokens_group() -> None:
    """Create, revoke and list API tokens (stored hashed; a secret is shown only once)."""


@tokens_group.command("create")
@click.option("--user", required=True, help="Who the token is for (recorded on their jobs).")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["read", "submit", "admin"]),
    help="read: look; submit: also submit, cancel and retry own jobs; admin: any job.",
)
@json_option
def create_command(user: str, role: str, as_json: bool) -> None:
    """Create a token and print its secret (this once: it is not stored)."""
    from orchestrator import tokens

    new = tokens.create_token(state().get_farm(), user, role)
    if as_json:
        print_json(new.to_dict())
        return
    click.echo(f"token {new.info.id} for {new.info.user} ({new.info.role})")
    click.echo("secret (shown once; send it as 'Authorization: Bearer <secret>'):")
    click.echo(new.secret)


@tokens_group.command("revoke")
@click.argument("token_id", metavar="ID")
@json_option
def revoke_command(token_id: str, as_json: bool) -> None:
    """Revoke token ID (or a unique prefix); the server refuses it from the next request."""
    from orchestrator import tokens

    info = tokens.revoke_token(state().get_farm(), token_id)
    if as_json:
        print_json(info.to_dict())
    else:
        click.echo(f"revoked token {info.id} of {info.user}")


@tokens_group.command("list")
@click.option("--user", help="Only this user's tokens.")
@click.option("--active", is_flag=True, help="Leave out revoked tokens.")
@json_option
def list_command(user: str | None, active: bool, as_json: bool) -> None:
    """List tokens (never their secrets)."""
    from orchestrator import tokens

    found = tokens.list_tokens(state().get_farm(), user=user, include_revoked=not active)
    if as_json:
        print_json([t.to_dict() for t in found])
        return
    table(
        f"{len(found)} token(s)",
        ["id", "user", "role", "created", "state"],
        [
            (
                t.id,
                t.user,
                t.role,
                (t.created_at or "")[:19].replace("T", " "),
                styled("active", "green") if t.active else styled(f"revoked {(t.revoked_at or '')[:19]}", "dim"),
            )
            for t in found
        ],
    )
