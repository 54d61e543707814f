"""The decomposition table: torch.export's defaults, minus every op we convert directly.

Keeping e.g. ``aten.linear`` or ``aten.layer_norm`` whole lets converters emit one fused ONNX op
(MatMul+Add, LayerNormalization) instead of the dozen primitives they decompose into, which is
what makes the backends' own fusions fire. Anything without a converter decomposes further.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from compiler.conversion.registry import REGISTRY


@functools.cache
def _materialized() -> dict[Any, Callable[..., Any]]:
    # Building torch's table costs ~0.3 s; ExportedProgram.run_decompositions copies the dict
    # it is given, so one materialized table can serve every compile in the process.
    table = torch.export.default_decompositions()
    for op in list(table.keys()):
        if op in REGISTRY:
            del table[op]
    return dict(table.materialize())


def decomposition_table() -> dict[Any, Callable[..., Any]]:
    return dict(_materialized())
