"""``orchestrate compare MODEL``: every artifact of one model across targets and precisions.

Built from the same two calls as ``artifacts list`` and ``results`` (through the server when
one is configured, else the services), so there is no second query path: for each artifact, its
target, backend, precision, size, gate verdict, engine and fallback counts, the worst
accuracy figures its validation recorded, task accuracy where labels were given, and what the
worker measured: compiled latency (p50), speedup over eager, and peak memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

#: the output name of latency and memory rows (compiler.performance.PERFORMANCE)
PERFORMANCE = "(performance)"

if TYPE_CHECKING:
    from orchestrator.remote import DirectFarm, RemoteFarm
    from orchestrator.views import ValidationInfo


@dataclass(frozen=True)
class Comparison:
    artifact_id: str
    target: str
    backend: str
    backend_version: str
    precision: str
    size_bytes: int
    gate: str | None
    engines: int | None
    fallback_ops: int
    #: worst over outputs and samples; None where validation recorded no such metric
    min_cosine: float | None
    min_snr_db: float | None
    max_abs_error: float | None
    failed_metrics: list[str]
    created_at: str | None
    #: with labelled validation data: the engine's task accuracy (0..1)
    task_accuracy: float | None = None
    #: the ``(performance)`` rows: None for artifacts validated before they were recorded
    compiled_p50_ms: float | None = None
    eager_p50_ms: float | None = None
    speedup: float | None = None
    peak_rss_mb: float | None = None
    cuda_max_allocated_mb: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _worst(results: list[ValidationInfo], metric: str, pick: Any) -> float | None:
    values = [r.value for r in results if r.metric == metric]
    return pick(values) if values else None


def _performance(results: list[ValidationInfo], metric: str) -> float | None:
    return next((r.value for r in results if r.output == PERFORMANCE and r.metric == metric), None)


def compare(api: DirectFarm | RemoteFarm, model: str, *, limit: int = 50) -> list[Comparison]:
    """Every artifact of ``model`` (newest first, at most ``limit``), side by side."""
    rows = []
    for artifact in api.list_artifacts(model=model, limit=limit):
        results = api.results(artifact.id)
        stats = artifact.partition_stats or {}
        rows.append(
            Comparison(
                artifact_id=artifact.id,
                target=artifact.target,
                backend=artifact.backend,
                backend_version=artifact.backend_version,
                precision=artifact.precision,
                size_bytes=artifact.size_bytes,
                gate=artifact.gate,
                engines=stats.get("num_engines"),
                fallback_ops=sum((stats.get("fallback_ops") or {}).values()),
                min_cosine=_worst(results, "cosine_similarity", min),
                min_snr_db=_worst(results, "snr_db", min),
                max_abs_error=_worst(results, "max_abs_error", max),
                failed_metrics=sorted({f"{r.output} {r.metric}" for r in results if not r.passed}),
                created_at=artifact.created_at,
                task_accuracy=_worst(results, "task_accuracy", min),
                compiled_p50_ms=_performance(results, "compiled_p50_ms"),
                eager_p50_ms=_performance(results, "eager_p50_ms"),
                speedup=_performance(results, "speedup"),
                peak_rss_mb=_performance(results, "peak_rss_mb"),
                cuda_max_allocated_mb=_performance(results, "cuda_max_allocated_mb"),
            )
        )
    return rows
