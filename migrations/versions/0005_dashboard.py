"""Indexes for a model's artifacts side by side (the dashboard's model page and ``compare``).

``(model_id, created_at, id)`` walks a model's builds newest first across targets, so a page of
them reads one page; ``(model_id, arch, device_class, backend, precision, gate, created_at)``
counts them per target, backend and precision, with their gates and newest time, from the index
alone. On 10,000 builds of one model (SQLite) the page went from 37 to 4 ms and the counts from
26 to 3 ms (benchmarks/dashboard.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_artifacts_model_id_created_at_id", "artifacts", ["model_id", "created_at", "id"])
    op.create_index(
        "ix_artifacts_model_id_groups",
        "artifacts",
        ["model_id", "arch", "device_class", "backend", "precision", "gate", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_artifacts_model_id_groups", table_name="artifacts")
    op.drop_index("ix_artifacts_model_id_created_at_id", table_name="artifacts")
