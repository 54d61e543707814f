"""The Python client on an eager embedded farm: what notebooks and CI pipelines call."""

import subprocess
import sys

import pytest

import orchestrator
from orchestrator.client import Client, JobHandle
from orchestrator.samples import tiny_program
from orchestrator.services import Farm
from orchestrator.store import sha256_file
from orchestrator.testing import embedded_settings


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    return Client(farm=Farm(embedded_settings(tmp_path_factory.mktemp("c") / "home"), eager=True))


def test_import_orchestrator_stays_cheap():
    code = ("import sys, orchestrator; heavy = {'torch', 'celery', 'sqlalchemy'} & set(sys.modules);"
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert orchestrator.submit is orchestrator.client.submit
    assert orchestrator.JobHandle is JobHandle


def test_submit_an_exported_program_wait_and_download(client, tmp_path):
    job = client.submit(tiny_program(), arch="amd64", spec={"validation": {"samples": 2}},
                        name="tiny-client")
    assert isinstance(job, JobHandle)
    info = job.wait(timeout=300)
    assert info.state == "succeeded" and info.model_name == "tiny-client" and info.arch == "x86_64"
    artifact = job.artifact()
    assert artifact is not None and artifact.id == info.artifact_id
    path = job.download(tmp_path / "engine.pt2")
    assert sha256_file(path) == artifact.sha256
    assert {"max_abs_error", "cosine_similarity", "snr_db"} <= {r.metric for r in job.results()}
    assert client.job(job.id[:10]).status().id == job.id
    assert [a.id for a in client.artifacts(model="tiny-client", arch="x86_64")] == [artifact.id]
    assert job.id in {j.id for j in client.jobs(model="tiny-client")}


def test_a_list_of_arches_gives_a_list_of_handles(client, tmp_path):
    import torch

    path = tmp_path / "tiny.pt2"
    torch.export.save(tiny_program(seed=1), path)
    handles = client.submit(str(path), arch=["x86_64", "aarch64"], spec={"validation": {"samples": 2}})
    assert isinstance(handles, list) and len(handles) == 2
    x86, arm = handles
    assert x86.wait(timeout=300).state == "succeeded"
    # Eager mode runs every task in the caller, so even aarch64 builds here: routing is by
    # queue name, which the Redis tests check with real workers.
    assert arm.status().queue == "compile.aarch64"


def test_download_before_the_job_finished_is_refused(tmp_path):
    import torch

    queued = Client(farm=Farm(embedded_settings(tmp_path / "home")))
    path = tmp_path / "tiny.pt2"
    torch.export.save(tiny_program(), path)
    job = queued.submit(path, arch="aarch64")
    assert job.warnings and "no live worker" in job.warnings[0]
    assert job.artifact() is None
    with pytest.raises(orchestrator.InvalidRequestError, match="has no artifact yet"):
        job.download(tmp_path / "out.pt2")
    with pytest.raises(orchestrator.WaitTimeoutError):
        job.wait(timeout=0.1)
    assert job.cancel().state == "cancelled"
    with pytest.raises(orchestrator.JobCancelledError):
        job.wait()


def test_unsupported_model_objects_are_refused_with_the_fix(client):
    with pytest.raises(orchestrator.InvalidRequestError, match="torch.export.export"):
        client.submit(object(), arch="x86_64")


def test_submit_takes_data_as_tensors_by_input_name(client):
    import torch

    from orchestrator import models as m

    rows = {"input": torch.randn(4, 8), "labels": torch.tensor([0, 1, 2, 3])}
    job = client.submit(tiny_program(), arch="aarch64", spec={"validation": {"samples": 3}}, validation_data=rows)
    with client.farm.session() as session:
        data = session.get(m.Job, job.id).validation_data
        assert data is not None and data.format == "safetensors"
    with pytest.raises(orchestrator.InvalidRequestError, match="--calibration-data refused.*dtype float64"):
        client.submit(tiny_program(), arch="aarch64", calibration_data={"input": torch.randn(4, 8, dtype=torch.float64)})
