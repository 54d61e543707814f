"""Lowering phase: decompose to the ATen subset the converters cover, then run the passes."""

from __future__ import annotations

import torch
from torch import fx

from compiler.lowering.decompositions import decomposition_table
from compiler.lowering.manager import run_passes
from compiler.lowering.passes import FALLBACK_META, LoweringSettings


def lower(
    program: torch.export.ExportedProgram, settings: LoweringSettings
) -> tuple[torch.export.ExportedProgram, fx.GraphModule, dict[str, float]]:
    """Decompose ``program`` and return it, its unlifted graph module after the passes, and
    the time each pass took."""
    decomposed = program.run_decompositions(decomposition_table())
    gm = decomposed.module()
    assert isinstance(gm, fx.GraphModule)
    gm, timings = run_passes(gm, settings)
    return decomposed, gm, timings


__all__ = ["FALLBACK_META", "LoweringSettings", "lower", "run_passes"]
