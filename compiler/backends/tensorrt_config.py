"""TensorRT builder settings, derived from a compile spec in plain Python.

Everything that decides *how* an engine is built (precision flags, workspace, optimization level,
the optimization profile from each input's min/opt/max, hardware and version compatibility, DLA,
the timing cache) is computed here without importing TensorRT, so it is tested on every machine;
``tensorrt.py`` only copies these values onto TensorRT's objects. Names of TensorRT enum members
(``BuilderFlag.FP16``, ``HardwareCompatibilityLevel.AMPERE_PLUS``) are kept as strings.

So are the TensorRT facts of whether a built plan can run somewhere else: ``engine_requirements``
states them in ``compiler.identity``'s terms, which make the decision for every backend, and
``portability_problems`` adds the release and hardware-compatibility rules those terms cannot
state.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from compiler.backends.base import TensorMeta
from compiler.errors import BackendError, SpecError
from compiler.identity import (
    DEVICE_CLASSES,
    DeviceIdentity,
    EngineRequirements,
    gpu_device_class,
)
from compiler.spec import CompileSpec

HardwareCompatibility = Literal["none", "ampere_plus", "same_compute_capability"]

# TensorRT keeps FP32 as the fallback for every layer, so a precision only adds flags. INT8 in
# TensorRT 10 comes from explicit Q/DQ nodes in the model; FP16 is allowed beside it so that the
# layers between quantized regions do not run in FP32.
PRECISION_FLAGS: dict[str, tuple[str, ...]] = {
    "fp32": (),
    "fp16": ("FP16",),
    "bf16": ("BF16",),
    "int8": ("INT8", "FP16"),
}

HARDWARE_COMPATIBILITY_LEVELS: dict[str, str] = {
    "none": "NONE",
    "ampere_plus": "AMPERE_PLUS",
    "same_compute_capability": "SAME_COMPUTE_CAPABILITY",
}

# TensorRT's default builder optimization level; 0 builds fastest, 5 searches the most tactics.
DEFAULT_OPTIMIZATION_LEVEL = 3
MAX_OPTIMIZATION_LEVEL = 5

# DLA cores execute only these precisions; anything else would silently fall back to the GPU.
DLA_PRECISIONS = ("fp16", "int8")

# TensorRT ``DataType`` member names -> torch dtype names (TensorMeta.dtype spelling).
TRT_TO_TORCH_DTYPE: dict[str, str] = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
    "UINT8": "uint8",
    "FP8": "float8_e4m3fn",
}

# Engine I/O dtypes. float64 crosses as float32: the parser casts DOUBLE down, and the runner
# casts at the boundary.
IO_DTYPES = frozenset(
    {"float32", "float64", "float16", "bfloat16", "int32", "int64", "int8", "uint8", "bool"}
)

@dataclass(frozen=True)
class ShapeRange:
    """One input of an optimization profile: the smallest, tuned-for and largest shapes."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @property
    def is_static(self) -> bool:
        return self.min == self.opt == self.max


@dataclass(frozen=True)
class BuilderSettings:
    """Everything ``tensorrt.py`` sets on the builder config, as plain values."""

    precision: str
    flags: tuple[str, ...]  # BuilderFlag members to set
    cleared_flags: tuple[str, ...]  # BuilderFlag members to clear (TensorRT sets TF32 by default)
    optimization_level: int
    profile: tuple[ShapeRange, ...]
    hardware_compatibility: str  # HardwareCompatibilityLevel member
    workspace_bytes: int | None = None  # None: TensorRT's default (the device's memory)
    device_index: int = 0
    dla_core: int | None = None
    timing_cache: str | None = None
    version_compatible: bool = False

    def shape_range(self, name: str) -> ShapeRange | None:
        return next((r for r in self.profile if r.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["flags"] = list(self.flags)
        data["cleared_flags"] = list(self.cleared_flags)
        data["profile"] = [
            {"name": r.name, "min": list(r.min), "opt": list(r.opt), "max": list(r.max)}
            for r in self.profile
        ]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BuilderSettings:
        return cls(
            precision=data["precision"],
            flags=tuple(data["flags"]),
            cleared_flags=tuple(data["cleared_flags"]),
            optimization_level=int(data["optimization_level"]),
            profile=tuple(
                ShapeRange(r["name"], tuple(r["min"]), tuple(r["opt"]), tuple(r["max"]))
                for r in data["profile"]
            ),
            hardware_compatibility=data["hardware_compatibility"],
            workspace_bytes=data.get("workspace_bytes"),
            device_index=int(data.get("device_index", 0)),
            dla_core=data.get("dla_core"),
            timing_cache=data.get("timing_cache"),
            version_compatible=bool(data.get("version_compatible", False)),
        )


# ---------------------------------------------------------------------------------- derivation
def derive_settings(
    spec: CompileSpec,
    inputs: Sequence[TensorMeta],
    *,
    workspace_bytes: int | None = None,
    optimization_level: int = DEFAULT_OPTIMIZATION_LEVEL,
    timing_cache: str | os.PathLike[str] | None = None,
    hardware_compatibility: HardwareCompatibility = "none",
    version_compatible: bool = False,
    tf32: bool = False,
) -> BuilderSettings:
    """The builder settings for ``spec`` and the engine's ``inputs``.

    ``tf32`` is off by default because fp32 engines are validated against eager PyTorch, which
    computes fp32 matmuls and convolutions in full precision by default.
    Raises ``SpecError`` naming the key when the spec asks for something TensorRT cannot build."""
    device_index, dla_core = _parse_device(spec.device)
    if dla_core is not None and spec.precision not in DLA_PRECISIONS:
        raise SpecError(
            f"spec: precision: DLA runs {' or '.join(DLA_PRECISIONS)}, not {spec.precision}; "
            f"set precision: fp16 for device {spec.device}"
        )
    if workspace_bytes is not None and workspace_bytes <= 0:
        raise SpecError(
            f"spec: workspace: must be a positive number of bytes, not {workspace_bytes}"
        )
    if not 0 <= optimization_level <= MAX_OPTIMIZATION_LEVEL:
        raise SpecError(
            f"spec: optimization_level: must be between 0 and {MAX_OPTIMIZATION_LEVEL}, not {optimization_level}"
        )
    if hardware_compatibility not in HARDWARE_COMPATIBILITY_LEVELS:
        raise SpecError(
            f"spec: hardware_compatibility: {hardware_compatibility!r} is not one of "
            f"{', '.join(HARDWARE_COMPATIBILITY_LEVELS)}"
        )
    if hardware_compatibility != "none" and dla_core is not None:
        raise SpecError(
            "spec: hardware_compatibility: DLA engines are built for one Jetson module; "
            "use hardware_compatibility: none with a dla device"
        )

    flags = list(PRECISION_FLAGS[spec.precision])
    if version_compatible:
        # The plan embeds the lean runtime that executes it (no EXCLUDE_LEAN_RUNTIME), so the
        # loader needs nothing but a newer TensorRT.
        flags.append("VERSION_COMPATIBLE")
    if dla_core is not None:
        # Layers DLA cannot run (and every layer with dynamic shapes) go to the GPU instead of
        # failing the build.
        flags.append("GPU_FALLBACK")
    cleared = () if tf32 else ("TF32",)

    for meta in inputs:
        if meta.dtype not in IO_DTYPES:
            raise SpecError(
                f"spec: inputs: {meta.name} has dtype {meta.dtype}, which TensorRT engines cannot take; "
                f"use one of {', '.join(sorted(IO_DTYPES))}"
            )

    return BuilderSettings(
        precision=spec.precision,
        flags=tuple(flags),
        cleared_flags=cleared,
        optimization_level=optimization_level,
        profile=derive_profile(inputs),
        hardware_compatibility=HARDWARE_COMPATIBILITY_LEVELS[hardware_compatibility],
        workspace_bytes=workspace_bytes,
        device_index=device_index,
        dla_core=dla_core,
        timing_cache=os.fspath(timing_cache) if timing_cache is not None else None,
        version_compatible=version_compatible,
    )


def _parse_device(device: str) -> tuple[int, int | None]:
    """``cuda:1`` -> (1, None); ``dla:0`` -> (0, 0). DLA engines are built on GPU 0, which is
    the only GPU a Jetson has."""
    kind, _, index = device.partition(":")
    if kind == "cuda":
        return int(index or 0), None
    if kind == "dla":
        return 0, int(index or 0)
    raise SpecError(
        f"spec: device: the tensorrt backend builds for cuda[:N] or dla[:N], not {device}"
    )


def default_opt(lo: Sequence[int], hi: Sequence[int]) -> tuple[int, ...]:
    """The shape a profile tunes for when the spec gives none: 1 where the range allows it
    (batch 1 is the latency case), else the smallest size (the same rule as the spec's)."""
    return tuple(1 if a <= 1 <= b else a for a, b in zip(lo, hi, strict=True))


def derive_profile(inputs: Sequence[TensorMeta]) -> tuple[ShapeRange, ...]:
    """One optimization profile covering every input's compiled range."""
    return tuple(_shape_range(meta) for meta in inputs)


def _shape_range(meta: TensorMeta) -> ShapeRange:
    where = f"spec: inputs: {meta.name}"
    if not meta.min and not meta.max:
        symbols = [d for d in meta.shape if not isinstance(d, int)]
        if symbols:
            raise SpecError(
                f"{where}: dimensions {', '.join(map(str, symbols))} are dynamic but no range was given; "
                "set min and max for this input"
            )
        static = tuple(int(d) for d in meta.shape)
        return ShapeRange(meta.name, static, static, static)
    if not meta.min or not meta.max:
        raise SpecError(f"{where}: a dynamic input needs both min and max")
    lo, hi = tuple(meta.min), tuple(meta.max)
    opt = tuple(meta.opt) if meta.opt else default_opt(lo, hi)
    for key, dims in (("min", lo), ("opt", opt), ("max", hi)):
        if len(dims) != len(meta.shape):
            raise SpecError(
                f"{where}: {key} has rank {len(dims)} but the input has rank {len(meta.shape)}"
            )
    for axis, (a, o, b, dim) in enumerate(zip(lo, opt, hi, meta.shape, strict=True)):
        if not 0 <= a <= o <= b:
            raise SpecError(f"{where}: axis {axis} needs 0 <= min <= opt <= max, got {a}, {o}, {b}")
        if isinstance(dim, int) and not a == b == dim:
            raise SpecError(
                f"{where}: axis {axis} has the fixed size {dim} in the program, but the range is [{a}, {b}]"
            )
    return ShapeRange(meta.name, lo, opt, hi)


def check_input_shape(shape_range: ShapeRange, shape: Sequence[int]) -> str | None:
    """Why ``shape`` cannot run on an engine built for ``shape_range`` (None when it can)."""
    if len(shape) != len(shape_range.min):
        return f"input {shape_range.name} has rank {len(shape)}, but the engine takes rank {len(shape_range.min)}"
    for axis, (size, lo, hi) in enumerate(
        zip(shape, shape_range.min, shape_range.max, strict=True)
    ):
        if not lo <= size <= hi:
            return (
                f"input {shape_range.name} has size {size} on axis {axis}, outside the compiled range "
                f"[{lo}, {hi}]; recompile with a wider min/max for this input"
            )
    return None


# ---------------------------------------------------------------------------- devices, versions
def device_class(major: int, minor: int) -> str:
    """The farm's name for a GPU family, from ``compiler.identity``'s one table: ``orin`` for
    Jetson Orin (8.7), whose capability no discrete GPU shares, else ``sm90`` for an H100."""
    capability = f"{major}.{minor}"
    integrated = next(
        (c.name for c in DEVICE_CLASSES.values() if c.arch and c.compute_capability == capability),
        None,
    )
    return integrated or gpu_device_class(capability)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


def engine_requirements(extra: Mapping[str, Any], arch: str) -> EngineRequirements:
    """What a plan built with ``extra`` (the build metadata) needs, in the terms that
    ``compiler.identity`` compares for every backend: the architecture, a GPU, its compute
    capability unless the plan is hardware-compatible, and the TensorRT release unless the plan
    is version-compatible. ``portability_problems`` adds the rules those terms cannot state."""
    settings = extra.get("settings") or {}
    capability = extra.get("compute_capability")
    level = settings.get("hardware_compatibility", "NONE")
    return EngineRequirements(
        arch=arch,
        gpu=True,
        # AMPERE_PLUS runs on any GPU from 8.0 on; NONE and SAME_COMPUTE_CAPABILITY on the
        # capability that built it.
        compute_capability=(
            f"{int(capability[0])}.{int(capability[1])}"
            if capability and level != "AMPERE_PLUS"
            else None
        ),
        tensorrt_version=(
            None if settings.get("version_compatible") else extra.get("tensorrt_version") or None
        ),
    )


def portability_problems(extra: Mapping[str, Any], here: DeviceIdentity) -> list[str]:
    """The TensorRT rules that ``EngineRequirements`` cannot state, checked after
    ``compiler.identity.compatibility_problems`` (so a difference is reported once):

    - a standard plan runs only on the TensorRT release that built it, to the patch and build
      (identity compares major.minor);
    - a version-compatible plan runs on that release and later ones of the same major version;
    - an AMPERE_PLUS plan runs on compute capability 8.0 and above."""
    settings = extra.get("settings") or {}
    problems = []
    built_version = str(extra.get("tensorrt_version") or "")
    here_version = here.tensorrt_version
    if built_version and here_version:
        built, have = _version_tuple(built_version), _version_tuple(here_version)
        if settings.get("version_compatible"):
            if built[:1] != have[:1] or have < built:
                problems.append(
                    f"it was built version-compatible with TensorRT {built_version}, so it runs on "
                    f"TensorRT {built[0]}.x from {built_version} on, and this machine has {here_version}"
                )
        elif built[:2] == have[:2] and built != have:
            problems.append(
                f"it was built with TensorRT {built_version} and this machine has {here_version} "
                "(a plan needs the exact release; rebuild it here, or build with version_compatible)"
            )
    here_capability = here.compute_capability
    if (
        settings.get("hardware_compatibility") == "AMPERE_PLUS"
        and here_capability
        and _version_tuple(here_capability)[:2] < (8, 0)
    ):
        problems.append(
            "it was built hardware-compatible for Ampere and newer GPUs (compute capability "
            f"8.0+) and this GPU is {gpu_device_class(here_capability)}"
        )
    return problems


# ------------------------------------------------------------------------------- timing cache
def read_timing_cache(path: str | os.PathLike[str]) -> bytes:
    """The cache's bytes, or empty bytes when there is none yet (TensorRT starts a fresh one)."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise BackendError(
            f"cannot read the TensorRT timing cache {path}: {exc.strerror}"
        ) from None


def write_timing_cache(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace the cache atomically: builds on several workers may share one cache file, and a
    reader must never see half a cache."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise BackendError(
            f"cannot write the TensorRT timing cache {path}: {exc.strerror}"
        ) from None
