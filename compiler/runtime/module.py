"""The compiled module: engines and PyTorch fallback code stitched into one callable.

Two graphs describe the same program. ``program_graph`` calls engines through the registered
``execute_engine`` custom op and is what gets exported and saved. ``runtime_graph`` is a copy in
which each such call is a direct Python call of the engine, because the dispatcher and
``ExportedProgram.module()``'s pytree and guard handling cost tens of microseconds per call —
more than a small engine needs to run. When the whole program is one engine fed straight from the
inputs, calls skip the graph altogether.
"""

from __future__ import annotations

import copy
import operator
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import fx
from torch.utils import _pytree as pytree

from compiler.backends.base import EngineMeta
from compiler.errors import InputMismatchError
from compiler.frontend import InputInfo
from compiler.report import CompileReport
from compiler.runtime.engine_op import EXECUTE_ENGINE, get_engine, release_engine, run_engine
from compiler.spec import CompileSpec


class CompiledModule(torch.nn.Module):
    def __init__(
        self,
        program_graph: fx.GraphModule,
        signature: Sequence[InputInfo],
        spec: CompileSpec,
        engines: dict[str, tuple[EngineMeta, bytes]],
        report: CompileReport,
    ) -> None:
        super().__init__()
        self.program_graph = program_graph
        self.signature = list(signature)
        self.spec = spec
        self.engines = engines
        self.report = report
        # where inputs live: engines for DLA cores take their tensors on the GPU
        self.device = torch.device("cuda" if spec.device.startswith("dla") else spec.device)
        # the module owns one reference to each engine (taken by compile or load)
        weakref.finalize(self, _release_all, tuple(engines))
        self.runtime_graph = _direct_engine_calls(program_graph)
        self._fast = _single_engine_plan(program_graph, len(self.signature))
        self._fast_runner = get_engine(self._fast[0]) if self._fast is not None else None
        # per input: dtype, rank, and the lowest and highest shape it accepts
        self._guards = [
            (
                info.dtype,
                tuple(d.min for d in info.dims),
                tuple(d.max if d.max is not None else 2**62 for d in info.dims),
            )
            for info in self.signature
        ]
        codegen = program_graph.graph._codegen
        info = getattr(codegen, "pytree_info", None)
        self._in_spec = info.in_spec if info is not None else None
        self._out_spec = info.out_spec if info is not None else None
        self._plain_output = self._out_spec is None or self._out_spec.is_leaf()
        self._exact_call = self._exact_shape_call()
        self._graphs = _GraphReplay(self._checked_call, self.device) if _wants_cuda_graphs(spec) else None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Straight to forward: nn.Module's hook dispatch costs microseconds per call, which is
        # a visible share of a small engine's run time. Module hooks are not supported.
        return self.forward(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._graphs is not None:
            return self._graphs(args, kwargs)
        return self._checked_call(args, kwargs)

    def _checked_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._exact_call is not None and not kwargs:
            result = self._exact_call(args)
            if result is not None:
                return result
        if kwargs or len(args) != len(self.signature):
            flat = pytree.tree_leaves((args, kwargs))
            self._check(flat)
            return self.runtime_graph(*args, **kwargs)
        self._check(args)
        if self._fast_runner is not None:
            assert self._fast is not None
            positions = self._fast[1]
            outputs = self._fast_runner.run([args[i] for i in positions])
            if self._plain_output or self._out_spec is None:
                return outputs[0] if len(outputs) == 1 else tuple(outputs)
            return pytree.tree_unflatten(outputs, self._out_spec)
        return self.runtime_graph(*args)

    def _exact_shape_call(self) -> Callable[[tuple[Any, ...]], Any] | None:
        """The quickest path, for a single-engine program on the CPU called with plain tensors
        of exactly the compiled dtypes and lowest shapes (every shape, for a static program):
        one comparison per input, then the engine. Anything else returns None and takes the
        checked path. Worth ~3 us a call, an eighth of the digits CNN's run time."""
        if self._fast is None or self._fast_runner is None or not self._plain_output:
            return None
        run = self._fast_runner.unchecked_cpu_run()
        if run is None:
            return None
        positions = self._fast[1]
        expected = [(dtype, low) for dtype, low, _ in self._guards]
        count = len(expected)

        if count == 1 and positions == [0]:
            ((dtype, shape),) = expected

            def call_one(args: tuple[Any, ...]) -> Any:
                if len(args) != 1:
                    return None
                if not _plain_cpu_tensor(args[0], dtype, shape):
                    return None
                outputs = run(args)
                return outputs[0] if len(outputs) == 1 else tuple(outputs)

            return call_one

        def call_many(args: tuple[Any, ...]) -> Any:
            if len(args) != count:
                return None
            for value, (dtype, shape) in zip(args, expected, strict=True):
                if not _plain_cpu_tensor(value, dtype, shape):
                    return None
            outputs = run([args[i] for i in positions])
            return outputs[0] if len(outputs) == 1 else tuple(outputs)

        return call_many

    def _check(self, flat: Sequence[Any]) -> None:
        if len(flat) != len(self._guards):
            names = ", ".join(i.name for i in self.signature)
            raise InputMismatchError(f"the compiled program takes {len(self.signature)} input(s) ({names}), got {len(flat)}")
        for (dtype, low, high), value, info in zip(self._guards, flat, self.signature, strict=True):
            # the cheap comparisons run on every call; InputInfo.check explains a failure
            if not isinstance(value, torch.Tensor) or value.dtype is not dtype:
                info.check(value)
                continue
            shape = value.shape
            if shape == low:
                continue
            if len(shape) != len(low) or not all(lo <= size <= hi for lo, size, hi in zip(low, shape, high, strict=True)):
                info.check(value)

    def example_inputs(self, which: str = "opt", seed: int = 0) -> list[torch.Tensor]:
        """Random inputs at the ``min``, ``opt`` or ``max`` end of each input's range, or
        ``"export"``: opt sizes, but at least 2 on dynamic dimensions, because torch.export
        specializes a dimension traced at size 0 or 1 to that constant."""
        generator = torch.Generator().manual_seed(seed)
        tensors = []
        for info in self.signature:
            shape = []
            for d, o in zip(info.dims, info.opt, strict=True):
                if which == "min":
                    shape.append(d.min)
                elif which == "max" and d.max is not None:
                    shape.append(d.max)
                elif which == "export" and not d.static and o < 2 and (d.max is None or d.max >= 2):
                    shape.append(2)
                else:
                    shape.append(o)
            tensors.append(random_tensor(shape, info.dtype, generator).to(self.device))
        return tensors


def _wants_cuda_graphs(spec: CompileSpec) -> bool:
    try:
        options = spec.options(spec.backend)
    except KeyError:
        return False
    return bool(getattr(options, "cuda_graphs", False))


class CudaGraphError(InputMismatchError):
    """A call that the program's CUDA graphs cannot serve."""


class _GraphReplay:
    """The whole stitched program (engines and the PyTorch code between them) captured in one
    CUDA graph per input signature on its first call, then replayed: at batch 1 a GPU program is
    bound by kernel launches, which a replay issues at once. Inputs are copied into the graph's
    own input buffers and outputs copied out, so callers never see memory a later replay
    overwrites. A program with dynamic inputs captures one graph per shape, up to ``LIMIT``."""

    LIMIT = 8

    def __init__(self, call: Callable[[tuple[Any, ...], dict[str, Any]], Any], device: torch.device) -> None:
        self.call = call
        self.device = device
        self.graphs: dict[tuple[Any, ...], tuple[torch.cuda.CUDAGraph, list[Any], Any]] = {}

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        flat, in_spec = pytree.tree_flatten((args, kwargs))
        key = (in_spec, *((t.shape, t.dtype, t.device) if isinstance(t, torch.Tensor) else t for t in flat))
        entry = self.graphs.get(key)
        if entry is None:
            entry = self._capture(key, flat, in_spec)
        graph, static_inputs, static_outputs = entry
        for buffer, value in zip(static_inputs, flat, strict=True):
            if isinstance(buffer, torch.Tensor):
                buffer.copy_(value)
        graph.replay()
        return pytree.tree_map_only(torch.Tensor, torch.Tensor.clone, static_outputs)

    def _capture(self, key: tuple[Any, ...], flat: list[Any], in_spec: Any) -> Any:
        for value in flat:
            if isinstance(value, torch.Tensor) and value.device.type != "cuda":
                raise CudaGraphError(
                    f"the program replays CUDA graphs on {self.device}; got a tensor on "
                    f"{value.device} (move the inputs with .to('cuda'))"
                )
        if len(self.graphs) >= self.LIMIT:
            raise CudaGraphError(
                f"the program already holds CUDA graphs for {self.LIMIT} input shapes; call it at "
                "one of those shapes, or compile without aotinductor.cuda_graphs"
            )
        static = [v.clone() if isinstance(v, torch.Tensor) else v for v in flat]
        args, kwargs = pytree.tree_unflatten(static, in_spec)
        # warm up on a side stream (first calls allocate and pick kernels), then capture
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self.call(args, kwargs)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = self.call(args, kwargs)
        entry = (graph, static, outputs)
        self.graphs[key] = entry
        return entry


def _plain_cpu_tensor(value: Any, dtype: torch.dtype, shape: tuple[int, ...]) -> bool:
    """A CPU tensor (not a subclass) of exactly ``dtype`` and ``shape`` that needs no grad."""
    return (
        type(value) is torch.Tensor
        and value.dtype is dtype
        and value.shape == shape
        and not value.requires_grad
        and value.is_cpu
    )


def _release_all(engine_ids: tuple[str, ...]) -> None:
    for engine_id in engine_ids:
        release_engine(engine_id)


def random_tensor(shape: Sequence[int], dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    if dtype.is_floating_point:
        return torch.randn(list(shape), generator=generator).to(dtype)
    if dtype == torch.bool:
        return torch.rand(list(shape), generator=generator) > 0.5
    # small non-negative integers: valid token ids and indices for typical models
    return torch.randint(0, 100, list(shape), generator=generator).to(dtype)


def _direct_engine_calls(program_graph: fx.GraphModule) -> fx.GraphModule:
    with warnings.catch_warnings():
        # torch's pytree specs warn about their own deprecated classes when deep-copied
        warnings.simplefilter("ignore", FutureWarning)
        graph = copy.deepcopy(program_graph.graph)
    for node in graph.nodes:
        if node.op == "call_function" and node.target is EXECUTE_ENGINE:
            node.target = run_engine
    runtime = fx.GraphModule(program_graph, graph)
    return runtime


def _single_engine_plan(program_graph: fx.GraphModule, num_inputs: int) -> tuple[str, list[int]] | None:
    """(engine id, input positions) when the program is exactly one engine fed by the inputs and
    returning its outputs in order; None otherwise."""
    nodes = list(program_graph.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    engines = [n for n in nodes if n.op == "call_function" and n.target is EXECUTE_ENGINE]
    if len(engines) != 1 or len(placeholders) != num_inputs:
        return None
    call = engines[0]
    others = [
        n
        for n in nodes
        if n.op not in ("placeholder", "output") and n is not call and n.target is not operator.getitem
    ]
    if others:
        return None
    tensor_args = call.args[0]
    if not all(isinstance(a, fx.Node) and a.op == "placeholder" for a in tensor_args):
        return None
    output = next(n for n in nodes if n.op == "output")
    flat_out = pytree.tree_leaves(output.args[0])
    expected = list(range(len(get_engine(str(call.args[1])).meta.outputs)))
    got = []
    for out in flat_out:
        if not (isinstance(out, fx.Node) and out.target is operator.getitem and out.args[0] is call):
            return None
        got.append(out.args[1])
    if got != expected:
        return None
    return str(call.args[1]), [placeholders.index(a) for a in tensor_args]
