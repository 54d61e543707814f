from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

import compiler
from compiler import InputMismatchError, InvalidModelError, UnsafeModelError


def _saved_program(path: Path) -> Path:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    torch.export.save(torch.export.export(model, (torch.randn(2, 4),)), path)
    return path


class _CreatesFile:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.target}",))


def _poison(program: Path, out: Path, target: Path) -> Path:
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as inner:
        inner.writestr("model/data.pkl", pickle.dumps(_CreatesFile(str(target)), protocol=2))
        inner.writestr("model/version", "3\n")
    with zipfile.ZipFile(program) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data/sample_inputs/model.pt"):
                data = payload.getvalue()
            dst.writestr(info, data)
    return out


def test_valid_program_loads(tmp_path: Path) -> None:
    program = compiler.load_program(_saved_program(tmp_path / "m.pt2"))
    assert isinstance(program, torch.export.ExportedProgram)


def test_crafted_pickle_is_refused_before_any_loader_runs_it(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    bad = _poison(_saved_program(tmp_path / "m.pt2"), tmp_path / "bad.pt2", target)
    with pytest.raises(UnsafeModelError, match="posix.system|os.system"):
        compiler.load_program(bad)
    assert not target.exists()


def test_file_that_is_not_a_program_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(InvalidModelError, match="not a .pt2 archive"):
        compiler.load_program(junk)
    with pytest.raises(InvalidModelError, match="no such file"):
        compiler.load_program(tmp_path / "missing.pt2")
    empty_zip = tmp_path / "empty.pt2"
    with zipfile.ZipFile(empty_zip, "w") as z:
        z.writestr("a/readme.txt", "hi")
    with pytest.raises(InvalidModelError, match="models/"):
        compiler.load_program(empty_zip)


def test_archive_torch_cannot_read_names_this_torch_release(tmp_path: Path) -> None:
    # What torch 2.8 meets in a file torch 2.13 saved: a well-formed archive lacking a member
    # its loader needs. The message says which torch read it, because that is usually the fix.
    saved = _saved_program(tmp_path / "m.pt2")
    damaged = tmp_path / "missing-member.pt2"
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(damaged, "w") as target:
        for info in source.infolist():
            if not info.filename.endswith("data/weights/model_weights_config.json"):
                target.writestr(info, source.read(info))
    with pytest.raises(InvalidModelError, match="torch can read") as raised:
        compiler.load_program(damaged)
    assert f"this is torch {torch.__version__}" in str(raised.value)
    assert "saved by a newer torch" in str(raised.value)


def test_size_limit_is_enforced(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelError, match="over the limit"):
        compiler.load_program(_saved_program(tmp_path / "m.pt2"), max_bytes=100)


def test_spec_naming_a_missing_input_lists_the_real_ones(tmp_path: Path) -> None:
    program = compiler.load_program(_saved_program(tmp_path / "m.pt2"))
    spec = compiler.CompileSpec.parse({"inputs": [{"name": "images", "shape": [2, 4]}]})
    with pytest.raises(InputMismatchError, match="images.*its inputs are: input"):
        compiler.compile(program, spec)


def test_module_without_example_inputs_is_a_clear_error() -> None:
    with pytest.raises(InputMismatchError, match="needs example inputs"):
        compiler.compile(torch.nn.ReLU())
