"""Activations. Each maps to the fused ONNX op where one exists (Gelu, Mish, HardSwish,
HardSigmoid, LeakyRelu, Elu, Selu, Softplus, PRelu), because backends fuse on those; the
PyTorch-only variants (elu's scales, softplus's beta and threshold) wrap the fused op with
the extra arithmetic instead of re-deriving the whole formula.
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext
from compiler.conversion.converters._helpers import normalize_dim, out_dtype, used_outputs
from compiler.conversion.converters.comparison import clip, max_min, select
from compiler.conversion.converters.elementwise import (
    FLOATS,
    NO_FLOAT64,
    NUMERIC,
    unary_operand,
    validate_dtypes,
)
from compiler.conversion.registry import Validator, converter

aten = torch.ops.aten

_FLOAT = validate_dtypes(FLOATS, why="defined on floating tensors")
_NO_F64_WHY = "ONNX Runtime's CPU provider has no float64 kernel for it"


def _fused(extra: Validator | None = None) -> Validator:
    """Float activations whose fused ONNX op lacks a float64 kernel in ONNX Runtime."""
    return validate_dtypes(NO_FLOAT64, why=_NO_F64_WHY, extra=extra)


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _fx_arg(node: fx.Node, index: int, name: str, default: Any) -> Any:
    return _arg(tuple(node.args), dict(node.kwargs), index, name, default)


# --------------------------------------------------------------------------- piecewise linear
@converter(
    aten.relu.default,
    onnx_ops={"Relu", "Max", "Cast"},
    validator=validate_dtypes(NUMERIC, why="PyTorch has no relu for bools"),
)
def aten_relu(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """relu(Tensor self) -> Tensor"""
    x = args[0]
    dtype = out_dtype(node)
    if dtype in FLOATS:
        return ctx.op("Relu", x)
    # ONNX Relu has no int64 kernel in ONNX Runtime; max(x, 0) is the same for integers
    return max_min(ctx, x, ctx.scalar_like(0, x), dtype, "Max")


_CLIP_ACT = validate_dtypes(NUMERIC, why="not defined on bool tensors")


@converter(aten.relu6.default, onnx_ops={"Clip", "Cast"}, validator=_CLIP_ACT)
def aten_relu6(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """relu6(Tensor self) -> Tensor"""
    return clip(ctx, args[0], 0, 6, out_dtype(node))


@converter(aten.hardtanh.default, onnx_ops={"Clip", "Cast"}, validator=_CLIP_ACT)
def aten_hardtanh(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """hardtanh(Tensor self, Scalar min_val=-1, Scalar max_val=1) -> Tensor"""
    low = _arg(args, kwargs, 1, "min_val", -1.0)
    high = _arg(args, kwargs, 2, "max_val", 1.0)
    return clip(ctx, args[0], low, high, out_dtype(node))


@converter(aten.leaky_relu.default, onnx_ops={"LeakyRelu"}, validator=_fused())
def aten_leaky_relu(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """leaky_relu(Tensor self, Scalar negative_slope=0.01) -> Tensor"""
    slope = _arg(args, kwargs, 1, "negative_slope", 0.01)
    return ctx.op("LeakyRelu", args[0], alpha=float(slope))


@converter(
    aten.threshold.default,
    onnx_ops={"LessOrEqual", "Where", "Cast"},
    validator=validate_dtypes(NUMERIC, why="not defined on bool tensors"),
)
def aten_threshold(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """threshold(Tensor self, Scalar threshold, Scalar value) -> Tensor"""
    x = args[0]
    dtype = ctx.dtype(x)
    below = ctx.op("LessOrEqual", x, ctx.as_tensor(args[1], dtype))
    return select(ctx, below, ctx.as_tensor(args[2], dtype), x, dtype)


@converter(
    aten.hardshrink.default,
    onnx_ops={"GreaterOrEqual", "LessOrEqual", "And", "Where"},
    validator=_FLOAT,
)
def aten_hardshrink(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """hardshrink(Tensor self, Scalar lambd=0.5) -> Tensor  (NaN passes through)"""
    x = args[0]
    lambd = float(_arg(args, kwargs, 1, "lambd", 0.5))
    inside = ctx.op(
        "And",
        ctx.op("GreaterOrEqual", x, ctx.scalar_like(-lambd, x)),
        ctx.op("LessOrEqual", x, ctx.scalar_like(lambd, x)),
    )
    return ctx.op("Where", inside, ctx.scalar_like(0, x), x)


@converter(
    aten.softshrink.default,
    onnx_ops={"Greater", "Less", "Sub", "Add", "Mul", "Where"},
    validator=_FLOAT,
)
def aten_softshrink(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """softshrink(Tensor self, Scalar lambd=0.5) -> Tensor  (NaN passes through)"""
    x = args[0]
    lambd = float(_arg(args, kwargs, 1, "lambd", 0.5))
    pos, neg = ctx.scalar_like(lambd, x), ctx.scalar_like(-lambd, x)
    # x * 0 rather than 0 keeps NaN, as PyTorch's kernel does
    middle = ctx.op("Mul", x, ctx.scalar_like(0, x))
    lower = ctx.op("Where", ctx.op("Less", x, neg), ctx.op("Add", x, pos), middle)
    return ctx.op("Where", ctx.op("Greater", x, pos), ctx.op("Sub", x, pos), lower)


# --------------------------------------------------------------------------- smooth
@converter(aten.sigmoid.default, onnx_ops={"Sigmoid", "Cast"}, validator=validate_dtypes())
def aten_sigmoid(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """sigmoid(Tensor self) -> Tensor"""
    return ctx.op("Sigmoid", unary_operand(ctx, node, args[0]))


@converter(aten.tanh.default, onnx_ops={"Tanh", "Cast"}, validator=validate_dtypes())
def aten_tanh(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """tanh(Tensor self) -> Tensor"""
    return ctx.op("Tanh", unary_operand(ctx, node, args[0]))


def _validate_gelu(node: fx.Node) -> str | None:
    approximate = node.kwargs.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        return f"unknown gelu approximation {approximate!r}"
    return None


@converter(aten.gelu.default, onnx_ops={"Gelu"}, validator=_fused(_validate_gelu))
def aten_gelu(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """gelu(Tensor self, *, str approximate='none') -> Tensor"""
    return ctx.op("Gelu", args[0], approximate=kwargs.get("approximate", "none"))


@converter(aten.silu.default, onnx_ops={"Sigmoid", "Mul"}, validator=_FLOAT)
def aten_silu(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """silu(Tensor self) -> Tensor"""
    x = args[0]
    return ctx.op("Mul", x, ctx.op("Sigmoid", x))


@converter(aten.mish.default, onnx_ops={"Mish"}, validator=_fused())
def aten_mish(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """mish(Tensor self) -> Tensor"""
    return ctx.op("Mish", args[0])


@converter(aten.hardswish.default, onnx_ops={"HardSwish"}, validator=_fused())
def aten_hardswish(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """hardswish(Tensor self) -> Tensor"""
    return ctx.op("HardSwish", args[0])


@converter(aten.hardsigmoid.default, onnx_ops={"HardSigmoid"}, validator=_fused())
def aten_hardsigmoid(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """hardsigmoid(Tensor self) -> Tensor  (relu6(x + 3) / 6)"""
    return ctx.op("HardSigmoid", args[0], alpha=1.0 / 6.0, beta=0.5)


# PyTorch's selu constants (ONNX's Selu defaults are these rounded to float32 too)
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@converter(aten.elu.default, onnx_ops={"Elu", "Selu", "Mul", "Greater", "Where"}, validator=_fused())
def aten_elu(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """elu(Tensor self, Scalar alpha=1, Scalar scale=1, Scalar input_scale=1) -> Tensor"""
    x = args[0]
    alpha = float(_arg(args, kwargs, 1, "alpha", 1.0))
    scale = float(_arg(args, kwargs, 2, "scale", 1.0))
    input_scale = float(_arg(args, kwargs, 3, "input_scale", 1.0))
    if scale == 1.0 and input_scale == 1.0:
        return ctx.op("Elu", x, alpha=alpha)
    if input_scale == 1.0 and abs(alpha - _SELU_ALPHA) < 1e-12 and abs(scale - _SELU_SCALE) < 1e-12:
        return ctx.op("Selu", x, alpha=alpha, gamma=scale)
    # x > 0: scale * x;  else: alpha * scale * (exp(x * input_scale) - 1)
    negative = ctx.op("Elu", ctx.op("Mul", x, ctx.scalar_like(input_scale, x)), alpha=1.0)
    negative = ctx.op("Mul", negative, ctx.scalar_like(alpha * scale, x))
    positive = ctx.op("Mul", x, ctx.scalar_like(scale, x))
    return ctx.op("Where", ctx.op("Greater", x, ctx.scalar_like(0, x)), positive, negative)


@converter(aten.selu.default, onnx_ops={"Selu"}, validator=_fused())
def aten_selu(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """selu(Tensor self) -> Tensor"""
    return ctx.op("Selu", args[0], alpha=_SELU_ALPHA, gamma=_SELU_SCALE)


def _validate_celu(node: fx.Node) -> str | None:
    if float(_fx_arg(node, 1, "alpha", 1.0)) == 0.0:
        return "celu with alpha=0 divides by zero (PyTorch raises)"
    return None


@converter(aten.celu.default, onnx_ops={"Elu", "Mul", "Div"}, validator=_fused(_validate_celu))
def aten_celu(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """celu(Tensor self, Scalar alpha=1.0) -> Tensor"""
    x = args[0]
    alpha = float(_arg(args, kwargs, 1, "alpha", 1.0))
    # celu(x) == alpha * elu(x / alpha, 1); ONNX Celu itself has only a float32 kernel in ORT
    if alpha == 1.0:
        return ctx.op("Elu", x, alpha=1.0)
    scaled = ctx.op("Elu", ctx.op("Div", x, ctx.scalar_like(alpha, x)), alpha=1.0)
    return ctx.op("Mul", scaled, ctx.scalar_like(alpha, x))


@converter(aten.softplus.default, onnx_ops={"Softplus", "Mul", "Div", "Greater", "Where"}, validator=_fused())
def aten_softplus(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """softplus(Tensor self, Scalar beta=1, Scalar threshold=20) -> Tensor"""
    x = args[0]
    beta = float(_arg(args, kwargs, 1, "beta", 1.0))
    threshold = float(_arg(args, kwargs, 2, "threshold", 20.0))
    scaled = x if beta == 1.0 else ctx.op("Mul", x, ctx.scalar_like(beta, x))
    soft = ctx.op("Softplus", scaled)
    if beta != 1.0:
        soft = ctx.op("Div", soft, ctx.scalar_like(beta, x))
    # PyTorch switches to the identity above the threshold (ONNX Softplus has no threshold)
    linear = ctx.op("Greater", scaled, ctx.scalar_like(threshold, x))
    return ctx.op("Where", linear, x, soft)


@converter(aten.log_sigmoid.default, onnx_ops={"Softplus", "Neg"}, validator=_fused())
def aten_log_sigmoid(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """log_sigmoid(Tensor self) -> Tensor  (-softplus(-x), stable for large |x|)"""
    return ctx.op("Neg", ctx.op("Softplus", ctx.op("Neg", args[0])))


@converter(
    aten.log_sigmoid_forward.default,
    onnx_ops={"Softplus", "Neg", "Abs", "Exp"},
    validator=_fused(),
)
def aten_log_sigmoid_forward(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ir.Value]:
    """log_sigmoid_forward(Tensor self) -> (Tensor output, Tensor buffer)"""
    x = args[0]
    output = ctx.op("Neg", ctx.op("Softplus", ctx.op("Neg", x)))
    # the buffer PyTorch's CPU kernel keeps for backward: exp(-|x|)
    buffer = ctx.op("Exp", ctx.op("Neg", ctx.op("Abs", x)))
    return output, buffer


# --------------------------------------------------------------------------- parametric
@converter(aten._prelu_kernel.default, onnx_ops={"PRelu"}, validator=_fused())
def aten__prelu_kernel(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """_prelu_kernel(Tensor self, Tensor weight) -> Tensor  (weight already broadcastable)"""
    return ctx.op("PRelu", args[0], args[1])


def _validate_prelu(node: fx.Node) -> str | None:
    weight = node.args[1]
    val = weight.meta.get("val") if isinstance(weight, fx.Node) else None
    if not isinstance(val, torch.Tensor) or val.dim() != 1:
        return "prelu weight must be a 1-D tensor"
    return None


@converter(aten.prelu.default, onnx_ops={"PRelu", "Reshape"}, validator=_fused(_validate_prelu))
def aten_prelu(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """prelu(Tensor self, Tensor weight) -> Tensor"""
    x, weight = args[0], args[1]
    rank = ctx.node_rank(node.args[0])
    if rank >= 3:
        # one slope per channel (dim 1); ONNX PRelu broadcasts from the right
        weight = ctx.op("Reshape", weight, ctx.ints([-1] + [1] * (rank - 2)))
    return ctx.op("PRelu", x, weight)


def _validate_glu(node: fx.Node) -> str | None:
    val = node.args[0].meta.get("val") if isinstance(node.args[0], fx.Node) else None
    if not isinstance(val, torch.Tensor) or val.dim() == 0:
        return "glu needs a tensor of rank >= 1"
    size = val.shape[normalize_dim(int(_fx_arg(node, 1, "dim", -1)), val.dim())]
    if isinstance(size, int) and size % 2:
        return f"glu halves dimension of odd size {size} (PyTorch raises)"
    return None


@converter(
    aten.glu.default,
    onnx_ops={"Split", "Sigmoid", "Mul", "Shape", "Gather", "Div", "Concat"},
    validator=validate_dtypes(FLOATS, extra=_validate_glu),
)
def aten_glu(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """glu(Tensor self, int dim=-1) -> Tensor"""
    x = args[0]
    dim = normalize_dim(int(_arg(args, kwargs, 1, "dim", -1)), ctx.node_rank(node.args[0]))
    dtype = ctx.dtype(x)
    half_size = ctx.node_shape(node)[dim]
    if isinstance(half_size, int):
        halves = ctx.ints([half_size, half_size])
    else:
        half = ctx.op("Div", ctx.dim(x, dim), ctx.ints([2]))
        halves = ctx.op("Concat", half, half, axis=0)
    first, second = ctx.op_multi("Split", x, halves, num_outputs=2, dtypes=[dtype, dtype], axis=dim)
    return ctx.op("Mul", first, ctx.op("Sigmoid", second))


# ----------------------------------------------------------------------------- dropout
def _validate_native_dropout(node: fx.Node) -> str | None:
    p = node.args[1] if len(node.args) > 1 else node.kwargs.get("p")
    train = node.args[2] if len(node.args) > 2 else node.kwargs.get("train")
    if train is False or p == 0:
        return None
    return "dropout in training mode draws random masks; an inference engine does not"


@converter(aten.native_dropout.default, onnx_ops={"Identity", "Expand", "Shape"}, validator=_validate_native_dropout)
def aten_native_dropout(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ir.Value | None]:
    """native_dropout(Tensor input, float p, bool? train) -> (Tensor, Tensor)

    In eval mode (or with p=0) the output is the input and the mask keeps every element."""
    x = args[0]
    mask = ctx.op("Expand", ctx.const(True), ctx.shape(x)) if 1 in used_outputs(node) else None
    return ctx.op("Identity", x), mask
