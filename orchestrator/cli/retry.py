"""``orchestrate retry JOB``: run a failed or cancelled job again."""

from __future__ import annotations

import click

from orchestrator.cli._common import json_option, state
from orchestrator.cli._jobs import follow, report_job


@click.command("retry")
@click.argument("job_id", metavar="JOB")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the new attempt.")
@click.option("--timeout", type=float, help="With --wait: give up after this many seconds (exit 4).")
@json_option
def retry_command(job_id: str, wait_: bool, timeout: float | None, as_json: bool) -> None:
    """Queue a new attempt of JOB (which must have failed or been cancelled)."""
    api = state().farm_api()
    job = api.retry(job_id)
    if wait_:
        (job,) = follow(api, [job], timeout)
    report_job(job, as_json)
