"""``orchestrate results JOB|ARTIFACT``: how closely an engine matches its PyTorch model."""

from __future__ import annotations

import click

from orchestrator.cli._common import json_option, print_json, short, state, styled, table

#: the output name of latency and memory rows (compiler.performance.PERFORMANCE)
PERFORMANCE = "(performance)"


@click.command("results")
@click.argument("ref", metavar="JOB|ARTIFACT")
@json_option
def results_command(ref: str, as_json: bool) -> None:
    """Validation results of a job or an artifact: one row per output and metric."""

    rows = state().farm_api().results(ref)
    if as_json:
        print_json([row.to_dict() for row in rows])
        return
    if not rows:
        click.echo(f"no validation results for {ref} (the job may not have finished)")
        return
    accuracy = [row for row in rows if row.output != PERFORMANCE]
    performance = [row for row in rows if row.output == PERFORMANCE]
    if accuracy:
        table(
            f"validation of artifact {short(rows[0].artifact_id)} (seed {rows[0].seed})",
            ["output", "metric", "value", "threshold", "passed"],
            [
                (
                    row.output,
                    row.metric,
                    f"{row.value:.3g}",
                    "-" if row.threshold is None else f"{row.threshold:.3g}",
                    styled("yes", "green") if row.passed else styled("no", "red"),
                )
                for row in accuracy
            ],
        )
    if performance:
        # measurements, not gates: no threshold, never failing
        table(
            f"performance on the worker (artifact {short(rows[0].artifact_id)})",
            ["metric", "value"],
            [(row.metric, performance_value(row.metric, row.value)) for row in performance],
        )


def performance_value(metric: str, value: float) -> str:
    """``1.23 ms``, ``4.56x``, ``789 MiB``: the unit the metric's name ends with."""
    if metric.endswith("_ms"):
        return f"{value:.3g} ms"
    if metric.endswith("_mb"):
        return f"{value:.0f} MiB"
    if metric == "speedup":
        return f"{value:.2f}x"
    return f"{value:.3g}"
