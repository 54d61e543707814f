"""What PyTorch fallback costs: one model compiled whole and split into many engines.

MobileNetV2 (batch 1, CPU, fp32) compiled three ways in one process: whole (one engine), and with
``aten.add.Tensor`` forced to run in PyTorch (``torch_executed_ops``), which cuts the network at
every residual connection into about a dozen engines with PyTorch code between them — the shape
of a real model with a few unsupported ops. Latency is the median of ``--runs`` samples taken
round-robin with eager PyTorch, as ``compile_vs_peers.py`` samples (a pause after each sample
lets the thread pools go idle).

    .venv/bin/python benchmarks/partitioned.py [--model mobilenet_v2] [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

import compiler
from benchmarks import zoo
from benchmarks.compile_vs_peers import interleaved_latency

RESULTS = Path(__file__).resolve().parent / "results" / "partitioned.json"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mobilenet_v2", choices=sorted(zoo.BUILDERS))
    parser.add_argument("--fallback-ops", default="aten.add.Tensor", help="comma-separated torch_executed_ops")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    case = zoo.build(args.model)
    program = zoo.export(case)
    whole = compiler.compile(program, compiler.CompileSpec.parse(zoo.compile_spec(case)))
    split_spec = {
        **zoo.compile_spec(case),
        "partitioning": {"torch_executed_ops": args.fallback_ops.split(","), "min_block_size": 1},
    }
    split = compiler.compile(program, compiler.CompileSpec.parse(split_spec))
    inputs = case.fresh_inputs(seed=1)
    with torch.inference_mode():
        reference = case.module(*inputs)
        for label, module in (("whole", whole), ("split", split)):
            problems = zoo.compare(module(*inputs), reference)
            if problems:
                raise SystemExit(f"{label} disagrees with eager: {'; '.join(problems)}")
        samples = interleaved_latency(
            {
                "eager": lambda: case.module(*inputs),
                "whole": lambda: whole(*inputs),
                "split": lambda: split(*inputs),
            },
            args.runs,
        )
    ms = {name: statistics.median(values) * 1e3 for name, values in samples.items()}
    fallback = dict(split.report.fallback_ops)
    print(f"{args.model}, batch 1; split: {split.report.num_engines} engines, PyTorch runs {fallback}")
    print("| program | engines | ms |")
    print("|---|---:|---:|")
    print(f"| eager PyTorch | — | {ms['eager']:.2f} |")
    print(f"| compiled whole | {whole.report.num_engines} | {ms['whole']:.2f} |")
    print(f"| compiled, {args.fallback_ops} in PyTorch | {split.report.num_engines} | {ms['split']:.2f} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "model": args.model,
                "fallback_ops": fallback,
                "engines": {"whole": whole.report.num_engines, "split": split.report.num_engines},
                "ms": ms,
                "runs": args.runs,
            },
            indent=2,
        )
    )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
