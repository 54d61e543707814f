"""The farm's error tree: every error a user can cause or meet, one class each.

Each class names its ``kind``; the CLI maps kinds to exit codes (``orchestrator.cli.exit_codes``)
and the API server to HTTP statuses. The services only raise them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.views import JobInfo



class FarmError(Exception):
    """Base of every error the farm reports to a user; ``kind`` names it for scripts."""

    kind = "failed"


class InvalidRequestError(FarmError):
    """Bad input: a missing or unsafe model file, a bad spec, an unknown target or id."""

    kind = "invalid_request"


class NotFoundError(InvalidRequestError):
    """No job, artifact or model with the given id."""

    kind = "not_found"


class InvalidStateError(InvalidRequestError):
    """The operation does not apply to the job in its current state (e.g. cancel a finished job)."""

    kind = "invalid_state"


class IncompatibleArtifactError(InvalidRequestError):
    """An artifact whose engines cannot run on the machine asking; ``force`` fetches it anyway."""

    kind = "incompatible_artifact"


class RejectedArtifactError(InvalidRequestError):
    """An engine the accuracy gate rejected, asked for as if it were a good one."""

    kind = "rejected_artifact"


class UnreachableError(FarmError):
    """The database, broker or artifact store cannot be reached."""

    kind = "unreachable"


class JobFailedError(FarmError):
    """A job the caller waited for failed."""

    kind = "job_failed"

    def __init__(self, job: JobInfo) -> None:
        self.job = job
        super().__init__(
            f"job {job.id} failed ({job.error_kind or 'error'}): {job.error_message or 'no message'}"
        )


class JobCancelledError(FarmError):
    kind = "cancelled"

    def __init__(self, job: JobInfo) -> None:
        self.job = job
        super().__init__(f"job {job.id} was cancelled")


class WaitTimeoutError(FarmError):
    kind = "timeout"

    def __init__(self, job: JobInfo, timeout: float) -> None:
        self.job = job
        super().__init__(
            f"job {job.id} is still {job.state} after {timeout:g} s"
            + (f" (phase {job.phase})" if job.phase else "")
        )
