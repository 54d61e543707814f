import platform
from pathlib import Path

import pytest

from orchestrator.routing import RoutingError
from workers.capabilities import GpuInfo, detect, detect_cpu, detect_jetson, jetson_device_class


def _no_gpu():
    return None


def _backends():
    return {"onnxruntime": "1.0"}


def _fake_root(tmp_path: Path, model: str | None = None, tegra: bool = False, cpu: str = "") -> Path:
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    if model is not None:
        (tmp_path / "proc/device-tree/model").write_bytes(model.encode() + b"\x00")
    if tegra:
        (tmp_path / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 3.0\n")
    (tmp_path / "proc/cpuinfo").write_text(cpu)
    return tmp_path


def test_cpu_only_machine_serves_its_architecture_queue(tmp_path):
    root = _fake_root(tmp_path, cpu="model name\t: Test CPU @ 2GHz\n")
    caps = detect(root=root, gpu_probe=_no_gpu, backend_probe=_backends)
    expected = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
    assert caps.arch == expected[platform.machine().lower()]
    assert caps.cpu == "Test CPU @ 2GHz"
    assert caps.gpu is None and caps.jetson is None and caps.device_class is None
    assert caps.queues == [f"compile.{caps.arch}"]
    assert caps.backends == {"onnxruntime": "1.0"}


def test_gpu_compute_capability_becomes_sm_device_class(tmp_path):
    root = _fake_root(tmp_path)
    caps = detect("x86_64", root=root, gpu_probe=lambda: GpuInfo("NVIDIA H100", "9.0"),
                  backend_probe=_backends)
    assert caps.device_class == "sm90"
    assert caps.queues == ["compile.x86_64", "compile.x86_64.sm90"]
    assert caps.to_dict()["gpu"] == {"name": "NVIDIA H100", "compute_capability": "9.0"}


def test_jetson_is_detected_from_device_tree_and_named_by_family(tmp_path):
    root = _fake_root(tmp_path, model="NVIDIA Jetson AGX Orin Developer Kit", tegra=True)
    assert detect_jetson(root) == "NVIDIA Jetson AGX Orin Developer Kit"
    caps = detect("aarch64", root=root, gpu_probe=lambda: GpuInfo("Orin", "8.7"),
                  backend_probe=_backends)
    # The Jetson family wins over sm87: an Orin engine is built for that SoC, not any sm87.
    assert caps.device_class == "orin"
    assert caps.queues == ["compile.aarch64", "compile.aarch64.orin"]


def test_tegra_release_file_alone_marks_a_jetson(tmp_path):
    root = _fake_root(tmp_path, tegra=True)
    assert detect_jetson(root) == "NVIDIA Jetson (L4T)"
    assert jetson_device_class("NVIDIA Jetson Xavier NX") == "xavier"
    assert jetson_device_class("NVIDIA Jetson (L4T)") == "jetson"


def test_non_jetson_board_is_not_a_jetson(tmp_path):
    root = _fake_root(tmp_path, model="Raspberry Pi 4 Model B")
    assert detect_jetson(root) is None


def test_overrides_simulate_another_target(tmp_path):
    root = _fake_root(tmp_path)
    caps = detect("arm64", "none", root=root, gpu_probe=lambda: GpuInfo("X", "8.0"),
                  backend_probe=_backends)
    assert caps.arch == "aarch64" and caps.device_class is None
    assert caps.queues == ["compile.aarch64"]
    with pytest.raises(RoutingError):
        detect("mips", root=root, gpu_probe=_no_gpu, backend_probe=_backends)


def test_cpu_name_falls_back_when_proc_is_missing(tmp_path):
    assert detect_cpu(tmp_path / "nothing")


def test_real_detection_on_this_machine_lists_onnxruntime():
    caps = detect()
    assert caps.backends.get("onnxruntime")
    assert caps.queues[0] == f"compile.{caps.arch}"
