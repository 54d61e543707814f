"""Shape and view ops."""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext
from compiler.conversion.converters._helpers import normalize_dims
from compiler.conversion.registry import converter

aten = torch.ops.aten


@converter(aten.permute.default, onnx_ops={"Transpose"})
def aten_permute(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """permute(Tensor(a) self, int[] dims) -> Tensor(a)"""
    rank = ctx.node_rank(node.args[0])
    return ctx.op("Transpose", args[0], perm=normalize_dims(args[1], rank))


@converter(aten.view.default, aten._unsafe_view.default, aten.reshape.default, onnx_ops={"Reshape", "Concat", "Gather", "Shape"})
def aten_view(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """view(Tensor(a) self, SymInt[] size) -> Tensor(a)"""
    return ctx.op("Reshape", args[0], ctx.shape_tensor(args[1]))
