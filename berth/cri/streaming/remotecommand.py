"""The Kubernetes remote-command protocols (exec and attach) over a SPDY session, as kubelet's
streaming server speaks them (pkg/kubelet/cri/streaming/remotecommand).

The client opens one stream per channel, each with a `streamtype` header: `error`, `stdin`,
`stdout`, `stderr` and, with a TTY (v3 and later), `resize` (JSON {"Width", "Height"} objects
one after another). Once all the expected streams are there the command runs; its output goes
to stdout/stderr, and at the end the error stream carries the outcome: v4 a metav1.Status as JSON
(exit codes as `NonZeroExitCode` with an `ExitCode` cause), older versions the error text only.
The client's FIN on stdin is the command's end of input.
"""

from __future__ import annotations

import asyncio
import json
import logging

V4 = "v4.channel.k8s.io"
V3 = "v3.channel.k8s.io"
V2 = "v2.channel.k8s.io"
V1 = "channel.k8s.io"
PROTOCOLS = [V4, V3, V2, V1]  # kubelet's SupportedStreamingProtocols, in its order

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from typing import Any, Awaitable, Callable, Optional

    from berth.cri.stream_backend import _ShimSession
    from berth.cri.streaming import spdy, websocket

    Stream = spdy.Stream | websocket.Channel  # what the protocols read and write
    Conn = spdy.Connection | websocket.Connection
    Status = dict[str, Any]  # a metav1.Status (v4's error stream)
    Opts = dict[str, Any]  # the session's {"kind", "stdin", "stdout", "stderr", "tty"}
    Size = Optional[tuple[int, int]]  # (width, height); None at the end of the resize stream

log = logging.getLogger("berthd.streaming")

INITIAL_SIZE_WAIT = 0.25  # seconds a TTY session waits for the client's first size before starting


def _go_json(obj: Any) -> bytes:
    """JSON as Go's encoding/json writes it (compact, HTML characters escaped)."""
    from berth.goquote import marshal
    return marshal(obj).encode()


def status_success() -> Status:
    return {"metadata": {}, "status": "Success"}


def status_exit(code: int, message: str) -> Status:
    return {"metadata": {}, "status": "Failure", "message": f"command terminated with non-zero exit code: {message}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def status_internal(err: object) -> Status:
    return {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {err}",
            "reason": "InternalError", "details": {"causes": [{"message": str(err)}]}, "code": 500}


class Streams:
    """Collects the client's streams by type until the expected number has arrived."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.by_type: dict[str, Stream] = {}
        self.complete = asyncio.Event()

    def on_stream(self, stream: Stream) -> bool:
        # kubelet replies to every stream and counts it, of a known type or not
        kind = stream.header("streamtype")
        if kind in ("error", "stdin", "stdout", "stderr", "resize"):
            self.by_type[kind] = stream
        else:
            log.warning("streaming: unexpected stream type %r", kind)
        self.count += 1
        if self.count >= self.expected:
            self.complete.set()
        return True


def expected_streams(protocol: str, opts: Opts) -> int:
    n = 1 + bool(opts["stdin"]) + bool(opts["stdout"]) + bool(opts["stderr"])
    if opts["tty"] and protocol in (V3, V4):
        n += 1
    return n


async def run(conn: Conn, protocol: str, opts: Opts, streams: Streams,
              start: Callable[[tuple[int, int] | None], Awaitable[_ShimSession]], creation_timeout: float) -> None:
    """Serve one exec or attach: wait for the streams, start the session (`start(size)` returns a
    backend session; size: the client's first terminal size or None), pump stdin/stdout/stderr/
    resize, then report the outcome and close."""
    serve = asyncio.ensure_future(conn.serve())
    complete = asyncio.ensure_future(streams.complete.wait())
    try:
        await asyncio.wait([complete, serve], timeout=creation_timeout, return_when=asyncio.FIRST_COMPLETED)
        complete.cancel()
        if not streams.complete.is_set():
            if not serve.done():
                log.warning("streaming: timed out waiting for client to create streams")
            return
        s = streams.by_type
        if protocol == V1 and "stdin" in s:
            s["stdin"].close()  # what 1.0 kubelets did
        error_stream = s.get("error")
        sizes: asyncio.Queue[Size] = asyncio.Queue()
        resize = asyncio.ensure_future(_resize_events(s["resize"], sizes)) if "resize" in s else None
        initial = None
        if resize is not None and opts["tty"]:
            # the client sends the terminal's size as soon as its streams are up: a new process
            # gets its pty at that size from the start (containerd's does), no SIGWINCH after
            try:
                initial = await asyncio.wait_for(sizes.get(), INITIAL_SIZE_WAIT)
            except asyncio.TimeoutError:
                pass
        try:
            session = await start(initial)
        except Exception as e:  # noqa: BLE001 - reported to the client, as kubelet does
            await _write_status(protocol, error_stream, status_internal(_message(e, opts)))
            return
        try:
            if initial is not None and opts.get("kind") == "attach":
                await session.resize(*initial)
            status = await _pump(conn, session, s, opts, sizes)
        finally:
            session.close()
            if resize is not None:
                resize.cancel()
        if status is not None:
            await _write_status(protocol, error_stream, status)
    finally:
        await conn.close()
        serve.cancel()


def _message(e: BaseException, opts: Opts) -> str:
    text = getattr(e, "message", None) or str(e) or type(e).__name__
    if opts.get("kind") == "attach":
        return f"error attaching to container: {text}"
    return f"error executing command in container: {text}"


async def _write_status(protocol: str, stream: Stream | None, status: Status) -> None:
    if stream is None:
        return
    if protocol == V4:
        data = _go_json(status)
    elif status.get("status") == "Success":
        return
    else:
        data = status.get("message", "").encode()
    try:
        await stream.write(data)
    except ConnectionError:
        pass


async def _pump(conn: Conn, session: _ShimSession, s: dict[str, Stream], opts: Opts,
                sizes: asyncio.Queue[Size]) -> Status | None:
    """Copy until the session's output ends; returns the status to report (None when the
    client went away first)."""
    tasks: list[asyncio.Future[Any]] = []
    if "stdin" in s and opts["stdin"]:
        tasks.append(asyncio.ensure_future(_stdin(s["stdin"], session)))
    if "resize" in s:
        tasks.append(asyncio.ensure_future(_resize(sizes, session)))
    out = asyncio.ensure_future(_output(session, s.get("stdout"), s.get("stderr")))
    lost = asyncio.ensure_future(conn.closed_event.wait())
    try:
        await asyncio.wait([out, lost], return_when=asyncio.FIRST_COMPLETED)
        if not out.done():
            return None  # the client closed the connection: leave the command alone
        try:
            out.result()
        except Exception as e:  # noqa: BLE001
            return status_internal(_message(e, opts))
        for name in ("stdout", "stderr"):
            if name in s:
                s[name].close()
        try:
            code = await session.exit_code()
        except Exception as e:  # noqa: BLE001
            return status_internal(_message(e, opts))
        if code:
            return status_exit(code, session.exit_message(code))
        return status_success()
    finally:
        for t in tasks + [out, lost]:
            t.cancel()


async def _output(session: _ShimSession, stdout: Stream | None, stderr: Stream | None) -> None:
    while True:
        item = await session.read()
        if item is None:
            return
        kind, data = item
        target = stderr if kind == "stderr" else stdout
        if target is None or target.local_closed:
            continue
        try:
            await target.write(data)
        except ConnectionError:
            target.local_closed = True  # the client is gone: keep draining the command's output


async def _stdin(stream: Stream, session: _ShimSession) -> None:
    try:
        while True:
            data = await stream.read()
            if not data:
                break
            await session.write_stdin(data)
        await session.close_stdin()
    except (ConnectionError, OSError):
        pass


async def _resize(sizes: asyncio.Queue[Size], session: _ShimSession) -> None:
    while True:
        size = await sizes.get()
        if size is None:
            return
        try:
            await session.resize(*size)
        except (ConnectionError, OSError):
            pass


async def _resize_events(stream: Stream, sizes: asyncio.Queue[Size]) -> None:
    """The JSON {"Width", "Height"} objects of the resize stream, as (width, height) on `sizes`
    (None at its end)."""
    decoder = json.JSONDecoder()
    buf = ""
    try:
        while True:
            data = await stream.read()
            if not data:
                return
            buf += data.decode(errors="replace")
            while True:
                buf = buf.lstrip()
                if not buf:
                    break
                try:
                    obj, end = decoder.raw_decode(buf)
                except ValueError:
                    break  # incomplete: wait for more
                buf = buf[end:]
                if not isinstance(obj, dict):
                    return  # kubelet's decoder stops at the first error
                try:
                    w, h = int(obj.get("Width") or 0), int(obj.get("Height") or 0)
                except (TypeError, ValueError):
                    return
                if w >= 1 and h >= 1:  # containerd ignores empty sizes
                    sizes.put_nowait((w, h))
    finally:
        sizes.put_nowait(None)
