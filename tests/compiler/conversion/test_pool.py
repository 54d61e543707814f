"""Table-driven tests for pooling converters (max, average, adaptive)."""

from __future__ import annotations

import onnx_ir as ir
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compiler.backends.tensorrt_ops import check_model
from compiler.conversion import REGISTRY, convert_graph
from compiler.lowering import LoweringSettings, lower
from tests.compiler.conversion.harness import Fn, OpCase, check_case

torch.manual_seed(0)


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


FP16 = {"atol": 1e-2, "rtol": 1e-2}

CASES = [
    # max pool
    OpCase("max_pool2d", nn.MaxPool2d(2), [_x(1, 3, 8, 8)]),
    OpCase("max_pool2d_resnet_stem", nn.MaxPool2d(3, stride=2, padding=1), [_x(2, 3, 9, 9)]),
    OpCase(
        "max_pool2d_dilation", nn.MaxPool2d(3, stride=1, padding=1, dilation=2), [_x(1, 2, 8, 8)]
    ),
    OpCase("max_pool2d_ceil_mode", nn.MaxPool2d(3, stride=2, ceil_mode=True), [_x(1, 2, 8, 8)]),
    # ceil_mode must drop a last window that would start in the right padding
    OpCase(
        "max_pool2d_ceil_mode_drops_window",
        nn.MaxPool2d(2, stride=3, padding=1, ceil_mode=True),
        [_x(1, 2, 4, 4)],
    ),
    OpCase(
        "max_pool2d_one_element_lists",
        Fn(lambda x: F.max_pool2d(x, [3], [2], [1])),
        [_x(1, 2, 7, 9)],
    ),
    OpCase("max_pool2d_unbatched", nn.MaxPool2d((2, 3), stride=(2, 1)), [_x(3, 6, 6)]),
    OpCase("max_pool2d_indices", nn.MaxPool2d(2, return_indices=True), [_x(2, 3, 6, 6)]),
    OpCase(
        "max_pool2d_with_indices_values_only",
        Fn(lambda x: F.max_pool2d_with_indices(x, 2)[0]),
        [_x(1, 3, 6, 6)],
    ),
    OpCase(
        "max_pool2d_indices_padded_ceil",
        nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True, return_indices=True),
        [_x(1, 2, 8, 7)],
    ),
    OpCase(
        "max_pool2d_dynamic_batch_and_spatial",
        nn.MaxPool2d(3, stride=2, padding=1),
        [_x(2, 3, 8, 8)],
        dynamic=[{0: (1, 8), 2: (4, 32), 3: (4, 32)}],
        more_inputs=[[_x(3, 3, 13, 6)]],
    ),
    OpCase(
        "max_pool2d_indices_dynamic",
        nn.MaxPool2d(2, return_indices=True),
        [_x(2, 3, 6, 6)],
        dynamic=[{0: (1, 8), 2: (4, 32)}],
        more_inputs=[[_x(5, 3, 10, 6)]],
    ),
    OpCase("max_pool2d_fp16", nn.MaxPool2d(3, stride=2, padding=1), [_x(1, 3, 8, 8).half()]),
    OpCase("max_pool1d", nn.MaxPool1d(3, stride=2, padding=1), [_x(2, 3, 9)]),
    OpCase("max_pool1d_indices", nn.MaxPool1d(2, return_indices=True), [_x(2, 3, 8)]),
    OpCase("max_pool3d", nn.MaxPool3d(2, stride=(1, 2, 2)), [_x(1, 2, 4, 6, 6)]),
    OpCase("max_pool3d_indices", nn.MaxPool3d(2, return_indices=True), [_x(1, 2, 4, 4, 4)]),
    # average pool
    OpCase("avg_pool2d", nn.AvgPool2d(2), [_x(1, 3, 8, 8)]),
    OpCase(
        "avg_pool2d_padding_include_pad", nn.AvgPool2d(3, stride=2, padding=1), [_x(1, 3, 7, 7)]
    ),
    OpCase(
        "avg_pool2d_padding_exclude_pad",
        nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
        [_x(1, 3, 7, 7)],
    ),
    OpCase(
        "avg_pool2d_ceil_mode_exclude_pad",
        nn.AvgPool2d(3, stride=2, ceil_mode=True, count_include_pad=False),
        [_x(1, 3, 8, 8)],
    ),
    # the last ceil_mode window runs past the padding: both divide by its clipped size
    OpCase(
        "avg_pool2d_ceil_mode_overhang_include_pad",
        nn.AvgPool2d(3, stride=2, ceil_mode=True),
        [_x(1, 3, 8, 8)],
    ),
    OpCase(
        "avg_pool2d_ceil_mode_overhang_padded",
        nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True),
        [_x(1, 3, 8, 8)],
    ),
    OpCase("avg_pool2d_divisor_override", nn.AvgPool2d(2, divisor_override=3), [_x(1, 3, 6, 6)]),
    OpCase(
        "avg_pool2d_divisor_override_padded",
        nn.AvgPool2d(3, stride=2, padding=1, divisor_override=5),
        [_x(1, 3, 7, 7)],
    ),
    OpCase(
        "avg_pool2d_one_element_lists", Fn(lambda x: F.avg_pool2d(x, [2], [2])), [_x(1, 2, 6, 8)]
    ),
    OpCase("avg_pool2d_unbatched", nn.AvgPool2d(2), [_x(3, 6, 6)]),
    OpCase(
        "avg_pool2d_dynamic_batch_and_spatial",
        nn.AvgPool2d(2),
        [_x(2, 3, 8, 8)],
        dynamic=[{0: (1, 8), 2: (4, 32), 3: (4, 32)}],
        more_inputs=[[_x(3, 3, 10, 6)]],
    ),
    OpCase(
        "avg_pool2d_fp16", nn.AvgPool2d(3, stride=2, padding=1), [_x(1, 3, 8, 8).half()], **FP16
    ),
    OpCase(
        "avg_pool1d", nn.AvgPool1d(3, stride=2, padding=1, count_include_pad=False), [_x(2, 3, 9)]
    ),
    OpCase("avg_pool3d", nn.AvgPool3d(2, stride=(1, 2, 2)), [_x(1, 2, 4, 6, 6)]),
    # adaptive average pool
    OpCase("adaptive_avg_pool2d_global", nn.AdaptiveAvgPool2d(1), [_x(2, 8, 7, 7)]),
    OpCase(
        "adaptive_avg_pool2d_global_dynamic",
        nn.AdaptiveAvgPool2d((1, 1)),
        [_x(2, 8, 7, 7)],
        dynamic=[{0: (1, 8), 2: (2, 32), 3: (2, 32)}],
        more_inputs=[[_x(3, 8, 5, 11)]],
    ),
    OpCase("adaptive_avg_pool2d_divisible", nn.AdaptiveAvgPool2d((2, 3)), [_x(1, 4, 8, 9)]),
    OpCase("adaptive_avg_pool2d_uneven", nn.AdaptiveAvgPool2d((3, 5)), [_x(2, 4, 7, 7)]),
    OpCase(
        "adaptive_avg_pool2d_uneven_dynamic_batch",
        nn.AdaptiveAvgPool2d((3, 5)),
        [_x(2, 4, 7, 7)],
        dynamic=[{0: (1, 8)}],
        more_inputs=[[_x(6, 4, 7, 7)]],
    ),
    OpCase("adaptive_avg_pool2d_upsamples", nn.AdaptiveAvgPool2d(4), [_x(1, 2, 3, 3)]),
    OpCase(
        "adaptive_avg_pool2d_uneven_fp16", nn.AdaptiveAvgPool2d(3), [_x(1, 4, 7, 8).half()], **FP16
    ),
    OpCase("adaptive_avg_pool2d_unbatched", nn.AdaptiveAvgPool2d((3, 2)), [_x(4, 7, 4)]),
    OpCase("adaptive_avg_pool1d", nn.AdaptiveAvgPool1d(3), [_x(2, 4, 10)]),
    OpCase("adaptive_avg_pool3d", nn.AdaptiveAvgPool3d((2, 3, 1)), [_x(1, 2, 5, 7, 4)]),
    OpCase("adaptive_avg_pool3d_global", nn.AdaptiveAvgPool3d(1), [_x(1, 2, 5, 7, 4)]),
    # adaptive max pool
    OpCase("adaptive_max_pool2d", nn.AdaptiveMaxPool2d((2, 3)), [_x(1, 4, 8, 9)]),
    OpCase(
        "adaptive_max_pool2d_global_dynamic",
        nn.AdaptiveMaxPool2d(1),
        [_x(2, 4, 5, 5)],
        dynamic=[{0: (1, 8), 2: (2, 32)}],
        more_inputs=[[_x(3, 4, 9, 5)]],
    ),
    OpCase(
        "adaptive_max_pool2d_indices",
        nn.AdaptiveMaxPool2d(2, return_indices=True),
        [_x(2, 3, 6, 4)],
    ),
    OpCase("adaptive_max_pool2d_fp16", nn.AdaptiveMaxPool2d(2), [_x(1, 4, 8, 8).half()]),
    OpCase("adaptive_max_pool1d", nn.AdaptiveMaxPool1d(4), [_x(2, 3, 8)]),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_pooling_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)


def _node(module: nn.Module, x: torch.Tensor, target: torch._ops.OpOverload) -> torch.fx.Node:
    gm = lower(torch.export.export(module.eval(), (x,)), LoweringSettings())[1]
    return next(n for n in gm.graph.nodes if n.target == target)


@pytest.mark.parametrize(
    ("module", "shape", "target"),
    [
        # the sum comes from average x kernel size, which a clipped last window breaks
        (
            nn.AvgPool2d(3, stride=2, ceil_mode=True, divisor_override=4),
            (1, 2, 8, 8),
            torch.ops.aten.avg_pool2d.default,
        ),
        (nn.AdaptiveMaxPool2d((3, 5)), (1, 2, 7, 7), torch.ops.aten.adaptive_max_pool2d.default),
    ],
    ids=["avg_ceil_divisor_override", "adaptive_max_uneven"],
)
def test_validator_declines_what_onnx_computes_differently(
    module: nn.Module, shape: tuple[int, ...], target: torch._ops.OpOverload
) -> None:
    entry = REGISTRY.get(target)
    assert entry is not None
    assert entry.validator(_node(module, torch.randn(*shape), target)) is not None


def test_adaptive_avg_pool_with_dynamic_spatial_size_is_declined() -> None:
    x = torch.randn(1, 2, 8, 8)
    program = torch.export.export(
        nn.AdaptiveAvgPool2d(2), (x,), dynamic_shapes=({2: torch.export.Dim("h", min=2, max=32)},)
    )
    gm = lower(program, LoweringSettings())[1]
    node = next(n for n in gm.graph.nodes if n.target == torch.ops.aten.adaptive_avg_pool2d.default)
    entry = REGISTRY.get(node.target)
    assert entry is not None and "static" in (entry.validator(node) or "")


def test_global_max_pool_indices_with_dynamic_spatial_size_is_declined() -> None:
    x = torch.randn(1, 2, 8, 8)
    dims = ({2: torch.export.Dim("h", min=2, max=32)},)
    module = nn.AdaptiveMaxPool2d(1, return_indices=True)
    gm = lower(torch.export.export(module, (x,), dynamic_shapes=dims), LoweringSettings())[1]
    node = next(n for n in gm.graph.nodes if n.target == torch.ops.aten.adaptive_max_pool2d.default)
    entry = REGISTRY.get(node.target)
    assert entry is not None and "static" in (entry.validator(node) or "")


def test_global_average_pool_for_one_by_one_output() -> None:
    gm = lower(torch.export.export(nn.AdaptiveAvgPool2d(1), (_x(1, 3, 5, 5),)), LoweringSettings())[
        1
    ]
    assert [n.op_type for n in convert_graph(gm).model.graph] == ["GlobalAveragePool"]


@pytest.mark.parametrize(
    ("module", "shape"),
    [
        (nn.MaxPool1d(3, stride=2, padding=1), (2, 3, 9)),
        (nn.AvgPool1d(2), (3, 9)),
        (nn.AdaptiveAvgPool1d(3), (2, 3, 9)),
        (nn.AdaptiveAvgPool1d(2), (2, 3, 8)),
        (nn.AdaptiveMaxPool1d(4), (2, 3, 8)),
        (nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (1, 3, 8, 8)),
        (nn.AvgPool3d(2), (1, 2, 4, 4, 4)),
    ],
    ids=[
        "max1d",
        "avg1d_unbatched",
        "adaptive_avg1d_uneven",
        "adaptive_avg1d",
        "adaptive_max1d",
        "max2d",
        "avg3d",
    ],
)
def test_pools_are_accepted_by_the_tensorrt_parser(
    module: nn.Module, shape: tuple[int, ...]
) -> None:
    """TensorRT pools only in 2d/3d: 1d pools are emitted as 2d ones over a size-1 axis."""
    gm = lower(torch.export.export(module, (torch.randn(*shape),)), LoweringSettings())[1]
    model = ir.to_proto(convert_graph(gm).model)
    assert check_model(model) == []
