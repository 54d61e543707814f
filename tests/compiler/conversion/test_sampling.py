"""Table-driven tests for grid sampling (``F.grid_sample`` → ``grid_sampler_2d`` → GridSample)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.compiler.conversion.harness import Fn, OpCase, check_case

torch.manual_seed(0)


def image(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


def grid(n: int, h: int, w: int, spread: float = 1.2) -> torch.Tensor:
    """Sampling positions, some outside [-1, 1] so that the padding mode matters."""
    return (torch.rand(n, h, w, 2) * 2 - 1) * spread


def sample(**kwargs: object) -> Fn:
    return Fn(lambda x, g: F.grid_sample(x, g, **kwargs))


CASES = [
    OpCase("bilinear_zeros", sample(align_corners=False), [image(1, 2, 4, 5), grid(1, 3, 3)]),
    OpCase("bilinear_zeros_align_corners", sample(align_corners=True), [image(2, 3, 5, 4), grid(2, 4, 2)]),
    OpCase("bilinear_border", sample(padding_mode="border", align_corners=False), [image(1, 2, 4, 5), grid(1, 3, 3)]),
    OpCase("bilinear_reflection", sample(padding_mode="reflection", align_corners=False), [image(1, 2, 4, 5), grid(1, 3, 3)]),
    OpCase(
        "bilinear_reflection_align_corners",
        sample(padding_mode="reflection", align_corners=True),
        [image(1, 2, 4, 5), grid(1, 3, 3)],
    ),
    OpCase("nearest_zeros", sample(mode="nearest", align_corners=False), [image(1, 2, 4, 5), grid(1, 3, 3)]),
    OpCase("nearest_border_align_corners", sample(mode="nearest", padding_mode="border", align_corners=True), [image(1, 1, 6, 6), grid(1, 4, 4)]),
    OpCase("bicubic_zeros", sample(mode="bicubic", align_corners=False), [image(1, 2, 5, 5), grid(1, 3, 3)], atol=1e-4, rtol=1e-4),
    OpCase(
        "bicubic_border_align_corners",
        sample(mode="bicubic", padding_mode="border", align_corners=True),
        [image(1, 2, 5, 5), grid(1, 3, 3)],
        atol=1e-4,
        rtol=1e-4,
    ),
    OpCase("affine_grid_then_sample", Fn(lambda x, theta: F.grid_sample(x, F.affine_grid(theta, [1, 2, 4, 4], align_corners=False), align_corners=False)), [image(1, 2, 4, 4), torch.tensor([[[0.9, -0.2, 0.1], [0.3, 1.1, -0.2]]])]),
    OpCase(
        "bilinear_dynamic_batch_and_grid",
        sample(align_corners=False),
        [image(2, 3, 6, 5), grid(2, 4, 3)],
        dynamic=[{0: (1, 8)}, {0: (1, 8), 1: (1, 16)}],
        more_inputs=[[image(5, 3, 6, 5), grid(5, 9, 3)]],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_grid_sampling_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)
