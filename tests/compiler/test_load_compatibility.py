"""``compiler.load`` refuses a program whose engines cannot run on this machine, unless forced."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

import compiler
from compiler.backends.onnxruntime import OnnxRuntimeBackend
from compiler.identity import DeviceIdentity, EngineRequirements, IncompatibleEngineError

CPU_BOX = DeviceIdentity("x86_64", torch_version=torch.__version__)
ARM_BOX = DeviceIdentity("aarch64", torch_version=torch.__version__)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU()).eval()
    spec = compiler.CompileSpec.parse({"partitioning": {"min_block_size": 1}})
    compiled = compiler.compile(model, spec, example_inputs=(torch.randn(2, 8),))
    return compiler.save(compiled, tmp_path_factory.mktemp("engines") / "net.engine.pt2")


def _rewrite_manifest(source: Path, dest: Path, edit: Any) -> Path:
    with zipfile.ZipFile(source) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    name = next(n for n in members if n.endswith("extra/orchestrate/manifest.json"))
    info = json.loads(members[name])
    edit(info)
    members[name] = json.dumps(info).encode()
    with zipfile.ZipFile(dest, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return dest


def test_manifest_records_the_identity_it_was_built_on(saved: Path) -> None:
    info = compiler.read_manifest(saved)
    assert info["built_on"] == compiler.local_identity().to_dict()
    assert info["built_on"]["arch"] in ("x86_64", "aarch64")
    assert "torch_version" in info["built_on"] and "device_class" in info["built_on"]


def test_portable_onnxruntime_program_loads_anywhere(saved: Path) -> None:
    assert compiler.program_requirements(compiler.read_manifest(saved)) == [EngineRequirements()]
    for here in (CPU_BOX, ARM_BOX, DeviceIdentity("aarch64", "Orin", "8.7", jetson_module="NVIDIA Jetson AGX Orin")):
        loaded = compiler.load(saved, here=here)
        assert loaded(torch.ones(2, 8)).shape == (2, 4)


def test_gpu_engine_is_refused_on_a_cpu_machine_before_its_backend_sees_it(saved: Path, tmp_path: Path) -> None:
    def claim_sm90_aotinductor(info: dict[str, Any]) -> None:
        # What an AOTInductor CUDA package built on the H200 records. Its bytes here are an
        # ONNX model, so an aotinductor.load that ran before the check would fail differently.
        info["built_on"] = DeviceIdentity("x86_64", "NVIDIA H200", "9.0", torch_version=torch.__version__).to_dict()
        for engine in info["engines"]:
            engine.update(backend="aotinductor", backend_version=torch.__version__, device="cuda:0",
                          extra={"compute_capability": "9.0"})

    gpu_program = _rewrite_manifest(saved, tmp_path / "gpu.engine.pt2", claim_sm90_aotinductor)
    with pytest.raises(IncompatibleEngineError) as raised:
        compiler.load(gpu_program, here=CPU_BOX)
    message = str(raised.value)
    assert "built on x86_64/sm90" in message
    assert "it runs on a CUDA GPU and this machine has none" in message
    assert "force=True" in message
    assert raised.value.kind == "incompatible_engine"
    older = DeviceIdentity("x86_64", "Tesla T4", "7.5", torch_version="2.8.0")
    with pytest.raises(IncompatibleEngineError, match=r"GPU generation sm90 .* this GPU is sm75.*PyTorch"):
        compiler.load(gpu_program, here=older)


def test_force_loads_an_incompatible_program(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OnnxRuntimeBackend, "requirements",
                        lambda self, meta, built_on: EngineRequirements(arch="aarch64"))
    loads: list[str] = []
    original = OnnxRuntimeBackend.load

    def spy(self: OnnxRuntimeBackend, engine: bytes, meta: Any) -> Any:
        loads.append(meta.engine_id)
        return original(self, engine, meta)

    monkeypatch.setattr(OnnxRuntimeBackend, "load", spy)
    with pytest.raises(IncompatibleEngineError, match="built for aarch64 and this machine is x86_64"):
        compiler.load(saved, here=CPU_BOX)
    assert loads == []
    loaded = compiler.load(saved, here=CPU_BOX, force=True)
    assert len(loads) == 1
    assert loaded(torch.ones(2, 8)).shape == (2, 4)


def test_manifest_without_built_on_falls_back_to_its_target_architecture(saved: Path, tmp_path: Path) -> None:
    def older_format(info: dict[str, Any]) -> None:
        del info["built_on"]
        info["target"]["arch"] = "arm64"

    old = _rewrite_manifest(saved, tmp_path / "old.engine.pt2", older_format)
    from compiler.runtime.serialization import built_on

    assert built_on(compiler.read_manifest(old)) == DeviceIdentity("aarch64")
    assert compiler.load(old, here=CPU_BOX)(torch.ones(2, 8)).shape == (2, 4)


def test_read_manifest_refuses_what_is_not_a_compiled_program(tmp_path: Path) -> None:
    (tmp_path / "junk.pt2").write_bytes(b"not a zip")
    with pytest.raises(compiler.InvalidModelError, match="not a compiled program"):
        compiler.read_manifest(tmp_path / "junk.pt2")
    program = torch.export.export(torch.nn.ReLU(), (torch.ones(2),))
    torch.export.save(program, tmp_path / "plain.pt2")
    with pytest.raises(compiler.InvalidModelError, match="manifest.json is missing"):
        compiler.read_manifest(tmp_path / "plain.pt2")
