"""Compiled-vs-reference metrics and the accuracy gate, on the user's data or on inputs
generated within the compiled ranges.

Per output: max and mean absolute error, max relative error, cosine similarity (worst sample
set), signal-to-noise ratio in dB (over all samples); for classifier-like outputs (float, two
axes, at least two classes) top-1 and top-5 agreement with the reference; with labels, the task
accuracy of the engine and of the reference; under the output name ``(performance)``, latency
percentiles of eager and compiled, the speedup and peak memory (``compiler.performance``),
which never fail the gate. Each metric that gates the spec's precision carries
a threshold (``GATE_DEFAULTS``, overridden by the spec's ``gate`` block); the others are
recorded with none.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils import _pytree as pytree

from compiler.datasets import Batch, DataLike, batches
from compiler.errors import AccuracyGateError
from compiler.frontend import InputInfo
from compiler.performance import PERFORMANCE, measure
from compiler.runtime.module import CompiledModule, random_tensor
from compiler.spec import CompileSpec, ValidationSpec


@dataclass(frozen=True)
class ValidationResult:
    output: str
    metric: str  # "max_abs_error", "snr_db", "top1_agreement", "task_accuracy", ...
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


# Defaults per precision. fp32 is held to the spec's validation.atol/rtol/min_cosine; reduced
# precision is held to cosine and SNR, not to fp32's absolute error; int8 is judged on the drop
# in task accuracy (points) when labels exist, else on SNR and cosine.
GATE_DEFAULTS: dict[str, dict[str, float | None]] = {
    "fp32": {"min_snr_db": 60.0, "max_accuracy_drop": 0.5, "min_top1_agreement": None},
    "fp16": {"min_cosine": 0.999, "min_snr_db": 35.0, "max_accuracy_drop": 1.0, "min_top1_agreement": None},
    "bf16": {"min_cosine": 0.99, "min_snr_db": 25.0, "max_accuracy_drop": 1.5, "min_top1_agreement": None},
    # unlabelled int8: ONNX Runtime's own quantize_static reaches 15.3 dB / cosine 0.985 on the
    # zoo's re-initialised ResNet-50 (benchmarks/int8.py); a corrupted scale falls far below
    "int8": {"min_cosine": 0.98, "min_snr_db": 12.0, "max_accuracy_drop": 1.5, "min_top1_agreement": None},
}


def gate_thresholds(spec: CompileSpec, labelled: bool) -> dict[str, float | None]:
    """The thresholds that gate ``spec``'s precision: the spec's ``gate`` keys over the defaults.
    None means recorded, not gated."""
    defaults = dict(GATE_DEFAULTS[spec.precision])
    if spec.precision == "fp32":
        defaults["min_cosine"] = spec.validation.min_cosine
    chosen = {k: v for k, v in spec.gate.model_dump().items() if v is not None}
    if spec.precision == "int8" and labelled:
        # judged on task accuracy; cosine and SNR are recorded unless the spec asks for them
        defaults["min_cosine"] = None
        defaults["min_snr_db"] = None
    return {**defaults, **chosen}


@dataclass
class _Acc:
    max_abs: float = 0.0
    sum_abs: float = 0.0
    count: int = 0
    max_rel: float = 0.0
    scale: float = 0.0
    signal: float = 0.0
    noise: float = 0.0
    worst_cos: float | None = None
    rows: int = 0
    top1: int = 0
    top5: int = 0
    top5_rows: int = 0
    classifier: bool = True

    def add(self, want: torch.Tensor, have: torch.Tensor) -> None:
        w = want.detach().to("cpu", torch.float64)
        h = have.detach().to("cpu", torch.float64)
        self.classifier &= want.dtype.is_floating_point and w.dim() == 2 and w.shape[1] >= 2
        if self.classifier:
            ref = w.argmax(dim=1)
            self.rows += int(w.shape[0])
            self.top1 += int((h.argmax(dim=1) == ref).sum())
            if w.shape[1] >= 5:
                self.top5_rows += int(w.shape[0])
                self.top5 += int((h.topk(5, dim=1).indices == ref[:, None]).any(dim=1).sum())
        w, h = w.flatten(), h.flatten()
        if not w.numel():
            return
        diff = (w - h).abs()
        self.max_abs = max(self.max_abs, float(diff.max()))
        self.sum_abs += float(diff.sum())
        self.count += w.numel()
        peak = float(w.abs().max())
        self.scale = max(self.scale, peak)
        # relative to each reference element, floored at 1e-3 of the sample's largest so that
        # elements near zero do not turn rounding into infinite relative error
        floor = max(peak * 1e-3, 1e-12)
        self.max_rel = max(self.max_rel, float((diff / w.abs().clamp_min(floor)).max()))
        self.signal += float((w * w).sum())
        self.noise += float((diff * diff).sum())
        if w.norm() > 0 and h.norm() > 0:
            cos = float(torch.nn.functional.cosine_similarity(w, h, dim=0))
            self.worst_cos = cos if self.worst_cos is None else min(self.worst_cos, cos)

    @property
    def snr_db(self) -> float:
        if self.noise == 0.0:
            return math.inf
        if self.signal == 0.0:
            return -math.inf
        return 10.0 * math.log10(self.signal / self.noise)


def validate(
    compiled: CompiledModule,
    reference: torch.export.ExportedProgram | torch.nn.Module,
    spec: CompileSpec | None = None,
    seed: int = 0,
    data: DataLike | None = None,
    *,
    performance: bool = True,
) -> list[ValidationResult]:
    """Every metric per output on ``data`` (a Dataset, a .safetensors/.npz path, a mapping, or
    a list of input tuples), else on ``spec.validation.samples`` generated input sets from
    ``seed``. The gate passes when every result passes (:func:`gate_failures`). With
    ``performance``, the ``(performance)`` rows follow (:func:`performance_results`), timed on
    the first input set.

    max_abs_error gates fp32 at ``atol + rtol * max|reference|`` (and other precisions only
    when the spec gives atol or rtol other than the defaults); the other thresholds are :func:`gate_thresholds`."""
    spec = spec or compiled.spec
    module = reference.module() if isinstance(reference, torch.export.ExportedProgram) else reference
    sets: list[Batch]
    if data is not None:
        sets = batches(data, compiled.signature)
    else:
        sets = [(inputs, None) for inputs in sample_inputs(compiled.signature, spec.validation.samples, seed)]
    labelled = all(labels is not None for _, labels in sets)
    acc: dict[int, _Acc] = {}
    correct = [0, 0]  # engine, reference
    total = 0
    for inputs, labels in sets:
        with torch.no_grad():
            expected = pytree.tree_leaves(module(*inputs))
            # the reference runs where its weights are; the engine gets its inputs on its device
            got = pytree.tree_leaves(compiled(*(t.to(compiled.device) for t in inputs)))
        for index, (want, have) in enumerate(zip(expected, got, strict=True)):
            acc.setdefault(index, _Acc()).add(want, have)
        if labelled and labels is not None and acc[0].classifier:
            correct[0] += int((got[0].cpu().argmax(dim=1) == labels).sum())
            correct[1] += int((expected[0].argmax(dim=1) == labels).sum())
            total += int(labels.shape[0])
    gate = gate_thresholds(spec, labelled)
    count = len(sets)
    results: list[ValidationResult] = []

    def record(name: str, metric: str, value: float, threshold: float | None, passed: bool | None = None) -> None:
        ok = passed if passed is not None else True
        results.append(ValidationResult(name, metric, value, threshold, ok, count, seed))

    # "set" is "differs from the default": a spec that travelled as canonical JSON (the farm's
    # workers parse it so) carries every key, set or not
    defaults = ValidationSpec()
    gate_abs = spec.precision == "fp32" or (spec.validation.atol, spec.validation.rtol) != (defaults.atol, defaults.rtol)
    for index in sorted(acc):
        a = acc[index]
        name = f"output_{index}"
        limit = spec.validation.atol + spec.validation.rtol * a.scale
        record(name, "max_abs_error", a.max_abs, limit if gate_abs else None, a.max_abs <= limit or not gate_abs)
        record(name, "mean_abs_error", a.sum_abs / a.count if a.count else 0.0, None)
        record(name, "max_rel_error", a.max_rel, None)
        snr, min_snr = a.snr_db, gate["min_snr_db"]
        # a reference that is all zeros has no signal to compare; it is judged by error alone
        if a.signal > 0:
            record(name, "snr_db", min(snr, 999.0), min_snr, min_snr is None or snr >= min_snr)
        if a.worst_cos is not None:
            min_cos = gate["min_cosine"]
            record(name, "cosine_similarity", a.worst_cos, min_cos, min_cos is None or a.worst_cos >= min_cos)
        if a.classifier and a.rows:
            top1, min_top1 = a.top1 / a.rows, gate["min_top1_agreement"]
            record(name, "top1_agreement", top1, min_top1, min_top1 is None or top1 >= min_top1)
            if a.top5_rows:
                record(name, "top5_agreement", a.top5 / a.top5_rows, None)
    if total:
        engine_acc, reference_acc = correct[0] / total, correct[1] / total
        drop = gate["max_accuracy_drop"]
        floor = None if drop is None else reference_acc - drop / 100.0
        # a tolerance of one rounding step: accuracies are ratios of the same integer total
        record("output_0", "task_accuracy", engine_acc, floor, floor is None or engine_acc >= floor - 1e-12)
        record("output_0", "reference_accuracy", reference_acc, None)
    if performance:
        results += performance_results(compiled, module, sets[0][0], spec, seed)
    return results


def performance_results(
    compiled: CompiledModule,
    reference: torch.export.ExportedProgram | torch.nn.Module,
    inputs: Sequence[torch.Tensor],
    spec: CompileSpec | None = None,
    seed: int = 0,
) -> list[ValidationResult]:
    """The ``(performance)`` rows: latency of ``reference`` and ``compiled`` on ``inputs``
    (``spec.validation.latency_warmup`` / ``latency_runs``), the speedup, and peak memory. No
    threshold; they always pass."""
    spec = spec or compiled.spec
    module = reference.module() if isinstance(reference, torch.export.ExportedProgram) else reference
    runs = spec.validation.latency_runs
    figures = measure(compiled, module, inputs, compiled.device, warmup=spec.validation.latency_warmup, runs=runs)
    return [ValidationResult(PERFORMANCE, metric, value, None, True, runs, seed) for metric, value in figures.items()]


def accuracy_results(results: Sequence[ValidationResult]) -> list[ValidationResult]:
    """``results`` without the ``(performance)`` rows."""
    return [r for r in results if r.output != PERFORMANCE]


def gate_failures(results: Sequence[ValidationResult]) -> list[ValidationResult]:
    return [r for r in results if not r.passed]


def check_gate(results: list[ValidationResult], compiled: CompiledModule | None = None) -> None:
    """Raise AccuracyGateError naming every failing metric, with its value and threshold."""
    failures = gate_failures(results)
    if failures:
        lines = [f"  {r.output} {r.metric} = {r.value:.6g} (threshold {r.threshold:.6g})" for r in failures if r.threshold is not None]
        precision = compiled.spec.precision if compiled is not None else "the spec's precision"
        raise AccuracyGateError(
            f"the compiled engine failed its accuracy gate for {precision}:\n" + "\n".join(lines)
            + "\nRaise the thresholds in the spec's gate block only if this accuracy is acceptable.",
            results,
            compiled,
        )
