"""The backend registry: the one source of backend facts, by name (see ``Backend``)."""

from __future__ import annotations

from compiler.backends.aotinductor import AOTInductorBackend
from compiler.backends.base import (
    Backend,
    Calibration,
    EngineMeta,
    EngineRunner,
    FxPartition,
    TensorMeta,
)
from compiler.backends.onnxruntime import OnnxRuntimeBackend
from compiler.backends.tensorrt import TensorRTBackend
from compiler.errors import BackendUnavailableError

BACKENDS: dict[str, Backend] = {
    "onnxruntime": OnnxRuntimeBackend(),
    "tensorrt": TensorRTBackend(),
    "aotinductor": AOTInductorBackend(),
}


def get_backend(name: str, *, require_available: bool = True) -> Backend:
    backend = BACKENDS.get(name)
    if backend is None:
        raise BackendUnavailableError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if require_available and not backend.available():
        raise BackendUnavailableError(backend.unavailable_reason())
    return backend


def backend_versions() -> dict[str, str]:
    """Versions of the backends installed here (those that import)."""
    versions = {}
    for name, backend in BACKENDS.items():
        if backend.available():
            versions[name] = backend.version() or "unknown"
    return versions


__all__ = [
    "BACKENDS",
    "Backend",
    "Calibration",
    "EngineMeta",
    "EngineRunner",
    "FxPartition",
    "TensorMeta",
    "backend_versions",
    "get_backend",
]
