"""``/api/v1/results``, ``/api/v1/compare``, ``/api/v1/workers`` and ``/api/v1/whoami``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from orchestrator import services
from orchestrator.server.auth import Caller, farm_of, reader
from orchestrator.services import ValidationInfo, WorkerInfo

router = APIRouter(tags=["farm"])


@router.get("/results/{ref}", summary="Validation results of a job or an artifact")
def results(request: Request, ref: str, caller: Caller = Depends(reader)) -> dict[str, list[ValidationInfo]]:
    """Either id works, as with `orchestrate results`."""
    return {"results": services.results(farm_of(request), ref)}


@router.get("/compare/{model}", summary="A model's artifacts side by side (`orchestrate compare`)")
def compare(
    request: Request,
    model: str,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=10_000_000),
    caller: Caller = Depends(reader),
) -> dict[str, Any]:
    """Every (target, backend, precision) the model (a name, id or sha256) was built for, with
    its count, gate verdicts and newest artifact, and one page of all its artifacts, newest
    first: size, gate, accuracy, latency and speedup."""
    from orchestrator.compare import model_comparison

    return model_comparison(farm_of(request), model, limit=limit, offset=offset).to_dict()


@router.get("/workers", summary="List workers")
def workers(
    request: Request, include_offline: bool = True, caller: Caller = Depends(reader)
) -> dict[str, list[WorkerInfo]]:
    return {"workers": services.list_workers(farm_of(request), include_offline=include_offline)}


@router.get("/fleet", summary="Workers as `orchestrate workers` shows them")
def fleet(request: Request, include_offline: bool = False, caller: Caller = Depends(reader)) -> dict[str, list[dict[str, Any]]]:
    """Live and stale workers (offline ones too if asked) with device identity, queues, current
    jobs and heartbeat age."""
    from orchestrator.fleet import worker_statuses

    return {"workers": [w.to_dict() for w in worker_statuses(farm_of(request), include_offline=include_offline)]}


@router.get("/queues", summary="Queues and the workers that serve them")
def queues(request: Request, caller: Caller = Depends(reader)) -> dict[str, list[dict[str, Any]]]:
    """Every queue a registered worker subscribes to, with its live and silent workers: a
    queue without live workers holds its jobs until one starts."""
    served: dict[str, dict[str, list[str]]] = {}
    for worker in services.list_workers(farm_of(request)):
        for queue in worker.queues:
            entry = served.setdefault(queue, {"live_workers": [], "other_workers": []})
            entry["live_workers" if worker.live else "other_workers"].append(worker.name)
    return {"queues": [{"queue": name, **served[name]} for name in sorted(served)]}


@router.get("/whoami", summary="The caller's token")
def whoami(caller: Caller = Depends(reader)) -> dict[str, Any]:
    return {"user": caller.user, "role": caller.role.value, "token_id": caller.token.id}
