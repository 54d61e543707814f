"""Fixtures shared by the farm's tests (orchestrator and workers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.samples import tiny_program
from orchestrator.services import Farm
from orchestrator.testing import embedded_settings


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
