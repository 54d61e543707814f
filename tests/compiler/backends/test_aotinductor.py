"""The aotinductor backend where CI runs (CPU only): spec checks, per-node operator support from
Inductor's own tables, partitioning rules shared with every backend, and the FX-consuming path
end to end on one small model (Inductor's C++ build takes tens of seconds on two cores)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import compiler
from compiler.backends import BACKENDS, get_backend
from compiler.backends.aotinductor import (
    AOTInductorBackend,
    inductor_configs,
    inductor_node_support,
    tf32_enabled,
)
from compiler.errors import BackendError, InputMismatchError
from compiler.identity import DeviceIdentity, compatibility_problems


def spec(**keys: object) -> compiler.CompileSpec:
    return compiler.CompileSpec.parse({"backend": "aotinductor", **keys})


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x)).mean((2, 3))
        return self.head(y).softmax(-1)


def test_registry_names_the_form_each_backend_consumes() -> None:
    assert BACKENDS["aotinductor"].consumes == "fx"
    assert BACKENDS["onnxruntime"].consumes == "onnx"
    assert BACKENDS["tensorrt"].consumes == "onnx"
    # the spec and the CLI read their choices from the registry
    with pytest.raises(compiler.SpecError, match="choose one of onnxruntime, tensorrt, aotinductor"):
        compiler.CompileSpec.parse({"backend": "inductor"})


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"precision": "int8"}, "int8 is not built by the aotinductor backend"),
        ({"precision": "fp16"}, "needs device cuda"),
        ({"device": "dla:0"}, "use the tensorrt backend for DLA"),
        ({"aotinductor": {"cuda_graphs": True}}, "cuda_graphs needs device cuda"),
    ],
)
def test_specs_the_backend_cannot_build_are_refused_before_compiling(keys: dict[str, object], message: str) -> None:
    with pytest.raises(BackendError, match=message):
        get_backend("aotinductor", require_available=False).check_spec(spec(**keys))


def test_backend_block_keys_are_checked_with_their_path() -> None:
    with pytest.raises(compiler.SpecError, match=r"aotinductor\.cuda_graph: unknown key"):
        spec(aotinductor={"cuda_graph": True})
    assert spec(device="cuda", aotinductor={"tf32": True}).options("aotinductor").tf32 is True  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("keys", "channels_last"),
    [
        ({"device": "cuda"}, False),  # strict fp32: cuDNN's NCHW kernels
        ({"device": "cuda", "aotinductor": {"tf32": True}}, True),
        ({"device": "cuda", "precision": "fp16"}, True),
        ({"device": "cuda", "precision": "bf16"}, True),
        ({"device": "cuda", "precision": "fp16", "aotinductor": {"channels_last": False}}, False),
        ({"device": "cuda", "aotinductor": {"channels_last": True}}, True),
        ({"device": "cpu"}, None),  # Inductor's own choice on the CPU
        ({"device": "cuda", "precision": "fp16", "aotinductor": {"tf32": False}}, True),
    ],
)
def test_convolution_layout_follows_the_arithmetic_unless_the_spec_says(keys: dict[str, object], channels_last: bool | None) -> None:
    configs = inductor_configs(spec(**keys))
    assert configs.get("layout_optimization") is channels_last
    assert "max_autotune" not in configs
    assert inductor_configs(spec(aotinductor={"max_autotune": True}))["max_autotune"] is True


def test_tf32_is_off_in_fp32_engines_and_on_in_reduced_precision_ones_unless_the_spec_says() -> None:
    assert tf32_enabled(spec(device="cuda")) is False
    assert tf32_enabled(spec(device="cuda", aotinductor={"tf32": True})) is True
    assert tf32_enabled(spec(device="cuda", precision="fp16")) is True
    assert tf32_enabled(spec(device="cuda", precision="bf16")) is True
    assert tf32_enabled(spec(device="cuda", precision="fp16", aotinductor={"tf32": False})) is False


def test_engines_for_cuda_are_tied_to_a_device_class_and_cpu_engines_are_not() -> None:
    backend = get_backend("aotinductor", require_available=False)
    assert backend.device_tied("cuda:0")
    assert not backend.device_tied("cpu")


def _call_node(fn: object, *args: object) -> torch.fx.Node:
    graph = torch.fx.Graph()
    node = graph.call_function(fn, args)  # type: ignore[arg-type]
    return node


def test_operator_support_is_decided_per_node_from_inductors_tables() -> None:
    # a lowering
    assert inductor_node_support(_call_node(torch.ops.aten.add.Tensor), "cuda") is None
    # seeded random ops would never match eager PyTorch
    reason = inductor_node_support(_call_node(torch.ops.aten.rand.default, [2]), "cuda")
    assert reason is not None and "random" in reason
    # ... but attention and dropout tagged seeded draw nothing without dropout or training
    q = torch.ops.aten.scaled_dot_product_attention.default
    assert inductor_node_support(_call_node(q, None, None, None), "cuda") is None
    assert inductor_node_support(_call_node(q, None, None, None, None, 0.0), "cuda") is None
    assert "random" in (inductor_node_support(_call_node(q, None, None, None, None, 0.1), "cuda") or "")
    dropout = torch.ops.aten.native_dropout.default
    assert inductor_node_support(_call_node(dropout, None, 0.5, False), "cuda") is None
    assert "random" in (inductor_node_support(_call_node(dropout, None, 0.5, True), "cuda") or "")
    # an op with neither a lowering nor a kernel for the device cannot fall back either
    reason = inductor_node_support(_call_node(torch.ops.aten.cudnn_grid_sampler.default), "cpu")
    assert reason is not None and "no CPU kernel" in reason
    assert inductor_node_support(_call_node(torch.ops.aten.cudnn_grid_sampler.default), "cuda") is None
    # Python callables are not ATen operators
    assert inductor_node_support(_call_node(print), "cpu") == "not an ATen operator"


def test_user_fallback_choices_apply_to_the_fx_backend() -> None:
    program = torch.export.export(SmallNet().eval(), (torch.randn(2, 3, 8, 8),))
    report = compiler.plan(program, spec(partitioning={"min_block_size": 1, "torch_executed_ops": ["aten.relu.default"]}))
    assert report.fallback_ops == {"aten.relu.default": 1}
    assert report.fallback_reasons["aten.relu.default"] == "listed in torch_executed_ops"
    assert [p["accelerated"] for p in report.partitions].count(True) == 2
    with pytest.raises(compiler.UnsupportedOperatorError, match="aten.relu.default"):
        compiler.plan(
            program,
            spec(partitioning={"torch_executed_ops": ["aten.relu.default"], "require_full_compilation": True}),
        )


@pytest.fixture(scope="module")
def compiled_small_net(
    tmp_path_factory: pytest.TempPathFactory, inductor_without_precompiled_headers: None
) -> tuple[compiler.CompiledModule, nn.Module, object]:
    if not AOTInductorBackend().available():
        pytest.skip(AOTInductorBackend().unavailable_reason())
    model = SmallNet().eval()
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(model, (torch.randn(2, 3, 8, 8),), dynamic_shapes=({0: batch},))
    compiled = compiler.compile(program, spec(partitioning={"min_block_size": 1}))
    path = tmp_path_factory.mktemp("aoti") / "small.engine.pt2"
    compiler.save(compiled, path)
    return compiled, model, path


def test_fx_partition_builds_an_inductor_package_that_matches_eager(compiled_small_net: tuple) -> None:
    compiled, model, _ = compiled_small_net
    assert [p["accelerated"] for p in compiled.report.partitions] == [True]
    (meta, engine), = compiled.engines.values()
    assert meta.backend == "aotinductor" and meta.backend_version == torch.__version__
    assert engine[:2] == b"PK"  # the package itself (a zip) is the engine
    for batch in (1, 5, 8):
        x = torch.randn(batch, 3, 8, 8)
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-6)


def test_call_outside_the_dynamic_range_fails_with_the_named_error(compiled_small_net: tuple) -> None:
    compiled, _, _ = compiled_small_net
    with pytest.raises(InputMismatchError, match="outside the compiled range 1..8"):
        compiled(torch.randn(9, 3, 8, 8))


def test_saved_package_travels_in_our_pt2_and_loads(compiled_small_net: tuple) -> None:
    compiled, model, path = compiled_small_net
    loaded = compiler.load(path)
    x = torch.randn(3, 3, 8, 8)
    torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-6)


def test_cpu_package_requires_its_architecture_and_pytorch_release(compiled_small_net: tuple) -> None:
    compiled, _, _ = compiled_small_net
    (meta, _), = compiled.engines.values()
    backend = get_backend("aotinductor")
    needs = backend.requirements(meta, DeviceIdentity(arch="x86_64", torch_version=torch.__version__))
    assert compatibility_problems(needs, DeviceIdentity(arch="x86_64", torch_version=torch.__version__)) == []
    problems = compatibility_problems(needs, DeviceIdentity(arch="aarch64", torch_version="2.8.0"))
    assert any("built for x86_64" in p for p in problems)
    assert any("needs PyTorch" in p for p in problems)


def test_a_cuda_program_is_moved_to_its_device_without_touching_the_callers_weights() -> None:
    # "meta" stands in for the GPU here: the same moves, checkable without one
    from compiler.api import move_graph_to_device
    from compiler.lowering import LoweringSettings, lower

    class WithFactory(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002  (FX renames this name)
            return (self.linear(input) + torch.ones(4)).view(4, 2)

    model = WithFactory().eval()
    program = torch.export.export(model, (torch.randn(2, 4),))
    _, gm, _ = lower(program, LoweringSettings(spec()))
    assert any(n.target is torch.ops.aten.view.default for n in gm.graph.nodes)
    move_graph_to_device(gm, torch.device("meta"))
    # views traced on the CPU's strides become reshapes: CUDA kernels may lay values out otherwise
    targets = {n.target for n in gm.graph.nodes}
    assert torch.ops.aten.view.default not in targets and torch.ops.aten.reshape.default in targets
    assert {t.device.type for t in [*gm.parameters(), *gm.buffers()]} == {"meta"}
    devices = [n.kwargs["device"] for n in gm.graph.nodes if "device" in n.kwargs]
    assert devices and all(torch.device(d).type == "meta" for d in devices)
    for node in gm.graph.nodes:
        if isinstance(node.meta.get("val"), torch.Tensor):
            assert node.meta["val"].device.type == "meta"
    assert model.linear.weight.device.type == "cpu"
    assert all(t.device.type == "cpu" for t in program.state_dict.values())


def test_ops_command_says_the_fx_backend_decides_per_node() -> None:
    import json

    from click.testing import CliRunner

    from orchestrator.cli.ops import ops_command

    result = CliRunner().invoke(ops_command, ["--backend", "aotinductor", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["consumes"] == "fx"


def test_dry_run_with_the_fx_backend_prints_the_partition_table(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from orchestrator.cli.compile import compile_command

    path = tmp_path / "small.pt2"
    torch.export.save(torch.export.export(SmallNet().eval(), (torch.randn(2, 3, 8, 8),)), path)
    result = CliRunner().invoke(compile_command, [str(path), "--dry-run", "--backend", "aotinductor", "--json"])
    assert result.exit_code == 0, result.output
    assert '"backend": "aotinductor"' in result.output


class Overflowing(nn.Module):
    """A Gram matrix of large activations: its entries overflow fp16 (and turn into inf/NaN)
    although the model's output is small; computed in fp32, the chain is exact enough."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = self.lin(x) * 1000.0
        gram = big @ big.transpose(-1, -2)
        return gram.mean(-1).abs().sqrt() / 1000.0


def _aten_graph(model: nn.Module, x: torch.Tensor) -> torch.fx.GraphModule:
    gm = torch.export.export(model, (x,)).module()
    assert isinstance(gm, torch.fx.GraphModule)
    return gm


def test_node_sensitivity_measures_each_nodes_own_error_in_the_reduced_type() -> None:
    from compiler.backends.aotinductor import node_sensitivity

    torch.manual_seed(0)
    model, x = Overflowing().eval(), torch.randn(4, 8)
    ranked = dict(node_sensitivity(_aten_graph(model, x), [[x], [x * 0.5]], torch.float16))
    # the Gram matrix overflows fp16, and so do the values that follow it until the square
    # root; the first layers only round
    assert {name for name, score in ranked.items() if score == 1e30} == {"matmul", "mean", "abs_1", "sqrt"}
    assert ranked["linear"] < 1e-5 and ranked["mul"] < 1e-5
    assert list(ranked.values()) == sorted(ranked.values(), reverse=True)


def test_nodes_kept_in_fp32_compute_in_fp32_inside_a_reduced_precision_engine() -> None:
    # the engine module as AOTInductor exports it, run eagerly on the CPU
    from compiler.backends.aotinductor import _EngineModule

    torch.manual_seed(0)
    model, x = Overflowing().eval(), torch.randn(4, 8)
    reference = model(x)
    plain = _EngineModule(_aten_graph(model, x), torch.float16, [torch.float32])
    assert not torch.isfinite(plain(x)[0]).all()  # fp16 throughout overflows
    chain = ["matmul", "mean", "abs_1", "sqrt"]
    kept = _EngineModule(_aten_graph(model, x), torch.float16, [torch.float32], keep=[*chain, "nope"])
    assert kept.kept == set(chain)  # names not in the graph are ignored
    (out,) = kept(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference, rtol=2e-3, atol=1e-3)
    graph = kept.graph_module.graph
    nodes = {n.name: n for n in graph.nodes}
    # cast up into the chain, down out of it, and never inside it
    assert [a.kwargs["dtype"] for a in nodes["matmul"].all_input_nodes] == [torch.float32, torch.float32]
    assert [a.name for n in chain[1:] for a in nodes[n].all_input_nodes] == chain[:-1]
    (down,) = nodes["div"].all_input_nodes
    assert down.target is torch.ops.aten._to_copy.default and down.kwargs["dtype"] == torch.float16
    # the layers before the chain still compute in fp16
    assert kept.graph_module.get_buffer("lin.weight").dtype == torch.float16
