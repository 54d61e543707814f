"""Padding: constant_pad_nd, reflection/replication padding and ``aten.pad`` (all four modes).

PyTorch lists pads from the last dimension backwards, ``(last_begin, last_end, prev_begin, ...)``;
ONNX Pad wants ``[begin_0, ..., begin_n, end_0, ..., end_n]`` over every axis.
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext
from compiler.conversion.converters._helpers import argument
from compiler.conversion.registry import converter

aten = torch.ops.aten

# aten.pad's mode names -> ONNX Pad modes
_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
_PAD_OPS = {"Pad", "Concat", "Cast", "Reshape"}


def _onnx_pads(ctx: ConversionContext, pads: list[Any], rank: int) -> ir.Value:
    begins: list[Any] = [0] * rank
    ends: list[Any] = [0] * rank
    for i in range(len(pads) // 2):
        axis = rank - 1 - i
        begins[axis], ends[axis] = pads[2 * i], pads[2 * i + 1]
    return ctx.shape_tensor(begins + ends)


def _pad(
    ctx: ConversionContext,
    node: fx.Node,
    x: ir.Value,
    pads: list[Any],
    mode: str,
    value: Any = None,
) -> ir.Value:
    rank = ctx.node_rank(node.args[0])
    onnx_pads = _onnx_pads(ctx, list(pads), rank)
    if mode != "constant":
        return ctx.op("Pad", x, onnx_pads, mode=mode)
    fill = ctx.const(0 if value is None else value, ctx.node_dtype(node))
    return ctx.op("Pad", x, onnx_pads, fill)


def _static_pads(node: fx.Node) -> list[int] | None:
    pads = node.args[1]
    assert isinstance(pads, (list, tuple))
    return (
        [p for p in pads if isinstance(p, int)] if all(isinstance(p, int) for p in pads) else None
    )


def _validate_border_pad(node: fx.Node) -> str | None:
    pads = _static_pads(node)
    if pads is None:
        return "reflect/replicate/circular padding by symbolic amounts is not supported"
    if any(p < 0 for p in pads):
        return "negative reflect/replicate/circular padding has no ONNX Pad equivalent"
    return None


def _validate_pad(node: fx.Node) -> str | None:
    mode = argument(node.args, node.kwargs, 2, "mode", "constant")  # type: ignore[arg-type]
    if mode not in _MODES:
        return f"padding mode {mode!r} is not supported"
    if mode != "constant":
        return _validate_border_pad(node)
    return None


@converter(aten.constant_pad_nd.default, onnx_ops=_PAD_OPS)
def aten_constant_pad_nd(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """constant_pad_nd(Tensor self, SymInt[] pad, Scalar value=0) -> Tensor"""
    return _pad(
        ctx, node, args[0], args[1], "constant", argument(args, kwargs, 2, "value", 0)
    )


@converter(
    aten.reflection_pad1d.default,
    aten.reflection_pad2d.default,
    aten.reflection_pad3d.default,
    onnx_ops=_PAD_OPS,
    validator=_validate_border_pad,
)
def aten_reflection_pad(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """reflection_pad2d(Tensor self, SymInt[4] padding) -> Tensor"""
    return _pad(ctx, node, args[0], args[1], "reflect")


@converter(
    aten.replication_pad1d.default,
    aten.replication_pad2d.default,
    aten.replication_pad3d.default,
    onnx_ops=_PAD_OPS,
    validator=_validate_border_pad,
)
def aten_replication_pad(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """replication_pad2d(Tensor self, SymInt[4] padding) -> Tensor"""
    return _pad(ctx, node, args[0], args[1], "edge")


@converter(aten.pad.default, onnx_ops=_PAD_OPS, validator=_validate_pad)
def aten_pad(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """pad(Tensor self, SymInt[] pad, str mode="constant", float? value=None) -> Tensor"""
    mode = argument(args, kwargs, 2, "mode", "constant")
    return _pad(ctx, node, args[0], args[1], _MODES[mode], argument(args, kwargs, 3, "value"))
