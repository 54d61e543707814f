"""Elementwise arithmetic: add, sub, mul, div (true, trunc, floor), pow, remainder, fmod and
fused forms, with PyTorch's type promotion. Unary math lives in ``unary``.

Helpers shared by the elementwise families (comparison, activation, cast) live here too: the
dtype validators and a few exact formulas (trunc, signbit) that ONNX has no single op for.

Composite formulas on float16/bfloat16 compute in float32 and round once at the end, because
PyTorch computes them in float32 ("opmath") on every device: rounding each step to half
precision would round differently (e.g. ``trunc(a / b)`` when ``a / b`` is just below an
integer that half precision rounds up to).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import onnx_ir as ir
import torch
from torch import fx

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


@converter(
    torch.ops.prims.div.default,
    onnx_ops={"Div", "Cast"},
    validator=validate_dtypes(NUMERIC, why="prims.div is not defined on bools"),
)
def prims_div(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """div(Tensor self, Tensor other) -> Tensor  (prims: integers truncate, floats divide)"""
    a, b = promote(ctx, out_dtype(node), args[0], args[1])
    return ctx.op("Div", a, b)  # ONNX integer Div truncates toward zero too


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
    # x ** 3 on floats stays a Pow: ONNX Runtime computes it as x * x * x, as PyTorch does, and
    # its GELU fusions look for Pow(x, 3) in the tanh approximation (GPT-2's gelu_new); spelled
    # as two Muls, GPT-2 ran ~5 % slower than the same model exported by torch.onnx
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
