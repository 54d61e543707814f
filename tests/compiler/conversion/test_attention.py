"""Table-driven tests for the scaled-dot-product-attention converters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from compiler.conversion import REGISTRY, convert_graph
from compiler.lowering import LoweringSettings, lower
from tests.compiler.conversion.harness import Fn, OpCase, check_case

aten = torch.ops.aten
F16 = torch.float16
FP16 = {"atol": 5e-3, "rtol": 5e-3}
ATOL = {"atol": 2e-5, "rtol": 2e-5}


def _r(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape).to(dtype)


def _qkv(b: int, h: int, length: int, e: int, s: int | None = None, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    s = length if s is None else s
    return [_r(b, h, length, e, dtype=dtype), _r(b, h, s, e, dtype=dtype), _r(b, h, s, e, dtype=dtype)]


def _padding_mask(b: int, length: int, s: int, masked_rows: bool = False) -> torch.Tensor:
    mask = torch.rand(b, 1, length, s) > 0.3
    mask[..., 0] = True
    if masked_rows:
        mask[0, 0, 1, :] = False  # a query that sees no key at all
    return mask


class SelfAttention(torch.nn.Module):
    """A BERT/GPT-2 style layer: projections, heads split by view/transpose, SDPA, merge."""

    def __init__(self, causal: bool, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.heads, self.causal = heads, causal

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, length, dim = x.shape
        q, k, v = self.qkv(x).split(dim, dim=-1)
        q, k, v = (t.reshape(b, length, self.heads, dim // self.heads).transpose(1, 2) for t in (q, k, v))
        if mask is not None:
            # padding mask (batch, seq) of 1/0, as tokenizers give it
            attn_mask = mask[:, None, None, :].bool()
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return out.transpose(1, 2).reshape(b, length, dim)


def _ids_mask(b: int, length: int) -> torch.Tensor:
    mask = torch.ones(b, length, dtype=torch.int64)
    mask[0, length // 2 :] = 0
    return mask


CASES = [
    OpCase("plain", Fn(F.scaled_dot_product_attention), _qkv(2, 2, 5, 8), **ATOL),
    OpCase("scale_given", Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, scale=0.3)), _qkv(1, 2, 4, 8), **ATOL),
    OpCase("cross_attention_l_ne_s", Fn(F.scaled_dot_product_attention), _qkv(1, 2, 3, 8, s=6), **ATOL),
    OpCase("rank3", Fn(F.scaled_dot_product_attention), [_r(2, 5, 8), _r(2, 7, 8), _r(2, 7, 4)], **ATOL),
    OpCase("value_dim_differs", Fn(F.scaled_dot_product_attention), [_r(1, 2, 4, 8), _r(1, 2, 6, 8), _r(1, 2, 6, 3)], **ATOL),
    OpCase("causal", Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)), _qkv(2, 2, 6, 8), **ATOL),
    OpCase("causal_l_lt_s", Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)), _qkv(1, 2, 3, 8, s=6), **ATOL),
    OpCase("causal_l_gt_s", Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)), _qkv(1, 2, 6, 8, s=3), **ATOL),
    OpCase(
        "bool_mask_full",
        Fn(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)),
        [*_qkv(2, 2, 4, 8, s=5), _padding_mask(2, 4, 5)],
        **ATOL,
    ),
    OpCase(
        "bool_mask_fully_masked_row_is_zero",
        Fn(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)),
        [*_qkv(2, 2, 4, 8, s=5), _padding_mask(2, 4, 5, masked_rows=True)],
        **ATOL,
    ),
    OpCase(
        "bool_mask_2d_broadcast",
        Fn(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)),
        [*_qkv(2, 2, 4, 8), torch.ones(4, 4, dtype=torch.bool).tril()],
        **ATOL,
    ),
    OpCase(
        "float_mask_key_padding",
        Fn(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)),
        [*_qkv(2, 2, 4, 8), torch.tensor([0.0, 0.0, -1e4, torch.finfo(torch.float32).min]).expand(2, 1, 1, 4).contiguous()],
        **ATOL,
    ),
    OpCase(
        "float_mask_neg_inf_row",
        Fn(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)),
        [*_qkv(1, 2, 3, 8), torch.tensor([[0.0, 0.5, -1.0], [float("-inf")] * 3, [0.0, float("-inf"), 1.0]])],
        **ATOL,
    ),
    OpCase(
        "float_mask_row_broadcast",
        Fn(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)),
        [*_qkv(1, 2, 3, 8, s=5), _r(1, 5)],
        **ATOL,
    ),
    OpCase(
        "gqa",
        Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)),
        [_r(2, 4, 5, 8), _r(2, 2, 6, 8), _r(2, 2, 6, 8)],
        **ATOL,
    ),
    OpCase(
        "gqa_causal_one_kv_head",
        Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)),
        [_r(1, 4, 5, 8), _r(1, 1, 5, 8), _r(1, 1, 5, 8)],
        **ATOL,
    ),
    OpCase("fp16", Fn(F.scaled_dot_product_attention), _qkv(1, 2, 5, 8, dtype=F16), **FP16),
    OpCase(
        "fp16_causal",
        Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)),
        _qkv(1, 2, 5, 8, dtype=F16),
        **FP16,
    ),
    OpCase(
        "fp16_bool_mask",
        Fn(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)),
        [*_qkv(2, 2, 4, 8, dtype=F16), _padding_mask(2, 4, 4, masked_rows=True)],
        **FP16,
    ),
    # dynamic shapes, as BERT (batch 1..8, sequence 16..512, padding mask) and GPT-2 (causal)
    OpCase(
        "dynamic_bert_padding_mask",
        SelfAttention(causal=False),
        [_r(2, 16, 16), _ids_mask(2, 16)],
        dynamic=[{0: (1, 8), 1: (16, 512)}, {0: (1, 8), 1: (16, 512)}],
        more_inputs=[[_r(8, 77, 16), _ids_mask(8, 77)], [_r(1, 512, 16), _ids_mask(1, 512)]],
        **ATOL,
    ),
    OpCase(
        "dynamic_gpt2_causal",
        SelfAttention(causal=True),
        [_r(2, 128, 16)],
        dynamic=[{0: (1, 8), 1: (2, 256)}],
        more_inputs=[[_r(1, 7, 16)], [_r(3, 200, 16)]],
        **ATOL,
    ),
    OpCase(
        "dynamic_causal_cross_lengths",
        Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)),
        [_r(1, 2, 8, 8), _r(1, 2, 8, 8), _r(1, 2, 8, 8)],
        dynamic=[{2: (2, 64)}, {2: (2, 64)}, {2: (2, 64)}],
        more_inputs=[[_r(1, 2, 33, 8), _r(1, 2, 33, 8), _r(1, 2, 33, 8)]],
        **ATOL,
    ),
    # the CPU flash-attention op other tracing paths produce
    OpCase(
        "flash_cpu_causal",
        Fn(lambda q, k, v: aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, True)[0]),
        _qkv(1, 2, 6, 8),
        **ATOL,
    ),
    OpCase(
        "flash_cpu_mask_scale_with_lse",
        Fn(lambda q, k, v, m: aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=m, scale=0.2)),
        [*_qkv(1, 2, 4, 8, s=6), _r(1, 1, 4, 6)],
        **ATOL,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_attention_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)


def _sdpa_node(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.fx.Node:
    program = torch.export.export(module, inputs)
    _, gm, _ = lower(program, LoweringSettings())
    return next(n for n in gm.graph.nodes if n.target is aten.scaled_dot_product_attention.default)


def test_sdpa_arrives_whole_and_becomes_matmul_softmax_matmul() -> None:
    program = torch.export.export(Fn(F.scaled_dot_product_attention), tuple(_qkv(1, 2, 4, 8)))
    _, gm, _ = lower(program, LoweringSettings())
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert targets == [aten.scaled_dot_product_attention.default]
    ops = [n.op_type for n in convert_graph(gm).model.graph]
    assert ops == ["Mul", "Transpose", "MatMul", "Softmax", "MatMul"]


def test_dropout_is_declined() -> None:
    node = _sdpa_node(Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=0.1)), tuple(_qkv(1, 2, 4, 8)))
    entry = REGISTRY.get(aten.scaled_dot_product_attention.default)
    assert entry is not None
    reason = entry.validator(node)
    assert reason is not None and "dropout" in reason


def test_gqa_with_dynamic_heads_is_declined() -> None:
    fn = Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
    heads = torch.export.Dim("heads", min=2, max=8)
    q, k, v = _r(1, 4, 3, 8), _r(1, 2, 3, 8), _r(1, 2, 3, 8)
    program = torch.export.export(fn, (q, k, v), dynamic_shapes=(({1: heads * 2}, {1: heads}, {1: heads}),))
    _, gm, _ = lower(program, LoweringSettings())
    node = next(n for n in gm.graph.nodes if n.target is aten.scaled_dot_product_attention.default)
    entry = REGISTRY.get(aten.scaled_dot_product_attention.default)
    assert entry is not None
    reason = entry.validator(node)
    assert reason is not None and "dynamic number of heads" in reason
