"""Compiled-vs-reference metrics on inputs generated within the compiled ranges."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils import _pytree as pytree

from compiler.frontend import InputInfo
from compiler.runtime.module import CompiledModule, random_tensor
from compiler.spec import CompileSpec


@dataclass(frozen=True)
class ValidationResult:
    output: str
    metric: str  # "max_abs_error" | "cosine_similarity"
    value: float
    threshold: float | None
    passed: bool
    samples: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_inputs(signature: Sequence[InputInfo], count: int, seed: int) -> list[list[torch.Tensor]]:
    """``count`` input sets: the min, opt and max shapes first, then random shapes in range."""
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    sets = []
    for index in range(count):
        tensors = []
        for info in signature:
            shape = []
            for dim, opt in zip(info.dims, info.opt, strict=True):
                upper = dim.max if dim.max is not None else max(opt, dim.min)
                if index == 0:
                    shape.append(opt)
                elif index == 1:
                    shape.append(dim.min)
                elif index == 2:
                    shape.append(upper)
                else:
                    shape.append(rng.randint(dim.min, upper))
            tensors.append(random_tensor(shape, info.dtype, generator))
        sets.append(_share_symbols(signature, tensors, generator))
    return sets


def _share_symbols(signature: Sequence[InputInfo], tensors: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    # Inputs whose dims are tied (same range on the same axis, e.g. input_ids and attention_mask)
    # must agree; use the first input's size for every dynamic axis with the same range.
    chosen: dict[tuple[int, int, int | None], int] = {}
    fixed = []
    for info, tensor in zip(signature, tensors, strict=True):
        shape = list(tensor.shape)
        for axis, dim in enumerate(info.dims):
            if dim.static:
                continue
            key = (axis, dim.min, dim.max)
            shape[axis] = chosen.setdefault(key, shape[axis])
        fixed.append(tensor if list(tensor.shape) == shape else random_tensor(shape, info.dtype, generator))
    return fixed


def validate(
    compiled: CompiledModule,
    reference: torch.export.ExportedProgram | torch.nn.Module,
    spec: CompileSpec | None = None,
    seed: int = 0,
) -> list[ValidationResult]:
    """Worst-case max absolute error and cosine similarity per output over the spec's samples.

    max_abs_error passes when it is within ``atol + rtol * max|reference|``; cosine similarity
    passes at ``min_cosine`` or above (outputs that are all zeros compare by error alone)."""
    spec = spec or compiled.spec
    module = reference.module() if isinstance(reference, torch.export.ExportedProgram) else reference
    worst_error: dict[int, float] = {}
    worst_cos: dict[int, float] = {}
    scale: dict[int, float] = {}
    samples = sample_inputs(compiled.signature, spec.validation.samples, seed)
    for inputs in samples:
        with torch.no_grad():
            expected = pytree.tree_leaves(module(*inputs))
            # the reference runs where its weights are; the engine gets its inputs on its device
            got = pytree.tree_leaves(compiled(*(t.to(compiled.device) for t in inputs)))
        for index, (want, have) in enumerate(zip(expected, got, strict=True)):
            want64 = want.detach().to(torch.float64).flatten()
            have64 = have.detach().to("cpu", torch.float64).flatten()
            error = float((want64 - have64).abs().max()) if want64.numel() else 0.0
            worst_error[index] = max(worst_error.get(index, 0.0), error)
            scale[index] = max(scale.get(index, 0.0), float(want64.abs().max()) if want64.numel() else 0.0)
            if want64.norm() > 0 and have64.norm() > 0:
                cos = float(torch.nn.functional.cosine_similarity(want64, have64, dim=0))
                worst_cos[index] = min(worst_cos.get(index, 1.0), cos)
    results = []
    for index in sorted(worst_error):
        name = f"output_{index}"
        threshold = spec.validation.atol + spec.validation.rtol * scale[index]
        results.append(ValidationResult(name, "max_abs_error", worst_error[index], threshold, worst_error[index] <= threshold, len(samples), seed))
        if index in worst_cos:
            results.append(
                ValidationResult(
                    name, "cosine_similarity", worst_cos[index], spec.validation.min_cosine,
                    worst_cos[index] >= spec.validation.min_cosine, len(samples), seed,
                )
            )
    return results
