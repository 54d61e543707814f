"""Artifacts that cannot run on the asking machine: refused by `artifacts get` (exit 2) unless
--force, left out by `artifacts list --runs-here`, explained by `artifacts show`; the client too.
Decided from the database row alone, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import compiler
from compiler.identity import DeviceIdentity, EngineRequirements
from orchestrator import db as farm_db
from orchestrator import models as m
from orchestrator import services
from orchestrator.cli import main
from orchestrator.cli._common import CliState
from orchestrator.client import Client
from orchestrator.routing import Target
from orchestrator.services import Farm, IncompatibleArtifactError
from orchestrator.testing import embedded_settings

CPU_BOX = DeviceIdentity("x86_64", torch_version="2.11.0")
H200 = DeviceIdentity("x86_64", "NVIDIA H200", "9.0", "580.159.04", "13.0", "2.11.0+cu130", "13.0")
ORIN = DeviceIdentity("aarch64", "Orin (nvgpu)", "8.7", torch_version="2.8.0",
                      jetson_module="NVIDIA Jetson AGX Orin Developer Kit", l4t_release="36.3.0")
SM90_AOTI = EngineRequirements(arch="x86_64", gpu=True, compute_capability="9.0", torch_version="2.11.0+cu130")


@pytest.fixture
def db_farm(database_url: str, tmp_path: Path) -> Farm:
    farm_db.upgrade(database_url)
    return Farm(embedded_settings(tmp_path / "home", database_url=database_url))


def _artifact(farm: Farm, tiny_model: Path, *, backend: str, device_class: str | None,
              built_on: DeviceIdentity | None, needs: list[EngineRequirements] | None, tag: str) -> str:
    """An artifact row as a worker records it, with a real stored file to download."""
    (job,) = services.submit(farm, tiny_model, [Target("x86_64", device_class)],
                             services.resolve_spec({"validation": {"samples": 1}}), name="tiny").jobs
    stored = farm.store.put_bytes(tag.encode())
    with farm.session() as session:
        row = session.get(m.Job, job.id)
        artifact = m.Artifact(
            id=m.new_id(), job_id=row.id, model_id=row.model_id, spec_id=row.spec_id, backend=backend,
            backend_version="x", arch="x86_64", device_class=device_class, precision="fp32",
            uri=stored.uri, sha256=stored.sha256, size_bytes=stored.size, build_key=m.new_id(),
            built_on=None if built_on is None else built_on.to_dict(),
            engine_requirements=None if needs is None else [n.to_dict() for n in needs],
        )
        session.add(artifact)
        row.state = m.JobState.SUCCEEDED
        row.artifact_id = artifact.id
        return artifact.id


@pytest.fixture
def artifacts(db_farm: Farm, tiny_model: Path) -> dict[str, str]:
    return {
        "portable": _artifact(db_farm, tiny_model, backend="onnxruntime", device_class=None,
                              built_on=H200, needs=[EngineRequirements()], tag="portable"),
        "sm90": _artifact(db_farm, tiny_model, backend="aotinductor", device_class="sm90",
                          built_on=H200, needs=[SM90_AOTI], tag="sm90"),
        "legacy_sm90": _artifact(db_farm, tiny_model, backend="tensorrt", device_class="sm90",
                                 built_on=None, needs=None, tag="legacy-sm90"),
        "legacy_cpu": _artifact(db_farm, tiny_model, backend="onnxruntime", device_class=None,
                                built_on=None, needs=None, tag="legacy-cpu"),
    }


def test_identity_and_requirements_are_stored_with_the_artifact(db_farm, artifacts):
    info = services.get_artifact(db_farm, artifacts["sm90"])
    assert info.built_on == H200.to_dict() and info.built_on["device_class"] == "sm90"
    assert info.requirements() == [SM90_AOTI]
    assert services.get_artifact(db_farm, artifacts["legacy_cpu"]).built_on is None


@pytest.mark.parametrize(
    ("here", "runnable"),
    [(CPU_BOX, {"portable", "legacy_cpu"}),
     (H200, {"portable", "sm90", "legacy_sm90", "legacy_cpu"}),
     (ORIN, {"portable", "legacy_cpu"})],
    ids=["cpu_box", "h200", "orin"],
)
def test_list_runs_on_keeps_only_what_runs_there(db_farm, artifacts, here, runnable):
    listed = services.list_artifacts(db_farm, runs_on=here)
    assert {a.id for a in listed} == {artifacts[k] for k in runnable}
    assert len(services.list_artifacts(db_farm)) == 4


def test_list_runs_on_reads_further_pages_to_fill_the_limit(db_farm, artifacts, monkeypatch):
    monkeypatch.setattr(services, "RUNS_ON_PAGE", 1)
    newest_first = [a.id for a in services.list_artifacts(db_farm)]
    runnable = [i for i in newest_first if i in (artifacts["portable"], artifacts["legacy_cpu"])]
    assert [a.id for a in services.list_artifacts(db_farm, runs_on=CPU_BOX, limit=2)] == runnable
    assert [a.id for a in services.list_artifacts(db_farm, runs_on=CPU_BOX, limit=1)] == runnable[:1]


def test_download_of_a_gpu_engine_on_a_cpu_machine_is_refused_unless_forced(db_farm, artifacts, tmp_path):
    dest = tmp_path / "engine.pt2"
    with pytest.raises(IncompatibleArtifactError) as refused:
        services.download_artifact(db_farm, artifacts["sm90"], dest, here=CPU_BOX)
    assert "it runs on a CUDA GPU and this machine has none" in str(refused.value)
    assert "--force" in str(refused.value)
    assert not dest.exists()
    with pytest.raises(IncompatibleArtifactError, match="built for x86_64 and this machine is aarch64"):
        services.download_artifact(db_farm, artifacts["legacy_sm90"], dest, here=ORIN)
    assert services.download_artifact(db_farm, artifacts["sm90"], dest, here=CPU_BOX, force=True) == dest
    assert dest.read_bytes() == b"sm90"
    assert services.download_artifact(db_farm, artifacts["portable"], tmp_path / "p.pt2", here=ORIN).exists()


def _cli(farm: Farm, *args: str):
    return CliRunner().invoke(main, list(args), obj=CliState(farm=farm))


@pytest.fixture
def on_cpu_box(monkeypatch):
    monkeypatch.setattr(compiler, "local_identity", lambda: CPU_BOX)


def test_cli_get_refuses_with_the_reason_and_exit_2_and_force_overrides(db_farm, artifacts, tmp_path, on_cpu_box):
    dest = tmp_path / "out.engine.pt2"
    refused = _cli(db_farm, "artifacts", "get", artifacts["sm90"][:10], "-o", str(dest))
    assert refused.exit_code == 2, refused.output
    assert "cannot run on this machine: it runs on a CUDA GPU and this machine has none" in refused.stderr
    assert "Traceback" not in refused.output and not dest.exists()
    forced = _cli(db_farm, "artifacts", "get", artifacts["sm90"], "-o", str(dest), "--force", "--json")
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["path"] == str(dest) and dest.read_bytes() == b"sm90"
    fine = _cli(db_farm, "artifacts", "get", artifacts["portable"], "-o", str(tmp_path / "p.pt2"))
    assert fine.exit_code == 0, fine.output


def test_cli_list_runs_here(db_farm, artifacts, on_cpu_box):
    listed = _cli(db_farm, "artifacts", "list", "--runs-here", "--json")
    assert listed.exit_code == 0, listed.output
    assert {a["id"] for a in json.loads(listed.stdout)} == {artifacts["portable"], artifacts["legacy_cpu"]}
    table = _cli(db_farm, "artifacts", "list", "--runs-here")
    assert "2 artifact(s)" in table.stdout
    assert len(json.loads(_cli(db_farm, "artifacts", "list", "--json").stdout)) == 4


def test_cli_show_tells_where_it_was_built_what_it_needs_and_whether_it_runs_here(db_farm, artifacts, on_cpu_box):
    shown = _cli(db_farm, "artifacts", "show", artifacts["sm90"])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.stdout.split())
    assert "x86_64/sm90, NVIDIA H200, driver 580.159.04, CUDA 13.0, torch 2.11.0+cu130" in text
    assert "needs x86_64 + a GPU of compute capability 9.0 + PyTorch 2.11" in text
    assert "runs here no: it runs on a CUDA GPU and this machine has none" in text
    legacy = " ".join(_cli(db_farm, "artifacts", "show", artifacts["legacy_cpu"]).stdout.split())
    assert "built on not recorded" in legacy and "runs here yes" in legacy
    data = json.loads(_cli(db_farm, "artifacts", "show", artifacts["sm90"], "--json").stdout)
    assert data["built_on"] == H200.to_dict()
    assert data["engine_requirements"] == [SM90_AOTI.to_dict()]


def test_client_lists_and_downloads_with_the_same_rules(db_farm, artifacts, tmp_path, on_cpu_box):
    client = Client(farm=db_farm)
    assert {a.id for a in client.artifacts(runs_here=True)} == {artifacts["portable"], artifacts["legacy_cpu"]}
    assert client.incompatibility(artifacts["portable"]) == []
    assert client.incompatibility(artifacts["sm90"]) == ["it runs on a CUDA GPU and this machine has none"]
    with pytest.raises(IncompatibleArtifactError):
        client.download(artifacts["sm90"], tmp_path / "e.pt2")
    assert client.download(artifacts["sm90"], tmp_path / "e.pt2", force=True).read_bytes() == b"sm90"
