"""``orchestrate wait JOB``: follow a job phase by phase until it finishes."""

from __future__ import annotations

import click

from orchestrator.cli._common import json_option, state
from orchestrator.cli._jobs import follow, report_job


@click.command("wait")
@click.argument("job_id", metavar="JOB")
@click.option("--timeout", type=click.FloatRange(min=0), help="Give up after this many seconds (exit 4).")
@json_option
def wait_command(job_id: str, timeout: float | None, as_json: bool) -> None:
    """Wait for JOB, printing each phase as it starts.

    Exit 0 when it succeeded, 1 when it failed, 4 on timeout, 5 when it was cancelled.
    """
    api = state().farm_api()
    (job,) = follow(api, [api.get_job(job_id)], timeout)
    report_job(job, as_json)
