"""Table-driven tests for activation converters."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from tests.compiler.conversion.harness import Fn, OpCase, check_case
from tests.compiler.conversion.test_elementwise import decline_reason, f32, ints

torch.manual_seed(2)
aten = torch.ops.aten
nan, inf = math.nan, math.inf

SPECIAL = torch.tensor([nan, inf, -inf, 0.0, -0.0, 0.5, -0.5, 3.0, -3.0, 6.5, -25.0, 25.0])
HALF = dict(atol=2e-3, rtol=2e-3)
DYN = [{0: (1, 8)}]


def spread(*shape: int) -> torch.Tensor:
    """Values across every piece of piecewise activations (|x| up to ~8)."""
    return torch.randn(*shape) * 4


CASES = [
    # ---------------------------------------------------------------- piecewise linear
    OpCase("relu", Fn(torch.relu), [spread(2, 3)]),
    OpCase("relu_special", Fn(torch.relu), [SPECIAL]),
    OpCase("relu_int64", Fn(torch.relu), [ints(8)]),
    OpCase("relu_int16", Fn(torch.relu), [ints(8, dtype=torch.int16)]),
    OpCase("relu6", Fn(F.relu6), [SPECIAL]),
    OpCase("hardtanh_default", Fn(F.hardtanh), [SPECIAL]),
    OpCase("hardtanh_bounds", Fn(lambda x: F.hardtanh(x, -2.0, 3.0)), [spread(2, 3)]),
    OpCase("hardtanh_int", Fn(lambda x: F.hardtanh(x, -2, 3)), [ints(8)]),
    OpCase("leaky_relu_default", Fn(F.leaky_relu), [SPECIAL]),
    OpCase("leaky_relu_slope", Fn(lambda x: F.leaky_relu(x, 0.2)), [spread(2, 3)]),
    OpCase("threshold", Fn(lambda x: F.threshold(x, 0.1, 20.0)), [SPECIAL]),
    OpCase("threshold_int", Fn(lambda x: F.threshold(x, 2, -1)), [ints(8)]),
    OpCase("hardshrink", Fn(F.hardshrink), [SPECIAL]),
    OpCase("hardshrink_lambd", Fn(lambda x: F.hardshrink(x, 3.0)), [SPECIAL]),
    OpCase("softshrink", Fn(F.softshrink), [SPECIAL]),
    OpCase("softshrink_lambd", Fn(lambda x: F.softshrink(x, 3.0)), [SPECIAL]),
    # ---------------------------------------------------------------- smooth
    OpCase("sigmoid", Fn(torch.sigmoid), [SPECIAL]),
    OpCase("sigmoid_int_to_float", Fn(torch.sigmoid), [ints(8)]),
    OpCase("sigmoid_float64", Fn(torch.sigmoid), [f32(8).double()], atol=1e-12, rtol=1e-12),
    OpCase("tanh", Fn(torch.tanh), [SPECIAL]),
    OpCase("tanh_int_to_float", Fn(torch.tanh), [ints(8)]),
    OpCase("gelu", Fn(F.gelu), [spread(2, 3)]),
    OpCase("gelu_tanh", Fn(lambda x: F.gelu(x, approximate="tanh")), [spread(2, 3)]),
    OpCase("silu", Fn(F.silu), [SPECIAL]),
    OpCase("mish", Fn(F.mish), [spread(2, 3)]),
    OpCase("hardswish", Fn(F.hardswish), [SPECIAL]),
    OpCase("hardsigmoid", Fn(F.hardsigmoid), [SPECIAL]),
    OpCase("elu", Fn(F.elu), [SPECIAL]),
    OpCase("elu_alpha", Fn(lambda x: F.elu(x, alpha=0.5)), [spread(2, 3)]),
    OpCase("elu_scales", Fn(lambda x: torch.ops.aten.elu(x, 1.5, 2.0, 0.5)), [spread(2, 3)]),
    OpCase("selu", Fn(F.selu), [SPECIAL]),
    OpCase("celu", Fn(F.celu), [spread(2, 3)]),
    OpCase("celu_alpha", Fn(lambda x: F.celu(x, alpha=2.0)), [spread(2, 3)]),
    OpCase("softplus", Fn(F.softplus), [SPECIAL]),
    OpCase("softplus_beta_threshold", Fn(lambda x: F.softplus(x, beta=2.0, threshold=5.0)), [SPECIAL]),
    OpCase("logsigmoid", Fn(F.logsigmoid), [SPECIAL]),
    OpCase(
        "log_sigmoid_forward",
        Fn(lambda x: torch.ops.aten.log_sigmoid_forward(x)[0]),
        [spread(2, 3)],
    ),
    # ---------------------------------------------------------------- parametric
    OpCase("prelu_module_channels_4d", torch.nn.PReLU(3, init=0.1), [spread(2, 3, 4, 5)]),
    OpCase("prelu_module_single", torch.nn.PReLU(), [spread(2, 3, 4)]),
    OpCase("prelu_functional_2d", Fn(lambda x, w: F.prelu(x, w)), [spread(4, 3), torch.rand(3)]),
    OpCase("prelu_fp16", Fn(lambda x, w: F.prelu(x, w)), [spread(2, 3, 4).half(), torch.rand(3).half()], **HALF),
    OpCase("prelu_kernel", Fn(lambda x, w: torch.ops.aten._prelu_kernel(x, w)), [spread(2, 3, 4), torch.rand(3, 1)]),
    OpCase("glu", Fn(F.glu), [spread(2, 6)]),
    OpCase("glu_dim", Fn(lambda x: F.glu(x, dim=1)), [spread(2, 4, 3)]),
    OpCase(
        "activations_fp16",
        Fn(lambda x: (torch.relu(x), F.relu6(x), F.hardtanh(x), F.leaky_relu(x, 0.2), torch.sigmoid(x), torch.tanh(x),
                      F.gelu(x), F.gelu(x, approximate="tanh"), F.silu(x), F.mish(x), F.hardswish(x),
                      F.hardsigmoid(x), F.elu(x), F.selu(x), F.celu(x, 2.0), F.softplus(x), F.logsigmoid(x),
                      F.glu(x), F.threshold(x, 0.1, 2.0), F.hardshrink(x), F.softshrink(x))),
        [spread(2, 8).half()],
        **HALF,
    ),
    # ---------------------------------------------------------------- dynamic shapes
    OpCase(
        "activations_dynamic_batch",
        Fn(lambda x: (torch.relu(x), F.relu6(x), F.hardtanh(x), F.leaky_relu(x), F.threshold(x, 0.1, 2.0),
                      torch.sigmoid(x), torch.tanh(x), F.gelu(x), F.gelu(x, approximate="tanh"), F.silu(x),
                      F.mish(x), F.hardswish(x), F.hardsigmoid(x), F.elu(x), F.selu(x), F.celu(x, 2.0),
                      F.softplus(x, 2.0, 5.0), F.logsigmoid(x), F.hardshrink(x), F.softshrink(x))),
        [spread(2, 4)],
        dynamic=DYN,
        more_inputs=[[spread(7, 4)]],
    ),
    OpCase(
        "prelu_glu_dynamic_batch",
        Fn(lambda x, w: (F.prelu(x, w), F.glu(x, dim=1))),
        [spread(2, 4, 3), torch.rand(4)],
        dynamic=[{0: (1, 8)}, None],
        more_inputs=[[spread(5, 4, 3), torch.rand(4)]],
    ),

    # --------------------------------------------------------------- native_dropout (eval)
    OpCase("native_dropout_eval_output_and_mask", Fn(lambda x: aten.native_dropout.default(x, 0.5, False)), [spread(3, 4)]),
    OpCase("native_dropout_p0_in_training", Fn(lambda x: aten.native_dropout.default(x, 0.0, True)[0] + 1), [spread(5)]),
    OpCase(
        "native_dropout_eval_dynamic",
        Fn(lambda x: aten.native_dropout.default(x, 0.2, False)),
        [spread(2, 3)],
        dynamic=DYN,
        more_inputs=[[spread(6, 3)]],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_activation_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)


DECLINED = [
    ("gelu_float64_has_no_ort_kernel", F.gelu, [f32(3).double()], aten.gelu.default),
    ("mish_float64_has_no_ort_kernel", F.mish, [f32(3).double()], aten.mish.default),
    ("prelu_float64_has_no_ort_kernel", lambda x, w: F.prelu(x, w), [f32(2, 3).double(), torch.rand(3).double()], aten.prelu.default),
    ("celu_alpha_zero_divides_by_zero", lambda x: F.celu(x, alpha=0.0), [f32(3)], aten.celu.default),
    ("relu_bool", torch.relu, [torch.rand(3) > 0.5], aten.relu.default),
    (
        "native_dropout_in_training_is_random",
        lambda x: aten.native_dropout.default(x, 0.5, True)[0],
        [f32(3)],
        aten.native_dropout.default,
    ),
]


@pytest.mark.parametrize(("name", "fn", "inputs", "target"), DECLINED, ids=[d[0] for d in DECLINED])
def test_validator_declines(name: str, fn: Any, inputs: list[torch.Tensor], target: Any) -> None:
    assert decline_reason(fn, inputs, target) is not None
