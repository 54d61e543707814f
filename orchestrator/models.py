"""Database tables of the farm (SQLAlchemy 2 typed models) and the queries the CLI runs on them.

The schema is built by Alembic (``migrations/``); ``alembic check`` keeps it equal to these models.
Every constraint and index has a name (``Base.metadata`` naming convention) so migrations can
refer to it on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    or_,
    select,
)
from sqlalchemy.ext.mutable import MutableDict, MutableList
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.sql.elements import ColumnElement

__all__ = [
    "NAMING_CONVENTION",
    "ApiToken",
    "Artifact",
    "Base",
    "CompileSpecRow",
    "DataFile",
    "Job",
    "JobState",
    "Model",
    "UTCDateTime",
    "TokenRole",
    "ValidationResult",
    "Worker",
    "WorkerState",
    "build_key",
    "get_job",
    "list_artifacts",
    "list_jobs",
    "model_ids_matching",
    "new_id",
    "utcnow",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC (what every timestamp column stores)."""
    return datetime.now(timezone.utc)


def new_id() -> str:
    """A fresh 32-hex-digit id (uuid4 without dashes), short enough to type in the CLI."""
    return uuid.uuid4().hex


def build_key(
    *,
    model_sha256: str,
    spec_sha256: str,
    backend: str,
    backend_version: str | None,
    arch: str,
    device_class: str | None,
    validation_sha256: str | None = None,
    calibration_sha256: str | None = None,
) -> str:
    """The cache key of a build: identical inputs on an identical toolchain give one artifact.

    Used as ``Job.cache_key`` (before the build, with the backend version the submitter expects,
    or ``""`` when unknown) and ``Artifact.build_key`` (after, with the version that built it).
    The data files a job was submitted with are part of it (the same model and spec validated
    on other data is another build); a build without them keeps the key it had before data
    files existed.
    """
    fields: tuple[str, ...] = (model_sha256, spec_sha256, backend, backend_version or "", arch, device_class or "")
    for role, sha in (("validation", validation_sha256), ("calibration", calibration_sha256)):
        if sha:
            fields += (f"{role}={sha}",)
    # The unit separator cannot appear in any field, so distinct tuples never collide.
    return hashlib.sha256("\x1f".join(fields).encode("utf-8")).hexdigest()


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always hands back aware UTC datetimes.

    SQLite has no time zone type and returns naive values; PostgreSQL returns the session's zone.
    Normalising on the way in and out makes comparisons and arithmetic behave the same on both.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(
                f"naive datetime {value!r} given to a UTC column; use orchestrator.models.utcnow()"
            )
        value = value.astimezone(timezone.utc)
        # SQLite stores the text form; dropping the offset keeps values lexically sortable.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class WorkerState(str, enum.Enum):
    ONLINE = "online"
    OFFLINE = "offline"


class TokenRole(str, enum.Enum):
    """What an API token may do; each role may do everything the roles before it may."""

    READ = "read"
    SUBMIT = "submit"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(TokenRole).index(self)

    def allows(self, needed: TokenRole) -> bool:
        return self.rank >= needed.rank


def _enum_values(enum_cls: type[enum.Enum]) -> list[str]:
    return [str(member.value) for member in enum_cls]


def _str_enum(enum_cls: type[enum.Enum], name: str) -> Enum:
    # Stored as VARCHAR holding the value ("queued"), not the member name, with a CHECK
    # constraint, so the column reads well in SQL and needs no native PG type to migrate.
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=_enum_values,
        validate_strings=True,
    )


# Mutable wrappers let `job.phase_timings["build"] = 1.2` mark the row dirty.
_JSONDict = MutableDict.as_mutable(JSON())
_JSONList = MutableList.as_mutable(JSON())


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class Model(Base):
    """A submitted model file (a torch.export program), stored once per content hash."""

    __tablename__ = "models"
    __table_args__ = (Index("ix_models_name", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    uri: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"Model(id={self.id!r}, name={self.name!r}, sha256={self.sha256[:12]!r})"


class CompileSpecRow(Base):
    """A compile spec in canonical JSON; its hash is part of every cache key."""

    __tablename__ = "compile_specs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    canonical_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"CompileSpecRow(id={self.id!r}, sha256={self.sha256[:12]!r})"


class DataFile(Base):
    """A validation or calibration data file (``.safetensors`` or ``.npz``), stored once per
    content hash and checked against the model's inputs when it was submitted."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    #: "safetensors" or "npz": the loader the worker uses (the stored blob has no file name)
    format: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    uri: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def suffix(self) -> str:
        return f".{self.format}"

    def __repr__(self) -> str:
        return f"DataFile(id={self.id!r}, format={self.format!r}, sha256={self.sha256[:12]!r})"


class Job(Base):
    """One build of one model with one spec for one target."""

    __tablename__ = "jobs"
    __table_args__ = (
        # `orchestrate jobs --state queued`, newest first.
        Index("ix_jobs_state_created_at", "state", "created_at"),
        Index("ix_jobs_model_id", "model_id"),
        Index("ix_jobs_arch", "arch"),
        Index("ix_jobs_spec_id", "spec_id"),
        Index("ix_jobs_cache_key", "cache_key"),
        Index("ix_jobs_created_at", "created_at"),
        Index("ix_jobs_validation_data_id", "validation_data_id"),
        Index("ix_jobs_calibration_data_id", "calibration_data_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"))
    spec_id: Mapped[str] = mapped_column(ForeignKey("compile_specs.id"))
    arch: Mapped[str] = mapped_column(String(32))
    device_class: Mapped[str | None] = mapped_column(String(64))
    queue: Mapped[str] = mapped_column(String(128))
    backend: Mapped[str] = mapped_column(String(32))
    precision: Mapped[str] = mapped_column(String(16))
    state: Mapped[JobState] = mapped_column(
        _str_enum(JobState, "job_state"), default=JobState.QUEUED
    )
    phase: Mapped[str | None] = mapped_column(String(32))
    phase_timings: Mapped[dict[str, float]] = mapped_column(_JSONDict, default=dict)
    error_kind: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    worker_name: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cache_key: Mapped[str] = mapped_column(String(64))
    # jobs -> artifacts -> jobs is a cycle; the FK is added after both tables exist and checked
    # at commit so a job and the artifact it built can be written in one transaction.
    artifact_id: Mapped[str | None] = mapped_column(
        ForeignKey(
            "artifacts.id",
            use_alter=True,
            name="fk_jobs_artifact_id_artifacts",
            deferrable=True,
            initially="DEFERRED",
        )
    )
    celery_task_id: Mapped[str | None] = mapped_column(String(64))
    # The API user who submitted it (NULL: submitted directly, or before revision 0003).
    submitted_by: Mapped[str | None] = mapped_column(String(255))
    # The user's data files (NULL: validated on generated inputs, calibrated on them or on the
    # validation data; and jobs recorded before revision 0005).
    validation_data_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"))
    calibration_data_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    model: Mapped[Model] = relationship(lazy="joined", innerjoin=True)
    spec: Mapped[CompileSpecRow] = relationship()
    artifact: Mapped[Artifact | None] = relationship(foreign_keys=[artifact_id], post_update=True)
    # joined: every JobInfo names its data files' hashes, and a job has at most one of each
    validation_data: Mapped[DataFile | None] = relationship(foreign_keys=[validation_data_id], lazy="joined")
    calibration_data: Mapped[DataFile | None] = relationship(foreign_keys=[calibration_data_id], lazy="joined")
    validation_results: Mapped[list[ValidationResult]] = relationship(
        back_populates="job", order_by="ValidationResult.output_name"
    )

    @property
    def target(self) -> str:
        """``arch`` or ``arch.device_class``, as in the queue name."""
        return f"{self.arch}.{self.device_class}" if self.device_class else self.arch

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, target={self.target!r}, state={self.state.value!r})"


class Artifact(Base):
    """A built engine package in the artifact store, with what it was built from and for."""

    __tablename__ = "artifacts"
    __table_args__ = (
        # `artifacts list --model M --arch A [--device-class/--backend/--precision]`, newest
        # first: equality on (model_id, arch) then an ordered walk, so the remaining filters
        # only look at one model's builds for one architecture. The id completes the order
        # (created_at, id), so the planner prefers it to the model-wide index below.
        Index("ix_artifacts_model_id_arch_created_at_id", "model_id", "arch", "created_at", "id"),
        # A model's builds newest first, whatever their target (the dashboard's model page,
        # `compare`, `artifacts list --model M`): an ordered walk, so a page reads one page.
        Index("ix_artifacts_model_id_created_at_id", "model_id", "created_at", "id"),
        # A model's builds counted per (target, backend, precision) with their gates and the
        # newest time, from the index alone (services.artifact_groups).
        Index(
            "ix_artifacts_model_id_groups",
            "model_id", "arch", "device_class", "backend", "precision", "gate", "created_at",
        ),
        # `artifacts list --arch A` across models, and the unfiltered newest-first listing.
        Index("ix_artifacts_arch_created_at", "arch", "created_at"),
        Index("ix_artifacts_created_at", "created_at"),
        Index("ix_artifacts_job_id", "job_id"),
        Index("ix_artifacts_spec_id", "spec_id"),
        Index("ix_artifacts_sha256", "sha256"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"))
    spec_id: Mapped[str] = mapped_column(ForeignKey("compile_specs.id"))
    backend: Mapped[str] = mapped_column(String(32))
    backend_version: Mapped[str] = mapped_column(String(64))
    arch: Mapped[str] = mapped_column(String(32))
    device_class: Mapped[str | None] = mapped_column(String(64))
    precision: Mapped[str] = mapped_column(String(16))
    uri: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    partition_stats: Mapped[dict[str, Any]] = mapped_column(_JSONDict, default=dict)
    # The builder's DeviceIdentity and what the engines need of a machine (one entry per
    # distinct need), so compatibility is decided without downloading the engine. NULL for
    # artifacts recorded before revision 0002.
    built_on: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    engine_requirements: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    #: the accuracy gate's verdict on its validation results: "accepted" or "rejected" (None:
    #: recorded before gates existed); a rejected engine is never handed out as a good one
    gate: Mapped[str | None] = mapped_column(String(16))
    build_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    model: Mapped[Model] = relationship(lazy="joined", innerjoin=True)
    spec: Mapped[CompileSpecRow] = relationship()
    job: Mapped[Job] = relationship(foreign_keys=[job_id])
    validation_results: Mapped[list[ValidationResult]] = relationship(
        back_populates="artifact", order_by="ValidationResult.output_name"
    )

    @property
    def target(self) -> str:
        return f"{self.arch}.{self.device_class}" if self.device_class else self.arch

    def __repr__(self) -> str:
        return f"Artifact(id={self.id!r}, target={self.target!r}, backend={self.backend!r})"


class ValidationResult(Base):
    """One metric for one output of an engine, compared with the PyTorch model."""

    __tablename__ = "validation_results"
    __table_args__ = (
        Index("ix_validation_results_artifact_id", "artifact_id"),
        Index("ix_validation_results_job_id", "job_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    artifact_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id"))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    output_name: Mapped[str] = mapped_column(String(255))
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    passed: Mapped[bool] = mapped_column(Boolean(create_constraint=True, name="passed"))
    seed: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    artifact: Mapped[Artifact] = relationship(back_populates="validation_results")
    job: Mapped[Job] = relationship(back_populates="validation_results")

    def __repr__(self) -> str:
        return (
            f"ValidationResult(output={self.output_name!r}, metric={self.metric!r}, "
            f"value={self.value!r}, passed={self.passed!r})"
        )


class Worker(Base):
    """A worker process as it registered itself; ``last_heartbeat`` says whether it is alive."""

    __tablename__ = "workers"
    __table_args__ = (Index("ix_workers_last_heartbeat", "last_heartbeat"),)

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    arch: Mapped[str] = mapped_column(String(32))
    device_class: Mapped[str | None] = mapped_column(String(64))
    queues: Mapped[list[str]] = mapped_column(_JSONList, default=list)
    capabilities: Mapped[dict[str, Any]] = mapped_column(_JSONDict, default=dict)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_heartbeat: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[WorkerState] = mapped_column(
        _str_enum(WorkerState, "worker_state"), default=WorkerState.ONLINE
    )

    def __repr__(self) -> str:
        return f"Worker(name={self.name!r}, arch={self.arch!r}, state={self.state.value!r})"


class ApiToken(Base):
    """An API token of one user. Only the sha256 of the secret is stored: the secret itself
    is shown once, when the token is created, and cannot be read back from the database."""

    __tablename__ = "api_tokens"
    __table_args__ = (Index("ix_api_tokens_user", "user"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user: Mapped[str] = mapped_column(String(255))
    role: Mapped[TokenRole] = mapped_column(_str_enum(TokenRole, "token_role"))
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()

    def __repr__(self) -> str:
        return f"ApiToken(id={self.id!r}, user={self.user!r}, role={self.role.value!r})"


# --------------------------------------------------------------------------------------------
# Queries shared by the CLI, the Python client and the benchmarks.


def model_ids_matching(session: Session, model: str) -> list[str]:
    """Ids of the models a user means by ``model``: an id, a full sha256, or a name."""
    stmt = select(Model.id).where(
        or_(Model.id == model, Model.sha256 == model, Model.name == model)
    )
    return list(session.scalars(stmt))


def _one_of(column: Mapped[str], values: list[str]) -> ColumnElement[bool]:
    return column == values[0] if len(values) == 1 else column.in_(values)


def list_artifacts(
    session: Session,
    *,
    model: str | None = None,
    arch: str | None = None,
    device_class: str | None = None,
    backend: str | None = None,
    precision: str | None = None,
    limit: int | None = 50,
    offset: int = 0,
) -> Sequence[Artifact]:
    """Artifacts matching every given filter, newest first (``orchestrate artifacts list``)."""
    stmt = select(Artifact)
    if model is not None:
        model_ids = model_ids_matching(session, model)
        if not model_ids:
            return []
        # Resolved up front: equality on one id lets the (model_id, arch, created_at) index
        # deliver rows already in order, where IN (subquery) makes the database sort them all.
        stmt = stmt.where(_one_of(Artifact.model_id, model_ids))
    if arch is not None:
        stmt = stmt.where(Artifact.arch == arch)
    if device_class is not None:
        stmt = stmt.where(Artifact.device_class == device_class)
    if backend is not None:
        stmt = stmt.where(Artifact.backend == backend)
    if precision is not None:
        stmt = stmt.where(Artifact.precision == precision)
    # The id breaks ties between rows written within one clock tick, so pages are stable.
    stmt = stmt.order_by(Artifact.created_at.desc(), Artifact.id.desc())
    if offset:
        stmt = stmt.offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return session.scalars(stmt).unique().all()


def list_jobs(
    session: Session,
    *,
    state: JobState | str | None = None,
    arch: str | None = None,
    model: str | None = None,
    target: tuple[str, str | None] | None = None,
    backend: str | None = None,
    submitted_by: str | None = None,
    limit: int | None = 50,
    offset: int = 0,
) -> Sequence[Job]:
    """Jobs matching every given filter, newest first (``orchestrate jobs``). ``target`` is an
    exact (arch, device class) pair: ``("x86_64", None)`` is the portable target only."""
    stmt = select(Job)
    if state is not None:
        stmt = stmt.where(Job.state == JobState(state))
    if arch is not None:
        stmt = stmt.where(Job.arch == arch)
    if target is not None:
        stmt = stmt.where(Job.arch == target[0])
        stmt = stmt.where(Job.device_class.is_(None) if target[1] is None else Job.device_class == target[1])
    if backend is not None:
        stmt = stmt.where(Job.backend == backend)
    if submitted_by is not None:
        stmt = stmt.where(Job.submitted_by == submitted_by)
    if model is not None:
        model_ids = model_ids_matching(session, model)
        if not model_ids:
            return []
        stmt = stmt.where(_one_of(Job.model_id, model_ids))
    stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc())
    if offset:
        stmt = stmt.offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return session.scalars(stmt).unique().all()


def get_job(session: Session, job_id: str) -> Job | None:
    """The job with this id, or ``None``."""
    return session.get(Job, job_id)
