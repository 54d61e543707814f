"""Table-driven tests for padding converters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from compiler.conversion import REGISTRY
from compiler.lowering import LoweringSettings, lower
from tests.compiler.conversion.harness import Fn, OpCase, check_case

R = torch.randn
aten = torch.ops.aten
BATCH = {0: (1, 8)}


def ints(*shape: int) -> torch.Tensor:
    return torch.randint(-100, 100, shape)


CASES = [
    OpCase(
        "constant_pad",
        Fn(
            lambda x: (
                F.pad(x, (1, 2)),
                F.pad(x, (1, 0, 0, 2), value=-1.5),
                F.pad(x, (0, 0, 1, 1, 2, 0)),
                F.pad(x, (-1, 1)),  # negative pads crop
                F.pad(x, [1, 1, 1, 1], value=float("-inf")),
            )
        ),
        [R(2, 3, 4)],
    ),
    OpCase(
        "constant_pad_dtypes",
        Fn(
            lambda h, i, i32, b: (
                F.pad(h, (1, 1), value=2.0),
                F.pad(i, (0, 2), value=7),
                F.pad(i32, (1, 0)),
                F.pad(b, (1, 1)),
            )
        ),
        [R(2, 3).half(), ints(2, 3), ints(2, 3).int(), torch.rand(2, 3) > 0.5],
    ),
    OpCase("constant_pad_nd", torch.nn.ConstantPad2d((1, 2, 0, 1), 0.5), [R(1, 2, 3, 3)]),
    OpCase(
        "reflect_pad",
        Fn(
            lambda x1, x2, x3: (
                F.pad(x1, (2, 1), mode="reflect"),
                F.pad(x2, (1, 2, 2, 1), mode="reflect"),
                F.pad(x3, (1, 1, 0, 1, 1, 0), mode="reflect"),
            )
        ),
        [R(1, 2, 5), R(1, 2, 4, 5), R(1, 1, 3, 3, 3)],
    ),
    OpCase(
        "replicate_pad",
        Fn(
            lambda x1, x2, x3: (
                F.pad(x1, (2, 1), mode="replicate"),
                F.pad(x2, (1, 2, 3, 0), mode="replicate"),
                F.pad(x3, (1, 1, 0, 1, 1, 0), mode="replicate"),
            )
        ),
        [R(1, 2, 5), R(1, 2, 4, 5), R(1, 1, 3, 3, 3)],
    ),
    OpCase(
        "circular_pad",
        Fn(
            lambda x1, x2: (
                F.pad(x1, (2, 1), mode="circular"),
                F.pad(x2, (1, 2, 2, 1), mode="circular"),
            )
        ),
        [R(1, 2, 5), R(1, 2, 4, 5)],
    ),
    OpCase(
        "pad_modules",
        Fn(
            lambda x: (
                torch.nn.ReflectionPad2d(1)(x),
                torch.nn.ReplicationPad2d((1, 0, 2, 0))(x),
                torch.nn.ZeroPad2d((0, 1, 1, 0))(x),
                torch.nn.CircularPad2d(1)(x),
            )
        ),
        [R(1, 2, 4, 4)],
    ),
    OpCase(
        "border_pad_dtypes",
        Fn(
            lambda i, h: (
                F.pad(i, (1, 1), mode="reflect"),
                F.pad(i, (1, 2), mode="replicate"),
                F.pad(h, (2, 1), mode="reflect"),
                F.pad(h, (0, 2), mode="circular"),
            )
        ),
        [ints(1, 2, 4), R(1, 2, 4).half()],
    ),
    OpCase(
        "pad_dynamic",
        Fn(
            lambda x: (
                F.pad(x, (1, 2)),
                F.pad(x, (1, 1, 1, 1), mode="reflect"),
                F.pad(x, (0, 2, 1, 0), mode="replicate"),
                F.pad(x, (1, 1, 2, 0), mode="circular"),
            )
        ),
        [R(2, 3, 4, 5)],
        dynamic=[{0: (1, 8), 2: (3, 32), 3: (3, 32)}],
        more_inputs=[[R(1, 3, 9, 7)], [R(5, 3, 3, 3)]],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_pad_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)


def test_negative_reflect_padding_is_declined() -> None:
    program = torch.export.export(Fn(lambda x: F.pad(x, (-1, 1), mode="replicate")), (R(1, 2, 5),))
    _, gm, _ = lower(program, LoweringSettings())
    (node,) = [n for n in gm.graph.nodes if n.op == "call_function"]
    entry = REGISTRY.get(node.target)
    assert entry is not None
    assert "negative" in str(entry.validator(node))
