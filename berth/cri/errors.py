"""berth's error kinds -> gRPC status codes, for every RPC of the CRI servicers."""

from __future__ import annotations

import functools
import logging

import grpc

from berth.errors import AlreadyExists, BerthError, FailedPrecondition, InvalidArgument, NotFound, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from typing import Any, Callable

    Method = Callable[[Any, Any, grpc.ServicerContext], Any]  # a servicer method (self, request, context)

log = logging.getLogger("berthd")

_CODES = [(NotFound, grpc.StatusCode.NOT_FOUND), (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
          (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
          (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION), (Unavailable, grpc.StatusCode.UNAVAILABLE)]


def code_of(e: BaseException) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(e, kind):
            return code
    return grpc.StatusCode.UNKNOWN


class Abort(Exception):
    """Raised inside a servicer method: answer with this status code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def rpc(fn: Method) -> Method:
    """A servicer method: a BerthError becomes its gRPC status with the one-line message; anything
    else is logged and answered INTERNAL (never a traceback to the client)."""
    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except Abort as e:
            code, msg = e.code, e.message
        except BerthError as e:
            code, msg = code_of(e), str(e)
        except Exception as e:  # noqa: BLE001 - answered, and logged with its traceback
            log.exception("CRI %s", fn.__name__)
            code, msg = grpc.StatusCode.INTERNAL, f"{fn.__name__}: {type(e).__name__}: {e}"
        context.abort(code, msg)
    return wrapper


def unimplemented(what: str) -> Method:
    def method(self: Any, request: Any, context: grpc.ServicerContext) -> None:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{what} is not implemented by berth")
    method.__name__ = what
    return method
