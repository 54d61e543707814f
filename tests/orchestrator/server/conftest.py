"""A running API server (uvicorn in a thread, 127.0.0.1, free port) on an embedded farm, and
tokens of every role. Nothing consumes the farm's queue: submitted jobs stay queued."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from orchestrator import models as m
from orchestrator import tokens
from orchestrator.server import create_app
from orchestrator.server.testing import ServerThread
from orchestrator.services import Farm
from orchestrator.testing import embedded_settings

#: Small enough that a test can send more; large enough for the streamed-upload model.
MAX_MODEL_BYTES = 1024 * 1024


@dataclass
class Api:
    url: str
    farm: Farm
    secrets: dict[str, str]  # role or user -> token secret
    token_ids: dict[str, str]

    def client(self, who: str | None = "alice", **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.secrets[who]}"} if who else {}
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    home = tmp_path_factory.mktemp("api-farm")
    # No token cache: a revocation must show on the very next request here.
    farm = Farm(
        embedded_settings(home, max_model_bytes=MAX_MODEL_BYTES, api_rate_limit=0, api_token_cache_seconds=0)
    )
    secrets: dict[str, str] = {}
    ids: dict[str, str] = {}
    for who, user, role in (
        ("reader", "rita", "read"),
        ("alice", "alice", "submit"),
        ("bob", "bob", "submit"),
        ("admin", "ada", "admin"),
        ("revoked", "rex", "admin"),
    ):
        new = tokens.create_token(farm, user, role)
        secrets[who], ids[who] = new.secret, new.info.id
    tokens.revoke_token(farm, ids["revoked"])
    with ServerThread(create_app(farm)) as server:
        yield Api(server.url, farm, secrets, ids)


def upload(client: httpx.Client, model: Path, **fields: str | list[str]) -> httpx.Response:
    data = {"arch": "x86_64", **fields}
    with model.open("rb") as stream:
        return client.post("/jobs", files={"model": (model.name, stream)}, data=data)


def seed_artifact(farm: Farm, job_id: str, payload: bytes) -> str:
    """Mark ``job_id`` succeeded with an artifact whose engine package is ``payload``, and one
    validation result; returns the artifact id. Its backend version matches no worker's, so
    later submissions are not answered from it."""
    stored = farm.store.put_bytes(payload)
    with farm.session() as session:
        job = session.get(m.Job, job_id)
        assert job is not None
        key = m.build_key(
            model_sha256=job.model.sha256,
            spec_sha256=job.spec.sha256,
            backend=job.backend,
            backend_version="0.0-test",
            arch=job.arch,
            device_class=job.device_class,
        )
        artifact = m.Artifact(
            id=m.new_id(), job_id=job.id, model_id=job.model_id, spec_id=job.spec_id,
            backend=job.backend, backend_version="0.0-test", arch=job.arch, device_class=None,
            precision=job.precision, uri=stored.uri, sha256=stored.sha256,
            size_bytes=len(payload), build_key=key,
        )
        session.add(artifact)
        session.flush()
        session.add(m.ValidationResult(
            artifact_id=artifact.id, job_id=job.id, output_name="output_0", metric="max_abs_error",
            value=1e-6, threshold=1e-3, passed=True, seed=0,
        ))
        job.state = m.JobState.SUCCEEDED
        job.artifact_id = artifact.id
        job.finished_at = m.utcnow()
        return artifact.id
