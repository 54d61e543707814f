"""Lowering passes, one per file. Each is ``(gm, settings) -> PassResult(gm, modified)``."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch.fx.passes.infra.pass_base import PassResult

from compiler.spec import CompileSpec

FALLBACK_META = "orchestrate_fallback"  # node.meta key: why a node must run in PyTorch


@dataclass
class LoweringSettings:
    spec: CompileSpec = field(default_factory=CompileSpec)


__all__ = ["FALLBACK_META", "LoweringSettings", "PassResult"]
