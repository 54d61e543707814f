"""The job lifecycle: every transition is a guarded compare-and-set, so random interleavings of
submit, claim, progress, succeed, fail, cancel, retry and reap never reach an illegal state and
never lose or duplicate an artifact (property-based, against a real SQLite database)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator import db
from orchestrator import jobs as lifecycle
from orchestrator import models as m

S = m.JobState
WORKERS = ("w1", "w2")
EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["claim", "progress", "succeed", "fail", "cancel", "retry", "reap"]),
        st.integers(0, 2),  # which job
        st.sampled_from(WORKERS),  # who acts (for worker-side events)
    ),
    max_size=40,
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('jobs')) / 'farm.db'}"
    db.upgrade(url)
    return db.make_engine(url)


def _new_jobs(session: Session, count: int) -> list[str]:
    model = m.Model(name="tiny", sha256=m.new_id() * 2, size_bytes=1, uri="file:///x")
    spec = m.CompileSpecRow(sha256=m.new_id() * 2, canonical_json="{}")
    ids = []
    for _ in range(count):
        job = m.Job(
            id=m.new_id(), model=model, spec=spec, arch="x86_64", queue="compile.x86_64",
            backend="onnxruntime", precision="fp32", cache_key=m.new_id() * 2, phase_timings={}, attempts=0,
        )
        lifecycle.opened(job, m.utcnow(), task_id=m.new_id())
        session.add(job)
        ids.append(job.id)
    session.flush()
    return ids


def _artifact(session: Session, job_id: str) -> str:
    job = session.get(m.Job, job_id)
    assert job is not None
    artifact = m.Artifact(
        id=m.new_id(), job_id=job_id, model_id=job.model_id, spec_id=job.spec_id, backend="onnxruntime",
        backend_version="1", arch="x86_64", device_class=None, precision="fp32", uri="file:///a",
        sha256="0" * 64, size_bytes=1, build_key=m.new_id() * 2,
    )
    session.add(artifact)
    session.flush()
    return artifact.id


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=EVENTS)
def test_random_interleavings_keep_the_state_machine_and_every_artifact(engine, events) -> None:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        ids = _new_jobs(session, 3)
        # the model of what the rows must be: (state, holder, succeeded artifact)
        model = {job_id: (S.QUEUED, None, None) for job_id in ids}
        artifacts: dict[str, str] = {}
        for event, index, worker in events:
            job_id = ids[index]
            state, holder, artifact_id = model[job_id]
            now = m.utcnow()
            if event == "claim":
                changed = lifecycle.claim(session, job_id, worker, now)
                expected = state in (S.QUEUED, S.RUNNING)
                if changed:
                    model[job_id] = (S.RUNNING, worker, None)
            elif event == "progress":
                changed = lifecycle.progress(session, job_id, worker, "build", {"fetch": 0.1})
                expected = state == S.RUNNING and holder == worker
            elif event == "succeed":
                expected = state == S.RUNNING and holder == worker
                candidate = _artifact(session, job_id) if expected else m.new_id()
                changed = lifecycle.succeed(session, job_id, worker, candidate, now, {})
                if changed:
                    model[job_id] = (S.SUCCEEDED, worker, candidate)
                    artifacts[job_id] = candidate
            elif event == "fail":
                changed = lifecycle.fail(session, job_id, worker, "conversion_failed", "boom", now, {})
                expected = state == S.RUNNING and holder == worker
                if changed:
                    model[job_id] = (S.FAILED, worker, None)
            elif event == "cancel":
                changed = lifecycle.cancel(session, job_id, now)
                expected = state in (S.QUEUED, S.RUNNING)
                if changed:
                    model[job_id] = (S.CANCELLED, holder, None)
            elif event == "retry":
                changed = lifecycle.retry(session, job_id, m.new_id(), now)
                expected = state in (S.FAILED, S.CANCELLED)
                if changed:
                    model[job_id] = (S.QUEUED, None, None)
                    artifacts.pop(job_id, None)
            else:  # reap: the holder stopped heartbeating
                attempts = session.scalar(select(m.Job.attempts).where(m.Job.id == job_id)) or 0
                outcome = lifecycle.reap(session, job_id, worker, m.new_id(), now, max_attempts=3, attempts=attempts)
                changed = outcome is not None
                expected = state == S.RUNNING and holder == worker
                if outcome == "queued":
                    model[job_id] = (S.QUEUED, None, None)
                elif outcome == "failed":
                    model[job_id] = (S.FAILED, worker, None)
            assert changed == expected, (event, job_id, state, holder, worker)
            for other, (want_state, want_holder, want_artifact) in model.items():
                row = session.get(m.Job, other)
                assert row is not None
                assert row.state == want_state
                if want_state in (S.RUNNING, S.SUCCEEDED):
                    assert row.worker_name == want_holder
                # a succeeded job points at exactly its artifact; no other state points at one
                assert row.artifact_id == (want_artifact if want_state == S.SUCCEEDED else None)
        # nothing lost or duplicated: each succeeded job's artifact exists once
        for job_id, artifact_id in artifacts.items():
            assert session.scalar(select(func.count()).select_from(m.Artifact).where(m.Artifact.id == artifact_id)) == 1
            assert session.get(m.Job, job_id).artifact_id == artifact_id  # type: ignore[union-attr]
        session.rollback()


def test_owned_transitions_need_the_holder() -> None:
    with pytest.raises(ValueError, match="needs the worker"):
        lifecycle.apply(None, "job", "succeed")  # type: ignore[arg-type]


def test_the_table_allows_exactly_the_documented_moves() -> None:
    assert lifecycle.legal("retry", S.FAILED) and lifecycle.legal("retry", S.CANCELLED)
    assert not lifecycle.legal("retry", S.SUCCEEDED)
    assert not lifecycle.legal("cancel", S.SUCCEEDED) and not lifecycle.legal("cancel", S.FAILED)
    assert not lifecycle.legal("succeed", S.QUEUED)
    finals = [s for s in S if s.is_final]
    leaving_final = {name for name, t in lifecycle.TRANSITIONS.items() if t.sources & set(finals)}
    assert leaving_final == {"retry"}  # only a retry leaves a final state


def _running_on_a_dead_worker(farm, job_id: str, attempts: int) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from sqlalchemy import update

    with farm.session() as session:
        assert lifecycle.claim(session, job_id, "ghost@gone", m.utcnow() - timedelta(minutes=5))
        session.execute(update(m.Job).where(m.Job.id == job_id).values(attempts=attempts))


def test_reaper_requeues_a_job_whose_worker_stopped_heartbeating_then_fails_it(farm, tiny_model) -> None:  # type: ignore[no-untyped-def]
    from orchestrator import services
    from orchestrator.routing import Target

    (job,) = services.submit(farm, tiny_model, [Target("x86_64")], services.resolve_spec()).jobs
    with farm.session() as session:
        old_task = session.get(m.Job, job.id).celery_task_id  # type: ignore[union-attr]
    _running_on_a_dead_worker(farm, job.id, attempts=1)
    assert services.reap_stale(farm, max_attempts=2) == [(job.id, "queued")]
    requeued = services.get_job(farm, job.id)
    assert requeued.state == "queued" and requeued.attempts == 1
    with farm.session() as session:
        new_task = session.get(m.Job, job.id).celery_task_id  # type: ignore[union-attr]
    assert new_task != old_task
    # the old message, delivered again, no longer builds anything
    from workers.tasks import claim

    assert claim(farm, job.id, "w1", task_id=old_task) is None
    _running_on_a_dead_worker(farm, job.id, attempts=2)
    assert services.reap_stale(farm, max_attempts=2) == [(job.id, "failed")]
    failed = services.get_job(farm, job.id)
    assert failed.state == "failed" and failed.error_kind == "worker_lost"
    assert services.reap_stale(farm, max_attempts=2) == []  # nothing left to reap
