"""Compiled programs: stitched execution, save/load, dynamic shapes, input checks."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

import compiler
from compiler import InputMismatchError, InvalidModelError
from compiler.runtime.engine_op import EXECUTE_ENGINE


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(8, 16)
        self.b = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x)) * 2 + 1
        h = torch.sort(h, dim=-1).values  # kept in PyTorch below
        return self.b(h).view(x.shape[0], 2, 2) / 3


DYNAMIC = {"inputs": [{"name": "x", "dtype": "float32", "min": [1, 8], "opt": [2, 8], "max": [8, 8]}]}


def _spec(**partitioning: object) -> compiler.CompileSpec:
    return compiler.CompileSpec.parse(
        {**DYNAMIC, "partitioning": {"min_block_size": 1, "torch_executed_ops": ["aten.sort.default"], **partitioning}}
    )


def test_fallback_program_matches_eager_at_two_batch_sizes_after_save_and_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Net().eval()
    compiled = compiler.compile(model, _spec())
    assert compiled.report.num_engines == 2
    assert compiled.report.fallback_ops == {"aten.sort.default": 1}
    path = compiler.save(compiled, tmp_path / "net.engine.pt2")
    loaded = compiler.load(path)
    for batch in (1, 7):
        x = torch.randn(batch, 8)
        with torch.no_grad():
            expected = model(x)
        torch.testing.assert_close(compiled(x), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(loaded(x), expected, atol=1e-5, rtol=1e-5)


def test_engines_know_whether_they_are_the_whole_program(tmp_path: Path) -> None:
    # engines that share the program with other engines or PyTorch code are built so that their
    # thread pools do not keep the cores busy after a run; the choice survives save and load
    split = compiler.compile(Net().eval(), _spec())
    loaded = compiler.load(compiler.save(split, tmp_path / "net.engine.pt2"))
    for module in (split, loaded):
        assert [meta.extra["whole_program"] for meta, _ in module.engines.values()] == [False, False]
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU()).eval()
    whole = compiler.compile(model, example_inputs=[torch.randn(2, 8)])
    assert [meta.extra["whole_program"] for meta, _ in whole.engines.values()] == [True]


def test_saved_program_is_an_exported_program_calling_execute_engine(tmp_path: Path) -> None:
    compiled = compiler.compile(Net().eval(), _spec())
    path = compiler.save(compiled, tmp_path / "net.engine.pt2")
    program = torch.export.load(path)
    targets = [n.target for n in program.graph.nodes if n.op == "call_function"]
    assert targets.count(EXECUTE_ENGINE) == 2
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    assert any(n.endswith("extra/orchestrate/manifest.json") for n in names)
    assert sum(n.endswith(".bin") and "/engines/" in n for n in names) == 2


def test_input_outside_the_compiled_range_names_input_dim_and_range() -> None:
    compiled = compiler.compile(Net().eval(), _spec())
    with pytest.raises(InputMismatchError, match=r"input 'x' dimension 0 is 9, outside the compiled range 1\.\.8"):
        compiled(torch.randn(9, 8))
    with pytest.raises(InputMismatchError, match="dtype"):
        compiled(torch.randn(2, 8, dtype=torch.float64))
    with pytest.raises(InputMismatchError, match="takes 1 input"):
        compiled(torch.randn(2, 8), torch.randn(2, 8))


def test_single_engine_program_uses_the_direct_call_path() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU()).eval()
    compiled = compiler.compile(model, example_inputs=[torch.randn(2, 8)])
    assert compiled._fast is not None
    x = torch.randn(2, 8)
    torch.testing.assert_close(compiled(x), model(x), atol=1e-6, rtol=1e-6)


def test_exact_shape_calls_skip_the_checked_path_and_everything_else_takes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU()).eval()
    compiled = compiler.compile(model, example_inputs=[torch.randn(2, 8)])
    assert compiled._exact_call is not None
    checked = []
    real_check = compiled._check
    monkeypatch.setattr(compiled, "_check", lambda flat: checked.append(len(flat)) or real_check(flat))
    x = torch.randn(2, 8)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(compiled(x), expected, atol=1e-6, rtol=1e-6)
    assert checked == []
    # a tensor that needs grad, a strided view, a subclass: same answer through the checked path
    strided = torch.randn(8, 2).t()
    for value in (x.clone().requires_grad_(), strided, torch.nn.Parameter(x.clone())):
        with torch.no_grad():
            torch.testing.assert_close(compiled(value), model(value), atol=1e-6, rtol=1e-6)
    assert checked == [1, 1]  # the strided view is a plain CPU tensor of the right shape
    with pytest.raises(InputMismatchError, match="dtype"):
        compiled(x.double())
    with pytest.raises(InputMismatchError, match="shape|dimension"):
        compiled(torch.randn(3, 8))
    with pytest.raises(InputMismatchError, match="takes 1 input"):
        compiled(x, x)


def test_damaged_engine_is_refused_on_load(tmp_path: Path) -> None:
    compiled = compiler.compile(Net().eval(), _spec())
    path = compiler.save(compiled, tmp_path / "net.engine.pt2")
    damaged = tmp_path / "damaged.engine.pt2"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(damaged, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(".bin"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.writestr(info, data)
    with pytest.raises(InvalidModelError, match="does not match its sha256"):
        compiler.load(damaged)


def test_plain_exported_program_is_not_a_compiled_program(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt2"
    torch.export.save(torch.export.export(torch.nn.ReLU(), (torch.randn(2),)), path)
    with pytest.raises(InvalidModelError, match="manifest.json is missing"):
        compiler.load(path)


def test_engines_are_unloaded_when_the_last_module_using_them_is_collected(tmp_path: Path) -> None:
    import gc

    from compiler.runtime.engine_op import loaded_engines

    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU()).eval()
    compiled = compiler.compile(model, example_inputs=[torch.randn(2, 8)])
    (engine_id,) = compiled.engines
    loaded = compiler.load(compiler.save(compiled, tmp_path / "m.engine.pt2"))
    del compiled
    gc.collect()
    assert engine_id in loaded_engines()  # the loaded module still holds it
    x = torch.randn(2, 8)
    torch.testing.assert_close(loaded(x), model(x), atol=1e-6, rtol=1e-6)
    del loaded
    gc.collect()
    assert engine_id not in loaded_engines()
