"""Shared harness for table-driven converter tests: export a module, lower it, convert the
whole graph with the registry, run it in ONNX Runtime and compare with eager PyTorch."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import torch

from compiler.conversion import REGISTRY, convert_graph
from compiler.conversion.context import ORIGIN_KEY
from compiler.conversion.evaluators import (
    EVALUATOR_ONNX_OPS,
    EVALUATOR_ORIGIN,
    is_symbolic_int_node,
)
from compiler.lowering import LoweringSettings, lower


@dataclass
class OpCase:
    """One row of a converter table."""

    id: str
    module: torch.nn.Module
    inputs: Sequence[torch.Tensor]
    # axis -> (min, max) per input, e.g. [{0: (1, 8)}, None]; the op is also run at other sizes
    dynamic: Sequence[dict[int, tuple[int, int]] | None] | None = None
    # extra input sets for the dynamic case (different sizes within the range)
    more_inputs: Sequence[Sequence[torch.Tensor]] = field(default_factory=list)
    atol: float = 1e-5
    rtol: float = 1e-5

    def __str__(self) -> str:
        return self.id


def check_case(case: OpCase) -> None:
    module = case.module.eval()
    dynamic_shapes = None
    if case.dynamic is not None:
        # the same (axis, range) on several inputs is one Dim: they must agree, as a batch does
        dims: dict[tuple[int, int, int], Any] = {}
        for d in case.dynamic:
            for axis, (lo, hi) in (d or {}).items():
                dims.setdefault((axis, lo, hi), torch.export.Dim(f"d{axis}_{lo}_{hi}", min=lo, max=hi))
        dynamic_shapes = tuple(
            None if d is None else {axis: dims[(axis, lo, hi)] for axis, (lo, hi) in d.items()}
            for d in case.dynamic
        )
    if dynamic_shapes is not None and any(
        p.kind == p.VAR_POSITIONAL for p in inspect.signature(module.forward).parameters.values()
    ):
        dynamic_shapes = (dynamic_shapes,)
    program = torch.export.export(module, tuple(case.inputs), dynamic_shapes=dynamic_shapes)
    _, gm, _ = lower(program, LoweringSettings())
    unsupported = []
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target.__module__ == "_operator" or is_symbolic_int_node(node):
            continue
        entry = REGISTRY.get(node.target)
        reason = "no converter" if entry is None else entry.validator(node)
        if reason is None and entry is not None and case.dynamic is not None and not entry.dynamic:
            reason = "converter does not support dynamic shapes"
        if reason is not None:
            unsupported.append(f"{node.target}: {reason}")
    assert not unsupported, f"nodes that would fall back: {unsupported}"
    converted = convert_graph(gm)
    check_declared_ops(converted.model)
    proto = ir.to_proto(converted.model)
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for inputs in [case.inputs, *case.more_inputs]:
        with torch.no_grad():
            expected = module(*inputs)
        expected_list = list(expected) if isinstance(expected, (tuple, list)) else [expected]
        feed = {name: _to_numpy(t) for name, t in zip(converted.input_names, _used_inputs(converted, inputs), strict=True)}
        outputs = session.run(None, feed)
        assert len(outputs) == len(expected_list)
        for got, want in zip(outputs, expected_list, strict=True):
            want_np = _to_numpy(want)
            assert got.shape == want_np.shape, f"{case.id}: shape {got.shape} != {want_np.shape}"
            assert got.dtype == want_np.dtype, f"{case.id}: dtype {got.dtype} != {want_np.dtype}"
            if want_np.dtype == np.bool_ or np.issubdtype(want_np.dtype, np.integer):
                np.testing.assert_array_equal(got, want_np, err_msg=case.id)
            else:
                np.testing.assert_allclose(
                    got.astype(np.float64), want_np.astype(np.float64), atol=case.atol, rtol=case.rtol, err_msg=case.id
                )


# what convert_graph itself emits outside any converter: an Identity for an output that is an
# input, an initializer or another output
_GRAPH_OPS = frozenset({"Identity"})


def check_declared_ops(model: ir.Model) -> None:
    """Every ONNX node was emitted for a converter whose registry entry declares its op type (the
    partitioner trusts that declaration), for an evaluator, or by the graph builder."""
    by_name = {entry.name: entry for entry in REGISTRY}
    undeclared: dict[str, set[str]] = {}
    for node in model.graph:
        origin = node.metadata_props.get(ORIGIN_KEY)
        if origin is None:
            allowed = _GRAPH_OPS
        elif origin == EVALUATOR_ORIGIN:
            allowed = EVALUATOR_ONNX_OPS
        else:
            allowed = by_name[origin].onnx_ops
        if node.op_type not in allowed:
            undeclared.setdefault(origin or "graph", set()).add(node.op_type)
    assert not undeclared, f"ONNX ops emitted but not declared: {undeclared}"


def _used_inputs(converted: Any, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The inputs that became engine inputs (unused ones and integer inputs are not)."""
    if not converted.input_nodes:
        return []
    placeholders = [n for n in converted.input_nodes[0].graph.nodes if n.op == "placeholder"]
    return [inputs[placeholders.index(n)] for n in converted.input_nodes]


class Fn(torch.nn.Module):
    """Wraps a function of tensors as a module, for table rows."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs: torch.Tensor) -> Any:
        return self.fn(*xs)


def _to_numpy(t: Any) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.detach().cpu().numpy()
    return np.asarray(t)
