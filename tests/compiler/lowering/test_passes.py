"""Each pass on a hand-built fx graph, and the pass manager's failure report."""

from __future__ import annotations

import pytest
import torch
from torch import fx

from compiler.errors import LoweringError
from compiler.lowering import FALLBACK_META, LoweringSettings, run_passes
from compiler.lowering.passes import PassResult
from compiler.lowering.passes.eliminate_dead_code import eliminate_dead_code
from compiler.lowering.passes.flag_torch_executed_modules import flag_torch_executed_modules
from compiler.lowering.passes.fold_constants import fold_constants
from compiler.lowering.passes.remove_assertions import remove_assertions
from compiler.lowering.passes.remove_noop_ops import remove_noop_ops
from compiler.spec import CompileSpec

aten = torch.ops.aten
SETTINGS = LoweringSettings()


def _targets(gm: fx.GraphModule) -> list[object]:
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def test_remove_noop_ops_drops_detach_clone_alias_and_eval_dropout() -> None:
    graph = fx.Graph()
    x = graph.placeholder("x")
    y = graph.call_function(aten.detach.default, (x,))
    y = graph.call_function(aten.clone.default, (y,))
    y = graph.call_function(aten.alias.default, (y,))
    y = graph.call_function(aten.dropout.default, (y, 0.5, False))
    y = graph.call_function(aten.relu.default, (y,))
    graph.output(y)
    gm = fx.GraphModule(torch.nn.Module(), graph)
    result = remove_noop_ops(gm, SETTINGS)
    assert result.modified
    assert _targets(result.graph_module) == [aten.relu.default]
    x_val = torch.randn(4)
    result.graph_module.recompile()
    torch.testing.assert_close(result.graph_module(x_val), torch.relu(x_val))


def test_training_dropout_is_kept() -> None:
    graph = fx.Graph()
    x = graph.placeholder("x")
    graph.output(graph.call_function(aten.dropout.default, (x, 0.5, True)))
    result = remove_noop_ops(fx.GraphModule(torch.nn.Module(), graph), SETTINGS)
    assert not result.modified


def test_fold_constants_precomputes_weight_transposes() -> None:
    root = torch.nn.Module()
    root.register_buffer("w", torch.randn(3, 4))
    graph = fx.Graph()
    x = graph.placeholder("x")
    w = graph.get_attr("w")
    wt = graph.call_function(aten.permute.default, (w, [1, 0]))
    graph.output(graph.call_function(aten.mm.default, (x, wt)))
    gm = fx.GraphModule(root, graph)
    result = fold_constants(gm, SETTINGS)
    assert result.modified
    assert _targets(gm) == [aten.mm.default]
    gm.recompile()
    x_val = torch.randn(2, 4)
    torch.testing.assert_close(gm(x_val), x_val @ root.w.T)
    # the original weight is no longer read, so dead-code elimination can drop it
    assert eliminate_dead_code(gm, SETTINGS).modified


def test_fold_constants_leaves_input_dependent_nodes() -> None:
    graph = fx.Graph()
    x = graph.placeholder("x")
    graph.output(graph.call_function(aten.relu.default, (x,)))
    assert not fold_constants(fx.GraphModule(torch.nn.Module(), graph), SETTINGS).modified


def test_remove_assertions_drops_unused_runtime_asserts() -> None:
    graph = fx.Graph()
    x = graph.placeholder("x")
    graph.call_function(aten._assert_tensor_metadata.default, (x,), {"dtype": torch.float32})
    graph.output(graph.call_function(aten.relu.default, (x,)))
    result = remove_assertions(fx.GraphModule(torch.nn.Module(), graph), SETTINGS)
    assert result.modified and _targets(result.graph_module) == [aten.relu.default]


def test_flag_torch_executed_modules_uses_the_module_stack() -> None:
    graph = fx.Graph()
    x = graph.placeholder("x")
    inside = graph.call_function(aten.relu.default, (x,))
    inside.meta["nn_module_stack"] = {"a": ("encoder.layer.11", torch.nn.Module), "b": ("encoder.layer.11.ffn", torch.nn.Module)}
    outside = graph.call_function(aten.relu.default, (inside,))
    outside.meta["nn_module_stack"] = {"a": ("encoder.layer.1", torch.nn.Module)}
    graph.output(outside)
    spec = CompileSpec.parse({"partitioning": {"torch_executed_modules": ["encoder.layer.11"]}})
    flag_torch_executed_modules(fx.GraphModule(torch.nn.Module(), graph), LoweringSettings(spec))
    assert "encoder.layer.11" in inside.meta[FALLBACK_META]
    assert FALLBACK_META not in outside.meta  # "encoder.layer.1" is not a prefix match of .11


def test_pass_manager_names_the_failing_pass_and_those_before_it() -> None:
    def break_things(gm: fx.GraphModule, settings: LoweringSettings) -> PassResult:
        raise RuntimeError("boom")

    graph = fx.Graph()
    graph.output(graph.placeholder("x"))
    gm = fx.GraphModule(torch.nn.Module(), graph)
    with pytest.raises(LoweringError, match=r"pass break_things failed \(RuntimeError: boom\); passes that ran before it: remove_noop_ops"):
        run_passes(gm, SETTINGS, [remove_noop_ops, break_things])
