"""Helpers for tests and benchmarks: throw-away farms, Redis databases, worker subprocesses.

Kept in the package (like ``celery.contrib.testing``) so the test suite and ``benchmarks/`` start
workers the same way, and a deployment can smoke-test itself with them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from orchestrator.settings import Settings

REDIS_URL = "redis://127.0.0.1:6379"
# DB 0 holds the reservations; tests use 1..15 so parallel runs never share a queue.
_RESERVATION_PREFIX = "orchestrate-test-db:"
REPO_ROOT = Path(__file__).resolve().parent.parent


def embedded_settings(home: Path, **overrides: object) -> Settings:
    return Settings.embedded(home, **overrides)


def redis_settings(home: Path, db: int, **overrides: object) -> Settings:
    """SQLite database and local store under ``home``; broker and results on Redis ``db``."""
    return Settings.embedded(
        home,
        broker_url=f"{REDIS_URL}/{db}",
        result_backend=f"{REDIS_URL}/{db}",
        **overrides,
    )


def redis_reachable(url: str = REDIS_URL, timeout: float = 1.0) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout).ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def reserved_redis_db(url: str = REDIS_URL, ttl: int = 1800) -> Iterator[int]:
    """A Redis database number nobody else is using, flushed before and after."""
    import redis

    admin = redis.Redis.from_url(f"{url}/0", socket_connect_timeout=2)
    token = uuid.uuid4().hex
    for db in range(1, 16):
        if admin.set(f"{_RESERVATION_PREFIX}{db}", token, nx=True, ex=ttl):
            break
    else:
        raise RuntimeError("all Redis databases 1..15 are reserved by other test runs")
    client = redis.Redis.from_url(f"{url}/{db}")
    client.flushdb()
    try:
        yield db
    finally:
        client.flushdb()
        if admin.get(f"{_RESERVATION_PREFIX}{db}") == token.encode():
            admin.delete(f"{_RESERVATION_PREFIX}{db}")


@contextlib.contextmanager
def scratch_postgres_schema(server_url: str, prefix: str = "t_") -> Iterator[str]:
    """A URL whose connections live in a new, empty schema of the PostgreSQL server at
    ``server_url`` (through ``search_path``, so every table and alembic_version land there);
    the schema is dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from orchestrator import db as farm_db

    schema = f"{prefix}{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(server_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        farm_db.dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def settings_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a subprocess that must use ``settings`` (and this checkout's code)."""
    env = {k: v for k, v in (base if base is not None else os.environ).items()}
    for key in list(env):
        if key.startswith("ORCHESTRATE_"):
            del env[key]
    env.update(
        {
            "ORCHESTRATE_HOME": str(settings.home),
            "ORCHESTRATE_DATABASE_URL": settings.database_url,
            "ORCHESTRATE_BROKER_URL": settings.broker_url,
            "ORCHESTRATE_RESULT_BACKEND": settings.result_backend,
            "ORCHESTRATE_ARTIFACT_STORE": settings.artifact_store,
            "ORCHESTRATE_SOFT_TIME_LIMIT": str(settings.soft_time_limit),
            "ORCHESTRATE_HARD_TIME_LIMIT": str(settings.hard_time_limit),
        }
    )
    return with_repo_on_path(env)


def with_repo_on_path(env: dict[str, str]) -> dict[str, str]:
    paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def cli_command(*args: str) -> list[str]:
    """The ``orchestrate`` command line run by this interpreter (no install needed)."""
    return [sys.executable, "-m", "orchestrator.cli", *args]


class WorkerProcess:
    """An ``orchestrate worker`` subprocess; ``start()`` returns once it is registered."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        arch: str = "auto",
        device_class: str = "auto",
        name: str | None = None,
        pool: str = "solo",
        concurrency: int = 1,
        log_path: Path | None = None,
        extra_args: Sequence[str] = (),
        loglevel: str = "WARNING",
    ) -> None:
        self.env = dict(env)
        from workers.startup import qualified_worker_name

        self.name = qualified_worker_name(name or f"test-{arch}-{uuid.uuid4().hex[:8]}")
        self.args = cli_command(
            "worker",
            "--arch",
            arch,
            "--device-class",
            device_class,
            "--pool",
            pool,
            "--concurrency",
            str(concurrency),
            "--name",
            self.name,
            "--loglevel",
            loglevel,
            *extra_args,
        )
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, settings: Settings, timeout: float = 120.0) -> WorkerProcess:
        """Start the worker and wait until it has registered and is consuming."""
        if self.log_path is not None:
            self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self.wait_registered(settings, timeout)
        return self

    def wait_registered(self, settings: Settings, timeout: float) -> None:
        from orchestrator.services import Farm, list_workers

        farm = Farm(settings)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"worker exited with {self.process.returncode} before registering; "
                    f"see {self.log_path}"
                )
            if any(w.name == self.name and w.live for w in list_workers(farm)):
                # Registration happens just before the consumer starts; give it a moment.
                time.sleep(0.5)
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker {self.name} did not register within {timeout:g} s")

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._log is not None:
            self._log.close()
        return self.process.returncode

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")
