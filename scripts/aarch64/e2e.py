"""The aarch64 worker end to end: run by ``bash scripts/aarch64-worker.sh check`` on the host.

A fresh farm: the host's Redis (a reserved database) as broker and result backend, the host's
PostgreSQL (a scratch schema) as database when reachable (SQLite in the farm's data directory
otherwise), a local artifact store in that directory (bind-mounted into the root at the same
path). The worker runs inside the emulated arm64 root with ``--arch auto``; the host writes a
tiny model and runs ``orchestrate submit tiny.pt2 --arch aarch64 --wait``. It passes when the
worker detected aarch64 by itself and served only ``compile.aarch64``, the job succeeded on it,
and the artifact records an aarch64 ``built_on`` with passing validation results.
Exit status 0 on success; every failed check is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from orchestrator import services  # noqa: E402
from orchestrator.services import Farm  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from orchestrator.testing import (  # noqa: E402
    cli_command,
    redis_reachable,
    redis_settings,
    reserved_redis_db,
    scratch_postgres_schema,
    settings_env,
)

POSTGRES_URL = os.environ.get(
    "ORCHESTRATE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def say(message: str) -> None:
    print(f"== [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def postgres_reachable(url: str) -> bool:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(url, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        return True
    except SQLAlchemyError:
        return False
    finally:
        engine.dispose()


@contextlib.contextmanager
def farm_settings(home: Path) -> Iterator[Settings]:
    with contextlib.ExitStack() as stack:
        if not redis_reachable():
            say("Redis is not reachable on 127.0.0.1:6379: embedded SQLite broker")
            yield Settings.embedded(home)
            return
        db = stack.enter_context(reserved_redis_db())
        overrides: dict[str, object] = {}
        if postgres_reachable(POSTGRES_URL):
            overrides["database_url"] = stack.enter_context(
                scratch_postgres_schema(POSTGRES_URL, prefix="aarch64_")
            )
        yield redis_settings(home, db, **overrides)


def orchestrate(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    """Run the host's ``orchestrate`` and echo its output; raise on a non-zero exit."""
    say("orchestrate " + " ".join(args))
    done = subprocess.run(
        cli_command(*args), env=env, capture_output=True, text=True, timeout=timeout
    )
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    if done.returncode:
        raise SystemExit(f"orchestrate {' '.join(args)} exited with {done.returncode}")
    return done.stdout


def wait_for_aarch64_worker(farm: Farm, worker: subprocess.Popen[bytes], log: Path, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit(f"the emulated worker exited with {worker.returncode}:\n{log.read_text()}")
        live = [w for w in services.list_workers(farm) if w.live]
        if live:
            return live[0]
        time.sleep(2)
    raise SystemExit(f"no worker registered within {timeout:g} s:\n{log.read_text()}")


def stop(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM (Celery's warm shutdown marks the worker offline), then SIGKILL after 60 s."""
    if worker.poll() is not None:
        return
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


def check(script: Path, home: Path, register_timeout: float, build_timeout: float) -> list[str]:
    failures: list[str] = []
    with farm_settings(home) as settings:
        env = settings_env(settings)
        farm = Farm(settings)
        say(f"farm: {json.dumps(settings.describe())}")
        if not settings.is_sqlite:
            orchestrate(env, "db", "upgrade")
        # Exported by the root's torch: torch 2.8 cannot read a .pt2 that torch 2.13 saved
        # ("There is no item named 'version' in the archive"), while 2.13 reads 2.8's.
        model = home / "tiny.pt2"
        say("orchestrate sample --kind tiny (in the arm64 root)")
        subprocess.run(
            ["bash", str(script), "exec", "orchestrate", "sample", "--kind", "tiny", "-o", str(model)],
            env=env, check=True, timeout=900,
        )  # fmt: skip

        log = home / "worker.log"
        say(f"starting `orchestrate worker --arch auto` in the arm64 root (log: {log})")
        started = time.monotonic()
        with log.open("wb") as sink:
            worker = subprocess.Popen(
                ["bash", str(script), "worker", "--loglevel", "INFO"],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as one
            )
        try:
            info = wait_for_aarch64_worker(farm, worker, log, register_timeout)
            say(f"worker {info.name} registered after {time.monotonic() - started:.0f} s")
            orchestrate(env, "workers")
            if info.arch != "aarch64":
                failures.append(f"the worker detected arch {info.arch!r}, not aarch64")
            if info.queues != ["compile.aarch64"]:
                failures.append(f"the worker serves {info.queues}, not ['compile.aarch64']")
            identity = info.capabilities.get("identity") or {}
            say(
                f"worker detected: arch {info.arch} (identity {identity.get('arch')}), "
                f"cpu {info.capabilities.get('cpu')}, torch {identity.get('torch_version')}, "
                f"queues {info.queues}"
            )
            if identity.get("arch") != "aarch64":
                failures.append(f"the worker's detected identity is not aarch64: {identity}")

            submitted = time.monotonic()
            orchestrate(
                env, "submit", str(model), "--arch", "aarch64", "--name", "tiny-aarch64",
                "--wait", "--timeout", str(build_timeout), timeout=build_timeout + 60,
            )  # fmt: skip
            say(f"submit --wait returned after {time.monotonic() - submitted:.0f} s")
            (job,) = services.list_jobs(farm, limit=1)
            if job.state != "succeeded" or job.worker != info.name:
                failures.append(f"job {job.id} is {job.state} on {job.worker}, not succeeded on {info.name}")
            if job.artifact_id is None:
                failures.append(f"job {job.id} has no artifact")
                return failures
            say(f"phase timings (s): {json.dumps(job.phase_timings)}")
            orchestrate(env, "artifacts", "show", job.artifact_id)
            orchestrate(env, "results", job.artifact_id)
            artifact = services.get_artifact(farm, job.artifact_id)
            built_on = artifact.built_on or {}
            if built_on.get("arch") != "aarch64" or artifact.arch != "aarch64":
                failures.append(f"artifact {artifact.id} built_on {built_on}, target {artifact.arch}")
            results = services.results(farm, artifact.id)
            if not results or not all(r.passed for r in results):
                failures.append(f"validation results of {artifact.id}: {results}")
            say(f"built_on: {json.dumps(built_on)}")
        finally:
            stop(worker)
            say(f"worker stopped; its log ends:\n{''.join(log.read_text().splitlines(True)[-15:])}")
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", type=Path, required=True, help="scripts/aarch64-worker.sh")
    parser.add_argument("--register-timeout", type=float, default=900.0)
    parser.add_argument("--build-timeout", type=float, default=1800.0)
    args = parser.parse_args()
    data = Path(os.environ.get("ORCHESTRATE_AARCH64_DIR", REPO / ".data" / "aarch64"))
    home = data / "farm" / time.strftime("%Y%m%d-%H%M%S")
    home.mkdir(parents=True)
    failures = check(args.script.resolve(), home, args.register_timeout, args.build_timeout)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    if failures:
        raise SystemExit(1)
    say("aarch64 check passed: an emulated aarch64 worker built and validated the engine")


if __name__ == "__main__":
    main()
