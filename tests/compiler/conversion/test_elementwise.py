"""Table-driven tests for elementwise arithmetic and math converters."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from compiler.conversion import REGISTRY
from compiler.lowering import LoweringSettings, lower
from tests.compiler.conversion.harness import Fn, OpCase, check_case

torch.manual_seed(0)
nan, inf = math.nan, math.inf


def f32(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


def f16(*shape: int) -> torch.Tensor:
    return torch.randn(*shape).half()


def ints(*shape: int, dtype: torch.dtype = torch.int64, low: int = -9, high: int = 10) -> torch.Tensor:
    return torch.randint(low, high, shape, dtype=dtype)


def nonzero(*shape: int, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """Integers in [-9, 9] without zero (integer division by zero raises, in PyTorch and ONNX Runtime)."""
    x = ints(*shape, dtype=dtype)
    return torch.where(x == 0, torch.ones_like(x), x)


def bools(*shape: int) -> torch.Tensor:
    return torch.rand(*shape) > 0.5


def pos(*shape: int) -> torch.Tensor:
    return torch.rand(*shape) * 4 + 0.1


SPECIAL = torch.tensor([nan, inf, -inf, 0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 1e-8, 3.0, -7.25])
HALF = dict(atol=2e-3, rtol=2e-3)
DYN = [{0: (1, 8)}, {0: (1, 8)}]

CASES = [
    # ---------------------------------------------------------------- add / sub / rsub
    OpCase("add", Fn(torch.add), [f32(2, 3), f32(2, 3)]),
    OpCase("add_alpha", Fn(lambda a, b: torch.add(a, b, alpha=2)), [f32(2, 3), f32(3)]),
    OpCase("add_int_float_promotes", Fn(torch.add), [ints(2, 3), f32(2, 3)]),
    OpCase("add_int32_int64_promotes", Fn(torch.add), [ints(2, 3, dtype=torch.int32), ints(3)]),
    OpCase("add_int_alpha", Fn(lambda a, b: torch.add(a, b, alpha=3)), [ints(4), ints(4)]),
    OpCase("add_scalar", Fn(lambda a: a + 1.5), [ints(4)]),
    OpCase("add_bool_is_or", Fn(torch.add), [bools(5), bools(5)]),
    OpCase("add_int8", Fn(torch.add), [ints(6, dtype=torch.int8), ints(6, dtype=torch.int8)]),
    OpCase("add_0d_float64_keeps_float32", Fn(torch.add), [f32(2, 3), torch.tensor(2.0, dtype=torch.float64)]),
    OpCase("add_0d_float_promotes_int", Fn(torch.add), [ints(3), torch.tensor(0.5)]),
    OpCase("add_fp16", Fn(torch.add), [f16(2, 3), f16(2, 3)], **HALF),
    OpCase("add_fp16_scalar", Fn(lambda a: a + 0.1), [f16(4)], **HALF),
    OpCase("sub_broadcast", Fn(torch.sub), [f32(2, 1, 3), f32(4, 1)]),
    OpCase("sub_alpha_int", Fn(lambda a, b: torch.sub(a, b, alpha=2)), [ints(4), ints(4)]),
    OpCase("sub_uint8_wraps", Fn(torch.sub), [ints(6, dtype=torch.uint8, low=0, high=5), ints(6, dtype=torch.uint8, low=3, high=9)]),
    OpCase("rsub_scalar", Fn(lambda a: 1.0 - a), [f32(2, 3)]),
    OpCase("rsub_scalar_int_to_float", Fn(lambda a: 1.5 - a), [ints(4)]),
    OpCase("rsub_tensor_alpha", Fn(lambda a, b: torch.rsub(a, b, alpha=3)), [f32(3), f32(2, 3)]),
    # ---------------------------------------------------------------- mul / square
    OpCase("mul_bool", Fn(torch.mul), [bools(3), bools(3)]),
    OpCase("mul_0d", Fn(torch.mul), [f32(2, 3), torch.tensor(2.0, dtype=torch.float64)]),
    OpCase("mul_int_float_scalar", Fn(lambda a: a * 2.5), [ints(4)]),
    OpCase("mul_bool_int", Fn(torch.mul), [bools(4), ints(4, dtype=torch.int32)]),
    OpCase("square_float", Fn(torch.square), [f32(5)]),
    OpCase("square_bool_to_int64", Fn(torch.square), [bools(5)]),
    # ---------------------------------------------------------------- division
    OpCase("div_int_true_division", Fn(torch.div), [ints(5, low=1), ints(5, low=1)]),
    OpCase("div_scalar", Fn(lambda a: a / 3), [f32(2, 3)]),
    OpCase("div_bool_to_float", Fn(torch.div), [bools(4), torch.ones(4, dtype=torch.bool)]),
    OpCase("div_fp16", Fn(torch.div), [f16(4), f16(4) + 4], **HALF),
    OpCase("div_rounding_none", Fn(lambda a, b: torch.div(a, b, rounding_mode=None)), [ints(5), nonzero(5)]),
    OpCase("div_trunc_int", Fn(lambda a, b: torch.div(a, b, rounding_mode="trunc")), [ints(12), nonzero(12)]),
    OpCase("div_trunc_float", Fn(lambda a, b: torch.div(a, b, rounding_mode="trunc")), [f32(12) * 5, f32(12)]),
    OpCase("div_trunc_fp16", Fn(lambda a, b: torch.div(a, b, rounding_mode="trunc")), [f16(12) * 5, f16(12)], **HALF),
    OpCase("div_floor_int", Fn(lambda a, b: torch.div(a, b, rounding_mode="floor")), [ints(12), nonzero(12)]),
    OpCase("div_floor_int32_scalar", Fn(lambda a: torch.div(a, -4, rounding_mode="floor")), [ints(12, dtype=torch.int32)]),
    OpCase(
        "div_floor_float_exact",
        Fn(lambda a, b: torch.div(a, b, rounding_mode="floor")),
        [torch.tensor([1.0, -1.0, 7.5, -7.5, 0.0, -0.0, 3.0, nan, inf, 1.0, 2.0]),
         torch.tensor([0.1, 0.1, -2.0, 2.0, -3.0, 3.0, 0.0, 1.0, 2.0, -0.0, inf])],
    ),
    OpCase("div_floor_scalar", Fn(lambda a: torch.div(a, 3, rounding_mode="floor")), [f32(3, 4) * 10]),
    OpCase("div_floor_fp16", Fn(lambda a, b: torch.div(a, b, rounding_mode="floor")), [f16(12) * 5, f16(12)], **HALF),
    OpCase("floor_divide_int", Fn(lambda a, b: a // b), [ints(12), nonzero(12)]),
    OpCase("floor_divide_float", Fn(lambda a, b: a // b), [f32(12) * 5, f32(12)]),
    OpCase("floor_divide_scalar", Fn(lambda a: a // 2), [ints(12)]),
    OpCase("floor_divide_scalar_first", Fn(lambda a: 7 // a), [nonzero(12)]),
    # ---------------------------------------------------------------- remainder / fmod
    OpCase("remainder_int", Fn(torch.remainder), [ints(12), nonzero(12)]),
    OpCase("remainder_float", Fn(torch.remainder), [f32(12) * 5, f32(12)]),
    OpCase("remainder_float_signs", Fn(torch.remainder), [torch.tensor([-7.0, 7.0, -7.0, 7.0, 0.0, 2.0]), torch.tensor([3.0, -3.0, -3.0, 3.0, -2.0, 0.0])]),
    OpCase("remainder_scalar", Fn(lambda a: a % 3), [ints(12)]),
    OpCase("remainder_scalar_tensor", Fn(lambda a: 5 % a), [nonzero(12)]),
    OpCase("remainder_fp16", Fn(torch.remainder), [f16(12) * 5, f16(12)], **HALF),
    OpCase("fmod_int", Fn(torch.fmod), [ints(12), nonzero(12)]),
    OpCase("fmod_float", Fn(torch.fmod), [f32(12) * 5, f32(12)]),
    OpCase("fmod_scalar", Fn(lambda a: torch.fmod(a, -1.5)), [f32(12) * 5]),
    # ---------------------------------------------------------------- pow
    OpCase("pow_square", Fn(lambda a: a**2), [f32(2, 3)]),
    OpCase("pow_cube", Fn(lambda a: a**3), [f32(2, 3)]),
    OpCase("pow_sqrt", Fn(lambda a: a**0.5), [pos(5)]),
    OpCase("pow_rsqrt", Fn(lambda a: a**-0.5), [pos(5)]),
    OpCase("pow_reciprocal", Fn(lambda a: a**-1), [pos(5)]),
    OpCase("pow_inverse_square", Fn(lambda a: a**-2), [pos(5)]),
    OpCase("pow_fractional", Fn(lambda a: a**2.5), [pos(5)]),
    OpCase("pow_one", Fn(lambda a: a**1), [f32(5)]),
    OpCase("pow_int_exact", Fn(lambda a: a**7), [ints(6, low=-400, high=400)]),
    OpCase("pow_int_float_exponent", Fn(lambda a: a**1.5), [ints(6, low=0, high=9)]),
    OpCase("pow_int32_square", Fn(lambda a: a**2), [ints(6, dtype=torch.int32)]),
    OpCase("pow_fp16", Fn(lambda a: a**2.5), [pos(5).half()], **HALF),
    OpCase("pow_tensor_tensor", Fn(torch.pow), [pos(2, 3), f32(3)]),
    OpCase("pow_tensor_tensor_int", Fn(torch.pow), [ints(6, low=-3, high=4), ints(6, low=0, high=5)]),
    OpCase("pow_tensor_tensor_promotes", Fn(torch.pow), [ints(6, low=1, high=4), f32(6)]),
    OpCase("pow_scalar_base", Fn(lambda a: 2**a), [f32(5)]),
    OpCase("pow_scalar_base_int", Fn(lambda a: 3**a), [ints(5, low=0, high=6)]),
    # ---------------------------------------------------------------- fused arithmetic
    OpCase("addcmul", Fn(lambda a, b, c: torch.addcmul(a, b, c, value=0.5)), [f32(2, 3), f32(3), f32(2, 1)]),
    OpCase("addcmul_int", Fn(torch.addcmul), [ints(4), ints(4), ints(4)]),
    OpCase("addcdiv", Fn(lambda a, b, c: torch.addcdiv(a, b, c, value=2)), [f32(2, 3), f32(3), pos(2, 1)]),
    OpCase("lerp_scalar_low", Fn(lambda a, b: torch.lerp(a, b, 0.3)), [f32(2, 3), f32(2, 3)]),
    OpCase("lerp_scalar_high", Fn(lambda a, b: torch.lerp(a, b, 0.75)), [f32(2, 3), f32(2, 3)]),
    OpCase("lerp_tensor", Fn(torch.lerp), [f32(2, 3), f32(2, 3), torch.rand(3) * 2 - 0.5]),
    OpCase("lerp_fp16", Fn(lambda a, b: torch.lerp(a, b, 0.6)), [f16(4), f16(4)], **HALF),
    # ---------------------------------------------------------------- neg / abs / sign
    OpCase("neg", Fn(torch.neg), [f32(5)]),
    OpCase("neg_int", Fn(torch.neg), [ints(5)]),
    OpCase("neg_uint8_wraps", Fn(torch.neg), [ints(5, dtype=torch.uint8, low=0, high=200)]),
    OpCase("abs", Fn(torch.abs), [f32(5)]),
    OpCase("abs_int32", Fn(torch.abs), [ints(5, dtype=torch.int32)]),
    OpCase("abs_int8", Fn(torch.abs), [ints(5, dtype=torch.int8)]),
    OpCase("abs_fp16", Fn(torch.abs), [f16(5)]),
    OpCase("sign_special_values", Fn(torch.sign), [SPECIAL]),
    OpCase("sign_int", Fn(torch.sign), [ints(7)]),
    OpCase("sign_bool", Fn(torch.sign), [bools(7)]),
    OpCase("sgn", Fn(torch.sgn), [SPECIAL]),
    # ---------------------------------------------------------------- unary float math
    OpCase("exp", Fn(torch.exp), [f32(2, 3)]),
    OpCase("exp_int_to_float", Fn(torch.exp), [ints(5, low=-3, high=4)]),
    OpCase("exp_float64", Fn(torch.exp), [f32(5).double()], atol=1e-12, rtol=1e-12),
    OpCase("exp2", Fn(torch.exp2), [f32(5)]),
    OpCase("expm1_precise_near_zero", Fn(torch.expm1), [torch.tensor([1e-10, -1e-9, 1e-4, 0.0, -0.0, 1.0, -30.0, 100.0, -inf, inf, nan])]),
    OpCase("expm1_fp16", Fn(torch.expm1), [f16(5)], **HALF),
    OpCase("log", Fn(torch.log), [pos(5)]),
    OpCase("log_special", Fn(torch.log), [torch.tensor([0.0, -1.0, inf, nan, 1.0])]),
    OpCase("log2", Fn(torch.log2), [pos(5)]),
    OpCase("log10", Fn(torch.log10), [pos(5)]),
    OpCase("log1p_precise_near_zero", Fn(torch.log1p), [torch.tensor([1e-10, -1e-9, 1e-4, 0.0, -0.0, 1.0, -1.0, -2.0, 1e30, inf, nan])]),
    OpCase("log1p_int", Fn(torch.log1p), [ints(5, low=0, high=9)]),
    OpCase("sqrt", Fn(torch.sqrt), [pos(5)]),
    OpCase("sqrt_int", Fn(torch.sqrt), [ints(5, low=0, high=50)]),
    OpCase("rsqrt", Fn(torch.rsqrt), [pos(5)]),
    OpCase("reciprocal", Fn(torch.reciprocal), [f32(5)]),
    OpCase("reciprocal_int", Fn(torch.reciprocal), [nonzero(5)]),
    OpCase(
        "trigonometric",
        Fn(lambda x: (torch.sin(x), torch.cos(x), torch.tan(x), torch.asin(x), torch.acos(x), torch.atan(x))),
        [torch.rand(8) * 1.8 - 0.9],
    ),
    OpCase(
        "hyperbolic",
        Fn(lambda x: (torch.sinh(x), torch.cosh(x), torch.asinh(x), torch.atanh(x), torch.acosh(x + 2))),
        [torch.rand(8) * 1.8 - 0.9],
    ),
    OpCase("trigonometric_int_to_float", Fn(lambda x: (torch.sin(x), torch.atan(x), torch.cosh(x))), [ints(5)]),
    OpCase("erf", Fn(torch.erf), [f32(5)]),
    OpCase(
        "unary_fp16",
        Fn(lambda x: (torch.exp(x), torch.log(x), torch.sqrt(x), torch.rsqrt(x), torch.sin(x), torch.cos(x),
                      torch.tan(x), torch.atan(x), torch.erf(x), torch.log1p(x), torch.reciprocal(x))),
        [torch.rand(6).half() + 0.1],
        **HALF,
    ),
    OpCase(
        "unary_float64",
        Fn(lambda x: (torch.exp(x), torch.log(x), torch.sqrt(x), torch.sin(x), torch.cos(x), torch.reciprocal(x))),
        [torch.rand(6).double() + 0.1],
        atol=1e-12,
        rtol=1e-12,
    ),
    OpCase(
        "atan2_quadrants_and_signed_zeros",
        Fn(torch.atan2),
        [torch.tensor([1.0, 1.0, -1.0, -1.0, 0.0, -0.0, 0.0, -0.0, 2.0, -2.0, 0.0, inf, -inf, inf, nan, 3.0]),
         torch.tensor([1.0, -1.0, 1.0, -1.0, 0.0, 0.0, -0.0, -0.0, 0.0, -0.0, 5.0, inf, -inf, 1.0, 1.0, inf])],
    ),
    OpCase("atan2_int_promotes", Fn(torch.atan2), [ints(5), nonzero(5)]),
    # ---------------------------------------------------------------- rounding
    OpCase("floor", Fn(torch.floor), [SPECIAL]),
    OpCase("ceil", Fn(torch.ceil), [SPECIAL]),
    OpCase("trunc", Fn(torch.trunc), [SPECIAL]),
    OpCase("round_half_to_even", Fn(torch.round), [torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, nan, inf])]),
    OpCase("round_decimals", Fn(lambda x: torch.round(x, decimals=2)), [f32(6) * 10]),
    OpCase("round_negative_decimals", Fn(lambda x: torch.round(x, decimals=-1)), [f32(6) * 100]),
    OpCase("rounding_ints_are_identity", Fn(lambda x: (torch.floor(x), torch.ceil(x), torch.trunc(x), torch.round(x))), [ints(5)]),
    OpCase("rounding_fp16", Fn(lambda x: (torch.floor(x), torch.ceil(x), torch.trunc(x), torch.round(x))), [f16(6) * 4]),
    OpCase("frac", Fn(torch.frac), [f32(6) * 4]),
    OpCase("nan_to_num_defaults", Fn(torch.nan_to_num), [SPECIAL]),
    OpCase("nan_to_num_values", Fn(lambda x: torch.nan_to_num(x, nan=1.0, posinf=2.0, neginf=-3.0)), [SPECIAL]),
    OpCase("nan_to_num_fp16", Fn(torch.nan_to_num), [SPECIAL.half()]),
    # ---------------------------------------------------------------- dynamic shapes
    OpCase(
        "arithmetic_dynamic_batch",
        Fn(lambda a, b: (a + b, a - b, a * b, a / b, 2 - a, a**2, torch.pow(b.abs(), a), a // b, a % b,
                         torch.fmod(a, b), torch.div(a, b, rounding_mode="trunc"), torch.addcmul(a, a, b))),
        [f32(2, 3), f32(2, 3)],
        dynamic=DYN,
        more_inputs=[[f32(7, 3), f32(7, 3)]],
    ),
    OpCase(
        "symbolic_size_operands",
        Fn(lambda x: (x + x.shape[0], x / x.shape[0], x * x.shape[0], x.shape[0] - x, x.long() // x.shape[0], x**2 % x.shape[0])),
        [f32(3, 2) * 5],
        dynamic=[{0: (2, 8)}],
        more_inputs=[[f32(6, 2) * 5]],
    ),
    OpCase(
        "add_dynamic_batch",
        Fn(torch.add),
        [f32(2, 3), f32(2, 3)],
        dynamic=DYN,
        more_inputs=[[f32(7, 3), f32(7, 3)]],
    ),
    OpCase(
        "unary_dynamic_batch",
        Fn(lambda x: (torch.exp(x), torch.log(x), torch.sqrt(x), torch.rsqrt(x), torch.sin(x), torch.neg(x), torch.sign(x),
                      torch.floor(x), torch.trunc(x), torch.round(x), torch.expm1(x), torch.log1p(x), torch.atan2(x, x - 1))),
        [pos(2, 3)],
        dynamic=[{0: (1, 8)}],
        more_inputs=[[pos(5, 3)]],
    ),
    OpCase(
        "int_division_dynamic_batch",
        Fn(lambda a, b: (a // b, a % b, torch.div(a, b, rounding_mode="trunc"), a / b, a**3)),
        [ints(3, 4), nonzero(3, 4)],
        dynamic=DYN,
        more_inputs=[[ints(6, 4), nonzero(6, 4)]],
    ),

    # ------------------------------------------------------------------------ prims.div
    OpCase("prims_div_float", Fn(torch.ops.prims.div.default), [f32(2, 3), pos(2, 3)]),
    OpCase("prims_div_int_truncates", Fn(torch.ops.prims.div.default), [ints(12), nonzero(12)]),
    OpCase("prims_div_int32", Fn(torch.ops.prims.div.default), [ints(8, dtype=torch.int32), nonzero(8, dtype=torch.int32)]),
    OpCase(
        "prims_div_dynamic",
        Fn(torch.ops.prims.div.default),
        [ints(3), nonzero(3)],
        dynamic=DYN,
        more_inputs=[[ints(7), nonzero(7)]],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_elementwise_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)


def decline_reason(fn: Any, inputs: list[torch.Tensor], target: Any) -> str | None:
    """Export ``fn``, find its ``target`` node and ask that converter's validator about it."""
    program = torch.export.export(Fn(fn), tuple(inputs))
    _, gm, _ = lower(program, LoweringSettings())
    nodes = [n for n in gm.graph.nodes if n.target is target]
    assert nodes, f"{target} not in graph: {[str(n.target) for n in gm.graph.nodes]}"
    entry = REGISTRY.get(target)
    assert entry is not None
    return entry.validator(nodes[0])


aten = torch.ops.aten
DECLINED = [
    ("int_negative_power_raises_in_pytorch", lambda a: a**-2, [ints(3)], aten.pow.Tensor_Scalar),
    ("tan_float64_has_no_ort_kernel", torch.tan, [f32(3).double()], aten.tan.default),
    ("erf_float64_has_no_ort_kernel", torch.erf, [f32(3).double()], aten.erf.default),
    ("complex_add", lambda a: a + 1, [torch.randn(3, dtype=torch.complex64)], aten.add.Tensor),
    ("complex_exp", torch.exp, [torch.randn(3, dtype=torch.complex64)], aten.exp.default),
    ("pow_int16_has_no_ort_kernel", lambda a: a**4, [ints(3, dtype=torch.int16)], aten.pow.Tensor_Scalar),
]


@pytest.mark.parametrize(("name", "fn", "inputs", "target"), DECLINED, ids=[d[0] for d in DECLINED])
def test_validator_declines(name: str, fn: Any, inputs: list[torch.Tensor], target: Any) -> None:
    assert decline_reason(fn, inputs, target) is not None


def test_supported_nodes_are_accepted_by_validator() -> None:
    assert decline_reason(lambda a: a**2, [ints(3)], aten.pow.Tensor_Scalar) is None
    assert decline_reason(torch.tan, [f32(3)], aten.tan.default) is None
