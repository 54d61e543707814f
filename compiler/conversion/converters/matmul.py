"""Matrix products: linear, addmm, mm, bmm, matmul."""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext
from compiler.conversion.registry import converter

aten = torch.ops.aten


@converter(aten.linear.default, onnx_ops={"MatMul", "Add", "Transpose"})
def aten_linear(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor"""
    x, weight = args[0], args[1]
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    # weights are initializers: the Transpose is folded by the backend at session creation
    out = ctx.op("MatMul", x, ctx.op("Transpose", weight, perm=[1, 0]))
    return ctx.op("Add", out, bias) if bias is not None else out
