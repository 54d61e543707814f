import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from compiler.identity import (
    NVIDIA_SMI_QUERY,
    DeviceIdentity,
    detect_identity,
    detect_jetson_module,
)
from orchestrator.routing import RoutingError
from workers.capabilities import detect, detect_cpu

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests/compiler/data/identity"

H200 = DeviceIdentity("x86_64", "NVIDIA H200", "9.0", "580.159.04", "13.0", "2.11.0+cu130", "13.0")
ORIN = DeviceIdentity("aarch64", "Orin (nvgpu)", "8.7", jetson_module="NVIDIA Jetson AGX Orin Developer Kit",
                      l4t_release="36.3.0")


def _backends():
    return {"onnxruntime": "1.0"}


def _as(identity: DeviceIdentity):
    return lambda root: identity


def _fake_root(tmp_path: Path, model: str | None = None, tegra: bool = False, cpu: str = "") -> Path:
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    if model is not None:
        (tmp_path / "proc/device-tree/model").write_bytes(model.encode() + b"\x00")
    if tegra:
        shutil.copy(DATA / "orin.nv_tegra_release", tmp_path / "etc/nv_tegra_release")
    (tmp_path / "proc/cpuinfo").write_text(cpu)
    return tmp_path


def _no_nvidia_smi(command: Sequence[str]) -> str | None:
    return None


def test_cpu_only_machine_serves_its_architecture_queue(tmp_path):
    root = _fake_root(tmp_path, cpu="model name\t: Test CPU @ 2GHz\n")
    caps = detect(root=root, identity_probe=lambda r: detect_identity(r, _no_nvidia_smi), backend_probe=_backends)
    expected = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
    assert caps.arch == expected[platform.machine().lower()]
    assert caps.cpu == "Test CPU @ 2GHz"
    assert caps.gpu is None and caps.jetson is None and caps.device_class is None
    assert caps.queues == [f"compile.{caps.arch}"]
    assert caps.backends == {"onnxruntime": "1.0"}
    assert caps.identity["arch"] == caps.arch and caps.identity["device_class"] is None


def test_worker_on_an_sm90_identity_serves_x86_64_and_x86_64_sm90(tmp_path):
    caps = detect(root=_fake_root(tmp_path), identity_probe=_as(H200), backend_probe=_backends)
    assert caps.device_class == "sm90"
    assert caps.queues == ["compile.x86_64", "compile.x86_64.sm90"]
    data = caps.to_dict()
    assert data["gpu"] == {"name": "NVIDIA H200", "compute_capability": "9.0"}
    assert data["identity"] == H200.to_dict()
    assert data["identity"]["driver_version"] == "580.159.04" and data["identity"]["cuda_version"] == "13.0"


def test_recorded_h200_nvidia_smi_routes_to_the_sm90_queue(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    answers = {NVIDIA_SMI_QUERY: (DATA / "h200.query.txt").read_text(),
               ("nvidia-smi",): (DATA / "h200.header.txt").read_text()}
    caps = detect("x86_64", root=_fake_root(tmp_path),
                  identity_probe=lambda r: detect_identity(r, lambda c: answers.get(tuple(c))),
                  backend_probe=_backends)
    assert caps.queues == ["compile.x86_64", "compile.x86_64.sm90"]


def test_jetson_orin_identity_serves_aarch64_and_aarch64_orin(tmp_path):
    caps = detect(root=_fake_root(tmp_path), identity_probe=_as(ORIN), backend_probe=_backends)
    # The Jetson family wins over sm87: an Orin engine is built for that SoC, not any sm87.
    assert caps.device_class == "orin"
    assert caps.jetson == "NVIDIA Jetson AGX Orin Developer Kit"
    assert caps.queues == ["compile.aarch64", "compile.aarch64.orin"]
    assert caps.identity["l4t_release"] == "36.3.0"


def test_jetson_detected_from_the_board_files_without_nvidia_smi(tmp_path):
    root = _fake_root(tmp_path, model="NVIDIA Jetson AGX Orin Developer Kit", tegra=True)
    caps = detect("aarch64", root=root, identity_probe=lambda r: detect_identity(r, _no_nvidia_smi),
                  backend_probe=_backends)
    assert caps.device_class == "orin" and caps.gpu is not None and caps.gpu.compute_capability == "8.7"
    assert caps.queues == ["compile.aarch64", "compile.aarch64.orin"]


def test_tegra_release_file_alone_marks_a_jetson(tmp_path):
    root = _fake_root(tmp_path, tegra=True)
    assert detect_jetson_module(root) == "NVIDIA Jetson (L4T)"
    assert detect_identity(root, _no_nvidia_smi).device_class == "jetson"


def test_non_jetson_board_is_not_a_jetson(tmp_path):
    root = _fake_root(tmp_path, model="Raspberry Pi 4 Model B")
    assert detect_jetson_module(root) is None


def test_overrides_simulate_another_target(tmp_path):
    root = _fake_root(tmp_path)
    caps = detect("arm64", "none", root=root, identity_probe=_as(H200), backend_probe=_backends)
    assert caps.arch == "aarch64" and caps.device_class is None
    assert caps.queues == ["compile.aarch64"]
    assert caps.identity["arch"] == "x86_64"  # what the machine really is
    with pytest.raises(RoutingError):
        detect("mips", root=root, identity_probe=_as(H200), backend_probe=_backends)


def test_cpu_name_falls_back_when_proc_is_missing(tmp_path):
    assert detect_cpu(tmp_path / "nothing")


def test_real_detection_on_this_machine_lists_onnxruntime():
    caps = detect()
    assert caps.backends.get("onnxruntime")
    assert caps.queues[0] == f"compile.{caps.arch}"


# CUDA calls that initialize the driver or torch's CUDA state in this process. After any of
# them a forked Celery child cannot use the GPU ("Cannot re-initialize CUDA in forked subprocess").
_CUDA_ENTRY_POINTS = ("init", "_lazy_init", "is_available", "device_count", "get_device_capability",
                      "get_device_name", "get_device_properties", "current_device", "set_device",
                      "mem_get_info", "synchronize")


def test_detection_never_touches_cuda(tmp_path, monkeypatch):
    import torch

    def poisoned(name):
        def boom(*args, **kwargs):
            raise AssertionError(f"capability detection called torch.cuda.{name} in the worker process")

        return boom  # one function per name: torch._dynamo's rule table refuses shared objects

    for name in _CUDA_ENTRY_POINTS:
        monkeypatch.setattr(torch.cuda, name, poisoned(name))
    for name in ("_cuda_init", "_cuda_getDeviceCount"):
        if hasattr(torch._C, name):
            monkeypatch.setattr(torch._C, name, poisoned(name))
    answers = {NVIDIA_SMI_QUERY: (DATA / "h200.query.txt").read_text(),
               ("nvidia-smi",): (DATA / "h200.header.txt").read_text()}
    caps = detect(root=_fake_root(tmp_path), identity_probe=lambda r: detect_identity(r, lambda c: answers.get(tuple(c))))
    assert caps.device_class == "sm90" and caps.backends.get("onnxruntime")
    assert detect().arch == caps.arch  # the real probes too


_POISONED_PARENT = f"""
import torch
def poisoned(name):
    def boom(*args, **kwargs):
        raise SystemExit("the worker's parent process called torch.cuda." + name)
    return boom
for name in {_CUDA_ENTRY_POINTS!r}:
    setattr(torch.cuda, name, poisoned(name))
for name in ("_cuda_init", "_cuda_getDeviceCount"):
    if hasattr(torch._C, name):
        setattr(torch._C, name, poisoned(name))
from workers.startup import plan_worker
plan = plan_worker()
import workers.tasks  # what run_worker imports before the pool forks
print("queues", plan.queues, "backends", sorted(plan.capabilities.backends))
"""


def test_worker_start_up_path_never_touches_cuda_in_a_fresh_process():
    # A fresh interpreter: no cached probe answers from other tests hide a CUDA call.
    done = subprocess.run([sys.executable, "-c", _POISONED_PARENT], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "onnxruntime" in done.stdout


_DETECT_THEN_FORK = """
import multiprocessing, torch
from workers.capabilities import detect
from workers.startup import avoid_cuda_in_the_parent, check_fork_safe
avoid_cuda_in_the_parent()
caps = detect()
assert caps.device_class and caps.device_class.startswith("sm"), caps.identity
assert caps.queues[-1] == f"compile.{caps.arch}.{caps.device_class}", caps.queues
assert torch.cuda.is_available()  # asks NVML now: no CUDA initialized here
check_fork_safe("prefork")
def child(queue):
    queue.put(float((torch.ones(4, device="cuda") * 2).sum().item()))
context = multiprocessing.get_context("fork")  # what Celery's prefork pool does
queue = context.Queue()
process = context.Process(target=child, args=(queue,))
process.start()
process.join(120)
assert process.exitcode == 0 and queue.get(timeout=5) == 8.0
print("served", caps.queues, "forked child computed on", caps.identity["gpu_name"])
"""


@pytest.mark.gpu
def test_gpu_detected_in_the_parent_and_used_in_a_forked_child():
    if shutil.which("nvidia-smi") is None:
        pytest.skip("needs an NVIDIA GPU with nvidia-smi")
    # A fresh interpreter, because other GPU tests in this process may have initialized CUDA.
    done = subprocess.run([sys.executable, "-c", _DETECT_THEN_FORK], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "forked child computed on" in done.stdout


def test_worker_identity_is_the_one_its_engines_record_as_built_on():
    import compiler

    assert detect().identity == compiler.local_identity().to_dict()
