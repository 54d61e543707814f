"""Faults of the farm's servers, on servers these tests own.

Each test starts its own ``redis-server`` (and, where it stops the database, its own PostgreSQL
cluster: ``initdb`` + ``pg_ctl``) on free loopback ports in temporary directories, stops and
restarts them as the fault needs, and removes them afterwards; the machine's shared 5432/6379
servers are never touched. Workers are real ``orchestrate worker`` processes.

Where a fault must hit a compile at a known moment (time limits, cancelling a running job), the
worker runs with a ``sitecustomize`` that makes ``compiler.compile`` stall first when a flag
file says so: the farm's own code (task, signals, time limits, revoke) is what is tested.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select

from compiler.scratch import OWNER_FILE
from orchestrator import db as farm_db
from orchestrator import fleet, services
from orchestrator import models as m
from orchestrator.routing import Target
from orchestrator.services import Farm
from orchestrator.settings import Settings
from orchestrator.testing import (
    PostgresServer,
    RedisServer,
    WorkerProcess,
    cli_command,
    settings_env,
)
from workers import tasks

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(not RedisServer.available(), reason="needs /usr/bin/redis-server"),
]

# Fast failure detection: a worker is gone after 1.5 s of silence, reaped within ~3 s more.
HEARTBEAT = 0.5


# ------------------------------------------------------------------------------ servers we own
@pytest.fixture
def scratch() -> Iterator[Path]:
    """A temporary folder outside pytest's (PostgreSQL's user must be able to enter it)."""
    root = Path(tempfile.mkdtemp(prefix="orchestrate-faults-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def redis_server(scratch: Path) -> Iterator[RedisServer]:
    with RedisServer(scratch / "redis") as server:
        yield server


@pytest.fixture(scope="module")
def postgres_cluster() -> Iterator[PostgresServer]:
    if not PostgresServer.available():
        pytest.skip("needs PostgreSQL's initdb and pg_ctl")
    root = Path(tempfile.mkdtemp(prefix="orchestrate-pg-"))
    with PostgresServer(root / "pg") as server:
        yield server
    shutil.rmtree(root, ignore_errors=True)


def _settings(home: Path, broker: str, database: str | None = None, **overrides: object) -> Settings:
    settings = Settings.embedded(
        home,
        broker_url=broker,
        result_backend=broker,
        heartbeat_interval=HEARTBEAT,
        **({"database_url": database} if database else {}),
        **overrides,
    )
    farm_db.upgrade(settings.database_url)
    return settings


# ------------------------------------------------------------------------------ workers and jobs
STALL = textwrap.dedent(
    """
    # Test hook (tests/workers/test_fault_servers.py): when the file named by FAULT_STALL_FLAG
    # exists, the next compile first stalls: "sleep N" can be interrupted (by the soft time
    # limit, a revoke); "stubborn N" ignores the soft limit, so only the hard limit ends it.
    import os
    import time

    flag = os.environ.get("FAULT_STALL_FLAG")
    if flag:
        import compiler
        from celery.exceptions import SoftTimeLimitExceeded

        real_compile = compiler.compile

        def stalling_compile(*args, **kwargs):
            try:
                mode, seconds = open(flag).read().split()
                os.unlink(flag)
            except OSError:
                return real_compile(*args, **kwargs)
            end = time.monotonic() + float(seconds)
            while time.monotonic() < end:
                try:
                    time.sleep(0.05)
                except SoftTimeLimitExceeded:
                    if mode != "stubborn":
                        raise
            return real_compile(*args, **kwargs)

        compiler.compile = stalling_compile
    """
)


def _stalling_env(settings: Settings, root: Path) -> tuple[dict[str, str], Path]:
    hook = root / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(STALL)
    env = settings_env(settings)
    env["PYTHONPATH"] = os.pathsep.join([str(hook), env["PYTHONPATH"]])
    flag = root / "stall.flag"
    env["FAULT_STALL_FLAG"] = str(flag)
    return env, flag


def _own_tmp(env: dict[str, str], root: Path) -> Path:
    """Point the workers' TMPDIR (their scratch folders) at a folder of the test's, and return it."""
    tmp = root / "tmp"
    tmp.mkdir()
    env["TMPDIR"] = str(tmp)
    return tmp


def _worker(env: dict[str, str], log: Path, **kwargs: object) -> WorkerProcess:
    return WorkerProcess(env, pool="prefork", log_path=log, loglevel="INFO", **kwargs)  # type: ignore[arg-type]


def _submit(farm: Farm, model: Path, n: int = 1, first: int = 0) -> list[str]:
    """``n`` distinct jobs for one model: the validation sample count makes each spec (and so
    each build key) different, so none is answered from another's artifact."""
    ids = []
    for i in range(first, first + n):
        spec = services.resolve_spec({"validation": {"samples": 1 + i}})
        (job,) = services.submit(farm, model, [Target("x86_64")], spec).jobs
        ids.append(job.id)
    return ids


def _wait_all(farm: Farm, ids: list[str], timeout: float) -> list[services.JobInfo]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = services.get_jobs(farm, ids)
        if all(job.is_final for job in jobs) or time.monotonic() > deadline:
            return jobs
        time.sleep(0.25)


def _wait_state(farm: Farm, job_id: str, states: tuple[str, ...], timeout: float) -> services.JobInfo:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = services.get_job(farm, job_id)
        if job.state in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {states}: {services.get_job(farm, job_id)}")


def _artifacts(farm: Farm) -> int:
    with farm.session() as session:
        return int(session.scalar(select(func.count()).select_from(m.Artifact)) or 0)


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _deep_model(path: Path) -> Path:
    """A deep MLP: seconds of lowering, conversion and build; time for a fault to hit it."""
    layers: list[torch.nn.Module] = []
    for _ in range(120):
        layers += [torch.nn.Linear(64, 64), torch.nn.GELU()]
    torch.export.save(torch.export.export(torch.nn.Sequential(*layers).eval(), (torch.randn(2, 64),)), path)
    return path


# ------------------------------------------------------------------------------------- the tests
def test_broker_restart_during_a_run_of_many_jobs_leaves_none_stuck(
    redis_server: RedisServer, postgres_cluster: PostgresServer, scratch: Path, tiny_model: Path
) -> None:
    settings = _settings(scratch / "home", redis_server.url(), postgres_cluster.create_database())
    farm = Farm(settings)
    env = settings_env(settings)
    with _worker(env, scratch / "a.log") as a, _worker(env, scratch / "b.log") as b:
        a.start(settings)
        b.start(settings)
        ids = _submit(farm, tiny_model, 16)
        deadline = time.monotonic() + 120
        while sum(j.state == "succeeded" for j in services.get_jobs(farm, ids)) < 3:
            assert time.monotonic() < deadline, a.log_text() + b.log_text()
            time.sleep(0.1)
        redis_server.restart(down_for=3.0)
        jobs = _wait_all(farm, ids, timeout=240)
        logs = a.log_text() + b.log_text()
    stuck = [(j.id, j.state) for j in jobs if not j.is_final]
    assert not stuck, (stuck, logs)
    unexplained = [j.id for j in jobs if j.state != "succeeded" and not (j.error_kind and j.error_message)]
    assert not unexplained, logs
    assert all(j.state == "succeeded" for j in jobs), [(j.state, j.error_message) for j in jobs]
    assert _artifacts(farm) == len(ids)
    assert "Cannot connect to redis" in logs or "Connection to broker lost" in logs


def test_database_restart_while_a_job_runs_is_retried_with_backoff_and_loses_nothing(
    redis_server: RedisServer, postgres_cluster: PostgresServer, scratch: Path, tiny_model: Path
) -> None:
    # A cluster of this test's own: it is stopped, and other tests share the module's.
    with PostgresServer(scratch / "pg") as postgres:
        settings = _settings(scratch / "home", redis_server.url(), postgres.create_database())
        farm = Farm(settings)
        with _worker(settings_env(settings), scratch / "worker.log") as worker:
            worker.start(settings)
            (slow,) = services.submit(
                farm, _deep_model(scratch / "deep.pt2"), [Target("x86_64")],
                services.resolve_spec({"validation": {"samples": 2}}),
            ).jobs
            # queued behind it: claimed while the database is down
            (queued,) = _submit(farm, tiny_model, 1)
            _wait_state(farm, slow.id, ("running",), timeout=120)
            postgres.stop()
            time.sleep(8.0)
            postgres.start()
            jobs = _wait_all(farm, [slow.id, queued], timeout=240)
            log = worker.log_text()
        assert [j.state for j in jobs] == ["succeeded", "succeeded"], (jobs, log)
        # the build in hand was recorded once the database was back, not compiled again
        assert jobs[0].attempts == 1, log
        assert _artifacts(farm) == 2
        # the outage was met (a phase write, the final record or a claim) and waited out
        assert any(w in log for w in ("could not record phase", "database is unreachable", "transient error")), log


def test_artifact_store_full_fails_with_the_reason_and_leaves_no_half_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    # a real full filesystem: 3 MiB of tmpfs holds the 2 MiB model, not its engine as well
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(store)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        settings = Settings.embedded(tmp_path / "home", artifact_store=str(store))
        farm = Farm(settings, eager=True)
        monkeypatch.setattr(tasks, "MAX_TRANSIENT_RETRIES", 1)
        monkeypatch.setattr(tasks.compile_job, "max_retries", 1)
        monkeypatch.setattr(tasks, "backoff_seconds", lambda retries: 0.0)
        model = _deep_model(tmp_path / "deep.pt2")
        (job,) = services.submit(farm, model, [Target("x86_64")], services.resolve_spec({"validation": {"samples": 2}})).jobs
        info = services.get_job(farm, job.id)
        assert info.state == "failed" and info.error_kind == "infrastructure_error", info
        assert os.strerror(errno.ENOSPC) in (info.error_message or "")
        assert info.artifact_id is None and _artifacts(farm) == 0
        leftovers = [p for p in store.rglob("*") if p.is_file() and p.suffix == ".part"]
        assert leftovers == []
        # every object the database points at is there and whole
        assert all(r.ok for r in services.verify_objects(farm, everything=True))

        # room again (a bigger filesystem): the same job builds on retry
        subprocess.run(["mount", "-o", "remount,size=64m", str(store)], check=True)
        again = services.get_job(farm, services.retry(farm, job.id).id)
        assert again.state == "succeeded", again
        checked = services.verify_objects(farm, everything=True)
        assert sorted(r.kind for r in checked) == ["artifact", "model"] and all(r.ok for r in checked)
    finally:
        subprocess.run(["umount", "-l", str(store)], check=False)


def test_whole_worker_killed_is_reaped_by_another_and_the_job_completes_once(
    redis_server: RedisServer, scratch: Path, tiny_model: Path
) -> None:
    settings = _settings(scratch / "home", redis_server.url())
    farm = Farm(settings)
    env, flag = _stalling_env(settings, scratch)
    with _worker(env, scratch / "a.log") as a, _worker(env, scratch / "b.log") as b:
        a.start(settings)
        b.start(settings)
        flag.write_text("sleep 30")
        (job,) = _submit(farm, tiny_model, 1)
        running = _wait_state(farm, job, ("running",), timeout=60)
        victim, survivor = (a, b) if running.worker == a.name else (b, a)
        assert victim.process is not None
        for pid in [*_children(victim.process.pid), victim.process.pid]:
            os.kill(pid, signal.SIGKILL)
        done = services.wait(farm, job, timeout=180)
        log = survivor.log_text()
    assert done.state == "succeeded", (done, log)
    assert done.worker == survivor.name and done.attempts == 2
    assert "stopped heartbeating" in log
    assert _artifacts(farm) == 1


def _job_folders(tmp: Path) -> dict[Path, int]:
    """The workers' job scratch folders in ``tmp``, with the pid that signed each."""
    return {
        folder: int(json.loads((folder / OWNER_FILE).read_text())["pid"])
        for folder in tmp.glob("orchestrate-job-*")
        if (folder / OWNER_FILE).exists()
    }


def _wait_consumed(flag: Path, timeout: float = 60.0) -> None:
    """Until a compile has read (and removed) the stall flag: a job is running from its claim
    on, seconds before its compile starts."""
    deadline = time.monotonic() + timeout
    while flag.exists():
        assert time.monotonic() < deadline, "no compile read the stall flag"
        time.sleep(0.05)


def _times(farm: Farm, job_id: str) -> m.Job:
    with farm.session() as session:
        job = session.get(m.Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def test_a_killed_workers_job_goes_ahead_of_later_jobs_and_its_scratch_folder_is_swept_at_the_next_start(
    redis_server: RedisServer, scratch: Path, tiny_model: Path
) -> None:
    settings = _settings(scratch / "home", redis_server.url())
    farm = Farm(settings)
    env, flag = _stalling_env(settings, scratch)
    tmp = _own_tmp(env, scratch)
    with _worker(env, scratch / "a.log") as a, _worker(env, scratch / "b.log") as b:
        a.start(settings)
        b.start(settings)
        flag.write_text("sleep 60")
        (lost,) = _submit(farm, tiny_model, 1)
        running = _wait_state(farm, lost, ("running",), timeout=60)
        victim, survivor = (a, b) if running.worker == a.name else (b, a)
        _wait_consumed(flag)
        # the survivor is busy long enough for the reaper to act while two more jobs wait
        flag.write_text("sleep 25")
        (busy,) = _submit(farm, tiny_model, 1, first=1)
        _wait_state(farm, busy, ("running",), timeout=60)
        _wait_consumed(flag)
        later = _submit(farm, tiny_model, 2, first=2)
        assert victim.process is not None
        victim_pids = {*_children(victim.process.pid), victim.process.pid}
        left = [folder for folder, pid in _job_folders(tmp).items() if pid in victim_pids]
        assert len(left) == 1, _job_folders(tmp)
        for pid in victim_pids:
            os.kill(pid, signal.SIGKILL)
        jobs = _wait_all(farm, [lost, busy, *later], timeout=240)
        log = survivor.log_text()
        assert all(j.state == "succeeded" for j in jobs), (jobs, log)
        # SIGKILL ran no cleanup: the folder stays until a worker starts
        assert left[0].is_dir()
        with _worker(env, scratch / "c.log") as c:
            c.start(settings)
            assert not left[0].exists(), c.log_text()
            assert "scratch folder(s) that processes which no longer run left behind" in c.log_text()
    requeued, first, *queued = (_times(farm, j) for j in (lost, busy, *later))
    assert requeued.attempts == 2 and requeued.worker_name == survivor.name, log
    # re-queued after the later jobs were submitted, while the survivor was still busy ...
    assert all(requeued.queued_at > job.created_at for job in queued)
    assert first.finished_at is not None and requeued.queued_at < first.finished_at
    # ... and taken before them
    assert all(requeued.started_at < job.started_at for job in queued), [(j.id, j.started_at) for j in (requeued, *queued)]
    assert _artifacts(farm) == 4


def test_a_pool_process_killed_mid_compile_is_replaced_sweeps_its_folder_and_the_job_completes(
    redis_server: RedisServer, scratch: Path, tiny_model: Path
) -> None:
    # what the OOM killer does: the pool process dies, the worker's main process lives on
    settings = _settings(scratch / "home", redis_server.url())
    farm = Farm(settings)
    env, flag = _stalling_env(settings, scratch)
    tmp = _own_tmp(env, scratch)
    with _worker(env, scratch / "worker.log") as worker:
        worker.start(settings)
        flag.write_text("sleep 30")
        (job,) = _submit(farm, tiny_model, 1)
        _wait_state(farm, job, ("running",), timeout=60)
        deadline = time.monotonic() + 30
        while not (folders := _job_folders(tmp)):
            assert time.monotonic() < deadline, worker.log_text()
            time.sleep(0.1)
        ((folder, pool_pid),) = folders.items()
        assert worker.process is not None and pool_pid in _children(worker.process.pid)
        os.kill(pool_pid, signal.SIGKILL)
        done = services.wait(farm, job, timeout=120)
        log = worker.log_text()
    assert done.state == "succeeded" and done.attempts == 2, (done, log)
    # the replacement pool process removed the dead one's folder when it started
    assert not folder.exists() and _job_folders(tmp) == {}, log
    assert "scratch folder(s) that processes which no longer run left behind" in log
    assert _artifacts(farm) == 1


def test_soft_time_limit_fails_as_timeout_and_hard_limit_frees_the_worker(
    redis_server: RedisServer, scratch: Path, tiny_model: Path
) -> None:
    settings = _settings(scratch / "home", redis_server.url(), soft_time_limit=4.0, hard_time_limit=6.0)
    farm = Farm(settings)
    env, flag = _stalling_env(settings, scratch)
    tmp = _own_tmp(env, scratch)
    with _worker(env, scratch / "worker.log") as worker:
        worker.start(settings)
        flag.write_text("sleep 60")
        (soft,) = _submit(farm, tiny_model, 1)
        soft_done = services.wait(farm, soft, timeout=60)
        assert soft_done.state == "failed" and soft_done.error_kind == "timeout", (soft_done, worker.log_text())
        assert "soft time limit" in (soft_done.error_message or "")

        flag.write_text("stubborn 60")
        (hard,) = _submit(farm, tiny_model, 1, first=1)
        hard_done = services.wait(farm, hard, timeout=60)
        assert hard_done.state == "failed" and hard_done.error_kind == "timeout", (hard_done, worker.log_text())
        assert "hard time limit" in (hard_done.error_message or "")

        # the pool process the hard limit killed was replaced: the next job builds
        (after,) = _submit(farm, tiny_model, 1, first=2)
        assert services.wait(farm, after, timeout=60).state == "succeeded", worker.log_text()
        # nothing of the killed build is left (billiard sends TERM, then KILL after 0.1 s: the
        # build cleaned up itself, or the replacement pool process swept its folder)
        assert _job_folders(tmp) == {}, worker.log_text()


@pytest.mark.parametrize("broker", ["redis", "embedded"])
def test_cancelling_a_running_job_stops_it_and_frees_the_worker(
    broker: str, request: pytest.FixtureRequest, scratch: Path, tiny_model: Path
) -> None:
    if broker == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        settings = _settings(scratch / "home", server.url())
    else:
        settings = Settings.embedded(scratch / "home", heartbeat_interval=HEARTBEAT)
        farm_db.upgrade(settings.database_url)
    farm = Farm(settings)
    env, flag = _stalling_env(settings, scratch)
    with _worker(env, scratch / "worker.log") as worker:
        worker.start(settings)
        flag.write_text("sleep 20")
        (job,) = _submit(farm, tiny_model, 1)
        _wait_state(farm, job, ("running",), timeout=60)
        (after,) = _submit(farm, tiny_model, 1, first=1)
        started = time.monotonic()
        assert services.cancel(farm, job).state == "cancelled"
        _wait_state(farm, after, ("running", "succeeded"), timeout=90)
        freed_after = time.monotonic() - started
        done = services.wait(farm, after, timeout=120)
        log = worker.log_text()
    assert done.state == "succeeded", log
    # Redis revokes the running task at once (well inside the 20 s stall); the embedded broker
    # cannot, and the build stops at its next phase boundary, once the stall is over
    if broker == "redis":
        assert freed_after < 12, (freed_after, log)
    else:
        assert "its build stopped" in log, log
    final = services.get_job(farm, job)
    assert final.state == "cancelled" and final.artifact_id is None
    assert _artifacts(farm) == 1


def test_worker_with_a_wrong_broker_password_exits_with_a_clear_error(scratch: Path) -> None:
    with RedisServer(scratch / "redis", password="the-right-one") as server:
        settings = _settings(scratch / "home", server.url(password="not-the-password"))
        started = time.monotonic()
        run = subprocess.run(
            cli_command("worker", "--pool", "solo"), env=settings_env(settings), capture_output=True, timeout=120
        )
    output = (run.stdout + run.stderr).decode(errors="replace")
    assert run.returncode == 3, output
    assert "refused this worker's credentials" in output and "ORCHESTRATE_BROKER_URL" in output
    assert "not-the-password" not in output
    assert time.monotonic() - started < 100
    # it never registered, so no submitter is told that its queues are served
    assert services.list_workers(Farm(settings)) == []


def test_a_tls_broker_with_a_password_serves_a_job_and_an_untrusted_certificate_is_refused(
    scratch: Path, tiny_model: Path
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make the TLS Redis's certificates")
    with RedisServer(scratch / "redis", password="tls-farm-pw", tls=True) as server:
        settings = _settings(scratch / "home", server.url())
        assert settings.broker_url.startswith("rediss://")
        farm = Farm(settings)
        with _worker(settings_env(settings), scratch / "worker.log") as worker:
            worker.start(settings)
            (job,) = _submit(farm, tiny_model, 1)
            assert services.wait(farm, job, timeout=120).state == "succeeded", worker.log_text()

        no_ca = _settings(scratch / "home-no-ca", server.url(ca=False))
        run = subprocess.run(cli_command("worker", "--pool", "solo"), env=settings_env(no_ca), capture_output=True, timeout=120)
    output = (run.stdout + run.stderr).decode(errors="replace")
    assert run.returncode == 3, output
    assert "TLS certificate this worker does not trust" in output and "ssl_ca_certs" in output
    assert "tls-farm-pw" not in output


# ------------------------------------------------------------------ submit while the broker is down
def test_submit_waits_for_a_broker_that_comes_back_within_its_retry_window(scratch: Path, tiny_model: Path) -> None:
    with RedisServer(scratch / "redis", password="broker-pw") as server:
        settings = _settings(scratch / "home", server.url())
        farm = Farm(settings)
        server.stop()
        # back 2.5 s into the publish's retries (0.5, 1.5, 2.5, 3 s apart)
        threading.Timer(2.5, server.start).start()
        started = time.monotonic()
        (job,) = services.submit(farm, tiny_model, [Target("x86_64")], services.resolve_spec()).jobs
        waited = time.monotonic() - started
        assert 2.0 < waited < 15, waited
        assert services.get_job(farm, job.id).state == "queued"
        # the message is on the broker: a worker will find it
        assert fleet.broker_depths(settings, [job.queue]) == {job.queue: 1}


def test_submit_gives_up_on_a_broker_that_stays_down_naming_it_and_leaving_nothing(scratch: Path, tiny_model: Path) -> None:
    with RedisServer(scratch / "redis", password="broker-pw") as server:
        settings = _settings(scratch / "home", server.url())
        server.stop()
        started = time.monotonic()
        run = subprocess.run(
            cli_command("submit", str(tiny_model), "--arch", "x86_64"),
            env=settings_env(settings), capture_output=True, timeout=180,
        )
        elapsed = time.monotonic() - started
    output = (run.stdout + run.stderr).decode(errors="replace")
    assert run.returncode == 3, output
    assert f"cannot reach the broker at redis://:***@127.0.0.1:{server.port}/0" in output, output
    assert "down or unreachable" in output and "nothing was submitted" in output
    assert "broker-pw" not in output and "Traceback" not in output
    # it retried (the policy sleeps 7.5 s in all) and then gave up
    retried = float(output.split("publishing was retried for ", 1)[1].split(" s", 1)[0])
    assert 6.0 < retried < 30 and elapsed < 90, (retried, elapsed)
    farm = Farm(settings)
    assert services.list_jobs(farm) == []
    with farm.session() as session:
        assert session.scalars(select(m.Model)).all() == []
    assert not list((scratch / "home" / "artifacts").rglob("sha256/*/*"))
