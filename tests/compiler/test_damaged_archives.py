"""Archives built to hurt intake: zip bombs, bad CRCs, tampered engine packages."""

from __future__ import annotations

import io
import json
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
import torch

import compiler
from compiler import InvalidModelError
from compiler.frontend import MAX_COMPRESSION_RATIO, sanitize_archive
from compiler.runtime.serialization import EngineIntegrityError


def _program_bytes() -> bytes:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(model, (torch.randn(2, 4),)), buffer)
    return buffer.getvalue()


def _with_member(data: bytes, name: str, content: bytes, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        root = src.namelist()[0].split("/")[0]
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr(f"{root}/{name}", content, compress_type=method)
    return out.getvalue()


def _flip_byte_inside(data: bytes, member_suffix: str) -> bytes:
    """``data`` with one byte of a stored member's content changed: its CRC no longer matches."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        name = next(n for n in archive.namelist() if n.endswith(member_suffix))
        content = archive.read(name)
    at = data.index(content) + len(content) // 2
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def test_a_zip_bomb_is_refused_before_it_inflates() -> None:
    # 200 MB of zeros deflate to about 200 KB: far past the ratio a torch.export file has.
    bomb = _with_member(_program_bytes(), "data/weights/bomb", bytes(200 * 1024**2))
    assert len(bomb) < 1024**2
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(InvalidModelError, match="zip bomb"):
            compiler.load_program(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 5
    assert peak < 50 * 1024**2, f"intake held {peak} bytes"


def test_a_member_whose_header_lies_about_its_size_is_bounded_while_streaming() -> None:
    data = _with_member(_program_bytes(), "data/weights/liar", bytes(8 * 1024**2))
    # Shrink the declared size in both headers: only the streaming count can see the truth.
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(next(n for n in archive.namelist() if n.endswith("liar")))
    assert info.compress_size * MAX_COMPRESSION_RATIO < info.file_size
    with pytest.raises(InvalidModelError):
        sanitize_archive(data.replace(info.file_size.to_bytes(4, "little"), (1024).to_bytes(4, "little")))


def test_the_total_inflated_size_is_bounded_by_the_model_limit() -> None:
    data = _with_member(_program_bytes(), "data/weights/big", bytes(3 * 1024**2), zipfile.ZIP_STORED)
    with pytest.raises(InvalidModelError, match="size limit"):
        sanitize_archive(data, max_inflated_bytes=2 * 1024**2)
    sanitize_archive(data, max_inflated_bytes=8 * 1024**2)


def test_a_bad_crc_is_an_invalid_model_error_not_a_zipfile_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(_flip_byte_inside(_program_bytes(), "models/model.json"))
    with pytest.raises(InvalidModelError, match="damaged.*model.json"):
        compiler.load_program(bad)


def test_a_file_of_exactly_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "m.pt2"
    path.write_bytes(_program_bytes())
    size = path.stat().st_size
    with pytest.raises(InvalidModelError, match="at or over the limit"):
        compiler.load_program(path, max_bytes=size)
    compiler.load_program(path, max_bytes=size + 1)


@pytest.fixture(scope="module")
def engine_package(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    spec = compiler.CompileSpec.parse({"partitioning": {"min_block_size": 1}, "validation": {"samples": 1}})
    path = tmp_path_factory.mktemp("engine") / "m.engine.pt2"
    compiler.save(compiler.compile(model, spec, [torch.randn(2, 4)]), path)
    return path.read_bytes()


def _rewrite_manifest(package: bytes, text: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(package)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            content = src.read(info)
            if info.filename.endswith("extra/orchestrate/manifest.json"):
                content = text.encode()
            dst.writestr(info, content)
    return out.getvalue()


def _manifest(package: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        name = next(n for n in archive.namelist() if n.endswith("extra/orchestrate/manifest.json"))
        return json.loads(archive.read(name))


def test_an_intact_engine_package_loads(engine_package: bytes) -> None:
    compiled = compiler.load(engine_package)
    assert compiled(torch.randn(2, 4)).shape == (2, 3)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda p: _flip_byte_inside(p, ".bin"), id="engine bytes, bad CRC"),
        pytest.param(lambda p: _flip_byte_inside(p, "models/model.json"), id="program, bad CRC"),
        pytest.param(lambda p: _rewrite_manifest(p, "{not json"), id="manifest not JSON"),
        pytest.param(lambda p: _rewrite_manifest(p, "[1, 2]"), id="manifest not an object"),
        pytest.param(
            lambda p: _rewrite_manifest(p, json.dumps({**_manifest(p), "engines": [{"x": 1}]})),
            id="engine entry without keys",
        ),
        pytest.param(
            lambda p: _rewrite_manifest(p, json.dumps({k: v for k, v in _manifest(p).items() if k != "inputs"})),
            id="manifest without inputs",
        ),
    ],
)
def test_a_tampered_engine_package_is_an_engine_integrity_error(engine_package: bytes, tamper) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EngineIntegrityError):
        compiler.load(tamper(engine_package))
