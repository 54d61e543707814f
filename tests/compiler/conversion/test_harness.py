"""The table harness itself: it holds every converter to the ONNX ops its registry entry
declares, and lowering rows side by side gives each row the graph it would get alone."""

from __future__ import annotations

import dataclasses
from typing import Any

import onnx_ir as ir
import pytest
import torch

from compiler.conversion import REGISTRY, convert_graph
from compiler.conversion.context import ORIGIN_KEY
from compiler.conversion.evaluators import EVALUATOR_ORIGIN
from compiler.lowering import LoweringSettings, lower
from tests.compiler.conversion import harness
from tests.compiler.conversion.harness import Fn, OpCase, check_declared_ops


def _converted(fn: Any, *inputs: torch.Tensor, dynamic: Any = None) -> ir.Model:
    program = torch.export.export(Fn(fn), inputs, dynamic_shapes=dynamic)
    _, gm, _ = lower(program, LoweringSettings())
    return convert_graph(gm).model


def test_every_emitted_node_names_the_aten_op_it_came_from() -> None:
    model = _converted(lambda x: torch.relu(x).expand(3, -1, -1), torch.randn(1, 4, 5))
    origins = {node.op_type: node.metadata_props.get(ORIGIN_KEY) for node in model.graph}
    assert origins["Relu"] == "aten.relu.default"
    assert origins["Expand"] == "aten.expand.default"


def test_sizes_rebuilt_from_input_shapes_are_evaluator_nodes() -> None:
    batch = torch.export.Dim("batch", min=2, max=16)
    model = _converted(lambda x: torch.arange(x.shape[0] * 2), torch.randn(3, 4), dynamic=(({0: batch},),))
    origins = {node.op_type: node.metadata_props.get(ORIGIN_KEY) for node in model.graph}
    assert origins["Shape"] == origins["Mul"] == EVALUATOR_ORIGIN
    assert origins["Range"] == "aten.arange.default"
    check_declared_ops(model)


def test_an_op_missing_from_the_declaration_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    target = torch.ops.aten.relu.default
    entry = REGISTRY.get(target)
    assert entry is not None
    model = _converted(torch.relu, torch.randn(2, 3))
    check_declared_ops(model)
    narrowed = dataclasses.replace(entry, onnx_ops=entry.onnx_ops - {"Relu"})
    monkeypatch.setitem(REGISTRY._entries, target, [narrowed])
    with pytest.raises(AssertionError, match=r"aten\.relu\.default.*Relu"):
        check_declared_ops(model)


def _calls(gm: torch.fx.GraphModule) -> list[str]:
    return [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]


ROWS = [
    OpCase("linear", torch.nn.Linear(4, 3), [torch.randn(2, 4)]),
    OpCase("shared_input_a", Fn(lambda x: torch.relu(x) * 2), [SHARED := torch.randn(3, 4)]),
    OpCase("shared_input_b", Fn(lambda x: x.sum(0)), [SHARED]),
    OpCase(
        "dynamic",
        Fn(lambda x, y: (x.view(x.shape[0], -1), y + 1)),
        [torch.randn(2, 3, 4), torch.randn(5)],
        dynamic=[{0: (1, 8)}, None],
    ),
    OpCase("dynamic_same_range", Fn(lambda x: x.softmax(-1)), [torch.randn(3, 4)], dynamic=[{0: (1, 8)}]),
]


def test_rows_lowered_side_by_side_get_the_graph_each_gets_alone() -> None:
    together = harness._lower_rows(ROWS)
    for row, gm in zip(ROWS, together, strict=True):
        (alone,) = harness._lower_rows([row])
        assert _calls(gm) == _calls(alone), row.id
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        assert len(placeholders) == len(row.inputs)
    # each dynamic row keeps its own symbol, though the rows' ranges are equal
    dynamic_dims = [fake.shape[0] for gm in together[3:] for fake in [next(iter(gm.graph.nodes)).meta["val"]]]
    assert all(isinstance(d, torch.SymInt) for d in dynamic_dims)
    assert str(dynamic_dims[0]) != str(dynamic_dims[1])


def test_a_table_is_lowered_in_one_batch_and_a_failing_row_only_fails_itself() -> None:
    bad = OpCase("not_exportable", Fn(lambda x: x.numpy()), [torch.randn(2)])
    table = [*ROWS[:2], bad, pytest.param(ROWS[2], marks=pytest.mark.xfail(reason="marked rows run alone"))]
    graphs = harness._bisect(harness._plain_rows(table))
    assert [g is None for g in graphs] == [False, False, True]
    for row in ROWS[:3]:
        harness.check_case(row, table)
    with pytest.raises(Exception):  # noqa: B017  (whatever torch.export raises for it)
        harness.lowered_graph(bad, table)
