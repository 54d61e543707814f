"""Sample models for the demo, the tests and the benchmarks, built locally (nothing downloaded).

* ``tiny``: Linear(8, 4) + ReLU, the smallest program that exercises the whole farm.
* ``digits``: a small CNN trained for a few seconds on scikit-learn's bundled 8x8 digits, so the
  demo builds an engine for a model that computes something recognisable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

KINDS = ("tiny", "digits")
MIN_EPOCHS = 4


@dataclass(frozen=True)
class Sample:
    kind: str
    path: Path
    description: str


def tiny_program(seed: int = 0) -> torch.export.ExportedProgram:
    import torch

    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU()).eval()
    return torch.export.export(module, (torch.randn(2, 8),))


def digits_program(
    train_seconds: float = 3.0, seed: int = 0
) -> tuple[torch.export.ExportedProgram, float]:
    """A CNN trained on sklearn's digits for about ``train_seconds``; (program, test accuracy)."""
    import torch
    from sklearn.datasets import load_digits

    torch.manual_seed(seed)
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    split = int(0.8 * len(labels))
    train, test = order[:split], order[split:]
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 4 * 4, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    deadline = time.monotonic() + train_seconds
    model.train()
    # At least a few epochs even on a busy machine (where a step can take 10x longer), so the
    # sample always computes something recognisable; then whatever time is left.
    epochs = 0
    while epochs < MIN_EPOCHS or time.monotonic() < deadline:
        for batch in train[torch.randperm(len(train))].split(64):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(images[batch]), labels[batch])
            loss.backward()
            optimizer.step()
        epochs += 1
    model.eval()
    with torch.no_grad():
        accuracy = float((model(images[test]).argmax(1) == labels[test]).float().mean())
    program = torch.export.export(model, (images[:1],))
    return program, accuracy


def write_sample(path: str | Path, kind: str = "digits", train_seconds: float = 3.0) -> Sample:
    """Export the sample ``kind`` to ``path`` (a torch.export .pt2 file)."""
    import torch

    if kind not in KINDS:
        raise ValueError(f"unknown sample {kind!r}: use one of {', '.join(KINDS)}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if kind == "tiny":
        program = tiny_program()
        description = "Linear(8, 4) + ReLU, input float32[2, 8]"
    else:
        program, accuracy = digits_program(train_seconds)
        description = (
            f"CNN on sklearn digits (input float32[1, 1, 8, 8]), test accuracy {accuracy:.1%} "
            f"after {train_seconds:g} s of training"
        )
    torch.export.save(program, target)
    return Sample(kind=kind, path=target, description=description)
