"""Validation and calibration data files, and the jobs submitted with them.

``datasets`` holds one row per data file (``.safetensors`` or ``.npz``) by content hash, like
``models``: its format, size and URI in the artifact store. ``jobs.validation_data_id`` and
``jobs.calibration_data_id`` name the files a job was submitted with; NULL when it had none
(the worker generates inputs from the recorded seed) and for jobs recorded before this revision.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = ("validation", "calibration")


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("uri", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("sha256", name=op.f("uq_datasets_sha256")),
    )
    # batch mode: SQLite adds a column with a foreign key only by rebuilding the table
    with op.batch_alter_table("jobs") as batch:
        for role in ROLES:
            column = f"{role}_data_id"
            batch.add_column(sa.Column(column, sa.String(length=32), nullable=True))
            batch.create_foreign_key(f"fk_jobs_{column}_datasets", "datasets", [column], ["id"])
            batch.create_index(f"ix_jobs_{column}", [column])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for role in ROLES:
            column = f"{role}_data_id"
            batch.drop_index(f"ix_jobs_{column}")
            batch.drop_constraint(f"fk_jobs_{column}_datasets", type_="foreignkey")
            batch.drop_column(column)
    op.drop_table("datasets")
