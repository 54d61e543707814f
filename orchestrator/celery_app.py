"""The Celery application: all of its configuration is the one ``conf.update`` in :func:`make_app`.

Delivery guarantees the farm relies on:

* ``acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only after the task
  finished, so a worker killed mid-compile (OOM, power loss on a Jetson) gives the job back to
  the queue instead of losing it. Tasks are idempotent (they reload the job row) for that reason.
* ``worker_prefetch_multiplier=1``: a compile takes minutes; a worker must not hoard jobs that an
  idle worker could start.
* The broker's visibility timeout is above the hard time limit, or Redis would hand a job that
  is still compiling to a second worker.
* JSON only: a message is a job id, never a pickle.
"""

from __future__ import annotations

import functools
from typing import Any

from celery import Celery
from kombu import Queue

from orchestrator.broker import SQL_TRANSPORT, SUBMITTED_PRIORITY, redis_transport_options
from orchestrator.routing import base_queues
from orchestrator.settings import Settings, get_settings

COMPILE_TASK = "orchestrate.compile"

#: Seconds to wait for a broker or result backend before reporting it unreachable.
CONNECT_TIMEOUT = 3.0

#: How a publish (``submit``, ``retry``, a task's own retry) waits for a broker that is down:
#: five tries, 0.5, 1.5, 2.5 and 3 s apart (7.5 s; each try may also wait up to CONNECT_TIMEOUT
#: for a host that does not answer): a broker restart is ridden out, a person at a terminal is
#: not kept waiting for minutes.
PUBLISH_RETRY_POLICY: dict[str, float] = {"max_retries": 4, "interval_start": 0.5, "interval_step": 1.0, "interval_max": 3.0}
#: The reaper publishes from the heartbeat thread, which must not fall silent for long (a worker
#: silent for three beats is taken for dead): it tries for half a second.
QUICK_PUBLISH_RETRY_POLICY: dict[str, float] = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}

# Redelivery waits this long past the hard time limit, so the limit (not the broker) ends a stuck
# compile and the message only returns to the queue when its worker is really gone.
_VISIBILITY_MARGIN = 600.0


class FarmCelery(Celery):
    """A Celery app that knows the farm settings it was built from (tasks read them back)."""

    settings: Settings


def _broker_transport_options(settings: Settings) -> dict[str, Any]:
    scheme = settings.broker_url.split("://", 1)[0].lower()
    if scheme.startswith(("redis", "rediss", "sentinel")):
        return {
            "visibility_timeout": int(settings.hard_time_limit + _VISIBILITY_MARGIN),
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "socket_timeout": 30.0,
            "max_retries": 1,
            # lanes per priority: a job queued again after its worker was lost goes first
            **redis_transport_options(),
        }
    if scheme.startswith(("sqs",)):
        return {"visibility_timeout": int(settings.hard_time_limit + _VISIBILITY_MARGIN)}
    if scheme.startswith(("sqla", "sqlalchemy")):
        # kombu hands these to create_engine. SQLite's default 5 s lock wait is too short when a
        # worker polls the same file that several submitters write to.
        if "sqlite" in scheme or settings.broker_url.split("+", 1)[-1].startswith("sqlite"):
            return {"connect_args": {"timeout": 30}}
        return {"pool_pre_ping": True}
    return {}


def _is_sql_broker(settings: Settings) -> bool:
    return settings.broker_url.split("://", 1)[0].lower().startswith(("sqla", "sqlalchemy"))


def _broker_connection(settings: Settings) -> dict[str, Any]:
    """The broker URL and transport: a ``sqla+<database URL>`` broker runs on the farm's SQL
    transport with priority lanes (``orchestrator.broker``); kombu would pick its own from
    the URL's prefix, so the prefix goes and the transport is named instead."""
    if _is_sql_broker(settings):
        return {"broker_url": settings.broker_url.split("+", 1)[1], "broker_transport": SQL_TRANSPORT}
    return {"broker_url": settings.broker_url}


def make_app(settings: Settings | None = None, *, eager: bool = False) -> FarmCelery:
    """Build the farm's Celery app. ``eager`` runs tasks in the caller (tests, single process)."""
    settings = settings or get_settings()
    if settings.is_sqlite or settings.broker_url.startswith("sqla+sqlite"):
        settings.ensure_home()
    app = FarmCelery("orchestrate", set_as_current=False)
    app.settings = settings
    app.conf.update(
        **_broker_connection(settings),
        result_backend=settings.result_backend,
        broker_transport_options=_broker_transport_options(settings),
        broker_connection_timeout=CONNECT_TIMEOUT,
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy=dict(PUBLISH_RETRY_POLICY),
        redis_socket_connect_timeout=CONNECT_TIMEOUT,
        redis_socket_timeout=30.0,
        # messages carry a priority (orchestrator.broker): every message is sent with one
        task_default_priority=SUBMITTED_PRIORITY,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        event_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.soft_time_limit,
        task_time_limit=settings.hard_time_limit,
        task_queues=[Queue(name, routing_key=name) for name in base_queues()],
        # Device-class queues (compile.x86_64.sm90, ...) are open-ended, so they are created on
        # first use rather than listed here.
        task_create_missing_queues=True,
        task_default_queue=base_queues()[0],
        task_always_eager=eager,
        # Eager retries (a twin build still running, a transient error) re-run through
        # Task.apply only when exceptions are not propagated; failures land in the job row.
        task_eager_propagates=False,
        task_store_eager_result=eager,
        result_extended=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        # kombu's SQL transport has no fanout exchange, which remote control (revoke, ping)
        # needs; job state in the database is authoritative there instead.
        worker_enable_remote_control=not _is_sql_broker(settings),
        include=["workers.tasks"],
    )
    return app


@functools.lru_cache(maxsize=1)
def get_app() -> FarmCelery:
    """The process-wide app for the current settings. Tests call ``get_app.cache_clear()``."""
    return make_app(get_settings())
