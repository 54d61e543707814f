"""Reading a submission's body as it arrives: the model goes to a file chunk by chunk, and the
upload is refused (413) the moment it reaches the farm's limit, before anything is stored.

Two forms: ``multipart/form-data`` with a ``model`` file part, optional ``validation_data`` and
``calibration_data`` file parts (each held to the model's size limit) and text fields, or the
model as the raw body (any other content type) with the fields in the query string.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from python_multipart.multipart import MultipartParser, parse_options_header

from orchestrator.server.errors import ApiError
from orchestrator.untrusted import clean_model_name

#: Text fields a submission may carry besides the model, at most this many values in all.
MAX_FIELDS = 64
#: A file name on disk has at most 255 bytes on the file systems we run on.
_MAX_NAME_BYTES = 240


class UploadTooLargeError(ApiError):
    def __init__(self, what: str, limit: int, setting: str) -> None:
        super().__init__(
            413,
            "too_large",
            f"{what} is at or over the server's limit of {limit} bytes ({setting}); nothing was stored",
        )


@dataclass
class Upload:
    """The model file written under ``folder``, and the text fields that came with it."""

    folder: Path
    path: Path | None = None
    size: int = 0
    fields: dict[str, list[str]] = field(default_factory=dict)
    #: data files by role ("validation", "calibration"): where each was written, and the name
    #: its sender gave it (what errors about it say)
    data: dict[str, tuple[Path, str]] = field(default_factory=dict)

    def first(self, key: str) -> str | None:
        values = self.fields.get(key)
        return values[0] if values else None

    def all(self, key: str) -> list[str]:
        return list(self.fields.get(key, []))


def model_file_name(filename: str | None) -> str:
    """The name the model file gets on disk, chosen so that ``services.submit`` derives the
    same default model name from it as from the submitter's own file (``resnet.pt2`` ->
    ``resnet``). Only the last component of a client's path counts."""
    base = PureWindowsPath(PurePosixPath(filename or "model.pt2").name).name
    stem = clean_model_name(base.removesuffix(".pt2") or base)
    while len(stem.encode("utf-8")) > _MAX_NAME_BYTES:
        stem = stem[:-1]
    return f"{stem}.pt2"


class _ModelWriter:
    def __init__(self, upload: Upload, filename: str | None, max_bytes: int) -> None:
        upload.path = upload.folder / model_file_name(filename)
        self.upload = upload
        self.max_bytes = max_bytes
        self.stream = upload.path.open("wb")

    def write(self, data: bytes) -> None:
        self.upload.size += len(data)
        if self.upload.size >= self.max_bytes:
            self.close()
            raise UploadTooLargeError("the model", self.max_bytes, "ORCHESTRATE_MAX_MODEL_BYTES")
        self.stream.write(data)

    def close(self) -> None:
        if not self.stream.closed:
            self.stream.close()


#: File parts a submission may carry besides the model, by the role of the data in them.
DATA_PARTS = {"validation_data": "validation", "calibration_data": "calibration"}
_DATA_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,16}")


def data_file_name(role: str, filename: str | None) -> tuple[str, str]:
    """(the name a data part gets on disk, the name errors call it): the role, with the
    suffix of the sender's file name, which says its format."""
    base = PureWindowsPath(PurePosixPath(filename or f"{role}").name).name
    suffix = PurePosixPath(base).suffix
    display = clean_model_name(base, default=role)
    while len(display.encode("utf-8")) > _MAX_NAME_BYTES:
        display = display[:-1]
    # a leading dot: no model file is named so (model_file_name), so the two never collide
    return f".{role}-data{suffix.lower() if _DATA_SUFFIX.fullmatch(suffix) else ''}", display


class _DataWriter:
    def __init__(self, upload: Upload, role: str, filename: str | None, max_bytes: int) -> None:
        if role in upload.data:
            raise ApiError(400, "invalid_request", f"a submission carries one '{role}_data' part")
        name, display = data_file_name(role, filename)
        self.path = upload.folder / name
        upload.data[role] = (self.path, display)
        self.role = role
        self.size = 0
        self.max_bytes = max_bytes
        self.stream = self.path.open("wb")

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size >= self.max_bytes:
            self.close()
            raise UploadTooLargeError(f"the {self.role} data", self.max_bytes, "ORCHESTRATE_MAX_MODEL_BYTES")
        self.stream.write(data)

    def close(self) -> None:
        if not self.stream.closed:
            self.stream.close()


#: The fields a submission may carry besides the model (``filename``: raw bodies only).
FIELDS = ("arch", "device_class", "spec", "backend", "precision", "name", "filename")


def _add_field(upload: Upload, key: str, value: str) -> None:
    if key not in FIELDS:
        # A misspelt field ("archs", "device-class") would otherwise be ignored silently.
        raise ApiError(
            400, "invalid_request", f"unknown field {key[:64]!r}: a submission takes {', '.join(FIELDS)} and model"
        )
    if sum(len(v) for v in upload.fields.values()) >= MAX_FIELDS:
        raise ApiError(400, "invalid_request", f"a submission has at most {MAX_FIELDS} fields")
    upload.fields.setdefault(key, []).append(value)


async def receive(request: Request, folder: Path, max_model_bytes: int, max_field_bytes: int) -> Upload:
    """Read the body into ``folder`` (which the caller removes afterwards)."""
    upload = Upload(folder=folder)
    content_type = request.headers.get("content-type", "")
    kind, options = parse_options_header(content_type)
    declared = request.headers.get("content-length")
    slack = MAX_FIELDS * max_field_bytes + 64 * 1024
    if declared is not None and declared.isdigit():
        # Refused before a byte is read where the client says how much is coming (a multipart
        # body may carry the model and a data file of each role).
        ceiling = max_model_bytes if kind != b"multipart/form-data" else (1 + len(DATA_PARTS)) * max_model_bytes + slack
        if int(declared) >= ceiling:
            raise UploadTooLargeError("the upload", max_model_bytes, "ORCHESTRATE_MAX_MODEL_BYTES")
    if kind == b"multipart/form-data":
        await _receive_multipart(request, upload, options, max_model_bytes, max_field_bytes)
    else:
        for key, value in request.query_params.multi_items():
            _add_field(upload, key, value)
        writer = _ModelWriter(upload, upload.first("filename"), max_model_bytes)
        try:
            await _pump(request, writer.write)
        finally:
            writer.close()
    if upload.path is None:
        raise ApiError(400, "invalid_request", "the submission has no 'model' file part")
    return upload


async def _receive_multipart(
    request: Request,
    upload: Upload,
    options: dict[bytes, bytes],
    max_model_bytes: int,
    max_field_bytes: int,
) -> None:
    boundary = options.get(b"boundary")
    if not boundary:
        raise ApiError(400, "invalid_request", "multipart/form-data without a boundary")
    state: dict[str, object] = {}
    header_field = bytearray()
    header_value = bytearray()
    headers: dict[bytes, bytes] = {}
    writer: list[_ModelWriter | _DataWriter] = []
    text = bytearray()

    def on_part_begin() -> None:
        headers.clear()
        text.clear()
        state.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        state["name"] = name
        if name == "model":
            if upload.path is not None:
                raise ApiError(400, "invalid_request", "a submission carries one 'model' part")
            filename = disposition.get(b"filename")
            writer.append(
                _ModelWriter(upload, filename.decode("utf-8", "replace") if filename else None, max_model_bytes)
            )
        elif name in DATA_PARTS:
            filename = disposition.get(b"filename")
            decoded = filename.decode("utf-8", "replace") if filename else None
            writer.append(_DataWriter(upload, DATA_PARTS[name], decoded, max_model_bytes))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state.get("name") == "model" or state.get("name") in DATA_PARTS:
            writer[-1].write(data[start:end])
            return
        text.extend(data[start:end])
        if len(text) >= max_field_bytes:
            raise UploadTooLargeError(
                f"field {str(state.get('name'))[:64]!r}", max_field_bytes, "ORCHESTRATE_MAX_SPEC_BYTES"
            )

    def on_part_end() -> None:
        name = str(state.get("name", ""))
        if name == "model" or name in DATA_PARTS:
            writer[-1].close()
        elif name:
            try:
                _add_field(upload, name, text.decode("utf-8"))
            except UnicodeDecodeError:
                raise ApiError(400, "invalid_request", f"field {name[:64]!r} is not UTF-8 text") from None

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        await _pump(request, parser.write)
        parser.finalize()
    except ApiError:
        raise
    except Exception as exc:  # python-multipart raises several types for one cause
        raise ApiError(400, "invalid_request", f"malformed multipart body: {exc}") from None
    finally:
        for item in writer:
            item.close()


#: Body bytes gathered before they are handed to a thread to parse and write.
BATCH_BYTES = 1024 * 1024


async def _pump(request: Request, sink: Callable[[bytes], object]) -> None:
    """Feed the body to ``sink`` in batches of about BATCH_BYTES, each in a worker thread: a
    slow disk then stalls this upload, not the event loop that every other request shares."""
    batch = bytearray()
    async for chunk in request.stream():
        batch += chunk
        if len(batch) >= BATCH_BYTES:
            await run_in_threadpool(sink, bytes(batch))
            batch.clear()
    if batch:
        await run_in_threadpool(sink, bytes(batch))

