"""Table-driven tests for selection by value, whose output sizes depend on the data: nonzero,
masked_select, boolean-mask indexing and unique. Each row is checked at more than one input,
so the engine returns a different number of elements each time."""

from __future__ import annotations

import pytest
import torch

from compiler.conversion import REGISTRY
from compiler.lowering import LoweringSettings, lower
from tests.compiler.conversion.harness import Fn, OpCase, check_case

torch.manual_seed(0)
R = torch.randn
aten = torch.ops.aten
BATCH = {0: (1, 8)}


def bools(*shape: int, p: float = 0.5) -> torch.Tensor:
    return torch.rand(*shape) < p


def ints(*shape: int, low: int = -3, high: int = 4, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    return torch.randint(low, high, shape).to(dtype)


def sparse(*shape: int) -> torch.Tensor:
    """Floats with about half of them exactly zero."""
    return R(*shape) * bools(*shape)


def _put_mask_rows(x: torch.Tensor, m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` where ``m`` holds, replaced by ``v`` (broadcast): as many rows as ``m`` has."""
    out = x.clone()
    out[m] = v
    return out


CASES = [
    # nonzero / argwhere
    OpCase("nonzero_float_2d", Fn(torch.nonzero), [sparse(3, 4)], more_inputs=[[sparse(3, 4)], [torch.zeros(3, 4)]]),
    OpCase("nonzero_bool_1d", Fn(torch.nonzero), [bools(7)], more_inputs=[[bools(7, p=1.0)]]),
    OpCase("nonzero_int_3d", Fn(torch.nonzero), [ints(2, 3, 4)]),
    OpCase("nonzero_int32", Fn(torch.nonzero), [ints(5, 3, dtype=torch.int32)]),
    OpCase("nonzero_uint8", Fn(torch.nonzero), [ints(4, 4, low=0, high=2, dtype=torch.uint8)]),
    OpCase("nonzero_of_comparison", Fn(lambda x: torch.nonzero(x > 0.5)), [R(4, 5)]),
    OpCase("argwhere", Fn(torch.argwhere), [sparse(3, 5)]),
    OpCase("nonzero_as_tuple", Fn(lambda x: torch.nonzero(x, as_tuple=True)), [sparse(4, 3)]),
    OpCase("nonzero_then_float_math", Fn(lambda x: torch.nonzero(x).float().mean(0)), [sparse(6, 4) + 0.0]),
    OpCase(
        "nonzero_dynamic",
        Fn(torch.nonzero),
        [sparse(3, 4)],
        dynamic=[BATCH],
        more_inputs=[[sparse(7, 4)], [sparse(1, 4)]],
    ),
    OpCase(
        "nonzero_dynamic_two_dims",
        Fn(lambda x: torch.nonzero(x > 0)),
        [R(3, 4)],
        dynamic=[{0: (1, 8), 1: (2, 16)}],
        more_inputs=[[R(6, 11)]],
    ),
    # x[mask]
    OpCase("mask_full_shape", Fn(lambda x, m: x[m]), [R(3, 4), bools(3, 4)], more_inputs=[[R(3, 4), bools(3, 4, p=0.0)]]),
    OpCase("mask_leading_dim", Fn(lambda x, m: x[m]), [R(5, 3), bools(5)]),
    OpCase("mask_leading_two_dims", Fn(lambda x, m: x[m]), [R(2, 3, 4), bools(2, 3)]),
    OpCase("mask_middle_dim", Fn(lambda x, m: x[:, m]), [R(3, 5, 2), bools(5)]),
    OpCase("mask_last_dims", Fn(lambda x, m: x[:, m]), [R(2, 3, 4), bools(3, 4)]),
    OpCase("mask_from_values", Fn(lambda x: x[x > 0]), [R(4, 6)]),
    OpCase("mask_then_sum", Fn(lambda x, m: x[m].sum()), [R(4, 4), bools(4, 4)], atol=1e-5),
    OpCase("mask_then_scale", Fn(lambda x, m: x[m] * 2 + 1), [R(6), bools(6)]),
    OpCase("mask_int_values", Fn(lambda x, m: x[m]), [ints(3, 4), bools(3, 4)]),
    OpCase("mask_fp16", Fn(lambda x, m: x[m]), [R(3, 4).half(), bools(3, 4)]),
    OpCase(
        "mask_dynamic",
        Fn(lambda x, m: x[m]),
        [R(3, 4), bools(3, 4)],
        dynamic=[BATCH, BATCH],
        more_inputs=[[R(8, 4), bools(8, 4)], [R(1, 4), bools(1, 4)]],
    ),
    OpCase(
        "mask_rows_dynamic",
        Fn(lambda x: x[x[:, 0] > 0]),
        [R(5, 3)],
        dynamic=[BATCH],
        more_inputs=[[R(8, 3)]],
    ),
    # x[mask] = v
    OpCase("mask_put_rows", Fn(_put_mask_rows), [R(5, 3), torch.tensor([True, False, True, True, False]), R(3, 3)]),
    OpCase("mask_put_broadcast_row", Fn(_put_mask_rows), [R(4, 3), torch.tensor([False, True, False, True]), R(3)]),
    OpCase("mask_put_elements", Fn(lambda x, m: x.index_put((m,), x[m] * -2)), [R(3, 4), bools(3, 4)]),
    OpCase("mask_put_accumulate", Fn(lambda x, m: x.index_put((m,), x[m] + 1, accumulate=True)), [R(2, 5), bools(2, 5)]),
    OpCase("mask_put_int", Fn(lambda x, m: x.index_put((m,), x[m] // 2)), [ints(4, 4), bools(4, 4)]),
    OpCase(
        "mask_put_dynamic",
        Fn(lambda x: x.index_put((x > 0,), x[x > 0].sqrt())),
        [R(3, 4)],
        dynamic=[BATCH],
        more_inputs=[[R(8, 4)]],
    ),
    # masked_select
    OpCase("masked_select_same_shape", Fn(torch.masked_select), [R(3, 4), bools(3, 4)]),
    OpCase("masked_select_broadcast_mask", Fn(torch.masked_select), [R(3, 4), bools(4)]),
    OpCase("masked_select_broadcast_input", Fn(torch.masked_select), [R(4), bools(3, 4)]),
    OpCase("masked_select_0d_input", Fn(torch.masked_select), [R(()), bools(2, 3)]),
    OpCase("masked_select_int", Fn(torch.masked_select), [ints(5, 2), bools(5, 2)]),
    OpCase(
        "masked_select_dynamic",
        Fn(torch.masked_select),
        [R(3, 4), bools(3, 4)],
        dynamic=[BATCH, BATCH],
        more_inputs=[[R(6, 4), bools(6, 4)]],
    ),
    # unique (sorted)
    OpCase("unique_int", Fn(torch.unique), [ints(4, 5)], more_inputs=[[ints(4, 5, low=0, high=1)]]),
    OpCase("unique_inverse_counts", Fn(lambda x: torch.unique(x, return_inverse=True, return_counts=True)), [ints(3, 6)]),
    OpCase("unique_counts_only", Fn(lambda x: torch.unique(x, return_counts=True)), [ints(10)]),
    OpCase("unique_inverse_only", Fn(lambda x: torch.unique(x, return_inverse=True)), [ints(2, 3, 2)]),
    OpCase("unique_int32", Fn(lambda x: torch.unique(x, return_counts=True)), [ints(12, dtype=torch.int32)]),
    OpCase("unique_bool", Fn(torch.unique), [bools(3, 3)]),
    OpCase("unique_uint8", Fn(torch.unique), [ints(9, low=0, high=5, dtype=torch.uint8)]),
    OpCase("unique_int8", Fn(torch.unique), [ints(9, dtype=torch.int8)]),
    OpCase("unique_0d", Fn(lambda x: torch.unique(x, return_inverse=True)), [torch.tensor(3)]),
    OpCase(
        "unique_dynamic",
        Fn(lambda x: torch.unique(x, return_inverse=True, return_counts=True)),
        [ints(3, 4)],
        dynamic=[BATCH],
        more_inputs=[[ints(8, 4, low=-20, high=20)]],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_selection_op_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)


def _reason(fn: object, *inputs: torch.Tensor) -> str | None:
    program = torch.export.export(Fn(fn), inputs)
    _, gm, _ = lower(program, LoweringSettings())
    (node,) = [n for n in gm.graph.nodes if n.op == "call_function" and n.target in REGISTRY and n.target.__module__ != "_operator"]
    entry = REGISTRY.get(node.target)
    assert entry is not None
    return entry.validator(node)


def test_unique_of_floats_is_declined_for_its_nan_order() -> None:
    assert "NaN" in str(_reason(torch.unique, R(6)))


def test_unsorted_unique_is_declined() -> None:
    assert "sorted=False" in str(_reason(lambda x: torch.unique(x, sorted=False), ints(6)))


def test_a_mask_together_with_an_index_tensor_is_declined() -> None:
    reason = _reason(lambda x, m, i: x[m, i], R(3, 4), bools(3), torch.tensor([1]))
    assert "other index tensors" in str(reason)


def test_nonzero_of_a_0d_tensor_is_declined() -> None:
    assert "0-d" in str(_reason(torch.nonzero, torch.tensor(2.0)))
