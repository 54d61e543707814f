"""Sampling at computed coordinates: ``grid_sampler_2d`` (``F.grid_sample`` on 4-D input) →
ONNX GridSample, which defines the same modes, padding rules and ``align_corners``."""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext
from compiler.conversion.converters._helpers import out_dtype
from compiler.conversion.registry import converter

aten = torch.ops.aten

# PyTorch's enum values (GridSamplerInterpolation, GridSamplerPadding) -> ONNX attribute values
_MODES = {0: "linear", 1: "nearest", 2: "cubic"}
_PADDING = {0: "zeros", 1: "border", 2: "reflection"}


def _validate_grid_sampler(node: fx.Node) -> str | None:
    if out_dtype(node) not in (torch.float32, torch.float16, torch.float64):
        return "grid sampling is defined on floating tensors"
    mode, padding, align = node.args[2:5]
    if mode not in _MODES or padding not in _PADDING or not isinstance(align, bool):
        return "interpolation mode, padding mode and align_corners must be compile-time constants"
    return None


@converter(aten.grid_sampler_2d.default, onnx_ops={"GridSample", "Cast"}, validator=_validate_grid_sampler)
def aten_grid_sampler_2d(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """grid_sampler_2d(Tensor input, Tensor grid, int interpolation_mode, int padding_mode, bool align_corners) -> Tensor"""
    x, grid, mode, padding, align = args[:5]
    return ctx.op(
        "GridSample",
        x,
        ctx.cast(grid, ctx.dtype(x)),
        mode=_MODES[mode],
        padding_mode=_PADDING[padding],
        align_corners=int(align),
    )
