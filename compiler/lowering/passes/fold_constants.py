"""Evaluate nodes whose inputs are all weights or constants, once, at compile time.

Transposes and casts of weights (``permute(weight)``, ``weight.to(fp16)``) become new constant
tensors, so the engine stores the final layout and does no per-call work on weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from compiler.lowering.passes import LoweringSettings, PassResult

_MAX_FOLD_ELEMENTS = 1 << 26  # don't materialise huge intermediates (e.g. an expanded mask)
aten = torch.ops.aten
# Factory ops depend on no input but their outputs can be large or shape-dependent.
_NEVER_FOLD = {aten.empty.memory_format, aten.rand.default, aten.randn.default}


def _attr(gm: fx.GraphModule, target: str) -> object:
    obj: object = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def fold_constants(gm: fx.GraphModule, settings: LoweringSettings) -> PassResult:
    values: dict[fx.Node, Any] = {}
    folded = 0
    for node in list(gm.graph.nodes):
        if node.op == "get_attr":
            values[node] = _attr(gm, str(node.target))
            continue
        if node.op != "call_function" or node.target in _NEVER_FOLD:
            continue
        inputs = node.all_input_nodes
        if not inputs or any(n not in values for n in inputs):
            continue
        if not isinstance(node.target, torch._ops.OpOverload):
            continue
        if node.target._schema.is_mutable or "nondeterministic_seeded" in node.target.tags:
            continue
        fake = node.meta.get("val")
        if isinstance(fake, torch.Tensor) and fake.numel() > _MAX_FOLD_ELEMENTS:
            continue
        args = fx.node.map_arg(node.args, lambda n: values[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: values[n])
        with torch.no_grad():
            result = node.target(*args, **kwargs)
        if not isinstance(result, torch.Tensor) or result.numel() > _MAX_FOLD_ELEMENTS:
            continue
        name = f"_folded_{folded}"
        while hasattr(gm, name):
            folded += 1
            name = f"_folded_{folded}"
        gm.register_buffer(name, result.detach().contiguous())
        folded += 1
        with gm.graph.inserting_before(node):
            replacement = gm.graph.get_attr(name)
        replacement.meta = dict(node.meta)
        node.replace_all_uses_with(replacement)
        gm.graph.erase_node(node)
        values[replacement] = result
    return PassResult(gm, folded > 0)
