"""The compile spec: what to build, for which device, with which input ranges.

Every key is optional; defaults come from the exported program. Unknown keys and bad values are
rejected with the dotted path of the offending key (``inputs.1.min``), never a pydantic dump.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from compiler.errors import SpecError

DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "uint8", "bool")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    name: str
    dtype: Literal[
        "float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "uint8", "bool"
    ] | None = None
    shape: list[int] | None = None
    min: list[int] | None = None
    opt: list[int] | None = None
    max: list[int] | None = None

    @model_validator(mode="after")
    def _check_ranges(self) -> InputSpec:
        if self.shape is not None and any(v is not None for v in (self.min, self.opt, self.max)):
            raise ValueError("give either shape or min/opt/max, not both")
        ranged = [v for v in (self.min, self.max) if v is not None]
        if len(ranged) == 1:
            raise ValueError("a dynamic input needs both min and max")
        if self.shape is not None and any(d < 0 for d in self.shape):
            raise ValueError("shape dimensions must be >= 0")
        if self.min is not None and self.max is not None:
            if len(self.min) != len(self.max):
                raise ValueError("min and max have different ranks")
            if self.opt is not None and len(self.opt) != len(self.min):
                raise ValueError("opt has a different rank from min and max")
            for axis, (lo, hi) in enumerate(zip(self.min, self.max, strict=True)):
                if lo < 0:
                    raise ValueError(f"min[{axis}] = {lo} is negative")
                if lo > hi:
                    raise ValueError(f"min[{axis}] = {lo} is greater than max[{axis}] = {hi}")
                if self.opt is not None and not lo <= self.opt[axis] <= hi:
                    raise ValueError(f"opt[{axis}] = {self.opt[axis]} is outside [{lo}, {hi}]")
        return self

    @property
    def is_dynamic(self) -> bool:
        return self.min is not None and self.min != self.max

    @property
    def opt_shape(self) -> list[int] | None:
        if self.shape is not None:
            return self.shape
        if self.opt is not None:
            return self.opt
        if self.min is not None and self.max is not None:
            return [max(lo, min(hi, 1 if lo <= 1 <= hi else lo)) for lo, hi in zip(self.min, self.max, strict=True)]
        return None


class PartitioningSpec(_Strict):
    min_block_size: int = Field(default=5, ge=1)
    torch_executed_ops: list[str] = Field(default_factory=list)
    torch_executed_modules: list[str] = Field(default_factory=list)
    require_full_compilation: bool = False

    @field_validator("torch_executed_ops")
    @classmethod
    def _op_names(cls, ops: list[str]) -> list[str]:
        for op in ops:
            if not re.fullmatch(r"(aten\.)?[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)?", op):
                raise ValueError(f"{op!r} is not an op name such as aten.sort.default")
        return ops


class ValidationSpec(_Strict):
    """``samples`` generated input sets when no data is given; ``atol``/``rtol``/``min_cosine``
    gate fp32. Latency of the eager reference and the engine is timed on one input set:
    ``latency_warmup`` untimed calls, then ``latency_runs`` timed ones (0: no latency rows)."""

    samples: int = Field(default=16, ge=1, le=10_000)
    atol: float = Field(default=1.0e-3, ge=0)
    rtol: float = Field(default=1.0e-3, ge=0)
    min_cosine: float = Field(default=0.999, ge=-1, le=1)
    latency_warmup: int = Field(default=3, ge=0, le=1_000)
    latency_runs: int = Field(default=20, ge=0, le=100_000)


class QuantizationSpec(_Strict):
    """How ``precision: int8`` is reached. ``static``: ONNX Runtime's QDQ quantizer, per-channel
    weights, activation ranges calibrated on ``calibration_samples`` input sets (the user's
    calibration data, else inputs generated within the spec's ranges from ``seed``).
    ``dynamic``: int8 weights for MatMul/Gemm only, activations quantized per call, no
    calibration. ``keep_fp32`` names nodes (``partition/node``) left in fp32: ONNX nodes left
    unquantized for int8, or graph nodes computed in fp32 inside aotinductor's fp16/bf16
    engines; the gate fills it in when it retries, up to ``max_retries`` times."""

    method: Literal["static", "dynamic"] = "static"
    calibration_samples: int = Field(default=8, ge=1, le=10_000)
    seed: int = 0
    keep_fp32: list[str] = Field(default_factory=list)
    max_retries: int = Field(default=3, ge=0, le=10)


class GateSpec(_Strict):
    """Accuracy gate thresholds; a key left out takes the default of the spec's precision
    (``compiler.validation.GATE_DEFAULTS``). ``max_accuracy_drop`` is in percentage points of
    task accuracy and applies when validation data carries labels."""

    min_cosine: float | None = Field(default=None, ge=-1, le=1)
    min_snr_db: float | None = None
    max_accuracy_drop: float | None = Field(default=None, ge=0)
    min_top1_agreement: float | None = Field(default=None, ge=0, le=1)


class CompileSpec(_Strict):
    """Besides the keys below, each backend's own block sits under the backend's name
    (``tensorrt:``, ``aotinductor:``) and is validated by that backend's options model: the
    backend registry, not this class, says which blocks exist."""

    # extra keys are backend blocks, checked against the registry in _backend_blocks
    model_config = ConfigDict(extra="allow", frozen=True)

    backend: str = "onnxruntime"
    precision: Literal["fp32", "fp16", "bf16", "int8"] = "fp32"
    device: str = "cpu"
    inputs: list[InputSpec] = Field(default_factory=list)
    partitioning: PartitioningSpec = Field(default_factory=PartitioningSpec)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    quantization: QuantizationSpec = Field(default_factory=QuantizationSpec)
    gate: GateSpec = Field(default_factory=GateSpec)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, name: str) -> str:
        names = backend_names()
        if name not in names:
            raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(names)}")
        return name

    @model_validator(mode="after")
    def _backend_blocks(self) -> CompileSpec:
        from compiler.backends import BACKENDS

        extra = self.__pydantic_extra__ if self.__pydantic_extra__ is not None else {}
        for key in extra:
            backend = BACKENDS.get(key)
            if backend is None or backend.options is None:
                raise ValueError(f"{key}: unknown key")
        for name, backend in BACKENDS.items():
            if backend.options is None:
                continue
            given = extra.get(name, {})
            if isinstance(given, backend.options):
                continue
            if not isinstance(given, dict):
                raise ValueError(f"{name}: must be a mapping of {name} settings")
            try:
                extra[name] = backend.options.model_validate(given)
            except ValidationError as exc:
                lines = [f"{name}.{_loc(e['loc'])}: {_message(e)}" for e in exc.errors()]
                raise ValueError("; ".join(lines)) from None
        return self

    def options(self, backend: str) -> BaseModel:
        """The validated settings block of ``backend`` (its defaults when the spec has none)."""
        extra = self.__pydantic_extra__ or {}
        block = extra.get(backend)
        if not isinstance(block, BaseModel):
            raise KeyError(f"backend {backend!r} has no settings block")
        return block

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if not re.fullmatch(r"(cpu|cuda(:\d+)?|dla(:\d+)?)", device):
            raise ValueError(f"{device!r} is not one of cpu, cuda[:N], dla[:N]")
        return device

    @field_validator("inputs")
    @classmethod
    def _unique_names(cls, inputs: list[InputSpec]) -> list[InputSpec]:
        names = [i.name for i in inputs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"input names appear twice: {', '.join(duplicates)}")
        return inputs

    # ------------------------------------------------------------------ constructors
    @classmethod
    def parse(cls, data: Any, source: str = "spec") -> CompileSpec:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise SpecError(f"{source}: the spec must be a mapping of keys, not {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SpecError(_format_errors(exc, source)) from None

    @classmethod
    def from_yaml(cls, text: str, source: str = "spec") -> CompileSpec:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError(f"{source}: not valid YAML: {exc}") from None
        return cls.parse(data, source)

    @classmethod
    def from_file(cls, path: str | Path) -> CompileSpec:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise SpecError(f"cannot read spec {path}: {exc.strerror}") from None
        return cls.from_yaml(text, str(path))

    # ------------------------------------------------------------------ identity
    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def input_named(self, name: str) -> InputSpec | None:
        return next((i for i in self.inputs if i.name == name), None)


def backend_names() -> list[str]:
    from compiler.backends import BACKENDS

    return list(BACKENDS)


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    return str(error["msg"]).removeprefix("Value error, ")


def _format_errors(exc: ValidationError, source: str) -> str:
    lines: list[str] = []
    for error in exc.errors():
        path = _loc(error["loc"])
        message = _message(error)
        if not path:
            # errors of the backend blocks carry their own paths ("tensorrt.workspace_mb: ...")
            lines.extend(f"{source}: {part}" for part in message.split("; "))
            continue
        lines.append(f"{source}: {path}: {message}")
    return "\n".join(lines)
