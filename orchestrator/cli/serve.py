"""``orchestrate serve``: run the farm's HTTP API (the team's front door)."""

from __future__ import annotations

import click


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def serve_command(host: str, port: int, log_level: str) -> None:
    """Serve the JSON API under /api/v1 (OpenAPI schema at /openapi.json).

    The server uses this machine's farm settings (ORCHESTRATE_*); callers authenticate with
    tokens from `orchestrate tokens create`. Limits: ORCHESTRATE_MAX_MODEL_BYTES (uploads),
    ORCHESTRATE_API_RATE_LIMIT and ORCHESTRATE_API_RATE_BURST (requests per token).
    """
    from orchestrator.cli._common import state
    from orchestrator.server import serve

    serve(host=host, port=port, settings=state().get_farm().settings, log_level=log_level)
