from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.store import (
    ArtifactCorruptError,
    ArtifactNotFoundError,
    ArtifactStore,
    ArtifactStoreError,
    ArtifactStoreUnavailableError,
)

BUCKET = "engines"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible server (moto) on loopback, with one bucket."""
    pytest.importorskip("s3fs")
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    os.environ.update(_AWS_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# Fake credentials, and no shared config files: the tests must never reach real AWS.
_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "artifacts"))
    endpoint = request.getfixturevalue("s3_endpoint")
    # Each test gets its own prefix, so tests never see each other's objects.
    return ArtifactStore(f"s3://{BUCKET}/{tmp_path.name}?endpoint_url={endpoint}")


def _tamper(store: ArtifactStore, sha: str, data: bytes) -> None:
    """Overwrite a stored object behind the store's back, as a faulty disk or person would."""
    with store.fs.open(store.path_for(sha), "wb") as out:
        out.write(data)


def test_put_bytes_is_content_addressed(store: ArtifactStore) -> None:
    data = b"engine bytes" * 1000
    sha = hashlib.sha256(data).hexdigest()
    stored = store.put_bytes(data)
    assert stored.sha256 == sha
    assert stored.size == len(data)
    assert stored.uri.endswith(f"/sha256/{sha[:2]}/{sha[2:]}")
    assert stored.uri.split("://", 1)[0] in ("file", "s3")
    assert store.exists(sha) and store.exists(stored.uri)
    assert store.size(stored.uri) == len(data)
    with store.open(sha) as reader:
        assert reader.read() == data
    # Storing the same bytes again gives the same object.
    assert store.put_bytes(data) == stored


def test_put_file_and_get_file_round_trip(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "model.pt2"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    stored = store.put_file(source)
    dest = tmp_path / "out" / "model.pt2"
    assert store.get_file(stored.uri, dest) == dest
    assert dest.read_bytes() == source.read_bytes()
    assert store.read_bytes(stored.sha256) == source.read_bytes()
    store.get_file(stored.sha256, tmp_path / "by-hash.pt2", expected_sha256=stored.sha256)
    assert (tmp_path / "by-hash.pt2").read_bytes() == source.read_bytes()


def test_tampered_object_is_refused_on_download(store: ArtifactStore, tmp_path: Path) -> None:
    data = b"a genuine engine package"
    stored = store.put_bytes(data)
    _tamper(store, stored.sha256, b"a modified engine package")
    dest = tmp_path / "dl" / "engine.pt2"
    with pytest.raises(ArtifactCorruptError, match=stored.sha256):
        store.get_file(stored.uri, dest)
    # Nothing under the destination name and no partial file beside it.
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []
    with pytest.raises(ArtifactCorruptError):
        store.read_bytes(stored.sha256)


def test_truncated_object_is_refused_on_download(store: ArtifactStore, tmp_path: Path) -> None:
    data = os.urandom(4096)
    stored = store.put_bytes(data)
    _tamper(store, stored.sha256, data[:1000])
    with pytest.raises(ArtifactCorruptError):
        store.get_file(stored.sha256, tmp_path / "engine.pt2")
    assert not (tmp_path / "engine.pt2").exists()


def test_a_wrong_expected_hash_is_refused(store: ArtifactStore, tmp_path: Path) -> None:
    stored = store.put_bytes(b"payload")
    with pytest.raises(ArtifactCorruptError):
        store.get_file(stored.uri, tmp_path / "x", expected_sha256="0" * 64)


def test_missing_object_is_a_named_error(store: ArtifactStore, tmp_path: Path) -> None:
    missing = "f" * 64
    assert not store.exists(missing)
    with pytest.raises(ArtifactNotFoundError):
        store.get_file(missing, tmp_path / "x")
    with pytest.raises(ArtifactNotFoundError):
        store.size(missing)
    assert not (tmp_path / "x").exists()


def test_a_failed_upload_leaves_nothing_under_the_final_name(
    store: ArtifactStore, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024)
    sha = hashlib.sha256(data).hexdigest()

    class Interrupted(Exception):
        pass

    class FailingReader(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell() >= 1024 * 1024:
                raise Interrupted("connection dropped")
            return super().read(size)

    with pytest.raises(Interrupted):
        store._put_stream(FailingReader(data), sha)
    assert not store.exists(sha)
    if store.fs.protocol != "s3":
        leftovers = [p for p in Path(store.root).rglob("*") if p.is_file()]
        assert leftovers == []
    # The next attempt stores it normally.
    assert store.put_bytes(data).sha256 == sha


def test_content_that_changes_during_upload_is_not_stored(store: ArtifactStore) -> None:
    data = b"x" * 4096
    claimed = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ArtifactStoreError, match="changed while it was being stored"):
        store._put_stream(io.BytesIO(data), claimed)
    assert not store.exists(claimed)


def test_local_layout_is_sha256_prefix_directories(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "a"))
    stored = store.put_bytes(b"layout")
    path = tmp_path / "a" / "sha256" / stored.sha256[:2] / stored.sha256[2:]
    assert path.read_bytes() == b"layout"
    assert stored.uri == f"file://{path}"
    # A plain path to an object is accepted too, and verified by its name.
    assert store.read_bytes(str(path)) == b"layout"


def test_object_outside_the_layout_needs_an_expected_hash(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "a"))
    loose = tmp_path / "loose.bin"
    loose.write_bytes(b"loose")
    with pytest.raises(ArtifactStoreError, match="pass expected_sha256"):
        store.get_file(str(loose), tmp_path / "copy")
    sha = hashlib.sha256(b"loose").hexdigest()
    store.get_file(str(loose), tmp_path / "copy", expected_sha256=sha)
    assert (tmp_path / "copy").read_bytes() == b"loose"


def test_unreachable_s3_endpoint_is_a_retryable_error(tmp_path: Path) -> None:
    pytest.importorskip("s3fs")
    store = ArtifactStore(
        f"s3://{BUCKET}/x?endpoint_url=http://127.0.0.1:1",
        storage_options={
            "key": "testing",
            "secret": "testing",
            "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1},
        },
    )
    with pytest.raises(ArtifactStoreUnavailableError) as excinfo:
        store.put_bytes(b"data")
    # Callers that treat connection trouble generically (OSError) still see it as such.
    assert isinstance(excinfo.value, ConnectionError)


UPLOADER = """
import sys, time
from orchestrator.store import _lock_part

fd = _lock_part(sys.argv[1])  # what put_file holds while it copies into tmp/*.part
import os
os.write(fd, b"half an upload")
print("ready", flush=True)
time.sleep(600)
"""


def test_the_part_file_of_a_killed_upload_goes_at_the_next_open_and_a_live_ones_stays(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from orchestrator.testing import with_repo_on_path

    parts = tmp_path / "store" / "tmp"
    parts.mkdir(parents=True)
    env = with_repo_on_path(dict(os.environ))
    uploads = {}
    for name in ("killed", "live"):
        process = subprocess.Popen(
            [sys.executable, "-c", UPLOADER, str(parts / f"{name}.part")], stdout=subprocess.PIPE, text=True, env=env
        )
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        uploads[name] = process
    try:
        uploads["killed"].send_signal(signal.SIGKILL)
        uploads["killed"].wait(10)
        assert (parts / "killed.part").exists()
        ArtifactStore(str(tmp_path / "store"))  # a process opening the store sweeps
        assert not (parts / "killed.part").exists() and (parts / "live.part").exists()
    finally:
        uploads["live"].kill()
        uploads["live"].wait(10)
    assert ArtifactStore(str(tmp_path / "store")).remove_crashed_uploads() == 0
    assert list(parts.iterdir()) == []
