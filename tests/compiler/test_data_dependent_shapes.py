"""Programs whose output sizes depend on the values (nonzero, x[mask], masked_select, unique):
they compile whole on ONNX Runtime, the engine's outputs are as large as the data says, and the
compiled program saves, loads and runs at new shapes. Backends whose engines cannot return such
outputs leave those nodes in PyTorch, with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

import compiler
from compiler.runtime.engine_op import EXECUTE_ENGINE
from compiler.spec import CompileSpec


class Select(torch.nn.Module):
    """Positions of the large values, those values scaled, and a masked sum per row."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(6, 6)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.proj(x)
        where = torch.nonzero(h > 0.5)
        picked = h[mask] * 2 + 1
        rows = torch.where(mask, h, torch.zeros_like(h)).sum(-1)
        return where, picked, torch.masked_select(x, x < 0), rows


class Vocabulary(torch.nn.Module):
    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values, inverse, counts = torch.unique(ids, return_inverse=True, return_counts=True)
        return values, inverse, counts * 10


def _program(model: torch.nn.Module, *inputs: torch.Tensor, dims: int = 1) -> torch.export.ExportedProgram:
    batch = torch.export.Dim("batch", min=1, max=64)
    return torch.export.export(model.eval(), inputs, dynamic_shapes=tuple({0: batch} for _ in range(dims)))


def _select_program() -> torch.export.ExportedProgram:
    torch.manual_seed(0)
    return _program(Select(), torch.randn(4, 6), torch.rand(4, 6) > 0.5, dims=2)


def _assert_same(got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_nonzero_and_mask_indexing_compile_whole_save_load_and_run_at_new_shapes(tmp_path: Path) -> None:
    program = _select_program()
    compiled = compiler.compile(program, CompileSpec(partitioning={"require_full_compilation": True}))
    report = compiled.report
    assert report.fully_compiled and not report.fallback_ops
    (part,) = report.partitions
    for op in ("aten.nonzero.default", "aten.index.Tensor", "aten.masked_select.default"):
        assert part["ops"].get(op), (op, part["ops"])
    (meta, _), = compiled.engines.values()
    assert len(meta.extra["data_dependent"]) == 3  # one size per nonzero, x[mask], masked_select

    loaded = compiler.load(compiler.save(compiled, tmp_path / "select.engine.pt2"))
    eager = program.module()
    torch.manual_seed(1)
    sizes = set()
    for batch, density in [(4, 0.5), (1, 0.9), (37, 0.2), (9, 0.0)]:
        x, mask = torch.randn(batch, 6), torch.rand(batch, 6) < density
        want = eager(x, mask)
        _assert_same(compiled(x, mask), want)
        _assert_same(loaded(x, mask), want)
        sizes.add(tuple(t.shape[0] for t in want[:3]))
    assert len(sizes) == 4  # every call returned different data-dependent sizes


def test_saved_program_gives_engine_outputs_fresh_unbacked_sizes(tmp_path: Path) -> None:
    compiled = compiler.compile(_select_program())
    saved = compiler.runtime.serialization.export_program(compiled)
    (call,) = [n for n in saved.graph.nodes if n.target is EXECUTE_ENGINE]
    sizes = [t.shape[0] for t in call.meta["val"]]
    unbacked = {str(s) for s in sizes if isinstance(s, torch.SymInt) and free_unbacked_symbols(s)}
    assert len(unbacked) == 3, sizes  # nonzero, x[mask] and masked_select; the row sums have the batch


def test_unique_with_inverse_and_counts_compiles_whole_and_runs_after_load(tmp_path: Path) -> None:
    program = _program(Vocabulary(), torch.randint(0, 9, (5,)))
    compiled = compiler.compile(program, CompileSpec(partitioning={"require_full_compilation": True, "min_block_size": 1}))
    assert compiled.report.fully_compiled
    loaded = compiler.load(compiler.save(compiled, tmp_path / "unique.engine.pt2"))
    eager = program.module()
    for ids in [torch.randint(0, 9, (5,)), torch.randint(-50, 50, (64,)), torch.tensor([7])]:
        _assert_same(loaded(ids), eager(ids))
        _assert_same(compiled(ids), eager(ids))


class MaskThenPyTorch(torch.nn.Module):
    """An engine's data-dependent output feeds PyTorch code, which feeds another engine."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        picked = torch.relu(x[x > 0] - 0.25) * 3
        ordered = torch.sort(picked).values  # kept in PyTorch by the spec below
        return torch.tanh(ordered + 1) * 2 - ordered.sum()


def test_data_dependent_output_crosses_into_pytorch_and_back(tmp_path: Path) -> None:
    program = _program(MaskThenPyTorch(), torch.randn(6, 4))
    spec = CompileSpec(partitioning={"torch_executed_ops": ["aten.sort.default"], "min_block_size": 1})
    compiled = compiler.compile(program, spec)
    assert compiled.report.fallback_ops == {"aten.sort.default": 1}
    assert len(compiled.engines) == 2
    loaded = compiler.load(compiler.save(compiled, tmp_path / "cross.engine.pt2"))
    eager = program.module()
    for batch in (6, 2, 50):
        x = torch.randn(batch, 4)
        torch.testing.assert_close(compiled(x), eager(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(loaded(x), eager(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["aotinductor", "tensorrt"])
def test_backends_without_an_output_allocator_leave_data_dependent_nodes_in_pytorch(backend: str) -> None:
    report = compiler.plan(_select_program(), CompileSpec(backend=backend, device="cuda"))
    reason = f"{backend} engines cannot return outputs whose size depends on the values"
    for op in ("aten.nonzero.default", "aten.index.Tensor", "aten.masked_select.default"):
        assert report.fallback_reasons.get(op) == reason, (op, report.fallback_reasons)
    # the rest of the program is still accelerated
    assert any(p["accelerated"] for p in report.partitions)


def test_bound_run_lets_onnx_runtime_allocate_outputs_of_data_dependent_size() -> None:
    # the CUDA path binds inputs and outputs on the device (IOBinding); the same code on the
    # CPU checks the output allocator without a GPU: known sizes preallocated, the rest handed
    # over from ONNX Runtime through DLPack
    compiled = compiler.compile(_select_program())
    (meta, _), = compiled.engines.values()
    runner = compiler.runtime.engine_op.get_engine(meta.engine_id)
    eager = _select_program().module()
    for batch in (3, 20):
        x, mask = torch.randn(batch, 6), torch.rand(batch, 6) < 0.5
        inputs = [{"x": x, "mask": mask}[m.name] for m in meta.inputs]
        direct = runner.run(inputs)
        bound = runner._run_bound(inputs, torch.device("cpu"))  # type: ignore[attr-defined]
        _assert_same(tuple(bound), tuple(direct))
        assert sorted(t.shape[0] for t in bound) == sorted(t.shape[0] for t in eager(x, mask))
