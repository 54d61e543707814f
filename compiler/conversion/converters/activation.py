"""Activations."""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext
from compiler.conversion.registry import converter

aten = torch.ops.aten


@converter(aten.relu.default, onnx_ops={"Relu"})
def aten_relu(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """relu(Tensor self) -> Tensor"""
    return ctx.op("Relu", args[0])
