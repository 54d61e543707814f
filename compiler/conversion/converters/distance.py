"""Pairwise distances: cdist (``_cdist_forward``) and pdist (``_pdist_forward``).

Both are p-norms of differences, computed directly from the broadcast differences: for p = 2
PyTorch may instead use the ``|a|² + |b|² - 2ab`` matrix-product form (cdist's
``compute_mode``), which differs from the direct form only by rounding.
"""

from __future__ import annotations

import math
from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext, fake_of
from compiler.conversion.converters._helpers import out_dtype
from compiler.conversion.registry import converter

aten = torch.ops.aten

_FLOATS = (torch.float32, torch.float64, torch.float16)
_NORM_OPS = {"Sub", "Abs", "ReduceMax", "ReduceSum", "Pow", "Sqrt", "Not", "Equal", "Cast", "Mul"}


def _p_norm(ctx: ConversionContext, diff: ir.Value, p: float, axis: int) -> ir.Value:
    """The p-norm of ``diff`` over ``axis`` (dropped), for p = 0, inf and p > 0."""
    axes = ctx.ints([axis])
    dtype = ctx.dtype(diff)
    if p == 0:  # the number of elements that differ
        nonzero = ctx.op("Not", ctx.op("Equal", diff, ctx.scalar_like(0, dtype)))
        return ctx.op("ReduceSum", ctx.cast(nonzero, dtype), axes, keepdims=0)
    magnitude = ctx.op("Abs", diff)
    if math.isinf(p):
        return ctx.op("ReduceMax", magnitude, axes, keepdims=0)
    if p == 1:
        return ctx.op("ReduceSum", magnitude, axes, keepdims=0)
    if p == 2:
        return ctx.op("Sqrt", ctx.op("ReduceSum", ctx.op("Mul", magnitude, magnitude), axes, keepdims=0))
    powered = ctx.op("Pow", magnitude, ctx.scalar_like(p, dtype))
    return ctx.op("Pow", ctx.op("ReduceSum", powered, axes, keepdims=0), ctx.scalar_like(1.0 / p, dtype))


def _validate_p(p: Any) -> str | None:
    if not isinstance(p, (int, float)) or p < 0:
        return "p must be a compile-time number >= 0"
    return None


def _validate_cdist(node: fx.Node) -> str | None:
    if out_dtype(node) not in _FLOATS:
        return "cdist is defined on floating tensors"
    return _validate_p(node.args[2])


@converter(aten._cdist_forward.default, onnx_ops={"Unsqueeze", *_NORM_OPS}, validator=_validate_cdist)
def aten__cdist_forward(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """_cdist_forward(Tensor x1, Tensor x2, float p, int? compute_mode) -> Tensor"""
    x1, x2, p = args[0], args[1], float(args[2])
    rank = fake_of(node.args[0]).dim()
    # (..., P, M) and (..., R, M) -> (..., P, R, M) differences, reduced over M
    diff = ctx.op("Sub", ctx.op("Unsqueeze", x1, ctx.ints([rank - 1])), ctx.op("Unsqueeze", x2, ctx.ints([rank - 2])))
    return _p_norm(ctx, diff, p, axis=-1)


def _validate_pdist(node: fx.Node) -> str | None:
    if out_dtype(node) not in _FLOATS:
        return "pdist is defined on floating tensors"
    if not isinstance(fake_of(node.args[0]).shape[0], int):
        return "pdist needs a static number of rows (the output lists every pair of them)"
    return _validate_p(node.args[1] if len(node.args) > 1 else 2.0)


@converter(aten._pdist_forward.default, onnx_ops={"Gather", *_NORM_OPS}, validator=_validate_pdist)
def aten__pdist_forward(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """_pdist_forward(Tensor self, float p=2) -> Tensor

    The distance of every row pair i < j, in row-major order of (i, j)."""
    x = args[0]
    p = float(args[1]) if len(args) > 1 else 2.0
    rows = int(fake_of(node.args[0]).shape[0])
    first = [i for i in range(rows) for _ in range(i + 1, rows)]
    second = [j for i in range(rows) for j in range(i + 1, rows)]
    diff = ctx.op("Sub", ctx.op("Gather", x, ctx.ints(first), axis=0), ctx.op("Gather", x, ctx.ints(second), axis=0))
    return _p_norm(ctx, diff, p, axis=-1)
