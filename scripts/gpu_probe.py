"""Diagnostics for the GPU machine: the AOTInductor load that segfaulted in processes that had not
imported onnxruntime, and the device identity as nvidia-smi reports it.

    python3 scripts/gpu_probe.py OUT_DIR

Compiles a tiny CUDA package with bare torch, then loads it in fresh interpreters that import
(a) only torch, (b) torch then torch._inductor, (c) onnxruntime then torch, each under
faulthandler, and prints every exit status with the end of its stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zipfile
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
        print(f"[{label}] exit {result.returncode}: {result.stdout.strip()} {result.stderr.strip()[-600:]}", flush=True)
    bisect(package)
    return 0


MAPS = (
    "import json\n"
    "libs = sorted({l.split()[-1] for l in open('/proc/self/maps') if '.so' in l.split()[-1]})\n"
    "print(json.dumps(libs))\n"
)


def _libs(imports: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", imports + "\n" + MAPS], capture_output=True, text=True, timeout=300)
    return json.loads(result.stdout.strip().splitlines()[-1])


def bisect(package: str) -> None:
    """Which library that onnxruntime brings in makes the load work, and what the package's
    shared library links against."""
    with tempfile.TemporaryDirectory() as folder, zipfile.ZipFile(package) as archive:
        for name in archive.namelist():
            if name.endswith(".so"):
                path = archive.extract(name, folder)
                print(f"ldd {name}:\n" + subprocess.run(["ldd", path], capture_output=True, text=True).stdout, flush=True)
                nm = subprocess.run(["nm", "-D", "--undefined-only", path], capture_output=True, text=True).stdout
                print("undefined symbols (non-aoti, first 40):", [line.split()[-1] for line in nm.splitlines() if "aoti" not in line][:40], flush=True)
    plain = set(_libs("import torch"))
    with_ort = set(_libs("import onnxruntime, torch"))
    extra = sorted(with_ort - plain)
    print("libraries mapped with onnxruntime and not without:", extra, flush=True)
    for lib in extra:
        code = (
            "import ctypes, torch\n"
            f"ctypes.CDLL({lib!r}, mode=ctypes.RTLD_GLOBAL)\n"
            f"loader = torch._C._aoti.AOTIModelPackageLoader({package!r}, 'model', True, 1, 0)\n"
            "print('ran')\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        print(f"[preload {lib}] exit {result.returncode} {result.stdout.strip()} {result.stderr.strip()[-300:]}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
