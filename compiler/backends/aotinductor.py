"""The GPU backend we can run and prove: PyTorch's AOTInductor, one package per partition.

Each accelerated partition arrives as an ATen FX graph (no ONNX). It is exported on its own, with
the spec's dynamic ranges as ``torch.export.Dim``s, and compiled by
``torch._inductor.aoti_compile_and_package`` into a ``.pt2`` package of generated Triton (CUDA)
or C++ (CPU) kernels. The package bytes are the engine: they travel inside our own ``.pt2`` and
are sha256-checked like every engine.

Packages run only where they were built: the CPU architecture (CPU kernels are compiled for the
builder's vector ISA), the GPU generation (Triton kernels are compiled for one compute
capability) and the PyTorch release (the package calls into libtorch's C ABI). ``requirements``
says so, and ``compiler.load`` refuses an engine whose requirements this machine does not meet.

Reduced precision: the engine computes in fp16 or bf16 — weights are converted and floating
inputs cast inside the package — and casts its outputs back, so the program keeps the model's
calling convention and output dtypes. Nodes named in ``quantization.keep_fp32`` compute in fp32
inside the same package (their inputs cast up, their results cast back down, weights used only
by them left in fp32). When the accuracy gate may retry, the build measures each node's error
(:func:`node_sensitivity`) so a failing gate can keep the worst ones in fp32.
"""

from __future__ import annotations

import functools
import importlib.util
import operator
import os
import shutil
import threading
from collections.abc import Collection, Sequence
from typing import Any, cast

import torch
from pydantic import BaseModel, ConfigDict
from torch import fx

from compiler.backends.base import Backend, EngineMeta, EngineRunner, FxPartition, TensorMeta
from compiler.errors import BackendError, InputMismatchError
from compiler.identity import DeviceClass, DeviceIdentity, EngineRequirements
from compiler.scratch import scratch_folder
from compiler.spec import CompileSpec

_REDUCED = {"fp16": torch.float16, "bf16": torch.bfloat16}


class AOTInductorOptions(BaseModel):
    """The spec's ``aotinductor:`` block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: TensorFloat-32 for fp32 matrix products and convolutions on CUDA (faster, ~1e-3 relative).
    #: Unset: off in fp32 engines; on in fp16 and bf16 engines, whose few fp32 products (attention
    #: that PyTorch computes in fp32) then use tensor cores at a precision no lower than the
    #: engine's — strict fp32 there made ViT-B/16 fp16 batch 8 slower than torch.compile on an
    #: H200 (0.41 ms of SIMT GEMMs a call where TF32 takes 0.23 ms)
    tf32: bool | None = None
    #: capture the whole compiled program in a CUDA graph on the first call and replay it
    cuda_graphs: bool = False
    #: let Inductor benchmark kernel choices at build time (slower builds, sometimes faster engines)
    max_autotune: bool = False
    #: let Inductor turn convolutions channels-last on CUDA. Unset, it decides by arithmetic: on
    #: for fp16, bf16 and TF32, whose tensor-core kernels want that layout; off for strict fp32,
    #: where cuDNN's kernels in the traced (NCHW) layout are faster — ResNet-50 fp32 batch 8 on
    #: an H200: 3.75 ms as traced, 4.26 ms channels-last (benchmarks/README.md, "GPU engines")
    channels_last: bool | None = None


class AOTInductorBackend(Backend):
    name = "aotinductor"
    consumes = "fx"
    options = AOTInductorOptions
    keeps_fp32 = frozenset(_REDUCED)

    def available(self) -> bool:
        return self._unavailable() is None

    def unavailable_reason(self) -> str:
        return self._unavailable() or "the aotinductor backend is available"

    @staticmethod
    @functools.cache
    def _unavailable() -> str | None:
        # Found, not imported: importing Inductor costs ~1.8 s of CPU, paid by every worker at
        # start-up (capability detection) though most of them never build an Inductor package;
        # a compile imports it when it needs it.
        try:
            found = importlib.util.find_spec("torch._inductor") is not None
        except ImportError as exc:  # pragma: no cover - part of every torch build we accept
            return f"backend aotinductor needs torch._inductor: {exc}"
        if not found:  # pragma: no cover
            return "backend aotinductor needs torch._inductor, which this torch build lacks"
        if shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("c++") is None:
            return "backend aotinductor needs a C++ compiler (g++) to build its packages"
        return None

    def version(self) -> str | None:
        return str(torch.__version__)

    def check_spec(self, spec: CompileSpec) -> None:
        if spec.device.startswith("dla"):
            raise BackendError("device dla runs TensorRT engines only; use the tensorrt backend for DLA cores")
        if spec.precision == "int8":
            raise BackendError(
                "precision int8 is not built by the aotinductor backend; use fp32, fp16 or bf16, "
                "or onnxruntime for int8"
            )
        if spec.precision in _REDUCED and spec.device == "cpu":
            raise BackendError(
                f"precision {spec.precision} with aotinductor needs device cuda; on the CPU it "
                "builds fp32 engines"
            )
        if _options(spec).cuda_graphs and spec.device == "cpu":
            raise BackendError("aotinductor.cuda_graphs needs device cuda")

    def check_target(self, spec: CompileSpec, arch: str, device_class: DeviceClass | None) -> None:
        super().check_target(spec, arch, device_class)
        self.check_spec(spec)
        if spec.precision == "bf16" and device_class is not None and not device_class.capability_at_least(8, 0):
            raise BackendError(
                f"precision bf16 needs a GPU of compute capability 8.0 or later (Ampere); "
                f"{device_class.name} ({device_class.description}) is {device_class.compute_capability}: use fp16"
            )

    def device_tied(self, device: str) -> bool:
        return device.startswith("cuda")

    def requirements(self, meta: EngineMeta, built_on: DeviceIdentity) -> EngineRequirements:
        on_gpu = meta.device.startswith("cuda")
        return EngineRequirements(
            arch=built_on.arch,
            gpu=on_gpu,
            compute_capability=meta.extra.get("compute_capability") if on_gpu else None,
            torch_version=meta.backend_version,
        )

    def node_unsupported_reason(self, node: fx.Node, spec: CompileSpec) -> str | None:
        return inductor_node_support(node, "cuda" if spec.device.startswith("cuda") else "cpu")

    def supports_dtype(self, dtype: torch.dtype, spec: CompileSpec) -> bool:
        return not dtype.is_complex

    def build(
        self,
        partition: FxPartition,
        spec: CompileSpec,
        inputs: Sequence[TensorMeta],
        outputs: Sequence[TensorMeta],
        *,
        whole_program: bool = True,
    ) -> tuple[bytes, dict[str, Any]]:
        device = torch.device(spec.device)
        compute = _REDUCED.get(spec.precision)
        ranked: list[list[Any]] | None = None
        if compute is not None and partition.rank_samples:
            # measured before _EngineModule retypes the graph and its weights in place
            ranked = node_sensitivity(partition.graph_module, partition.rank_samples, compute)
        keep = partition.keep_fp32 if compute is not None else ()
        module = _EngineModule(partition.graph_module, compute, [o.torch_dtype for o in outputs], keep)
        module = module.to(device)
        example = [t.to(device) for t in partition.example_inputs]
        dims: dict[str, Any] = {}
        dynamic: list[dict[int, Any] | None] = []
        for axes in partition.dynamic_axes:
            per_input: dict[int, Any] = {}
            for axis, (symbol, low, high) in axes.items():
                if symbol not in dims:
                    # torch.export refuses a Dim whose range starts at 0 or 1 only when it is
                    # traced at that size; the example inputs avoid those sizes.
                    bounds: dict[str, int] = {"min": low}
                    if high is not None:
                        bounds["max"] = high
                    dims[symbol] = torch.export.Dim(f"d_{symbol}", **bounds)
                per_input[axis] = dims[symbol]
            dynamic.append(per_input or None)
        try:
            with _tf32(device, tf32_enabled(spec)), torch.no_grad():
                program = torch.export.export(
                    module, tuple(example), dynamic_shapes=(tuple(dynamic),) if dims else None, strict=False
                )
                engine = _compile_package(program, inductor_configs(spec))
        except BackendError:
            raise
        except Exception as exc:  # Inductor raises many types; the partition then falls back
            raise BackendError(f"AOTInductor could not build the partition: {type(exc).__name__}: {exc}") from exc
        extra: dict[str, Any] = {"precision": spec.precision, "tf32": tf32_enabled(spec)}
        if keep:
            extra["kept_fp32"] = sorted(module.kept)
        if ranked is not None:
            extra["node_sensitivity"] = ranked
        if device.type == "cuda":
            major, minor = torch.cuda.get_device_capability(device)
            extra["compute_capability"] = f"{major}.{minor}"
            extra["gpu_name"] = torch.cuda.get_device_name(device)
        return engine, extra

    def load(self, engine: bytes, meta: EngineMeta) -> EngineRunner:
        return AOTInductorRunner(engine, meta)


def _options(spec: CompileSpec) -> AOTInductorOptions:
    return cast(AOTInductorOptions, spec.options("aotinductor"))


class _EngineModule(torch.nn.Module):
    """The partition as a module for export: weights (and floating inputs) in the compute dtype,
    outputs cast back to the dtypes the rest of the program expects; nodes named in ``keep``
    compute in fp32 (``kept``: those found in the graph)."""

    def __init__(
        self,
        graph_module: fx.GraphModule,
        compute: torch.dtype | None,
        out_dtypes: list[torch.dtype],
        keep: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.kept: set[str] = set()
        if compute is not None:
            kept = [n for n in graph_module.graph.nodes if n.name in set(keep) and n.op == "call_function"]
            self.kept = {n.name for n in kept}
            graph_module = _retype_float_nodes(graph_module, compute, skip=self.kept)
            fp32_weights = _weights_used_only_by(graph_module, self.kept)
            for name, tensor in [*graph_module.named_buffers(), *graph_module.named_parameters()]:
                if tensor.is_floating_point() and name not in fp32_weights:
                    _set_tensor(graph_module, name, tensor.detach().to(compute))
            _compute_in_fp32(graph_module, kept, compute)
        self.graph_module = graph_module
        self.compute = compute
        self.out_dtypes = out_dtypes

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.compute is not None:
            inputs = tuple(t.to(self.compute) if t.is_floating_point() else t for t in inputs)
        out = self.graph_module(*inputs)
        flat = list(out) if isinstance(out, (tuple, list)) else [out]
        # contiguous, as every engine's outputs are: the PyTorch code after an engine was traced
        # on contiguous values (a ``view`` of Inductor's own layout fails), and asking here lets
        # Inductor write that layout directly instead of copying afterwards
        return tuple((t if t.dtype == d else t.to(d)).contiguous() for t, d in zip(flat, self.out_dtypes, strict=True))


def _set_tensor(gm: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    owner, _, leaf = name.rpartition(".")
    module = gm.get_submodule(owner) if owner else gm
    if leaf in module._parameters:
        del module._parameters[leaf]
    module.register_buffer(leaf, value)


def _retype_float_nodes(gm: fx.GraphModule, compute: torch.dtype, skip: Collection[str] = ()) -> fx.GraphModule:
    """Ops that create float32 tensors (full, arange, casts) create ``compute`` ones instead, so
    the whole partition computes in the reduced type rather than promoting back to fp32."""
    changed = False
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.name not in skip and node.kwargs.get("dtype") is torch.float32:
            node.kwargs = {**node.kwargs, "dtype": compute}
            changed = True
    if changed:
        gm.recompile()
    return gm


def _weights_used_only_by(gm: fx.GraphModule, nodes: set[str]) -> set[str]:
    """Attribute names whose every reader is one of ``nodes`` (those weights stay fp32)."""
    if not nodes:
        return set()
    return {
        str(n.target)
        for n in gm.graph.nodes
        if n.op == "get_attr" and n.users and all(user.name in nodes for user in n.users)
    }


def _is_float(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point()


def _compute_in_fp32(gm: fx.GraphModule, kept: list[fx.Node], compute: torch.dtype) -> None:
    """Each kept node reads its floating inputs cast up to fp32 and hands its floating results
    on cast back to ``compute`` (through its ``getitem`` users when it returns several); between
    two kept nodes the value stays fp32, so a kept chain never rounds (or overflows) inside."""
    if not kept:
        return
    graph = gm.graph
    to_copy = torch.ops.aten._to_copy.default
    names = {n.name for n in kept}

    def fp32_result(node: fx.Node) -> bool:  # a kept node's value, or one of its getitems
        source = node.args[0] if node.target is operator.getitem else None
        return node.name in names or (isinstance(source, fx.Node) and source.name in names)

    for node in kept:
        for arg in node.all_input_nodes:
            if not fp32_result(arg) and (arg.op == "get_attr" or _is_float(arg.meta.get("val"))):
                with graph.inserting_before(node):
                    up = graph.call_function(to_copy, (arg,), {"dtype": torch.float32})
                node.replace_input_with(arg, up)
        results = [node] if _is_float(node.meta.get("val")) else [
            u for u in node.users if u.target is operator.getitem and _is_float(u.meta.get("val"))
        ]
        for result in results:
            outside = [u for u in result.users if u.name not in names]
            if not outside:
                continue
            with graph.inserting_after(result):
                down = graph.call_function(to_copy, (result,), {"dtype": compute})
            for user in outside:
                user.replace_input_with(result, down)
    graph.lint()
    gm.recompile()


def node_sensitivity(
    gm: fx.GraphModule, samples: Sequence[Sequence[torch.Tensor]], compute: torch.dtype, top: int = 32
) -> list[list[Any]]:
    """Each floating node's own error in ``compute``: the graph runs in fp32 on ``samples``, and
    every node is run again alone on its fp32 inputs rounded to ``compute``; its score is the
    noise-to-signal power of that result against the fp32 one, averaged over samples (a node
    that overflows scores 1e30). The ``top`` worst, as ``[node, score]``, worst first."""
    scores: dict[str, list[float]] = {}

    def lower(value: Any) -> Any:
        return value.to(compute) if _is_float(value) else value

    class _Probe(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            result = super().run_node(n)
            if n.op != "call_function" or not isinstance(n.target, torch._ops.OpOverload):
                return result
            reference = result if _is_float(result) else next((r for r in result if _is_float(r)), None) if isinstance(result, (tuple, list)) else None
            if reference is None or reference.numel() == 0:
                return result
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            kwargs = {k: (compute if v is torch.float32 else v) for k, v in kwargs.items()}
            with torch.no_grad():
                low = n.target(*torch.utils._pytree.tree_map(lower, args), **torch.utils._pytree.tree_map(lower, kwargs))
            if not _is_float(low):
                low = next((r for r in low if _is_float(r)), None)
            if low is None or low.shape != reference.shape:
                return result
            want, have = reference.double(), low.double()
            noise = float((have - want).pow(2).sum())
            signal = float(want.pow(2).sum())
            score = noise / signal if signal > 0 else noise
            scores.setdefault(n.name, []).append(score if score == score and score < 1e30 else 1e30)
            return result

    with torch.no_grad():
        for sample in samples:
            _Probe(gm).run(*sample)
    ranked = sorted(((sum(v) / len(v), name) for name, v in scores.items()), reverse=True)[:top]
    return [[name, score] for score, name in ranked]


class _tf32:
    """TF32 on or off for CUDA matrix products and convolutions while building or running."""

    def __init__(self, device: torch.device, enabled: bool) -> None:
        self.active = device.type == "cuda"
        self.enabled = enabled

    def __enter__(self) -> None:
        if self.active:
            self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
            torch.backends.cuda.matmul.allow_tf32 = self.enabled
            torch.backends.cudnn.allow_tf32 = self.enabled

    def __exit__(self, *exc: object) -> None:
        if self.active:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


def tf32_enabled(spec: CompileSpec) -> bool:
    """Whether the engine's fp32 products may use TF32 (see ``AOTInductorOptions.tf32``)."""
    tf32 = _options(spec).tf32
    return spec.precision in _REDUCED if tf32 is None else tf32


def inductor_configs(spec: CompileSpec) -> dict[str, Any]:
    """The Inductor settings a build of ``spec`` runs with (see :class:`AOTInductorOptions`)."""
    options = _options(spec)
    configs: dict[str, Any] = {}
    if options.max_autotune:
        configs["max_autotune"] = True
    if spec.device.startswith("cuda"):
        channels_last = options.channels_last
        if channels_last is None:
            channels_last = spec.precision in _REDUCED or tf32_enabled(spec)
        configs["layout_optimization"] = channels_last
    return configs


def _compile_package(program: torch.export.ExportedProgram, configs: dict[str, Any]) -> bytes:
    with scratch_folder("orchestrate-aoti-") as folder:
        path = os.path.join(folder, "engine.pt2")
        torch._inductor.aoti_compile_and_package(program, package_path=path, inductor_configs=configs)
        with open(path, "rb") as handle:
            return handle.read()


# Loading a package unpacks its shared library and dlopens it; AOTInductor's loader is not
# documented as thread-safe, and loads are rare, so they are serialized.
_LOAD_LOCK = threading.Lock()


@functools.cache
def _cxx_runtime_in_global_scope() -> None:
    """Make the C++ runtime that torch already uses visible to libraries loaded later.

    The shared library inside a CUDA package (torch 2.11, measured on the H200) does not list
    libstdc++ among the libraries it needs, yet calls into it. Python loads torch's extension
    modules with RTLD_LOCAL, so libstdc++ is mapped but its symbols are not in the global scope
    and the package's unresolved C++ symbols bind to nothing: the load segfaulted. Importing
    onnxruntime first hid this, because it loads its providers' shim with RTLD_GLOBAL, and the
    shim needs libstdc++ (scripts/gpu_probe.py bisects it: preloading that shim alone fixes the
    load). Re-opening the already mapped libstdc++ with RTLD_GLOBAL is the same fix without
    onnxruntime. RTLD_NOLOAD: never load a second C++ runtime."""
    import contextlib
    import ctypes

    # not mapped (a torch linked statically), or not Linux: nothing to promote
    with contextlib.suppress(OSError):
        ctypes.CDLL("libstdc++.so.6", mode=os.RTLD_GLOBAL | os.RTLD_NOLOAD)


class AOTInductorRunner(EngineRunner):
    def __init__(self, engine: bytes, meta: EngineMeta) -> None:
        self.meta = meta
        self.device = torch.device(meta.device)
        index = self.device.index if self.device.index is not None else (0 if self.device.type == "cuda" else -1)
        _cxx_runtime_in_global_scope()
        with _LOAD_LOCK, scratch_folder("orchestrate-aoti-") as folder:
            path = os.path.join(folder, "engine.pt2")
            with open(path, "wb") as handle:
                handle.write(engine)
            try:
                # single-threaded runner: no cross-thread events, which also makes the call
                # capturable in a CUDA graph (the pooled runner syncs events during a run)
                self._loader = torch._C._aoti.AOTIModelPackageLoader(path, "model", True, 1, index)
            except Exception as exc:
                raise BackendError(f"the AOTInductor package of engine {meta.engine_id[:12]} does not load: {exc}") from None
        self._run = self._loader.run
        self._tf32 = bool(meta.extra.get("tf32", False))
        self._tf32_ctx = _tf32(self.device, self._tf32)

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        for tensor in inputs:
            if tensor.device != self.device and not (
                self.device.index is None and tensor.device.type == self.device.type
            ):
                raise InputMismatchError(
                    f"engine {self.meta.engine_id[:12]} runs on {self.device}; got a tensor on "
                    f"{tensor.device} (move the inputs with .to({str(self.device)!r}))"
                )
        with self._tf32_ctx:
            return list(self._run(list(inputs)))


def inductor_node_support(node: fx.Node, device: str) -> str | None:
    """Whether Inductor can compile ``node`` for ``device`` ("cuda" or "cpu"), decided from
    torch's own tables: a lowering, a decomposition Inductor applies, or — for its implicit
    fallback to the ATen kernel — a kernel registered for the device."""
    target = node.target
    if not isinstance(target, torch._ops.OpOverload):
        return "not an ATen operator"
    if torch.Tag.nondeterministic_seeded in target.tags and _draws_random_numbers(node, target):
        # Inductor replaces seeded random ops with its own Philox streams: values differ from
        # eager PyTorch, so validation could never match them
        return "random op: Inductor's random stream differs from PyTorch's"
    lowerings, decompositions = _inductor_tables()
    if target in lowerings or target in decompositions:
        return None
    key = "CUDA" if device == "cuda" else "CPU"
    name = target.name()
    for dispatch_key in (key, "CompositeExplicitAutograd", "CompositeImplicitAutograd", "CompositeExplicitAutogradNonFunctional"):
        if torch._C._dispatch_has_kernel_for_dispatch_key(name, dispatch_key):
            if not _inductor_implicit_fallbacks():
                return "Inductor has no lowering and implicit fallbacks are off"
            return None
    return f"no Inductor lowering and no {key} kernel for {name}"


def _draws_random_numbers(node: fx.Node, target: torch._ops.OpOverload) -> bool:
    """Seeded ops with a dropout argument draw nothing when it is zero or training is off
    (attention in an inference graph is tagged seeded for its ``dropout_p``)."""
    given: dict[str, Any] = {}
    for index, argument in enumerate(target._schema.arguments):
        if index < len(node.args):
            given[argument.name] = node.args[index]
        elif argument.name in node.kwargs:
            given[argument.name] = node.kwargs[argument.name]
        elif argument.has_default_value():
            given[argument.name] = argument.default_value
    if given.get("train") is False:
        return False
    probability = given.get("dropout_p", given.get("p"))
    return not (isinstance(probability, (int, float)) and probability == 0)


@functools.cache
def _inductor_tables() -> tuple[frozenset[Any], frozenset[Any]]:
    from torch._inductor.decomposition import select_decomp_table
    from torch._inductor.lowering import lowerings

    return frozenset(lowerings), frozenset(select_decomp_table())


def _inductor_implicit_fallbacks() -> bool:
    from torch._inductor import config

    return bool(config.implicit_fallbacks)
