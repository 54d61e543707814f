"""Latency and memory rows of validation (``compiler.performance``): counted calls, percentiles,
the peak-memory reset, the spec's knobs, and on a GPU the CUDA rows."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import compiler
from compiler.performance import (
    PERFORMANCE,
    latency_ms,
    percentiles,
)
from orchestrator.samples import tiny_program

REPO = Path(__file__).resolve().parents[2]
LATENCY = {f"{kind}_{p}_ms" for kind in ("eager", "compiled") for p in ("p50", "p90", "p99")}


def _performance(results: list[compiler.ValidationResult]) -> dict[str, compiler.ValidationResult]:
    return {r.metric: r for r in results if r.output == PERFORMANCE}


def test_latency_times_each_of_the_runs_after_the_warmup() -> None:
    calls: list[int] = []
    times = latency_ms(lambda: calls.append(1), warmup=3, runs=7, device=torch.device("cpu"))
    assert len(calls) == 10 and len(times) == 7 and all(t >= 0 for t in times)


def test_percentiles_are_numpys() -> None:
    times = [float(v) for v in range(1, 101)]
    assert percentiles(times) == pytest.approx(tuple(np.percentile(times, [50, 90, 99])))


def test_peak_rss_is_reset_to_what_the_process_holds_now() -> None:
    # in a fresh process: a long-lived one (an xdist worker) may hold its old peak resident
    code = textwrap.dedent(
        """
        import numpy as np
        from compiler.performance import peak_rss_mb, reset_peak_memory
        grown = np.ones(40 * 2**20 // 8)  # 40 MiB touched, then freed
        grown[::512] = 2.0
        high = peak_rss_mb()
        del grown
        reset_peak_memory()
        print(high, peak_rss_mb())
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    high, after = (float(v) for v in done.stdout.split()[-2:])
    assert after < high - 30  # the high-water mark starts again from the current set


def test_validate_ends_with_performance_rows_that_never_fail() -> None:
    program = tiny_program()
    spec = compiler.CompileSpec.parse({"validation": {"samples": 2, "latency_warmup": 1, "latency_runs": 4}})
    compiled = compiler.compile(program, spec)
    results = compiler.validate(compiled, program, spec, seed=5)
    rows = _performance(results)
    assert set(rows) == LATENCY | {"speedup", "peak_rss_mb"}
    assert all(r.threshold is None and r.passed and r.samples == 4 and r.seed == 5 for r in rows.values())
    assert rows["speedup"].value == pytest.approx(rows["eager_p50_ms"].value / rows["compiled_p50_ms"].value)
    assert rows["compiled_p50_ms"].value <= rows["compiled_p99_ms"].value
    assert results[-len(rows):] == list(rows.values())  # after every accuracy row


def test_no_latency_rows_with_latency_runs_0_and_none_without_performance() -> None:
    program = tiny_program()
    spec = compiler.CompileSpec.parse({"validation": {"samples": 2, "latency_runs": 0}})
    compiled = compiler.compile(program, spec)
    assert set(_performance(compiler.validate(compiled, program, spec))) == {"peak_rss_mb"}
    assert not _performance(compiler.validate(compiled, program, spec, performance=False))


def test_compile_with_validate_reports_performance_once_after_the_gate() -> None:
    spec = compiler.CompileSpec.parse({"validation": {"samples": 2, "latency_runs": 3}})
    compiled = compiler.compile(tiny_program(), spec, validate=True)
    metrics = [r["metric"] for r in compiled.report.validation if r["output"] == PERFORMANCE]
    assert sorted(metrics) == sorted(LATENCY | {"speedup", "peak_rss_mb"})


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run scripts/gpu-tests.sh on the GPU machine)")
def test_cuda_engines_record_the_allocator_peak_and_time_eager_on_the_gpu() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)).eval()
    program = torch.export.export(module, (torch.randn(8, 64),))
    spec = compiler.CompileSpec.parse({"backend": "aotinductor", "device": "cuda", "validation": {"samples": 2, "latency_runs": 10}})
    compiled = compiler.compile(program, spec, validate=True)
    rows = {r["metric"]: r for r in compiled.report.validation if r["output"] == PERFORMANCE}
    assert set(rows) == LATENCY | {"speedup", "peak_rss_mb", "cuda_max_allocated_mb"}
    assert rows["cuda_max_allocated_mb"]["value"] > 0
    from compiler.performance import _reference_on

    eager, inputs = _reference_on(program.module(), [torch.randn(8, 64)], torch.device("cuda"))
    assert inputs[0].is_cuda and next(iter(eager.parameters())).is_cuda  # like with like
