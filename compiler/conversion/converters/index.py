"""Indexing: advanced indexing (index/index_put), index_select, gather/scatter, embedding,
take_along_dim, slice/select scatter, copy, and triangular masks (tril/triu).

Boolean-mask indexing ``x[mask]`` (one mask, no other index tensor) converts to NonZero +
GatherND; its output size depends on the values (see ``selection``). ``x[mask] = v`` scatters
v's rows to the mask's positions (ScatterND; ``x[mask] = scalar`` is an elementwise select);
masks mixed with index tensors stay in PyTorch.
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext, ConversionError, fake_of
from compiler.conversion.converters._helpers import argument, normalize_dim
from compiler.conversion.converters.selection import MASK_DTYPES, mask_index, nonzero_rows
from compiler.conversion.converters.shape import INT64_MAX, slice_axis, static_shape
from compiler.conversion.registry import converter

aten = torch.ops.aten

_MASK_DTYPES = MASK_DTYPES


def _index_fakes(node: fx.Node) -> list[Any]:
    indices = node.args[1]
    assert isinstance(indices, (list, tuple))
    return [fake_of(i) if i is not None else None for i in indices]


def _has_mask(node: fx.Node) -> bool:
    return any(f is not None and f.dtype in _MASK_DTYPES for f in _index_fakes(node))


def _validate_index(node: fx.Node) -> str | None:
    if _has_mask(node) and sum(f is not None for f in _index_fakes(node)) > 1:
        return "a boolean mask together with other index tensors"
    return None


def _broadcast_indices(
    ctx: ConversionContext, node: fx.Node, indices: list[ir.Value]
) -> tuple[list[ir.Value], int]:
    """Index tensors broadcast to their common shape (as int64), and that shape's rank."""
    fakes = [f for f in _index_fakes(node) if f is not None]
    shapes = [static_shape(f) for f in fakes]
    values = [ctx.cast(v, torch.int64) for v in indices]
    if all(s is not None for s in shapes):
        common = list(torch.broadcast_shapes(*[torch.Size(s) for s in shapes if s is not None]))
        target = ctx.ints(common)
        out = [
            v if s == common else ctx.op("Expand", v, target)
            for v, s in zip(values, shapes, strict=True)
        ]
        return out, len(common)
    # a zero tensor of the common shape: adding it broadcasts every index the PyTorch way
    zero = ctx.const(0, torch.int64)
    total = values[0]
    for v in values[1:]:
        total = ctx.op("Add", total, v)
    common_shape = ctx.shape(ctx.op("Mul", total, zero))
    out = [ctx.op("Expand", v, common_shape) for v in values]
    return out, max(f.dim() for f in fakes)


def _advanced_layout(node: fx.Node) -> tuple[list[int], list[int], bool]:
    """Indexed positions, the other positions, and whether PyTorch keeps the broadcast index
    dims in place (indexed positions adjacent) rather than moving them to the front."""
    rank = fake_of(node.args[0]).dim()
    fakes = _index_fakes(node)
    positions = [i for i, f in enumerate(fakes) if f is not None]
    rest = [i for i in range(rank) if i not in positions]
    adjacent = positions == list(range(positions[0], positions[-1] + 1))
    return positions, rest, adjacent


def _result_perm(
    positions: list[int], index_rank: int, rest_count: int, adjacent: bool
) -> list[int] | None:
    """The permutation from GatherND's layout (index dims, then the other dims) to PyTorch's."""
    first = positions[0]
    if not adjacent or first == 0:
        return None
    lead = [index_rank + j for j in range(first)]
    return lead + list(range(index_rank)) + [index_rank + j for j in range(first, rest_count)]


def _transpose(ctx: ConversionContext, x: ir.Value, perm: list[int] | None) -> ir.Value:
    if perm is None or perm == sorted(perm):
        return x
    return ctx.op("Transpose", x, perm=perm)


def _inverse(perm: list[int]) -> list[int]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return inv


# what moving advanced-index axes to the front and broadcasting the index tensors emits
_ADVANCED_INDEX_OPS = {"Transpose", "Expand", "Unsqueeze", "Concat", "Cast", "Add", "Mul", "Shape"}


@converter(
    aten.index.Tensor,
    onnx_ops={"Gather", "GatherND", "NonZero", *_ADVANCED_INDEX_OPS},
    validator=_validate_index,
)
def aten_index(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """index.Tensor(Tensor self, Tensor?[] indices) -> Tensor"""
    x, indices = args[0], list(args[1])
    positions, rest, adjacent = _advanced_layout(node)
    if _has_mask(node):
        (position,) = positions
        mask_rank = _index_fakes(node)[position].dim()
        return mask_index(ctx, x, indices[position], position, ctx.node_rank(node.args[0]), mask_rank)
    if len(positions) == 1:
        return ctx.op("Gather", x, indices[positions[0]], axis=positions[0])
    gathered_axes_first = _transpose(ctx, x, positions + rest)
    broadcast, index_rank = _broadcast_indices(ctx, node, [indices[p] for p in positions])
    last = ctx.ints([-1])
    stacked = ctx.op("Concat", *[ctx.op("Unsqueeze", b, last) for b in broadcast], axis=-1)
    out = ctx.op("GatherND", gathered_axes_first, stacked)
    return _transpose(ctx, out, _result_perm(positions, index_rank, len(rest), adjacent))


def _one_element(fake: torch.Tensor) -> bool:
    # values computed from x[mask] have a data-dependent size: not known to be one element
    return all(isinstance(d, int) for d in fake.shape) and fake.numel() == 1


def _validate_index_put(node: fx.Node) -> str | None:
    if not _has_mask(node):
        return None
    fakes = _index_fakes(node)
    values = fake_of(node.args[2])
    accumulate = argument(node.args, node.kwargs, 3, "accumulate", False)  # type: ignore[arg-type]
    if len(fakes) == 1 and fakes[0].dtype == torch.bool and _one_element(values) and not accumulate:
        return None  # x[mask] = scalar is an elementwise select
    if len(fakes) == 1 and fakes[0] is not None:
        return None  # x[mask] = v: v's rows scatter to the mask's positions
    return "boolean-mask index_put with other index tensors or a mask past dim 0"


@converter(
    aten.index_put.default,
    onnx_ops={"ScatterND", "Slice", "Where", "Reshape", "NonZero", *_ADVANCED_INDEX_OPS},
    validator=_validate_index_put,
)
def aten_index_put(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """index_put(Tensor self, Tensor?[] indices, Tensor values, bool accumulate=False) -> Tensor"""
    x, indices = args[0], list(args[1])
    dtype = ctx.node_dtype(node)
    values = ctx.cast(args[2], dtype)
    accumulate = bool(argument(args, kwargs, 3, "accumulate", False))
    rank = ctx.node_rank(node)
    if _has_mask(node):
        mask = ctx.cast(indices[0], torch.bool)
        mask_rank = ctx.node_rank(node.args[1][0])  # type: ignore[index]
        if _one_element(fake_of(node.args[2])) and not accumulate and fake_of(node.args[1][0]).dtype == torch.bool:  # type: ignore[index]
            if mask_rank < rank:
                mask = ctx.op("Unsqueeze", mask, ctx.ints(list(range(mask_rank, rank))))
            scalar = ctx.op("Reshape", values, ctx.ints([]))
            return ctx.op("Where", mask, scalar, x)
        # x[mask] = v: one update row per selected position, v broadcast to [N, x.shape[k:]]
        where = nonzero_rows(ctx, mask)
        count = ctx.op("Slice", ctx.shape(where), ctx.ints([0]), ctx.ints([1]))
        row_shape = ctx.op("Slice", ctx.shape(x), ctx.ints([mask_rank]), ctx.ints([INT64_MAX]))
        updates = ctx.op("Expand", values, ctx.op("Concat", count, row_shape, axis=0))
        return ctx.op("ScatterND", x, where, updates, reduction="add" if accumulate else None)
    positions, rest, adjacent = _advanced_layout(node)
    axes_first = positions + rest
    data = _transpose(ctx, x, axes_first)
    broadcast, index_rank = _broadcast_indices(ctx, node, [indices[p] for p in positions])
    last = ctx.ints([-1])
    stacked = ctx.op("Concat", *[ctx.op("Unsqueeze", b, last) for b in broadcast], axis=-1)
    # updates, in ScatterND's layout: index dims, then the dims of the un-indexed axes
    result_rank = index_rank + len(rest)
    values_rank = ctx.node_rank(node.args[2])
    if values_rank < result_rank:
        values = ctx.op("Unsqueeze", values, ctx.ints(list(range(result_rank - values_rank))))
    perm = _result_perm(positions, index_rank, len(rest), adjacent)
    if perm is not None:
        values = _transpose(ctx, values, _inverse(perm))
    index_shape = ctx.shape(stacked)
    updates_shape = ctx.op(
        "Concat",
        ctx.op("Slice", index_shape, ctx.ints([0]), ctx.ints([-1]), ctx.ints([0])),
        ctx.op(
            "Slice",
            ctx.shape(data),
            ctx.ints([len(positions)]),
            ctx.ints([INT64_MAX]),
            ctx.ints([0]),
        ),
        axis=0,
    )
    updates = ctx.op("Expand", values, updates_shape)
    out = ctx.op("ScatterND", data, stacked, updates, reduction="add" if accumulate else None)
    return _transpose(ctx, out, _inverse(axes_first))


@converter(aten.index_select.default, onnx_ops={"Gather", "Reshape"})
def aten_index_select(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """index_select(Tensor self, int dim, Tensor index) -> Tensor"""
    x, index = args[0], args[2]
    rank = ctx.node_rank(node.args[0])
    if rank == 0:
        return x
    if ctx.node_rank(node.args[2]) == 0:
        index = ctx.op("Reshape", index, ctx.ints([1]))
    return ctx.op("Gather", x, index, axis=normalize_dim(args[1], rank))


@converter(aten.embedding.default, onnx_ops={"Gather"})
def aten_embedding(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """embedding(Tensor weight, Tensor indices, SymInt padding_idx=-1, bool scale_grad_by_freq=False, bool sparse=False) -> Tensor"""
    # padding_idx only affects gradients, so inference is a plain row lookup
    return ctx.op("Gather", args[0], args[1], axis=0)


@converter(aten.gather.default, onnx_ops={"GatherElements"})
def aten_gather(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """gather(Tensor self, int dim, Tensor index, *, bool sparse_grad=False) -> Tensor"""
    rank = ctx.node_rank(node.args[0])
    if rank == 0:
        return args[0]
    return ctx.op("GatherElements", args[0], args[2], axis=normalize_dim(args[1], rank))


def _expand_along(
    ctx: ConversionContext, x: ir.Value, mine: list[int], theirs: list[int], axis: int
) -> ir.Value:
    """``x`` broadcast against the other operand on every axis but ``axis`` (take_along_dim's rule)."""
    target = [
        max(a, b) if i != axis else 1 for i, (a, b) in enumerate(zip(mine, theirs, strict=True))
    ]
    if all(t == 1 or t == m for t, m in zip(target, mine, strict=True)):
        return x
    return ctx.op("Expand", x, ctx.ints(target))


def _validate_take_along_dim(node: fx.Node) -> str | None:
    # torch.export specializes take_along_dim's shapes today; decline if that ever changes
    if static_shape(node.args[0]) is None or static_shape(node.args[1]) is None:
        return "take_along_dim with symbolic shapes is not supported"
    return None


@converter(
    aten.take_along_dim.default,
    onnx_ops={"GatherElements", "Reshape", "Expand"},
    validator=_validate_take_along_dim,
)
def aten_take_along_dim(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """take_along_dim(Tensor self, Tensor indices, int? dim=None) -> Tensor"""
    x, index = args[0], args[1]
    dim = argument(args, kwargs, 2, "dim")
    if dim is None:
        flat = ctx.ints([-1])
        return ctx.op(
            "GatherElements", ctx.op("Reshape", x, flat), ctx.op("Reshape", index, flat), axis=0
        )
    axis = normalize_dim(dim, ctx.node_rank(node.args[0]))
    x_shape, index_shape = static_shape(node.args[0]), static_shape(node.args[1])
    if x_shape is None or index_shape is None:
        raise ConversionError(f"{node.name}: take_along_dim with symbolic shapes")
    x_b = _expand_along(ctx, x, x_shape, index_shape, axis)
    index_b = _expand_along(ctx, index, index_shape, x_shape, axis)
    return ctx.op("GatherElements", x_b, index_b, axis=axis)


# --------------------------------------------------------------------------------- scatter
_SCATTER_REDUCE = {"add": "add", "multiply": "mul"}
_SCATTER_REDUCE_TWO = {"sum": "add", "prod": "mul", "amax": "max", "amin": "min"}


def _validate_scatter_reduce(node: fx.Node) -> str | None:
    reduce = node.kwargs.get("reduce")
    if reduce not in _SCATTER_REDUCE:
        return f"scatter reduce={reduce!r} has no ONNX ScatterElements reduction"
    return None


def _validate_scatter_reduce_two(node: fx.Node) -> str | None:
    reduce = node.args[4] if len(node.args) > 4 else node.kwargs.get("reduce")
    if reduce not in _SCATTER_REDUCE_TWO:
        return f"scatter_reduce reduce={reduce!r} has no ONNX ScatterElements reduction"
    if not node.kwargs.get("include_self", True):
        return "scatter_reduce with include_self=False has no ONNX equivalent"
    if reduce in ("amax", "amin") and fake_of(node).dtype == torch.bool:
        return "ONNX ScatterElements max/min does not take bool"
    return None


def _scatter(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], src: Any, reduction: str | None
) -> ir.Value:
    x, index = args[0], args[2]
    dtype = ctx.node_dtype(node)
    rank = ctx.node_rank(node.args[0])
    axis = normalize_dim(args[1], max(rank, 1))
    index_shape = static_shape(node.args[2])
    if isinstance(src, ir.Value):
        updates = ctx.cast(src, dtype)
        src_shape = static_shape(node.args[3])
        if src_shape is None or src_shape != index_shape:
            # PyTorch reads only the leading index.shape block of src
            updates = ctx.op(
                "Slice",
                updates,
                ctx.ints([0] * rank),
                ctx.shape(index),
                ctx.ints(list(range(rank))),
            )
    else:
        target = ctx.ints(index_shape) if index_shape is not None else ctx.shape(index)
        updates = ctx.op("Expand", ctx.const(src, dtype), target)
    return ctx.op("ScatterElements", x, index, updates, axis=axis, reduction=reduction)


_SCATTER_OPS = {"ScatterElements", "Expand", "Slice", "Shape", "Cast"}


@converter(aten.scatter.src, aten.scatter.value, onnx_ops=_SCATTER_OPS)
def aten_scatter(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """scatter.src(Tensor self, int dim, Tensor index, Tensor src) -> Tensor"""
    return _scatter(ctx, node, args, args[3], None)


@converter(
    aten.scatter.reduce,
    aten.scatter.value_reduce,
    onnx_ops=_SCATTER_OPS,
    validator=_validate_scatter_reduce,
)
def aten_scatter_reduce(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """scatter.reduce(Tensor self, int dim, Tensor index, Tensor src, *, str reduce) -> Tensor"""
    return _scatter(ctx, node, args, args[3], _SCATTER_REDUCE[kwargs["reduce"]])


@converter(aten.scatter_add.default, onnx_ops=_SCATTER_OPS)
def aten_scatter_add(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """scatter_add(Tensor self, int dim, Tensor index, Tensor src) -> Tensor"""
    return _scatter(ctx, node, args, args[3], "add")


@converter(aten.scatter_reduce.two, onnx_ops=_SCATTER_OPS, validator=_validate_scatter_reduce_two)
def aten_scatter_reduce_two(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """scatter_reduce.two(Tensor self, int dim, Tensor index, Tensor src, str reduce, *, bool include_self=True) -> Tensor"""
    reduce = argument(args, kwargs, 4, "reduce")
    return _scatter(ctx, node, args, args[3], _SCATTER_REDUCE_TWO[reduce])


# ------------------------------------------------------------------ functional assignment
def _axis_positions(ctx: ConversionContext, x: ir.Value, x_node: Any, axis: int) -> ir.Value:
    """``arange(x.shape[axis])`` as a 1-D int64 tensor."""
    size = fake_of(x_node).shape[axis]
    if isinstance(size, int):
        return ctx.const(torch.arange(size, dtype=torch.int64))
    limit = ctx.op("Squeeze", ctx.dim(x, axis), ctx.ints([0]))
    zero, one = ctx.const(0, torch.int64), ctx.const(1, torch.int64)
    return ctx.op("Range", zero, limit, one)


def _scatter_along(
    ctx: ConversionContext, x: ir.Value, src: ir.Value, positions: ir.Value, axis: int, rank: int
) -> ir.Value:
    """``x`` with the slices at ``positions`` (1-D) along ``axis`` replaced by ``src``."""
    shape = [1] * rank
    shape[axis] = -1
    index = ctx.op("Expand", ctx.op("Reshape", positions, ctx.ints(shape)), ctx.shape(src))
    return ctx.op("ScatterElements", x, index, src, axis=axis)


@converter(
    aten.slice_scatter.default,
    onnx_ops={
        "ScatterElements",
        "Slice",
        "Range",
        "Squeeze",
        "Shape",
        "Gather",
        "Reshape",
        "Expand",
        "Cast",
    },
)
def aten_slice_scatter(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """slice_scatter(Tensor self, Tensor src, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1) -> Tensor"""
    x = args[0]
    src = ctx.cast(args[1], ctx.node_dtype(node))
    rank = ctx.node_rank(node)
    axis = normalize_dim(argument(args, kwargs, 2, "dim", 0), rank)
    start = argument(args, kwargs, 3, "start")
    end = argument(args, kwargs, 4, "end")
    step = argument(args, kwargs, 5, "step", 1)
    # Slice clamps start/end exactly as PyTorch's slicing does
    positions = slice_axis(
        ctx,
        _axis_positions(ctx, x, node.args[0], axis),
        0,
        0 if start is None else start,
        INT64_MAX if end is None else end,
        step,
    )
    return _scatter_along(ctx, x, src, positions, axis, rank)


@converter(
    aten.select_scatter.default,
    onnx_ops={"ScatterElements", "Unsqueeze", "Reshape", "Expand", "Shape", "Cast"},
)
def aten_select_scatter(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """select_scatter(Tensor self, Tensor src, int dim, SymInt index) -> Tensor"""
    x = args[0]
    rank = ctx.node_rank(node)
    axis = normalize_dim(args[2], rank)
    src = ctx.op("Unsqueeze", ctx.cast(args[1], ctx.node_dtype(node)), ctx.ints([axis]))
    return _scatter_along(ctx, x, src, ctx.shape_tensor([args[3]]), axis, rank)


@converter(aten.copy.default, onnx_ops={"Expand", "Cast", "Shape"})
def aten_copy(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """copy(Tensor self, Tensor src, bool non_blocking=False) -> Tensor"""
    src = ctx.cast(args[1], ctx.node_dtype(node))
    target, given = static_shape(node.args[0]), static_shape(node.args[1])
    if target is not None and target == given:
        return src
    return ctx.op("Expand", src, ctx.ints(target) if target is not None else ctx.shape(args[0]))


# --------------------------------------------------------------------------- triangles
def _trilu(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any], upper: int
) -> ir.Value:
    diagonal = argument(args, kwargs, 1, "diagonal", 0)
    k = (
        ctx.cast(diagonal, torch.int64)
        if isinstance(diagonal, ir.Value)
        else ctx.const(int(diagonal), torch.int64)
    )
    return ctx.op("Trilu", args[0], k, upper=upper)


@converter(aten.tril.default, onnx_ops={"Trilu", "Cast"})
def aten_tril(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """tril(Tensor self, SymInt diagonal=0) -> Tensor"""
    return _trilu(ctx, node, args, kwargs, upper=0)


@converter(aten.triu.default, onnx_ops={"Trilu", "Cast"})
def aten_triu(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """triu(Tensor self, SymInt diagonal=0) -> Tensor"""
    return _trilu(ctx, node, args, kwargs, upper=1)
