"""The Kubernetes port-forward protocol (portforward.k8s.io) over a SPDY session, as kubelet's
streaming server speaks it (pkg/kubelet/cri/streaming/portforward).

Each forwarded connection is a pair of client streams with the same `requestID` header (older
clients send none: the id is derived from the stream ids), a `port` header and a `streamtype`
of `data` or `error`. The data stream carries the TCP bytes both ways to 127.0.0.1:<port> in
the pod's network namespace; a failure is written as text on the error stream. One session
serves any number of connections until the client closes it.
"""

from __future__ import annotations

import asyncio
import logging

PROTOCOLS = ["portforward.k8s.io"]

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from typing import Any, Awaitable, Callable, Coroutine

    from berth.cri.streaming import spdy, websocket

    Stream = spdy.Stream | websocket.Channel  # what the protocols read and write
    Conn = spdy.Connection | websocket.Connection

log = logging.getLogger("berthd.streaming")


class Handler:
    def __init__(self, sandbox_id: str,
                 connect: Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]],
                 creation_timeout: float) -> None:
        self.sandbox_id = sandbox_id
        self.connect = connect  # async (port) -> (reader, writer) of the connection in the pod
        self.creation_timeout = creation_timeout
        self.pairs: dict[str, dict[str, Any]] = {}  # request id -> {"id", "data", "error", "complete"}
        self.tasks: set[asyncio.Future[Any]] = set()

    def on_stream(self, stream: Stream) -> bool:
        """Validate and pair a new stream (kubelet rejects a bad one with a reset)."""
        port = stream.header("port")
        if not port:
            log.warning("streaming: port forward stream without a port header")
            return False
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            return False
        kind = stream.header("streamtype")
        if kind not in ("data", "error"):
            return False
        rid = stream.header("requestid")
        if not rid:
            rid = str(stream.id if kind == "error" else stream.id - 2)
        pair = self.pairs.get(rid)
        if pair is None:
            pair = self.pairs[rid] = {"id": rid}
            self._spawn(self._expire(rid, pair))
        if kind in pair:
            msg = f"error processing stream for request {rid}: {kind} stream already assigned"
            err = pair.get("error")
            if err is not None:
                self._spawn(_print(err, msg))
            return True
        pair[kind] = stream
        if "data" in pair and "error" in pair:
            self.pairs.pop(rid, None)
            pair["complete"] = True
            self._spawn(self._forward(pair["data"], pair["error"], int(pair["data"].header("port"))))
        return True

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        t = asyncio.ensure_future(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def _expire(self, rid: str, pair: dict[str, Any]) -> None:
        await asyncio.sleep(self.creation_timeout)
        if not pair.get("complete"):
            self.pairs.pop(rid, None)
            err = pair.get("error")
            if err is not None:
                await _print(err, f"(conn, request={rid}) timed out waiting for streams")

    async def _forward(self, data: Stream, error: Stream, port: int) -> None:
        writer = None
        try:
            try:
                reader, writer = await self.connect(port)
            except Exception as e:  # noqa: BLE001 - reported on the error stream
                text = getattr(e, "message", None) or str(e)
                await _print(error, f"error forwarding port {port} to pod {self.sandbox_id}, uid : {text}")
                return

            async def to_pod() -> None:
                while True:
                    chunk = await data.read()
                    if not chunk:
                        break
                    writer.write(chunk)
                    await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()

            async def from_pod() -> None:
                while True:
                    chunk = await reader.read(256 * 1024)
                    if not chunk:
                        break
                    await data.write(chunk)

            a, b = asyncio.ensure_future(to_pod()), asyncio.ensure_future(from_pod())
            try:
                done, pending = await asyncio.wait([a, b], return_when=asyncio.FIRST_COMPLETED)
                if pending:
                    # as containerd: give the other direction a second to finish
                    await asyncio.wait(pending, timeout=1)
            finally:
                for t in (a, b):
                    t.cancel()
                    if t.done() and not t.cancelled() and t.exception() is not None:
                        log.debug("port forward: %s", t.exception())
        finally:
            if writer is not None:
                writer.close()
            data.close()
            error.close()

    def cancel(self) -> None:
        for t in list(self.tasks):
            t.cancel()


async def _print(stream: Stream, text: str) -> None:
    try:
        await stream.write(text.encode())
    except ConnectionError:
        pass


async def run(conn: Conn, handler: Handler) -> None:
    try:
        await conn.serve()
    finally:
        handler.cancel()
        await conn.close()


async def run_channels(conn: Conn, handler: Handler,
                       ports: list[tuple[int, tuple[websocket.Channel, websocket.Channel]]]) -> None:
    """Port forwarding over websocket channels: one (data, error) pair per port of the request,
    each announced by the port number (little-endian uint16); done when every pair is."""
    import struct
    serve = asyncio.ensure_future(conn.serve())
    try:
        for port, (data, error) in ports:
            await data.write(struct.pack("<H", port))
            await error.write(struct.pack("<H", port))
        jobs = [asyncio.ensure_future(handler._forward(data, error, port)) for port, (data, error) in ports]
        if jobs:
            await asyncio.wait(jobs + [serve], return_when=asyncio.FIRST_COMPLETED)
            if serve.done():
                await asyncio.wait(jobs, timeout=2)
            else:
                await asyncio.wait(jobs)
        for j in jobs:
            j.cancel()
    except ConnectionError:
        pass
    finally:
        handler.cancel()
        await conn.close()
        serve.cancel()
