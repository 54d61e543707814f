"""Model intake: untrusted ``.pt2`` files, ExportedPrograms, and nn.Modules with example inputs.

A submitted ``.pt2`` is untrusted. ``torch.export.load`` (torch 2.13) unpickles some archive
members (e.g. ``data/sample_inputs/*.pt``) and runs a crafted pickle's code before it reports the
file as corrupt. So every member is inspected first: a pickle whose globals are not plain tensor reconstruction
is refused before the archive reaches any torch loader.
"""

from __future__ import annotations

import io
import pickletools
import threading
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sympy
import torch

from compiler.errors import InputMismatchError, InvalidModelError, SpecError, UnsafeModelError
from compiler.spec import CompileSpec, InputSpec

DEFAULT_MAX_BYTES = 2 * 1024**3
# torch.export.load keeps its deserializer in a module global: two threads loading at once fail
# with "_CURRENT_DESERIALIZER is already set".
TORCH_LOAD_LOCK = threading.Lock()

# Globals a tensor-only pickle may reference (what torch.save writes for tensors and containers).
_SAFE_GLOBALS = frozenset(
    {
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch.Size",
        "torch.device",
        "torch.storage.UntypedStorage",
        "torch._tensor._rebuild_from_type_v2",
        "builtins.set",
        "builtins.frozenset",
        "builtins.slice",
        "builtins.complex",
    }
    | {
        f"torch.{name}"
        for name in (
            "FloatStorage DoubleStorage HalfStorage BFloat16Storage LongStorage IntStorage "
            "ShortStorage CharStorage ByteStorage BoolStorage float32 float16 bfloat16 float64 "
            "int64 int32 int16 int8 uint8 bool"
        ).split()
    }
)


# ---------------------------------------------------------------------- untrusted files
def load_program(source: str | Path | bytes, max_bytes: int | None = None) -> torch.export.ExportedProgram:
    """Load an ExportedProgram from an untrusted ``.pt2`` path or bytes, safely."""
    limit = max_bytes or DEFAULT_MAX_BYTES
    data = _read_limited(source, limit)
    cleaned, _ = sanitize_archive(data, max_inflated_bytes=limit)
    try:
        with TORCH_LOAD_LOCK:
            program = torch.export.load(io.BytesIO(cleaned))
    except Exception as exc:  # torch raises many types for a malformed archive
        # torch 2.8 (JetPack 6's) cannot read what torch 2.13 saves (KeyError: "There is no
        # item named 'version' in the archive"): say which torch this is, so the fix is plain.
        raise InvalidModelError(
            f"{_describe(source)} is not a torch.export program torch can read: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (this is "
            f"torch {torch.__version__}; a program saved by a newer torch may not load here: "
            "export it with this torch release or an older one)"
        ) from None
    if not isinstance(program, torch.export.ExportedProgram):
        raise InvalidModelError(f"{_describe(source)} does not hold an ExportedProgram")
    return program


# A zip bomb is a small archive that inflates to far more than it holds. torch.export.save
# stores members uncompressed, so a real program inflates by a factor near 1; a member may grow
# past MAX_RATIO_FREE_BYTES only up to MAX_COMPRESSION_RATIO times its compressed size, and all
# members together only up to the archive's own size limit.
MAX_COMPRESSION_RATIO = 100
MAX_RATIO_FREE_BYTES = 1024**2
_READ_CHUNK = 1024**2
# What a damaged member raises while it is read: a bad CRC, a truncated or invalid deflate
# stream, an unsupported method or an encrypted member.
_DAMAGED_MEMBER = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError, OSError)


@dataclass
class _InflateBudget:
    """Bytes the members of one archive (and those of the archives nested in it) may inflate to."""

    left: int

    def check_declared(self, name: str, info: zipfile.ZipInfo) -> None:
        if info.file_size > self.left:
            raise InvalidModelError(
                f"{name} inflates to {info.file_size} bytes, more than the {self.left} bytes left "
                "under the model size limit; the file is refused"
            )
        _check_ratio(name, info, info.file_size)

    def take(self, name: str, info: zipfile.ZipInfo, inflated: int, chunk: int) -> None:
        # The declared sizes were checked already; this holds even if a header lied.
        self.left -= chunk
        if self.left < 0:
            raise InvalidModelError(f"{name}: the archive inflates past the model size limit; the file is refused")
        _check_ratio(name, info, inflated)


def _check_ratio(name: str, info: zipfile.ZipInfo, inflated: int) -> None:
    if inflated > MAX_RATIO_FREE_BYTES and inflated > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
        raise InvalidModelError(
            f"{name} inflates {inflated // max(info.compress_size, 1)} times over ({info.compress_size} "
            f"bytes to {inflated} or more), past the limit of {MAX_COMPRESSION_RATIO}; the file "
            "looks like a zip bomb and is refused"
        )


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, budget: _InflateBudget) -> bytes:
    """One member's bytes, inflated chunk by chunk under ``budget``; a damaged member (bad CRC,
    truncated stream) is an InvalidModelError, not zipfile's own exception."""
    budget.check_declared(name, info)
    parts: list[bytes] = []
    inflated = 0
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(_READ_CHUNK):
                inflated += len(chunk)
                budget.take(name, info, inflated, len(chunk))
                parts.append(chunk)
    except _DAMAGED_MEMBER as exc:
        raise InvalidModelError(
            f"the archive is damaged: member {name} cannot be read ({type(exc).__name__}: {exc})"
        ) from None
    return b"".join(parts)


def sanitize_archive(
    data: bytes, keep_prefix: tuple[str, ...] = (), max_inflated_bytes: int | None = None
) -> tuple[bytes, dict[str, bytes]]:
    """Check every member of a ``.pt2`` zip. Return the archive without sample inputs and
    without the members under ``keep_prefix`` (given back separately, by their inner path).
    Raises UnsafeModelError on a pickle that could run code, InvalidModelError on a damaged
    archive or one that inflates past ``max_inflated_bytes`` (default: the model size limit)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except _DAMAGED_MEMBER:
        raise InvalidModelError("not a .pt2 archive (a zip file written by torch.export.save)") from None
    budget = _InflateBudget(max_inflated_bytes or DEFAULT_MAX_BYTES)
    out = io.BytesIO()
    kept: dict[str, bytes] = {}
    has_model = False
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as clean:
        for info in infos:
            if info.is_dir():
                continue
            inner = info.filename.split("/", 1)[1] if "/" in info.filename else info.filename
            member = _read_member(archive, info, info.filename, budget)
            if keep_prefix and inner.startswith(keep_prefix):
                kept[inner] = member  # our own data: never given to a torch loader
                continue
            _check_member(info.filename, member, budget)
            if inner.startswith("models/") and inner.endswith(".json"):
                has_model = True
            clean.writestr(info, member)
    if not has_model:
        raise InvalidModelError("the archive has no torch.export model (models/*.json is missing)")
    return out.getvalue(), kept


_PICKLE_SUFFIXES = (".pkl", ".pickle")
_TORCH_SAVE_SUFFIXES = (".pt", ".pth")


def _check_member(name: str, member: bytes, budget: _InflateBudget, depth: int = 0) -> None:
    """Refuse a member that a torch loader would unpickle unless its pickle only rebuilds
    tensors. Raw weight blobs and JSON are never unpickled and are left alone."""
    if member[:4] == b"PK\x03\x04":
        if depth > 2:
            raise UnsafeModelError(f"{name}: nested archives are too deep")
        try:
            nested = zipfile.ZipFile(io.BytesIO(member))
            infos = nested.infolist()
        except _DAMAGED_MEMBER:
            raise InvalidModelError(f"{name}: damaged nested archive") from None
        for info in infos:
            inner_name = f"{name}:{info.filename}"
            _check_member(inner_name, _read_member(nested, info, inner_name, budget), budget, depth + 1)
        return
    if name.endswith(_TORCH_SAVE_SUFFIXES):
        # torch.export writes these as zip archives; the legacy format chains several pickles
        # and cannot be checked reliably, so it is refused.
        raise UnsafeModelError(
            f"{name} is in the legacy torch.save format, which runs pickled code when loaded; "
            "re-export the model with torch.export.save from a trusted environment"
        )
    if name.endswith(_PICKLE_SUFFIXES):
        for reference in _pickle_globals(name, member):
            if reference not in _SAFE_GLOBALS:
                raise UnsafeModelError(
                    f"{name} is a pickle that references {reference}; loading it could run "
                    "arbitrary code, so the file is refused. Re-export the model with "
                    "torch.export.save from a trusted environment."
                )


def _pickle_globals(name: str, data: bytes) -> Iterator[str]:
    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(str(arg))
            elif opcode.name in ("GLOBAL", "INST"):
                yield str(arg).replace(" ", ".")
            elif opcode.name == "STACK_GLOBAL":
                if len(strings) < 2:
                    yield "<computed global>"
                else:
                    yield f"{strings[-2]}.{strings[-1]}"
            elif opcode.name == "OBJ":
                yield "<OBJ opcode>"
    except Exception:
        raise UnsafeModelError(f"{name}: unreadable pickle stream; the file is refused") from None


def _read_limited(source: str | Path | bytes, max_bytes: int) -> bytes:
    """The bytes of ``source``, which must be smaller than ``max_bytes``: a larger file is
    refused before it is read, and one that grows while read is read only up to the limit."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
            if size >= max_bytes:
                raise InvalidModelError(f"{path} is {size} bytes, at or over the limit of {max_bytes} bytes")
            with path.open("rb") as stream:
                data = stream.read(max_bytes)
        except FileNotFoundError:
            raise InvalidModelError(f"{path}: no such file") from None
        except OSError as exc:
            raise InvalidModelError(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) >= max_bytes:
        raise InvalidModelError(f"model is {len(data)} bytes or more, at or over the limit of {max_bytes} bytes")
    return data


def _describe(source: str | Path | bytes) -> str:
    return "the data" if isinstance(source, (bytes, bytearray)) else str(source)


# ---------------------------------------------------------------------- input signature
# A dimension exported without an upper bound (``Dim.AUTO``, ``Dim("n")`` with no ``max``) still
# needs one where a backend builds for a range (TensorRT optimization profiles): the spec's
# ``max`` if it gives one, else ``min * UNBOUNDED_MAX_FACTOR`` (the report lists it as
# ``engine_max``). The compiled program itself keeps accepting any size.
UNBOUNDED_MAX_FACTOR = 128


@dataclass(frozen=True)
class DimRange:
    min: int
    max: int | None  # None: unbounded

    @property
    def static(self) -> bool:
        return self.min == self.max

    @property
    def engine_max(self) -> int:
        """The largest size a backend builds for: ``max``, or the stated default when unbounded."""
        return self.max if self.max is not None else max(self.min, 1) * UNBOUNDED_MAX_FACTOR

    def __str__(self) -> str:
        return str(self.min) if self.static else f"{self.min}..{self.max if self.max is not None else 'inf'}"


@dataclass(frozen=True)
class InputInfo:
    name: str
    dtype: torch.dtype
    dims: tuple[DimRange, ...]
    opt: tuple[int, ...] = field(default=())

    def check(self, tensor: Any) -> None:
        if not isinstance(tensor, torch.Tensor):
            raise InputMismatchError(f"input {self.name!r} must be a tensor, got {type(tensor).__name__}")
        if tensor.dim() != len(self.dims):
            raise InputMismatchError(
                f"input {self.name!r} has {tensor.dim()} dimensions; the compiled program expects "
                f"{len(self.dims)} ({self.shape_text()})"
            )
        for axis, (size, rng) in enumerate(zip(tensor.shape, self.dims, strict=True)):
            if size < rng.min or (rng.max is not None and size > rng.max):
                raise InputMismatchError(
                    f"input {self.name!r} dimension {axis} is {size}, outside the compiled range "
                    f"{rng} ({self.shape_text()})"
                )
        if tensor.dtype != self.dtype:
            raise InputMismatchError(
                f"input {self.name!r} has dtype {tensor.dtype}; the compiled program expects {self.dtype}"
            )

    def shape_text(self) -> str:
        return "[" + ", ".join(str(d) for d in self.dims) + "]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": str(self.dtype).removeprefix("torch."),
            "min": [d.min for d in self.dims],
            "max": [d.max for d in self.dims],
            "opt": list(self.opt),
            "engine_max": [d.engine_max for d in self.dims],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputInfo:
        dims = tuple(DimRange(lo, hi) for lo, hi in zip(data["min"], data["max"], strict=True))
        return cls(data["name"], getattr(torch, data["dtype"]), dims, tuple(data["opt"]))


def input_signature(program: torch.export.ExportedProgram, spec: CompileSpec) -> list[InputInfo]:
    """The user inputs of ``program`` with each dimension's range, narrowed by the spec."""
    names = user_input_names(program)
    unknown = [i.name for i in spec.inputs if i.name not in names]
    if unknown:
        raise InputMismatchError(
            f"the spec names input(s) {', '.join(unknown)} that the model does not have; "
            f"its inputs are: {', '.join(names) or '(none)'}"
        )
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    infos = []
    for name in names:
        fake = placeholders[name].meta.get("val")
        if not isinstance(fake, torch.Tensor):
            raise InvalidModelError(f"input {name!r} is not a tensor; only tensor inputs are supported")
        dims = []
        for size in fake.shape:
            if isinstance(size, int):
                dims.append(DimRange(size, size))
            else:
                vr = program.range_constraints.get(size.node.expr)
                lower = _finite_bound(vr.lower) if vr is not None else None
                dims.append(DimRange(lower or 0, _finite_bound(vr.upper) if vr is not None else None))
        spec_input = spec.input_named(name)
        if spec_input is not None:
            dims = _narrow(name, dims, spec_input, fake.dtype)
        opt = tuple(_opt_size(d, spec_input, axis) for axis, d in enumerate(dims))
        infos.append(InputInfo(name, fake.dtype, tuple(dims), opt))
    return infos


def _finite_bound(value: Any) -> int | None:
    """A range end as an int, or None for an infinite one. torch's ``int_oo`` claims to be a
    finite integer to sympy, and ``int()`` on it (or on ``sympy.oo``) fails deep in mpmath, so
    only genuine integers are converted."""
    if isinstance(value, int):
        return value
    if isinstance(value, sympy.Integer):
        return int(value)
    return None


def _narrow(name: str, dims: list[DimRange], spec: InputSpec, dtype: torch.dtype) -> list[DimRange]:
    if spec.dtype is not None and getattr(torch, spec.dtype) != dtype:
        raise InputMismatchError(f"inputs.{name}: the spec says dtype {spec.dtype}, the model takes {dtype}")
    lo = spec.shape if spec.shape is not None else spec.min
    hi = spec.shape if spec.shape is not None else spec.max
    if lo is None or hi is None:
        return dims
    if len(lo) != len(dims):
        raise InputMismatchError(f"inputs.{name}: the spec gives {len(lo)} dimensions, the model has {len(dims)}")
    narrowed = []
    for axis, (rng, a, b) in enumerate(zip(dims, lo, hi, strict=True)):
        if a < rng.min or (rng.max is not None and b > rng.max):
            raise InputMismatchError(
                f"inputs.{name}: dimension {axis} range {a}..{b} is outside what the program "
                f"was exported for ({rng}); export it with a wider torch.export.Dim"
            )
        narrowed.append(DimRange(a, b))
    return narrowed


def _opt_size(rng: DimRange, spec: InputSpec | None, axis: int) -> int:
    if spec is not None and spec.opt is not None:
        return spec.opt[axis]
    if rng.static:
        return rng.min
    upper = rng.max if rng.max is not None else max(rng.min, 1) * 4
    return max(rng.min, min(upper, (rng.min + upper) // 2))


def user_input_names(program: torch.export.ExportedProgram) -> list[str]:
    return list(program.graph_signature.user_inputs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- nn.Module intake
def export_module(
    module: torch.nn.Module, example_inputs: Sequence[torch.Tensor], spec: CompileSpec
) -> torch.export.ExportedProgram:
    """torch.export a module; spec inputs with min/max become ``torch.export.Dim``s."""
    import inspect

    module = module.eval()
    try:
        params = [
            p.name
            for p in inspect.signature(module.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    names = params[: len(example_inputs)] or [f"arg{i}" for i in range(len(example_inputs))]
    unknown = [i.name for i in spec.inputs if i.name not in names]
    if unknown:
        raise InputMismatchError(
            f"the spec names input(s) {', '.join(unknown)} that forward() does not take; "
            f"its inputs are: {', '.join(names)}"
        )
    dynamic_shapes: list[dict[int, Any] | None] = []
    shared: dict[tuple[int, int, int], Any] = {}
    for name, tensor in zip(names, example_inputs, strict=True):
        spec_input = spec.input_named(name)
        if spec_input is None or not spec_input.is_dynamic:
            dynamic_shapes.append(None)
            continue
        assert spec_input.min is not None and spec_input.max is not None
        if len(spec_input.min) != tensor.dim():
            raise SpecError(f"inputs.{name}: {len(spec_input.min)} dimensions given, the example has {tensor.dim()}")
        dims: dict[int, Any] = {}
        for axis, (lo, hi) in enumerate(zip(spec_input.min, spec_input.max, strict=True)):
            if lo == hi:
                continue
            # dims with the same range on the same axis share a Dim (batch across inputs)
            key = (lo, hi, axis)
            if key not in shared:
                shared[key] = torch.export.Dim(f"{name}_{axis}", min=lo, max=hi)
            dims[axis] = shared[key]
        dynamic_shapes.append(dims)
    kwargs: dict[str, Any] = {}
    if any(d is not None for d in dynamic_shapes):
        kwargs["dynamic_shapes"] = tuple(dynamic_shapes)
    return torch.export.export(module, tuple(example_inputs), **kwargs)


def example_inputs_from_spec(spec: CompileSpec) -> list[torch.Tensor] | None:
    """Example inputs from static shapes or opt shapes in the spec, when every input has one."""
    tensors = []
    for item in spec.inputs:
        shape = item.opt_shape
        if shape is None:
            return None
        if item.min is not None and item.max is not None:
            # torch.export specializes a dynamic dimension traced at size 0 or 1
            shape = [
                2 if lo != hi and size < 2 <= hi else size
                for size, lo, hi in zip(shape, item.min, item.max, strict=True)
            ]
        dtype = getattr(torch, item.dtype or "float32")
        if dtype.is_floating_point:
            tensors.append(torch.randn(shape, dtype=dtype))
        elif dtype == torch.bool:
            tensors.append(torch.rand(shape) > 0.5)
        else:
            tensors.append(torch.randint(0, 8, shape, dtype=dtype))
    return tensors or None
