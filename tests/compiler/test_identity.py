"""Device identity from recorded nvidia-smi / L4T samples, and table-driven compatibility."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from compiler.identity import (
    DEVICE_CLASSES,
    NVIDIA_SMI_OLD_QUERY,
    NVIDIA_SMI_QUERY,
    DeviceIdentity,
    EngineRequirements,
    GpuRecord,
    IncompatibleEngineError,
    check_compatible,
    compatibility_problems,
    detect_identity,
    parse_nvidia_smi_header,
    parse_nvidia_smi_query,
    parse_tegra_release,
)

DATA = Path(__file__).parent / "data" / "identity"


def sample(name: str) -> str:
    return (DATA / name).read_text()


# ------------------------------------------------------------------------------ parsers


def test_h200_query_and_header_recorded_on_the_gpu_machine() -> None:
    assert parse_nvidia_smi_query(sample("h200.query.txt")) == [
        GpuRecord("NVIDIA H200", "9.0", "580.159.04")
    ]
    assert parse_nvidia_smi_header(sample("h200.header.txt")) == ("580.159.04", "13.0")


def test_multi_gpu_listing_gives_one_record_per_gpu() -> None:
    gpus = parse_nvidia_smi_query(sample("a100x4.query.txt"))
    assert gpus == [GpuRecord("NVIDIA A100-SXM4-80GB", "8.0", "535.183.01")] * 4
    assert parse_nvidia_smi_header(sample("a100x4.header.txt")) == ("535.183.01", "12.2")


def test_t4_is_turing() -> None:
    assert parse_nvidia_smi_query(sample("t4.query.txt")) == [GpuRecord("Tesla T4", "7.5", "550.54.15")]
    assert parse_nvidia_smi_header(sample("t4.header.txt")) == ("550.54.15", "12.4")


def test_malformed_nvidia_smi_output_yields_nothing_rather_than_garbage() -> None:
    assert parse_nvidia_smi_query(sample("malformed.query.txt")) == []
    assert parse_nvidia_smi_query("") == []
    assert parse_nvidia_smi_header(sample("malformed.header.txt")) == (None, None)


def test_not_available_fields_are_unknown() -> None:
    assert parse_nvidia_smi_query("Orin (nvgpu), [N/A], [N/A]\n") == [GpuRecord("Orin (nvgpu)", None, None)]
    assert parse_nvidia_smi_query("Tesla V100-SXM2-16GB, 418.67\n", with_capability=False) == [
        GpuRecord("Tesla V100-SXM2-16GB", None, "418.67")
    ]


@pytest.mark.parametrize(
    ("name", "release"),
    [("orin.nv_tegra_release", "36.3.0"), ("xavier.nv_tegra_release", "35.4.1"), ("malformed.nv_tegra_release", None)],
)
def test_l4t_release_is_parsed_from_nv_tegra_release(name: str, release: str | None) -> None:
    assert parse_tegra_release(sample(name)) == release


# ---------------------------------------------------------------------------- detection


class Recorded:
    """A command runner that answers from recorded samples and remembers what was asked."""

    def __init__(self, answers: dict[tuple[str, ...], str | None]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, command: Sequence[str]) -> str | None:
        self.calls.append(tuple(command))
        return self.answers.get(tuple(command))


def _root(tmp_path: Path, board: str | None = None) -> Path:
    if board is not None:
        (tmp_path / "proc/device-tree").mkdir(parents=True)
        (tmp_path / "etc").mkdir()
        shutil.copy(DATA / f"{board}.model", tmp_path / "proc/device-tree/model")
        shutil.copy(DATA / f"{board}.nv_tegra_release", tmp_path / "etc/nv_tegra_release")
    return tmp_path


def test_datacenter_gpu_identity_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    run = Recorded({NVIDIA_SMI_QUERY: sample("h200.query.txt"), ("nvidia-smi",): sample("h200.header.txt")})
    identity = detect_identity(_root(tmp_path), run)
    assert (identity.gpu_name, identity.compute_capability, identity.device_class) == ("NVIDIA H200", "9.0", "sm90")
    assert (identity.driver_version, identity.cuda_version) == ("580.159.04", "13.0")
    assert identity.jetson_module is None and identity.l4t_release is None
    import torch

    assert identity.torch_version == torch.__version__
    assert identity.torch_cuda_version == torch.version.cuda


def test_cuda_visible_devices_picks_the_gpu_or_hides_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mixed = "NVIDIA A100-SXM4-80GB, 8.0, 535.183.01\nTesla T4, 7.5, 535.183.01\n"
    run = Recorded({NVIDIA_SMI_QUERY: mixed})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    identity = detect_identity(_root(tmp_path), run)
    assert identity.device_class == "sm75" and identity.extra == {"gpu_count": 2}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_identity(_root(tmp_path), run).compute_capability is None


def test_jetson_identity_without_nvidia_smi_takes_capability_from_the_table(tmp_path: Path) -> None:
    run = Recorded({})  # no nvidia-smi at all
    identity = detect_identity(_root(tmp_path, "orin"), run)
    assert identity.jetson_module == "NVIDIA Jetson AGX Orin Developer Kit"
    assert identity.l4t_release == "36.3.0"
    assert identity.device_class == "orin"
    assert identity.compute_capability == DEVICE_CLASSES["orin"].compute_capability == "8.7"
    xavier = detect_identity(_root(tmp_path / "x", "xavier"), run)
    assert (xavier.device_class, xavier.compute_capability, xavier.l4t_release) == ("xavier", "7.2", "35.4.1")


def test_jetson_nvidia_smi_without_capability_still_gets_the_table_value(tmp_path: Path) -> None:
    header = "| NVIDIA-SMI 540.3.0      Driver Version: 540.3.0      CUDA Version: 12.6     |\n"
    run = Recorded({NVIDIA_SMI_QUERY: "Orin (nvgpu), [N/A], [N/A]\n", ("nvidia-smi",): header})
    identity = detect_identity(_root(tmp_path, "orin"), run)
    assert (identity.gpu_name, identity.compute_capability) == ("Orin (nvgpu)", "8.7")
    assert (identity.driver_version, identity.cuda_version) == ("540.3.0", "12.6")


def test_old_nvidia_smi_without_compute_cap_asks_a_spawned_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    run = Recorded({NVIDIA_SMI_OLD_QUERY: "Tesla V100-SXM2-16GB, 418.67\n"})

    def runner(command: Sequence[str]) -> str | None:
        if command[0] == sys.executable:  # the probe runs in its own interpreter
            return "7.0\n"
        return run(command)

    identity = detect_identity(_root(tmp_path), runner)
    assert (identity.gpu_name, identity.compute_capability, identity.driver_version) == (
        "Tesla V100-SXM2-16GB", "7.0", "418.67"
    )


def test_cpu_only_machine_has_no_device_class(tmp_path: Path) -> None:
    identity = detect_identity(_root(tmp_path), Recorded({}))
    assert identity.gpu_name is None and identity.compute_capability is None
    assert identity.device_class is None
    assert identity.arch in ("x86_64", "aarch64")


def test_tensorrt_version_from_jetpack_packages(tmp_path: Path) -> None:
    root = _root(tmp_path)
    (root / "var/lib/dpkg").mkdir(parents=True)
    shutil.copy(DATA / "tensorrt.dpkg_status", root / "var/lib/dpkg/status")
    assert detect_identity(root, Recorded({})).tensorrt_version == "10.3.0.30"


def test_identity_round_trips_through_a_dict() -> None:
    identity = DeviceIdentity("x86_64", "NVIDIA H200", "9.0", torch_version="2.11.0+cu130", extra={"gpu_count": 8})
    data = identity.to_dict()
    assert data["device_class"] == "sm90"
    assert DeviceIdentity.from_dict(data) == identity


# ------------------------------------------------------------------------ compatibility

H200 = DeviceIdentity("x86_64", "NVIDIA H200", "9.0", torch_version="2.11.0+cu130", tensorrt_version="10.3.0")
ORIN = DeviceIdentity("aarch64", "Orin (nvgpu)", "8.7", torch_version="2.8.0", tensorrt_version="8.6.2",
                      jetson_module="NVIDIA Jetson AGX Orin Developer Kit", l4t_release="36.3.0")
CPU_BOX = DeviceIdentity("x86_64", torch_version="2.11.0")
AOTI_SM90 = EngineRequirements(arch="x86_64", gpu=True, compute_capability="9.0", torch_version="2.11.0+cu130")
TRT_SM90 = EngineRequirements(arch="x86_64", gpu=True, compute_capability="9.0", tensorrt_version="10.3.0")
PORTABLE = EngineRequirements()  # what the onnxruntime backend says of its engines

COMPATIBILITY = [
    # (engine needs, machine, expected reasons (substrings), case)
    (AOTI_SM90, H200, [], "same_machine_class"),
    (AOTI_SM90, ORIN, ["built for x86_64 and this machine is aarch64", "GPU generation sm90",
                       "PyTorch 2.11"], "arch_mismatch"),
    (EngineRequirements(arch="aarch64", gpu=True, compute_capability="9.0"),
     ORIN, ["GPU generation sm90 (compute capability 9.0) and this GPU is sm87"], "sm90_vs_sm87"),
    (EngineRequirements(torch_version="2.11.0"), ORIN, ["needs PyTorch 2.11 and this machine has 2.8.0"],
     "torch_2_11_vs_2_8"),
    (EngineRequirements(torch_version="2.11.0+cu130"), CPU_BOX, [], "torch_local_suffix_ignored"),
    (EngineRequirements(tensorrt_version="10.3.0"), ORIN, ["needs TensorRT 10.3 and this machine has 8.6.2"],
     "tensorrt_10_3_vs_8_6"),
    (TRT_SM90, CPU_BOX, ["runs on a CUDA GPU and this machine has none", "TensorRT 10.3 and this machine has none"],
     "cpu_only_machine_asked_for_gpu_engine"),
    (PORTABLE, H200, [], "portable_on_gpu"),
    (PORTABLE, ORIN, [], "portable_on_jetson"),
    (PORTABLE, CPU_BOX, [], "portable_on_cpu"),
]


@pytest.mark.parametrize(("needs", "here", "reasons"), [c[:3] for c in COMPATIBILITY],
                         ids=[c[3] for c in COMPATIBILITY])
def test_compatibility_decisions(needs: EngineRequirements, here: DeviceIdentity, reasons: list[str]) -> None:
    problems = compatibility_problems(needs, here)
    assert len(problems) == len(reasons), problems
    for problem, reason in zip(problems, reasons, strict=True):
        assert reason in problem
    if reasons:
        with pytest.raises(IncompatibleEngineError, match="cannot run on this machine"):
            check_compatible(needs, here)
    else:
        check_compatible(needs, here)


def test_backends_say_what_binds_their_engines() -> None:
    from compiler.backends import EngineMeta, get_backend

    def meta(backend: str, device: str, extra: dict[str, object]) -> EngineMeta:
        return EngineMeta("0" * 64, backend, "2.11.0+cu130", (), (), device, extra)

    ort = get_backend("onnxruntime", require_available=False)
    assert ort.requirements(meta("onnxruntime", "cpu", {}), H200) == PORTABLE
    aoti = get_backend("aotinductor", require_available=False)
    gpu_needs = aoti.requirements(meta("aotinductor", "cuda:0", {"compute_capability": "9.0"}), H200)
    assert compatibility_problems(gpu_needs, H200) == []
    assert any("has none" in p for p in compatibility_problems(gpu_needs, CPU_BOX))
    trt = get_backend("tensorrt", require_available=False)
    trt_needs = trt.requirements(
        meta("tensorrt", "cuda:0", {"compute_capability": [9, 0], "tensorrt_version": "10.3.0"}), H200
    )
    assert trt_needs == TRT_SM90
    assert len(compatibility_problems(trt_needs, ORIN)) == 3
