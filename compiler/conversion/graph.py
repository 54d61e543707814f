"""Convert one fx graph (a partition, or a whole lowered program) into an ONNX model."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import onnx_ir as ir
import torch
from onnx_ir.passes.common import RemoveUnusedNodesPass
from torch import fx

from compiler.conversion.context import (
    OPSET,
    ConversionContext,
    ConversionError,
    fake_of,
    ir_shape,
    onnx_dtype,
    sym_dim,
)
from compiler.conversion.evaluators import (
    EVALUATOR_ORIGIN,
    evaluate_getitem,
    evaluate_symint,
    is_symbolic_int_node,
)
from compiler.conversion.registry import REGISTRY


@dataclass
class ConvertedGraph:
    model: ir.Model
    input_names: list[str]
    output_names: list[str]
    # placeholders of the converted graph that became engine inputs, in order
    input_nodes: list[fx.Node] = field(default_factory=list)


def convert_graph(
    gm: fx.GraphModule, name: str = "engine", constants: Mapping[str, torch.Tensor] | None = None
) -> ConvertedGraph:
    """Convert every node of ``gm`` with the registered converters.

    Tensor placeholders become ONNX inputs, except those named in ``constants`` (weights the
    caller passes in), which become initializers like ``get_attr`` tensors do. Integer
    placeholders are rebuilt from the input shapes (see ``evaluators``).
    """
    ctx = ConversionContext(name)
    constants = constants or {}
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for node in placeholders:
        if node.name in constants:
            ctx.env[node] = ctx.const(constants[node.name], name=node.name)
    input_nodes = [
        n for n in placeholders if isinstance(fake_of(n), torch.Tensor) and n.name not in constants
    ]
    for node in input_nodes:
        fake = fake_of(node)
        value = ir.Value(
            name=node.name, type=ir.TensorType(onnx_dtype(fake.dtype)), shape=ir_shape(fake.shape)
        )
        ctx.inputs.append(value)
        ctx.env[node] = value
        for index, dim in enumerate(fake.shape):
            key = sym_dim(dim)
            is_symbol = isinstance(dim, torch.SymInt) and dim.node.expr.is_Symbol
            if isinstance(key, str) and is_symbol and key not in ctx.symbol_sources:
                ctx.symbol_sources[key] = (value, index)

    output_node: fx.Node | None = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if node not in ctx.env:
                if not is_symbolic_int_node(node):
                    raise ConversionError(f"input {node.name} is neither a tensor nor an integer")
                ctx.origin = EVALUATOR_ORIGIN
                ctx.env[node] = evaluate_symint(ctx, node)
                ctx.origin = None
        elif node.op == "get_attr":
            attr = _fetch_attr(gm, str(node.target))
            if not isinstance(attr, torch.Tensor):
                raise ConversionError(f"attribute {node.target} is not a tensor")
            ctx.env[node] = ctx.const(attr, name=str(node.target).replace(".", "_"))
        elif node.op == "call_function":
            ctx.env[node] = _convert_node(ctx, node)
        elif node.op == "output":
            output_node = node
        else:
            raise ConversionError(f"unsupported fx node kind {node.op} ({node})")

    assert output_node is not None
    outputs = _flatten_outputs(output_node.args[0])
    seen: set[int] = set()
    input_ids = {id(v) for v in ctx.inputs}
    for index, out_node in enumerate(outputs):
        value = ctx.env[out_node]
        if not isinstance(value, ir.Value):
            raise ConversionError(f"output {out_node} did not convert to a single tensor")
        if id(value) in seen or id(value) in input_ids or value.is_initializer():
            value = ctx.op("Identity", value)
        seen.add(id(value))
        value.name = f"output_{index}"
        _set_type(value, out_node)
        ctx.outputs.append(value)

    graph = ir.Graph(
        ctx.inputs,
        ctx.outputs,
        nodes=ctx.tape.nodes,
        initializers=ctx.tape.initializers,
        opset_imports={"": OPSET},
        name=name,
    )
    model = ir.Model(graph, ir_version=10, producer_name="orchestrate")
    # size evaluators may have emitted Shape/Gather nodes that no converter ended up using
    RemoveUnusedNodesPass()(model)
    return ConvertedGraph(
        model=model,
        input_names=[v.name or "" for v in ctx.inputs],
        output_names=[v.name or "" for v in ctx.outputs],
        input_nodes=input_nodes,
    )


def _convert_node(ctx: ConversionContext, node: fx.Node) -> Any:
    ctx.origin = origin_name(node.target)
    try:
        return _convert_call(ctx, node)
    finally:
        ctx.origin = None


def origin_name(target: Any) -> str:
    """What an emitted ONNX node records as its origin: ``str(OpOverload)`` (``aten.add.Tensor``)
    for converted ops, ``EVALUATOR_ORIGIN`` for sizes and getitem."""
    if isinstance(target, torch._ops.OpOverload) and target in REGISTRY:
        return str(target)
    return EVALUATOR_ORIGIN


def _convert_call(ctx: ConversionContext, node: fx.Node) -> Any:
    args = fx.node.map_arg(node.args, lambda n: ctx.env[n])
    kwargs = fx.node.map_arg(node.kwargs, lambda n: ctx.env[n])
    if node.target is operator.getitem:
        return evaluate_getitem(ctx, node, tuple(args))
    entry = REGISTRY.get(node.target)
    if entry is None:
        if is_symbolic_int_node(node):
            return evaluate_symint(ctx, node)
        raise ConversionError(f"no converter for {node.target} ({node.name})")
    result = entry.fn(ctx, node, tuple(args), dict(kwargs))
    if isinstance(result, ir.Value):
        _check_type(ctx, node, result)
        return _coerce(ctx, node, result)
    return result


def _check_type(ctx: ConversionContext, node: fx.Node, value: ir.Value) -> None:
    fake = fake_of(node)
    if isinstance(fake, torch.Tensor) and value.shape is None:
        value.shape = ir_shape(fake.shape)


def _coerce(ctx: ConversionContext, node: fx.Node, value: ir.Value) -> ir.Value:
    """Make the emitted element type agree with what PyTorch computes for ``node``."""
    fake = fake_of(node)
    if not isinstance(fake, torch.Tensor):
        return value
    expected = onnx_dtype(fake.dtype)
    if value.dtype is None:
        value.dtype = expected
    elif value.dtype != expected:
        value = ctx.op("Cast", value, to=expected)
        value.shape = ir_shape(fake.shape)
    return value


def _set_type(value: ir.Value, node: fx.Node) -> None:
    fake = fake_of(node)
    if isinstance(fake, torch.Tensor):
        value.dtype = onnx_dtype(fake.dtype)
        value.shape = ir_shape(fake.shape)


def _flatten_outputs(arg: Any) -> list[fx.Node]:
    if isinstance(arg, fx.Node):
        return [arg]
    if isinstance(arg, (list, tuple)):
        out: list[fx.Node] = []
        for a in arg:
            out.extend(_flatten_outputs(a))
        return out
    raise ConversionError(f"unsupported graph output {arg!r}")


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
