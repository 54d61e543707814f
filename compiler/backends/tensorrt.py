"""The production GPU backend: TensorRT 10, through its ONNX parser.

build: ONNX bytes -> ``trt.OnnxParser`` -> builder config (from ``tensorrt_config``) ->
``build_serialized_network`` -> plan bytes. load: ``trt.Runtime`` -> engine -> one execution
context that runs on PyTorch's current CUDA stream, with inputs and outputs bound in place as
torch tensors (outputs are allocated by torch's caching allocator on the same stream, so no
synchronization is needed between the engine and surrounding PyTorch code).

This is the only module that touches ``tensorrt``, and it only copies values computed in plain
Python (op support in ``tensorrt_ops``, settings and compatibility rules in ``tensorrt_config``)
onto TensorRT's objects. ``tensorrt`` is imported lazily so the backend can say why it is
unavailable on machines without it.
"""

from __future__ import annotations

import functools
import logging
import platform
from collections import deque
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal, cast

import torch
from pydantic import BaseModel, ConfigDict, Field

from compiler.backends.base import Backend, EngineMeta, EngineRunner, TensorMeta
from compiler.backends.tensorrt_config import (
    IO_DTYPES,
    TRT_TO_TORCH_DTYPE,
    BuilderSettings,
    ShapeRange,
    check_input_shape,
    derive_profile,
    derive_settings,
    device_class,
    engine_requirements,
    portability_problems,
    read_timing_cache,
    write_timing_cache,
)
from compiler.backends.tensorrt_ops import SUPPORTED_OP_NAMES, check_model
from compiler.errors import BackendError, BackendUnavailableError, InputMismatchError
from compiler.identity import (
    DeviceClass,
    DeviceIdentity,
    EngineRequirements,
    IncompatibleEngineError,
    compatibility_problems,
)
from compiler.spec import CompileSpec

_log = logging.getLogger(__name__)

MIN_MAJOR_VERSION = 10

INSTALL_HINT = (
    "On a GPU machine: `pip install tensorrt-cu12` (or tensorrt-cu13 for CUDA 13). On Jetson it "
    "ships with JetPack: `apt install python3-libnvinfer` and a virtualenv with "
    "--system-site-packages. Elsewhere use backend: onnxruntime."
)

# TensorRT wants device addresses aligned to 256 bytes; torch's allocator gives 512, but a view
# with a storage offset may not be.
_ALIGNMENT = 256


class CudaPlatform:
    """The CUDA facts and handles the TensorRT calls need, from torch. Kept apart so that tests
    can drive every TensorRT call on a machine without a GPU (``tensorrt_standin``)."""

    def available(self) -> bool:
        return torch.cuda.is_available()

    def capability(self, index: int) -> tuple[int, int]:
        return torch.cuda.get_device_capability(index)

    def device(self, index: int) -> torch.device:
        return torch.device("cuda", index)

    def use(self, device: torch.device) -> AbstractContextManager[Any]:
        return torch.cuda.device(device)

    def current_stream(self, device: torch.device) -> int:
        """The handle of PyTorch's current stream on ``device``, where engines are enqueued."""
        return int(torch.cuda.current_stream(device).cuda_stream)


CUDA = CudaPlatform()


@functools.cache
def _load_tensorrt() -> tuple[Any, str | None]:
    """The ``tensorrt`` module (or None) and, when it is not usable, why."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        missing = "" if exc.name == "tensorrt" else f" ({exc})"
        return None, (
            f"the tensorrt backend needs NVIDIA's TensorRT {MIN_MAJOR_VERSION}+ builder library "
            f"(Python package `tensorrt`), which is not installed on this machine{missing}. {INSTALL_HINT}"
        )
    except OSError as exc:  # the bindings import but a shared library (libnvinfer) is missing
        return (
            None,
            f"the TensorRT Python package is installed but its libraries failed to load: {exc}. {INSTALL_HINT}",
        )
    version = str(getattr(trt, "__version__", "0"))
    if not hasattr(trt, "Builder") or not hasattr(trt, "OnnxParser"):
        return None, (
            f"the installed tensorrt {version} has no builder or ONNX parser (a lean or dispatch "
            f"runtime only). {INSTALL_HINT}"
        )
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major < MIN_MAJOR_VERSION:
        return (
            None,
            f"the tensorrt backend needs TensorRT {MIN_MAJOR_VERSION}+, this machine has {version}. {INSTALL_HINT}",
        )
    return trt, None


def _require_tensorrt() -> Any:
    trt, reason = _load_tensorrt()
    if trt is None:
        raise BackendUnavailableError(reason or "TensorRT is not available")
    if not CUDA.available():
        raise BackendUnavailableError(
            "the tensorrt backend needs a CUDA GPU, and torch.cuda.is_available() is False on this machine"
        )
    return trt


def _capturing_logger(trt: Any) -> Any:
    """A TensorRT logger that keeps warnings and errors so failures can quote them."""

    class CapturingLogger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            # Bounded: a long-lived runner's logger would otherwise grow with every warning.
            self.messages: deque[str] = deque(maxlen=50)

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                self.messages.append(f"{severity.name}: {msg}")
                _log.debug("TensorRT %s: %s", severity.name, msg)

        def errors(self) -> str:
            lines = [m for m in self.messages if not m.startswith("WARNING")] or self.messages
            return "\n  ".join(list(lines)[-20:]) or "(TensorRT logged no error)"

    return CapturingLogger()


class TensorRTOptions(BaseModel):
    """The spec's ``tensorrt:`` block: builder settings only this backend reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workspace_mb: int | None = Field(default=None, ge=1)
    optimization_level: int = Field(default=3, ge=0, le=5)
    timing_cache: str | None = None
    hardware_compatibility: Literal["none", "ampere_plus", "same_compute_capability"] = "none"
    version_compatible: bool = False
    tf32: bool = False


class TensorRTBackend(Backend):
    name = "tensorrt"
    consumes = "onnx"
    options = TensorRTOptions

    def device_tied(self, device: str) -> bool:
        return True  # a plan runs on the GPU generation (and TensorRT version) that built it

    def check_target(self, spec: CompileSpec, arch: str, device_class: DeviceClass | None) -> None:
        super().check_target(spec, arch, device_class)
        if device_class is None:
            return
        # TensorRT's precision support by compute capability (its support matrix)
        if spec.precision == "bf16" and not device_class.capability_at_least(8, 0):
            raise BackendError(
                f"precision bf16 needs compute capability 8.0 or later (Ampere); {device_class.name} "
                f"({device_class.description}) is {device_class.compute_capability}: use fp16"
            )
        if spec.precision == "int8" and not device_class.capability_at_least(6, 1):
            raise BackendError(
                f"precision int8 needs compute capability 6.1 or later; {device_class.name} "
                f"({device_class.description}) is {device_class.compute_capability}: use fp16"
            )

    def requirements(self, meta: EngineMeta, built_on: DeviceIdentity) -> EngineRequirements:
        return engine_requirements(meta.extra, built_on.arch)

    def compatibility_problems(self, meta: EngineMeta, here: DeviceIdentity) -> list[str]:
        """Why the plan cannot run on ``here``: ``compiler.identity``'s decision on
        ``requirements``, then the TensorRT rules it cannot state (exact release, version- and
        hardware-compatible ranges). ``load`` refuses on exactly these."""
        built_on = DeviceIdentity(arch=str(meta.extra.get("arch") or here.arch))
        needs = self.requirements(meta, built_on)
        return compatibility_problems(needs, here) + portability_problems(meta.extra, here)

    def available(self) -> bool:
        return _load_tensorrt()[0] is not None

    def unavailable_reason(self) -> str:
        return _load_tensorrt()[1] or "the tensorrt backend is available"

    def version(self) -> str | None:
        trt = _load_tensorrt()[0]
        return str(trt.__version__) if trt is not None else None

    def supported_onnx_ops(self, spec: CompileSpec) -> frozenset[str] | None:
        # Layers a DLA core cannot run fall back to the GPU (GPU_FALLBACK), so the set is the
        # parser's for every device and precision.
        return SUPPORTED_OP_NAMES

    def build(
        self,
        onnx_model: bytes,
        spec: CompileSpec,
        inputs: Sequence[TensorMeta],
        outputs: Sequence[TensorMeta],
        *,
        whole_program: bool = True,  # GPU engines: nothing to adjust
    ) -> tuple[bytes, dict[str, Any]]:
        options = cast(TensorRTOptions, spec.options("tensorrt"))
        settings = derive_settings(
            spec,
            inputs,
            workspace_bytes=options.workspace_mb * 2**20 if options.workspace_mb else None,
            optimization_level=options.optimization_level,
            timing_cache=options.timing_cache,
            hardware_compatibility=options.hardware_compatibility,
            version_compatible=options.version_compatible,
            tf32=options.tf32,
        )
        quantized = _precheck(onnx_model, outputs)
        if spec.precision == "int8" and not quantized:
            _log.warning(
                "precision int8: the model has no QuantizeLinear/DequantizeLinear nodes, so TensorRT "
                "builds it in fp16/fp32; quantize the model for int8 kernels"
            )
        trt = _require_tensorrt()
        plan = _build_plan(trt, onnx_model, settings)
        capability = CUDA.capability(settings.device_index)
        extra = {
            "settings": settings.to_dict(),
            "arch": platform.machine(),
            "tensorrt_version": str(trt.__version__),
            "compute_capability": list(capability),
            "device_class": device_class(*capability),
            "int8_quantized": quantized,
        }
        return plan, extra

    def load(self, engine: bytes, meta: EngineMeta) -> EngineRunner:
        trt = _require_tensorrt()
        settings = meta.extra.get("settings")
        index = int(settings.get("device_index", 0)) if settings else 0
        major, minor = CUDA.capability(index)
        here = DeviceIdentity(
            arch=platform.machine(),
            compute_capability=f"{major}.{minor}",
            tensorrt_version=str(trt.__version__),
        )
        problems = self.compatibility_problems(meta, here)
        if problems:
            raise IncompatibleEngineError(
                f"the TensorRT engine cannot run on this machine: {'; '.join(problems)}"
            )
        return TensorRTRunner(trt, engine, meta)


def _precheck(onnx_model: bytes, outputs: Sequence[TensorMeta]) -> bool:
    """Refuse what the parser would refuse, with the node and the fix; say whether the model is
    explicitly quantized."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(onnx_model)
    except DecodeError as exc:
        raise BackendError(f"the engine's ONNX model does not parse: {exc}") from None
    problems = check_model(model)
    problems += [
        f"output {t.name} has dtype {t.dtype}, which TensorRT engines cannot return"
        for t in outputs
        if t.dtype not in IO_DTYPES
    ]
    if problems:
        raise BackendError(
            "TensorRT cannot build this partition:\n  "
            + "\n  ".join(problems)
            + "\nRun the named ops in PyTorch (torch_executed_ops) or use backend: onnxruntime."
        )
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def _builder_flag(trt: Any, name: str, precision: str) -> Any:
    flag = getattr(trt.BuilderFlag, name, None)
    if flag is None:
        # TensorRT 11 builds strongly typed networks only and dropped the FP16/BF16/INT8 flags.
        raise BackendError(
            f"TensorRT {trt.__version__} has no builder flag {name}, which precision {precision} "
            "needs; from TensorRT 11 a network computes in the types of the model itself. Build "
            "with TensorRT 10, or use precision fp32 with a model already in the reduced type"
        )
    return flag


def _build_plan(trt: Any, onnx_model: bytes, settings: BuilderSettings) -> bytes:
    logger = _capturing_logger(trt)
    with CUDA.use(CUDA.device(settings.device_index)):
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_model):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise BackendError(
                "TensorRT's ONNX parser rejected the model:\n  " + "\n  ".join(errors)
            )

        config = builder.create_builder_config()
        for flag in settings.flags:
            config.set_flag(_builder_flag(trt, flag, settings.precision))
        for flag in settings.cleared_flags:
            config.clear_flag(_builder_flag(trt, flag, settings.precision))
        config.builder_optimization_level = settings.optimization_level
        if settings.workspace_bytes is not None:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_bytes)
        if settings.hardware_compatibility != "NONE":
            level = getattr(trt.HardwareCompatibilityLevel, settings.hardware_compatibility, None)
            if level is None:
                raise BackendError(
                    f"TensorRT {trt.__version__} has no hardware compatibility level "
                    f"{settings.hardware_compatibility}; upgrade TensorRT or choose another level"
                )
            config.hardware_compatibility_level = level
        if settings.dla_core is not None:
            if settings.dla_core >= builder.num_DLA_cores:
                raise BackendError(
                    f"device dla:{settings.dla_core} does not exist: this machine has "
                    f"{builder.num_DLA_cores} DLA cores"
                )
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = settings.dla_core

        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            name = tensor.name
            if tensor.is_shape_tensor:
                # Shape tensors need value ranges in the profile and host-memory bindings;
                # the metadata carries only shape ranges.
                raise BackendError(
                    f"TensorRT uses engine input {name!r} as a shape (a shape tensor), which this "
                    "backend does not support; run the ops that consume it in PyTorch"
                )
            shape_range = settings.shape_range(name)
            if shape_range is None:
                raise BackendError(
                    f"the ONNX model has an input {name!r} that the engine metadata does not list"
                )
            profile.set_shape(name, shape_range.min, shape_range.opt, shape_range.max)
        config.add_optimization_profile(profile)

        if settings.timing_cache is not None:
            cache = config.create_timing_cache(read_timing_cache(settings.timing_cache))
            config.set_timing_cache(cache, False)

        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BackendError("TensorRT could not build the engine:\n  " + logger.errors())
        if settings.timing_cache is not None:
            write_timing_cache(settings.timing_cache, bytes(config.get_timing_cache().serialize()))
        return bytes(plan)


class TensorRTRunner(EngineRunner):
    """One engine with one execution context. Not thread-safe: a context holds the shapes and
    addresses of the call in flight."""

    def __init__(self, trt: Any, plan: bytes, meta: EngineMeta) -> None:
        self.meta = meta
        settings = meta.extra.get("settings") or {}
        self.device = CUDA.device(int(settings.get("device_index", 0)))
        self._logger = _capturing_logger(trt)
        with CUDA.use(self.device):
            self._runtime = trt.Runtime(self._logger)
            if settings.get("dla_core") is not None:
                self._runtime.DLA_core = int(settings["dla_core"])
            if settings.get("version_compatible"):
                # A version-compatible plan carries the lean runtime that executes it.
                self._runtime.engine_host_code_allowed = True
            self._engine = self._runtime.deserialize_cuda_engine(plan)
            if self._engine is None:
                raise BackendError(
                    "TensorRT could not load the engine:\n  " + self._logger.errors()
                )
            self._context = self._engine.create_execution_context()
            # Bound for inputs and outputs with no elements, whose data_ptr() is 0.
            self._empty = _aligned_empty((_ALIGNMENT,), torch.uint8, self.device)

        engine = self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        engine_inputs = {n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT}
        engine_outputs = set(names) - engine_inputs

        def torch_dtype(name: str) -> torch.dtype:
            dtype = getattr(torch, TRT_TO_TORCH_DTYPE[engine.get_tensor_dtype(name).name])
            assert isinstance(dtype, torch.dtype)
            return dtype

        unknown = engine_inputs - {t.name for t in meta.inputs}
        if unknown:
            raise BackendError(
                f"the engine takes inputs the metadata does not list: {', '.join(sorted(unknown))}"
            )
        missing = [t.name for t in meta.outputs if t.name not in engine_outputs]
        if missing:
            raise BackendError(
                f"the engine lacks outputs listed in its metadata: {', '.join(missing)}"
            )
        profile = (
            BuilderSettings.from_dict(settings).profile
            if settings
            else derive_profile([t for t in meta.inputs if t.name in engine_inputs])
        )
        ranges = {r.name: r for r in profile}
        # (position in the call, name, dtype the engine takes, compiled range). Inputs the
        # parser pruned (unused by the graph) are skipped.
        self._inputs: list[tuple[int, str, torch.dtype, ShapeRange]] = [
            (i, t.name, torch_dtype(t.name), ranges[t.name])
            for i, t in enumerate(meta.inputs)
            if t.name in engine_inputs
        ]
        self._outputs: list[tuple[str, torch.dtype, torch.dtype]] = [
            (t.name, torch_dtype(t.name), t.torch_dtype) for t in meta.outputs
        ]

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(inputs) != len(self.meta.inputs):
            raise InputMismatchError(
                f"the engine takes {len(self.meta.inputs)} inputs, got {len(inputs)}"
            )
        context = self._context
        bound = []  # keeps converted inputs alive until the engine is enqueued
        for position, name, dtype, shape_range in self._inputs:
            tensor = inputs[position]
            if tensor.device != self.device or tensor.dtype != dtype:
                tensor = tensor.to(self.device, dtype)
            if not tensor.is_contiguous() or tensor.data_ptr() % _ALIGNMENT:
                tensor = _aligned_empty(tuple(tensor.shape), dtype, self.device).copy_(tensor)
            if not context.set_input_shape(name, tuple(tensor.shape)):
                raise InputMismatchError(
                    check_input_shape(shape_range, tuple(tensor.shape))
                    or f"TensorRT refused the shape {tuple(tensor.shape)} for input {name}:\n  {self._logger.errors()}"
                )
            self._set_address(name, tensor)
            bound.append(tensor)

        results = []
        for name, dtype, _ in self._outputs:
            shape = tuple(context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BackendError(
                    f"output {name} has a data-dependent shape, which this runtime does not support; "
                    "run the op that produces it in PyTorch"
                )
            out = torch.empty(shape, dtype=dtype, device=self.device)
            if out.data_ptr() % _ALIGNMENT:
                out = _aligned_empty(shape, dtype, self.device)
            self._set_address(name, out)
            results.append(out)

        if not context.execute_async_v3(CUDA.current_stream(self.device)):
            raise BackendError("TensorRT failed to enqueue the engine:\n  " + self._logger.errors())
        return [
            out if out.dtype == wanted else out.to(wanted)
            for out, (_, _, wanted) in zip(results, self._outputs, strict=True)
        ]

    def _set_address(self, name: str, tensor: torch.Tensor) -> None:
        if not self._context.set_tensor_address(name, tensor.data_ptr() or self._empty.data_ptr()):
            raise BackendError(
                f"TensorRT refused the address of tensor {name}:\n  {self._logger.errors()}"
            )


def _aligned_empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialized contiguous tensor whose address is a multiple of ``_ALIGNMENT``. Torch's
    CUDA allocator aligns every block to 512 bytes already; this is for the rare view that is
    not, and for allocators with smaller alignment."""
    size = torch.Size(shape).numel() * dtype.itemsize
    buffer = torch.empty(size + _ALIGNMENT, dtype=torch.uint8, device=device)
    offset = -buffer.data_ptr() % _ALIGNMENT
    return buffer[offset : offset + size].view(dtype).view(shape)
