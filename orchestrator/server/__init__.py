"""``orchestrate serve``: the farm's HTTP front door (FastAPI on uvicorn).

The server holds the database, broker and artifact store credentials; people hold API tokens
(``orchestrate tokens create``). Every route reads and writes through
:mod:`orchestrator.services`, the same functions the CLI calls, so there is no second query
path. The JSON API lives under ``/api/v1``; its OpenAPI schema is ``/openapi.json``.
"""

from __future__ import annotations

from orchestrator.server.app import API_PREFIX, create_app, serve

__all__ = ["API_PREFIX", "create_app", "serve"]
