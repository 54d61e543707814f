"""What our runtime adds on top of ONNX Runtime, on a model small enough for it to matter.

The digits CNN of the zoo (trained here, fully converted into one engine) is called at batch 1
through five paths, interleaved, inside one ``torch.inference_mode`` block:

- ``ort``: a bare ``InferenceSession.run`` on the very ONNX bytes our engine holds (numpy feed
  prepared once: the floor);
- ``custom_op``: ``torch.ops.orchestrate.execute_engine`` called directly (dispatcher + engine);
- ``compiled``: our compiled module, fresh from ``compiler.compile``;
- ``loaded``: the same after ``compiler.save`` / ``compiler.load``;
- ``eager``: the PyTorch module.

Each repeat times every call on its own; the figure per path is the median over repeats of the
per-repeat median. Target (issue 2): ``compiled`` and ``loaded`` within 15 µs of ``ort``.

    .venv/bin/python benchmarks/runtime_overhead.py [--repeats 20] [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

import compiler
from benchmarks import zoo

RESULTS = Path(__file__).resolve().parent / "results" / "runtime_overhead.json"
TARGET_US = 15.0


def median_of_medians(
    paths: dict[str, Callable[[], Any]], repeats: int, calls: int, warmup: int = 200
) -> dict[str, list[float]]:
    """Per path, the median call time (µs) of each repeat; repeats rotate the path order."""
    for fn in paths.values():
        for _ in range(warmup):
            fn()
    names = list(paths)
    medians: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter_ns
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            fn = paths[name]
            times = []
            for _ in range(calls):
                start = clock()
                fn()
                times.append(clock() - start)
            medians[name].append(statistics.median(times) / 1e3)
    return medians


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import onnxruntime as ort

    case = zoo.digits_cnn()
    spec = compiler.CompileSpec.parse({"partitioning": {"require_full_compilation": True}})
    compiled = compiler.compile(zoo.export(case), spec)
    if compiled.report.num_engines != 1:
        raise SystemExit(f"expected one engine, got {compiled.report.num_engines}: {compiled.report.partitions}")
    (engine_id, (meta, engine_bytes)), = compiled.engines.items()
    with tempfile.TemporaryDirectory() as tmp:
        loaded = compiler.load(compiler.save(compiled, Path(tmp) / "digits.engine.pt2"))

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(engine_bytes, options, providers=["CPUExecutionProvider"])
    (x,) = case.fresh_inputs(seed=1)
    input_name = meta.inputs[0].name
    feed = {input_name: x.numpy()}
    execute_engine = torch.ops.orchestrate.execute_engine
    module = case.module

    with torch.inference_mode():
        reference = module(x)
        for label, out in (
            ("ort", torch.from_numpy(session.run(None, feed)[0])),
            ("custom_op", execute_engine([x], engine_id)[0]),
            ("compiled", compiled(x)),
            ("loaded", loaded(x)),
        ):
            problems = zoo.compare(out, reference)
            if problems:
                raise SystemExit(f"{label} disagrees with eager: {'; '.join(problems)}")
        paths: dict[str, Callable[[], Any]] = {
            "ort": lambda: session.run(None, feed),
            # the same, but fed the way a caller with a new torch tensor per call feeds it: ORT
            # handles a freshly wrapped array more slowly than one it has seen before
            "ort_fresh_input": lambda: session.run(None, {input_name: x.numpy()}),
            "custom_op": lambda: execute_engine([x], engine_id),
            "compiled": lambda: compiled(x),
            "loaded": lambda: loaded(x),
            "eager": lambda: module(x),
        }
        medians = median_of_medians(paths, args.repeats, args.calls)

    result = {name: statistics.median(values) for name, values in medians.items()}
    overhead = {name: result[name] - result["ort"] for name in ("ort_fresh_input", "custom_op", "compiled", "loaded")}
    print(f"digits CNN, batch 1, {args.repeats} repeats x {args.calls} calls, median of repeat medians")
    print("| path | µs per call | over bare ORT µs |")
    print("|---|---:|---:|")
    for name, value in result.items():
        extra = f"{overhead[name]:+.1f}" if name in overhead else ("0" if name == "ort" else "—")
        print(f"| {name} | {value:.1f} | {extra} |")
    met = all(overhead[name] <= TARGET_US for name in ("compiled", "loaded"))
    print(f"\ntarget: compiled and loaded within {TARGET_US:.0f} µs of bare ORT: {'met' if met else 'MISSED'}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "model": case.name,
                "repeats": args.repeats,
                "calls": args.calls,
                "median_us": result,
                "repeat_medians_us": medians,
                "overhead_over_ort_us": overhead,
                "target_us": TARGET_US,
                "target_met": met,
                "torch_threads": torch.get_num_threads(),
            },
            indent=2,
        )
    )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
