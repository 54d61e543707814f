"""Converter coverage against the anchor: Torch-TensorRT's converter targets.

``anchor_targets.txt`` (next to this file) is the checked-in list of the targets Torch-TensorRT
registers converters for, with its source and date. Each target is covered by a converter in our
registry, by an evaluator (symbolic sizes), by a lowering pass that removes it, or by a
decomposition (torch.export's own, or the lowering's table) into ops we convert; otherwise it is
missing, and ``NOT_CONVERTED`` says why.
"""

from __future__ import annotations

import operator
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ANCHOR_FILE = Path(__file__).with_name("anchor_targets.txt")

# Why a target has no converter, evaluator or decomposition here. Only targets that are missing
# belong here (a test keeps it so): covering one means deleting its line.
NOT_CONVERTED: dict[str, str] = {
    "torch.ops.aten.resize_.default": (
        "in-place resize: torch.export programs are functional, so it never reaches an inference graph"
    ),
    "torch.ops.aten.atan2.out": "out= overload: exported programs call aten.atan2.default, which converts",
    "torch.sym_not": (
        "symbolic bool: stays in PyTorch (engines take tensors; integer sizes are rebuilt from input shapes)"
    ),
    "operator.eq": (
        "symbolic bool: stays in PyTorch (engines take tensors; integer sizes are rebuilt from input shapes)"
    ),
    "operator.truediv": (
        "symbolic float: stays in PyTorch (engines take tensors; integer sizes are rebuilt from input shapes)"
    ),
    "torch.ops.aten._scaled_dot_product_flash_attention.default": (
        "CUDA-only kernel with no eager reference on our CPU test machines; a CPU export emits "
        "_scaled_dot_product_flash_attention_for_cpu, which converts"
    ),
    "torch.ops.aten._scaled_dot_product_efficient_attention.default": (
        "CUDA-only kernel with no eager reference on our CPU test machines; a CPU export emits "
        "_scaled_dot_product_flash_attention_for_cpu, which converts"
    ),
    "torch.ops.aten._scaled_dot_product_cudnn_attention.default": (
        "CUDA-only kernel with no eager reference on our CPU test machines; a CPU export emits "
        "_scaled_dot_product_flash_attention_for_cpu, which converts"
    ),
    "torch.ops.tensorrt.quantize_op.default": "Torch-TensorRT's own quantization custom op, not an ATen op",
    "torch.ops.tensorrt.dynamic_block_quantize_op.default": (
        "Torch-TensorRT's own quantization custom op, not an ATen op"
    ),
}

# Composite ops that torch.export itself decomposes while tracing, so no exported program holds
# them; the value names what they become (tests/compiler/conversion/test_coverage.py checks it).
EXPORT_DECOMPOSES: dict[str, str] = {
    "torch.ops.aten.batch_norm.default": "aten._native_batch_norm_legit_no_training.default",
    "torch.ops.aten.batch_norm": "aten._native_batch_norm_legit_no_training.default",
    "torch.ops.aten.split.sizes": "aten.split_with_sizes.default",
}

STATUSES = ("converter", "evaluator", "lowering", "decomposed", "missing")


@dataclass(frozen=True)
class TargetCoverage:
    target: str
    status: str  # one of STATUSES
    detail: str


def anchor_targets(path: Path = ANCHOR_FILE) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def anchor_source(path: Path = ANCHOR_FILE) -> dict[str, str]:
    """The ``# key: value`` header lines of the anchor list (source, commit, extracted, count)."""
    header: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("# ") and ":" in line:
            key, _, value = line[2:].partition(":")
            if key.isidentifier():
                header[key] = value.strip()
    return header


def resolve(name: str) -> Any:
    """The object a target name denotes (an OpOverload, a packet's default overload, a Python
    callable), or None when this torch has no such op."""
    root, _, rest = name.partition(".")
    obj: Any = {"torch": torch, "operator": operator}.get(root)
    for part in rest.split("."):
        try:
            obj = getattr(obj, part)
        except (AttributeError, RuntimeError):
            return None
    if isinstance(obj, torch._ops.OpOverloadPacket):
        return getattr(obj, "default", None)
    return obj


def coverage(targets: list[str] | None = None) -> list[TargetCoverage]:
    from compiler.conversion import REGISTRY
    from compiler.conversion.evaluators import SYM_TARGETS
    from compiler.lowering.decompositions import decomposition_table
    from compiler.lowering.passes.remove_noop_ops import IDENTITIES

    decomposed = decomposition_table()
    rows = []
    for name in anchor_targets() if targets is None else targets:
        obj = resolve(name)
        if obj is not None and obj in REGISTRY:
            entry = REGISTRY.get(obj)
            assert entry is not None
            rows.append(TargetCoverage(name, "converter", f"{entry.fn.__module__.rsplit('.', 1)[-1]}.{entry.fn.__name__}"))
        elif obj is not None and obj in SYM_TARGETS:
            rows.append(TargetCoverage(name, "evaluator", "rebuilt from input shapes (evaluators.emit_sympy)"))
        elif obj is not None and obj in IDENTITIES:
            rows.append(TargetCoverage(name, "lowering", "removed by the remove_noop_ops pass"))
        elif name in EXPORT_DECOMPOSES:
            rows.append(TargetCoverage(name, "decomposed", f"torch.export emits {EXPORT_DECOMPOSES[name]} instead"))
        elif obj is not None and obj in decomposed:
            rows.append(TargetCoverage(name, "decomposed", "decomposed in lowering (torch's decomposition table)"))
        else:
            reason = NOT_CONVERTED.get(name, "no converter yet" if obj is not None else "not an op in this torch")
            rows.append(TargetCoverage(name, "missing", reason))
    return rows


def summary(rows: list[TargetCoverage]) -> dict[str, int]:
    counts = Counter(r.status for r in rows)
    return {status: counts.get(status, 0) for status in STATUSES}
