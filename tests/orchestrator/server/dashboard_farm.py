"""A farm for the dashboard's tests: jobs in every state, artifacts across targets and
precisions with accuracy and ``(performance)`` results, workers live, stale and offline, and a
model whose user-chosen name is hostile HTML."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.orm import Session

from orchestrator import models as m
from orchestrator.services import Farm

MODEL = "resnet-tiny"
HOSTILE = "<img id=pwned src=x onerror=\"document.title='pwned'\">&\"'<script>document.title='pwned'</script>"

#: (arch, device_class, backend, precision, performance rows or None, gate)
BUILDS = [
    ("x86_64", None, "onnxruntime", "fp32", {"compiled_p50_ms": 4.0, "eager_p50_ms": 8.0, "speedup": 2.0, "peak_rss_mb": 310.0}, "accepted"),
    ("x86_64", None, "onnxruntime", "int8", {"compiled_p50_ms": 2.0, "eager_p50_ms": 8.0, "speedup": 4.0, "peak_rss_mb": 280.0}, "rejected"),
    ("aarch64", "orin", "tensorrt", "fp16", {"compiled_p50_ms": 1.0, "eager_p50_ms": 9.0, "speedup": 9.0, "peak_rss_mb": 900.0}, "accepted"),
    # No performance rows: the worker of the time did not record them.
    ("x86_64", "sm90", "aotinductor", "fp16", None, "accepted"),
]
PARTITIONS = [
    {"name": "engine_0", "accelerated": True, "size": 40, "ops": {"aten.convolution.default": 20, "aten.relu.default": 20}, "reason": None},
    {"name": "torch_0", "accelerated": False, "size": 2, "ops": {"aten.sort.default": 2}, "reason": "aten.sort.default: no converter"},
]


@dataclass
class Seeded:
    artifacts: dict[tuple[str, str | None, str, str], str] = field(default_factory=dict)
    older_fp32: str = ""
    hostile_artifact: str = ""
    running_job: str = ""
    queued_job: str = ""
    failed_job: str = ""
    payload: bytes = b""


def _job(session: Session, model: m.Model, spec: m.CompileSpecRow, arch: str, device_class: str | None,
         backend: str, precision: str, state: m.JobState, user: str | None, minutes_ago: float, **extra: object) -> m.Job:
    queue = f"compile.{arch}" + (f".{device_class}" if device_class else "")
    job = m.Job(
        id=m.new_id(), model_id=model.id, spec_id=spec.id, arch=arch, device_class=device_class, queue=queue,
        backend=backend, precision=precision, state=state, submitted_by=user, cache_key=m.new_id() * 2,
        created_at=m.utcnow() - timedelta(minutes=minutes_ago), attempts=1, **extra,
    )
    session.add(job)
    return job


def seed(farm: Farm) -> Seeded:
    found = Seeded(payload=b"engine package bytes " * 100)
    stored = farm.store.put_bytes(found.payload)
    with farm.session() as session:
        model = m.Model(id=m.new_id(), name=MODEL, sha256="a" * 64, size_bytes=1000, uri="file:///model")
        hostile = m.Model(id=m.new_id(), name=HOSTILE, sha256="b" * 64, size_bytes=1000, uri="file:///hostile")
        spec = m.CompileSpecRow(id=m.new_id(), sha256="c" * 64, canonical_json="{}")
        session.add_all([model, hostile, spec])
        session.flush()

        def build(owner: m.Model, arch: str, device_class: str | None, backend: str, precision: str,
                  perf: dict[str, float] | None, gate: str, minutes_ago: float) -> str:
            job = _job(
                session, owner, spec, arch, device_class, backend, precision, m.JobState.SUCCEEDED, "alice",
                minutes_ago, phase_timings={"fetch": 0.2, "lowering": 1.5, "conversion": 2.0, "build": 6.0, "validate": 1.0},
                worker_name="cpu-box-1", finished_at=m.utcnow() - timedelta(minutes=minutes_ago - 1),
            )
            session.flush()
            artifact = m.Artifact(
                id=m.new_id(), job_id=job.id, model_id=owner.id, spec_id=spec.id, backend=backend,
                backend_version="1.0-test", arch=arch, device_class=device_class, precision=precision,
                uri=stored.uri, sha256=stored.sha256, size_bytes=len(found.payload), gate=gate,
                partition_stats={
                    "num_engines": 1, "num_accelerated_nodes": 40, "num_fallback_nodes": 2, "device": "cpu",
                    "partitions": PARTITIONS, "fallback_ops": {"aten.sort.default": 2},
                    "fallback_reasons": {"aten.sort.default": "no converter for aten.sort.default"},
                },
                build_key=m.new_id() * 2, created_at=m.utcnow() - timedelta(minutes=minutes_ago - 1),
            )
            session.add(artifact)
            session.flush()
            job.artifact_id = artifact.id
            for metric, value, threshold, passed in (
                ("cosine_similarity", 0.9995, 0.999, True),
                ("snr_db", 41.5, 30.0, True),
                ("max_abs_error", 2e-3 if gate == "rejected" else 1e-5, 1e-3, gate != "rejected"),
            ):
                session.add(m.ValidationResult(
                    artifact_id=artifact.id, job_id=job.id, output_name="output_0", metric=metric,
                    value=value, threshold=threshold, passed=passed, seed=0,
                ))
            for metric, value in (perf or {}).items():
                session.add(m.ValidationResult(
                    artifact_id=artifact.id, job_id=job.id, output_name="(performance)", metric=metric,
                    value=value, threshold=None, passed=True, seed=0,
                ))
            return artifact.id

        found.older_fp32 = build(model, "x86_64", None, "onnxruntime", "fp32",
                                 {"compiled_p50_ms": 5.0, "eager_p50_ms": 8.0, "speedup": 1.6, "peak_rss_mb": 320.0}, "accepted", 120)
        for minutes, (arch, device_class, backend, precision, perf, gate) in enumerate(BUILDS, start=10):
            found.artifacts[(arch, device_class, backend, precision)] = build(
                model, arch, device_class, backend, precision, perf, gate, 100 - minutes
            )
        found.hostile_artifact = build(hostile, "x86_64", None, "onnxruntime", "fp32", None, "accepted", 50)

        running = _job(session, model, spec, "x86_64", None, "onnxruntime", "fp16", m.JobState.RUNNING, "bob", 3,
                       phase="build", phase_timings={"fetch": 0.3, "lowering": 1.0}, worker_name="cpu-box-1",
                       started_at=m.utcnow() - timedelta(minutes=2))
        queued = _job(session, model, spec, "aarch64", "orin", "tensorrt", "int8", m.JobState.QUEUED, "bob", 2)
        failed = _job(session, model, spec, "aarch64", None, "onnxruntime", "fp32", m.JobState.FAILED, "alice", 1,
                      error_kind="unsupported_op", error_message="aten.foo has no converter",
                      phase_timings={"fetch": 0.1, "lowering": 0.4}, finished_at=m.utcnow())
        session.flush()
        found.running_job, found.queued_job, found.failed_job = running.id, queued.id, failed.id

        now = m.utcnow()
        session.add_all([
            m.Worker(name="cpu-box-1", hostname="cpu-box", arch="x86_64", device_class=None,
                     queues=["compile.x86_64"], state=m.WorkerState.ONLINE, last_heartbeat=now,
                     capabilities={"identity": {"arch": "x86_64", "torch_version": "2.13.0"},
                                   "backends": {"onnxruntime": "1.22.0"}}),
            m.Worker(name="orin-7", hostname="jetson-7", arch="aarch64", device_class="orin",
                     queues=["compile.aarch64", "compile.aarch64.orin"], state=m.WorkerState.ONLINE,
                     last_heartbeat=now - timedelta(minutes=5),
                     capabilities={"identity": {"arch": "aarch64", "gpu_name": "Orin", "compute_capability": "8.7",
                                                "jetson_module": "NVIDIA Jetson AGX Orin", "l4t_release": "36.3.0"},
                                   "backends": {"tensorrt": "10.3.0"}}),
            m.Worker(name="old-box", hostname="old", arch="x86_64", device_class=None, queues=["compile.x86_64"],
                     state=m.WorkerState.OFFLINE, last_heartbeat=now - timedelta(days=2)),
        ])
    return found
