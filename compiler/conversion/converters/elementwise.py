"""Elementwise arithmetic: add, sub, mul, div (with PyTorch's type promotion)."""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext
from compiler.conversion.converters._helpers import compute_dtype, promote
from compiler.conversion.registry import converter

aten = torch.ops.aten


def _alpha_scaled(ctx: ConversionContext, other: ir.Value, alpha: Any) -> ir.Value:
    if alpha is None or alpha == 1:
        return other
    return ctx.op("Mul", other, ctx.scalar_like(alpha, other))


@converter(aten.add.Tensor, aten.add.Scalar, onnx_ops={"Add", "Mul", "Cast"})
def aten_add(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor"""
    a, b = promote(ctx, compute_dtype(node), args[0], args[1])
    return ctx.op("Add", a, _alpha_scaled(ctx, b, kwargs.get("alpha")))


@converter(aten.sub.Tensor, aten.sub.Scalar, onnx_ops={"Sub", "Mul", "Cast"})
def aten_sub(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """sub.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor"""
    a, b = promote(ctx, compute_dtype(node), args[0], args[1])
    return ctx.op("Sub", a, _alpha_scaled(ctx, b, kwargs.get("alpha")))


@converter(aten.mul.Tensor, aten.mul.Scalar, onnx_ops={"Mul", "Cast", "And"})
def aten_mul(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """mul.Tensor(Tensor self, Tensor other) -> Tensor"""
    dtype = compute_dtype(node)
    a, b = promote(ctx, dtype, args[0], args[1])
    return ctx.op("And" if dtype == torch.bool else "Mul", a, b)


@converter(aten.div.Tensor, aten.div.Scalar, onnx_ops={"Div", "Cast"})
def aten_div(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """div.Tensor(Tensor self, Tensor other) -> Tensor  (true division: integers divide as floats)"""
    dtype = node.meta["val"].dtype
    a, b = promote(ctx, dtype, args[0], args[1])
    return ctx.op("Div", a, b)
