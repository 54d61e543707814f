"""Table-driven tests for embedding bags (``nn.EmbeddingBag`` / ``F.embedding_bag``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.compiler.conversion.harness import Fn, OpCase, check_case

torch.manual_seed(0)
INDICES = torch.tensor([1, 2, 4, 5, 4, 3, 2, 9, 0, 7])
OFFSETS = torch.tensor([0, 4, 4, 7])  # the second bag is empty


def bag(mode: str, **kwargs: object) -> nn.Module:
    return nn.EmbeddingBag(10, 3, mode=mode, **kwargs).eval()


class Weighted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(10, 3, mode="sum")

    def forward(self, indices: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.bag(indices, offsets, per_sample_weights=weights)


CASES = [
    OpCase("sum_with_an_empty_bag", bag("sum"), [INDICES, OFFSETS]),
    OpCase("mean_with_an_empty_bag", bag("mean"), [INDICES, OFFSETS]),
    OpCase("max_with_an_empty_bag", bag("max"), [INDICES, OFFSETS]),
    OpCase("sum_include_last_offset", bag("sum", include_last_offset=True), [INDICES, torch.tensor([0, 3, 8, 10])]),
    OpCase("mean_padding_idx", bag("mean", padding_idx=4), [INDICES, OFFSETS]),
    OpCase("max_padding_idx_only_bag", bag("max", padding_idx=2), [torch.tensor([2, 2, 5, 1]), torch.tensor([0, 2])]),
    OpCase("sum_per_sample_weights", Weighted(), [INDICES, OFFSETS, torch.rand(10)]),
    OpCase("mean_2d_input_without_offsets", bag("mean"), [torch.tensor([[1, 2, 3], [4, 5, 9]])]),
    OpCase("int32_indices_and_offsets", bag("sum"), [INDICES.int(), OFFSETS.int()]),
    OpCase(
        "functional_max_float64",
        Fn(lambda i, o, w: F.embedding_bag(i, w, o, mode="max")),
        [INDICES, OFFSETS, torch.randn(10, 4).double()],
    ),
    OpCase(
        "sum_dynamic_indices_and_bags",
        bag("sum"),
        [INDICES, OFFSETS],
        dynamic=[{0: (1, 64)}, {0: (1, 16)}],
        more_inputs=[[torch.tensor([3, 3, 1, 0, 9, 8, 7, 6, 5, 4, 2, 1, 0]), torch.tensor([0, 1, 5, 5, 12])]],
    ),
    OpCase(
        "mean_2d_dynamic_batch",
        bag("mean"),
        [torch.tensor([[1, 2, 3], [4, 5, 9]])],
        dynamic=[{0: (1, 8)}],
        more_inputs=[[torch.randint(0, 10, (6, 3))]],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_embedding_bag_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)
