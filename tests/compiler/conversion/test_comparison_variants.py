"""Comparison, selection, min/max, logical and bitwise ops called every way ``variants`` knows:
broadcasting, 0-d operands, Python scalars on either side, dtype promotion, fp16, and dynamic dims
(rows for the plain cases live in ``test_comparison.py``)."""

from __future__ import annotations

import pytest
import torch

from tests.compiler.conversion.harness import OpCase, check_case
from tests.compiler.conversion.variants import Binary, binary_rows

OPS = [
    Binary("maximum", torch.maximum, scalar_lhs=False, scalar_rhs=False, bools=True),
    Binary("minimum", torch.minimum, scalar_lhs=False, scalar_rhs=False),
    Binary("fmax", torch.fmax, scalar_lhs=False, scalar_rhs=False),
    Binary("fmin", torch.fmin, scalar_lhs=False, scalar_rhs=False),
    Binary("eq", torch.eq, scalar_lhs=False, bools=True),
    Binary("ne", torch.ne, scalar_lhs=False),
    Binary("lt", torch.lt, scalar_lhs=False),
    Binary("le", torch.le, scalar_lhs=False),
    Binary("gt", lambda a, b: a > b),
    Binary("ge", lambda a, b: a >= b),
    Binary("logical_and", torch.logical_and, scalar_lhs=False, scalar_rhs=False, bools=True),
    Binary("logical_or", torch.logical_or, scalar_lhs=False, scalar_rhs=False),
    Binary("logical_xor", torch.logical_xor, scalar_lhs=False, scalar_rhs=False),
    Binary("bitwise_and", lambda a, b: a & b, floats=False, bools=True),
    Binary("bitwise_or", lambda a, b: a | b, floats=False),
    Binary("bitwise_xor", lambda a, b: a ^ b, floats=False),
    Binary("where", lambda a, b: torch.where(b > 0, a, b), scalar_rhs=False),
    Binary("clamp_min_tensor", lambda a, b: torch.clamp(a, min=b), scalar_lhs=False),
    Binary("clamp_max_tensor", lambda a, b: torch.clamp(a, max=b), scalar_lhs=False),
]

CASES: list[OpCase | object] = [row for seed, op in enumerate(OPS) for row in binary_rows(op, 500 + seed)]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_comparison_variant_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)
