"""Fixtures shared by the farm's tests (orchestrator and workers)."""

from __future__ import annotations

import os
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
