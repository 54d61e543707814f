"""Table-driven tests for convolution converters (Conv / ConvTranspose)."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compiler.conversion import REGISTRY, convert_graph
from compiler.lowering import LoweringSettings, lower
from tests.compiler.conversion.harness import Fn, OpCase, check_case

torch.manual_seed(0)


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


def _half(module: nn.Module) -> nn.Module:
    return module.half()


CASES = [
    # 2d: the ResNet / MobileNet / EfficientNet shapes of the op
    OpCase("conv2d_bias", nn.Conv2d(3, 4, 3), [_x(1, 3, 8, 8)]),
    OpCase("conv2d_no_bias", nn.Conv2d(3, 4, 3, bias=False), [_x(2, 3, 8, 8)]),
    OpCase("conv2d_stride_padding", nn.Conv2d(3, 4, 3, stride=2, padding=1), [_x(1, 3, 9, 9)]),
    OpCase(
        "conv2d_stride_padding_tuples",
        nn.Conv2d(3, 4, (3, 5), stride=(2, 1), padding=(1, 2)),
        [_x(1, 3, 9, 9)],
    ),
    OpCase("conv2d_dilation", nn.Conv2d(3, 4, 3, dilation=2, padding=2), [_x(1, 3, 10, 10)]),
    OpCase("conv2d_groups", nn.Conv2d(4, 6, 3, groups=2), [_x(1, 4, 7, 7)]),
    OpCase("conv2d_depthwise", nn.Conv2d(4, 4, 3, padding=1, groups=4), [_x(1, 4, 7, 7)]),
    OpCase(
        "conv2d_depthwise_multiplier",
        nn.Conv2d(4, 8, 5, stride=2, padding=2, groups=4),
        [_x(1, 4, 9, 9)],
    ),
    # one-element lists broadcast to every spatial dim in PyTorch (torch.onnx gets this wrong)
    OpCase(
        "conv2d_one_element_lists",
        Fn(lambda x, w: F.conv2d(x, w, stride=[2], padding=[1], dilation=[2])),
        [_x(1, 3, 9, 9), _x(4, 3, 3, 3)],
    ),
    OpCase(
        "_convolution_overload",
        Fn(
            lambda x, w: torch.ops.aten._convolution.default(
                x, w, None, [2], [1], [1], False, [0], 1, False, False, True, True
            )
        ),
        [_x(1, 3, 7, 7), _x(4, 3, 3, 3)],
    ),
    OpCase(
        "conv2d_weight_is_input",
        Fn(lambda x, w, b: F.conv2d(x, w, b, padding=1)),
        [_x(1, 3, 6, 6), _x(4, 3, 3, 3), _x(4)],
    ),
    # unbatched int-padding convs decompose to unsqueeze/convolution/squeeze (shape family);
    # the string-padding overloads stay whole and take the unbatched input themselves
    OpCase("conv2d_unbatched", nn.Conv2d(3, 4, 3), [_x(3, 6, 6)]),
    OpCase("conv2d_valid_unbatched", nn.Conv2d(3, 4, 3, padding="valid"), [_x(3, 6, 6)]),
    # padding modes arrive as a pad op (shape family) and an unpadded convolution
    OpCase(
        "conv2d_padding_mode_reflect",
        nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"),
        [_x(1, 3, 6, 6)],
    ),
    OpCase("conv2d_same_odd_kernel", nn.Conv2d(3, 4, 3, padding="same"), [_x(1, 3, 7, 7)]),
    # an even kernel pads unevenly: one more at the end, in one Conv (no separate Pad)
    OpCase("conv2d_same_even_kernel", nn.Conv2d(3, 4, (4, 2), padding="same"), [_x(1, 3, 7, 6)]),
    OpCase(
        "conv2d_same_dilated",
        nn.Conv2d(3, 4, 4, padding="same", dilation=[2], bias=False),
        [_x(1, 3, 9, 9)],
    ),
    OpCase(
        "conv2d_dynamic_batch_and_spatial",
        nn.Conv2d(3, 4, 3, stride=2, padding=1),
        [_x(2, 3, 8, 10)],
        dynamic=[{0: (1, 8), 2: (4, 32), 3: (4, 32)}],
        more_inputs=[[_x(3, 3, 13, 17)]],
    ),
    OpCase(
        "conv2d_same_dynamic_spatial",
        nn.Conv2d(3, 4, 4, padding="same"),
        [_x(1, 3, 8, 8)],
        dynamic=[{2: (4, 32)}],
        more_inputs=[[_x(1, 3, 11, 8)]],
    ),
    OpCase(
        "conv2d_fp16",
        _half(nn.Conv2d(3, 4, 3, padding=1)),
        [_x(1, 3, 8, 8).half()],
        atol=1e-2,
        rtol=1e-2,
    ),
    # 1d
    OpCase("conv1d_bias", nn.Conv1d(3, 4, 3), [_x(2, 3, 10)]),
    OpCase(
        "conv1d_stride_dilation_groups",
        nn.Conv1d(4, 4, 3, stride=2, dilation=2, padding=1, groups=2, bias=False),
        [_x(1, 4, 11)],
    ),
    OpCase("conv1d_same_even_kernel", nn.Conv1d(3, 4, 4, padding="same"), [_x(1, 3, 9)]),
    OpCase("conv1d_same_unbatched", nn.Conv1d(3, 4, 3, padding="same"), [_x(3, 9)]),
    OpCase(
        "conv1d_int_args",
        Fn(lambda x, w: F.conv1d(x, w, stride=2, padding=1)),
        [_x(1, 3, 9), _x(2, 3, 3)],
    ),
    OpCase(
        "conv1d_dynamic_length",
        nn.Conv1d(3, 4, 3, padding=1),
        [_x(2, 3, 16)],
        dynamic=[{0: (1, 4), 2: (4, 64)}],
        more_inputs=[[_x(3, 3, 37)]],
    ),
    OpCase("conv1d_fp16", _half(nn.Conv1d(3, 4, 3)), [_x(1, 3, 10).half()], atol=1e-2, rtol=1e-2),
    # 3d
    OpCase("conv3d_bias", nn.Conv3d(2, 3, 3, padding=1), [_x(1, 2, 5, 6, 4)]),
    OpCase(
        "conv3d_stride_groups",
        nn.Conv3d(4, 4, (1, 3, 3), stride=(1, 2, 2), groups=2, bias=False),
        [_x(1, 4, 3, 7, 7)],
    ),
    OpCase("conv3d_same", nn.Conv3d(2, 3, 2, padding="same"), [_x(1, 2, 4, 5, 3)]),
    OpCase(
        "conv3d_one_element_list",
        Fn(lambda x, w: F.conv3d(x, w, stride=[2], padding=[1])),
        [_x(1, 2, 5, 5, 5), _x(3, 2, 3, 3, 3)],
    ),
    OpCase(
        "conv3d_dynamic_batch",
        nn.Conv3d(2, 3, 3),
        [_x(2, 2, 5, 5, 5)],
        dynamic=[{0: (1, 4)}],
        more_inputs=[[_x(3, 2, 5, 5, 5)]],
    ),
    OpCase(
        "conv3d_fp16", _half(nn.Conv3d(2, 3, 3)), [_x(1, 2, 5, 5, 5).half()], atol=1e-2, rtol=1e-2
    ),
    # transposed
    OpCase("conv_transpose2d_bias", nn.ConvTranspose2d(3, 4, 3), [_x(1, 3, 5, 5)]),
    OpCase("conv_transpose2d_no_bias", nn.ConvTranspose2d(3, 4, 3, bias=False), [_x(2, 3, 5, 5)]),
    OpCase(
        "conv_transpose2d_stride_padding_output_padding",
        nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1),
        [_x(1, 3, 5, 5)],
    ),
    OpCase(
        "conv_transpose2d_asymmetric",
        nn.ConvTranspose2d(3, 4, (3, 4), stride=(2, 3), padding=(1, 0), output_padding=(0, 2)),
        [_x(1, 3, 5, 4)],
    ),
    OpCase(
        "conv_transpose2d_dilation_groups",
        nn.ConvTranspose2d(4, 6, 3, dilation=2, groups=2),
        [_x(1, 4, 5, 5)],
    ),
    OpCase(
        "conv_transpose2d_depthwise",
        nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1, groups=4),
        [_x(1, 4, 5, 5)],
    ),
    OpCase(
        "conv_transpose2d_one_element_lists",
        Fn(lambda x, w: F.conv_transpose2d(x, w, stride=[2], padding=[1], output_padding=[1])),
        [_x(1, 3, 5, 5), _x(3, 4, 3, 3)],
    ),
    OpCase(
        "conv_transpose2d_dynamic_batch_and_spatial",
        nn.ConvTranspose2d(3, 4, 2, stride=2),
        [_x(2, 3, 4, 6)],
        dynamic=[{0: (1, 8), 2: (2, 16), 3: (2, 16)}],
        more_inputs=[[_x(1, 3, 7, 3)]],
    ),
    OpCase(
        "conv_transpose2d_fp16",
        _half(nn.ConvTranspose2d(3, 4, 3, stride=2)),
        [_x(1, 3, 5, 5).half()],
        atol=1e-2,
        rtol=1e-2,
    ),
    OpCase(
        "conv_transpose1d",
        nn.ConvTranspose1d(3, 4, 3, stride=2, padding=1, output_padding=1),
        [_x(2, 3, 7)],
    ),
    OpCase("conv_transpose1d_unbatched", nn.ConvTranspose1d(3, 4, 3, stride=2), [_x(3, 7)]),
    OpCase(
        "conv_transpose3d",
        nn.ConvTranspose3d(2, 3, 3, stride=2, padding=1, output_padding=1, bias=False),
        [_x(1, 2, 3, 4, 3)],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_convolution_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)


def _lowered(module: nn.Module, *inputs: torch.Tensor) -> torch.fx.GraphModule:
    program = torch.export.export(module.eval(), inputs)
    return lower(program, LoweringSettings())[1]


def test_uneven_same_padding_is_one_conv_node() -> None:
    gm = _lowered(nn.Conv2d(3, 4, 4, padding="same"), _x(1, 3, 8, 8))
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert targets == [torch.ops.aten.conv2d.padding]
    model = convert_graph(gm).model
    conv = [n for n in model.graph if n.op_type == "Conv"]
    assert len(conv) == 1 and len(list(model.graph)) == 1
    assert list(conv[0].attributes["pads"].value) == [1, 1, 2, 2]


def test_one_element_stride_broadcasts_to_every_spatial_dim() -> None:
    gm = _lowered(
        Fn(lambda x, w: F.conv2d(x, w, stride=[2], padding=[1])), _x(1, 3, 9, 9), _x(4, 3, 3, 3)
    )
    conv = next(n for n in convert_graph(gm).model.graph if n.op_type == "Conv")
    assert list(conv.attributes["strides"].value) == [2, 2]
    assert list(conv.attributes["pads"].value) == [1, 1, 1, 1]


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_mode_leaves_an_unpadded_convolution(mode: str) -> None:
    """The pad of a padding_mode conv belongs to the shape family; the conv itself is ours."""
    gm = _lowered(nn.Conv2d(3, 4, 3, padding=1, padding_mode=mode), _x(1, 3, 6, 6))
    (conv,) = [n for n in gm.graph.nodes if n.target == torch.ops.aten.convolution.default]
    entry = REGISTRY.get(conv.target)
    assert entry is not None and entry.validator(conv) is None
    assert list(conv.args[4]) == [0, 0]


def test_symbolic_stride_is_declined() -> None:
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    w = graph.placeholder("w")
    x.meta["val"] = torch.empty(1, 3, 8, 8)
    w.meta["val"] = torch.empty(4, 3, 3, 3)
    stride = graph.placeholder("s")
    stride.meta["val"] = 2
    node = graph.call_function(
        torch.ops.aten.convolution.default,
        (x, w, None, [stride, stride], [0, 0], [1, 1], False, [0, 0], 1),
    )
    entry = REGISTRY.get(torch.ops.aten.convolution.default)
    assert entry is not None
    reason = entry.validator(node)
    assert reason is not None and "compile-time" in reason


def test_integer_convolution_is_declined() -> None:
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    w = graph.placeholder("w")
    x.meta["val"] = torch.empty(1, 3, 8, 8, dtype=torch.int64)
    w.meta["val"] = torch.empty(4, 3, 3, 3, dtype=torch.int64)
    node = graph.call_function(
        torch.ops.aten.convolution.default, (x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
    )
    entry = REGISTRY.get(torch.ops.aten.convolution.default)
    assert entry is not None and entry.validator(node) is not None


def test_onnx_runtime_fuses_conv_batchnorm_relu(tmp_path: Path) -> None:
    """Conv, BatchNormalization and Relu come out in the form ONNX Runtime folds into one
    convolution (BN parameters as initializers, BN with a single output)."""
    module = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
    with torch.no_grad():
        module[1].running_mean.uniform_(-1, 1)
        module[1].running_var.uniform_(0.5, 2)
    x = _x(1, 3, 8, 8)
    proto = ir.to_proto(convert_graph(_lowered(module, x)).model)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    op_types = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    assert "BatchNormalization" not in op_types and "Relu" not in op_types, op_types
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), module.eval()(x), atol=1e-5, rtol=1e-5)
