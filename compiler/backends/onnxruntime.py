"""The portable backend: ONNX Runtime, CPU here, CUDA / TensorRT execution providers where present.

The "engine" is the ONNX model itself (serialized protobuf); ORT optimizes it when the session is
created. On CPU, inputs and outputs cross as numpy views of the torch tensors (no copies); on
CUDA, tensors are bound in place with IOBinding.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from compiler.backends.base import Backend, EngineMeta, EngineRunner, TensorMeta
from compiler.errors import BackendError
from compiler.spec import CompileSpec

_NUMPY_OF = {
    "float32": np.float32,
    "float16": np.float16,
    "float64": np.float64,
    "int64": np.int64,
    "int32": np.int32,
    "int16": np.int16,
    "int8": np.int8,
    "uint8": np.uint8,
    "bool": np.bool_,
}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def available(self) -> bool:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return False
        return True

    def version(self) -> str | None:
        try:
            import onnxruntime
        except ImportError:
            return None
        return str(onnxruntime.__version__)

    def supported_onnx_ops(self, spec: CompileSpec) -> frozenset[str] | None:
        provider = _providers(spec.device)[0]
        return _kernel_ops(provider)

    def build(
        self,
        onnx_model: bytes,
        spec: CompileSpec,
        inputs: Sequence[TensorMeta],
        outputs: Sequence[TensorMeta],
    ) -> tuple[bytes, dict[str, Any]]:
        # Creating the session here proves the model loads and lets ORT report errors at build
        # time rather than at the first call; the optimized graph is rebuilt at load time.
        session = _session(onnx_model, spec.device)
        return onnx_model, {"providers": session.get_providers()}

    def load(self, engine: bytes, meta: EngineMeta) -> EngineRunner:
        return OnnxRuntimeRunner(engine, meta)


class OnnxRuntimeRunner(EngineRunner):
    def __init__(self, engine: bytes, meta: EngineMeta) -> None:
        self.meta = meta
        self.session = _session(engine, meta.device)
        self._input_names = [t.name for t in meta.inputs]
        self._output_names = [t.name for t in meta.outputs]
        self._on_cuda = meta.device.startswith("cuda")
        # The bound C++ session skips the Python wrapper's per-call input validation, which is
        # measurable for small models (the runtime validates shapes itself).
        self._run = self.session._sess.run
        self._options = None

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if self._on_cuda:
            return self._run_cuda(inputs)
        feed = {name: _as_numpy(t) for name, t in zip(self._input_names, inputs, strict=True)}
        outputs = self._run(self._output_names, feed, self._options)
        return [torch.from_numpy(np.asarray(o)) for o in outputs]

    def _run_cuda(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        binding = self.session.io_binding()
        device_id = inputs[0].device.index or 0 if inputs else 0
        for name, tensor, meta in zip(self._input_names, inputs, self.meta.inputs, strict=True):
            tensor = tensor.contiguous()
            binding.bind_input(
                name, "cuda", device_id, _NUMPY_OF[meta.dtype], list(tensor.shape), tensor.data_ptr()
            )
        for name in self._output_names:
            binding.bind_output(name, "cuda", device_id)
        self.session.run_with_iobinding(binding)
        return [torch.from_dlpack(o) for o in binding.get_outputs()]


def _as_numpy(tensor: torch.Tensor) -> np.ndarray:
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    if tensor.requires_grad:
        tensor = tensor.detach()
    return tensor.numpy()


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise BackendError(
                f"device {device} needs onnxruntime's CUDAExecutionProvider; this machine has "
                f"{', '.join(available)} (install onnxruntime-gpu)"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device.startswith("dla"):
        raise BackendError("DLA devices need the tensorrt backend")
    return ["CPUExecutionProvider"]


def _session(model: bytes, device: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    providers: list[Any] = _providers(device)
    if device.startswith("cuda:"):
        index = int(device.split(":")[1])
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    try:
        return ort.InferenceSession(model, options, providers=providers)
    except Exception as exc:  # ORT raises its own exception types per failure kind
        raise BackendError(f"ONNX Runtime rejected the engine: {exc}") from exc


@functools.cache
def _kernel_ops(provider: str) -> frozenset[str]:
    """Ops the provider has kernels for, plus ops ORT expands through their ONNX function body."""
    import onnx
    from onnxruntime.capi import _pybind_state as C

    ops = {d.op_name for d in C.get_all_opkernel_def() if d.provider == provider and d.domain in ("", "ai.onnx")}
    for schema in onnx.defs.get_all_schemas():
        if schema.domain == "" and (schema.has_function or schema.has_context_dependent_function):
            ops.add(schema.name)
    return frozenset(ops)
