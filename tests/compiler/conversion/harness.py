"""Shared harness for table-driven converter tests: export a module, lower it, convert the
whole graph with the registry, run it in ONNX Runtime and compare with eager PyTorch."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import torch
from torch import fx
from torch.utils import _pytree as pytree

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


def check_case(case: OpCase, table: Sequence[Any] | None = None) -> None:
    """Convert ``case``'s lowered graph, run it in ONNX Runtime and compare with eager PyTorch.

    With ``table`` (the test file's rows), the graph comes from one export and lowering shared
    by up to ``BATCH_ROWS`` rows (see ``lowered_graph``)."""
    module = case.module.eval()
    gm = lowered_graph(case, table)
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
    session = ort.InferenceSession(proto.SerializeToString(), _SESSION_OPTIONS, providers=["CPUExecutionProvider"])
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


def _session_options() -> ort.SessionOptions:
    # Rows are tiny graphs run a few times each, two test workers to two cores: a session of
    # one thread that never spins after a run wastes no core on thread pools.
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


_SESSION_OPTIONS = _session_options()


# what convert_graph itself emits outside any converter: an Identity for an output that is an
# input, an initializer or another output
_GRAPH_OPS = frozenset({"Identity"})


@functools.cache
def _targets_by_name() -> dict[str, Any]:
    return {entry.name: entry.target for entry in REGISTRY}


def check_declared_ops(model: ir.Model) -> None:
    """Every ONNX node was emitted for a converter whose registry entry declares its op type (the
    partitioner trusts that declaration), for an evaluator, or by the graph builder."""
    targets = _targets_by_name()
    undeclared: dict[str, set[str]] = {}
    for node in model.graph:
        origin = node.metadata_props.get(ORIGIN_KEY)
        if origin is None:
            allowed = _GRAPH_OPS
        elif origin == EVALUATOR_ORIGIN:
            allowed = EVALUATOR_ONNX_OPS
        else:
            entry = REGISTRY.get(targets[origin])
            assert entry is not None, origin
            allowed = entry.onnx_ops
        if node.op_type not in allowed:
            undeclared.setdefault(origin or "graph", set()).add(node.op_type)
    assert not undeclared, f"ONNX ops emitted but not declared: {undeclared}"


# Rows lowered together, static rows apart from rows with dynamic dims. torch's
# run_decompositions costs ~0.3 s a call whatever the graph (it re-registers thousands of
# composite-op kernels) and export ~0.1 s; one more static row costs ~15 ms. A dynamic row costs
# ~75 ms, more in larger chunks (the constraint solver works over every symbol of the program),
# and it slows the static rows exported with it about twofold (measured on
# test_unary_variants.py: 30.6 s mixed, 14.3 s apart), hence two kinds of chunk.
BATCH_ROWS = 64
DYNAMIC_BATCH_ROWS = 24
_BATCHES: dict[tuple[int, bool, int], list[fx.GraphModule | None]] = {}


def lowered_graph(case: OpCase, table: Sequence[Any] | None = None) -> fx.GraphModule:
    """``case``'s module exported and lowered (``compiler.lowering.lower``), as the compiler
    would, but with its neighbours in ``table``: the rows of a chunk (static rows, or rows with
    dynamic dims) run side by side in one module, that module is exported and lowered once, and
    each row gets the part of the lowered graph that computes its outputs from its inputs. A
    chunk that cannot be lowered whole is bisected; a row that fails alone, or that has marks
    (xfail), is lowered on its own, so its error is its own."""
    dynamic = case.dynamic is not None
    rows = [row for row in _plain_rows(table) if (row.dynamic is not None) == dynamic] if table is not None else []
    index = next((i for i, row in enumerate(rows) if row is case), None)
    if index is None:
        return _lower_rows([case])[0]
    size = DYNAMIC_BATCH_ROWS if dynamic else BATCH_ROWS
    start = index - index % size
    key = (id(table), dynamic, start)
    if key not in _BATCHES:
        _BATCHES[key] = _bisect(rows[start : start + size])
    gm = _BATCHES[key][index - start]
    return gm if gm is not None else _lower_rows([case])[0]


def _plain_rows(table: Sequence[Any]) -> list[OpCase]:
    rows = []
    for row in table:
        if isinstance(row, OpCase):
            rows.append(row)
        elif not row.marks and isinstance(row.values[0], OpCase):  # pytest.param without marks
            rows.append(row.values[0])
    return rows


def _bisect(rows: list[OpCase]) -> list[fx.GraphModule | None]:
    try:
        return list(_lower_rows(rows))
    except Exception:
        if len(rows) == 1:
            return [None]
        half = len(rows) // 2
        return _bisect(rows[:half]) + _bisect(rows[half:])


class _SideBySide(torch.nn.Module):
    """Several rows' modules in one forward over all their inputs, outputs flattened in order."""

    def __init__(self, rows: Sequence[OpCase]) -> None:
        super().__init__()
        self.rows = torch.nn.ModuleList([row.module.eval() for row in rows])
        self.arity = [len(row.inputs) for row in rows]

    def forward(self, *flat: torch.Tensor) -> tuple[Any, ...]:
        outputs: list[Any] = []
        position = 0
        for module, arity in zip(self.rows, self.arity, strict=True):
            outputs.extend(pytree.tree_leaves(module(*flat[position : position + arity])))
            position += arity
        return tuple(outputs)


def _lower_rows(rows: Sequence[OpCase]) -> list[fx.GraphModule]:
    """Export and lower ``rows`` as one program; one graph module per row."""
    # export merges inputs that share storage; rows that share an input tensor must not
    flat_inputs: list[torch.Tensor] = []
    owner: dict[int, int] = {}
    for number, row in enumerate(rows):
        for t in row.inputs:
            storage = t.untyped_storage().data_ptr()
            first = owner.setdefault(storage, number)
            flat_inputs.append(t.clone() if first != number else t)
    dynamic: list[dict[int, Any] | None] = []
    for number, row in enumerate(rows):
        # within a row, the same (axis, range) on several inputs is one Dim, as a batch is
        dims: dict[tuple[int, int, int], Any] = {}
        for d in row.dynamic or [None] * len(row.inputs):
            for axis, (lo, hi) in (d or {}).items():
                dims.setdefault((axis, lo, hi), torch.export.Dim(f"r{number}_d{axis}_{lo}_{hi}", min=lo, max=hi))
            dynamic.append(None if d is None else {axis: dims[(axis, lo, hi)] for axis, (lo, hi) in d.items()})
    with torch.no_grad():
        counts = [len(pytree.tree_leaves(row.module.eval()(*row.inputs))) for row in rows]
    together = _SideBySide(rows)
    dynamic_shapes = (tuple(dynamic),) if any(d is not None for d in dynamic) else None
    program = torch.export.export(together, tuple(flat_inputs), dynamic_shapes=dynamic_shapes)
    _, gm, _ = lower(program, LoweringSettings())
    return _split(gm, [len(row.inputs) for row in rows], counts)


def _split(gm: fx.GraphModule, arities: Sequence[int], counts: Sequence[int]) -> list[fx.GraphModule]:
    """One graph module per row: its placeholders, and every node its outputs depend on. Every
    node of ``gm`` must belong to some row (nothing with side effects only is dropped)."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    output = next(n for n in gm.graph.nodes if n.op == "output")
    leaves = list(output.args[0]) if isinstance(output.args[0], (tuple, list)) else [output.args[0]]
    if len(placeholders) != sum(arities) or len(leaves) != sum(counts):
        raise ValueError("the lowered rows do not have the inputs and outputs their modules have")
    claimed: set[fx.Node] = set()
    parts = []
    first_input = first_output = 0
    for arity, count in zip(arities, counts, strict=True):
        own = placeholders[first_input : first_input + arity]
        outs = leaves[first_output : first_output + count]
        first_input, first_output = first_input + arity, first_output + count
        needed: set[fx.Node] = set()
        stack = [o for o in outs if isinstance(o, fx.Node)]
        while stack:
            node = stack.pop()
            if node not in needed:
                needed.add(node)
                stack.extend(node.all_input_nodes)
        if any(n.op == "placeholder" and n not in own for n in needed):
            raise ValueError("a row's outputs depend on another row's inputs")
        graph = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        for node in gm.graph.nodes:
            if node in own or (node in needed and node.op != "placeholder"):
                env[node] = graph.node_copy(node, env.__getitem__)
        graph.output(tuple(env[o] if isinstance(o, fx.Node) else o for o in outs))
        claimed |= needed
        parts.append(fx.GraphModule(gm, graph))
    unclaimed = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output") and n not in claimed]
    if unclaimed:
        raise ValueError(f"lowered nodes that no row's output uses: {unclaimed}")
    return parts


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
