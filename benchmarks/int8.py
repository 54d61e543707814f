"""int8 on this CPU: our static QDQ engines against our fp32 engines, beside ONNX Runtime's own
static quantizer run on the same model in the same process.

For each model (batch 1):

- ours fp32: ``compiler.compile`` at fp32;
- ours int8: ``compiler.compile(..., precision int8, validate=True)`` with ``--calibration``
  input sets for calibration and as many other input sets as validation data, so the accuracy
  gate (SNR/cosine: these zoo models have random weights and no labels) must pass, retrying
  with nodes kept in fp32 if it does not; quantization + calibration time is the compile's
  ``calibration`` and ``build`` phases of a plain int8 compile (no gate);
- peer fp32/int8: ``torch.onnx.export(dynamo=True)``, then ``quant_pre_process`` and
  ``onnxruntime.quantization.quantize_static`` (QDQ, per channel, the same calibration inputs),
  timed likewise;
- latency: median of ``--runs`` interleaved samples (``compile_vs_peers.interleaved_latency``);
- accuracy of each int8 engine against eager: SNR in dB and cosine.

    .venv/bin/python benchmarks/int8.py
    .venv/bin/python benchmarks/int8.py --models resnet50 --runs 10

Prints a markdown table and writes ``benchmarks/results/int8.json``. Targets (issue 10): int8
ResNet-50 >= 2.5x and BERT-base >= 1.8x our fp32, gate passing; ResNet-50 quantization and
calibration under 60 s.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

import compiler
from benchmarks import zoo
from benchmarks.compile_vs_peers import environment as _environment
from benchmarks.compile_vs_peers import interleaved_latency, peer_compile

RESULTS = Path(__file__).resolve().parent / "results" / "int8.json"
TARGETS = {"resnet50": 2.5, "bert_base": 1.8}
# the x86 features that decide which int8 kernels ONNX Runtime's MLAS picks: without VNNI its
# u8s8 GEMM multiplies through vpmaddubsw (AVX2), with it through vpdpbusd (AVX-512 VNNI or
# AVX-VNNI); the same engine runs about twice as fast against fp32 on the second kind
INT8_FEATURES = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx_vnni_int8", "amx_int8")


def cpu() -> dict[str, Any]:
    """This CPU's model name and its int8-relevant features, from /proc/cpuinfo (Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name", ""), "int8_features": [f for f in INT8_FEATURES if f in flags]}


def environment() -> dict[str, Any]:
    return {**_environment(), "cpu": cpu(), "cpu_count": os.cpu_count()}


def _snr_cos(actual: torch.Tensor, expected: torch.Tensor) -> tuple[float, float]:
    a, e = actual.double().flatten(), expected.double().flatten()
    noise = float(((a - e) ** 2).sum())
    snr = math.inf if noise == 0 else 10 * math.log10(float((e**2).sum()) / noise)
    return snr, float(torch.nn.functional.cosine_similarity(a, e, dim=0))


def _first(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output[0]


#: the peer's activation type: ONNX Runtime's default (QInt8), or --peer-activations QUInt8
PEER_ACTIVATIONS = "QInt8"


def peer_int8(onnx_path: Path, calibration: Sequence[tuple[torch.Tensor, ...]], workdir: Path) -> tuple[Callable[..., Any], float]:
    """ONNX Runtime's own recipe on the peer's export: pre-process, then quantize_static."""
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    names = [i.name for i in ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_inputs()]

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            sample = next(self._it, None)
            return None if sample is None else {n: t.numpy() for n, t in zip(names, sample, strict=True)}

    start = time.perf_counter()
    pre = workdir / f"{onnx_path.stem}.pre.onnx"
    try:
        quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
    except Exception:  # noqa: BLE001 - the recipe's optional step; quantize the export as it is
        pre = onnx_path
    out = workdir / f"{onnx_path.stem}.int8.onnx"
    quantize_static(
        str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType[PEER_ACTIVATIONS], weight_type=QuantType.QInt8,
    )
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    seconds = time.perf_counter() - start

    def run(*inputs: torch.Tensor) -> Any:
        outputs = session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})
        return torch.from_numpy(np.asarray(outputs[0]))

    return run, seconds


def measure(name: str, runs: int, calibration_sets: int, retries: int, workdir: Path) -> dict[str, Any]:
    case = zoo.build(name)
    assert case.make_inputs is not None
    calibration = [case.make_inputs(seed=100 + i) for i in range(calibration_sets)]
    validation = [case.make_inputs(seed=200 + i) for i in range(calibration_sets)]
    program = zoo.export(case)
    spec = zoo.compile_spec(case)

    start = time.perf_counter()
    fp32 = compiler.compile(program, compiler.CompileSpec.parse({**spec, "precision": "fp32"}))
    fp32_s = time.perf_counter() - start
    # quantization + calibration of one plain int8 compile (the gated one below may compile
    # several times, and ranks nodes for its retries)
    plain = compiler.compile(
        program,
        compiler.CompileSpec.parse({**spec, "precision": "int8", "quantization": {"calibration_samples": calibration_sets}}),
        calibration_data=calibration,
    )
    quantize_s = plain.report.timings.get("calibration", 0.0) + plain.report.timings.get("build", 0.0)
    del plain
    start = time.perf_counter()
    quantization = {"calibration_samples": calibration_sets, "max_retries": retries}
    try:
        int8 = compiler.compile(
            program,
            compiler.CompileSpec.parse({**spec, "precision": "int8", "quantization": quantization}),
            calibration_data=calibration,
            validate=True,
            validation_data=validation,
        )
    except compiler.AccuracyGateError as exc:  # measured all the same, and reported as failing
        int8 = exc.compiled
    int8_s = time.perf_counter() - start
    peer_fp32, _ = peer_compile(case, workdir)
    peer_q, peer_q_s = peer_int8(workdir / f"{case.name}.onnx", calibration, workdir)

    inputs = case.example_inputs
    with torch.inference_mode():
        expected = _first(case.module(*inputs))
        contenders: dict[str, Callable[[], Any]] = {
            "ours_fp32": lambda: fp32(*inputs),
            "ours_int8": lambda: int8(*inputs),
            "peer_fp32": lambda: peer_fp32(*inputs),
            "peer_int8": lambda: peer_q(*inputs),
        }
        accuracy = {k: _snr_cos(_first(fn()), expected) for k, fn in contenders.items()}
        samples = interleaved_latency(contenders, runs)
    median = {k: statistics.median(v) for k, v in samples.items()}
    gate = {r["metric"]: (r["value"], r["threshold"], r["passed"]) for r in int8.report.validation if r["output"] == "output_0"}
    return {
        "model": name,
        "latency_ms": {k: v * 1e3 for k, v in median.items()},
        "speedup_int8_vs_ours_fp32": median["ours_fp32"] / median["ours_int8"],
        "speedup_peer_int8_vs_peer_fp32": median["peer_fp32"] / median["peer_int8"],
        "snr_db_vs_eager": {k: v[0] for k, v in accuracy.items()},
        "cosine_vs_eager": {k: v[1] for k, v in accuracy.items()},
        "gate": gate,
        "gate_passed": all(r["passed"] for r in int8.report.validation),
        "kept_fp32": int8.report.kept_fp32,
        "compile_s": {"ours_fp32": fp32_s, "ours_int8_with_gate": int8_s},
        "ours_quantize_and_calibrate_s": quantize_s,
        "peer_quantize_and_calibrate_s": peer_q_s,
        "calibration_sets": calibration_sets,
        "retries": retries,
        "target_speedup": TARGETS.get(name),
    }


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| model | ours fp32 ms | ours int8 ms | speedup | peer fp32 ms | peer int8 ms | peer speedup "
        "| SNR dB ours / peer int8 | gate | kept fp32 | quantize+calibrate s ours / peer |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lat, snr = r["latency_ms"], r["snr_db_vs_eager"]
        lines.append(
            f"| {r['model']} | {lat['ours_fp32']:.1f} | {lat['ours_int8']:.1f} | {r['speedup_int8_vs_ours_fp32']:.2f}x "
            f"| {lat['peer_fp32']:.1f} | {lat['peer_int8']:.1f} | {r['speedup_peer_int8_vs_peer_fp32']:.2f}x "
            f"| {snr['ours_int8']:.1f} / {snr['peer_int8']:.1f} | {'pass' if r['gate_passed'] else 'FAIL'} "
            f"| {len(r['kept_fp32'])} | {r['ours_quantize_and_calibrate_s']:.1f} / {r['peer_quantize_and_calibrate_s']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,bert_base")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--calibration", type=int, default=8, help="calibration input sets (and as many validation sets)")
    parser.add_argument("--retries", type=int, default=1, help="the gate's fp32-fallback retries (each recompiles)")
    parser.add_argument("--peer-activations", choices=["QInt8", "QUInt8"], default="QInt8",
                        help="the peer's activation type (QInt8: quantize_static's default)")
    args = parser.parse_args(argv)
    global PEER_ACTIVATIONS
    PEER_ACTIVATIONS = args.peer_activations
    logging.getLogger().setLevel(logging.ERROR)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            rows.append(measure(name, args.runs, args.calibration, args.retries, Path(tmp)))
            print(json.dumps(rows[-1], default=str), flush=True)
    env = {**environment(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
    result = {"environment": env, "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str))
    print(markdown(rows))
    print(f"CPU {env['cpu']}")
    print(f"load average before {load_before}, after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
