"""Unary math: negation, magnitude, sign, exp/log families, trigonometry, rounding.

Composite formulas on float16/bfloat16 compute in float32 and round once, like PyTorch's
"opmath" (see ``elementwise``, whose dtype validators and exact helpers these share).
"""

from __future__ import annotations

import math
from typing import Any

import onnx_ir as ir
import torch
from torch import fx
from torch._ops import OpOverload

from compiler.conversion.context import ConversionContext
from compiler.conversion.converters._helpers import out_dtype, promote
from compiler.conversion.converters.elementwise import (
    FLOATS,
    INTS,
    NO_FLOAT64,
    NUMERIC,
    opmath,
    signbit,
    trunc,
    unary_operand,
    validate_dtypes,
)
from compiler.conversion.registry import converter

aten = torch.ops.aten

# --------------------------------------------------------------------------- unary: negation, magnitude, sign
@converter(
    aten.neg.default,
    onnx_ops={"Neg", "Sub"},
    validator=validate_dtypes(NUMERIC, why="PyTorch does not negate bools"),
)
def aten_neg(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """neg(Tensor self) -> Tensor"""
    x = args[0]
    if out_dtype(node) == torch.uint8:
        # ONNX Neg has no unsigned kernel; 0 - x wraps the same way PyTorch's uint8 negation does
        return ctx.op("Sub", ctx.scalar_like(0, x), x)
    return ctx.op("Neg", x)


@converter(
    aten.abs.default,
    onnx_ops={"Abs"},
    validator=validate_dtypes(NUMERIC, why="PyTorch has no abs for bools"),
)
def aten_abs(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """abs(Tensor self) -> Tensor"""
    return ctx.op("Abs", args[0])


@converter(
    aten.sign.default,
    aten.sgn.default,
    onnx_ops={"Sign", "IsNaN", "Where", "Identity"},
    validator=validate_dtypes(),
)
def aten_sign(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """sign(Tensor self) -> Tensor  (sign(nan) is 0 in PyTorch; ONNX Sign gives nan)"""
    x = args[0]
    dtype = out_dtype(node)
    if dtype == torch.bool:
        return ctx.op("Identity", x)
    if dtype in INTS:
        return ctx.op("Sign", x)
    return ctx.op("Where", ctx.op("IsNaN", x), ctx.scalar_like(0, x), ctx.op("Sign", x))


# --------------------------------------------------------------------------- unary float math
_FLOAT_OUT = validate_dtypes()
_FLOAT_OUT_NO_F64 = validate_dtypes(
    NO_FLOAT64, why="ONNX Runtime's CPU provider has no float64 kernel for it"
)

# Float-valued unary ops that are one ONNX op each: overload -> (ONNX op, has a float64 kernel in
# ONNX Runtime's CPU provider). Integer and bool inputs compute in float32, as PyTorch promotes.
_ONE_TO_ONE: dict[OpOverload, tuple[str, bool]] = {
    aten.exp.default: ("Exp", True),
    aten.log.default: ("Log", True),
    aten.sqrt.default: ("Sqrt", True),
    aten.reciprocal.default: ("Reciprocal", True),
    aten.sin.default: ("Sin", True),
    aten.cos.default: ("Cos", True),
    aten.tan.default: ("Tan", False),
    aten.asin.default: ("Asin", False),
    aten.acos.default: ("Acos", False),
    aten.atan.default: ("Atan", False),
    aten.sinh.default: ("Sinh", False),
    aten.cosh.default: ("Cosh", False),
    aten.asinh.default: ("Asinh", False),
    aten.acosh.default: ("Acosh", False),
    aten.atanh.default: ("Atanh", False),
    aten.erf.default: ("Erf", False),
}


def _register_one_to_one(target: OpOverload, op_type: str, float64: bool) -> None:
    def convert(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
        return ctx.op(op_type, unary_operand(ctx, node, args[0]))

    # named and documented like a hand-written converter, so tracebacks and `orchestrate ops`
    # read "aten_exp" with its schema
    convert.__name__ = convert.__qualname__ = f"aten_{target._opname}"
    convert.__doc__ = str(target._schema)
    validator = _FLOAT_OUT if float64 else _FLOAT_OUT_NO_F64
    converter(target, onnx_ops={op_type, "Cast"}, validator=validator)(convert)


for _target, (_op_type, _float64) in _ONE_TO_ONE.items():
    _register_one_to_one(_target, _op_type, _float64)


@converter(aten.exp2.default, onnx_ops={"Pow", "Cast"}, validator=_FLOAT_OUT)
def aten_exp2(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """exp2(Tensor self) -> Tensor"""
    x = unary_operand(ctx, node, args[0])
    return ctx.op("Pow", ctx.scalar_like(2.0, x), x)


@converter(aten.expm1.default, onnx_ops={"Exp", "Sub", "Mul", "Div", "Log", "Equal", "Where", "Cast"}, validator=_FLOAT_OUT)
def aten_expm1(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """expm1(Tensor self) -> Tensor"""
    dtype = out_dtype(node)
    x = ctx.cast(args[0], opmath(dtype))
    # Kahan's formula keeps full relative precision near 0, where exp(x) - 1 cancels
    u = ctx.op("Exp", x)
    one = ctx.scalar_like(1, u)
    um1 = ctx.op("Sub", u, one)
    scaled = ctx.op("Div", ctx.op("Mul", um1, x), ctx.op("Log", u))
    result = ctx.op("Where", ctx.op("Equal", u, one), x, scaled)
    # exp(x) - 1 itself where the quotient is inf/inf or 0/0 (large |x|)
    result = ctx.op("Where", ctx.op("Equal", um1, ctx.scalar_like(-1, u)), um1, result)
    result = ctx.op("Where", ctx.op("Equal", u, ctx.scalar_like(math.inf, u)), u, result)
    return ctx.cast(result, dtype)


def _log_base(ctx: ConversionContext, node: fx.Node, x: ir.Value, base: float) -> ir.Value:
    x = unary_operand(ctx, node, x)
    return ctx.op("Div", ctx.op("Log", x), ctx.scalar_like(math.log(base), x))


@converter(aten.log2.default, onnx_ops={"Log", "Div", "Cast"}, validator=_FLOAT_OUT)
def aten_log2(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """log2(Tensor self) -> Tensor"""
    return _log_base(ctx, node, args[0], 2.0)


@converter(aten.log10.default, onnx_ops={"Log", "Div", "Cast"}, validator=_FLOAT_OUT)
def aten_log10(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """log10(Tensor self) -> Tensor"""
    return _log_base(ctx, node, args[0], 10.0)


@converter(aten.log1p.default, onnx_ops={"Log", "Add", "Sub", "Mul", "Div", "Equal", "Where", "Cast"}, validator=_FLOAT_OUT)
def aten_log1p(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """log1p(Tensor self) -> Tensor"""
    dtype = out_dtype(node)
    x = ctx.cast(args[0], opmath(dtype))
    # Goldberg's formula keeps full relative precision near 0, where log(1 + x) loses x
    u = ctx.op("Add", x, ctx.scalar_like(1, x))
    d = ctx.op("Sub", u, ctx.scalar_like(1, x))
    scaled = ctx.op("Div", ctx.op("Mul", ctx.op("Log", u), x), d)
    result = ctx.op("Where", ctx.op("Equal", d, ctx.scalar_like(0, x)), x, scaled)
    result = ctx.op("Where", ctx.op("Equal", u, ctx.scalar_like(math.inf, x)), u, result)
    return ctx.cast(result, dtype)


@converter(aten.rsqrt.default, onnx_ops={"Sqrt", "Reciprocal", "Cast"}, validator=_FLOAT_OUT)
def aten_rsqrt(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """rsqrt(Tensor self) -> Tensor"""
    return ctx.op("Reciprocal", ctx.op("Sqrt", unary_operand(ctx, node, args[0])))


_ATAN2_OPS = {"Atan", "Div", "Add", "Neg", "Where", "Equal", "Less", "Reciprocal", "And", "Or", "IsInf", "Cast"}


@converter(aten.atan2.default, onnx_ops=_ATAN2_OPS, validator=_FLOAT_OUT_NO_F64)
def aten_atan2(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """atan2(Tensor self, Tensor other) -> Tensor  (self is y, other is x)"""
    dtype = out_dtype(node)
    y, x = promote(ctx, opmath(dtype), args[0], args[1])
    pi = ctx.scalar_like(math.pi, y)
    zero = ctx.scalar_like(0, y)
    x_neg, y_neg = signbit(ctx, x), signbit(ctx, y)
    # atan(y / x) covers the right half-plane; the left half-plane shifts by +-pi by y's sign
    # bit, which also gets the signed zeros and x == +-0 (y / x == +-inf) right
    half_turn = ctx.op("Where", y_neg, ctx.op("Neg", pi), pi)
    base = ctx.op("Atan", ctx.op("Div", y, x))
    result = ctx.op("Where", x_neg, ctx.op("Add", base, half_turn), base)
    both_zero = ctx.op("And", ctx.op("Equal", x, zero), ctx.op("Equal", y, zero))
    result = ctx.op("Where", both_zero, ctx.op("Where", x_neg, half_turn, y), result)
    # inf / inf: the diagonals
    quarter = ctx.scalar_like(math.pi / 4, y)
    three_quarters = ctx.scalar_like(3 * math.pi / 4, y)
    diagonal = ctx.op("Where", x_neg, three_quarters, quarter)
    diagonal = ctx.op("Where", y_neg, ctx.op("Neg", diagonal), diagonal)
    both_inf = ctx.op("And", ctx.op("IsInf", x), ctx.op("IsInf", y))
    return ctx.cast(ctx.op("Where", both_inf, diagonal, result), dtype)


# --------------------------------------------------------------------------- rounding
def _rounds_to_itself(node: fx.Node) -> bool:
    """Rounding an integer (or bool) tensor returns it unchanged."""
    return out_dtype(node) not in FLOATS


@converter(aten.floor.default, onnx_ops={"Floor", "Identity"}, validator=validate_dtypes())
def aten_floor(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """floor(Tensor self) -> Tensor"""
    if _rounds_to_itself(node):
        return ctx.op("Identity", args[0])
    return ctx.op("Floor", args[0])


@converter(aten.ceil.default, onnx_ops={"Ceil", "Identity"}, validator=validate_dtypes())
def aten_ceil(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """ceil(Tensor self) -> Tensor"""
    if _rounds_to_itself(node):
        return ctx.op("Identity", args[0])
    return ctx.op("Ceil", args[0])


@converter(aten.trunc.default, onnx_ops={"Floor", "Ceil", "Less", "Where", "Identity"}, validator=validate_dtypes())
def aten_trunc(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """trunc(Tensor self) -> Tensor"""
    if _rounds_to_itself(node):
        return ctx.op("Identity", args[0])
    return trunc(ctx, args[0])


@converter(
    aten.frac.default,
    onnx_ops={"Floor", "Ceil", "Less", "Where", "Sub"},
    validator=validate_dtypes(FLOATS, why="frac is defined on floating tensors"),
)
def aten_frac(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """frac(Tensor self) -> Tensor"""
    return ctx.op("Sub", args[0], trunc(ctx, args[0]))


@converter(
    aten.round.default,
    aten.round.decimals,
    onnx_ops={"Round", "Mul", "Div", "Cast", "Identity"},
    validator=validate_dtypes(),
)
def aten_round(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """round.decimals(Tensor self, *, int decimals) -> Tensor  (halves to even, as ONNX Round)"""
    x = args[0]
    if _rounds_to_itself(node):
        return ctx.op("Identity", x)
    decimals = int(kwargs.get("decimals", 0))
    if decimals == 0:
        return ctx.op("Round", x)
    dtype = out_dtype(node)
    # as PyTorch does: scale by a power of ten in opmath precision, round, unscale
    xm = ctx.cast(x, opmath(dtype))
    scale = ctx.scalar_like(10.0 ** abs(decimals), opmath(dtype))
    if decimals > 0:
        result = ctx.op("Div", ctx.op("Round", ctx.op("Mul", xm, scale)), scale)
    else:
        result = ctx.op("Mul", ctx.op("Round", ctx.op("Div", xm, scale)), scale)
    return ctx.cast(result, dtype)


@converter(
    aten.nan_to_num.default,
    onnx_ops={"IsNaN", "IsInf", "Where", "Identity"},
    validator=validate_dtypes(),
)
def aten_nan_to_num(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """nan_to_num(Tensor self, float? nan=None, float? posinf=None, float? neginf=None) -> Tensor"""
    x = args[0]
    dtype = out_dtype(node)
    if dtype not in FLOATS:
        return ctx.op("Identity", x)
    names = ("nan", "posinf", "neginf")
    given = {n: (args[i + 1] if len(args) > i + 1 else kwargs.get(n)) for i, n in enumerate(names)}
    info = torch.finfo(dtype)
    nan = 0.0 if given["nan"] is None else given["nan"]
    posinf = info.max if given["posinf"] is None else given["posinf"]
    neginf = info.min if given["neginf"] is None else given["neginf"]
    x = ctx.op("Where", ctx.op("IsNaN", x), ctx.scalar_like(nan, x), x)
    x = ctx.op("Where", ctx.op("IsInf", x, detect_negative=0), ctx.scalar_like(posinf, x), x)
    return ctx.op("Where", ctx.op("IsInf", x, detect_positive=0), ctx.scalar_like(neginf, x), x)
