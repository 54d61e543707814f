"""The job lifecycle: every state change of a job row, and nothing else, lives here.

A job is ``queued`` → ``running`` → ``succeeded`` | ``failed``, can be ``cancelled`` while queued or
running, goes back to ``queued`` on ``retry`` (from failed or cancelled) and on ``reap`` (running,
but its worker stopped heartbeating). Each transition is one guarded compare-and-set::

    UPDATE jobs SET state = <to>, ... WHERE id = :id AND state IN (<from>) [AND worker = :worker]

so a transition that is not legal from the row's current state changes nothing and reports
False, whatever else happened in between (a cancel while compiling, a second delivery of the same
message, a reaper and a late worker racing). Callers (the Celery task glue in ``workers/tasks.py``
and the services) decide what to do with a refused transition; none of them writes ``state``
itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from orchestrator import models as m

S = m.JobState

#: attempts a job gets before the reaper fails it instead of queueing it again
MAX_ATTEMPTS = 3
#: the error kind of a job whose engine the accuracy gate rejected
GATE_KIND = "accuracy_gate"


@dataclass(frozen=True)
class Transition:
    name: str
    sources: frozenset[m.JobState]
    target: m.JobState
    #: whether the row must be held by the worker making the change
    owned: bool = False


#: The whole state machine. ``progress`` keeps the state and is owned: only the worker that holds
#: the job may write its phase. ``claim`` also takes a running job over: a worker that died left
#: it running, and the broker delivers its message again (acks_late).
TRANSITIONS: dict[str, Transition] = {
    t.name: t
    for t in (
        Transition("claim", frozenset({S.QUEUED, S.RUNNING}), S.RUNNING),
        Transition("progress", frozenset({S.RUNNING}), S.RUNNING, owned=True),
        Transition("succeed", frozenset({S.RUNNING}), S.SUCCEEDED, owned=True),
        # a cache hit answers a job before any worker holds it
        Transition("reuse", frozenset({S.QUEUED, S.RUNNING}), S.SUCCEEDED),
        Transition("fail", frozenset({S.RUNNING}), S.FAILED, owned=True),
        # the cache holds this very build, and the accuracy gate rejected it: building it again
        # would give the same engine, so the job fails pointing at that artifact
        Transition("reject", frozenset({S.QUEUED, S.RUNNING}), S.FAILED),
        # the broker refused the message: the job never reached a worker
        Transition("fail_enqueue", frozenset({S.QUEUED}), S.FAILED),
        Transition("cancel", frozenset({S.QUEUED, S.RUNNING}), S.CANCELLED),
        Transition("retry", frozenset({S.FAILED, S.CANCELLED}), S.QUEUED),
        Transition("reap", frozenset({S.RUNNING}), S.QUEUED, owned=True),
        Transition("reap_fail", frozenset({S.RUNNING}), S.FAILED, owned=True),
    )
}


def legal(name: str, state: m.JobState) -> bool:
    return state in TRANSITIONS[name].sources


def apply(
    session: Session,
    job_id: str,
    name: str,
    values: Mapping[str, Any] | None = None,
    *,
    worker: str | None = None,
) -> bool:
    """Apply transition ``name`` to job ``job_id`` if the row is in one of its source states
    (and, for owned transitions, held by ``worker``); True when the row changed."""
    transition = TRANSITIONS[name]
    if transition.owned and worker is None:
        raise ValueError(f"transition {name} needs the worker that holds the job")
    stmt = (
        update(m.Job)
        .where(m.Job.id == job_id, m.Job.state.in_(sorted(transition.sources, key=lambda s: s.value)))
        .values(state=transition.target, **dict(values or {}))
        .execution_options(synchronize_session=False)
    )
    if transition.owned:
        stmt = stmt.where(m.Job.worker_name == worker)
    result = session.execute(stmt)
    changed = bool(result.rowcount)  # type: ignore[attr-defined]
    if changed:
        # rows this session already holds see the new values on their next access
        held = session.identity_map.get(m.Job.__mapper__.identity_key_from_primary_key((job_id,)))
        if held is not None:
            session.expire(held)
    return changed


# ------------------------------------------------------------------- the transitions, by name
def opened(job: m.Job, now: datetime, *, artifact_id: str | None = None, task_id: str | None = None) -> None:
    """``submit``: the first state of a new, not yet inserted row — succeeded at once when the
    cache answers it with ``artifact_id``, else queued under the message id ``task_id``."""
    if (artifact_id is None) == (task_id is None):
        raise ValueError("a new job is either answered by an artifact or queued under a message id")
    if artifact_id is not None:
        job.state = S.SUCCEEDED
        # the id, not the relationship: the relationship's post-update costs an UPDATE
        job.artifact_id = artifact_id
        job.finished_at = now
    else:
        job.state = S.QUEUED
        job.queued_at = now
        job.celery_task_id = task_id


def claim(session: Session, job_id: str, worker: str, now: datetime) -> bool:
    return apply(
        session,
        job_id,
        "claim",
        {
            "started_at": now,
            "attempts": m.Job.attempts + 1,
            "worker_name": worker,
            "phase": "fetch",
            "phase_timings": {},
            "error_kind": None,
            "error_message": None,
        },
    )


def progress(session: Session, job_id: str, worker: str, phase: str, timings: dict[str, float]) -> bool:
    return apply(session, job_id, "progress", {"phase": phase, "phase_timings": timings}, worker=worker)


def succeed(session: Session, job_id: str, worker: str, artifact_id: str, now: datetime, timings: dict[str, float]) -> bool:
    return apply(
        session,
        job_id,
        "succeed",
        {"artifact_id": artifact_id, "phase": None, "finished_at": now, "phase_timings": timings},
        worker=worker,
    )


def reuse(session: Session, job_id: str, artifact_id: str, now: datetime) -> bool:
    return apply(session, job_id, "reuse", {"artifact_id": artifact_id, "phase": None, "finished_at": now})


def fail(
    session: Session,
    job_id: str,
    worker: str,
    kind: str,
    message: str,
    now: datetime,
    timings: dict[str, float],
    *,
    artifact_id: str | None = None,
) -> bool:
    """``artifact_id``: the engine the job built and the accuracy gate rejected, kept for
    inspection (``orchestrate results``)."""
    return apply(
        session,
        job_id,
        "fail",
        {
            "error_kind": kind,
            "error_message": message[:10_000],
            "finished_at": now,
            "phase": None,
            "phase_timings": timings,
            "artifact_id": artifact_id,
        },
        worker=worker,
    )


def reject(session: Session, job_id: str, artifact_id: str, message: str, now: datetime) -> bool:
    return apply(
        session,
        job_id,
        "reject",
        {"error_kind": GATE_KIND, "error_message": message, "artifact_id": artifact_id, "finished_at": now, "phase": None},
    )


def fail_enqueue(session: Session, job_id: str, message: str, now: datetime) -> bool:
    return apply(
        session, job_id, "fail_enqueue", {"error_kind": "enqueue_failed", "error_message": message, "finished_at": now}
    )


def cancel(session: Session, job_id: str, now: datetime) -> bool:
    return apply(session, job_id, "cancel", {"finished_at": now, "phase": None})


def retry(session: Session, job_id: str, task_id: str, now: datetime) -> bool:
    return apply(
        session,
        job_id,
        "retry",
        {
            "queued_at": now,
            "started_at": None,
            "finished_at": None,
            "phase": None,
            "phase_timings": {},
            "error_kind": None,
            "error_message": None,
            "worker_name": None,
            "artifact_id": None,
            "celery_task_id": task_id,
        },
    )


def reap(session: Session, job_id: str, worker: str, task_id: str, now: datetime, *, max_attempts: int, attempts: int) -> str | None:
    """A running job whose worker stopped heartbeating: back to the queue with a new message id,
    or failed with kind ``worker_lost`` once it has had ``max_attempts``. Returns the new state's
    name, or None when the row had moved on (the worker came back and finished, say)."""
    if attempts < max_attempts:
        values = {"queued_at": now, "phase": None, "worker_name": None, "celery_task_id": task_id}
        return "queued" if apply(session, job_id, "reap", values, worker=worker) else None
    message = f"its worker {worker} stopped heartbeating during attempt {attempts} of {max_attempts}"
    values = {"error_kind": "worker_lost", "error_message": message, "finished_at": now, "phase": None}
    return "failed" if apply(session, job_id, "reap_fail", values, worker=worker) else None
