"""Tensor factories: arange, full/zeros/ones/empty and their ``_like``/``new_`` forms, fill,
scalar_tensor.

Factories with static arguments become initializers or ``ConstantOfShape`` (which backends fold);
those whose sizes or bounds are symbolic (an ``arange`` over a dynamic sequence length, a mask
as large as the input) compute their shape from the engine inputs at run time. ``empty`` is
filled with zeros: its content is undefined, so any value is faithful.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext, ConversionError
from compiler.conversion.converters._helpers import argument
from compiler.conversion.converters.shape import static_shape
from compiler.conversion.registry import converter

aten = torch.ops.aten

# Larger static aranges are computed by Range at run time rather than stored in the model.
_MAX_ARANGE_CONSTANT = 4096
_RANGE_DTYPES = (torch.float32, torch.float64, torch.int16, torch.int32, torch.int64)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _arange(ctx: ConversionContext, node: fx.Node, start: Any, end: Any, step: Any) -> ir.Value:
    dtype = ctx.node_dtype(node)
    if all(_is_number(v) for v in (start, end, step)):
        values = torch.arange(start, end, step, dtype=dtype)
        if values.numel() <= _MAX_ARANGE_CONSTANT or dtype not in _RANGE_DTYPES:
            return ctx.const(values)
    if not dtype.is_floating_point and all(
        isinstance(v, (int, ir.Value)) for v in (start, end, step)
    ):
        compute = torch.int64
    elif dtype == torch.float64:
        compute = torch.float64
    else:
        # float16/bfloat16 aranges are computed in float32 then rounded, as PyTorch does
        compute = torch.float32
    bounds = []
    for v in (start, end, step):
        if isinstance(v, ir.Value):
            v = ctx.cast(v, compute)
            if v.shape is None or len(v.shape) != 0:
                v = ctx.op("Reshape", v, ctx.ints([]))
            bounds.append(v)
        else:
            bounds.append(ctx.const(v, compute))
    return ctx.cast(ctx.op("Range", *bounds), dtype)


_ARANGE_OPS = {"Range", "Cast", "Reshape"}


@converter(aten.arange.default, onnx_ops=_ARANGE_OPS)
def aten_arange(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """arange(Scalar end, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor"""
    return _arange(ctx, node, 0, args[0], 1)


@converter(aten.arange.start, onnx_ops=_ARANGE_OPS)
def aten_arange_start(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """arange.start(Scalar start, Scalar end, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor"""
    return _arange(ctx, node, args[0], args[1], 1)


@converter(aten.arange.start_step, onnx_ops=_ARANGE_OPS)
def aten_arange_start_step(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """arange.start_step(Scalar start, Scalar end, Scalar step=1, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor"""
    return _arange(ctx, node, args[0], args[1], argument(args, kwargs, 2, "step", 1))


# ---------------------------------------------------------------------------- filled tensors
def _fill_scalar(value: Any, dtype: torch.dtype) -> ir.TensorProtocol:
    return ir.tensor(torch.tensor([value], dtype=dtype))


def _filled(ctx: ConversionContext, node: fx.Node, shape: ir.Value, value: Any) -> ir.Value:
    """A tensor of ``node``'s dtype and the given 1-D ``shape``, every element ``value``."""
    dtype = ctx.node_dtype(node)
    if isinstance(value, ir.Value):
        # a symbolic or tensor fill value
        scalar = ctx.cast(value, dtype)
        return ctx.op("Expand", scalar, shape)
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        raise ConversionError(f"{node.name}: fill value {value} was not converted")
    return ctx.op("ConstantOfShape", shape, value=_fill_scalar(value, dtype), dtype=dtype)


def _size_shape(ctx: ConversionContext, node: fx.Node, sizes: Sequence[Any]) -> ir.Value:
    static = static_shape(node)
    if static is not None:
        return ctx.ints(static)
    return ctx.shape_tensor(list(sizes))


def _like_shape(ctx: ConversionContext, node: fx.Node, x: ir.Value) -> ir.Value:
    static = static_shape(node)
    if static is not None:
        return ctx.ints(static)
    return ctx.shape(x)


_FILL_OPS = {"ConstantOfShape", "Expand", "Cast", "Concat", "Reshape", "Shape"}


@converter(aten.full.default, onnx_ops=_FILL_OPS)
def aten_full(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """full(SymInt[] size, Scalar fill_value, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor"""
    return _filled(ctx, node, _size_shape(ctx, node, args[0]), args[1])


@converter(
    aten.zeros.default, aten.empty.memory_format, aten.empty_permuted.default, onnx_ops=_FILL_OPS
)
def aten_zeros(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """zeros(SymInt[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor"""
    return _filled(ctx, node, _size_shape(ctx, node, args[0]), 0)


@converter(aten.ones.default, onnx_ops=_FILL_OPS)
def aten_ones(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """ones(SymInt[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor"""
    return _filled(ctx, node, _size_shape(ctx, node, args[0]), 1)


@converter(aten.full_like.default, aten.fill.Scalar, aten.fill.Tensor, onnx_ops=_FILL_OPS)
def aten_full_like(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """full_like(Tensor self, Scalar fill_value, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None, MemoryFormat? memory_format=None) -> Tensor"""
    return _filled(ctx, node, _like_shape(ctx, node, args[0]), args[1])


@converter(aten.zeros_like.default, aten.empty_like.default, onnx_ops=_FILL_OPS)
def aten_zeros_like(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """zeros_like(Tensor self, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None, MemoryFormat? memory_format=None) -> Tensor"""
    return _filled(ctx, node, _like_shape(ctx, node, args[0]), 0)


@converter(aten.ones_like.default, onnx_ops=_FILL_OPS)
def aten_ones_like(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """ones_like(Tensor self, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None, MemoryFormat? memory_format=None) -> Tensor"""
    return _filled(ctx, node, _like_shape(ctx, node, args[0]), 1)


@converter(aten.new_zeros.default, aten.new_empty.default, onnx_ops=_FILL_OPS)
def aten_new_zeros(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """new_zeros(Tensor self, SymInt[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor"""
    return _filled(ctx, node, _size_shape(ctx, node, args[1]), 0)


@converter(aten.new_ones.default, onnx_ops=_FILL_OPS)
def aten_new_ones(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """new_ones(Tensor self, SymInt[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor"""
    return _filled(ctx, node, _size_shape(ctx, node, args[1]), 1)


@converter(aten.new_full.default, onnx_ops=_FILL_OPS)
def aten_new_full(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """new_full(Tensor self, SymInt[] size, Scalar fill_value, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor"""
    return _filled(ctx, node, _size_shape(ctx, node, args[1]), args[2])


@converter(aten.scalar_tensor.default, onnx_ops={"Cast", "Reshape"})
def aten_scalar_tensor(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """scalar_tensor(Scalar s, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor"""
    dtype = ctx.node_dtype(node)
    value = args[0]
    if isinstance(value, ir.Value):
        value = ctx.cast(value, dtype)
        if value.shape is None or len(value.shape) != 0:
            value = ctx.op("Reshape", value, ctx.ints([]))
        return value
    return ctx.const(value, dtype)
