"""Split a lowered graph into engine partitions and PyTorch fallback code.

torch.fx's capability-based partitioner proposes maximal acyclic groups of supported nodes; we
drop groups smaller than ``min_block_size`` compute nodes (an engine call costs more than a few
ops it would save) and fuse the rest into submodules named ``fused_<n>``.
"""

from __future__ import annotations

import operator
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from torch import fx
from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner, Partition

from compiler.conversion.evaluators import is_symbolic_int_node
from compiler.errors import UnsupportedOperatorError
from compiler.partitioning.operator_support import RegistryOperatorSupport, op_name
from compiler.spec import PartitioningSpec


@dataclass
class PartitionInfo:
    name: str
    accelerated: bool
    ops: Counter[str]
    reason: str | None = None

    @property
    def size(self) -> int:
        return sum(self.ops.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "accelerated": self.accelerated,
            "size": self.size,
            "ops": dict(sorted(self.ops.items())),
            "reason": self.reason,
        }


@dataclass
class PartitionPlan:
    graph_module: fx.GraphModule
    engine_modules: list[str]
    partitions: list[PartitionInfo]
    fallback_ops: Counter[str] = field(default_factory=Counter)
    fallback_reasons: dict[str, str] = field(default_factory=dict)


def _is_compute(node: fx.Node) -> bool:
    return (
        node.op == "call_function"
        and node.target is not operator.getitem
        and not is_symbolic_int_node(node)
    )


def _ops(nodes: Any) -> Counter[str]:
    return Counter(op_name(n.target) for n in nodes if _is_compute(n))


class _Partitioner(CapabilityBasedPartitioner):
    """torch's partitioner rebuilds the ``named_modules()`` dict for every node it asks about
    (twice per node), which is quadratic in the graph and took 1.5 s of EfficientNet-B7's
    compile; the answer for a node does not change while partitions are proposed, so it is
    computed once."""

    def __init__(self, gm: fx.GraphModule, support: RegistryOperatorSupport, **kwargs: Any) -> None:
        super().__init__(gm, support, **kwargs)
        self._submodules = dict(gm.named_modules())
        self._supported: dict[fx.Node, bool] = {}

    def _is_node_supported(self, node: fx.Node) -> bool:
        answer = self._supported.get(node)
        if answer is None:
            answer = self._supported[node] = self.operator_support.is_node_supported(self._submodules, node)
        return answer


def partition(
    gm: fx.GraphModule, support: RegistryOperatorSupport, settings: PartitioningSpec
) -> PartitionPlan:
    compute_nodes = [n for n in gm.graph.nodes if _is_compute(n)]
    unsupported, reasons = support.unsupported_counts(compute_nodes)
    if settings.require_full_compilation and unsupported:
        raise UnsupportedOperatorError(unsupported, reasons)

    partitioner = _Partitioner(
        gm,
        support,
        allows_single_node_partition=True,
        non_compute_ops=["_operator.getitem"],
    )
    proposed: list[Partition] = partitioner.propose_partitions()
    min_size = 1 if settings.require_full_compilation else settings.min_block_size
    kept: list[Partition] = []
    infos: list[PartitionInfo] = []
    fallback: Counter[str] = Counter(unsupported)
    fallback_reasons = dict(reasons)
    for part in proposed:
        ops = _ops(part.nodes)
        if not ops:
            continue
        # A block that is the whole program is kept whatever its size: with no PyTorch code
        # around it there are no engine<->PyTorch transitions for min_block_size to amortize.
        whole_program = sum(ops.values()) == len(compute_nodes)
        if sum(ops.values()) >= min_size or whole_program:
            kept.append(part)
            continue
        why = f"block of {sum(ops.values())} compute node(s) is below min_block_size={min_size}"
        infos.append(PartitionInfo(f"torch_block_{part.id}", False, ops, why))
        fallback.update(ops)
        for op in ops:
            fallback_reasons.setdefault(op, why)

    fused = partitioner.fuse_partitions(kept) if kept else gm
    engine_modules = []
    for node in fused.graph.nodes:
        if node.op == "call_module" and str(node.target).startswith("fused_"):
            engine_modules.append(str(node.target))
            submodule = fused.get_submodule(str(node.target))
            assert isinstance(submodule, fx.GraphModule)
            infos.insert(
                len(engine_modules) - 1,
                PartitionInfo(str(node.target), True, _ops(submodule.graph.nodes)),
            )
    fallback_infos = [i for i in infos if not i.accelerated]
    if unsupported:
        fallback_infos.append(
            PartitionInfo("torch_unsupported", False, Counter(unsupported), "see fallback reasons")
        )
    ordered = [i for i in infos if i.accelerated] + fallback_infos
    return PartitionPlan(fused, engine_modules, ordered, fallback, fallback_reasons)
