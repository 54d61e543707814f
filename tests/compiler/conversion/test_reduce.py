"""Table-driven tests for reduction and scan converters."""

from __future__ import annotations

import math

import pytest
import torch

from compiler.conversion import REGISTRY
from compiler.lowering import LoweringSettings, lower
from tests.compiler.conversion.harness import Fn, OpCase, check_case

aten = torch.ops.aten
F16 = torch.float16
I64 = torch.int64
I32 = torch.int32


def _r(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    if dtype == torch.bool:
        return torch.rand(*shape) > 0.5
    if dtype.is_floating_point:
        return torch.randn(*shape).to(dtype)
    return torch.randint(-5, 6, shape, dtype=dtype)


def _distinct(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """No ties, so index outputs are unambiguous."""
    return torch.randperm(math.prod(shape)).reshape(shape).to(dtype) - math.prod(shape) // 2


FP16 = {"atol": 2e-2, "rtol": 2e-2}
DYN = [{0: (1, 8)}]

CASES = [
    # sum
    OpCase("sum_all", Fn(torch.sum), [_r(2, 3, 4)]),
    OpCase("sum_dim_neg", Fn(lambda x: x.sum(-1)), [_r(2, 3, 4)]),
    OpCase("sum_dims_keepdim", Fn(lambda x: x.sum((0, 2), keepdim=True)), [_r(2, 3, 4)]),
    OpCase("sum_empty_dims_is_all", Fn(lambda x: x.sum(dim=[])), [_r(2, 3)]),
    OpCase("sum_dtype_arg", Fn(lambda x: x.sum(1, dtype=torch.float64)), [_r(2, 3, 4)]),
    OpCase("sum_int64", Fn(lambda x: x.sum(1)), [_r(2, 3, dtype=I64)]),
    OpCase("sum_int32_to_int64", Fn(lambda x: x.sum(1)), [_r(2, 3, dtype=I32)]),
    OpCase("sum_bool_counts", Fn(lambda x: x.sum(-1)), [_r(2, 5, dtype=torch.bool)]),
    OpCase("sum_0d", Fn(lambda x: x.sum(0)), [torch.tensor(3.0)]),
    OpCase("sum_fp16", Fn(lambda x: x.sum(-1)), [_r(2, 8, dtype=F16)], **FP16),
    OpCase("sum_dynamic", Fn(lambda x: x.sum(0)), [_r(3, 4)], dynamic=DYN, more_inputs=[[_r(7, 4)]]),
    # mean
    OpCase("mean_all", Fn(torch.mean), [_r(2, 3, 4)]),
    OpCase("mean_dim_keepdim", Fn(lambda x: x.mean(-1, keepdim=True)), [_r(2, 3, 4)]),
    OpCase("mean_dims", Fn(lambda x: x.mean((1, 2))), [_r(2, 3, 4)]),
    OpCase("mean_dtype_arg", Fn(lambda x: x.mean(-1, dtype=torch.float32)), [_r(2, 8, dtype=F16)], **FP16),
    OpCase("mean_fp16", Fn(lambda x: x.mean(-1)), [_r(2, 8, dtype=F16)], **FP16),
    OpCase("mean_dynamic_seq", Fn(lambda x: x.mean(1)), [_r(2, 16, 4)], dynamic=[{1: (16, 512)}], more_inputs=[[_r(2, 300, 4)]]),
    # prod
    OpCase("prod_all", Fn(torch.prod), [_r(2, 3)]),
    OpCase("prod_dim_keepdim", Fn(lambda x: x.prod(-1, keepdim=True)), [_r(2, 3)]),
    OpCase("prod_int64", Fn(lambda x: x.prod(0)), [_r(3, 4, dtype=I64)]),
    OpCase("prod_bool_to_int64", Fn(lambda x: x.prod(1)), [_r(3, 4, dtype=torch.bool)]),
    OpCase("prod_dtype_arg", Fn(lambda x: x.prod(1, dtype=torch.float64)), [_r(3, 4)]),
    # amax / amin / max / min
    OpCase("amax_dims", Fn(lambda x: x.amax((0, 2))), [_r(2, 3, 4)]),
    OpCase("amax_all_keepdim", Fn(lambda x: x.amax(keepdim=True)), [_r(2, 3)]),
    OpCase("amin_neg_dim", Fn(lambda x: x.amin(-2)), [_r(2, 3, 4)]),
    OpCase("amax_int64", Fn(lambda x: x.amax(1)), [_r(3, 4, dtype=I64)]),
    OpCase("amax_bool", Fn(lambda x: x.amax(1)), [_r(3, 4, dtype=torch.bool)]),
    OpCase("amax_fp16", Fn(lambda x: x.amax(1)), [_r(3, 4, dtype=F16)]),
    OpCase("amax_dynamic", Fn(lambda x: x.amax(0)), [_r(3, 4)], dynamic=DYN, more_inputs=[[_r(8, 4)]]),
    OpCase("max_all", Fn(torch.max), [_r(2, 3)]),
    OpCase("min_all_int64", Fn(torch.min), [_r(2, 3, dtype=I64)]),
    OpCase("max_dim", Fn(lambda x: torch.max(x, 1)), [_distinct(2, 3, 4)]),
    OpCase("max_dim_keepdim_neg", Fn(lambda x: torch.max(x, -1, keepdim=True)), [_distinct(2, 3, 4)]),
    OpCase("min_dim", Fn(lambda x: torch.min(x, 0)), [_distinct(3, 4)]),
    OpCase("max_dim_ties_first_index", Fn(lambda x: torch.max(x, 1)), [torch.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])]),
    OpCase("max_dim_int64", Fn(lambda x: torch.max(x, 1)), [_distinct(3, 4, dtype=I64)]),
    OpCase("max_dim_bool", Fn(lambda x: torch.max(x, 1)), [torch.tensor([[False, True, True], [False, False, False]])]),
    OpCase("max_dim_fp16", Fn(lambda x: torch.max(x, 1)), [_distinct(3, 4, dtype=F16)]),
    OpCase("min_dim_dynamic", Fn(lambda x: torch.min(x, 1)), [_distinct(3, 4)], dynamic=DYN, more_inputs=[[_distinct(6, 4)]]),
    # argmax / argmin
    OpCase("argmax_none", Fn(torch.argmax), [_distinct(3, 4)]),
    OpCase("argmax_none_keepdim", Fn(lambda x: torch.argmax(x, keepdim=True)), [_distinct(2, 3, 4)]),
    OpCase("argmax_dim_keepdim", Fn(lambda x: torch.argmax(x, 1, keepdim=True)), [_distinct(3, 4)]),
    OpCase("argmin_neg_dim", Fn(lambda x: torch.argmin(x, -1)), [_distinct(2, 3, 4)]),
    OpCase("argmax_int64", Fn(lambda x: torch.argmax(x, 0)), [_distinct(3, 4, dtype=I64)]),
    OpCase("argmin_fp16", Fn(lambda x: torch.argmin(x, 1)), [_distinct(3, 4, dtype=F16)]),
    OpCase("argmax_ties", Fn(lambda x: torch.argmax(x, 1)), [torch.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])]),
    OpCase("argmax_dynamic", Fn(lambda x: torch.argmax(x, -1)), [_distinct(3, 5)], dynamic=DYN, more_inputs=[[_distinct(7, 5)]]),
    # var / std (correction 0 and 1, keepdim)
    OpCase("var_default", Fn(torch.var), [_r(3, 4)]),
    OpCase("var_dim", Fn(lambda x: x.var(1)), [_r(3, 4)]),
    OpCase("var_correction0_keepdim", Fn(lambda x: torch.var(x, -1, correction=0, keepdim=True)), [_r(2, 3, 4)]),
    OpCase("var_dims_correction2", Fn(lambda x: torch.var(x, (0, 2), correction=2)), [_r(2, 3, 4)]),
    OpCase("var_too_few_is_inf", Fn(lambda x: torch.var(x, 0)), [_r(1, 3)]),
    OpCase("std_unbiased", Fn(lambda x: x.std(-1)), [_r(3, 5)]),
    OpCase("std_correction0_keepdim", Fn(lambda x: torch.std(x, 1, correction=0, keepdim=True)), [_r(3, 5)]),
    OpCase("std_all_keepdim", Fn(lambda x: torch.std(x, keepdim=True)), [_r(3, 5)]),
    OpCase("std_fp16", Fn(lambda x: x.std(-1)), [_r(3, 8, dtype=F16)], **FP16),
    OpCase("var_mean", Fn(lambda x: torch.var_mean(x, 1)), [_r(3, 5)]),
    OpCase("std_mean_keepdim", Fn(lambda x: torch.std_mean(x, -1, keepdim=True, correction=0)), [_r(3, 5)]),
    OpCase("var_dynamic", Fn(lambda x: x.var(0)), [_r(3, 4)], dynamic=DYN, more_inputs=[[_r(8, 4)]]),
    OpCase("var_dynamic_all", Fn(lambda x: x.var()), [_r(3, 4)], dynamic=DYN, more_inputs=[[_r(8, 4)]]),
    # vector norms
    OpCase("norm_l2_dim", Fn(lambda x: x.norm(dim=-1)), [_r(3, 4)]),
    OpCase("norm_l2_all", Fn(lambda x: torch.linalg.vector_norm(x)), [_r(3, 4)]),
    OpCase("norm_l1_keepdim", Fn(lambda x: torch.linalg.vector_norm(x, 1, dim=1, keepdim=True)), [_r(3, 4)]),
    OpCase("norm_inf", Fn(lambda x: torch.linalg.vector_norm(x, math.inf, dim=0)), [_r(3, 4)]),
    OpCase("norm_neg_inf", Fn(lambda x: torch.linalg.vector_norm(x, -math.inf, dim=0)), [_r(3, 4)]),
    OpCase("norm_zero", Fn(lambda x: torch.linalg.vector_norm(x, 0, dim=1)), [torch.tensor([[0.0, 1.0, -2.0], [0.0, 0.0, 3.0]])]),
    OpCase("norm_p3", Fn(lambda x: torch.linalg.vector_norm(x, 3, dim=(0, 1))), [_r(3, 4)], atol=1e-4, rtol=1e-4),
    OpCase("norm_dtype_arg", Fn(lambda x: torch.linalg.vector_norm(x, 2, dim=1, dtype=torch.float64)), [_r(3, 4)]),
    OpCase("norm_fp16", Fn(lambda x: x.norm(dim=-1)), [_r(3, 8, dtype=F16)], **FP16),
    OpCase("norm_dynamic", Fn(lambda x: x.norm(dim=-1, keepdim=True)), [_r(3, 4)], dynamic=DYN, more_inputs=[[_r(6, 4)]]),
    # any / all
    OpCase("any_all_elements", Fn(lambda x: x.any()), [_r(3, 4, dtype=torch.bool)]),
    OpCase("any_dim", Fn(lambda x: x.any(1)), [torch.tensor([[False, True], [False, False]])]),
    OpCase("any_dims_keepdim", Fn(lambda x: x.any((0, 1), keepdim=True)), [_r(2, 3, 4, dtype=torch.bool)]),
    OpCase("any_float_nonzero", Fn(lambda x: x.any(-1)), [torch.tensor([[0.0, 0.0], [0.0, -1.0], [float("nan"), 0.0]])]),
    OpCase("any_int64", Fn(lambda x: x.any(0)), [torch.tensor([[0, 0], [0, 2]])]),
    OpCase("any_uint8_gives_uint8", Fn(lambda x: x.any(0)), [torch.tensor([[0, 0], [0, 2]], dtype=torch.uint8)]),
    OpCase("all_all_elements", Fn(lambda x: x.all()), [torch.ones(3, 4, dtype=torch.bool)]),
    OpCase("all_dim_neg", Fn(lambda x: x.all(-1)), [torch.tensor([[True, True], [True, False]])]),
    OpCase("all_dims", Fn(lambda x: torch.all(x, dim=(0, 2))), [_r(2, 3, 4, dtype=torch.bool)]),
    OpCase("all_float", Fn(lambda x: x.all(1)), [torch.tensor([[1.0, 2.0], [0.0, 1.0]])]),
    OpCase("any_dynamic", Fn(lambda x: x.any(0)), [_r(3, 4, dtype=torch.bool)], dynamic=DYN, more_inputs=[[_r(6, 4, dtype=torch.bool)]]),
    # logsumexp
    OpCase("logsumexp", Fn(lambda x: torch.logsumexp(x, 1)), [_r(3, 4)]),
    OpCase("logsumexp_keepdim_dims", Fn(lambda x: torch.logsumexp(x, (0, -1), keepdim=True)), [_r(2, 3, 4)]),
    OpCase("logsumexp_large_values", Fn(lambda x: torch.logsumexp(x, -1)), [torch.tensor([[1000.0, 1001.0], [-1000.0, -999.0]])]),
    OpCase("logsumexp_all_neg_inf", Fn(lambda x: torch.logsumexp(x, -1)), [torch.tensor([[float("-inf")] * 2, [0.0, 1.0]])]),
    OpCase("logsumexp_int_promotes", Fn(lambda x: torch.logsumexp(x, 1)), [_r(3, 4, dtype=I64)], atol=1e-5),
    OpCase("logsumexp_fp16", Fn(lambda x: torch.logsumexp(x, 1)), [_r(3, 4, dtype=F16)], **FP16),
    OpCase("logsumexp_dynamic", Fn(lambda x: torch.logsumexp(x, 0)), [_r(3, 4)], dynamic=DYN, more_inputs=[[_r(7, 4)]]),
    # cumsum / cumprod
    OpCase("cumsum", Fn(lambda x: torch.cumsum(x, 1)), [_r(3, 4)]),
    OpCase("cumsum_neg_dim", Fn(lambda x: torch.cumsum(x, -1)), [_r(2, 3, 4)]),
    OpCase("cumsum_dtype_arg", Fn(lambda x: torch.cumsum(x, 0, dtype=torch.float64)), [_r(3, 4)]),
    OpCase("cumsum_int64", Fn(lambda x: torch.cumsum(x, 1)), [_r(3, 4, dtype=I64)]),
    OpCase("cumsum_int32_to_int64", Fn(lambda x: torch.cumsum(x, 1)), [_r(3, 4, dtype=I32)]),
    OpCase("cumsum_bool_to_int64", Fn(lambda x: torch.cumsum(x, 1)), [_r(3, 4, dtype=torch.bool)]),
    OpCase("cumsum_fp16", Fn(lambda x: torch.cumsum(x, 1)), [_r(3, 4, dtype=F16)], **FP16),
    OpCase("cumsum_0d", Fn(lambda x: torch.cumsum(x, 0)), [torch.tensor(2.0)]),
    OpCase("cumsum_dynamic_positions", Fn(lambda m: torch.cumsum(m, 1) * m), [torch.ones(2, 16, dtype=I64)], dynamic=[{0: (1, 8), 1: (16, 512)}], more_inputs=[[torch.ones(3, 40, dtype=I64)]]),
    OpCase("cumprod", Fn(lambda x: torch.cumprod(x, 1)), [_r(3, 5)], atol=1e-5, rtol=1e-4),
    OpCase("cumprod_zeros_and_signs", Fn(lambda x: torch.cumprod(x, -1)), [torch.tensor([[-2.0, 0.5, -1.0, 0.0, 3.0], [1.0, -1.0, -1.0, -1.0, 2.0]])]),
    OpCase("cumprod_fp16", Fn(lambda x: torch.cumprod(x, 0)), [_r(4, 3, dtype=F16)], **FP16),
    OpCase("cumprod_dynamic", Fn(lambda x: torch.cumprod(x, 1)), [_r(3, 5)], dynamic=DYN, more_inputs=[[_r(6, 5)]], atol=1e-5, rtol=1e-4),

    # ------------------------------------------------------------------------ prims.sum
    OpCase("prims_sum_dim", Fn(lambda x: torch.ops.prims.sum.default(x, [1])), [_r(3, 4)]),
    OpCase("prims_sum_several_dims", Fn(lambda x: torch.ops.prims.sum.default(x, [0, 2])), [_r(2, 3, 4)]),
    OpCase("prims_sum_empty_dims_reduces_all", Fn(lambda x: torch.ops.prims.sum.default(x, [])), [_r(2, 3)]),
    OpCase("prims_sum_float16", Fn(lambda x: torch.ops.prims.sum.default(x, [1])), [_r(4, 3, dtype=torch.float16)], atol=1e-2, rtol=1e-2),
    OpCase(
        "prims_sum_dynamic",
        Fn(lambda x: torch.ops.prims.sum.default(x, [0])),
        [_r(2, 5)],
        dynamic=DYN,
        more_inputs=[[_r(7, 5)]],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_reduce_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)


def test_cumprod_of_integers_is_declined() -> None:
    program = torch.export.export(Fn(lambda x: torch.cumprod(x, 0)), (_r(4, dtype=I64),))
    _, gm, _ = lower(program, LoweringSettings())
    node = next(n for n in gm.graph.nodes if n.target is aten.cumprod.default)
    entry = REGISTRY.get(aten.cumprod.default)
    assert entry is not None
    reason = entry.validator(node)
    assert reason is not None and "integer" in reason


def test_prims_sum_of_integers_is_declined() -> None:
    program = torch.export.export(Fn(lambda x: torch.ops.prims.sum.default(x, [0])), (_r(4, 3, dtype=torch.int32),))
    _, gm, _ = lower(program, LoweringSettings())
    node = next(n for n in gm.graph.nodes if n.target is torch.ops.prims.sum.default)
    entry = REGISTRY.get(torch.ops.prims.sum.default)
    assert entry is not None
    reason = entry.validator(node)
    assert reason is not None and "integers" in reason
