"""Table-driven tests for tensor factories, static and with symbolic sizes and bounds."""

from __future__ import annotations

import onnx_ir as ir
import pytest
import torch

from compiler.conversion import convert_graph
from compiler.lowering import LoweringSettings, lower
from tests.compiler.conversion.harness import Fn, OpCase, check_case

R = torch.randn
BATCH = {0: (1, 8)}
SEQ = {1: (2, 512)}


def ids(*shape: int) -> torch.Tensor:
    return torch.randint(0, 100, shape)


def _fill_inplace(x: torch.Tensor) -> torch.Tensor:
    y = torch.empty_like(x)
    y.fill_(2.5)
    return y


def _fill_with_tensor(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    y.fill_(v)
    return y


CASES = [
    # arange
    OpCase(
        "arange_static",
        Fn(
            lambda x: (
                torch.arange(5) + x.long(),
                torch.arange(2, 7) + x.long(),
                torch.arange(1, 10, 3) + x.long(),
                torch.arange(5, 0, -2) + x.long(),
                torch.arange(0, 1, 0.1) + x.mean(),
                torch.arange(5, dtype=torch.float16),
                torch.arange(-1.5, 2.0, 0.5, dtype=torch.float64),
                torch.arange(3, dtype=torch.int32),
            )
        ),
        [R(1)],
    ),
    OpCase("arange_large_static_uses_range", Fn(lambda x: torch.arange(10000) + x.long()), [R(1)]),
    OpCase(
        "arange_symbolic_end",  # GPT-2 position ids: arange(seq_len)
        Fn(
            lambda ids: (
                torch.arange(ids.shape[1]),
                torch.arange(ids.shape[1], dtype=torch.int32),
                torch.arange(0, ids.shape[1], dtype=torch.float32) * 0.5,
                torch.arange(ids.shape[1], dtype=torch.float16),
                torch.arange(ids.shape[1]).unsqueeze(0).expand(ids.shape[0], -1),
            )
        ),
        [ids(2, 7)],
        dynamic=[{0: (1, 8), 1: (2, 512)}],
        more_inputs=[[ids(1, 2)], [ids(8, 512)], [ids(3, 129)]],
    ),
    OpCase(
        "arange_symbolic_start_and_step",  # past_length .. past_length + seq_len
        Fn(
            lambda past, x: (
                torch.arange(past.shape[1], past.shape[1] + x.shape[1]),
                torch.arange(0, x.shape[1], 2),
                torch.arange(past.shape[1], 0, -1),
                torch.arange(0.5, x.shape[1], 1.5),
            )
        ),
        [R(1, 3), R(1, 5)],
        dynamic=[{1: (1, 64)}, {1: (3, 32)}],
        more_inputs=[[R(1, 1), R(1, 3)], [R(1, 64), R(1, 31)]],
    ),
    # full / zeros / ones / empty
    OpCase(
        "full_static",
        Fn(
            lambda x: (
                torch.full((2, 3), 1.5),
                torch.full((2, 3), 7),
                torch.full((2,), True),
                torch.full((2, 3), -2.0, dtype=torch.float16),
                torch.full((3,), 4, dtype=torch.int32),
                torch.zeros(2, 3) + x,
                torch.ones(2, 3, dtype=torch.int64),
                torch.zeros((2, 1), dtype=torch.bool),
                torch.ones(()),
                torch.empty(2, 3).zero_() + x,
                torch.full((2, 3), float("-inf")),
            )
        ),
        [R(2, 3)],
    ),
    OpCase(
        "full_symbolic_size",  # attention masks as large as the input
        Fn(
            lambda x: (
                torch.full((x.shape[0], x.shape[1]), -1e4),
                torch.zeros(x.shape[0], 1, x.shape[1]),
                torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).tril(),
                torch.full((x.shape[0],), x.shape[1]),  # a symbolic fill value
                x.new_zeros(x.shape[0], 4),
                x.new_ones((x.shape[1],)),
                x.new_full((x.shape[0], 2), 3),
            )
        ),
        [R(2, 5)],
        dynamic=[{0: (1, 8), 1: (2, 64)}],
        more_inputs=[[R(7, 13)]],
    ),
    # _like, new_*, fill
    OpCase(
        "like_forms",
        Fn(
            lambda x, i: (
                torch.zeros_like(x),
                torch.ones_like(i),
                torch.full_like(x, 3),
                torch.full_like(i, 2.7),  # truncated to the int dtype
                torch.ones_like(x, dtype=torch.bool),
                torch.zeros_like(x, dtype=torch.float16),
                torch.empty_like(x).zero_(),
                x.new_zeros(2, 2),
                x.new_ones((3,), dtype=torch.int64),
                i.new_full((2,), 5),
                x.new_empty((2, 3)).fill_(1),
                _fill_inplace(x),
                _fill_with_tensor(x, torch.tensor(4.0)),
            )
        ),
        [R(2, 3), ids(4)],
    ),
    OpCase(
        "like_dynamic",
        Fn(
            lambda x: (
                torch.zeros_like(x),
                torch.ones_like(x, dtype=torch.int64),
                torch.full_like(x, -1.0),
                _fill_inplace(x),
            )
        ),
        [R(2, 3)],
        dynamic=[BATCH],
        more_inputs=[[R(6, 3)]],
    ),
    OpCase(
        "scalar_tensor",
        Fn(
            lambda x: (
                x + torch.scalar_tensor(2.0),
                torch.scalar_tensor(3, dtype=torch.int64),
                torch.scalar_tensor(x.shape[0]) * x,
            )
        ),
        [R(2, 3)],
        dynamic=[BATCH],
        more_inputs=[[R(5, 3)]],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_factory_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)


def test_position_ids_over_a_dynamic_sequence_are_computed_at_run_time() -> None:
    seq = torch.export.Dim("seq", min=2, max=512)
    module = Fn(lambda ids: torch.arange(ids.shape[1]).unsqueeze(0))
    program = torch.export.export(module, (ids(1, 7),), dynamic_shapes=(({1: seq},),))
    _, gm, _ = lower(program, LoweringSettings())
    model = convert_graph(gm).model
    assert "Range" in [node.op_type for node in ir.traversal.RecursiveGraphIterator(model.graph)]
