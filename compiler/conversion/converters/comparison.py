"""Comparisons, logical and bitwise ops, NaN/inf tests, and the selections built on them:
where, masked_fill, maximum/minimum, clamp.

ONNX Runtime's CPU provider lacks some integer and bool kernels that PyTorch has (Max/Min/Clip
and Where on int16, Where on bool, ordering comparisons on bool). Those cases compute in a wider
type or in logic ops and come back exactly, rather than failing the engine build.
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext
from compiler.conversion.converters._helpers import compute_dtype, out_dtype, promote
from compiler.conversion.converters.elementwise import FLOATS, INTS, NUMERIC, validate_dtypes
from compiler.conversion.registry import converter

aten = torch.ops.aten

# integer types ONNX Runtime's CPU Max/Min/Clip/Where lack, and the type they compute in instead
_WIDEN = {torch.int16: torch.int32}


# --------------------------------------------------------------------------- comparisons
def _compare(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], op_type: str) -> ir.Value:
    dtype = compute_dtype(node)
    if dtype == torch.bool and op_type != "Equal":
        # False < True, as on uint8; ONNX orders no bools
        dtype = torch.uint8
    a, b = promote(ctx, dtype, args[0], args[1])
    return ctx.op(op_type, a, b)


_COMPARE_OPS = {"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "Cast"}
_ANY_DTYPE = validate_dtypes()


@converter(aten.eq.Tensor, aten.eq.Scalar, onnx_ops=_COMPARE_OPS, validator=_ANY_DTYPE)
def aten_eq(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """eq.Tensor(Tensor self, Tensor other) -> Tensor"""
    return _compare(ctx, node, args, "Equal")


@converter(aten.ne.Tensor, aten.ne.Scalar, onnx_ops=_COMPARE_OPS, validator=_ANY_DTYPE)
def aten_ne(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """ne.Tensor(Tensor self, Tensor other) -> Tensor  (true for NaN, like IEEE !=)"""
    return ctx.op("Not", _compare(ctx, node, args, "Equal"))


@converter(aten.lt.Tensor, aten.lt.Scalar, onnx_ops=_COMPARE_OPS, validator=_ANY_DTYPE)
def aten_lt(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """lt.Tensor(Tensor self, Tensor other) -> Tensor"""
    return _compare(ctx, node, args, "Less")


@converter(aten.le.Tensor, aten.le.Scalar, onnx_ops=_COMPARE_OPS, validator=_ANY_DTYPE)
def aten_le(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """le.Tensor(Tensor self, Tensor other) -> Tensor"""
    return _compare(ctx, node, args, "LessOrEqual")


@converter(aten.gt.Tensor, aten.gt.Scalar, onnx_ops=_COMPARE_OPS, validator=_ANY_DTYPE)
def aten_gt(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """gt.Tensor(Tensor self, Tensor other) -> Tensor"""
    return _compare(ctx, node, args, "Greater")


@converter(aten.ge.Tensor, aten.ge.Scalar, onnx_ops=_COMPARE_OPS, validator=_ANY_DTYPE)
def aten_ge(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """ge.Tensor(Tensor self, Tensor other) -> Tensor"""
    return _compare(ctx, node, args, "GreaterOrEqual")


# --------------------------------------------------------------------------- NaN and inf tests
def _never(ctx: ConversionContext, x: ir.Value) -> ir.Value:
    """All-false with ``x``'s shape: integers are never NaN or infinite."""
    return ctx.op("Not", ctx.op("Equal", x, x))


_TEST_OPS = {"IsNaN", "IsInf", "Equal", "Not", "Or"}


@converter(aten.isnan.default, onnx_ops=_TEST_OPS, validator=_ANY_DTYPE)
def aten_isnan(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """isnan(Tensor self) -> Tensor"""
    x = args[0]
    return ctx.op("IsNaN", x) if ctx.dtype(x) in FLOATS else _never(ctx, x)


@converter(aten.isinf.default, onnx_ops=_TEST_OPS, validator=_ANY_DTYPE)
def aten_isinf(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """isinf(Tensor self) -> Tensor"""
    x = args[0]
    return ctx.op("IsInf", x) if ctx.dtype(x) in FLOATS else _never(ctx, x)


@converter(aten.isposinf.default, onnx_ops=_TEST_OPS, validator=_ANY_DTYPE)
def aten_isposinf(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """isposinf(Tensor self) -> Tensor"""
    x = args[0]
    return ctx.op("IsInf", x, detect_negative=0) if ctx.dtype(x) in FLOATS else _never(ctx, x)


@converter(aten.isneginf.default, onnx_ops=_TEST_OPS, validator=_ANY_DTYPE)
def aten_isneginf(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """isneginf(Tensor self) -> Tensor"""
    x = args[0]
    return ctx.op("IsInf", x, detect_positive=0) if ctx.dtype(x) in FLOATS else _never(ctx, x)


@converter(aten.isfinite.default, onnx_ops=_TEST_OPS, validator=_ANY_DTYPE)
def aten_isfinite(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """isfinite(Tensor self) -> Tensor"""
    x = args[0]
    if ctx.dtype(x) not in FLOATS:
        return ctx.op("Equal", x, x)
    return ctx.op("Not", ctx.op("Or", ctx.op("IsNaN", x), ctx.op("IsInf", x)))


# --------------------------------------------------------------------------- logical
def _truth(ctx: ConversionContext, x: ir.Value) -> ir.Value:
    # Cast to bool is "!= 0", NaN included, which is PyTorch's truthiness
    return ctx.cast(x, torch.bool)


_LOGICAL_OPS = {"And", "Or", "Xor", "Not", "Cast"}


@converter(aten.logical_and.default, onnx_ops=_LOGICAL_OPS, validator=_ANY_DTYPE)
def aten_logical_and(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """logical_and(Tensor self, Tensor other) -> Tensor"""
    return ctx.op("And", _truth(ctx, args[0]), _truth(ctx, args[1]))


@converter(aten.logical_or.default, onnx_ops=_LOGICAL_OPS, validator=_ANY_DTYPE)
def aten_logical_or(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """logical_or(Tensor self, Tensor other) -> Tensor"""
    return ctx.op("Or", _truth(ctx, args[0]), _truth(ctx, args[1]))


@converter(aten.logical_xor.default, onnx_ops=_LOGICAL_OPS, validator=_ANY_DTYPE)
def aten_logical_xor(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """logical_xor(Tensor self, Tensor other) -> Tensor"""
    return ctx.op("Xor", _truth(ctx, args[0]), _truth(ctx, args[1]))


@converter(aten.logical_not.default, onnx_ops=_LOGICAL_OPS, validator=_ANY_DTYPE)
def aten_logical_not(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """logical_not(Tensor self) -> Tensor"""
    return ctx.op("Not", _truth(ctx, args[0]))


# --------------------------------------------------------------------------- bitwise
_BITWISE = validate_dtypes(
    INTS | {torch.bool}, compute=compute_dtype, why="bitwise ops take integer and bool tensors"
)
_BITWISE_OPS = {"BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot", "And", "Or", "Xor", "Not", "Cast"}


def _bitwise(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], bool_op: str, int_op: str) -> ir.Value:
    dtype = compute_dtype(node)
    a, b = promote(ctx, dtype, args[0], args[1])
    return ctx.op(bool_op if dtype == torch.bool else int_op, a, b)


@converter(
    aten.bitwise_and.Tensor,
    aten.bitwise_and.Scalar,
    aten.bitwise_and.Scalar_Tensor,
    onnx_ops=_BITWISE_OPS,
    validator=_BITWISE,
)
def aten_bitwise_and(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """bitwise_and.Tensor(Tensor self, Tensor other) -> Tensor

    Also bitwise_and.Scalar (Tensor self, Scalar other) and .Scalar_Tensor (Scalar self, Tensor other)."""
    return _bitwise(ctx, node, args, "And", "BitwiseAnd")


@converter(
    aten.bitwise_or.Tensor,
    aten.bitwise_or.Scalar,
    aten.bitwise_or.Scalar_Tensor,
    onnx_ops=_BITWISE_OPS,
    validator=_BITWISE,
)
def aten_bitwise_or(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """bitwise_or.Tensor(Tensor self, Tensor other) -> Tensor

    Also bitwise_or.Scalar (Tensor self, Scalar other) and .Scalar_Tensor (Scalar self, Tensor other)."""
    return _bitwise(ctx, node, args, "Or", "BitwiseOr")


@converter(
    aten.bitwise_xor.Tensor,
    aten.bitwise_xor.Scalar,
    aten.bitwise_xor.Scalar_Tensor,
    onnx_ops=_BITWISE_OPS,
    validator=_BITWISE,
)
def aten_bitwise_xor(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """bitwise_xor.Tensor(Tensor self, Tensor other) -> Tensor

    Also bitwise_xor.Scalar (Tensor self, Scalar other) and .Scalar_Tensor (Scalar self, Tensor other)."""
    return _bitwise(ctx, node, args, "Xor", "BitwiseXor")


@converter(aten.bitwise_not.default, onnx_ops=_BITWISE_OPS, validator=_BITWISE)
def aten_bitwise_not(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """bitwise_not(Tensor self) -> Tensor"""
    x = args[0]
    return ctx.op("Not" if ctx.dtype(x) == torch.bool else "BitwiseNot", x)


# --------------------------------------------------------------------------- selection
def select(ctx: ConversionContext, cond: ir.Value, a: ir.Value, b: ir.Value, dtype: torch.dtype) -> ir.Value:
    """``Where(cond, a, b)`` with ``a`` and ``b`` already of ``dtype``, for every dtype."""
    cond = ctx.cast(cond, torch.bool)
    if dtype == torch.bool:
        return ctx.op("Or", ctx.op("And", cond, a), ctx.op("And", ctx.op("Not", cond), b))
    wide = _WIDEN.get(dtype)
    if wide is not None:
        return ctx.cast(ctx.op("Where", cond, ctx.cast(a, wide), ctx.cast(b, wide)), dtype)
    return ctx.op("Where", cond, a, b)


_SELECT_OPS = {"Where", "And", "Or", "Not", "Cast"}


@converter(
    aten.where.self,
    aten.where.ScalarSelf,
    aten.where.ScalarOther,
    aten.where.Scalar,
    onnx_ops=_SELECT_OPS,
    validator=_ANY_DTYPE,
)
def aten_where(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """where.self(Tensor condition, Tensor self, Tensor other) -> Tensor"""
    dtype = out_dtype(node)
    a, b = promote(ctx, dtype, args[1], args[2])
    return select(ctx, args[0], a, b, dtype)


@converter(aten.masked_fill.Scalar, aten.masked_fill.Tensor, onnx_ops=_SELECT_OPS, validator=_ANY_DTYPE)
def aten_masked_fill(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """masked_fill.Scalar(Tensor self, Tensor mask, Scalar value) -> Tensor  (keeps self's dtype)"""
    x, mask, value = args[:3]
    dtype = ctx.dtype(x)
    return select(ctx, mask, ctx.as_tensor(value, dtype), x, dtype)


def max_min(ctx: ConversionContext, a: ir.Value, b: ir.Value, dtype: torch.dtype, op_type: str) -> ir.Value:
    """ONNX Max/Min (NaN-propagating since opset 12, as PyTorch's maximum/minimum)."""
    if dtype == torch.bool:
        return ctx.op("Or" if op_type == "Max" else "And", a, b)
    wide = _WIDEN.get(dtype)
    if wide is not None:
        return ctx.cast(ctx.op(op_type, ctx.cast(a, wide), ctx.cast(b, wide)), dtype)
    return ctx.op(op_type, a, b)


_MAX_MIN_OPS = {"Max", "Min", "Or", "And", "Cast"}


@converter(aten.maximum.default, onnx_ops=_MAX_MIN_OPS, validator=_ANY_DTYPE)
def aten_maximum(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """maximum(Tensor self, Tensor other) -> Tensor  (propagates NaN)"""
    dtype = compute_dtype(node)
    a, b = promote(ctx, dtype, args[0], args[1])
    return max_min(ctx, a, b, dtype, "Max")


@converter(aten.minimum.default, onnx_ops=_MAX_MIN_OPS, validator=_ANY_DTYPE)
def aten_minimum(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """minimum(Tensor self, Tensor other) -> Tensor  (propagates NaN)"""
    dtype = compute_dtype(node)
    a, b = promote(ctx, dtype, args[0], args[1])
    return max_min(ctx, a, b, dtype, "Min")


def _nan_ignoring(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], op_type: str) -> ir.Value:
    dtype = compute_dtype(node)
    a, b = promote(ctx, dtype, args[0], args[1])
    both = max_min(ctx, a, b, dtype, op_type)
    if dtype not in FLOATS:
        return both
    # a NaN operand yields the other one; NaN only when both are NaN
    return ctx.op("Where", ctx.op("IsNaN", a), b, ctx.op("Where", ctx.op("IsNaN", b), a, both))


@converter(aten.fmax.default, onnx_ops=_MAX_MIN_OPS | {"IsNaN", "Where"}, validator=_ANY_DTYPE)
def aten_fmax(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """fmax(Tensor self, Tensor other) -> Tensor  (ignores NaN)"""
    return _nan_ignoring(ctx, node, args, "Max")


@converter(aten.fmin.default, onnx_ops=_MAX_MIN_OPS | {"IsNaN", "Where"}, validator=_ANY_DTYPE)
def aten_fmin(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """fmin(Tensor self, Tensor other) -> Tensor  (ignores NaN)"""
    return _nan_ignoring(ctx, node, args, "Min")


# --------------------------------------------------------------------------- clamp
def _validate_clamp(node: fx.Node) -> str | None:
    bounds = list(node.args[1:3]) + [node.kwargs.get(k) for k in ("min", "max")]
    if all(b is None for b in bounds):
        return "clamp needs at least one of min and max (PyTorch raises)"
    if out_dtype(node) == torch.bool:
        return "clamp of bool tensors is not converted"
    return None


_CLAMP = validate_dtypes(NUMERIC, why="clamp of bool tensors is not converted", extra=_validate_clamp)
_CLAMP_OPS = {"Clip", "Max", "Min", "Cast"}


def clip(ctx: ConversionContext, x: ir.Value, low: Any, high: Any, dtype: torch.dtype) -> ir.Value:
    """Clamp by Python-number bounds: ONNX Clip (which gives ``high`` where low > high, and keeps
    NaN, as PyTorch's clamp does)."""
    compute = _WIDEN.get(dtype, dtype)
    x = ctx.cast(x, compute)
    lo = None if low is None else ctx.const(low, compute)
    hi = None if high is None else ctx.const(high, compute)
    return ctx.cast(ctx.op("Clip", x, lo, hi), dtype)


def _clamp_tensors(ctx: ConversionContext, x: ir.Value, low: Any, high: Any, dtype: torch.dtype) -> ir.Value:
    """Clamp by tensor bounds (ONNX Clip takes only scalars): min(max(x, low), high)."""
    if low is not None:
        x = max_min(ctx, x, ctx.as_tensor(low, dtype), dtype, "Max")
    if high is not None:
        x = max_min(ctx, x, ctx.as_tensor(high, dtype), dtype, "Min")
    return x


def _bounds(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    low = args[1] if len(args) > 1 else kwargs.get("min")
    high = args[2] if len(args) > 2 else kwargs.get("max")
    return low, high


@converter(aten.clamp.default, onnx_ops=_CLAMP_OPS, validator=_CLAMP)
def aten_clamp(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """clamp(Tensor self, Scalar? min=None, Scalar? max=None) -> Tensor"""
    dtype = out_dtype(node)
    low, high = _bounds(args, kwargs)
    x = ctx.cast(args[0], dtype)
    if isinstance(low, ir.Value) or isinstance(high, ir.Value):
        # symbolic-int bounds arrive as values
        return _clamp_tensors(ctx, x, low, high, dtype)
    return clip(ctx, x, low, high, dtype)


@converter(aten.clamp.Tensor, onnx_ops=_CLAMP_OPS, validator=_CLAMP)
def aten_clamp_tensor(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """clamp.Tensor(Tensor self, Tensor? min=None, Tensor? max=None) -> Tensor"""
    dtype = out_dtype(node)
    low, high = _bounds(args, kwargs)
    return _clamp_tensors(ctx, ctx.cast(args[0], dtype), low, high, dtype)


@converter(aten.clamp_min.default, aten.clamp_min.Tensor, onnx_ops=_CLAMP_OPS, validator=_CLAMP)
def aten_clamp_min(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """clamp_min(Tensor self, Scalar min) -> Tensor"""
    dtype = out_dtype(node)
    x, low = ctx.cast(args[0], dtype), args[1]
    if isinstance(low, ir.Value):
        return _clamp_tensors(ctx, x, low, None, dtype)
    return clip(ctx, x, low, None, dtype)


@converter(aten.clamp_max.default, aten.clamp_max.Tensor, onnx_ops=_CLAMP_OPS, validator=_CLAMP)
def aten_clamp_max(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """clamp_max(Tensor self, Scalar max) -> Tensor"""
    dtype = out_dtype(node)
    x, high = ctx.cast(args[0], dtype), args[1]
    if isinstance(high, ir.Value):
        return _clamp_tensors(ctx, x, None, high, dtype)
    return clip(ctx, x, None, high, dtype)

