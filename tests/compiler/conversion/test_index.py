"""Table-driven tests for indexing converters: advanced indexing, gather/scatter, embedding,
functional slice assignment and triangular masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from compiler.conversion import REGISTRY
from compiler.lowering import LoweringSettings, lower
from tests.compiler.conversion.harness import Fn, OpCase, check_case

R = torch.randn
aten = torch.ops.aten


def ints(*shape: int, low: int = -100, high: int = 100) -> torch.Tensor:
    return torch.randint(low, high, shape)


def bools(*shape: int) -> torch.Tensor:
    return torch.rand(*shape) > 0.5


def idx(*values: int) -> torch.Tensor:
    return torch.tensor(values)


BATCH = {0: (1, 8)}
BATCH_SEQ = {0: (1, 8), 1: (2, 64)}


def _put_slice(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    z = x.clone()
    z[:, 1:3] = y
    return z


def _put_strided_slice(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    z = x.clone()
    z[:, -4::2] = y
    return z


def _put_select(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    z = x.clone()
    z[:, -1] = y
    return z


def _put_into_zeros(x: torch.Tensor) -> torch.Tensor:
    z = torch.zeros(x.shape[0], 5, dtype=torch.int64)
    z[:, :2] = x  # copy with a cast to the destination's dtype
    return z


def _put_columns(x: torch.Tensor, i: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    z = x.clone()
    z[:, i] = v
    return z


def _put_rows(x: torch.Tensor, i: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    z = x.clone()
    z[i] = v
    return z


def _put_elements(
    x: torch.Tensor, i: torch.Tensor, j: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    z = x.clone()
    z[i, j] = v
    return z


def _put_separated(
    x: torch.Tensor, i: torch.Tensor, j: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    z = x.clone()
    z[i, :, j] = v
    return z


def _add_columns(x: torch.Tensor, i: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    z = x.clone()
    z.index_put_((torch.arange(x.shape[0])[:, None], i[None, :]), v, accumulate=True)
    return z


def _put_mask_scalar(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    z = x.clone()
    z[m] = -1.5
    return z


CASES = [
    # index.Tensor
    OpCase(
        "index_single_tensor",
        Fn(lambda x, i, j, k: (x[i], x[:, j], x[..., k], x[:, j.int()], x[:, torch.tensor(-1)])),
        [R(4, 5, 3), idx(0, 3, -1), ints(2, 2, low=-5, high=5), idx(2, 0)],
    ),
    OpCase(
        "index_several_tensors",
        Fn(
            lambda x, i, j, k: (
                x[i, j],  # adjacent at the front
                x[:, j, k],  # adjacent after a full slice: index dims stay in place
                x[i, :, k],  # separated by a slice: index dims move to the front
                x[i[:, None], j[None, :]],  # broadcast index tensors
                x[i, j, k],
            )
        ),
        [R(4, 5, 3, 2), idx(0, 3, -1), idx(4, 1, 0), idx(2, 0, -2)],
    ),
    OpCase(
        "index_dtypes",
        Fn(lambda *xs: tuple(x[:, idx(1, 0)] for x in xs[:-1]) + (xs[-1][idx(1, 1), idx(0, 2)],)),
        [R(2, 3).half(), ints(2, 3), ints(2, 3).int(), bools(2, 3), R(3, 3)],
    ),
    OpCase(
        "index_dynamic",
        Fn(lambda x, i: (x[:, i], x[i.clamp(0, 1), i])),
        [R(2, 5), idx(0, 3, 1)],
        dynamic=[None, {0: (1, 16)}],
        more_inputs=[[R(2, 5), idx(4, 4, 0, 1, 2, 3, 4)]],
    ),
    OpCase(
        "index_select",
        Fn(
            lambda x, i: (
                x.index_select(1, i),
                x.index_select(-1, i),
                x.index_select(0, i[1]),
                x.index_select(1, i.int()),
            )
        ),
        [R(3, 5), idx(4, 0, 4)],
    ),
    OpCase(
        "index_select_dtypes",
        Fn(lambda *xs: tuple(x.index_select(0, idx(1, 0, 1)) for x in xs)),
        [R(2, 3).half(), ints(2, 3), bools(2, 3)],
    ),
    OpCase(
        "index_select_dynamic",
        Fn(lambda x, i: x.index_select(0, i)),
        [R(4, 3), idx(1, 2)],
        dynamic=[BATCH, {0: (1, 16)}],
        more_inputs=[[R(7, 3), idx(6, 0, 1, 2, 3, 5, 5)]],
    ),
    # index_put
    OpCase(
        "index_put",
        Fn(
            lambda x, i, j, v: (
                _put_rows(x, i, v[0]),
                _put_rows(x, i, v[0, 0, 0]),  # a scalar value broadcasts
                _put_elements(x, i, j, v[0, :, 0]),
                _put_columns(x, j, v[:, :, 0]),  # index at position 1
            )
        ),
        [R(5, 4), idx(0, -1, 2), idx(3, 1, 0), R(5, 3, 4)],
    ),
    OpCase(
        "index_put_separated_indices",
        Fn(_put_separated),
        [R(4, 3, 5), idx(0, 3), idx(1, 4), R(2, 3)],
    ),
    OpCase(
        "index_put_accumulate_duplicates",
        Fn(lambda x, i, v: (x.index_put((i,), v, accumulate=True), _add_columns(x, i, v))),
        [R(5, 5), idx(1, 1, 3, -1, 1), R(5, 5)],
    ),
    OpCase(
        "index_put_dtypes",
        Fn(
            lambda a, b, c: (
                a.index_put((idx(1),), a[0]),
                b.index_put((idx(0, 1),), b[1]),
                c.index_put((idx(0),), c[1]),
            )
        ),
        [R(2, 3).half(), ints(2, 3), bools(2, 3)],
    ),
    OpCase("index_put_through_setitem", Fn(_put_columns), [R(3, 6), idx(0, 5), R(3, 2)]),
    OpCase("index_put_bool_mask_scalar", Fn(_put_mask_scalar), [R(3, 4), bools(3, 4)]),
    OpCase(
        "index_put_dynamic",
        Fn(_put_columns),
        [R(3, 6), idx(0, 5), R(3, 2)],
        dynamic=[BATCH, None, BATCH],
        more_inputs=[[R(7, 6), idx(2, 4), R(7, 2)]],
    ),
    # gather / take_along_dim
    OpCase(
        "gather",
        Fn(
            lambda x, i: (
                x.gather(1, i),
                x.gather(-1, i),
                x.gather(0, i.clamp(0, 2)),
                x.gather(1, i[:, :1]),
                x.gather(1, i.int()),
            )
        ),
        [R(3, 5), ints(3, 4, low=0, high=5)],
    ),
    OpCase(
        "gather_dtypes",
        Fn(lambda *xs: tuple(x.gather(1, idx(0, 2, 1).view(1, 3).expand(2, 3)) for x in xs)),
        [R(2, 3).half(), ints(2, 3), bools(2, 3)],
    ),
    OpCase(
        "gather_dynamic",
        Fn(lambda x, i: x.gather(1, i)),
        [R(2, 5), ints(2, 3, low=0, high=5)],
        dynamic=[BATCH, BATCH],
        more_inputs=[[R(6, 5), ints(6, 3, low=0, high=5)]],
    ),
    OpCase(
        "take_along_dim",
        Fn(
            lambda x, i, j: (
                torch.take_along_dim(x, i, 1),
                torch.take_along_dim(x, i, -1),
                torch.take_along_dim(x, j),  # flattened
                torch.take_along_dim(x, i[:1], 1),  # indices broadcast over rows
                torch.take_along_dim(x[:, :1], i, 0),  # self broadcast over columns
            )
        ),
        [R(3, 5), ints(3, 2, low=0, high=3), ints(4, low=0, high=15)],
    ),
    # scatter family
    OpCase(
        "scatter",
        Fn(
            lambda x, i, s: (
                x.scatter(1, i, s),
                x.scatter(-1, i, 2.5),
                x.scatter(1, i[:, :1], s),  # src larger than index: only its leading block is read
                x.scatter(1, i, s, reduce="add"),
                x.scatter(1, i, 3.0, reduce="multiply"),
                x.scatter_add(1, i, s),
            )
        ),
        [R(3, 5), torch.stack([torch.randperm(5)[:2] for _ in range(3)]), R(3, 2)],
    ),
    OpCase(
        "scatter_reduce",
        Fn(
            lambda x, i, s: (
                x.scatter_reduce(1, i, s, "sum"),
                x.scatter_reduce(1, i, s, "prod"),
                x.scatter_reduce(1, i, s, "amax"),
                x.scatter_reduce(0, i.clamp(0, 2), s, "amin"),
            )
        ),
        [R(3, 5), ints(3, 4, low=0, high=5), R(3, 4)],
    ),
    OpCase(
        "scatter_dtypes",
        Fn(
            lambda a, b, c: (
                a.scatter(0, idx(1, 0).view(2, 1), 1.0),
                b.scatter_add(0, idx(1, 1, 0), b),
                c.scatter(0, idx(2), True),
            )
        ),
        [R(2, 3).half(), ints(3), bools(3)],
    ),
    OpCase(
        "scatter_dynamic",
        Fn(lambda x, i, s: (x.scatter(1, i, s), x.scatter_add(1, i, s), x.scatter(1, i, 0.0))),
        [R(2, 5), ints(2, 3, low=0, high=5), R(2, 3)],
        dynamic=[BATCH, BATCH, BATCH],
        more_inputs=[[R(6, 5), ints(6, 3, low=0, high=5), R(6, 3)]],
    ),
    # embedding
    OpCase(
        "embedding",
        Fn(
            lambda w, i: (
                F.embedding(i, w),
                F.embedding(i, w, padding_idx=0),
                F.embedding(i[0, 0], w),
            )
        ),
        [R(10, 4), ints(2, 3, low=0, high=10)],
    ),
    OpCase(
        "embedding_dtypes",
        Fn(
            lambda w16, i32: (
                F.embedding(i32, w16),
                torch.nn.functional.embedding(i32.long(), w16.float()),
            )
        ),
        [R(10, 4).half(), ints(2, 3, low=0, high=10).int()],
    ),
    OpCase(
        "embedding_dynamic_batch_and_sequence",
        torch.nn.Embedding(30, 8),
        [ints(2, 5, low=0, high=30)],
        dynamic=[BATCH_SEQ],
        more_inputs=[[ints(8, 64, low=0, high=30)], [ints(1, 2, low=0, high=30)]],
    ),
    # functional assignment: slice_scatter / select_scatter / copy
    OpCase(
        "slice_and_select_scatter",
        Fn(
            lambda x, y, z: (
                _put_slice(x, y),
                _put_strided_slice(x, y),
                _put_select(x, z),
                _put_into_zeros(y.long()),
            )
        ),
        [R(3, 6), R(3, 2), R(3)],
    ),
    OpCase(
        "slice_scatter_dynamic",
        Fn(lambda x, y: (_put_slice(x, y), _put_select(x, y[:, 0]), _put_into_zeros(y.long()))),
        [R(3, 6), R(3, 2)],
        dynamic=[BATCH, BATCH],
        more_inputs=[[R(7, 6), R(7, 2)]],
    ),
    # tril / triu
    OpCase(
        "tril_triu",
        Fn(
            lambda x: (
                x.tril(),
                x.triu(),
                x.tril(1),
                x.triu(-1),
                x[0].tril(-2),
                x.transpose(1, 2).triu(2),
            )
        ),
        [R(2, 4, 5)],
    ),
    OpCase(
        "tril_triu_int64",
        Fn(lambda x: (x.tril(), x.triu(1))),
        [ints(4, 4)],
    ),
    OpCase(
        "tril_triu_bool_fp16",
        Fn(lambda b, h: (b.tril(), b.triu(1), h.tril(), h.triu(-1))),
        [bools(4, 4), R(4, 4).half()],
    ),
    OpCase(
        "causal_mask_dynamic",  # GPT-2 style: ones(s, s).tril() over a dynamic sequence
        Fn(
            lambda x: (
                x[:, None, :] * torch.ones(x.shape[1], x.shape[1]).tril(),
                x[:, :, None].expand(-1, -1, x.shape[1]).triu(1),
            )
        ),
        [R(2, 5)],
        dynamic=[{1: (2, 64)}],
        more_inputs=[[R(2, 9)]],
    ),
]


# scatter(..., reduce=) is deprecated but still in models; the row covers it on purpose
@pytest.mark.filterwarnings("ignore:The reduce argument of torch.scatter:UserWarning")
@pytest.mark.parametrize("case", CASES, ids=str)
def test_index_op_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)


def _nodes_of(
    module: torch.nn.Module, inputs: list[torch.Tensor], target: object
) -> list[torch.fx.Node]:
    program = torch.export.export(module, tuple(inputs))
    _, gm, _ = lower(program, LoweringSettings())
    return [n for n in gm.graph.nodes if n.target == target]


def _reason(node: torch.fx.Node) -> str | None:
    entry = REGISTRY.get(node.target)
    assert entry is not None
    return entry.validator(node)


def test_boolean_mask_index_converts() -> None:
    # x[mask] converts (tests/compiler/conversion/test_selection.py has its rows)
    (node,) = _nodes_of(Fn(lambda x, m: x[m]), [R(3, 4), bools(3, 4)], aten.index.Tensor)
    assert _reason(node) is None


def _put_mask_columns(x: torch.Tensor, m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    z = x.clone()
    z[:, m] = v
    return z


def test_boolean_mask_index_put_past_dim_0_is_declined() -> None:
    (node,) = _nodes_of(Fn(_put_mask_columns), [R(3, 4), idx(1, 0, 1, 0).bool(), R(3, 1)], aten.index_put.default)
    assert "past dim 0" in str(_reason(node))


def test_scatter_reduce_mean_and_exclusive_self_are_declined() -> None:
    inputs = [R(3, 5), ints(3, 2, low=0, high=5), R(3, 2)]
    (mean,) = _nodes_of(
        Fn(lambda x, i, s: x.scatter_reduce(1, i, s, "mean")), inputs, aten.scatter_reduce.two
    )
    (excl,) = _nodes_of(
        Fn(lambda x, i, s: x.scatter_reduce(1, i, s, "sum", include_self=False)),
        inputs,
        aten.scatter_reduce.two,
    )
    assert "mean" in str(_reason(mean))
    assert "include_self" in str(_reason(excl))
