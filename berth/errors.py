"""Error kinds shared by every layer, and how they map to HTTP status and exit codes.

Imports nothing of berth. A user-facing error is always one of these; anything
else reaching a command's top level is a bug.
"""


class BerthError(Exception):
    """Base class: a clear, one-line, user-facing error."""

    http_status = 500
    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotFound(BerthError):
    http_status = 404


class AlreadyExists(BerthError):
    http_status = 409


class InvalidArgument(BerthError):
    http_status = 400


class FailedPrecondition(BerthError):
    """The object exists but is in the wrong state for the operation."""

    http_status = 409


class Unavailable(BerthError):
    http_status = 503


class SystemError_(BerthError):
    """An operating-system call failed while doing legitimate work."""

    http_status = 500
