"""The CLI through the API server (ORCHESTRATE_API_URL + ORCHESTRATE_TOKEN): the same output
and exit codes as direct mode, on the same farm."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrator import tokens
from orchestrator.cli import main
from orchestrator.server import create_app
from orchestrator.server.testing import ServerThread
from orchestrator.services import Farm
from orchestrator.settings import get_settings


@pytest.fixture
def server_env() -> Iterator[dict[str, str]]:
    """The environment that sends the CLI through a server on this test's (isolated) farm."""
    farm = Farm(get_settings())
    secret = tokens.create_token(farm, "alice", "submit").secret
    with ServerThread(create_app(farm)) as server:
        yield {"ORCHESTRATE_API_URL": server.url, "ORCHESTRATE_TOKEN": secret}


def _both(args: list[str], env: dict[str, str]) -> tuple[Result, Result]:
    runner = CliRunner()
    return runner.invoke(main, args), runner.invoke(main, args, env=env)


def test_submit_status_jobs_wait_cancel_retry_through_the_server(server_env, tiny_model) -> None:
    runner = CliRunner()
    submitted = runner.invoke(main, ["submit", str(tiny_model), "--arch", "x86_64", "--json"], env=server_env)
    assert submitted.exit_code == 0, submitted.output
    (job,) = json.loads(submitted.stdout)["jobs"]
    assert job["submitted_by"] == "alice" and job["model_name"] == "tiny"
    assert "no live worker serves compile.x86_64" in submitted.stderr

    for args in (["status", job["id"], "--json"], ["status", job["id"][:8]], ["jobs", "--json"], ["jobs"]):
        direct, remote = _both(args, server_env)
        assert (remote.exit_code, remote.stdout) == (direct.exit_code, direct.stdout) == (0, direct.stdout), args

    direct, remote = _both(["wait", job["id"], "--timeout", "0.3"], server_env)
    assert remote.exit_code == direct.exit_code == 4
    assert "is still queued after" in remote.stderr and "is still queued after" in direct.stderr

    cancelled = runner.invoke(main, ["cancel", job["id"], "--json"], env=server_env)
    assert cancelled.exit_code == 0 and json.loads(cancelled.stdout)["state"] == "cancelled"
    direct, remote = _both(["cancel", job["id"]], server_env)
    assert remote.exit_code == direct.exit_code == 2
    assert remote.stderr == direct.stderr
    retried = runner.invoke(main, ["retry", job["id"], "--json"], env=server_env)
    assert retried.exit_code == 0 and json.loads(retried.stdout)["state"] == "queued"


def test_errors_exit_as_in_direct_mode(server_env, tiny_model, tmp_path) -> None:
    for args in (
        ["status", "ffffffffffff"],
        ["jobs", "--arch", "sparc"],
        ["submit", str(tmp_path / "missing.pt2"), "--arch", "x86_64"],
        ["submit", str(tiny_model), "--arch", "sparc"],
        ["submit", str(tiny_model), "--arch", "x86_64", "--name", "a/b"],
    ):
        direct, remote = _both(args, server_env)
        assert remote.exit_code == direct.exit_code == 2, (args, remote.output, direct.output)
        assert remote.stderr == direct.stderr, args


def test_a_wrong_token_or_no_server_is_an_error_with_an_exit_code(server_env) -> None:
    runner = CliRunner()
    wrong = runner.invoke(main, ["jobs"], env={**server_env, "ORCHESTRATE_TOKEN": "orc_wrong"})
    assert wrong.exit_code == 2 and "missing or invalid API token" in wrong.stderr
    missing = runner.invoke(main, ["jobs"], env={**server_env, "ORCHESTRATE_TOKEN": ""})
    assert missing.exit_code == 2 and "ORCHESTRATE_TOKEN" in missing.stderr
    gone = runner.invoke(main, ["jobs"], env={**server_env, "ORCHESTRATE_API_URL": "http://127.0.0.1:1"})
    assert gone.exit_code == 3 and "cannot reach the API server" in gone.stderr


def test_artifacts_results_and_workers_through_the_server(server_env, tiny_model, tmp_path) -> None:
    import hashlib

    from orchestrator import models as m
    from tests.orchestrator.server.conftest import seed_artifact

    runner = CliRunner()
    submitted = runner.invoke(main, ["submit", str(tiny_model), "--arch", "x86_64", "--json"], env=server_env)
    (job,) = json.loads(submitted.stdout)["jobs"]
    farm = Farm(get_settings())
    payload = b"engine package " * 10_000
    artifact_id = seed_artifact(farm, job["id"], payload)
    with farm.session() as session:
        session.add(m.Worker(name="w@h", hostname="h", arch="x86_64", queues=["compile.x86_64"], capabilities={}))

    for args in (
        ["artifacts", "list", "--json"],
        ["artifacts", "list", "--runs-here", "--json"],
        ["artifacts", "list", "--arch", "x86_64"],
        ["artifacts", "show", artifact_id[:10], "--json"],
        ["artifacts", "show", artifact_id],
        ["results", job["id"], "--json"],
        ["results", artifact_id],
        ["workers", "--json"],
        ["workers"],
        ["artifacts", "show", "ffffffffffff"],
    ):
        direct, remote = _both(args, server_env)
        if args[0] == "workers":
            # the heartbeat's age moves between the two calls; everything else must not
            ages = re.compile(r'"heartbeat_age_s": [0-9.]+|\b[0-9.]+ s ago\b')
            direct_out, remote_out = ages.sub("AGE", direct.stdout), ages.sub("AGE", remote.stdout)
            assert (remote.exit_code, remote_out, remote.stderr) == (direct.exit_code, direct_out, direct.stderr), args
            continue
        assert (remote.exit_code, remote.stdout, remote.stderr) == (direct.exit_code, direct.stdout, direct.stderr), args

    out = tmp_path / "engine.pt2"
    got = runner.invoke(main, ["artifacts", "get", artifact_id, "-o", str(out)], env=server_env)
    assert got.exit_code == 0, got.output
    assert out.read_bytes() == payload
    again = runner.invoke(main, ["artifacts", "get", artifact_id, "-o", str(out)], env=server_env)
    assert again.exit_code == 2 and "already exists" in again.stderr
    folder = tmp_path / "dl"
    folder.mkdir()
    into = runner.invoke(main, ["artifacts", "get", artifact_id, "-o", str(folder), "--json"], env=server_env)
    assert hashlib.sha256(Path(json.loads(into.stdout)["path"]).read_bytes()).hexdigest() == hashlib.sha256(payload).hexdigest()

    # An object altered in the store (same size) is refused by the client: nothing is written.
    stored = Path(farm.store.path_for(hashlib.sha256(payload).hexdigest()))
    stored.chmod(0o644)
    stored.write_bytes(b"X" * len(payload))
    bad = tmp_path / "bad.pt2"
    refused = runner.invoke(main, ["artifacts", "get", artifact_id, "-o", str(bad)], env=server_env)
    assert refused.exit_code == 1 and "sha256" in refused.stderr
    assert not bad.exists() and not list(tmp_path.glob(".bad.pt2.*"))


def test_python_client_through_the_server(server_env, tiny_model, monkeypatch) -> None:
    import orchestrator
    from orchestrator.client import Client
    from orchestrator.remote import RemoteFarm

    client = Client(api_url=server_env["ORCHESTRATE_API_URL"], token=server_env["ORCHESTRATE_TOKEN"])
    handle = client.submit(tiny_model, "x86_64")
    assert handle.status().submitted_by == "alice" and handle.warnings
    with pytest.raises(orchestrator.WaitTimeoutError):
        handle.wait(timeout=0.2)
    assert handle.artifact() is None and handle.results() == []
    assert handle.cancel().state == "cancelled"
    with pytest.raises(orchestrator.JobCancelledError):
        handle.wait()
    assert handle.retry().state == "queued"
    assert handle.id in [job.id for job in client.jobs()]
    with pytest.raises(orchestrator.NotFoundError):
        client.job("ffffffffffff")

    # From the environment, as the CLI; an in-memory program is uploaded as bytes.
    for key, value in server_env.items():
        monkeypatch.setenv(key, value)
    from_env = Client()
    assert isinstance(from_env.api, RemoteFarm)
    (again,) = from_env.submit(tiny_model.read_bytes(), ["aarch64"])
    assert from_env.job(again.id).status().arch == "aarch64"


def test_python_client_sends_data_by_name_and_from_files_through_the_server(server_env, tiny_model, tmp_path) -> None:
    import numpy as np
    import torch

    import orchestrator
    from orchestrator import models as m
    from orchestrator.client import Client

    client = Client(api_url=server_env["ORCHESTRATE_API_URL"], token=server_env["ORCHESTRATE_TOKEN"])
    rows = tmp_path / "rows.npz"
    np.savez(rows, input=np.ones((4, 8), np.float32))
    handle = client.submit(
        tiny_model, "aarch64", validation_data={"input": torch.zeros(4, 8), "labels": torch.arange(4)},
        calibration_data=rows,
    )
    with Farm(get_settings()).session() as session:
        job = session.get(m.Job, handle.id)
        assert job.validation_data.format == "safetensors" and job.calibration_data.format == "npz"
    with pytest.raises(orchestrator.InvalidRequestError, match="--validation-data refused.*missing input; unknown x"):
        client.submit(tiny_model, "aarch64", validation_data={"x": torch.zeros(4, 8)})
