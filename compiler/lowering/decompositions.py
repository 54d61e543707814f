"""The decomposition table: torch.export's defaults, minus every op we convert directly.

Keeping e.g. ``aten.linear`` or ``aten.layer_norm`` whole lets converters emit one fused ONNX op
(MatMul+Add, LayerNormalization) instead of the dozen primitives they decompose into, which is
what makes the backends' own fusions fire. Anything without a converter decomposes further.
"""

from __future__ import annotations

from typing import Any

import torch

from compiler.conversion.registry import REGISTRY


def decomposition_table() -> Any:
    table = torch.export.default_decompositions()
    for op in list(table.keys()):
        if op in REGISTRY:
            del table[op]
    return table
