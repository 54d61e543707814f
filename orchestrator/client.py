"""The Python client: what the CLI does, for notebooks and CI pipelines.

>>> import orchestrator
>>> job = orchestrator.submit("resnet.pt2", arch="aarch64")
>>> job.wait().state
'succeeded'
>>> job.download("resnet.aarch64.engine.pt2")

Every call goes through :mod:`orchestrator.services`, exactly as ``orchestrate`` does, so both
see the same validation, cache and errors (``orchestrator.FarmError`` and its subclasses).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from orchestrator import services
from orchestrator.datasets import DataSource, DataUpload, read_data
from orchestrator.remote import DirectFarm, RemoteFarm
from orchestrator.remote import from_env as remote_from_env
from orchestrator.services import (
    ArtifactInfo,
    Farm,
    JobInfo,
    ValidationInfo,
    WorkerInfo,
)
from orchestrator.settings import Settings

if TYPE_CHECKING:
    from compiler.identity import DeviceIdentity
    from orchestrator.compare import Comparison


class JobHandle:
    """A submitted job. Cheap to create; every method asks the farm for the current state."""

    def __init__(self, client: Client, job_id: str, warnings: Sequence[str] = ()) -> None:
        self.client = client
        self.id = job_id
        #: What the farm said at submission (e.g. that no live worker serves the target).
        self.warnings = list(warnings)

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r})"

    def status(self) -> JobInfo:
        return self.client.api.get_job(self.id)

    def wait(
        self,
        timeout: float | None = None,
        *,
        raise_on_failure: bool = True,
        on_change: Callable[[JobInfo], None] | None = None,
        poll_interval: float = 0.25,
    ) -> JobInfo:
        """Block until the job finishes; raises JobFailedError/JobCancelledError unless told not to."""
        if isinstance(self.client.api, RemoteFarm):
            # The server long-polls; there is no interval to choose.
            job = self.client.api.wait(self.id, timeout=timeout, on_change=on_change)
        else:
            job = services.wait(
                self.client.farm, self.id, timeout=timeout, poll_interval=poll_interval, on_change=on_change
            )
        return services.raise_for_outcome(job) if raise_on_failure else job

    def artifact(self) -> ArtifactInfo | None:
        """The engine artifact, once the job succeeded (None before)."""
        job = self.status()
        return self.client.api.get_artifact(job.artifact_id) if job.artifact_id else None

    def results(self) -> list[ValidationInfo]:
        return self.client.api.results(self.id)

    def download(self, path: str | Path, *, overwrite: bool = False, force: bool = False) -> Path:
        """Save the engine package to ``path`` (verified against its sha256); an existing
        file is replaced only with ``overwrite``; an engine that cannot run on this machine
        raises IncompatibleArtifactError unless ``force``."""
        artifact = self.artifact()
        if artifact is None:
            job = self.status()
            raise services.InvalidStateError(
                f"job {job.id} is {job.state} and has no artifact yet; call .wait() first"
            )
        return self.client.api.download_artifact(artifact.id, path, overwrite=overwrite, force=force)

    def cancel(self) -> JobInfo:
        return self.client.api.cancel(self.id)

    def retry(self) -> JobInfo:
        return self.client.api.retry(self.id)


class Client:
    """A connection to one farm (default: the settings from the environment).

    With ``api_url`` and ``token`` (default: ORCHESTRATE_API_URL and ORCHESTRATE_TOKEN, unless
    ``settings`` or ``farm`` is given), every call goes through that API server instead."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        farm: Farm | None = None,
        eager: bool = False,
        api_url: str | None = None,
        token: str | None = None,
    ) -> None:
        self._farm = farm
        self._settings = settings
        self._eager = eager
        self._api: DirectFarm | RemoteFarm | None = None
        if api_url is not None:
            self._api = RemoteFarm(api_url, token or "")
        elif farm is None and settings is None and not eager:
            self._api = remote_from_env()

    @property
    def api(self) -> DirectFarm | RemoteFarm:
        """What the calls go through: the API server, or the services on ``farm``."""
        if self._api is None:
            self._api = DirectFarm(self.farm)
        return self._api

    @property
    def farm(self) -> Farm:
        if self._farm is None:
            self._farm = Farm(self._settings, eager=self._eager)
        return self._farm

    @overload
    def submit(
        self,
        model: Any,
        arch: str | None = None,
        *,
        device_class: str | None = None,
        spec: Any = None,
        backend: str | None = None,
        precision: str | None = None,
        name: str | None = None,
        validation_data: DataSource | None = None,
        calibration_data: DataSource | None = None,
    ) -> JobHandle: ...

    @overload
    def submit(
        self,
        model: Any,
        arch: Sequence[str],
        *,
        device_class: str | None = None,
        spec: Any = None,
        backend: str | None = None,
        precision: str | None = None,
        name: str | None = None,
        validation_data: DataSource | None = None,
        calibration_data: DataSource | None = None,
    ) -> list[JobHandle]: ...

    def submit(
        self,
        model: Any,
        arch: str | Sequence[str] | None = None,
        *,
        device_class: str | None = None,
        spec: Any = None,
        backend: str | None = None,
        precision: str | None = None,
        name: str | None = None,
        validation_data: DataSource | None = None,
        calibration_data: DataSource | None = None,
    ) -> JobHandle | list[JobHandle]:
        """Submit ``model`` (a .pt2 path, its bytes, or an ExportedProgram) for ``arch``.

        One architecture gives one handle; a list of them fans out and gives a list. ``arch``
        defaults to this machine's. ``spec`` is a CompileSpec, a mapping or a YAML file;
        ``backend``/``precision`` override its keys. ``validation_data`` and
        ``calibration_data`` (as in ``compiler.compile``: a .safetensors/.npz path, or a
        mapping of input name to a batch of rows, with optional ``labels``) are checked against
        the model's inputs before anything is queued.
        """
        archs = [_local_arch()] if arch is None else [arch] if isinstance(arch, str) else list(arch)
        targets = services.resolve_targets(archs, device_class)
        data = _model_bytes(model)
        if isinstance(self.api, RemoteFarm):
            resolved = services.resolve_spec(spec, backend=backend, precision=precision)
            files: dict[str, str | Path | DataUpload] = {}
            for role, source in (("validation", validation_data), ("calibration", calibration_data)):
                if isinstance(source, Mapping):
                    # serialised here; the server checks it as it checks a file
                    files[role] = read_data(role, source, max_bytes=2**63)
                elif source is not None:
                    files[role] = source
            submission = self.api.submit(
                data, [t.arch for t in targets], resolved.canonical_json(), device_class=device_class, name=name,
                data_files=files,
            )
        else:
            resolved = services.resolve_spec(
                spec, backend=backend, precision=precision, max_bytes=self.farm.settings.max_spec_bytes
            )
            submission = services.submit(
                self.farm, data, targets, resolved, name=name,
                validation_data=validation_data, calibration_data=calibration_data,
            )
        handles = [JobHandle(self, job.id, submission.warnings) for job in submission.jobs]
        return handles[0] if isinstance(arch, str) or arch is None else handles

    def job(self, job_id: str) -> JobHandle:
        return JobHandle(self, self.api.get_job(job_id).id)

    def jobs(
        self,
        *,
        state: str | None = None,
        arch: str | None = None,
        model: str | None = None,
        limit: int = 50,
    ) -> list[JobInfo]:
        return self.api.list_jobs(state=state, arch=arch, model=model, limit=limit)

    def artifacts(
        self,
        *,
        model: str | None = None,
        arch: str | None = None,
        device_class: str | None = None,
        backend: str | None = None,
        precision: str | None = None,
        limit: int = 50,
        runs_here: bool = False,
    ) -> list[ArtifactInfo]:
        """Artifacts matching every filter, newest first; ``runs_here``: only those whose
        engines can run on this machine."""
        return self.api.list_artifacts(
            model=model,
            arch=arch,
            device_class=device_class,
            backend=backend,
            precision=precision,
            limit=limit,
            runs_on=_local_identity() if runs_here else None,
        )

    def artifact(self, artifact_id: str) -> ArtifactInfo:
        return self.api.get_artifact(artifact_id)

    def download(self, artifact_id: str, path: str | Path, *, overwrite: bool = False, force: bool = False) -> Path:
        """Save an artifact's engine package to ``path``; an existing file is replaced only with
        ``overwrite``; an engine that cannot run on this machine raises
        IncompatibleArtifactError (with the reason) unless ``force``."""
        return self.api.download_artifact(artifact_id, path, overwrite=overwrite, force=force)

    def incompatibility(self, artifact_id: str) -> list[str]:
        """Why the artifact's engines cannot run on this machine; empty when they can."""
        return self.api.get_artifact(artifact_id).problems_on(_local_identity())

    def results(self, job_or_artifact_id: str) -> list[ValidationInfo]:
        return self.api.results(job_or_artifact_id)

    def compare(self, model: str, *, limit: int = 50) -> list[Comparison]:
        """Every artifact of ``model`` side by side (``orchestrate compare``)."""
        from orchestrator.compare import compare

        return compare(self.api, model, limit=limit)

    def workers(self, *, include_offline: bool = True) -> list[WorkerInfo]:
        return self.api.list_workers(include_offline=include_offline)


def _local_identity() -> DeviceIdentity:
    import compiler

    return compiler.local_identity()


def _local_arch() -> str:
    from workers.capabilities import detect_arch

    return detect_arch()


def _model_bytes(model: Any) -> str | Path | bytes:
    """A path or bytes for services.submit; an in-memory program is serialised here."""
    if isinstance(model, str | Path | bytes | bytearray):
        return bytes(model) if isinstance(model, bytearray) else model
    import torch

    if isinstance(model, torch.export.ExportedProgram):
        buffer = io.BytesIO()
        torch.export.save(model, buffer)
        return buffer.getvalue()
    raise services.InvalidRequestError(
        f"cannot submit a {type(model).__name__}: give a .pt2 path, its bytes, or a "
        "torch.export.ExportedProgram (export an nn.Module with torch.export.export first)"
    )


_default: Client | None = None


def default_client() -> Client:
    """The client of the environment's settings, created on first use."""
    global _default
    if _default is None:
        _default = Client()
    return _default


@overload
def submit(model: Any, arch: str | None = None, **options: Any) -> JobHandle: ...
@overload
def submit(model: Any, arch: Sequence[str], **options: Any) -> list[JobHandle]: ...
def submit(model: Any, arch: str | Sequence[str] | None = None, **options: Any) -> JobHandle | list[JobHandle]:
    """``Client().submit`` on the environment's farm (see :meth:`Client.submit`)."""
    return default_client().submit(model, arch, **options)


def job(job_id: str) -> JobHandle:
    return default_client().job(job_id)
