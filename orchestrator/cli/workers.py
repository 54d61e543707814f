"""``orchestrate workers``: who builds for which targets, and whether they are alive."""

from __future__ import annotations

import click

from orchestrator.cli._common import json_option, print_json, state, styled, table


@click.command("workers")
@click.option("--all", "include_offline", is_flag=True, help="Include stopped workers.")
@json_option
def workers_command(include_offline: bool, as_json: bool) -> None:
    """List registered workers with their queues, hardware and backends."""

    workers = state().farm_api().list_workers(include_offline=include_offline)
    if as_json:
        print_json([worker.to_dict() for worker in workers])
        return
    table(
        f"{len(workers)} worker(s)",
        ["worker", "queues", "gpu", "backends", "state", "last heartbeat"],
        [
            (
                w.name,
                ", ".join(w.queues),
                (w.capabilities.get("gpu") or {}).get("name", "-"),
                ", ".join(f"{k} {v}" for k, v in (w.capabilities.get("backends") or {}).items()),
                styled("live", "green") if w.live else styled(f"{w.state} (silent)", "dim")
                if w.state == "online"
                else styled(w.state, "dim"),
                (w.last_heartbeat or "")[:19].replace("T", " "),
            )
            for w in workers
        ],
    )
