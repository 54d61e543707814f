"""Submit and control services: the one implementation behind the CLI and the Python client.

Reading the farm lives in ``orchestrator.queries`` and handing out engines in
``orchestrator.artifacts``; their names stay importable from here.

A submission is accepted in this order, so that a worker never sees half of it:
validate the file (untrusted) -> store the blob -> write model, spec and job rows -> COMMIT ->
enqueue. A job whose result already exists (same model, spec, backend version and target) is
recorded as succeeded with that artifact and never reaches a queue.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.exc import OperationalError as DBOperationalError
from sqlalchemy.exc import ProgrammingError as DBProgrammingError
from sqlalchemy.orm import Session

from orchestrator import jobs as lifecycle
from orchestrator import models as m
from orchestrator.broker import REQUEUED_PRIORITY, SUBMITTED_PRIORITY
from orchestrator.celery_app import (
    COMPILE_TASK,
    QUICK_PUBLISH_RETRY_POLICY,
    FarmCelery,
    get_app,
    make_app,
)
from orchestrator.datasets import DataSource, DataUpload, check_data, read_data, upsert_data
from orchestrator.datasets import unused as data_unused
from orchestrator.db import is_missing_schema, session_scope
from orchestrator.routing import RoutingError, Target
from orchestrator.settings import Settings, get_settings, redact, scrub
from orchestrator.untrusted import (
    UnsafeNameError,
    check_model_name,
    clean_model_name,
    printable,
    read_bounded,
)

if TYPE_CHECKING:
    import compiler
    from orchestrator.store import ArtifactStore

# The error tree and the views have modules of their own; the services raise and return them,
# and keep their names importable from here for callers that predate the split.
from orchestrator.errors import (  # noqa: E402
    FarmError,
    IncompatibleArtifactError,
    InvalidRequestError,
    InvalidStateError,
    JobCancelledError,
    JobFailedError,
    NotFoundError,
    RejectedArtifactError,
    UnreachableError,
    WaitTimeoutError,
)
from orchestrator.views import (  # noqa: E402
    HEARTBEAT_INTERVAL,
    LIVE_WINDOW,
    MISSING,
    ArtifactInfo,
    JobInfo,
    Missing,
    Submission,
    ValidationInfo,
    WorkerInfo,
    is_live,
    live_window,
)

__all__ = [
    "HEARTBEAT_INTERVAL", "LIVE_WINDOW", "MISSING", "ArtifactInfo", "FarmError",
    "IncompatibleArtifactError", "InvalidRequestError", "InvalidStateError", "JobCancelledError",
    "JobFailedError", "JobInfo", "Missing", "NotFoundError", "RejectedArtifactError", "Submission", "UnreachableError",
    "ValidationInfo", "WaitTimeoutError", "WorkerInfo",
    # orchestrator.queries
    "RUNS_ON_PAGE", "get_artifact", "get_job", "get_jobs", "job_artifact", "list_artifacts",
    "list_jobs", "list_workers", "resolve_artifact", "resolve_job", "results",
    # orchestrator.artifacts
    "VerifyResult", "download_artifact", "download_file_name", "refuse_incompatible",
    "refuse_rejected", "refuse_to_hand_out", "verify_objects",
]


# ------------------------------------------------------------------------------------ the farm
class Farm:
    """Settings, Celery app, database and artifact store of one farm, opened lazily."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        app: FarmCelery | None = None,
        eager: bool = False,
    ) -> None:
        self.settings = settings or get_settings()
        if app is None:
            app = make_app(self.settings, eager=True) if eager else None
        self._app = app
        self._store: ArtifactStore | None = None
        _register(self)

    @property
    def app(self) -> FarmCelery:
        if self._app is None:
            # The process-wide app is shared by every Farm of the default settings, so its
            # broker connection pool is too.
            self._app = get_app() if self.settings == get_settings() else make_app(self.settings)
            _register(self)
        return self._app

    @property
    def store(self) -> ArtifactStore:
        if self._store is None:
            from orchestrator.store import ArtifactStore

            self._store = ArtifactStore(self.settings.artifact_store)
        return self._store

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction on the farm's database; unreachable databases become UnreachableError."""
        try:
            with session_scope(self.settings.database_url) as session:
                yield session
        except (DBOperationalError, DBProgrammingError) as exc:
            # ProgrammingError: a reachable server without the farm's tables (or columns).
            if isinstance(exc, DBProgrammingError) and not is_missing_schema(exc):
                raise
            raise UnreachableError(_db_problem(self.settings, exc)) from None

    def describe(self) -> dict[str, str]:
        return self.settings.describe()


_farms: dict[Settings, Farm] = {}
_farms_lock = threading.Lock()


def _register(farm: Farm) -> None:
    with _farms_lock:
        _farms.setdefault(farm.settings, farm)


def farm_for(settings: Settings) -> Farm:
    """The farm of these settings in this process (tasks find theirs from their app's settings)."""
    with _farms_lock:
        farm = _farms.get(settings)
    return farm if farm is not None else Farm(settings)


def _db_problem(settings: Settings, exc: SQLAlchemyError) -> str:
    from orchestrator.db import describe_error

    return describe_error(settings.database_url, exc)


# ------------------------------------------------------------------------------------ inputs
def resolve_targets(archs: Sequence[str], device_class: str | None = None) -> list[Target]:
    """Validated, de-duplicated targets in the order given."""
    if not archs:
        raise InvalidRequestError("give at least one --arch (x86_64 or aarch64)")
    targets: list[Target] = []
    try:
        for arch in archs:
            target = Target.parse(arch, device_class)
            if target not in targets:
                targets.append(target)
    except RoutingError as exc:
        raise InvalidRequestError(str(exc)) from None
    return targets


# A spec names a handful of inputs; these bounds keep a hostile one from costing minutes of
# parsing (YAML aliases expand, pydantic walks every node) or megabytes of database per submit.
DEFAULT_MAX_SPEC_BYTES = 1024**2
MAX_SPEC_NODES = 100_000
MAX_SPEC_INPUTS = 1024


def resolve_spec(
    spec: compiler.CompileSpec | dict[str, Any] | str | Path | None = None,
    *,
    backend: str | None = None,
    precision: str | None = None,
    max_bytes: int = DEFAULT_MAX_SPEC_BYTES,
) -> compiler.CompileSpec:
    """A CompileSpec from a spec object, a mapping, or a YAML file; flags override its keys.

    A file must be smaller than ``max_bytes`` (ORCHESTRATE_MAX_SPEC_BYTES)."""
    import compiler

    try:
        if spec is None:
            resolved = compiler.CompileSpec()
        elif isinstance(spec, compiler.CompileSpec):
            resolved = spec
        elif isinstance(spec, dict):
            resolved = _parse_spec_data(spec, "spec", max_bytes)
        else:
            resolved = _parse_spec_data(_load_spec_file(Path(spec), max_bytes), str(spec), max_bytes)
        overrides = {k: v for k, v in (("backend", backend), ("precision", precision)) if v}
        if overrides:
            # Re-validate: model_copy(update=...) alone would accept any string.
            resolved = compiler.CompileSpec.parse({**resolved.model_dump(mode="json"), **overrides})
    except compiler.CompilerError as exc:
        raise InvalidRequestError(str(exc)) from None
    check_spec_size(resolved, max_bytes)
    return resolved


def _load_spec_file(path: Path, max_bytes: int) -> Any:
    import yaml

    raw = read_bounded(path, max_bytes, "spec file", "ORCHESTRATE_MAX_SPEC_BYTES; a spec names a few inputs and settings")
    try:
        # libyaml's loader where installed: the pure-Python one takes seconds per megabyte.
        return yaml.load(raw.decode("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except UnicodeDecodeError:
        raise InvalidRequestError(f"spec file {path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise InvalidRequestError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise InvalidRequestError(f"{path}: the spec is nested too deeply") from None


def _parse_spec_data(data: Any, source: str, max_bytes: int) -> compiler.CompileSpec:
    """``CompileSpec.parse`` after bounding what it would walk: the expanded node count (YAML
    aliases share nodes that validation would visit once per reference) and the input count;
    duplicate input names are found here in one pass."""
    import compiler

    try:
        nodes = _expanded_size(data)
    except RecursionError:
        raise InvalidRequestError(f"{source}: the spec is nested too deeply") from None
    if nodes > MAX_SPEC_NODES:
        raise InvalidRequestError(
            f"{source}: the spec expands to {nodes} values (YAML aliases count once per use), "
            f"over the limit of {MAX_SPEC_NODES}"
        )
    inputs = data.get("inputs") if isinstance(data, dict) else None
    if isinstance(inputs, list):
        if len(inputs) > MAX_SPEC_INPUTS:
            raise InvalidRequestError(
                f"{source}: inputs lists {len(inputs)} entries, over the limit of {MAX_SPEC_INPUTS}"
            )
        seen: set[str] = set()
        duplicates: set[str] = set()
        for item in inputs:
            input_name = item.get("name") if isinstance(item, dict) else None
            if isinstance(input_name, str):
                (duplicates if input_name in seen else seen).add(input_name)
        if duplicates:
            raise InvalidRequestError(
                f"{source}: inputs: input names appear twice: {', '.join(sorted(duplicates))}"
            )
    return compiler.CompileSpec.parse(data, source)


def _expanded_size(data: Any) -> int:
    """How many values ``data`` holds when every shared (aliased) container is counted once
    per reference, computed in time linear in the distinct containers."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(value: Any) -> int:
        if not isinstance(value, dict | list):
            return 1
        key = id(value)
        if key in sizes:
            return sizes[key]
        if key in active:  # a recursive alias: infinite when expanded
            return MAX_SPEC_NODES + 1
        active.add(key)
        children = value.values() if isinstance(value, dict) else value
        total = 1 + sum(size(child) for child in children)
        active.discard(key)
        sizes[key] = min(total, MAX_SPEC_NODES + 1)
        return sizes[key]

    return size(data)


def check_spec_size(spec: compiler.CompileSpec, max_bytes: int) -> None:
    """Refuse a spec whose stored form (one row per distinct spec) is over ``max_bytes``."""
    stored = len(spec.canonical_json().encode())
    if stored >= max_bytes:
        raise InvalidRequestError(
            f"the spec is {stored} bytes as stored, at or over the limit of {max_bytes} bytes "
            "(ORCHESTRATE_MAX_SPEC_BYTES)"
        )


def read_model(model: str | Path | bytes, max_bytes: int) -> tuple[bytes, str]:
    """The model's bytes and a display name. A model must be smaller than ``max_bytes``: a
    file at or over it is refused before anything is read, and a file that grows (or that
    reports no size, like those under /proc) is read only up to the limit."""
    if isinstance(model, bytes | bytearray | memoryview):
        data = bytes(model)
        name = "model"
    else:
        path = Path(model)
        data = read_bounded(path, max_bytes, "model file", "ORCHESTRATE_MAX_MODEL_BYTES; a model must be smaller")
        name = clean_model_name(path.name.removesuffix(".pt2") or path.name)
    if len(data) >= max_bytes:
        raise InvalidRequestError(
            f"model is {len(data)} bytes or more, at or over the farm's limit of {max_bytes} bytes"
        )
    return data, name


def load_program(source: str | Path | bytes, max_bytes: int) -> Any:
    """``compiler.load_program``: safe against crafted pickles, and serialized across threads
    (torch.export.load is not thread-safe; the compiler holds a lock around it)."""
    import compiler

    return compiler.load_program(source, max_bytes=max_bytes)


def validate_model_bytes(data: bytes, max_bytes: int) -> Any:
    """Refuse anything that is not a plain torch.export program, before torch opens it; return
    the loaded program."""
    import compiler

    try:
        return load_program(data, max_bytes)
    except compiler.CompilerError as exc:
        raise InvalidRequestError(f"model refused ({exc.kind}): {exc}") from None


def check_spec_for_targets(spec: compiler.CompileSpec, targets: Sequence[Target]) -> None:
    """Refuse a spec the backend can never build for these targets, before anything is stored
    or queued: e.g. fp16 with onnxruntime on a CPU device, bf16 for a pre-Ampere GPU class. Each
    target is judged by the backend from the device-class table (``check_target``), never from
    the libraries of the machine submitting, so the check holds for GPU targets too."""
    from compiler.backends import get_backend
    from compiler.errors import BackendError
    from compiler.identity import DEVICE_CLASSES

    backend = get_backend(spec.backend, require_available=False)
    for target in targets:
        device_class = DEVICE_CLASSES.get(target.device_class) if target.device_class else None
        try:
            backend.check_target(spec, target.arch, device_class)
        except BackendError as exc:
            raise InvalidRequestError(f"{target.label}: {exc}") from None


def check_spec_against_program(spec: compiler.CompileSpec, program: Any) -> None:
    """Refuse what ``compile`` would refuse about the spec's inputs: a name the model lacks,
    a dtype or rank it does not take, a range outside what it was exported for, a zero size."""
    import compiler
    from compiler.frontend import input_signature

    for item in spec.inputs:
        for key in ("shape", "min", "opt", "max"):
            sizes = getattr(item, key)
            if sizes is not None and 0 in sizes:
                raise InvalidRequestError(
                    f"spec inputs.{item.name}.{key}: dimension {sizes.index(0)} is 0; an engine "
                    "for empty tensors computes nothing (use a size of at least 1)"
                )
    try:
        input_signature(program, spec)
    except compiler.CompilerError as exc:
        raise InvalidRequestError(f"spec refused for this model ({exc.kind}): {exc}") from None


# ------------------------------------------------------------------------------------ submit
def read_data_files(
    farm: Farm,
    *,
    validation: DataSource | DataUpload | None = None,
    calibration: DataSource | DataUpload | None = None,
) -> list[DataUpload]:
    """The submission's data files, read (size-limited like models) but not yet checked."""
    found = []
    for role, source in (("validation", validation), ("calibration", calibration)):
        if source is None:
            continue
        found.append(source if isinstance(source, DataUpload) else read_data(role, source, farm.settings.max_model_bytes))
    return found


def candidate_backend_versions(backend: str, queue: str, live: Sequence[m.Worker]) -> set[str]:
    """Backend versions a build on ``queue`` would use: those of its live workers, else local."""
    versions = {
        str(row.capabilities.get("backends", {}).get(backend))
        for row in live
        if queue in (row.queues or []) and row.capabilities.get("backends", {}).get(backend)
    }
    if not versions:
        try:
            import compiler

            local = compiler.backend_versions().get(backend)
        except ImportError:
            local = None
        if local:
            versions.add(local)
    return versions


def _live_workers(session: Session, now: datetime) -> list[m.Worker]:
    # Each worker is judged by its own heartbeat interval, so the window is applied here.
    stmt = select(m.Worker).where(m.Worker.state == m.WorkerState.ONLINE)
    return [row for row in session.scalars(stmt) if is_live(row, now)]


@dataclass
class _ModelIntake:
    """The model's row, and whether this submission created it (and stored its blob)."""

    row: m.Model
    created: bool


def _upsert_model(
    session: Session,
    farm: Farm,
    data: bytes,
    sha: str,
    name: str | None,
    default_name: str,
    spec: compiler.CompileSpec,
    program: Any = None,
) -> _ModelIntake:
    """The model's row, stored on first sight; the spec's inputs are checked against the
    program before anything is stored. ``program``: the model already loaded and checked
    (a submission with data files needs it before this)."""
    existing = session.scalar(select(m.Model).where(m.Model.sha256 == sha))
    if existing is not None:
        _check_same_name(existing, name)
        # Same bytes were validated when first stored; the content hash proves they are these.
        # The program is loaded again only when the spec says something about its inputs.
        if spec.inputs and program is None:
            check_spec_against_program(spec, validate_model_bytes(data, farm.settings.max_model_bytes))
        return _ModelIntake(existing, created=False)
    if program is None:
        program = validate_model_bytes(data, farm.settings.max_model_bytes)
    if spec.inputs:
        check_spec_against_program(spec, program)
    from orchestrator.store import ArtifactStoreError

    try:
        uri = farm.store.put_bytes(data).uri
    except (ArtifactStoreError, OSError) as exc:
        raise UnreachableError(
            f"cannot write to the artifact store {redact(farm.settings.artifact_store)}: {exc}"
        ) from None
    row = m.Model(name=name or default_name, sha256=sha, size_bytes=len(data), uri=uri)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        # Another submitter stored the same model between our read and our insert.
        raced = session.scalar(select(m.Model).where(m.Model.sha256 == sha))
        assert raced is not None
        _check_same_name(raced, name)
        return _ModelIntake(raced, created=False)
    return _ModelIntake(row, created=True)


def _check_same_name(row: m.Model, name: str | None) -> None:
    # A model is its bytes, stored once under the name of its first submission; renaming it
    # here would rename it in every teammate's listings, so a different name is refused.
    if name is not None and name != row.name:
        raise InvalidRequestError(
            f"this model (sha256 {row.sha256[:12]}) is already stored as {printable(row.name)!r}; "
            f"its name stays: leave out --name, or pass --name {printable(row.name)!r}"
        )


def _upsert_spec(session: Session, spec: compiler.CompileSpec) -> m.CompileSpecRow:
    sha = spec.sha256()
    existing = session.scalar(select(m.CompileSpecRow).where(m.CompileSpecRow.sha256 == sha))
    if existing is not None:
        return existing
    row = m.CompileSpecRow(sha256=sha, canonical_json=spec.canonical_json())
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raced = session.scalar(select(m.CompileSpecRow).where(m.CompileSpecRow.sha256 == sha))
        assert raced is not None
        return raced
    return row


def submit(
    farm: Farm,
    model: str | Path | bytes,
    targets: Sequence[Target],
    spec: compiler.CompileSpec,
    *,
    name: str | None = None,
    submitted_by: str | None = None,
    validation_data: DataSource | DataUpload | None = None,
    calibration_data: DataSource | DataUpload | None = None,
) -> Submission:
    """Accept a model for every target: cached targets succeed at once, the rest are enqueued.
    ``submitted_by`` is the API user the server submits for (recorded on every job).

    ``validation_data`` and ``calibration_data`` (a .safetensors/.npz path, or tensors by input
    name) are checked against the model's inputs before anything is stored or queued, then
    stored content-addressed and recorded on every job; they are part of the cache key."""
    if not targets:
        raise InvalidRequestError("give at least one target architecture")
    from compiler.backends import get_backend

    backend = get_backend(spec.backend, require_available=False)
    if backend.device_tied(spec.device) and any(t.device_class is None for t in targets):
        raise InvalidRequestError(
            f"a {spec.backend} engine for {spec.device} only runs on the GPU generation that built "
            "it: add --device-class (e.g. sm90 for an H100, orin for a Jetson Orin)"
        )
    if name is not None:
        try:
            name = check_model_name(name)
        except UnsafeNameError as exc:
            raise InvalidRequestError(str(exc)) from None
    check_spec_size(spec, farm.settings.max_spec_bytes)
    check_spec_for_targets(spec, targets)
    data, default_name = read_model(model, farm.settings.max_model_bytes)
    uploads = read_data_files(farm, validation=validation_data, calibration=calibration_data)
    program = None
    if uploads:
        # Data files are checked against the program's inputs before anything is stored.
        program = validate_model_bytes(data, farm.settings.max_model_bytes)
        check_spec_against_program(spec, program)
        check_data(uploads, program, spec)
    sha = hashlib.sha256(data).hexdigest()
    now = m.utcnow()
    to_enqueue: list[tuple[str, str, str]] = []
    warnings: list[str] = []
    created_data: list[str] = []
    with farm.session() as session:
        intake = _upsert_model(session, farm, data, sha, name, default_name, spec, program)
        model_row = intake.row
        spec_row = _upsert_spec(session, spec)
        data_rows: dict[str, m.DataFile] = {}
        for upload in uploads:
            stored = upsert_data(session, farm.store, upload)
            data_rows[upload.role] = stored.row
            if stored.created:
                created_data.append(stored.row.id)
        data_shas = {f"{role}_sha256": row.sha256 for role, row in data_rows.items()}
        live = _live_workers(session, now)
        jobs: list[tuple[m.Job, m.Artifact | None]] = []
        for target in targets:
            request_key = m.build_key(
                model_sha256=sha,
                spec_sha256=spec_row.sha256,
                backend=spec.backend,
                backend_version=None,
                arch=target.arch,
                device_class=target.device_class,
                **data_shas,
            )
            job = m.Job(
                id=m.new_id(),
                model=model_row,
                spec=spec_row,
                arch=target.arch,
                device_class=target.device_class,
                queue=target.queue,
                backend=spec.backend,
                precision=spec.precision,
                cache_key=request_key,
                created_at=now,
                phase_timings={},
                attempts=0,
                submitted_by=submitted_by,
                validation_data=data_rows.get("validation"),
                calibration_data=data_rows.get("calibration"),
            )
            hit = _cached_artifact(session, sha, spec_row.sha256, spec.backend, target, live, data_shas)
            if hit is not None:
                lifecycle.opened(job, now, artifact_id=hit.id)
            else:
                task_id = uuid.uuid4().hex
                lifecycle.opened(job, now, task_id=task_id)
                to_enqueue.append((job.id, job.queue, task_id))
                if not any(target.queue in (w.queues or []) for w in live):
                    warnings.append(
                        f"no live worker serves {target.queue}: job {job.id} waits until one "
                        f"starts (e.g. `orchestrate worker --arch {target.arch}"
                        + (f" --device-class {target.device_class}`" if target.device_class else "`")
                        + " on a matching machine)"
                    )
            session.add(job)
            jobs.append((job, hit))
        session.flush()
        # Built from the objects in hand: a cache hit then costs no second round trip.
        infos = [JobInfo.of(job, hit) for job, hit in jobs]
    # Enqueue only after the commit above: a worker that picks the message up must find the row.
    failed = send(farm, to_enqueue)
    if failed:
        _withdraw(farm, [info.id for info in infos], model_row.id if intake.created else None, created_data)
        raise UnreachableError(failed + "; nothing was submitted, submit again once it is back")
    if to_enqueue:
        # Enqueued jobs may have moved on already (at once, when tasks run eagerly).
        infos = get_jobs(farm, [info.id for info in infos])
    return Submission(jobs=infos, warnings=warnings)


def _cached_artifact(
    session: Session,
    model_sha: str,
    spec_sha: str,
    backend: str,
    target: Target,
    live: Sequence[m.Worker],
    data_shas: dict[str, str] | None = None,
) -> m.Artifact | None:
    versions = candidate_backend_versions(backend, target.queue, live)
    keys = [
        m.build_key(
            model_sha256=model_sha,
            spec_sha256=spec_sha,
            backend=backend,
            backend_version=version,
            arch=target.arch,
            device_class=target.device_class,
            **(data_shas or {}),
        )
        for version in sorted(versions)
    ]
    if not keys:
        return None
    # a rejected engine never answers a new submit as if it were a success
    accepted = or_(m.Artifact.gate.is_(None), m.Artifact.gate != "rejected")
    return session.scalars(
        select(m.Artifact).where(m.Artifact.build_key.in_(keys), accepted).order_by(m.Artifact.created_at.desc())
    ).first()


def send(
    farm: Farm,
    items: Sequence[tuple[str, str, str]],
    *,
    priority: int = SUBMITTED_PRIORITY,
    retry_policy: Mapping[str, float] | None = None,
) -> str | None:
    """Send (job id, queue, task id) messages of ``priority`` (``orchestrator.broker``); None
    when all went, else why the broker refused. A broker that is down is waited for as
    ``retry_policy`` says (default: the app's, ``celery_app.PUBLISH_RETRY_POLICY``)."""
    if not items:
        return None
    app = farm.app
    started = time.monotonic()
    try:
        if app.conf.task_always_eager:
            # the app's own `include` says where its tasks live (the farm does not import them)
            app.loader.import_default_modules()
            task = app.tasks[COMPILE_TASK]
            for job_id, queue, task_id in items:
                task.apply_async(args=[job_id], queue=queue, task_id=task_id, priority=priority)
        else:
            policy = dict(retry_policy or app.conf.task_publish_retry_policy)
            with app.connection_for_write() as connection:
                # The policy governs connecting too: a pooled producer would connect under the
                # transport's own options (one retry within the 3 s connect timeout).
                connection.ensure_connection(
                    max_retries=int(policy["max_retries"]),
                    interval_start=policy["interval_start"],
                    interval_step=policy["interval_step"],
                    interval_max=policy["interval_max"],
                )
                for job_id, queue, task_id in items:
                    app.send_task(
                        COMPILE_TASK, args=[job_id], queue=queue, task_id=task_id, connection=connection,
                        priority=priority, retry_policy=policy,
                        # the job row holds the outcome: no result-backend subscription (a second
                        # connection, with a retry loop of its own, to a broker that may be down)
                        ignore_result=True,
                    )
        return None
    except Exception as exc:  # kombu raises many types for one cause: the broker is not there
        if app.conf.task_always_eager:
            raise
        detail = scrub(str(exc), farm.settings.broker_url).rstrip(".")
        waited = time.monotonic() - started
        return (
            f"cannot reach the broker at {redact(farm.settings.broker_url)}: it is down or unreachable "
            f"(publishing was retried for {waited:.1f} s): {detail}"
        )


def enqueue(
    farm: Farm,
    items: Sequence[tuple[str, str, str]],
    *,
    priority: int = SUBMITTED_PRIORITY,
    retry_policy: Mapping[str, float] | None = None,
) -> str | None:
    """Send (job id, queue, task id) messages; on a broker failure, fail those jobs and say why."""
    message = send(farm, items, priority=priority, retry_policy=retry_policy)
    if message is None:
        return None
    sent_ids = [job_id for job_id, _, _ in items]
    with farm.session() as session:
        for job_id in sent_ids:
            lifecycle.fail_enqueue(session, job_id, message + "; run `orchestrate retry JOB` once it is back", m.utcnow())
    return message


def _withdraw(
    farm: Farm, job_ids: Sequence[str], created_model_id: str | None, created_data_ids: Sequence[str] = ()
) -> None:
    """Undo a submission whose messages could not be sent: its jobs go, and so do the model
    and data rows and blobs it stored, unless another job or artifact uses them by now."""
    uri = None
    data_uris: list[str] = []
    with farm.session() as session:
        # Only jobs nobody touched: a message that did go out may have been taken already.
        session.execute(
            delete(m.Job).where(
                m.Job.id.in_(job_ids),
                m.Job.state.in_([m.JobState.QUEUED, m.JobState.SUCCEEDED]),
                m.Job.started_at.is_(None),
            )
        )
        if created_model_id is not None:
            in_use = session.scalar(
                select(func.count()).select_from(m.Job).where(m.Job.model_id == created_model_id)
            ) or session.scalar(
                select(func.count())
                .select_from(m.Artifact)
                .where(m.Artifact.model_id == created_model_id)
            )
            row = session.get(m.Model, created_model_id)
            if row is not None and not in_use:
                uri = row.uri
                session.delete(row)
        for data_id in created_data_ids:
            data_row = session.get(m.DataFile, data_id)
            if data_row is not None and data_unused(session, data_id):
                data_uris.append(data_row.uri)
                session.delete(data_row)
    from orchestrator.store import ArtifactStoreError

    # A blob is named by its content; another row holding it would be this one.
    for blob in ([uri] if uri is not None else []) + data_uris:
        with contextlib.suppress(ArtifactStoreError, OSError):
            farm.store.delete(blob)


# Queries and artifact hand-out have modules of their own; their names stay importable here.
from orchestrator.artifacts import (  # noqa: E402
    VerifyResult,
    download_artifact,
    download_file_name,
    refuse_incompatible,
    refuse_rejected,
    refuse_to_hand_out,
    verify_objects,
)
from orchestrator.queries import (  # noqa: E402
    RUNS_ON_PAGE,
    get_artifact,
    get_job,
    get_jobs,
    job_artifact,
    list_artifacts,
    list_jobs,
    list_workers,
    resolve_artifact,
    resolve_job,
    results,
)


# ------------------------------------------------------------------------------------ control
def cancel(farm: Farm, ref: str) -> JobInfo:
    """Cancel a queued or running job; the worker finds the state and stops or discards it."""
    with farm.session() as session:
        job = resolve_job(session, ref)
        if job.state.is_final:
            raise InvalidStateError(f"job {job.id} already {job.state.value}; nothing to cancel")
        was_running = job.state == m.JobState.RUNNING
        task_id = job.celery_task_id
        job_id = job.id
        if not lifecycle.cancel(session, job_id, m.utcnow()):
            raise InvalidStateError(f"job {job_id} finished while it was being cancelled; nothing to cancel")
    if task_id:
        _revoke(farm, task_id, terminate=was_running)
    return get_job(farm, job_id)


def reap_stale(farm: Farm, *, max_attempts: int = lifecycle.MAX_ATTEMPTS) -> list[tuple[str, str]]:
    """Jobs running on workers that stopped heartbeating: queued again under a new message
    (up to ``max_attempts`` attempts) or failed as ``worker_lost``. Safe to run from every
    worker at once: each row changes for one of them. Returns (job id, new state) pairs."""
    now = m.utcnow()
    outcomes: list[tuple[str, str]] = []
    requeued: list[tuple[str, str, str]] = []
    with farm.session() as session:
        workers = {w.name: w for w in session.scalars(select(m.Worker))}
        live = {name for name, row in workers.items() if is_live(row, now)}
        running = session.execute(
            select(m.Job.id, m.Job.worker_name, m.Job.attempts, m.Job.queue, m.Job.started_at)
            .where(m.Job.state == m.JobState.RUNNING)
        ).all()
        for job_id, worker, attempts, queue, started in running:
            if worker is None or worker in live:
                continue
            # a claim just made by a worker whose row is not written yet is not a lost job
            window = live_window(workers[worker]) if worker in workers else LIVE_WINDOW
            if started is not None and now - started < window:
                continue
            task_id = uuid.uuid4().hex
            outcome = lifecycle.reap(session, job_id, worker, task_id, now, max_attempts=max_attempts, attempts=attempts or 0)
            if outcome is not None:
                outcomes.append((job_id, outcome))
                if outcome == "queued":
                    requeued.append((job_id, queue, task_id))
    if requeued:
        # ahead of every job submitted since: they have waited their turn once already
        enqueue(farm, requeued, priority=REQUEUED_PRIORITY, retry_policy=QUICK_PUBLISH_RETRY_POLICY)
    return outcomes


def _revoke(farm: Farm, task_id: str, *, terminate: bool) -> None:
    app = farm.app
    if app.conf.task_always_eager or not app.conf.worker_enable_remote_control:
        return
    # Best effort: the job row is already cancelled and the task checks it before doing work.
    with contextlib.suppress(Exception):
        app.control.revoke(task_id, terminate=terminate, signal="SIGTERM")


def retry(farm: Farm, ref: str) -> JobInfo:
    """Run a failed or cancelled job again, as a new attempt of the same job."""
    with farm.session() as session:
        job = resolve_job(session, ref)
        if job.state not in (m.JobState.FAILED, m.JobState.CANCELLED):
            raise InvalidStateError(
                f"job {job.id} is {job.state.value}; only failed or cancelled jobs can be retried"
            )
        task_id = uuid.uuid4().hex
        item = (job.id, job.queue, task_id)
        if not lifecycle.retry(session, job.id, task_id, m.utcnow()):
            raise InvalidStateError(f"job {job.id} changed while it was being retried; look at it again")
    failed = enqueue(farm, [item])
    if failed:
        raise UnreachableError(failed)
    return get_job(farm, item[0])


ProgressCallback = Callable[[JobInfo], None]


# How often a wait without a timeout asks whether a live worker still serves the job's queue.
NO_WORKER_CHECK_INTERVAL = 5.0


class NoWorkerError(FarmError):
    """A wait without a timeout on a queued job that no live worker serves: it would never end."""

    kind = "no_worker"

    def __init__(self, job: JobInfo) -> None:
        self.job = job
        super().__init__(
            f"job {job.id} is queued and no live worker serves {job.queue}, so waiting would "
            f"never end; start one (`orchestrate worker --arch {job.arch}"
            + (f" --device-class {job.device_class}" if job.device_class else "")
            + "` on a matching machine) or wait with --timeout"
        )


def check_timeout(timeout: float | None) -> None:
    if timeout is not None and (math.isnan(timeout) or timeout < 0):
        raise InvalidRequestError(f"a timeout is a number of seconds >= 0, not {timeout:g}")


def wait(
    farm: Farm,
    ref: str,
    *,
    timeout: float | None = None,
    poll_interval: float = 0.25,
    on_change: ProgressCallback | None = None,
) -> JobInfo:
    """Poll until the job is final; ``on_change`` sees every new (state, phase).

    Without a timeout, a queued job that no live worker serves ends the wait with
    :class:`NoWorkerError` instead of waiting forever."""
    check_timeout(timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    job = get_job(farm, ref)
    seen: tuple[str, str | None] | None = None
    next_worker_check = time.monotonic()
    while True:
        if on_change is not None and (job.state, job.phase) != seen:
            seen = (job.state, job.phase)
            on_change(job)
        if job.is_final:
            return job
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeoutError(job, timeout or 0.0)
        queued = job.state == m.JobState.QUEUED.value
        if deadline is None and queued and time.monotonic() >= next_worker_check:
            next_worker_check = time.monotonic() + NO_WORKER_CHECK_INTERVAL
            if not _queue_is_served(farm, job.queue):
                # Read again: a worker may have taken the job just before it stopped.
                job = get_job(farm, job.id)
                if job.state == m.JobState.QUEUED.value:
                    raise NoWorkerError(job)
                continue
        time.sleep(poll_interval)
        job = get_job(farm, job.id)


def _queue_is_served(farm: Farm, queue: str) -> bool:
    with farm.session() as session:
        return any(queue in (w.queues or []) for w in _live_workers(session, m.utcnow()))


def raise_for_outcome(job: JobInfo) -> JobInfo:
    if job.state == m.JobState.FAILED.value:
        raise JobFailedError(job)
    if job.state == m.JobState.CANCELLED.value:
        raise JobCancelledError(job)
    return job


def db_error(settings: Settings, exc: SQLAlchemyError) -> UnreachableError:
    if isinstance(exc, DBOperationalError | DBProgrammingError):
        return UnreachableError(_db_problem(settings, exc))
    detail = scrub(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, settings.database_url)
    return UnreachableError(f"database error at {redact(settings.database_url)}: {detail}")
