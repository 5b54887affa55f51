"""berth's error kinds -> gRPC status codes, for every RPC of the CRI servicers."""

from __future__ import annotations

import functools
import logging
import os
import time

import grpc

from berth.errors import AlreadyExists, BerthError, FailedPrecondition, InvalidArgument, NotFound, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from typing import Any, Callable

    Method = Callable[[Any, Any, grpc.ServicerContext], Any]  # a servicer method (self, request, context)

log = logging.getLogger("berthd")

# bench/cri.py --only split: each answered call's times appended to this file (its name, the
# handler's start and end, and when the answer was sent, CLOCK_MONOTONIC): a diagnostic, unset
# in normal use
TIMES_FILE = os.environ.get("BERTH_CRI_TIMES") or None

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
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        debug = log.isEnabledFor(logging.DEBUG)  # each call and its time, as containerd logs them at debug
        t0 = time.monotonic() if debug or TIMES_FILE else 0.0
        try:
            reply = fn(self, request, context)
            if debug:
                log.debug("CRI %s: %.1f ms", name, (time.monotonic() - t0) * 1000)
            if TIMES_FILE:
                context.add_callback(functools.partial(log_call_times, TIMES_FILE, name, t0, time.monotonic()))
            return reply
        except Abort as e:
            code, msg = e.code, e.message
        except BerthError as e:
            code, msg = code_of(e), str(e)
        except Exception as e:  # noqa: BLE001 - answered, and logged with its traceback
            log.exception("CRI %s", name)
            code, msg = grpc.StatusCode.INTERNAL, f"{name}: {type(e).__name__}: {e}"
        if debug:
            log.debug("CRI %s: %.1f ms: %s %s", name, (time.monotonic() - t0) * 1000, code.name, msg)
        context.abort(code, msg)
    return wrapper


def log_call_times(path: str, name: str, start: float, end: float) -> None:
    """A call's line in path (TIMES_FILE; bench/cri_floor.py's), once its answer is sent (the
    call's completion callback): "name start end sent", what bench/cri.py's split reads."""
    try:
        with open(path, "a") as f:
            f.write(f"{name} {start:.6f} {end:.6f} {time.monotonic():.6f}\n")
    except OSError:
        pass


def unimplemented(what: str) -> Method:
    def method(self: Any, request: Any, context: grpc.ServicerContext) -> None:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{what} is not implemented by berth")
    method.__name__ = what
    return method
