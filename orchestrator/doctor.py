"""``orchestrate doctor``'s checks: can this machine reach the farm, and build engines?

Each check answers one question an operator asks before blaming the code: does the broker take
a connection (and the result backend), is the database reachable with its schema at Alembic's head, can the artifact store
write, read and delete an object, which backends can build here, and which GPU (device class)
this machine reports. A check never raises: it returns a verdict, what it found and, when
something is wrong, how to fix it.

Verdicts: ``ok``; ``warn`` (works, but not the way a deployment usually wants, e.g. no GPU, or
an embedded SQLite database that migrates itself on first use); ``fail``. Broker, database and
store failures are infrastructure (exit 3); a machine with no working backend exits 1.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from orchestrator.settings import Settings, redact, scrub

OK, WARN, FAIL = "ok", "warn", "fail"

#: Seconds a check waits for a server before calling it unreachable.
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    verdict: str  # ok | warn | fail
    detail: str
    fix: str | None = None
    #: a failure here means "infrastructure unreachable" (exit 3), not "this machine" (exit 1)
    infrastructure: bool = False
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.verdict == FAIL

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------------- broker
def check_broker(settings: Settings) -> Check:
    """Open a connection to the broker the way a worker does (kombu), then close it."""
    from kombu import Connection

    url = settings.broker_url
    shown = redact(url)
    try:
        connection = Connection(url, connect_timeout=CONNECT_TIMEOUT)
        try:
            connection.ensure_connection(max_retries=1, timeout=CONNECT_TIMEOUT)
            # kombu's SQL transport opens its database lazily; a channel makes it connect.
            _ = connection.default_channel
        finally:
            connection.release()
    except Exception as exc:  # noqa: BLE001 - every failure to connect is the verdict
        return Check(
            "broker",
            FAIL,
            f"cannot connect to the broker at {shown}: {scrub(redact(_first_line(exc)), url)}",
            "start the broker (e.g. redis-server) or fix ORCHESTRATE_BROKER_URL; workers and "
            "submitters must use the same URL",
            infrastructure=True,
        )
    return Check("broker", OK, f"connected to {shown}", infrastructure=True)


# ------------------------------------------------------------------------- result backend
def check_results(settings: Settings) -> Check:
    """Reach the Celery result backend, where every worker writes each task's outcome (a
    worker that cannot fails the task's bookkeeping even when the build went well)."""
    url = settings.result_backend
    shown = redact(url)
    scheme = url.split("://", 1)[0].lower()
    try:
        if scheme in ("redis", "rediss"):
            import redis

            client = redis.Redis.from_url(
                url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
            )
            try:
                client.ping()
            finally:
                client.close()
        elif scheme.startswith("db+"):
            from sqlalchemy import create_engine, text
            from sqlalchemy.pool import NullPool

            engine = create_engine(url[3:], poolclass=NullPool)
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
            finally:
                engine.dispose()
        else:
            return Check("results", WARN, f"{shown}: this kind of result backend is not checked",
                         infrastructure=True)
    except Exception as exc:  # noqa: BLE001 - every failure to connect is the verdict
        return Check(
            "results",
            FAIL,
            f"cannot reach the result backend at {shown}: {scrub(redact(_first_line(exc)), url)}",
            "start it or fix ORCHESTRATE_RESULT_BACKEND (usually the broker's Redis, another db)",
            infrastructure=True,
        )
    return Check("results", OK, f"connected to {shown}", infrastructure=True)


# -------------------------------------------------------------------------------- database
def check_database(settings: Settings) -> Check:
    """Connect, then compare the schema revision with the migrations' head."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    from orchestrator import db

    url = settings.database_url
    shown = redact(url)
    sqlite = settings.is_sqlite
    try:
        kwargs: dict[str, Any] = {"poolclass": NullPool}
        if not sqlite:
            kwargs["connect_args"] = {"connect_timeout": int(CONNECT_TIMEOUT)}
        engine = db.make_engine(url, **kwargs)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                from alembic.runtime.migration import MigrationContext

                current = MigrationContext.configure(connection).get_current_revision()
        finally:
            engine.dispose()
    except db.DatabaseURLError as exc:
        return Check("database", FAIL, str(exc), "fix ORCHESTRATE_DATABASE_URL", infrastructure=True)
    except SQLAlchemyError as exc:
        return Check(
            "database",
            FAIL,
            db.describe_error(url, exc),
            "check that the server runs and that ORCHESTRATE_DATABASE_URL names the right "
            "host, database, user and password",
            infrastructure=True,
        )
    head = db.head_revision()
    if current == head:
        return Check("database", OK, f"{shown} is at schema head {head}", infrastructure=True)
    if current is not None and not db._is_known_revision(current):
        return Check(
            "database",
            FAIL,
            f"{shown} is at schema revision {current}, which this orchestrate does not know "
            "(a newer version migrated it)",
            "upgrade orchestrate on this machine to the version the farm runs",
            infrastructure=True,
        )
    at = f"revision {current}" if current else "no schema (empty database)"
    if sqlite:
        return Check(
            "database",
            WARN,
            f"{shown} has {at}, behind head {head}; an embedded SQLite database is migrated on "
            "first use",
            "run `orchestrate db upgrade` to migrate it now",
            infrastructure=True,
        )
    return Check(
        "database",
        FAIL,
        f"{shown} has {at}, behind head {head}: workers and the CLI refuse to use it",
        "run `orchestrate db upgrade` (once, from any machine with these settings)",
        infrastructure=True,
    )


# ----------------------------------------------------------------------------------- store
def check_store(settings: Settings) -> Check:
    """Write, read back and delete a small probe object."""
    from orchestrator.store import ArtifactStore

    shown = redact(settings.artifact_store)
    probe = f"orchestrate doctor probe {uuid.uuid4().hex}\n".encode()
    step = "open the artifact store"
    try:
        store = ArtifactStore(settings.artifact_store)
        step = "write a probe object to"
        stored = store.put_bytes(probe)
        step = "read a probe object back from"
        if store.read_bytes(stored.uri, expected_sha256=stored.sha256) != probe:
            raise OSError("read back different bytes than were written")
        step = "delete a probe object from"
        store.delete(stored.uri)
    except Exception as exc:  # noqa: BLE001 - every failure is the verdict
        return Check(
            "store",
            FAIL,
            f"cannot {step} {shown}: "
            f"{scrub(redact(_first_line(exc)), settings.artifact_store)}",
            "check ORCHESTRATE_ARTIFACT_STORE: the folder (or bucket) must exist and be "
            "writable by this user, with credentials (AWS_* for s3://) set",
            infrastructure=True,
        )
    return Check("store", OK, f"wrote, read and deleted a probe object in {shown}", infrastructure=True)


# -------------------------------------------------------------------------------- backends
def check_backends() -> Check:
    """Which backends can build here; at least one must."""
    try:
        from compiler.backends import BACKENDS
    except Exception as exc:  # noqa: BLE001 - a broken install is the verdict
        return Check("backends", FAIL, f"the compiler does not import: {_first_line(exc)}",
                     "reinstall orchestrate and its dependencies (pip install -e .)")
    usable, missing = [], []
    for name, backend in BACKENDS.items():
        try:
            if backend.available():
                usable.append(f"{name} {backend.version() or 'unknown'}")
            else:
                missing.append(f"{name}: {backend.unavailable_reason()}")
        except Exception as exc:  # noqa: BLE001
            missing.append(f"{name}: {_first_line(exc)}")
    if not usable:
        return Check("backends", FAIL, "no backend can build here; " + "; ".join(missing),
                     "install onnxruntime (the portable backend)")
    detail = "available: " + ", ".join(usable)
    if missing:
        detail += "; unavailable: " + "; ".join(missing)
    return Check("backends", OK, detail)


# ------------------------------------------------------------------------------------- gpu
def check_gpu() -> Check:
    """The device identity this machine reports, and so its device class and queues."""
    try:
        from compiler.identity import local_identity

        identity = local_identity()
    except Exception as exc:  # noqa: BLE001
        return Check("gpu", FAIL, f"device detection failed: {_first_line(exc)}",
                     "check nvidia-smi (or /etc/nv_tegra_release on a Jetson)")
    from orchestrator.routing import worker_queues

    queues = ", ".join(worker_queues(identity.arch, identity.device_class))
    if identity.device_class is None:
        return Check(
            "gpu",
            WARN,
            f"no GPU found ({identity.arch}): a worker here serves CPU builds only ({queues})",
            "on a GPU node, check that nvidia-smi works here (in a container: the NVIDIA "
            "container runtime and a GPU request)",
        )
    name = identity.jetson_module or identity.gpu_name or "GPU"
    versions = ", ".join(
        f"{label} {getattr(identity, key)}"
        for label, key in (("driver", "driver_version"), ("CUDA", "cuda_version"),
                           ("TensorRT", "tensorrt_version"), ("L4T", "l4t_release"))
        if getattr(identity, key, None)
    )
    return Check(
        "gpu",
        OK,
        f"{name}, device class {identity.device_class}" + (f" ({versions})" if versions else "")
        + f"; serves {queues}",
    )


def _timed(func: Callable[[], Check]) -> Check:
    started = time.monotonic()
    check = func()
    return Check(**{**check.to_dict(), "seconds": round(time.monotonic() - started, 3)})


def run_checks(settings: Settings, *, machine: bool = True) -> list[Check]:
    """Every check, in the order an operator fixes things; ``machine=False`` skips the
    backends and GPU (a control-plane host that never builds)."""
    if any("sqlite" in url for url in (settings.database_url, settings.broker_url, settings.result_backend)):
        # As every farm command does: the embedded SQLite files live in the data directory.
        settings.ensure_home()
    checks: list[Callable[[], Check]] = [
        lambda: check_broker(settings),
        lambda: check_results(settings),
        lambda: check_database(settings),
        lambda: check_store(settings),
    ]
    if machine:
        checks += [check_backends, check_gpu]
    return [_timed(check) for check in checks]


def exit_code(checks: list[Check]) -> int:
    """3 when infrastructure failed, 1 when only this machine did, else 0."""
    if any(c.failed and c.infrastructure for c in checks):
        return 3
    return 1 if any(c.failed for c in checks) else 0
