"""``/api/v1/artifacts``: list, show, download (streamed, sha256 in a header), results."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from orchestrator import services
from orchestrator.server.auth import Caller, farm_of, reader
from orchestrator.services import (
    ArtifactInfo,
    InvalidRequestError,
    UnreachableError,
    ValidationInfo,
)
from orchestrator.settings import redact

if TYPE_CHECKING:
    from compiler.identity import DeviceIdentity

router = APIRouter(prefix="/artifacts", tags=["artifacts"])

#: The header that carries the sha256 of a download (the client checks it).
SHA256_HEADER = "X-Orchestrate-SHA256"
CHUNK_BYTES = 1024 * 1024


@router.get("", summary="List artifacts")
def list_artifacts(
    request: Request,
    model: str | None = None,
    arch: str | None = None,
    device_class: str | None = None,
    backend: str | None = None,
    precision: str | None = None,
    limit: int = Query(50, ge=1, le=10_000),
    runs_on: str | None = Query(
        None,
        description="JSON of a DeviceIdentity (compiler.local_identity().to_dict()): only "
        "artifacts whose engines can run on that machine",
    ),
    caller: Caller = Depends(reader),
) -> dict[str, list[ArtifactInfo]]:
    """Artifacts matching every filter, newest first."""
    found = services.list_artifacts(
        farm_of(request),
        model=model,
        arch=arch,
        device_class=device_class,
        backend=backend,
        precision=precision,
        limit=limit,
        runs_on=_identity(runs_on),
    )
    return {"artifacts": found}


def _identity(text: str | None) -> DeviceIdentity | None:
    if text is None:
        return None
    from compiler.identity import DeviceIdentity

    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("not an object")
        # Every field is text (versions, names) or unknown; other types would fail later.
        if not isinstance(data.get("arch"), str) or not all(
            value is None or isinstance(value, str) for key, value in data.items() if key != "extra"
        ) or not isinstance(data.get("extra", {}), dict):
            raise TypeError("every field is a string or null (extra: an object), and arch is given")
        identity = DeviceIdentity.from_dict(data)
        identity.device_class  # noqa: B018 - derived from the fields: raises on bad values
        return identity
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidRequestError(f"runs_on: not a device identity: {exc}") from None


@router.get("/{artifact_id}", summary="Show an artifact")
def get_artifact(request: Request, artifact_id: str, caller: Caller = Depends(reader)) -> ArtifactInfo:
    return services.get_artifact(farm_of(request), artifact_id)


@router.get("/{artifact_id}/results", summary="Validation results of an artifact")
def artifact_results(
    request: Request, artifact_id: str, caller: Caller = Depends(reader)
) -> dict[str, list[ValidationInfo]]:
    farm = farm_of(request)
    artifact = services.get_artifact(farm, artifact_id)
    return {"results": services.results(farm, artifact.id)}


@router.get(
    "/{artifact_id}/download",
    summary="Download an engine package",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download(request: Request, artifact_id: str, caller: Caller = Depends(reader)) -> StreamingResponse:
    """The engine package, streamed; its sha256 is in the ``X-Orchestrate-SHA256`` header. A
    stored object that does not match it ends the stream early (the client sees a short read)."""
    return stream_artifact(farm_of(request), artifact_id)


def stream_artifact(farm: services.Farm, artifact_id: str) -> StreamingResponse:
    """An artifact's engine package as a streamed response (the API's and the dashboard's
    download), checked against its sha256 and size as it goes."""
    from orchestrator.store import ArtifactStoreError

    artifact = services.get_artifact(farm, artifact_id)
    try:
        # The store is content-addressed: the hash names the object.
        stream = farm.store.open(artifact.sha256)
    except ArtifactStoreError as exc:
        raise UnreachableError(
            f"cannot read artifact {artifact.id} from {redact(farm.settings.artifact_store)}: {exc}"
        ) from None

    def chunks() -> Iterator[bytes]:
        digest = hashlib.sha256()
        size = 0
        try:
            for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
                digest.update(chunk)
                size += len(chunk)
                yield chunk
        finally:
            stream.close()
        if digest.hexdigest() != artifact.sha256 or size != artifact.size_bytes:
            raise RuntimeError(f"artifact {artifact.id}: stored object does not match its sha256")

    name = services.download_file_name(artifact)
    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={
            SHA256_HEADER: artifact.sha256,
            "Content-Length": str(artifact.size_bytes),
            "ETag": f'"{artifact.sha256}"',
            "Content-Disposition": f'attachment; filename="{name}"',
        },
    )
