"""The farm as an operator sees it: which workers are alive and busy, and how deep each queue is.

Read-only queries behind ``orchestrate workers``, ``orchestrate queues``, ``orchestrate
worker-alive`` and the workers' metrics. The database is the source of truth (every job row
names its queue, every worker row its queues and last heartbeat); the broker is asked for its
own depth only where that is one cheap call, because a depth that disagrees with the database
is what an operator wants to see (messages for jobs whose rows are gone, or the reverse).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from orchestrator import models as m
from orchestrator.broker import lanes
from orchestrator.routing import RoutingError, parse_queue
from orchestrator.services import Farm
from orchestrator.settings import Settings
from orchestrator.views import is_live

#: What ``orchestrate workers`` calls a worker: heartbeating, silent past the live window
#: (crashed, partitioned, or its database connection is down), or shut down cleanly.
LIVE, STALE, OFFLINE = "live", "stale", "offline"


@dataclass(frozen=True)
class CurrentJob:
    id: str
    queue: str
    phase: str | None
    started_at: str | None


@dataclass(frozen=True)
class WorkerStatus:
    name: str
    hostname: str
    arch: str
    device_class: str | None
    status: str  # live | stale | offline
    queues: list[str]
    identity: dict[str, Any]
    backends: dict[str, str]
    current_jobs: list[CurrentJob]
    last_heartbeat: str | None
    heartbeat_age_s: float | None
    started_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _status_of(row: m.Worker, now: datetime) -> str:
    if row.state != m.WorkerState.ONLINE:
        return OFFLINE
    return LIVE if is_live(row, now) else STALE


def worker_statuses(farm: Farm, *, include_offline: bool = False) -> list[WorkerStatus]:
    """Every registered worker that is live or stale (and offline ones if asked), by name."""
    now = m.utcnow()
    with farm.session() as session:
        rows = list(session.scalars(select(m.Worker).order_by(m.Worker.name)))
        running = session.execute(
            select(m.Job.id, m.Job.queue, m.Job.phase, m.Job.started_at, m.Job.worker_name)
            .where(m.Job.state == m.JobState.RUNNING)
            .order_by(m.Job.started_at)
        ).all()
    jobs_of: dict[str, list[CurrentJob]] = {}
    for job_id, queue, phase, started_at, worker_name in running:
        jobs_of.setdefault(worker_name or "", []).append(
            CurrentJob(id=job_id, queue=queue, phase=phase, started_at=_iso(started_at))
        )
    statuses = []
    for row in rows:
        status = _status_of(row, now)
        if status == OFFLINE and not include_offline:
            continue
        caps = dict(row.capabilities or {})
        statuses.append(
            WorkerStatus(
                name=row.name,
                hostname=row.hostname,
                arch=row.arch,
                device_class=row.device_class,
                status=status,
                queues=list(row.queues or []),
                identity=dict(caps.get("identity") or {}),
                backends=dict(caps.get("backends") or {}),
                current_jobs=jobs_of.get(row.name, []),
                last_heartbeat=_iso(row.last_heartbeat),
                heartbeat_age_s=round((now - row.last_heartbeat).total_seconds(), 1),
                started_at=_iso(row.started_at),
            )
        )
    return statuses


def live_worker_on_host(farm: Farm, hostname: str | None = None, name: str | None = None) -> WorkerStatus | None:
    """A live worker named ``name``, or else any live worker on ``hostname`` (default: this
    host); None when there is none. A container's host name is its pod's, so a liveness probe
    inside the pod finds the worker it belongs to."""
    host = hostname or socket.gethostname()
    for worker in worker_statuses(farm):
        if worker.status != LIVE:
            continue
        if name is not None and worker.name == name:
            return worker
        if name is None and worker.hostname == host:
            return worker
    return None


@dataclass(frozen=True)
class QueueStatus:
    queue: str
    target: str
    queued: int
    running: int
    broker_depth: int | None
    live_workers: list[str] = field(default_factory=list)

    @property
    def unserved(self) -> bool:
        """Jobs wait here and no live worker serves the queue: they will wait forever."""
        return self.queued > 0 and not self.live_workers

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["unserved"] = self.unserved
        return data


def _target_label(queue: str) -> str:
    try:
        return parse_queue(queue).label
    except RoutingError:
        return queue


def job_counts(farm: Farm) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """(jobs per state, jobs per (queue, state) for queued and running jobs) from the database."""
    with farm.session() as session:
        by_state = session.execute(select(m.Job.state, func.count()).group_by(m.Job.state)).all()
        by_queue = session.execute(
            select(m.Job.queue, m.Job.state, func.count())
            .where(m.Job.state.in_((m.JobState.QUEUED, m.JobState.RUNNING)))
            .group_by(m.Job.queue, m.Job.state)
        ).all()
    states = {state.value: 0 for state in m.JobState}
    states.update({state.value: int(count) for state, count in by_state})
    queues = {(queue, state.value): int(count) for queue, state, count in by_queue}
    return states, queues


def queue_statuses(farm: Farm, *, broker: bool = True) -> list[QueueStatus]:
    """Every queue that has queued or running jobs or a live worker, by name."""
    _, counts = job_counts(farm)
    workers = [w for w in worker_statuses(farm) if w.status == LIVE]
    names = {queue for queue, _ in counts} | {q for w in workers for q in w.queues}
    depths = broker_depths(farm.settings, sorted(names)) if broker else {}
    return [
        QueueStatus(
            queue=name,
            target=_target_label(name),
            queued=counts.get((name, m.JobState.QUEUED.value), 0),
            running=counts.get((name, m.JobState.RUNNING.value), 0),
            broker_depth=depths.get(name),
            live_workers=sorted(w.name for w in workers if name in w.queues),
        )
        for name in sorted(names)
    ]


def broker_depths(settings: Settings, queues: Sequence[str], timeout: float = 3.0) -> dict[str, int]:
    """Messages waiting in each queue, for a Redis broker (one LLEN per lane); empty for other
    brokers or when the broker does not answer: the database's count is the one that matters."""
    scheme = settings.broker_url.split("://", 1)[0].lower()
    if scheme not in ("redis", "rediss") or not queues:
        return {}
    import redis

    try:
        client = redis.Redis.from_url(
            settings.broker_url, socket_connect_timeout=timeout, socket_timeout=timeout
        )
        try:
            # a queue's messages are spread over its priority lanes (orchestrator.broker)
            return {queue: sum(int(client.llen(name)) for name in lanes(queue)) for queue in queues}
        finally:
            client.close()
    except redis.RedisError:
        return {}
