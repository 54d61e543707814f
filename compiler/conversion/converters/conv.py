"""Convolution and transposed convolution (1d/2d/3d) → ONNX Conv / ConvTranspose.

The canonical form is ``aten.convolution.default``, which every ``conv*d`` and
``conv_transpose*d`` call decomposes into. The string-padding overloads (``conv2d.padding`` with
``padding="same"``) are kept whole: their decomposition pads the input with a separate
``constant_pad_nd`` when the "same" padding is uneven (even kernels), whereas ONNX Conv takes
asymmetric pads directly, so one node does the work and the backends' Conv fusions still match.
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext, ConversionError, fake_of
from compiler.conversion.converters._helpers import as_list
from compiler.conversion.registry import converter

aten = torch.ops.aten

_CONV_OPS = {"Conv", "ConvTranspose", "Unsqueeze", "Squeeze", "Cast"}


def _static_ints(values: Any) -> bool:
    if isinstance(values, (list, tuple)):
        return all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    return isinstance(values, int) and not isinstance(values, bool)


def _spatial_rank(node: fx.Node) -> int:
    weight = fake_of(node.args[1])
    return int(weight.dim()) - 2


def _validate_convolution(node: fx.Node) -> str | None:
    weight = fake_of(node.args[1])
    x = fake_of(node.args[0])
    if not isinstance(weight, torch.Tensor) or not isinstance(x, torch.Tensor):
        return "input and weight must be tensors"
    n = weight.dim() - 2
    if n not in (1, 2, 3):
        return f"only 1d/2d/3d convolutions convert (weight has rank {weight.dim()})"
    if x.dim() not in (n + 1, n + 2):
        return f"input rank {x.dim()} does not match a {n}d convolution"
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        return f"ONNX Conv takes floating-point tensors, not {x.dtype}"
    # stride, padding, dilation, transposed, output_padding, groups
    for arg in node.args[3:9]:
        if isinstance(arg, (bool, str)):
            continue
        if not _static_ints(arg):
            return (
                "stride, padding, dilation, output_padding and groups must be compile-time integers"
            )
    return None


def _emit_conv(
    ctx: ConversionContext,
    node: fx.Node,
    x: ir.Value,
    weight: ir.Value,
    bias: ir.Value | None,
    stride: Any,
    pads_begin: list[int],
    pads_end: list[int],
    dilation: Any,
    transposed: bool,
    output_padding: Any,
    groups: int,
) -> ir.Value:
    n = _spatial_rank(node)
    unbatched = ctx.node_rank(node.args[0]) == n + 1
    if unbatched:
        # PyTorch accepts (C, *spatial); ONNX Conv always wants a batch axis
        x = ctx.op("Unsqueeze", x, ctx.ints([0]))
    dtype = ctx.dtype(x)
    weight = ctx.cast(weight, dtype)
    if bias is not None:
        bias = ctx.cast(bias, dtype)
    attrs: dict[str, Any] = {
        "strides": [int(s) for s in as_list(stride, n)],
        "pads": [int(p) for p in pads_begin + pads_end],
        "dilations": [int(d) for d in as_list(dilation, n)],
        "group": int(groups),
    }
    kernel = fake_of(node.args[1]).shape[2:]
    if all(isinstance(k, int) for k in kernel):
        attrs["kernel_shape"] = [int(k) for k in kernel]
    # no "" placeholder for an absent bias: some runtimes mishandle trailing empty inputs
    inputs = [x, weight] if bias is None else [x, weight, bias]
    if transposed:
        out_pad = [int(p) for p in as_list(output_padding, n)]
        if any(out_pad):
            attrs["output_padding"] = out_pad
        out = ctx.op("ConvTranspose", *inputs, **attrs)
    else:
        out = ctx.op("Conv", *inputs, **attrs)
    if unbatched:
        out = ctx.op("Squeeze", out, ctx.ints([0]))
    return out


@converter(aten.convolution.default, onnx_ops=_CONV_OPS, validator=_validate_convolution)
def aten_convolution(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """convolution(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride, SymInt[] padding, SymInt[] dilation, bool transposed, SymInt[] output_padding, SymInt groups) -> Tensor"""
    x, weight, bias, stride, padding, dilation, transposed, output_padding, groups = args[:9]
    n = _spatial_rank(node)
    pads = [int(p) for p in as_list(padding, n)]
    return _emit_conv(
        ctx,
        node,
        x,
        weight,
        bias,
        stride,
        pads,
        pads,
        dilation,
        bool(transposed),
        output_padding,
        int(groups),
    )


@converter(aten._convolution.default, onnx_ops=_CONV_OPS, validator=_validate_convolution)
def aten__convolution(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """_convolution(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride, SymInt[] padding, SymInt[] dilation, bool transposed, SymInt[] output_padding, SymInt groups, bool benchmark, bool deterministic, bool cudnn_enabled, bool allow_tf32) -> Tensor"""
    # the trailing flags only choose a backend kernel; the math is that of convolution
    return aten_convolution(ctx, node, args[:9], {})


_CONV_DEFAULTS = {"bias": None, "stride": 1, "padding": "valid", "dilation": 1, "groups": 1}
_CONV_ARG_NAMES = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")


def _conv_padding_args(node_args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    values = dict(zip(_CONV_ARG_NAMES, node_args, strict=False))
    for name, default in _CONV_DEFAULTS.items():
        values.setdefault(name, kwargs.get(name, default))
    return values


def _validate_conv_padding(node: fx.Node) -> str | None:
    values = _conv_padding_args(tuple(node.args), dict(node.kwargs))
    if values["padding"] not in ("same", "valid"):
        return f"padding={values['padding']!r} is not 'same' or 'valid'"
    for name in ("stride", "dilation", "groups"):
        if not _static_ints(values[name]):
            return f"{name} must be a compile-time integer"
    weight = fake_of(node.args[1])
    if not isinstance(weight, torch.Tensor) or not all(
        isinstance(k, int) for k in weight.shape[2:]
    ):
        return "padding='same' needs a weight with a static kernel size"
    x = fake_of(node.args[0])
    n = weight.dim() - 2
    if not isinstance(x, torch.Tensor) or x.dim() not in (n + 1, n + 2):
        return "input rank does not match the convolution"
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        return f"ONNX Conv takes floating-point tensors, not {x.dtype}"
    return None


@converter(
    aten.conv1d.padding,
    aten.conv2d.padding,
    aten.conv3d.padding,
    onnx_ops=_CONV_OPS,
    validator=_validate_conv_padding,
)
def aten_conv_padding(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """conv2d.padding(Tensor input, Tensor weight, Tensor? bias=None, SymInt[2] stride=[1, 1], str padding="valid", SymInt[2] dilation=[1, 1], SymInt groups=1) -> Tensor"""
    values = _conv_padding_args(args, kwargs)
    n = _spatial_rank(node)
    dilation = [int(d) for d in as_list(values["dilation"], n)]
    if values["padding"] == "valid":
        begin = end = [0] * n
    elif values["padding"] == "same":
        kernel = [int(k) for k in fake_of(node.args[1]).shape[2:]]
        total = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]
        # PyTorch puts the odd element of an uneven "same" padding at the end
        begin = [t // 2 for t in total]
        end = [t - b for t, b in zip(total, begin, strict=True)]
    else:
        raise ConversionError(f"unsupported padding {values['padding']!r}")
    return _emit_conv(
        ctx,
        node,
        values["input"],
        values["weight"],
        values["bias"],
        values["stride"],
        begin,
        end,
        dilation,
        False,
        None,
        int(values["groups"]),
    )
