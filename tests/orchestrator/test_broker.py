"""Message priorities: a job the reaper queues again is taken before the jobs submitted since,
on the embedded SQL broker and on Redis (the machine's shared server, a database of its own)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from kombu.transport import redis as kombu_redis

from orchestrator import broker, services
from orchestrator import jobs as lifecycle
from orchestrator import models as m
from orchestrator.routing import Target
from orchestrator.services import Farm
from orchestrator.testing import (
    embedded_settings,
    redis_reachable,
    redis_settings,
    reserved_redis_db,
)


def test_lanes_are_named_as_kombu_redis_names_them() -> None:
    options = broker.redis_transport_options()
    channel = SimpleNamespace(priority_steps=options["priority_steps"], sep=options["sep"])
    channel.priority = lambda n: kombu_redis.Channel.priority(channel, n)  # type: ignore[attr-defined]
    for priority in range(10):
        assert broker.lane("compile.x86_64", priority) == kombu_redis.Channel._q_for_pri(channel, "compile.x86_64", priority)
    assert broker.lanes("q") == ["q", "q\x06\x165"]


@pytest.fixture(params=["embedded", "redis"])
def farm_on(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Farm]:
    if request.param == "embedded":
        yield Farm(embedded_settings(tmp_path / "home"))
        return
    if not redis_reachable():
        pytest.skip("needs the Redis server on 127.0.0.1:6379")
    with reserved_redis_db() as db:
        yield Farm(redis_settings(tmp_path / "home", db))


def _taken_in_order(farm: Farm, queue: str) -> list[tuple[str, str]]:
    """(job id, message id) of every message in ``queue``, in the order a worker takes them."""
    taken = []
    with farm.app.connection_for_read() as connection:
        channel = connection.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            taken.append((message.payload[0][0], message.headers["id"]))
    return taken


def test_a_requeued_job_is_taken_before_the_jobs_submitted_since(farm_on: Farm, tiny_model: Path) -> None:
    farm = farm_on

    def submit(samples: int) -> str:
        spec = services.resolve_spec({"validation": {"samples": samples}})
        (job,) = services.submit(farm, tiny_model, [Target("x86_64")], spec).jobs
        return job.id

    lost = submit(1)
    # a worker took it and died (no heartbeat for minutes); its message went with it
    assert _taken_in_order(farm, "compile.x86_64") == [(lost, _task_id(farm, lost))]
    with farm.session() as session:
        assert lifecycle.claim(session, lost, "ghost@gone", m.utcnow() - timedelta(minutes=5))
    later = [submit(2), submit(3)]
    assert services.reap_stale(farm) == [(lost, "queued")]
    order = _taken_in_order(farm, "compile.x86_64")
    assert order == [(lost, _task_id(farm, lost)), *((job, _task_id(farm, job)) for job in later)]


def _task_id(farm: Farm, job_id: str) -> str:
    with farm.session() as session:
        job = session.get(m.Job, job_id)
        assert job is not None and job.celery_task_id is not None
        return job.celery_task_id
