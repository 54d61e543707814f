"""Latency and memory of a compiled program beside its eager reference, recorded with the
validation results under the output name ``(performance)``.

Latency: ``validation.latency_warmup`` untimed calls, then ``validation.latency_runs`` timed
ones, of the eager reference and of the engine on one input set, each call waited for (CUDA
synchronised) and timed on its own; the p50/p90/p99 of those calls and the speedup (eager p50 /
compiled p50). Memory: the peak resident set of this process since :func:`reset_peak_memory`
(the compile and validation, where the caller reset it before compiling), and on CUDA the most
memory PyTorch's allocator held. These rows carry no threshold and always pass: they describe
the engine, they never reject it.
"""

from __future__ import annotations

import contextlib
import copy
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

PERFORMANCE = "(performance)"
#: what a performance row's metric may be, in the order they are recorded
METRICS = (
    "eager_p50_ms", "eager_p90_ms", "eager_p99_ms",
    "compiled_p50_ms", "compiled_p90_ms", "compiled_p99_ms",
    "speedup", "peak_rss_mb", "cuda_max_allocated_mb",
)

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_memory(device: str | torch.device = "cpu") -> None:
    """Start a new peak: Linux's resident-set high-water mark of this process (``5`` written to
    ``/proc/self/clear_refs``) and, on CUDA, the allocator's peak statistics. Where the kernel
    does not allow it, the peak stays the process's lifetime peak."""
    with contextlib.suppress(OSError):
        _CLEAR_REFS.write_text("5")
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(device)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``VmHWM``; ``ru_maxrss`` elsewhere)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # kilobytes on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0


def latency_ms(call: Callable[[], Any], warmup: int, runs: int, device: torch.device) -> list[float]:
    """Milliseconds of each of ``runs`` calls of ``call`` after ``warmup`` untimed ones; on a
    CUDA device each call is timed until the device has finished it."""
    cuda = device.type == "cuda"

    def wait() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    with torch.no_grad():
        for _ in range(warmup):
            call()
        wait()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            call()
            wait()
            times.append((time.perf_counter() - start) * 1e3)
    return times


def percentiles(times: Sequence[float]) -> tuple[float, float, float]:
    p50, p90, p99 = np.percentile(np.asarray(times, dtype=np.float64), [50, 90, 99])
    return float(p50), float(p90), float(p99)


def measure(
    compiled: torch.nn.Module,
    reference: torch.nn.Module,
    inputs: Sequence[torch.Tensor],
    device: torch.device,
    *,
    warmup: int,
    runs: int,
) -> dict[str, float]:
    """The performance metrics by name (see the module docstring); latency only when
    ``runs`` > 0."""
    figures: dict[str, float] = {}
    if runs > 0:
        eager, eager_inputs = _reference_on(reference, inputs, device)
        on_device = [t.to(device) for t in inputs]
        eager_times = latency_ms(lambda: eager(*eager_inputs), warmup, runs, device)
        compiled_times = latency_ms(lambda: compiled(*on_device), warmup, runs, device)
        for prefix, times in (("eager", eager_times), ("compiled", compiled_times)):
            p50, p90, p99 = percentiles(times)
            figures.update({f"{prefix}_p50_ms": p50, f"{prefix}_p90_ms": p90, f"{prefix}_p99_ms": p99})
        if figures["compiled_p50_ms"] > 0:
            figures["speedup"] = figures["eager_p50_ms"] / figures["compiled_p50_ms"]
    figures["peak_rss_mb"] = peak_rss_mb()
    if device.type == "cuda" and torch.cuda.is_available():
        figures["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return figures


def _reference_on(
    reference: torch.nn.Module, inputs: Sequence[torch.Tensor], device: torch.device
) -> tuple[Callable[..., Any], list[torch.Tensor]]:
    """The eager reference on the engine's device, so the speedup compares like with like: a
    program whose weights sit elsewhere is timed as a copy moved there (its own device when the
    copy cannot be made)."""
    here = next((t.device for t in [*reference.parameters(), *reference.buffers()]), torch.device("cpu"))
    if here.type == device.type or device.type != "cuda":
        return reference, [t.to(here) for t in inputs]
    try:
        moved = copy.deepcopy(reference)
        if isinstance(moved, torch.fx.GraphModule):
            from compiler.api import move_graph_to_device

            move_graph_to_device(moved, device)
        else:
            moved = moved.to(device)
        on_device = [t.to(device) for t in inputs]
        with torch.no_grad():
            moved(*on_device)
        return moved, on_device
    except Exception:  # noqa: BLE001 - a reference that does not move is timed where it is
        return reference, [t.to(here) for t in inputs]
