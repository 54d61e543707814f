"""``orchestrate worker-alive``: a liveness probe that exits 0 while this host's worker heartbeats."""

from __future__ import annotations

import click

from orchestrator.cli._common import fail, state


@click.command("worker-alive")
@click.option("--name", help="The worker's name (default: any worker on this host).")
@click.option("--hostname", help="Host whose worker to look for (default: this host's name).")
def worker_alive_command(name: str | None, hostname: str | None) -> None:
    """Exit 0 when a live worker (heartbeat within the live window) runs here, else 1.

    Meant for a Kubernetes exec liveness probe or a systemd watchdog script: the pod's host
    name is the one the worker registered with. An unreachable database exits 3.
    """
    from orchestrator.fleet import live_worker_on_host

    worker = live_worker_on_host(state().get_farm(), hostname=hostname, name=name)
    if worker is None:
        who = f"worker {name}" if name else f"a worker on host {hostname or 'here'}"
        raise fail(f"no live {who}: it is not registered or its heartbeat is stale", 1)
    click.echo(f"{worker.name} live (heartbeat {worker.heartbeat_age_s:.0f} s ago)")
