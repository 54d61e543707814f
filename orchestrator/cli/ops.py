"""``orchestrate ops``: the converter coverage table, and ``--missing``: what the anchor
(Torch-TensorRT) converts that we do not, with the reason."""

from __future__ import annotations

from typing import Any

import click

from orchestrator.cli._common import BackendChoice, json_option, print_json, table


@click.command("ops")
@click.option("--backend", type=BackendChoice(), help="Only ops this backend can run.")
@click.option(
    "--missing",
    is_flag=True,
    help="Compare with Torch-TensorRT's converter targets and list those we do not cover, with the reason.",
)
@json_option
def ops_command(backend: str | None, missing: bool, as_json: bool) -> None:
    """List every ATen overload the compiler converts, with dynamic-shape support and ONNX ops."""
    if missing:
        _missing(as_json)
        return
    import compiler
    from compiler.backends import get_backend
    from compiler.conversion import REGISTRY

    supported = None
    if backend is not None:
        chosen = get_backend(backend, require_available=False)
        if chosen.consumes == "fx":
            # no converter table: the backend takes the ATen graph and decides per node
            note = (
                f"{backend} consumes ATen FX graphs, not ONNX: it runs every node Inductor has a "
                "lowering, a decomposition or a device kernel for (decided per node at compile "
                "time; see `orchestrate compile --dry-run --backend "
                f"{backend}` for a model's partition table)"
            )
            if as_json:
                print_json({"backend": backend, "consumes": "fx", "converters": None, "note": note})
            else:
                click.echo(note)
            return
        supported = chosen.supported_onnx_ops(compiler.CompileSpec(backend=backend))
    rows: list[dict[str, Any]] = []
    for entry in REGISTRY:
        if supported is not None and not entry.onnx_ops <= supported:
            continue
        rows.append({"op": entry.name, "dynamic": entry.dynamic, "onnx_ops": sorted(entry.onnx_ops)})
    if as_json:
        print_json(rows)
        return
    table(
        f"{len(rows)} supported ATen overloads" + (f" ({backend})" if backend else ""),
        ["op", "dynamic shapes", "ONNX ops"],
        [(r["op"], "yes" if r["dynamic"] else "no", ", ".join(r["onnx_ops"])) for r in rows],
    )


def _missing(as_json: bool) -> None:
    from compiler.conversion.coverage import anchor_source, coverage, summary

    rows = coverage()
    counts = summary(rows)
    source = anchor_source()
    missing = [r for r in rows if r.status == "missing"]
    if as_json:
        print_json(
            {
                "anchor": source,
                "targets": len(rows),
                "covered": len(rows) - counts["missing"],
                "counts": counts,
                "missing": [{"target": r.target, "reason": r.detail} for r in missing],
            }
        )
        return
    covered = ", ".join(f"{counts[s]} by {s}" for s in ("converter", "evaluator", "lowering", "decomposed"))
    click.echo(f"anchor: {source.get('source', '?')} @ {source.get('commit', '?')}")
    click.echo(f"{len(rows)} targets: {len(rows) - counts['missing']} covered ({covered}), {counts['missing']} missing")
    table(f"{len(missing)} missing targets", ["target", "reason"], [(r.target, r.detail) for r in missing])
