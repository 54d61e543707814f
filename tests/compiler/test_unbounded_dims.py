"""Programs exported with dimensions that have no upper bound (``Dim.AUTO``, ``Dim`` without
``max``): they compile, run at several sizes, save and load, and the backends get a stated bound."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils._sympy.numbers import int_oo

import compiler
from compiler.frontend import UNBOUNDED_MAX_FACTOR, input_signature


class Head(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.proj(x))
        return torch.softmax(h, dim=-1) * x.shape[1] + h.sum(1, keepdim=True)


def _auto_program() -> torch.export.ExportedProgram:
    torch.manual_seed(0)
    model = Head().eval()
    auto = torch.export.Dim.AUTO
    return torch.export.export(model, (torch.randn(3, 5, 8),), dynamic_shapes=({0: auto, 1: auto},))


def _engine_inputs(compiled: compiler.CompiledModule) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    return [(tuple(m.min), tuple(m.max)) for meta, _ in compiled.engines.values() for m in meta.inputs]


def test_auto_dims_compile_and_match_eager_at_three_shapes_after_save_and_load(tmp_path: Path) -> None:
    program = _auto_program()
    assert all(vr.upper == int_oo for vr in program.range_constraints.values())
    compiled = compiler.compile(program)
    assert compiled.report.fully_compiled
    eager = program.module()
    path = compiler.save(compiled, tmp_path / "auto.engine.pt2")
    loaded = compiler.load(path)
    for shape in [(2, 2, 8), (7, 3, 8), (300, 11, 8)]:  # 300 is past the stated default bound
        x = torch.randn(shape)
        want = eager(x)
        torch.testing.assert_close(compiled(x), want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(loaded(x), want, atol=1e-5, rtol=1e-5)


def test_unbounded_dims_get_the_stated_default_bound_in_report_and_engine() -> None:
    compiled = compiler.compile(_auto_program())
    (x,) = compiled.report.inputs
    assert x["max"] == [None, None, 8]
    assert x["engine_max"] == [2 * UNBOUNDED_MAX_FACTOR, 2 * UNBOUNDED_MAX_FACTOR, 8]
    assert _engine_inputs(compiled) == [((2, 2, 8), (2 * UNBOUNDED_MAX_FACTOR, 2 * UNBOUNDED_MAX_FACTOR, 8))]


def test_spec_max_bounds_an_unbounded_dim() -> None:
    spec = compiler.CompileSpec.parse(
        {"inputs": [{"name": "x", "dtype": "float32", "min": [2, 4, 8], "opt": [4, 4, 8], "max": [16, 4, 8]}]}
    )
    compiled = compiler.compile(_auto_program(), spec)
    assert compiled.report.inputs[0]["max"] == [16, 4, 8]
    assert _engine_inputs(compiled) == [((2, 4, 8), (16, 4, 8))]
    x = torch.randn(9, 4, 8)
    torch.testing.assert_close(compiled(x), _auto_program().module()(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(compiler.InputMismatchError, match="outside the compiled range"):
        compiled(torch.randn(17, 4, 8))


def test_dim_without_max_and_a_derived_dim_compile() -> None:
    class Concat(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.cat([a, b], dim=0).relu() + 1

    n = torch.export.Dim("n")  # no min, no max
    program = torch.export.export(
        Concat(), (torch.randn(3, 4), torch.randn(6, 4)), dynamic_shapes=({0: n}, {0: 2 * n})
    )
    signature = input_signature(program, compiler.CompileSpec())
    assert [d.max for d in signature[0].dims] == [None, 4]
    compiled = compiler.compile(program)
    for rows in (2, 5, 40):
        a, b = torch.randn(rows, 4), torch.randn(2 * rows, 4)
        torch.testing.assert_close(compiled(a, b), program.module()(a, b))
