"""orchestrate's build farm: submit models, build engines on matching workers, query results.

``import orchestrator`` stays cheap (no Celery, SQLAlchemy or torch) until a name below is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.client import Client, JobHandle, job, submit
    from orchestrator.services import (
        ArtifactInfo,
        FarmError,
        IncompatibleArtifactError,
        InvalidRequestError,
        JobCancelledError,
        JobFailedError,
        JobInfo,
        NotFoundError,
        UnreachableError,
        ValidationInfo,
        WaitTimeoutError,
        WorkerInfo,
    )
    from orchestrator.settings import Settings, get_settings

__all__ = [
    "ArtifactInfo",
    "Client",
    "FarmError",
    "IncompatibleArtifactError",
    "InvalidRequestError",
    "JobCancelledError",
    "JobFailedError",
    "JobHandle",
    "JobInfo",
    "NotFoundError",
    "Settings",
    "UnreachableError",
    "ValidationInfo",
    "WaitTimeoutError",
    "WorkerInfo",
    "get_settings",
    "job",
    "submit",
]

_LAZY = {
    "Client": "orchestrator.client",
    "JobHandle": "orchestrator.client",
    "job": "orchestrator.client",
    "submit": "orchestrator.client",
    "Settings": "orchestrator.settings",
    "get_settings": "orchestrator.settings",
    **{
        name: "orchestrator.services"
        for name in (
            "ArtifactInfo",
            "FarmError",
            "IncompatibleArtifactError",
            "InvalidRequestError",
            "JobCancelledError",
            "JobFailedError",
            "JobInfo",
            "NotFoundError",
            "UnreachableError",
            "ValidationInfo",
            "WaitTimeoutError",
            "WorkerInfo",
        )
    },
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
