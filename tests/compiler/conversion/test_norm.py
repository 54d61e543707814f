"""Table-driven tests for normalization converters (batch, layer, group, instance, RMS)."""

from __future__ import annotations

import onnx_ir as ir
import pytest
import torch
from torch import nn

from compiler.backends.tensorrt_ops import check_model
from compiler.conversion import REGISTRY, convert_graph
from compiler.lowering import LoweringSettings, lower
from tests.compiler.conversion.harness import Fn, OpCase, check_case

torch.manual_seed(0)


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


def _randomized(module: nn.Module) -> nn.Module:
    """Non-trivial affine parameters and running statistics, so that every term is tested."""
    with torch.no_grad():
        for name, tensor in module.named_buffers():
            if name.endswith("running_mean"):
                tensor.uniform_(-1, 1)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 2)
        for param in module.parameters():
            param.uniform_(-1.5, 1.5)
    return module


def _half(module: nn.Module) -> nn.Module:
    return _randomized(module).half()


FP16 = {"atol": 1e-2, "rtol": 1e-2}

CASES = [
    # batch norm (eval: running statistics)
    OpCase("batch_norm2d", _randomized(nn.BatchNorm2d(4)), [_x(2, 4, 5, 5)]),
    OpCase(
        "batch_norm2d_no_affine", _randomized(nn.BatchNorm2d(4, affine=False)), [_x(2, 4, 5, 5)]
    ),
    OpCase("batch_norm1d_2d_input", _randomized(nn.BatchNorm1d(4)), [_x(3, 4)]),
    OpCase("batch_norm1d_3d_input", _randomized(nn.BatchNorm1d(4, eps=1e-3)), [_x(3, 4, 6)]),
    OpCase("batch_norm3d", _randomized(nn.BatchNorm3d(3)), [_x(1, 3, 2, 4, 4)]),
    OpCase(
        "batch_norm2d_dynamic_batch_and_spatial",
        _randomized(nn.BatchNorm2d(4)),
        [_x(2, 4, 5, 6)],
        dynamic=[{0: (1, 8), 2: (2, 16)}],
        more_inputs=[[_x(7, 4, 11, 6)]],
    ),
    OpCase("batch_norm2d_fp16", _half(nn.BatchNorm2d(4)), [_x(2, 4, 5, 5).half()], **FP16),
    OpCase(
        "batch_norm_fp16_input_fp32_statistics",
        Fn(
            lambda x, m, v: torch.ops.aten._native_batch_norm_legit_no_training.default(
                x, None, None, m, v, 0.1, 1e-5
            )[0]
        ),
        [_x(2, 4, 5).half(), _x(4), torch.rand(4) + 0.5],
        **FP16,
    ),
    # no running statistics: the batch's own statistics are used even in eval
    OpCase(
        "batch_norm2d_batch_stats",
        _randomized(nn.BatchNorm2d(4, track_running_stats=False)),
        [_x(3, 4, 5, 5)],
        atol=1e-4,
    ),
    OpCase(
        "batch_norm2d_batch_stats_dynamic",
        nn.BatchNorm2d(4, affine=False, track_running_stats=False),
        [_x(3, 4, 5, 5)],
        dynamic=[{0: (2, 8)}],
        more_inputs=[[_x(6, 4, 5, 5)]],
        atol=1e-4,
    ),
    OpCase(
        "native_batch_norm_batch_stats_outputs",
        Fn(lambda x, w, b: torch.native_batch_norm(x, w, b, None, None, True, 0.1, 1e-5)),
        [_x(3, 4, 5), _x(4), _x(4)],
        atol=1e-4,
    ),
    OpCase(
        "native_batch_norm_eval",
        Fn(lambda x, m, v: torch.native_batch_norm(x, None, None, m, v, False, 0.1, 1e-5)[0]),
        [_x(3, 4, 5), _x(4), torch.rand(4) + 0.5],
    ),
    # layer norm
    OpCase("layer_norm_last_dim", _randomized(nn.LayerNorm(8)), [_x(2, 3, 8)]),
    OpCase("layer_norm_last_two_dims", _randomized(nn.LayerNorm([3, 8], eps=1e-6)), [_x(2, 3, 8)]),
    OpCase("layer_norm_no_affine", nn.LayerNorm(8, elementwise_affine=False), [_x(2, 8)]),
    OpCase("layer_norm_no_bias", _randomized(nn.LayerNorm(8, bias=False)), [_x(2, 3, 8)]),
    OpCase(
        "layer_norm_dynamic_batch_and_sequence",
        _randomized(nn.LayerNorm(8)),
        [_x(2, 5, 8)],
        dynamic=[{0: (1, 8), 1: (2, 64)}],
        more_inputs=[[_x(1, 33, 8)]],
    ),
    OpCase("layer_norm_fp16", _half(nn.LayerNorm(8)), [_x(2, 3, 8).half()], **FP16),
    OpCase(
        "native_layer_norm_mean_rstd",
        Fn(lambda x, w, b: torch.native_layer_norm(x, [4, 6], w, b, 1e-5)),
        [_x(2, 4, 6), _x(4, 6), _x(4, 6)],
        atol=1e-4,
    ),
    OpCase(
        "native_layer_norm_mean_rstd_fp16",
        Fn(lambda x: torch.native_layer_norm(x, [6], None, None, 1e-5)),
        [_x(2, 4, 6).half()],
        **FP16,
    ),
    # group norm (per-channel affine, unlike ONNX GroupNormalization before opset 21)
    OpCase("group_norm", _randomized(nn.GroupNorm(2, 6)), [_x(2, 6, 4, 4)], atol=1e-4),
    OpCase("group_norm_no_affine", nn.GroupNorm(3, 6, affine=False), [_x(2, 6, 5)], atol=1e-4),
    OpCase(
        "group_norm_one_group",
        _randomized(nn.GroupNorm(1, 4, eps=1e-3)),
        [_x(2, 4, 3, 3)],
        atol=1e-4,
    ),
    OpCase(
        "group_norm_per_channel_groups",
        _randomized(nn.GroupNorm(4, 4)),
        [_x(1, 4, 2, 3, 3)],
        atol=1e-4,
    ),
    OpCase("group_norm_2d_input", _randomized(nn.GroupNorm(2, 6)), [_x(3, 6)], atol=1e-4),
    OpCase(
        "group_norm_dynamic_batch_and_spatial",
        _randomized(nn.GroupNorm(2, 4)),
        [_x(2, 4, 6, 6)],
        dynamic=[{0: (1, 8), 2: (2, 32), 3: (2, 32)}],
        more_inputs=[[_x(5, 4, 9, 3)]],
        atol=1e-4,
    ),
    OpCase("group_norm_fp16", _half(nn.GroupNorm(2, 4)), [_x(2, 4, 6, 6).half()], **FP16),
    OpCase(
        "native_group_norm_mean_rstd",
        Fn(lambda x, w, b: torch.native_group_norm(x, w, b, 2, 6, 12, 3, 1e-5)),
        [_x(2, 6, 3, 4), _x(6), _x(6)],
        atol=1e-4,
    ),
    # instance norm
    OpCase("instance_norm2d", nn.InstanceNorm2d(3), [_x(2, 3, 5, 5)], atol=1e-4),
    OpCase(
        "instance_norm2d_affine",
        _randomized(nn.InstanceNorm2d(3, affine=True)),
        [_x(2, 3, 5, 5)],
        atol=1e-4,
    ),
    OpCase(
        "instance_norm1d_affine",
        _randomized(nn.InstanceNorm1d(3, affine=True)),
        [_x(2, 3, 7)],
        atol=1e-4,
    ),
    OpCase("instance_norm3d", nn.InstanceNorm3d(2, eps=1e-3), [_x(1, 2, 3, 4, 4)], atol=1e-4),
    OpCase(
        "instance_norm2d_running_stats",
        _randomized(nn.InstanceNorm2d(3, affine=True, track_running_stats=True)),
        [_x(2, 3, 5, 5)],
    ),
    OpCase(
        "instance_norm2d_dynamic",
        _randomized(nn.InstanceNorm2d(3, affine=True)),
        [_x(2, 3, 5, 5)],
        dynamic=[{0: (1, 8), 2: (2, 16), 3: (2, 16)}],
        more_inputs=[[_x(4, 3, 9, 2)]],
        atol=1e-4,
    ),
    OpCase(
        "instance_norm2d_fp16",
        _half(nn.InstanceNorm2d(3, affine=True)),
        [_x(2, 3, 5, 5).half()],
        **FP16,
    ),
    # RMS norm (opset 20 has no RMSNormalization)
    OpCase("rms_norm", _randomized(nn.RMSNorm(8)), [_x(2, 3, 8)]),
    OpCase("rms_norm_eps", _randomized(nn.RMSNorm(8, eps=1e-6)), [_x(2, 3, 8)]),
    OpCase("rms_norm_no_weight", nn.RMSNorm([3, 8], elementwise_affine=False), [_x(2, 3, 8)]),
    OpCase(
        "rms_norm_dynamic",
        _randomized(nn.RMSNorm(8)),
        [_x(2, 5, 8)],
        dynamic=[{0: (1, 4), 1: (2, 64)}],
        more_inputs=[[_x(3, 17, 8)]],
    ),
    OpCase("rms_norm_fp16", _half(nn.RMSNorm(8)), [_x(2, 3, 8).half()], **FP16),
    OpCase(
        "fused_rms_norm_rstd",
        Fn(lambda x, w: torch.ops.aten._fused_rms_norm.default(x, [8], w, 1e-6)),
        [_x(2, 3, 8), _x(8)],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_normalization_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)


def _onnx_ops(module: nn.Module, *inputs: torch.Tensor) -> list[str]:
    program = torch.export.export(module.eval(), inputs)
    gm = lower(program, LoweringSettings())[1]
    return [n.op_type for n in convert_graph(gm).model.graph]


def test_group_norm_does_not_use_per_group_onnx_group_normalization() -> None:
    ops = _onnx_ops(_randomized(nn.GroupNorm(2, 4)), _x(1, 4, 3, 3))
    assert "GroupNormalization" not in ops and "InstanceNormalization" in ops


def test_fused_norms_stay_whole() -> None:
    assert _onnx_ops(_randomized(nn.LayerNorm(8)), _x(2, 8)) == ["LayerNormalization"]
    assert _onnx_ops(_randomized(nn.BatchNorm2d(3)), _x(1, 3, 4, 4)) == ["BatchNormalization"]
    assert _onnx_ops(nn.InstanceNorm2d(3), _x(1, 3, 4, 4)) == ["InstanceNormalization"]


def test_fp16_rms_norm_computes_in_float32() -> None:
    ops = _onnx_ops(_half(nn.RMSNorm(8)), _x(2, 8).half())
    assert ops[0] == "Cast" and ops[-1] == "Cast"
    assert {"Pow", "ReduceMean", "Add", "Sqrt", "Div", "Mul"} <= set(ops)


def test_integer_layer_norm_input_is_declined() -> None:
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    x.meta["val"] = torch.empty(2, 8, dtype=torch.int64)
    node = graph.call_function(torch.ops.aten.native_layer_norm.default, (x, [8], None, None, 1e-5))
    entry = REGISTRY.get(torch.ops.aten.native_layer_norm.default)
    assert entry is not None and entry.validator(node) is not None


@pytest.mark.parametrize(
    ("module", "inputs"),
    [
        (Fn(lambda x: torch.native_layer_norm(x, [6], None, None, 1e-5)), (_x(2, 4, 6),)),
        (
            Fn(lambda x, w, b: torch.native_group_norm(x, w, b, 2, 6, 4, 3, 1e-5)),
            (_x(2, 6, 2, 2), _x(6), _x(6)),
        ),
        (_randomized(nn.BatchNorm2d(4)), (_x(1, 4, 3, 3),)),
        (nn.InstanceNorm2d(3), (_x(1, 3, 4, 4),)),
        (_half(nn.RMSNorm(8)), (_x(2, 8).half(),)),
    ],
    ids=["layer_norm_stats", "group_norm_stats", "batch_norm", "instance_norm", "rms_norm_fp16"],
)
def test_norms_are_accepted_by_the_tensorrt_parser(
    module: nn.Module, inputs: tuple[torch.Tensor, ...]
) -> None:
    """TensorRT imports LayerNormalization's first output only: statistics come from reductions."""
    gm = lower(torch.export.export(module.eval(), inputs), LoweringSettings())[1]
    assert check_model(ir.to_proto(convert_graph(gm).model)) == []
