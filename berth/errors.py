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


class ConfigInvalid(InvalidArgument):
    """The OCI runtime refused a container's configuration before it made anything (runc's
    validation: an engine says `runc create failed: <why>`, not `unable to start container process`)."""


class FailedPrecondition(BerthError):
    """The object exists but is in the wrong state for the operation."""

    http_status = 409


class Forbidden(BerthError):
    """The operation is not allowed on this object whatever its state (dockerd's 403: a network
    that is pre-defined, an address pool taken)."""

    http_status = 403


class Unavailable(BerthError):
    http_status = 503


SWARM_NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect '
                     'this node to swarm and try again.')  # (dockerd's words for what only a swarm does)


class SystemError_(BerthError):
    """An operating-system call failed while doing legitimate work."""

    http_status = 500


def start_exit_code(message: str, default: int = 125) -> int:
    """docker's exit code for a container whose process could not start: 127 when the command
    was not found, 126 when it could not be invoked, else ``default`` (the CLI's 125; the
    daemon records 128 in State.ExitCode)."""
    low = message.lower()
    if "executable file not found" in low or "no such file or directory" in low:
        return 127
    if "permission denied" in low or "is a directory" in low:
        return 126
    return default
