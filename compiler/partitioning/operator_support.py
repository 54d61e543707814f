"""Which nodes may go to an engine. The partitioner only asks this class.

First the user's choices: a node stays in PyTorch when the user kept its op
(``torch_executed_ops``) or its submodule (``torch_executed_modules``) there, and size
computations always do, as do nodes with sizes that depend on the values (nonzero's row count)
for a backend whose engines cannot return such outputs (``Backend.data_dependent_shapes``).
Then the backend's form decides. For a backend that consumes ONNX, a
node is supported when a converter exists for its exact overload, that converter's validator
accepts the node, the converter handles dynamic shapes if the node has any, and every ONNX op it
may emit is supported by the backend. A backend that consumes FX graphs is asked about the node
itself (``node_check``). Each refusal is remembered with its reason for the report.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import fx
from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols
from torch.fx.passes.operator_support import OperatorSupportBase

from compiler.conversion.context import fake_of
from compiler.conversion.evaluators import is_symbolic_int_node
from compiler.conversion.registry import ConverterRegistry
from compiler.lowering.passes import FALLBACK_META


def op_name(target: object) -> str:
    """``aten.sort.default`` for an OpOverload, the qualified name for anything else."""
    if isinstance(target, torch._ops.OpOverload):
        return f"{target.namespace}.{target._schema.name.split('::')[-1]}.{target._overloadname}"
    name = getattr(target, "__name__", str(target))
    module = getattr(target, "__module__", "")
    return f"{module}.{name}" if module else name


def has_data_dependent_dims(node: fx.Node) -> bool:
    """Whether ``node``'s output or inputs have a size that depends on the values (an unbacked
    symbol, as torch.export gives ``nonzero``'s row count)."""

    def unbacked(val: object) -> bool:
        if isinstance(val, torch.Tensor):
            return any(isinstance(d, torch.SymInt) and free_unbacked_symbols(d) for d in val.shape)
        if isinstance(val, (list, tuple)):
            return any(unbacked(v) for v in val)
        return False

    return unbacked(fake_of(node)) or any(unbacked(fake_of(a)) for a in node.all_input_nodes)


def _has_dynamic_dims(node: fx.Node) -> bool:
    def dynamic(val: object) -> bool:
        if isinstance(val, torch.Tensor):
            return any(not isinstance(d, int) for d in val.shape)
        if isinstance(val, (list, tuple)):
            return any(dynamic(v) for v in val)
        return False

    return dynamic(fake_of(node)) or any(dynamic(fake_of(a)) for a in node.all_input_nodes)


class RegistryOperatorSupport(OperatorSupportBase):
    def __init__(
        self,
        registry: ConverterRegistry | None,
        backend_ops: frozenset[str] | None,
        backend_name: str,
        torch_executed_ops: Iterable[str] = (),
        dtype_supported: Callable[[torch.dtype], bool] | None = None,
        node_check: Callable[[fx.Node], str | None] | None = None,
        data_dependent_shapes: bool = True,
    ) -> None:
        """``registry`` is the converter registry for ONNX backends; None with ``node_check``
        for backends that take the ATen graph as it is. Without ``data_dependent_shapes``,
        nodes with value-dependent sizes stay in PyTorch."""
        super().__init__()
        if registry is None and node_check is None:
            raise ValueError("give a converter registry or a node_check")
        self.registry = registry
        self.node_check = node_check
        self.backend_ops = backend_ops
        self.backend_name = backend_name
        self.torch_executed_ops = {_normalize_op(o) for o in torch_executed_ops}
        self.dtype_supported = dtype_supported
        self.data_dependent_shapes = data_dependent_shapes
        self.reasons: dict[fx.Node, str] = {}

    def is_node_supported(self, submodules: Mapping[str, torch.nn.Module], node: fx.Node) -> bool:
        reason = self.why_not(node)
        if reason is None:
            return True
        self.reasons[node] = reason
        return False

    def why_not(self, node: fx.Node) -> str | None:
        if node.op != "call_function":
            return f"{node.op} nodes stay in PyTorch"
        if node.target is operator.getitem:
            producer = node.args[0]
            if isinstance(producer, fx.Node) and producer.op == "call_function":
                return self.why_not(producer)
            return "getitem of a non-converted value"
        if FALLBACK_META in node.meta:
            return str(node.meta[FALLBACK_META])
        name = op_name(node.target)
        packet = name.rsplit(".", 1)[0]
        if name in self.torch_executed_ops or packet in self.torch_executed_ops:
            return "listed in torch_executed_ops"
        if is_symbolic_int_node(node):
            # Sizes stay in PyTorch; engines rebuild the ones they need from input shapes.
            return "symbolic size computation"
        if not self.data_dependent_shapes and has_data_dependent_dims(node):
            return f"{self.backend_name} engines cannot return outputs whose size depends on the values"
        entry = None
        if self.registry is not None:
            entry = self.registry.get(node.target)
            if entry is None:
                return "no converter"
        if self.dtype_supported is not None:
            for dtype in _tensor_dtypes(node):
                if not self.dtype_supported(dtype):
                    return f"{self.backend_name} cannot exchange {dtype} tensors"
        if entry is None:
            assert self.node_check is not None
            return self.node_check(node)
        reason = entry.validator(node)
        if reason is not None:
            return reason
        if not entry.dynamic and _has_dynamic_dims(node):
            return "converter needs static shapes"
        if self.backend_ops is not None:
            missing = sorted(entry.onnx_ops - self.backend_ops)
            if missing:
                return f"{self.backend_name} does not support ONNX op(s) {', '.join(missing)}"
        return None

    def unsupported_counts(self, nodes: Iterable[fx.Node]) -> tuple[Counter[str], dict[str, str]]:
        counts: Counter[str] = Counter()
        reasons: dict[str, str] = {}
        for node in nodes:
            reason = self.why_not(node)
            if reason is None or node.target is operator.getitem or is_symbolic_int_node(node):
                continue
            name = op_name(node.target)
            counts[name] += 1
            reasons.setdefault(name, reason)
        return counts, reasons


def _tensor_dtypes(node: fx.Node) -> set[torch.dtype]:
    values = [fake_of(node), *(fake_of(a) for a in node.all_input_nodes)]
    dtypes = set()
    for val in values:
        for leaf in val if isinstance(val, (list, tuple)) else [val]:
            if isinstance(leaf, torch.Tensor):
                dtypes.add(leaf.dtype)
    return dtypes


def _normalize_op(name: str) -> str:
    return name if name.startswith("aten.") or name.count(".") >= 2 else f"aten.{name}"
