"""``/api/v1/jobs``: submit, list, show, wait (long-poll), cancel, retry, results."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from orchestrator import services
from orchestrator.datasets import read_data
from orchestrator.server import upload
from orchestrator.server.auth import Caller, farm_of, reader, submitter
from orchestrator.server.errors import ApiError, forbidden
from orchestrator.services import ArtifactInfo, JobInfo, ValidationInfo

router = APIRouter(prefix="/jobs", tags=["jobs"])

SUBMIT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "The model (a torch.export .pt2 file) as a multipart `model` file part with the other "
            "fields as form fields, or as the raw body with the fields in the query string."
        ),
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["model", "arch"],
                    "properties": {
                        "model": {"type": "string", "format": "binary"},
                        "arch": {"type": "array", "items": {"type": "string"}},
                        "device_class": {"type": "string"},
                        "spec": {"type": "string", "description": "compile spec, YAML or JSON"},
                        "backend": {"type": "string"},
                        "precision": {"type": "string"},
                        "name": {"type": "string"},
                        "validation_data": {
                            "type": "string",
                            "format": "binary",
                            "description": "validation data, .safetensors or .npz (the file name's suffix says which)",
                        },
                        "calibration_data": {
                            "type": "string",
                            "format": "binary",
                            "description": "int8 calibration data, .safetensors or .npz",
                        },
                    },
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "parameters": [
        {"name": key, "in": "query", "required": False, "schema": {"type": "string"},
         "description": f"raw-body form only: {what}"}
        for key, what in (
            ("arch", "target architecture (repeat for several)"),
            ("device_class", "GPU class of the target"),
            ("spec", "compile spec, YAML or JSON"),
            ("backend", "overrides the spec"),
            ("precision", "overrides the spec"),
            ("name", "model name shown in listings"),
            ("filename", "the model's file name (its default name)"),
        )
    ],
}


def parse_spec_text(text: str | None, max_bytes: int) -> dict[str, Any] | None:
    """A spec sent as YAML or JSON text (JSON is YAML), as the mapping ``resolve_spec`` takes."""
    if text is None or not text.strip():
        return None
    if len(text.encode("utf-8")) >= max_bytes:
        raise services.InvalidRequestError(
            f"the spec is at or over the limit of {max_bytes} bytes (ORCHESTRATE_MAX_SPEC_BYTES)"
        )
    import yaml

    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise services.InvalidRequestError(f"spec: not valid YAML or JSON: {exc}") from None
    except RecursionError:
        raise services.InvalidRequestError("spec: nested too deeply") from None
    if data is None:
        return None
    if not isinstance(data, dict):
        raise services.InvalidRequestError("spec: must be a mapping of keys (backend, inputs, ...)")
    return data


def _submit(farm: services.Farm, received: upload.Upload, user: str) -> services.Submission:
    targets = services.resolve_targets(received.all("arch"), received.first("device_class"))
    spec = services.resolve_spec(
        parse_spec_text(received.first("spec"), farm.settings.max_spec_bytes),
        backend=received.first("backend"),
        precision=received.first("precision"),
        max_bytes=farm.settings.max_spec_bytes,
    )
    assert received.path is not None
    data = {
        role: read_data(role, path, farm.settings.max_model_bytes, display=display)
        for role, (path, display) in received.data.items()
    }
    return services.submit(
        farm,
        received.path,
        targets,
        spec,
        name=received.first("name"),
        submitted_by=user,
        validation_data=data.get("validation"),
        calibration_data=data.get("calibration"),
    )


@router.post("", status_code=201, openapi_extra=SUBMIT_BODY, summary="Submit a model")
async def submit(request: Request, caller: Caller = Depends(submitter)) -> JSONResponse:
    """Queue a build per target; targets already built are answered from the cache."""
    farm = farm_of(request)
    # locked while in use, so a sweep never takes it; removed by the next sweep if the server is killed
    from compiler.scratch import scratch_folder

    with scratch_folder("orchestrate-upload-") as folder:
        received = await upload.receive(
            request, folder, farm.settings.max_model_bytes, farm.settings.max_spec_bytes
        )
        submission = await run_in_threadpool(_submit, farm, received, caller.user)
    return JSONResponse(submission.to_dict(), status_code=201)


@router.get("", summary="List jobs")
def list_jobs(
    request: Request,
    state: str | None = None,
    arch: str | None = None,
    model: str | None = None,
    target: str | None = Query(None, description="one target exactly: `x86_64`, `aarch64/orin`"),
    backend: str | None = None,
    submitted_by: str | None = None,
    limit: int = Query(50, ge=1, le=10_000),
    offset: int = Query(0, ge=0, le=10_000_000),
    caller: Caller = Depends(reader),
) -> dict[str, list[JobInfo]]:
    """Jobs matching every filter, newest first."""
    found = services.list_jobs(
        farm_of(request),
        state=state,
        arch=arch,
        model=model,
        target=target,
        backend=backend,
        submitted_by=submitted_by,
        limit=limit,
        offset=offset,
    )
    return {"jobs": found}


@router.get("/{job_id}", summary="Show a job", response_model=JobInfo)
def get_job(request: Request, job_id: str, caller: Caller = Depends(reader)) -> JSONResponse:
    """A job by id or unique prefix."""
    # The hottest route (every `status` and every poll): the dataclass is already plain data,
    # so it is sent as it is instead of being validated again against its own schema.
    return JSONResponse(services.get_job(farm_of(request), job_id).to_dict())


#: How often a long-poll reads the job again.
WAIT_POLL_INTERVAL = 0.25


@router.get("/{job_id}/wait", summary="Wait for a job (long-poll)")
async def wait(
    request: Request,
    job_id: str,
    timeout: float = Query(30.0, ge=0, description="seconds; capped at ORCHESTRATE_API_MAX_WAIT"),
    since: str | None = Query(
        None,
        description="`STATE` or `STATE/PHASE` the caller last saw: answer as soon as the job's "
        "state or phase differs from it, as well as when it is final",
    ),
    caller: Caller = Depends(reader),
) -> JobInfo:
    """The job once it is final, or as it is when ``timeout`` runs out (check ``state``); with
    ``since``, also as soon as its state or phase is no longer the one the caller last saw."""
    # The loop sleeps on the event loop, not in a thread: a thousand waiting clients hold no
    # threads, and the status requests beside them still find one free.
    farm = farm_of(request)
    deadline = time.monotonic() + min(timeout, farm.settings.api_max_wait)
    job = await run_in_threadpool(services.get_job, farm, job_id)
    while not job.is_final and (since is None or since == progress_mark(job)):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or await request.is_disconnected():
            break
        await asyncio.sleep(min(WAIT_POLL_INTERVAL, remaining))
        job = await run_in_threadpool(services.get_job, farm, job.id)
    return job


def progress_mark(job: JobInfo) -> str:
    """What ``wait?since=`` compares: ``state`` or ``state/phase``."""
    return f"{job.state}/{job.phase}" if job.phase else job.state


def _controlled(request: Request, job_id: str, caller: Caller) -> JobInfo:
    job = services.get_job(farm_of(request), job_id)
    if not caller.may_control(job):
        raise forbidden("a submit token may cancel and retry only its own jobs; this needs admin")
    return job


@router.post("/{job_id}/cancel", summary="Cancel a job")
def cancel(request: Request, job_id: str, caller: Caller = Depends(submitter)) -> JobInfo:
    """Your own job with a submit token, any job with admin."""
    job = _controlled(request, job_id, caller)
    return services.cancel(farm_of(request), job.id)


@router.post("/{job_id}/retry", summary="Retry a failed or cancelled job")
def retry(request: Request, job_id: str, caller: Caller = Depends(submitter)) -> JobInfo:
    """Your own job with a submit token, any job with admin."""
    job = _controlled(request, job_id, caller)
    return services.retry(farm_of(request), job.id)


@router.get("/{job_id}/artifact", summary="The artifact a job built")
def job_artifact(request: Request, job_id: str, caller: Caller = Depends(reader)) -> ArtifactInfo:
    artifact = services.job_artifact(farm_of(request), job_id)
    if artifact is None:
        raise ApiError(404, "not_found", f"job {job_id} has no artifact (yet)")
    return artifact


@router.get("/{job_id}/results", summary="Validation results of a job")
def job_results(request: Request, job_id: str, caller: Caller = Depends(reader)) -> dict[str, list[ValidationInfo]]:
    farm = farm_of(request)
    job = services.get_job(farm, job_id)
    return {"results": services.results(farm, job.id)}
