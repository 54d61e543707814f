"""`orchestrate workers`, `queues` and `worker-alive` on hand-made worker and job rows."""

import json
import socket
from datetime import timedelta

from click.testing import CliRunner
from sqlalchemy import update

from orchestrator import models as m
from orchestrator.cli import main
from orchestrator.cli._common import CliState
from orchestrator.fleet import queue_statuses, worker_statuses

IDENTITY = {
    "arch": "x86_64", "gpu_name": "NVIDIA H200", "compute_capability": "9.0",
    "driver_version": "570.86", "cuda_version": "12.8", "device_class": "sm90",
}


def run(farm, *args):
    return CliRunner().invoke(main, list(args), obj=CliState(farm=farm))


def _add_worker(farm, name, *, age_s=0.0, queues=("compile.x86_64", "compile.x86_64.sm90"),
                state=m.WorkerState.ONLINE, hostname="gpu-node-1"):
    now = m.utcnow()
    with farm.session() as session:
        session.add(m.Worker(
            name=name, hostname=hostname, arch="x86_64", device_class="sm90", queues=list(queues),
            capabilities={"identity": IDENTITY, "backends": {"onnxruntime": "1.20"}},
            started_at=now - timedelta(seconds=age_s + 60),
            last_heartbeat=now - timedelta(seconds=age_s), state=state,
        ))


def _submit(farm, model, *args):
    result = run(farm, "submit", str(model), *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["jobs"][0]["id"]


def test_workers_shows_live_and_stale_with_identity_current_job_and_heartbeat_age(farm, tiny_model):
    _add_worker(farm, "live@gpu-node-1")
    _add_worker(farm, "stale@gpu-node-2", age_s=600, hostname="gpu-node-2")
    _add_worker(farm, "gone@gpu-node-3", state=m.WorkerState.OFFLINE)
    job_id = _submit(farm, tiny_model, "--arch", "x86_64")
    with farm.session() as session:
        session.execute(update(m.Job).where(m.Job.id == job_id).values(
            state=m.JobState.RUNNING, worker_name="live@gpu-node-1", phase="build",
            started_at=m.utcnow()))

    rows = {w["name"]: w for w in json.loads(run(farm, "workers", "--json").stdout)}
    assert set(rows) == {"live@gpu-node-1", "stale@gpu-node-2"}
    live, stale = rows["live@gpu-node-1"], rows["stale@gpu-node-2"]
    assert live["status"] == "live" and stale["status"] == "stale"
    assert live["identity"]["gpu_name"] == "NVIDIA H200" and live["identity"]["device_class"] == "sm90"
    assert live["queues"] == ["compile.x86_64", "compile.x86_64.sm90"]
    assert [(j["id"], j["phase"]) for j in live["current_jobs"]] == [(job_id, "build")]
    assert stale["current_jobs"] == [] and stale["heartbeat_age_s"] >= 600
    assert live["heartbeat_age_s"] < 30

    everyone = json.loads(run(farm, "workers", "--all", "--json").stdout)
    assert {w["status"] for w in everyone} == {"live", "stale", "offline"}

    table = run(farm, "workers").stdout
    assert "NVIDIA H200 sm90" in table and "driver 570.86" in table
    assert f"{job_id[:12]} (build)" in table and "stale" in table and "min ago" in table


def test_queues_counts_jobs_per_queue_and_names_targets_nobody_serves(farm, tiny_model):
    _add_worker(farm, "live@gpu-node-1")
    _submit(farm, tiny_model, "--arch", "x86_64")
    _submit(farm, tiny_model, "--arch", "aarch64")
    _submit(farm, tiny_model, "--arch", "aarch64", "--precision", "int8")

    data = json.loads(run(farm, "queues", "--json").stdout)
    queues = {q["queue"]: q for q in data["queues"]}
    assert queues["compile.aarch64"]["queued"] == 2 and queues["compile.aarch64"]["unserved"]
    assert queues["compile.x86_64"]["queued"] == 1 and not queues["compile.x86_64"]["unserved"]
    assert queues["compile.x86_64"]["live_workers"] == ["live@gpu-node-1"]
    assert queues["compile.x86_64.sm90"]["queued"] == 0  # served, empty: still listed
    assert data["unserved_targets"] == ["aarch64"]

    result = run(farm, "queues")
    assert result.exit_code == 0
    assert "compile.aarch64" in result.stdout
    assert "no live worker serves it" in result.stderr and "aarch64 machine" in result.stderr


def test_queue_depth_comes_from_the_broker_on_redis(tmp_path, tiny_model):
    import pytest

    from orchestrator.services import Farm
    from orchestrator.testing import redis_reachable, redis_settings, reserved_redis_db

    if not redis_reachable():
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    with reserved_redis_db() as db:
        farm = Farm(redis_settings(tmp_path / "home", db))
        _submit(farm, tiny_model, "--arch", "aarch64")
        (queue,) = queue_statuses(farm)
        assert (queue.queue, queue.queued, queue.broker_depth) == ("compile.aarch64", 1, 1)


def test_worker_alive_exits_0_only_for_a_live_worker_on_this_host(farm):
    assert run(farm, "worker-alive").exit_code == 1
    _add_worker(farm, "stale@here", age_s=600, hostname=socket.gethostname())
    result = run(farm, "worker-alive")
    assert result.exit_code == 1 and "stale" in result.stderr
    _add_worker(farm, "live@here", hostname=socket.gethostname())
    result = run(farm, "worker-alive")
    assert result.exit_code == 0 and "live@here live" in result.stdout
    assert run(farm, "worker-alive", "--name", "stale@here").exit_code == 1
    assert worker_statuses(farm)[0].name == "live@here"
