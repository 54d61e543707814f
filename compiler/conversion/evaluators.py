"""Evaluators: nodes whose value is known at compile time or follows from input shapes.

``operator.getitem`` picks an element of a multi-output converter result. Symbolic integers
(``aten.sym_size.int``, SymInt arithmetic, SymInt placeholders) are rebuilt from the shapes of
the engine's own tensor inputs, so an engine never takes a scalar input: every symbol that
torch.export introduced is a dimension of some input tensor.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import onnx_ir as ir
import sympy
import torch
from torch import fx
from torch.utils._sympy.functions import CeilDiv, FloorDiv, Mod, PowByNatural, PythonMod

from compiler.conversion.context import ConversionContext, ConversionError, fake_of

Evaluator = Callable[[ConversionContext, fx.Node, tuple[Any, ...]], Any]

SYM_TARGETS: frozenset[Any] = frozenset(
    {
        torch.ops.aten.sym_size.int,
        torch.ops.aten.sym_numel.default,
        operator.add,
        operator.sub,
        operator.mul,
        operator.floordiv,
        operator.mod,
        operator.neg,
        operator.pow,
        torch.sym_max,
        torch.sym_min,
        torch.sym_int,
    }
)


# The origin (``context.ORIGIN_KEY``) of ONNX nodes that evaluators emit, and every op type they
# may emit: the sizes an engine rebuilds from its input shapes (``emit_sympy``).
EVALUATOR_ORIGIN = "evaluator"
# a size raised to a larger power than this is not a size any engine input has
_MAX_POWER = 8
EVALUATOR_ONNX_OPS = frozenset({"Shape", "Gather", "Add", "Mul", "Sub", "Div", "Mod", "Max", "Min"})


def is_symbolic_int_node(node: fx.Node) -> bool:
    """A node whose value is an integer (static or symbolic) rather than a tensor."""
    val = fake_of(node)
    return isinstance(val, (int, torch.SymInt)) and not isinstance(val, bool)


def evaluate_getitem(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...]) -> Any:
    container, index = args
    value = container[index]
    if value is None:
        raise ConversionError(f"{node.args[0]} does not produce output {index}")
    return value


def evaluate_symint(ctx: ConversionContext, node: fx.Node) -> ir.Value:
    """A 0-d int64 value for the (possibly symbolic) integer ``node`` evaluates to."""
    val = fake_of(node)
    if isinstance(val, int):
        return ctx.const(val, torch.int64)
    return emit_sympy(ctx, val.node.expr)


def emit_sympy(ctx: ConversionContext, expr: Any) -> ir.Value:
    if expr.is_Integer:
        return ctx.const(int(expr), torch.int64)
    if expr.is_Symbol:
        source = ctx.symbol_sources.get(str(expr))
        if source is None:
            raise ConversionError(f"symbol {expr} is not a dimension of any engine input")
        value, dim = source
        return ctx.op("Gather", ctx.shape(value), ctx.const(dim, torch.int64), axis=0)
    if isinstance(expr, sympy.Add):
        return _fold(ctx, "Add", expr.args)
    if isinstance(expr, sympy.Mul):
        return _fold(ctx, "Mul", expr.args)
    if isinstance(expr, FloorDiv):
        # Sizes are non-negative, so ONNX's truncating integer Div equals floor division.
        return ctx.op("Div", emit_sympy(ctx, expr.args[0]), emit_sympy(ctx, expr.args[1]))
    if isinstance(expr, CeilDiv):
        a, b = (emit_sympy(ctx, e) for e in expr.args)
        one = ctx.const(1, torch.int64)
        return ctx.op("Div", ctx.op("Sub", ctx.op("Add", a, b), one), b)
    if isinstance(expr, (Mod, PythonMod)):
        return ctx.op("Mod", emit_sympy(ctx, expr.args[0]), emit_sympy(ctx, expr.args[1]))
    if isinstance(expr, (sympy.Pow, PowByNatural)):
        base, exponent = expr.args
        if not exponent.is_Integer or not 0 <= int(exponent) <= _MAX_POWER:
            raise ConversionError(f"cannot express symbolic size {expr} in ONNX (exponent {exponent})")
        if int(exponent) == 0:
            return ctx.const(1, torch.int64)
        return _fold(ctx, "Mul", [base] * int(exponent))
    if isinstance(expr, sympy.Max):
        return _fold(ctx, "Max", expr.args)
    if isinstance(expr, sympy.Min):
        return _fold(ctx, "Min", expr.args)
    raise ConversionError(f"cannot express symbolic size {expr} in ONNX")


def _fold(ctx: ConversionContext, op: str, terms: Any) -> ir.Value:
    values = [emit_sympy(ctx, t) for t in terms]
    out = values[0]
    for v in values[1:]:
        out = ctx.op(op, out, v)
    return out
