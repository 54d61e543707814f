"""Symbolic output shapes of engines, stored as a small JSON expression tree.

The fake kernel of ``execute_engine`` must give each output a shape in terms of the input
shapes (so the stitched program exports with dynamic dimensions). A dimension is an int, or
``["sym", name]``, ``["add"|"mul"|"max"|"min", a, b, ...]``, ``["floordiv"|"mod"|"ceildiv", a, b]``.
sympy expressions from torch.export are converted to this form at compile time and evaluated
with plain Python arithmetic, which works on ints and on SymInts alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sympy
import torch
from torch.utils._sympy.functions import CeilDiv, FloorDiv, Mod, PythonMod

DimExpr = Any  # int | list


class ShapeExpressionError(ValueError):
    pass


def dim_to_expr(dim: Any) -> DimExpr:
    if isinstance(dim, int):
        return dim
    if isinstance(dim, torch.SymInt):
        return sympy_to_expr(dim.node.expr)
    raise ShapeExpressionError(f"unsupported dimension {dim!r}")


def sympy_to_expr(expr: Any) -> DimExpr:
    if expr.is_Integer:
        return int(expr)
    if expr.is_Symbol:
        return ["sym", str(expr)]
    for kind, op in (("add", sympy.Add), ("mul", sympy.Mul), ("max", sympy.Max), ("min", sympy.Min)):
        if isinstance(expr, op):
            return [kind, *(sympy_to_expr(a) for a in expr.args)]
    for kind, fn in (("floordiv", FloorDiv), ("ceildiv", CeilDiv), ("mod", Mod), ("mod", PythonMod)):
        if isinstance(expr, fn):
            return [kind, sympy_to_expr(expr.args[0]), sympy_to_expr(expr.args[1])]
    raise ShapeExpressionError(f"cannot record symbolic size {expr}")


def eval_expr(expr: DimExpr, env: Mapping[str, Any]) -> Any:
    if isinstance(expr, int):
        return expr
    kind, *args = expr
    if kind == "sym":
        return env[args[0]]
    values = [eval_expr(a, env) for a in args]
    if kind == "add":
        total = values[0]
        for v in values[1:]:
            total = total + v
        return total
    if kind == "mul":
        product = values[0]
        for v in values[1:]:
            product = product * v
        return product
    if kind == "max":
        return _reduce(torch.sym_max, values)
    if kind == "min":
        return _reduce(torch.sym_min, values)
    if kind == "floordiv":
        return values[0] // values[1]
    if kind == "ceildiv":
        return -(-values[0] // values[1])
    if kind == "mod":
        return values[0] % values[1]
    raise ShapeExpressionError(f"unknown shape expression {expr!r}")


def _reduce(fn: Any, values: list[Any]) -> Any:
    out = values[0]
    for v in values[1:]:
        out = fn(out, v)
    return out


def expr_text(expr: DimExpr) -> int | str:
    if isinstance(expr, int):
        return expr
    kind, *args = expr
    if kind == "sym":
        return str(args[0])
    sep = {"add": "+", "mul": "*", "floordiv": "//", "mod": "%"}.get(kind)
    parts = [str(expr_text(a)) for a in args]
    return f"({sep.join(parts)})" if sep else f"{kind}({', '.join(parts)})"
