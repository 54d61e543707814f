"""Reading the farm: jobs, artifacts, validation results and workers, by id or id prefix.

Every function opens its own transaction and returns views (``orchestrator.views``), never rows,
so a caller (CLI, client, API server, dashboard) cannot change the database through them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from orchestrator import models as m
from orchestrator.errors import InvalidRequestError, NotFoundError
from orchestrator.routing import RoutingError, Target
from orchestrator.views import ArtifactInfo, JobInfo, ValidationInfo, WorkerInfo

if TYPE_CHECKING:
    from compiler.identity import DeviceIdentity
    from orchestrator.services import Farm

_ID_PREFIX = re.compile(r"[0-9a-f]+")


def resolve_job(session: Session, ref: str) -> m.Job:
    ref = ref.strip().lower()
    job = session.get(m.Job, ref)
    if job is not None:
        return job
    if len(ref) >= 6 and _ID_PREFIX.fullmatch(ref):
        # Ids are long; people paste a prefix, as with git commits. Ids are hex, and the prefix
        # is matched literally: LIKE's % and _ would otherwise match any job.
        stmt = select(m.Job).where(m.Job.id.startswith(ref, autoescape=True)).limit(2)
        matches = list(session.scalars(stmt))
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidRequestError(f"job id prefix {ref!r} is ambiguous; give more characters")
    raise NotFoundError(f"no job {ref!r}; `orchestrate jobs` lists them")


def resolve_artifact(session: Session, ref: str) -> m.Artifact:
    ref = ref.strip().lower()
    artifact = session.get(m.Artifact, ref)
    if artifact is not None:
        return artifact
    if len(ref) >= 6 and _ID_PREFIX.fullmatch(ref):
        stmt = select(m.Artifact).where(m.Artifact.id.startswith(ref, autoescape=True)).limit(2)
        matches = list(session.scalars(stmt).unique())
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidRequestError(
                f"artifact id prefix {ref!r} is ambiguous; give more characters"
            )
    raise NotFoundError(f"no artifact {ref!r}; `orchestrate artifacts list` lists them")


def get_job(farm: Farm, ref: str) -> JobInfo:
    with farm.session() as session:
        return JobInfo.of(resolve_job(session, ref))


def get_jobs(farm: Farm, job_ids: Sequence[str]) -> list[JobInfo]:
    with farm.session() as session:
        rows = {job.id: job for job in session.scalars(select(m.Job).where(m.Job.id.in_(job_ids))).unique()}
        return [JobInfo.of(rows[job_id]) for job_id in job_ids if job_id in rows]


def list_jobs(
    farm: Farm,
    *,
    state: str | None = None,
    arch: str | None = None,
    model: str | None = None,
    target: str | None = None,
    backend: str | None = None,
    submitted_by: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[JobInfo]:
    """Jobs matching every filter, newest first. ``target`` is one target exactly, as jobs show
    it (``x86_64``, ``aarch64/orin``); ``arch`` is every target of that architecture."""
    try:
        state_value = m.JobState(state) if state else None
    except ValueError:
        choices = ", ".join(s.value for s in m.JobState)
        raise InvalidRequestError(f"unknown state {state!r}: use one of {choices}") from None
    arch_value = arch_filter(arch)
    target_value = parse_target_label(target) if target else None
    with farm.session() as session:
        rows = m.list_jobs(
            session,
            state=state_value,
            arch=arch_value,
            model=model,
            target=None if target_value is None else (target_value.arch, target_value.device_class),
            backend=backend,
            submitted_by=submitted_by,
            limit=limit,
            offset=offset,
        )
        return [JobInfo.of(job) for job in rows]


def parse_target_label(label: str) -> Target:
    """A target as listings show it (``aarch64/orin``; ``aarch64.orin`` works too)."""
    arch, _, device_class = label.strip().replace(".", "/").partition("/")
    try:
        return Target.parse(arch, device_class or None)
    except RoutingError as exc:
        raise InvalidRequestError(f"target {label!r}: {exc}") from None


def arch_filter(arch: str | None) -> str | None:
    if arch is None:
        return None
    try:
        return Target.parse(arch).arch
    except RoutingError as exc:
        raise InvalidRequestError(str(exc)) from None


#: Rows read per query while filtering ``list_artifacts(runs_on=...)`` in Python.
RUNS_ON_PAGE = 200


def list_artifacts(
    farm: Farm,
    *,
    model: str | None = None,
    arch: str | None = None,
    device_class: str | None = None,
    backend: str | None = None,
    precision: str | None = None,
    limit: int = 50,
    runs_on: DeviceIdentity | None = None,
    offset: int = 0,
) -> list[ArtifactInfo]:
    """Artifacts matching every filter, newest first; with ``runs_on``, only those whose
    engines can run on that machine (``artifacts list --runs-here``). ``offset`` skips that many
    matching rows (without ``runs_on`` only)."""
    if offset and runs_on is not None:
        raise InvalidRequestError("offset works without runs_on only")
    arch_value = arch_filter(arch)
    found: list[ArtifactInfo] = []
    with farm.session() as session:
        # Compatibility is decided per row in Python, so keep reading pages until ``limit``
        # rows pass (portable engines run on every architecture: no SQL filter says it).
        page = limit if runs_on is None else max(limit, RUNS_ON_PAGE)
        while len(found) < limit:
            rows = m.list_artifacts(
                session,
                model=model,
                arch=arch_value,
                device_class=device_class.lower() if device_class else None,
                backend=backend,
                precision=precision,
                limit=page,
                offset=offset,
            )
            infos = [ArtifactInfo.of(row) for row in rows]
            found.extend(i for i in infos if runs_on is None or not i.problems_on(runs_on))
            if len(rows) < page or runs_on is None:
                break
            offset += page
    return found[:limit]


def get_artifact(farm: Farm, ref: str) -> ArtifactInfo:
    with farm.session() as session:
        return ArtifactInfo.of(resolve_artifact(session, ref))


def artifacts_by_id(farm: Farm, artifact_ids: Sequence[str]) -> list[ArtifactInfo]:
    """The artifacts with these exact ids, in the order given (unknown ids are left out)."""
    if not artifact_ids:
        return []
    with farm.session() as session:
        stmt = select(m.Artifact).where(m.Artifact.id.in_(list(artifact_ids)))
        rows = {row.id: ArtifactInfo.of(row) for row in session.scalars(stmt).unique()}
    return [rows[i] for i in artifact_ids if i in rows]


def job_artifact(farm: Farm, job_ref: str) -> ArtifactInfo | None:
    with farm.session() as session:
        job = resolve_job(session, job_ref)
        return ArtifactInfo.of(job.artifact) if job.artifact is not None else None


def results(farm: Farm, ref: str) -> list[ValidationInfo]:
    """Validation results of a job or of an artifact (either id works)."""
    with farm.session() as session:
        try:
            job = resolve_job(session, ref)
        except NotFoundError:
            artifact = resolve_artifact(session, ref)
            return [ValidationInfo.of(row) for row in artifact.validation_results]
        if job.artifact is None:
            return []
        # A cached job has no rows of its own: its evidence is the artifact's.
        return [ValidationInfo.of(row) for row in job.artifact.validation_results]


def results_of_artifacts(farm: Farm, artifact_ids: Sequence[str]) -> dict[str, list[ValidationInfo]]:
    """The validation results of many artifacts (by exact id) in one query per
    ``RESULTS_BATCH`` ids: ``{artifact_id: [results]}``, every id present."""
    found: dict[str, list[ValidationInfo]] = {artifact_id: [] for artifact_id in artifact_ids}
    ids = list(found)
    with farm.session() as session:
        for start in range(0, len(ids), RESULTS_BATCH):
            batch = ids[start : start + RESULTS_BATCH]
            stmt = (
                select(m.ValidationResult)
                .where(m.ValidationResult.artifact_id.in_(batch))
                .order_by(m.ValidationResult.artifact_id, m.ValidationResult.created_at, m.ValidationResult.id)
            )
            for row in session.scalars(stmt):
                found[row.artifact_id].append(ValidationInfo.of(row))
    return found


#: Ids per ``IN (...)`` list: well under SQLite's 32,766 bound parameters.
RESULTS_BATCH = 500


@dataclass(frozen=True)
class ArtifactGroup:
    """A model's artifacts of one (target, backend, precision): how many, their gate verdicts,
    and the newest one."""

    arch: str
    device_class: str | None
    target: str
    backend: str
    precision: str
    count: int
    accepted: int
    rejected: int
    newest_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def artifact_groups(farm: Farm, model: str) -> list[ArtifactGroup]:
    """Every (target, backend, precision) ``model`` has artifacts for, by target, backend,
    precision: counted in the database from one index (migration 0005) in two queries, however
    many artifacts there are."""
    a = m.Artifact
    keys = (a.arch, a.device_class, a.backend, a.precision)
    with farm.session() as session:
        ids = m.model_ids_matching(session, model)
        if not ids:
            return []
        counts = session.execute(
            select(
                *keys,
                func.count(),
                func.count(case((a.gate == "accepted", 1))),
                func.count(case((a.gate == "rejected", 1))),
                func.max(a.created_at),
            )
            .where(a.model_id.in_(ids))
            .group_by(*keys)
        ).all()
        # The newest of each group: the rows at one of the groups' newest times (a window
        # function would rank every row; this reads a handful), kept where the time is their
        # own group's, the highest id breaking a tie as in list_artifacts' order.
        newest_at = {tuple(row[:4]): row[7] for row in counts}
        newest: dict[tuple[Any, ...], str] = {}
        candidates = session.execute(
            select(*keys, a.created_at, a.id)
            .where(a.model_id.in_(ids), a.created_at.in_(sorted(set(newest_at.values()))))
        ).all()
        for *key, created_at, artifact_id in candidates:
            group = tuple(key)
            if newest_at.get(group) == created_at and artifact_id > newest.get(group, ""):
                newest[group] = artifact_id
    groups = [
        ArtifactGroup(
            arch=arch,
            device_class=device_class,
            target=Target(arch, device_class).label,
            backend=backend,
            precision=precision,
            count=int(count),
            accepted=int(accepted),
            rejected=int(rejected),
            newest_id=newest[(arch, device_class, backend, precision)],
        )
        for arch, device_class, backend, precision, count, accepted, rejected, _ in counts
    ]
    return sorted(groups, key=lambda g: (g.target, g.backend, g.precision))


def list_workers(farm: Farm, *, include_offline: bool = True) -> list[WorkerInfo]:
    now = m.utcnow()
    with farm.session() as session:
        rows = session.scalars(select(m.Worker).order_by(m.Worker.name))
        infos = [WorkerInfo.of(row, now) for row in rows]
    return [w for w in infos if include_offline or w.live]
