"""Validation and calibration data through the whole farm (eager Celery, real compiler): the
digits CNN trained in the test, its held-out quarter with labels as validation data.

The artifact's results carry task accuracy and the ``(performance)`` rows; data files are part
of the cache key; bad data files are refused at submit with nothing left behind.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file
from sqlalchemy import func, select

from benchmarks.zoo import ModelCase, digits_cnn
from orchestrator import models as m
from orchestrator import services
from orchestrator.cli import main
from orchestrator.cli._common import CliState
from orchestrator.cli.exit_codes import exit_code_of
from orchestrator.routing import Target
from orchestrator.services import Farm, InvalidRequestError
from orchestrator.testing import embedded_settings

PERFORMANCE_METRICS = {
    "eager_p50_ms", "eager_p90_ms", "eager_p99_ms",
    "compiled_p50_ms", "compiled_p90_ms", "compiled_p99_ms",
    "speedup", "peak_rss_mb",
}
# few timed calls: the suite measures that the rows exist, benchmarks measure speed
SPEC = {"validation": {"latency_warmup": 1, "latency_runs": 5}}


@pytest.fixture(scope="module")
def digits() -> ModelCase:
    return digits_cnn()


@pytest.fixture(scope="module")
def digits_model(digits: ModelCase, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained CNN exported with a dynamic batch of 1..64 rows."""
    assert digits.held_out is not None
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(digits.module, (digits.held_out[0][:4],), dynamic_shapes={"x": {0: batch}})
    path = tmp_path_factory.mktemp("digits") / "digits.pt2"
    torch.export.save(program, path)
    return path


@pytest.fixture(scope="module")
def held_out(digits: ModelCase, tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert digits.held_out is not None
    images, labels = digits.held_out
    path = tmp_path_factory.mktemp("data") / "held_out.npz"
    np.savez(path, x=images.numpy(), labels=labels.numpy())
    return path


@pytest.fixture(scope="module")
def training_rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.datasets import load_digits

    images = torch.from_numpy((load_digits().images[:512] / 16.0).astype("float32")[:, None])
    path = tmp_path_factory.mktemp("data") / "calibration.safetensors"
    save_file({"x": images}, str(path))
    return path


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Farm:
    return Farm(embedded_settings(tmp_path_factory.mktemp("farm") / "home"), eager=True)


@pytest.fixture(scope="module")
def built(farm: Farm, digits_model: Path, held_out: Path) -> services.JobInfo:
    (job,) = services.submit(
        farm, digits_model, [Target("x86_64")], services.resolve_spec(SPEC), name="digits",
        validation_data=held_out,
    ).jobs
    return job


def _results(farm: Farm, ref: str) -> dict[tuple[str, str], services.ValidationInfo]:
    return {(r.output, r.metric): r for r in services.results(farm, ref)}


def test_job_with_labelled_validation_data_records_task_accuracy_and_performance(
    farm: Farm, built: services.JobInfo, digits: ModelCase, held_out: Path
) -> None:
    assert built.state == "succeeded", built.error_message
    results = _results(farm, built.id)
    accuracy = results[("output_0", "task_accuracy")]
    reference = results[("output_0", "reference_accuracy")]
    assert reference.value == pytest.approx(digits.accuracy, abs=0.02)  # 448 of the 450 rows
    assert accuracy.value == pytest.approx(reference.value) and accuracy.value > 0.9
    assert accuracy.threshold is not None and accuracy.passed
    performance = {metric: row for (output, metric), row in results.items() if output == "(performance)"}
    assert set(performance) == PERFORMANCE_METRICS  # no cuda_max_allocated_mb on a CPU build
    assert all(r.threshold is None and r.passed for r in performance.values())
    assert all(r.value > 0 for r in performance.values())
    assert performance["speedup"].value == pytest.approx(
        performance["eager_p50_ms"].value / performance["compiled_p50_ms"].value
    )
    assert performance["eager_p50_ms"].value <= performance["eager_p99_ms"].value
    with farm.session() as session:
        job = session.get(m.Job, built.id)
        assert job.validation_data is not None and job.calibration_data is None
        assert job.validation_data.format == "npz"
        assert job.validation_data.sha256 == hashlib.sha256(held_out.read_bytes()).hexdigest()
        assert farm.store.exists(job.validation_data.uri)


def test_the_cache_key_includes_the_data_files(
    farm: Farm, built: services.JobInfo, digits_model: Path, held_out: Path, tmp_path: Path
) -> None:
    spec = services.resolve_spec(SPEC)
    (again,) = services.submit(farm, digits_model, [Target("x86_64")], spec, validation_data=held_out).jobs
    assert again.cached and again.artifact_id == built.artifact_id
    # the same rows in another file are the same bytes only if written the same way: a subset is not
    half = tmp_path / "half.npz"
    with np.load(held_out) as arrays:
        np.savez(half, x=arrays["x"][:128], labels=arrays["labels"][:128])
    (other,) = services.submit(farm, digits_model, [Target("x86_64")], spec, validation_data=half).jobs
    assert other.state == "succeeded" and not other.cached
    assert other.artifact_id != built.artifact_id
    (generated,) = services.submit(farm, digits_model, [Target("x86_64")], spec).jobs
    assert generated.state == "succeeded" and not generated.cached
    assert ("output_0", "task_accuracy") not in _results(farm, generated.id)  # no labels, no accuracy


def test_int8_job_calibrates_on_the_calibration_file(
    farm: Farm, built: services.JobInfo, digits_model: Path, held_out: Path, training_rows: Path
) -> None:
    spec = services.resolve_spec(SPEC, precision="int8")
    (job,) = services.submit(
        farm, digits_model, [Target("x86_64")], spec, validation_data=held_out, calibration_data=training_rows
    ).jobs
    assert job.state == "succeeded", job.error_message
    artifact = services.get_artifact(farm, job.artifact_id or "")
    assert artifact.partition_stats["calibration"] == {"source": "data", "batches": 8}
    fp32 = _results(farm, built.id)[("output_0", "task_accuracy")].value
    int8 = _results(farm, job.id)
    assert int8[("output_0", "task_accuracy")].value >= fp32 - 0.015
    assert ("(performance)", "speedup") in int8
    with farm.session() as session:
        row = session.get(m.Job, job.id)
        assert row.calibration_data is not None and row.calibration_data.format == "safetensors"


def test_results_and_compare_show_the_performance_rows(farm: Farm, built: services.JobInfo) -> None:
    runner = CliRunner()
    table = runner.invoke(main, ["results", built.id], obj=CliState(farm=farm))
    assert table.exit_code == 0, table.output
    assert "task_accuracy" in table.output and "performance" in table.output
    perf_line = next(line for line in table.output.splitlines() if "compiled_p50_ms" in line)
    assert "ms" in perf_line and "yes" not in perf_line  # no threshold or pass column noise
    compared = runner.invoke(main, ["compare", "digits", "--json"], obj=CliState(farm=farm))
    rows = {row["artifact_id"]: row for row in json.loads(compared.output)}
    row = rows[built.artifact_id or ""]
    results = _results(farm, built.id)
    assert row["compiled_p50_ms"] == results[("(performance)", "compiled_p50_ms")].value
    assert row["speedup"] == results[("(performance)", "speedup")].value
    assert row["peak_rss_mb"] == results[("(performance)", "peak_rss_mb")].value
    assert row["task_accuracy"] == results[("output_0", "task_accuracy")].value
    human = runner.invoke(main, ["compare", "digits"], obj=CliState(farm=farm))
    assert f"{row['speedup']:.2f}x" in human.output and f"{row['task_accuracy']:.2%}" in human.output
    assert "speedup" in human.output and "p50" in human.output


# ---------------------------------------------------------------------- refused at submit
def _bad_files(folder: Path, held_out: Path) -> dict[str, tuple[Path, str]]:
    with np.load(held_out) as arrays:
        x, labels = arrays["x"], arrays["labels"]
    files: dict[str, tuple[Path, str]] = {}

    def npz(name: str, match: str, **arrays: np.ndarray) -> None:
        path = folder / f"{name}.npz"
        np.savez(path, **arrays)
        files[name] = (path, match)

    npz("wrong_name", "missing x; unknown images", images=x)
    npz("wrong_dtype", "has dtype float64", x=x.astype(np.float64))
    npz("wrong_shape", "dimension 3 is 9", x=np.zeros((16, 1, 8, 9), np.float32))
    nan = x.copy()
    nan[3, 0, 2, 2] = np.nan
    npz("nan", "1 NaN or infinite values", x=nan)
    npz("float_labels", "labels must be integers", x=x, labels=labels.astype(np.float32))
    pickled = folder / "pickled.npz"
    pickled.write_bytes(pickle.dumps({"x": x}))
    files["pickle"] = (pickled, "is a pickle")
    torch_saved = folder / "torch_saved.safetensors"
    torch.save({"x": torch.from_numpy(x)}, torch_saved)
    files["torch_save"] = (torch_saved, "is a pickle")
    garbage = folder / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    files["malformed"] = (garbage, "not a readable safetensors file")
    wrong_kind = folder / "data.pt"
    wrong_kind.write_bytes(b"whatever")
    files["suffix"] = (wrong_kind, "must be .safetensors or .npz")
    return files


def _stored_objects(farm: Farm) -> set[Path]:
    root = Path(farm.settings.artifact_store)
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


@pytest.mark.parametrize("role", ["validation", "calibration"])
def test_bad_data_files_are_refused_at_submit_leaving_nothing_behind(
    digits_model: Path, held_out: Path, tmp_path: Path, role: str
) -> None:
    farm = Farm(embedded_settings(tmp_path / "home"), eager=True)
    spec = services.resolve_spec(SPEC)
    services.list_jobs(farm)  # the schema exists before the store is looked at
    before = _stored_objects(farm)
    for case, (path, match) in _bad_files(tmp_path, held_out).items():
        with pytest.raises(InvalidRequestError, match=match) as refused:
            services.submit(farm, digits_model, [Target("x86_64")], spec, **{f"{role}_data": path})
        message = str(refused.value)
        assert "\n" not in message and message.startswith(f"--{role}-data"), (case, message)
        assert exit_code_of(refused.value) == 2
    with farm.session() as session:
        for table in (m.Job, m.Model, m.DataFile):
            assert session.scalar(select(func.count()).select_from(table)) == 0, table
    assert _stored_objects(farm) == before
