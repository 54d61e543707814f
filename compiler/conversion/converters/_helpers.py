"""Helpers shared by converter families: type promotion, dims, broadcasting scalars."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import onnx_ir as ir
import torch
from torch import fx
from torch._prims_common import ELEMENTWISE_TYPE_PROMOTION_KIND, elementwise_dtypes

from compiler.conversion.context import ConversionContext, fake_of


def out_dtype(node: fx.Node) -> torch.dtype:
    val = fake_of(node)
    if isinstance(val, (tuple, list)):
        val = val[0]
    return val.dtype


def promote(ctx: ConversionContext, dtype: torch.dtype, *operands: Any) -> list[ir.Value]:
    """Bring tensors and Python scalars to ``dtype`` (the dtype PyTorch computes in)."""
    return [ctx.as_tensor(op, dtype) for op in operands]


def compute_dtype(node: fx.Node) -> torch.dtype:
    """The dtype an elementwise op computes in, by ``torch.result_type`` rules over its tensor
    operands (dimensioned tensors outrank 0-d tensors, which outrank Python scalars). This is the
    output dtype except for comparisons and ops that always return floats."""
    operands: list[Any] = []
    for a in node.args:
        val = fake_of(a)
        if isinstance(val, torch.Tensor):
            # a real stand-in with the same dtype and "0-d or not", which is all promotion reads
            operands.append(torch.empty((1,) * min(val.dim(), 1), dtype=val.dtype))
        elif isinstance(val, (bool, int, float)):
            operands.append(val)
        elif isinstance(val, torch.SymInt):
            operands.append(1)
        elif isinstance(val, torch.SymFloat):
            operands.append(1.0)
    if not any(isinstance(o, torch.Tensor) for o in operands):
        return out_dtype(node)
    _, result = elementwise_dtypes(
        *operands, type_promotion_kind=ELEMENTWISE_TYPE_PROMOTION_KIND.DEFAULT
    )
    return result


def normalize_dim(dim: int, rank: int) -> int:
    return dim + rank if dim < 0 else dim


def normalize_dims(dims: Any, rank: int) -> list[int]:
    if dims is None:
        return list(range(rank))
    if isinstance(dims, int):
        dims = [dims]
    return [normalize_dim(int(d), rank) for d in dims]


def as_list(value: Any, length: int) -> list[Any]:
    """PyTorch broadcasts a one-element stride/padding/dilation list to every spatial dim."""
    if isinstance(value, (list, tuple)):
        value = list(value)
        return value * length if len(value) == 1 else value
    return [value] * length


def used_outputs(node: fx.Node) -> set[int]:
    """Indices of a multi-output node's results that some user reads (through getitem); a
    user that takes the whole tuple reads them all."""
    used: set[int] = set()
    fake = fake_of(node)
    count = len(fake) if isinstance(fake, (tuple, list)) else 1
    for user in node.users:
        if user.target is operator.getitem and isinstance(user.args[1], int):
            used.add(user.args[1])
        else:
            used.update(range(count))
    return used


def argument(args: Sequence[Any], kwargs: dict[str, Any], index: int, name: str, default: Any = None) -> Any:
    """A schema argument that may arrive positionally (at ``index``) or by ``name``."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)
