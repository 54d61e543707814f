"""The portable backend: ONNX Runtime, CPU here, CUDA / TensorRT execution providers where present.

The "engine" is the ONNX model itself (serialized protobuf); ORT optimizes it when the session is
created. On CPU, inputs and outputs cross as numpy views of the torch tensors (no copies); on
CUDA, tensors are bound in place with IOBinding.
"""

from __future__ import annotations

import functools
import logging
import platform
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch

from compiler.backends.base import Backend, Calibration, EngineMeta, EngineRunner, TensorMeta
from compiler.errors import BackendError
from compiler.identity import DeviceClass
from compiler.scratch import scratch_folder
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
    calibrates = True
    keeps_fp32 = frozenset({"int8"})
    data_dependent_shapes = True  # ONNX Runtime allocates every output it computes

    # Sessions created by build(), handed to the load() that follows for the same engine object
    # (compile builds and loads each engine back to back): creating a session for a large model
    # takes about a second, and doing it twice doubled the build phase. Keyed by the engine's
    # id() and holding the bytes, so an id cannot be reused while its entry lives. At most two
    # are kept (two compiles in threads of one process); a session whose load never comes, as
    # for a partition identical to one already loaded, is dropped by a later build.
    _FRESH_LIMIT = 2

    def __init__(self) -> None:
        self._fresh: dict[int, tuple[bytes, Any, bool]] = {}
        self._fresh_lock = threading.Lock()

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

    def check_spec(self, spec: CompileSpec) -> None:
        """fp16 is accepted on a cuda device where ONNX Runtime's CUDAExecutionProvider is
        installed (onnxruntime-gpu); the engine is the fp16 model :func:`convert_to_fp16`
        makes, with float32 inputs and outputs."""
        self._check_rules(spec)
        # this machine's providers: asked only where the engine is built
        try:
            _providers(spec.device)
        except BackendError as exc:
            if spec.precision == "fp16":
                raise BackendError(f"precision fp16 with onnxruntime runs on its CUDA provider: {exc}") from None
            raise

    def check_target(self, spec: CompileSpec, arch: str, device_class: DeviceClass | None) -> None:
        super().check_target(spec, arch, device_class)
        self._check_rules(spec)

    def _check_rules(self, spec: CompileSpec) -> None:
        """What onnxruntime never builds, on any machine."""
        if spec.device.startswith("dla"):
            raise BackendError("DLA devices need the tensorrt backend")
        if spec.precision in ("fp16", "bf16") and not spec.device.startswith("cuda"):
            raise BackendError(
                f"precision {spec.precision} with onnxruntime needs device cuda: the CPU provider "
                "has no half-precision kernels for most ops. Use fp32 or int8 on CPU, or the "
                "tensorrt backend on a GPU."
            )
        if spec.precision == "bf16":
            raise BackendError("precision bf16 is supported by the tensorrt backend only; use fp16 with onnxruntime")

    def supports_dtype(self, dtype: torch.dtype, spec: CompileSpec) -> bool:
        # numpy, through which ORT's Python API exchanges tensors, has no bfloat16
        return dtype != torch.bfloat16

    def supported_onnx_ops(self, spec: CompileSpec) -> frozenset[str] | None:
        provider = _providers(spec.device)[0]
        return _kernel_ops(provider)

    def build(
        self,
        onnx_model: bytes,
        spec: CompileSpec,
        inputs: Sequence[TensorMeta],
        outputs: Sequence[TensorMeta],
        *,
        whole_program: bool = True,
    ) -> tuple[bytes, dict[str, Any]]:
        return self._build(onnx_model, spec, whole_program, None)

    def build_calibrated(
        self,
        onnx_model: bytes,
        spec: CompileSpec,
        inputs: Sequence[TensorMeta],
        outputs: Sequence[TensorMeta],
        calibration: Calibration,
        *,
        whole_program: bool = True,
    ) -> tuple[bytes, dict[str, Any]]:
        return self._build(onnx_model, spec, whole_program, calibration)

    def _build(
        self, onnx_model: bytes, spec: CompileSpec, whole_program: bool, calibration: Calibration | None
    ) -> tuple[bytes, dict[str, Any]]:
        quant: dict[str, Any] = {}
        if spec.precision == "int8" and spec.quantization.method == "static":
            if calibration is None:
                raise BackendError("static int8 quantization needs calibration inputs (compile passes them)")
            engine, quant = _quantize_int8_static(onnx_model, calibration)
        else:
            engine = _apply_precision(onnx_model, spec)
        # Creating the session here proves the model loads and lets ORT report errors at build
        # time rather than at the first call; the load() that follows in compile reuses it.
        session = _session(engine, spec.device, spin_after_run=whole_program)
        with self._fresh_lock:
            while len(self._fresh) >= self._FRESH_LIMIT:
                self._fresh.pop(next(iter(self._fresh)))
            self._fresh[id(engine)] = (engine, session, whole_program)
        extra = {"providers": session.get_providers(), "precision": spec.precision, "whole_program": whole_program, **quant}
        return engine, extra

    def load(self, engine: bytes, meta: EngineMeta) -> EngineRunner:
        whole_program = bool(meta.extra.get("whole_program", True))
        with self._fresh_lock:
            fresh = self._fresh.pop(id(engine), None)
        if fresh is not None and fresh[0] is engine and fresh[2] == whole_program:
            return OnnxRuntimeRunner(engine, meta, fresh[1])
        return OnnxRuntimeRunner(engine, meta, _session(engine, meta.device, spin_after_run=whole_program))


class OnnxRuntimeRunner(EngineRunner):
    def __init__(self, engine: bytes, meta: EngineMeta, session: Any) -> None:
        self.meta = meta
        self.session = session
        self._input_names = [t.name for t in meta.inputs]
        self._output_names = [t.name for t in meta.outputs]
        self._on_cuda = meta.device.startswith("cuda")
        # The bound C++ session skips the Python wrapper's per-call input validation, which is
        # measurable for small models (the runtime validates shapes itself).
        self._run = self.session._sess.run
        self._options = None
        # On CPU, numpy views of the torch tensors are fed to ORT: binding raw pointers through
        # IOBinding measured slower per call here (benchmarks/README.md).

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if self._on_cuda:
            return self._run_cuda(inputs)
        feed = {
            name: t.numpy() if t.is_cpu and not t.requires_grad else _as_numpy(t)
            for name, t in zip(self._input_names, inputs, strict=True)
        }
        return [torch.from_numpy(o) for o in self._run(self._output_names, feed, self._options)]

    def unchecked_cpu_run(self) -> Callable[[Sequence[torch.Tensor]], list[torch.Tensor]] | None:
        if self._on_cuda:
            return None
        run, input_names, output_names = self._run, self._input_names, self._output_names
        from_numpy = torch.from_numpy
        if len(input_names) == 1:
            (name,) = input_names

            def run_one(inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
                return [from_numpy(o) for o in run(output_names, {name: inputs[0].numpy()}, None)]

            return run_one

        def run_many(inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
            feed = {n: t.numpy() for n, t in zip(input_names, inputs, strict=True)}
            return [from_numpy(o) for o in run(output_names, feed, None)]

        return run_many

    def _run_cuda(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        device = torch.device(self.meta.device)
        # ORT runs on its own CUDA stream: make PyTorch's pending writes to the inputs visible.
        torch.cuda.current_stream(device).synchronize()
        return self._run_bound(inputs, device)

    def _run_bound(self, inputs: Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
        """One run with inputs and outputs bound on ``device``. Outputs of sizes known from the
        input shapes are allocated here; those whose size depends on the values (nonzero,
        x[mask]) are allocated by ONNX Runtime once it knows it, and handed over through DLPack
        without a copy: the output allocator."""
        tensors = [
            t.to(device=device, dtype=m.torch_dtype).contiguous()
            for t, m in zip(inputs, self.meta.inputs, strict=True)
        ]
        shapes = self._output_shapes(tensors)
        outputs = [
            None if shape is None else torch.empty(shape, dtype=m.torch_dtype, device=device)
            for shape, m in zip(shapes, self.meta.outputs, strict=True)
        ]
        binding = self.session.io_binding()
        kind, index = device.type, device.index or 0
        for name, tensor, m in zip(self._input_names, tensors, self.meta.inputs, strict=True):
            binding.bind_input(name, kind, index, _NUMPY_OF[m.dtype], list(tensor.shape), tensor.data_ptr())
        for name, out, m in zip(self._output_names, outputs, self.meta.outputs, strict=True):
            if out is None:
                binding.bind_output(name, kind, index)
            else:
                binding.bind_output(name, kind, index, _NUMPY_OF[m.dtype], list(out.shape), out.data_ptr())
        self.session.run_with_iobinding(binding)  # returns once the outputs are written
        if all(out is not None for out in outputs):
            return cast(list[torch.Tensor], outputs)
        returned = binding.get_outputs()
        return [torch.from_dlpack(returned[i]) if out is None else out for i, out in enumerate(outputs)]

    def _output_shapes(self, inputs: Sequence[torch.Tensor]) -> list[list[int] | None]:
        """Each output's shape from the input shapes; None for one whose size depends on the
        values."""
        from compiler.runtime.shapes import eval_expr

        env: dict[str, int] = {name: int(inputs[i].shape[d]) for name, (i, d) in self.meta.extra["symbols"].items()}
        shapes: list[list[int] | None] = []
        for dims in self.meta.extra["output_dims"]:
            try:
                shapes.append([int(eval_expr(e, env)) for e in dims])
            except KeyError:  # a data-dependent symbol (meta.extra["data_dependent"])
                shapes.append(None)
        return shapes


def _quantize_int8_static(onnx_model: bytes, calibration: Calibration) -> tuple[bytes, dict[str, Any]]:
    """ONNX Runtime's static QDQ quantization, per-channel int8 weights and int8 activations
    whose ranges are calibrated (min/max) on the partition's captured inputs; the nodes in
    ``calibration.keep_fp32`` stay float. With ``rank_nodes``, the metadata also ranks the
    quantized model's nodes by the noise each adds (:func:`_rank_nodes`)."""
    import onnx

    model = _prepare_for_quantization(onnx.load_from_string(onnx_model))
    _name_nodes(model)
    samples = [{k: _as_numpy(v) for k, v in s.items()} for s in calibration.samples]
    keep = [n for n in calibration.keep_fp32 if any(n == node.name for node in model.graph.node)]
    masked = _mask_nodes(model)
    quantized = quantize_static_qdq(model, samples, keep + [n for n in masked if n not in keep])
    extra: dict[str, Any] = {
        "quantization": "static_qdq_per_channel",
        "activation_type": activation_quant_type(),
        "calibration_samples": len(samples),
        "kept_fp32": keep,
        "mask_nodes_fp32": masked,
    }
    if calibration.rank_nodes:
        extra["node_sensitivity"] = _rank_nodes(model, quantized, samples)
    return quantized, extra


def static_recipe() -> dict[str, Any]:
    """The ``quantize_static`` arguments of our int8 engines (enum members by name): QDQ, per
    channel, signed weights, activations as :func:`activation_quant_type` says."""
    return {"quant_format": "QDQ", "per_channel": True, "activation_type": activation_quant_type(), "weight_type": "QInt8"}


def quantize_static_qdq(
    model: Any, samples: list[dict[str, np.ndarray]], keep_fp32: Sequence[str], recipe: Mapping[str, Any] | None = None
) -> bytes:
    """``onnxruntime.quantization.quantize_static`` with :func:`static_recipe` (``recipe``
    overrides its arguments: benchmarks/int8_recipes.py compares others), fed by a
    CalibrationDataReader over ``samples``. (A module-level function: tests corrupt its output
    to prove that the gate rejects a broken engine.)"""
    from pathlib import Path

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._samples = iter(samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._samples, None)

    quant_logger = logging.getLogger()  # the quantizer advises pre-processing via the root logger
    level = quant_logger.level
    quant_logger.setLevel(logging.ERROR)
    try:
        with scratch_folder("orchestrate-ort-") as tmp:
            # paths, not protos: given a proto, the quantizer's output refers to weights in an
            # external-data file of its own temporary folder, gone when it returns
            source, out = Path(tmp) / "model.onnx", Path(tmp) / "quantized.onnx"
            onnx.save_model(model, str(source))
            arguments = {**static_recipe(), **(recipe or {})}
            arguments["quant_format"] = QuantFormat[arguments["quant_format"]]
            arguments["activation_type"] = QuantType[arguments["activation_type"]]
            arguments["weight_type"] = QuantType[arguments["weight_type"]]
            quantize_static(str(source), str(out), Reader(), nodes_to_exclude=list(keep_fp32) or None, **arguments)
            return bytes(onnx.load_model(str(out)).SerializeToString())  # external data inlined
    finally:
        quant_logger.setLevel(level)


def activation_quant_type(machine: str | None = None) -> str:
    """The activations' int8 type for the machine that builds (and so runs) the engine: uint8
    on x86-64, signed int8 elsewhere (Arm's dot products take both signed). ONNX Runtime's x86
    int8 kernels multiply unsigned by signed bytes (vpmaddubsw on AVX2, vpdpbusd with VNNI), and
    with signed activations its graph optimizer leaves part of the convolutions in float between
    Q/DQ pairs: ResNet-50 ran 1.11x fp32 with them against 1.71x with uint8 on an AVX2 machine,
    and 1.29x against 3.27x (20 of 53 convolutions left in float) on an AVX-512 VNNI one
    (benchmarks/README.md, benchmarks/int8_recipes.py)."""
    machine = (machine or platform.machine()).lower()
    return "QUInt8" if machine in ("x86_64", "amd64") else "QInt8"


def _prepare_for_quantization(model: Any) -> Any:
    """ONNX Runtime's basic graph optimizations (constant folding, BatchNormalization folded
    into Conv, ...), saved as a plain ONNX model: what ``quant_pre_process`` recommends, so that
    a Conv's BatchNormalization is not left in float between Q/DQ pairs. Node names (which the
    gate's retries use) are those of this optimized model."""
    from pathlib import Path

    import onnx
    import onnxruntime as ort

    with scratch_folder("orchestrate-ort-") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(optimized)
        options.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return onnx.load_model(str(optimized))


_HUGE = 1e4  # |value| beyond any activation an int8 range should span
# elementwise and layout ops through which a mask's extreme values travel unchanged in kind
_MASK_CARRIERS = {"Add", "Sub", "Mul", "Div", "Neg", "Where", "Cast", "Expand", "Unsqueeze", "Squeeze", "Reshape", "Transpose", "Min", "Max"}


def _mask_nodes(model: Any) -> list[str]:
    """Nodes that touch attention-mask style tensors: constants of extreme magnitude (the float
    minimum added to masked scores) and what elementwise ops make of them. One int8 range over
    [-3.4e38, x] leaves nothing of x, so these nodes stay float; on BERT-base, quantizing them
    took the output's SNR from 17 dB to 3 dB."""
    from onnx import numpy_helper

    huge: set[str] = set()
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype.kind == "f" and array.size and float(np.abs(array).max()) > _HUGE:
            huge.add(init.name)
    names: list[str] = []
    for node in model.graph.node:  # topological order
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    array = numpy_helper.to_array(attr.t)
                    if array.dtype.kind == "f" and array.size and float(np.abs(array).max()) > _HUGE:
                        huge.update(node.output)
            continue
        if any(i in huge for i in node.input):
            names.append(node.name)
            if node.op_type in _MASK_CARRIERS:
                huge.update(node.output)
    return names


def _name_nodes(model: Any) -> None:
    """``nodes_to_exclude`` and the gate's reports name nodes: give unnamed ones stable names."""
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
        seen.add(node.name)


def _rank_nodes(float_model: Any, quantized: bytes, samples: list[dict[str, np.ndarray]], top: int = 32) -> list[list[Any]]:
    """``[[node, added_noise], ...]``, most damaging first, for the quantized model's compute
    nodes (those ``nodes_to_exclude`` can name): how much the noise-to-signal power ratio of the
    node's float output, against the float model, exceeds that of its worst float input (the
    noise its own quantization of weights and inputs adds; linear, so that the first node, fed
    exact inputs, does not rank first by default). The quantizer fuses some nodes (Conv+Relu), so
    tensors are matched by name through the Q/DQ pairs. Measured by running both models on the
    calibration samples with those tensors exposed as outputs."""
    import onnx

    qmodel = onnx.load_from_string(quantized)
    float_names = {n.name for n in float_model.graph.node}
    float_tensors = {o for n in float_model.graph.node for o in n.output} | {i.name for i in float_model.graph.input}
    producer = {o: n for n in qmodel.graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for node in qmodel.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    qdq = ("QuantizeLinear", "DequantizeLinear")

    # float tensor -> the quantized model's view of it: the dequantized value where the tensor
    # is quantized (a Relu folded into its Q leaves the float pre-Q tensor unclipped)
    view: dict[str, str] = {}

    def dequantized(name: str) -> str:
        for q in consumers.get(name, []):
            if q.op_type == "QuantizeLinear":
                for dq in consumers.get(q.output[0], []):
                    if dq.op_type == "DequantizeLinear":
                        return str(dq.output[0])
        return name

    def float_input(name: str) -> str | None:
        dq = producer.get(name)
        if dq is not None and dq.op_type == "DequantizeLinear":
            q = producer.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                return None  # a quantized weight
            if q.input[0] in float_tensors:
                view[q.input[0]] = name
                return str(q.input[0])
            return None
        if name in float_tensors:
            view.setdefault(name, name)
            return name
        return None

    def float_output(name: str) -> str | None:
        candidates = [name, dequantized(name)]
        for c in candidates:
            if c in float_tensors:
                view[c] = dequantized(name)
                return c
        return None

    pairs: list[tuple[str, list[str], str]] = []
    for node in qmodel.graph.node:
        if node.op_type in qdq or node.name not in float_names or not node.output:
            continue
        out = float_output(node.output[0])
        if out is None:
            continue
        inputs = [t for t in (float_input(i) for i in node.input if i) if t is not None]
        pairs.append((node.name, inputs, out))
    graph_inputs = {i.name for i in float_model.graph.input}
    tensors = sorted({t for _, ins, out in pairs for t in (*ins, out)} - graph_inputs)
    qtensors = [view[t] for t in tensors]
    signal = dict.fromkeys(tensors, 0.0)
    noise = dict.fromkeys(tensors, 0.0)
    runs = []
    for m, names in ((float_model, tensors), (qmodel, qtensors)):
        exposed = onnx.ModelProto()
        exposed.CopyFrom(m)
        present = {o.name for o in exposed.graph.output}
        exposed.graph.output.extend([onnx.ValueInfoProto(name=t) for t in dict.fromkeys(names) if t not in present])
        runs.append(_session(exposed.SerializeToString(), "cpu"))
    for sample in samples:
        want = dict(zip(tensors, runs[0].run(tensors, sample), strict=True))
        have = dict(zip(tensors, runs[1].run(qtensors, sample), strict=True))
        for t in tensors:
            w, h = np.asarray(want[t]), np.asarray(have[t])
            if w.shape != h.shape or not np.issubdtype(w.dtype, np.floating):
                continue
            w, h = w.astype(np.float64), h.astype(np.float64)
            # attention masks carry the float minimum: compare only where both are finite values
            # of ordinary size
            ordinary = (np.abs(w) < 1e30) & (np.abs(h) < 1e30)
            w, h = w[ordinary], h[ordinary]
            signal[t] += float((w * w).sum())
            noise[t] += float(((w - h) ** 2).sum())

    def nsr(t: str) -> float:  # noise-to-signal power ratio (0 for an exact tensor)
        if t not in signal or noise[t] == 0.0:
            return 0.0
        return noise[t] / max(signal[t], 1e-300)

    ranked: list[list[Any]] = []
    for name, inputs, out in pairs:
        before = max((nsr(i) for i in inputs), default=0.0)
        ranked.append([name, float(f"{max(nsr(out) - before, 0.0):.6g}")])
    ranked.sort(key=lambda r: -r[1])
    return ranked[:top]


def _apply_precision(onnx_model: bytes, spec: CompileSpec) -> bytes:
    """fp32 as converted; int8 by ONNX Runtime's dynamic quantization (int8 weights for
    MatMul/Gemm, activations quantized per call, so no calibration data is needed); fp16 by
    ONNX Runtime's float16 converter with float32 inputs and outputs kept, on CUDA only."""
    if spec.precision == "fp32":
        return onnx_model
    import onnx

    model = onnx.load_from_string(onnx_model)
    if spec.precision == "int8":
        from pathlib import Path

        from onnxruntime.quantization import QuantType, quantize_dynamic

        quant_logger = logging.getLogger()  # the quantizer advises pre-processing via the root logger
        level = quant_logger.level
        quant_logger.setLevel(logging.ERROR)
        try:
            with scratch_folder("orchestrate-ort-") as tmp:
                out = Path(tmp) / "quantized.onnx"
                quantize_dynamic(model, out, weight_type=QuantType.QInt8)
                return out.read_bytes()
        finally:
            quant_logger.setLevel(level)
    return convert_to_fp16(model)  # fp16: cuda only (check_spec)


def convert_to_fp16(model: Any) -> bytes:
    """``model`` (an ONNX ModelProto) with float32 weights and computation in float16, by ONNX
    Runtime's float16 converter: float32 inputs and outputs are kept (``keep_io_types``, Cast
    nodes at the edges), so the engine's calling convention is the fp32 model's; ops the
    converter knows to lack fp16 kernels stay in float32 behind Casts (its default block
    list); weights beyond fp16's range are clipped to it, not turned into infinities. The
    converter appends its input Casts after the nodes that read them; the nodes are sorted
    again so the model is valid ONNX, not only one ONNX Runtime tolerates."""
    import onnx_ir as ir
    from onnx_ir.passes.common import TopologicalSortPass
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = ir.from_proto(convert_float_to_float16(model, keep_io_types=True))
    TopologicalSortPass()(converted)
    return bytes(ir.to_proto(converted).SerializeToString())


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


def _session(model: bytes, device: str, *, spin_after_run: bool = True) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if not spin_after_run:
        # An engine that shares its program with other engines or PyTorch code: its pool
        # threads still spin between the parallel sections of a run but sleep when it ends,
        # instead of spinning on for 30-40 ms pinned to the cores the next engine's pool and
        # PyTorch want. MobileNetV2 split into 11 engines by PyTorch adds: 20.6 -> 6.2 ms
        # (benchmarks/partitioned.py). An engine that is the whole program keeps ORT's default:
        # stopping cost 1.5-3 us per run here, up to a tenth of the digits CNN's run time.
        options.add_session_config_entry("session.force_spinning_stop", "1")
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
        has_body = getattr(schema, "has_function", False) or getattr(schema, "has_context_dependent_function", False)
        if schema.domain == "" and has_body:
            ops.add(schema.name)
    ops.add("Constant")  # folded into initializers when the session is created
    return frozenset(ops)
