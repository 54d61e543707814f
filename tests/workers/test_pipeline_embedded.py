"""Embedded defaults: nothing but ORCHESTRATE_HOME set; a worker and a submit in two processes."""

import json
import os
import subprocess

from orchestrator.samples import tiny_program
from orchestrator.settings import load_settings
from orchestrator.testing import WorkerProcess, cli_command, with_repo_on_path


def test_worker_and_submit_wait_in_separate_processes_on_embedded_defaults(tmp_path):
    import torch

    model = tmp_path / "tiny.pt2"
    torch.export.save(tiny_program(), model)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATE_")}
    env["ORCHESTRATE_HOME"] = str(tmp_path / "home")
    env = with_repo_on_path(env)
    settings = load_settings(env)
    assert settings.broker_url.startswith("sqla+sqlite:")

    with WorkerProcess(env, log_path=tmp_path / "worker.log") as worker:
        worker.start(settings)
        submitted = subprocess.run(
            [*cli_command("submit", str(model), "--wait", "--timeout", "240", "--json")],
            env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )
        assert submitted.returncode == 0, submitted.stderr + worker.log_text()
        (job,) = json.loads(submitted.stdout)["jobs"]
        assert job["state"] == "succeeded" and job["worker"] == worker.name
        assert "running" in submitted.stderr and "succeeded" in submitted.stderr  # progress

        results = subprocess.run(
            cli_command("results", job["id"], "--json"),
            env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )
        assert results.returncode == 0, results.stderr
        assert {"max_abs_error", "cosine_similarity", "snr_db"} <= {r["metric"] for r in json.loads(results.stdout)}
    assert (tmp_path / "home" / "broker.db").exists()
