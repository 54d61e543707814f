"""Dtype conversions: ``_to_copy`` (what ``.to(dtype)``, ``.float()``, ``.half()`` and
``.type(dtype)`` become after decomposition) and ``type_as``.

ONNX Cast has PyTorch's semantics for every pair we convert: floats to integers truncate toward
zero, anything to bool is ``!= 0`` (NaN is true), integers narrow by wrapping.
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import TORCH_TO_ONNX, ConversionContext
from compiler.conversion.converters._helpers import out_dtype
from compiler.conversion.converters.elementwise import validate_dtypes
from compiler.conversion.registry import converter

aten = torch.ops.aten


def _validate_to_copy(node: fx.Node) -> str | None:
    layout = node.kwargs.get("layout")
    if layout is not None and layout != torch.strided:
        return f"_to_copy to layout {layout} is not converted"
    dtype = node.kwargs.get("dtype")
    if dtype is not None and dtype not in TORCH_TO_ONNX:
        return f"dtype {dtype} has no ONNX equivalent"
    return None


@converter(
    aten._to_copy.default,
    onnx_ops={"Cast", "Identity"},
    validator=validate_dtypes(extra=_validate_to_copy),
)
def aten__to_copy(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """_to_copy(Tensor self, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None, bool non_blocking=False, MemoryFormat? memory_format=None) -> Tensor"""
    # device, pinning and memory format do not exist inside an engine: its inputs and outputs
    # live where the engine runs, and layouts are logical
    x = args[0]
    dtype = out_dtype(node)
    if x.dtype == TORCH_TO_ONNX[dtype]:
        return ctx.op("Identity", x)
    return ctx.op("Cast", x, to=TORCH_TO_ONNX[dtype])


@converter(aten.type_as.default, onnx_ops={"Cast", "Identity"}, validator=validate_dtypes())
def aten_type_as(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """type_as(Tensor self, Tensor other) -> Tensor"""
    x = args[0]
    dtype = out_dtype(node)
    if x.dtype == TORCH_TO_ONNX[dtype]:
        return ctx.op("Identity", x)
    return ctx.op("Cast", x, to=TORCH_TO_ONNX[dtype])
