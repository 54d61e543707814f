"""A recording stand-in for TensorRT 10's Python module, for tests only. It is NOT TensorRT.

TensorRT's builder library cannot be installed on any machine this project has, so the real
engine tests skip. This stand-in lets every machine check the other half of the contract: that
``compiler.backends.tensorrt`` calls TensorRT's documented Python API (TensorRT 10.x bindings:
``Builder``, ``OnnxParser``, ``IBuilderConfig``, ``IOptimizationProfile``, ``Runtime``,
``ICudaEngine``, ``IExecutionContext``, ``ILogger`` and the enums) with valid arguments, in a valid
order. What it models, from the bindings and their documentation:

- signatures: the documented parameter names (positional or keyword) and types; a wrong type,
  a wrong enum (``BuilderFlag`` where ``MemoryPoolType`` belongs) or an unknown keyword raises
  ``TypeError`` as the pybind11 bindings do;
- enums with the documented member names, compared strictly by type; ``version="11.x"``
  drops the weak-typing precision flags that TensorRT 11 removed;
- ``IOptimizationProfile.set_shape`` raises ``RuntimeError`` when min/opt/max differ in rank or
  are not ``min <= opt <= max``; the build fails (None, an ERROR on the logger) when a profile
  misses a dynamic input, names an unknown one, has the wrong rank, or disagrees with a fixed
  dimension; also for DLA without FP16/INT8 or a valid core, and hardware compatibility on DLA
  or on a GPU older than Ampere;
- ``set_input_shape`` returns False outside the profile or for a non-input;
  ``set_tensor_address`` returns False for an unknown tensor, a null or a not 256-byte aligned
  address; ``execute_async_v3`` returns False unless every input shape and every I/O address
  is set;
- ``deserialize_cuda_engine`` returns None for bytes it did not build, for another release
  unless version-compatible, for a version-compatible plan unless
  ``engine_host_code_allowed``, and for a DLA plan without a valid ``DLA_core``.

Everything is recorded in ``calls`` (in order) and every failure in ``errors``; tests assert
``errors`` is empty unless they provoke one. Its "plan" is honest JSON describing the network
I/O, the profile and the builder config (plus the ONNX model, so output shapes can come from
ONNX shape inference); nothing is computed: ``execute_async_v3`` checks the call and records
it, and output buffers stay as the caller allocated them. It is never importable as
``tensorrt``: tests hand it to the backend by monkeypatching ``_load_tensorrt`` (or, inside one
test, ``sys.modules``), and its ``__version__`` carries ``+standin``.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import hashlib
import inspect
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import onnx
import torch
from onnx import TensorProto

MAGIC = "tensorrt_standin: a description of a build, not a TensorRT plan"
TIMING_CACHE_MAGIC = b"tensorrt_standin timing cache\n"
ALIGNMENT = 256  # setTensorAddress: "The pointer must have at least 256-byte alignment."
MAX_DIMS = 8

BUFFER_TYPES = (bytes, bytearray, memoryview)


class _Enum(enum.Enum):
    """pybind11 enums: members have ``name`` and ``int()``, and equal only members of their
    own type."""

    def __int__(self) -> int:
        return int(self.value)

    def __index__(self) -> int:
        return int(self.value)


def _enum(name: str, members: Sequence[str]) -> type[_Enum]:
    return _Enum(name, [(m, i) for i, m in enumerate(members)])  # type: ignore[return-value]


# TensorRT 10.16's BuilderFlag members, in the bindings' order.
BUILDER_FLAGS_10 = (
    "FP16", "BF16", "INT8", "DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE",
    "EDITABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS", "SAFETY_SCOPE",
    "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO",
    "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "FP8", "ERROR_ON_TIMING_CACHE_MISS",
    "DISABLE_COMPILATION_CACHE", "WEIGHTLESS", "STRIP_PLAN", "REFIT_IDENTICAL",
    "WEIGHT_STREAMING", "INT4", "REFIT_INDIVIDUAL", "STRICT_NANS", "MONITOR_MEMORY", "FP4",
    "DISTRIBUTIVE_INDEPENDENCE",
)  # fmt: skip
# TensorRT 11 builds strongly typed networks only and dropped these.
WEAK_TYPING_FLAGS_REMOVED_IN_11 = frozenset(
    {"FP16", "BF16", "INT8", "FP8", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS",
     "PREFER_PRECISION_CONSTRAINTS", "WEIGHTLESS"}
)  # fmt: skip
PRECISION_FLAGS = ("FP16", "BF16", "INT8", "FP8", "INT4", "FP4")

MemoryPoolType = _enum(
    "MemoryPoolType",
    ["WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM", "DLA_GLOBAL_DRAM", "TACTIC_DRAM",
     "TACTIC_SHARED_MEMORY"],
)  # fmt: skip
HardwareCompatibilityLevel = _enum(
    "HardwareCompatibilityLevel", ["NONE", "AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY"]
)
DeviceType = _enum("DeviceType", ["GPU", "DLA"])
DataType = _enum(
    "DataType",
    ["FLOAT", "HALF", "BF16", "INT8", "INT32", "INT64", "BOOL", "UINT8", "FP8", "INT4", "FP4",
     "E8M0"],
)  # fmt: skip
TensorIOMode = _enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])
NetworkDefinitionCreationFlag = _enum(
    "NetworkDefinitionCreationFlag",
    ["EXPLICIT_BATCH", "STRONGLY_TYPED", "PREFER_AOT_PYTHON_PLUGINS", "PREFER_JIT_PYTHON_PLUGINS"],
)
ExecutionContextAllocationStrategy = _enum(
    "ExecutionContextAllocationStrategy", ["STATIC", "ON_PROFILE_CHANGE", "USER_MANAGED"]
)

# ONNX element types the parser imports, and what they become (DOUBLE is cast to FLOAT).
_ONNX_TO_TRT = {
    TensorProto.FLOAT: "FLOAT", TensorProto.DOUBLE: "FLOAT", TensorProto.FLOAT16: "HALF",
    TensorProto.BFLOAT16: "BF16", TensorProto.INT8: "INT8", TensorProto.INT32: "INT32",
    TensorProto.INT64: "INT64", TensorProto.BOOL: "BOOL", TensorProto.UINT8: "UINT8",
}  # fmt: skip


class ILogger:
    """Subclass it and override ``log(severity, msg)``; ``__init__`` must be called."""

    Severity = _enum("Severity", ["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"])

    def __init__(self) -> None:
        self._standin_initialized = True

    def log(self, severity: Any, msg: str) -> None:
        raise RuntimeError('Tried to call pure virtual function "ILogger::log"')


def _type_error(where: str, name: str, expected: str, value: object) -> TypeError:
    return TypeError(
        f"{where}(): incompatible function arguments: {name} must be {expected}, "
        f"got {type(value).__name__} {value!r}"
    )


def _expect(where: str, name: str, value: object, kind: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _type_error(where, name, _names(kind), value)
    if not isinstance(value, kind):
        raise _type_error(where, name, _names(kind), value)


def _names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _dims(where: str, name: str, value: object) -> tuple[int, ...]:
    """``Dims`` from a tuple or list of ints, as the bindings convert them."""
    if not isinstance(value, (tuple, list)) or any(
        isinstance(d, bool) or not isinstance(d, int) for d in value
    ):
        raise _type_error(where, name, "Dims (a tuple or list of int)", value)
    if len(value) > MAX_DIMS:
        raise ValueError(f"{where}(): {name} has {len(value)} dimensions, more than {MAX_DIMS}")
    return tuple(value)


@dataclass
class Call:
    """One API call: ``IBuilderConfig.set_flag``, its arguments by documented name, and the
    object it was made on."""

    api: str
    args: dict[str, Any]
    obj: Any = field(repr=False, default=None)


class CpuPlatform:
    """Stands in for the backend's ``CudaPlatform`` on a machine without a GPU: tensors live on
    the CPU, the "current stream" is a number the test sets. Only the TensorRT calls are under
    test here; nothing claims these tensors are on a GPU."""

    def __init__(self, capability: tuple[int, int]) -> None:
        self._capability = capability
        self.stream = 0x5EED
        self.used: list[int] = []

    def available(self) -> bool:
        return True

    def capability(self, index: int) -> tuple[int, int]:
        return self._capability

    def device(self, index: int) -> torch.device:
        self.used.append(index)
        return torch.device("cpu")

    def use(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def current_stream(self, device: torch.device) -> int:
        return self.stream


class TensorRTStandIn:
    """The object handed to the backend in place of the ``tensorrt`` module."""

    def __init__(
        self,
        version: str = "10.16.0",
        *,
        capability: tuple[int, int] = (9, 0),
        num_dla_cores: int = 0,
    ) -> None:
        self.__version__ = f"{version}+standin"
        self.major = int(version.split(".")[0])
        self.capability = capability
        self.num_dla_cores = num_dla_cores
        self.platform = CpuPlatform(capability)
        self.calls: list[Call] = []
        self.errors: list[str] = []

        flags = [
            f
            for f in BUILDER_FLAGS_10
            if self.major < 11 or f not in WEAK_TYPING_FLAGS_REMOVED_IN_11
        ]
        self.BuilderFlag = _enum("BuilderFlag", flags)
        self.MemoryPoolType = MemoryPoolType
        self.HardwareCompatibilityLevel = HardwareCompatibilityLevel
        self.DeviceType = DeviceType
        self.DataType = DataType
        self.TensorIOMode = TensorIOMode
        self.NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag
        self.ExecutionContextAllocationStrategy = ExecutionContextAllocationStrategy
        self.ILogger = ILogger
        # Constructors bound to this stand-in, so every object records into it.
        self.Builder = _bound(Builder, self)
        self.OnnxParser = _bound(OnnxParser, self)
        self.Runtime = _bound(Runtime, self)

    # ------------------------------------------------------------------ recording
    def record(self, api: str, obj: Any, args: dict[str, Any]) -> None:
        self.calls.append(Call(api, args, obj))

    def fail(self, logger: ILogger, message: str) -> None:
        """An error TensorRT reports through its logger (and a False or None result)."""
        self.errors.append(message)
        logger.log(ILogger.Severity.ERROR, message)

    def names(self) -> list[str]:
        return [c.api for c in self.calls]

    def called(self, api: str) -> list[Call]:
        return [c for c in self.calls if c.api == api]

    @contextlib.contextmanager
    def expect_errors(self) -> Iterator[list[str]]:
        """Collects the errors provoked inside the block, so the test may assert them and
        the fixture's "no errors" check still holds for the rest."""
        before = len(self.errors)
        caught: list[str] = []
        try:
            yield caught
        finally:
            caught.extend(self.errors[before:])
            del self.errors[before:]


def _bound(cls: type, standin: TensorRTStandIn) -> type:
    return type(cls.__name__, (cls,), {"_standin": standin})


def api(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Binds a call to the documented signature (unknown keywords raise TypeError, as the
    bindings do) and records it before it runs."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(method)

        def recorded(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                bound = signature.bind(self, *args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{name}(): incompatible function arguments: {exc}") from None
            bound.apply_defaults()
            arguments = dict(list(bound.arguments.items())[1:])
            self._standin.record(name, self, arguments)
            return method(self, *args, **kwargs)

        recorded.__signature__ = signature  # type: ignore[attr-defined]
        recorded.__name__ = method.__name__
        return recorded

    return wrap


def _check_logger(where: str, logger: object) -> ILogger:
    _expect(where, "logger", logger, ILogger)
    assert isinstance(logger, ILogger)
    if not getattr(logger, "_standin_initialized", False):
        raise TypeError(f"{type(logger).__name__}.__init__() must call ILogger.__init__")
    return logger


# ------------------------------------------------------------------------------ network, parser
@dataclass
class ITensor:
    name: str
    dtype: Any
    shape: tuple[int, ...]
    is_network_input: bool
    is_shape_tensor: bool = False  # the stand-in cannot tell; it reports none


class INetworkDefinition:
    _standin: TensorRTStandIn

    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.inputs: list[ITensor] = []
        self.outputs: list[ITensor] = []
        self.onnx: bytes | None = None

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    @api("INetworkDefinition.get_input")
    def get_input(self, index: int) -> ITensor | None:
        _expect("get_input", "index", index, int)
        return self.inputs[index] if 0 <= index < len(self.inputs) else None

    @api("INetworkDefinition.get_output")
    def get_output(self, index: int) -> ITensor | None:
        _expect("get_output", "index", index, int)
        return self.outputs[index] if 0 <= index < len(self.outputs) else None


def _value_shape(value: onnx.ValueInfoProto) -> tuple[int, ...]:
    dims = value.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)


class OnnxParser:
    _standin: TensorRTStandIn

    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        _expect("OnnxParser.__init__", "network", network, INetworkDefinition)
        self._logger = _check_logger("OnnxParser.__init__", logger)
        self._network = network
        self._errors: list[str] = []
        self._standin.record("OnnxParser.__init__", self, {"network": network, "logger": logger})

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    @api("OnnxParser.get_error")
    def get_error(self, index: int) -> str | None:
        _expect("get_error", "index", index, int)
        return self._errors[index] if 0 <= index < len(self._errors) else None

    @api("OnnxParser.parse")
    def parse(self, model: Any, path: str | None = None) -> bool:
        _expect("parse", "model", model, BUFFER_TYPES)
        try:
            proto = onnx.load_model_from_string(bytes(model))
        except Exception as exc:  # the parser reports, it does not raise
            self._errors.append(f"Failed to parse ONNX model: {exc}")
            return False
        graph = proto.graph
        initializers = {i.name for i in graph.initializer}
        network = self._network
        for value, is_input in [(v, True) for v in graph.input if v.name not in initializers] + [
            (v, False) for v in graph.output
        ]:
            elem = value.type.tensor_type.elem_type
            if elem not in _ONNX_TO_TRT:
                self._errors.append(
                    f"{value.name}: element type {TensorProto.DataType.Name(elem)} is not supported"
                )
                continue
            tensor = ITensor(
                value.name, DataType[_ONNX_TO_TRT[elem]], _value_shape(value), is_input
            )
            (network.inputs if is_input else network.outputs).append(tensor)
        if not graph.output:
            self._errors.append("the model has no outputs")
        network.onnx = proto.SerializeToString()
        return not self._errors


# ----------------------------------------------------------------------------- builder, config
class IOptimizationProfile:
    _standin: TensorRTStandIn

    def __init__(self, builder: Builder) -> None:
        self.builder = builder
        self.shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}

    @api("IOptimizationProfile.set_shape")
    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002
        _expect("set_shape", "input", input, str)
        lo, mid, hi = (
            _dims("set_shape", n, v) for n, v in (("min", min), ("opt", opt), ("max", max))
        )
        for name, dims in (("opt", mid), ("max", hi)):
            if len(dims) != len(lo):
                raise RuntimeError(f"Shape provided for {name} is inconsistent with other shapes.")
        if any(not 0 <= a <= b <= c for a, b, c in zip(lo, mid, hi, strict=True)):
            raise RuntimeError(
                f"Shape provided for {input} needs 0 <= min <= opt <= max on every axis, "
                f"got {lo}, {mid}, {hi}"
            )
        self.shapes[input] = (lo, mid, hi)

    @api("IOptimizationProfile.get_shape")
    def get_shape(self, input: str) -> list[tuple[int, ...]]:  # noqa: A002
        return list(self.shapes.get(input, ()))


class ITimingCache:
    def __init__(self, standin: TensorRTStandIn, entries: list[str]) -> None:
        self._standin = standin
        self.entries = entries

    @api("ITimingCache.serialize")
    def serialize(self) -> IHostMemory:
        return IHostMemory(TIMING_CACHE_MAGIC + json.dumps(self.entries).encode())


class IHostMemory:
    """Host memory TensorRT owns; ``bytes()`` copies it out."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    @property
    def nbytes(self) -> int:
        return len(self._data)

    def __bytes__(self) -> bytes:
        return self._data

    def __len__(self) -> int:
        return len(self._data)


class IBuilderConfig:
    _standin: TensorRTStandIn

    def __init__(self, builder: Builder) -> None:
        self.builder = builder
        standin = self._standin
        self.flags = {standin.BuilderFlag["TF32"]}  # TensorRT enables TF32 by default
        self._level = 3
        self.pools: dict[Any, int] = {}
        self._hardware = HardwareCompatibilityLevel.NONE
        self._device_type = DeviceType.GPU
        self._dla_core = -1
        self.profiles: list[IOptimizationProfile] = []
        self.timing_cache: ITimingCache | None = None

    def _flag(self, where: str, flag: object) -> Any:
        _expect(where, "flag", flag, self._standin.BuilderFlag)
        return flag

    @api("IBuilderConfig.set_flag")
    def set_flag(self, flag: Any) -> None:
        self.flags.add(self._flag("set_flag", flag))

    @api("IBuilderConfig.clear_flag")
    def clear_flag(self, flag: Any) -> None:
        self.flags.discard(self._flag("clear_flag", flag))

    @api("IBuilderConfig.get_flag")
    def get_flag(self, flag: Any) -> bool:
        return self._flag("get_flag", flag) in self.flags

    @property
    def builder_optimization_level(self) -> int:
        return self._level

    @builder_optimization_level.setter
    def builder_optimization_level(self, level: int) -> None:
        _expect("builder_optimization_level", "level", level, int)
        self._standin.record("IBuilderConfig.builder_optimization_level", self, {"level": level})
        if not 0 <= level <= 5:
            raise ValueError(f"builder_optimization_level must be in [0, 5], got {level}")
        self._level = level

    @api("IBuilderConfig.set_memory_pool_limit")
    def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
        _expect("set_memory_pool_limit", "pool", pool, MemoryPoolType)
        _expect("set_memory_pool_limit", "pool_size", pool_size, int)
        if pool_size < 0:
            raise ValueError(f"set_memory_pool_limit(): pool_size must be >= 0, got {pool_size}")
        self.pools[pool] = pool_size

    @api("IBuilderConfig.get_memory_pool_limit")
    def get_memory_pool_limit(self, pool: Any) -> int:
        _expect("get_memory_pool_limit", "pool", pool, MemoryPoolType)
        return self.pools.get(pool, 1 << 40)

    @property
    def hardware_compatibility_level(self) -> Any:
        return self._hardware

    @hardware_compatibility_level.setter
    def hardware_compatibility_level(self, level: Any) -> None:
        _expect("hardware_compatibility_level", "level", level, HardwareCompatibilityLevel)
        self._standin.record("IBuilderConfig.hardware_compatibility_level", self, {"level": level})
        self._hardware = level

    @property
    def default_device_type(self) -> Any:
        return self._device_type

    @default_device_type.setter
    def default_device_type(self, device_type: Any) -> None:
        _expect("default_device_type", "device_type", device_type, DeviceType)
        self._standin.record(
            "IBuilderConfig.default_device_type", self, {"device_type": device_type}
        )
        self._device_type = device_type

    @property
    def DLA_core(self) -> int:  # noqa: N802 (TensorRT's name)
        return self._dla_core

    @DLA_core.setter
    def DLA_core(self, core: int) -> None:  # noqa: N802
        _expect("DLA_core", "core", core, int)
        self._standin.record("IBuilderConfig.DLA_core", self, {"core": core})
        self._dla_core = core

    @api("IBuilderConfig.add_optimization_profile")
    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        _expect("add_optimization_profile", "profile", profile, IOptimizationProfile)
        if profile.builder is not self.builder:
            raise ValueError("the profile was created by another builder")
        self.profiles.append(profile)
        return len(self.profiles) - 1

    @api("IBuilderConfig.create_timing_cache")
    def create_timing_cache(self, serialized_timing_cache: Any) -> ITimingCache:
        _expect(
            "create_timing_cache", "serialized_timing_cache", serialized_timing_cache, BUFFER_TYPES
        )
        data = bytes(serialized_timing_cache)
        if not data:
            return ITimingCache(self._standin, [])
        if not data.startswith(TIMING_CACHE_MAGIC):
            # TensorRT starts an empty cache from a blob it cannot read, with a warning.
            return ITimingCache(self._standin, [])
        return ITimingCache(self._standin, json.loads(data[len(TIMING_CACHE_MAGIC) :]))

    @api("IBuilderConfig.set_timing_cache")
    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        _expect("set_timing_cache", "cache", cache, ITimingCache)
        _expect("set_timing_cache", "ignore_mismatch", ignore_mismatch, bool)
        self.timing_cache = cache
        return True

    @api("IBuilderConfig.get_timing_cache")
    def get_timing_cache(self) -> ITimingCache | None:
        return self.timing_cache


class Builder:
    _standin: TensorRTStandIn

    def __init__(self, logger: ILogger) -> None:
        self.logger = _check_logger("Builder.__init__", logger)
        self._standin.record("Builder.__init__", self, {"logger": logger})

    @property
    def num_DLA_cores(self) -> int:  # noqa: N802 (TensorRT's name)
        return self._standin.num_dla_cores

    @api("Builder.create_network")
    def create_network(self, flags: int = 0) -> INetworkDefinition:
        _expect("create_network", "flags", flags, int)
        known = (1 << len(NetworkDefinitionCreationFlag)) - 1
        if flags & ~known or flags < 0:
            raise ValueError(
                f"create_network(): unknown NetworkDefinitionCreationFlag bits {flags:#x}"
            )
        return _bound(INetworkDefinition, self._standin)(flags)

    @api("Builder.create_builder_config")
    def create_builder_config(self) -> IBuilderConfig:
        return _bound(IBuilderConfig, self._standin)(self)

    @api("Builder.create_optimization_profile")
    def create_optimization_profile(self) -> IOptimizationProfile:
        return _bound(IOptimizationProfile, self._standin)(self)

    @api("Builder.build_serialized_network")
    def build_serialized_network(
        self, network: INetworkDefinition, config: IBuilderConfig
    ) -> IHostMemory | None:
        _expect("build_serialized_network", "network", network, INetworkDefinition)
        _expect("build_serialized_network", "config", config, IBuilderConfig)
        problems = _build_problems(self._standin, network, config)
        for problem in problems:
            self._standin.fail(self.logger, problem)
        if problems:
            return None
        names = {f.name for f in config.flags}
        profile = config.profiles[0].shapes if config.profiles else {}
        plan = {
            "standin": MAGIC,
            "tensorrt_version": self._standin.__version__,
            "built_on_capability": list(self._standin.capability),
            "inputs": [
                {
                    "name": t.name,
                    "dtype": t.dtype.name,
                    "shape": list(t.shape),
                    "profile": [list(s) for s in profile.get(t.name, (t.shape,) * 3)],
                }
                for t in network.inputs
            ],
            "outputs": [
                {"name": t.name, "dtype": t.dtype.name, "shape": list(t.shape)}
                for t in network.outputs
            ],
            "config": {
                "flags": sorted(names),
                "builder_optimization_level": config.builder_optimization_level,
                "memory_pools": {p.name: v for p, v in config.pools.items()},
                "hardware_compatibility_level": config.hardware_compatibility_level.name,
                "default_device_type": config.default_device_type.name,
                "DLA_core": config.DLA_core,
                "timing_cache": config.timing_cache is not None,
            },
            "onnx": base64.b64encode(network.onnx or b"").decode(),
        }
        data = json.dumps(plan, sort_keys=True).encode()
        if config.timing_cache is not None and "DISABLE_TIMING_CACHE" not in names:
            entry = hashlib.sha256(network.onnx or b"").hexdigest()
            if entry not in config.timing_cache.entries:
                config.timing_cache.entries.append(entry)
        return IHostMemory(data)


def _build_problems(
    standin: TensorRTStandIn, network: INetworkDefinition, config: IBuilderConfig
) -> list[str]:
    problems = []
    if network.onnx is None:
        problems.append("the network is empty (nothing was parsed into it)")
    if not network.outputs:
        problems.append("the network has no outputs")
    names = {f.name for f in config.flags}
    if network.flags & (1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED.value):
        set_precision = sorted(names & set(PRECISION_FLAGS))
        if set_precision:
            problems.append(f"a strongly typed network cannot take precision flags {set_precision}")
    if len(config.profiles) > 1:
        problems.append("the stand-in models one optimization profile; more were added")
    shapes = config.profiles[0].shapes if config.profiles else {}
    inputs = {t.name: t for t in network.inputs}
    for name in shapes:
        if name not in inputs:
            problems.append(
                f"the optimization profile names {name!r}, which is not a network input"
            )
    for tensor in network.inputs:
        if tensor.name not in shapes:
            if -1 in tensor.shape:
                problems.append(
                    f"network input {tensor.name!r} has dynamic dimensions {tensor.shape} "
                    "and no optimization profile gives its range"
                )
            continue
        lo, _, hi = shapes[tensor.name]
        if len(lo) != len(tensor.shape):
            problems.append(
                f"the profile for {tensor.name!r} has rank {len(lo)}, the input has rank "
                f"{len(tensor.shape)}"
            )
            continue
        for axis, (dim, a, b) in enumerate(zip(tensor.shape, lo, hi, strict=True)):
            if dim != -1 and not a == b == dim:
                problems.append(
                    f"the profile for {tensor.name!r} gives axis {axis} the range [{a}, {b}], "
                    f"but the network fixes it at {dim}"
                )
    if config.default_device_type == DeviceType.DLA:
        if not 0 <= config.DLA_core < standin.num_dla_cores:
            problems.append(
                f"DLA_core {config.DLA_core} is not one of this device's {standin.num_dla_cores} DLA cores"
            )
        if not names & {"FP16", "INT8"}:
            problems.append("DLA runs FP16 or INT8 layers only; neither flag is set")
        if config.hardware_compatibility_level != HardwareCompatibilityLevel.NONE:
            problems.append("hardware compatibility is not supported for DLA engines")
    if (
        config.hardware_compatibility_level == HardwareCompatibilityLevel.AMPERE_PLUS
        and standin.capability < (8, 0)
    ):
        problems.append("AMPERE_PLUS engines can only be built on Ampere or newer GPUs")
    return problems


# ------------------------------------------------------------------------------- runtime, engine
class Runtime:
    _standin: TensorRTStandIn

    def __init__(self, logger: ILogger) -> None:
        self.logger = _check_logger("Runtime.__init__", logger)
        self._standin.record("Runtime.__init__", self, {"logger": logger})
        self._dla_core = -1
        self._host_code = False

    @property
    def DLA_core(self) -> int:  # noqa: N802 (TensorRT's name)
        return self._dla_core

    @DLA_core.setter
    def DLA_core(self, core: int) -> None:  # noqa: N802
        _expect("DLA_core", "core", core, int)
        self._standin.record("Runtime.DLA_core", self, {"core": core})
        self._dla_core = core

    @property
    def engine_host_code_allowed(self) -> bool:
        return self._host_code

    @engine_host_code_allowed.setter
    def engine_host_code_allowed(self, allowed: bool) -> None:
        _expect("engine_host_code_allowed", "allowed", allowed, bool)
        self._standin.record("Runtime.engine_host_code_allowed", self, {"allowed": allowed})
        self._host_code = allowed

    @api("Runtime.deserialize_cuda_engine")
    def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
        _expect("deserialize_cuda_engine", "serialized_engine", serialized_engine, BUFFER_TYPES)
        standin = self._standin
        try:
            plan = json.loads(bytes(serialized_engine))
            assert plan["standin"] == MAGIC
        except Exception:
            standin.fail(
                self.logger, "deserialize_cuda_engine: the bytes are not a plan (of the stand-in)"
            )
            return None
        config = plan["config"]
        version_compatible = "VERSION_COMPATIBLE" in config["flags"]
        if plan["tensorrt_version"] != standin.__version__ and not version_compatible:
            standin.fail(
                self.logger,
                f"the plan was built by TensorRT {plan['tensorrt_version']}, this is {standin.__version__}",
            )
            return None
        if (
            version_compatible
            and "EXCLUDE_LEAN_RUNTIME" not in config["flags"]
            and not self._host_code
        ):
            standin.fail(
                self.logger,
                "the plan embeds a lean runtime (version compatible); set "
                "engine_host_code_allowed = True to deserialize it",
            )
            return None
        if (
            config["default_device_type"] == "DLA"
            and not 0 <= self._dla_core < standin.num_dla_cores
        ):
            standin.fail(
                self.logger,
                f"a DLA plan needs Runtime.DLA_core set to a core, not {self._dla_core}",
            )
            return None
        return _bound(ICudaEngine, standin)(plan, self.logger)


class ICudaEngine:
    _standin: TensorRTStandIn

    def __init__(self, plan: dict[str, Any], logger: ILogger) -> None:
        self.plan = plan
        self.logger = logger
        self.tensors = {t["name"]: ("INPUT", t) for t in plan["inputs"]} | {
            t["name"]: ("OUTPUT", t) for t in plan["outputs"]
        }
        self.names = [t["name"] for t in plan["inputs"]] + [t["name"] for t in plan["outputs"]]
        self.onnx = base64.b64decode(plan["onnx"])

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    @property
    def num_optimization_profiles(self) -> int:
        return 1

    @api("ICudaEngine.get_tensor_name")
    def get_tensor_name(self, index: int) -> str | None:
        _expect("get_tensor_name", "index", index, int)
        if not 0 <= index < len(self.names):
            self._standin.fail(self.logger, f"get_tensor_name: index {index} is out of range")
            return None
        return self.names[index]

    @api("ICudaEngine.get_tensor_mode")
    def get_tensor_mode(self, name: str) -> Any:
        _expect("get_tensor_mode", "name", name, str)
        if name not in self.tensors:
            return TensorIOMode.NONE  # documented: NONE for a name that is not an I/O tensor
        return TensorIOMode[self.tensors[name][0]]

    def _tensor(self, where: str, name: str) -> dict[str, Any]:
        _expect(where, "name", name, str)
        if name not in self.tensors:
            raise ValueError(f"{where}(): {name!r} is not an input or output of the engine")
        return self.tensors[name][1]

    @api("ICudaEngine.get_tensor_dtype")
    def get_tensor_dtype(self, name: str) -> Any:
        return DataType[self._tensor("get_tensor_dtype", name)["dtype"]]

    @api("ICudaEngine.get_tensor_shape")
    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._tensor("get_tensor_shape", name)["shape"])

    @api("ICudaEngine.get_tensor_profile_shape")
    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        tensor = self._tensor("get_tensor_profile_shape", name)
        _expect("get_tensor_profile_shape", "profile_index", profile_index, int)
        return [tuple(s) for s in tensor.get("profile", ())]

    @api("ICudaEngine.create_execution_context")
    def create_execution_context(
        self, strategy: Any = ExecutionContextAllocationStrategy.STATIC
    ) -> IExecutionContext:
        _expect(
            "create_execution_context", "strategy", strategy, ExecutionContextAllocationStrategy
        )
        return _bound(IExecutionContext, self._standin)(self)


@dataclass
class Execution:
    """What ``execute_async_v3`` was asked to run: never a result."""

    stream_handle: int
    shapes: dict[str, tuple[int, ...]]
    addresses: dict[str, int]


class IExecutionContext:
    _standin: TensorRTStandIn

    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.executions: list[Execution] = []
        self._inferred: dict[tuple[Any, ...], dict[str, tuple[int, ...]]] = {}

    def _refuse(self, message: str) -> bool:
        self._standin.fail(self.engine.logger, message)
        return False

    @api("IExecutionContext.set_input_shape")
    def set_input_shape(self, name: str, shape: Any) -> bool:
        _expect("set_input_shape", "name", name, str)
        dims = _dims("set_input_shape", "shape", shape)
        mode, tensor = self.engine.tensors.get(name, ("NONE", None))
        if mode != "INPUT" or tensor is None:
            return self._refuse(f"set_input_shape: {name!r} is not an input tensor of the engine")
        lo, _, hi = tensor["profile"]
        if len(dims) != len(tensor["shape"]):
            return self._refuse(
                f"set_input_shape: {name} takes rank {len(tensor['shape'])}, got {dims}"
            )
        for axis, (size, dim, a, b) in enumerate(zip(dims, tensor["shape"], lo, hi, strict=True)):
            if (dim != -1 and size != dim) or not a <= size <= b:
                return self._refuse(
                    f"set_input_shape: {name} axis {axis} = {size} is outside the profile [{a}, {b}]"
                )
        self.shapes[name] = dims
        return True

    @api("IExecutionContext.get_tensor_shape")
    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        _expect("get_tensor_shape", "name", name, str)
        return self._shape(name)

    def _shape(self, name: str) -> tuple[int, ...]:
        mode, tensor = self.engine.tensors.get(name, ("NONE", None))
        if tensor is None:
            self._standin.fail(
                self.engine.logger, f"get_tensor_shape: {name!r} is not an I/O tensor"
            )
            return ()
        if mode == "INPUT":
            return self.shapes.get(name, tuple(tensor["shape"]))
        if -1 not in tensor["shape"]:
            return tuple(tensor["shape"])
        inputs = [t["name"] for t in self.engine.plan["inputs"]]
        if any(n not in self.shapes for n in inputs):
            return tuple(tensor["shape"])  # not inferable before every input shape is set
        return self._infer(tuple(self.shapes[n] for n in inputs)).get(name, tuple(tensor["shape"]))

    def _infer(self, key: tuple[tuple[int, ...], ...]) -> dict[str, tuple[int, ...]]:
        """Output shapes by ONNX shape inference at the set input shapes: the stand-in's own
        rule, standing in for TensorRT's shape propagation; unknown dimensions stay -1."""
        if key not in self._inferred:
            model = onnx.load_model_from_string(self.engine.onnx)
            by_name = {v.name: v for v in model.graph.input}
            for tensor, shape in zip(self.engine.plan["inputs"], key, strict=True):
                dims = by_name[tensor["name"]].type.tensor_type.shape.dim
                for dim, size in zip(dims, shape, strict=True):
                    dim.Clear()
                    dim.dim_value = size
            for output in model.graph.output:
                output.type.tensor_type.ClearField("shape")
            inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
            self._inferred[key] = {
                v.name: _value_shape(v)
                for v in inferred.graph.output
                if v.type.tensor_type.HasField("shape")
            }
        return self._inferred[key]

    @api("IExecutionContext.set_tensor_address")
    def set_tensor_address(self, name: str, memory: int) -> bool:
        _expect("set_tensor_address", "name", name, str)
        _expect("set_tensor_address", "memory", memory, int)
        if name not in self.engine.tensors:
            return self._refuse(f"set_tensor_address: {name!r} is not an input or output tensor")
        if memory == 0:
            return self._refuse(f"set_tensor_address: a null address for {name}")
        if memory % ALIGNMENT:
            return self._refuse(
                f"set_tensor_address: {name} at {memory:#x} is not {ALIGNMENT}-byte aligned"
            )
        self.addresses[name] = memory
        return True

    @api("IExecutionContext.execute_async_v3")
    def execute_async_v3(self, stream_handle: int) -> bool:
        _expect("execute_async_v3", "stream_handle", stream_handle, int)
        plan = self.engine.plan
        for tensor in plan["inputs"]:
            if -1 in tensor["shape"] and tensor["name"] not in self.shapes:
                return self._refuse(
                    f"execute_async_v3: the shape of input {tensor['name']} is not set"
                )
        for name in self.engine.names:
            if name not in self.addresses:
                return self._refuse(f"execute_async_v3: no address for tensor {name}")
        for tensor in plan["outputs"]:
            if -1 in self._shape(tensor["name"]):
                return self._refuse(
                    f"execute_async_v3: output {tensor['name']} has an unknown shape and no output allocator"
                )
        self.executions.append(
            Execution(
                stream_handle,
                {
                    t["name"]: self._shape(t["name"])
                    for t in plan["inputs"] + plan["outputs"]
                },
                dict(self.addresses),
            )
        )
        return True
