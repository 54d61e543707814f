"""``orchestrate jobs``: recent jobs, newest first."""

from __future__ import annotations

import click

from orchestrator.cli._common import json_option, print_json, state
from orchestrator.cli._jobs import print_jobs


@click.command("jobs")
@click.option(
    "--state",
    "job_state",
    type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]),
    help="Only jobs in this state.",
)
@click.option("--arch", help="Only jobs for this architecture.")
@click.option("--model", help="Only jobs of this model (name, id or sha256).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
def jobs_command(
    job_state: str | None, arch: str | None, model: str | None, limit: int, as_json: bool
) -> None:
    """List jobs."""
    jobs = state().farm_api().list_jobs(state=job_state, arch=arch, model=model, limit=limit)
    if as_json:
        print_json([job.to_dict() for job in jobs])
    else:
        print_jobs(jobs, title=f"{len(jobs)} job(s)")
