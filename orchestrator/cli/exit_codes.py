"""The exit codes of ``orchestrate``: part of its contract (``orchestrate --help`` lists them).

Errors carry a ``kind`` (``orchestrator.errors``, ``compiler.errors``); this table alone says
which exit code each kind means, for the CLI and for the API server that reports, with every
error, the code the CLI exits with for it.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_TIMEOUT = 4
EXIT_CANCELLED = 5

#: the farm's error kinds (``FarmError.kind``)
FARM_KINDS: dict[str, int] = {
    "failed": EXIT_JOB_FAILED,
    "job_failed": EXIT_JOB_FAILED,
    "invalid_request": EXIT_USAGE,
    "not_found": EXIT_USAGE,
    "invalid_state": EXIT_USAGE,
    "incompatible_artifact": EXIT_USAGE,
    "rejected_artifact": EXIT_USAGE,
    "unreachable": EXIT_UNREACHABLE,
    "no_worker": EXIT_UNREACHABLE,
    "timeout": EXIT_TIMEOUT,
    "cancelled": EXIT_CANCELLED,
}

#: compiler error kinds that blame what the user gave (model, spec, data, engine file), or a spec
#: that asks for what the model cannot have (``unsupported_op``: full compilation of a model with
#: ops the backend lacks; the fix is in the spec): bad usage. Every other compiler kind (a
#: lowering, conversion or backend build that failed, the accuracy gate) is a failed build,
#: exit 1: the same input fails again, but the input was not malformed.
COMPILER_USAGE_KINDS = frozenset(
    {
        "invalid_spec",
        "invalid_model",
        "unsafe_model",
        "input_mismatch",
        "invalid_dataset",
        "incompatible_engine",
        "engine_corrupt",
        "unsupported_op",
    }
)


def exit_code_of(error: BaseException) -> int:
    """The exit code for a farm or compiler error (1 for a kind this table does not know).

    An error relayed from the API server keeps the code the server gave (``exit_code``)."""
    relayed = error.__dict__.get("exit_code")
    if isinstance(relayed, int):
        return relayed
    kind = str(getattr(error, "kind", ""))
    if kind in FARM_KINDS:
        return FARM_KINDS[kind]
    return EXIT_USAGE if kind in COMPILER_USAGE_KINDS else EXIT_JOB_FAILED
