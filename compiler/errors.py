"""Errors a user can cause. Each carries a short ``kind`` that the farm records with a failed job."""

from __future__ import annotations

from collections import Counter
from typing import Any


class CompilerError(Exception):
    kind = "compile_error"


class SpecError(CompilerError, ValueError):
    """The compile spec has an unknown key or a bad value; the message names the key."""

    kind = "invalid_spec"


class InvalidModelError(CompilerError):
    """The file is not a torch.export ExportedProgram the compiler can read."""

    kind = "invalid_model"


class UnsafeModelError(InvalidModelError):
    """The file contains a pickle that could run code when loaded; it is refused unopened."""

    kind = "unsafe_model"


class InputMismatchError(CompilerError, ValueError):
    """Inputs given at run time (or named in the spec) do not match the compiled program."""

    kind = "input_mismatch"


class UnsupportedOperatorError(CompilerError):
    """``require_full_compilation`` was set and some operators cannot be converted."""

    kind = "unsupported_op"

    def __init__(self, unsupported: Counter[str], reasons: dict[str, str] | None = None) -> None:
        self.unsupported = dict(unsupported)
        self.reasons = reasons or {}
        lines = [
            f"  {op} x{count}" + (f"  ({self.reasons[op]})" if op in self.reasons else "")
            for op, count in sorted(unsupported.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        super().__init__(
            "require_full_compilation is set but these operators would run in PyTorch:\n"
            + "\n".join(lines)
            + "\nRemove them from torch_executed_ops/torch_executed_modules, or allow fallback."
        )


class LoweringError(CompilerError):
    kind = "lowering_failed"


class BackendError(CompilerError):
    kind = "backend_failed"


class BackendUnavailableError(BackendError):
    """The requested backend is not installed on this machine."""

    kind = "backend_unavailable"


class DatasetError(CompilerError, ValueError):
    """A validation or calibration data file is unreadable, a pickle, or does not match the
    program's inputs (names, dtypes, shapes) or holds NaN/inf; refused before any compile."""

    kind = "invalid_dataset"


class AccuracyGateError(CompilerError):
    """The compiled engine failed its accuracy gate. ``results`` holds every validation result
    (the failing ones have ``passed`` False); ``compiled`` is the rejected module, for
    inspection only."""

    kind = "accuracy_gate"

    def __init__(self, message: str, results: list[Any], compiled: Any = None) -> None:
        super().__init__(message)
        self.results = results
        self.compiled = compiled
