"""The `orchestrate` command line through Click's CliRunner: exit codes, JSON, readable errors."""

import json
import time

import pytest
from click.testing import CliRunner

from orchestrator.celery_app import get_app
from orchestrator.cli import COMMANDS, main
from orchestrator.cli._common import CliState
from orchestrator.settings import get_settings


@pytest.fixture
def env_farm(tmp_path, monkeypatch):
    """The CLI's own settings loading, from ORCHESTRATE_* variables."""
    for key in ("DATABASE_URL", "BROKER_URL", "RESULT_BACKEND", "ARTIFACT_STORE", "CONFIG"):
        monkeypatch.delenv(f"ORCHESTRATE_{key}", raising=False)
    monkeypatch.setenv("ORCHESTRATE_HOME", str(tmp_path / "envhome"))
    get_settings.cache_clear()
    get_app.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()
    get_app.cache_clear()


@pytest.fixture(params=["direct", "through-server"])
def farm(request, farm):
    """Every test that takes ``farm`` runs twice: the CLI on the farm directly, and the CLI
    through an API server on that farm (ORCHESTRATE_API_URL + an admin token), expecting the
    same output and exit codes."""
    if request.param == "direct":
        yield farm
        return
    from orchestrator import tokens
    from orchestrator.server import create_app
    from orchestrator.server.testing import ServerThread

    secret = tokens.create_token(farm, "tester", "admin").secret
    with ServerThread(create_app(farm)) as server:
        farm.test_api_env = {"ORCHESTRATE_API_URL": server.url, "ORCHESTRATE_TOKEN": secret}
        yield farm


def run(farm, *args):
    env = getattr(farm, "test_api_env", None)
    return CliRunner().invoke(main, list(args), obj=CliState(farm=farm) if farm else None, env=env)


def test_help_lists_every_command_and_the_exit_codes():
    result = run(None, "--help")
    assert result.exit_code == 0
    for name in ("submit", "status", "wait", "cancel", "retry", "jobs", "artifacts", "results",
                 "workers", "worker", "db"):
        assert name in result.output
    assert "3  infrastructure unreachable" in result.output
    assert set(COMMANDS) >= {"submit", "db", "compile"}


def test_submit_queues_and_prints_a_json_job(farm, tiny_model):
    result = run(farm, "submit", str(tiny_model), "--arch", "arm64", "--name", "tiny", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (job,) = data["jobs"]
    assert job["queue"] == "compile.aarch64" and job["state"] == "queued"
    assert "no live worker serves compile.aarch64" in data["warnings"][0]
    assert "no live worker" in result.stderr


def test_submit_fans_out_over_several_arches(farm, tiny_model):
    result = run(farm, "submit", str(tiny_model), "--arch", "x86_64", "--arch", "aarch64",
                 "--precision", "int8", "--json")
    jobs = json.loads(result.stdout)["jobs"]
    assert [(j["arch"], j["precision"]) for j in jobs] == [("x86_64", "int8"), ("aarch64", "int8")]


def test_missing_model_file_exits_2_without_a_traceback(farm, tmp_path):
    result = run(farm, "submit", str(tmp_path / "missing.pt2"), "--arch", "x86_64")
    assert result.exit_code == 2
    assert "error: model file" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.output


def test_bad_arch_and_bad_spec_exit_2(farm, tiny_model, tmp_path):
    result = run(farm, "submit", str(tiny_model), "--arch", "sparc")
    assert result.exit_code == 2 and "unknown architecture 'sparc'" in result.stderr
    spec = tmp_path / "spec.yaml"
    spec.write_text("partitioning:\n  min_block_size: 0\n")
    result = run(farm, "submit", str(tiny_model), "--spec", str(spec))
    assert result.exit_code == 2 and "partitioning.min_block_size" in result.stderr


def test_unknown_job_exits_2(farm):
    for command in ("status", "wait", "cancel", "retry", "results"):
        result = run(farm, command, "0123456789abcdef")
        assert result.exit_code == 2, (command, result.output)
        assert "no job" in result.stderr or "no artifact" in result.stderr


def test_status_cancel_retry_and_jobs_filters(farm, tiny_model):
    submitted = json.loads(run(farm, "submit", str(tiny_model), "--arch", "x86_64", "--json").stdout)
    job_id = submitted["jobs"][0]["id"]
    assert json.loads(run(farm, "status", job_id, "--json").stdout)["state"] == "queued"
    assert json.loads(run(farm, "cancel", job_id[:8], "--json").stdout)["state"] == "cancelled"
    again = run(farm, "cancel", job_id)
    assert again.exit_code == 2 and "already cancelled" in again.stderr
    assert json.loads(run(farm, "jobs", "--state", "cancelled", "--json").stdout)[0]["id"] == job_id
    assert json.loads(run(farm, "jobs", "--state", "queued", "--json").stdout) == []
    assert json.loads(run(farm, "retry", job_id, "--json").stdout)["state"] == "queued"
    assert len(json.loads(run(farm, "jobs", "--model", "tiny", "--limit", "5", "--json").stdout)) == 1
    table = run(farm, "jobs")
    assert job_id[:12] in table.stdout and "queued" in table.stdout


def test_wait_timeout_exits_4(farm, tiny_model):
    submitted = json.loads(run(farm, "submit", str(tiny_model), "--arch", "aarch64", "--json").stdout)
    result = run(farm, "wait", submitted["jobs"][0]["id"], "--timeout", "0.2")
    assert result.exit_code == 4 and "still queued" in result.stderr


def test_workers_and_empty_listings(farm):
    assert json.loads(run(farm, "workers", "--json").stdout) == []
    assert json.loads(run(farm, "artifacts", "list", "--json").stdout) == []
    assert "0 worker(s)" in run(farm, "workers").stdout


def test_unreachable_broker_exits_3_in_seconds_and_hides_the_password(env_farm, tiny_model):
    env_farm.setenv("ORCHESTRATE_BROKER_URL", "redis://:hunter2@127.0.0.1:1/0")
    started = time.monotonic()
    result = run(None, "submit", str(tiny_model), "--arch", "x86_64")
    assert result.exit_code == 3, result.output
    assert time.monotonic() - started < 20
    assert "cannot reach the broker" in result.stderr
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output


def test_unreachable_database_exits_3(env_farm):
    env_farm.setenv("ORCHESTRATE_DATABASE_URL", "postgresql://u:pw@127.0.0.1:1/farm")
    result = run(None, "jobs")
    assert result.exit_code == 3
    assert "cannot reach the database" in result.stderr and ":pw@" not in result.stderr


def test_bad_settings_exit_2(env_farm):
    env_farm.setenv("ORCHESTRATE_SOFT_TIME_LIMIT", "100")
    env_farm.setenv("ORCHESTRATE_HARD_TIME_LIMIT", "50")
    result = run(None, "jobs")
    assert result.exit_code == 2 and "hard_time_limit" in result.stderr


def test_embedded_defaults_from_orchestrate_home(env_farm, tiny_model, tmp_path):
    result = run(None, "submit", str(tiny_model), "--arch", "x86_64", "--json")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "envhome" / "orchestrate.db").exists()
    assert (tmp_path / "envhome" / "broker.db").exists()


def test_worker_rejects_a_queue_of_another_architecture(farm):
    result = run(farm, "worker", "--arch", "x86_64", "--queues", "compile.aarch64")
    assert result.exit_code == 2 and "would not run there" in result.stderr


# ---------------------------------------------------------------------- data files
def _tiny_data(folder, name, **arrays):
    import numpy as np

    path = folder / name
    np.savez(path, **arrays)
    return path


def test_submit_with_data_files_records_them_on_the_job(farm, tiny_model, tmp_path):
    import numpy as np

    from orchestrator import models as m

    rows = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)
    validation = _tiny_data(tmp_path, "rows.npz", input=rows, labels=np.arange(6) % 4)
    calibration = tmp_path / "calibration.safetensors"
    from safetensors.numpy import save_file

    save_file({"input": rows}, str(calibration))
    result = run(farm, "submit", str(tiny_model), "--arch", "x86_64", "--validation-data", str(validation),
                 "--calibration-data", str(calibration), "--json")
    assert result.exit_code == 0, result.output
    (job,) = json.loads(result.stdout)["jobs"]
    import hashlib

    assert job["validation_data_sha256"] == hashlib.sha256(validation.read_bytes()).hexdigest()
    assert job["calibration_data_sha256"] == hashlib.sha256(calibration.read_bytes()).hexdigest()
    shown = run(farm, "status", job["id"])
    assert "validation data" in shown.stdout and job["validation_data_sha256"][:12] in shown.stdout
    with farm.session() as session:
        row = session.get(m.Job, job["id"])
        assert row.validation_data.format == "npz" and row.calibration_data.format == "safetensors"
        assert farm.store.read_bytes(row.validation_data.uri) == validation.read_bytes()
    # the same model and spec without the data is another build, not the same queued job's key
    plain = json.loads(run(farm, "submit", str(tiny_model), "--arch", "x86_64", "--json").stdout)["jobs"][0]
    with farm.session() as session:
        assert session.get(m.Job, plain["id"]).cache_key != session.get(m.Job, job["id"]).cache_key


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong_name", "tensor names do not match the program's inputs (missing input; unknown x)"),
        ("wrong_shape", "input dimension 1 is 9, outside the program's range 8"),
        ("nan", "input holds 1 NaN or infinite values"),
        ("pickle", "is a pickle"),
        ("suffix", "data files must be .safetensors or .npz, not .pt"),
    ],
)
def test_bad_data_file_exits_2_with_one_line_and_no_job(farm, tiny_model, tmp_path, case, expected):
    import pickle

    import numpy as np

    rows = np.zeros((6, 8), np.float32)
    if case == "wrong_name":
        path = _tiny_data(tmp_path, "rows.npz", x=rows)
    elif case == "wrong_shape":
        path = _tiny_data(tmp_path, "rows.npz", input=np.zeros((6, 9), np.float32))
    elif case == "nan":
        rows[1, 1] = np.nan
        path = _tiny_data(tmp_path, "rows.npz", input=rows)
    elif case == "pickle":
        path = tmp_path / "rows.npz"
        path.write_bytes(pickle.dumps({"input": rows}))
    else:
        path = tmp_path / "rows.pt"
        path.write_bytes(b"not data")
    result = run(farm, "submit", str(tiny_model), "--arch", "x86_64", "--validation-data", str(path))
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: --validation-data") and expected in line, line
    assert "rows" in line and "orchestrate-" not in line  # named as the submitter named it
    assert json.loads(run(farm, "jobs", "--json").stdout) == []
