"""The ONNX Runtime backend on its own: build, load and run tiny hand-built ONNX models, and the
sanity of the op set it reports to the partitioner."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from compiler.backends import backend_versions, get_backend
from compiler.backends.base import EngineMeta, TensorMeta
from compiler.backends.onnxruntime import OnnxRuntimeBackend
from compiler.errors import BackendError, BackendUnavailableError
from compiler.spec import CompileSpec

BACKEND = OnnxRuntimeBackend()
CPU = CompileSpec.parse({})
F = TensorProto.FLOAT


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[tuple[str, int, Sequence[int | str]]],
    outputs: Sequence[tuple[str, int, Sequence[int | str]]],
    initializers: Sequence[tuple[str, np.ndarray]] = (),
) -> bytes:
    graph = helper.make_graph(
        list(nodes),
        "g",
        [helper.make_tensor_value_info(n, t, list(s)) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, list(s)) for n, t, s in outputs],
        initializer=[numpy_helper.from_array(v, n) for n, v in initializers],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


RNG = np.random.default_rng(0)
W = RNG.standard_normal((8, 4)).astype(np.float32)
B = RNG.standard_normal(4).astype(np.float32)
MLP = make_model(
    [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["z"]),
        helper.make_node("Relu", ["z"], ["y"]),
    ],
    [("x", F, ["batch", 8])],
    [("y", F, ["batch", 4])],
    [("w", W), ("b", B)],
)
X = TensorMeta("x", "float32", ("s0", 8), min=(1, 8), max=(16, 8))
Y = TensorMeta("y", "float32", ("s0", 4))


def load(model: bytes, inputs: Sequence[TensorMeta], outputs: Sequence[TensorMeta]):  # type: ignore[no-untyped-def]
    engine, extra = BACKEND.build(model, CPU, inputs, outputs)
    meta = EngineMeta(
        "0" * 64,
        "onnxruntime",
        BACKEND.version() or "",
        tuple(inputs),
        tuple(outputs),
        "cpu",
        extra,
    )
    return BACKEND.load(engine, meta)


def test_build_returns_the_model_and_the_providers_used() -> None:
    engine, extra = BACKEND.build(MLP, CPU, [X], [Y])
    assert onnx.load_model_from_string(engine).graph.node[0].op_type == "MatMul"
    assert extra == {"providers": ["CPUExecutionProvider"], "precision": "fp32", "whole_program": True}


@pytest.mark.parametrize("whole_program", [True, False])
def test_pool_threads_stop_spinning_after_a_run_unless_the_engine_is_the_whole_program(
    whole_program: bool,
) -> None:
    backend = OnnxRuntimeBackend()
    engine, extra = backend.build(MLP, CPU, [X], [Y], whole_program=whole_program)
    meta = EngineMeta("0" * 64, "onnxruntime", "", (X,), (Y,), "cpu", extra)
    for runner in (backend.load(engine, meta), backend.load(engine, meta)):  # reused, then new
        options = runner.session.get_session_options()  # type: ignore[attr-defined]
        assert _config_entry(options, "session.force_spinning_stop") == (None if whole_program else "1")


def _config_entry(options: ort.SessionOptions, key: str) -> str | None:
    try:
        return str(options.get_session_config_entry(key))
    except Exception:  # ORT raises its own RuntimeError subclass for an absent key
        return None


def test_load_right_after_build_reuses_the_session_build_created(monkeypatch: pytest.MonkeyPatch) -> None:
    import compiler.backends.onnxruntime as ort_backend

    created = []
    real_session = ort_backend._session
    monkeypatch.setattr(ort_backend, "_session", lambda *a, **k: created.append(a) or real_session(*a, **k))
    backend = OnnxRuntimeBackend()
    engine, extra = backend.build(MLP, CPU, [X], [Y])
    meta = EngineMeta("0" * 64, "onnxruntime", "", (X,), (Y,), "cpu", extra)
    first = backend.load(engine, meta)
    assert len(created) == 1
    # a second load of the same engine (another module, or compiler.load) gets its own session
    second = backend.load(engine, meta)
    assert len(created) == 2 and second.session is not first.session
    x = torch.randn(2, 8)
    assert torch.equal(first.run([x])[0], second.run([x])[0])


def test_sessions_kept_for_a_load_that_never_comes_are_bounded() -> None:
    backend = OnnxRuntimeBackend()
    engines = [backend.build(bytes(bytearray(MLP)), CPU, [X], [Y])[0] for _ in range(5)]
    assert len(backend._fresh) == backend._FRESH_LIMIT
    assert set(backend._fresh) == {id(e) for e in engines[-backend._FRESH_LIMIT :]}


def test_engine_matches_numpy_at_two_batch_sizes() -> None:
    runner = load(MLP, [X], [Y])
    for batch in (1, 16):
        x = torch.randn(batch, 8)
        (y,) = runner.run([x])
        assert y.shape == (batch, 4) and y.dtype == torch.float32
        np.testing.assert_allclose(
            y.numpy(), np.maximum(x.numpy() @ W + B, 0), rtol=1e-6, atol=1e-6
        )


def test_inputs_that_need_grad_or_are_strided_still_run() -> None:
    runner = load(MLP, [X], [Y])
    x = torch.randn(3, 8, requires_grad=True)
    strided = torch.randn(8, 3).t()
    for value in (x, strided):
        (y,) = runner.run([value])
        expected = np.maximum(value.detach().numpy() @ W + B, 0)
        np.testing.assert_allclose(y.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_outputs_of_one_call_are_not_overwritten_by_the_next() -> None:
    runner = load(MLP, [X], [Y])
    (first,) = runner.run([torch.ones(2, 8)])
    kept = first.clone()
    runner.run([torch.zeros(2, 8)])
    assert torch.equal(first, kept)


def test_integer_and_bool_tensors_cross_the_boundary() -> None:
    model = make_model(
        [
            helper.make_node("Shape", ["x"], ["shape"]),
            helper.make_node("Greater", ["x", "zero"], ["positive"]),
        ],
        [("x", TensorProto.INT64, ["n"])],
        [("shape", TensorProto.INT64, [1]), ("positive", TensorProto.BOOL, ["n"])],
        [("zero", np.array(0, np.int64))],
    )
    x_meta = TensorMeta("x", "int64", ("s0",), min=(1,), max=(8,))
    runner = load(
        model,
        [x_meta],
        [TensorMeta("shape", "int64", (1,)), TensorMeta("positive", "bool", ("s0",))],
    )
    shape, positive = runner.run([torch.tensor([3, -1, 0, 5])])
    assert shape.tolist() == [4]
    assert positive.dtype == torch.bool and positive.tolist() == [True, False, False, True]


def test_bytes_that_are_not_a_model_are_a_backend_error() -> None:
    with pytest.raises(BackendError, match="ONNX Runtime rejected the engine"):
        BACKEND.build(b"not a model", CPU, [X], [Y])


def test_dla_device_needs_the_tensorrt_backend() -> None:
    with pytest.raises(BackendError, match="DLA devices need the tensorrt backend"):
        BACKEND.build(MLP, CompileSpec.parse({"device": "dla:0"}), [X], [Y])


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(),
    reason="this onnxruntime has the CUDA provider",
)
def test_cuda_device_without_the_cuda_provider_says_what_to_install() -> None:
    with pytest.raises(BackendError, match="onnxruntime-gpu"):
        BACKEND.build(MLP, CompileSpec.parse({"device": "cuda"}), [X], [Y])


# Kernels ORT registers in the default domain that are not (or no longer) ONNX ops: its own
# memory-copy nodes, an internal fusion target, and experimental ops removed from ONNX.
ORT_INTERNAL_OPS = {"MemcpyFromHost", "MemcpyToHost", "SimplifiedLayerNormalization", "Affine", "Crop",
                    "DynamicSlice", "ImageScaler", "ParametricSoftplus", "Scale", "ScaledTanh"}  # fmt: skip


def test_reported_op_set_is_onnx_default_domain_ops() -> None:
    ops = BACKEND.supported_onnx_ops(CPU)
    assert ops is not None
    schemas = {s.name for s in onnx.defs.get_all_schemas_with_history() if s.domain == ""}
    assert ops - schemas <= ORT_INTERNAL_OPS
    # Contrib kernels (com.microsoft) must not leak into the default-domain set.
    assert not {"FusedConv", "FusedGemm", "Attention", "QAttention", "BiasGelu"} & (ops - schemas)


def test_constant_nodes_are_supported() -> None:
    ops = BACKEND.supported_onnx_ops(CPU)
    assert ops is not None and "Constant" in ops


def test_reported_op_set_covers_what_the_issue_models_need() -> None:
    ops = BACKEND.supported_onnx_ops(CPU)
    assert ops is not None
    needed = {"Conv", "Relu", "MaxPool", "GlobalAveragePool", "Gemm", "MatMul", "Add", "Reshape",
              "Transpose", "Gather", "Softmax", "Erf", "LayerNormalization", "Where", "Cast", "Clip"}  # fmt: skip
    assert needed <= ops


def test_ops_without_a_kernel_are_covered_through_their_function_body() -> None:
    # Ops that ORT has no kernel for but that ONNX defines as a function of other ops.
    ops = BACKEND.supported_onnx_ops(CPU)
    assert ops is not None
    function_ops = {
        s.name
        for s in onnx.defs.get_all_schemas()
        if s.domain == "" and s.has_function  # type: ignore[attr-defined]
    }
    assert function_ops and function_ops <= ops


def test_backend_registry_lists_onnxruntime_with_its_version() -> None:
    assert get_backend("onnxruntime") is not None
    assert backend_versions()["onnxruntime"] == ort.__version__
    with pytest.raises(BackendUnavailableError, match="unknown backend 'nope'"):
        get_backend("nope")


# ---------------------------------------------------------------------- fp16 on the CUDA provider
HAS_CUDA_PROVIDER = "CUDAExecutionProvider" in ort.get_available_providers()
FP16_CUDA = CompileSpec.parse({"device": "cuda", "precision": "fp16"})


def test_fp16_conversion_keeps_float32_inputs_and_outputs_and_computes_in_float16() -> None:
    from onnx.reference import ReferenceEvaluator

    from compiler.backends.onnxruntime import convert_to_fp16

    converted = onnx.load_from_string(convert_to_fp16(onnx.load_from_string(MLP)))
    onnx.checker.check_model(converted, full_check=True)
    io = [*converted.graph.input, *converted.graph.output]
    assert [v.type.tensor_type.elem_type for v in io] == [F, F]  # the calling convention is fp32's
    assert {i.data_type for i in converted.graph.initializer} == {TensorProto.FLOAT16}
    ops = [n.op_type for n in converted.graph.node]
    assert ops[0] == "Cast" and ops[-1] == "Cast" and {"MatMul", "Add", "Relu"} <= set(ops)
    x = RNG.standard_normal((3, 8)).astype(np.float32)
    (got,) = ReferenceEvaluator(converted).run(None, {"x": x})
    assert got.dtype == np.float32
    half = np.float16
    in_fp16 = np.maximum(x.astype(half) @ W.astype(half) + B.astype(half), 0).astype(np.float32)
    np.testing.assert_allclose(got, in_fp16, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(got, np.maximum(x @ W + B, 0), rtol=2e-2, atol=2e-2)


def test_fp16_is_accepted_on_cuda_where_the_cuda_provider_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    BACKEND.check_spec(FP16_CUDA)
    BACKEND.check_spec(CompileSpec.parse({"device": "cuda:1", "precision": "fp16"}))


@pytest.mark.skipif(HAS_CUDA_PROVIDER, reason="this onnxruntime has the CUDA provider")
def test_fp16_without_the_cuda_provider_is_refused_saying_what_to_install() -> None:
    with pytest.raises(BackendError, match="fp16 with onnxruntime runs on its CUDA provider.*onnxruntime-gpu"):
        BACKEND.check_spec(FP16_CUDA)


def test_fp16_on_the_cpu_is_refused() -> None:
    with pytest.raises(BackendError, match="needs device cuda"):
        BACKEND.check_spec(CompileSpec.parse({"precision": "fp16"}))


@pytest.mark.cuda
@pytest.mark.skipif(
    not HAS_CUDA_PROVIDER or not torch.cuda.is_available(),
    reason="onnxruntime's CUDAExecutionProvider is not installed here (onnxruntime-gpu), or no CUDA GPU",
)
def test_fp16_engine_on_the_cuda_provider_is_half_precision_and_passes_the_fp16_gate() -> None:
    import compiler

    module = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.GELU(), torch.nn.LayerNorm(32), torch.nn.Linear(32, 4)).eval()
    compiled = compiler.compile(module, FP16_CUDA, (torch.randn(4, 8),), validate=True)
    ((meta, engine),) = compiled.engines.values()
    assert meta.extra["precision"] == "fp16" and meta.extra["providers"][0] == "CUDAExecutionProvider"
    assert TensorProto.FLOAT16 in {i.data_type for i in onnx.load_from_string(engine).graph.initializer}
    out = compiled(torch.randn(4, 8, device="cuda"))
    assert out.dtype == torch.float32 and out.device.type == "cuda"
    results = {(r["output"], r["metric"]): r for r in compiled.report.validation}
    assert results[("output_0", "cosine_similarity")]["passed"]
    assert ("(performance)", "cuda_max_allocated_mb") in results


def test_int8_activations_are_unsigned_on_x86_and_signed_on_arm() -> None:
    from compiler.backends.onnxruntime import activation_quant_type

    assert activation_quant_type("x86_64") == activation_quant_type("AMD64") == "QUInt8"
    assert activation_quant_type("aarch64") == activation_quant_type("arm64") == "QInt8"
