"""The ``orchestrate::execute_engine`` custom op and the process-wide table of loaded engines.

Each accelerated partition of a compiled program is one call of this op, so the stitched program
is an ordinary ExportedProgram: it saves with ``torch.export.save``, loads with
``torch.export.load`` and keeps dynamic shapes. The fake kernel computes output shapes from the
input shapes with the expressions recorded at compile time.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from compiler.backends.base import EngineMeta, EngineRunner
from compiler.runtime.shapes import eval_expr

_ENGINES: dict[str, EngineRunner] = {}
_METAS: dict[str, EngineMeta] = {}
_LOCK = threading.Lock()


class EngineNotLoadedError(RuntimeError):
    pass


def register_engine(runner: EngineRunner) -> None:
    with _LOCK:
        _ENGINES[runner.meta.engine_id] = runner
        _METAS[runner.meta.engine_id] = runner.meta


def get_engine(engine_id: str) -> EngineRunner:
    try:
        return _ENGINES[engine_id]
    except KeyError:
        raise EngineNotLoadedError(
            f"engine {engine_id[:12]} is not loaded in this process; load the program with compiler.load()"
        ) from None


def run_engine(inputs: list[torch.Tensor], engine_id: str) -> list[torch.Tensor]:
    """The direct call path (no dispatcher), used by the compiled module's runtime graph."""
    return _ENGINES[engine_id].run(inputs) if engine_id in _ENGINES else get_engine(engine_id).run(inputs)


@torch.library.custom_op("orchestrate::execute_engine", mutates_args=())
def execute_engine(inputs: list[torch.Tensor], engine_id: str) -> list[torch.Tensor]:
    return [t.clone() if _aliases(t, inputs) else t for t in get_engine(engine_id).run(inputs)]


def _aliases(out: torch.Tensor, inputs: list[torch.Tensor]) -> bool:
    # custom ops must not return their inputs' storage; engines normally return fresh memory
    return any(out.untyped_storage().data_ptr() == i.untyped_storage().data_ptr() for i in inputs)


@execute_engine.register_fake
def _execute_engine_fake(inputs: list[torch.Tensor], engine_id: str) -> list[torch.Tensor]:
    meta = _METAS.get(engine_id)
    if meta is None:
        raise EngineNotLoadedError(f"engine {engine_id[:12]} has no metadata in this process")
    env: dict[str, Any] = {}
    for name, (index, dim) in meta.extra["symbols"].items():
        env[name] = inputs[index].shape[dim]
    # ORT on CPU returns CPU tensors whatever the input device; CUDA engines return CUDA tensors
    device = torch.device("cuda") if meta.device.startswith("dla") else torch.device(meta.device)
    return [
        torch.empty([eval_expr(e, env) for e in dims], dtype=out.torch_dtype, device=device)
        for out, dims in zip(meta.outputs, meta.extra["output_dims"], strict=True)
    ]


EXECUTE_ENGINE = torch.ops.orchestrate.execute_engine.default
