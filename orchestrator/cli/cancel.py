"""``orchestrate cancel JOB``: stop a queued or running job."""

from __future__ import annotations

import click

from orchestrator.cli._common import json_option, print_json, state
from orchestrator.cli._jobs import print_job


@click.command("cancel")
@click.argument("job_id", metavar="JOB")
@json_option
def cancel_command(job_id: str, as_json: bool) -> None:
    """Cancel JOB. A queued job never starts; a running one is stopped or its result discarded."""
    job = state().farm_api().cancel(job_id)
    if as_json:
        print_json(job.to_dict())
    else:
        print_job(job)
