"""Table-driven tests for topk / sort / argsort converters."""

from __future__ import annotations

import math

import pytest
import torch

from tests.compiler.conversion.harness import Fn, OpCase, check_case

F16 = torch.float16
I64 = torch.int64


def _distinct(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """No ties, so every index output is unambiguous even for unstable sorts."""
    return (torch.randperm(math.prod(shape)).reshape(shape) - math.prod(shape) // 2).to(dtype)


TIES = torch.tensor([[3.0, 1.0, 3.0, 1.0, 2.0], [0.0, 0.0, 0.0, 5.0, 0.0]])

CASES = [
    # topk
    OpCase("topk_default", Fn(lambda x: torch.topk(x, 2)), [_distinct(3, 5)]),
    OpCase("topk_smallest_dim0", Fn(lambda x: torch.topk(x, 2, dim=0, largest=False)), [_distinct(4, 3)]),
    OpCase("topk_neg_dim", Fn(lambda x: torch.topk(x, 3, dim=-2)), [_distinct(2, 4, 3)]),
    OpCase("topk_unsorted_then_sorted", Fn(lambda x: torch.topk(x, 3, sorted=False).values.sort().values), [_distinct(2, 6)]),
    OpCase("topk_int64", Fn(lambda x: torch.topk(x, 2)), [_distinct(3, 5, dtype=I64)]),
    OpCase("topk_fp16", Fn(lambda x: torch.topk(x, 2)), [_distinct(3, 5, dtype=F16)]),
    OpCase("topk_1d", Fn(lambda x: torch.topk(x, 1)), [_distinct(6)]),
    OpCase("topk_dynamic_batch", Fn(lambda x: torch.topk(x, 2)), [_distinct(3, 5)], dynamic=[{0: (1, 8)}], more_inputs=[[_distinct(7, 5)]]),
    OpCase(
        "topk_k_from_dynamic_size",
        Fn(lambda x: torch.topk(x, x.shape[0], dim=1)),
        [_distinct(2, 8)],
        dynamic=[{0: (1, 8)}],
        more_inputs=[[_distinct(7, 8)]],
    ),
    # sort
    OpCase("sort_default", Fn(lambda x: torch.sort(x)), [_distinct(3, 5)]),
    OpCase("sort_descending_dim0", Fn(lambda x: torch.sort(x, 0, descending=True)), [_distinct(4, 3)]),
    OpCase("sort_stable_ties", Fn(lambda x: torch.sort(x, dim=-1, stable=True)), [TIES]),
    OpCase("sort_stable_descending_ties", Fn(lambda x: torch.sort(x, dim=1, descending=True, stable=True)), [TIES]),
    OpCase("sort_int64", Fn(lambda x: torch.sort(x, -1)), [_distinct(3, 5, dtype=I64)]),
    OpCase("sort_bool_stable", Fn(lambda x: torch.sort(x, stable=True)), [torch.tensor([[True, False, True, False], [False, False, True, True]])]),
    OpCase("sort_fp16", Fn(lambda x: torch.sort(x)), [_distinct(3, 5, dtype=F16)]),
    OpCase("sort_dynamic_sorted_dim", Fn(lambda x: torch.sort(x, -1)), [_distinct(2, 5)], dynamic=[{1: (2, 64)}], more_inputs=[[_distinct(2, 33)]]),
    # argsort
    OpCase("argsort_default", Fn(lambda x: torch.argsort(x)), [_distinct(3, 5)]),
    OpCase("argsort_descending_dim0", Fn(lambda x: torch.argsort(x, 0, descending=True)), [_distinct(4, 3)]),
    OpCase("argsort_stable_ties", Fn(lambda x: torch.argsort(x, dim=1, stable=True)), [TIES]),
    OpCase("argsort_int64", Fn(lambda x: torch.argsort(x)), [_distinct(3, 5, dtype=I64)]),
    OpCase("argsort_dynamic", Fn(lambda x: torch.argsort(x, dim=0)), [_distinct(5, 2)], dynamic=[{0: (2, 64)}], more_inputs=[[_distinct(17, 2)]]),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_sort_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)
