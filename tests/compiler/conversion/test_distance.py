"""Table-driven tests for pairwise distances: cdist and pdist."""

from __future__ import annotations

import math

import pytest
import torch

from tests.compiler.conversion.harness import Fn, OpCase, check_case

torch.manual_seed(0)
R = torch.randn
DYN = {0: (1, 8)}

CASES = [
    OpCase("cdist_p2", Fn(torch.cdist), [R(4, 3), R(5, 3)]),
    OpCase("cdist_p2_batched", Fn(torch.cdist), [R(2, 4, 3), R(2, 6, 3)]),
    OpCase("cdist_p2_matrix_product_path", Fn(torch.cdist), [R(30, 8), R(27, 8)], atol=1e-4, rtol=1e-4),
    OpCase("cdist_p1", Fn(lambda a, b: torch.cdist(a, b, p=1)), [R(4, 3), R(5, 3)]),
    OpCase("cdist_p0_counts_differences", Fn(lambda a, b: torch.cdist(a, b, p=0)), [R(3, 4).round(), R(2, 4).round()]),
    OpCase("cdist_p_inf", Fn(lambda a, b: torch.cdist(a, b, p=math.inf)), [R(4, 3), R(5, 3)]),
    OpCase("cdist_p3", Fn(lambda a, b: torch.cdist(a, b, p=3)), [R(4, 3), R(5, 3)], atol=1e-4, rtol=1e-4),
    OpCase("cdist_float64", Fn(torch.cdist), [R(3, 2).double(), R(4, 2).double()]),
    OpCase(
        "cdist_dynamic_rows",
        Fn(torch.cdist),
        [R(3, 4), R(5, 4)],
        dynamic=[DYN, None],
        more_inputs=[[R(7, 4), R(5, 4)]],
    ),
    OpCase(
        "cdist_dynamic_batch",
        Fn(lambda a, b: torch.cdist(a, b, p=1)),
        [R(2, 3, 4), R(2, 5, 4)],
        dynamic=[DYN, DYN],
        more_inputs=[[R(6, 3, 4), R(6, 5, 4)]],
    ),
    OpCase("pdist_p2", Fn(torch.pdist), [R(5, 3)]),
    OpCase("pdist_p1", Fn(lambda x: torch.pdist(x, p=1)), [R(4, 6)]),
    OpCase("pdist_p_inf", Fn(lambda x: torch.pdist(x, p=math.inf)), [R(4, 3)]),
    OpCase("pdist_p_half", Fn(lambda x: torch.pdist(x, p=0.5)), [R(4, 3)], atol=1e-4, rtol=1e-4),
    OpCase("pdist_two_rows", Fn(torch.pdist), [R(2, 3)]),
    OpCase(
        "pdist_dynamic_columns",
        Fn(torch.pdist),
        [R(4, 3)],
        dynamic=[{1: (1, 16)}],
        more_inputs=[[R(4, 9)]],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_distance_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)

