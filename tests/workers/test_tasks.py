"""The compile task's guarantees: idempotent, twins compile once, errors vs transient retries."""

import pytest
from sqlalchemy import func, select

from orchestrator import models as m
from orchestrator import services
from orchestrator.routing import Target
from orchestrator.services import Farm
from orchestrator.store import ArtifactStoreUnavailableError
from orchestrator.testing import embedded_settings
from workers import tasks


def _queued(farm, model, arch="x86_64"):
    spec = services.resolve_spec({"validation": {"samples": 2}})
    (job,) = services.submit(farm, model, [Target(arch)], spec).jobs
    return job


def _artifacts(farm):
    with farm.session() as session:
        return session.scalar(select(func.count()).select_from(m.Artifact))


def test_second_run_of_a_finished_job_does_nothing(farm, tiny_model):
    job = _queued(farm, tiny_model)
    first = tasks.run_job(farm, job.id, "w1")
    assert first["outcome"] == "succeeded"
    again = tasks.run_job(farm, job.id, "w2")
    assert again == {"job_id": job.id, "outcome": "skipped"}
    info = services.get_job(farm, job.id)
    assert info.worker == "w1" and info.attempts == 1 and _artifacts(farm) == 1


def test_a_twin_job_reuses_the_artifact_instead_of_compiling(farm, tiny_model):
    a, b = _queued(farm, tiny_model), _queued(farm, tiny_model)
    assert tasks.run_job(farm, a.id, "w1")["outcome"] == "succeeded"
    assert tasks.run_job(farm, b.id, "w2") == {"job_id": b.id, "outcome": "skipped"}
    b_info = services.get_job(farm, b.id)
    assert b_info.state == "succeeded" and b_info.cached and b_info.attempts == 0
    assert _artifacts(farm) == 1


def test_a_twin_being_compiled_elsewhere_makes_the_claim_wait(farm, tiny_model):
    a, b = _queued(farm, tiny_model), _queued(farm, tiny_model)
    assert tasks.claim(farm, a.id, "w1") is not None
    with pytest.raises(tasks.TwinInProgress) as info:
        tasks.claim(farm, b.id, "w2")
    assert info.value.twin_id == a.id
    assert services.get_job(farm, b.id).state == "queued"


def test_cancelled_job_is_not_built_and_a_build_cancelled_midway_is_discarded(farm, tiny_model):
    job = _queued(farm, tiny_model)
    services.cancel(farm, job.id)
    assert tasks.run_job(farm, job.id, "w1")["outcome"] == "skipped"

    other = _queued(farm, tiny_model, "aarch64")
    outcome = tasks.run_job(farm, other.id, "w1", on_phase=lambda phase: (
        services.cancel(farm, other.id) if phase == "validate" else None))
    assert outcome["outcome"] == "discarded"
    assert services.get_job(farm, other.id).state == "cancelled" and _artifacts(farm) == 0


def test_phases_are_recorded_as_the_build_goes(farm, tiny_model):
    job = _queued(farm, tiny_model)
    seen = []
    tasks.run_job(farm, job.id, "w1",
                  on_phase=lambda phase: seen.append((phase, services.get_job(farm, job.id).phase)))
    assert [p for p, _ in seen][:2] == ["frontend", "lowering"]
    assert all(phase == recorded for phase, recorded in seen)
    assert seen[-1][0] == "validate"


def test_store_outage_is_retried_with_backoff_then_recorded(tmp_path, tiny_model, monkeypatch):
    farm = Farm(embedded_settings(tmp_path / "home"), eager=True)
    calls = []

    def unavailable(*args, **kwargs):
        calls.append(args)
        raise ArtifactStoreUnavailableError("store is down")

    monkeypatch.setattr(type(farm.store), "get_file", unavailable)
    monkeypatch.setattr(tasks, "MAX_TRANSIENT_RETRIES", 2)
    monkeypatch.setattr(tasks.compile_job, "max_retries", 2)
    job = _queued(farm, tiny_model)
    # One first run plus two retries, then the job records why it stopped.
    assert len(calls) == 3
    info = services.get_job(farm, job.id)
    assert info.state == "failed" and info.error_kind == "infrastructure_error"
    assert "store is down" in info.error_message
    assert info.attempts == 3


def test_backoff_grows_and_is_capped():
    assert 0.8 <= tasks.backoff_seconds(0) <= 1.2
    assert 6.4 <= tasks.backoff_seconds(3) <= 9.6
    assert tasks.backoff_seconds(20) <= 72


def test_missing_job_is_dropped(farm):
    assert tasks.run_job(farm, "0" * 32, "w1")["outcome"] == "skipped"


def test_artifact_records_the_identity_it_was_built_on_from_the_manifest(farm, tiny_model, tmp_path):
    import compiler

    job = _queued(farm, tiny_model)
    assert tasks.run_job(farm, job.id, "w1")["outcome"] == "succeeded"
    info = services.job_artifact(farm, job.id)
    assert info is not None
    assert info.built_on == compiler.local_identity().to_dict()
    engine = services.download_artifact(farm, info.id, tmp_path / "engine.pt2")
    manifest = compiler.read_manifest(engine)
    assert info.built_on == manifest["built_on"]
    assert info.engine_requirements == [n.to_dict() for n in compiler.program_requirements(manifest)]
    assert info.problems_on(compiler.local_identity()) == []


def test_a_job_whose_data_file_vanished_from_the_store_fails_as_data_unavailable(farm, tiny_model, tmp_path):
    import numpy as np

    rows = tmp_path / "rows.npz"
    np.savez(rows, input=np.ones((4, 8), np.float32))
    spec = services.resolve_spec({"validation": {"samples": 2}})
    (job,) = services.submit(farm, tiny_model, [Target("x86_64")], spec, validation_data=rows).jobs
    with farm.session() as session:
        farm.store.delete(session.get(m.Job, job.id).validation_data.uri)
    outcome = tasks.run_job(farm, job.id, "w1")
    assert outcome["outcome"] == "failed" and outcome["error_kind"] == "data_unavailable"
    info = services.get_job(farm, job.id)
    assert info.error_kind == "data_unavailable" and "submit the data file again" in (info.error_message or "")


def test_a_job_with_labelled_data_is_validated_on_it(farm, tiny_model, tmp_path):
    import numpy as np

    rows = tmp_path / "labelled.npz"
    np.savez(rows, input=np.random.default_rng(1).standard_normal((8, 8)).astype(np.float32), labels=np.arange(8) % 4)
    spec = services.resolve_spec({"validation": {"samples": 2, "latency_runs": 2}})
    (job,) = services.submit(farm, tiny_model, [Target("x86_64")], spec, validation_data=rows).jobs
    assert tasks.run_job(farm, job.id, "w1")["outcome"] == "succeeded"
    results = {(r.output, r.metric): r for r in services.results(farm, job.id)}
    # only the data file has labels: accuracy rows mean the worker validated on it
    assert results[("output_0", "task_accuracy")].value == results[("output_0", "reference_accuracy")].value
    assert results[("(performance)", "compiled_p50_ms")].threshold is None
