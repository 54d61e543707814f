"""The whole farm in one process: Celery runs tasks eagerly (results stored), real compiler."""

import json
import threading

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from orchestrator import models as m
from orchestrator import services
from orchestrator.cli import main
from orchestrator.cli._common import CliState
from orchestrator.routing import Target
from orchestrator.samples import tiny_program
from orchestrator.services import Farm
from orchestrator.store import sha256_file
from orchestrator.testing import embedded_settings


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    return Farm(embedded_settings(tmp_path_factory.mktemp("farm") / "home"), eager=True)


@pytest.fixture(scope="module")
def built(farm, tiny_model):
    """One job built end to end; later tests query it."""
    (job,) = services.submit(
        farm, tiny_model, [Target("x86_64")], services.resolve_spec(), name="tiny"
    ).jobs
    return job


def cli(farm, *args):
    result = CliRunner().invoke(main, list(args), obj=CliState(farm=farm))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def test_submit_compiles_and_records_artifact_timings_and_validation(farm, built):
    assert built.state == "succeeded", built.error_message
    assert not built.cached and built.artifact_id and built.attempts == 1
    for phase in ("fetch", "frontend", "lowering", "partitioning", "conversion", "build",
                  "runtime", "save", "upload", "validate"):
        assert built.phase_timings[phase] >= 0, phase
    with farm.session() as session:
        artifact = session.get(m.Artifact, built.artifact_id)
        assert artifact.job_id == built.id and artifact.arch == "x86_64"
        assert artifact.backend == "onnxruntime" and artifact.backend_version
        assert artifact.partition_stats["num_engines"] == 1
        assert "timings" not in artifact.partition_stats
        results = artifact.validation_results
        assert {"max_abs_error", "cosine_similarity", "snr_db"} <= {r.metric for r in results}
        assert all(r.passed for r in results)
        assert len({r.seed for r in results}) == 1
    # The eager result was stored by the result backend, as a worker's would be.
    with farm.session() as session:
        task_id = session.get(m.Job, built.id).celery_task_id
    stored = farm.app.AsyncResult(task_id)
    assert stored.state == "SUCCESS" and stored.result["artifact_id"] == built.artifact_id


def test_cli_queries_show_the_job_artifact_and_results(farm, built, tmp_path):
    status = cli(farm, "status", built.id[:12], "--json")
    assert status.exit_code == 0 and json.loads(status.output)["state"] == "succeeded"
    human = cli(farm, "status", built.id)
    assert "succeeded" in human.output and "x86_64" in human.output

    jobs = json.loads(cli(farm, "jobs", "--state", "succeeded", "--arch", "amd64", "--json").output)
    assert built.id in {job["id"] for job in jobs}

    listed = cli(farm, "artifacts", "list", "--model", "tiny", "--arch", "x86_64", "--json")
    assert [a["id"] for a in json.loads(listed.output)] == [built.artifact_id]
    assert json.loads(cli(farm, "artifacts", "list", "--arch", "aarch64", "--json").output) == []
    table = cli(farm, "artifacts", "list")
    assert built.artifact_id[:12] in table.output

    shown = json.loads(cli(farm, "artifacts", "show", built.artifact_id, "--json").output)
    out = tmp_path / "engine.pt2"
    got = cli(farm, "artifacts", "get", built.artifact_id, "-o", str(out))
    assert got.exit_code == 0 and out.exists() and sha256_file(out) == shown["sha256"]

    for ref in (built.id, built.artifact_id):
        rows = json.loads(cli(farm, "results", ref, "--json").output)
        assert {"max_abs_error", "cosine_similarity", "snr_db"} <= {row["metric"] for row in rows}
    assert "cosine_similarity" in cli(farm, "results", built.id).output


def test_downloaded_engine_loads_and_runs(farm, built, tmp_path):
    import torch

    import compiler

    path = services.download_artifact(farm, built.artifact_id, tmp_path)
    engine = compiler.load(path)
    x = torch.randn(2, 8)
    expected = tiny_program().module()(x)
    torch.testing.assert_close(engine(x), expected, atol=1e-5, rtol=1e-5)


def test_cache_hit_returns_the_same_artifact_without_a_compile(farm, built, tiny_model):
    submission = services.submit(farm, tiny_model, [Target("x86_64")], services.resolve_spec())
    (again,) = submission.jobs
    assert again.id != built.id
    assert again.state == "succeeded" and again.cached
    assert again.artifact_id == built.artifact_id
    assert again.started_at is None and again.attempts == 0
    with farm.session() as session:
        assert session.scalar(select(func.count()).select_from(m.Artifact)) == 1


def test_two_identical_submissions_at_once_compile_once(tmp_path, tiny_model):
    farm = Farm(embedded_settings(tmp_path / "home"), eager=True)
    spec = services.resolve_spec({"validation": {"samples": 2}})
    jobs, errors = [], []
    barrier = threading.Barrier(2)

    def submit():
        try:
            barrier.wait()
            jobs.extend(services.submit(farm, tiny_model, [Target("x86_64")], spec).jobs)
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert errors == []
    assert len(jobs) == 2 and {job.state for job in jobs} == {"succeeded"}
    assert len({job.artifact_id for job in jobs}) == 1
    with farm.session() as session:
        assert session.scalar(select(func.count()).select_from(m.Artifact)) == 1
        # Exactly one of the two ran the compiler; the other reused its artifact.
        attempts = sorted(session.get(m.Job, job.id).attempts for job in jobs)
        assert attempts in ([0, 1], [1, 1])
        artifact = session.scalars(select(m.Artifact)).one()
        assert artifact.job_id in {job.id for job in jobs}


def test_compile_error_fails_the_job_with_its_kind_and_wait_exits_1(farm, tiny_model):
    # Full compilation of a program whose relu must stay in PyTorch: the user's mistake, found
    # only by the compiler on the worker (submit refuses what it can see: see test_hostile_cli).
    spec = services.resolve_spec(
        {"partitioning": {"torch_executed_ops": ["aten.relu.default"], "require_full_compilation": True}}
    )
    (job,) = services.submit(farm, tiny_model, [Target("x86_64")], spec).jobs
    assert job.state == "failed"
    assert job.error_kind and job.error_kind != "internal_error"
    assert job.attempts == 1
    result = cli(farm, "wait", job.id)
    assert result.exit_code == 1
    assert job.error_kind in result.output


def test_fx_backend_job_builds_validates_and_records_its_identity(farm, tiny_model, inductor_without_precompiled_headers):
    """The aotinductor backend through the farm, on the CPU: the FX-consuming path, its
    package inside our .pt2, validation, and the device identity the artifact records."""
    from compiler.backends import get_backend

    if not get_backend("aotinductor", require_available=False).available():
        pytest.skip("aotinductor needs a C++ compiler")
    spec = services.resolve_spec({"backend": "aotinductor", "partitioning": {"min_block_size": 1}, "validation": {"samples": 4}})
    (job,) = services.submit(farm, tiny_model, [Target("x86_64")], spec).jobs
    assert job.state == "succeeded", job.error_message
    info = services.get_artifact(farm, job.artifact_id)
    assert info.backend == "aotinductor" and info.device_class is None
    assert info.built_on["arch"] == "x86_64" and info.built_on["torch_version"]
    results = services.results(farm, job.artifact_id)
    assert results and all(r.passed for r in results)


def test_an_engine_the_gate_rejects_is_recorded_rejected_never_cached_and_not_handed_out(farm, tmp_path):
    """Validation with no tolerance at all: ONNX Runtime's GELU/MatMul differ from PyTorch's in
    the last bits, so the gate rejects the engine."""
    import torch

    layers = []
    for _ in range(6):
        layers += [torch.nn.Linear(32, 32), torch.nn.GELU()]
    model = torch.nn.Sequential(*layers).eval()
    path = tmp_path / "mlp.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(2, 32),)), path)
    spec = services.resolve_spec({"validation": {"samples": 2, "atol": 0.0, "rtol": 0.0}})
    (job,) = services.submit(farm, path, [Target("x86_64")], spec).jobs
    assert job.state == "failed" and job.error_kind == "accuracy_gate", job
    assert "max_abs_error" in job.error_message and job.artifact_id
    artifact = services.get_artifact(farm, job.artifact_id)
    assert artifact.gate == "rejected"
    assert any(not r.passed for r in services.results(farm, job.artifact_id))

    # the same work again: not answered from the cache as a success, and not built again
    (again,) = services.submit(farm, path, [Target("x86_64")], spec).jobs
    assert again.state == "failed" and again.error_kind == "accuracy_gate" and again.artifact_id == job.artifact_id
    with farm.session() as session:
        assert session.scalar(select(func.count()).select_from(m.Artifact).where(m.Artifact.gate == "rejected")) == 1

    refused = cli(farm, "artifacts", "get", job.artifact_id, "-o", str(tmp_path / "x.pt2"))
    assert refused.exit_code == 2 and "rejected by the accuracy gate" in refused.output
    assert not (tmp_path / "x.pt2").exists()
    allowed = cli(farm, "artifacts", "get", job.artifact_id, "-o", str(tmp_path / "x.pt2"), "--allow-rejected")
    assert allowed.exit_code == 0 and (tmp_path / "x.pt2").exists()


def test_compare_shows_a_models_artifacts_side_by_side(farm, built):
    """`orchestrate compare` and Client.compare read the same rows as artifacts list + results."""
    from orchestrator.client import Client

    result = cli(farm, "compare", "tiny", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    mine = [r for r in rows if r["artifact_id"] == built.artifact_id]
    assert len(mine) == 1
    (row,) = mine
    assert row["target"] == "x86_64" and row["backend"] == "onnxruntime" and row["gate"] == "accepted"
    assert row["engines"] == 1 and row["min_cosine"] > 0.999 and row["failed_metrics"] == []
    assert row["min_snr_db"] is not None and row["min_snr_db"] > 60
    table = cli(farm, "compare", "tiny")
    assert built.artifact_id[:12] in table.output and "accepted" in table.output
    assert [c.artifact_id for c in Client(farm=farm).compare("tiny")] == [r["artifact_id"] for r in rows]
    assert cli(farm, "compare", "no-such-model").output.startswith("no artifacts")
