"""Indexes for a model's artifacts side by side (the dashboard's model page and ``compare``).

``(model_id, created_at, id)`` walks a model's builds newest first across targets, so a page of
them reads one page; ``(model_id, arch, device_class, backend, precision, gate, created_at)``
counts them per target, backend and precision, with their gates and newest time, from the index
alone. On 10,000 builds of one model (SQLite) the page went from 37 to 4 ms and the counts from
26 to 3 ms (benchmarks/dashboard.py).

``(model_id, arch, created_at)`` becomes ``(model_id, arch, created_at, id)``: with the order
(created_at, id) complete in it, a listing filtered by model and architecture keeps using it
(SQLite would otherwise walk the model-wide index and filter the architecture row by row).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_artifacts_model_id_arch_created_at_id", "artifacts", ["model_id", "arch", "created_at", "id"]
    )
    op.drop_index("ix_artifacts_model_id_arch_created_at", table_name="artifacts")
    op.create_index("ix_artifacts_model_id_created_at_id", "artifacts", ["model_id", "created_at", "id"])
    op.create_index(
        "ix_artifacts_model_id_groups",
        "artifacts",
        ["model_id", "arch", "device_class", "backend", "precision", "gate", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_artifacts_model_id_groups", table_name="artifacts")
    op.drop_index("ix_artifacts_model_id_created_at_id", table_name="artifacts")
    op.create_index("ix_artifacts_model_id_arch_created_at", "artifacts", ["model_id", "arch", "created_at"])
    op.drop_index("ix_artifacts_model_id_arch_created_at_id", table_name="artifacts")
