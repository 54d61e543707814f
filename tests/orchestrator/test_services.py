"""Submit and query services on an embedded farm (SQLite database, SQLite broker, local store)."""

import time

import pytest
from sqlalchemy import select

import compiler
from orchestrator import models as m
from orchestrator import services
from orchestrator.cli.exit_codes import EXIT_TIMEOUT, EXIT_UNREACHABLE, EXIT_USAGE, exit_code_of
from orchestrator.routing import Target
from orchestrator.services import Farm
from orchestrator.testing import embedded_settings


def _spec(**keys):
    return services.resolve_spec(keys or None)


def test_submit_records_rows_and_queues_one_job_per_target(farm, tiny_model):
    submission = services.submit(
        farm, tiny_model, services.resolve_targets(["x86_64", "arm64"]), _spec(), name="tiny"
    )
    jobs = submission.jobs
    assert [job.queue for job in jobs] == ["compile.x86_64", "compile.aarch64"]
    assert {job.state for job in jobs} == {"queued"}
    assert {job.model_name for job in jobs} == {"tiny"}
    with farm.session() as session:
        assert session.scalar(select(m.Model.uri)).startswith(("/", "file://"))
        assert len(session.scalars(select(m.Job)).all()) == 2
        assert all(job.celery_task_id for job in session.scalars(select(m.Job)))


def test_submit_warns_when_no_live_worker_serves_the_queue(farm, tiny_model):
    submission = services.submit(farm, tiny_model, [Target("aarch64")], _spec())
    (warning,) = submission.warnings
    assert "no live worker serves compile.aarch64" in warning
    assert "orchestrate worker --arch aarch64" in warning


def test_no_warning_when_a_live_worker_serves_the_queue(farm, tiny_model):
    with farm.session() as session:
        session.add(m.Worker(name="w1", hostname="h", arch="x86_64", device_class=None,
                             queues=["compile.x86_64"], capabilities={}))
    assert services.submit(farm, tiny_model, [Target("x86_64")], _spec()).warnings == []


def test_missing_model_file_is_a_usage_error(farm, tmp_path):
    with pytest.raises(services.InvalidRequestError, match="does not exist") as info:
        services.submit(farm, tmp_path / "nope.pt2", [Target("x86_64")], _spec())
    assert exit_code_of(info.value) == EXIT_USAGE


def test_model_over_the_size_limit_is_refused_before_reading(tmp_path, tiny_model):
    farm = Farm(embedded_settings(tmp_path / "home", max_model_bytes=100))
    with pytest.raises(services.InvalidRequestError, match="over the farm's limit of 100 bytes"):
        services.submit(farm, tiny_model, [Target("x86_64")], _spec())


def test_a_file_that_is_not_a_program_is_refused_and_nothing_is_recorded(farm, tmp_path):
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(services.InvalidRequestError, match="model refused"):
        services.submit(farm, junk, [Target("x86_64")], _spec())
    with farm.session() as session:
        assert session.scalars(select(m.Model)).all() == []
        assert session.scalars(select(m.Job)).all() == []


def test_tensorrt_needs_a_device_class(farm, tiny_model):
    with pytest.raises(services.InvalidRequestError, match="--device-class"):
        services.submit(farm, tiny_model, [Target("x86_64")], _spec(backend="tensorrt"))


def test_flags_override_the_spec_and_bad_values_are_usage_errors(tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("precision: fp32\nvalidation:\n  samples: 2\n")
    spec = services.resolve_spec(spec_file, precision="fp16")
    assert spec.precision == "fp16" and spec.validation.samples == 2
    with pytest.raises(services.InvalidRequestError, match="precision"):
        services.resolve_spec(spec_file, precision="fp8")
    spec_file.write_text("bogus_key: 1\n")
    with pytest.raises(services.InvalidRequestError, match="bogus_key: unknown key"):
        services.resolve_spec(spec_file)
    with pytest.raises(services.InvalidRequestError, match="does not exist"):
        services.resolve_spec(tmp_path / "missing.yaml")


def test_unknown_arch_is_a_usage_error():
    with pytest.raises(services.InvalidRequestError, match="unknown architecture 'ppc'"):
        services.resolve_targets(["ppc"])


def _store_artifact(farm, job, version):
    with farm.session() as session:
        row = session.get(m.Job, job.id)
        key = m.build_key(model_sha256=row.model.sha256, spec_sha256=row.spec.sha256,
                          backend=row.backend, backend_version=version, arch=row.arch,
                          device_class=row.device_class)
        artifact = m.Artifact(id=m.new_id(), job_id=row.id, model_id=row.model_id,
                              spec_id=row.spec_id, backend=row.backend, backend_version=version,
                              arch=row.arch, device_class=None, precision=row.precision,
                              uri="file:///x", sha256="0" * 64, size_bytes=1, build_key=key)
        session.add(artifact)
        row.state = m.JobState.SUCCEEDED
        row.artifact_id = artifact.id
        return artifact.id


def test_same_model_spec_and_backend_version_is_answered_from_the_cache(farm, tiny_model):
    (first,) = services.submit(farm, tiny_model, [Target("x86_64")], _spec()).jobs
    version = compiler.backend_versions()["onnxruntime"]
    artifact_id = _store_artifact(farm, first, version)

    started = time.perf_counter()
    submission = services.submit(farm, tiny_model, [Target("x86_64"), Target("aarch64")], _spec())
    elapsed = time.perf_counter() - started
    cached, fresh = submission.jobs
    assert cached.state == "succeeded" and cached.cached and cached.artifact_id == artifact_id
    assert fresh.state == "queued" and not fresh.cached
    assert elapsed < 5


def test_an_artifact_from_another_backend_version_is_not_a_cache_hit(farm, tiny_model):
    (first,) = services.submit(farm, tiny_model, [Target("x86_64")], _spec()).jobs
    _store_artifact(farm, first, "0.0.1-old")
    (again,) = services.submit(farm, tiny_model, [Target("x86_64")], _spec()).jobs
    assert again.state == "queued"


def test_cancel_then_retry_makes_a_new_attempt_of_the_same_job(farm, tiny_model):
    (job,) = services.submit(farm, tiny_model, [Target("x86_64")], _spec()).jobs
    cancelled = services.cancel(farm, job.id[:10])
    assert cancelled.state == "cancelled" and cancelled.finished_at
    with pytest.raises(services.InvalidStateError, match="already cancelled"):
        services.cancel(farm, job.id)
    with farm.session() as session:
        old_task = session.get(m.Job, job.id).celery_task_id
    retried = services.retry(farm, job.id)
    assert retried.id == job.id and retried.state == "queued" and retried.finished_at is None
    with farm.session() as session:
        assert session.get(m.Job, job.id).celery_task_id != old_task
    with pytest.raises(services.InvalidStateError, match="only failed or cancelled"):
        services.retry(farm, job.id)


def test_unknown_and_ambiguous_ids(farm, tiny_model):
    with pytest.raises(services.NotFoundError, match="no job 'abcdef'"):
        services.get_job(farm, "abcdef")
    with pytest.raises(services.NotFoundError, match="no artifact"):
        services.get_artifact(farm, "0123456789")
    with pytest.raises(services.NotFoundError):
        services.results(farm, "0123456789")


def test_wait_times_out_on_a_job_nobody_builds(farm, tiny_model):
    (job,) = services.submit(farm, tiny_model, [Target("aarch64")], _spec()).jobs
    seen = []
    with pytest.raises(services.WaitTimeoutError, match="still queued") as info:
        services.wait(farm, job.id, timeout=0.3, poll_interval=0.05, on_change=seen.append)
    assert exit_code_of(info.value) == EXIT_TIMEOUT
    assert [j.state for j in seen] == ["queued"]


def test_unreachable_broker_is_retried_briefly_then_leaves_nothing_behind(tmp_path, tiny_model):
    settings = embedded_settings(tmp_path / "home", broker_url="redis://127.0.0.1:1/0")
    farm = Farm(settings)
    started = time.monotonic()
    with pytest.raises(services.UnreachableError, match="cannot reach the broker") as info:
        services.submit(farm, tiny_model, [Target("x86_64")], _spec())
    # it waited out the publish's retry window (sleeps of 0.5, 1.5, 2.5 and 3 s), no longer
    assert 7.0 < time.monotonic() - started < 15
    assert exit_code_of(info.value) == EXIT_UNREACHABLE
    assert "down or unreachable (publishing was retried for 7." in str(info.value)
    assert "nothing was submitted" in str(info.value)
    # No failed job to clean up, and no model row or blob that nothing refers to.
    assert services.list_jobs(farm) == []
    with farm.session() as session:
        assert session.scalars(select(m.Model)).all() == []
    assert not list((tmp_path / "home" / "artifacts").rglob("sha256/*/*"))


def test_unreachable_broker_also_takes_back_the_data_files_it_stored(tmp_path, tiny_model, monkeypatch):
    import numpy as np

    from orchestrator import celery_app

    monkeypatch.setattr(celery_app, "PUBLISH_RETRY_POLICY", celery_app.QUICK_PUBLISH_RETRY_POLICY)

    rows = tmp_path / "rows.npz"
    np.savez(rows, input=np.ones((4, 8), np.float32))
    farm = Farm(embedded_settings(tmp_path / "home", broker_url="redis://127.0.0.1:1/0"))
    with pytest.raises(services.UnreachableError, match="nothing was submitted"):
        services.submit(farm, tiny_model, [Target("x86_64")], _spec(), validation_data=rows, calibration_data=rows)
    with farm.session() as session:
        assert session.scalars(select(m.DataFile)).all() == [] and session.scalars(select(m.Job)).all() == []
    assert not list((tmp_path / "home" / "artifacts").rglob("sha256/*/*"))


def test_unreachable_database_is_an_unreachable_error_without_the_password(tmp_path):
    settings = embedded_settings(
        tmp_path / "home", database_url="postgresql://farm:s3cret@127.0.0.1:1/farm"
    )
    with pytest.raises(services.UnreachableError) as info:
        services.list_jobs(Farm(settings))
    assert "s3cret" not in str(info.value)
    assert "cannot reach the database" in str(info.value)
