"""The converter registry: one entry per exact ATen ``OpOverload``.

An entry carries everything the partitioner needs to decide whether a node can go to an engine:
the converter itself, a validator that may decline a particular node, whether the converter
handles symbolic (dynamic) dimensions, and the set of ONNX op types it may emit (checked
against the backend's supported set).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch._ops import OpOverload, OpOverloadPacket

if TYPE_CHECKING:
    from torch import fx

    from compiler.conversion.context import ConversionContext

ConverterFn = Callable[["ConversionContext", "fx.Node", tuple[Any, ...], dict[str, Any]], Any]
# A validator returns None when the converter can handle the node, else the reason it cannot.
Validator = Callable[["fx.Node"], "str | None"]


class RegistryError(Exception):
    """A converter was registered in a way that would make lookups ambiguous."""


def _accept_all(node: fx.Node) -> str | None:
    return None


@dataclass(frozen=True)
class ConverterEntry:
    target: OpOverload
    fn: ConverterFn
    validator: Validator = _accept_all
    dynamic: bool = True
    onnx_ops: frozenset[str] = field(default_factory=frozenset)
    priority: int = 0

    @property
    def name(self) -> str:
        return str(self.target)


class ConverterRegistry:
    def __init__(self) -> None:
        self._entries: dict[OpOverload, list[ConverterEntry]] = {}

    def register(self, entry: ConverterEntry) -> None:
        target = entry.target
        if isinstance(target, OpOverloadPacket):
            overloads = target.overloads()
            hint = ", ".join(f"{target}.{o}" for o in overloads[:4])
            raise RegistryError(
                f"converter {entry.fn.__name__} is registered on the packet {target}; "
                f"register exact overloads instead ({hint})"
            )
        if not isinstance(target, OpOverload):
            raise RegistryError(f"converter {entry.fn.__name__}: {target!r} is not an OpOverload")
        existing = self._entries.setdefault(target, [])
        for other in existing:
            if other.priority == entry.priority:
                raise RegistryError(
                    f"{target} has two converters with priority {entry.priority} "
                    f"({other.fn.__module__}.{other.fn.__name__} and "
                    f"{entry.fn.__module__}.{entry.fn.__name__}); pass priority= to choose"
                )
        existing.append(entry)
        existing.sort(key=lambda e: -e.priority)

    def get(self, target: Any) -> ConverterEntry | None:
        entries = self._entries.get(target)
        return entries[0] if entries else None

    def candidates(self, target: Any) -> list[ConverterEntry]:
        return list(self._entries.get(target, ()))

    def __contains__(self, target: object) -> bool:
        return target in self._entries

    def __iter__(self) -> Iterator[ConverterEntry]:
        for target in sorted(self._entries, key=str):
            yield self._entries[target][0]

    def __len__(self) -> int:
        return len(self._entries)


REGISTRY = ConverterRegistry()


def converter(
    *targets: OpOverload,
    onnx_ops: Iterable[str],
    validator: Validator | None = None,
    dynamic: bool = True,
    priority: int = 0,
) -> Callable[[ConverterFn], ConverterFn]:
    """Register ``fn`` as the converter of each of ``targets``.

    ``onnx_ops`` lists every ONNX op type the converter may emit (the backend must support all
    of them); ``validator`` may decline individual nodes; ``dynamic`` says whether the converter
    keeps symbolic dimensions symbolic.
    """
    ops = frozenset(onnx_ops)

    def wrap(fn: ConverterFn) -> ConverterFn:
        for target in targets:
            REGISTRY.register(
                ConverterEntry(
                    target=target,
                    fn=fn,
                    validator=validator or _accept_all,
                    dynamic=dynamic,
                    onnx_ops=ops,
                    priority=priority,
                )
            )
        return fn

    return wrap


def aten(name: str) -> OpOverload:
    """``aten("add.Tensor")`` -> ``torch.ops.aten.add.Tensor``; fails loudly on a typo."""
    packet_name, _, overload = name.partition(".")
    packet = getattr(torch.ops.aten, packet_name)
    return getattr(packet, overload or "default")
