"""What a compile did: partitions, fallback ops and why, timings per phase."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CompileReport:
    backend: str
    backend_version: str
    precision: str
    device: str
    partitions: list[dict[str, Any]] = field(default_factory=list)
    fallback_ops: dict[str, int] = field(default_factory=dict)
    fallback_reasons: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    pass_timings: dict[str, float] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    # int8: where the calibration inputs came from (data or generated, with the seed)
    calibration: dict[str, Any] = field(default_factory=dict)
    # int8: ONNX nodes (partition/node) kept in fp32, by the spec or by the gate's retries
    kept_fp32: list[str] = field(default_factory=list)
    # results of compile(validate=True), as ValidationResult.to_dict()
    validation: list[dict[str, Any]] = field(default_factory=list)

    @property
    def num_engines(self) -> int:
        return sum(1 for p in self.partitions if p["accelerated"])

    @property
    def num_accelerated_nodes(self) -> int:
        return sum(p["size"] for p in self.partitions if p["accelerated"])

    @property
    def num_fallback_nodes(self) -> int:
        return sum(self.fallback_ops.values())

    @property
    def fully_compiled(self) -> bool:
        return self.num_fallback_nodes == 0 and self.num_engines > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "backend_version": self.backend_version,
            "precision": self.precision,
            "device": self.device,
            "num_engines": self.num_engines,
            "num_accelerated_nodes": self.num_accelerated_nodes,
            "num_fallback_nodes": self.num_fallback_nodes,
            "partitions": self.partitions,
            "fallback_ops": self.fallback_ops,
            "fallback_reasons": self.fallback_reasons,
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
            "pass_timings": {k: round(v, 6) for k, v in self.pass_timings.items()},
            "inputs": self.inputs,
            "calibration": self.calibration,
            "kept_fp32": self.kept_fp32,
            "validation": self.validation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompileReport:
        return cls(
            backend=data["backend"],
            backend_version=data["backend_version"],
            precision=data["precision"],
            device=data["device"],
            partitions=list(data.get("partitions", [])),
            fallback_ops=dict(data.get("fallback_ops", {})),
            fallback_reasons=dict(data.get("fallback_reasons", {})),
            timings=dict(data.get("timings", {})),
            pass_timings=dict(data.get("pass_timings", {})),
            inputs=list(data.get("inputs", [])),
            calibration=dict(data.get("calibration", {})),
            kept_fp32=list(data.get("kept_fp32", [])),
            validation=list(data.get("validation", [])),
        )
