"""Faults survived by a real prefork worker on the real Redis broker.

The process that compiles is SIGKILLed in the middle of a compile: Celery's main process sees
its pool child die, and because messages are acknowledged late and rejected on worker loss, the
broker delivers the job again; the next child claims the job the dead one left running and
builds it. The database then holds one artifact and shows two attempts.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select

from orchestrator import models as m
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
def settings(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    if not redis_reachable():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379 (start redis-server to run this)")
    with reserved_redis_db() as db:
        yield redis_settings(tmp_path_factory.mktemp("faults") / "home", db)


def _slow_model(path: Path) -> Path:
    """A deep MLP: a few seconds of lowering, conversion and engine build, time to kill it."""
    layers: list[torch.nn.Module] = []
    for _ in range(120):
        layers += [torch.nn.Linear(64, 64), torch.nn.GELU()]
    model = torch.nn.Sequential(*layers).eval()
    torch.export.save(torch.export.export(model, (torch.randn(2, 64),)), path)
    return path


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def test_worker_killed_mid_compile_is_delivered_again_and_completes_once(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    farm = Farm(settings)
    model = _slow_model(tmp_path / "deep.pt2")
    worker = WorkerProcess(settings_env(settings), pool="prefork", log_path=tmp_path / "worker.log")
    with worker:
        worker.start(settings)
        spec = services.resolve_spec({"validation": {"samples": 2}})
        (job,) = services.submit(farm, model, [Target("x86_64")], spec).jobs
        deadline = time.monotonic() + 120
        killed = None
        while time.monotonic() < deadline and killed is None:
            info = services.get_job(farm, job.id)
            if info.state == "running" and info.phase in ("lowering", "partitioning", "conversion", "build"):
                assert worker.process is not None
                for child in _children(worker.process.pid):
                    os.kill(child, signal.SIGKILL)
                    killed = child
            time.sleep(0.05)
        assert killed is not None, "the compile was never seen running: " + worker.log_text()
        done = services.wait(farm, job.id, timeout=240)
        assert done.state == "succeeded", (done, worker.log_text())
    assert done.attempts == 2
    with farm.session() as session:
        assert session.scalar(select(func.count()).select_from(m.Artifact)) == 1
        assert session.get(m.Job, job.id).artifact_id == done.artifact_id  # type: ignore[union-attr]
