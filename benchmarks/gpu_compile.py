"""Compile time of ours against a bare AOTInductor package, each cold, on one CUDA GPU.

Each contender compiles in its own fresh process with its own empty Inductor and Triton caches
(``TORCHINDUCTOR_CACHE_DIR``, ``TRITON_CACHE_DIR``), so neither reuses kernels the other
compiled. Timed from the ``nn.Module``, as in benchmarks/gpu.py: export plus
``aoti_compile_and_package`` for the bare package; export plus ``compiler.compile`` for ours.
Target (issue 8): ours at most the bare package's time plus 10 %.

    python3 benchmarks/gpu_compile.py --models resnet50 --precision fp16 --batch 1 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONTENDERS = ("ours", "aoti_package")


def child(name: str, precision: str, batch: int, contender: str) -> dict[str, float]:
    import torch

    import compiler
    from benchmarks import zoo
    from benchmarks.gpu import DTYPES, _cast

    torch.manual_seed(0)
    case = zoo.build(name)
    inputs_cpu = case.fresh_inputs(seed=1, batch=batch) if case.make_inputs else case.example_inputs
    torch.backends.cuda.matmul.allow_tf32 = precision != "fp32"
    torch.backends.cudnn.allow_tf32 = precision != "fp32"
    torch.cuda.init()
    start = time.perf_counter()
    if contender == "ours":
        with torch.no_grad():
            program = torch.export.export(case.module.eval(), tuple(inputs_cpu))
        spec = compiler.CompileSpec.parse({"backend": "aotinductor", "device": "cuda", "precision": precision})
        compiled = compiler.compile(program, spec)
        elapsed = time.perf_counter() - start
        phases = dict(compiled.report.timings)
    else:
        module = case.module.to("cuda", DTYPES[precision]).eval()
        inputs = _cast(inputs_cpu, DTYPES[precision])
        with torch.no_grad():
            program = torch.export.export(module, inputs)
        with tempfile.TemporaryDirectory() as folder:
            torch._inductor.aoti_compile_and_package(program, package_path=os.path.join(folder, "m.pt2"))
        elapsed = time.perf_counter() - start
        phases = {}
    return {"compile_s": elapsed, **{f"phase_{k}_s": v for k, v in phases.items()}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50")
    parser.add_argument("--precision", default="fp16")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "gpu_compile.jsonl")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.models, args.precision, args.batch, args.child)))
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(","):
        for attempt in range(args.repeat):
            row: dict[str, object] = {"model": name, "precision": args.precision, "batch": args.batch, "attempt": attempt}
            for contender in CONTENDERS:
                with tempfile.TemporaryDirectory() as caches:
                    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": f"{caches}/inductor", "TRITON_CACHE_DIR": f"{caches}/triton"}
                    command = [sys.executable, __file__, "--child", contender, "--models", name,
                               "--precision", args.precision, "--batch", str(args.batch)]
                    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
                    if done.returncode != 0:
                        print(done.stderr[-3000:], file=sys.stderr)
                        return 1
                    row[contender] = json.loads(done.stdout.strip().splitlines()[-1])
            ours, bare = row["ours"]["compile_s"], row["aoti_package"]["compile_s"]  # type: ignore[index]
            row["ratio"] = ours / bare
            print(json.dumps(row), flush=True)
            with args.out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
