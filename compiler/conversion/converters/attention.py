"""Scaled dot-product attention as standard ONNX ops (opset 20 has no Attention op).

The emitted pattern is ``MatMul(Q * scale, Transpose(K)) [+ bias] -> Softmax -> MatMul(., V)``,
which ONNX Runtime fuses into FusedMatMul (transpose and scale folded into the GEMM) and
TensorRT recognises as its multi-head-attention pattern. Registering
``aten.scaled_dot_product_attention`` keeps it whole through lowering; the CPU flash-attention
op that other tracing paths leave behind is converted the same way.

Masks: a causal mask is built from the runtime sequence lengths (``Range`` over the shapes of
Q and K), never baked at the export size. Boolean masks become an additive 0/-inf bias; float
masks are added as they are. PyTorch gives 0 (not nan) for a query row whose keys are all
masked out; the same holds here.
"""

from __future__ import annotations

import math
from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext, ConversionError, fake_of
from compiler.conversion.converters._helpers import used_outputs
from compiler.conversion.converters.reduce import logsumexp
from compiler.conversion.registry import converter

aten = torch.ops.aten

_ONNX_OPS = frozenset(
    """Mul Transpose MatMul Add Softmax Where Range Gather Shape Unsqueeze LessOrEqual ReduceMax Greater
    Expand Reshape Concat Cast Sqrt Reciprocal IsInf Sub Exp ReduceSum Log Squeeze""".split()
)


def _sdpa_options(node: fx.Node) -> dict[str, Any]:
    """The options of either ATen form, by name."""
    args, kwargs = node.args, node.kwargs
    if node.target is aten.scaled_dot_product_attention.default:
        names = ["attn_mask", "dropout_p", "is_causal"]
        positional = dict(zip(names, args[3:], strict=False))
    else:
        # _scaled_dot_product_flash_attention_for_cpu(q, k, v, dropout_p, is_causal, *, attn_mask, scale)
        positional = dict(zip(["dropout_p", "is_causal"], args[3:], strict=False))
    options: dict[str, Any] = {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None, "enable_gqa": False}
    options.update(positional)
    options.update(kwargs)
    return options


def _heads(node: fx.Node, index: int) -> Any:
    return fake_of(node.args[index]).shape[-3]


def _validate_sdpa(node: fx.Node) -> str | None:
    options = _sdpa_options(node)
    if options["dropout_p"] != 0:
        return f"dropout_p={options['dropout_p']} is random at inference time; only dropout_p=0 converts"
    if options["is_causal"] and options["attn_mask"] is not None:
        return "is_causal together with attn_mask is rejected by PyTorch itself"
    query = fake_of(node.args[0])
    if not query.dtype.is_floating_point:
        return f"attention on {query.dtype} tensors"
    if query.dim() < 2 or fake_of(node.args[1]).dim() < 2:
        return "attention needs query and key of rank 2 or more"
    mask = options["attn_mask"]
    if mask is not None and not (fake_of(mask).dtype == torch.bool or fake_of(mask).dtype.is_floating_point):
        return f"attn_mask of dtype {fake_of(mask).dtype} (expected bool or floating point)"
    if options["enable_gqa"]:
        if query.dim() < 3 or fake_of(node.args[1]).dim() < 3:
            return "enable_gqa needs a head dim (rank 3 or more)"
        q_heads, kv_heads = _heads(node, 0), _heads(node, 1)
        if not (isinstance(q_heads, int) and isinstance(kv_heads, int)):
            return "enable_gqa with a dynamic number of heads"
        if q_heads % kv_heads or q_heads % _heads(node, 2):
            return f"enable_gqa with {q_heads} query heads, not a multiple of the key/value heads"
    return None


def _repeat_heads(ctx: ConversionContext, value: ir.Value, node_arg: Any, groups: int) -> ir.Value:
    """repeat_interleave(value, groups, dim=-3): each key/value head serves ``groups`` query heads."""
    fake = fake_of(node_arg)
    rank = fake.dim()
    heads = fake.shape[-3]
    widened = ctx.op("Unsqueeze", value, ctx.ints([rank - 2]))
    widened = ctx.op("Expand", widened, ctx.ints([1] * (rank - 2) + [groups, 1, 1]))
    last = fake.shape[-1]
    last_dim = last if isinstance(last, int) else ctx.dim(value, rank - 1)
    # Reshape's 0 copies the input dim at the same index: the batch dims, all before the heads
    target = ctx.shape_tensor([*([0] * (rank - 3)), heads * groups, -1, last_dim])
    return ctx.op("Reshape", widened, target)


def _scale(ctx: ConversionContext, query: ir.Value, node: fx.Node, scale: float | None) -> ir.Value:
    dtype = ctx.dtype(query)
    if scale is not None:
        return ctx.scalar_like(float(scale), dtype)
    head_dim = fake_of(node.args[0]).shape[-1]
    if isinstance(head_dim, int):
        return ctx.scalar_like(1.0 / math.sqrt(head_dim), dtype)
    rank = ctx.node_rank(node.args[0])
    return ctx.op("Reciprocal", ctx.op("Sqrt", ctx.cast(ctx.dim(query, rank - 1), dtype)))


def _causal_bias(ctx: ConversionContext, query: ir.Value, key: ir.Value, q_rank: int, k_rank: int) -> ir.Value:
    """0 where key position <= query position, -inf elsewhere, of shape (L, S) taken at run time.

    Top-left aligned like PyTorch's is_causal (query row i sees keys 0..i, also when L != S)."""
    zero, one = ctx.const(0, torch.int64), ctx.const(1, torch.int64)
    length = ctx.op("Gather", ctx.shape(query), ctx.const(q_rank - 2, torch.int64), axis=0)
    source = ctx.op("Gather", ctx.shape(key), ctx.const(k_rank - 2, torch.int64), axis=0)
    rows = ctx.op("Unsqueeze", ctx.op("Range", zero, length, one, dtype=torch.int64), ctx.ints([1]))
    cols = ctx.op("Range", zero, source, one, dtype=torch.int64)
    visible = ctx.op("LessOrEqual", cols, rows)
    return ctx.op("Where", visible, ctx.scalar_like(0.0, query), ctx.scalar_like(-math.inf, query))


def _attention(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any], with_lse: bool
) -> tuple[ir.Value, ir.Value | None]:
    query, key, value = args[0], args[1], args[2]
    options = _sdpa_options(node)
    reason = _validate_sdpa(node)
    if reason is not None:
        raise ConversionError(reason)
    q_rank, k_rank = ctx.node_rank(node.args[0]), ctx.node_rank(node.args[1])
    if options["enable_gqa"]:
        q_heads = _heads(node, 0)
        if _heads(node, 1) != q_heads:
            key = _repeat_heads(ctx, key, node.args[1], q_heads // _heads(node, 1))
        if _heads(node, 2) != q_heads:
            value = _repeat_heads(ctx, value, node.args[2], q_heads // _heads(node, 2))

    # scaling Q (L x E) is cheaper than scaling the scores (L x S) and keeps fp16 products small
    scaled = ctx.op("Mul", query, _scale(ctx, query, node, options["scale"]))
    perm = list(range(k_rank))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    scores = ctx.op("MatMul", scaled, ctx.op("Transpose", key, perm=perm))

    bias: ir.Value | None = None
    mask_node = options["attn_mask"]
    if options["is_causal"]:
        bias = _causal_bias(ctx, query, key, q_rank, k_rank)
    elif mask_node is not None:
        # the converted mask is in args/kwargs, in the same place as in the fx node
        mask = kwargs["attn_mask"] if "attn_mask" in kwargs else args[3]
        if fake_of(mask_node).dtype == torch.bool:
            bias = ctx.op("Where", mask, ctx.scalar_like(0.0, query), ctx.scalar_like(-math.inf, query))
        else:
            bias = ctx.cast(mask, ctx.dtype(query))
    if bias is not None:
        scores = ctx.op("Add", scores, bias)

    out = ctx.op("MatMul", ctx.op("Softmax", scores, axis=-1), value)
    if mask_node is not None and bias is not None:
        # a row with every key masked is 0 in PyTorch; Softmax would give nan there
        peak = ctx.op("ReduceMax", bias, ctx.ints([-1]), keepdims=1, dtype=ctx.dtype(bias))
        seen = ctx.op("Greater", peak, ctx.scalar_like(-math.inf, bias))
        out = ctx.op("Where", seen, out, ctx.scalar_like(0.0, out))
    lse = None
    if with_lse:
        lse = ctx.cast(logsumexp(ctx, ctx.cast(scores, torch.float32), [q_rank - 1], False), ctx.node_dtype(node, 1))
    return out, lse


@converter(aten.scaled_dot_product_attention.default, onnx_ops=_ONNX_OPS, validator=_validate_sdpa)
def aten_scaled_dot_product_attention(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ir.Value:
    """scaled_dot_product_attention(Tensor query, Tensor key, Tensor value, Tensor? attn_mask=None, float dropout_p=0., bool is_causal=False, *, float? scale=None, bool enable_gqa=False) -> Tensor"""
    return _attention(ctx, node, args, kwargs, with_lse=False)[0]


@converter(aten._scaled_dot_product_flash_attention_for_cpu.default, onnx_ops=_ONNX_OPS, validator=_validate_sdpa)
def aten__scaled_dot_product_flash_attention_for_cpu(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ir.Value, ir.Value | None]:
    """_scaled_dot_product_flash_attention_for_cpu(Tensor query, Tensor key, Tensor value, float dropout_p=0., bool is_causal=False, *, Tensor? attn_mask=None, float? scale=None) -> (Tensor output, Tensor logsumexp)"""
    # the log-sum-exp output only feeds backward passes; compute it only when something reads it
    return _attention(ctx, node, args, kwargs, with_lse=1 in used_outputs(node))
