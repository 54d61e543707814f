"""Content-addressed artifact store over fsspec: a local folder, a shared filesystem or S3.

Objects live at ``<root>/sha256/<first two hex digits>/<remaining 62>``; the name is the hash
of the content, so storing the same bytes twice is free and every download can be checked.
No reader ever sees a partial object under its final name: local and other filesystems write
to a temporary name and move it into place; object stores (S3, GCS, Azure) publish an upload
only once it is complete.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import io
import os
import re
import stat
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit

import fsspec
from fsspec.implementations.local import LocalFileSystem

from orchestrator.settings import get_settings, redact

__all__ = [
    "ArtifactCorruptError",
    "ArtifactNotFoundError",
    "ArtifactStore",
    "ArtifactStoreError",
    "ArtifactStoreUnavailableError",
    "DestinationError",
    "StoredObject",
    "get_artifact_store",
    "sha256_file",
]

CHUNK_SIZE = 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_OBJECT_PATH = re.compile(r"sha256/([0-9a-f]{2})/([0-9a-f]{62})$")
# Stores where an object appears only once its upload completed, so no temporary name is needed.
_ATOMIC_PUT_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})


class ArtifactStoreError(Exception):
    """Base of the artifact store's errors."""


class ArtifactNotFoundError(ArtifactStoreError, FileNotFoundError):
    """No object with that hash or URI is in the store."""


class ArtifactCorruptError(ArtifactStoreError):
    """A stored object's content does not match its sha256 (it was altered or truncated)."""


class ArtifactStoreUnavailableError(ArtifactStoreError, ConnectionError):
    """The store could not be reached or written; retrying later may succeed."""


@dataclass(frozen=True)
class StoredObject:
    uri: str
    sha256: str
    size: int


def _transient_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, TimeoutError]
    try:
        from botocore.exceptions import BotoCoreError

        errors.append(BotoCoreError)
    except ImportError:  # pragma: no cover - s3fs not installed
        pass
    return tuple(errors)


_TRANSIENT = _transient_errors()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a local file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _storage_options_from_query(query: str) -> dict[str, Any]:
    # `s3://bucket/prefix?endpoint_url=http://minio:9000` keeps a whole store in one setting.
    options: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        lowered = value.lower()
        options[key] = {"true": True, "false": False}.get(lowered, value)
    return options


class ArtifactStore:
    """Content-addressed blobs under one fsspec URL (``/path``, ``file://``, ``s3://`` ...)."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        parts = urlsplit(url) if "://" in url else None
        options = dict(storage_options or {})
        if parts is not None and parts.query:
            options = {**_storage_options_from_query(parts.query), **options}
            url = url.split("?", 1)[0]
        self.url = url
        self._options = options
        try:
            self.fs, root = fsspec.core.url_to_fs(url, **options)
        except (ImportError, ValueError) as exc:
            raise ArtifactStoreError(
                f"cannot open artifact store {redact(url)}: {exc}; for s3:// install s3fs "
                "(pip install 'orchestrate[s3]')"
            ) from exc
        self.root = root.rstrip("/")
        self._protocols = (
            {self.fs.protocol} if isinstance(self.fs.protocol, str) else set(self.fs.protocol)
        )
        self._is_local = isinstance(self.fs, LocalFileSystem)
        if self._is_local:
            Path(self.root).mkdir(parents=True, exist_ok=True)
            self.remove_crashed_uploads()

    def remove_crashed_uploads(self) -> int:
        """Delete the ``tmp/*.part`` files of uploads whose process died (no one holds their
        lock); runs whenever a process opens a local store. Returns how many went."""
        if not self._is_local:
            return 0
        removed = 0
        for part in Path(self.root, "tmp").glob("*.part"):
            try:
                fd = os.open(part, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # an upload in progress
            else:
                part.unlink(missing_ok=True)
                removed += 1
            finally:
                os.close(fd)
        return removed

    def verify(self, uri_or_sha: str, expected_sha256: str, expected_size: int | None = None) -> str | None:
        """Re-hash a stored object: None when it matches, else what is wrong with it."""
        digest = hashlib.sha256()
        size = 0
        try:
            with self.open(uri_or_sha) as source:
                for chunk in self._chunks(source):
                    digest.update(chunk)
                    size += len(chunk)
        except ArtifactNotFoundError:
            return "missing from the store"
        if expected_size is not None and size != expected_size:
            return f"{size} bytes, {expected_size} recorded"
        if digest.hexdigest() != expected_sha256:
            return f"sha256 {digest.hexdigest()}, {expected_sha256} recorded"
        return None

    def __repr__(self) -> str:
        return f"ArtifactStore({redact(self.url)!r})"

    # -- naming ----------------------------------------------------------------------------

    def path_for(self, sha256: str) -> str:
        """The filesystem path of the object with this hash."""
        if not _SHA256.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return f"{self.root}/sha256/{sha256[:2]}/{sha256[2:]}"

    def uri_for(self, sha256: str) -> str:
        """The full URL of the object with this hash (what the database records)."""
        return str(self.fs.unstrip_protocol(self.path_for(sha256)))

    def _resolve(self, uri_or_sha: str) -> tuple[Any, str, str | None]:
        """(filesystem, path, sha256 implied by the name or None) for a hash, URI or path."""
        if _SHA256.match(uri_or_sha):
            return self.fs, self.path_for(uri_or_sha), uri_or_sha
        if "://" in uri_or_sha:
            protocol = uri_or_sha.split("://", 1)[0]
            if protocol in self._protocols:
                fs, path = self.fs, self.fs._strip_protocol(uri_or_sha)
            else:
                fs, path = fsspec.core.url_to_fs(uri_or_sha)
        else:
            fs, path = fsspec.filesystem("file"), str(Path(uri_or_sha).absolute())
        match = _OBJECT_PATH.search(path)
        return fs, path, (match.group(1) + match.group(2)) if match else None

    # -- writing ---------------------------------------------------------------------------

    def put_file(self, path: str | os.PathLike[str]) -> StoredObject:
        """Store a local file; returns where it lives and its hash. Identical content is kept once."""
        expected = sha256_file(path)
        with open(path, "rb") as stream:
            return self._put_stream(stream, expected)

    def put_bytes(self, data: bytes) -> StoredObject:
        """Store ``data``; returns where it lives and its hash."""
        return self._put_stream(io.BytesIO(data), hashlib.sha256(data).hexdigest())

    def _put_stream(self, stream: IO[bytes], expected: str) -> StoredObject:
        final = self.path_for(expected)
        size = _stream_size(stream)
        try:
            if self.fs.exists(final) and self.fs.size(final) == size:
                return StoredObject(self.uri_for(expected), expected, size)
            if self._protocols & _ATOMIC_PUT_PROTOCOLS:
                target = final
            else:
                target = f"{self.root}/tmp/{uuid.uuid4().hex}.part"
                self.fs.makedirs(f"{self.root}/tmp", exist_ok=True)
            # A local upload holds a lock on its temporary file until it has its final name,
            # so that sweeping the leftovers of crashed uploads never takes a live one.
            lock = _lock_part(target) if self._is_local else None
            try:
                digest, written = self._copy_into(stream, target)
                if digest != expected:
                    raise ArtifactStoreError(
                        "the file changed while it was being stored (its sha256 differs from the "
                        "one computed before the upload); submit it again once it is complete"
                    )
                if target != final:
                    self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
                    self.fs.mv(target, final)
            except BaseException:
                _remove_quietly(self.fs, target)
                raise
            finally:
                if lock is not None:
                    os.close(lock)
        except ArtifactStoreError:
            raise
        except _TRANSIENT as exc:
            raise ArtifactStoreUnavailableError(
                f"cannot write to artifact store {redact(self.url)}: {exc}"
            ) from exc
        return StoredObject(self.uri_for(expected), expected, written)

    def _copy_into(self, stream: IO[bytes], target: str) -> tuple[str, int]:
        digest = hashlib.sha256()
        written = 0
        if not self._protocols & _ATOMIC_PUT_PROTOCOLS:
            self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        out = self.fs.open(target, "wb")
        try:
            for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
                digest.update(chunk)
                out.write(chunk)
                written += len(chunk)
            if self._is_local:
                # Durable before the rename publishes it: a crash must not leave a
                # complete-looking name over data still in the page cache.
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            # Closing would publish what was written so far (an object store commits the
            # upload on close); abandon it instead.
            if self._protocols & _ATOMIC_PUT_PROTOCOLS:
                out.discard()
                out.closed = True
            else:
                out.close()
            raise
        out.close()
        return digest.hexdigest(), written

    # -- reading ---------------------------------------------------------------------------

    def exists(self, uri_or_sha: str) -> bool:
        fs, path, _ = self._resolve(uri_or_sha)
        return bool(self._call(fs.exists, path))

    def size(self, uri_or_sha: str) -> int:
        fs, path, _ = self._resolve(uri_or_sha)
        return int(self._call(fs.size, path, missing=uri_or_sha))

    def open(self, uri_or_sha: str) -> IO[bytes]:
        """A binary reader (not verified; use ``get_file`` or ``read_bytes`` for that)."""
        fs, path, _ = self._resolve(uri_or_sha)
        # Another process may have replaced the object since this one last listed it; a stale
        # cached size would read a truncated object and report it as corrupt.
        fs.invalidate_cache(path)
        return self._call(fs.open, path, "rb", missing=uri_or_sha)  # type: ignore[no-any-return]

    def get_file(
        self,
        uri_or_sha: str,
        dest: str | os.PathLike[str],
        expected_sha256: str | None = None,
        *,
        overwrite: bool = True,
        expected_size: int | None = None,
    ) -> Path:
        """Download to ``dest``, verified against ``expected_sha256`` (default: the object's name).

        The bytes go to a new temporary file next to ``dest``, are flushed to disk, checked, and
        only then renamed to ``dest``: a reader never sees half a file, and on a mismatch
        (:class:`ArtifactCorruptError`) nothing is left. ``dest`` must be a regular file or
        not exist (:class:`DestinationError` otherwise, and when it exists and not
        ``overwrite``). More than ``expected_size`` bytes is a mismatch found while reading.
        """
        _, _, implied = self._resolve(uri_or_sha)
        expected = _expected_hash(uri_or_sha, expected_sha256, implied)
        check_destination(Path(dest), overwrite=overwrite)
        with self.open(uri_or_sha) as source:
            return save_verified(
                self._chunks(source),
                dest,
                expected,
                overwrite=overwrite,
                expected_size=expected_size,
                label=redact(uri_or_sha),
            )

    def read_bytes(self, uri_or_sha: str, expected_sha256: str | None = None) -> bytes:
        """The object's content, verified like :meth:`get_file`."""
        _, _, implied = self._resolve(uri_or_sha)
        expected = _expected_hash(uri_or_sha, expected_sha256, implied)
        with self.open(uri_or_sha) as source:
            data = b"".join(self._chunks(source))
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise ArtifactCorruptError(
                f"{redact(uri_or_sha)} has sha256 {actual}, expected {expected}: "
                "the stored object was altered or truncated; rebuild or re-upload it"
            )
        return data

    def delete(self, uri_or_sha: str) -> None:
        fs, path, _ = self._resolve(uri_or_sha)
        self._call(fs.rm, path, missing=uri_or_sha)

    def _chunks(self, source: IO[bytes]) -> Iterator[bytes]:
        while True:
            try:
                chunk = source.read(CHUNK_SIZE)
            except _TRANSIENT as exc:
                raise ArtifactStoreUnavailableError(
                    f"reading from artifact store {redact(self.url)} failed: {exc}"
                ) from exc
            if not chunk:
                return
            yield chunk

    def _call(self, func: Any, *args: Any, missing: str | None = None) -> Any:
        try:
            return func(*args)
        except FileNotFoundError as exc:
            if missing is None:
                raise
            raise ArtifactNotFoundError(
                f"{redact(missing)} is not in artifact store {redact(self.url)}"
            ) from exc
        except _TRANSIENT as exc:
            raise ArtifactStoreUnavailableError(
                f"artifact store {redact(self.url)} is unavailable: {exc}"
            ) from exc


def save_verified(
    chunks: Iterable[bytes],
    dest: str | os.PathLike[str],
    expected_sha256: str,
    *,
    overwrite: bool = True,
    expected_size: int | None = None,
    label: str = "the download",
) -> Path:
    """Write ``chunks`` to ``dest`` through a temporary file next to it, renamed into place only
    once the bytes hash to ``expected_sha256`` (:class:`ArtifactCorruptError` otherwise, and
    nothing is left). ``dest`` must be a regular file or not exist (:class:`DestinationError`
    otherwise, and when it exists and not ``overwrite``). More than ``expected_size`` bytes is
    a mismatch found while reading. Shared by :meth:`ArtifactStore.get_file` and downloads
    through the API server."""
    dest_path = Path(dest)
    check_destination(dest_path, overwrite=overwrite)
    dest_path.parent.mkdir(parents=True, exist_ok=True)
    part = dest_path.with_name(f".{dest_path.name}.{uuid.uuid4().hex}.part")
    # O_EXCL|O_NOFOLLOW: the temporary name is ours alone, whatever else is in the folder.
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        digest = hashlib.sha256()
        size = 0
        with open(fd, "wb", closefd=True) as out:
            for chunk in chunks:
                size += len(chunk)
                if expected_size is not None and size > expected_size:
                    raise ArtifactCorruptError(
                        f"{label} holds more than the {expected_size} bytes "
                        "recorded for it: the stored object was altered; rebuild or re-upload it"
                    )
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != expected_sha256:
            raise ArtifactCorruptError(
                f"{label} has sha256 {digest.hexdigest()}, expected {expected_sha256}: "
                "the stored object was altered or truncated; rebuild or re-upload it"
            )
        _publish(part, dest_path, overwrite=overwrite)
    finally:
        part.unlink(missing_ok=True)
    return dest_path


class DestinationError(ValueError):
    """A download's destination is not a regular file, or exists and may not be overwritten."""


def check_destination(path: Path, *, overwrite: bool) -> None:
    """Refuse to write a download at ``path`` unless it is absent or a regular file (and then
    only with ``overwrite``): a device, pipe, socket, folder or symbolic link is never replaced."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise DestinationError(
            f"{path} is a symbolic link; downloads replace no links: give the path it points to"
        )
    if stat.S_ISDIR(info.st_mode):
        raise DestinationError(f"{path} is a folder")
    if not stat.S_ISREG(info.st_mode):
        raise DestinationError(
            f"{path} is not a regular file (a device, pipe or socket); downloads are written "
            "only to regular files"
        )
    if not overwrite:
        raise DestinationError(f"{path} already exists; pass --force to overwrite it")


def _lock_part(path: str) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _publish(part: Path, dest: Path, *, overwrite: bool) -> None:
    """Give the finished ``part`` the name ``dest``, atomically; without ``overwrite``, a file
    that appeared at ``dest`` meanwhile is kept (a hard link never replaces anything)."""
    if overwrite:
        check_destination(dest, overwrite=True)
        os.replace(part, dest)
        return
    try:
        os.link(part, dest)
    except FileExistsError:
        raise DestinationError(f"{dest} already exists; pass --force to overwrite it") from None
    except OSError:
        # A filesystem without hard links: check, then rename (a narrow race, not a silent one).
        check_destination(dest, overwrite=False)
        os.replace(part, dest)


def _expected_hash(uri_or_sha: str, given: str | None, implied: str | None) -> str:
    expected = given or implied
    if expected is None:
        raise ArtifactStoreError(
            f"cannot verify {redact(uri_or_sha)}: its name is not a content hash; "
            "pass expected_sha256"
        )
    if not _SHA256.match(expected):
        raise ValueError(f"not a sha256 hex digest: {expected!r}")
    return expected


def _stream_size(stream: IO[bytes]) -> int:
    position = stream.tell()
    size = stream.seek(0, io.SEEK_END)
    stream.seek(position)
    return size - position


def _remove_quietly(fs: Any, path: str) -> None:
    try:
        if fs.exists(path):
            fs.rm(path)
    except Exception:  # noqa: BLE001 - cleanup after a failure must not hide that failure
        pass


@functools.lru_cache(maxsize=1)
def get_artifact_store() -> ArtifactStore:
    """The configured store (``ORCHESTRATE_ARTIFACT_STORE``). Tests call ``cache_clear()``."""
    return ArtifactStore(get_settings().artifact_store)
