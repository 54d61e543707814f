"""Table-driven tests for upsampling / ``F.interpolate`` converters (ONNX Resize)."""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
import pytest
import torch
import torch.nn.functional as F

from compiler.backends.tensorrt_ops import check_model
from compiler.conversion import REGISTRY, convert_graph
from compiler.lowering import LoweringSettings, lower
from tests.compiler.conversion.harness import Fn, OpCase, check_case

torch.manual_seed(0)
aten = torch.ops.aten


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


def interp(**kwargs: Any) -> Fn:
    return Fn(lambda x: F.interpolate(x, **kwargs))


FP16 = {"atol": 1e-2, "rtol": 1e-2}

CASES = [
    # nearest (legacy PyTorch rule: floor(dst * in / out))
    OpCase("nearest2d_scale", interp(scale_factor=2), [_x(1, 2, 4, 5)]),
    OpCase("nearest2d_scale_per_axis", interp(scale_factor=(2, 3)), [_x(1, 2, 4, 5)]),
    OpCase("nearest2d_fractional_scale", interp(scale_factor=1.7), [_x(1, 2, 5, 6)]),
    OpCase("nearest2d_downscale", interp(scale_factor=0.5), [_x(1, 2, 8, 7)]),
    OpCase("nearest2d_size", interp(size=(7, 9)), [_x(1, 2, 4, 5)]),
    OpCase("nearest2d_size_downsample", interp(size=(3, 2)), [_x(2, 2, 7, 5)]),
    OpCase(
        "nearest2d_recompute_scale",
        interp(scale_factor=1.5, recompute_scale_factor=True),
        [_x(1, 2, 5, 5)],
    ),
    OpCase(
        "nearest2d_default_overload",
        Fn(lambda x: aten.upsample_nearest2d.default(x, [8, 10])),
        [_x(1, 2, 4, 5)],
    ),
    OpCase(
        "nearest2d_default_overload_scales",
        Fn(lambda x: aten.upsample_nearest2d.default(x, [6, 7], 1.5, 1.5)),
        [_x(1, 2, 4, 5)],
    ),
    OpCase(
        "nearest2d_dynamic_batch_and_spatial",
        interp(scale_factor=2),
        [_x(2, 3, 4, 5)],
        dynamic=[{0: (1, 8), 2: (2, 32), 3: (2, 32)}],
        more_inputs=[[_x(3, 3, 7, 3)]],
    ),
    OpCase("nearest2d_fp16", interp(scale_factor=2), [_x(1, 2, 4, 5).half()]),
    OpCase(
        "nearest2d_uint8",
        interp(scale_factor=2),
        [torch.randint(0, 255, (1, 3, 4, 4), dtype=torch.uint8)],
    ),
    OpCase("nearest1d", interp(scale_factor=3), [_x(2, 3, 5)]),
    OpCase("nearest1d_size", interp(size=7), [_x(2, 3, 5)]),
    OpCase(
        "nearest1d_default_overload",
        Fn(lambda x: aten.upsample_nearest1d.default(x, [11])),
        [_x(2, 3, 5)],
    ),
    OpCase("nearest3d", interp(scale_factor=(1, 2, 2)), [_x(1, 2, 3, 4, 4)]),
    # nearest-exact (floor((dst + 0.5) * in / out))
    OpCase("nearest_exact2d_scale", interp(scale_factor=2, mode="nearest-exact"), [_x(1, 2, 4, 5)]),
    OpCase("nearest_exact2d_size", interp(size=(7, 3), mode="nearest-exact"), [_x(1, 2, 4, 5)]),
    OpCase(
        "nearest_exact2d_fractional",
        interp(scale_factor=1.7, mode="nearest-exact"),
        [_x(1, 2, 5, 6)],
    ),
    OpCase("nearest_exact1d", interp(size=9, mode="nearest-exact"), [_x(1, 2, 5)]),
    OpCase(
        "nearest_exact2d_default_overload",
        Fn(lambda x: aten._upsample_nearest_exact2d.default(x, [7, 9])),
        [_x(1, 2, 4, 5)],
    ),
    OpCase("nearest_exact3d", interp(scale_factor=2, mode="nearest-exact"), [_x(1, 1, 2, 3, 3)]),
    # bilinear, align_corners False / True
    OpCase("bilinear_scale", interp(scale_factor=2, mode="bilinear"), [_x(1, 2, 4, 5)]),
    OpCase(
        "bilinear_fractional_scale", interp(scale_factor=1.7, mode="bilinear"), [_x(1, 2, 5, 6)]
    ),
    OpCase("bilinear_downscale", interp(scale_factor=0.5, mode="bilinear"), [_x(1, 2, 8, 6)]),
    OpCase("bilinear_size", interp(size=(7, 3), mode="bilinear"), [_x(1, 2, 4, 5)]),
    OpCase("bilinear_size_one", interp(size=(1, 3), mode="bilinear"), [_x(1, 2, 4, 5)]),
    OpCase(
        "bilinear_align_corners_scale",
        interp(scale_factor=2, mode="bilinear", align_corners=True),
        [_x(1, 2, 4, 5)],
    ),
    OpCase(
        "bilinear_align_corners_size",
        interp(size=(7, 3), mode="bilinear", align_corners=True),
        [_x(1, 2, 4, 5)],
    ),
    OpCase(
        "bilinear_align_corners_size_one",
        interp(size=(1, 4), mode="bilinear", align_corners=True),
        [_x(1, 2, 4, 5)],
    ),
    OpCase(
        "bilinear_dynamic_batch_and_spatial",
        interp(scale_factor=2, mode="bilinear"),
        [_x(2, 3, 4, 5)],
        dynamic=[{0: (1, 8), 2: (2, 32), 3: (2, 32)}],
        more_inputs=[[_x(3, 3, 7, 3)]],
    ),
    OpCase(
        "bilinear_size_dynamic_batch",
        interp(size=(6, 6), mode="bilinear", align_corners=True),
        [_x(2, 3, 4, 5)],
        dynamic=[{0: (1, 8)}],
        more_inputs=[[_x(5, 3, 4, 5)]],
    ),
    OpCase(
        "bilinear_fp16", interp(scale_factor=2, mode="bilinear"), [_x(1, 2, 4, 5).half()], **FP16
    ),
    OpCase("linear1d", interp(scale_factor=2.5, mode="linear"), [_x(2, 3, 5)]),
    OpCase(
        "linear1d_default_overload",
        Fn(lambda x: aten.upsample_linear1d.default(x, [8], False)),
        [_x(2, 3, 5)],
    ),
    OpCase(
        "linear1d_default_overload_scale",
        Fn(lambda x: aten.upsample_linear1d.default(x, [7], False, 1.5)),
        [_x(2, 3, 5)],
    ),
    OpCase(
        "linear1d_align_corners", interp(size=9, mode="linear", align_corners=True), [_x(2, 3, 5)]
    ),
    OpCase("trilinear3d", interp(scale_factor=2, mode="trilinear"), [_x(1, 2, 2, 3, 3)]),
    OpCase(
        "trilinear3d_default_overload_scales",
        Fn(lambda x: aten.upsample_trilinear3d.default(x, [4, 4, 7], False, 2.0, 2.0, 1.5)),
        [_x(1, 2, 2, 2, 5)],
    ),
    OpCase(
        "trilinear3d_align_corners",
        interp(size=(3, 5, 4), mode="trilinear", align_corners=True),
        [_x(1, 2, 2, 3, 3)],
    ),
    # bicubic (A = -0.75, border taps clamped)
    OpCase("bicubic_scale", interp(scale_factor=2, mode="bicubic"), [_x(1, 2, 4, 5)], atol=1e-5),
    OpCase("bicubic_size", interp(size=(9, 4), mode="bicubic"), [_x(1, 2, 5, 6)], atol=1e-5),
    OpCase(
        "bicubic_align_corners",
        interp(scale_factor=2, mode="bicubic", align_corners=True),
        [_x(1, 2, 4, 5)],
        atol=1e-5,
    ),
    OpCase("bicubic_fp16", interp(scale_factor=2, mode="bicubic"), [_x(1, 2, 4, 5).half()], **FP16),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_resize_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)


def _resize_node(fn: Any, x: torch.Tensor) -> torch.fx.Node:
    gm = lower(torch.export.export(Fn(fn), (x,)), LoweringSettings())[1]
    return next(n for n in gm.graph.nodes if n.op == "call_function")


def test_scale_factor_keeps_scale_based_coordinate_mapping() -> None:
    gm = lower(
        torch.export.export(interp(scale_factor=1.7, mode="bilinear"), (_x(1, 2, 5, 5),)),
        LoweringSettings(),
    )[1]
    (resize,) = list(convert_graph(gm).model.graph)
    assert resize.op_type == "Resize"
    scales = resize.inputs[2]
    assert scales is not None and scales.const_value is not None
    assert scales.const_value.numpy().tolist() == pytest.approx([1.0, 1.0, 1.7, 1.7])
    assert resize.attributes["coordinate_transformation_mode"].value == "half_pixel"


def test_mixed_scale_and_size_mapping_is_declined() -> None:
    # W: 5 -> 7 with scale 1.5: PyTorch maps with 1/1.5, a size-based Resize would use 5/7
    node = _resize_node(
        lambda x: aten.upsample_trilinear3d.default(x, [4, 7, 7], False, 2.0, 1.5, None),
        _x(1, 2, 2, 5, 5),
    )
    entry = REGISTRY.get(node.target)
    assert entry is not None and entry.validator(node) is not None


def test_antialiased_bilinear_is_not_claimed() -> None:
    # antialiased resampling is not converted (not verified against Resize antialias=1)
    assert REGISTRY.get(aten._upsample_bilinear2d_aa.vec) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scale_factor": 2},
        {"size": (5, 7), "mode": "nearest-exact"},
        {"scale_factor": 1.5, "mode": "bilinear"},
        {"size": (6, 6), "mode": "bilinear", "align_corners": True},
    ],
    ids=["nearest", "nearest_exact", "bilinear", "bilinear_align_corners"],
)
def test_resize_modes_are_accepted_by_the_tensorrt_parser(kwargs: dict[str, Any]) -> None:
    gm = lower(torch.export.export(interp(**kwargs), (_x(1, 2, 4, 4),)), LoweringSettings())[1]
    assert check_model(ir.to_proto(convert_graph(gm).model)) == []
