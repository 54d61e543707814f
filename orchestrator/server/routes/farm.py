"""``/api/v1/results``, ``/api/v1/workers`` and ``/api/v1/whoami``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from orchestrator import services
from orchestrator.server.auth import Caller, farm_of, reader
from orchestrator.services import ValidationInfo, WorkerInfo

router = APIRouter(tags=["farm"])


@router.get("/results/{ref}", summary="Validation results of a job or an artifact")
def results(request: Request, ref: str, caller: Caller = Depends(reader)) -> dict[str, list[ValidationInfo]]:
    """Either id works, as with `orchestrate results`."""
    return {"results": services.results(farm_of(request), ref)}


@router.get("/workers", summary="List workers")
def workers(
    request: Request, include_offline: bool = True, caller: Caller = Depends(reader)
) -> dict[str, list[WorkerInfo]]:
    return {"workers": services.list_workers(farm_of(request), include_offline=include_offline)}


@router.get("/whoami", summary="The caller's token")
def whoami(caller: Caller = Depends(reader)) -> dict[str, Any]:
    return {"user": caller.user, "role": caller.role.value, "token_id": caller.token.id}
