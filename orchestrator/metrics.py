"""Prometheus metrics of a worker, served on ``ORCHESTRATE_METRICS_PORT`` by ``orchestrate worker``.

Every number comes from the database when Prometheus scrapes, not from counters inside the
compile: with the prefork pool a compile runs in a child process whose counters the serving
(parent) process would never see, and the job rows already hold what an operator asks for.

* ``orchestrate_jobs{state}``: jobs in each state, farm-wide (a gauge).
* ``orchestrate_queue_depth{queue}``: queued jobs per queue, farm-wide (a gauge; this worker's
  queues are always present, as 0 when empty).
* ``orchestrate_worker_running_jobs``: jobs this worker is compiling now.
* ``orchestrate_compile_phase_seconds{phase}``: a histogram of the seconds each phase of this
  worker's finished jobs took (fetch, lower, partition, convert, build, save, upload, validate).
* ``orchestrate_engine_build_failures_total{kind}``: this worker's failed jobs by error kind.
* ``orchestrate_worker_jobs_finished_total{state}``: this worker's finished jobs by outcome.

The histogram and counters grow from the jobs that finished since the worker started: each scrape
reads the rows finished after the last one it read (a job is counted once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from orchestrator import models as m
from orchestrator.fleet import job_counts
from orchestrator.services import Farm, UnreachableError

log = logging.getLogger(__name__)

#: Phases last from milliseconds (a cached fetch) to the half-hour soft limit (a TensorRT build).
PHASE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

_FINAL = (m.JobState.SUCCEEDED, m.JobState.FAILED, m.JobState.CANCELLED)
# Rows are re-read this far back, so a job committed with a slightly earlier finished_at than
# one already seen (clocks of two processes) is not missed; ids already counted are skipped.
_OVERLAP = timedelta(seconds=30)


class WorkerMetrics(Collector):
    """The collector of one worker; register it on a registry and serve that registry."""

    def __init__(
        self,
        farm: Farm,
        worker_name: str,
        queues: Sequence[str] = (),
        since: datetime | None = None,
    ) -> None:
        self.farm = farm
        self.worker_name = worker_name
        #: always reported, as 0 when empty, so a dashboard's series for them never vanish
        self.queues = list(queues)
        self._since = since or m.utcnow()
        self._seen: dict[str, datetime] = {}
        self._lock = threading.Lock()
        self.phase_seconds = Histogram(
            "orchestrate_compile_phase_seconds",
            "Seconds each compile phase took, over this worker's finished jobs.",
            ["phase"],
            buckets=PHASE_BUCKETS,
            registry=None,
        )
        self.build_failures = Counter(
            "orchestrate_engine_build_failures",
            "This worker's failed jobs by error kind.",
            ["kind"],
            registry=None,
        )
        self.finished = Counter(
            "orchestrate_worker_jobs_finished",
            "This worker's finished jobs by final state.",
            ["state"],
            registry=None,
        )

    def _read_finished(self) -> None:
        with self.farm.session() as session:
            rows = session.execute(
                select(m.Job.id, m.Job.state, m.Job.phase_timings, m.Job.error_kind, m.Job.finished_at)
                .where(
                    m.Job.worker_name == self.worker_name,
                    m.Job.state.in_(_FINAL),
                    m.Job.finished_at >= self._since - _OVERLAP,
                )
                .order_by(m.Job.finished_at)
            ).all()
        for job_id, state, timings, error_kind, finished_at in rows:
            if job_id in self._seen or finished_at is None:
                continue
            self._seen[job_id] = finished_at
            self.finished.labels(state=state.value).inc()
            for phase, seconds in (timings or {}).items():
                self.phase_seconds.labels(phase=phase).observe(float(seconds))
            if state == m.JobState.FAILED:
                self.build_failures.labels(kind=error_kind or "unknown").inc()
            self._since = max(self._since, finished_at)
        horizon = self._since - 2 * _OVERLAP
        self._seen = {k: v for k, v in self._seen.items() if v >= horizon}

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "orchestrate_metrics_database_up", "1 when this scrape could read the database."
        )
        with self._lock:
            try:
                self._read_finished()
                states, per_queue = job_counts(self.farm)
                with self.farm.session() as session:
                    running = session.scalar(
                        select(func.count()).select_from(m.Job).where(
                            m.Job.worker_name == self.worker_name,
                            m.Job.state == m.JobState.RUNNING,
                        )
                    )
            except UnreachableError as exc:
                log.warning("metrics: cannot read the database: %s", exc)
                up.add_metric([], 0)
                yield up
                return
            up.add_metric([], 1)
            yield up
            jobs = GaugeMetricFamily("orchestrate_jobs", "Jobs in each state, farm-wide.", labels=["state"])
            for state, count in sorted(states.items()):
                jobs.add_metric([state], count)
            yield jobs
            depth = GaugeMetricFamily(
                "orchestrate_queue_depth", "Queued jobs per queue, farm-wide.", labels=["queue"]
            )
            queued = dict.fromkeys(self.queues, 0)
            queued.update(
                {q: n for (q, state), n in per_queue.items() if state == m.JobState.QUEUED.value}
            )
            for queue, count in sorted(queued.items()):
                depth.add_metric([queue], count)
            yield depth
            busy = GaugeMetricFamily(
                "orchestrate_worker_running_jobs", "Jobs this worker is compiling now."
            )
            busy.add_metric([], int(running or 0))
            yield busy
            yield from self.phase_seconds.collect()
            yield from self.build_failures.collect()
            yield from self.finished.collect()


def serve(
    farm: Farm, worker_name: str, port: int, queues: Sequence[str] = (), addr: str = "0.0.0.0"
) -> Any:
    """Start the HTTP endpoint (``/metrics``) in a daemon thread; returns the server."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry()
    registry.register(WorkerMetrics(farm, worker_name, queues))
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server
