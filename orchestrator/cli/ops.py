"""``orchestrate ops``: the converter coverage table."""

from __future__ import annotations

from typing import Any

import click

from orchestrator.cli._common import BackendChoice, json_option, print_json, table


@click.command("ops")
@click.option("--backend", type=BackendChoice(), help="Only ops this backend can run.")
@json_option
def ops_command(backend: str | None, as_json: bool) -> None:
    """List every ATen overload the compiler converts, with dynamic-shape support and ONNX ops."""
    import compiler
    from compiler.backends import get_backend
    from compiler.conversion import REGISTRY

    supported = None
    if backend is not None:
        supported = get_backend(backend, require_available=False).supported_onnx_ops(compiler.CompileSpec(backend=backend))  # type: ignore[arg-type]
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
