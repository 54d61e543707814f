"""The farm through its API server: what the CLI uses when ``ORCHESTRATE_API_URL`` and
``ORCHESTRATE_TOKEN`` are set.

Each method answers what the :mod:`orchestrator.services` function of the same name answers
(the same ``JobInfo`` objects, the same ``FarmError`` classes with the same exit codes), so a
command prints and exits the same way in both modes.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

from orchestrator import services
from orchestrator.datasets import DataUpload
from orchestrator.services import (
    ArtifactInfo,
    FarmError,
    InvalidRequestError,
    InvalidStateError,
    JobInfo,
    NotFoundError,
    Submission,
    UnreachableError,
    ValidationInfo,
    WorkerInfo,
)
from orchestrator.settings import redact

if TYPE_CHECKING:
    from compiler.identity import DeviceIdentity
    from orchestrator.compare import ModelComparison
    from orchestrator.fleet import WorkerStatus

API_URL_ENV = "ORCHESTRATE_API_URL"
TOKEN_ENV = "ORCHESTRATE_TOKEN"
#: The longest one long-poll asks the server to hold (the server caps it, too).
LONG_POLL = 30.0

_KINDS: dict[str, type[FarmError]] = {
    "not_found": NotFoundError,
    "invalid_state": InvalidStateError,
    "invalid_request": InvalidRequestError,
    "too_large": InvalidRequestError,
    "unauthenticated": InvalidRequestError,
    "forbidden": InvalidRequestError,
    "unreachable": UnreachableError,
    "no_worker": UnreachableError,
    "rate_limited": UnreachableError,
}


class RemoteError(FarmError):
    """An error the server reported whose kind has no class here; keeps the server's exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def from_env(environ: Mapping[str, str] | None = None) -> RemoteFarm | None:
    """The server named by the environment, or None (direct mode) when it names none."""
    environ = os.environ if environ is None else environ
    url = (environ.get(API_URL_ENV) or "").strip()
    if not url:
        return None
    token = (environ.get(TOKEN_ENV) or "").strip()
    if not token:
        raise InvalidRequestError(
            f"{API_URL_ENV} is set but {TOKEN_ENV} is not: ask an admin for a token "
            "(`orchestrate tokens create`)"
        )
    return RemoteFarm(url, token)


class RemoteFarm:
    def __init__(self, url: str, token: str, timeout: float = 60.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout, read=LONG_POLL + timeout),
        )

    def close(self) -> None:
        self.http.close()

    # -- transport -----------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise UnreachableError(f"cannot reach the API server at {redact(self.url)}: {exc}") from None
        if response.status_code < 400:
            return response.json()
        self._raise(response)

    def _raise(self, response: Any) -> NoReturn:
        try:
            error = response.json()["error"]
            kind, message, exit_code = str(error["kind"]), str(error["message"]), int(error["exit_code"])
        except (ValueError, KeyError, TypeError):
            raise RemoteError(
                f"the API server at {redact(self.url)} answered {response.status_code}", 1
            ) from None
        cls = _KINDS.get(kind)
        if cls is not None and cls.exit_code == exit_code:
            raise cls(message)
        raise RemoteError(message, exit_code)

    # -- the services ----------------------------------------------------------------------
    def get_job(self, ref: str) -> JobInfo:
        return JobInfo(**self._call("GET", f"/jobs/{_segment(ref)}"))

    def list_jobs(
        self, *, state: str | None = None, arch: str | None = None, model: str | None = None, limit: int = 50
    ) -> list[JobInfo]:
        params = {k: v for k, v in (("state", state), ("arch", arch), ("model", model)) if v is not None}
        data = self._call("GET", "/jobs", params={**params, "limit": limit})
        return [JobInfo(**job) for job in data["jobs"]]

    def submit(
        self,
        model: str | Path | bytes,
        archs: list[str],
        spec_json: str,
        *,
        device_class: str | None = None,
        name: str | None = None,
        data_files: Mapping[str, str | Path | DataUpload] | None = None,
    ) -> Submission:
        """Upload ``model`` (a file, streamed from disk, or its bytes) with a resolved spec, as
        JSON, and the ``data_files`` by role ("validation", "calibration": a file, streamed,
        or data read in memory) as the ``validation_data``/``calibration_data`` parts."""
        fields: dict[str, Any] = {"arch": archs, "spec": spec_json}
        if device_class:
            fields["device_class"] = device_class
        if name is not None:
            fields["name"] = name
        with contextlib.ExitStack() as streams:
            files: dict[str, tuple[str, Any]] = {}
            if isinstance(model, bytes):
                # Named as services.read_model names bytes: the model's default name is "model".
                files["model"] = ("model.pt2", model)
            else:
                files["model"] = (Path(model).name, streams.enter_context(_open(Path(model), "model file")))
            for role, source in (data_files or {}).items():
                if isinstance(source, DataUpload):
                    files[f"{role}_data"] = (f"{role}.{source.format}", source.data)
                else:
                    path = Path(source)
                    files[f"{role}_data"] = (path.name, streams.enter_context(_open(path, f"--{role}-data")))
            data = self._call("POST", "/jobs", files=files, data=fields)
        return Submission(jobs=[JobInfo(**job) for job in data["jobs"]], warnings=list(data["warnings"]))

    def cancel(self, ref: str) -> JobInfo:
        return JobInfo(**self._call("POST", f"/jobs/{_segment(ref)}/cancel"))

    def retry(self, ref: str) -> JobInfo:
        return JobInfo(**self._call("POST", f"/jobs/{_segment(ref)}/retry"))

    def list_artifacts(
        self,
        *,
        model: str | None = None,
        arch: str | None = None,
        device_class: str | None = None,
        backend: str | None = None,
        precision: str | None = None,
        limit: int = 50,
        runs_on: DeviceIdentity | None = None,
    ) -> list[ArtifactInfo]:
        given = (("model", model), ("arch", arch), ("device_class", device_class), ("backend", backend), ("precision", precision))
        params: dict[str, Any] = {k: v for k, v in given if v is not None}
        params["limit"] = limit
        if runs_on is not None:
            params["runs_on"] = json.dumps(runs_on.to_dict())
        return [ArtifactInfo(**a) for a in self._call("GET", "/artifacts", params=params)["artifacts"]]

    def get_artifact(self, ref: str) -> ArtifactInfo:
        return ArtifactInfo(**self._call("GET", f"/artifacts/{_segment(ref)}"))

    def results(self, ref: str) -> list[ValidationInfo]:
        return [ValidationInfo(**row) for row in self._call("GET", f"/results/{_segment(ref)}")["results"]]

    def download_artifact(
        self,
        ref: str,
        dest: str | Path,
        *,
        overwrite: bool = False,
        force: bool = False,
        here: DeviceIdentity | None = None,
        allow_rejected: bool = False,
    ) -> Path:
        """As ``services.download_artifact``: refused when the accuracy gate rejected it unless
        ``allow_rejected``, and when it cannot run on ``here`` (this machine) unless ``force``;
        streamed into a temporary file, checked against the sha256 and size the farm recorded,
        then renamed into place."""
        import httpx

        from orchestrator.store import ArtifactCorruptError, DestinationError, save_verified

        artifact = self.get_artifact(ref)
        services.refuse_to_hand_out(artifact, here=here, force=force, allow_rejected=allow_rejected)
        target = Path(dest)
        if target.is_dir():
            target = target / services.download_file_name(artifact)
        elif not target.parent.is_dir():
            raise InvalidRequestError(f"cannot write {target}: the folder {target.parent} does not exist")
        try:
            with self.http.stream("GET", f"/artifacts/{artifact.id}/download") as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise(response)
                return save_verified(
                    response.iter_bytes(),
                    target,
                    artifact.sha256,
                    overwrite=overwrite,
                    expected_size=artifact.size_bytes,
                    label=f"artifact {artifact.id}",
                )
        except DestinationError as exc:
            raise InvalidRequestError(str(exc)) from None
        except ArtifactCorruptError as exc:
            raise FarmError(f"artifact {artifact.id}: {exc}") from None
        except httpx.TransportError as exc:
            raise UnreachableError(
                f"downloading artifact {artifact.id} from {redact(self.url)} failed: {exc}"
            ) from None
        except OSError as exc:
            raise InvalidRequestError(f"cannot write {target}: {exc.strerror or exc}") from None

    def compare(self, model: str, *, limit: int = 50, offset: int = 0) -> ModelComparison:
        from orchestrator.compare import ModelComparison

        data = self._call("GET", f"/compare/{_segment(model)}", params={"limit": limit, "offset": offset})
        return ModelComparison.from_dict(data)

    def list_workers(self, *, include_offline: bool = True) -> list[WorkerInfo]:
        data = self._call("GET", "/workers", params={"include_offline": include_offline})
        return [WorkerInfo(**worker) for worker in data["workers"]]

    def worker_statuses(self, *, include_offline: bool = False) -> list[WorkerStatus]:
        from orchestrator.fleet import CurrentJob, WorkerStatus

        data = self._call("GET", "/fleet", params={"include_offline": include_offline})
        return [
            WorkerStatus(**{**w, "current_jobs": [CurrentJob(**j) for j in w["current_jobs"]]})
            for w in data["workers"]
        ]

    def wait(
        self,
        ref: str,
        *,
        timeout: float | None = None,
        on_change: Callable[[JobInfo], None] | None = None,
    ) -> JobInfo:
        """As ``services.wait``: long-polls until the job is final or ``timeout`` runs out."""
        services.check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        job = self.get_job(ref)
        seen: tuple[str, str | None] | None = None
        next_worker_check = time.monotonic()
        while True:
            if on_change is not None and (job.state, job.phase) != seen:
                seen = (job.state, job.phase)
                on_change(job)
            if job.is_final:
                return job
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise services.WaitTimeoutError(job, timeout or 0.0)
            if deadline is None and job.state == "queued" and time.monotonic() >= next_worker_check:
                next_worker_check = time.monotonic() + services.NO_WORKER_CHECK_INTERVAL
                if not any(w.live and job.queue in w.queues for w in self.list_workers()):
                    job = self.get_job(job.id)
                    if job.state == "queued":
                        raise services.NoWorkerError(job)
                    continue
            # The server answers at the first change of state or phase, so progress shows as
            # it happens; without a deadline, often enough to ask whether a worker is left.
            hold = min(LONG_POLL, services.NO_WORKER_CHECK_INTERVAL if remaining is None else remaining)
            params = {"timeout": hold, "since": f"{job.state}/{job.phase}" if job.phase else job.state}
            job = JobInfo(**self._call("GET", f"/jobs/{job.id}/wait", params=params))


def _open(path: Path, what: str) -> IO[bytes]:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise InvalidRequestError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise InvalidRequestError(f"cannot read {what} {path}: {exc.strerror}") from None


def _segment(ref: str) -> str:
    from urllib.parse import quote

    return quote(ref, safe="")


class DirectFarm:
    """The same methods as :class:`RemoteFarm`, straight through the services (direct mode)."""

    def __init__(self, farm: services.Farm) -> None:
        self.farm = farm

    def get_job(self, ref: str) -> JobInfo:
        return services.get_job(self.farm, ref)

    def list_jobs(
        self, *, state: str | None = None, arch: str | None = None, model: str | None = None, limit: int = 50
    ) -> list[JobInfo]:
        return services.list_jobs(self.farm, state=state, arch=arch, model=model, limit=limit)

    def wait(
        self,
        ref: str,
        *,
        timeout: float | None = None,
        on_change: Callable[[JobInfo], None] | None = None,
    ) -> JobInfo:
        return services.wait(self.farm, ref, timeout=timeout, on_change=on_change)

    def cancel(self, ref: str) -> JobInfo:
        return services.cancel(self.farm, ref)

    def retry(self, ref: str) -> JobInfo:
        return services.retry(self.farm, ref)

    def list_artifacts(self, **filters: Any) -> list[ArtifactInfo]:
        return services.list_artifacts(self.farm, **filters)

    def get_artifact(self, ref: str) -> ArtifactInfo:
        return services.get_artifact(self.farm, ref)

    def results(self, ref: str) -> list[ValidationInfo]:
        return services.results(self.farm, ref)

    def download_artifact(self, ref: str, dest: str | Path, **options: Any) -> Path:
        return services.download_artifact(self.farm, ref, dest, **options)

    def compare(self, model: str, *, limit: int = 50, offset: int = 0) -> ModelComparison:
        from orchestrator.compare import model_comparison

        return model_comparison(self.farm, model, limit=limit, offset=offset)

    def list_workers(self, *, include_offline: bool = True) -> list[WorkerInfo]:
        return services.list_workers(self.farm, include_offline=include_offline)

    def worker_statuses(self, *, include_offline: bool = False) -> list[WorkerStatus]:
        from orchestrator.fleet import worker_statuses

        return worker_statuses(self.farm, include_offline=include_offline)
