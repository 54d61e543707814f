"""The one routing table: which queue a build target goes to, and which queues a worker serves.

A target is an architecture plus, for engines tied to one GPU generation (TensorRT plans), a
device class. Its queue is ``compile.<arch>`` or ``compile.<arch>.<device-class>``. Everything that
names a queue (submit, the worker's subscription, the "is anyone serving this?" check) goes
through this module so the spelling cannot drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

QUEUE_PREFIX = "compile"

#: Canonical architecture names, as ``platform.machine()`` reports them on Linux.
ARCHES: tuple[str, ...] = ("x86_64", "aarch64")

#: Other spellings people type (Docker and Go say amd64/arm64; macOS says arm64).
ARCH_ALIASES: dict[str, str] = {
    "amd64": "x86_64",
    "x86-64": "x86_64",
    "x64": "x86_64",
    "arm64": "aarch64",
    "armv8": "aarch64",
}

# A device class is a short token such as ``sm90`` or ``orin``: it becomes part of a queue name,
# so dots (the queue separator) and anything a broker might treat specially are refused.
_DEVICE_CLASS = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


class RoutingError(ValueError):
    """A user-given architecture, device class or queue name that the farm cannot route."""


def normalize_arch(name: str) -> str:
    """Return the canonical architecture for ``name`` (``arm64`` -> ``aarch64``)."""
    key = name.strip().lower()
    key = ARCH_ALIASES.get(key, key)
    if key not in ARCHES:
        known = ", ".join(ARCHES)
        aliases = ", ".join(f"{a}={c}" for a, c in ARCH_ALIASES.items())
        raise RoutingError(
            f"unknown architecture {name!r}: use one of {known} (aliases: {aliases})"
        )
    return key


def normalize_device_class(name: str | None) -> str | None:
    """Return the device class in canonical (lower-case) spelling, or None for "any device"."""
    if name is None:
        return None
    key = name.strip().lower()
    if key in ("", "any", "none"):
        return None
    if not _DEVICE_CLASS.fullmatch(key):
        raise RoutingError(
            f"invalid device class {name!r}: use a short name of letters, digits, '-' or '_' "
            "such as sm90 (compute capability 9.0) or orin (Jetson Orin)"
        )
    return key


@dataclass(frozen=True, order=True)
class Target:
    """Where an engine must be built: an architecture and optionally a device class."""

    arch: str
    device_class: str | None = None

    @classmethod
    def parse(cls, arch: str, device_class: str | None = None) -> Target:
        """Validate user input and return the canonical target."""
        return cls(normalize_arch(arch), normalize_device_class(device_class))

    @property
    def queue(self) -> str:
        if self.device_class is None:
            return f"{QUEUE_PREFIX}.{self.arch}"
        return f"{QUEUE_PREFIX}.{self.arch}.{self.device_class}"

    @property
    def label(self) -> str:
        """How people read a target: ``aarch64`` or ``aarch64/orin``."""
        return self.arch if self.device_class is None else f"{self.arch}/{self.device_class}"


def queue_for(arch: str, device_class: str | None = None) -> str:
    """The queue a job for this target is sent to."""
    return Target.parse(arch, device_class).queue


def parse_queue(name: str) -> Target:
    """Inverse of :attr:`Target.queue`; raises RoutingError for a name that is not a build queue."""
    parts = name.split(".")
    if len(parts) not in (2, 3) or parts[0] != QUEUE_PREFIX:
        raise RoutingError(
            f"{name!r} is not a build queue: expected {QUEUE_PREFIX}.<arch> or "
            f"{QUEUE_PREFIX}.<arch>.<device-class>"
        )
    return Target.parse(parts[1], parts[2] if len(parts) == 3 else None)


def base_queues() -> list[str]:
    """The per-architecture queues; declared up front so a job never waits on an unknown queue."""
    return [Target(arch).queue for arch in ARCHES]


def worker_queues(arch: str, device_class: str | None = None) -> list[str]:
    """Queues a worker on this hardware serves: its architecture, and its device class if any.

    A GPU worker also takes device-independent jobs for its architecture, because an ONNX Runtime
    engine built there runs on every machine of that architecture.
    """
    target = Target.parse(arch, device_class)
    queues = [Target(target.arch).queue]
    if target.device_class is not None:
        queues.append(target.queue)
    return queues
