"""What a backend is: the one source of its facts, an engine builder, and a runtime for engines.

A backend says which form of partition it consumes (ONNX bytes, or an ATen FX graph), its spec
block, whether its engines are tied to the device that built them, what it refuses up front
(``check_spec``), which nodes it can run (op-support data that needs none of its libraries), and
what its engines need of the machine that loads them. Adding one is one module plus one line in
``compiler.backends.BACKENDS``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from pydantic import BaseModel
from torch import fx

from compiler.errors import BackendError
from compiler.identity import DeviceClass, DeviceIdentity, EngineRequirements

if TYPE_CHECKING:
    from compiler.spec import CompileSpec


@dataclass(frozen=True)
class TensorMeta:
    """One engine input or output. ``shape`` holds ints and symbolic expressions (strings such
    as ``"s0"`` or ``"2*s0"``) over the program's input symbols; ``min``/``opt``/``max`` are the
    concrete shapes at the ends and middle of the compiled ranges (TensorRT profiles use them)."""

    name: str
    dtype: str  # torch dtype name without the "torch." prefix
    shape: tuple[int | str, ...]
    min: tuple[int, ...] = ()
    opt: tuple[int, ...] = ()
    max: tuple[int, ...] = ()

    @property
    def torch_dtype(self) -> torch.dtype:
        dtype = getattr(torch, self.dtype)
        assert isinstance(dtype, torch.dtype)
        return dtype

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "min": list(self.min),
            "opt": list(self.opt),
            "max": list(self.max),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorMeta:
        return cls(
            data["name"],
            data["dtype"],
            tuple(data["shape"]),
            tuple(data.get("min", ())),
            tuple(data.get("opt", ())),
            tuple(data.get("max", ())),
        )


@dataclass(frozen=True)
class EngineMeta:
    engine_id: str  # sha256 of the engine bytes
    backend: str
    backend_version: str
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine_id": self.engine_id,
            "backend": self.backend,
            "backend_version": self.backend_version,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "device": self.device,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineMeta:
        return cls(
            engine_id=data["engine_id"],
            backend=data["backend"],
            backend_version=data["backend_version"],
            inputs=tuple(TensorMeta.from_dict(t) for t in data["inputs"]),
            outputs=tuple(TensorMeta.from_dict(t) for t in data["outputs"]),
            device=data.get("device", "cpu"),
            extra=dict(data.get("extra", {})),
        )


class EngineRunner(ABC):
    """A loaded engine. ``run`` takes and returns torch tensors in the engine's I/O order."""

    meta: EngineMeta

    @abstractmethod
    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]: ...

    def unchecked_cpu_run(self) -> Callable[[Sequence[torch.Tensor]], list[torch.Tensor]] | None:
        """``run`` for callers that have already checked that every input is a plain CPU
        tensor of the engine's dtype and shape, without grad; None where the engine does not
        run on the CPU. Small engines run in a few microseconds more than the call itself."""
        return None


@dataclass
class FxPartition:
    """An accelerated partition for backends that consume FX: an ATen graph whose placeholders
    are the engine's inputs (weights are attributes of ``graph_module``), example inputs at the
    ``opt`` shapes, and per input the dynamic axes as ``{axis: (symbol, min, max)}`` (max None
    for an unbounded range). For reduced precision, ``keep_fp32`` names graph nodes the accuracy
    gate asked to compute in fp32, and ``rank_samples`` (when the gate may retry) holds the
    engine's inputs captured from the program's data, to rank nodes by the error they add."""

    graph_module: fx.GraphModule
    example_inputs: list[torch.Tensor]
    dynamic_axes: list[dict[int, tuple[str, int, int | None]]]
    keep_fp32: tuple[str, ...] = ()
    rank_samples: list[list[torch.Tensor]] | None = None


@dataclass
class Calibration:
    """int8 calibration for one partition: the engine's inputs (by input name), captured by
    running the program in PyTorch on the calibration data; the ONNX nodes the accuracy gate
    asked to keep in fp32; and whether to rank nodes by the error they add (for the gate's
    retries)."""

    partition: str
    samples: list[dict[str, torch.Tensor]]
    keep_fp32: tuple[str, ...] = ()
    rank_nodes: bool = False


class Backend(ABC):
    name: str
    #: the form of partition ``build`` consumes: serialized ONNX bytes, or an FxPartition
    consumes: ClassVar[Literal["onnx", "fx"]] = "onnx"
    #: the pydantic model of this backend's spec block (the key is the backend's name), or None
    options: ClassVar[type[BaseModel] | None] = None
    #: whether the backend builds int8 from calibration data (``build_calibrated``)
    calibrates: ClassVar[bool] = False
    #: precisions whose engines can keep named nodes in fp32 and rank nodes by the error they
    #: add (``node_sensitivity`` in the engine metadata): the accuracy gate's retries use it
    keeps_fp32: ClassVar[frozenset[str]] = frozenset()
    #: whether engines may return outputs whose size depends on the values (nonzero, x[mask],
    #: unique): the runner then allocates such outputs from what the engine returns. Nodes whose
    #: shapes hold such sizes stay in PyTorch for backends that cannot.
    data_dependent_shapes: ClassVar[bool] = False

    @abstractmethod
    def available(self) -> bool:
        """Whether the backend's libraries import on this machine."""

    @abstractmethod
    def version(self) -> str | None: ...

    def unavailable_reason(self) -> str:
        return f"backend {self.name} is not installed"

    def check_spec(self, spec: CompileSpec) -> None:
        """Raise a BackendError when the backend cannot serve ``spec`` at all (precision,
        device); called before anything is compiled, on the machine that compiles, so it may
        also ask this machine's libraries. The default accepts every spec."""
        return None

    def check_target(self, spec: CompileSpec, arch: str, device_class: DeviceClass | None) -> None:
        """Raise a BackendError when ``spec`` can never be built for the target ``arch`` /
        ``device_class`` (None: any machine of ``arch``), judged from the spec and the
        device-class table alone, never from the machine asking (``submit`` runs this for
        targets it is not). Backends add their own rules; these hold for every backend."""
        if spec.device.startswith("dla"):
            if device_class is None or not device_class.dla_cores:
                where = f"device class {device_class.name} has none" if device_class else "give a Jetson --device-class"
                raise BackendError(f"device {spec.device} needs a target with DLA cores ({where}; xavier and orin have them)")
            index = int(spec.device.partition(":")[2] or 0)
            if index >= device_class.dla_cores:
                raise BackendError(
                    f"device {spec.device}: {device_class.name} has DLA cores 0..{device_class.dla_cores - 1}"
                )
        if device_class is not None and device_class.arch is not None and device_class.arch != arch:
            raise BackendError(f"device class {device_class.name} is an {device_class.arch} machine, not {arch}")

    def supports_dtype(self, dtype: torch.dtype, spec: CompileSpec) -> bool:
        """Whether engine tensors of ``dtype`` can cross into and out of this backend."""
        return True

    def device_tied(self, device: str) -> bool:
        """Whether engines built for ``device`` run only on the architecture and GPU generation
        that built them (then jobs need a device class)."""
        return False

    def requirements(self, meta: EngineMeta, built_on: DeviceIdentity) -> EngineRequirements:
        """What an engine needs of the machine that loads it. The default: nothing beyond the
        backend being installed (a portable engine)."""
        return EngineRequirements()

    def supported_onnx_ops(self, spec: CompileSpec) -> frozenset[str] | None:
        """ONNX op types (default domain) the backend can run for ``spec``; None means all.
        Asked of backends that consume ONNX."""
        return None

    def node_unsupported_reason(self, node: fx.Node, spec: CompileSpec) -> str | None:
        """Why this backend cannot run ``node`` (None when it can). Asked of backends that
        consume FX, after the user's own fallback choices."""
        return None

    @abstractmethod
    def build(
        self,
        partition: Any,
        spec: CompileSpec,
        inputs: Sequence[TensorMeta],
        outputs: Sequence[TensorMeta],
        *,
        whole_program: bool = True,
    ) -> tuple[bytes, dict[str, Any]]:
        """Build an engine from ``partition`` (ONNX bytes or an FxPartition, per ``consumes``);
        return its bytes and backend-specific metadata for the manifest.

        ``whole_program`` is False when the compiled program runs other work between this
        engine's calls (other engines, PyTorch fallback code), which a CPU backend sharing
        cores with that work should know about."""

    def build_calibrated(
        self,
        partition: Any,
        spec: CompileSpec,
        inputs: Sequence[TensorMeta],
        outputs: Sequence[TensorMeta],
        calibration: Calibration,
        *,
        whole_program: bool = True,
    ) -> tuple[bytes, dict[str, Any]]:
        """``build`` for int8 from calibration data; asked of backends that set ``calibrates``."""
        raise NotImplementedError(f"backend {self.name} does not calibrate")

    @abstractmethod
    def load(self, engine: bytes, meta: EngineMeta) -> EngineRunner: ...
