"""`orchestrate ops`: the registry table, and `--missing` against the anchor's targets."""

from __future__ import annotations

import json

from click.testing import CliRunner

from orchestrator.cli import main


def test_ops_missing_json_counts_every_anchor_target_and_gives_reasons():
    result = CliRunner().invoke(main, ["ops", "--missing", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["anchor"]["source"].startswith("https://github.com/pytorch/TensorRT")
    assert data["targets"] == int(data["anchor"]["count"])
    assert data["covered"] + data["counts"]["missing"] == data["targets"]
    assert len(data["missing"]) == data["counts"]["missing"]
    assert all(m["reason"] for m in data["missing"])
    reasons = {m["target"]: m["reason"] for m in data["missing"]}
    assert "functional" in reasons["torch.ops.aten.resize_.default"]


def test_ops_missing_table_states_the_anchor_and_the_counts():
    result = CliRunner().invoke(main, ["ops", "--missing"])
    assert result.exit_code == 0, result.output
    assert "d7f2062810df37e4bbcfc9065b5f44f09aca7156" in result.output
    assert "covered" in result.output and "missing" in result.output
