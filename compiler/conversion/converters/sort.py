"""topk, sort and argsort, all as ONNX TopK (a sort is a TopK whose k is the dim's size).

ONNX TopK breaks ties by index, lower index first, in both directions: that is PyTorch's
``stable=True`` order, and a valid answer for ``stable=False`` (which promises no order).
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext, fake_of
from compiler.conversion.converters._helpers import argument, normalize_dim
from compiler.conversion.registry import converter

aten = torch.ops.aten

_ONNX_OPS = {"TopK", "Cast", "Identity", "Reshape", "Shape", "Gather"}


def _top_k(
    ctx: ConversionContext, node: fx.Node, x: ir.Value, k: Any, dim: int, largest: bool
) -> tuple[ir.Value, ir.Value]:
    dtype = ctx.dtype(x)
    rank = ctx.node_rank(node.args[0])
    if rank == 0:
        # PyTorch treats a 0-d tensor as one element along dim 0 or -1
        return ctx.op("Identity", x), ctx.const(0, torch.int64)
    axis = normalize_dim(dim, rank)
    if k is None:
        size = fake_of(node.args[0]).shape[axis]
        k_value = ctx.ints([size]) if isinstance(size, int) else ctx.dim(x, axis)
    elif isinstance(k, int):
        k_value = ctx.ints([k])
    else:
        k_value = ctx.to_1d(k)
    # TopK has no bool kernel; False < True holds for 0 < 1
    data = ctx.cast(x, torch.uint8) if dtype == torch.bool else x
    values, indices = ctx.op_multi(
        "TopK", data, k_value, num_outputs=2, dtypes=[ctx.dtype(data), torch.int64], axis=axis, largest=int(largest), sorted=1
    )
    return ctx.cast(values, dtype), indices


@converter(aten.topk.default, onnx_ops=_ONNX_OPS)
def aten_topk(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ir.Value]:
    """topk(Tensor self, SymInt k, int dim=-1, bool largest=True, bool sorted=True) -> (Tensor values, Tensor indices)"""
    dim = int(argument(args, kwargs, 2, "dim", -1))
    largest = bool(argument(args, kwargs, 3, "largest", True))
    # sorted=False leaves the order to the implementation; sorted output is one valid order
    return _top_k(ctx, node, args[0], args[1], dim, largest)


@converter(aten.sort.default, aten.sort.stable, onnx_ops=_ONNX_OPS)
def aten_sort(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ir.Value]:
    """sort.stable(Tensor self, *, bool? stable, int dim=-1, bool descending=False) -> (Tensor values, Tensor indices)"""
    if node.target is aten.sort.stable:
        dim, descending = kwargs.get("dim", -1), kwargs.get("descending", False)
    else:
        dim, descending = argument(args, kwargs, 1, "dim", -1), argument(args, kwargs, 2, "descending", False)
    return _top_k(ctx, node, args[0], None, int(dim), bool(descending))


@converter(aten.argsort.default, aten.argsort.stable, onnx_ops=_ONNX_OPS)
def aten_argsort(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """argsort.stable(Tensor self, *, bool stable, int dim=-1, bool descending=False) -> Tensor"""
    if node.target is aten.argsort.stable:
        dim, descending = kwargs.get("dim", -1), kwargs.get("descending", False)
    else:
        dim, descending = argument(args, kwargs, 1, "dim", -1), argument(args, kwargs, 2, "descending", False)
    return _top_k(ctx, node, args[0], None, int(dim), bool(descending))[1]
