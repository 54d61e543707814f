"""Device identity and engine compatibility: what a machine is, and whether an engine runs on it.

Engines are specific to what built them. A worker reports its identity; every compiled program
records the identity it was built on (``manifest["built_on"]``); ``compiler.load`` and
``orchestrate artifacts get`` compare an engine's requirements with the machine asking and refuse
with the reason (another architecture, another GPU generation, another PyTorch or TensorRT
version) unless forced. Which of those facts bind an engine is the backend's to say
(``Backend.requirements``); the comparison is this module's, for every backend.

The device-class table is the one place that names device classes: ``sm<major><minor>`` for a
discrete GPU's compute capability, and the Jetson families by their module names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from compiler.errors import CompilerError


class IncompatibleEngineError(CompilerError):
    """An engine that cannot run on this machine; ``force=True`` loads it anyway."""

    kind = "incompatible_engine"


@dataclass(frozen=True)
class DeviceClass:
    name: str  # the queue token: "sm90", "orin"
    compute_capability: str  # "9.0"
    description: str
    arch: str | None = None  # Jetson modules are aarch64 boards; discrete GPUs go in any host


#: The one table of device classes. Discrete GPUs are named by compute capability; Jetson
#: modules by family, because their integrated GPU and DLA cores get engines of their own.
DEVICE_CLASSES: dict[str, DeviceClass] = {
    c.name: c
    for c in (
        DeviceClass("sm70", "7.0", "Volta (V100)"),
        DeviceClass("sm75", "7.5", "Turing (T4, RTX 20xx)"),
        DeviceClass("sm80", "8.0", "Ampere (A100, A30)"),
        DeviceClass("sm86", "8.6", "Ampere (A10, A40, RTX 30xx)"),
        DeviceClass("sm89", "8.9", "Ada (L4, L40, RTX 40xx)"),
        DeviceClass("sm90", "9.0", "Hopper (H100, H200)"),
        DeviceClass("sm100", "10.0", "Blackwell (B200)"),
        DeviceClass("sm120", "12.0", "Blackwell (RTX 50xx)"),
        DeviceClass("nano", "5.3", "Jetson Nano", "aarch64"),
        DeviceClass("tx2", "6.2", "Jetson TX2", "aarch64"),
        DeviceClass("xavier", "7.2", "Jetson AGX Xavier / Xavier NX", "aarch64"),
        DeviceClass("orin", "8.7", "Jetson AGX Orin / Orin NX / Orin Nano", "aarch64"),
        DeviceClass("thor", "11.0", "Jetson Thor", "aarch64"),
    )
}

#: Jetson families by the words in the module's model string, most specific first.
JETSON_FAMILIES: tuple[tuple[str, str], ...] = (
    ("thor", "thor"),
    ("orin", "orin"),
    ("xavier", "xavier"),
    ("tx2", "tx2"),
    ("nano", "nano"),
)


def gpu_device_class(compute_capability: str) -> str:
    """``sm90`` for ``9.0``: the class of a discrete GPU."""
    major, _, minor = compute_capability.partition(".")
    return f"sm{int(major)}{int(minor or 0)}"


def jetson_device_class(module: str) -> str:
    lowered = module.lower()
    for word, device_class in JETSON_FAMILIES:
        if word in lowered:
            return device_class
    return "jetson"


@dataclass(frozen=True)
class DeviceIdentity:
    """What a machine is, as far as engines care. Every field but ``arch`` may be unknown."""

    arch: str
    gpu_name: str | None = None
    compute_capability: str | None = None  # "9.0"
    driver_version: str | None = None
    cuda_version: str | None = None  # the driver's CUDA version (nvidia-smi's "CUDA Version")
    torch_version: str | None = None
    torch_cuda_version: str | None = None  # the CUDA that torch was built with
    tensorrt_version: str | None = None
    jetson_module: str | None = None  # "NVIDIA Jetson AGX Orin Developer Kit"
    l4t_release: str | None = None  # "36.3.0"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def device_class(self) -> str | None:
        """The Jetson family on a Jetson, else ``sm<NN>`` of the GPU, else None (CPU only)."""
        if self.jetson_module is not None:
            return jetson_device_class(self.jetson_module)
        if self.compute_capability is not None:
            return gpu_device_class(self.compute_capability)
        return None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["device_class"] = self.device_class
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceIdentity:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class EngineRequirements:
    """What an engine needs of the machine that runs it; None means "anything"."""

    arch: str | None = None
    compute_capability: str | None = None
    gpu: bool = False
    torch_version: str | None = None  # "2.11": major.minor must match
    tensorrt_version: str | None = None  # "10.3": major.minor must match

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _major_minor(version: str | None) -> str | None:
    if not version:
        return None
    parts = version.split("+")[0].split(".")
    return ".".join(parts[:2])


def compatibility_problems(needs: EngineRequirements, here: DeviceIdentity) -> list[str]:
    """Why an engine with ``needs`` cannot run on ``here``; empty when it can."""
    problems = []
    if needs.arch is not None and needs.arch != here.arch:
        problems.append(f"it was built for {needs.arch} and this machine is {here.arch}")
    if needs.gpu and here.compute_capability is None:
        problems.append("it runs on a CUDA GPU and this machine has none")
    elif (
        needs.compute_capability is not None
        and here.compute_capability is not None
        and needs.compute_capability != here.compute_capability
    ):
        problems.append(
            f"it was built for GPU generation {gpu_device_class(needs.compute_capability)} "
            f"(compute capability {needs.compute_capability}) and this GPU is "
            f"{gpu_device_class(here.compute_capability)}"
        )
    if needs.torch_version is not None:
        have = _major_minor(here.torch_version)
        if have != _major_minor(needs.torch_version):
            problems.append(
                f"it needs PyTorch {_major_minor(needs.torch_version)} and this machine has "
                f"{here.torch_version or 'none'}"
            )
    if needs.tensorrt_version is not None:
        have = _major_minor(here.tensorrt_version)
        if have != _major_minor(needs.tensorrt_version):
            problems.append(
                f"it needs TensorRT {_major_minor(needs.tensorrt_version)} and this machine has "
                f"{here.tensorrt_version or 'none'}"
            )
    return problems


def check_compatible(needs: EngineRequirements, here: DeviceIdentity, what: str = "the engine") -> None:
    problems = compatibility_problems(needs, here)
    if problems:
        raise IncompatibleEngineError(
            f"{what} cannot run on this machine: {'; '.join(problems)} (force to load it anyway)"
        )
