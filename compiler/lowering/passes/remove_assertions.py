"""Drop runtime assertion nodes: shape guards are checked by the runtime against the compiled
input ranges, and an assertion left in the graph would split partitions."""

from __future__ import annotations

import torch
from torch import fx

from compiler.lowering.passes import LoweringSettings, PassResult

_ASSERTS = {
    torch.ops.aten._assert_scalar.default,
    torch.ops.aten._assert_tensor_metadata.default,
    torch.ops.aten.sym_constrain_range_for_size.default,
    torch.ops.aten.sym_constrain_range.default,
    torch.ops.aten._assert_async.msg,
    torch.ops.aten._assert_async.default,
}


def remove_assertions(gm: fx.GraphModule, settings: LoweringSettings) -> PassResult:
    modified = False
    for node in list(gm.graph.nodes):
        is_guard = node.op == "call_module" and str(node.target) == "_guards_fn"
        if (is_guard or node.target in _ASSERTS) and not node.users:
            gm.graph.erase_node(node)
            modified = True
    if modified and hasattr(gm, "_guards_fn"):
        delattr(gm, "_guards_fn")
    return PassResult(gm, modified)
