"""The farm end to end on a real GPU, on embedded defaults (marker ``cuda``; GPU machine only).

A prefork worker detects the GPU without initializing CUDA in its parent, serves
``compile.x86_64.sm<NN>``, builds an aotinductor engine in its forked child, and records it
with its device identity and validation results; the same engine is refused on a machine with
no GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from orchestrator.settings import load_settings
from orchestrator.testing import WorkerProcess, cli_command, with_repo_on_path

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run scripts/gpu-tests.sh on the GPU machine)"),
]


def _cli(env: dict[str, str], cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_command(*args), env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def test_gpu_worker_builds_an_aotinductor_engine_that_a_cpu_machine_refuses(tmp_path: Path) -> None:
    major, minor = torch.cuda.get_device_capability()
    device_class = f"sm{major}{minor}"
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 14 * 14, 10)).eval()
    path = tmp_path / "cnn.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(1, 3, 16, 16),)), path)
    (tmp_path / "spec.yaml").write_text("backend: aotinductor\ndevice: cuda\nvalidation: {samples: 4}\n")

    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATE_")}
    env["ORCHESTRATE_HOME"] = str(tmp_path / "home")
    env = with_repo_on_path(env)
    settings = load_settings(env)
    with WorkerProcess(env, pool="prefork", log_path=tmp_path / "worker.log") as worker:
        worker.start(settings, timeout=240)
        workers = json.loads(_cli(env, tmp_path, "workers", "--json").stdout)
        (row,) = [w for w in workers if w["name"] == worker.name]
        assert row["device_class"] == device_class
        assert f"compile.x86_64.{device_class}" in row["queues"] and "compile.x86_64" in row["queues"]

        submitted = _cli(
            env, tmp_path, "submit", str(path), "--device-class", device_class, "--backend", "aotinductor",
            "--spec", "spec.yaml", "--wait", "--timeout", "500", "--json",
        )
        assert submitted.returncode == 0, submitted.stderr + worker.log_text()
        (job,) = json.loads(submitted.stdout)["jobs"]
        assert job["state"] == "succeeded" and job["worker"] == worker.name

    shown = _cli(env, tmp_path, "artifacts", "show", job["artifact_id"], "--json")
    assert shown.returncode == 0, shown.stderr
    artifact = json.loads(shown.stdout)
    assert artifact["backend"] == "aotinductor" and artifact["device_class"] == device_class
    built_on = artifact["built_on"]
    assert built_on["compute_capability"] == f"{major}.{minor}" and built_on["gpu_name"] == torch.cuda.get_device_name()
    results = json.loads(_cli(env, tmp_path, "results", job["artifact_id"], "--json").stdout)
    assert results and all(r["passed"] for r in results), results

    # this machine takes it ...
    here = _cli(env, tmp_path, "artifacts", "get", job["artifact_id"], "-o", str(tmp_path / "engine.pt2"))
    assert here.returncode == 0, here.stderr
    # ... a machine without a GPU (no nvidia-smi, no visible device) refuses it, with the reason
    cpu_env = {**env, "PATH": os.path.dirname(sys.executable), "CUDA_VISIBLE_DEVICES": ""}
    refused = _cli(cpu_env, tmp_path, "artifacts", "get", job["artifact_id"], "-o", str(tmp_path / "cpu.pt2"))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "cannot run on this machine" in refused.stderr and "GPU" in refused.stderr
    assert not (tmp_path / "cpu.pt2").exists()
