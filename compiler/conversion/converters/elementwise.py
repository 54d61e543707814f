"""Elementwise arithmetic and math: add, sub, mul, div (true, trunc, floor), pow, remainder,
fmod, unary math (exp, log, trigonometry, rounding, sign...), with PyTorch's type promotion.

Helpers shared by the elementwise families (comparison, activation, cast) live here too: the
dtype validators and a few exact formulas (trunc, signbit) that ONNX has no single op for.

Composite formulas on float16/bfloat16 compute in float32 and round once at the end, because
PyTorch computes them in float32 ("opmath") on every device: rounding each step to half
precision would round differently (e.g. ``trunc(a / b)`` when ``a / b`` is just below an
integer that half precision rounds up to).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import onnx_ir as ir
import torch
from torch import fx
from torch._ops import OpOverload

from compiler.conversion.context import TORCH_TO_ONNX, ConversionContext, fake_of
from compiler.conversion.converters._helpers import compute_dtype, out_dtype, promote
from compiler.conversion.registry import Validator, converter

aten = torch.ops.aten

FLOATS = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})
INTS = frozenset({torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64})
NUMERIC = FLOATS | INTS
# ONNX Runtime's CPU provider has no float64 kernel for these ops (checked against 1.32); a node
# that would need one stays in PyTorch instead of failing the engine build.
NO_FLOAT64 = frozenset({torch.float16, torch.bfloat16, torch.float32})


# --------------------------------------------------------------------------- shared helpers
def _flat_fakes(values: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if isinstance(v, (list, tuple)):
            out.extend(_flat_fakes(v))
        else:
            out.append(fake_of(v))
    return out


def tensor_dtypes(node: fx.Node) -> list[torch.dtype]:
    """The dtypes of every tensor operand and output of ``node``."""
    vals = _flat_fakes([*node.args, *node.kwargs.values()])
    result = fake_of(node)
    vals.extend(result if isinstance(result, (list, tuple)) else [result])
    return [v.dtype for v in vals if isinstance(v, torch.Tensor)]


def validate_dtypes(
    allowed: frozenset[torch.dtype] | None = None,
    *,
    compute: Callable[[fx.Node], torch.dtype] = out_dtype,
    why: str = "",
    extra: Validator | None = None,
) -> Validator:
    """A validator that declines dtypes ONNX cannot hold (complex, float8...), and a compute
    dtype outside ``allowed`` (with ``why`` as the reason), then runs ``extra``."""

    def validate(node: fx.Node) -> str | None:
        for dtype in tensor_dtypes(node):
            if dtype not in TORCH_TO_ONNX:
                return f"dtype {dtype} has no ONNX equivalent"
        if allowed is not None:
            dtype = compute(node)
            if dtype not in allowed:
                return f"{node.target} on {dtype} is not converted" + (f": {why}" if why else "")
        return extra(node) if extra is not None else None

    return validate


def opmath(dtype: torch.dtype) -> torch.dtype:
    """The dtype PyTorch evaluates a formula in: float32 for the half-precision types."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def trunc(ctx: ConversionContext, x: ir.Value) -> ir.Value:
    """Round toward zero (ONNX has no Trunc); keeps NaN, infinities and the sign of zero."""
    return ctx.op("Where", ctx.op("Less", x, ctx.scalar_like(0, x)), ctx.op("Ceil", x), ctx.op("Floor", x))


def signbit(ctx: ConversionContext, x: ir.Value) -> ir.Value:
    """True where the sign bit is set, including -0.0 (seen through 1 / -0.0 == -inf)."""
    zero = ctx.scalar_like(0, x)
    negative_zero = ctx.op("And", ctx.op("Equal", x, zero), ctx.op("Less", ctx.op("Reciprocal", x), zero))
    return ctx.op("Or", ctx.op("Less", x, zero), negative_zero)


def is_nonzero(ctx: ConversionContext, x: ir.Value) -> ir.Value:
    return ctx.op("Not", ctx.op("Equal", x, ctx.scalar_like(0, x)))


def unary_operand(ctx: ConversionContext, node: fx.Node, value: ir.Value) -> ir.Value:
    """The input of a float-valued unary op in its output dtype (integers become float32)."""
    return ctx.cast(value, out_dtype(node))


def _alpha_scaled(ctx: ConversionContext, other: ir.Value, alpha: Any) -> ir.Value:
    if alpha is None or alpha == 1:
        return other
    return ctx.op("Mul", other, ctx.scalar_like(alpha, other))


# --------------------------------------------------------------------------- add, sub, mul, div
@converter(
    aten.add.Tensor,
    aten.add.Scalar,
    onnx_ops={"Add", "Mul", "Cast", "Or"},
    validator=validate_dtypes(),
)
def aten_add(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor"""
    dtype = compute_dtype(node)
    a, b = promote(ctx, dtype, args[0], args[1])
    if dtype == torch.bool:
        # bool + bool is a logical or in PyTorch (alpha can only be True)
        return ctx.op("Or", a, b)
    return ctx.op("Add", a, _alpha_scaled(ctx, b, kwargs.get("alpha")))


@converter(
    aten.sub.Tensor,
    aten.sub.Scalar,
    onnx_ops={"Sub", "Mul", "Cast"},
    validator=validate_dtypes(NUMERIC, compute=compute_dtype, why="PyTorch does not subtract bools"),
)
def aten_sub(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """sub.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor"""
    a, b = promote(ctx, compute_dtype(node), args[0], args[1])
    return ctx.op("Sub", a, _alpha_scaled(ctx, b, kwargs.get("alpha")))


@converter(
    aten.rsub.Tensor,
    aten.rsub.Scalar,
    onnx_ops={"Sub", "Mul", "Cast"},
    validator=validate_dtypes(NUMERIC, compute=compute_dtype, why="PyTorch does not subtract bools"),
)
def aten_rsub(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """rsub.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor  (other - alpha * self)"""
    a, b = promote(ctx, compute_dtype(node), args[0], args[1])
    return ctx.op("Sub", b, _alpha_scaled(ctx, a, kwargs.get("alpha")))


@converter(aten.mul.Tensor, aten.mul.Scalar, onnx_ops={"Mul", "Cast", "And"}, validator=validate_dtypes())
def aten_mul(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """mul.Tensor(Tensor self, Tensor other) -> Tensor"""
    dtype = compute_dtype(node)
    a, b = promote(ctx, dtype, args[0], args[1])
    return ctx.op("And" if dtype == torch.bool else "Mul", a, b)


@converter(aten.square.default, onnx_ops={"Mul", "Cast"}, validator=validate_dtypes())
def aten_square(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """square(Tensor self) -> Tensor  (bool squares to int64, as pow(self, 2) does)"""
    x = ctx.cast(args[0], out_dtype(node))
    return ctx.op("Mul", x, x)


@converter(aten.div.Tensor, aten.div.Scalar, onnx_ops={"Div", "Cast"}, validator=validate_dtypes())
def aten_div(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """div.Tensor(Tensor self, Tensor other) -> Tensor  (true division: integers divide as floats)"""
    a, b = promote(ctx, out_dtype(node), args[0], args[1])
    return ctx.op("Div", a, b)


def _div_trunc(ctx: ConversionContext, a: ir.Value, b: ir.Value, dtype: torch.dtype) -> ir.Value:
    if dtype in INTS:
        # ONNX integer Div truncates toward zero, as C and PyTorch's "trunc" mode do
        return ctx.op("Div", a, b)
    math_dtype = opmath(dtype)
    q = ctx.op("Div", ctx.cast(a, math_dtype), ctx.cast(b, math_dtype))
    return ctx.cast(trunc(ctx, q), dtype)


def _div_floor(ctx: ConversionContext, a: ir.Value, b: ir.Value, dtype: torch.dtype) -> ir.Value:
    if dtype in INTS:
        # truncated quotient, minus one where the remainder's sign differs from the divisor's
        q = ctx.op("Div", a, b)
        r = ctx.op("Mod", a, b, fmod=1)
        zero = ctx.scalar_like(0, r)
        fix = ctx.op(
            "And",
            is_nonzero(ctx, r),
            ctx.op("Xor", ctx.op("Less", r, zero), ctx.op("Less", b, zero)),
        )
        return ctx.op("Sub", q, ctx.cast(fix, dtype))
    # PyTorch's div_floor for floats: exact through fmod, then rounded, so that e.g.
    # 1.0 // 0.1 == 9.0 (floor(1.0 / 0.1) would give 10.0)
    math_dtype = opmath(dtype)
    a, b = ctx.cast(a, math_dtype), ctx.cast(b, math_dtype)
    zero, one, half = (ctx.scalar_like(v, math_dtype) for v in (0, 1, 0.5))
    mod = ctx.op("Mod", a, b, fmod=1)
    div = ctx.op("Div", ctx.op("Sub", a, mod), b)
    fix = ctx.op(
        "And",
        is_nonzero(ctx, mod),
        ctx.op("Xor", ctx.op("Less", b, zero), ctx.op("Less", mod, zero)),
    )
    div = ctx.op("Where", fix, ctx.op("Sub", div, one), div)
    floored = ctx.op("Floor", div)
    floored = ctx.op(
        "Where", ctx.op("Greater", ctx.op("Sub", div, floored), half), ctx.op("Add", floored, one), floored
    )
    true_div = ctx.op("Div", a, b)
    # a zero quotient takes the sign of a / b; a zero divisor gives a / b (inf or nan)
    floored = ctx.op("Where", ctx.op("Equal", div, zero), ctx.op("Mul", true_div, zero), floored)
    result = ctx.op("Where", ctx.op("Equal", b, zero), true_div, floored)
    return ctx.cast(result, dtype)


_FLOOR_DIV_OPS = {"Div", "Mod", "Sub", "Less", "Xor", "And", "Not", "Equal", "Cast", "Where", "Floor", "Greater", "Add", "Mul"}


def _validate_rounding_mode(node: fx.Node) -> str | None:
    mode = node.kwargs.get("rounding_mode")
    if mode not in (None, "trunc", "floor"):
        return f"unknown rounding_mode {mode!r}"
    if mode is not None and compute_dtype(node) == torch.bool:
        return "division with a rounding mode is not defined on bool tensors"
    return None


@converter(
    aten.div.Tensor_mode,
    aten.div.Scalar_mode,
    onnx_ops=_FLOOR_DIV_OPS | {"Ceil"},
    validator=validate_dtypes(extra=_validate_rounding_mode),
)
def aten_div_mode(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """div.Tensor_mode(Tensor self, Tensor other, *, str? rounding_mode) -> Tensor"""
    mode = kwargs.get("rounding_mode")
    if mode is None:
        a, b = promote(ctx, out_dtype(node), args[0], args[1])
        return ctx.op("Div", a, b)
    dtype = compute_dtype(node)
    a, b = promote(ctx, dtype, args[0], args[1])
    return _div_trunc(ctx, a, b, dtype) if mode == "trunc" else _div_floor(ctx, a, b, dtype)


@converter(
    aten.floor_divide.default,
    aten.floor_divide.Scalar,
    onnx_ops=_FLOOR_DIV_OPS,
    validator=validate_dtypes(NUMERIC, compute=compute_dtype, why="floor division of bools is undefined"),
)
def aten_floor_divide(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """floor_divide(Tensor self, Tensor other) -> Tensor"""
    dtype = compute_dtype(node)
    a, b = promote(ctx, dtype, args[0], args[1])
    return _div_floor(ctx, a, b, dtype)


# --------------------------------------------------------------------------- remainder, fmod
def _remainder(ctx: ConversionContext, a: ir.Value, b: ir.Value, dtype: torch.dtype) -> ir.Value:
    if dtype in INTS:
        # ONNX Mod with fmod=0 takes the divisor's sign, like Python and PyTorch
        return ctx.op("Mod", a, b, fmod=0)
    math_dtype = opmath(dtype)
    a, b = ctx.cast(a, math_dtype), ctx.cast(b, math_dtype)
    zero = ctx.scalar_like(0, math_dtype)
    mod = ctx.op("Mod", a, b, fmod=1)
    fix = ctx.op(
        "And", is_nonzero(ctx, mod), ctx.op("Xor", ctx.op("Less", b, zero), ctx.op("Less", mod, zero))
    )
    return ctx.cast(ctx.op("Where", fix, ctx.op("Add", mod, b), mod), dtype)


_NO_BOOL_ARITH = validate_dtypes(NUMERIC, compute=compute_dtype, why="not defined on bool tensors")


@converter(
    aten.remainder.Tensor,
    aten.remainder.Scalar,
    aten.remainder.Scalar_Tensor,
    onnx_ops={"Mod", "Equal", "Not", "Less", "Xor", "And", "Where", "Add", "Cast"},
    validator=_NO_BOOL_ARITH,
)
def aten_remainder(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """remainder.Tensor(Tensor self, Tensor other) -> Tensor  (Python's %: the divisor's sign)"""
    dtype = compute_dtype(node)
    a, b = promote(ctx, dtype, args[0], args[1])
    return _remainder(ctx, a, b, dtype)


@converter(aten.fmod.Tensor, aten.fmod.Scalar, onnx_ops={"Mod", "Cast"}, validator=_NO_BOOL_ARITH)
def aten_fmod(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """fmod.Tensor(Tensor self, Tensor other) -> Tensor  (C's fmod: the dividend's sign)"""
    a, b = promote(ctx, compute_dtype(node), args[0], args[1])
    return ctx.op("Mod", a, b, fmod=1)


# --------------------------------------------------------------------------- pow
def _int_power(ctx: ConversionContext, x: ir.Value, exponent: int) -> ir.Value:
    """x ** exponent by repeated squaring: exact (wrapping) integer arithmetic, where ONNX
    Runtime's integer Pow goes through double and loses digits past 2**53."""
    result: ir.Value | None = None
    base = x
    while exponent:
        if exponent & 1:
            result = base if result is None else ctx.op("Mul", result, base)
        exponent >>= 1
        if exponent:
            base = ctx.op("Mul", base, base)
    assert result is not None
    return result


def _validate_pow_scalar(node: fx.Node) -> str | None:
    exponent = node.args[1]
    if compute_dtype(node) in INTS and isinstance(exponent, int) and exponent < 0:
        return "PyTorch raises for integers to negative integer powers"
    return None


_POW_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int32, torch.int64})
_POW_WHY = "ONNX Runtime has Pow kernels for float, int32 and int64 only"


@converter(
    aten.pow.Tensor_Scalar,
    onnx_ops={"Pow", "Mul", "Sqrt", "Reciprocal", "Cast", "Identity"},
    validator=validate_dtypes(_POW_DTYPES, compute=compute_dtype, why=_POW_WHY, extra=_validate_pow_scalar),
)
def aten_pow_tensor_scalar(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """pow.Tensor_Scalar(Tensor self, Scalar exponent) -> Tensor"""
    dtype = compute_dtype(node)
    x, exponent = ctx.cast(args[0], dtype), args[1]
    if isinstance(exponent, ir.Value):
        return ctx.op("Pow", x, ctx.cast(exponent, dtype))
    # the exponents PyTorch itself special-cases, computed the way it computes them
    if exponent == 1:
        return ctx.op("Identity", x)
    if dtype in INTS and isinstance(exponent, int) and 0 < exponent <= 64:
        return _int_power(ctx, x, exponent)
    if exponent == 2:
        return ctx.op("Mul", x, x)
    if exponent == 3:
        return ctx.op("Mul", ctx.op("Mul", x, x), x)
    if dtype in FLOATS:
        if exponent == 0.5:
            return ctx.op("Sqrt", x)
        if exponent == -0.5:
            return ctx.op("Reciprocal", ctx.op("Sqrt", x))
        if exponent == -1:
            return ctx.op("Reciprocal", x)
        if exponent == -2:
            return ctx.op("Reciprocal", ctx.op("Mul", x, x))
    return ctx.op("Pow", x, ctx.scalar_like(exponent, dtype))


@converter(
    aten.pow.Tensor_Tensor,
    aten.pow.Scalar,
    onnx_ops={"Pow", "Cast"},
    validator=validate_dtypes(_POW_DTYPES, compute=compute_dtype, why=_POW_WHY),
)
def aten_pow(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """pow.Tensor_Tensor(Tensor self, Tensor exponent) -> Tensor"""
    base, exponent = promote(ctx, compute_dtype(node), args[0], args[1])
    return ctx.op("Pow", base, exponent)


# --------------------------------------------------------------------------- fused arithmetic
@converter(
    aten.addcmul.default,
    onnx_ops={"Mul", "Add", "Cast"},
    validator=validate_dtypes(NUMERIC, compute=compute_dtype, why="not defined on bool tensors"),
)
def aten_addcmul(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """addcmul(Tensor self, Tensor tensor1, Tensor tensor2, *, Scalar value=1) -> Tensor"""
    x, t1, t2 = promote(ctx, compute_dtype(node), *args[:3])
    product = ctx.op("Mul", _alpha_scaled(ctx, t1, kwargs.get("value")), t2)
    return ctx.op("Add", x, product)


@converter(
    aten.addcdiv.default,
    onnx_ops={"Mul", "Div", "Add", "Cast"},
    validator=validate_dtypes(FLOATS, compute=compute_dtype, why="PyTorch refuses integer addcdiv"),
)
def aten_addcdiv(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """addcdiv(Tensor self, Tensor tensor1, Tensor tensor2, *, Scalar value=1) -> Tensor"""
    x, t1, t2 = promote(ctx, compute_dtype(node), *args[:3])
    quotient = ctx.op("Div", _alpha_scaled(ctx, t1, kwargs.get("value")), t2)
    return ctx.op("Add", x, quotient)


@converter(
    aten.lerp.Scalar,
    aten.lerp.Tensor,
    onnx_ops={"Sub", "Mul", "Add", "Less", "Abs", "Where", "Cast"},
    validator=validate_dtypes(FLOATS, why="lerp is defined on floating tensors"),
)
def aten_lerp(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """lerp.Tensor(Tensor self, Tensor end, Tensor weight) -> Tensor"""
    dtype = out_dtype(node)
    math_dtype = opmath(dtype)
    start, end = promote(ctx, math_dtype, args[0], args[1])
    weight = args[2]
    diff = ctx.op("Sub", end, start)
    # PyTorch's two-sided formula, exact at both ends of the interval
    if not isinstance(weight, ir.Value):
        if abs(weight) < 0.5:
            result = ctx.op("Add", start, ctx.op("Mul", ctx.scalar_like(weight, math_dtype), diff))
        else:
            result = ctx.op("Sub", end, ctx.op("Mul", diff, ctx.scalar_like(1 - weight, math_dtype)))
        return ctx.cast(result, dtype)
    w = ctx.cast(weight, math_dtype)
    low = ctx.op("Add", start, ctx.op("Mul", w, diff))
    high = ctx.op("Sub", end, ctx.op("Mul", diff, ctx.op("Sub", ctx.scalar_like(1, math_dtype), w)))
    small = ctx.op("Less", ctx.op("Abs", w), ctx.scalar_like(0.5, math_dtype))
    return ctx.cast(ctx.op("Where", small, low, high), dtype)


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
