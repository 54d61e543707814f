"""Initial schema: models, compile specs, jobs, artifacts, validation results, workers.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
WORKER_STATES = ("online", "offline")


def _id() -> sa.Column:
    return sa.Column("id", sa.String(length=32), nullable=False)


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def _state(name: str, values: Sequence[str]) -> sa.Column:
    # Enums are VARCHAR + CHECK (by value), never a native PostgreSQL type: adding a state
    # later is a constraint change, not an ALTER TYPE.
    enum = sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)
    return sa.Column("state", enum, nullable=False)


def upgrade() -> None:
    op.create_table(
        "models",
        _id(),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("uri", sa.String(length=1024), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("sha256", name=op.f("uq_models_sha256")),
    )
    op.create_index("ix_models_name", "models", ["name"])

    op.create_table(
        "compile_specs",
        _id(),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("canonical_json", sa.Text(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compile_specs")),
        sa.UniqueConstraint("sha256", name=op.f("uq_compile_specs_sha256")),
    )

    op.create_table(
        "workers",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("arch", sa.String(length=32), nullable=False),
        sa.Column("device_class", sa.String(length=64), nullable=True),
        sa.Column("queues", sa.JSON(), nullable=False),
        sa.Column("capabilities", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_heartbeat", sa.DateTime(timezone=True), nullable=False),
        _state("worker_state", WORKER_STATES),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_workers")),
    )
    op.create_index("ix_workers_last_heartbeat", "workers", ["last_heartbeat"])

    # jobs.artifact_id -> artifacts.id closes a cycle with artifacts.job_id -> jobs.id; that
    # foreign key is added once both tables exist (below).
    op.create_table(
        "jobs",
        _id(),
        sa.Column("model_id", sa.String(length=32), nullable=False),
        sa.Column("spec_id", sa.String(length=32), nullable=False),
        sa.Column("arch", sa.String(length=32), nullable=False),
        sa.Column("device_class", sa.String(length=64), nullable=True),
        sa.Column("queue", sa.String(length=128), nullable=False),
        sa.Column("backend", sa.String(length=32), nullable=False),
        sa.Column("precision", sa.String(length=16), nullable=False),
        _state("job_state", JOB_STATES),
        sa.Column("phase", sa.String(length=32), nullable=True),
        sa.Column("phase_timings", sa.JSON(), nullable=False),
        sa.Column("error_kind", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("worker_name", sa.String(length=255), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("cache_key", sa.String(length=64), nullable=False),
        sa.Column("artifact_id", sa.String(length=32), nullable=True),
        sa.Column("celery_task_id", sa.String(length=64), nullable=True),
        _created_at(),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_jobs_model_id_models")),
        sa.ForeignKeyConstraint(
            ["spec_id"], ["compile_specs.id"], name=op.f("fk_jobs_spec_id_compile_specs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index("ix_jobs_state_created_at", "jobs", ["state", "created_at"])
    op.create_index("ix_jobs_model_id", "jobs", ["model_id"])
    op.create_index("ix_jobs_arch", "jobs", ["arch"])
    op.create_index("ix_jobs_spec_id", "jobs", ["spec_id"])
    op.create_index("ix_jobs_cache_key", "jobs", ["cache_key"])
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])

    op.create_table(
        "artifacts",
        _id(),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("model_id", sa.String(length=32), nullable=False),
        sa.Column("spec_id", sa.String(length=32), nullable=False),
        sa.Column("backend", sa.String(length=32), nullable=False),
        sa.Column("backend_version", sa.String(length=64), nullable=False),
        sa.Column("arch", sa.String(length=32), nullable=False),
        sa.Column("device_class", sa.String(length=64), nullable=True),
        sa.Column("precision", sa.String(length=16), nullable=False),
        sa.Column("uri", sa.String(length=1024), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("partition_stats", sa.JSON(), nullable=False),
        sa.Column("build_key", sa.String(length=64), nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_artifacts_job_id_jobs")),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_artifacts_model_id_models")
        ),
        sa.ForeignKeyConstraint(
            ["spec_id"], ["compile_specs.id"], name=op.f("fk_artifacts_spec_id_compile_specs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        sa.UniqueConstraint("build_key", name=op.f("uq_artifacts_build_key")),
    )
    # `artifacts list --model M --arch A`, newest first, must stay fast at 100k+ rows.
    op.create_index(
        "ix_artifacts_model_id_arch_created_at", "artifacts", ["model_id", "arch", "created_at"]
    )
    op.create_index("ix_artifacts_arch_created_at", "artifacts", ["arch", "created_at"])
    op.create_index("ix_artifacts_created_at", "artifacts", ["created_at"])
    op.create_index("ix_artifacts_job_id", "artifacts", ["job_id"])
    op.create_index("ix_artifacts_spec_id", "artifacts", ["spec_id"])
    op.create_index("ix_artifacts_sha256", "artifacts", ["sha256"])

    with op.batch_alter_table("jobs") as batch_op:
        batch_op.create_foreign_key(
            "fk_jobs_artifact_id_artifacts",
            "artifacts",
            ["artifact_id"],
            ["id"],
            deferrable=True,
            initially="DEFERRED",
        )

    op.create_table(
        "validation_results",
        _id(),
        sa.Column("artifact_id", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("output_name", sa.String(length=255), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("passed", sa.Boolean(create_constraint=True, name="passed"), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["artifact_id"], ["artifacts.id"], name=op.f("fk_validation_results_artifact_id_artifacts")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_validation_results_job_id_jobs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_validation_results")),
    )
    op.create_index("ix_validation_results_artifact_id", "validation_results", ["artifact_id"])
    op.create_index("ix_validation_results_job_id", "validation_results", ["job_id"])


def downgrade() -> None:
    op.drop_table("validation_results")
    # Break the jobs <-> artifacts cycle before dropping either table.
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_constraint("fk_jobs_artifact_id_artifacts", type_="foreignkey")
    op.drop_table("artifacts")
    op.drop_table("jobs")
    op.drop_table("workers")
    op.drop_table("compile_specs")
    op.drop_table("models")
