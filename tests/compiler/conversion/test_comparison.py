"""Table-driven tests for comparison, logical, bitwise and selection converters."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from tests.compiler.conversion.harness import Fn, OpCase, check_case
from tests.compiler.conversion.test_elementwise import bools, decline_reason, f16, f32, ints

torch.manual_seed(1)
nan, inf = math.nan, math.inf
aten = torch.ops.aten

WITH_NAN = torch.tensor([nan, 1.0, -2.0, 5.0, inf, -inf, 0.0, nan])
OTHER = torch.tensor([0.0, nan, -3.0, 4.0, 1.0, -inf, -0.0, nan])
DYN = [{0: (1, 8)}, {0: (1, 8)}]


def compare_all(a: Any, b: Any) -> tuple[torch.Tensor, ...]:
    return a == b, a != b, a < b, a <= b, a > b, a >= b


CASES = [
    # ---------------------------------------------------------------- eq / ne / lt / le / gt / ge
    OpCase("compare_tensor_float", Fn(compare_all), [ints(12).float(), ints(12).float()]),
    OpCase("compare_tensor_nan", Fn(compare_all), [WITH_NAN, OTHER]),
    OpCase("compare_tensor_int_broadcast", Fn(compare_all), [ints(3, 1), ints(4)]),
    OpCase("compare_int_float_promotes", Fn(compare_all), [ints(8), ints(8).float() + 0.5]),
    OpCase("compare_int32_int64", Fn(compare_all), [ints(8, dtype=torch.int32), ints(8)]),
    OpCase("compare_bool_orders_false_before_true", Fn(compare_all), [bools(8), bools(8)]),
    OpCase("compare_fp16", Fn(compare_all), [f16(8), f16(8)]),
    OpCase("compare_uint8", Fn(compare_all), [ints(8, dtype=torch.uint8, low=0), ints(8, dtype=torch.uint8, low=0)]),
    OpCase("compare_scalar_float", Fn(lambda a: compare_all(a, 0.25)), [f32(3, 4)]),
    OpCase("compare_scalar_int_tensor_float_scalar", Fn(lambda a: compare_all(a, 2.5)), [ints(8)]),
    OpCase("compare_scalar_fp16_rounds_scalar_to_half", Fn(lambda a: compare_all(a, 0.1)), [torch.tensor([0.1, 0.0999, 0.2]).half()]),
    OpCase("compare_0d_tensor", Fn(compare_all), [f32(2, 3), torch.tensor(0.0, dtype=torch.float64)]),
    OpCase(
        "compare_dynamic_batch",
        Fn(compare_all),
        [f32(2, 3), f32(2, 3)],
        dynamic=DYN,
        more_inputs=[[f32(6, 3), f32(6, 3)]],
    ),
    OpCase(
        "symbolic_size_operands",
        Fn(lambda x: (x < x.shape[0], x == x.shape[0], torch.clamp(x, max=x.shape[0]), x.masked_fill(x > 0, x.shape[0]),
                      torch.where(x > 0, x, x.shape[0]))),
        [ints(3, 2).float()],
        dynamic=[{0: (2, 8)}],
        more_inputs=[[ints(6, 2).float()]],
    ),
    # ---------------------------------------------------------------- NaN / inf tests
    OpCase(
        "nan_inf_tests",
        Fn(lambda x: (torch.isnan(x), torch.isinf(x), torch.isfinite(x), torch.isposinf(x), torch.isneginf(x))),
        [WITH_NAN],
    ),
    OpCase(
        "nan_inf_tests_fp16",
        Fn(lambda x: (torch.isnan(x), torch.isinf(x), torch.isfinite(x), torch.isposinf(x), torch.isneginf(x))),
        [WITH_NAN.half()],
    ),
    OpCase(
        "nan_inf_tests_int",
        Fn(lambda x: (torch.isnan(x), torch.isinf(x), torch.isfinite(x), torch.isposinf(x), torch.isneginf(x))),
        [ints(2, 3)],
    ),
    OpCase("isnan_dynamic", Fn(lambda x: (torch.isnan(x), torch.isinf(x))), [f32(2, 3)], dynamic=[{0: (1, 8)}], more_inputs=[[f32(5, 3)]]),
    # ---------------------------------------------------------------- logical
    OpCase(
        "logical_bool",
        Fn(lambda a, b: (torch.logical_and(a, b), torch.logical_or(a, b), torch.logical_xor(a, b), torch.logical_not(a))),
        [bools(8), bools(8)],
    ),
    OpCase(
        "logical_float_nan_is_true",
        Fn(lambda a, b: (torch.logical_and(a, b), torch.logical_or(a, b), torch.logical_xor(a, b), torch.logical_not(a))),
        [WITH_NAN, OTHER],
    ),
    OpCase(
        "logical_mixed_int_float",
        Fn(lambda a, b: (torch.logical_and(a, b), torch.logical_or(a, b), torch.logical_xor(a, b), torch.logical_not(a))),
        [ints(3, 4, low=-1, high=2), f32(4)],
    ),
    OpCase(
        "logical_dynamic",
        Fn(lambda a, b: (torch.logical_and(a, b), torch.logical_not(b))),
        [bools(2, 3), bools(2, 3)],
        dynamic=DYN,
        more_inputs=[[bools(7, 3), bools(7, 3)]],
    ),
    # ---------------------------------------------------------------- bitwise
    OpCase("bitwise_bool", Fn(lambda a, b: (a & b, a | b, a ^ b, ~a)), [bools(8), bools(8)]),
    OpCase("bitwise_int64", Fn(lambda a, b: (a & b, a | b, a ^ b, ~a)), [ints(8, low=-100, high=100), ints(8, low=-100, high=100)]),
    OpCase("bitwise_int32_int64_promotes", Fn(lambda a, b: (a & b, a | b, a ^ b)), [ints(8, dtype=torch.int32), ints(8)]),
    OpCase("bitwise_uint8", Fn(lambda a, b: (a & b, a | b, a ^ b, ~a)), [ints(8, dtype=torch.uint8, low=0), ints(8, dtype=torch.uint8, low=0)]),
    OpCase(
        "bitwise_scalar",
        Fn(lambda a: (torch.bitwise_and(a, 6), torch.bitwise_or(a, 3), torch.bitwise_xor(a, -1))),
        [ints(8, dtype=torch.int32)],
    ),
    OpCase("bitwise_dynamic", Fn(lambda a, b: (a & b, ~a)), [ints(2, 3), ints(2, 3)], dynamic=DYN, more_inputs=[[ints(5, 3), ints(5, 3)]]),
    # ---------------------------------------------------------------- where
    OpCase("where_self", Fn(torch.where), [bools(2, 3), f32(2, 3), f32(3)]),
    OpCase("where_promotes_int_float", Fn(torch.where), [bools(4), ints(4), f32(4)]),
    OpCase("where_bool_values", Fn(torch.where), [bools(6), bools(6), bools(6)]),
    OpCase("where_int16_values", Fn(torch.where), [bools(6), ints(6, dtype=torch.int16), ints(6, dtype=torch.int16)]),
    OpCase("where_fp16", Fn(torch.where), [bools(6), f16(6), f16(6)]),
    OpCase("where_scalar_other", Fn(lambda c, x: torch.where(c, x, 0.0)), [bools(2, 3), f32(2, 3)]),
    OpCase("where_scalar_other_fp16", Fn(lambda c, x: torch.where(c, x, -1.5)), [bools(2, 3), f16(2, 3)]),
    OpCase("where_scalar_self", Fn(lambda c, x: torch.where(c, -inf, x)), [bools(2, 3), f32(2, 3)]),
    OpCase("where_scalar_both", Fn(lambda c: torch.where(c, 1.0, 0.0)), [bools(2, 3)]),
    OpCase("where_scalar_both_int", Fn(lambda c: torch.where(c, 4, 7)), [bools(2, 3)]),
    OpCase("where_0d_tensor", Fn(torch.where), [bools(2, 3), f32(2, 3), torch.tensor(2.0)]),
    OpCase(
        "where_dynamic",
        Fn(torch.where),
        [bools(2, 3), f32(2, 3), f32(2, 3)],
        dynamic=[{0: (1, 8)}, {0: (1, 8)}, {0: (1, 8)}],
        more_inputs=[[bools(6, 3), f32(6, 3), f32(6, 3)]],
    ),
    # ---------------------------------------------------------------- masked_fill
    OpCase("masked_fill_scalar", Fn(lambda x, m: x.masked_fill(m, -inf)), [f32(2, 3), bools(2, 3)]),
    OpCase("masked_fill_broadcast_mask", Fn(lambda x, m: x.masked_fill(m, 0.5)), [f32(2, 4, 3), bools(4, 1)]),
    OpCase("masked_fill_int", Fn(lambda x, m: x.masked_fill(m, 7)), [ints(2, 3), bools(2, 3)]),
    OpCase("masked_fill_bool", Fn(lambda x, m: x.masked_fill(m, True)), [bools(2, 3), bools(2, 3)]),
    OpCase("masked_fill_fp16", Fn(lambda x, m: x.masked_fill(m, -65504.0)), [f16(2, 3), bools(2, 3)]),
    OpCase("masked_fill_tensor", Fn(lambda x, m, v: x.masked_fill(m, v)), [f32(2, 3), bools(2, 3), torch.tensor(2.5)]),
    OpCase("masked_fill_tensor_int_value", Fn(lambda x, m, v: x.masked_fill(m, v)), [f32(2, 3), bools(2, 3), torch.tensor(3)]),
    OpCase(
        "masked_fill_dynamic",
        Fn(lambda x, m: x.masked_fill(m, -1e9)),
        [f32(2, 3), bools(2, 3)],
        dynamic=DYN,
        more_inputs=[[f32(6, 3), bools(6, 3)]],
    ),
    # ---------------------------------------------------------------- maximum / minimum / fmax / fmin
    OpCase("max_min_propagate_nan", Fn(lambda a, b: (torch.maximum(a, b), torch.minimum(a, b))), [WITH_NAN, OTHER]),
    OpCase("max_min_promotes", Fn(lambda a, b: (torch.maximum(a, b), torch.minimum(a, b))), [ints(3, 4), f32(4)]),
    OpCase("max_min_int16", Fn(lambda a, b: (torch.maximum(a, b), torch.minimum(a, b))), [ints(6, dtype=torch.int16), ints(6, dtype=torch.int16)]),
    OpCase("max_min_bool", Fn(lambda a, b: (torch.maximum(a, b), torch.minimum(a, b))), [bools(6), bools(6)]),
    OpCase("max_min_fp16", Fn(lambda a, b: (torch.maximum(a, b), torch.minimum(a, b))), [f16(6), f16(6)]),
    OpCase("fmax_fmin_ignore_nan", Fn(lambda a, b: (torch.fmax(a, b), torch.fmin(a, b))), [WITH_NAN, OTHER]),
    OpCase("fmax_fmin_int", Fn(lambda a, b: (torch.fmax(a, b), torch.fmin(a, b))), [ints(6), ints(6)]),
    OpCase(
        "max_min_dynamic",
        Fn(lambda a, b: (torch.maximum(a, b), torch.minimum(a, b), torch.fmax(a, b))),
        [f32(2, 3), f32(2, 3)],
        dynamic=DYN,
        more_inputs=[[f32(6, 3), f32(6, 3)]],
    ),
    # ---------------------------------------------------------------- clamp
    OpCase("clamp_both", Fn(lambda x: torch.clamp(x, -0.5, 0.5)), [WITH_NAN]),
    OpCase("clamp_min_only", Fn(lambda x: torch.clamp(x, min=0)), [f32(2, 3)]),
    OpCase("clamp_max_only", Fn(lambda x: torch.clamp(x, max=0.25)), [f32(2, 3)]),
    OpCase("clamp_min_above_max_gives_max", Fn(lambda x: torch.clamp(x, 1.0, -1.0)), [f32(2, 3)]),
    OpCase("clamp_int", Fn(lambda x: torch.clamp(x, -3, 4)), [ints(8)]),
    OpCase("clamp_int_float_bound_promotes", Fn(lambda x: torch.clamp(x, min=0.5)), [ints(8)]),
    OpCase("clamp_int16", Fn(lambda x: torch.clamp(x, -3, 4)), [ints(8, dtype=torch.int16)]),
    OpCase("clamp_uint8", Fn(lambda x: torch.clamp(x, 2, 6)), [ints(8, dtype=torch.uint8, low=0)]),
    OpCase("clamp_fp16", Fn(lambda x: torch.clamp(x, -0.5, 0.5)), [f16(8)]),
    OpCase("clamp_tensor", Fn(lambda x, lo, hi: torch.clamp(x, lo, hi)), [WITH_NAN, torch.full((8,), -0.5), f32(1) + 1]),
    OpCase("clamp_tensor_min_only", Fn(lambda x, lo: torch.clamp(x, min=lo)), [f32(2, 3), f32(3)]),
    OpCase("clamp_tensor_max_only_int", Fn(lambda x, hi: torch.clamp(x, max=hi)), [ints(2, 3), ints(3)]),
    OpCase("clamp_min_scalar", Fn(lambda x: torch.clamp_min(x, 0.1)), [f32(2, 3)]),
    OpCase("clamp_max_scalar", Fn(lambda x: torch.clamp_max(x, 0.1)), [f32(2, 3)]),
    OpCase("clamp_min_scalar_int_promotes", Fn(lambda x: torch.clamp_min(x, 0.5)), [ints(6)]),
    OpCase("clamp_min_tensor", Fn(lambda x, lo: torch.clamp_min(x, lo)), [f32(2, 3), f32(3)]),
    OpCase("clamp_max_tensor", Fn(lambda x, hi: torch.clamp_max(x, hi)), [f32(2, 3), torch.tensor(0.0)]),
    OpCase(
        "clamp_dynamic",
        Fn(lambda x, lo: (torch.clamp(x, -1, 1), torch.clamp(x, min=lo), torch.clamp_min(x, 0.0), torch.clamp_max(x, 0.0))),
        [f32(2, 3), f32(2, 3)],
        dynamic=DYN,
        more_inputs=[[f32(6, 3), f32(6, 3)]],
    ),

    # ------------------------------------------------------ bitwise with a scalar first operand
    OpCase("bitwise_and_scalar_tensor", Fn(lambda x: torch.ops.aten.bitwise_and.Scalar_Tensor(6, x)), [torch.randint(-9, 9, (8,))]),
    OpCase("bitwise_or_scalar_tensor_int32", Fn(lambda x: torch.ops.aten.bitwise_or.Scalar_Tensor(5, x)), [torch.randint(-9, 9, (8,), dtype=torch.int32)]),
    OpCase("bitwise_xor_scalar_tensor_bool", Fn(lambda x: torch.ops.aten.bitwise_xor.Scalar_Tensor(True, x)), [torch.rand(6) > 0.5]),
    OpCase(
        "bitwise_and_scalar_tensor_dynamic",
        Fn(lambda x: torch.ops.aten.bitwise_and.Scalar_Tensor(3, x)),
        [torch.randint(0, 16, (3,))],
        dynamic=[{0: (1, 8)}],
        more_inputs=[[torch.randint(0, 16, (6,))]],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_comparison_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)


DECLINED = [
    ("complex_eq", lambda a: a == a, [torch.randn(3, dtype=torch.complex64)], aten.eq.Tensor),
    ("clamp_bool", lambda a: torch.clamp(a, min=True), [bools(3)], aten.clamp.default),
]


@pytest.mark.parametrize(("name", "fn", "inputs", "target"), DECLINED, ids=[d[0] for d in DECLINED])
def test_validator_declines(name: str, fn: Any, inputs: list[torch.Tensor], target: Any) -> None:
    assert decline_reason(fn, inputs, target) is not None
