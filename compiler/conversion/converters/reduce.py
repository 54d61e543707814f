"""Reductions and scans: sum, mean, amax/amin, max/min (with indices), argmax/argmin, prod,
var/std, vector norms, any/all, logsumexp, cumsum, cumprod.

Since opset 18 every ``Reduce*`` op takes its axes as an int64 input, not an attribute; an
absent axes input reduces over all dimensions, which is also what PyTorch does for ``dim=None``
and ``dim=[]``.
"""

from __future__ import annotations

import math
from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext, fake_of
from compiler.conversion.converters._helpers import argument, normalize_dim, out_dtype
from compiler.conversion.registry import converter

aten = torch.ops.aten


def _reduce_dims(dims: Any, rank: int) -> list[int] | None:
    """Normalized reduction dims, or None for "every dim" (None, [] or a 0-d input)."""
    if dims is None or rank == 0:
        return None
    if isinstance(dims, int):
        dims = [dims]
    if len(dims) == 0:
        return None
    return sorted({normalize_dim(int(d), rank) for d in dims})


def _reduce(
    ctx: ConversionContext, op: str, x: ir.Value, dims: list[int] | None, keepdim: bool, dtype: torch.dtype | None = None
) -> ir.Value:
    axes = None if dims is None else ctx.ints(dims)
    # every Reduce* keeps its input's element type; say so for the ones the context does not know
    return ctx.op(op, x, axes, keepdims=int(keepdim), dtype=dtype or ctx.dtype(x))


def _input_rank(ctx: ConversionContext, node: fx.Node) -> int:
    return ctx.node_rank(node.args[0])


def _reduced_count(ctx: ConversionContext, x: ir.Value, node: fx.Node, dims: list[int] | None, dtype: torch.dtype) -> ir.Value:
    """How many elements each output reduces over, as a 0-d ``dtype`` value."""
    shape = list(fake_of(node.args[0]).shape)
    picked = shape if dims is None else [shape[d] for d in dims]
    if all(isinstance(d, int) for d in picked):
        return ctx.const(math.prod(int(d) for d in picked), dtype)
    if dims is None:
        return ctx.cast(ctx.op("Size", x), dtype)
    sizes = ctx.op("Gather", ctx.shape(x), ctx.ints(dims), axis=0)
    return ctx.cast(ctx.op("ReduceProd", sizes, keepdims=0), dtype)


# ------------------------------------------------------------------ sum, mean, prod, amax, amin


@converter(aten.sum.dim_IntList, aten.sum.default, onnx_ops={"ReduceSum", "Cast"})
def aten_sum(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """sum.dim_IntList(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor"""
    return _reduce_in_out_dtype(ctx, node, args, kwargs, "ReduceSum")


def _validate_prims_sum(node: fx.Node) -> str | None:
    if not fake_of(node.args[0]).dtype.is_floating_point:
        # eager sums integers into int64 while the op's meta kernel says the input's dtype
        return "prims.sum of integers: its recorded dtype disagrees with what it computes"
    return None


@converter(torch.ops.prims.sum.default, onnx_ops={"ReduceSum", "Cast"}, validator=_validate_prims_sum)
def prims_sum(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """sum(Tensor inp, int[]? dims, *, ScalarType? output_dtype=None) -> Tensor"""
    x = ctx.cast(args[0], out_dtype(node))
    return _reduce(ctx, "ReduceSum", x, _reduce_dims(args[1], _input_rank(ctx, node)), keepdim=False)


def _reduce_in_out_dtype(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any], onnx_op: str
) -> ir.Value:
    """sum, mean and prod: (self, dim?, keepdim=False, *, dtype=None); the .default overloads
    have no dim/keepdim, and dtype is keyword-only. The output dtype is the dtype argument, or
    int64 for bool/integer inputs (sum, prod): the reduction runs in it."""
    dims = argument(args, kwargs, 1, "dim")
    keepdim = bool(argument(args, kwargs, 2, "keepdim", False))
    x = ctx.cast(args[0], out_dtype(node))
    return _reduce(ctx, onnx_op, x, _reduce_dims(dims, _input_rank(ctx, node)), keepdim)


@converter(aten.mean.dim, aten.mean.default, onnx_ops={"ReduceMean", "Cast"})
def aten_mean(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """mean.dim(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor"""
    return _reduce_in_out_dtype(ctx, node, args, kwargs, "ReduceMean")


@converter(aten.prod.dim_int, aten.prod.default, onnx_ops={"ReduceProd", "Cast"})
def aten_prod(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """prod.dim_int(Tensor self, int dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor"""
    return _reduce_in_out_dtype(ctx, node, args, kwargs, "ReduceProd")


@converter(aten.amax.default, aten.max.default, onnx_ops={"ReduceMax"})
def aten_amax(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """amax(Tensor self, int[1] dim=[], bool keepdim=False) -> Tensor

    Also max(Tensor self) -> Tensor, the maximum over every element."""
    dims = argument(args, kwargs, 1, "dim")
    keepdim = bool(argument(args, kwargs, 2, "keepdim", False))
    # opset 20 ReduceMax/ReduceMin take bool, so bool inputs need no cast
    return _reduce(ctx, "ReduceMax", args[0], _reduce_dims(dims, _input_rank(ctx, node)), keepdim)


@converter(aten.amin.default, aten.min.default, onnx_ops={"ReduceMin"})
def aten_amin(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """amin(Tensor self, int[1] dim=[], bool keepdim=False) -> Tensor

    Also min(Tensor self) -> Tensor, the minimum over every element."""
    dims = argument(args, kwargs, 1, "dim")
    keepdim = bool(argument(args, kwargs, 2, "keepdim", False))
    return _reduce(ctx, "ReduceMin", args[0], _reduce_dims(dims, _input_rank(ctx, node)), keepdim)


# ------------------------------------------------------------------ max/min with indices, argmax/argmin


def _arg_input(ctx: ConversionContext, x: ir.Value) -> ir.Value:
    # ArgMax/ArgMin have no bool kernels; 0 < 1 orders False before True as torch does
    return ctx.cast(x, torch.int32) if ctx.dtype(x) == torch.bool else x


def _values_and_indices(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any], reduce_op: str, arg_op: str
) -> tuple[ir.Value, ir.Value]:
    x = args[0]
    rank = _input_rank(ctx, node)
    keepdim = bool(argument(args, kwargs, 2, "keepdim", False))
    if rank == 0:
        return ctx.op("Identity", x), ctx.const(0, torch.int64)
    dim = normalize_dim(int(argument(args, kwargs, 1, "dim")), rank)
    values = _reduce(ctx, reduce_op, x, [dim], keepdim)
    # select_last_index=0: the first of equal extremes, as PyTorch returns
    indices = ctx.op(arg_op, _arg_input(ctx, x), axis=dim, keepdims=int(keepdim), select_last_index=0)
    return values, indices


@converter(aten.max.dim, onnx_ops={"ReduceMax", "ArgMax", "Cast", "Identity"})
def aten_max_dim(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ir.Value]:
    """max.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor indices)"""
    return _values_and_indices(ctx, node, args, kwargs, "ReduceMax", "ArgMax")


@converter(aten.min.dim, onnx_ops={"ReduceMin", "ArgMin", "Cast", "Identity"})
def aten_min_dim(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ir.Value]:
    """min.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor indices)"""
    return _values_and_indices(ctx, node, args, kwargs, "ReduceMin", "ArgMin")


def _arg_extreme(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any], op: str) -> ir.Value:
    x = _arg_input(ctx, args[0])
    rank = _input_rank(ctx, node)
    dim = argument(args, kwargs, 1, "dim")
    keepdim = bool(argument(args, kwargs, 2, "keepdim", False))
    if dim is not None and rank > 0:
        return ctx.op(op, x, axis=normalize_dim(int(dim), rank), keepdims=int(keepdim), select_last_index=0)
    # dim=None: the index into the flattened tensor; keepdim keeps every dim at size one
    flat = ctx.op(op, ctx.op("Reshape", x, ctx.ints([-1])), axis=0, keepdims=0, select_last_index=0)
    return ctx.op("Reshape", flat, ctx.ints([1] * rank)) if keepdim and rank > 0 else flat


@converter(aten.argmax.default, onnx_ops={"ArgMax", "Reshape", "Cast"})
def aten_argmax(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """argmax(Tensor self, int? dim=None, bool keepdim=False) -> Tensor"""
    return _arg_extreme(ctx, node, args, kwargs, "ArgMax")


@converter(aten.argmin.default, onnx_ops={"ArgMin", "Reshape", "Cast"})
def aten_argmin(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """argmin(Tensor self, int? dim=None, bool keepdim=False) -> Tensor"""
    return _arg_extreme(ctx, node, args, kwargs, "ArgMin")


# ------------------------------------------------------------------ var, std, norms


def _variance(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ir.Value]:
    """(variance, mean) with the reduction dims kept as size-one dims."""
    x = args[0]
    dims = _reduce_dims(argument(args, kwargs, 1, "dim"), _input_rank(ctx, node))
    correction = kwargs.get("correction")
    correction = 1 if correction is None else correction
    keepdim = bool(kwargs.get("keepdim", False))
    dtype = ctx.dtype(x)
    mean = _reduce(ctx, "ReduceMean", x, dims, True)
    squares = _reduce(ctx, "ReduceSumSquare", ctx.op("Sub", x, mean), dims, keepdim)
    count = _reduced_count(ctx, x, node, dims, dtype)
    # PyTorch clamps the degrees of freedom at zero (so N <= correction gives inf or nan)
    dof = ctx.op("Max", ctx.op("Sub", count, ctx.const(correction, dtype)), ctx.const(0, dtype))
    variance = ctx.op("Div", squares, dof)
    if not keepdim:
        mean = _reduce(ctx, "ReduceMean", mean, dims, False)
    return variance, mean


_VAR_OPS = {"ReduceMean", "ReduceSumSquare", "Sub", "Max", "Div", "Size", "Shape", "Gather", "ReduceProd", "Cast"}


@converter(aten.var.correction, onnx_ops=_VAR_OPS)
def aten_var(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """var.correction(Tensor self, int[1]? dim=None, *, Scalar? correction=None, bool keepdim=False) -> Tensor"""
    return _variance(ctx, node, args, kwargs)[0]


@converter(aten.std.correction, onnx_ops=_VAR_OPS | {"Sqrt"})
def aten_std(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """std.correction(Tensor self, int[1]? dim=None, *, Scalar? correction=None, bool keepdim=False) -> Tensor"""
    return ctx.op("Sqrt", _variance(ctx, node, args, kwargs)[0])


@converter(aten.var_mean.correction, onnx_ops=_VAR_OPS)
def aten_var_mean(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ir.Value]:
    """var_mean.correction(Tensor self, int[1]? dim=None, *, Scalar? correction=None, bool keepdim=False) -> (Tensor, Tensor)"""
    return _variance(ctx, node, args, kwargs)


@converter(aten.std_mean.correction, onnx_ops=_VAR_OPS | {"Sqrt"})
def aten_std_mean(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ir.Value]:
    """std_mean.correction(Tensor self, int[1]? dim=None, *, Scalar? correction=None, bool keepdim=False) -> (Tensor, Tensor)"""
    variance, mean = _variance(ctx, node, args, kwargs)
    return ctx.op("Sqrt", variance), mean


@converter(
    aten.linalg_vector_norm.default,
    onnx_ops={"ReduceL2", "ReduceL1", "ReduceMax", "ReduceMin", "ReduceSum", "Abs", "Pow", "Equal", "Not", "Cast"},
)
def aten_linalg_vector_norm(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """linalg_vector_norm(Tensor self, Scalar ord=2, int[1]? dim=None, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor"""
    dtype = out_dtype(node)
    x = ctx.cast(args[0], dtype)
    ord_ = float(argument(args, kwargs, 1, "ord", 2))
    dims = _reduce_dims(argument(args, kwargs, 2, "dim"), _input_rank(ctx, node))
    keepdim = bool(argument(args, kwargs, 3, "keepdim", False))
    if ord_ == 2:
        return _reduce(ctx, "ReduceL2", x, dims, keepdim)
    if ord_ == 1:
        return _reduce(ctx, "ReduceL1", x, dims, keepdim)
    if ord_ == math.inf:
        return _reduce(ctx, "ReduceMax", ctx.op("Abs", x), dims, keepdim)
    if ord_ == -math.inf:
        return _reduce(ctx, "ReduceMin", ctx.op("Abs", x), dims, keepdim)
    if ord_ == 0:
        nonzero = ctx.op("Not", ctx.op("Equal", x, ctx.scalar_like(0, dtype)))
        return _reduce(ctx, "ReduceSum", ctx.cast(nonzero, dtype), dims, keepdim)
    powered = ctx.op("Pow", ctx.op("Abs", x), ctx.scalar_like(ord_, dtype))
    return ctx.op("Pow", _reduce(ctx, "ReduceSum", powered, dims, keepdim), ctx.scalar_like(1.0 / ord_, dtype))


# ------------------------------------------------------------------ any, all, logsumexp


def _truth(ctx: ConversionContext, x: ir.Value) -> ir.Value:
    if ctx.dtype(x) == torch.bool:
        return x
    # != 0, so NaN counts as true, as in PyTorch
    return ctx.op("Not", ctx.op("Equal", x, ctx.scalar_like(0, x)))


def _any_all(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any], op: str
) -> ir.Value:
    dims = _reduce_dims(argument(args, kwargs, 1, "dim"), _input_rank(ctx, node))
    keepdim = bool(argument(args, kwargs, 2, "keepdim", False))
    # bool ReduceMax is "any" and bool ReduceMin is "all" (bool reductions exist since opset 20)
    result = _reduce(ctx, op, _truth(ctx, args[0]), dims, keepdim)
    # uint8 inputs give uint8 results in PyTorch
    return ctx.cast(result, out_dtype(node))


@converter(aten.any.default, aten.any.dim, aten.any.dims, onnx_ops={"ReduceMax", "Equal", "Not", "Cast"})
def aten_any(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """any.dims(Tensor self, int[]? dim=None, bool keepdim=False) -> Tensor"""
    return _any_all(ctx, node, args, kwargs, "ReduceMax")


@converter(aten.all.default, aten.all.dim, aten.all.dims, onnx_ops={"ReduceMin", "Equal", "Not", "Cast"})
def aten_all(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """all.dims(Tensor self, int[]? dim=None, bool keepdim=False) -> Tensor"""
    return _any_all(ctx, node, args, kwargs, "ReduceMin")


def logsumexp(ctx: ConversionContext, x: ir.Value, dims: list[int] | None, keepdim: bool) -> ir.Value:
    """log(sum(exp(x))) over ``dims``, shifted by the maximum so large inputs do not overflow.

    ReduceLogSumExp is not used: backends may compute it without the shift."""
    peak = _reduce(ctx, "ReduceMax", x, dims, True)
    # an all -inf (or +inf) slice must not turn into inf - inf = nan
    peak = ctx.op("Where", ctx.op("IsInf", peak), ctx.scalar_like(0, x), peak)
    summed = _reduce(ctx, "ReduceSum", ctx.op("Exp", ctx.op("Sub", x, peak)), dims, keepdim)
    if not keepdim:
        peak = ctx.op("Squeeze", peak, None if dims is None else ctx.ints(dims))
    return ctx.op("Add", ctx.op("Log", summed), peak)


_LOGSUMEXP_OPS = {"ReduceMax", "IsInf", "Where", "Sub", "Exp", "ReduceSum", "Squeeze", "Log", "Add", "Cast"}


@converter(aten.logsumexp.default, onnx_ops=_LOGSUMEXP_OPS)
def aten_logsumexp(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """logsumexp(Tensor self, int[1] dim, bool keepdim=False) -> Tensor"""
    x = ctx.cast(args[0], out_dtype(node))
    dims = _reduce_dims(argument(args, kwargs, 1, "dim"), _input_rank(ctx, node))
    keepdim = bool(argument(args, kwargs, 2, "keepdim", False))
    return logsumexp(ctx, x, dims, keepdim)


# ------------------------------------------------------------------ scans


@converter(aten.cumsum.default, onnx_ops={"CumSum", "Cast", "Identity"})
def aten_cumsum(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """cumsum(Tensor self, int dim, *, ScalarType? dtype=None) -> Tensor"""
    x = ctx.cast(args[0], out_dtype(node))
    rank = _input_rank(ctx, node)
    if rank == 0:
        return ctx.op("Identity", x)
    return ctx.op("CumSum", x, ctx.const(normalize_dim(int(args[1]), rank), torch.int64))


def _validate_cumprod(node: fx.Node) -> str | None:
    if not out_dtype(node).is_floating_point:
        return "cumprod of integers has no exact ONNX form (it is built from CumSum of logarithms)"
    return None


_CUMPROD_OPS = {"CumSum", "Cast", "Identity", "Abs", "Equal", "Where", "Log", "Exp", "Less", "Mod", "Mul", "Sub", "Greater"}


@converter(aten.cumprod.default, onnx_ops=_CUMPROD_OPS, validator=_validate_cumprod)
def aten_cumprod(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """cumprod(Tensor self, int dim, *, ScalarType? dtype=None) -> Tensor"""
    dtype = out_dtype(node)
    rank = _input_rank(ctx, node)
    if rank == 0:
        return ctx.op("Identity", ctx.cast(args[0], dtype))
    # ONNX has no CumProd: the magnitude is exp(cumsum(log|x|)) in float32 or wider, the sign
    # follows the running count of negative factors, and a zero zeroes everything after it.
    work = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    x = ctx.cast(args[0], work)
    axis = ctx.const(normalize_dim(int(args[1]), rank), torch.int64)
    zero, one = ctx.scalar_like(0, work), ctx.scalar_like(1, work)
    is_zero = ctx.op("Equal", x, zero)
    logs = ctx.op("Log", ctx.op("Where", is_zero, one, ctx.op("Abs", x)))
    magnitude = ctx.op("Exp", ctx.op("CumSum", logs, axis))
    negatives = ctx.op("CumSum", ctx.cast(ctx.op("Less", x, zero), torch.int64), axis)
    odd = ctx.cast(ctx.op("Mod", negatives, ctx.const(2, torch.int64)), work)
    sign = ctx.op("Sub", one, ctx.op("Mul", odd, ctx.scalar_like(2, work)))
    zero_seen = ctx.op("Greater", ctx.op("CumSum", ctx.cast(is_zero, torch.int64), axis), ctx.const(0, torch.int64))
    result = ctx.op("Where", zero_seen, zero, ctx.op("Mul", sign, magnitude))
    return ctx.cast(result, dtype)
