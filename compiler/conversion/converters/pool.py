"""Pooling: max, average and adaptive (1d/2d/3d) → ONNX MaxPool / AveragePool / Global*Pool.

PyTorch's max-pool indices count within one (N, C) plane; ONNX MaxPool's count over the whole
tensor, so they are reduced modulo the plane size. Adaptive average pooling whose windows do not
tile the input evenly is computed exactly as a product of per-axis averaging matrices (each
output averages a rectangle, and a rectangle's mean is separable), which needs static sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext, ConversionError, fake_of
from compiler.conversion.converters._helpers import as_list, used_outputs
from compiler.conversion.registry import converter

aten = torch.ops.aten

_FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_POOL_OPS = {"MaxPool", "Unsqueeze", "Squeeze", "Mod", "Shape", "Slice", "ReduceProd"}


def _input(node: fx.Node) -> torch.Tensor:
    val = fake_of(node.args[0])
    if not isinstance(val, torch.Tensor):
        raise ConversionError(f"{node.name}: pooling input is not a tensor")
    return val


def _arg(node: fx.Node, index: int, name: str, default: Any) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _check_input(node: fx.Node, n: int) -> str | None:
    val = fake_of(node.args[0])
    if not isinstance(val, torch.Tensor) or val.dtype not in _FLOATS:
        return "pooling converts floating-point tensors only"
    if val.dim() not in (n + 1, n + 2):
        return f"a {n}d pool needs a rank {n + 1} or {n + 2} input, not rank {val.dim()}"
    return None


def _static_int_lists(*values: Any) -> bool:
    for value in values:
        items = value if isinstance(value, (list, tuple)) else [value]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            return False
    return True


@dataclass(frozen=True)
class _Layout:
    """How the input was reshaped for ONNX: a batch axis added, and a 1d pool widened to 2d
    (TensorRT pools only 2d/3d; a trailing size-1 axis makes the same windows)."""

    unbatched: bool
    widened: bool


def _prepare(
    ctx: ConversionContext, node: fx.Node, x: ir.Value, n: int
) -> tuple[ir.Value, _Layout]:
    layout = _Layout(unbatched=ctx.node_rank(node.args[0]) == n + 1, widened=n == 1)
    if layout.unbatched:
        x = ctx.op("Unsqueeze", x, ctx.ints([0]))
    if layout.widened:
        x = ctx.op("Unsqueeze", x, ctx.ints([3]))
    return x, layout


def _restore(ctx: ConversionContext, value: ir.Value, layout: _Layout) -> ir.Value:
    axes = ([0] if layout.unbatched else []) + ([3] if layout.widened else [])
    return ctx.op("Squeeze", value, ctx.ints(axes)) if axes else value


def _widen(attrs: dict[str, Any], layout: _Layout) -> dict[str, Any]:
    if not layout.widened:
        return attrs
    widened = dict(attrs)
    for key in ("kernel_shape", "strides", "dilations"):
        if key in widened:
            widened[key] = [*widened[key], 1]
    if "pads" in widened:
        begin, end = widened["pads"]
        widened["pads"] = [begin, 0, end, 0]
    return widened


def _plane_size(ctx: ConversionContext, x: ir.Value, node: fx.Node, n: int) -> ir.Value:
    """The number of elements of one (N, C) plane of the (batched) input, as a 0-d int64."""
    spatial = list(_input(node).shape[-n:])
    if all(isinstance(d, int) for d in spatial):
        return ctx.const(math.prod(int(d) for d in spatial), torch.int64)
    dims = ctx.op("Slice", ctx.shape(x), ctx.ints([2]), ctx.ints([2 + n]))
    return ctx.op("ReduceProd", dims, keepdims=0)


def _torch_indices(
    ctx: ConversionContext, indices: ir.Value, x: ir.Value, node: fx.Node, n: int
) -> ir.Value:
    # ONNX flattens (N, C, *spatial); PyTorch flattens *spatial only
    return ctx.op("Mod", indices, _plane_size(ctx, x, node, n))


# ---------------------------------------------------------------------------- max pool
_MAX_POOL_RANK = {
    aten.max_pool1d.default: 1,
    aten.max_pool2d.default: 2,
    aten.max_pool3d.default: 3,
    aten.max_pool1d_with_indices.default: 1,
    aten.max_pool2d_with_indices.default: 2,
    aten.max_pool3d_with_indices.default: 3,
}


def _validate_max_pool(node: fx.Node) -> str | None:
    n = _rank_of(node, _MAX_POOL_RANK)
    reason = _check_input(node, n)
    if reason is not None:
        return reason
    kernel = _arg(node, 1, "kernel_size", None)
    stride = _arg(node, 2, "stride", [])
    padding = _arg(node, 3, "padding", 0)
    dilation = _arg(node, 4, "dilation", 1)
    if not _static_int_lists(kernel, stride, padding, dilation):
        return "kernel_size, stride, padding and dilation must be compile-time integers"
    if not isinstance(_arg(node, 5, "ceil_mode", False), bool):
        return "ceil_mode must be a compile-time bool"
    return None


def _pool_attrs(n: int, kernel: Any, stride: Any, padding: Any) -> dict[str, Any]:
    kernel_shape = [int(k) for k in as_list(kernel, n)]
    # an empty stride means "the kernel size"
    strides = [int(s) for s in as_list(stride, n)] if stride not in (None, []) else kernel_shape
    pads = [int(p) for p in as_list(padding, n)]
    return {"kernel_shape": kernel_shape, "strides": strides, "pads": pads + pads}


@converter(*_MAX_POOL_RANK, onnx_ops=_POOL_OPS, validator=_validate_max_pool)
def aten_max_pool2d_with_indices(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value | tuple[ir.Value, ir.Value | None]:
    """max_pool2d_with_indices(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, int[2] dilation=1, bool ceil_mode=False) -> (Tensor, Tensor)"""
    n = _rank_of(node, _MAX_POOL_RANK)
    attrs = _pool_attrs(
        n,
        _arg(node, 1, "kernel_size", None),
        _arg(node, 2, "stride", []),
        _arg(node, 3, "padding", 0),
    )
    attrs["dilations"] = [int(d) for d in as_list(_arg(node, 4, "dilation", 1), n)]
    attrs["ceil_mode"] = int(bool(_arg(node, 5, "ceil_mode", False)))
    x, layout = _prepare(ctx, node, args[0], n)
    attrs = _widen(attrs, layout)
    with_indices = isinstance(fake_of(node), (tuple, list))
    if not with_indices or 1 not in used_outputs(node):
        out = _restore(ctx, ctx.op("MaxPool", x, **attrs), layout)
        return (out, None) if with_indices else out
    out, indices = ctx.op_multi(
        "MaxPool", x, num_outputs=2, dtypes=[ctx.dtype(x), torch.int64], **attrs
    )
    indices = _torch_indices(ctx, indices, x, node, n)
    return _restore(ctx, out, layout), _restore(ctx, indices, layout)


# ---------------------------------------------------------------------------- average pool
_AVG_POOL_RANK = {
    aten.avg_pool1d.default: 1,
    aten.avg_pool2d.default: 2,
    aten.avg_pool3d.default: 3,
}


def _avg_pool_args(node: fx.Node) -> tuple[Any, Any, Any, bool, bool, Any]:
    return (
        _arg(node, 1, "kernel_size", None),
        _arg(node, 2, "stride", []),
        _arg(node, 3, "padding", 0),
        _arg(node, 4, "ceil_mode", False),
        _arg(node, 5, "count_include_pad", True),
        _arg(node, 6, "divisor_override", None),
    )


def _ceil_adds_window(node: fx.Node, n: int) -> bool | None:
    """Whether ceil_mode adds an output window that runs past the padded input; None when a
    spatial size is symbolic."""
    kernel, stride, padding, ceil_mode, _, _ = _avg_pool_args(node)
    if not ceil_mode:
        return False
    attrs = _pool_attrs(n, kernel, stride, padding)
    sizes = list(_input(node).shape[-n:])
    out_sizes = list(fake_of(node).shape[-n:])
    for size, out, k, s, p in zip(
        sizes, out_sizes, attrs["kernel_shape"], attrs["strides"], attrs["pads"][:n], strict=True
    ):
        if not isinstance(size, int) or not isinstance(out, int):
            return None
        if (out - 1) * s + k > size + 2 * p:
            return True
    return False


def _validate_avg_pool(node: fx.Node) -> str | None:
    n = _rank_of(node, _AVG_POOL_RANK)
    reason = _check_input(node, n)
    if reason is not None:
        return reason
    kernel, stride, padding, ceil_mode, count_include_pad, divisor = _avg_pool_args(node)
    if not _static_int_lists(kernel, stride, padding):
        return "kernel_size, stride and padding must be compile-time integers"
    if not isinstance(ceil_mode, bool) or not isinstance(count_include_pad, bool):
        return "ceil_mode and count_include_pad must be compile-time bools"
    if divisor is not None and not isinstance(divisor, int):
        return "divisor_override must be a compile-time integer"
    if divisor is not None and _ceil_adds_window(node, n) is not False:
        # the sum is recovered as average x kernel size, but a ceil_mode window that runs past
        # the padding is averaged over its clipped size (by PyTorch and ONNX alike)
        return "divisor_override with a ceil_mode window past the padding is not converted"
    return None


@converter(
    *_AVG_POOL_RANK,
    onnx_ops={"AveragePool", "GlobalAveragePool", "Mul", "Unsqueeze", "Squeeze"},
    validator=_validate_avg_pool,
)
def aten_avg_pool2d(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """avg_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, bool ceil_mode=False, bool count_include_pad=True, int? divisor_override=None) -> Tensor"""
    n = _rank_of(node, _AVG_POOL_RANK)
    kernel, stride, padding, ceil_mode, count_include_pad, divisor = _avg_pool_args(node)
    attrs = _pool_attrs(n, kernel, stride, padding)
    x, layout = _prepare(ctx, node, args[0], n)
    attrs = _widen(attrs, layout)
    # with a divisor the window sum is wanted: the padded-count average times the kernel size
    include_pad = bool(count_include_pad) or divisor is not None
    out = ctx.op(
        "AveragePool",
        x,
        ceil_mode=int(bool(ceil_mode)),
        count_include_pad=int(include_pad),
        **attrs,
    )
    if divisor is not None:
        area = math.prod(attrs["kernel_shape"])
        if area != divisor:
            out = ctx.op("Mul", out, ctx.scalar_like(area / divisor, x))
    return _restore(ctx, out, layout)


# ---------------------------------------------------------------------------- adaptive pools
_ADAPTIVE_AVG_RANK = {
    aten.adaptive_avg_pool1d.default: 1,
    aten.adaptive_avg_pool2d.default: 2,
    aten._adaptive_avg_pool2d.default: 2,
    aten.adaptive_avg_pool3d.default: 3,
    aten._adaptive_avg_pool3d.default: 3,
}
_ADAPTIVE_MAX_RANK = {
    aten.adaptive_max_pool1d.default: 1,
    aten.adaptive_max_pool2d.default: 2,
    aten.adaptive_max_pool3d.default: 3,
}


def _rank_of(node: fx.Node, ranks: dict[Any, int]) -> int:
    return ranks[node.target]


def _adaptive_sizes(node: fx.Node, n: int) -> tuple[list[int | None], list[int | None]]:
    """(input spatial sizes, output sizes), None where symbolic."""
    out = fake_of(node)
    if isinstance(out, (tuple, list)):
        out = out[0]
    ins: list[int | None] = [d if isinstance(d, int) else None for d in _input(node).shape[-n:]]
    outs: list[int | None] = [d if isinstance(d, int) else None for d in out.shape[-n:]]
    return ins, outs


def _validate_adaptive(node: fx.Node, n: int, exact_only: bool) -> str | None:
    reason = _check_input(node, n)
    if reason is not None:
        return reason
    ins, outs = _adaptive_sizes(node, n)
    if any(o is None for o in outs):
        return "the output size must be a compile-time integer"
    # max pooling's indices come from a MaxPool whose kernel is the (static) window size
    if all(o == 1 for o in outs) and not (exact_only and 1 in used_outputs(node)):
        return None
    if any(i is None for i in ins):
        return "adaptive pooling to a size other than 1 needs static spatial sizes"
    uneven = any(i % o for i, o in zip(_static(ins), _static(outs), strict=True))
    if uneven and exact_only:
        return "adaptive max pooling with windows that do not tile the input is not converted"
    return None


def _static(sizes: Sequence[int | None]) -> list[int]:
    if any(size is None for size in sizes):
        raise ConversionError(
            "adaptive pooling needs static sizes here (the validator declines this)"
        )
    return [int(size) for size in sizes if size is not None]


def _averaging_matrix(size: int, out: int) -> np.ndarray:
    """(out, size): row i averages PyTorch's adaptive window [floor(i*size/out), ceil((i+1)*size/out))."""
    matrix = np.zeros((out, size), dtype=np.float64)
    for i in range(out):
        start = (i * size) // out
        end = -((-(i + 1) * size) // out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def _adaptive_avg_by_matrices(
    ctx: ConversionContext, x: ir.Value, rank: int, ins: Sequence[int], outs: Sequence[int]
) -> ir.Value:
    dtype = ctx.dtype(x)
    compute = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    y = ctx.cast(x, compute)
    n = len(ins)
    for offset, (size, out) in enumerate(zip(ins, outs, strict=True)):
        if size == out:
            continue
        axis = rank - n + offset
        matrix = _averaging_matrix(size, out)
        if axis == rank - 1:
            y = ctx.op("MatMul", y, ctx.const(torch.from_numpy(matrix.T.copy()), compute))
        elif axis == rank - 2:
            y = ctx.op("MatMul", ctx.const(torch.from_numpy(matrix), compute), y)
        else:
            perm = list(range(rank))
            perm[axis], perm[rank - 2] = perm[rank - 2], perm[axis]
            moved = ctx.op("Transpose", y, perm=perm)
            pooled = ctx.op("MatMul", ctx.const(torch.from_numpy(matrix), compute), moved)
            y = ctx.op("Transpose", pooled, perm=perm)
    return ctx.cast(y, dtype)


@converter(
    *_ADAPTIVE_AVG_RANK,
    onnx_ops={
        "GlobalAveragePool",
        "AveragePool",
        "MatMul",
        "Transpose",
        "Cast",
        "Unsqueeze",
        "Squeeze",
    },
    validator=lambda node: _validate_adaptive(
        node, _rank_of(node, _ADAPTIVE_AVG_RANK), exact_only=False
    ),
)
def aten_adaptive_avg_pool2d(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """adaptive_avg_pool2d(Tensor self, SymInt[2] output_size) -> Tensor"""
    n = _rank_of(node, _ADAPTIVE_AVG_RANK)
    ins, outs = _adaptive_sizes(node, n)
    x, layout = _prepare(ctx, node, args[0], n)
    if all(o == 1 for o in outs):
        out = ctx.op("GlobalAveragePool", x)
    elif all(i % o == 0 for i, o in zip(_static(ins), _static(outs), strict=True)):
        kernel = [i // o for i, o in zip(_static(ins), _static(outs), strict=True)]
        out = ctx.op(
            "AveragePool", x, **_widen({"kernel_shape": kernel, "strides": kernel}, layout)
        )
    else:
        trailing = [1] if layout.widened else []
        out = _adaptive_avg_by_matrices(
            ctx, x, n + 2 + len(trailing), _static(ins) + trailing, _static(outs) + trailing
        )
    return _restore(ctx, out, layout)


@converter(
    *_ADAPTIVE_MAX_RANK,
    onnx_ops={"GlobalMaxPool", *_POOL_OPS},
    validator=lambda node: _validate_adaptive(
        node, _rank_of(node, _ADAPTIVE_MAX_RANK), exact_only=True
    ),
)
def aten_adaptive_max_pool2d(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ir.Value | None]:
    """adaptive_max_pool2d(Tensor self, int[2] output_size) -> (Tensor, Tensor)"""
    n = _rank_of(node, _ADAPTIVE_MAX_RANK)
    ins, outs = _adaptive_sizes(node, n)
    x, layout = _prepare(ctx, node, args[0], n)
    want_indices = 1 in used_outputs(node)
    if all(o == 1 for o in outs) and not want_indices:
        return _restore(ctx, ctx.op("GlobalMaxPool", x), layout), None
    kernel = [i // o for i, o in zip(_static(ins), _static(outs), strict=True)]
    attrs = _widen({"kernel_shape": kernel, "strides": kernel}, layout)
    if not want_indices:
        return _restore(ctx, ctx.op("MaxPool", x, **attrs), layout), None
    out, indices = ctx.op_multi(
        "MaxPool", x, num_outputs=2, dtypes=[ctx.dtype(x), torch.int64], **attrs
    )
    indices = _torch_indices(ctx, indices, x, node, n)
    return _restore(ctx, out, layout), _restore(ctx, indices, layout)
