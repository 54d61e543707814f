"""Handing out engines: download names, the checks before any byte moves, the verified
download itself, and re-hashing what the store holds against the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from orchestrator import models as m
from orchestrator.errors import (
    FarmError,
    IncompatibleArtifactError,
    InvalidRequestError,
    RejectedArtifactError,
    UnreachableError,
)
from orchestrator.queries import resolve_artifact
from orchestrator.settings import redact
from orchestrator.untrusted import file_name_part
from orchestrator.views import ArtifactInfo

if TYPE_CHECKING:
    from compiler.identity import DeviceIdentity
    from orchestrator.services import Farm


def download_file_name(artifact: ArtifactInfo) -> str:
    """The file name a download into a folder gets: made only of safe characters, whatever
    name the submitter chose (``../../x`` cannot leave the folder)."""
    return (
        f"{file_name_part(artifact.model_name)}.{file_name_part(artifact.target.replace('/', '.'))}"
        ".engine.pt2"
    )


def refuse_to_hand_out(
    artifact: ArtifactInfo, *, here: DeviceIdentity | None, force: bool, allow_rejected: bool
) -> None:
    """The checks every download makes, direct or through the server, before any byte moves:
    the accuracy gate's verdict (unless ``allow_rejected``), then whether it runs here (unless
    ``force``)."""
    if not allow_rejected:
        refuse_rejected(artifact)
    if not force:
        refuse_incompatible(artifact, here)


def refuse_rejected(artifact: ArtifactInfo) -> None:
    """Raise RejectedArtifactError for an engine the accuracy gate rejected."""
    if artifact.gate == "rejected":
        raise RejectedArtifactError(
            f"artifact {artifact.id[:12]} was rejected by the accuracy gate (see `orchestrate "
            f"results {artifact.id[:12]}`); download it anyway with --allow-rejected"
        )


def refuse_incompatible(artifact: ArtifactInfo, here: DeviceIdentity | None = None) -> None:
    """Raise IncompatibleArtifactError when ``artifact`` cannot run on ``here`` (default: this
    machine, the one asking: the CLI and client call the services in their own process)."""
    import compiler

    problems = artifact.problems_on(here or compiler.local_identity())
    if problems:
        raise IncompatibleArtifactError(
            f"artifact {artifact.id[:12]} ({artifact.backend} engine for {artifact.target}) cannot "
            f"run on this machine: {'; '.join(problems)}. Use an artifact built for this machine "
            "(`orchestrate artifacts list --runs-here`), or download it anyway with --force"
        )


def download_artifact(
    farm: Farm,
    ref: str,
    dest: str | Path,
    *,
    overwrite: bool = False,
    force: bool = False,
    here: DeviceIdentity | None = None,
    allow_rejected: bool = False,
) -> Path:
    """Copy an artifact's engine package to ``dest`` (a file, or a folder to put it in).

    An engine the accuracy gate rejected is refused unless ``allow_rejected``.

    An artifact that cannot run on ``here`` (this machine by default) is refused with the
    reason, before anything is downloaded, unless ``force``. The download is checked against
    the sha256 and size the database recorded, written to a temporary file in the same folder
    and renamed into place. ``dest`` must be a regular file or not exist; an existing file is
    replaced only with ``overwrite``."""
    from orchestrator.store import ArtifactCorruptError, ArtifactStoreError, DestinationError

    with farm.session() as session:
        row = resolve_artifact(session, ref)
        artifact = ArtifactInfo.of(row)
        uri = row.uri
    refuse_to_hand_out(artifact, here=here, force=force, allow_rejected=allow_rejected)
    target = Path(dest)
    if target.is_dir():
        folder = target
        target = folder / download_file_name(artifact)
        if target.parent != folder:  # pragma: no cover - download_file_name has no separators
            raise InvalidRequestError(f"refusing to write outside {folder}")
    elif not target.parent.is_dir():
        raise InvalidRequestError(f"cannot write {target}: the folder {target.parent} does not exist")
    try:
        farm.store.get_file(
            uri,
            target,
            expected_sha256=artifact.sha256,
            overwrite=overwrite,
            expected_size=artifact.size_bytes,
        )
    except DestinationError as exc:
        raise InvalidRequestError(str(exc)) from None
    except ArtifactCorruptError as exc:
        raise FarmError(f"artifact {artifact.id}: {exc}") from None
    except ArtifactStoreError as exc:
        raise UnreachableError(
            f"cannot read artifact {artifact.id} from {redact(farm.settings.artifact_store)}: {exc}"
        ) from None
    except OSError as exc:
        # The store's own failures are ArtifactStoreErrors: this one is about the local path.
        raise InvalidRequestError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


@dataclass(frozen=True)
class VerifyResult:
    """One stored object re-hashed against its database row; ``problem`` is None when intact."""

    kind: str  # "artifact" or "model"
    id: str
    uri: str
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def verify_objects(farm: Farm, refs: Sequence[str] = (), *, everything: bool = False) -> list[VerifyResult]:
    """Re-hash the store objects of the given artifacts (or, with ``everything``, of every
    artifact and model) against the sha256 and size the database recorded."""
    from orchestrator.store import ArtifactStoreError

    if not refs and not everything:
        raise InvalidRequestError("name the artifacts to verify, or pass --all")
    with farm.session() as session:
        if everything:
            artifacts = list(session.scalars(select(m.Artifact).order_by(m.Artifact.created_at)).unique())
            model_rows = list(session.scalars(select(m.Model)))
        else:
            artifacts = [resolve_artifact(session, ref) for ref in refs]
            model_rows = []
        work = [("artifact", a.id, a.uri, a.sha256, a.size_bytes) for a in artifacts]
        work += [("model", r.id, r.uri, r.sha256, r.size_bytes) for r in model_rows]
    found = []
    for kind, row_id, uri, sha, size in work:
        try:
            problem = farm.store.verify(uri, sha, size)
        except ArtifactStoreError as exc:
            raise UnreachableError(
                f"cannot read {kind} {row_id} from {redact(farm.settings.artifact_store)}: {exc}"
            ) from None
        found.append(VerifyResult(kind, row_id, redact(uri), problem))
    return found
