"""A submitted .pt2 is untrusted: a crafted pickle member must never run, here or on a worker."""

import io
import pickle
import zipfile

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from orchestrator import models as m
from orchestrator.cli import main
from orchestrator.cli._common import CliState
from orchestrator.samples import tiny_program
from orchestrator.services import Farm
from orchestrator.testing import embedded_settings


class _CreateFile:
    """Unpickling this calls open(path, "w"): proof that a loader ran the file's code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _crafted_pt2(tmp_path, marker):
    import torch

    clean = io.BytesIO()
    torch.export.save(tiny_program(), clean)
    payload = pickle.dumps(_CreateFile(marker), protocol=2)
    out = tmp_path / "crafted.pt2"
    with zipfile.ZipFile(io.BytesIO(clean.getvalue())) as src, zipfile.ZipFile(out, "w") as dst:
        prefix = src.namelist()[0].split("/", 1)[0]
        for info in src.infolist():
            if "sample_inputs" not in info.filename:
                dst.writestr(info, src.read(info))
        # torch.export.load (torch 2.13) unpickles this member before it validates the archive.
        dst.writestr(f"{prefix}/data/sample_inputs/model.pt", payload)
    return out


def test_the_crafted_file_runs_its_payload_under_torch_export_load(tmp_path):
    """Why the farm refuses such files: torch's own loader executes them."""
    import torch

    marker = tmp_path / "proof"
    with pytest.raises(Exception):  # noqa: B017 - torch reports "corrupt file" after running it
        torch.export.load(_crafted_pt2(tmp_path, marker))
    assert marker.exists()


def test_submit_refuses_a_crafted_pickle_and_the_file_is_not_created(farm, tmp_path):
    marker = tmp_path / "pwned"
    crafted = _crafted_pt2(tmp_path, marker)
    result = CliRunner().invoke(
        main, ["submit", str(crafted), "--arch", "x86_64"], obj=CliState(farm=farm)
    )
    assert result.exit_code == 2, result.output
    assert "model refused (unsafe_model)" in result.stderr
    assert "Traceback" not in result.output
    assert not marker.exists()
    with farm.session() as session:
        assert session.scalars(select(m.Model)).all() == []


def test_worker_refuses_a_crafted_blob_that_reached_the_store(tmp_path):
    """Defence in depth: a blob put in the store by other means still never runs on a worker."""
    from orchestrator import services
    from orchestrator.routing import Target
    from workers.tasks import run_job

    farm = Farm(embedded_settings(tmp_path / "home"))
    import torch

    good = tmp_path / "good.pt2"
    torch.export.save(tiny_program(), good)
    (job,) = services.submit(farm, good, [Target("x86_64")], services.resolve_spec()).jobs
    marker = tmp_path / "pwned-worker"
    stored = farm.store.put_file(_crafted_pt2(tmp_path, marker))
    with farm.session() as session:
        model = session.get(m.Model, job.model_id)
        model.uri, model.sha256 = stored.uri, stored.sha256
    outcome = run_job(farm, job.id, "test-worker")
    assert outcome["outcome"] == "failed" and outcome["error_kind"] == "unsafe_model"
    assert not marker.exists()
    assert services.get_job(farm, job.id).error_kind == "unsafe_model"
