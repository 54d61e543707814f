"""``orchestrate worker``: build engines for the queues this machine can serve."""

from __future__ import annotations

import click

from orchestrator.cli._common import state


@click.command("worker")
@click.option(
    "--arch",
    default="auto",
    show_default=True,
    help="Architecture to serve; 'auto' detects it. Another value only simulates that machine.",
)
@click.option(
    "--device-class",
    default="auto",
    show_default=True,
    help="GPU class to serve (sm90, orin, ...); 'auto' detects it, 'none' serves CPU builds only.",
)
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--queues",
    "-Q",
    help="Comma-separated queues instead of the detected ones (must match --arch).",
)
@click.option(
    "--pool",
    "-P",
    type=click.Choice(["prefork", "solo", "threads"]),
    default="prefork",
    show_default=True,
    help="prefork enforces the compile time limits; solo runs builds in this process.",
)
@click.option("--name", help="Worker name (default: <arch>-<pid>@<host>).")
@click.option(
    "--loglevel", "-l", default="INFO", show_default=True, help="DEBUG, INFO, WARNING or ERROR."
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="Log lines as text or one JSON object each (default: ORCHESTRATE_LOG_FORMAT, text); "
    "every line of a job carries its job id.",
)
def worker_command(
    arch: str,
    device_class: str,
    concurrency: int,
    queues: str | None,
    pool: str,
    name: str | None,
    loglevel: str,
    log_format: str | None,
) -> None:
    """Run a build worker in the foreground until Ctrl-C (or SIGTERM)."""
    from workers.startup import plan_worker, run_worker

    plan = plan_worker(
        arch=arch,
        device_class=device_class,
        queues=[q.strip() for q in queues.split(",") if q.strip()] if queues else (),
        concurrency=concurrency,
        pool=pool,
        name=name,
    )
    code = run_worker(state().get_farm(), plan, loglevel=loglevel.upper(), log_format=log_format)
    if code:
        raise click.exceptions.Exit(code)
