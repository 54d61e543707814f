"""Validation and calibration data files at submit time: read, checked against the model's
inputs with ``compiler.load_dataset`` before anything is stored or queued, and stored
content-addressed like models (one ``datasets`` row per content hash).

A data file is ``.safetensors`` or ``.npz``, one tensor per model input named as the input with
the samples along the first axis, and optionally ``labels`` (see ``compiler.datasets``).
Pickles are refused unopened. The checks are the compiler's own, so a file accepted here is one
the worker's compile accepts too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from orchestrator import models as m
from orchestrator.errors import InvalidRequestError
from orchestrator.untrusted import read_bounded

if TYPE_CHECKING:
    import compiler
    from orchestrator.store import ArtifactStore

#: the two roles a data file plays, as the CLI options and keyword arguments name them
ROLES = ("validation", "calibration")
FORMATS = {".safetensors": "safetensors", ".npz": "npz"}

#: what ``submit`` takes for a data file: a path, its bytes with a format, or tensors by name
DataSource = str | Path | Mapping[str, Any]


@dataclass(frozen=True)
class DataUpload:
    """One data file of a submission, read but not yet stored."""

    role: str  # "validation" or "calibration"
    data: bytes
    format: str  # "safetensors" or "npz"
    display: str  # how errors name it: the submitter's path

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def option(self) -> str:
        return f"--{self.role}-data"


def read_data(role: str, source: DataSource, max_bytes: int, *, display: str | None = None) -> DataUpload:
    """The file's bytes (smaller than ``max_bytes``, ORCHESTRATE_MAX_MODEL_BYTES), or a mapping
    of tensors serialised as safetensors. ``display``: what errors call the file (default: its
    path; the server passes the name its sender gave it)."""
    option = f"--{role}-data"
    if isinstance(source, Mapping):
        return DataUpload(role, _safetensors_bytes(source, option), "safetensors", display or f"{role} data")
    path = Path(source)
    shown = display or str(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InvalidRequestError(
            f"{option} {shown}: data files must be .safetensors or .npz, not "
            f"{path.suffix or 'a file without an extension'}"
        )
    data = read_bounded(path, max_bytes, option, "ORCHESTRATE_MAX_MODEL_BYTES, which data files share with models", shown)
    return DataUpload(role, data, fmt, shown)


def _safetensors_bytes(tensors: Mapping[str, Any], option: str) -> bytes:
    import numpy as np
    import torch
    from safetensors.torch import save

    named: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if isinstance(value, np.ndarray) and value.dtype != object:
            value = torch.from_numpy(np.ascontiguousarray(value))
        if not isinstance(value, torch.Tensor):
            raise InvalidRequestError(f"{option}: {key} must be a tensor or numpy array, not {type(value).__name__}")
        named[str(key)] = value.detach().cpu().contiguous()
    return bytes(save(named))


def check_data(uploads: Sequence[DataUpload], program: Any, spec: compiler.CompileSpec) -> None:
    """Refuse a data file the compile would refuse: not .safetensors/.npz, a pickle, tensors
    whose names, shapes (within the spec's ranges) or dtypes do not fit the program's inputs,
    NaNs or infinities, labels that are not one integer per sample. One line, naming the file."""
    if not uploads:
        return
    import compiler
    from compiler.datasets import batches
    from compiler.frontend import input_signature

    try:
        signature = input_signature(program, spec)
    except compiler.CompilerError as exc:
        raise InvalidRequestError(f"spec refused for this model ({exc.kind}): {exc}") from None
    with compiler.scratch_folder("orchestrate-data-") as tmp:
        for upload in uploads:
            # the loader reads a file and picks the format by its suffix
            path = Path(tmp) / f"{upload.role}.{upload.format}"
            path.write_bytes(upload.data)
            try:
                batches(compiler.load_dataset(path), signature)
            except compiler.CompilerError as exc:
                message = " ".join(str(exc).replace(str(path), upload.display).split())
                raise InvalidRequestError(f"{upload.option} refused ({exc.kind}): {message}") from None


@dataclass
class DataIntake:
    """The row of one data file, and whether this submission created it (and stored its blob)."""

    role: str
    row: m.DataFile
    created: bool


def upsert_data(session: Session, store: ArtifactStore, upload: DataUpload) -> DataIntake:
    """The data file's row, its blob stored on first sight (call after :func:`check_data`)."""
    from orchestrator.errors import UnreachableError
    from orchestrator.settings import redact
    from orchestrator.store import ArtifactStoreError

    sha = upload.sha256
    existing = session.scalar(select(m.DataFile).where(m.DataFile.sha256 == sha))
    if existing is not None:
        return DataIntake(upload.role, existing, created=False)
    try:
        uri = store.put_bytes(upload.data).uri
    except (ArtifactStoreError, OSError) as exc:
        raise UnreachableError(f"cannot write to the artifact store {redact(store.url)}: {exc}") from None
    row = m.DataFile(sha256=sha, format=upload.format, size_bytes=len(upload.data), uri=uri)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        # Another submitter stored the same file between our read and our insert.
        raced = session.scalar(select(m.DataFile).where(m.DataFile.sha256 == sha))
        assert raced is not None
        return DataIntake(upload.role, raced, created=False)
    return DataIntake(upload.role, row, created=True)


def unused(session: Session, data_id: str) -> bool:
    """Whether no job names this data file (so a withdrawn submission may delete it)."""
    from sqlalchemy import func, or_

    count = session.scalar(
        select(func.count())
        .select_from(m.Job)
        .where(or_(m.Job.validation_data_id == data_id, m.Job.calibration_data_id == data_id))
    )
    return not count
