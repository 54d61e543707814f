"""The compile task: one job id in, an engine artifact and validation results out.

The task is safe to run twice (a redelivered message, a retry, two workers given twin jobs):

* it reloads the job row and does nothing for a job that is already finished or cancelled;
* before compiling it *claims* the build under a lock on the model row, and reuses an artifact
  that already exists for the same build key, or waits while a twin job (same model, spec and
  target) is being compiled elsewhere, so identical submissions compile once;
* the artifact insert is guarded by the unique build key, so a lost race reuses the winner's row.

A compiler error (the user's model or spec) fails the job with its kind and message and is not
retried; an unreachable database or artifact store is retried with exponential backoff.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import OperationalError as DBOperationalError

from orchestrator import jobs as lifecycle
from orchestrator import models as m
from orchestrator.celery_app import COMPILE_TASK, FarmCelery
from orchestrator.services import Farm, UnreachableError, farm_for, load_program
from orchestrator.settings import get_settings
from orchestrator.store import (
    ArtifactCorruptError,
    ArtifactNotFoundError,
    ArtifactStoreUnavailableError,
)

log = logging.getLogger(__name__)

MAX_TRANSIENT_RETRIES = 6
#: How long a worker holding a finished build keeps trying to record it while the database is
#: unreachable (the build is done and stored; compiling it again would cost more than waiting).
RECORD_PATIENCE_SECONDS = 600.0
# A twin job's compile may take as long as the hard time limit; poll for its result this often.
TWIN_POLL_SECONDS = 2.0

#: Errors that say "the infrastructure is not there right now", worth retrying with backoff.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    DBOperationalError,
    ArtifactStoreUnavailableError,
    UnreachableError,
    OSError,
)


class Superseded(Exception):
    """The job was cancelled (or taken over) while this worker was building it."""


class TwinInProgress(Exception):
    """Another job with the same build key is being compiled; this one reuses its result."""

    def __init__(self, twin_id: str) -> None:
        self.twin_id = twin_id
        super().__init__(f"an identical build is running as job {twin_id}")


@dataclass(frozen=True)
class DataRef:
    """A data file a job was submitted with: where it is stored and how to read it."""

    uri: str
    sha256: str
    format: str  # "safetensors" or "npz"

    @classmethod
    def of(cls, row: m.DataFile | None) -> DataRef | None:
        return None if row is None else cls(row.uri, row.sha256, row.format)


@dataclass(frozen=True)
class Claim:
    """What a claimed job needs from the database, read in the claiming transaction."""

    job_id: str
    model_id: str
    spec_id: str
    model_uri: str
    model_sha256: str
    spec_json: str
    spec_sha256: str
    backend: str
    backend_version: str
    arch: str
    device_class: str | None
    precision: str
    build_key: str
    seed: int
    validation_data: DataRef | None = None
    calibration_data: DataRef | None = None


def backoff_seconds(retries: int) -> float:
    """1, 2, 4, ... 60 s with jitter, so workers that lost the database don't return in step."""
    return min(60.0, 2.0**retries) * random.uniform(0.8, 1.2)


def with_backoff(write: Callable[[], Any], what: str, patience: float | None = None) -> Any:
    """Run the database ``write``, retrying with :func:`backoff_seconds` while the database is
    unreachable, for up to ``patience`` seconds (default :data:`RECORD_PATIENCE_SECONDS`);
    then the last error propagates."""
    deadline = time.monotonic() + (RECORD_PATIENCE_SECONDS if patience is None else patience)
    attempt = 0
    while True:
        try:
            return write()
        except (UnreachableError, DBOperationalError) as exc:
            delay = backoff_seconds(attempt)
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s: the database is unreachable (%s); trying again in %.1f s", what, exc, delay)
            time.sleep(delay)
            attempt += 1


def _lock_model(session: Any, model_id: str) -> None:
    # A no-op write takes PostgreSQL's row lock on this model (and SQLite's database write lock),
    # so claims of jobs for one model are serialised and the twin check below cannot race.
    session.execute(
        update(m.Model).where(m.Model.id == model_id).values(size_bytes=m.Model.size_bytes)
    )


def _installed_backend_version(backend: str) -> str:
    import compiler

    return compiler.backend_versions().get(backend, "")


def _artifact_key(job: m.Job, model_sha: str, spec_sha: str, version: str) -> str:
    return m.build_key(
        model_sha256=model_sha,
        spec_sha256=spec_sha,
        backend=job.backend,
        backend_version=version,
        arch=job.arch,
        device_class=job.device_class,
        validation_sha256=job.validation_data.sha256 if job.validation_data is not None else None,
        calibration_sha256=job.calibration_data.sha256 if job.calibration_data is not None else None,
    )


def claim(farm: Farm, job_id: str, worker: str, task_id: str | None = None) -> Claim | None:
    """Mark the job running for ``worker``, or return None when there is nothing left to do.

    ``task_id`` is the id of the message being served: a message the job no longer answers to
    (the reaper re-queued the job under a new one, a retry did) is dropped, so a redelivered old
    message and the new one never build the same job twice."""
    with farm.session() as session:
        job = session.get(m.Job, job_id)
        if job is None:
            log.warning("job %s does not exist; dropping its message", job_id)
            return None
        _lock_model(session, job.model_id)
        session.refresh(job)
        if job.state.is_final:
            log.info("job %s is already %s; nothing to do", job_id, job.state.value)
            return None
        if task_id is not None and job.celery_task_id not in (None, task_id):
            log.info("job %s now answers to message %s; dropping superseded %s", job_id, job.celery_task_id, task_id)
            return None
        version = _installed_backend_version(job.backend)
        key = _artifact_key(job, job.model.sha256, job.spec.sha256, version)
        existing = session.scalar(select(m.Artifact).where(m.Artifact.build_key == key))
        if existing is not None:
            if existing.gate == "rejected":
                lifecycle.reject(session, job.id, existing.id, gate_message(existing.validation_results), m.utcnow())
                log.info("job %s: this build exists and was rejected by the accuracy gate (%s)", job_id, existing.id)
                return None
            lifecycle.reuse(session, job.id, existing.id, m.utcnow())
            log.info("job %s reuses artifact %s", job_id, existing.id)
            return None
        stale_before = m.utcnow() - timedelta(seconds=farm.settings.hard_time_limit + 60)
        twin = session.scalar(
            select(m.Job.id).where(
                m.Job.cache_key == job.cache_key,
                m.Job.id != job.id,
                m.Job.state == m.JobState.RUNNING,
                m.Job.started_at >= stale_before,
            )
        )
        if twin is not None:
            raise TwinInProgress(twin)
        # A job found RUNNING here was held by a worker that died (acks_late gave the message
        # back) or by this task before a transient retry: either way this task takes it over.
        if not lifecycle.claim(session, job.id, worker, m.utcnow()):
            return None
        return Claim(
            job_id=job.id,
            model_id=job.model_id,
            spec_id=job.spec_id,
            model_uri=job.model.uri,
            model_sha256=job.model.sha256,
            spec_json=job.spec.canonical_json,
            spec_sha256=job.spec.sha256,
            backend=job.backend,
            backend_version=version,
            arch=job.arch,
            device_class=job.device_class,
            precision=job.precision,
            build_key=key,
            # Recorded with every validation result, so a result can be reproduced exactly.
            seed=int(job.cache_key[:8], 16),
            validation_data=DataRef.of(job.validation_data),
            calibration_data=DataRef.of(job.calibration_data),
        )


class PhaseRecorder:
    """Writes the current phase and the seconds each finished phase took into the job row."""

    def __init__(self, farm: Farm, job_id: str, worker: str) -> None:
        self.farm = farm
        self.job_id = job_id
        self.worker = worker
        self.timings: dict[str, float] = {}
        self._phase: str | None = None
        self._started = time.perf_counter()

    def begin(self, phase: str) -> None:
        """Start timing ``phase`` without a write (the claim already recorded it)."""
        self._close_phase()
        self._phase = phase

    def __call__(self, phase: str) -> None:
        self._close_phase()
        self._phase = phase
        try:
            with self.farm.session() as session:
                held = lifecycle.progress(session, self.job_id, self.worker, phase, dict(self.timings))
        except UnreachableError as exc:
            # The phase is for people watching; the build goes on and its outcome is recorded
            # with backoff once the database is back.
            log.warning("job %s: could not record phase %s: %s", self.job_id, phase, exc)
            return
        if not held:
            # Cancelled or reaped meanwhile: stop at this phase boundary, on every broker
            # (the embedded one cannot revoke a running task).
            raise Superseded(f"job {self.job_id} is no longer held by {self.worker}")

    def _close_phase(self) -> None:
        now = time.perf_counter()
        if self._phase is not None:
            self.timings[self._phase] = round(self.timings.get(self._phase, 0.0) + now - self._started, 6)
        self._started = now

    def stop(self) -> dict[str, float]:
        self._close_phase()
        self._phase = None
        return dict(self.timings)


def _fail(farm: Farm, job_id: str, worker: str, kind: str, message: str, timings: dict[str, float]) -> None:
    def write() -> None:
        with farm.session() as session:
            lifecycle.fail(session, job_id, worker, kind, message, m.utcnow(), timings)

    with_backoff(write, f"job {job_id}: recording failure {kind}")


def _record_success(
    farm: Farm,
    work: Claim,
    worker: str,
    *,
    uri: str,
    sha256: str,
    size: int,
    report: dict[str, Any],
    validation: list[Any],
    timings: dict[str, float],
    built_on: dict[str, Any] | None = None,
    engine_requirements: list[dict[str, Any]] | None = None,
) -> str | None:
    """Write artifact, results and the succeeded job in one transaction; the artifact id."""
    with farm.session() as session:
        _lock_model(session, work.model_id)
        job = session.get(m.Job, work.job_id)
        if job is None:
            return None
        session.refresh(job)
        if job.state != m.JobState.RUNNING or job.worker_name != worker:
            # Cancelled (or taken over) while compiling: the user no longer wants this result.
            log.info("job %s is %s; discarding its build", job.id, job.state.value)
            return None
        artifact = session.scalar(select(m.Artifact).where(m.Artifact.build_key == work.build_key))
        if artifact is None:
            stats = {k: v for k, v in report.items() if k != "timings"}
            artifact = m.Artifact(
                id=m.new_id(),
                job_id=job.id,
                model_id=work.model_id,
                spec_id=work.spec_id,
                backend=work.backend,
                backend_version=work.backend_version,
                arch=work.arch,
                device_class=work.device_class,
                precision=work.precision,
                uri=uri,
                sha256=sha256,
                size_bytes=size,
                partition_stats=stats,
                built_on=built_on,
                engine_requirements=engine_requirements,
                build_key=work.build_key,
                gate="rejected" if any(not r.passed for r in validation) else "accepted",
            )
            try:
                with session.begin_nested():
                    session.add(artifact)
            except IntegrityError:
                artifact = session.scalar(
                    select(m.Artifact).where(m.Artifact.build_key == work.build_key)
                )
                assert artifact is not None
            else:
                for result in validation:
                    session.add(
                        m.ValidationResult(
                            artifact_id=artifact.id,
                            job_id=job.id,
                            output_name=result.output,
                            metric=result.metric,
                            value=float(result.value),
                            threshold=None if result.threshold is None else float(result.threshold),
                            passed=bool(result.passed),
                            seed=work.seed,
                        )
                    )
        session.flush()
        if artifact.gate == "rejected":
            # recorded with its results for inspection; the job fails and says which metric
            message = gate_message(artifact.validation_results)
            lifecycle.fail(session, job.id, worker, lifecycle.GATE_KIND, message, m.utcnow(), timings, artifact_id=artifact.id)
            return None
        if not lifecycle.succeed(session, job.id, worker, artifact.id, m.utcnow(), timings):
            return None  # cancelled or taken over between the check above and now
        return artifact.id


def gate_message(results: list[m.ValidationResult]) -> str:
    failing = [r for r in results if not r.passed]
    parts = [
        f"{r.output_name} {r.metric} {r.value:.4g}" + (f" (threshold {r.threshold:.4g})" if r.threshold is not None else "")
        for r in failing[:5]
    ]
    return "the accuracy gate rejected the engine: " + ("; ".join(parts) or "a validation result failed")


def run_job(
    farm: Farm,
    job_id: str,
    worker: str,
    *,
    on_phase: Callable[[str], None] | None = None,
    task_id: str | None = None,
) -> dict[str, Any]:
    """Claim, compile, store, validate and record one job. Raises only transient errors."""
    import compiler

    work = claim(farm, job_id, worker, task_id)
    if work is None:
        return {"job_id": job_id, "outcome": "skipped"}
    recorder = PhaseRecorder(farm, job_id, worker)

    def progress(phase: str) -> None:
        recorder(phase)
        if on_phase is not None:
            on_phase(phase)

    try:
        # locked while in use: a worker that is killed leaves it to the next one to remove
        with compiler.scratch_folder("orchestrate-job-") as tmp:
            model_path = Path(tmp) / "model.pt2"
            recorder.begin("fetch")
            farm.store.get_file(work.model_uri, model_path, expected_sha256=work.model_sha256)
            validation_path = _fetch_data(farm, work.validation_data, Path(tmp) / "validation")
            calibration_path = _fetch_data(farm, work.calibration_data, Path(tmp) / "calibration")
            program = load_program(model_path, farm.settings.max_model_bytes)
            spec = compiler.CompileSpec.parse(_json_loads(work.spec_json))
            # the peak memory recorded with the results is this job's compile and validation
            compiler.reset_peak_memory(spec.device)
            compiled = compiler.compile(
                program,
                spec,
                progress=progress,
                calibration_data=calibration_path,
                validation_data=validation_path,
            )
            progress("save")
            engine_path = Path(tmp) / "engine.pt2"
            compiler.save(compiled, engine_path)
            # What the engine records of its builder and needs of a machine, for the database:
            # `artifacts get` and `list --runs-here` decide compatibility without a download.
            manifest = compiler.read_manifest(engine_path)
            built_on = manifest.get("built_on")
            needs = [need.to_dict() for need in compiler.program_requirements(manifest)]
            progress("upload")
            stored = farm.store.put_file(engine_path)
            progress("validate")
            # on the user's data when given (labels give task accuracy), else on inputs
            # generated from the recorded seed; latency and memory rows follow
            validation = compiler.validate(compiled, program, spec, seed=work.seed, data=validation_path)
            report = compiled.report.to_dict()
    except Superseded:
        log.info("job %s was cancelled or taken over; its build stopped", job_id)
        return {"job_id": job_id, "outcome": "discarded"}
    except compiler.CompilerError as exc:
        _fail(farm, job_id, worker, exc.kind, str(exc), recorder.stop())
        return {"job_id": job_id, "outcome": "failed", "error_kind": exc.kind}
    except DataUnavailableError as exc:
        _fail(farm, job_id, worker, "data_unavailable", f"{exc}; submit the data file again", recorder.stop())
        return {"job_id": job_id, "outcome": "failed", "error_kind": "data_unavailable"}
    except (ArtifactNotFoundError, ArtifactCorruptError) as exc:
        # The stored model is gone or altered: no retry brings it back; resubmit the file.
        _fail(farm, job_id, worker, "model_unavailable", f"{exc}; submit the model again", recorder.stop())
        return {"job_id": job_id, "outcome": "failed", "error_kind": "model_unavailable"}
    except SoftTimeLimitExceeded:
        message = f"the compile ran past the soft time limit of {farm.settings.soft_time_limit:g} s"
        _fail(farm, job_id, worker, "timeout", message, recorder.stop())
        return {"job_id": job_id, "outcome": "failed", "error_kind": "timeout"}
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:
        # A bug, not the user's fault, and not going away on retry: record it for the report.
        log.exception("job %s failed unexpectedly", job_id)
        _fail(farm, job_id, worker, "internal_error", f"{type(exc).__name__}: {exc}", recorder.stop())
        return {"job_id": job_id, "outcome": "failed", "error_kind": "internal_error"}
    timings = recorder.stop()
    # The compiler measures its own phases more precisely than the progress callbacks can.
    timings.update({k: round(float(v), 6) for k, v in report.get("timings", {}).items()})
    artifact_id = with_backoff(
        lambda: _record_success(
            farm,
            work,
            worker,
            uri=stored.uri,
            sha256=stored.sha256,
            size=stored.size,
            report=report,
            validation=list(validation),
            timings=timings,
            built_on=built_on,
            engine_requirements=needs,
        ),
        f"job {job_id}: recording its artifact",
    )
    outcome = "succeeded" if artifact_id is not None else "discarded"
    return {"job_id": job_id, "outcome": outcome, "artifact_id": artifact_id}


class DataUnavailableError(Exception):
    """A job's stored data file is gone or altered: no retry brings it back."""


def _fetch_data(farm: Farm, ref: DataRef | None, stem: Path) -> Path | None:
    """The data file at ``stem`` with its format's suffix (the loader reads it by suffix)."""
    if ref is None:
        return None
    path = stem.with_suffix(f".{ref.format}")
    try:
        farm.store.get_file(ref.uri, path, expected_sha256=ref.sha256)
    except (ArtifactNotFoundError, ArtifactCorruptError) as exc:
        raise DataUnavailableError(f"{stem.name} data: {exc}") from None
    return path


def _json_loads(text: str) -> Any:
    import json

    return json.loads(text)


def worker_name_of(task: Task) -> str:
    hostname = getattr(task.request, "hostname", None)
    return hostname or f"{socket.gethostname()}-{os.getpid()}"


def _farm_of(task: Task) -> Farm:
    app = task.app
    settings = app.settings if isinstance(app, FarmCelery) else get_settings()
    return farm_for(settings)


class CompileTask(Task):
    """The compile task's class: what happens to the job row when Celery itself ends a task."""

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        # Celery calls this in the worker's main process when the hard time limit killed the
        # pool process: nothing in the task ran to record it, and the worker is alive, so no
        # reaper would either. (The soft limit lands here only when it struck outside the
        # build, e.g. while the outcome waited for the database.) The job answers to this
        # message id only while it is its attempt.
        if not isinstance(exc, TimeLimitExceeded | SoftTimeLimitExceeded) or not args:
            return
        job_id = str(args[0])
        farm = _farm_of(self)
        if isinstance(exc, TimeLimitExceeded):
            limit = farm.settings.hard_time_limit
            message = f"the compile ran past the hard time limit of {limit:g} s and its process was killed"
        else:
            message = f"the job ran past the soft time limit of {farm.settings.soft_time_limit:g} s"

        def write() -> None:
            with farm.session() as session:
                job = session.get(m.Job, job_id)
                if job is None or job.state != m.JobState.RUNNING or job.celery_task_id not in (None, task_id):
                    return
                if job.worker_name is not None:
                    lifecycle.fail(session, job_id, job.worker_name, "timeout", message, m.utcnow(), dict(job.phase_timings or {}))

        try:
            with_backoff(write, f"job {job_id}: recording the hard time limit", patience=60.0)
        except TRANSIENT_ERRORS as error:
            log.error("job %s: could not record the hard time limit: %s", job_id, error)


@shared_task(name=COMPILE_TASK, bind=True, base=CompileTask, max_retries=MAX_TRANSIENT_RETRIES)
def compile_job(self: Task, job_id: str) -> dict[str, Any]:
    """Build the engine of one job (see the module docstring for the guarantees)."""
    farm = _farm_of(self)
    worker = worker_name_of(self)
    try:
        return run_job(farm, job_id, worker, task_id=self.request.id)
    except TwinInProgress as twin:
        log.info("job %s waits for its twin %s", job_id, twin.twin_id)
        if self.request.is_eager:
            # Eager mode has no queue to come back through; the twin ran to completion already
            # unless it is still running in another process, so poll for it here.
            time.sleep(TWIN_POLL_SECONDS)
        raise self.retry(countdown=TWIN_POLL_SECONDS, max_retries=None) from None
    except TRANSIENT_ERRORS as exc:
        database_down = isinstance(exc, UnreachableError | DBOperationalError)
        if self.request.retries >= MAX_TRANSIENT_RETRIES and not database_down:
            log.error("job %s: giving up after %d retries: %s", job_id, self.request.retries, exc)
            try:
                _fail(farm, job_id, worker, "infrastructure_error", str(exc), {})
            except TRANSIENT_ERRORS:
                # Dropping the message now would leave the row running for good: keep it
                # coming back until the database can take the job's outcome.
                log.error("job %s: could not record the failure either; trying again later", job_id)
                raise self.retry(exc=exc, countdown=backoff_seconds(MAX_TRANSIENT_RETRIES), max_retries=None) from None
            raise
        # While the database is down nothing can be recorded, so giving up would lose the job:
        # its message keeps coming back, at most a minute apart, until the database answers.
        delay = backoff_seconds(self.request.retries)
        log.warning("job %s: transient error (%s); retrying in %.1f s", job_id, exc, delay)
        raise self.retry(exc=exc, countdown=delay, max_retries=None if database_down else MAX_TRANSIENT_RETRIES) from None
