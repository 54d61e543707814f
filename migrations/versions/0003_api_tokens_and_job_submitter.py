"""API tokens, and who submitted each job.

``api_tokens`` holds one row per token: its user, its role (read, submit or admin), the sha256
of its secret (the secret itself is shown once and never stored) and when it was revoked.
``jobs.submitted_by`` is the API user who submitted the job; NULL for jobs submitted directly
(CLI or Python client on the control plane) and for jobs recorded before this revision.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOKEN_ROLES = ("read", "submit", "admin")


def upgrade() -> None:
    # VARCHAR + CHECK by value, like the other enums (see 0001).
    role = sa.Enum(*TOKEN_ROLES, name="token_role", native_enum=False, create_constraint=True, length=16)
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user", sa.String(length=255), nullable=False),
        sa.Column("role", role, nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("secret_sha256", name=op.f("uq_api_tokens_secret_sha256")),
    )
    op.create_index("ix_api_tokens_user", "api_tokens", ["user"])
    # A nullable column: a plain ALTER TABLE on both SQLite and PostgreSQL.
    op.add_column("jobs", sa.Column("submitted_by", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("submitted_by")
    op.drop_index("ix_api_tokens_user", table_name="api_tokens")
    op.drop_table("api_tokens")
