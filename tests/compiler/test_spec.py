from __future__ import annotations

from pathlib import Path

import pytest

from compiler import CompileSpec, SpecError


def test_defaults_are_filled_and_hash_is_stable() -> None:
    a = CompileSpec.parse({})
    b = CompileSpec.from_yaml("backend: onnxruntime\nprecision: fp32\n")
    assert a.partitioning.min_block_size == 5
    assert a.sha256() == b.sha256()
    assert CompileSpec.parse({"precision": "fp16"}).sha256() != a.sha256()


def test_unknown_key_is_rejected_with_its_path() -> None:
    with pytest.raises(SpecError, match=r"partitioning\.min_blocksize: unknown key"):
        CompileSpec.parse({"partitioning": {"min_blocksize": 3}})


def test_min_greater_than_max_names_the_input_and_axis() -> None:
    with pytest.raises(SpecError, match=r"inputs\.0: .*min\[1\] = 9 is greater than max\[1\] = 4"):
        CompileSpec.parse({"inputs": [{"name": "x", "min": [1, 9], "max": [8, 4]}]})


def test_bad_values_are_rejected() -> None:
    with pytest.raises(SpecError, match="backend"):
        CompileSpec.parse({"backend": "tvm"})
    with pytest.raises(SpecError, match="device"):
        CompileSpec.parse({"device": "gpu0"})
    with pytest.raises(SpecError, match="names appear twice"):
        CompileSpec.parse({"inputs": [{"name": "x", "shape": [1]}, {"name": "x", "shape": [2]}]})
    with pytest.raises(SpecError, match="either shape or min/opt/max"):
        CompileSpec.parse({"inputs": [{"name": "x", "shape": [1], "min": [1], "max": [2]}]})


def test_yaml_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(
        """
backend: onnxruntime
inputs:
  - name: ids
    dtype: int64
    min: [1, 8]
    opt: [1, 128]
    max: [8, 512]
partitioning:
  torch_executed_ops: [aten.sort.default]
validation: {samples: 4, atol: 1.0e-4}
"""
    )
    spec = CompileSpec.from_file(path)
    assert spec.inputs[0].is_dynamic and spec.inputs[0].opt_shape == [1, 128]
    assert CompileSpec.from_yaml(spec.to_yaml()) == spec


def test_unreadable_or_invalid_yaml_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read spec"):
        CompileSpec.from_file(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="not valid YAML"):
        CompileSpec.from_yaml("inputs: [")
    with pytest.raises(SpecError, match="must be a mapping"):
        CompileSpec.from_yaml("- 1\n- 2\n")
