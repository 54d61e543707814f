"""What this machine can build: architecture, CPU, GPU and compute capability, Jetson, backends.

Engines are specific to the machine that builds them, so a worker subscribes only to the queues
of the targets it matches. Everything is detected at start-up; ``--arch`` and ``--device-class``
override detection (to simulate a target in tests, or to pin a worker by hand).
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.routing import normalize_arch, normalize_device_class, worker_queues

# Jetson modules by the words NVIDIA puts in the device-tree model string, most specific first.
_JETSON_FAMILIES: tuple[tuple[str, str], ...] = (
    ("thor", "thor"),
    ("orin", "orin"),
    ("xavier", "xavier"),
    ("tx2", "tx2"),
    ("nano", "nano"),
)


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "9.0"

    @property
    def device_class(self) -> str:
        """``sm90`` for compute capability 9.0: TensorRT plans are tied to this."""
        return "sm" + self.compute_capability.replace(".", "")


@dataclass(frozen=True)
class Capabilities:
    arch: str
    cpu: str
    cpu_count: int
    gpu: GpuInfo | None
    jetson: str | None  # device-tree model string, e.g. "NVIDIA Jetson AGX Orin Developer Kit"
    device_class: str | None
    backends: dict[str, str] = field(default_factory=dict)

    @property
    def queues(self) -> list[str]:
        return worker_queues(self.arch, self.device_class)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["queues"] = self.queues
        return data


def detect_arch() -> str:
    return normalize_arch(platform.machine() or "unknown")


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


def detect_jetson(root: Path = Path("/")) -> str | None:
    """The board's model string on a Jetson (L4T), else None."""
    model = ""
    for candidate in ("proc/device-tree/model", "sys/firmware/devicetree/base/model"):
        try:
            model = (root / candidate).read_bytes().rstrip(b"\x00").decode(errors="replace").strip()
        except OSError:
            continue
        if model:
            break
    is_tegra = (root / "etc/nv_tegra_release").exists()
    if "jetson" in model.lower() or (is_tegra and model):
        return model
    if is_tegra:
        return "NVIDIA Jetson (L4T)"
    return None


def jetson_device_class(model: str) -> str:
    lowered = model.lower()
    for word, device_class in _JETSON_FAMILIES:
        if word in lowered:
            return device_class
    return "jetson"


def detect_gpu() -> GpuInfo | None:
    """The first CUDA device through torch, or None without CUDA (or without torch)."""
    try:
        import torch
    except ImportError:
        return None
    try:
        if not torch.cuda.is_available():
            return None
        major, minor = torch.cuda.get_device_capability(0)
        return GpuInfo(name=torch.cuda.get_device_name(0), compute_capability=f"{major}.{minor}")
    except (RuntimeError, AssertionError):
        # A broken driver install reports available but fails to query: build CPU engines then.
        return None


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
    gpu_probe: Callable[[], GpuInfo | None] = detect_gpu,
    backend_probe: Callable[[], dict[str, str]] = detect_backends,
) -> Capabilities:
    """Detect this machine's capabilities; ``arch``/``device_class`` of None or "auto" detect.

    The device class is the Jetson family on a Jetson (its integrated GPU gets its own engines),
    else ``sm<major><minor>`` of the first CUDA GPU, else none (CPU-only worker).
    """
    resolved_arch = detect_arch() if arch in (None, "auto") else normalize_arch(str(arch))
    jetson = detect_jetson(root)
    gpu = gpu_probe()
    if device_class in (None, "auto"):
        if jetson is not None:
            resolved_class: str | None = jetson_device_class(jetson)
        elif gpu is not None:
            resolved_class = gpu.device_class
        else:
            resolved_class = None
    else:
        resolved_class = normalize_device_class(device_class)
    return Capabilities(
        arch=resolved_arch,
        cpu=detect_cpu(root),
        cpu_count=os.cpu_count() or 1,
        gpu=gpu,
        jetson=jetson,
        device_class=resolved_class,
        backends=backend_probe(),
    )
