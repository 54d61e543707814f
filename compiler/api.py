"""``compiler.compile``: frontend → lowering → partitioning → conversion → build → runtime."""

from __future__ import annotations

import copy
import hashlib
import operator
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.backends import Backend, EngineMeta, FxPartition, TensorMeta, get_backend
from compiler.conversion import REGISTRY, ConversionError, convert_graph
from compiler.conversion.context import fake_of
from compiler.errors import BackendError, CompilerError, InputMismatchError
from compiler.frontend import (
    InputInfo,
    example_inputs_from_spec,
    export_module,
    input_signature,
    load_program,
)
from compiler.lowering import LoweringSettings, lower
from compiler.partitioning import PartitionPlan, RegistryOperatorSupport, partition
from compiler.report import CompileReport
from compiler.runtime.engine_op import EXECUTE_ENGINE, acquire_engine, release_engine
from compiler.runtime.module import CompiledModule, random_tensor
from compiler.runtime.shapes import ShapeExpressionError, dim_to_expr, eval_expr, expr_text
from compiler.spec import CompileSpec

ModelLike = torch.export.ExportedProgram | torch.nn.Module | str | Path
Progress = Callable[[str], None]


class ConversionFailedError(CompilerError):
    kind = "conversion_failed"


class _Phases:
    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.progress is not None and name not in self.timings:
            self.progress(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


def compile(
    model: ModelLike,
    spec: CompileSpec | None = None,
    example_inputs: Sequence[torch.Tensor] | None = None,
    *,
    progress: Progress | None = None,
) -> CompiledModule:
    """Compile ``model`` for ``spec``. Unconvertible parts run in PyTorch unless the spec sets
    ``partitioning.require_full_compilation``."""
    spec = spec or CompileSpec()
    phase = _Phases(progress)
    with phase("frontend"):
        backend = get_backend(spec.backend)
        backend.check_spec(spec)
        program = _intake(model, spec, example_inputs)
        signature = input_signature(program, spec)
    with phase("lowering"):
        _, gm, pass_timings = lower(program, LoweringSettings(spec))
        _move_to_device(gm, spec)
    with phase("partitioning"):
        plan = _partition(gm, spec, backend)
    report = _report(spec, backend, plan, signature, pass_timings)
    engines: dict[str, tuple[EngineMeta, bytes]] = {}
    ranges = _symbol_ranges(plan.graph_module, signature)
    try:
        _build_all(plan, spec, backend, ranges, phase, report, engines)
    except BaseException:
        for engine_id in engines:  # the compiled module that would own them never comes to be
            release_engine(engine_id)
        raise
    with phase("runtime"):
        program_graph = plan.graph_module
        _drop_unused_attributes(program_graph)
        program_graph.recompile()
        report.timings = dict(phase.timings)
        compiled = CompiledModule(program_graph, signature, spec, engines, report)
    report.timings = dict(phase.timings)
    return compiled


def _build_all(
    plan: PartitionPlan,
    spec: CompileSpec,
    backend: Backend,
    ranges: dict[str, tuple[int, int, int]],
    phase: _Phases,
    report: CompileReport,
    engines: dict[str, tuple[EngineMeta, bytes]],
) -> None:
    # one engine and no PyTorch code around it: nothing else of the program shares its cores
    whole_program = len(plan.engine_modules) == 1 and not plan.fallback_ops
    for name in plan.engine_modules:
        try:
            meta, engine = _build_partition(plan.graph_module, name, spec, backend, ranges, phase, whole_program)
        except (ConversionError, BackendError, ShapeExpressionError) as exc:
            if spec.partitioning.require_full_compilation:
                raise ConversionFailedError(f"partition {name} could not be built: {exc}") from exc
            _mark_fallback(report, name, f"conversion failed: {exc}")
            continue
        if meta.engine_id in engines:  # identical partitions share one engine and one reference
            release_engine(meta.engine_id)
        engines[meta.engine_id] = (meta, engine)


def plan(
    model: ModelLike, spec: CompileSpec | None = None, example_inputs: Sequence[torch.Tensor] | None = None
) -> CompileReport:
    """The dry run: frontend, lowering and partitioning only; nothing is converted or built."""
    spec = spec or CompileSpec()
    phase = _Phases(None)
    with phase("frontend"):
        backend = get_backend(spec.backend, require_available=False)
        program = _intake(model, spec, example_inputs)
        signature = input_signature(program, spec)
    with phase("lowering"):
        _, gm, pass_timings = lower(program, LoweringSettings(spec))
    with phase("partitioning"):
        partition_plan = _partition(gm, spec, backend)
    report = _report(spec, backend, partition_plan, signature, pass_timings)
    report.timings = dict(phase.timings)
    return report


# ---------------------------------------------------------------------- phases
def _intake(model: ModelLike, spec: CompileSpec, example_inputs: Sequence[torch.Tensor] | None) -> torch.export.ExportedProgram:
    if isinstance(model, torch.export.ExportedProgram):
        return model
    if isinstance(model, (str, Path)):
        return load_program(model)
    if isinstance(model, torch.nn.Module):
        inputs = list(example_inputs) if example_inputs is not None else example_inputs_from_spec(spec)
        if inputs is None:
            raise InputMismatchError(
                "an nn.Module needs example inputs: pass example_inputs=, or give every input a "
                "shape (or min/opt/max) and dtype in the spec"
            )
        return export_module(model, inputs, spec)
    raise InputMismatchError(f"cannot compile a {type(model).__name__}; pass an ExportedProgram, a .pt2 path or an nn.Module")


def _move_to_device(gm: fx.GraphModule, spec: CompileSpec) -> None:
    """For a CUDA device, the lowered program's weights and the devices its ops name move
    there, so the PyTorch code between engines runs on the GPU too and tensors never visit the
    host. The lowered graph is the compiler's own; its weights are new tensors, so the caller's
    program stays the reference on its own device. (torch.export's ``move_to_device_pass`` does
    this on an ExportedProgram, in place: on a deep copy it breaks programs whose inputs FX
    renames, such as one named ``input``.)"""
    if spec.device.startswith("cuda"):
        move_graph_to_device(gm, torch.device(spec.device))


def move_graph_to_device(gm: fx.GraphModule, device: torch.device) -> None:
    """Weights, constants, the devices that ops name and the recorded fake values of ``gm``
    move to ``device``; the tensors are new ones (shared weights elsewhere stay put)."""
    for name, tensor in [*gm.named_parameters(), *gm.named_buffers()]:
        owner, _, leaf = name.rpartition(".")
        module = gm.get_submodule(owner) if owner else gm
        moved = tensor.detach().to(device)
        if leaf in module._parameters:
            module._parameters[leaf] = torch.nn.Parameter(moved, requires_grad=False)
        else:
            module._buffers[leaf] = moved
    for attr, value in list(vars(gm).items()):
        if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter):
            setattr(gm, attr, value.to(device))  # constants lifted as plain attributes
    for node in gm.graph.nodes:
        if "device" in node.kwargs:
            node.kwargs = {**node.kwargs, "device": device}
        if node.op == "call_function" and node.target is torch.ops.aten.to.device:
            node.args = (node.args[0], device, *node.args[2:])
        node.meta["val"] = torch.utils._pytree.tree_map_only(
            torch.Tensor, lambda v: v.to(device), node.meta.get("val")
        )
    gm.recompile()


def _partition(gm: fx.GraphModule, spec: CompileSpec, backend: Backend) -> PartitionPlan:
    onnx = backend.consumes == "onnx"
    support = RegistryOperatorSupport(
        REGISTRY if onnx else None,
        backend.supported_onnx_ops(spec) if onnx and backend.available() else None,
        backend.name,
        spec.partitioning.torch_executed_ops,
        dtype_supported=lambda dtype: backend.supports_dtype(dtype, spec),
        node_check=None if onnx else (lambda node: backend.node_unsupported_reason(node, spec)),
    )
    return partition(gm, support, spec.partitioning)


def _report(
    spec: CompileSpec,
    backend: Backend,
    plan: PartitionPlan,
    signature: Sequence[InputInfo],
    pass_timings: dict[str, float],
) -> CompileReport:
    return CompileReport(
        backend=backend.name,
        backend_version=backend.version() or "unavailable",
        precision=spec.precision,
        device=spec.device,
        partitions=[p.to_dict() for p in plan.partitions],
        fallback_ops=dict(plan.fallback_ops),
        fallback_reasons=dict(plan.fallback_reasons),
        pass_timings=pass_timings,
        inputs=[i.to_dict() for i in signature],
    )


def _mark_fallback(report: CompileReport, name: str, reason: str) -> None:
    for part in report.partitions:
        if part["name"] == name:
            part["accelerated"] = False
            part["reason"] = reason
            for op, count in part["ops"].items():
                report.fallback_ops[op] = report.fallback_ops.get(op, 0) + count
                report.fallback_reasons.setdefault(op, reason)


def _symbol_ranges(gm: fx.GraphModule, signature: Sequence[InputInfo]) -> dict[str, tuple[int, int, int]]:
    """symbol -> (min, opt, max) from the user inputs whose dimensions are plain symbols; an
    unbounded dimension's max is the spec's, else the stated default (``DimRange.engine_max``)."""
    ranges: dict[str, tuple[int, int, int]] = {}
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for node, info in zip(placeholders, signature, strict=False):
        fake = fake_of(node)
        if not isinstance(fake, torch.Tensor):
            continue
        for size, rng, opt in zip(fake.shape, info.dims, info.opt, strict=False):
            if isinstance(size, torch.SymInt) and size.node.expr.is_Symbol:
                ranges.setdefault(str(size.node.expr), (rng.min, opt, max(rng.engine_max, opt)))
    return ranges


def _tensor_meta(name: str, fake: torch.Tensor, ranges: dict[str, tuple[int, int, int]]) -> TensorMeta:
    exprs = [dim_to_expr(d) for d in fake.shape]
    concrete = []
    for which in range(3):
        env = {sym: r[which] for sym, r in ranges.items()}
        try:
            concrete.append(tuple(int(eval_expr(e, env)) for e in exprs))
        except KeyError:
            concrete.append(())
    return TensorMeta(
        name=name,
        dtype=str(fake.dtype).removeprefix("torch."),
        shape=tuple(expr_text(e) for e in exprs),
        min=concrete[0],
        opt=concrete[1],
        max=concrete[2],
    )


def _build_partition(
    parent: fx.GraphModule,
    name: str,
    spec: CompileSpec,
    backend: Backend,
    ranges: dict[str, tuple[int, int, int]],
    phase: _Phases,
    whole_program: bool,
) -> tuple[EngineMeta, bytes]:
    submodule = parent.get_submodule(name)
    assert isinstance(submodule, fx.GraphModule)
    call = next(n for n in parent.graph.nodes if n.op == "call_module" and n.target == name)
    placeholders = [n for n in submodule.graph.nodes if n.op == "placeholder"]
    constants = {}
    for placeholder, arg in zip(placeholders, call.args, strict=True):
        if isinstance(arg, fx.Node) and arg.op == "get_attr":
            constants[placeholder.name] = _fetch_attr(parent, str(arg.target))
    with phase("conversion"):
        output_node = next(n for n in submodule.graph.nodes if n.op == "output")
        returns_tuple = isinstance(output_node.args[0], (tuple, list))
        out_nodes = list(output_node.args[0]) if returns_tuple else [output_node.args[0]]
        partition_input: bytes | FxPartition
        if backend.consumes == "onnx":
            converted = convert_graph(submodule, name, constants)
            partition_input = ir.to_proto(converted.model).SerializeToString()
            input_names, input_nodes, output_names = converted.input_names, converted.input_nodes, converted.output_names
        else:
            # input metadata is read before the graph is handed over: the backend may retrace it
            input_nodes = [n for n in placeholders if n.name not in constants]
            input_names = [n.name for n in input_nodes]
            output_names = [f"output_{i}" for i in range(len(out_nodes))]
            partition_input = _fx_partition(submodule, constants, input_nodes, ranges)
        inputs = tuple(
            _tensor_meta(n, fake_of(node), ranges) for n, node in zip(input_names, input_nodes, strict=True)
        )
        outputs = tuple(
            _tensor_meta(n, fake_of(node), ranges) for n, node in zip(output_names, out_nodes, strict=True)
        )
        symbols: dict[str, tuple[int, int]] = {}
        for index, node in enumerate(input_nodes):
            for dim, size in enumerate(fake_of(node).shape):
                if isinstance(size, torch.SymInt) and size.node.expr.is_Symbol:
                    symbols.setdefault(str(size.node.expr), (index, dim))
        output_dims = [[dim_to_expr(d) for d in fake_of(n).shape] for n in out_nodes]
        _check_symbols(output_dims, symbols, name)
    with phase("build"):
        engine, extra = backend.build(partition_input, spec, inputs, outputs, whole_program=whole_program)
        meta = EngineMeta(
            engine_id=hashlib.sha256(engine).hexdigest(),
            backend=backend.name,
            backend_version=backend.version() or "unknown",
            inputs=inputs,
            outputs=outputs,
            device=spec.device,
            extra={**extra, "symbols": symbols, "output_dims": output_dims, "partition": name},
        )
        acquire_engine(meta, lambda: backend.load(engine, meta))
    with phase("runtime"):
        engine_inputs = [call.args[placeholders.index(n)] for n in input_nodes]
        graph = parent.graph
        with graph.inserting_before(call):
            engine_call = graph.call_function(EXECUTE_ENGINE, (engine_inputs, meta.engine_id))
        if returns_tuple:
            call.replace_all_uses_with(engine_call)
        else:
            with graph.inserting_after(engine_call):
                first = graph.call_function(operator.getitem, (engine_call, 0))
            call.replace_all_uses_with(first)
        graph.erase_node(call)
        delattr(parent, name)
    return meta, engine


def _fx_partition(
    submodule: fx.GraphModule,
    constants: dict[str, Any],
    input_nodes: list[fx.Node],
    ranges: dict[str, tuple[int, int, int]],
) -> FxPartition:
    """The partition as a self-contained ATen graph for backends that consume FX: weights passed
    in by the parent become attributes, the remaining placeholders are the engine's inputs, and
    example inputs sit at the ``opt`` shapes (at least 2 on dynamic axes, which torch.export
    would otherwise specialize)."""
    # a copy: if the build fails, the partition runs in PyTorch as it was
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's pytree specs, when copied
        graph = copy.deepcopy(submodule.graph)
    engine_module = fx.GraphModule(submodule, graph)
    first_body = next(n for n in graph.nodes if n.op != "placeholder")
    for index, node in enumerate([n for n in graph.nodes if n.op == "placeholder" and n.name in constants]):
        attr = f"_engine_constant_{index}"
        value = constants[node.name]
        engine_module.register_buffer(attr, value.detach() if isinstance(value, torch.Tensor) else value)
        with graph.inserting_before(first_body):
            node.replace_all_uses_with(graph.get_attr(attr))
        graph.erase_node(node)
    engine_module.recompile()
    examples: list[torch.Tensor] = []
    dynamic_axes: list[dict[int, tuple[str, int, int | None]]] = []
    generator = torch.Generator().manual_seed(0)
    for node in input_nodes:
        fake = fake_of(node)
        shape: list[int] = []
        axes: dict[int, tuple[str, int, int | None]] = {}
        for axis, size in enumerate(fake.shape):
            if isinstance(size, int):
                shape.append(size)
                continue
            expr = size.node.expr
            if not expr.is_Symbol or str(expr) not in ranges:
                raise BackendError(f"input {node.name} has a derived dynamic size {expr}; only plain symbols cross into engines")
            low, opt, high = ranges[str(expr)]
            shape.append(max(opt, 2) if high >= 2 else opt)
            axes[axis] = (str(expr), low, high)
        examples.append(random_tensor(shape, fake.dtype, generator))
        dynamic_axes.append(axes)
    return FxPartition(engine_module, examples, dynamic_axes)


def _drop_unused_attributes(gm: fx.GraphModule) -> None:
    """Weights now inside engines would otherwise be kept (and saved) twice."""
    gm.graph.eliminate_dead_code()
    used = {str(n.target) for n in gm.graph.nodes if n.op in ("get_attr", "call_module")}
    for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()):
        if name not in used:
            owner, _, leaf = name.rpartition(".")
            module = gm.get_submodule(owner) if owner else gm
            delattr(module, leaf)


def _check_symbols(output_dims: list[list[Any]], symbols: dict[str, tuple[int, int]], name: str) -> None:
    def walk(expr: Any) -> Iterator[str]:
        if isinstance(expr, list):
            if expr[0] == "sym":
                yield expr[1]
            else:
                for e in expr[1:]:
                    yield from walk(e)

    for dims in output_dims:
        for dim in dims:
            for sym in walk(dim):
                if sym not in symbols:
                    raise ConversionError(
                        f"an output size of {name} depends on {sym}, which no engine input carries"
                    )


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
