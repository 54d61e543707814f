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

import functools
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
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
    dla_cores: int = 0  # NVDLA engines next to the GPU (Jetson Xavier and Orin)

    def capability_at_least(self, major: int, minor: int = 0) -> bool:
        have = tuple(int(part) for part in self.compute_capability.split("."))
        return have >= (major, minor)


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
        DeviceClass("xavier", "7.2", "Jetson AGX Xavier / Xavier NX", "aarch64", dla_cores=2),
        DeviceClass("orin", "8.7", "Jetson AGX Orin / Orin NX / Orin Nano", "aarch64", dla_cores=2),
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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineRequirements:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def major_minor(version: str | None) -> str | None:
    """``2.11`` for ``2.11.0+cu130``: the part of a version that engines are bound to."""
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
    for library, needed, have in (
        ("PyTorch", needs.torch_version, here.torch_version),
        ("TensorRT", needs.tensorrt_version, here.tensorrt_version),
    ):
        if needed is not None and major_minor(have) != major_minor(needed):
            problems.append(f"it needs {library} {major_minor(needed)} and this machine has {have or 'none'}")
    return problems


def check_compatible(needs: EngineRequirements, here: DeviceIdentity, what: str = "the engine") -> None:
    problems = compatibility_problems(needs, here)
    if problems:
        raise IncompatibleEngineError(
            f"{what} cannot run on this machine: {'; '.join(problems)} (force to load it anyway)"
        )


# ---------------------------------------------------------------------------------- detection
#
# Detection never initializes CUDA in the calling process. A Celery prefork parent that did would
# hand every forked child a CUDA context it cannot use ("Cannot re-initialize CUDA in forked
# subprocess"), so the GPU is asked about through nvidia-smi (its own process), torch only for
# its version strings, and TensorRT only through its package metadata.

#: Runs a command and returns its standard output, or None when it is missing or fails.
Runner = Callable[[Sequence[str]], str | None]

_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}

NVIDIA_SMI_QUERY = ("nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader")
NVIDIA_SMI_OLD_QUERY = ("nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader")

# Distributions of TensorRT's Python bindings (pip); JetPack installs them as Debian packages.
_TENSORRT_DISTRIBUTIONS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11", "tensorrt-libs")
_TENSORRT_DEB_PACKAGES = ("tensorrt", "python3-libnvinfer", "libnvinfer10", "libnvinfer8")


@dataclass(frozen=True)
class GpuRecord:
    """One line of ``nvidia-smi --query-gpu=name,compute_cap,driver_version``."""

    name: str
    compute_capability: str | None  # None where nvidia-smi says [N/A] (Jetson)
    driver_version: str | None


def run_command(command: Sequence[str], timeout: float = 20.0) -> str | None:
    """The default Runner: a subprocess with a timeout, None on any failure."""
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _known(value: str) -> str | None:
    value = value.strip()
    return None if not value or value.startswith("[") or value.upper() in ("N/A", "NOT SUPPORTED") else value


def parse_nvidia_smi_query(text: str, with_capability: bool = True) -> list[GpuRecord]:
    """GPUs from ``nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader``
    (``with_capability=False``: from ``--query-gpu=name,driver_version``, for a driver too old to
    know ``compute_cap``); lines without the fields and a name are skipped."""
    gpus = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if not with_capability and len(fields) == 2:
            fields.insert(1, "[N/A]")
        if len(fields) != 3 or not _known(fields[0]):
            continue
        name, capability, driver = fields[0], _known(fields[1]), _known(fields[2])
        if capability is not None and not re.fullmatch(r"\d+\.\d+", capability):
            continue
        gpus.append(GpuRecord(name, capability, driver))
    return gpus


def parse_nvidia_smi_header(text: str) -> tuple[str | None, str | None]:
    """(driver version, CUDA version) from plain ``nvidia-smi``'s banner
    ("Driver Version: 580.159.04     CUDA Version: 13.0")."""
    driver = re.search(r"Driver Version:\s*([0-9][0-9.]*)", text)
    cuda = re.search(r"CUDA Version:\s*([0-9][0-9.]*)", text)
    return (driver.group(1) if driver else None, cuda.group(1) if cuda else None)


def parse_tegra_release(text: str) -> str | None:
    """The L4T release from ``/etc/nv_tegra_release``:
    "# R36 (release), REVISION: 3.0, GCID: ..." is "36.3.0"."""
    match = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)(?:\.(\d+))?", text)
    if match is None:
        return None
    major, minor, patch = match.group(1), match.group(2), match.group(3) or "0"
    return f"{int(major)}.{int(minor)}.{int(patch)}"


def canonical_arch(name: str) -> str:
    """``x86_64`` for ``AMD64``, ``aarch64`` for ``arm64``: the spelling engines record."""
    key = name.strip().lower()
    return _ARCH_ALIASES.get(key, key)


def machine_arch() -> str:
    """This machine's CPU architecture in the farm's spelling (``x86_64``, ``aarch64``)."""
    return canonical_arch(platform.machine() or "unknown")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().replace(b"\x00", b"").decode(errors="replace").strip()
    except OSError:
        return None


def detect_jetson_module(root: Path = Path("/")) -> str | None:
    """The board's model string on a Jetson (L4T), else None."""
    model = ""
    for candidate in ("proc/device-tree/model", "sys/firmware/devicetree/base/model"):
        model = _read_text(root / candidate) or ""
        if model:
            break
    is_tegra = (root / "etc/nv_tegra_release").exists()
    if "jetson" in model.lower() or (is_tegra and model):
        return model
    if is_tegra:
        return "NVIDIA Jetson (L4T)"
    return None


def _visible_gpu(gpus: list[GpuRecord]) -> GpuRecord | None:
    """The GPU that CUDA calls device 0 under ``CUDA_VISIBLE_DEVICES`` (an index list; UUIDs and
    names keep nvidia-smi's first), or None when that variable hides every GPU."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return gpus[0] if gpus else None
    first = visible.split(",")[0].strip()
    if first == "" or first.startswith("-"):
        return None
    if first.isdigit():
        index = int(first)
        return gpus[index] if index < len(gpus) else None
    return gpus[0] if gpus else None


def _torch_versions() -> tuple[str | None, str | None]:
    try:
        import torch  # importing torch does not initialize CUDA; torch.cuda.* calls would
    except ImportError:
        return None, None
    return str(torch.__version__), (str(torch.version.cuda) if torch.version.cuda else None)


def _tensorrt_version(root: Path) -> str | None:
    for name in _TENSORRT_DISTRIBUTIONS:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    status = _read_text(root / "var/lib/dpkg/status")
    if status:
        for package in _TENSORRT_DEB_PACKAGES:
            match = re.search(
                rf"^Package: {re.escape(package)}\n(?:(?!\n\n).)*?^Version: (\d+(?:\.\d+)+)",
                status,
                re.MULTILINE | re.DOTALL,
            )
            if match:
                return match.group(1)
    return None


# Runs in a spawned interpreter, so the CUDA context it creates dies with it.
_CAPABILITY_PROBE = (
    "import torch; c = torch.cuda.get_device_capability(0); print(f'{c[0]}.{c[1]}')"
)


def detect_identity(root: Path = Path("/"), run: Runner = run_command) -> DeviceIdentity:
    """This machine's identity, without initializing CUDA here (see the section comment).

    ``root`` and ``run`` are the file system and the command runner: tests give recorded ones.
    """
    jetson = detect_jetson_module(root)
    l4t = parse_tegra_release(_read_text(root / "etc/nv_tegra_release") or "") if jetson else None
    query = run(NVIDIA_SMI_QUERY)
    if query is not None:
        gpus = parse_nvidia_smi_query(query)
    else:
        older = run(NVIDIA_SMI_OLD_QUERY)
        gpus = parse_nvidia_smi_query(older, with_capability=False) if older is not None else []
    header_driver = cuda = None
    if gpus or jetson:
        header = run(("nvidia-smi",))
        if header is not None:
            header_driver, cuda = parse_nvidia_smi_header(header)
    gpu = _visible_gpu(gpus)
    name = gpu.name if gpu else None
    capability = gpu.compute_capability if gpu else None
    driver = (gpu.driver_version if gpu else None) or header_driver
    if jetson is not None and capability is None:
        # Jetsons answer few nvidia-smi queries; the module's family fixes its GPU.
        family = DEVICE_CLASSES.get(jetson_device_class(jetson))
        capability = family.compute_capability if family else None
        name = name or (f"{jetson} integrated GPU" if family else None)
    elif gpu is not None and capability is None:
        # An nvidia-smi too old for compute_cap: ask torch in a child process.
        probed = (run((sys.executable, "-c", _CAPABILITY_PROBE)) or "").strip()
        capability = probed if re.fullmatch(r"\d+\.\d+", probed) else None
    torch_version, torch_cuda = _torch_versions()
    extra: dict[str, Any] = {}
    if len(gpus) > 1:
        extra["gpu_count"] = len(gpus)
    return DeviceIdentity(
        arch=machine_arch(),
        gpu_name=name,
        compute_capability=capability,
        driver_version=driver,
        cuda_version=cuda,
        torch_version=torch_version,
        torch_cuda_version=torch_cuda,
        tensorrt_version=_tensorrt_version(root),
        jetson_module=jetson,
        l4t_release=l4t,
        extra=extra,
    )


@functools.cache
def local_identity() -> DeviceIdentity:
    """``detect_identity()`` of this machine, detected once per process."""
    return detect_identity()
