"""The table harness holds every converter to the ONNX ops its registry entry declares."""

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
from tests.compiler.conversion.harness import Fn, check_declared_ops


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
