"""Matrix products: linear, addmm, mm, bmm, baddbmm, matmul, mv, dot, einsum.

``aten.matmul`` and ``aten.einsum`` are registered so lowering keeps them whole: ONNX ``MatMul``
has numpy's broadcasting rules for every rank combination, exactly as ``torch.matmul``, and ONNX
``Einsum`` takes the equation as is, so neither needs the expand/reshape/bmm chains that their
decompositions produce.
"""

from __future__ import annotations

import re
from typing import Any

import onnx_ir as ir
import torch
from torch import fx

from compiler.conversion.context import ConversionContext, ConversionError, fake_of
from compiler.conversion.converters._helpers import out_dtype
from compiler.conversion.registry import converter

aten = torch.ops.aten

# ONNX Runtime's CPU Gemm has kernels for these only; other dtypes use MatMul + Mul + Add.
_GEMM_DTYPES = frozenset({torch.float32, torch.float64, torch.float16, torch.bfloat16})


def _is_one(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 1


def _is_zero(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == 0


def _scaled(ctx: ConversionContext, value: ir.Value, factor: Any, dtype: torch.dtype) -> ir.Value:
    if _is_one(factor):
        return value
    return ctx.op("Mul", value, ctx.as_tensor(factor, dtype))


def _swap_last_two(ctx: ConversionContext, value: ir.Value, rank: int) -> ir.Value:
    perm = list(range(rank))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return ctx.op("Transpose", value, perm=perm)


@converter(aten.linear.default, onnx_ops={"Gemm", "MatMul", "Add", "Transpose"})
def aten_linear(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor"""
    x, weight = args[0], args[1]
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    if ctx.node_rank(node.args[0]) == 2 and ctx.node_rank(node.args[1]) == 2:
        # Gemm reads the (out, in) weight as stored: no transposed copy, bias fused.
        return ctx.op("Gemm", x, weight, bias, transB=1)
    # A Transpose of an initializer is folded by both backends when the engine is built, which
    # leaves MatMul(x, constant W^T) + Add for their MatMul+Add fusions.
    weight_t = ctx.op("Transpose", weight, perm=[1, 0]) if ctx.node_rank(node.args[1]) == 2 else weight
    out = ctx.op("MatMul", x, weight_t)
    return ctx.op("Add", out, bias) if bias is not None else out


@converter(
    aten.mm.default,
    aten.bmm.default,
    aten.matmul.default,
    aten.mv.default,
    aten.dot.default,
    aten.vdot.default,
    onnx_ops={"MatMul"},
)
def aten_matmul(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """matmul(Tensor self, Tensor other) -> Tensor

    Also mm, bmm, mv and dot (vdot equals dot for the real dtypes ONNX has)."""
    return ctx.op("MatMul", args[0], args[1])


def _addmm_like(
    ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any], *, batched: bool
) -> ir.Value:
    bias, mat1, mat2 = args[0], args[1], args[2]
    beta = kwargs.get("beta", 1)
    alpha = kwargs.get("alpha", 1)
    dtype = out_dtype(node)
    if not batched and dtype in _GEMM_DTYPES:
        # beta=0 ignores `self` entirely in PyTorch (NaN/inf in it do not propagate)
        return ctx.op(
            "Gemm",
            mat1,
            mat2,
            None if _is_zero(beta) else bias,
            alpha=None if _is_one(alpha) else float(alpha),
            beta=None if _is_one(beta) or _is_zero(beta) else float(beta),
        )
    product = _scaled(ctx, ctx.op("MatMul", mat1, mat2), alpha, dtype)
    if _is_zero(beta):
        return product
    return ctx.op("Add", _scaled(ctx, bias, beta, dtype), product)


@converter(aten.addmm.default, onnx_ops={"Gemm", "MatMul", "Mul", "Add"})
def aten_addmm(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """addmm(Tensor self, Tensor mat1, Tensor mat2, *, Scalar beta=1, Scalar alpha=1) -> Tensor"""
    return _addmm_like(ctx, node, args, kwargs, batched=False)


@converter(aten.baddbmm.default, onnx_ops={"MatMul", "Mul", "Add"})
def aten_baddbmm(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """baddbmm(Tensor self, Tensor batch1, Tensor batch2, *, Scalar beta=1, Scalar alpha=1) -> Tensor"""
    return _addmm_like(ctx, node, args, kwargs, batched=True)


# torch accepts spaces and both letter cases; ONNX Einsum wants letters, commas, '->' and '...'.
_EINSUM_TERM = re.compile(r"^(?:[A-Za-z]|\.\.\.)*$")


def _einsum_equation(equation: str) -> str | None:
    """The equation in ONNX form, with the output spelled out, or None if it has none."""
    equation = equation.replace(" ", "")
    inputs, arrow, output = equation.partition("->")
    terms = inputs.split(",")
    if not all(_EINSUM_TERM.match(t) for t in [*terms, output]):
        return None
    if not arrow:
        # Implicit output: labels seen once, in torch's order (upper case sorts before lower),
        # written out so no backend has to agree with torch on that ordering.
        letters = [c for c in inputs if c.isalpha()]
        once = sorted({c for c in letters if letters.count(c) == 1})
        output = ("..." if "..." in inputs else "") + "".join(once)
    return f"{','.join(terms)}->{output}"


def _validate_einsum(node: fx.Node) -> str | None:
    equation = node.args[0]
    if not isinstance(equation, str) or _einsum_equation(equation) is None:
        return f"einsum equation {equation!r} uses characters ONNX Einsum does not accept"
    operands: Any = node.args[1]
    if any(fake_of(t).dtype == torch.bool for t in operands):
        return "ONNX Einsum has no bool form"
    return None


@converter(aten.einsum.default, onnx_ops={"Einsum"}, validator=_validate_einsum)
def aten_einsum(ctx: ConversionContext, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Value:
    """einsum(str equation, Tensor[] tensors, *, int[]? path=None) -> Tensor"""
    equation = _einsum_equation(args[0])
    if equation is None:
        raise ConversionError(f"einsum equation {args[0]!r} has no ONNX form")
    return ctx.op("Einsum", *args[1], equation=equation)
