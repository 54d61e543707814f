"""Helpers for tests and benchmarks: throw-away farms, Redis databases, worker subprocesses.

Kept in the package (like ``celery.contrib.testing``) so the test suite and ``benchmarks/`` start
workers the same way, and a deployment can smoke-test itself with them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
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
            "ORCHESTRATE_HEARTBEAT_INTERVAL": str(settings.heartbeat_interval),
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


# ----------------------------------------------------------------- servers a test or benchmark owns
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


class RedisServer:
    """A ``redis-server`` of our own on a free loopback port, with its files in ``root``.

    It persists like a production broker (append-only file, fsync every write), so a restart
    keeps the queued messages, and ``stop()``/``start()`` restart it on the same port.
    ``password`` turns on ``requirepass``. Never the machine's shared 6379."""

    BINARY = "/usr/bin/redis-server"

    def __init__(self, root: Path, *, password: str | None = None, port: int | None = None, tls: bool = False) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.password = password
        #: with ``tls``, the server speaks only TLS, with a certificate signed by ``ca_file``
        self.tls = tls
        self.ca_file = self.root / "ca.pem"
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def available(cls) -> bool:
        return Path(cls.BINARY).exists()

    def url(self, db: int = 0, *, password: str | None = None, ca: Path | None | bool = True) -> str:
        """The URL clients use; with TLS, ``rediss://`` verifying against ``ca`` (True: this
        server's own CA, False: none named)."""
        secret = self.password if password is None else password
        auth = f":{secret}@" if secret else ""
        if not self.tls:
            return f"redis://{auth}127.0.0.1:{self.port}/{db}"
        query = "ssl_cert_reqs=required"
        if ca:
            query += f"&ssl_ca_certs={self.ca_file if ca is True else ca}"
        return f"rediss://{auth}127.0.0.1:{self.port}/{db}?{query}"

    def _make_certificates(self) -> None:
        """A throw-away CA and a server certificate for 127.0.0.1 it signed (openssl)."""
        if (self.root / "server.pem").exists():
            return

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=self.root, check=True, capture_output=True)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
                "-days", "2", "-subj", "/CN=orchestrate-test-ca")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
                "-subj", "/CN=127.0.0.1")
        (self.root / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", "server.pem", "-days", "2", "-extfile", "san.ext")

    def start(self, timeout: float = 20.0) -> RedisServer:
        listen = ["--port", str(self.port)]
        if self.tls:
            if shutil.which("openssl") is None:
                raise RuntimeError("a TLS Redis needs openssl to make its certificates")
            self._make_certificates()
            listen = [
                "--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no",
                "--tls-cert-file", str(self.root / "server.pem"), "--tls-key-file", str(self.root / "server.key"),
                "--tls-ca-cert-file", str(self.ca_file),
            ]
        args = [
            self.BINARY, *listen, "--bind", "127.0.0.1", "--dir", str(self.root),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
            "--protected-mode", "no", "--daemonize", "no", "--logfile", str(self.root / "redis.log"),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port, timeout, self.process)
        return self

    def stop(self, *, kill: bool = False, timeout: float = 20.0) -> None:
        """SIGTERM (Redis writes its file and exits) or, with ``kill``, SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.process.wait(timeout)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(kill=True)


class PostgresServer:
    """A PostgreSQL cluster of our own: ``initdb`` into ``root``, ``pg_ctl`` on a free loopback
    port, trust authentication, durability off (a test server, fast). PostgreSQL refuses to
    run as root, so as root the cluster belongs to (and runs as) the ``postgres`` user."""

    BIN_DIRS = ("/usr/local/bin", "/usr/bin")

    def __init__(self, root: Path, *, port: int | None = None, user: str = "postgres") -> None:
        self.root = Path(root)
        self.data = self.root / "data"
        self.port = port or free_port()
        self.user = user

    @classmethod
    def binary(cls, name: str) -> str | None:
        """``name`` on the usual paths, else in Debian's versioned folders (newest first)."""
        versioned = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
        folders = [*map(Path, cls.BIN_DIRS), *versioned]
        return next((str(d / name) for d in folders if (d / name).exists()), None)

    @classmethod
    def available(cls) -> bool:
        return cls.binary("initdb") is not None and cls.binary("pg_ctl") is not None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 120.0) -> None:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, capture_output=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}): "
                + result.stderr.decode(errors="replace")[-2000:]
            )

    def _owned_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            import pwd

            record = pwd.getpwnam(self.user)
            os.chown(self.root, record.pw_uid, record.pw_gid)
            # every folder above must let the server's user through
            for parent in self.root.parents:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)

    def init(self) -> PostgresServer:
        self._owned_root()
        self._run(
            str(self.binary("initdb")), "-D", str(self.data), "-U", self.user, "-A", "trust",
            "-E", "UTF8", "--no-sync", "--no-instructions",
        )
        return self

    def start(self, timeout: float = 60.0) -> PostgresServer:
        options = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.binary("pg_ctl")), "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"),
            "-w", "-t", str(int(timeout)), "start",
            timeout=timeout + 10,
        )
        return self

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; its URL."""
        from sqlalchemy import create_engine, text

        name = name or f"farm_{uuid.uuid4().hex[:12]}"
        admin = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        return self.url(name)

    def stop(self, mode: str = "fast", timeout: float = 60.0) -> None:
        """``fast`` ends every session (what a restart does), ``immediate`` is a crash."""
        if not (self.data / "postmaster.pid").exists():
            return
        self._run(str(self.binary("pg_ctl")), "-D", str(self.data), "-m", mode, "-w", "stop", timeout=timeout)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def __enter__(self) -> PostgresServer:
        return self.init().start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
