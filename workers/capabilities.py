"""What this machine can build: its device identity, CPU and backends, and so its queues.

Engines are specific to the machine that builds them, so a worker subscribes only to the queues
of the targets it matches. The identity (architecture, GPU and compute capability, driver, CUDA,
PyTorch and TensorRT versions, Jetson module and L4T release) comes from
``compiler.identity.detect_identity``, which never initializes CUDA in this process: a Celery
prefork parent that had would leave every forked compile unable to use the GPU. ``--arch`` and
``--device-class`` override detection (to simulate a target in tests, or to pin a worker).
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compiler.identity import DeviceIdentity, detect_identity, local_identity, machine_arch
from orchestrator.routing import normalize_arch, normalize_device_class, worker_queues


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "9.0"


@dataclass(frozen=True)
class Capabilities:
    arch: str
    cpu: str
    cpu_count: int
    gpu: GpuInfo | None
    jetson: str | None  # device-tree model string, e.g. "NVIDIA Jetson AGX Orin Developer Kit"
    device_class: str | None
    backends: dict[str, str] = field(default_factory=dict)
    #: DeviceIdentity.to_dict() of the machine as detected (overrides do not change it)
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def queues(self) -> list[str]:
        return worker_queues(self.arch, self.device_class)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["queues"] = self.queues
        return data


def detect_arch() -> str:
    return normalize_arch(machine_arch())


def detect_cpu(root: Path = Path("/")) -> str:
    """The CPU model name; falls back to the processor string where /proc is missing."""
    try:
        text = (root / "proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware", "CPU part"):
        match = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine() or "unknown"


def detect_machine(root: Path = Path("/")) -> DeviceIdentity:
    """This machine's identity; for the real root, the per-process one that compiled programs
    record as ``built_on`` (detected once, before the pool forks, and inherited by its children)."""
    return local_identity() if root == Path("/") else detect_identity(root)


def detect_backends() -> dict[str, str]:
    try:
        import compiler
    except ImportError:
        return {}
    return dict(compiler.backend_versions())


def detect(
    arch: str | None = None,
    device_class: str | None = None,
    *,
    root: Path = Path("/"),
    identity_probe: Callable[[Path], DeviceIdentity] = detect_machine,
    backend_probe: Callable[[], dict[str, str]] = detect_backends,
) -> Capabilities:
    """Detect this machine's capabilities; ``arch``/``device_class`` of None or "auto" detect.

    The device class is the identity's: the Jetson family on a Jetson (its integrated GPU gets
    its own engines), else ``sm<major><minor>`` of the GPU, else none (CPU-only worker).
    """
    identity = identity_probe(root)
    resolved_arch = normalize_arch(identity.arch if arch in (None, "auto") else str(arch))
    if device_class in (None, "auto"):
        resolved_class = normalize_device_class(identity.device_class)
    else:
        resolved_class = normalize_device_class(device_class)
    gpu = (
        GpuInfo(identity.gpu_name or "unknown GPU", identity.compute_capability)
        if identity.compute_capability is not None
        else None
    )
    return Capabilities(
        arch=resolved_arch,
        cpu=detect_cpu(root),
        cpu_count=os.cpu_count() or 1,
        gpu=gpu,
        jetson=identity.jetson_module,
        device_class=resolved_class,
        backends=backend_probe(),
        identity=identity.to_dict(),
    )
