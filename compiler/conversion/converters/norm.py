"""Normalization: batch (eval and batch-statistics), layer, group, instance and RMS norm.

Fused ONNX ops are emitted where their semantics match PyTorch's (BatchNormalization,
LayerNormalization, InstanceNormalization), because ONNX Runtime and TensorRT key their
Conv+BN folding and norm kernels on them. GroupNormalization is *not* used: at opset 18-20 its
scale and bias are per group, while PyTorch's are per channel (opset 21 changed that), so group
norm is InstanceNormalization over a (N, G, -1) view followed by a per-channel affine. Norms that
reduce (group, instance, RMS, batch statistics) compute in float32 for float16/bfloat16 inputs,
as PyTorch does, since float16 accumulation visibly drifts.
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext, fake_of
from compiler.conversion.converters._helpers import argument, used_outputs
from compiler.conversion.registry import converter

aten = torch.ops.aten

_LOW_PRECISION = (torch.float16, torch.bfloat16)
_FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


# ---------------------------------------------------------------------------- helpers
def _param(ctx: ConversionContext, value: ir.Value, dtype: torch.dtype) -> ir.Value:
    """``value`` in ``dtype``; a weight initializer is converted at compile time rather than
    by a Cast node, so the engine holds the parameter in the type it computes in."""
    if value.dtype is not None and ctx.dtype(value) == dtype:
        return value
    const = value.const_value
    if const is not None and value.dtype not in (ir.DataType.BFLOAT16,):
        return ctx.const(torch.from_numpy(const.numpy().copy()), dtype)
    return ctx.cast(value, dtype)


def _optional_param(
    ctx: ConversionContext,
    value: ir.Value | None,
    fill: float,
    shape: list[int],
    dtype: torch.dtype,
) -> ir.Value:
    if value is None:
        return ctx.const(torch.full(shape, fill, dtype=dtype))
    return _param(ctx, value, dtype)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def _static_channels(node: Any, index: int = 1) -> int | None:
    val = fake_of(node)
    if not isinstance(val, torch.Tensor) or val.dim() <= index:
        return None
    size = val.shape[index]
    return int(size) if isinstance(size, int) else None


def _input_rank(node: fx.Node) -> int:
    val = fake_of(node.args[0])
    return int(val.dim()) if isinstance(val, torch.Tensor) else 0


def _float_input(node: fx.Node) -> str | None:
    val = fake_of(node.args[0])
    if not isinstance(val, torch.Tensor) or val.dtype not in _FLOATS:
        return "normalization needs a floating-point input"
    return None


def _channel_affine(
    ctx: ConversionContext, param: ir.Value, rank: int, dtype: torch.dtype
) -> ir.Value:
    """``param`` of shape (C,) laid out as (C, 1, ..., 1) to broadcast over (N, C, *spatial)."""
    return ctx.op("Reshape", _param(ctx, param, dtype), ctx.ints([-1] + [1] * (rank - 2)))


def _moments(
    ctx: ConversionContext, x: ir.Value, axes: list[int], eps: float
) -> tuple[ir.Value, ir.Value]:
    """Mean and 1/sqrt(biased variance + eps) over ``axes``, kept as size-1 dims."""
    mean = ctx.op("ReduceMean", x, ctx.ints(axes), keepdims=1)
    centered = ctx.op("Sub", x, mean)
    var = ctx.op("ReduceMean", ctx.op("Mul", centered, centered), ctx.ints(axes), keepdims=1)
    denom = ctx.op("Sqrt", ctx.op("Add", var, ctx.scalar_like(eps, x)))
    rstd = ctx.op("Reciprocal", denom)
    return mean, rstd


_STATS_OPS = {"ReduceMean", "Sub", "Mul", "Add", "Sqrt", "Reciprocal", "Cast", "Reshape"}


# ---------------------------------------------------------------------------- batch norm
def _validate_batch_norm_eval(node: fx.Node) -> str | None:
    reason = _float_input(node)
    if reason is not None:
        return reason
    if _input_rank(node) < 2:
        return "batch norm needs an (N, C, ...) input"
    return None


def _batch_norm_eval(
    ctx: ConversionContext,
    node: fx.Node,
    x: ir.Value,
    weight: ir.Value | None,
    bias: ir.Value | None,
    running_mean: ir.Value,
    running_var: ir.Value,
    eps: float,
) -> ir.Value:
    dtype = ctx.dtype(x)
    channels = int(fake_of(node.args[3]).shape[0])
    # one output, parameters as initializers: the form ORT and TensorRT fold into a Conv
    return ctx.op(
        "BatchNormalization",
        x,
        _optional_param(ctx, weight, 1.0, [channels], dtype),
        _optional_param(ctx, bias, 0.0, [channels], dtype),
        _param(ctx, running_mean, dtype),
        _param(ctx, running_var, dtype),
        epsilon=float(eps),
    )


def _empty_stats(ctx: ConversionContext, node: fx.Node, index: int) -> ir.Value:
    """The (empty) save_mean / save_invstd results of an inference batch norm."""
    val = fake_of(node)[index]
    return ctx.const(torch.zeros(tuple(int(d) for d in val.shape), dtype=val.dtype))


@converter(
    aten._native_batch_norm_legit_no_training.default,
    # Cast: statistics that are graph inputs of another dtype than x (fp16 x, fp32 statistics)
    onnx_ops={"BatchNormalization", "Cast"},
    validator=_validate_batch_norm_eval,
)
def aten__native_batch_norm_legit_no_training(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ir.Value | None, ir.Value | None]:
    """_native_batch_norm_legit_no_training(Tensor input, Tensor? weight, Tensor? bias, Tensor running_mean, Tensor running_var, float momentum, float eps) -> (Tensor, Tensor, Tensor)"""
    x, weight, bias, running_mean, running_var, _momentum, eps = args[:7]
    out = _batch_norm_eval(ctx, node, x, weight, bias, running_mean, running_var, eps)
    used = used_outputs(node)
    return (
        out,
        _empty_stats(ctx, node, 1) if 1 in used else None,
        _empty_stats(ctx, node, 2) if 2 in used else None,
    )


def _batch_norm_with_batch_stats(
    ctx: ConversionContext,
    node: fx.Node,
    x: ir.Value,
    weight: ir.Value | None,
    bias: ir.Value | None,
    eps: float,
) -> tuple[ir.Value, ir.Value | None, ir.Value | None]:
    """Normalize with the statistics of this batch (training-mode batch norm, and what
    instance norm decomposes into): reduce over every axis but the channel one."""
    rank = _input_rank(node)
    dtype = ctx.dtype(x)
    compute = _compute_dtype(dtype)
    xc = ctx.cast(x, compute)
    axes = [0, *range(2, rank)]
    mean, rstd = _moments(ctx, xc, axes, eps)
    y = ctx.op("Mul", ctx.op("Sub", xc, mean), rstd)
    if weight is not None:
        y = ctx.op("Mul", y, _channel_affine(ctx, weight, rank, compute))
    if bias is not None:
        y = ctx.op("Add", y, _channel_affine(ctx, bias, rank, compute))
    used = used_outputs(node)
    stats: list[ir.Value | None] = []
    for index, value in ((1, mean), (2, rstd)):
        if index in used:
            flat = ctx.op("Reshape", value, ctx.ints([-1]))
            stats.append(ctx.cast(flat, ctx.node_dtype(node, index)))
        else:
            stats.append(None)
    return ctx.cast(y, dtype), stats[0], stats[1]


def _training_flag(node: fx.Node, index: int) -> Any:
    return node.args[index] if len(node.args) > index else node.kwargs.get("training")


def _validate_batch_norm_any(node: fx.Node) -> str | None:
    reason = _validate_batch_norm_eval(node)
    if reason is not None:
        return reason
    training = _training_flag(node, 5)
    if not isinstance(training, bool):
        return "the training flag must be a compile-time bool"
    if not training and (len(node.args) < 5 or node.args[3] is None or node.args[4] is None):
        return "inference batch norm without running statistics"
    return None


@converter(
    aten._native_batch_norm_legit.default,
    aten.native_batch_norm.default,
    onnx_ops={"BatchNormalization", *_STATS_OPS},
    validator=_validate_batch_norm_any,
)
def aten__native_batch_norm_legit(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ir.Value | None, ir.Value | None]:
    """_native_batch_norm_legit(Tensor input, Tensor? weight, Tensor? bias, Tensor(a!) running_mean, Tensor(b!) running_var, bool training, float momentum, float eps) -> (Tensor, Tensor, Tensor)"""
    x, weight, bias, running_mean, running_var, training, _momentum, eps = args[:8]
    if training:
        # running-stat updates are side effects that an inference engine does not keep
        return _batch_norm_with_batch_stats(ctx, node, x, weight, bias, eps)
    out = _batch_norm_eval(ctx, node, x, weight, bias, running_mean, running_var, eps)
    used = used_outputs(node)
    return (
        out,
        _empty_stats(ctx, node, 1) if 1 in used else None,
        _empty_stats(ctx, node, 2) if 2 in used else None,
    )


@converter(
    aten._native_batch_norm_legit.no_stats,
    onnx_ops=_STATS_OPS,
    validator=_validate_batch_norm_eval,
)
def aten__native_batch_norm_legit_no_stats(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ir.Value | None, ir.Value | None]:
    """_native_batch_norm_legit.no_stats(Tensor input, Tensor? weight, Tensor? bias, bool training, float momentum, float eps) -> (Tensor, Tensor, Tensor)"""
    x, weight, bias, _training, _momentum, eps = args[:6]
    # without running statistics there is nothing but the batch's own to normalize with
    return _batch_norm_with_batch_stats(ctx, node, x, weight, bias, eps)


# ---------------------------------------------------------------------------- instance norm
def _validate_instance_norm(node: fx.Node) -> str | None:
    reason = _float_input(node)
    if reason is not None:
        return reason
    if _input_rank(node) < 3:
        return "instance norm needs an (N, C, *spatial) input"
    use_input_stats = node.args[5] if len(node.args) > 5 else node.kwargs.get("use_input_stats")
    if not isinstance(use_input_stats, bool):
        return "use_input_stats must be a compile-time bool"
    if use_input_stats and _static_channels(node.args[0]) is None:
        return "instance norm needs a static channel count"
    if not use_input_stats and (node.args[3] is None or node.args[4] is None):
        return "use_input_stats=False needs running statistics"
    return None


@converter(
    aten.instance_norm.default,
    onnx_ops={"InstanceNormalization", "BatchNormalization", "Cast"},
    validator=_validate_instance_norm,
)
def aten_instance_norm(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """instance_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean, Tensor? running_var, bool use_input_stats, float momentum, float eps, bool cudnn_enabled) -> Tensor"""
    x, weight, bias, running_mean, running_var, use_input_stats, _momentum, eps = args[:8]
    if not use_input_stats:
        # InstanceNorm with track_running_stats in eval: a per-channel affine, as batch norm
        return _batch_norm_eval(ctx, node, x, weight, bias, running_mean, running_var, eps)
    dtype = ctx.dtype(x)
    compute = _compute_dtype(dtype)
    channels = _static_channels(node.args[0])
    assert channels is not None
    y = ctx.op(
        "InstanceNormalization",
        ctx.cast(x, compute),
        _optional_param(ctx, weight, 1.0, [channels], compute),
        _optional_param(ctx, bias, 0.0, [channels], compute),
        epsilon=float(eps),
    )
    return ctx.cast(y, dtype)


# ---------------------------------------------------------------------------- layer norm
def _validate_layer_norm(node: fx.Node) -> str | None:
    reason = _float_input(node)
    if reason is not None:
        return reason
    shape = node.args[1]
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) for d in shape):
        return "normalized_shape must be compile-time integers"
    if not 1 <= len(shape) <= _input_rank(node):
        return "normalized_shape does not fit the input"
    return None


def _layer_norm(
    ctx: ConversionContext,
    node: fx.Node,
    x: ir.Value,
    normalized_shape: list[int],
    weight: ir.Value | None,
    bias: ir.Value | None,
    eps: float,
    want_stats: bool,
) -> tuple[ir.Value, ir.Value | None, ir.Value | None]:
    dtype = ctx.dtype(x)
    shape = [int(d) for d in normalized_shape]
    scale = _optional_param(ctx, weight, 1.0, shape, dtype)
    b = None if bias is None else _param(ctx, bias, dtype)
    # stash_type=1: statistics in float32 whatever the input type, as PyTorch computes them
    attrs: dict[str, Any] = {"axis": -len(shape), "epsilon": float(eps), "stash_type": 1}
    # an absent bias is left off rather than passed as "": ONNX Runtime 1.32 crashes on a
    # trailing empty optional input of LayerNormalization
    inputs = [x, scale] if b is None else [x, scale, b]
    out = ctx.op("LayerNormalization", *inputs, **attrs)
    if not want_stats:
        return out, None, None
    # the statistics come from their own reductions: TensorRT imports LayerNormalization with
    # its first output only
    rank = _input_rank(node)
    xc = ctx.cast(x, _compute_dtype(dtype))
    mean, rstd = _moments(ctx, xc, list(range(rank - len(shape), rank)), float(eps))
    return out, ctx.cast(mean, ctx.node_dtype(node, 1)), ctx.cast(rstd, ctx.node_dtype(node, 2))


@converter(
    aten.layer_norm.default, onnx_ops={"LayerNormalization", "Cast"}, validator=_validate_layer_norm
)
def aten_layer_norm(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """layer_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight=None, Tensor? bias=None, float eps=1e-05, bool cudnn_enable=True) -> Tensor"""
    x, normalized_shape = args[:2]
    weight = argument(args, kwargs, 2, "weight")
    bias = argument(args, kwargs, 3, "bias")
    eps = argument(args, kwargs, 4, "eps", 1e-5)
    return _layer_norm(ctx, node, x, normalized_shape, weight, bias, eps, want_stats=False)[0]


@converter(
    aten.native_layer_norm.default,
    onnx_ops={"LayerNormalization", *_STATS_OPS},
    validator=_validate_layer_norm,
)
def aten_native_layer_norm(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ir.Value | None, ir.Value | None]:
    """native_layer_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight, Tensor? bias, float eps) -> (Tensor, Tensor, Tensor)"""
    x, normalized_shape, weight, bias, eps = args[:5]
    want_stats = bool(used_outputs(node) & {1, 2})
    return _layer_norm(ctx, node, x, normalized_shape, weight, bias, eps, want_stats)


# ---------------------------------------------------------------------------- group norm
def _validate_group_norm(node: fx.Node, groups_index: int) -> str | None:
    reason = _float_input(node)
    if reason is not None:
        return reason
    if _input_rank(node) < 2:
        return "group norm needs an (N, C, ...) input"
    groups = node.args[groups_index] if len(node.args) > groups_index else None
    if not isinstance(groups, int):
        return "num_groups must be a compile-time integer"
    return None


def _group_norm(
    ctx: ConversionContext,
    node: fx.Node,
    x: ir.Value,
    groups: int,
    weight: ir.Value | None,
    bias: ir.Value | None,
    eps: float,
    want_stats: bool,
) -> tuple[ir.Value, ir.Value | None, ir.Value | None]:
    rank = _input_rank(node)
    dtype = ctx.dtype(x)
    compute = _compute_dtype(dtype)
    xc = ctx.cast(x, compute)
    # (N, C, *spatial) -> (N, G, C/G * prod(spatial)); 0 copies N so the batch may be dynamic
    grouped = ctx.op("Reshape", xc, ctx.ints([0, groups, -1]))
    mean = rstd = None
    if want_stats:
        mean, rstd = _moments(ctx, grouped, [2], eps)
        normed = ctx.op("Mul", ctx.op("Sub", grouped, mean), rstd)
    else:
        normed = ctx.op(
            "InstanceNormalization",
            grouped,
            ctx.const(torch.ones(groups, dtype=compute)),
            ctx.const(torch.zeros(groups, dtype=compute)),
            epsilon=float(eps),
        )
    y = ctx.op("Reshape", normed, ctx.shape(xc))
    if weight is not None:
        y = ctx.op("Mul", y, _channel_affine(ctx, weight, rank, compute))
    if bias is not None:
        y = ctx.op("Add", y, _channel_affine(ctx, bias, rank, compute))
    y = ctx.cast(y, dtype)
    if not want_stats:
        return y, None, None
    assert mean is not None and rstd is not None
    stats_dtype = ctx.node_dtype(node, 1)
    mean_out = ctx.cast(ctx.op("Reshape", mean, ctx.ints([0, groups])), stats_dtype)
    rstd_out = ctx.cast(ctx.op("Reshape", rstd, ctx.ints([0, groups])), stats_dtype)
    return y, mean_out, rstd_out


_GROUP_OPS = {"Reshape", "InstanceNormalization", "Mul", "Add", "Shape", "Cast", *_STATS_OPS}


@converter(
    aten.group_norm.default, onnx_ops=_GROUP_OPS, validator=lambda n: _validate_group_norm(n, 1)
)
def aten_group_norm(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """group_norm(Tensor input, int num_groups, Tensor? weight=None, Tensor? bias=None, float eps=1e-05, bool cudnn_enabled=True) -> Tensor"""
    x, groups = args[:2]
    weight = argument(args, kwargs, 2, "weight")
    bias = argument(args, kwargs, 3, "bias")
    eps = argument(args, kwargs, 4, "eps", 1e-5)
    return _group_norm(ctx, node, x, int(groups), weight, bias, eps, want_stats=False)[0]


@converter(
    aten.native_group_norm.default,
    onnx_ops=_GROUP_OPS,
    validator=lambda n: _validate_group_norm(n, 6),
)
def aten_native_group_norm(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ir.Value | None, ir.Value | None]:
    """native_group_norm(Tensor input, Tensor? weight, Tensor? bias, SymInt N, SymInt C, SymInt HxW, int group, float eps) -> (Tensor, Tensor, Tensor)"""
    x, weight, bias = args[:3]
    groups, eps = args[6], args[7]
    want_stats = bool(used_outputs(node) & {1, 2})
    return _group_norm(ctx, node, x, int(groups), weight, bias, eps, want_stats)


# ---------------------------------------------------------------------------- RMS norm
def _validate_rms_norm(node: fx.Node) -> str | None:
    return _validate_layer_norm(node)


def _rms_norm(
    ctx: ConversionContext,
    node: fx.Node,
    x: ir.Value,
    normalized_shape: list[int],
    weight: ir.Value | None,
    eps: float | None,
) -> tuple[ir.Value, ir.Value]:
    dtype = ctx.dtype(x)
    compute = _compute_dtype(dtype)
    if eps is None:
        eps = float(torch.finfo(compute).eps)
    rank = _input_rank(node)
    axes = list(range(rank - len(normalized_shape), rank))
    xc = ctx.cast(x, compute)
    # Pow/ReduceMean/Add/Sqrt/Div(/Mul) is the pattern ONNX Runtime fuses into its RMS kernel
    square = ctx.op("Pow", xc, ctx.scalar_like(2.0, compute))
    mean_square = ctx.op("ReduceMean", square, ctx.ints(axes), keepdims=1)
    denom = ctx.op("Sqrt", ctx.op("Add", mean_square, ctx.scalar_like(eps, compute)))
    y = ctx.op("Div", xc, denom)
    if weight is not None:
        y = ctx.op("Mul", y, _param(ctx, weight, compute))
    return ctx.cast(
        y, ctx.node_dtype(node, 0) if isinstance(fake_of(node), tuple) else ctx.node_dtype(node)
    ), denom


@converter(
    aten.rms_norm.default,
    onnx_ops={"Pow", "ReduceMean", "Add", "Sqrt", "Div", "Mul", "Cast"},
    validator=_validate_rms_norm,
)
def aten_rms_norm(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """rms_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight=None, float? eps=None) -> Tensor"""
    x, normalized_shape = args[:2]
    weight = argument(args, kwargs, 2, "weight")
    eps = argument(args, kwargs, 3, "eps")
    return _rms_norm(ctx, node, x, normalized_shape, weight, eps)[0]


@converter(
    aten._fused_rms_norm.default,
    onnx_ops={"Pow", "ReduceMean", "Add", "Sqrt", "Div", "Mul", "Cast", "Reciprocal"},
    validator=_validate_rms_norm,
)
def aten__fused_rms_norm(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ir.Value | None]:
    """_fused_rms_norm(Tensor input, int[] normalized_shape, Tensor? weight, float? eps) -> (Tensor, Tensor)"""
    x, normalized_shape, weight, eps = args[:4]
    out, denom = _rms_norm(ctx, node, x, normalized_shape, weight, eps)
    if 1 not in used_outputs(node):
        return out, None
    return out, ctx.cast(ctx.op("Reciprocal", denom), ctx.node_dtype(node, 1))
