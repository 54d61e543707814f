"""Selection by value: nonzero, masked_select, boolean-mask indexing and unique.

Their output sizes depend on the values (torch.export gives them unbacked symbols such as
``u0``), so the engines that hold them return outputs whose size the runtime learns only from
what the engine returns (``compiler.runtime.engine_op``'s fake kernel allocates a fresh unbacked
size for each).
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext, fake_of
from compiler.conversion.converters._helpers import argument
from compiler.conversion.registry import converter

aten = torch.ops.aten

MASK_DTYPES = (torch.bool, torch.uint8)


def nonzero_rows(ctx: ConversionContext, x: ir.Value) -> ir.Value:
    """``[N, rank]`` int64 coordinates of the nonzero elements of ``x``, in row-major order
    (ONNX NonZero gives ``[rank, N]``)."""
    return ctx.op("Transpose", ctx.op("NonZero", x), perm=[1, 0])


def _validate_nonzero(node: fx.Node) -> str | None:
    if fake_of(node.args[0]).dim() == 0:
        return "nonzero of a 0-d tensor: ONNX NonZero and PyTorch disagree on its shape"
    return None


@converter(aten.nonzero.default, onnx_ops={"NonZero", "Transpose"}, validator=_validate_nonzero)
def aten_nonzero(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """nonzero(Tensor self) -> Tensor"""
    return nonzero_rows(ctx, args[0])


def mask_index(ctx: ConversionContext, x: ir.Value, mask: ir.Value, position: int, x_rank: int, mask_rank: int) -> ir.Value:
    """``x[..., mask, ...]`` with the mask over dims ``position .. position + mask_rank - 1``:
    the selected dims become one dim of the selected count, at ``position``."""
    mask = ctx.cast(mask, torch.bool)
    covered = list(range(position, position + mask_rank))
    rest = [d for d in range(x_rank) if d not in covered]
    front = covered + rest
    if front != list(range(x_rank)):
        x = ctx.op("Transpose", x, perm=front)
    picked = ctx.op("GatherND", x, nonzero_rows(ctx, mask))  # [N, rest...]
    if position == 0:
        return picked
    # the selected dim goes back where the mask was, after the dims before it
    perm = [*range(1, position + 1), 0, *range(position + 1, 1 + len(rest))]
    return ctx.op("Transpose", picked, perm=perm)


@converter(
    aten.masked_select.default,
    onnx_ops={"Where", "Expand", "Shape", "Reshape", "Compress", "Cast"},
)
def aten_masked_select(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """masked_select(Tensor self, Tensor mask) -> Tensor"""
    x, mask = args[0], ctx.cast(args[1], torch.bool)
    # Where(mask, x, x) is x broadcast against the mask; the mask is then broadcast to that
    values = ctx.op("Where", mask, x, x)
    flat_mask = ctx.op("Reshape", ctx.op("Expand", mask, ctx.shape(values)), ctx.ints([-1]))
    return ctx.op("Compress", ctx.op("Reshape", values, ctx.ints([-1])), flat_mask, axis=0)


# ONNX Runtime's Unique kernel takes these; other integer types go through int64 exactly
_UNIQUE_NATIVE = (torch.int64, torch.int8)
_UNIQUE_VIA_INT64 = (torch.bool, torch.uint8, torch.int16, torch.int32)


def _validate_unique(node: fx.Node) -> str | None:
    dtype = fake_of(node.args[0]).dtype
    if dtype not in _UNIQUE_NATIVE + _UNIQUE_VIA_INT64:
        # NaN and -0.0 sort differently in ONNX Runtime's Unique than in PyTorch
        return f"unique of {dtype} values: NaN and signed-zero order differ from PyTorch's"
    if not argument(node.args, node.kwargs, 1, "sorted", True):  # type: ignore[arg-type]
        return "unique(sorted=False): PyTorch's order is its hash table's, which nothing reproduces"
    return None


@converter(
    aten._unique2.default,
    onnx_ops={"Unique", "Cast", "Reshape", "Shape"},
    validator=_validate_unique,
)
def aten__unique2(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ir.Value, ir.Value]:
    """_unique2(Tensor self, bool sorted=True, bool return_inverse=False, bool return_counts=False) -> (Tensor, Tensor, Tensor)"""
    x = args[0]
    dtype = fake_of(node.args[0]).dtype
    return_inverse = bool(argument(args, kwargs, 2, "return_inverse", False))
    return_counts = bool(argument(args, kwargs, 3, "return_counts", False))
    data = x if dtype in _UNIQUE_NATIVE else ctx.cast(x, torch.int64)
    # without an axis, ONNX Unique flattens its input, as torch.unique does
    values, _, inverse, counts = ctx.op_multi(
        "Unique", data, num_outputs=4, dtypes=[ctx.dtype(data), torch.int64, torch.int64, torch.int64], sorted=1
    )
    empty = ctx.const(torch.zeros(0, dtype=torch.int64))  # what PyTorch returns for an output not asked for
    inverse_out = ctx.op("Reshape", inverse, ctx.shape(x)) if return_inverse else empty
    return ctx.cast(values, dtype), inverse_out, counts if return_counts else empty
