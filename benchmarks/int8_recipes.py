"""Which static int8 recipe and which ONNX Runtime session options run fastest on this CPU,
against our own fp32 engine, and at what accuracy.

One process, one model (batch 1). Our fp32 engine is ``compiler.compile`` at fp32; our int8
engine is ``compiler.compile`` at int8 (the product's recipe: QDQ, per-channel int8 weights,
uint8 activations on x86-64, every op type ONNX Runtime quantizes, attention-mask nodes float).
The other recipes quantize the very model the product quantizes (after its preparation: ORT's
basic optimizations, BatchNormalization folded) with ``quantize_static`` and one setting
changed, on the same calibration inputs. Session variants run our fp32 and our int8 engine under
other ONNX Runtime session options. For each contender:

- latency: median and lower quartile of ``--runs`` interleaved samples
  (``compile_vs_peers.interleaved_latency``), and the speedup over our fp32 engine at its
  default session options (the product's, ``ORT_ENABLE_ALL``);
- accuracy against eager PyTorch on ``--calibration`` held-out input sets: SNR (dB), cosine, and
  how often the top-1 class agrees (for logits, 2-D outputs);
- what ONNX Runtime made of it: QLinear*/QGemm kernels, Q/DQ nodes left, and float compute
  nodes left between them (fp32 islands), counted in the session's optimized model.

    .venv/bin/python benchmarks/int8_recipes.py
    .venv/bin/python benchmarks/int8_recipes.py --model resnet50 --runs 15

Prints a markdown table and writes ``benchmarks/results/int8_recipes.json``.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

import compiler
from benchmarks import zoo
from benchmarks.compile_vs_peers import interleaved_latency
from benchmarks.int8 import environment
from compiler.backends import onnxruntime as ort_backend

RESULTS = Path(__file__).resolve().parent / "results" / "int8_recipes.json"

#: quantize_static settings that differ from the product's recipe
RECIPES: dict[str, dict[str, Any]] = {
    "per-tensor weights": {"per_channel": False},
    "reduce_range": {"reduce_range": True},
    "QOperator format": {"quant_format": "QOperator"},
    "int8 activations (quantize_static's default)": {"activation_type": "QInt8"},
    "uint8 weights": {"weight_type": "QUInt8"},
    "symmetric activations": {"extra_options": {"ActivationSymmetric": True}},
    "Conv only": {"op_types_to_quantize": ["Conv"]},
    "Conv, Gemm, MatMul only": {"op_types_to_quantize": ["Conv", "Gemm", "MatMul"]},
}

#: session options other than the product's (ORT_ENABLE_ALL, default threads, spinning on)
SESSIONS: dict[str, dict[str, Any]] = {
    "ORT_ENABLE_EXTENDED": {"level": "EXTENDED"},
    "1 intra-op thread": {"threads": 1},
    "no spinning": {"config": {"session.intra_op.allow_spinning": "0"}},
    "dynamic_block_base 4": {"config": {"session.dynamic_block_base": "4"}},
}


def quantize(prepared: Any, samples: list[dict[str, np.ndarray]], keep_fp32: Sequence[str], settings: dict[str, Any]) -> bytes:
    """The product's quantizer with ``settings`` overriding its recipe."""
    with warnings.catch_warnings():  # numpy's, on ranges of one value
        warnings.simplefilter("ignore", RuntimeWarning)
        return ort_backend.quantize_static_qdq(prepared, samples, keep_fp32, settings)


def session(engine: bytes, level: str = "ALL", threads: int = 0, config: dict[str, str] | None = None, optimized: Path | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{level}")
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(engine, options, providers=["CPUExecutionProvider"])


def kernels(engine: bytes, workdir: Path, **options: Any) -> dict[str, int]:
    """QLinear kernels, Q/DQ nodes and float compute nodes in the model ONNX Runtime runs."""
    import onnx

    path = workdir / "optimized.onnx"
    session(engine, optimized=path, **options)
    ops = collections.Counter(n.op_type for n in onnx.load_model(str(path)).graph.node)
    layout = {"Transpose", "Reshape", "ReorderInput", "ReorderOutput", "Flatten", "Squeeze", "Unsqueeze", "Shape", "Gather", "Concat"}
    quantized = sum(c for op, c in ops.items() if op.startswith("QLinear") or op in ("QGemm", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "NhwcMaxPool", "QAttention"))
    qdq = ops["QuantizeLinear"] + ops["DequantizeLinear"]
    float_ops = sum(ops.values()) - quantized - qdq - sum(c for op, c in ops.items() if op in layout)
    return {"quantized": quantized, "qdq": qdq, "float": float_ops}


def accuracy(engine: Any, names: Sequence[str], sets: Sequence[tuple[torch.Tensor, ...]], expected: Sequence[torch.Tensor]) -> dict[str, float | None]:
    signal = noise = dot = have_sq = 0.0
    agree: int | None = 0
    for inputs, want in zip(sets, expected, strict=True):
        have = np.asarray(engine.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})[0], dtype=np.float64)
        w = want.double().numpy().reshape(have.shape)
        signal, noise = signal + float((w * w).sum()), noise + float(((have - w) ** 2).sum())
        dot, have_sq = dot + float((have * w).sum()), have_sq + float((have * have).sum())
        if agree is not None and have.ndim == 2:  # logits: the top class of the first row
            agree += int(np.argmax(have[0]) == np.argmax(w[0]))
        else:
            agree = None
    return {
        "snr_db": math.inf if noise == 0 else 10 * math.log10(signal / noise),
        "cosine": dot / math.sqrt(max(signal * have_sq, 1e-300)),
        "top1_agreement": None if agree is None else agree / len(sets),
    }


def measure(name: str, runs: int, calibration_sets: int, workdir: Path) -> dict[str, Any]:
    case = zoo.build(name)
    assert case.make_inputs is not None
    calibration = [case.make_inputs(seed=100 + i) for i in range(calibration_sets)]
    held_out = [case.make_inputs(seed=200 + i) for i in range(calibration_sets)]
    with torch.inference_mode():
        expected = [torch.utils._pytree.tree_leaves(case.module(*inputs))[0] for inputs in held_out]
    program = zoo.export(case)
    spec = zoo.compile_spec(case)
    fp32 = compiler.compile(program, compiler.CompileSpec.parse({**spec, "precision": "fp32"}))
    int8 = compiler.compile(
        program,
        compiler.CompileSpec.parse({**spec, "precision": "int8", "quantization": {"calibration_samples": calibration_sets}}),
        calibration_data=calibration,
    )
    if len(fp32.engines) != 1 or len(int8.engines) != 1:
        raise SystemExit(f"{name}: compiles to {len(fp32.engines)} fp32 / {len(int8.engines)} int8 engines; this sweep needs one")
    ((fp32_meta, fp32_engine),) = fp32.engines.values()
    ((int8_meta, int8_engine),) = int8.engines.values()
    names = [t.name for t in fp32_meta.inputs]

    # the model the product quantizes, prepared as the product prepares it
    import onnx

    prepared = ort_backend._prepare_for_quantization(onnx.load_from_string(fp32_engine))
    ort_backend._name_nodes(prepared)
    keep = ort_backend._mask_nodes(prepared)
    samples = [{n: t.numpy() for n, t in zip(names, inputs, strict=True)} for inputs in calibration]

    engines: dict[str, tuple[bytes, dict[str, Any]]] = {"fp32 (ours)": (fp32_engine, {}), "int8 (ours)": (int8_engine, {})}
    failed: dict[str, str] = {}
    for label, settings in RECIPES.items():
        try:
            engines[f"int8, {label}"] = (quantize(prepared, samples, keep, settings), {})
        except Exception as exc:  # noqa: BLE001 - a recipe the quantizer cannot apply to this model
            failed[f"int8, {label}"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    for label, options in SESSIONS.items():
        engines[f"fp32 (ours), {label}"] = (fp32_engine, options)
        engines[f"int8 (ours), {label}"] = (int8_engine, options)

    contenders: dict[str, Callable[[], Any]] = {}
    rows: dict[str, dict[str, Any]] = {}
    example = {n: t.numpy() for n, t in zip(names, case.example_inputs, strict=True)}
    for label, (engine, options) in engines.items():
        sess = session(engine, **options)
        contenders[label] = functools.partial(sess.run, None, example)
        rows[label] = {
            "session_options": options,
            "kernels": kernels(engine, workdir, **{k: v for k, v in options.items() if k == "level"}),
            **accuracy(sess, names, held_out, expected),
        }
    samples_s = interleaved_latency(contenders, runs)
    base = statistics.median(samples_s["fp32 (ours)"])
    for label, values in samples_s.items():
        rows[label]["median_ms"] = statistics.median(values) * 1e3
        rows[label]["q1_ms"] = statistics.quantiles(values, n=4)[0] * 1e3
        rows[label]["speedup_vs_ours_fp32"] = base / statistics.median(values)
    return {"model": name, "recipe": ort_backend.static_recipe(), "calibration_sets": calibration_sets, "runs": runs, "rows": rows, "failed": failed}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| contender | median ms | q1 ms | speedup vs our fp32 | SNR dB | cosine | top-1 agree | QLinear / Q+DQ / float nodes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in result["rows"].items():
        k, top1 = r["kernels"], "-" if r["top1_agreement"] is None else f"{r['top1_agreement']:.2f}"
        lines.append(
            f"| {label} | {r['median_ms']:.1f} | {r['q1_ms']:.1f} | {r['speedup_vs_ours_fp32']:.2f}x | {r['snr_db']:.1f} "
            f"| {r['cosine']:.4f} | {top1} | {k['quantized']} / {k['qdq']} / {k['float']} |"
        )
    lines += [f"| {label} | failed: {reason} |||||||" for label, reason in result["failed"].items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--calibration", type=int, default=8, help="calibration input sets (and as many held-out sets)")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.model, args.runs, args.calibration, Path(tmp))
    result["environment"] = {**environment(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str))
    print(markdown(result))
    print(f"CPU {result['environment']['cpu']}")
    print(f"load average before {load_before}, after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
