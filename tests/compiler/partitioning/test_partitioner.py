from __future__ import annotations

import pytest
import torch

import compiler
from compiler import UnsupportedOperatorError


class Blocks(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8))
        self.head = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        h = torch.sort(h, dim=-1).values
        return self.head(h * 2 + 1)


X = torch.randn(3, 8)


def _spec(**partitioning: object) -> compiler.CompileSpec:
    return compiler.CompileSpec.parse({"partitioning": partitioning})


def test_torch_executed_ops_runs_that_op_in_pytorch_and_the_answer_is_right() -> None:
    model = Blocks().eval()
    compiled = compiler.compile(model, _spec(min_block_size=1, torch_executed_ops=["aten.sort.default"]), [X])
    assert compiled.report.fallback_ops == {"aten.sort.default": 1}
    assert compiled.report.fallback_reasons["aten.sort.default"] == "listed in torch_executed_ops"
    assert compiled.report.num_engines == 2
    torch.testing.assert_close(compiled(X), model(X), atol=1e-5, rtol=1e-5)


def test_require_full_compilation_lists_each_unsupported_op_with_its_count() -> None:
    with pytest.raises(UnsupportedOperatorError) as info:
        compiler.compile(Blocks().eval(), _spec(require_full_compilation=True, torch_executed_ops=["aten.sort"]), [X])
    assert info.value.unsupported == {"aten.sort.default": 1}
    assert "aten.sort.default x1" in str(info.value)


def test_blocks_below_min_block_size_fall_back_with_the_reason() -> None:
    model = Blocks().eval()
    report = compiler.plan(model, _spec(min_block_size=6, torch_executed_ops=["aten.sort.default"]), [X])
    assert report.num_engines == 0
    reasons = {p["reason"] for p in report.partitions if not p["accelerated"]}
    assert any("below min_block_size=6" in (r or "") for r in reasons)


def test_torch_executed_modules_keeps_every_node_of_that_submodule_in_pytorch() -> None:
    model = Blocks().eval()
    spec = _spec(min_block_size=1, torch_executed_ops=["aten.sort.default"], torch_executed_modules=["head"])
    compiled = compiler.compile(model, spec, [X])
    assert compiled.report.fallback_ops["aten.linear.default"] == 2
    assert "torch_executed_modules entry 'head'" in compiled.report.fallback_reasons["aten.linear.default"]
    torch.testing.assert_close(compiled(X), model(X), atol=1e-5, rtol=1e-5)


def test_dry_run_reports_partitions_without_building() -> None:
    report = compiler.plan(Blocks().eval(), _spec(min_block_size=1, torch_executed_ops=["aten.sort.default"]), [X])
    assert "conversion" not in report.timings and "build" not in report.timings
    accelerated = [p for p in report.partitions if p["accelerated"]]
    assert len(accelerated) == 2
    assert sum(p["size"] for p in accelerated) == report.num_accelerated_nodes
