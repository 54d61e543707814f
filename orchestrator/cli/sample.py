"""``orchestrate sample``: write a small model to try the farm with (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("sample")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("sample.pt2"),
    show_default=True,
)
@click.option("--kind", type=click.Choice(["digits", "tiny"]), default="digits", show_default=True)
@click.option(
    "--train-seconds", type=float, default=3.0, show_default=True, help="Training time (digits)."
)
def sample_command(output: Path, kind: str, train_seconds: float) -> None:
    """Write a sample torch.export model: a CNN trained briefly on sklearn's digits, or a tiny MLP."""
    from orchestrator.samples import write_sample

    sample = write_sample(output, kind, train_seconds)
    click.echo(f"wrote {sample.path}: {sample.description}")
