"""Our TensorRT backend against ``tensorrt_standin``: the calls it makes to TensorRT's documented
Python API, their arguments and their order, on every machine. Nothing here runs an engine or
checks a number an engine computed; the real-engine tests in ``test_tensorrt.py`` do that where
TensorRT and a GPU exist."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from compiler.backends import tensorrt as trt_backend
from compiler.backends.base import EngineMeta, TensorMeta
from compiler.backends.tensorrt import TensorRTBackend
from compiler.errors import BackendError, InputMismatchError
from compiler.identity import IncompatibleEngineError
from compiler.spec import CompileSpec
from tests.compiler.backends.tensorrt_standin import (
    ALIGNMENT,
    MAGIC,
    TIMING_CACHE_MAGIC,
    Call,
    TensorRTStandIn,
)

BACKEND = TensorRTBackend()
F = TensorProto.FLOAT
X = TensorMeta("x", "float32", ("s0", 8), min=(1, 8), opt=(4, 8), max=(16, 8))
Y = TensorMeta("y", "float32", ("s0", 4))


def mlp(batch: int | str = "batch") -> bytes:
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["z"]),
        helper.make_node("Relu", ["z"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", F, [batch, 8])],
        [helper.make_tensor_value_info("y", F, [batch, 4])],
        initializer=[
            numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    return model.SerializeToString()


def install(monkeypatch: pytest.MonkeyPatch, standin: TensorRTStandIn) -> TensorRTStandIn:
    """Hands the stand-in to the backend for one test: as its ``tensorrt`` module and, for the
    CUDA facts and handles, the stand-in's CPU platform."""
    monkeypatch.setattr(trt_backend, "_load_tensorrt", lambda: (standin, None))
    monkeypatch.setattr(trt_backend, "CUDA", standin.platform)
    return standin


@pytest.fixture
def trt(monkeypatch: pytest.MonkeyPatch) -> Iterator[TensorRTStandIn]:
    standin = install(monkeypatch, TensorRTStandIn())
    yield standin
    assert standin.errors == [], "TensorRT reported errors on calls our code made"


def spec(device: str = "cuda", precision: str = "fp32", **tensorrt: object) -> CompileSpec:
    data: dict[str, Any] = {"backend": "tensorrt", "device": device, "precision": precision}
    if tensorrt:
        data["tensorrt"] = tensorrt
    return CompileSpec.parse(data)


def build(
    compile_spec: CompileSpec | None = None, x: TensorMeta = X, model: bytes | None = None
) -> tuple[bytes, EngineMeta]:
    plan, extra = BACKEND.build(model or mlp(), compile_spec or spec(), [x], [Y])
    meta = EngineMeta("0" * 64, "tensorrt", BACKEND.version() or "", (x,), (Y,), "cuda:0", extra)
    return plan, meta


def args(standin: TensorRTStandIn, api: str) -> list[dict[str, Any]]:
    return [c.args for c in standin.called(api)]


def flag_names(standin: TensorRTStandIn, api: str) -> list[str]:
    return [a["flag"].name for a in args(standin, api)]


# ------------------------------------------------------------------------------------- building
def test_static_build_makes_the_documented_calls_in_order(trt: TensorRTStandIn) -> None:
    static = TensorMeta("x", "float32", (2, 8))
    plan, meta = build(x=static, model=mlp(batch=2))
    assert trt.names() == [
        "Builder.__init__",
        "Builder.create_network",
        "OnnxParser.__init__",
        "OnnxParser.parse",
        "Builder.create_builder_config",
        "IBuilderConfig.clear_flag",
        "IBuilderConfig.builder_optimization_level",
        "Builder.create_optimization_profile",
        "INetworkDefinition.get_input",
        "IOptimizationProfile.set_shape",
        "IBuilderConfig.add_optimization_profile",
        "Builder.build_serialized_network",
    ]
    assert args(trt, "Builder.create_network") == [{"flags": 0}]
    assert args(trt, "IOptimizationProfile.set_shape") == [
        {"input": "x", "min": (2, 8), "opt": (2, 8), "max": (2, 8)}
    ]
    description = json.loads(plan)
    assert description["standin"] == MAGIC  # never mistaken for a TensorRT plan
    assert description["config"]["flags"] == []  # TF32 cleared: fp32 means fp32
    assert description["config"]["builder_optimization_level"] == 3
    assert meta.extra["tensorrt_version"] == trt.__version__
    assert meta.extra["compute_capability"] == [9, 0] and meta.extra["device_class"] == "sm90"


def test_dynamic_input_profile_is_the_specs_min_opt_max(trt: TensorRTStandIn) -> None:
    plan, _ = build()
    assert args(trt, "IOptimizationProfile.set_shape") == [
        {"input": "x", "min": (1, 8), "opt": (4, 8), "max": (16, 8)}
    ]
    (x,) = json.loads(plan)["inputs"]
    assert x["shape"] == [-1, 8] and x["profile"] == [[1, 8], [4, 8], [16, 8]]


@pytest.mark.parametrize(
    ("precision", "flags"),
    [("fp32", []), ("fp16", ["FP16"]), ("bf16", ["BF16"]), ("int8", ["INT8", "FP16"])],
)
def test_precision_sets_builder_flags(
    trt: TensorRTStandIn, precision: str, flags: list[str]
) -> None:
    build(spec(precision=precision))
    assert flag_names(trt, "IBuilderConfig.set_flag") == flags
    assert flag_names(trt, "IBuilderConfig.clear_flag") == ["TF32"]


def test_tf32_option_leaves_tensorrts_default(trt: TensorRTStandIn) -> None:
    plan, _ = build(spec(tf32=True))
    assert trt.called("IBuilderConfig.clear_flag") == []
    assert json.loads(plan)["config"]["flags"] == ["TF32"]


def test_workspace_and_optimization_level(trt: TensorRTStandIn) -> None:
    build(spec(workspace_mb=256, optimization_level=1))
    (limit,) = args(trt, "IBuilderConfig.set_memory_pool_limit")
    assert limit["pool"] is trt.MemoryPoolType.WORKSPACE and limit["pool_size"] == 256 << 20
    assert args(trt, "IBuilderConfig.builder_optimization_level") == [{"level": 1}]


@pytest.mark.parametrize(
    ("option", "member"),
    [("ampere_plus", "AMPERE_PLUS"), ("same_compute_capability", "SAME_COMPUTE_CAPABILITY")],
)
def test_hardware_compatibility_level(trt: TensorRTStandIn, option: str, member: str) -> None:
    build(spec(hardware_compatibility=option))
    (level,) = args(trt, "IBuilderConfig.hardware_compatibility_level")
    assert level["level"] is trt.HardwareCompatibilityLevel[member]


def test_ampere_plus_build_on_an_older_gpu_fails_with_tensorrts_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    turing = install(monkeypatch, TensorRTStandIn(capability=(7, 5)))
    with turing.expect_errors() as errors, pytest.raises(BackendError, match="Ampere or newer"):
        build(spec(hardware_compatibility="ampere_plus"))
    assert errors == ["AMPERE_PLUS engines can only be built on Ampere or newer GPUs"]


def test_dla_build_targets_the_core_with_gpu_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    jetson = install(monkeypatch, TensorRTStandIn(capability=(8, 7), num_dla_cores=2))
    plan, meta = build(spec(device="dla:1", precision="fp16"))
    assert args(jetson, "IBuilderConfig.default_device_type") == [
        {"device_type": jetson.DeviceType.DLA}
    ]
    assert args(jetson, "IBuilderConfig.DLA_core") == [{"core": 1}]
    assert flag_names(jetson, "IBuilderConfig.set_flag") == ["FP16", "GPU_FALLBACK"]
    assert meta.extra["device_class"] == "orin"
    runner = BACKEND.load(plan, meta)
    assert args(jetson, "Runtime.DLA_core") == [{"core": 1}]
    names = jetson.names()
    assert names.index("Runtime.DLA_core") < names.index("Runtime.deserialize_cuda_engine")
    runner.run([torch.zeros(2, 8)])
    assert jetson.errors == []


def test_dla_core_that_does_not_exist_is_refused_before_building(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jetson = install(monkeypatch, TensorRTStandIn(capability=(8, 7), num_dla_cores=1))
    with pytest.raises(BackendError, match="dla:1 does not exist.*1 DLA cores"):
        build(spec(device="dla:1", precision="fp16"))
    assert jetson.called("Builder.build_serialized_network") == []


def test_timing_cache_is_read_given_to_the_builder_and_written_back(
    trt: TensorRTStandIn, tmp_path: Path
) -> None:
    cache = tmp_path / "trt.cache"
    build(spec(timing_cache=str(cache)))
    assert args(trt, "IBuilderConfig.create_timing_cache")[0]["serialized_timing_cache"] == b""
    (given,) = args(trt, "IBuilderConfig.set_timing_cache")
    assert given["ignore_mismatch"] is False
    names = trt.names()
    assert names.index("IBuilderConfig.set_timing_cache") < names.index(
        "Builder.build_serialized_network"
    )
    assert names.index("Builder.build_serialized_network") < names.index(
        "IBuilderConfig.get_timing_cache"
    )
    first = cache.read_bytes()
    assert first.startswith(TIMING_CACHE_MAGIC)
    build(spec(timing_cache=str(cache)))
    assert args(trt, "IBuilderConfig.create_timing_cache")[1]["serialized_timing_cache"] == first


def test_version_compatible_plan_is_deserialized_with_host_code_allowed(
    trt: TensorRTStandIn,
) -> None:
    plan, meta = build(spec(version_compatible=True))
    assert flag_names(trt, "IBuilderConfig.set_flag") == ["VERSION_COMPATIBLE"]
    BACKEND.load(plan, meta)
    names = trt.names()
    assert args(trt, "Runtime.engine_host_code_allowed") == [{"allowed": True}]
    assert names.index("Runtime.engine_host_code_allowed") < names.index(
        "Runtime.deserialize_cuda_engine"
    )


def test_tensorrt_11_without_weak_typing_flags_is_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install(monkeypatch, TensorRTStandIn("11.1.0"))
    with pytest.raises(BackendError, match="TensorRT 11.1.0.* no builder flag FP16"):
        build(spec(precision="fp16"))
    build(spec())  # fp32 needs no precision flag


def test_converted_torch_model_builds_and_runs_with_every_io_tensor_bound(
    trt: TensorRTStandIn,
) -> None:
    import onnx_ir as ir

    from compiler.conversion import convert_graph
    from compiler.lowering import LoweringSettings, lower

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(8, 4)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.relu(self.fc(x)) + y, x.sum(1)

    batch = torch.export.Dim("batch", min=1, max=16)
    program = torch.export.export(
        Net().eval(),
        (torch.randn(2, 8), torch.randn(2, 4)),
        dynamic_shapes=({0: batch}, {0: batch}),
    )
    _, gm, _ = lower(program, LoweringSettings())
    converted = convert_graph(gm)
    model = ir.to_proto(converted.model)
    inputs = [
        TensorMeta(converted.input_names[0], "float32", ("s0", 8), (1, 8), (4, 8), (16, 8)),
        TensorMeta(converted.input_names[1], "float32", ("s0", 4), (1, 4), (4, 4), (16, 4)),
    ]
    outputs = [
        TensorMeta(converted.output_names[0], "float32", ("s0", 4)),
        TensorMeta(converted.output_names[1], "float32", ("s0",)),
    ]
    plan, extra = BACKEND.build(model.SerializeToString(), spec(), inputs, outputs)
    meta = EngineMeta("0" * 64, "tensorrt", "", tuple(inputs), tuple(outputs), "cuda:0", extra)
    first, second = BACKEND.load(plan, meta).run([torch.randn(3, 8), torch.randn(3, 4)])
    assert first.shape == (3, 4) and second.shape == (3,)
    (execution,) = trt.called("IExecutionContext.execute_async_v3")[0].obj.executions
    assert set(execution.addresses) == {t.name for t in inputs + outputs}
    assert execution.shapes[outputs[1].name] == (3,)


# -------------------------------------------------------------------------------------- running
def context_calls(standin: TensorRTStandIn) -> list[Call]:
    return [c for c in standin.calls if c.api.startswith("IExecutionContext.")]


def test_runner_sets_shapes_and_addresses_then_enqueues_on_the_current_stream(
    trt: TensorRTStandIn,
) -> None:
    plan, meta = build()
    runner = BACKEND.load(plan, meta)
    trt.platform.stream = 0xC0FFEE
    x = torch.randn(3, 8)
    (y,) = runner.run([x])
    calls = context_calls(trt)
    assert [(c.api.split(".")[1], c.args.get("name")) for c in calls] == [
        ("set_input_shape", "x"),
        ("set_tensor_address", "x"),
        ("get_tensor_shape", "y"),
        ("set_tensor_address", "y"),
        ("execute_async_v3", None),
    ]
    assert calls[0].args["shape"] == (3, 8)
    assert calls[-1].args == {"stream_handle": 0xC0FFEE}
    (execution,) = calls[-1].obj.executions
    assert execution.shapes == {"x": (3, 8), "y": (3, 4)}
    assert y.shape == (3, 4) and y.dtype == torch.float32
    assert execution.addresses["y"] == y.data_ptr()
    assert all(address % ALIGNMENT == 0 for address in execution.addresses.values())

    trt.platform.stream = 0xBEEF  # another current stream: the next call is enqueued there
    runner.run([x])
    assert trt.called("IExecutionContext.execute_async_v3")[-1].args == {"stream_handle": 0xBEEF}


def test_runner_converts_strided_and_float64_inputs_before_binding(trt: TensorRTStandIn) -> None:
    plan, meta = build()
    runner = BACKEND.load(plan, meta)
    x = torch.randn(8, 6, dtype=torch.float64)
    x = torch.cat([x, x[:, :2]], dim=1)[:, :8].t().contiguous().t()
    runner.run([x])
    (address,) = [c.args["memory"] for c in trt.called("IExecutionContext.set_tensor_address")][:1]
    assert address != x.data_ptr() and address % ALIGNMENT == 0


def test_input_outside_the_profile_is_refused_with_the_range(trt: TensorRTStandIn) -> None:
    plan, meta = build()
    runner = BACKEND.load(plan, meta)
    with (
        trt.expect_errors() as errors,
        pytest.raises(InputMismatchError, match=r"size 17 on axis 0.*\[1, 16\]"),
    ):
        runner.run([torch.randn(17, 8)])
    assert errors and "outside the profile" in errors[0]
    assert trt.called("IExecutionContext.execute_async_v3") == []


def test_empty_input_is_bound_to_an_aligned_placeholder(trt: TensorRTStandIn) -> None:
    plan, meta = build(x=TensorMeta("x", "float32", ("s0", 8), min=(0, 8), max=(4, 8)))
    (y,) = BACKEND.load(plan, meta).run([torch.randn(0, 8)])
    assert y.shape == (0, 4)
    addresses = [c.args["memory"] for c in trt.called("IExecutionContext.set_tensor_address")]
    assert all(a and a % ALIGNMENT == 0 for a in addresses)


# ---------------------------------------------------------------------------- compatibility
def test_plan_from_another_gpu_generation_is_refused_before_deserializing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install(monkeypatch, TensorRTStandIn(capability=(8, 6)))
    plan, meta = build()
    here = install(monkeypatch, TensorRTStandIn(capability=(9, 0)))
    with pytest.raises(IncompatibleEngineError, match="sm86.*sm90"):
        BACKEND.load(plan, meta)
    assert here.called("Runtime.deserialize_cuda_engine") == []


def test_plan_from_another_patch_release_is_refused_unless_version_compatible(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install(monkeypatch, TensorRTStandIn("10.15.1"))
    plan, meta = build()
    compatible_plan, compatible_meta = build(spec(version_compatible=True))
    here = install(monkeypatch, TensorRTStandIn("10.16.0"))
    with pytest.raises(IncompatibleEngineError, match="TensorRT 10.15"):
        BACKEND.load(plan, meta)
    BACKEND.load(compatible_plan, compatible_meta)
    assert here.errors == []


# --------------------------------------------------------------- the stand-in is strict itself
def test_standin_rejects_what_tensorrt_rejects() -> None:
    trt = TensorRTStandIn()

    class Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            self.messages.append(msg)

    logger = Logger()
    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    with pytest.raises(TypeError):
        config.set_flag(trt.MemoryPoolType.WORKSPACE)  # the wrong enum
    with pytest.raises(TypeError):
        config.set_flag(0)  # an int is not a BuilderFlag
    with pytest.raises(TypeError):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, size=1)  # undocumented name
    profile = builder.create_optimization_profile()
    with pytest.raises(RuntimeError):
        profile.set_shape("x", (1, 8), (4, 8), (2, 8))  # opt > max
    with pytest.raises(RuntimeError):
        profile.set_shape("x", (1, 8), (4,), (16, 8))  # ranks differ
    with pytest.raises(TypeError):
        trt.Builder(object())
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(mlp())
    wrong_rank = builder.create_optimization_profile()
    wrong_rank.set_shape("x", (1,), (2,), (4,))
    config.add_optimization_profile(wrong_rank)
    assert builder.build_serialized_network(network, config) is None
    assert "rank 1" in trt.errors[-1] and "rank 1" in logger.messages[-1]

    runtime = trt.Runtime(logger)
    assert runtime.deserialize_cuda_engine(b"\x00 a real plan, or anything else") is None
    config = builder.create_builder_config()
    good = builder.create_optimization_profile()
    good.set_shape("x", (1, 8), (4, 8), (16, 8))
    config.add_optimization_profile(good)
    config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None
    assert runtime.deserialize_cuda_engine(bytes(plan)) is None  # host code not allowed
    runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(bytes(plan))
    context = engine.create_execution_context()
    assert not context.set_input_shape("y", (2, 4))  # an output
    assert not context.set_input_shape("x", (32, 8))  # outside the profile
    assert context.set_input_shape("x", (2, 8))
    assert not context.set_tensor_address("nope", 4096)
    assert not context.set_tensor_address("x", 4096 + 8)  # misaligned
    assert context.set_tensor_address("x", 4096)
    assert not context.execute_async_v3(0)  # no address for y
    with pytest.raises(TypeError):
        context.execute_async_v3(stream=0)


def test_standin_is_never_the_tensorrt_module() -> None:
    import importlib.util

    TensorRTStandIn()
    assert "tensorrt" not in sys.modules or sys.modules["tensorrt"].__name__ == "tensorrt"
    assert importlib.util.find_spec("tensorrt") is None or "standin" not in str(
        importlib.util.find_spec("tensorrt")
    )
    assert TensorRTStandIn().__version__.endswith("+standin")


@pytest.mark.parametrize(
    ("standin", "reason"),
    [
        (TensorRTStandIn("10.16.0"), None),
        (TensorRTStandIn("9.3.0"), "needs TensorRT 10+"),
    ],
)
def test_import_checks_accept_the_documented_module_shape(
    monkeypatch: pytest.MonkeyPatch, standin: TensorRTStandIn, reason: str | None
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", standin)  # undone when this test ends
    module, why = trt_backend._load_tensorrt.__wrapped__()
    if reason is None:
        assert module is standin and why is None
    else:
        assert module is None and why is not None and reason in why


def test_onnx_helpers_model_is_valid() -> None:
    onnx.checker.check_model(onnx.load_model_from_string(mlp()))
