"""``orchestrate results JOB|ARTIFACT``: how closely an engine matches its PyTorch model."""

from __future__ import annotations

import click

from orchestrator.cli._common import json_option, print_json, short, state, styled, table


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
            for row in rows
        ],
    )
