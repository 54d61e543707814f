"""Diagnostics for the GPU machine: the AOTInductor load that segfaulted in processes that had not
imported onnxruntime, and the device identity as nvidia-smi reports it.

    python3 scripts/gpu_probe.py OUT_DIR

Compiles a tiny CUDA package with bare torch, then loads it in fresh interpreters that import
(a) only torch, (b) torch then torch._inductor, (c) onnxruntime then torch, each under
faulthandler, and prints every exit status with the end of its stderr.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    for args, name in ((["nvidia-smi"], "nvidia-smi.txt"),
                       (["nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"], "nvidia-smi-query.txt")):
        try:
            (out / name).write_text(subprocess.run(args, capture_output=True, text=True, timeout=30).stdout)
        except OSError as exc:
            print(f"{args[0]}: {exc}")
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU()).cuda().eval()
    x = torch.randn(2, 8, device="cuda")
    program = torch.export.export(model, (x,))
    package = str(out / "probe.pt2")
    torch._inductor.aoti_compile_and_package(program, package_path=package)
    loads = {
        "torch only": "import torch",
        "torch + torch._inductor": "import torch, torch._inductor",
        "onnxruntime first": "import onnxruntime, torch",
        "torch, then onnxruntime": "import torch, onnxruntime",
    }
    for label, imports in loads.items():
        code = (
            f"{imports}\n"
            "import torch._C\n"
            f"loader = torch._C._aoti.AOTIModelPackageLoader({package!r}, 'model', True, 1, 0)\n"
            "y = loader.run([torch.randn(2, 8, device='cuda')])\n"
            "print('ran', tuple(y[0].shape))\n"
        )
        result = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], capture_output=True, text=True, timeout=300)
        print(f"[{label}] exit {result.returncode}: {result.stdout.strip()} {result.stderr.strip()[-1500:]}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
