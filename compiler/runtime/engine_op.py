"""The ``orchestrate::execute_engine`` custom op and the process-wide table of loaded engines.

Each accelerated partition of a compiled program is one call of this op, so the stitched program
is an ordinary ExportedProgram: it saves with ``torch.export.save``, loads with
``torch.export.load`` and keeps dynamic shapes. The fake kernel computes output shapes from the
input shapes with the expressions recorded at compile time.

An engine may compute some output sizes from the values (``nonzero``, ``x[mask]``, ``unique``;
the engine's ``data_dependent`` symbols). The fake kernel gives each such size a fresh unbacked
symbol (``ctx.new_dynamic_size()``), shared by every output of that size, so the program still
traces, exports and saves; at run time the outputs are what the engine returned, and the
runners allocate them from the engine's answer (Torch-TensorRT calls this an output allocator).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch

from compiler.backends.base import EngineMeta, EngineRunner
from compiler.runtime.shapes import eval_expr

_ENGINES: dict[str, EngineRunner] = {}
_METAS: dict[str, EngineMeta] = {}
_REFS: dict[str, int] = {}  # compiled modules holding each engine; at zero it is unloaded
_LOCK = threading.Lock()


class EngineNotLoadedError(RuntimeError):
    pass


def acquire_engine(meta: EngineMeta, load: Callable[[], EngineRunner]) -> EngineRunner:
    """The loaded engine ``meta.engine_id``, loading it with ``load`` if this process has none;
    each acquire is balanced by one ``release_engine`` (compiled modules do it when collected)."""
    with _LOCK:
        runner = _ENGINES.get(meta.engine_id)
        if runner is None:
            runner = load()
            _ENGINES[meta.engine_id] = runner
            _METAS[meta.engine_id] = meta
        _REFS[meta.engine_id] = _REFS.get(meta.engine_id, 0) + 1
        return runner


def release_engine(engine_id: str) -> None:
    with _LOCK:
        count = _REFS.get(engine_id, 0) - 1
        if count > 0:
            _REFS[engine_id] = count
            return
        _REFS.pop(engine_id, None)
        _ENGINES.pop(engine_id, None)
        _METAS.pop(engine_id, None)


def loaded_engines() -> list[str]:
    return list(_ENGINES)


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
    data_dependent = meta.extra.get("data_dependent", [])
    if data_dependent:
        ctx = torch.library.get_ctx()
        for name in data_dependent:
            env[name] = ctx.new_dynamic_size()
    # ORT on CPU returns CPU tensors whatever the input device; CUDA engines return CUDA tensors
    device = torch.device("cuda") if meta.device.startswith("dla") else torch.device(meta.device)
    return [
        torch.empty([eval_expr(e, env) for e in dims], dtype=out.torch_dtype, device=device)
        for out, dims in zip(meta.outputs, meta.extra["output_dims"], strict=True)
    ]


EXECUTE_ENGINE = torch.ops.orchestrate.execute_engine.default
