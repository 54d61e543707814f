"""Printing jobs and following them: shared by submit, status, wait and retry."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from orchestrator.cli._common import (
    console,
    key_values,
    print_json,
    seconds,
    short,
    styled,
    styled_state,
    table,
)
from orchestrator.untrusted import printable

if TYPE_CHECKING:
    from orchestrator.remote import DirectFarm, RemoteFarm
    from orchestrator.services import Farm, JobInfo


def print_jobs(jobs: Sequence[JobInfo], title: str | None = None) -> None:
    table(
        title,
        ["job", "model", "target", "backend", "precision", "state", "phase", "artifact", "created"],
        [
            (
                short(job.id),
                job.model_name,
                job.target,
                job.backend,
                job.precision,
                styled_state(job.state) + (" (cached)" if job.cached else ""),
                job.phase,
                short(job.artifact_id),
                (job.created_at or "")[:19].replace("T", " "),
            )
            for job in jobs
        ],
    )


def print_job(job: JobInfo) -> None:
    items: list[tuple[str, object]] = [
        ("job", job.id),
        ("state", styled_state(job.state) + (" (answered from the cache)" if job.cached else "")),
        ("model", f"{job.model_name} ({short(job.model_sha256)})"),
        ("target", f"{job.target}  (queue {job.queue})"),
        ("backend", f"{job.backend}, {job.precision}"),
        ("validation data", short(job.validation_data_sha256) if job.validation_data_sha256 else "generated inputs"),
        ("calibration data", short(job.calibration_data_sha256) if job.calibration_data_sha256 else None),
        ("phase", job.phase),
        ("worker", job.worker),
        ("attempts", job.attempts),
        ("artifact", job.artifact_id),
        ("created", job.created_at),
        ("started", job.started_at),
        ("finished", job.finished_at),
    ]
    if job.error_kind or job.error_message:
        items.append(
            ("error", styled(job.error_kind or "error", "red") + f": {printable(job.error_message or '')}")
        )
    if job.phase_timings:
        items.append(
            ("timings", ", ".join(f"{k} {seconds(v)}" for k, v in job.phase_timings.items()))
        )
    key_values(f"job {short(job.id)}", items)


class PhasePrinter:
    """Prints one line per state or phase change of the jobs being waited for."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.out = console(stderr=True)

    def __call__(self, job: JobInfo) -> None:
        elapsed = time.monotonic() - self.start
        line = styled(f"{elapsed:7.2f}s", "dim") + f" {short(job.id)} {printable(job.target):<14} "
        line += styled_state(job.state)
        if job.state == "running" and job.phase:
            line += styled(" ") + styled(job.phase, "bold")
        if job.state == "failed":
            line += printable(f": {job.error_kind}: {job.error_message}")
        if job.cached:
            line += " (cached)"
        self.out.print(line)


def follow(
    farm: Farm | DirectFarm | RemoteFarm, jobs: Sequence[JobInfo], timeout: float | None
) -> list[JobInfo]:
    """Wait for every job (printing progress per phase), return their final states."""
    from orchestrator.remote import DirectFarm, RemoteFarm

    waiter = farm if isinstance(farm, DirectFarm | RemoteFarm) else DirectFarm(farm)
    printer = PhasePrinter()
    deadline = None if timeout is None else time.monotonic() + timeout
    finished = []
    for job in jobs:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        finished.append(waiter.wait(job.id, timeout=remaining, on_change=printer))
    return finished


def exit_code_for(jobs: Sequence[JobInfo]) -> int:
    from orchestrator.services import EXIT_CANCELLED, EXIT_JOB_FAILED, EXIT_OK

    states = {job.state for job in jobs}
    if "failed" in states:
        return EXIT_JOB_FAILED
    if "cancelled" in states:
        return EXIT_CANCELLED
    return EXIT_OK


def exit_with_job_states(jobs: Sequence[JobInfo]) -> None:
    """End the command with the exit code the jobs' states call for (0 when all is well)."""
    code = exit_code_for(jobs)
    if code:
        raise click.exceptions.Exit(code)


def report_job(job: JobInfo, as_json: bool) -> None:
    """Print one job (as JSON or a table) and exit with the code its state calls for."""
    if as_json:
        print_json(job.to_dict())
    else:
        print_job(job)
    exit_with_job_states([job])
