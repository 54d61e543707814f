"""Anchor targets that we cover through a decomposition rather than a converter of their own:
each reaches the engine whole after lowering and matches eager."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.compiler.conversion.harness import Fn, OpCase, check_case

torch.manual_seed(0)
aten = torch.ops.aten
R = torch.randn
DYN = {0: (1, 8)}

CASES = [
    OpCase("linalg_cross", Fn(torch.linalg.cross), [R(4, 3), R(4, 3)]),
    OpCase("clip", Fn(lambda a: torch.clip(a, -0.5, 0.5)), [R(4, 3)]),
    OpCase("clip_tensor", Fn(lambda a, lo: aten.clip.Tensor(a, lo)), [R(4, 3), R(3)]),
    OpCase("index_copy", Fn(lambda a, s: a.index_copy(0, torch.tensor([2, 0]), s)), [R(4, 3), R(2, 3)]),
    OpCase("tile", Fn(lambda a: a.tile((2, 1, 3))), [R(4, 3)]),
    OpCase("pixel_shuffle", Fn(lambda a: F.pixel_shuffle(a, 2)), [R(1, 8, 3, 3)]),
    OpCase("pixel_unshuffle", Fn(lambda a: F.pixel_unshuffle(a, 2)), [R(1, 2, 4, 6)]),
    OpCase("pad_circular", Fn(lambda a: aten._pad_circular.default(a, [1, 2])), [R(1, 2, 5)]),
    OpCase(
        "grid_sampler",
        Fn(lambda a, g: aten.grid_sampler.default(a, g, 0, 0, False)),
        [R(1, 2, 4, 4), torch.rand(1, 3, 3, 2) * 2 - 1],
    ),
    OpCase(
        "embedding_bag",
        Fn(lambda w, i, o: aten.embedding_bag.default(w, i, o)[0]),
        [R(10, 3), torch.tensor([1, 2, 3, 4]), torch.tensor([0, 2])],
    ),
    OpCase(
        "pixel_shuffle_dynamic_batch",
        Fn(lambda a: F.pixel_shuffle(a, 2)),
        [R(2, 8, 3, 3)],
        dynamic=[DYN],
        more_inputs=[[R(5, 8, 3, 3)]],
    ),
    OpCase("tile_dynamic", Fn(lambda a: a.tile((2, 1))), [R(3, 4)], dynamic=[DYN], more_inputs=[[R(6, 4)]]),
    OpCase(
        "linalg_cross_dynamic",
        Fn(torch.linalg.cross),
        [R(2, 3), R(2, 3)],
        dynamic=[DYN, DYN],
        more_inputs=[[R(7, 3), R(7, 3)]],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_decomposed_anchor_target_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)
