"""Uploads stream to disk chunk by chunk and are refused at the size limit with nothing stored."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import models as m
from orchestrator.server import upload
from orchestrator.server.upload import model_file_name
from tests.orchestrator.server.conftest import MAX_MODEL_BYTES, Api


@pytest.fixture(scope="module")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A program whose file is ~600 KiB: many 64 KiB chunks, under the server's 1 MiB limit."""
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(384, 384), torch.nn.ReLU()).eval()
    path = tmp_path_factory.mktemp("big") / "big.pt2"
    torch.export.save(torch.export.export(module, (torch.randn(1, 384),)), path)
    assert 512 * 1024 < path.stat().st_size < MAX_MODEL_BYTES
    return path


def _chunks(data: bytes, size: int = 16 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _store_objects(api: Api) -> set[Path]:
    return {p for p in Path(api.farm.settings.artifact_store).rglob("*") if p.is_file()}


@pytest.mark.parametrize("batch", [upload.BATCH_BYTES, 100_000])
def test_a_streamed_upload_of_many_chunks_is_stored_whole(
    api: Api, big_model: Path, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 100 kB batches: the ~600 KiB model is parsed and written in several, split mid-chunk.
    monkeypatch.setattr(upload, "BATCH_BYTES", batch)
    data = big_model.read_bytes()
    with api.client("alice") as client:
        response = client.post(
            "/jobs",
            content=_chunks(data),  # chunked transfer: no Content-Length
            params={"arch": "x86_64", "filename": "big.pt2"},
            headers={"Content-Type": "application/octet-stream"},
        )
    assert response.status_code == 201, response.text
    (job,) = response.json()["jobs"]
    assert job["model_sha256"] == hashlib.sha256(data).hexdigest()
    assert job["model_name"] == "big"
    stored = api.farm.store.open(job["model_sha256"]).read()
    assert stored == data


def test_multipart_upload_of_many_chunks(api: Api, big_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upload, "BATCH_BYTES", 100_000)
    with api.client("bob") as client, big_model.open("rb") as stream:
        response = client.post(
            "/jobs", files={"model": ("nested/dir/big.pt2", stream)}, data={"arch": "aarch64"}
        )
    assert response.status_code == 201, response.text
    assert response.json()["jobs"][0]["model_name"] == "big"


@pytest.mark.parametrize("form", ["raw-chunked", "raw-declared", "multipart"])
def test_an_upload_over_the_limit_is_refused_and_nothing_is_stored(api: Api, form: str) -> None:
    too_big = b"\0" * (MAX_MODEL_BYTES + 1)
    with api.farm.session() as session:
        counts = (session.query(m.Model).count(), session.query(m.Job).count())
    objects = _store_objects(api)
    with api.client("alice") as client:
        if form == "multipart":
            response = client.post("/jobs", files={"model": ("huge.pt2", too_big)}, data={"arch": "x86_64"})
        else:
            response = client.post(
                "/jobs",
                content=_chunks(too_big) if form == "raw-chunked" else too_big,
                params={"arch": "x86_64"},
                headers={"Content-Type": "application/octet-stream"},
            )
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["kind"] == "too_large" and "ORCHESTRATE_MAX_MODEL_BYTES" in error["message"]
    with api.farm.session() as session:
        assert (session.query(m.Model).count(), session.query(m.Job).count()) == counts
    assert _store_objects(api) == objects


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("resnet.pt2", "resnet.pt2"),
        ("../../etc/passwd", "passwd.pt2"),
        ("C:\\models\\bert.pt2", "bert.pt2"),
        (".hidden.pt2", "hidden.pt2"),
        (None, "model.pt2"),
        ("é" * 300, "é" * 120 + ".pt2"),
    ],
)
def test_uploaded_file_names_stay_inside_the_upload_folder(given: str | None, expected: str) -> None:
    assert model_file_name(given) == expected


def test_a_misspelt_field_is_refused_not_ignored(api: Api, tiny_model: Path) -> None:
    with api.client("alice") as client:
        multipart = client.post("/jobs", files={"model": ("t.pt2", tiny_model.read_bytes())}, data={"archs": "x86_64"})
        raw = client.post("/jobs", content=tiny_model.read_bytes(), params={"arch": "x86_64", "device-class": "sm90"})
    for response in (multipart, raw):
        assert response.status_code == 400
        assert "unknown field" in response.json()["error"]["message"]


def test_a_spec_field_over_its_limit_is_refused_while_it_streams(api: Api, tiny_model: Path) -> None:
    limit = api.farm.settings.max_spec_bytes
    with api.client("alice") as client:
        response = client.post(
            "/jobs",
            files={"model": ("t.pt2", tiny_model.read_bytes())},
            data={"arch": "x86_64", "spec": "#" * limit},
        )
    assert response.status_code == 413
    assert "ORCHESTRATE_MAX_SPEC_BYTES" in response.json()["error"]["message"]


@pytest.mark.parametrize("role", ["validation", "calibration"])
def test_a_data_part_over_the_limit_is_refused_and_nothing_is_stored(api: Api, tiny_model: Path, role: str) -> None:
    with api.farm.session() as session:
        counts = (session.query(m.Model).count(), session.query(m.Job).count(), session.query(m.DataFile).count())
    objects = _store_objects(api)
    with api.client("alice") as client:
        response = client.post(
            "/jobs",
            files={"model": ("t.pt2", tiny_model.read_bytes()), f"{role}_data": ("rows.npz", b"\0" * MAX_MODEL_BYTES)},
            data={"arch": "x86_64"},
        )
    assert response.status_code == 413, response.text
    assert f"the {role} data" in response.json()["error"]["message"]
    with api.farm.session() as session:
        assert (session.query(m.Model).count(), session.query(m.Job).count(), session.query(m.DataFile).count()) == counts
    assert _store_objects(api) == objects


def test_data_parts_are_stored_with_the_job_and_a_second_part_of_one_role_is_refused(api: Api, tiny_model: Path) -> None:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, input=np.ones((4, 8), np.float32))
    rows = buffer.getvalue()
    with api.client("alice") as client:
        files = [("model", ("t.pt2", tiny_model.read_bytes())), ("validation_data", ("rows.npz", rows))]
        accepted = client.post("/jobs", files=files, data={"arch": "aarch64"})
        twice = client.post("/jobs", files=[*files, ("validation_data", ("again.npz", rows))], data={"arch": "aarch64"})
    assert accepted.status_code == 201, accepted.text
    (job,) = accepted.json()["jobs"]
    with api.farm.session() as session:
        data = session.get(m.Job, job["id"]).validation_data
        assert data is not None and data.sha256 == hashlib.sha256(rows).hexdigest() and data.format == "npz"
    assert twice.status_code == 400 and "one 'validation_data' part" in twice.json()["error"]["message"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("held_out.npz", (".validation-data.npz", "held_out.npz")),
        ("../../x.SAFETENSORS", (".validation-data.safetensors", "x.SAFETENSORS")),
        ("rows.pt", (".validation-data.pt", "rows.pt")),
        (None, (".validation-data", "validation")),
        ("a.b;rm -rf", (".validation-data", "a.b;rm -rf")),
    ],
)
def test_data_part_names_keep_only_a_plain_suffix(given: str | None, expected: tuple[str, str]) -> None:
    assert upload.data_file_name("validation", given) == expected
