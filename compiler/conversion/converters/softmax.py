"""Softmax and log-softmax along one dim (ONNX Softmax/LogSoftmax, opset 13+ semantics)."""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext
from compiler.conversion.converters._helpers import normalize_dim, out_dtype
from compiler.conversion.registry import converter

aten = torch.ops.aten


def _softmax_like(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], op: str) -> ir.Value:
    # half_to_float / dtype= make PyTorch compute in the output dtype: cast first, as it does
    x = ctx.cast(args[0], out_dtype(node))
    rank = ctx.node_rank(node.args[0])
    if rank == 0:
        # softmax of a single element is 1, log_softmax 0: ONNX Softmax needs rank >= 1
        flat = ctx.op(op, ctx.op("Reshape", x, ctx.ints([1])), axis=0)
        return ctx.op("Reshape", flat, ctx.ints([]))
    return ctx.op(op, x, axis=normalize_dim(int(args[1]), rank))


@converter(aten._softmax.default, aten.softmax.int, onnx_ops={"Softmax", "Cast", "Reshape"})
def aten_softmax(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """_softmax(Tensor self, int dim, bool half_to_float) -> Tensor

    Also softmax.int(Tensor self, int dim, ScalarType? dtype=None) -> Tensor, which lowering keeps
    whole once registered."""
    return _softmax_like(ctx, node, args, "Softmax")


@converter(aten._log_softmax.default, aten.log_softmax.int, onnx_ops={"LogSoftmax", "Cast", "Reshape"})
def aten_log_softmax(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """_log_softmax(Tensor self, int dim, bool half_to_float) -> Tensor

    Also log_softmax.int(Tensor self, int dim, ScalarType? dtype=None) -> Tensor."""
    return _softmax_like(ctx, node, args, "LogSoftmax")


@converter(
    aten._safe_softmax.default,
    onnx_ops={"Softmax", "Cast", "Reshape", "ReduceMax", "IsInf", "Less", "And", "Where"},
)
def aten_safe_softmax(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """_safe_softmax(Tensor self, int dim, ScalarType? dtype=None) -> Tensor

    Softmax whose slices that are entirely -inf (fully masked attention rows) give 0, not nan."""
    probs = _softmax_like(ctx, node, args, "Softmax")
    rank = ctx.node_rank(node.args[0])
    if rank == 0:
        return probs
    x = args[0]
    axis = ctx.ints([normalize_dim(int(args[1]), rank)])
    peak = ctx.op("ReduceMax", x, axis, keepdims=1, dtype=ctx.dtype(x))
    all_masked = ctx.op("And", ctx.op("IsInf", peak), ctx.op("Less", peak, ctx.scalar_like(0, peak)))
    return ctx.op("Where", all_masked, ctx.scalar_like(0, probs), probs)
