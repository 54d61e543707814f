"""``orchestrate queues``: how many jobs wait on each queue, and which wait for nobody."""

from __future__ import annotations

import click

from orchestrator.cli._common import json_option, print_json, state, styled, table, warn


@click.command("queues")
@click.option(
    "--no-broker", "skip_broker", is_flag=True, help="Count from the database only."
)
@json_option
def queues_command(skip_broker: bool, as_json: bool) -> None:
    """Depth per queue (queued and running jobs; the broker's own count on Redis), and the
    targets that have queued jobs but no live worker to build them."""
    from orchestrator.fleet import queue_statuses

    queues = queue_statuses(state().get_farm(), broker=not skip_broker)
    unserved = [q for q in queues if q.unserved]
    if as_json:
        print_json(
            {
                "queues": [q.to_dict() for q in queues],
                "unserved_targets": [q.target for q in unserved],
            }
        )
        return
    table(
        f"{len(queues)} queue(s)",
        ["queue", "target", "queued", "running", "broker", "live workers"],
        [
            (
                q.queue,
                q.target,
                styled(str(q.queued), "red" if q.unserved else ""),
                q.running,
                "-" if q.broker_depth is None else q.broker_depth,
                ", ".join(q.live_workers) or styled("none", "red" if q.unserved else "dim"),
            )
            for q in queues
        ],
    )
    for q in unserved:
        warn(
            f"{q.queued} job(s) for {q.target} wait on {q.queue} and no live worker serves it: "
            f"start `orchestrate worker` on a {q.target} machine"
        )
