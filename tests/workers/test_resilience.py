"""What the worker does when the database goes away, a job is cancelled mid-build, or Celery's
hard time limit kills a compile (the fault tests prove the same with real servers)."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from orchestrator import jobs as lifecycle
from orchestrator import models as m
from orchestrator import services
from orchestrator.cli.exit_codes import EXIT_JOB_FAILED, EXIT_USAGE, FARM_KINDS, exit_code_of
from orchestrator.routing import Target
from orchestrator.services import Farm, UnreachableError
from orchestrator.settings import get_settings
from orchestrator.views import WorkerInfo
from workers import tasks


def _queued(farm, model, samples=2):  # type: ignore[no-untyped-def]
    spec = services.resolve_spec({"validation": {"samples": samples}})
    (job,) = services.submit(farm, model, [Target("x86_64")], spec).jobs
    return job


def test_a_write_is_retried_while_the_database_is_unreachable_then_given_up(monkeypatch):
    monkeypatch.setattr(tasks, "backoff_seconds", lambda retries: 0.01)
    outcomes = iter([UnreachableError("down"), UnreachableError("down"), "written"])

    def write():  # type: ignore[no-untyped-def]
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert tasks.with_backoff(write, "test", patience=5) == "written"

    def never():  # type: ignore[no-untyped-def]
        raise UnreachableError("still down")

    with pytest.raises(UnreachableError, match="still down"):
        tasks.with_backoff(never, "test", patience=0.05)


def test_a_phase_that_cannot_be_recorded_does_not_stop_the_build(farm, tiny_model, monkeypatch):
    job = _queued(farm, tiny_model)

    def unreachable(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise UnreachableError("the database is restarting")

    monkeypatch.setattr(lifecycle, "progress", unreachable)
    assert tasks.run_job(farm, job.id, "w1")["outcome"] == "succeeded"
    assert services.get_job(farm, job.id).state == "succeeded"


def test_a_build_cancelled_midway_stops_at_its_next_phase(farm, tiny_model):
    job = _queued(farm, tiny_model)
    seen: list[str] = []

    def on_phase(phase: str) -> None:
        seen.append(phase)
        if phase == "frontend":
            services.cancel(farm, job.id)

    outcome = tasks.run_job(farm, job.id, "w1", on_phase=on_phase)
    assert outcome["outcome"] == "discarded"
    # the phase after the cancel was refused, so nothing after it ran
    assert seen == ["frontend"]
    assert services.get_job(farm, job.id).state == "cancelled"


@pytest.mark.parametrize(
    ("limit", "said"), [(TimeLimitExceeded(2100), "hard time limit"), (SoftTimeLimitExceeded(), "soft time limit")]
)
def test_a_time_limit_that_ended_the_task_fails_the_running_job_as_timeout(tiny_model, limit, said, tmp_path, monkeypatch):
    # the task finds its farm from the process's settings: make those a throw-away home
    for key in [k for k in os.environ if k.startswith("ORCHESTRATE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("ORCHESTRATE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    farm = Farm(get_settings())
    assert farm.settings.home == tmp_path / "home"
    job = _queued(farm, tiny_model)
    with farm.session() as session:
        task_id = session.get(m.Job, job.id).celery_task_id  # type: ignore[union-attr]
    assert tasks.claim(farm, job.id, "w1", task_id) is not None
    # what Celery calls once the limit ended the task (the hard one: in the main process,
    # after it killed the pool process)
    tasks.compile_job.on_failure(limit, task_id, [job.id], {}, None)
    info = services.get_job(farm, job.id)
    assert info.state == "failed" and info.error_kind == "timeout"
    assert said in (info.error_message or "")
    # a message the job no longer answers to changes nothing
    again = _queued(farm, tiny_model, samples=3)
    assert tasks.claim(farm, again.id, "w1", None) is not None
    tasks.compile_job.on_failure(TimeLimitExceeded(2100), "another-message", [again.id], {}, None)
    assert services.get_job(farm, again.id).state == "running"
    get_settings.cache_clear()


def test_each_worker_is_judged_live_by_its_own_heartbeat_interval():
    now = m.utcnow()
    fast = m.Worker(name="fast", state=m.WorkerState.ONLINE, last_heartbeat=now - timedelta(seconds=2),
                    capabilities={"heartbeat_interval": 0.5}, hostname="h", arch="x86_64", queues=[])
    default = m.Worker(name="default", state=m.WorkerState.ONLINE, last_heartbeat=now - timedelta(seconds=2),
                       capabilities={}, hostname="h", arch="x86_64", queues=[])
    assert not WorkerInfo.of(fast, now).live
    assert WorkerInfo.of(default, now).live


def test_errors_carry_kinds_and_the_cli_alone_maps_them_to_exit_codes():
    from compiler.errors import BackendError, SpecError

    kinds = {cls.kind for cls in _subclasses(services.FarmError)}
    assert kinds <= set(FARM_KINDS), kinds - set(FARM_KINDS)
    assert exit_code_of(services.NotFoundError("x")) == EXIT_USAGE
    # a backend build that failed is a failed build, not bad usage
    assert exit_code_of(BackendError("the engine build failed")) == EXIT_JOB_FAILED
    assert exit_code_of(SpecError("bad key")) == EXIT_USAGE


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found | {cls}


def test_a_backend_that_fails_the_build_exits_1_not_2(tiny_model, tmp_path):
    from click.testing import CliRunner

    from orchestrator.cli import main

    # onnxruntime on a CUDA device, on a machine without its CUDA provider: the backend fails
    result = CliRunner().invoke(main, ["compile", str(tiny_model), "--device", "cuda", "-o", str(tmp_path / "e.pt2")])
    assert result.exit_code == EXIT_JOB_FAILED, result.output
    assert "backend_failed" in result.output and "CUDAExecutionProvider" in result.output
