"""Validation and calibration data: ``.safetensors`` or ``.npz`` files (never pickles), or the
same in memory, checked against the program's input signature before anything is compiled.

A file holds one tensor per program input, named as the input, with the sample axis first, and
optionally ``labels`` (integers, one per sample). The rows are cut into batches that fit the
program's first axis: its size when static, else as large as its range allows.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from compiler.errors import DatasetError
from compiler.frontend import InputInfo

LABELS = "labels"
DYNAMIC_BATCH = 32  # rows per batch on an unbounded dynamic first axis

#: one batch: the program's inputs in signature order, and the labels of its rows (or None)
Batch = tuple[list[torch.Tensor], torch.Tensor | None]


@dataclass(frozen=True)
class Dataset:
    """Rows of named inputs (sample axis first) and optional integer labels."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor | None = None
    source: str = "memory"

    @property
    def rows(self) -> int:
        first = next(iter(self.inputs.values()), None)
        return 0 if first is None else int(first.shape[0])


class Batches(list[Batch]):
    """Data already checked and cut into batches (what :func:`batches` returns)."""


DataLike = Batches | Dataset | str | Path | Mapping[str, Any] | Sequence[Sequence[torch.Tensor]]


def load_dataset(path: str | Path) -> Dataset:
    """Read a ``.safetensors`` or ``.npz`` file. Pickles (``torch.save``, ``pickle``, object
    arrays in an ``.npz``) are refused unopened: loading one can run code."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            head = stream.read(9)
    except OSError as exc:
        raise DatasetError(f"cannot read data file {path}: {exc.strerror}") from None
    if _looks_like_pickle(head) or _is_torch_zip(path):
        raise DatasetError(
            f"{path} is a pickle; pickles can run code when loaded and are refused. Save the data "
            "with safetensors.torch.save_file or numpy.savez instead."
        )
    if path.suffix == ".safetensors":
        tensors = _read_safetensors(path)
    elif path.suffix == ".npz":
        tensors = _read_npz(path)
    else:
        raise DatasetError(f"{path}: data files must be .safetensors or .npz, not {path.suffix or 'no extension'}")
    labels = tensors.pop(LABELS, None)
    return Dataset(tensors, labels, str(path))


def as_dataset(data: DataLike, signature: Sequence[InputInfo]) -> Dataset | list[Batch]:
    """A Dataset from a path or a mapping, or the batches of a list of input tuples."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (str, Path)):
        return load_dataset(data)
    if isinstance(data, Mapping):
        named = {str(k): _as_tensor(v, str(k), "memory") for k, v in data.items()}
        labels = named.pop(LABELS, None)
        return Dataset(named, labels)
    batches: list[Batch] = []
    for index, sample in enumerate(cast(Sequence[Sequence[torch.Tensor]], data)):
        tensors: list[torch.Tensor] = [sample] if isinstance(sample, torch.Tensor) else list(sample)
        if len(tensors) != len(signature):
            raise DatasetError(
                f"sample {index} has {len(tensors)} inputs; the program takes {len(signature)} "
                f"({', '.join(i.name for i in signature)})"
            )
        for info, tensor in zip(signature, tensors, strict=True):
            _check_tensor(info, tensor, f"sample {index}")
        batches.append((tensors, None))
    if not batches:
        raise DatasetError("the data holds no samples")
    return batches


def batches(data: DataLike, signature: Sequence[InputInfo], limit: int | None = None) -> Batches:
    """Check ``data`` against ``signature`` and cut it into batches the program accepts (at
    most ``limit``). Raises DatasetError naming the input and what to change."""
    if isinstance(data, Batches):
        return Batches(data[:limit]) if limit is not None else data
    dataset = as_dataset(data, signature)
    if isinstance(dataset, list):
        return Batches(dataset[:limit] if limit is not None else dataset)
    check_dataset(dataset, signature)
    rows = dataset.rows
    first = signature[0].dims[0]
    if first.static:
        size = first.min
    else:
        size = max(first.min, min(rows, first.max if first.max is not None else DYNAMIC_BATCH))
    out = Batches()
    for start in range(0, rows - size + 1, size):
        # standard strides: rows cut from a (N, 1, H, W) array can look channels-last to torch
        inputs = [
            dataset.inputs[info.name][start : start + size].clone(memory_format=torch.contiguous_format)
            for info in signature
        ]
        labels = dataset.labels[start : start + size] if dataset.labels is not None else None
        out.append((inputs, labels))
        if limit is not None and len(out) == limit:
            break
    return out


def check_dataset(dataset: Dataset, signature: Sequence[InputInfo]) -> None:
    source = dataset.source
    expected = [i.name for i in signature]
    missing = [n for n in expected if n not in dataset.inputs]
    unknown = sorted(n for n in dataset.inputs if n not in expected)
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown {', '.join(unknown)}")
        raise DatasetError(
            f"{source}: tensor names do not match the program's inputs ({'; '.join(parts)}); "
            f"name them {', '.join(expected)} (and optionally {LABELS})"
        )
    rows = {int(t.shape[0]) if t.dim() else 0 for t in dataset.inputs.values()}
    if len(rows) != 1:
        raise DatasetError(f"{source}: inputs have different numbers of rows ({sorted(rows)}); the first axis is the sample axis")
    (count,) = rows
    for info in signature:
        tensor = dataset.inputs[info.name]
        if tensor.dim() != len(info.dims) or tensor.dim() == 0:
            raise DatasetError(
                f"{source}: {info.name} has shape {list(tensor.shape)}; the program expects "
                f"{info.shape_text()} with the samples along the first axis"
            )
        for axis, (size, rng) in enumerate(zip(tensor.shape[1:], info.dims[1:], strict=True), start=1):
            if size < rng.min or (rng.max is not None and size > rng.max):
                raise DatasetError(
                    f"{source}: {info.name} dimension {axis} is {size}, outside the program's "
                    f"range {rng} ({info.shape_text()})"
                )
        first = info.dims[0]
        if count < first.min:
            raise DatasetError(f"{source}: {info.name} has {count} rows; the program's batch is {first.min}")
        _check_tensor_values(info, tensor, source)
    if dataset.labels is not None:
        labels = dataset.labels
        if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.dim() != 1 or labels.shape[0] != count:
            raise DatasetError(
                f"{source}: {LABELS} must be integers, one per sample ({count}), not "
                f"{labels.dtype} of shape {list(labels.shape)}"
            )


# ---------------------------------------------------------------------- helpers
def _check_tensor(info: InputInfo, tensor: Any, where: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise DatasetError(f"{where}: {info.name} must be a tensor, not {type(tensor).__name__}")
    try:
        info.check(tensor)
    except ValueError as exc:
        raise DatasetError(f"{where}: {exc}") from None
    _check_tensor_values(info, tensor, where)


def _check_tensor_values(info: InputInfo, tensor: torch.Tensor, where: str) -> None:
    if tensor.dtype != info.dtype:
        raise DatasetError(
            f"{where}: {info.name} has dtype {str(tensor.dtype).removeprefix('torch.')}; the program "
            f"expects {str(info.dtype).removeprefix('torch.')} (convert it before saving)"
        )
    if tensor.dtype.is_floating_point and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise DatasetError(f"{where}: {info.name} holds {bad} NaN or infinite values")


def _as_tensor(value: Any, name: str, source: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise DatasetError(f"{source}: {name} is an object array; only numeric arrays are accepted")
        return torch.from_numpy(np.ascontiguousarray(value))
    raise DatasetError(f"{source}: {name} must be a tensor or numpy array, not {type(value).__name__}")


def _looks_like_pickle(head: bytes) -> bool:
    # A protocol 2-5 pickle opens with PROTO (0x80) and its protocol number. So may a
    # safetensors file, whose first 8 bytes are its header's length (640 is 80 02 00 ...), but
    # its 9th byte opens the JSON header; the safetensors reader never unpickles.
    return head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05") and head[8:9] != b"{"


def _is_torch_zip(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith(".pkl") for n in archive.namelist())
    except zipfile.BadZipFile:
        return False


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return dict(load_file(str(path)))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DatasetError(f"{path} is not a readable safetensors file: {exc}") from None


def _read_npz(path: Path) -> dict[str, torch.Tensor]:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{path} is not a readable .npz file: {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DatasetError(f"{path} holds a single array; save named arrays with numpy.savez(path, x=..., labels=...)")
    tensors: dict[str, torch.Tensor] = {}
    with archive:
        for name in archive.files:
            try:
                array = archive[name]
            except ValueError as exc:  # object arrays need pickle, which is refused
                raise DatasetError(f"{path}: {name} is a pickled object array, refused: {exc}") from None
            except (OSError, zipfile.BadZipFile, EOFError) as exc:
                raise DatasetError(f"{path}: {name} is damaged: {exc}") from None
            tensors[name] = _as_tensor(array, name, str(path))
    return tensors
