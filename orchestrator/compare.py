"""``orchestrate compare MODEL``: every artifact of one model across targets and precisions.

For each artifact: its target, backend, precision, size, gate verdict, engine and fallback
counts, the worst accuracy figures its validation recorded, task accuracy where labels were
given, and what the worker measured (the validation rows of output ``(performance)``: compiled
and eager p50 latency, speedup, peak memory).

:func:`model_comparison` builds it from the services in a fixed number of queries however many
artifacts the model has (the groups are counted in the database; only one page of artifacts is
loaded). The API's ``GET /api/v1/compare/{model}``, the dashboard's model page and ``orchestrate
compare`` in direct mode all call it; over HTTP the CLI and client ask that route, so there is
no second query path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator import services
from orchestrator.services import ArtifactGroup

if TYPE_CHECKING:
    from orchestrator.remote import DirectFarm, RemoteFarm
    from orchestrator.services import Farm
    from orchestrator.views import ArtifactInfo, ValidationInfo

#: The validation rows a worker records for an engine's speed and memory carry this output name
#: (compiler.performance.PERFORMANCE).
PERFORMANCE_OUTPUT = PERFORMANCE = "(performance)"
PERFORMANCE_METRICS = ("compiled_p50_ms", "eager_p50_ms", "speedup", "peak_rss_mb", "cuda_max_allocated_mb")


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


def _worst(results: Sequence[ValidationInfo], metric: str, pick: Callable[[list[float]], float]) -> float | None:
    values = [r.value for r in results if r.metric == metric and r.output != PERFORMANCE_OUTPUT]
    return pick(values) if values else None


def _performance(results: Sequence[ValidationInfo], metric: str) -> float | None:
    return next((r.value for r in results if r.output == PERFORMANCE_OUTPUT and r.metric == metric), None)


def comparison_of(artifact: ArtifactInfo, results: Sequence[ValidationInfo]) -> Comparison:
    """One artifact's row, from the artifact and its validation results."""
    stats = artifact.partition_stats or {}
    return Comparison(
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
        **{metric: _performance(results, metric) for metric in PERFORMANCE_METRICS},
    )


@dataclass(frozen=True)
class ModelComparison:
    """A model's artifacts side by side: every (target, backend, precision) it was built for,
    with the newest artifact of each, and one page of all its artifacts, newest first."""

    model: str
    total: int
    offset: int
    groups: list[ArtifactGroup]
    #: the newest artifact of each group, in the order of ``groups``
    newest: list[Comparison]
    artifacts: list[Comparison] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelComparison:
        return cls(
            model=data["model"],
            total=int(data["total"]),
            offset=int(data["offset"]),
            groups=[ArtifactGroup(**g) for g in data["groups"]],
            newest=[Comparison(**c) for c in data["newest"]],
            artifacts=[Comparison(**c) for c in data["artifacts"]],
        )


def model_comparison(farm: Farm, model: str, *, limit: int = 50, offset: int = 0) -> ModelComparison:
    """``model`` (a name, id or sha256) side by side; ``limit`` artifacts from ``offset``."""
    groups = services.artifact_groups(farm, model)
    page = services.list_artifacts(farm, model=model, limit=limit, offset=offset) if groups else []
    on_page = {a.id for a in page}
    newest_ids = [g.newest_id for g in groups]
    others = services.artifacts_by_id(farm, [i for i in newest_ids if i not in on_page])
    known = {a.id: a for a in [*page, *others]}
    results = services.results_of_artifacts(farm, list(known))
    return ModelComparison(
        model=model,
        total=sum(g.count for g in groups),
        offset=offset,
        groups=groups,
        newest=[comparison_of(known[i], results[i]) for i in newest_ids],
        artifacts=[comparison_of(a, results[a.id]) for a in page],
    )


def compare(api: DirectFarm | RemoteFarm, model: str, *, limit: int = 50) -> list[Comparison]:
    """Every artifact of ``model`` (newest first, at most ``limit``), side by side."""
    return api.compare(model, limit=limit).artifacts
