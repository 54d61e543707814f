"""Artifacts record the device identity they were built on and what their engines need.

``built_on`` is ``DeviceIdentity.to_dict()`` of the worker that built the engine;
``engine_requirements`` is one ``EngineRequirements.to_dict()`` per distinct need of its engines,
so ``orchestrate artifacts get`` and ``artifacts list --runs-here`` decide whether an engine runs
on the asking machine without downloading it. Both are NULL for artifacts built before this
revision (nothing was recorded then).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns: adding them is a plain ALTER TABLE on both SQLite and PostgreSQL.
    op.add_column("artifacts", sa.Column("built_on", sa.JSON(), nullable=True))
    op.add_column("artifacts", sa.Column("engine_requirements", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_column("engine_requirements")
        batch.drop_column("built_on")
