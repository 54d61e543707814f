"""Fixtures shared by the farm's tests (orchestrator and workers)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.samples import tiny_program
from orchestrator.services import Farm
from orchestrator.testing import embedded_settings


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist, each worker gets its share of the cores for PyTorch's intra-op pool, and so
    do the subprocesses its tests start (workers, the CLI), through OMP_NUM_THREADS.

    Two workers of two threads each on two cores spend CPU waiting for threads the other worker
    holds (OpenMP spins before it sleeps): ``tests/compiler/test_models.py`` alone took 121 s
    of CPU with two threads a worker and 92 s with one (benchmarks/README.md, "The whole suite
    on two cores"). A value the caller set wins."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = int(os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // workers))))
    import torch

    torch.set_num_threads(threads)


# Seconds each of the slowest test files takes in a two-worker run of the whole suite, on CI's
# kind of machine (2026-12-03; `--durations=0`, summed per file). `scripts/test.sh` runs one file
# per worker at a time (`--dist loadfile`), and xdist hands files out in collection order (with
# `--no-loadscope-reorder`; its default puts the files with the most tests first, which left the
# few-test, many-second farm files to the end of the run: one worker ran alone for 29 s). Sorting
# the longest first is the classic longest-processing-time rule, which is what keeps the two
# workers finishing together. A file missing here counts as short and keeps its place; a stale
# figure costs only balance, never correctness.
FILE_SECONDS = {
    "compiler/test_models.py": 91,
    "workers/test_observability.py": 36,
    "workers/test_pipeline_redis.py": 19,
    "workers/test_pipeline_embedded.py": 18,
    "orchestrator/test_cli.py": 18,
    "compiler/backends/test_aotinductor.py": 15,
    "workers/test_faults.py": 13,
    "compiler/test_validation_gate.py": 12,
    "workers/test_pipeline_eager.py": 12,
    "orchestrator/server/test_dashboard_browser.py": 11,
    "orchestrator/test_concurrency.py": 11,
    "orchestrator/test_services.py": 11,
    "compiler/conversion/test_unary_variants.py": 11,
    "orchestrator/server/test_api.py": 9,
    "compiler/conversion/test_comparison_variants.py": 9,
    "workers/test_pipeline_data.py": 7,
    "compiler/conversion/test_arithmetic_variants.py": 6,
    "compiler/test_runtime.py": 6,
    "orchestrator/test_artifact_compatibility.py": 6,
    "workers/test_capabilities.py": 5,
    "orchestrator/server/test_cli_remote.py": 5,
    "compiler/test_data_dependent_shapes.py": 5,
    "workers/test_tasks.py": 5,
    "orchestrator/test_migrations.py": 5,
    "compiler/test_performance.py": 5,
    "compiler/conversion/test_selection.py": 5,
    "orchestrator/test_doctor.py": 5,
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest files first (see FILE_SECONDS); tests keep their order within a file, and files
    of equal weight keep collection order (the sort is stable), so every xdist worker collects
    the same list."""
    tests = Path(__file__).parent

    def seconds(item: pytest.Item) -> int:
        try:
            relative = item.path.relative_to(tests).as_posix()
        except ValueError:
            return 0
        return FILE_SECONDS.get(relative, 0)

    items.sort(key=lambda item: -seconds(item))


@pytest.fixture(scope="module")
def inductor_without_precompiled_headers() -> Iterator[None]:
    """AOTInductor builds in this module skip Inductor's precompiled header.

    The product keeps Inductor's default: a worker builds many packages, and the header, made
    once per machine (in ``/tmp/torchinductor_<user>/precompiled_headers``), saves ~2.4 s of
    CPU in each later build. The suite builds two CPU packages, on CI on a fresh machine, where
    making the header costs more than it saves: test_aotinductor.py and test_pipeline_eager.py
    took 48.7 s (42.3 s of CPU) with it and 38.2 s (32.8 s) without, with no header yet
    (benchmarks/README.md, "The whole suite on two cores"). What is built does not change, only
    how long the C++ compiler takes."""
    import torch._inductor.config as inductor_config

    with inductor_config.patch({"aot_inductor.precompile_headers": False}):
        yield


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-op ExportedProgram saved as a .pt2 file."""
    import torch

    path = tmp_path_factory.mktemp("models") / "tiny.pt2"
    torch.export.save(tiny_program(), path)
    return path


@pytest.fixture
def farm(tmp_path: Path) -> Farm:
    """A farm on embedded defaults; not eager: submit only enqueues on the embedded SQL broker,
    and nothing consumes it unless a test starts a worker."""
    return Farm(embedded_settings(tmp_path / "home"))
