"""Table-driven tests for elementwise converters."""

from __future__ import annotations

import pytest
import torch

from tests.compiler.conversion.harness import Fn, OpCase, check_case


CASES = [
    OpCase("add", Fn(torch.add), [torch.randn(2, 3), torch.randn(2, 3)]),
    OpCase("add_alpha", Fn(lambda a, b: torch.add(a, b, alpha=2)), [torch.randn(2, 3), torch.randn(3)]),
    OpCase("add_int_float_promotes", Fn(torch.add), [torch.randint(0, 5, (2, 3)), torch.randn(2, 3)]),
    OpCase("add_scalar", Fn(lambda a: a + 1.5), [torch.randint(0, 5, (4,))]),
    OpCase("sub_broadcast", Fn(torch.sub), [torch.randn(2, 1, 3), torch.randn(4, 1)]),
    OpCase("mul_bool", Fn(torch.mul), [torch.rand(3) > 0.5, torch.rand(3) > 0.5]),
    OpCase("mul_0d", Fn(torch.mul), [torch.randn(2, 3), torch.tensor(2.0, dtype=torch.float64)]),
    OpCase("div_int_true_division", Fn(torch.div), [torch.randint(1, 9, (5,)), torch.randint(1, 9, (5,))]),
    OpCase(
        "add_dynamic_batch",
        Fn(torch.add),
        [torch.randn(2, 3), torch.randn(2, 3)],
        dynamic=[{0: (1, 8)}, {0: (1, 8)}],
        more_inputs=[[torch.randn(7, 3), torch.randn(7, 3)]],
    ),
    OpCase("add_fp16", Fn(torch.add), [torch.randn(2, 3).half(), torch.randn(2, 3).half()], atol=1e-3, rtol=1e-3),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_elementwise_matches_eager(case: OpCase) -> None:
    check_case(case)
