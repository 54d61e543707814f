"""Coverage against the anchor's converter targets: the checked-in list and its reasons."""

from __future__ import annotations

from compiler.conversion.coverage import (
    EXPORT_DECOMPOSES,
    NOT_CONVERTED,
    anchor_source,
    anchor_targets,
    coverage,
    resolve,
    summary,
)


def test_anchor_list_names_its_source_and_count() -> None:
    source = anchor_source()
    assert "pytorch/TensorRT" in source["source"] and "aten_ops_converters.py" in source["source"]
    assert len(source["commit"].split()[0]) == 40
    targets = anchor_targets()
    assert len(targets) == int(source["count"]) == len(set(targets))


def test_every_target_is_classified_and_missing_ones_carry_a_reason() -> None:
    rows = coverage()
    assert sum(summary(rows).values()) == len(anchor_targets())
    assert {r.status for r in rows} <= {"converter", "evaluator", "lowering", "decomposed", "missing"}
    assert all(r.detail for r in rows)
    assert summary(rows)["converter"] >= 178


def test_reasons_are_only_kept_for_targets_still_missing() -> None:
    status = {r.target: r.status for r in coverage()}
    stale = [t for t in NOT_CONVERTED if status.get(t) != "missing"]
    assert not stale, f"covered (or not in the anchor list) but still listed as not converted: {stale}"


def test_packets_resolve_to_their_default_overload_and_unknown_ops_to_none() -> None:
    import torch

    assert resolve("torch.ops.aten.matmul") is torch.ops.aten.matmul.default
    assert resolve("torch.ops.aten.add.Tensor") is torch.ops.aten.add.Tensor
    assert resolve("torch.ops.tensorrt.quantize_op.default") is None


def test_ops_that_torch_export_decomposes_become_what_the_list_says() -> None:
    import torch

    from compiler.lowering import LoweringSettings, lower
    from tests.compiler.conversion.harness import Fn

    aten = torch.ops.aten
    programs = {
        "torch.ops.aten.batch_norm.default": (
            Fn(lambda x, m, v: aten.batch_norm.default(x, None, None, m, v, False, 0.1, 1e-5, False)),
            (torch.randn(2, 3, 4), torch.randn(3), torch.rand(3) + 0.5),
        ),
        "torch.ops.aten.split.sizes": (Fn(lambda x: aten.split.sizes(x, [1, 2], 1)), (torch.randn(2, 3),)),
    }
    programs["torch.ops.aten.batch_norm"] = programs["torch.ops.aten.batch_norm.default"]
    assert set(programs) == set(EXPORT_DECOMPOSES)
    for name, (module, inputs) in programs.items():
        _, gm, _ = lower(torch.export.export(module, inputs), LoweringSettings())
        targets = {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}
        assert EXPORT_DECOMPOSES[name] in targets, (name, targets)
        assert resolve(name) not in {n.target for n in gm.graph.nodes}
