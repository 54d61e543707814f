"""Argument variants for table rows: the same op called the ways users call it (scalar vs tensor
operands, either side; broadcasting; 0-d tensors; dtype promotion; negative dims; dynamic
dims). Each family's ``test_*_variants.py`` builds its rows from these makers, so a variant
added here is checked for every op of the family against eager PyTorch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from tests.compiler.conversion.harness import Fn, OpCase

Maker = Callable[..., torch.Tensor]
HALF_TOL = {"atol": 3e-3, "rtol": 3e-3}


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class Domain:
    """Where an op's inputs are drawn from: ``values(shape, dtype, gen)`` gives a tensor the op
    is defined and well conditioned on (no integer division by zero, no log of a negative)."""

    name: str
    values: Callable[[tuple[int, ...], torch.dtype, torch.Generator], torch.Tensor]


def _signed(shape: tuple[int, ...], dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=gen) * 2).to(dtype)
    if dtype == torch.bool:
        return torch.rand(shape, generator=gen) > 0.5
    low = 0 if dtype == torch.uint8 else -9
    return torch.randint(low, 10, shape, generator=gen).to(dtype)


def _positive(shape: tuple[int, ...], dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    if dtype.is_floating_point:
        return (torch.rand(shape, generator=gen) * 3 + 0.25).to(dtype)
    return torch.randint(1, 10, shape, generator=gen).to(dtype)


def _nonzero(shape: tuple[int, ...], dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    x = _signed(shape, dtype, gen)
    if dtype.is_floating_point:
        return torch.where(x.abs() < 0.25, torch.full_like(x, 0.5), x)
    return torch.where(x == 0, torch.ones_like(x), x)


def _unit(shape: tuple[int, ...], dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=gen) * 1.8 - 0.9).to(dtype)


def _above_one(shape: tuple[int, ...], dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=gen) * 4 + 1.05).to(dtype)


SIGNED = Domain("signed", _signed)
POSITIVE = Domain("positive", _positive)
NONZERO = Domain("nonzero", _nonzero)
UNIT = Domain("unit", _unit)
ABOVE_ONE = Domain("above_one", _above_one)


@dataclass(frozen=True)
class Binary:
    """A binary op ``fn(a, b)``: whether it accepts integer and bool tensors, whether Python
    scalars may stand on either side, and where its operands come from."""

    name: str
    fn: Callable[[Any, Any], Any]
    lhs: Domain = SIGNED
    rhs: Domain = SIGNED
    ints: bool = True
    bools: bool = False
    floats: bool = True
    scalar_lhs: bool = True
    scalar_rhs: bool = True
    fp16: bool = True
    promotes: bool = True  # whether operands of different dtypes are accepted
    tol: float = 1e-5


def binary_rows(op: Binary, seed: int) -> Iterator[OpCase]:
    """One op's variants, each a row with its own inputs (seeded per op)."""
    g = generator(seed)
    a, b = op.lhs.values, op.rhs.values
    tol = {"atol": op.tol, "rtol": op.tol}
    fn = op.fn
    float_type = torch.float32 if op.floats else torch.int64
    ft = float_type

    def row(variant: str, module: torch.nn.Module, inputs: list[torch.Tensor], **kw: Any) -> OpCase:
        return OpCase(f"{op.name}__{variant}", module, inputs, **{**tol, **kw})

    yield row("broadcast_rank", Fn(fn), [a((2, 3, 4), ft, g), b((4,), ft, g)])
    yield row("broadcast_both", Fn(fn), [a((3, 1), ft, g), b((1, 4), ft, g)])
    yield row("0d_rhs", Fn(fn), [a((2, 5), ft, g), b((), ft, g)])
    yield row("0d_lhs", Fn(fn), [a((), ft, g), b((3, 2), ft, g)])
    yield row("0d_both", Fn(fn), [a((), ft, g), b((), ft, g)])
    rhs_scalar = b((), ft, g).item()
    lhs_scalar = a((), ft, g).item()
    if op.scalar_rhs:
        yield row("scalar_rhs", Fn(lambda x, s=rhs_scalar: fn(x, s)), [a((3, 4), ft, g)])
    if op.scalar_lhs:
        yield row("scalar_lhs", Fn(lambda x, s=lhs_scalar: fn(s, x)), [b((3, 4), ft, g)])
    if op.ints and op.floats and op.promotes:
        yield row("int_float_promotes", Fn(fn), [a((4, 3), torch.int64, g), b((4, 3), torch.float32, g)])
        yield row("float_int_promotes", Fn(fn), [a((4, 3), torch.float32, g), b((3,), torch.int64, g)])
        yield row("int_0d_float_promotes", Fn(fn), [a((5,), torch.int64, g), b((), torch.float32, g)])
        if op.scalar_rhs:
            scalar = float(b((), torch.float32, g).item())
            yield row("int_float_scalar_promotes", Fn(lambda x, s=scalar: fn(x, s)), [a((2, 3), torch.int64, g)])
    if op.ints and op.promotes:
        yield row("int32_int64_promotes", Fn(fn), [a((3, 4), torch.int32, g), b((3, 4), torch.int64, g)])
        yield row("int32_0d_int64_keeps_int32", Fn(fn), [a((6,), torch.int32, g), b((), torch.int64, g)])
        if op.scalar_rhs:
            yield row("int32_int_scalar", Fn(lambda x, s=int(rhs_scalar): fn(x, s or 1)), [a((2, 2), torch.int32, g)])
    if op.bools and op.ints and op.promotes:
        yield row("bool_int_promotes", Fn(fn), [a((3, 3), torch.bool, g), b((3, 3), torch.int64, g)])
    if op.fp16 and op.floats:
        yield row("fp16", Fn(fn), [a((3, 4), torch.float16, g), b((3, 4), torch.float16, g)], **HALF_TOL)
        if op.promotes:
            yield row("fp16_fp32_promotes", Fn(fn), [a((3, 4), torch.float16, g), b((4,), torch.float32, g)], **HALF_TOL)
            yield row("fp16_0d_fp32_keeps_fp16", Fn(fn), [a((2, 4), torch.float16, g), b((), torch.float32, g)], **HALF_TOL)
    yield row(
        "dynamic_batch",
        Fn(fn),
        [a((3, 4), ft, g), b((3, 4), ft, g)],
        dynamic=[{0: (1, 8)}, {0: (1, 8)}],
        more_inputs=[[a((7, 4), ft, g), b((7, 4), ft, g)], [a((1, 4), ft, g), b((1, 4), ft, g)]],
    )
    yield row(
        "dynamic_broadcast_static",
        Fn(fn),
        [a((2, 5), ft, g), b((5,), ft, g)],
        dynamic=[{0: (1, 16)}, None],
        more_inputs=[[a((11, 5), ft, g), b((5,), ft, g)]],
    )
    if op.scalar_rhs:
        yield row(
            "dynamic_scalar_rhs",
            Fn(lambda x, s=rhs_scalar: fn(x, s)),
            [a((2, 3, 2), ft, g)],
            dynamic=[{0: (1, 8), 1: (1, 8)}],
            more_inputs=[[a((5, 6, 2), ft, g)]],
        )


@dataclass(frozen=True)
class Unary:
    """A unary op: its input domain, whether integer inputs are accepted (and promoted to
    float, for math functions), and its tolerance."""

    name: str
    fn: Callable[[torch.Tensor], Any]
    domain: Domain = SIGNED
    ints: bool = True
    floats: bool = True
    fp16: bool = True
    tol: float = 1e-5
    half_tol: float = 3e-3


def unary_rows(op: Unary, seed: int) -> Iterator[OpCase]:
    g = generator(seed)
    v = op.domain.values
    tol = {"atol": op.tol, "rtol": op.tol}
    ft = torch.float32 if op.floats else torch.int64

    def row(variant: str, module: torch.nn.Module, inputs: list[torch.Tensor], **kw: Any) -> OpCase:
        return OpCase(f"{op.name}__{variant}", module, inputs, **{**tol, **kw})

    fn = op.fn
    yield row("4d", Fn(fn), [v((2, 3, 2, 4), ft, g)])
    yield row("0d", Fn(fn), [v((), ft, g)])
    yield row("transposed_input", Fn(lambda x: fn(x.transpose(0, 1))), [v((3, 5), ft, g)])
    if op.ints and op.floats:
        yield row("int_input", Fn(fn), [v((3, 4), torch.int64, g)])
        yield row("int32_input", Fn(fn), [v((6,), torch.int32, g)])
    if op.fp16 and op.floats:
        yield row("fp16", Fn(fn), [v((4, 5), torch.float16, g)], atol=op.half_tol, rtol=op.half_tol)
    yield row(
        "dynamic",
        Fn(fn),
        [v((3, 4), ft, g)],
        dynamic=[{0: (1, 16), 1: (2, 8)}],
        more_inputs=[[v((12, 2), ft, g)], [v((1, 8), ft, g)]],
    )
