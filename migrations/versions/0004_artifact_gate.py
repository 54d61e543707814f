"""Artifacts record the accuracy gate's verdict: ``accepted`` or ``rejected``.

An artifact whose validation results do not all pass is ``rejected``: the cache never answers a
new submit with it, and ``orchestrate artifacts get`` refuses it unless ``--allow-rejected``.
NULL for artifacts recorded before this revision.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("artifacts", sa.Column("gate", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_column("gate")
