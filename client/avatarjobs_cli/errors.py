"""Expected failures and the exit codes they end the command with.

Anything raised as a `CliError` is shown as its message and hints, never as a traceback: these are the
failures a user can act on (a wrong key, a stack that is not running, a field the API refused).
"""

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # the command could not do its work (also: the API refused the request)
    JOB_NOT_SUCCEEDED = 2  # the job ended FAILED, CANCELED or TIMED_OUT
    WAIT_TIMED_OUT = 3  # --timeout passed before the job ended; the job goes on


class CliError(Exception):
    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *hints: str) -> None:
        super().__init__(message)
        self.message = message
        self.hints = list(hints)

    def lines(self) -> list[str]:
        """The message and what it says about each part (fields, for API problems), without the hints."""
        return [self.message]


class ApiUnreachable(CliError):
    """No answer from the API: nothing listens there, DNS, TLS or a timeout."""


class UnexpectedResponse(CliError):
    """An answer that is not the API's JSON: usually a --base-url that points somewhere else."""


class TransferFailed(CliError):
    """An upload to or a download from a presigned S3 URL failed."""


class DownloadMismatch(TransferFailed):
    """The bytes received are not the video the job recorded (size or SHA-256 differ)."""


@dataclass(frozen=True)
class FieldProblem:
    location: str  # body, query, path or header
    detail: str
    pointer: str | None = None  # a JSON Pointer into the body, e.g. "#/num_frames"
    name: str | None = None  # the parameter's name, for query, path and header

    def where(self) -> str:
        if self.pointer:
            return self.pointer
        return f"{self.location} {self.name}" if self.name else self.location


class ApiProblem(CliError):
    """An application/problem+json answer (RFC 9457), or the gateway's own error body made to look like one."""

    def __init__(
        self,
        *,
        method: str,
        path: str,
        status: int,
        title: str,
        detail: str,
        code: str | None = None,
        fields: list[FieldProblem] | None = None,
    ) -> None:
        summary = f"{title}: {detail}" if detail and detail != title else title
        suffix = f" ({code})" if code else ""
        super().__init__(f"{method} {path} failed with {status} {summary}{suffix}")
        self.status = status
        self.code = code
        self.fields = fields or []

    def lines(self) -> list[str]:
        return [self.message, *(f"  {field.where()}: {field.detail}" for field in self.fields)]
