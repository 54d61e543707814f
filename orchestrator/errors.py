"""The farm's error tree: every error a user can cause or meet, one class each.

Each maps to one exit code of the CLI contract (documented in `orchestrate --help`): the CLI
and the API server translate these classes, the services only raise them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.views import JobInfo

# Exit codes are part of the CLI contract (documented in `orchestrate --help`).
EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_TIMEOUT = 4
EXIT_CANCELLED = 5


class FarmError(Exception):
    """Base of every error the farm reports to a user; ``exit_code`` is what the CLI returns."""

    exit_code = EXIT_JOB_FAILED


class InvalidRequestError(FarmError):
    """Bad input: a missing or unsafe model file, a bad spec, an unknown target or id."""

    exit_code = EXIT_USAGE


class NotFoundError(InvalidRequestError):
    """No job, artifact or model with the given id."""


class InvalidStateError(InvalidRequestError):
    """The operation does not apply to the job in its current state (e.g. cancel a finished job)."""


class IncompatibleArtifactError(InvalidRequestError):
    """An artifact whose engines cannot run on the machine asking; ``force`` fetches it anyway."""


class RejectedArtifactError(InvalidRequestError):
    """An engine the accuracy gate rejected, asked for as if it were a good one."""


class UnreachableError(FarmError):
    """The database, broker or artifact store cannot be reached."""

    exit_code = EXIT_UNREACHABLE


class JobFailedError(FarmError):
    """A job the caller waited for failed."""

    exit_code = EXIT_JOB_FAILED

    def __init__(self, job: JobInfo) -> None:
        self.job = job
        super().__init__(
            f"job {job.id} failed ({job.error_kind or 'error'}): {job.error_message or 'no message'}"
        )


class JobCancelledError(FarmError):
    exit_code = EXIT_CANCELLED

    def __init__(self, job: JobInfo) -> None:
        self.job = job
        super().__init__(f"job {job.id} was cancelled")


class WaitTimeoutError(FarmError):
    exit_code = EXIT_TIMEOUT

    def __init__(self, job: JobInfo, timeout: float) -> None:
        self.job = job
        super().__init__(
            f"job {job.id} is still {job.state} after {timeout:g} s"
            + (f" (phase {job.phase})" if job.phase else "")
        )
