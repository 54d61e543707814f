"""``compiler.compile``: frontend → lowering → partitioning → conversion → build → runtime."""

from __future__ import annotations

import copy
import hashlib
import operator
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import onnx_ir as ir
import torch
from torch import fx
from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

from compiler.backends import Backend, Calibration, EngineMeta, FxPartition, TensorMeta, get_backend
from compiler.conversion import REGISTRY, ConversionError, convert_graph
from compiler.conversion.context import fake_of
from compiler.datasets import Batch, Batches, DataLike, batches
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
from compiler.performance import reset_peak_memory
from compiler.report import CompileReport
from compiler.runtime.engine_op import EXECUTE_ENGINE, acquire_engine, release_engine
from compiler.runtime.module import CompiledModule, random_tensor
from compiler.runtime.shapes import ShapeExpressionError, dim_to_expr, eval_expr, expr_text
from compiler.spec import CompileSpec
from compiler.validation import check_gate, gate_failures, performance_results, sample_inputs
from compiler.validation import validate as validate_compiled

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
    calibration_data: DataLike | None = None,
    validate: bool = False,
    validation_data: DataLike | None = None,
) -> CompiledModule:
    """Compile ``model`` for ``spec``. Unconvertible parts run in PyTorch unless the spec sets
    ``partitioning.require_full_compilation``.

    ``calibration_data`` and ``validation_data`` (a .safetensors/.npz path, a mapping of input
    name to a batch of rows, or a list of input tuples) are checked against the program's inputs
    before anything is built. int8 calibrates on ``calibration_data``, else on
    ``validation_data``, else on inputs generated within the spec's ranges. With ``validate``,
    the engine is compared with the program and must pass the spec precision's gate, or
    AccuracyGateError is raised with the results; a failing int8 engine is first rebuilt with
    its most damaging nodes kept in fp32, up to ``quantization.max_retries`` times. The results
    end with the ``(performance)`` rows: latency of eager and compiled, speedup, and the peak
    memory of this compile (``compiler.performance``)."""
    spec = spec or CompileSpec()
    if validate:
        reset_peak_memory(spec.device)  # the peak recorded is this compile's
    phase = _Phases(progress)
    with phase("frontend"):
        backend = get_backend(spec.backend)
        backend.check_spec(spec)
        program = _intake(model, spec, example_inputs)
        signature = input_signature(program, spec)
        # data files are refused here, before any compile work, when they do not fit the program
        calibration = batches(calibration_data, signature) if calibration_data is not None else None
        validation = batches(validation_data, signature) if validation_data is not None else None
    # int8 nodes are ranked by the error they add only when the gate may ask for retries
    rank = validate and spec.quantization.max_retries > 0
    compiled = _compile_program(program, signature, spec, backend, phase, calibration or validation, rank)
    if not validate:
        return compiled
    return _gate(compiled, program, spec, backend, signature, phase, calibration or validation, validation)


def _gate(
    compiled: CompiledModule,
    program: torch.export.ExportedProgram,
    spec: CompileSpec,
    backend: Backend,
    signature: Sequence[InputInfo],
    phase: _Phases,
    calibration: Batches | None,
    validation: Batches | None,
) -> CompiledModule:
    """Validate; while a static int8 engine fails its gate and retries are left, rebuild it with
    more nodes kept in fp32: those that each engine measured as adding the most noise (1, then
    2, then 4 more...). The kept nodes are recorded in the spec, the report and the engines'
    metadata."""
    retries = spec.quantization.max_retries if _keeps_fp32(spec, backend) else 0
    for attempt in range(retries + 1):
        with phase("validation"):
            results = validate_compiled(compiled, program, compiled.spec, data=validation, performance=False)
        compiled.report.validation = [r.to_dict() for r in results]
        if not gate_failures(results) or attempt == retries:
            break
        ranked = sorted(
            (
                (float(drop), f"{meta.extra['partition']}/{node}")
                for meta, _ in compiled.engines.values()
                for node, drop in meta.extra.get("node_sensitivity", [])
            ),
            reverse=True,
        )
        kept = list(compiled.spec.quantization.keep_fp32)
        fresh = [name for _, name in ranked if name not in kept][: 2**attempt]
        if not fresh:
            break
        quantization = compiled.spec.quantization.model_copy(update={"keep_fp32": kept + fresh})
        retry = spec.model_copy(update={"quantization": quantization})
        compiled = _compile_program(program, signature, retry, backend, phase, calibration, attempt + 1 < retries)
    with phase("validation"):
        # timed once, on the engine that is kept: on the first input set validation used
        first = validation[0][0] if validation else sample_inputs(signature, 1, 0)[0]
        results += performance_results(compiled, program, first, compiled.spec)
    compiled.report.validation = [r.to_dict() for r in results]
    # timings add up every attempt's phases, validation included
    compiled.report.timings = dict(phase.timings)
    check_gate(results, compiled)
    return compiled


def _static_int8(spec: CompileSpec, backend: Backend) -> bool:
    return spec.precision == "int8" and spec.quantization.method == "static" and backend.calibrates


def _keeps_fp32(spec: CompileSpec, backend: Backend) -> bool:
    """Whether a failing gate can be answered by keeping measured nodes in fp32: static int8
    on a calibrating backend, or reduced float precision on a backend that keeps nodes."""
    if spec.precision == "int8":
        return _static_int8(spec, backend) and "int8" in backend.keeps_fp32
    return spec.precision in backend.keeps_fp32


def _compile_program(
    program: torch.export.ExportedProgram,
    signature: Sequence[InputInfo],
    spec: CompileSpec,
    backend: Backend,
    phase: _Phases,
    calibration_data: Batches | None,
    rank_nodes: bool = False,
) -> CompiledModule:
    with phase("lowering"):
        _, gm, pass_timings = lower(program, LoweringSettings(spec))
        _move_to_device(gm, spec)
    with phase("partitioning"):
        plan = _partition(gm, spec, backend)
    report = _report(spec, backend, plan, signature, pass_timings)
    engines: dict[str, tuple[EngineMeta, bytes]] = {}
    ranges = _symbol_ranges(plan.graph_module, signature)
    calibration: dict[str, list[dict[int, Any]]] = {}
    if _static_int8(spec, backend) or (rank_nodes and backend.consumes == "fx" and _keeps_fp32(spec, backend)):
        # int8 calibrates on these; reduced float precision ranks nodes on them for the gate
        with phase("calibration"):
            batches_ = _calibration_batches(spec, signature, calibration_data, report)
            calibration = _capture_partition_inputs(plan, batches_, torch.device(spec.device))
    try:
        _build_all(plan, spec, backend, ranges, phase, report, engines, calibration, rank_nodes)
    except BaseException:
        for engine_id in engines:  # the compiled module that would own them never comes to be
            release_engine(engine_id)
        raise
    report.kept_fp32 = sorted(
        f"{meta.extra['partition']}/{node}" for meta, _ in engines.values() for node in meta.extra.get("kept_fp32", [])
    )
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
    calibration: dict[str, list[dict[int, Any]]] | None = None,
    rank_nodes: bool = False,
) -> None:
    # one engine and no PyTorch code around it: nothing else of the program shares its cores
    whole_program = len(plan.engine_modules) == 1 and not plan.fallback_ops
    for name in plan.engine_modules:
        try:
            meta, engine = _build_partition(
                plan.graph_module, name, spec, backend, ranges, phase, whole_program, (calibration or {}).get(name), rank_nodes
            )
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


_STRIDE_BOUND_VIEWS = (torch.ops.aten.view.default, torch.ops.aten._unsafe_view.default)


def move_graph_to_device(gm: fx.GraphModule, device: torch.device) -> None:
    """Weights, constants, the devices that ops name and the recorded fake values of ``gm``
    move to ``device`` (the tensors are new ones: shared weights elsewhere stay put), and views
    bound to the traced strides become reshapes."""
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
        if node.op == "call_function" and node.target in _STRIDE_BOUND_VIEWS:
            # a view was chosen for the strides the program was traced with; another device's
            # kernels may lay values out differently (attention on CUDA does), and a reshape
            # is the same view where the strides allow it and a copy where they do not
            node.target = torch.ops.aten.reshape.default
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
        data_dependent_shapes=backend.data_dependent_shapes,
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
    calibration: list[dict[int, Any]] | None = None,
    rank_nodes: bool = False,
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
        # sizes the engine computes from the values (nonzero's row count): the runtime learns
        # them from the outputs the engine returns
        data_dependent = sorted(
            {str(s) for n in out_nodes for d in fake_of(n).shape if isinstance(d, torch.SymInt) for s in free_unbacked_symbols(d)}
            - set(symbols)
        )
        _check_symbols(output_dims, {*symbols, *data_dependent}, name)
    with phase("build"):
        prefix = f"{name}/"
        keep = tuple(k.removeprefix(prefix) for k in spec.quantization.keep_fp32 if k.startswith(prefix))
        # this partition's own inputs, captured from the parent graph's call arguments
        positions = [placeholders.index(n) for n in input_nodes]
        if isinstance(partition_input, FxPartition):
            partition_input.keep_fp32 = keep
            if calibration is not None and rank_nodes:
                partition_input.rank_samples = [[args[p] for p in positions] for args in calibration]
            engine, extra = backend.build(partition_input, spec, inputs, outputs, whole_program=whole_program)
        elif calibration is not None:
            # int8
            samples = [{n: args[p] for n, p in zip(input_names, positions, strict=True)} for args in calibration]
            engine, extra = backend.build_calibrated(
                partition_input, spec, inputs, outputs, Calibration(name, samples, keep, rank_nodes), whole_program=whole_program
            )
        else:
            engine, extra = backend.build(partition_input, spec, inputs, outputs, whole_program=whole_program)
        meta = EngineMeta(
            engine_id=hashlib.sha256(engine).hexdigest(),
            backend=backend.name,
            backend_version=backend.version() or "unknown",
            inputs=inputs,
            outputs=outputs,
            device=spec.device,
            extra={
                **extra,
                "symbols": symbols,
                "output_dims": output_dims,
                "data_dependent": data_dependent,
                "partition": name,
            },
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


def _calibration_batches(
    spec: CompileSpec, signature: Sequence[InputInfo], data: Batches | None, report: CompileReport
) -> Batches:
    """The user's batches (at most ``calibration_samples``), else as many generated within the
    spec's ranges from ``quantization.seed``; what was used goes into the report."""
    count = spec.quantization.calibration_samples
    if data is not None:
        chosen = Batches(data[:count])
        report.calibration = {"source": "data", "batches": len(chosen)}
        return chosen
    generated = sample_inputs(signature, count, spec.quantization.seed)
    report.calibration = {"source": "generated", "batches": len(generated), "seed": spec.quantization.seed}
    return Batches((inputs, None) for inputs in generated)


def _capture_partition_inputs(plan: PartitionPlan, data: list[Batch], device: torch.device) -> dict[str, list[dict[int, Any]]]:
    """Each accelerated partition's call arguments when the partitioned program runs in PyTorch
    on ``data``, before any engine replaces its submodule: calibration for partitions that sit
    behind other code. Pre-hooks on the partition submodules see exactly what engines will get.
    Where every partition reads only program inputs (a whole-program engine), those inputs are
    what it gets, and the program does not run: on ResNet-50 the run in PyTorch was 9-15 s of
    a 20-26 s quantize + calibrate on the loaded 2-core machine (benchmarks/README.md)."""
    captured: dict[str, list[dict[int, Any]]] = {name: [] for name in plan.engine_modules}
    placeholders = {n: i for i, n in enumerate(n for n in plan.graph_module.graph.nodes if n.op == "placeholder")}
    calls: dict[str, list[int]] = {}
    readers: dict[str, dict[int, Callable[[list[Any]], Any] | None]] = {}
    for name in plan.engine_modules:
        call = next(n for n in plan.graph_module.graph.nodes if n.op == "call_module" and n.target == name)
        # weights passed in as arguments are the same every call: keep only the activations
        live = [i for i, a in enumerate(call.args) if not (isinstance(a, fx.Node) and a.op == "get_attr")]
        calls[name] = live
        readers[name] = {i: _program_input_reader(call.args[i], placeholders) for i in live}
    if all(r is not None for read in readers.values() for r in read.values()):
        for inputs, _ in data:
            on_device = [t.to(device) if isinstance(t, torch.Tensor) else t for t in inputs]
            for name, read in readers.items():
                values = {i: cast(Callable[[list[Any]], Any], r)(on_device) for i, r in read.items()}
                captured[name].append({i: v.detach() if isinstance(v, torch.Tensor) else v for i, v in values.items()})
        return captured
    handles = []
    for name, live in calls.items():

        def hook(module: torch.nn.Module, args: tuple[Any, ...], name: str = name, live: list[int] = live) -> None:
            captured[name].append({i: args[i].detach() if isinstance(args[i], torch.Tensor) else args[i] for i in live})

        handles.append(plan.graph_module.get_submodule(name).register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            for inputs, _ in data:
                plan.graph_module(*(t.to(device) if isinstance(t, torch.Tensor) else t for t in inputs))
    finally:
        for handle in handles:
            handle.remove()
    return captured


def _program_input_reader(arg: Any, placeholders: dict[fx.Node, int]) -> Callable[[list[Any]], Any] | None:
    """How a partition argument follows from the program's inputs alone, if it does: an input
    itself, or one of its sizes (``aten.sym_size.int`` of an input, as dynamic shapes pass it),
    or a constant."""
    if not isinstance(arg, fx.Node):
        return lambda inputs: arg
    if arg in placeholders:
        index = placeholders[arg]
        return lambda inputs: inputs[index]
    if arg.target is torch.ops.aten.sym_size.int:
        source, dim = arg.args
        if isinstance(source, fx.Node) and source in placeholders and isinstance(dim, int):
            index = placeholders[source]
            return lambda inputs: int(inputs[index].shape[dim])
    return None


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


def _check_symbols(output_dims: list[list[Any]], symbols: Collection[str], name: str) -> None:
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
