"""Table-driven tests for dtype conversion converters (_to_copy, type_as)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from compiler.lowering import LoweringSettings, lower
from tests.compiler.conversion.harness import Fn, OpCase, check_case
from tests.compiler.conversion.test_elementwise import bools, decline_reason, f16, f32, ints

torch.manual_seed(3)
aten = torch.ops.aten
nan, inf = math.nan, math.inf

# no NaN/inf/out-of-range values here: PyTorch leaves float-to-int of those undefined
FRACTIONS = torch.tensor([-2.75, -1.5, -0.5, -0.0, 0.0, 0.25, 1.5, 2.999, 100.7])

CASES = [
    OpCase("float_to_int32_truncates", Fn(lambda x: x.to(torch.int32)), [FRACTIONS]),
    OpCase("float_to_int64_truncates", Fn(lambda x: x.long()), [FRACTIONS]),
    OpCase("float_to_int8", Fn(lambda x: x.to(torch.int8)), [FRACTIONS]),
    OpCase("float_to_bool_nan_is_true", Fn(lambda x: x.bool()), [torch.tensor([nan, 0.0, -0.0, 0.5, -inf])]),
    OpCase("float_to_half", Fn(lambda x: x.half()), [torch.tensor([1e-8, 70000.0, -70000.0, 0.1, nan])]),
    OpCase("float_to_double", Fn(lambda x: x.double()), [f32(2, 3)]),
    OpCase("float_to_bfloat16", Fn(lambda x: x.to(torch.bfloat16).float()), [f32(8)], atol=1e-2, rtol=1e-2),
    OpCase("half_to_float", Fn(lambda x: x.float()), [f16(2, 3)]),
    OpCase("half_to_int", Fn(lambda x: x.int()), [(f16(8) * 10)]),
    OpCase("int_to_float", Fn(lambda x: x.float()), [ints(2, 3)]),
    OpCase("int_to_half", Fn(lambda x: x.half()), [ints(2, 3)]),
    OpCase("int64_to_int32_wraps", Fn(lambda x: x.int()), [torch.tensor([2**40 + 5, -(2**33) - 1, 7])]),
    OpCase("int_to_uint8_wraps", Fn(lambda x: x.to(torch.uint8)), [torch.tensor([-1, 256, 300, 5], dtype=torch.int32)]),
    OpCase("int_to_bool", Fn(lambda x: x.bool()), [ints(8, low=-2, high=3)]),
    OpCase("bool_to_float", Fn(lambda m: m.float()), [bools(6)]),
    OpCase("bool_to_int64", Fn(lambda m: m.long()), [bools(6)]),
    OpCase("type_dtype", Fn(lambda x: x.type(torch.int32)), [FRACTIONS]),
    OpCase("to_dtype_kwarg", Fn(lambda x: x.to(dtype=torch.float16)), [f32(2, 3)]),
    OpCase("type_as", Fn(lambda x, y: x.type_as(y)), [FRACTIONS, ints(1, dtype=torch.int32)]),
    OpCase("type_as_half", Fn(lambda x, y: x.type_as(y)), [f32(2, 3), f16(1)]),
    OpCase("type_as_bool", Fn(lambda x, y: x.type_as(y)), [f32(2, 3), bools(1)]),
    OpCase(
        "casts_dynamic_batch",
        Fn(lambda x, y: (x.int(), x.half(), x.bool(), x.type_as(y), (x > 0).float())),
        [f32(2, 3) * 5, ints(2, 3)],
        dynamic=[{0: (1, 8)}, {0: (1, 8)}],
        more_inputs=[[f32(6, 3) * 5, ints(6, 3)]],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_cast_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)


def test_to_dtype_reaches_the_graph_as_to_copy() -> None:
    """``Tensor.to(dtype)`` is composite: every form arrives as ``_to_copy`` with a dtype."""
    program = torch.export.export(Fn(lambda x: (x.to(torch.int32), x.float().half())), (f32(3),))
    _, gm, _ = lower(program, LoweringSettings())
    targets = {n.target for n in gm.graph.nodes if n.op == "call_function"}
    assert aten.to.dtype not in targets
    assert aten._to_copy.default in targets


def test_same_dtype_copy_disappears_in_lowering() -> None:
    program = torch.export.export(Fn(lambda x: x.float() + 1), (f32(3),))
    _, gm, _ = lower(program, LoweringSettings())
    assert aten._to_copy.default not in {n.target for n in gm.graph.nodes}


DECLINED = [
    ("to_complex", lambda x: x.to(torch.complex64), [f32(3)], aten._to_copy.default),
    ("from_complex", lambda x: x.to(torch.complex128), [torch.randn(3, dtype=torch.complex64)], aten._to_copy.default),
]


@pytest.mark.parametrize(("name", "fn", "inputs", "target"), DECLINED, ids=[d[0] for d in DECLINED])
def test_validator_declines(name: str, fn: Any, inputs: list[torch.Tensor], target: Any) -> None:
    assert decline_reason(fn, inputs, target) is not None
