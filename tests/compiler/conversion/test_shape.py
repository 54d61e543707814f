"""Table-driven tests for shape and view converters (static and dynamic shapes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import onnx_ir as ir
import pytest
import torch

from compiler.conversion import convert_graph
from compiler.lowering import LoweringSettings, lower
from tests.compiler.conversion.harness import Fn, OpCase, check_case

R = torch.randn


def ints(*shape: int, high: int = 100) -> torch.Tensor:
    return torch.randint(-high, high, shape)


def bools(*shape: int) -> torch.Tensor:
    return torch.rand(*shape) > 0.5


BATCH = {0: (1, 8)}
BATCH_SEQ = {0: (1, 8), 1: (2, 64)}


def each(fn: Callable[[torch.Tensor], Any]) -> Fn:
    """A row that applies one op to every input: one export covers several dtypes."""

    def apply(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs: list[torch.Tensor] = []
        for x in xs:
            out = fn(x)
            outs.extend(out if isinstance(out, tuple) else (out,))
        return tuple(outs)

    return Fn(apply)


def dtypes(*shape: int) -> list[torch.Tensor]:
    return [R(*shape).half(), ints(*shape), ints(*shape).int(), bools(*shape)]


CASES = [
    # dtype rules: every shape op moves elements without looking at them, so one export per
    # group checks float16, int64, int32 and bool together
    OpCase(
        "view_permute_expand_squeeze_dtypes",
        each(
            lambda x: (
                x.view(-1, 2),
                x.permute(2, 0, 1),
                x.transpose(0, 1),
                x[:, :1].expand(-1, 3, -1),
                x[:1].squeeze(0).unsqueeze(-1),
            )
        ),
        dtypes(2, 3, 4),
    ),
    OpCase(
        "cat_split_slice_dtypes",
        each(
            lambda x: (
                torch.cat([x, x], 0),
                torch.stack([x, x], -1),
                *x.split(1),
                *x.unbind(1),
                x[1:, ::2],
                x[:, -1],
            )
        ),
        dtypes(3, 4),
    ),
    OpCase(
        "roll_flip_repeat_dtypes",
        each(lambda x: (x.roll(1, 0), x.flip(1), x.repeat(2, 1, 2), x.tile(2))),
        dtypes(4, 2),
    ),
    # view / reshape / flatten / unflatten (all reach the graph as view)
    OpCase(
        "view_forms",
        Fn(
            lambda x: (
                x.view(3, 8),
                x.view(-1, 4),
                x.flatten(1),
                torch.flatten(x, 0, -2),
                x.unflatten(-1, (2, -1)),
                x.transpose(0, 1).reshape(-1, 2),
                x[:1, :1, :1].view(()),
            )
        ),
        [R(2, 3, 4)],
    ),
    OpCase(
        "view_dynamic",  # (b, s, 8) -> (b, -1), (b, s, 2, 4) [BERT heads], (b*s, 2, 4)
        Fn(
            lambda x: (
                x.view(x.shape[0], -1),
                x.view(x.shape[0], x.shape[1], 2, 4),
                x.view(-1, 2, 4),
            )
        ),
        [R(2, 5, 8)],
        dynamic=[BATCH_SEQ],
        more_inputs=[[R(1, 17, 8)], [R(8, 64, 8)]],
    ),
    OpCase(
        "view_dynamic_two_unknowns",  # (b*s*4,) -> (b, s, 4): two symbolic dims, shape built at run time
        Fn(lambda x, y: x.reshape(-1).view(y.shape[0], y.shape[1], 4)),
        [R(2, 5, 4), R(2, 5)],
        dynamic=[BATCH_SEQ, BATCH_SEQ],
        more_inputs=[[R(3, 9, 4), R(3, 9)]],
    ),
    # permute / transpose / t
    OpCase(
        "permute_forms",
        Fn(
            lambda x, v: (
                x.permute(2, 0, 1),
                x.permute(-1, -3, -2),
                x.transpose(0, 2),
                x.transpose(-1, -2),
                x.mT,
                x[0].t(),
                v.t() * 2,
            )
        ),
        [R(2, 3, 4), R(3)],
    ),
    OpCase(
        "permute_dynamic",
        Fn(lambda x: (x.transpose(1, 2), x.permute(2, 0, 1))),
        [R(2, 3, 4)],
        dynamic=[BATCH_SEQ],
        more_inputs=[[R(5, 9, 4)]],
    ),
    # expand
    OpCase(
        "expand_forms",
        Fn(
            lambda a, b, c, d, e: (
                a.expand(2, 3, 4),
                b.expand(-1, 3, 4),
                c.expand(2, 5, 3),
                d.expand(2, 3),
                a.expand_as(e),
                torch.expand_copy(b, (3, 2, 3, 4)),
            )
        ),
        [R(1, 3, 1), R(2, 1, 4), R(3), torch.tensor(1.5), R(2, 3, 4)],
    ),
    OpCase(
        "expand_dynamic",
        Fn(lambda x, y: (x.expand(-1, 3, -1), y.expand(x.shape[0], 4))),
        [R(2, 1, 4), R(1, 4)],
        dynamic=[BATCH, None],
        more_inputs=[[R(6, 1, 4), R(1, 4)]],
    ),
    OpCase(
        "expand_to_symbolic_size",  # attention mask (b, 1, 1, s) -> (b, 1, s, s)
        Fn(lambda m: m.expand(m.shape[0], 1, m.shape[3], m.shape[3])),
        [R(2, 1, 1, 5)],
        dynamic=[{0: (1, 8), 3: (2, 64)}],
        more_inputs=[[R(3, 1, 1, 11)]],
    ),
    # squeeze / unsqueeze
    OpCase(
        "squeeze_forms",
        Fn(
            lambda x, s: (
                x.squeeze(),
                x.squeeze(-1),
                x.squeeze((0, 2)),
                x.squeeze(1) + 1,  # a non-unit dim is left alone
                s.squeeze(0) + 1,  # 0-d
                x.unsqueeze(1),
                x.unsqueeze(-1),
                s.unsqueeze(0),
                x[:, None],
            )
        ),
        [R(1, 3, 1), torch.tensor(2.0)],
    ),
    OpCase(
        "squeeze_dynamic",
        Fn(lambda x: (x.squeeze(2), x[:, None, None, :, 0])),
        [R(2, 5, 1)],
        dynamic=[BATCH_SEQ],
        more_inputs=[[R(4, 9, 1)]],
    ),
    # cat / stack
    OpCase(
        "cat_forms",
        Fn(
            lambda x, y, z: (
                torch.cat([x, y]),
                torch.cat([x, z], -1),
                torch.cat([x], 0) * 2,
                torch.stack([x, x]),
                torch.stack([x, x], -1),
            )
        ),
        [R(2, 3), R(1, 3), R(2, 1)],
    ),
    OpCase(
        "cat_mixed_dtypes_promote",
        Fn(
            lambda i, f, i32, b: (
                torch.cat([i, f], 1),
                torch.cat([i32, b], 1),
                torch.stack([i, f], 1),
            )
        ),
        [ints(2, 2), R(2, 2), ints(2, 2).int(), bools(2, 2)],
    ),
    OpCase(
        "cat_skips_legacy_empty",
        Fn(lambda x, e: torch.cat([x, e, x], 1)),
        [R(2, 3), torch.zeros(0)],
    ),
    OpCase(
        "cat_dynamic",
        Fn(lambda x, y: (torch.cat([x, y], 1), torch.stack([x, x], 1))),
        [R(2, 3), R(2, 5)],
        dynamic=[BATCH, BATCH],
        more_inputs=[[R(6, 3), R(6, 5)]],
    ),
    OpCase(
        "cat_along_dynamic_axis",  # KV-cache style append along the sequence
        Fn(lambda x, y: torch.cat([x, y], -2)),
        [R(2, 3, 4), R(2, 1, 4)],
        dynamic=[{1: (1, 32)}, None],
        more_inputs=[[R(2, 9, 4), R(2, 1, 4)]],
    ),
    # split / chunk / unbind
    OpCase(
        "split_forms",
        Fn(
            lambda x, y: (
                *x.split(2, 1),
                *y.split(3, -1),
                *x.split([1, 3, 1], 1),
                x.split(8, 1)[0] * 2,
                *y.chunk(3, -1),
                *x.unbind(1),
                *x.unbind(-2),
            )
        ),
        [R(2, 5), R(2, 9)],
    ),
    OpCase(
        "split_dynamic_batch",
        Fn(lambda x: (*x.split([2, 2], 1), *x.chunk(2, -1), *x.unbind(1))),
        [R(2, 4)],
        dynamic=[BATCH],
        more_inputs=[[R(5, 4)]],
    ),
    OpCase(
        "split_dynamic_axis",  # the last piece takes what is left of a dynamic axis
        Fn(lambda x: torch.split(x, [2, x.shape[1] - 2], 1)),
        [R(2, 5)],
        dynamic=[{1: (4, 16)}],
        more_inputs=[[R(2, 11)]],
    ),
    # slice / narrow / select
    OpCase(
        "slice_forms",
        Fn(
            lambda x: (
                x[:, 1:],
                x[:, :3],
                x[:, -3:-1],
                x[:, 1::2],
                x[:, 2:100],
                x[:, :] * 2,
                x[:, 4:2],
                x.narrow(1, 1, 2),
                x.narrow(-1, 0, 3),
                x[:, 1],
                x[:, -1],
                x.select(-1, 0),
                x[-1],
            )
        ),
        [R(3, 6)],
    ),
    OpCase(
        "slice_symbolic_end",  # position embeddings[:seq_len]
        Fn(lambda table, ids: table[: ids.shape[1]] + 0),
        [R(16, 4), ints(2, 5)],
        dynamic=[None, {0: (1, 8), 1: (2, 16)}],
        more_inputs=[[R(16, 4), ints(3, 16)]],
    ),
    OpCase(
        "slice_symbolic_start",
        Fn(lambda x, y: x[:, y.shape[0] :]),
        [R(2, 12), R(3)],
        dynamic=[None, {0: (1, 8)}],
        more_inputs=[[R(2, 12), R(8)]],
    ),
    OpCase(
        "slice_select_dynamic_axis",  # GPT-2 last token hidden[:, -1], BERT CLS hidden[:, 0]
        Fn(lambda x: (x[:, -2:], x[:, -1], x[:, 0], x[:, 1:-1])),
        [R(2, 5, 4)],
        dynamic=[{0: (1, 8), 1: (4, 64)}],
        more_inputs=[[R(7, 30, 4)], [R(1, 4, 4)]],
    ),
    # roll / flip / repeat / tile
    OpCase(
        "roll_forms",
        Fn(
            lambda x, y: (
                x.roll(2, 1),
                x.roll(-1, -1),
                x.roll(7, 1),
                y.roll((1, -2), (0, 2)),
                x.roll(3),
                x.flip(-1),
                y.flip(0, 2),
            )
        ),
        [R(2, 5), R(3, 2, 4)],
    ),
    OpCase(
        "roll_dynamic_axis",  # Swin's shifted windows on a dynamic side
        Fn(lambda x: (x.roll(-2, 1), x.roll(3), x.flip(1))),
        [R(2, 5, 3)],
        dynamic=[{1: (3, 16)}],
        more_inputs=[[R(2, 9, 3)], [R(2, 3, 3)]],
    ),
    OpCase(
        "repeat_forms",
        Fn(
            lambda x: (
                x.repeat(2, 3),
                x.repeat(2, 1, 3),
                x.repeat(1, 1) * 2,
                x.tile(2),
                x.tile((2, 1, 2)),
            )
        ),
        [R(2, 3)],
    ),
    OpCase(
        "repeat_dynamic",
        Fn(lambda x, y: (x.repeat(1, 2), y.repeat(x.shape[0], 1))),
        [R(2, 3), R(1, 3)],
        dynamic=[BATCH, None],
        more_inputs=[[R(5, 3), R(1, 3)]],
    ),

    # ----------------------------------------------------------- diagonal, as_strided, _reshape_copy
    OpCase("diagonal_default", Fn(torch.diagonal), [R(3, 4)]),
    OpCase("diagonal_positive_offset", Fn(lambda x: torch.diagonal(x, 1)), [R(3, 4)]),
    OpCase("diagonal_negative_offset_and_dims", Fn(lambda x: torch.diagonal(x, -1, 2, 0)), [R(4, 2, 3)]),
    OpCase("diagonal_negative_dims", Fn(lambda x: torch.diagonal(x, 0, -1, -2)), [R(2, 3, 5)]),
    OpCase("diagonal_offset_past_the_end_is_empty", Fn(lambda x: torch.diagonal(x, 5)), [R(3, 4)]),
    OpCase("diagonal_int", Fn(lambda x: torch.diagonal(x, 0, 1, 2)), [ints(2, 3, 3)]),
    OpCase(
        "diagonal_dynamic_batch",
        Fn(lambda x: torch.diagonal(x, 1, 1, 2)),
        [R(2, 3, 4)],
        dynamic=[BATCH],
        more_inputs=[[R(5, 3, 4)]],
    ),
    OpCase("as_strided_transposed_window", Fn(lambda x: torch.as_strided(x, (2, 2), (1, 2), 1)), [R(3, 4)]),
    OpCase("as_strided_overlapping_rows", Fn(lambda x: x.as_strided((3, 4), (2, 1))), [R(10)]),
    OpCase("as_strided_of_a_computed_tensor", Fn(lambda x: (x * 2).as_strided((2, 3), (3, 1), 2)), [R(2, 4)]),
    OpCase("as_strided_int_broadcast_stride_0", Fn(lambda x: x.as_strided((3, 2), (0, 1))), [ints(4)]),
    OpCase("reshape_copy", Fn(lambda x: torch.ops.aten._reshape_copy.default(x, [3, -1])), [R(2, 3)]),
    OpCase(
        "reshape_copy_dynamic",
        Fn(lambda x: torch.ops.aten._reshape_copy.default(x, [x.shape[0] * 3, -1])),
        [R(2, 3, 4)],
        dynamic=[BATCH],
        more_inputs=[[R(7, 3, 4)]],
    ),
    OpCase(
        "size_squared_is_rebuilt_from_the_input_shape",
        Fn(lambda x: x.new_ones(x.shape[0] ** 2) * x.sum()),
        [R(2, 3)],
        dynamic=[BATCH],
        more_inputs=[[R(5, 3)]],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_shape_op_matches_eager(case: OpCase) -> None:
    check_case(case, CASES)


def _converted_nodes(
    module: torch.nn.Module, inputs: list[torch.Tensor], dynamic: object
) -> list[ir.Node]:
    program = torch.export.export(module, tuple(inputs), dynamic_shapes=dynamic)
    _, gm, _ = lower(program, LoweringSettings())
    model = convert_graph(gm).model
    return list(model.graph)


def _shape_input_is_constant(nodes: list[ir.Node], op_type: str) -> bool:
    (node,) = [n for n in nodes if n.op_type == op_type]
    shape = node.inputs[1]
    return shape is not None and shape.is_initializer()


def test_dynamic_head_split_reshape_uses_a_constant_shape() -> None:
    batch, seq = torch.export.Dim("batch", min=1, max=8), torch.export.Dim("seq", min=2, max=512)
    nodes = _converted_nodes(
        Fn(lambda x: x.view(x.shape[0], x.shape[1], 2, 4).permute(0, 2, 1, 3)),
        [R(2, 5, 8)],
        (({0: batch, 1: seq},),),
    )
    assert _shape_input_is_constant(nodes, "Reshape")


def test_expand_keeping_symbolic_dims_uses_a_constant_shape() -> None:
    batch = torch.export.Dim("batch", min=1, max=8)
    nodes = _converted_nodes(Fn(lambda x: x.expand(-1, 3, 4)), [R(2, 1, 4)], (({0: batch},),))
    assert _shape_input_is_constant(nodes, "Expand")
