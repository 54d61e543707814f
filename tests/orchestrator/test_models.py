from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from orchestrator import db as farm_db
from orchestrator.models import (
    Artifact,
    CompileSpecRow,
    Job,
    JobState,
    Model,
    ValidationResult,
    Worker,
    WorkerState,
    build_key,
    list_artifacts,
    list_jobs,
    new_id,
    utcnow,
)


def _model(name: str = "resnet", sha: str | None = None) -> Model:
    sha = sha or new_id() * 2
    return Model(name=name, sha256=sha, size_bytes=1234, uri=f"file:///store/sha256/{sha}")


def _spec() -> CompileSpecRow:
    return CompileSpecRow(sha256=new_id() * 2, canonical_json='{"backend":"onnxruntime"}')


def _job(model: Model, spec: CompileSpecRow, arch: str = "x86_64", **extra: object) -> Job:
    values: dict[str, object] = {
        "model": model,
        "spec": spec,
        "arch": arch,
        "queue": f"compile.{arch}",
        "backend": "onnxruntime",
        "precision": "fp32",
        "cache_key": build_key(
            model_sha256=model.sha256,
            spec_sha256=spec.sha256,
            backend="onnxruntime",
            backend_version=None,
            arch=arch,
            device_class=None,
        ),
    }
    values.update(extra)
    return Job(**values)


def _artifact(job: Job, created_at: datetime | None = None, **extra: object) -> Artifact:
    values: dict[str, object] = {
        "job": job,
        "model": job.model,
        "spec": job.spec,
        "backend": job.backend,
        "backend_version": "1.32.0",
        "arch": job.arch,
        "device_class": job.device_class,
        "precision": job.precision,
        "uri": "file:///store/sha256/ab/cd",
        "sha256": new_id() * 2,
        "size_bytes": 99,
        "build_key": new_id() * 2,
    }
    if created_at is not None:
        values["created_at"] = created_at
    values.update(extra)
    return Artifact(**values)


def test_job_artifact_and_results_are_written_in_one_transaction(session: Session) -> None:
    model, spec = _model(), _spec()
    job = _job(model, spec, device_class="sm90", phase_timings={"frontend": 0.5})
    session.add(job)
    session.flush()
    artifact = _artifact(job, partition_stats={"num_engines": 1, "fallback_ops": {"aten.sort": 2}})
    # The jobs <-> artifacts cycle: both sides set before a single commit.
    job.artifact = artifact
    job.state = JobState.SUCCEEDED
    session.add(
        ValidationResult(
            artifact=artifact,
            job=job,
            output_name="output_0",
            metric="max_abs_error",
            value=1e-6,
            threshold=1e-3,
            passed=True,
            seed=2**40,
        )
    )
    session.commit()
    session.expunge_all()

    loaded = session.get(Job, job.id)
    assert loaded is not None and loaded.artifact is not None
    assert loaded.state is JobState.SUCCEEDED
    assert loaded.target == "x86_64.sm90"
    assert loaded.artifact.partition_stats["fallback_ops"] == {"aten.sort": 2}
    assert loaded.artifact.job.id == job.id
    [result] = loaded.artifact.validation_results
    assert (result.metric, result.passed, result.seed) == ("max_abs_error", True, 2**40)
    assert loaded.validation_results == [result]


def test_timestamps_come_back_as_aware_utc(session: Session) -> None:
    paris = timezone(timedelta(hours=2))
    started = datetime(2026, 3, 1, 14, 30, 15, 123456, tzinfo=paris)
    job = _job(_model(), _spec(), started_at=started)
    session.add(job)
    session.commit()
    session.expunge_all()
    loaded = session.get(Job, job.id)
    assert loaded is not None and loaded.started_at is not None
    assert loaded.started_at.tzinfo is not None
    assert loaded.started_at.utcoffset() == timedelta(0)
    assert loaded.started_at == started
    assert abs(loaded.created_at - utcnow()) < timedelta(minutes=1)


def test_naive_datetimes_are_refused(session: Session) -> None:
    session.add(_job(_model(), _spec(), started_at=datetime(2026, 1, 1)))
    with pytest.raises(StatementError, match="naive datetime"):
        session.flush()


def test_enums_are_stored_by_value(session: Session) -> None:
    job = _job(_model(), _spec(), state=JobState.CANCELLED)
    session.add(job)
    session.add(Worker(name="celery@box", hostname="box", arch="x86_64", queues=["compile.x86_64"]))
    session.commit()
    assert session.scalar(text("SELECT state FROM jobs")) == "cancelled"
    assert session.scalar(text("SELECT state FROM workers")) == "online"
    # The CHECK constraint keeps out states the code does not know.
    with pytest.raises(IntegrityError):
        session.execute(text("UPDATE jobs SET state = 'exploded'"))
    session.rollback()


def test_in_place_changes_to_json_columns_are_saved(session: Session) -> None:
    job = _job(_model(), _spec())
    worker = Worker(name="celery@jetson", hostname="jetson", arch="aarch64", device_class="orin")
    session.add_all([job, worker])
    session.commit()
    job.phase_timings["lowering"] = 0.25
    worker.queues.append("compile.aarch64.orin")
    worker.capabilities["backends"] = {"tensorrt": "10.3"}
    session.commit()
    session.expunge_all()
    assert session.get(Job, job.id).phase_timings == {"lowering": 0.25}  # type: ignore[union-attr]
    reloaded = session.get(Worker, "celery@jetson")
    assert reloaded is not None
    assert reloaded.queues == ["compile.aarch64.orin"]
    assert reloaded.capabilities == {"backends": {"tensorrt": "10.3"}}
    assert reloaded.state is WorkerState.ONLINE


def test_same_model_content_is_stored_once(session: Session) -> None:
    sha = "a" * 64
    session.add(_model("first", sha))
    session.commit()
    session.add(_model("second", sha))
    with pytest.raises(IntegrityError, match="sha256"):
        session.commit()
    session.rollback()


def test_one_artifact_per_build_key(session: Session) -> None:
    job = _job(_model(), _spec())
    session.add(_artifact(job, build_key="b" * 64))
    session.commit()
    session.add(_artifact(job, build_key="b" * 64))
    with pytest.raises(IntegrityError, match="build_key"):
        session.commit()
    session.rollback()


def test_foreign_keys_are_enforced(session: Session) -> None:
    spec = _spec()
    session.add(spec)
    session.flush()
    job = Job(
        model_id="0" * 32,
        spec_id=spec.id,
        arch="x86_64",
        queue="compile.x86_64",
        backend="onnxruntime",
        precision="fp32",
        cache_key="c" * 64,
    )
    session.add(job)
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


def test_build_key_depends_on_every_field_and_nothing_else() -> None:
    base = {
        "model_sha256": "1" * 64,
        "spec_sha256": "2" * 64,
        "backend": "tensorrt",
        "backend_version": "10.3.0",
        "arch": "aarch64",
        "device_class": "orin",
    }
    key = build_key(**base)  # type: ignore[arg-type]
    assert key == build_key(**base)  # type: ignore[arg-type]
    assert len(key) == 64
    for field, other in [
        ("model_sha256", "3" * 64),
        ("spec_sha256", "3" * 64),
        ("backend", "onnxruntime"),
        ("backend_version", "10.4.0"),
        ("arch", "x86_64"),
        ("device_class", "sm90"),
    ]:
        assert build_key(**{**base, field: other}) != key, field  # type: ignore[arg-type]
    no_device = {**base, "device_class": None}
    assert build_key(**no_device) == build_key(**{**base, "device_class": ""})  # type: ignore[arg-type]
    # Fields are separated, so moving text from one field to the next changes the key.
    assert build_key(**{**base, "backend": "tensorrt1", "backend_version": "0.3.0"}) != key  # type: ignore[arg-type]


def test_list_artifacts_filters_and_orders_newest_first(session: Session) -> None:
    resnet, bert, spec = _model("resnet"), _model("bert"), _spec()
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = {
        "old_x86": _artifact(_job(resnet, spec), t0),
        "new_x86": _artifact(_job(resnet, spec), t0 + timedelta(hours=2)),
        "orin_fp16": _artifact(
            _job(
                resnet,
                spec,
                arch="aarch64",
                device_class="orin",
                backend="tensorrt",
                precision="fp16",
            ),
            t0 + timedelta(hours=1),
        ),
        "bert_x86": _artifact(_job(bert, spec), t0 + timedelta(hours=3)),
    }
    session.add_all(rows.values())
    session.commit()
    ids = {artifact.id: name for name, artifact in rows.items()}

    def names(**filters: object) -> list[str]:
        return [ids[a.id] for a in list_artifacts(session, **filters)]  # type: ignore[arg-type]

    assert names(model="resnet", arch="x86_64") == ["new_x86", "old_x86"]
    assert names(model=resnet.sha256) == ["new_x86", "orin_fp16", "old_x86"]
    assert names(model=bert.id) == ["bert_x86"]
    assert names(arch="aarch64", device_class="orin", backend="tensorrt", precision="fp16") == [
        "orin_fp16"
    ]
    assert names(model="resnet", precision="int8") == []
    assert names(model="unknown") == []
    assert names() == ["bert_x86", "new_x86", "orin_fp16", "old_x86"]
    assert names(limit=2) == ["bert_x86", "new_x86"]


def test_list_jobs_filters_by_state_arch_and_model(session: Session) -> None:
    resnet, bert, spec = _model("resnet"), _model("bert"), _spec()
    queued = _job(resnet, spec)
    running = _job(resnet, spec, arch="aarch64", state=JobState.RUNNING)
    other = _job(bert, spec)
    session.add_all([queued, running, other])
    session.commit()
    assert {j.id for j in list_jobs(session, state="queued")} == {queued.id, other.id}
    assert [j.id for j in list_jobs(session, state=JobState.RUNNING)] == [running.id]
    assert [j.id for j in list_jobs(session, arch="aarch64")] == [running.id]
    assert {j.id for j in list_jobs(session, model="resnet")} == {queued.id, running.id}
    with pytest.raises(ValueError):
        list_jobs(session, state="exploded")


def test_artifact_listing_uses_the_model_arch_index(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/plan.db"
    farm_db.upgrade(url)
    engine = farm_db.make_engine(url)
    stmt = (
        select(Artifact.id)
        .where(Artifact.model_id.in_(["x"]), Artifact.arch == "x86_64")
        .order_by(Artifact.created_at.desc(), Artifact.id.desc())
        .limit(50)
    )
    compiled = stmt.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as connection:
        plan = " ".join(
            str(row[-1]) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
        )
    engine.dispose()
    assert "ix_artifacts_model_id_arch_created_at" in plan


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/pragmas.db"
    engine = farm_db.make_engine(url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
    engine.dispose()


def test_sqlite_writer_waits_for_another_writer_instead_of_failing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/busy.db"
    farm_db.upgrade(url)
    holder, waiter = farm_db.make_engine(url), farm_db.make_engine(url)
    locked = threading.Event()

    def hold_write_lock() -> None:
        with holder.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO compile_specs (id, sha256, canonical_json, created_at) "
                "VALUES ('a', 'a', '{}', '2026-01-01 00:00:00')"
            )
            locked.set()
            time.sleep(0.5)

    thread = threading.Thread(target=hold_write_lock)
    thread.start()
    assert locked.wait(10)
    started = time.monotonic()
    with Session(waiter) as other:
        other.add(_spec())
        other.commit()
    waited = time.monotonic() - started
    thread.join()
    assert waited > 0.2
    with Session(waiter) as check:
        assert len(check.scalars(select(CompileSpecRow)).all()) == 2
    holder.dispose()
    waiter.dispose()
