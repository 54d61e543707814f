"""`orchestrate doctor` verdicts: a healthy embedded farm, and each kind of broken one."""

import json
import socket

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from orchestrator import db as farm_db
from orchestrator.cli import main
from orchestrator.doctor import FAIL, OK, WARN, check_database, run_checks
from orchestrator.settings import get_settings
from orchestrator.testing import embedded_settings


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _doctor(monkeypatch, env, *args):
    for key, value in env.items():
        monkeypatch.setenv(f"ORCHESTRATE_{key}", value)
    get_settings.cache_clear()
    result = CliRunner().invoke(main, ["doctor", "--json", *args])
    report = json.loads(result.stdout)
    return result.exit_code, {c["name"]: c for c in report["checks"]}


def test_healthy_embedded_farm_passes_every_check(tmp_path, monkeypatch):
    settings = embedded_settings(tmp_path / "home")
    farm_db.upgrade(settings.database_url)
    code, checks = _doctor(monkeypatch, {"HOME": str(settings.home)})
    assert code == 0, checks
    names = ("broker", "results", "database", "store", "backends")
    assert [checks[n]["verdict"] for n in names] == [OK] * 5
    assert "onnxruntime" in checks["backends"]["detail"]
    assert checks["gpu"]["verdict"] in (OK, WARN)  # WARN: a CPU-only machine
    # The probe object is gone again.
    assert not any(p.is_file() for p in (settings.home / "artifacts").rglob("*"))


def test_fresh_embedded_sqlite_is_a_warning_because_it_migrates_itself(tmp_path, monkeypatch):
    code, checks = _doctor(monkeypatch, {"HOME": str(tmp_path / "home")}, "--no-machine")
    assert code == 0
    assert checks["database"]["verdict"] == WARN
    assert "orchestrate db upgrade" in checks["database"]["fix"]
    assert set(checks) == {"broker", "results", "database", "store"}


def test_unreachable_broker_fails_with_exit_3_and_hides_the_password(tmp_path, monkeypatch):
    url = f"redis://:hunter2@127.0.0.1:{_closed_port()}/0"
    code, checks = _doctor(monkeypatch, {"HOME": str(tmp_path), "BROKER_URL": url}, "--no-machine")
    assert code == 3
    broker = checks["broker"]
    assert broker["verdict"] == FAIL and "cannot connect to the broker" in broker["detail"]
    assert "ORCHESTRATE_BROKER_URL" in broker["fix"]
    assert "hunter2" not in json.dumps(checks)
    assert checks["store"]["verdict"] == OK


@pytest.mark.postgres
def test_wrong_postgres_role_or_password_fails_the_database_check(postgres_server, tmp_path):
    # The test server trusts every local login, so a role that does not exist is what a wrong
    # password looks like here: the server refuses the login (SQLSTATE 28xxx).
    url = make_url(postgres_server).set(username="no_such_role", password="s3cret-pw")
    settings = embedded_settings(tmp_path, database_url=url.render_as_string(hide_password=False))
    check = check_database(settings)
    assert check.verdict == FAIL and check.infrastructure
    assert "refused the login" in check.detail and "ORCHESTRATE_DATABASE_URL" in check.detail
    assert "s3cret-pw" not in check.detail + (check.fix or "")


@pytest.mark.postgres
def test_postgres_schema_behind_head_fails_until_upgraded(postgres_url, tmp_path, monkeypatch):
    code, checks = _doctor(
        monkeypatch, {"HOME": str(tmp_path), "DATABASE_URL": postgres_url}, "--no-machine"
    )
    assert code == 3
    database = checks["database"]
    assert database["verdict"] == FAIL and "behind head" in database["detail"]
    assert database["fix"].startswith("run `orchestrate db upgrade`")

    farm_db.upgrade(postgres_url)
    settings = embedded_settings(tmp_path, database_url=postgres_url)
    assert check_database(settings).verdict == OK


def test_unwritable_store_fails_the_store_check(tmp_path, monkeypatch):
    # Tests run as root, which ignores folder modes: a store "folder" under a regular file
    # cannot be created or written by anyone.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    code, checks = _doctor(
        monkeypatch,
        {"HOME": str(tmp_path / "home"), "ARTIFACT_STORE": str(blocker / "artifacts")},
        "--no-machine",
    )
    assert code == 3
    store = checks["store"]
    assert store["verdict"] == FAIL and "ORCHESTRATE_ARTIFACT_STORE" in store["fix"]
    assert checks["broker"]["verdict"] == OK


def test_table_output_names_the_problem_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHESTRATE_HOME", str(tmp_path))
    monkeypatch.setenv("ORCHESTRATE_BROKER_URL", f"redis://127.0.0.1:{_closed_port()}/0")
    get_settings.cache_clear()
    result = CliRunner().invoke(main, ["doctor", "--no-machine"])
    assert result.exit_code == 3
    assert "fail  broker" in result.stdout and "fix: start the broker" in result.stdout
    assert "1 check(s) failed: broker" in result.stdout


def test_run_checks_covers_the_machine_by_default(tmp_path):
    names = [c.name for c in run_checks(embedded_settings(tmp_path))]
    assert names == ["broker", "results", "database", "store", "backends", "gpu"]


def test_unreachable_result_backend_fails_on_its_own(tmp_path, monkeypatch):
    url = f"redis://:hunter2@127.0.0.1:{_closed_port()}/1"
    code, checks = _doctor(monkeypatch, {"HOME": str(tmp_path), "RESULT_BACKEND": url}, "--no-machine")
    assert code == 3
    assert checks["results"]["verdict"] == FAIL and checks["broker"]["verdict"] == OK
    assert "ORCHESTRATE_RESULT_BACKEND" in checks["results"]["fix"]
    assert "hunter2" not in json.dumps(checks)


@pytest.mark.postgres
def test_healthy_production_shape_redis_and_postgres_passes(postgres_url, tmp_path, monkeypatch):
    from orchestrator.testing import REDIS_URL, redis_reachable, reserved_redis_db

    if not redis_reachable():
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    farm_db.upgrade(postgres_url)
    with reserved_redis_db() as db:
        env = {"HOME": str(tmp_path), "DATABASE_URL": postgres_url,
               "BROKER_URL": f"{REDIS_URL}/{db}", "RESULT_BACKEND": f"{REDIS_URL}/{db}"}
        code, checks = _doctor(monkeypatch, env, "--no-machine")
    assert code == 0, checks
    assert {c["verdict"] for c in checks.values()} == {OK}
    assert "schema head" in checks["database"]["detail"]


def test_database_migrated_by_a_newer_orchestrate_says_to_upgrade_here(tmp_path):
    from sqlalchemy import create_engine, text

    settings = embedded_settings(tmp_path)
    farm_db.upgrade(settings.database_url)
    engine = create_engine(settings.database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff_from_the_future'"))
    engine.dispose()
    check = check_database(settings)
    assert check.verdict == FAIL and "ffff_from_the_future" in check.detail
    assert check.fix and "upgrade orchestrate on this machine" in check.fix
