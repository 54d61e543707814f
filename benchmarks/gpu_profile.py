"""Where the GPU time goes: ours against ``torch.compile`` kernel by kernel, on one row.

Builds ours (``backend: aotinductor``, no CUDA graph, so each kernel shows) and
``torch.compile`` (default mode) for one model, precision and batch, profiles ``--calls`` calls
of each with ``torch.profiler`` and prints the CUDA kernels that take the most time, per call.
Used to find why a row of ``benchmarks/gpu.py`` is slower than a contender.

    python3 benchmarks/gpu_profile.py --model vit_b16 --precision fp16 --batch 8
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from torch.profiler import ProfilerActivity, profile

import compiler
from benchmarks import zoo
from benchmarks.gpu import DTYPES, _cast


def kernels(fn: Callable[[], Any], calls: int, top: int) -> str:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    rows = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    rows.sort(key=lambda e: e.self_device_time_total, reverse=True)
    total = sum(e.self_device_time_total for e in rows) / calls
    lines = [f"  total {total / 1000:.3f} ms a call over {sum(e.count for e in rows) // calls} kernels"]
    for e in rows[:top]:
        lines.append(f"  {e.self_device_time_total / calls / 1000:8.3f} ms  x{e.count // calls:<4} {e.key[:110]}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_b16")
    parser.add_argument("--precision", default="fp16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--aotinductor", default="{}", help="the spec's aotinductor block, as YAML/JSON")
    args = parser.parse_args(argv)
    import yaml

    torch.manual_seed(0)
    case = zoo.build(args.model)
    inputs_cpu = case.fresh_inputs(seed=1, batch=args.batch) if case.make_inputs else case.example_inputs
    fp32 = args.precision == "fp32"
    torch.backends.cuda.matmul.allow_tf32 = not fp32
    torch.backends.cudnn.allow_tf32 = not fp32
    with torch.no_grad():
        program = torch.export.export(case.module.to("cpu", torch.float32), tuple(inputs_cpu))
    spec = compiler.CompileSpec.parse(
        {"backend": "aotinductor", "device": "cuda", "precision": args.precision, "aotinductor": yaml.safe_load(args.aotinductor)}
    )
    ours = compiler.compile(program, spec)
    ours_inputs = _cast(inputs_cpu, torch.float32)
    with torch.inference_mode():
        print(f"ours ({args.model} {args.precision} b{args.batch}, aotinductor {args.aotinductor}):", flush=True)
        print(kernels(lambda: ours(*ours_inputs), args.calls, args.top), flush=True)
    module = case.module.to("cuda", DTYPES[args.precision]).eval()
    inputs = _cast(inputs_cpu, DTYPES[args.precision])
    fn = torch.compile(module)
    with torch.inference_mode():
        print("torch.compile (default mode):", flush=True)
        print(kernels(lambda: fn(*inputs), args.calls, args.top), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
