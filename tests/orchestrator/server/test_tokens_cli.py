"""``orchestrate tokens create|list|revoke`` and ``orchestrate serve --help``."""

from __future__ import annotations

import json

from click.testing import CliRunner

from orchestrator.cli import main


def test_create_shows_the_secret_once_list_never_and_revoke_marks_it() -> None:
    runner = CliRunner()
    created = runner.invoke(main, ["tokens", "create", "--user", "alice", "--role", "submit", "--json"])
    assert created.exit_code == 0, created.output
    token = json.loads(created.output)
    assert token["secret"].startswith("orc_") and token["role"] == "submit" and token["active"]
    listed = runner.invoke(main, ["tokens", "list", "--json"])
    assert token["secret"] not in listed.output
    assert [t["id"] for t in json.loads(listed.output)] == [token["id"]]
    table = runner.invoke(main, ["tokens", "list"])
    assert "alice" in table.output and token["secret"] not in table.output
    revoked = runner.invoke(main, ["tokens", "revoke", token["id"][:8]])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    again = runner.invoke(main, ["tokens", "revoke", token["id"]])
    assert again.exit_code == 2 and "already revoked" in again.output
    active = runner.invoke(main, ["tokens", "list", "--active", "--json"])
    assert json.loads(active.output) == []


def test_bad_roles_users_and_ids_are_usage_errors() -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["tokens", "create", "--user", "a", "--role", "root"]).exit_code == 2
    bad_user = runner.invoke(main, ["tokens", "create", "--user", "a/b", "--role", "read"])
    assert bad_user.exit_code == 2 and "user name" in bad_user.output
    assert runner.invoke(main, ["tokens", "revoke", "ffffffffff"]).exit_code == 2


def test_serve_is_a_command() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0 and "--port" in result.output and "/api/v1" in result.output


def test_orchestrate_serve_answers_on_the_given_port(tmp_path) -> None:
    import os
    import subprocess
    import time

    import httpx

    from orchestrator.server.testing import free_port
    from orchestrator.testing import cli_command, embedded_settings, settings_env

    port = free_port()
    env = settings_env(embedded_settings(tmp_path / "home"), os.environ)
    server = subprocess.Popen(cli_command("serve", "--port", str(port), "--log-level", "warning"), env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        assert response.json() == {"ok": True}
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/jobs").status_code == 401
    finally:
        server.terminate()
        server.wait(30)
