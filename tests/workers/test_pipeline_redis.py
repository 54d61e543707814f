"""Real `orchestrate worker` processes on the real Redis broker (127.0.0.1:6379).

Each run reserves its own Redis database number, so parallel runs never share a queue.
"""

import pytest

from orchestrator import services
from orchestrator.routing import Target
from orchestrator.services import Farm
from orchestrator.testing import (
    WorkerProcess,
    redis_reachable,
    redis_settings,
    reserved_redis_db,
    settings_env,
)

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    if not redis_reachable():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379 (start redis-server to run this)")
    with reserved_redis_db() as db:
        yield redis_settings(tmp_path_factory.mktemp("redis-farm") / "home", db)


def _submit(farm, model, arch):
    spec = services.resolve_spec({"validation": {"samples": 2}})
    return services.submit(farm, model, [Target(arch)], spec)


def test_job_for_aarch64_is_not_taken_by_x86_worker_and_runs_once_an_aarch64_worker_starts(
    settings, tiny_model, tmp_path
):
    farm = Farm(settings)
    env = settings_env(settings)
    x86 = WorkerProcess(env, arch="x86_64", log_path=tmp_path / "x86.log")
    arm = WorkerProcess(env, arch="aarch64", log_path=tmp_path / "arm.log")
    with x86:
        x86.start(settings)
        (x86_job,) = _submit(farm, tiny_model, "x86_64").jobs
        done = services.wait(farm, x86_job.id, timeout=180)
        assert done.state == "succeeded", (done, x86.log_text())
        assert done.worker == x86.name and done.artifact_id

        submission = _submit(farm, tiny_model, "aarch64")
        (arm_job,) = submission.jobs
        assert "no live worker serves compile.aarch64" in submission.warnings[0]
        with pytest.raises(services.WaitTimeoutError):
            services.wait(farm, arm_job.id, timeout=4)
        assert services.get_job(farm, arm_job.id).state == "queued"

        with arm:
            arm.start(settings)
            done = services.wait(farm, arm_job.id, timeout=180)
            assert done.state == "succeeded", (done, arm.log_text())
            assert done.worker == arm.name
            assert done.artifact_id != x86_job.artifact_id
        workers = {w.name: w for w in services.list_workers(farm)}
        assert workers[x86.name].live and workers[x86.name].queues == ["compile.x86_64"]
        assert workers[arm.name].state == "offline" and not workers[arm.name].live
