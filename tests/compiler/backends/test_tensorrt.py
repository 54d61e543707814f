"""The TensorRT backend: op-support data and the pre-build model check (everywhere), the backend's
behaviour without TensorRT (everywhere), and real engine builds (where TensorRT and a GPU exist).
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from compiler.backends import get_backend
from compiler.backends.base import EngineMeta, TensorMeta
from compiler.backends.tensorrt import TensorRTBackend, TensorRTOptions, TensorRTRunner
from compiler.backends.tensorrt_ops import (
    MAX_OPSET,
    SUPPORTED_OP_NAMES,
    SUPPORTED_OPS,
    TOPK_MAX_K,
    check_model,
)
from compiler.errors import BackendError, BackendUnavailableError, InputMismatchError, SpecError
from compiler.identity import IncompatibleEngineError
from compiler.spec import CompileSpec

BACKEND = TensorRTBackend()


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[tuple[str, int, Sequence[int | str]]],
    outputs: Sequence[tuple[str, int, Sequence[int | str] | None]],
    initializers: Sequence[tuple[str, np.ndarray]] = (),
    opset: int = 20,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        list(nodes),
        "g",
        [helper.make_tensor_value_info(n, t, list(s)) for n, t, s in inputs],
        [
            helper.make_tensor_value_info(n, t, None if s is None else list(s))
            for n, t, s in outputs
        ],
        initializer=[numpy_helper.from_array(v, n) for n, v in initializers],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


F = TensorProto.FLOAT


def one_node(
    op: str, inputs: Sequence[str], outputs: Sequence[str] = ("y",), **attrs: object
) -> onnx.ModelProto:
    """A model of a single node whose graph inputs are its non-constant inputs (float, 4D)."""
    node = helper.make_node(op, list(inputs), list(outputs), name="n0", **attrs)
    graph_inputs = [
        (name, F, [1, 3, 8, 8]) for name in inputs if name and not name.startswith("c_")
    ]
    return make_model([node], graph_inputs, [(o, F, None) for o in outputs if o])


def mlp(batch: int | str = "batch") -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["z"]),
        helper.make_node("Relu", ["z"], ["y"]),
    ]
    model = make_model(nodes, [("x", F, [batch, 8])], [("y", F, [batch, 4])], [("w", w), ("b", b)])
    return model, w, b


# --------------------------------------------------------------------------------- op-support data
def test_supported_ops_are_onnx_ops_or_the_documented_legacy_ones() -> None:
    schemas = {s.name for s in onnx.defs.get_all_schemas_with_history() if s.domain == ""}
    assert SUPPORTED_OP_NAMES - schemas == {"ImageScaler", "ParametricSoftplus", "ScaledTanh"}


def test_ops_the_issue_models_need_are_supported() -> None:
    # CNN, ResNet-50, MobileNetV2, BERT as the converters emit them.
    needed = [
        "Conv",
        "Relu",
        "Clip",
        "MaxPool",
        "GlobalAveragePool",
        "AveragePool",
        "BatchNormalization",
        "Gemm",
        "MatMul",
        "Add",
        "Mul",
        "Sub",
        "Div",
        "Flatten",
        "Reshape",
        "Transpose",
        "Gather",
        "Concat",
        "Slice",
        "Unsqueeze",
        "Squeeze",
        "Shape",
        "Expand",
        "Where",
        "Cast",
        "Softmax",
        "Erf",
        "Gelu",
        "Tanh",
        "Sqrt",
        "Pow",
        "LayerNormalization",
        "ReduceMean",
        "Equal",
        "Not",
        "Constant",
        "Range",
    ]
    assert set(needed) <= SUPPORTED_OP_NAMES


@pytest.mark.parametrize(
    "op",
    [
        "BitShift",
        "BitwiseAnd",
        "Unique",
        "Compress",
        "MatMulInteger",
        "SequenceAt",
        "StringNormalizer",
        "STFT",
    ],
)
def test_ops_without_a_parser_importer_are_not_supported(op: str) -> None:
    assert op not in SUPPORTED_OP_NAMES
    problems = check_model(one_node(op, ["x"]))
    assert problems and f"no importer for {op}" in problems[0]


def test_element_types_are_onnx_type_names() -> None:
    names = set(TensorProto.DataType.keys())
    for op, support in SUPPORTED_OPS.items():
        assert support.dtypes and support.dtypes <= names, op


def test_supported_set_is_the_parsers_for_every_device_and_precision() -> None:
    for device, precision in [
        ("cuda", "fp32"),
        ("cuda:1", "bf16"),
        ("dla:0", "fp16"),
        ("dla:1", "int8"),
    ]:
        spec = CompileSpec.parse({"backend": "tensorrt", "device": device, "precision": precision})
        assert BACKEND.supported_onnx_ops(spec) == SUPPORTED_OP_NAMES


# ------------------------------------------------------------------------------------ model check
def test_clean_model_has_no_problems() -> None:
    assert check_model(mlp()[0]) == []


def test_opset_outside_the_documented_range_is_a_problem() -> None:
    model = mlp()[0]
    model.opset_import[0].version = MAX_OPSET + 1
    assert any(f"opset {MAX_OPSET + 1}" in p for p in check_model(model))


def test_custom_domain_node_needs_a_plugin() -> None:
    node = helper.make_node("FusedConv", ["x"], ["y"], domain="com.microsoft", name="fc")
    model = make_model([node], [("x", F, [1])], [("y", F, None)])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    (problem,) = check_model(model)
    assert "'fc' (FusedConv)" in problem and "plugin" in problem


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"mode": "cubic"}, "mode 'cubic'"),
        (
            {"coordinate_transformation_mode": "tf_crop_and_resize"},
            "coordinate_transformation_mode",
        ),
        ({"mode": "nearest", "nearest_mode": "banker"}, "nearest_mode"),
        ({"antialias": 1}, "antialias"),
        ({"keep_aspect_ratio_policy": "not_larger"}, "keep_aspect_ratio_policy"),
    ],
)
def test_resize_restrictions(attrs: dict[str, object], message: str) -> None:
    model = one_node("Resize", ["x", "", "c_scales"], **attrs)
    model.graph.initializer.append(
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "c_scales")
    )
    (problem,) = check_model(model)
    assert message in problem and "(Resize)" in problem


def test_resize_modes_tensorrt_supports_pass() -> None:
    for attrs in (
        {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
        {"mode": "nearest"},
    ):
        model = one_node("Resize", ["x", "", "c_scales"], **attrs)
        model.graph.initializer.append(
            numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "c_scales")
        )
        assert check_model(model) == []


def test_pooling_must_be_2d_or_3d_without_dilation() -> None:
    assert check_model(one_node("MaxPool", ["x"], kernel_shape=[2, 2])) == []
    (one_d,) = check_model(one_node("AveragePool", ["x"], kernel_shape=[2]))
    assert "2D or 3D" in one_d
    (dilated,) = check_model(one_node("MaxPool", ["x"], kernel_shape=[2, 2], dilations=[2, 2]))
    assert "dilations" in dilated


def test_maxpool_indices_output_only_fails_when_used() -> None:
    unused = one_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2])
    del unused.graph.output[1]
    assert check_model(unused) == []
    (problem,) = check_model(one_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2]))
    assert "Indices" in problem


def test_layer_norm_mean_output_is_unsupported_when_consumed() -> None:
    model = one_node("LayerNormalization", ["x", "c_scale"], ["y", "mean"])
    model.graph.initializer.append(numpy_helper.from_array(np.ones(8, np.float32), "c_scale"))
    (problem,) = check_model(model)
    assert "Mean/InvStdDev" in problem


def test_axes_must_be_constant_but_may_come_from_a_constant_node() -> None:
    computed = one_node("ReduceSum", ["x", "axes_in"])
    computed.graph.input[1].type.tensor_type.elem_type = TensorProto.INT64
    (problem,) = check_model(computed)
    assert "axes must be an initializer or Constant" in problem and "'axes_in'" in problem

    constant = helper.make_node("Constant", [], ["c_axes"], value_ints=[1])
    reduce = helper.make_node("ReduceSum", ["x", "c_axes"], ["y"])
    model = make_model([constant, reduce], [("x", F, [2, 3])], [("y", F, None)])
    assert check_model(model) == []


def test_topk_must_be_sorted_with_small_k() -> None:
    def topk(k: int, **attrs: object) -> onnx.ModelProto:
        model = one_node("TopK", ["x", "c_k"], ["y", "i"], **attrs)
        model.graph.initializer.append(numpy_helper.from_array(np.array([k], np.int64), "c_k"))
        return model

    assert check_model(topk(5)) == []
    assert "sorted must be 1" in check_model(topk(5, sorted=0))[0]
    assert f"less than {TOPK_MAX_K}" in check_model(topk(TOPK_MAX_K))[0]


def test_quantize_zero_point_must_be_zero() -> None:
    def quantize(zero: int) -> onnx.ModelProto:
        model = one_node("QuantizeLinear", ["x", "c_scale", "c_zero"])
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(0.1, np.float32), "c_scale"),
                numpy_helper.from_array(np.array(zero, np.int8), "c_zero"),
            ]
        )
        return model

    assert check_model(quantize(0)) == []
    assert "y_zero_point must be a constant zero" in check_model(quantize(3))[0]


def test_element_types_are_checked_where_known() -> None:
    int_matmul = make_model(
        [helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")],
        [("a", TensorProto.INT64, [2, 2]), ("b", TensorProto.INT64, [2, 2])],
        [("y", TensorProto.INT64, None)],
    )
    (problem,) = check_model(int_matmul)
    assert "'mm' (MatMul): element type INT64" in problem
    # The parser casts DOUBLE to FLOAT, so float64 graphs are accepted.
    double = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [("x", TensorProto.DOUBLE, [2])],
        [("y", TensorProto.DOUBLE, None)],
    )
    assert check_model(double) == []


def test_cast_to_a_type_tensorrt_lacks_is_a_problem() -> None:
    assert check_model(one_node("Cast", ["x"], to=TensorProto.FLOAT16)) == []
    (problem,) = check_model(one_node("Cast", ["x"], to=TensorProto.INT16))
    assert "casting to INT16" in problem


def test_unsupported_op_inside_a_subgraph_is_found() -> None:
    then_branch = helper.make_graph(
        [helper.make_node("Det", ["c"], ["t"])],
        "then",
        [],
        [helper.make_tensor_value_info("t", F, None)],
    )
    else_branch = helper.make_graph(
        [helper.make_node("ReduceSum", ["c"], ["e"], keepdims=0)],
        "else",
        [],
        [helper.make_tensor_value_info("e", F, None)],
    )
    node = helper.make_node(
        "If", ["cond"], ["y"], name="branch", then_branch=then_branch, else_branch=else_branch
    )
    model = make_model([node], [("cond", TensorProto.BOOL, []), ("c", F, [2, 2])], [("y", F, None)])
    # The branch reads the outer value "c"; its type is found through the enclosing graph.
    (problem,) = check_model(model)
    assert "'branch' (If) / then: " in problem and "no importer for Det" in problem


def test_converter_output_for_a_small_network_passes_the_check() -> None:
    import onnx_ir as ir

    from compiler.conversion import convert_graph
    from compiler.lowering import LoweringSettings, lower

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(8)
            self.fc = torch.nn.Linear(8, 4)
            self.norm = torch.nn.LayerNorm(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.bn(self.conv(x))).mean((2, 3))
            y = torch.nn.functional.gelu(self.norm(self.fc(y)))
            return y.reshape(-1, 2, 2).transpose(1, 2)

    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(
        Net().eval(), (torch.randn(2, 3, 8, 8),), dynamic_shapes=({0: batch},)
    )
    _, gm, _ = lower(program, LoweringSettings())
    proto = ir.to_proto(convert_graph(gm).model)
    assert {"Conv", "LayerNormalization", "Gelu"} <= {n.op_type for n in proto.graph.node}
    assert check_model(proto) == []


# ----------------------------------------------------------------------- without TensorRT installed
TRT_MISSING = importlib.util.find_spec("tensorrt") is None


@pytest.mark.skipif(not TRT_MISSING, reason="tensorrt is installed on this machine")
def test_backend_explains_that_tensorrt_is_not_installed() -> None:
    assert not BACKEND.available()
    assert BACKEND.version() is None
    reason = BACKEND.unavailable_reason()
    assert (
        "not installed" in reason and "pip install tensorrt-cu12" in reason and "JetPack" in reason
    )
    with pytest.raises(BackendUnavailableError) as info:
        get_backend("tensorrt")
    assert str(info.value) == reason


@pytest.mark.skipif(not TRT_MISSING, reason="tensorrt is installed on this machine")
def test_build_and_load_refuse_with_the_reason() -> None:
    spec = CompileSpec.parse({"backend": "tensorrt", "device": "cuda"})
    x = TensorMeta("x", "float32", ("s0", 8), min=(1, 8), max=(4, 8))
    y = TensorMeta("y", "float32", ("s0", 4))
    with pytest.raises(BackendUnavailableError, match="not installed"):
        BACKEND.build(mlp()[0].SerializeToString(), spec, [x], [y])
    meta = EngineMeta("0" * 64, "tensorrt", "10.1.0", (x,), (y,), "cuda:0")
    with pytest.raises(BackendUnavailableError, match="not installed"):
        BACKEND.load(b"plan", meta)


def test_spec_and_model_problems_are_reported_before_tensorrt_is_needed() -> None:
    spec = CompileSpec.parse({"backend": "tensorrt", "device": "cuda"})
    x = TensorMeta("x", "float32", (1, 3, 8, 8))
    with pytest.raises(SpecError, match="device"):
        BACKEND.build(b"", CompileSpec.parse({"backend": "tensorrt"}), [x], [x])
    with pytest.raises(
        BackendError, match="(?s)no importer for Unique.*torch_executed_ops"
    ) as info:
        BACKEND.build(one_node("Unique", ["x"]).SerializeToString(), spec, [x], [x])
    assert not isinstance(info.value, BackendUnavailableError)
    with pytest.raises(BackendError, match="does not parse"):
        BACKEND.build(b"\xff not onnx", spec, [x], [x])


# ------------------------------------------------------------------- real engines (TensorRT + GPU)
def requires_tensorrt(test: Callable[..., None]) -> Callable[..., None]:
    """Marks a test that builds a real engine: it runs where TensorRT imports and a GPU exists."""
    marks = [
        pytest.mark.tensorrt,
        pytest.mark.skipif(
            not BACKEND.available(),
            reason="TensorRT builder library is not installed (not served by the reachable "
            "package registries)",
        ),
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    ]
    for mark in marks:
        test = mark(test)
    return test


X = TensorMeta("x", "float32", ("s0", 8), min=(1, 8), opt=(4, 8), max=(16, 8))
Y = TensorMeta("y", "float32", ("s0", 4))


def reference(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum(x @ w + b, 0)


def build_mlp(
    precision: str = "fp32", **options: object
) -> tuple[EngineMeta, bytes, np.ndarray, np.ndarray]:
    """Builds the MLP; ``options`` are the spec's ``tensorrt:`` block (TensorRTOptions), the
    only way builder settings reach ``build``."""
    model, w, b = mlp()
    data: dict[str, object] = {"backend": "tensorrt", "device": "cuda", "precision": precision}
    if options:
        data["tensorrt"] = options
    spec = CompileSpec.parse(data)
    plan, extra = BACKEND.build(model.SerializeToString(), spec, [X], [Y])
    meta = EngineMeta("0" * 64, "tensorrt", BACKEND.version() or "", (X,), (Y,), "cuda:0", extra)
    return meta, plan, w, b


@requires_tensorrt
def test_engine_matches_numpy_at_two_batch_sizes() -> None:
    meta, plan, w, b = build_mlp()
    assert meta.extra["settings"]["profile"][0]["max"] == [16, 8]
    runner = BACKEND.load(plan, meta)
    for batch in (1, 16):
        x = torch.randn(batch, 8, device="cuda")
        (y,) = runner.run([x])
        assert y.device.type == "cuda" and y.shape == (batch, 4) and y.dtype == torch.float32
        np.testing.assert_allclose(
            y.cpu().numpy(), reference(x.cpu().numpy(), w, b), rtol=1e-5, atol=1e-5
        )


@requires_tensorrt
def test_batch_outside_the_profile_is_refused_with_the_range() -> None:
    meta, plan, _, _ = build_mlp()
    runner = BACKEND.load(plan, meta)
    with pytest.raises(InputMismatchError, match=r"size 17 on axis 0.*\[1, 16\]"):
        runner.run([torch.randn(17, 8, device="cuda")])


@requires_tensorrt
def test_engine_runs_on_the_current_torch_stream_and_takes_cpu_and_strided_inputs() -> None:
    meta, plan, w, b = build_mlp()
    runner = BACKEND.load(plan, meta)
    x = torch.randn(8, 6, dtype=torch.float64)  # float64 on the CPU, viewed with a stride
    x = torch.cat([x, x[:, :2]], dim=1)[:, :8].t().contiguous().t()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        (y,) = runner.run([x])
    stream.synchronize()
    np.testing.assert_allclose(
        y.cpu().numpy(), reference(x.float().numpy(), w, b), rtol=1e-5, atol=1e-5
    )


@requires_tensorrt
def test_fp16_engine_is_close_to_fp32_reference() -> None:
    meta, plan, w, b = build_mlp("fp16")
    assert meta.extra["settings"]["flags"] == ["FP16"]
    (y,) = BACKEND.load(plan, meta).run([x := torch.randn(4, 8, device="cuda")])
    np.testing.assert_allclose(
        y.cpu().numpy(), reference(x.cpu().numpy(), w, b), rtol=2e-2, atol=2e-2
    )


@requires_tensorrt
def test_timing_cache_is_written_and_reused(tmp_path: Path) -> None:
    cache = tmp_path / "timing.cache"
    build_mlp(timing_cache=str(cache), optimization_level=1, workspace_mb=256)
    first = cache.read_bytes()
    assert first
    build_mlp(timing_cache=str(cache), optimization_level=1, workspace_mb=256)
    assert cache.stat().st_size >= len(first)


@requires_tensorrt
def test_engine_loads_from_round_tripped_metadata() -> None:
    meta, plan, w, b = build_mlp()
    capability = torch.cuda.get_device_capability(0)
    assert meta.extra["compute_capability"] == list(capability)
    again = EngineMeta.from_dict(json.loads(json.dumps(meta.to_dict())))
    (y,) = BACKEND.load(plan, again).run([x := torch.randn(3, 8, device="cuda")])
    np.testing.assert_allclose(
        y.cpu().numpy(), reference(x.cpu().numpy(), w, b), rtol=1e-5, atol=1e-5
    )
    moved = EngineMeta.from_dict(
        {**again.to_dict(), "extra": {**again.extra, "compute_capability": [1, 0]}}
    )
    with pytest.raises(IncompatibleEngineError, match="GPU generation sm10 .* this GPU is sm"):
        BACKEND.load(plan, moved)


# ----------------------------------------------- the real-engine tests call what really exists
REAL_ENGINE_TESTS = [
    name for name, value in list(globals().items()) if getattr(value, "pytestmark", None) and
    any(m.name == "tensorrt" for m in value.pytestmark)
]  # fmt: skip


def _calls_in_real_engine_tests() -> list[tuple[str, ast.Call]]:
    """Every call of ``BACKEND.<method>``, ``build_mlp`` and ``runner.run`` in the real-engine
    tests and in ``build_mlp`` itself: they skip here, so nothing else would see them drift."""
    tree = ast.parse(Path(__file__).read_text())
    bodies = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name in {*REAL_ENGINE_TESTS, "build_mlp"}
    ]
    calls = []
    for body in bodies:
        for node in ast.walk(body):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id == "build_mlp":
                calls.append(("build_mlp", node))
            elif isinstance(func, ast.Attribute) and (
                (isinstance(func.value, ast.Name) and func.value.id == "BACKEND")
                or func.attr == "run"
            ):
                calls.append((func.attr, node))
    return calls


def test_every_real_engine_test_is_found() -> None:
    assert len(REAL_ENGINE_TESTS) == 6


def test_real_engine_tests_call_the_backend_with_the_signatures_it_has() -> None:
    """Binds the arguments of every call the skipped tests make to the real signatures, and
    the builder options they pass to the spec's ``tensorrt:`` block."""
    signatures = {
        "build": inspect.signature(TensorRTBackend.build),
        "load": inspect.signature(TensorRTBackend.load),
        "version": inspect.signature(TensorRTBackend.version),
        "run": inspect.signature(TensorRTRunner.run),
        "build_mlp": inspect.signature(build_mlp),
    }
    calls = _calls_in_real_engine_tests()
    assert {name for name, _ in calls} >= {"build", "load", "run", "build_mlp"}
    for name, call in calls:
        where = f"line {call.lineno}: {ast.unparse(call)}"
        assert all(k.arg is not None for k in call.keywords), f"{where}: ** hides its keywords"
        assert not any(isinstance(a, ast.Starred) for a in call.args), f"{where}: * hides them"
        positional = [object()] * len(call.args)
        keywords = {k.arg: object() for k in call.keywords if k.arg is not None}
        self_arg = [] if name == "build_mlp" else [object()]
        try:
            signatures[name].bind(*self_arg, *positional, **keywords)
        except TypeError as exc:
            pytest.fail(f"{where} does not fit {name}{signatures[name]}: {exc}")
        if name == "build_mlp":
            unknown = set(keywords) - set(TensorRTOptions.model_fields)
            assert not unknown, f"{where}: {sorted(unknown)} are not tensorrt: options"


def test_real_engine_builds_run_through_the_standin(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``build_mlp`` as the real-engine tests call it, with the stand-in for TensorRT: the spec
    it makes is valid and our build and load accept it."""
    from tests.compiler.backends.tensorrt_standin import TensorRTStandIn
    from tests.compiler.backends.test_tensorrt_api_calls import install

    trt = install(monkeypatch, TensorRTStandIn())
    for precision, options in [
        ("fp32", {}),
        ("fp16", {}),
        ("fp32", {"timing_cache": str(tmp_path / "timing.cache"), "optimization_level": 1, "workspace_mb": 256}),
    ]:  # fmt: skip
        meta, plan, _, _ = build_mlp(precision, **options)
        again = EngineMeta.from_dict(json.loads(json.dumps(meta.to_dict())))
        BACKEND.load(plan, again).run([torch.randn(3, 8)])
    assert (tmp_path / "timing.cache").read_bytes()
    assert trt.errors == []
