"""Unary math and activation ops called every way ``variants`` knows: rank 4, 0-d, a transposed
(non-contiguous) input, integer inputs (promoted to float by the math functions), fp16 and two
dynamic dims (rows for the plain cases live in each family's own table)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.compiler.conversion.harness import OpCase, check_case
from tests.compiler.conversion.variants import ABOVE_ONE, NONZERO, POSITIVE, UNIT, Unary, unary_rows

OPS = [
    # sign and magnitude (integers stay integers)
    Unary("abs", torch.abs),
    Unary("neg", torch.neg),
    Unary("sign", torch.sign),
    Unary("square", torch.square),
    # math functions (integers promote to float32)
    Unary("exp", torch.exp, tol=1e-4),
    Unary("exp2", torch.exp2, tol=1e-4),
    Unary("expm1", torch.expm1, tol=1e-4),
    Unary("log", torch.log, POSITIVE),
    Unary("log2", torch.log2, POSITIVE),
    Unary("log10", torch.log10, POSITIVE),
    Unary("log1p", torch.log1p, POSITIVE),
    Unary("sqrt", torch.sqrt, POSITIVE),
    Unary("rsqrt", torch.rsqrt, POSITIVE, tol=1e-4),
    Unary("reciprocal", torch.reciprocal, NONZERO, tol=1e-4),
    Unary("sin", torch.sin),
    Unary("cos", torch.cos),
    Unary("tan", torch.tan, UNIT, tol=1e-4),
    Unary("asin", torch.asin, UNIT, ints=False),
    Unary("acos", torch.acos, UNIT, ints=False),
    Unary("atan", torch.atan),
    Unary("sinh", torch.sinh, tol=1e-4),
    Unary("cosh", torch.cosh, tol=1e-4),
    Unary("tanh", torch.tanh),
    Unary("asinh", torch.asinh, tol=1e-4),
    Unary("acosh", torch.acosh, ABOVE_ONE, tol=1e-4),
    Unary("atanh", torch.atanh, UNIT, ints=False, tol=1e-4),
    Unary("erf", torch.erf),
    Unary("sigmoid", torch.sigmoid),
    # rounding (integers pass through)
    Unary("floor", torch.floor),
    Unary("ceil", torch.ceil),
    Unary("trunc", torch.trunc),
    Unary("frac", torch.frac, ints=False),
    Unary("round", torch.round),
    Unary("round_decimals", lambda x: torch.round(x, decimals=1), ints=False),
    # activations (float only)
    Unary("relu", torch.relu),
    Unary("relu6", F.relu6, ints=False),
    Unary("gelu", F.gelu, ints=False, tol=1e-4),
    Unary("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), ints=False, tol=1e-4),
    Unary("silu", F.silu, ints=False),
    Unary("mish", F.mish, ints=False, tol=1e-4),
    Unary("softplus", F.softplus, ints=False, tol=1e-4),
    Unary("softplus_beta", lambda x: F.softplus(x, beta=2.0, threshold=5.0), ints=False, tol=1e-4),
    Unary("elu", F.elu, ints=False),
    Unary("elu_alpha", lambda x: F.elu(x, alpha=0.5), ints=False),
    Unary("selu", F.selu, ints=False),
    Unary("celu", lambda x: F.celu(x, alpha=1.5), ints=False),
    Unary("leaky_relu", lambda x: F.leaky_relu(x, 0.2), ints=False),
    Unary("hardtanh", lambda x: F.hardtanh(x, -0.5, 2.0), ints=False),
    Unary("hardsigmoid", F.hardsigmoid, ints=False),
    Unary("hardswish", F.hardswish, ints=False),
    Unary("hardshrink", lambda x: F.hardshrink(x, 0.7), ints=False),
    Unary("softshrink", lambda x: F.softshrink(x, 0.7), ints=False),
    Unary("logsigmoid", F.logsigmoid, ints=False, tol=1e-4),
    Unary("threshold", lambda x: F.threshold(x, 0.3, -1.0), ints=False),
    # tests and logic
    Unary("isnan", torch.isnan),
    Unary("isfinite", torch.isfinite),
    Unary("logical_not", torch.logical_not),
    Unary("bitwise_not", torch.bitwise_not, floats=False),
    Unary("nan_to_num", lambda x: torch.nan_to_num(x.log(), nan=0.5, neginf=-3.0), ints=False),
]

CASES: list[OpCase | object] = [row for seed, op in enumerate(OPS) for row in unary_rows(op, 1000 + seed)]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_unary_variant_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)
