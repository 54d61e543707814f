"""``orchestrate status JOB``: one job's state, phase, timings and error."""

from __future__ import annotations

import click

from orchestrator.cli._common import json_option, print_json, state
from orchestrator.cli._jobs import print_job


@click.command("status")
@click.argument("job_id", metavar="JOB")
@json_option
def status_command(job_id: str, as_json: bool) -> None:
    """Show JOB (an id or a unique prefix of one). Exit 0 whatever the job's state.

    Through the API server when ORCHESTRATE_API_URL and ORCHESTRATE_TOKEN are set.
    """
    job = state().farm_api().get_job(job_id)
    if as_json:
        print_json(job.to_dict())
    else:
        print_job(job)
