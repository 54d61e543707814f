"""Binary arithmetic called every way ``variants`` knows: broadcasting, 0-d operands, Python
scalars on either side, dtype promotion across int/float and widths, fp16, and dynamic dims
(rows for the plain cases live in ``test_elementwise.py``)."""

from __future__ import annotations

import pytest
import torch

from tests.compiler.conversion.harness import OpCase, check_case
from tests.compiler.conversion.variants import NONZERO, POSITIVE, Binary, binary_rows

OPS = [
    Binary("add", torch.add, bools=True),
    Binary("add_alpha", lambda a, b: torch.add(a, b, alpha=2)),
    Binary("sub", torch.sub),
    Binary("sub_alpha", lambda a, b: torch.sub(a, b, alpha=3)),
    Binary("rsub", torch.rsub, scalar_lhs=False),
    Binary("mul", torch.mul, bools=True),
    Binary("div", torch.div, rhs=NONZERO, tol=1e-5),
    Binary("div_floor", lambda a, b: torch.div(a, b, rounding_mode="floor"), rhs=NONZERO, scalar_lhs=False),
    Binary("div_trunc", lambda a, b: torch.div(a, b, rounding_mode="trunc"), rhs=NONZERO, scalar_lhs=False),
    Binary("floor_divide", lambda a, b: a // b, rhs=NONZERO),
    Binary("remainder", torch.remainder, rhs=NONZERO),
    Binary("fmod", torch.fmod, rhs=NONZERO, scalar_lhs=False),
    Binary("pow", torch.pow, lhs=POSITIVE, tol=1e-4, ints=False),
    Binary("atan2", torch.atan2, scalar_lhs=False, scalar_rhs=False, fp16=False, tol=1e-5),
    Binary("lerp", lambda a, b: torch.lerp(a, b, 0.3), ints=False, scalar_lhs=False, scalar_rhs=False, promotes=False),
]

CASES: list[OpCase | object] = [row for seed, op in enumerate(OPS) for row in binary_rows(op, 0 + seed)]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_arithmetic_variant_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)
