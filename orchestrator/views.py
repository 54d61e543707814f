"""Views: jobs, artifacts, validation results and workers as users see them.

Plain frozen data built from rows (``X.of(row)``), safe to use after the session is gone and the
same whether it came from the database directly or through the API server.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from orchestrator import models as m
from orchestrator.routing import Target
from orchestrator.settings import redact

if TYPE_CHECKING:
    from compiler.identity import DeviceIdentity, EngineRequirements

# A worker heartbeats every HEARTBEAT_INTERVAL seconds; one that missed three is presumed gone.
HEARTBEAT_INTERVAL = 10.0
LIVE_WINDOW = timedelta(seconds=3 * HEARTBEAT_INTERVAL)

class Missing:
    """Marks an argument that was not given (None is a meaningful value there)."""


MISSING = Missing()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class JobInfo:
    """A job as users see it; plain data, safe to use after the session is gone."""

    id: str
    state: str
    model_id: str
    model_name: str
    model_sha256: str
    spec_sha256: str
    arch: str
    device_class: str | None
    target: str
    queue: str
    backend: str
    precision: str
    phase: str | None
    phase_timings: dict[str, float]
    error_kind: str | None
    error_message: str | None
    worker: str | None
    attempts: int
    artifact_id: str | None
    cached: bool
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    #: The API user who submitted it (None: submitted directly, not through the server).
    submitted_by: str | None = None
    #: sha256 of the data files it was submitted with (None: validated on generated inputs)
    validation_data_sha256: str | None = None
    calibration_data_sha256: str | None = None

    @property
    def is_final(self) -> bool:
        return m.JobState(self.state).is_final

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, job: m.Job, artifact: m.Artifact | None | Missing = MISSING) -> JobInfo:
        """``artifact``, when the caller has it in hand, spares loading it again."""
        if isinstance(artifact, Missing):
            artifact = job.artifact
        return cls(
            id=job.id,
            state=job.state.value,
            model_id=job.model_id,
            model_name=job.model.name,
            model_sha256=job.model.sha256,
            spec_sha256=job.spec.sha256,
            arch=job.arch,
            device_class=job.device_class,
            target=Target(job.arch, job.device_class).label,
            queue=job.queue,
            backend=job.backend,
            precision=job.precision,
            phase=job.phase,
            phase_timings=dict(job.phase_timings or {}),
            error_kind=job.error_kind,
            error_message=job.error_message,
            worker=job.worker_name,
            attempts=job.attempts,
            artifact_id=job.artifact_id,
            # A job answered from the cache points at an artifact another job built.
            cached=artifact is not None and artifact.job_id != job.id,
            created_at=_iso(job.created_at),
            started_at=_iso(job.started_at),
            finished_at=_iso(job.finished_at),
            submitted_by=job.submitted_by,
            validation_data_sha256=job.validation_data.sha256 if job.validation_data is not None else None,
            calibration_data_sha256=job.calibration_data.sha256 if job.calibration_data is not None else None,
        )


@dataclass(frozen=True)
class ArtifactInfo:
    id: str
    job_id: str
    model_id: str
    model_name: str
    spec_sha256: str
    backend: str
    backend_version: str
    arch: str
    device_class: str | None
    target: str
    precision: str
    uri: str
    sha256: str
    size_bytes: int
    partition_stats: dict[str, Any]
    created_at: str | None
    #: DeviceIdentity.to_dict() of the machine that built it (None: built before it was recorded)
    built_on: dict[str, Any] | None = None
    #: EngineRequirements.to_dict() per distinct need of its engines (None: not recorded)
    engine_requirements: list[dict[str, Any]] | None = None
    #: "accepted" or "rejected" by the accuracy gate (None: recorded before gates existed)
    gate: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def requirements(self) -> list[EngineRequirements]:
        """What the engines need of a machine. For artifacts recorded before the farm stored
        that, a build for a device class needs that class's GPU on its architecture."""
        from compiler.identity import DEVICE_CLASSES, EngineRequirements

        if self.engine_requirements is not None:
            return [EngineRequirements.from_dict(need) for need in self.engine_requirements]
        if self.device_class is None:
            return []
        known = DEVICE_CLASSES.get(self.device_class)
        return [EngineRequirements(arch=self.arch, gpu=True, compute_capability=known.compute_capability if known else None)]

    def problems_on(self, here: DeviceIdentity) -> list[str]:
        """Why this artifact cannot run on ``here``; empty when it can."""
        import compiler

        return compiler.incompatibility(self.requirements(), here)

    @classmethod
    def of(cls, artifact: m.Artifact) -> ArtifactInfo:
        return cls(
            id=artifact.id,
            job_id=artifact.job_id,
            model_id=artifact.model_id,
            model_name=artifact.model.name,
            spec_sha256=artifact.spec.sha256,
            backend=artifact.backend,
            backend_version=artifact.backend_version,
            arch=artifact.arch,
            device_class=artifact.device_class,
            target=Target(artifact.arch, artifact.device_class).label,
            precision=artifact.precision,
            uri=redact(artifact.uri),
            sha256=artifact.sha256,
            size_bytes=artifact.size_bytes,
            partition_stats=dict(artifact.partition_stats or {}),
            created_at=_iso(artifact.created_at),
            built_on=None if artifact.built_on is None else dict(artifact.built_on),
            gate=artifact.gate,
            engine_requirements=(
                None if artifact.engine_requirements is None else list(artifact.engine_requirements)
            ),
        )


@dataclass(frozen=True)
class ValidationInfo:
    output: str
    metric: str
    value: float
    threshold: float | None
    passed: bool
    seed: int
    artifact_id: str
    job_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, row: m.ValidationResult) -> ValidationInfo:
        return cls(
            output=row.output_name,
            metric=row.metric,
            value=row.value,
            threshold=row.threshold,
            passed=row.passed,
            seed=row.seed,
            artifact_id=row.artifact_id,
            job_id=row.job_id,
        )


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    hostname: str
    arch: str
    device_class: str | None
    queues: list[str]
    capabilities: dict[str, Any]
    state: str
    live: bool
    started_at: str | None
    last_heartbeat: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, row: m.Worker, now: datetime) -> WorkerInfo:
        return cls(
            name=row.name,
            hostname=row.hostname,
            arch=row.arch,
            device_class=row.device_class,
            queues=list(row.queues or []),
            capabilities=dict(row.capabilities or {}),
            state=row.state.value,
            live=_is_live(row, now),
            started_at=_iso(row.started_at),
            last_heartbeat=_iso(row.last_heartbeat),
        )


def _is_live(row: m.Worker, now: datetime) -> bool:
    return row.state == m.WorkerState.ONLINE and now - row.last_heartbeat <= LIVE_WINDOW


@dataclass(frozen=True)
class Submission:
    """What ``submit`` did: one job per target, and warnings for the person submitting."""

    jobs: list[JobInfo]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"jobs": [job.to_dict() for job in self.jobs], "warnings": list(self.warnings)}
