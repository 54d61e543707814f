"""Shape and view ops: view/reshape, permute/transpose, expand, squeeze/unsqueeze, cat/stack,
split/unbind, slice/select, roll, flip, repeat.

Symbolic sizes arrive as 0-d int64 values. Where the output shape can be written with ONNX's
placeholders (``0`` = "this input dim", ``-1`` = "the rest", ``1`` = "keep" for Expand), the
converters emit a constant shape instead of Shape/Gather/Concat arithmetic, so the backends see
the same simple graph for dynamic and static models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext, ConversionError, fake_of
from compiler.conversion.converters._helpers import argument, normalize_dim, normalize_dims
from compiler.conversion.registry import converter

aten = torch.ops.aten

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def add_sizes(ctx: ConversionContext, a: int | ir.Value, b: int | ir.Value) -> int | ir.Value:
    """``a + b`` for sizes that are Python ints or 0-d/1-d int64 values, folded when both are ints."""
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if isinstance(a, int) and a == 0:
        return b
    if isinstance(b, int) and b == 0:
        return a
    return ctx.op("Add", ctx.as_tensor(a, torch.int64), ctx.as_tensor(b, torch.int64))


def mul_sizes(ctx: ConversionContext, a: int | ir.Value, b: int | ir.Value) -> int | ir.Value:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    if isinstance(a, int) and a == 1:
        return b
    if isinstance(b, int) and b == 1:
        return a
    return ctx.op("Mul", ctx.as_tensor(a, torch.int64), ctx.as_tensor(b, torch.int64))


def slice_axis(
    ctx: ConversionContext,
    x: ir.Value,
    axis: int,
    start: int | ir.Value,
    end: int | ir.Value,
    step: int | ir.Value = 1,
) -> ir.Value:
    """ONNX Slice of one axis; bounds may be ints or int64 values (clamped like PyTorch's)."""
    return ctx.op(
        "Slice",
        x,
        ctx.shape_tensor([start]),
        ctx.shape_tensor([end]),
        ctx.ints([axis]),
        ctx.shape_tensor([step]),
    )


def static_shape(node: Any) -> list[int] | None:
    """The shape of ``node``'s tensor when every dimension is a plain int."""
    val = fake_of(node)
    dims = []
    for d in val.shape:
        if not isinstance(d, int):
            return None
        dims.append(d)
    return dims


# ---------------------------------------------------------------------------------- views
def _reshape_spec(
    ctx: ConversionContext, node: fx.Node, sizes: Sequence[Any]
) -> tuple[ir.Value, bool]:
    """The Reshape target for ``node`` and whether it needs ``allowzero``."""
    out_shape = ctx.node_shape(node)
    in_shape = ctx.node_shape(node.args[0])  # type: ignore[arg-type]
    if all(isinstance(d, int) for d in out_shape):
        return ctx.ints([int(d) for d in out_shape]), 0 in out_shape
    if 0 not in out_shape:
        spec: list[int] = []
        unknown = 0
        for i, d in enumerate(out_shape):
            if isinstance(d, int):
                spec.append(d)
            elif i < len(in_shape) and in_shape[i] == d:
                spec.append(0)  # ONNX: copy the input's dimension at this position
            else:
                spec.append(-1)
                unknown += 1
        if unknown <= 1:
            return ctx.ints(spec), False
    return ctx.shape_tensor(list(sizes)), False


@converter(
    aten.view.default,
    aten._unsafe_view.default,
    aten.reshape.default,
    aten._reshape_copy.default,
    onnx_ops={"Reshape", "Concat", "Cast"},
)
def aten_view(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """view(Tensor(a) self, SymInt[] size) -> Tensor(a)

    Also _unsafe_view, reshape and _reshape_copy, which take the same arguments."""
    target, allowzero = _reshape_spec(ctx, node, args[1])
    return ctx.op("Reshape", args[0], target, allowzero=1 if allowzero else None)


@converter(aten.permute.default, onnx_ops={"Transpose"})
def aten_permute(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """permute(Tensor(a) self, int[] dims) -> Tensor(a)"""
    rank = ctx.node_rank(node.args[0])
    perm = normalize_dims(args[1], rank)
    if perm == list(range(rank)):
        return args[0]
    return ctx.op("Transpose", args[0], perm=perm)


@converter(aten.transpose.int, onnx_ops={"Transpose"})
def aten_transpose(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """transpose.int(Tensor(a) self, int dim0, int dim1) -> Tensor(a)"""
    rank = ctx.node_rank(node.args[0])
    if rank < 2:
        return args[0]
    perm = list(range(rank))
    d0, d1 = normalize_dim(args[1], rank), normalize_dim(args[2], rank)
    perm[d0], perm[d1] = perm[d1], perm[d0]
    if d0 == d1:
        return args[0]
    return ctx.op("Transpose", args[0], perm=perm)


@converter(aten.t.default, onnx_ops={"Transpose"})
def aten_t(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """t(Tensor(a) self) -> Tensor(a)"""
    if ctx.node_rank(node.args[0]) < 2:
        return args[0]
    return ctx.op("Transpose", args[0], perm=[1, 0])


@converter(aten.expand.default, aten.expand_copy.default, onnx_ops={"Expand", "Concat", "Cast", "Reshape"})
def aten_expand(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """expand(Tensor(a) self, SymInt[] size, *, bool implicit=False) -> Tensor(a)"""
    in_shape = ctx.node_shape(node.args[0])  # type: ignore[arg-type]
    out_shape = ctx.node_shape(node)
    sizes = list(args[1])
    offset = len(out_shape) - len(in_shape)
    spec: list[Any] = []
    for i, d in enumerate(out_shape):
        j = i - offset
        if j >= 0 and in_shape[j] == d:
            spec.append(1)  # ONNX Expand broadcasts: 1 keeps the input's size, static or not
        elif isinstance(d, int):
            spec.append(d)
        elif isinstance(sizes[i], ir.Value):
            spec.append(sizes[i])
        else:
            raise ConversionError(f"expand: cannot tell the size of dimension {i} of {node.name}")
    if (
        offset == 0
        and all(s == 1 for s in spec if isinstance(s, int))
        and all(isinstance(s, int) for s in spec)
    ):
        return args[0]
    return ctx.op("Expand", args[0], ctx.shape_tensor(spec))


def _squeeze(ctx: ConversionContext, node: fx.Node, x: ir.Value, dims: Any) -> ir.Value:
    in_shape = ctx.node_shape(node.args[0])  # type: ignore[arg-type]
    rank = len(in_shape)
    if rank == 0:
        return x
    axes = sorted({d for d in normalize_dims(dims, rank) if in_shape[d] == 1})
    if rank - len(axes) != ctx.node_rank(node):
        raise ConversionError(f"squeeze {node.name}: a squeezed dimension is not statically 1")
    if not axes:
        return x
    return ctx.op("Squeeze", x, ctx.ints(axes))


@converter(aten.squeeze.default, aten.squeeze.dim, aten.squeeze.dims, onnx_ops={"Squeeze"})
def aten_squeeze(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """squeeze.dims(Tensor(a) self, int[] dim) -> Tensor(a)"""
    dims = argument(args, kwargs, 1, "dim")
    return _squeeze(ctx, node, args[0], dims)


@converter(aten.unsqueeze.default, onnx_ops={"Unsqueeze"})
def aten_unsqueeze(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """unsqueeze(Tensor(a) self, int dim) -> Tensor(a)"""
    axis = normalize_dim(args[1], ctx.node_rank(node.args[0]) + 1)
    return ctx.op("Unsqueeze", args[0], ctx.ints([axis]))


# ------------------------------------------------------------------------- concatenation
def _is_legacy_empty(node: Any) -> bool:
    # torch.cat skips 1-D tensors of size 0 whatever the other tensors' rank (legacy behaviour)
    val = fake_of(node)
    return (
        isinstance(val, torch.Tensor)
        and val.dim() == 1
        and isinstance(val.shape[0], int)
        and val.shape[0] == 0
    )


@converter(aten.cat.default, onnx_ops={"Concat", "Cast"})
def aten_cat(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """cat(Tensor[] tensors, int dim=0) -> Tensor"""
    dtype = ctx.node_dtype(node)
    fx_tensors = node.args[0]
    assert isinstance(fx_tensors, (list, tuple))
    rank = ctx.node_rank(node)
    axis = normalize_dim(argument(args, kwargs, 1, "dim", 0), rank)
    values = [
        ctx.cast(v, dtype)
        for v, n in zip(args[0], fx_tensors, strict=True)
        if not _is_legacy_empty(n)
    ]
    if not values:
        return ctx.const(torch.empty(0, dtype=dtype))
    if len(values) == 1:
        return values[0]
    return ctx.op("Concat", *values, axis=axis)


@converter(aten.stack.default, onnx_ops={"Concat", "Unsqueeze", "Cast"})
def aten_stack(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """stack(Tensor[] tensors, int dim=0) -> Tensor"""
    dtype = ctx.node_dtype(node)
    axis = normalize_dim(argument(args, kwargs, 1, "dim", 0), ctx.node_rank(node))
    axes = ctx.ints([axis])
    values = [ctx.op("Unsqueeze", ctx.cast(v, dtype), axes) for v in args[0]]
    return values[0] if len(values) == 1 else ctx.op("Concat", *values, axis=axis)


# -------------------------------------------------------------------------------- splits
def _split(
    ctx: ConversionContext, node: fx.Node, x: ir.Value, sizes: list[int | ir.Value], axis: int
) -> tuple[ir.Value, ...]:
    dtype = ctx.node_dtype(node, 0)
    if len(sizes) == 1:
        return (x,)
    static = [s for s in sizes if isinstance(s, int)]
    if len(static) == len(sizes):
        outs = ctx.op_multi(
            "Split",
            x,
            ctx.ints(static),
            num_outputs=len(sizes),
            dtypes=[dtype] * len(sizes),
            axis=axis,
        )
        return tuple(outs)
    pieces = []
    start: int | ir.Value = 0
    for i, size in enumerate(sizes):
        end: int | ir.Value = INT64_MAX if i == len(sizes) - 1 else add_sizes(ctx, start, size)
        pieces.append(slice_axis(ctx, x, axis, start, end))
        start = end
    return tuple(pieces)


@converter(
    aten.split.Tensor, onnx_ops={"Split", "Slice", "Add", "Mul", "Cast", "Concat", "Reshape"}
)
def aten_split(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ...]:
    """split.Tensor(Tensor(a -> *) self, SymInt split_size, int dim=0) -> Tensor(a)[]"""
    x, split_size = args[0], args[1]
    rank = ctx.node_rank(node.args[0])
    axis = normalize_dim(argument(args, kwargs, 2, "dim", 0), rank)
    outs = fake_of(node)
    count = len(outs)
    sizes: list[int | ir.Value] = []
    for out in outs:
        d = out.shape[axis]
        sizes.append(d if isinstance(d, int) else split_size)
    if count > 1 and not all(isinstance(s, int) for s in sizes):
        # symbolic chunk size: every piece but the last has split_size elements
        starts = [mul_sizes(ctx, i, split_size) for i in range(count)]
        return tuple(
            slice_axis(ctx, x, axis, starts[i], INT64_MAX if i == count - 1 else starts[i + 1])
            for i in range(count)
        )
    return _split(ctx, node, x, sizes, axis)


@converter(
    aten.split_with_sizes.default, onnx_ops={"Split", "Slice", "Add", "Cast", "Concat", "Reshape"}
)
def aten_split_with_sizes(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ...]:
    """split_with_sizes(Tensor(a -> *) self, SymInt[] split_sizes, int dim=0) -> Tensor(a)[]"""
    axis = normalize_dim(argument(args, kwargs, 2, "dim", 0), ctx.node_rank(node.args[0]))
    return _split(ctx, node, args[0], list(args[1]), axis)


@converter(aten.unbind.int, onnx_ops={"Gather"})
def aten_unbind(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ...]:
    """unbind.int(Tensor(a -> *) self, int dim=0) -> Tensor(a)[]"""
    axis = normalize_dim(argument(args, kwargs, 1, "dim", 0), ctx.node_rank(node.args[0]))
    count = len(fake_of(node))
    return tuple(
        ctx.op("Gather", args[0], ctx.const(i, torch.int64), axis=axis) for i in range(count)
    )


# ------------------------------------------------------------------------------ diagonal
def _diagonal_dims(node: fx.Node) -> tuple[int, int, int]:
    rank = fake_of(node.args[0]).dim()
    offset = argument(node.args, node.kwargs, 1, "offset", 0)
    dim1 = argument(node.args, node.kwargs, 2, "dim1", 0)
    dim2 = argument(node.args, node.kwargs, 3, "dim2", 1)
    return int(offset), normalize_dim(int(dim1), rank), normalize_dim(int(dim2), rank)


def _validate_diagonal(node: fx.Node) -> str | None:
    shape = fake_of(node.args[0]).shape
    _, dim1, dim2 = _diagonal_dims(node)
    if not isinstance(shape[dim1], int) or not isinstance(shape[dim2], int):
        return "the two diagonal dimensions must have static sizes"
    return None


@converter(aten.diagonal.default, onnx_ops={"Transpose", "Reshape", "Gather"}, validator=_validate_diagonal)
def aten_diagonal(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """diagonal(Tensor(a) self, int offset=0, int dim1=0, int dim2=1) -> Tensor(a)

    The two dims move last and flatten into one; the diagonal is a Gather of fixed positions."""
    offset, dim1, dim2 = _diagonal_dims(node)
    shape = fake_of(node.args[0]).shape
    rank = len(shape)
    rows, cols = int(shape[dim1]), int(shape[dim2])
    rest = [d for d in range(rank) if d not in (dim1, dim2)]
    perm = [*rest, dim1, dim2]
    x = args[0] if perm == list(range(rank)) else ctx.op("Transpose", args[0], perm=perm)
    first_row = max(0, -offset)
    length = max(0, min(rows - first_row, cols - max(0, offset)))
    flat = ctx.op("Reshape", x, ctx.ints([0] * len(rest) + [rows * cols]))
    positions = [(first_row + k) * cols + first_row + k + offset for k in range(length)]
    return ctx.op("Gather", flat, ctx.ints(positions), axis=len(rest))


# ----------------------------------------------------------------------------- as_strided
def _strided_view(node: fx.Node) -> tuple[list[int], list[int], int] | None:
    """as_strided's sizes, strides and storage offset when all are compile-time ints."""
    sizes, strides = node.args[1], node.args[2]
    offset = node.args[3] if len(node.args) > 3 else node.kwargs.get("storage_offset")
    offset = 0 if offset is None else offset
    if not isinstance(sizes, (list, tuple)) or not isinstance(strides, (list, tuple)):
        return None
    if not all(isinstance(v, int) for v in [*sizes, *strides, offset]):
        return None
    return [int(v) for v in sizes], [int(v) for v in strides], int(offset)  # type: ignore[arg-type, call-overload]


def _validate_as_strided(node: fx.Node) -> str | None:
    view = _strided_view(node)
    if view is None or static_shape(node.args[0]) is None:
        return "as_strided needs static sizes, strides, offset and input shape"
    source = fake_of(node.args[0])
    if not source.is_contiguous() or source.storage_offset() != 0:
        return "as_strided reads storage; only a contiguous input's storage is its values"
    sizes, strides, offset = view
    if any(s < 0 for s in strides):
        return "negative strides"
    last = offset + sum((n - 1) * s for n, s in zip(sizes, strides, strict=True))
    if all(n > 0 for n in sizes) and last >= source.numel():
        return "as_strided reaches outside the input's elements"
    return None


@converter(aten.as_strided.default, onnx_ops={"Reshape", "Gather"}, validator=_validate_as_strided)
def aten_as_strided(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """as_strided(Tensor(a) self, SymInt[] size, SymInt[] stride, SymInt? storage_offset=None) -> Tensor(a)

    On a contiguous input the storage is the flattened values: a Gather of fixed positions."""
    view = _strided_view(node)
    assert view is not None  # the validator saw to it
    sizes, strides, offset = view
    positions = torch.full(sizes, offset, dtype=torch.int64)
    for axis, (size, stride) in enumerate(zip(sizes, strides, strict=True)):
        shape = [1] * len(sizes)
        shape[axis] = size
        positions = positions + (torch.arange(size, dtype=torch.int64) * stride).reshape(shape)
    flat = ctx.op("Reshape", args[0], ctx.ints([-1]))
    return ctx.op("Gather", flat, ctx.const(positions), axis=0)


# ------------------------------------------------------------------------------- slicing
@converter(aten.slice.Tensor, onnx_ops={"Slice", "Cast", "Reshape"})
def aten_slice(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """slice.Tensor(Tensor(a) self, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1) -> Tensor(a)"""
    x = args[0]
    in_shape = ctx.node_shape(node.args[0])  # type: ignore[arg-type]
    axis = normalize_dim(argument(args, kwargs, 1, "dim", 0), len(in_shape))
    start = argument(args, kwargs, 2, "start")
    end = argument(args, kwargs, 3, "end")
    step = argument(args, kwargs, 4, "step", 1)
    start = 0 if start is None else start
    end = INT64_MAX if end is None else end
    size = in_shape[axis]
    if (
        start == 0
        and step == 1
        and isinstance(end, int)
        and (end == INT64_MAX or (isinstance(size, int) and end >= size))
    ):
        return x
    return slice_axis(ctx, x, axis, start, end, step)


@converter(aten.select.int, onnx_ops={"Gather", "Cast"})
def aten_select(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """select.int(Tensor(a) self, int dim, SymInt index) -> Tensor(a)"""
    axis = normalize_dim(args[1], ctx.node_rank(node.args[0]))
    index = args[2]
    index = (
        ctx.cast(index, torch.int64)
        if isinstance(index, ir.Value)
        else ctx.const(int(index), torch.int64)
    )
    return ctx.op("Gather", args[0], index, axis=axis)


# ------------------------------------------------------------------------ reorder, repeat
@converter(aten.flip.default, onnx_ops={"Slice"})
def aten_flip(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """flip(Tensor self, int[] dims) -> Tensor"""
    axes = sorted(set(normalize_dims(args[1], ctx.node_rank(node.args[0]))))
    if not axes:
        return args[0]
    n = len(axes)
    return ctx.op(
        "Slice",
        args[0],
        ctx.ints([-1] * n),
        ctx.ints([INT64_MIN] * n),
        ctx.ints(axes),
        ctx.ints([-1] * n),
    )


def _roll_axis(
    ctx: ConversionContext, x: ir.Value, shift: int | ir.Value, axis: int, size: int | str
) -> ir.Value:
    if isinstance(size, int) and isinstance(shift, int):
        if size == 0 or shift % size == 0:
            return x
        split: int | ir.Value = size - shift % size
    else:
        n = ctx.dim(x, axis) if not isinstance(size, int) else ctx.ints([size])
        # ONNX integer Mod (fmod=0) takes the divisor's sign, as Python's % does
        shifted = ctx.op("Mod", ctx.shape_tensor([shift]), n)
        split = ctx.op("Sub", n, shifted)
    tail = slice_axis(ctx, x, axis, split, INT64_MAX)
    head = slice_axis(ctx, x, axis, 0, split)
    return ctx.op("Concat", tail, head, axis=axis)


@converter(
    aten.roll.default,
    onnx_ops={"Slice", "Concat", "Reshape", "Shape", "Gather", "Mod", "Sub", "Cast"},
)
def aten_roll(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """roll(Tensor self, SymInt[1] shifts, int[1] dims=[]) -> Tensor"""
    x = args[0]
    shifts = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
    dims = argument(args, kwargs, 2, "dims", [])
    dims = [dims] if isinstance(dims, int) else list(dims)
    shape = ctx.node_shape(node.args[0])  # type: ignore[arg-type]
    if not dims:
        # roll of the flattened tensor, then back to the original shape
        numel: int | str = 1
        for d in shape:
            numel = numel * d if isinstance(numel, int) and isinstance(d, int) else "?"
        flat = ctx.op("Reshape", x, ctx.ints([-1]))
        rolled = _roll_axis(ctx, flat, shifts[0], 0, numel)
        back = ctx.ints(shape) if all(isinstance(d, int) for d in shape) else ctx.shape(x)  # type: ignore[arg-type]
        return ctx.op("Reshape", rolled, back)
    for shift, dim in zip(shifts, dims, strict=True):
        axis = normalize_dim(dim, len(shape))
        x = _roll_axis(ctx, x, shift, axis, shape[axis])
    return x


@converter(aten.repeat.default, onnx_ops={"Tile", "Unsqueeze", "Concat", "Cast", "Reshape"})
def aten_repeat(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """repeat(Tensor self, SymInt[] repeats) -> Tensor"""
    x, repeats = args[0], list(args[1])
    extra = len(repeats) - ctx.node_rank(node.args[0])
    if extra > 0:
        x = ctx.op("Unsqueeze", x, ctx.ints(list(range(extra))))
    if all(isinstance(r, int) and r == 1 for r in repeats):
        return x
    return ctx.op("Tile", x, ctx.shape_tensor(repeats))
