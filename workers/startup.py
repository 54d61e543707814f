"""Worker start-up: detect capabilities, register and heartbeat in the database, run Celery.

The worker subscribes only to the queues of targets it can build (``compile.<arch>`` and, with a
GPU, ``compile.<arch>.<device-class>``). Its row in the ``workers`` table is what
``orchestrate workers`` shows and what ``orchestrate submit`` checks before warning that nobody
serves a target; a heartbeat thread keeps ``last_heartbeat`` fresh and the row is marked offline
on a clean shutdown.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from celery.signals import worker_process_init
from sqlalchemy import update

from orchestrator import models as m
from orchestrator.routing import RoutingError, parse_queue
from orchestrator.services import Farm, InvalidRequestError, UnreachableError
from orchestrator.settings import redact, scrub
from workers.capabilities import Capabilities, detect

log = logging.getLogger(__name__)

POOLS = ("prefork", "solo", "threads")


def avoid_cuda_in_the_parent() -> None:
    """Make ``torch.cuda.is_available()`` ask NVML, so that a call in this process (a backend's
    availability check, say) does not initialize CUDA before the pool forks: measured on the
    H200 with torch 2.11, a plain ``is_available()`` in the parent already makes the forked
    child's first CUDA call fail. An explicit setting of the variable is kept."""
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")


def check_fork_safe(pool: str) -> None:
    """Refuse a prefork pool when CUDA is already initialized in this (the parent) process.

    Forked children inherit a CUDA state they cannot use, so every GPU compile (and every job
    that touches torch.cuda) would fail with "Cannot re-initialize CUDA in forked subprocess".
    Detection never initializes CUDA; this catches anything else that did before the fork.
    """
    torch = sys.modules.get("torch")
    if pool == "prefork" and torch is not None and torch.cuda.is_initialized():
        raise InvalidRequestError(
            "CUDA was initialized in the worker process before its prefork pool started, so "
            "forked compiles could not use the GPU; find what initialized it, or run the "
            "worker with --pool solo or --pool threads"
        )


@dataclass(frozen=True)
class WorkerPlan:
    name: str
    capabilities: Capabilities
    queues: list[str]
    concurrency: int
    pool: str


def default_worker_name(caps: Capabilities) -> str:
    """Unique per process, readable per machine: ``x86_64-12345@build-01``."""
    return f"{caps.arch}-{os.getpid()}@{socket.gethostname()}"


def qualified_worker_name(name: str) -> str:
    """Celery names nodes ``name@host`` (and prefixes ``celery@`` otherwise); keep ours whole."""
    return name if "@" in name else f"{name}@{socket.gethostname()}"


def plan_worker(
    *,
    arch: str | None = "auto",
    device_class: str | None = "auto",
    queues: Sequence[str] = (),
    concurrency: int = 1,
    pool: str | None = None,
    name: str | None = None,
) -> WorkerPlan:
    """Resolve what this worker will serve; raises InvalidRequestError for bad options."""
    if concurrency < 1:
        raise InvalidRequestError("--concurrency must be at least 1")
    avoid_cuda_in_the_parent()
    try:
        caps = detect(arch, device_class)
        selected = list(dict.fromkeys(queues)) if queues else caps.queues
        for queue in selected:
            served = parse_queue(queue)
            if served.arch != caps.arch:
                raise InvalidRequestError(
                    f"queue {queue} is for {served.arch} but this worker is {caps.arch}: an "
                    f"engine built here would not run there (use --arch {served.arch} only to "
                    "simulate that machine in tests)"
                )
    except RoutingError as exc:
        raise InvalidRequestError(str(exc)) from None
    resolved_pool = pool or "prefork"
    if resolved_pool not in POOLS:
        raise InvalidRequestError(f"unknown pool {pool!r}: use one of {', '.join(POOLS)}")
    return WorkerPlan(
        name=qualified_worker_name(name) if name else default_worker_name(caps),
        capabilities=caps,
        queues=selected,
        concurrency=concurrency,
        pool=resolved_pool,
    )


def register(farm: Farm, plan: WorkerPlan) -> None:
    caps = plan.capabilities
    now = m.utcnow()
    with farm.session() as session:
        row = session.get(m.Worker, plan.name)
        if row is None:
            row = m.Worker(name=plan.name)
            session.add(row)
        row.hostname = socket.gethostname()
        row.arch = caps.arch
        row.device_class = caps.device_class
        row.queues = list(plan.queues)
        row.capabilities = {
            **caps.to_dict(),
            "concurrency": plan.concurrency,
            "pool": plan.pool,
            # others judge this worker's liveness by its own interval (views.live_window)
            "heartbeat_interval": farm.settings.heartbeat_interval,
        }
        row.started_at = now
        row.last_heartbeat = now
        row.state = m.WorkerState.ONLINE


def mark_offline(farm: Farm, name: str) -> None:
    with farm.session() as session:
        session.execute(
            update(m.Worker).where(m.Worker.name == name).values(state=m.WorkerState.OFFLINE)
        )


#: what brokers answer to a wrong password or user (Redis 6+: WRONGPASS, older: NOAUTH/ERR)
_AUTH_REFUSALS = ("wrongpass", "noauth", "invalid username-password", "invalid password", "authentication")


def check_broker_credentials(farm: Farm) -> None:
    """Refuse to start when the broker rejects our credentials: retrying would never help, and a
    worker that heartbeats without consuming makes submitters believe its queues are served.
    An unreachable broker is left to Celery, which retries until it is back."""
    app = farm.app
    if app.conf.task_always_eager:
        return
    connection = app.connection_for_read()
    try:
        connection.ensure_connection(max_retries=0, interval_start=0, interval_step=0, timeout=5)
    except Exception as exc:  # kombu raises many types; only a refusal of the password matters
        chain: list[BaseException] = []
        current: BaseException | None = exc
        while current is not None and len(chain) < 10:
            chain.append(current)
            current = current.__cause__ or current.__context__
        refusal = next(
            (
                e for e in chain
                if "authentication" in type(e).__name__.lower()
                or any(word in str(e).lower() for word in _AUTH_REFUSALS)
            ),
            None,
        )
        untrusted = next((e for e in chain if "certificate verify failed" in str(e).lower()), None)
        if untrusted is not None:
            raise UnreachableError(
                f"the broker at {redact(farm.settings.broker_url)} presented a TLS certificate this "
                f"worker does not trust ({scrub(str(untrusted), farm.settings.broker_url)}); name the CA "
                "in ORCHESTRATE_BROKER_URL (rediss://...?ssl_cert_reqs=required&ssl_ca_certs=/path/ca.pem)"
            ) from None
        if refusal is not None:
            raise UnreachableError(
                f"the broker at {redact(farm.settings.broker_url)} refused this worker's credentials "
                f"({scrub(str(refusal), farm.settings.broker_url)}); fix the user or password in "
                "ORCHESTRATE_BROKER_URL"
            ) from None
        log.warning("the broker at %s is not reachable yet (%s); the worker will keep trying",
                    redact(farm.settings.broker_url), scrub(str(exc), farm.settings.broker_url))
    finally:
        connection.release()


def remove_dead_scratch(**_: object) -> None:
    """Remove the scratch folders (``/tmp/orchestrate-job-*``, ``orchestrate-aoti-*``, ...) that
    killed processes left behind; never one a live process holds (``compiler.scratch``). Runs
    when the worker starts, and in every new pool process: one replaces a pool process that the
    hard time limit killed, whose job folder is then removed."""
    import compiler

    try:
        removed = compiler.remove_dead_scratch()
    except OSError as exc:  # a sweep that fails must not stop the worker
        log.warning("could not sweep the scratch folders of dead processes: %s", exc)
        return
    if removed:
        log.warning(
            "removed %d scratch folder(s) that processes which no longer run left behind: %s",
            len(removed), ", ".join(str(path) for path in removed[:5]) + (" ..." if len(removed) > 5 else ""),
        )


class Heartbeat(threading.Thread):
    """Refreshes the worker's ``last_heartbeat`` until stopped; survives database outages."""

    def __init__(self, farm: Farm, name: str, interval: float | None = None) -> None:
        super().__init__(name=f"heartbeat-{name}", daemon=True)
        self.farm = farm
        self.worker_name = name
        self.interval = interval or farm.settings.heartbeat_interval
        self._stop_event = threading.Event()

    def beat(self) -> None:
        with self.farm.session() as session:
            session.execute(
                update(m.Worker)
                .where(m.Worker.name == self.worker_name)
                .values(last_heartbeat=m.utcnow(), state=m.WorkerState.ONLINE)
            )

    #: every this many beats the worker also reaps jobs of workers that stopped heartbeating
    REAP_EVERY = 6

    def run(self) -> None:
        from orchestrator.services import reap_stale

        beats = 0
        # A worker that could not reach the database cannot tell a dead peer from one that
        # lost the database too: it reaps again only after a whole live window of good beats.
        reap_after = 0.0
        while not self._stop_event.wait(self.interval):
            beats += 1
            try:
                self.beat()
                if beats % self.REAP_EVERY == 0 and time.monotonic() >= reap_after:
                    for job_id, outcome in reap_stale(self.farm):
                        log.warning("job %s: its worker stopped heartbeating; now %s", job_id, outcome)
            except UnreachableError as exc:
                # The worker keeps compiling; it shows as gone until the database is back.
                log.warning("heartbeat failed: %s", exc)
                reap_after = time.monotonic() + 3 * self.interval

    def stop(self) -> None:
        self._stop_event.set()


def run_worker(
    farm: Farm,
    plan: WorkerPlan,
    *,
    loglevel: str = "INFO",
    quiet: bool = False,
    log_format: str | None = None,
) -> int:
    """Register, heartbeat and run a Celery worker in this process until it is told to stop.

    Serves Prometheus metrics when ``ORCHESTRATE_METRICS_PORT`` is set, and logs every line of
    a job with its job id, as text or JSON (``log_format``, default the setting)."""
    import workers.tasks  # noqa: F401  (registers the compile task on the app)
    from orchestrator import logs

    app = farm.app
    check_fork_safe(plan.pool)
    logs.install(log_format or farm.settings.log_format)
    check_broker_credentials(farm)
    remove_dead_scratch()
    worker_process_init.connect(remove_dead_scratch, weak=False)
    register(farm, plan)
    heartbeat = Heartbeat(farm, plan.name)
    heartbeat.start()
    metrics_server = None
    if farm.settings.metrics_port is not None:
        from orchestrator.metrics import serve

        metrics_server = serve(farm, plan.name, farm.settings.metrics_port, plan.queues)
    if not quiet:
        caps = plan.capabilities
        gpu = f"{caps.gpu.name} (sm {caps.gpu.compute_capability})" if caps.gpu else "none"
        backends = ", ".join(f"{k} {v}" for k, v in sorted(caps.backends.items())) or "none"
        found = caps.identity
        versions = ", ".join(
            f"{label} {found[key]}"
            for label, key in (("driver", "driver_version"), ("CUDA", "cuda_version"),
                               ("torch", "torch_version"), ("TensorRT", "tensorrt_version"),
                               ("L4T", "l4t_release"))
            if found.get(key)
        )
        print(
            f"worker {plan.name}\n"
            f"  arch {caps.arch}, device class {caps.device_class or '-'}, GPU {gpu}\n"
            f"  versions: {versions or '-'}\n"
            f"  backends: {backends}\n"
            f"  queues: {', '.join(plan.queues)}\n"
            f"  broker: {redact(farm.settings.broker_url)}\n"
            f"  database: {redact(farm.settings.database_url)}\n"
            f"  pool: {plan.pool} x {plan.concurrency}"
            + (f"\n  metrics: http://0.0.0.0:{farm.settings.metrics_port}/metrics"
               if metrics_server is not None else ""),
            flush=True,
        )
    try:
        worker = app.Worker(
            hostname=plan.name,
            queues=list(plan.queues),
            concurrency=plan.concurrency,
            pool_cls=plan.pool,
            loglevel=loglevel,
            quiet=True,
            # Mingle and gossip broadcast to every worker; the SQL broker cannot, and the farm
            # keeps worker state in its own table anyway.
            without_mingle=True,
            without_gossip=True,
            without_heartbeat=True,
        )
        worker.start()
        return int(worker.exitcode or 0)
    finally:
        heartbeat.stop()
        if metrics_server is not None:
            metrics_server.shutdown()
        try:
            mark_offline(farm, plan.name)
        except UnreachableError as exc:
            log.warning("could not mark worker %s offline: %s", plan.name, exc)
