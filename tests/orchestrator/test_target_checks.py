"""Submit judges each target by the device-class table, not by the machine submitting."""

from __future__ import annotations

import pytest

from compiler.backends import get_backend
from compiler.errors import BackendError
from compiler.identity import DEVICE_CLASSES
from orchestrator import services
from orchestrator.routing import Target


def _submit(farm, model, spec: dict, arch: str, device_class: str | None = None):  # type: ignore[no-untyped-def]
    return services.submit(farm, model, [Target(arch, device_class)], services.resolve_spec(spec))


def test_onnxruntime_cuda_job_for_a_gpu_target_is_queued_though_this_machine_has_no_cuda_provider(farm, tiny_model):
    import onnxruntime

    assert "CUDAExecutionProvider" not in onnxruntime.get_available_providers()
    (job,) = _submit(farm, tiny_model, {"backend": "onnxruntime", "device": "cuda", "precision": "fp16"}, "x86_64", "sm90").jobs
    assert job.state == "queued" and job.queue == "compile.x86_64.sm90"


def test_fp16_onnxruntime_for_a_cpu_target_is_refused_and_nothing_is_kept(farm, tiny_model):
    with pytest.raises(services.InvalidRequestError, match="x86_64: precision fp16 with onnxruntime needs device cuda"):
        _submit(farm, tiny_model, {"backend": "onnxruntime", "precision": "fp16"}, "x86_64")
    assert services.list_jobs(farm) == []


def test_bf16_for_a_gpu_class_older_than_ampere_is_refused_at_submit(farm, tiny_model):
    spec = {"backend": "aotinductor", "device": "cuda", "precision": "bf16"}
    with pytest.raises(services.InvalidRequestError, match=r"x86_64/sm75: precision bf16 needs .*compute capability 8.0"):
        _submit(farm, tiny_model, spec, "x86_64", "sm75")
    (job,) = _submit(farm, tiny_model, spec, "x86_64", "sm90").jobs
    assert job.state == "queued"


@pytest.mark.parametrize(
    ("spec", "arch", "device_class", "problem"),
    [
        ({"backend": "tensorrt", "device": "dla:0", "precision": "fp16"}, "aarch64", "orin", None),
        ({"backend": "tensorrt", "device": "dla:1", "precision": "int8"}, "aarch64", "xavier", None),
        ({"backend": "tensorrt", "device": "dla:2", "precision": "fp16"}, "aarch64", "orin", "DLA cores 0..1"),
        ({"backend": "tensorrt", "device": "dla:0", "precision": "fp16"}, "x86_64", "sm90", "sm90 has none"),
        ({"backend": "tensorrt", "device": "dla:0", "precision": "fp16"}, "aarch64", "thor", "thor has none"),
        ({"backend": "tensorrt", "device": "cuda", "precision": "bf16"}, "aarch64", "xavier", "compute capability 8.0"),
        ({"backend": "tensorrt", "device": "cuda", "precision": "bf16"}, "aarch64", "orin", None),
        ({"backend": "tensorrt", "device": "cuda", "precision": "int8"}, "aarch64", "nano", "compute capability 6.1"),
        ({"backend": "onnxruntime", "device": "dla:0", "precision": "fp16"}, "aarch64", "orin", "tensorrt backend"),
        ({"backend": "aotinductor", "device": "cuda", "precision": "int8"}, "x86_64", "sm90", "int8 is not built"),
    ],
)
def test_check_target_reads_the_device_class_table(spec, arch, device_class, problem):  # type: ignore[no-untyped-def]
    resolved = services.resolve_spec(spec)
    backend = get_backend(resolved.backend, require_available=False)
    if problem is None:
        backend.check_target(resolved, arch, DEVICE_CLASSES[device_class])
    else:
        with pytest.raises(BackendError, match=problem):
            backend.check_target(resolved, arch, DEVICE_CLASSES[device_class])
