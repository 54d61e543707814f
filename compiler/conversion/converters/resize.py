"""Upsampling / ``F.interpolate`` → ONNX Resize.

Each PyTorch mode maps to one Resize coordinate rule (all checked numerically against eager):

- ``nearest``: ``src = floor(dst * in / out)`` → ``asymmetric`` + ``floor``.
- ``nearest-exact``: ``src = floor((dst + 0.5) * in / out)`` → ``half_pixel`` + ``round_prefer_ceil``.
- ``(bi|tri)linear``, ``bicubic``: ``half_pixel`` (``align_corners`` when asked); bicubic with
  PyTorch's A = -0.75 and clamped border taps.

When the caller gave scale factors, PyTorch maps coordinates with ``1 / scale`` rather than
``in / out``; Resize does the same only when it receives ``scales``, so the scale form is kept
as scales and the size form as sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext, fake_of
from compiler.conversion.registry import converter

aten = torch.ops.aten

_FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_RESIZE_OPS = {"Resize", "Shape", "Slice", "Concat", "Reshape", "Cast"}


class _Mode:
    def __init__(
        self, spatial: int, mode: str, has_align_corners: bool, exact: bool = False
    ) -> None:
        self.spatial = spatial
        self.mode = mode
        self.has_align_corners = has_align_corners
        self.exact = exact


_MODES: dict[Any, _Mode] = {}
for _rank, _suffix in ((1, "1d"), (2, "2d"), (3, "3d")):
    for _overload in ("vec", "default"):
        _MODES[getattr(getattr(aten, f"upsample_nearest{_suffix}"), _overload)] = _Mode(
            _rank, "nearest", False
        )
        _MODES[getattr(getattr(aten, f"_upsample_nearest_exact{_suffix}"), _overload)] = _Mode(
            _rank, "nearest", False, exact=True
        )
for _overload in ("vec", "default"):
    _MODES[getattr(aten.upsample_linear1d, _overload)] = _Mode(1, "linear", True)
    _MODES[getattr(aten.upsample_trilinear3d, _overload)] = _Mode(3, "linear", True)
# The .default overloads of bilinear2d and bicubic2d carry a Python Autograd kernel that
# torch.export always runs, so they reach no graph whole; only .vec is claimed for them.
_MODES[aten.upsample_bilinear2d.vec] = _Mode(2, "linear", True)
_MODES[aten.upsample_bicubic2d.vec] = _Mode(2, "cubic", True)


def _is_vec(node: fx.Node) -> bool:
    return node.target._overloadname == "vec"  # type: ignore[union-attr]


def _unpack(node: fx.Node, args: Sequence[Any]) -> tuple[Any, bool, list[float] | None]:
    """(output_size or None, align_corners, per-axis scale factors or None)."""
    spec = _MODES[node.target]
    rest = list(args[1:])
    output_size = rest.pop(0) if rest else None
    align_corners = bool(rest.pop(0)) if spec.has_align_corners and rest else False
    scales: list[float] | None
    if _is_vec(node):
        scales = list(rest[0]) if rest and rest[0] is not None else None
    else:
        given = rest[: spec.spatial]
        scales = (
            [float(s) for s in given]
            if len(given) == spec.spatial and all(s is not None for s in given)
            else None
        )
    if scales is not None and len(scales) == 1:
        scales = scales * spec.spatial
    return output_size, align_corners, scales


def _spatial_sizes(node: fx.Node, index: int | None, n: int) -> list[int | None]:
    val = fake_of(node if index is None else node.args[index])
    return [d if isinstance(d, int) else None for d in val.shape[-n:]]


def _validate_resize(node: fx.Node) -> str | None:
    spec = _MODES[node.target]
    x = fake_of(node.args[0])
    if not isinstance(x, torch.Tensor):
        return "resize input must be a tensor"
    allowed = _FLOATS + ((torch.uint8, torch.int8, torch.int32) if spec.mode == "nearest" else ())
    if x.dtype not in allowed:
        return f"{spec.mode} resize of {x.dtype} has no ONNX Runtime kernel"
    if x.dim() != spec.spatial + 2:
        return f"expected an (N, C, {spec.spatial} spatial dims) input"
    output_size, align_corners, scales = _unpack(node, node.args)
    ins = _spatial_sizes(node, 0, spec.spatial)
    outs = _spatial_sizes(node, None, spec.spatial)
    if scales is not None and (output_size is None or not align_corners):
        if any(s <= 0 for s in scales):
            return "scale factors must be positive"
        # Resize sizes the output as floor(in * scale) in float32; PyTorch does it in double
        for size, out, scale in zip(ins, outs, scales, strict=True):
            if (
                size is not None
                and out is not None
                and int(np.floor(np.float32(size) * np.float32(scale))) != out
            ):
                return f"scale {scale} gives a different output size in ONNX Resize"
        return None
    if output_size is None:
        return "neither output_size nor scale factors given"
    if not _is_vec(node) and not align_corners:
        # some axes carry a scale that PyTorch maps with; sizes are exact only if it is out/in
        given = list(node.args[2 + int(spec.has_align_corners) :])
        for size, out, axis_scale in zip(ins, outs, given, strict=False):
            if axis_scale is None:
                continue
            if size is None or out is None or abs(size * float(axis_scale) - out) > 1e-9:  # type: ignore[arg-type]
                return "a scale factor that differs from output/input size on some axes is not converted"
    return None


def _full_sizes(
    ctx: ConversionContext, x: ir.Value, node: fx.Node, output_size: Sequence[Any]
) -> ir.Value:
    batch_channels = list(fake_of(node.args[0]).shape[:2])
    if all(isinstance(d, int) for d in batch_channels):
        return ctx.shape_tensor([*(int(d) for d in batch_channels), *output_size])
    lead = ctx.op("Slice", ctx.shape(x), ctx.ints([0]), ctx.ints([2]))
    return ctx.op("Concat", lead, ctx.shape_tensor(list(output_size)), axis=0)


@converter(*_MODES, onnx_ops=_RESIZE_OPS, validator=_validate_resize)
def aten_upsample_bilinear2d(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """upsample_bilinear2d.vec(Tensor input, SymInt[]? output_size, bool align_corners, float[]? scale_factors) -> Tensor"""
    spec = _MODES[node.target]
    x = args[0]
    output_size, align_corners, scales = _unpack(node, args)
    attrs: dict[str, Any] = {"mode": spec.mode}
    if spec.mode == "nearest":
        if spec.exact:
            attrs["coordinate_transformation_mode"] = "half_pixel"
            attrs["nearest_mode"] = "round_prefer_ceil"
        else:
            attrs["coordinate_transformation_mode"] = "asymmetric"
            attrs["nearest_mode"] = "floor"
    else:
        attrs["coordinate_transformation_mode"] = "align_corners" if align_corners else "half_pixel"
        if spec.mode == "cubic":
            attrs["cubic_coeff_a"] = -0.75
            attrs["exclude_outside"] = 0
    use_scales = scales is not None and (output_size is None or not align_corners)
    if use_scales:
        assert scales is not None
        scale_tensor = ctx.const([1.0, 1.0, *scales], torch.float32)
        return ctx.op("Resize", x, None, scale_tensor, **attrs)
    sizes = _full_sizes(ctx, x, node, list(output_size))
    return ctx.op("Resize", x, None, None, sizes, **attrs)
