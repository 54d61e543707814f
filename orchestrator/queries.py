"""Reading the farm: jobs, artifacts, validation results and workers, by id or id prefix.

Every function opens its own transaction and returns views (``orchestrator.views``), never rows,
so a caller (CLI, client, API server, dashboard) cannot change the database through them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select
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
    limit: int = 50,
) -> list[JobInfo]:
    try:
        state_value = m.JobState(state) if state else None
    except ValueError:
        choices = ", ".join(s.value for s in m.JobState)
        raise InvalidRequestError(f"unknown state {state!r}: use one of {choices}") from None
    arch_value = arch_filter(arch)
    with farm.session() as session:
        rows = m.list_jobs(session, state=state_value, arch=arch_value, model=model, limit=limit)
        return [JobInfo.of(job) for job in rows]


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
) -> list[ArtifactInfo]:
    """Artifacts matching every filter, newest first; with ``runs_on``, only those whose
    engines can run on that machine (``artifacts list --runs-here``)."""
    arch_value = arch_filter(arch)
    found: list[ArtifactInfo] = []
    with farm.session() as session:
        # Compatibility is decided per row in Python, so keep reading pages until ``limit``
        # rows pass (portable engines run on every architecture: no SQL filter says it).
        page = limit if runs_on is None else max(limit, RUNS_ON_PAGE)
        offset = 0
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


def list_workers(farm: Farm, *, include_offline: bool = True) -> list[WorkerInfo]:
    now = m.utcnow()
    with farm.session() as session:
        rows = session.scalars(select(m.Worker).order_by(m.Worker.name))
        infos = [WorkerInfo.of(row, now) for row in rows]
    return [w for w in infos if include_offline or w.live]
