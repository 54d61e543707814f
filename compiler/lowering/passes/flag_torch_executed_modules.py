"""Flag every node that came from a submodule the user named in ``torch_executed_modules``
(module fallback), using the module stack torch.export records on each node. The partitioner
keeps flagged nodes in PyTorch."""

from __future__ import annotations

from torch import fx

from compiler.lowering.passes import FALLBACK_META, LoweringSettings, PassResult


def _module_paths(node: fx.Node) -> list[str]:
    stack = node.meta.get("nn_module_stack") or {}
    paths = []
    for entry in stack.values():
        path = entry[0] if isinstance(entry, tuple) else str(entry)
        # torch.export records e.g. "L['self'].encoder.layer[11]" or "encoder.layer.11"
        path = path.replace("L['self'].", "").replace("L['self']", "")
        path = path.replace("[", ".").replace("]", "").replace("'", "")
        paths.append(path.strip("."))
    return paths


def flag_torch_executed_modules(gm: fx.GraphModule, settings: LoweringSettings) -> PassResult:
    wanted = settings.spec.partitioning.torch_executed_modules
    if not wanted:
        return PassResult(gm, False)
    modified = False
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        for path in _module_paths(node):
            match = next((m for m in wanted if path == m or path.startswith(m + ".")), None)
            if match is not None:
                node.meta[FALLBACK_META] = f"inside torch_executed_modules entry {match!r}"
                modified = True
                break
    return PassResult(gm, modified)
