"""``orchestrate workers``: who builds for which targets, on what hardware, and whether they live."""

from __future__ import annotations

from typing import Any

import click

from orchestrator.cli._common import json_option, print_json, short, state, styled, table

_STATUS_STYLES = {"live": "green", "stale": "yellow", "offline": "dim"}


def _device(identity: dict[str, Any]) -> str:
    """``H200 sm90, driver 570.1, CUDA 12.8`` or ``Jetson AGX Orin, L4T 36.4`` or ``cpu``."""
    parts = []
    if identity.get("jetson_module"):
        parts.append(str(identity["jetson_module"]))
    elif identity.get("gpu_name"):
        cc = identity.get("compute_capability")
        parts.append(f"{identity['gpu_name']}" + (f" sm{str(cc).replace('.', '')}" if cc else ""))
    for label, key in (("driver", "driver_version"), ("CUDA", "cuda_version"),
                       ("TensorRT", "tensorrt_version"), ("L4T", "l4t_release")):
        if identity.get(key):
            parts.append(f"{label} {identity[key]}")
    return ", ".join(parts) or "cpu"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


@click.command("workers")
@click.option("--all", "include_offline", is_flag=True, help="Include workers that shut down.")
@json_option
def workers_command(include_offline: bool, as_json: bool) -> None:
    """List live and stale workers: device identity, queues, current job, last heartbeat.

    A stale worker stopped heartbeating without shutting down (crashed, or lost the database).
    """
    # direct, or through the API server when ORCHESTRATE_API_URL is set: the same view
    workers = state().farm_api().worker_statuses(include_offline=include_offline)
    if as_json:
        print_json([worker.to_dict() for worker in workers])
        return
    table(
        f"{len(workers)} worker(s)",
        ["worker", "status", "device", "queues", "current job", "backends", "last heartbeat"],
        [
            (
                w.name,
                styled(w.status, _STATUS_STYLES.get(w.status, "")),
                _device(w.identity),
                ", ".join(w.queues),
                ", ".join(f"{short(j.id)} ({j.phase or 'starting'})" for j in w.current_jobs)
                or "idle",
                ", ".join(f"{k} {v}" for k, v in sorted(w.backends.items())),
                _age(w.heartbeat_age_s),
            )
            for w in workers
        ],
    )
