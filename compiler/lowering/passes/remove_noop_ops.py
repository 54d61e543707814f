"""Remove ops that do nothing at inference: detach, alias, clone, dropout in eval mode, and
copies to the dtype the tensor already has."""

from __future__ import annotations

import torch
from torch import fx

from compiler.lowering.passes import LoweringSettings, PassResult

aten = torch.ops.aten
IDENTITIES = {
    aten.detach.default,
    aten.alias.default,
    aten.clone.default,
    aten.lift_fresh_copy.default,
    aten.contiguous.default,
}


def _is_noop(node: fx.Node) -> bool:
    if node.op != "call_function":
        return False
    if node.target in IDENTITIES:
        return True
    if node.target is aten.dropout.default:
        train = node.args[2] if len(node.args) > 2 else node.kwargs.get("train", False)
        return not train
    if node.target is aten._to_copy.default and isinstance(node.args[0], fx.Node):
        src, out = node.args[0].meta.get("val"), node.meta.get("val")
        if isinstance(src, torch.Tensor) and isinstance(out, torch.Tensor):
            allowed = {"dtype", "layout", "device", "memory_format", "non_blocking", "copy"}
            return (
                set(node.kwargs) <= allowed
                and src.dtype == out.dtype
                and src.device == out.device
            )
    return False


def remove_noop_ops(gm: fx.GraphModule, settings: LoweringSettings) -> PassResult:
    modified = False
    for node in list(gm.graph.nodes):
        if _is_noop(node):
            source = node.args[0]
            if isinstance(source, fx.Node):
                node.replace_all_uses_with(source)
                gm.graph.erase_node(node)
                modified = True
    return PassResult(gm, modified)
