"""``orchestrate compare MODEL``: a model's artifacts side by side."""

from __future__ import annotations

import click

from orchestrator.cli._common import json_option, print_json, short, state, styled, table


def _figure(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


@click.command("compare")
@click.argument("model")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@json_option
def compare_command(model: str, limit: int, as_json: bool) -> None:
    """Every artifact of MODEL across targets and precisions: size, gate, accuracy, compiled
    latency (p50), speedup over eager and peak memory on the worker."""
    from orchestrator.compare import compare

    rows = compare(state().farm_api(), model, limit=limit)
    if as_json:
        print_json([row.to_dict() for row in rows])
        return
    if not rows:
        click.echo(f"no artifacts of model {model!r}")
        return
    gate_styles = {"accepted": "green", "rejected": "red"}
    columns = ["artifact", "target", "backend", "precision", "size", "gate", "engines", "fallback ops",
               "min cosine", "min SNR dB", "max |err|"]
    cells = [
        [
            short(r.artifact_id),
            r.target,
            r.backend,
            r.precision,
            f"{r.size_bytes / 2**20:.1f} MiB",
            styled(r.gate, gate_styles.get(r.gate, "")) if r.gate else "-",
            "-" if r.engines is None else r.engines,
            r.fallback_ops,
            _figure(r.min_cosine, ".6f"),
            _figure(r.min_snr_db, ".1f"),
            _figure(r.max_abs_error, ".3g"),
        ]
        for r in rows
    ]
    # columns no artifact has a figure for stay out of the (already wide) table
    optional = [
        ("accuracy", [_figure(r.task_accuracy, ".2%") for r in rows]),
        ("p50 ms", [_figure(r.compiled_p50_ms, ".3g") for r in rows]),
        ("speedup", ["-" if r.speedup is None else f"{r.speedup:.2f}x" for r in rows]),
        ("peak RSS MiB", [_figure(r.peak_rss_mb, ".0f") for r in rows]),
        ("CUDA MiB", [_figure(r.cuda_max_allocated_mb, ".0f") for r in rows]),
    ]
    for title, values in optional:
        if any(v != "-" for v in values):
            columns.append(title)
            for row_cells, value in zip(cells, values, strict=True):
                row_cells.append(value)
    table(f"{len(rows)} artifact(s) of {model}", columns, cells)
