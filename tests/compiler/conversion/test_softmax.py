"""Table-driven tests for softmax converters."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from compiler.conversion import convert_graph
from compiler.lowering import LoweringSettings, lower
from tests.compiler.conversion.harness import Fn, OpCase, check_case

aten = torch.ops.aten
F16 = torch.float16
FP16 = {"atol": 2e-3, "rtol": 2e-3}
NEG_INF = float("-inf")


def _r(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape).to(dtype)


CASES = [
    OpCase("softmax_last", Fn(lambda x: F.softmax(x, -1)), [_r(2, 3, 5)]),
    OpCase("softmax_dim1", Fn(lambda x: torch.softmax(x, 1)), [_r(2, 3, 5)]),
    OpCase("softmax_1d", Fn(lambda x: F.softmax(x, 0)), [_r(5)]),
    OpCase("softmax_0d", Fn(lambda x: torch.softmax(x, 0)), [torch.tensor(0.3)]),
    OpCase("softmax_dtype_arg", Fn(lambda x: F.softmax(x, -1, dtype=torch.float64)), [_r(2, 5)]),
    OpCase("softmax_half_to_float_dtype", Fn(lambda x: F.softmax(x, -1, dtype=torch.float32)), [_r(2, 5, dtype=F16)]),
    OpCase("softmax_fp16", Fn(lambda x: F.softmax(x, -1)), [_r(2, 8, dtype=F16)], **FP16),
    OpCase("softmax_masked_row", Fn(lambda x: F.softmax(x, -1)), [torch.tensor([[0.0, NEG_INF, 1.0], [2.0, 2.0, NEG_INF]])]),
    OpCase(
        "softmax_dynamic",
        Fn(lambda x: F.softmax(x, -1)),
        [_r(2, 4, 16, 16)],
        dynamic=[{0: (1, 8), 2: (16, 512), 3: (16, 512)}],
        more_inputs=[[_r(3, 4, 40, 24)]],
    ),
    # the ATen forms themselves, as decompositions and other exporters leave them
    OpCase("aten_softmax", Fn(lambda x: aten._softmax.default(x, 1, False)), [_r(3, 4)]),
    OpCase("log_softmax_last", Fn(lambda x: F.log_softmax(x, -1)), [_r(2, 3, 5)]),
    OpCase("log_softmax_dim0", Fn(lambda x: torch.log_softmax(x, 0)), [_r(4, 5)]),
    OpCase("log_softmax_dtype_arg", Fn(lambda x: F.log_softmax(x, 1, dtype=torch.float32)), [_r(2, 5, dtype=F16)], **FP16),
    OpCase("log_softmax_fp16", Fn(lambda x: F.log_softmax(x, -1)), [_r(2, 8, dtype=F16)], **FP16),
    OpCase("aten_log_softmax", Fn(lambda x: aten._log_softmax.default(x, -1, False)), [_r(3, 4)]),
    OpCase("log_softmax_dynamic", Fn(lambda x: F.log_softmax(x, -1)), [_r(3, 7)], dynamic=[{0: (1, 8)}], more_inputs=[[_r(8, 7)]]),
    OpCase("safe_softmax", Fn(lambda x: aten._safe_softmax.default(x, -1)), [torch.tensor([[0.0, NEG_INF, 1.0], [NEG_INF, NEG_INF, NEG_INF]])]),
    OpCase("safe_softmax_dtype", Fn(lambda x: aten._safe_softmax.default(x, 0, torch.float32)), [_r(3, 4, dtype=F16)], **FP16),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_softmax_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)


@pytest.mark.parametrize(
    ("op", "reference"),
    [(aten._softmax.default, F.softmax), (aten._log_softmax.default, F.log_softmax)],
    ids=["softmax", "log_softmax"],
)
def test_half_to_float_computes_in_float32(op: torch._ops.OpOverload, reference: object) -> None:
    # eager CPU refuses half_to_float=True, so compare with the float32 computation it stands for
    x = _r(3, 4, dtype=F16)
    program = torch.export.export(Fn(lambda t: op(t, -1, True)), (x,))
    _, gm, _ = lower(program, LoweringSettings())
    converted = convert_graph(gm)
    session = ort.InferenceSession(ir.to_proto(converted.model).SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {converted.input_names[0]: x.numpy()})
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, reference(x.float(), -1).numpy(), atol=1e-6, rtol=1e-6)  # type: ignore[operator]
