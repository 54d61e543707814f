"""Remove nodes whose results nobody uses (side-effect-free ATen ops only)."""

from __future__ import annotations

from torch import fx

from compiler.lowering.passes import LoweringSettings, PassResult


def eliminate_dead_code(gm: fx.GraphModule, settings: LoweringSettings) -> PassResult:
    modified = gm.graph.eliminate_dead_code()
    # get_attr targets that no node reads any more (e.g. weights folded into new constants)
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in list(gm.named_buffers(recurse=False)) + list(gm.named_parameters(recurse=False)):
        if name.startswith("_folded_") and name not in used:
            delattr(gm, name)
            modified = True
    return PassResult(gm, modified)
