"""``orchestrate compile`` and ``orchestrate ops``: local compilation, no farm."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from click.testing import CliRunner

import compiler
from orchestrator.cli import main


class Small(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.fc = torch.nn.Linear(4 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).flatten(1)
        return torch.sort(self.fc(h), dim=-1).values


def _program(tmp_path: Path) -> Path:
    path = tmp_path / "small.pt2"
    torch.export.save(torch.export.export(Small().eval(), (torch.randn(1, 1, 8, 8),)), path)
    return path


def test_compile_writes_a_loadable_package_and_reports_fallback(tmp_path: Path) -> None:
    model = _program(tmp_path)
    out = tmp_path / "small.engine.pt2"
    result = CliRunner().invoke(
        main,
        ["compile", str(model), "--torch-executed-op", "aten.sort.default", "--min-block-size", "1", "-o", str(out), "--json"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["output"] == str(out) and data["passed"] is True
    assert data["report"]["fallback_ops"] == {"aten.sort.default": 1}
    assert set(data["report"]["timings"]) >= {"frontend", "lowering", "partitioning", "conversion", "build"}
    loaded = compiler.load(out)
    x = torch.randn(1, 1, 8, 8)
    torch.testing.assert_close(loaded(x), compiler.load_program(model).module()(x), atol=1e-5, rtol=1e-5)


def test_dry_run_prints_the_partition_table_and_builds_nothing(tmp_path: Path) -> None:
    model = _program(tmp_path)
    result = CliRunner().invoke(main, ["compile", str(model), "--dry-run", "--torch-executed-op", "aten.sort.default"])
    assert result.exit_code == 0, result.output
    assert "Partitions" in result.output and "listed in torch_executed_ops" in result.output
    assert not (tmp_path / "small.engine.pt2").exists()


def test_require_full_compilation_failure_is_one_readable_error(tmp_path: Path) -> None:
    model = _program(tmp_path)
    result = CliRunner().invoke(
        main, ["compile", str(model), "--require-full-compilation", "--torch-executed-op", "aten.sort.default"]
    )
    # the spec asks for what it also forbids: bad usage (orchestrator/cli/exit_codes.py)
    assert result.exit_code == 2
    assert "aten.sort.default x1" in result.output and "Traceback" not in result.output


def test_bad_spec_and_missing_model_are_usage_errors(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("backend: onnxruntime\nbogus: 1\n")
    result = CliRunner().invoke(main, ["compile", str(_program(tmp_path)), "--spec", str(spec)])
    assert result.exit_code == 2 and "bogus: unknown key" in result.output
    result = CliRunner().invoke(main, ["compile", str(tmp_path / "nope.pt2")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_ops_lists_converters_with_dynamic_flag_and_onnx_ops() -> None:
    result = CliRunner().invoke(main, ["ops", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["op"]: r for r in json.loads(result.output)}
    assert rows["aten.linear.default"]["onnx_ops"]
    assert len(rows) >= 180
    trt = CliRunner().invoke(main, ["ops", "--backend", "tensorrt", "--json"])
    assert trt.exit_code == 0 and 0 < len(json.loads(trt.output)) <= len(rows)
