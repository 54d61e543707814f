"""Embedding bags: ``_embedding_bag`` / ``_embedding_bag_forward_only`` (``nn.EmbeddingBag``,
``F.embedding_bag``), the sum, mean or max of the looked-up rows of each bag.

Bag ``b`` holds positions ``offsets[b] <= p < offsets[b + 1]`` (the last bag ends at the end of
``indices``, or at the last offset with ``include_last_offset``). A ``[bags, positions]``
membership mask turns the reductions into a MatMul (sum, mean) and a masked ReduceMax (max);
positions holding ``padding_idx`` belong to no bag. Empty bags give zeros, as in PyTorch.
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

_SUM, _MEAN, _MAX = 0, 1, 2
_BAG_OPS = {
    "Gather", "Cast", "Shape", "Squeeze", "Unsqueeze", "Range", "Slice", "Concat", "LessOrEqual",
    "Less", "And", "Equal", "Not", "MatMul", "Mul", "ReduceSum", "Max", "Div", "Where", "ReduceMax",
    "Greater", "Reshape",
}  # fmt: skip


def _bag_args(node: fx.Node) -> tuple[int, bool, bool, int]:
    args, kwargs = node.args, node.kwargs
    mode = argument(args, kwargs, 4, "mode", 0)
    weighted = argument(args, kwargs, 6, "per_sample_weights") is not None
    include_last = argument(args, kwargs, 7, "include_last_offset", False)
    padding_idx = argument(args, kwargs, 8, "padding_idx", -1)
    return mode, weighted, include_last, padding_idx


def _validate_embedding_bag(node: fx.Node) -> str | None:
    mode, weighted, include_last, padding_idx = _bag_args(node)
    if mode not in (_SUM, _MEAN, _MAX) or not isinstance(include_last, bool) or not isinstance(padding_idx, int):
        return "mode, include_last_offset and padding_idx must be compile-time constants"
    if weighted and mode != _SUM:
        return "per_sample_weights are only defined for mode='sum'"
    if used_outputs(node) - {0}:
        return "only the bags are converted, not offset2bag, bag_size or max_indices"
    if fake_of(node.args[1]).dim() != 1 or fake_of(node.args[2]).dim() != 1:
        return "indices and offsets must be 1-D (2-D input arrives flattened, with offsets)"
    if fake_of(node.args[0]).dtype not in (torch.float32, torch.float16, torch.float64):
        return "embedding weights must be floating"
    return None


@converter(
    aten._embedding_bag.default,
    aten._embedding_bag_forward_only.default,
    onnx_ops=_BAG_OPS,
    validator=_validate_embedding_bag,
)
def aten__embedding_bag(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, None, None, None]:
    """_embedding_bag(Tensor weight, Tensor indices, Tensor offsets, bool scale_grad_by_freq=False, int mode=0, bool sparse=False, Tensor? per_sample_weights=None, bool include_last_offset=False, int padding_idx=-1) -> (Tensor, Tensor, Tensor, Tensor)

    Also _embedding_bag_forward_only, with the same arguments."""
    weight, indices, offsets = args[0], ctx.cast(args[1], torch.int64), ctx.cast(args[2], torch.int64)
    mode, _, include_last, padding_idx = _bag_args(node)
    per_sample_weights = argument(args, kwargs, 6, "per_sample_weights")
    dtype = ctx.dtype(weight)

    count = ctx.op("Squeeze", ctx.dim(indices, 0), ctx.ints([0]))
    positions = ctx.op("Range", ctx.const(0, torch.int64), count, ctx.const(1, torch.int64))
    if include_last:
        starts = ctx.op("Slice", offsets, ctx.ints([0]), ctx.ints([-1]), ctx.ints([0]))
        ends = ctx.op("Slice", offsets, ctx.ints([1]), ctx.ints([2**62]), ctx.ints([0]))
    else:
        starts = offsets
        ends = ctx.op("Concat", ctx.op("Slice", offsets, ctx.ints([1]), ctx.ints([2**62]), ctx.ints([0])), ctx.dim(indices, 0), axis=0)
    row = ctx.op("Unsqueeze", positions, ctx.ints([0]))  # [1, N]
    member = ctx.op(
        "And",
        ctx.op("LessOrEqual", ctx.op("Unsqueeze", starts, ctx.ints([1])), row),
        ctx.op("Less", row, ctx.op("Unsqueeze", ends, ctx.ints([1]))),
    )  # [B, N]
    if padding_idx >= 0:
        kept = ctx.op("Not", ctx.op("Equal", indices, ctx.const(padding_idx, torch.int64)))
        member = ctx.op("And", member, ctx.op("Unsqueeze", kept, ctx.ints([0])))

    rows = ctx.op("Gather", weight, indices, axis=0)  # [N, D]
    if per_sample_weights is not None:
        rows = ctx.op("Mul", rows, ctx.op("Unsqueeze", ctx.cast(per_sample_weights, dtype), ctx.ints([1])))
    if mode == _MAX:
        lowest = ctx.scalar_like(float("-inf"), dtype)
        masked = ctx.op("Where", ctx.op("Unsqueeze", member, ctx.ints([2])), ctx.op("Unsqueeze", rows, ctx.ints([0])), lowest)
        largest = ctx.op("ReduceMax", masked, ctx.ints([1]), keepdims=0)
        nonempty = ctx.op("Greater", ctx.op("ReduceSum", ctx.cast(member, torch.int64), ctx.ints([1]), keepdims=1), ctx.const(0, torch.int64))
        return ctx.op("Where", nonempty, largest, ctx.scalar_like(0, dtype)), None, None, None
    weights = ctx.cast(member, dtype)
    total = ctx.op("MatMul", weights, rows)
    if mode == _SUM:
        return total, None, None, None
    sizes = ctx.op("ReduceSum", weights, ctx.ints([1]), keepdims=1)
    return ctx.op("Div", total, ctx.op("Max", sizes, ctx.scalar_like(1, dtype))), None, None, None
