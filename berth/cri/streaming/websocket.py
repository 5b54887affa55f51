"""The websocket forms of the streaming protocols, as kubelet's streaming server accepts them
(wsstream): every message starts with its channel number, one byte (`channel.k8s.io`,
`v4.channel.k8s.io`, `v5.channel.k8s.io`, or no subprotocol) or one ASCII digit before base64
data (`base64.channel.k8s.io`, `v4.base64.channel.k8s.io`).

Exec/attach channels: 0 stdin, 1 stdout, 2 stderr, 3 error (the status; JSON from v4 on),
4 resize. v5 adds the close signal: a message [255, channel] half-closes that channel (the
client's end of stdin). Port forwarding: channels 2i (data) and 2i+1 (error) for the i-th port
of the request, each starting with the port as a little-endian uint16.

RFC 6455 framing: client frames are masked, ours are not; ping is answered with pong, close
with close.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import time

from berth.cri.streaming.inbox import Inbox

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    Headers = dict[str, list[str]]  # lower-case name -> values

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

REMOTECOMMAND = {"": True, "channel.k8s.io": True, "base64.channel.k8s.io": False, "v4.channel.k8s.io": True,
                 "v4.base64.channel.k8s.io": False, "v5.channel.k8s.io": True}  # name -> binary
PORTFORWARD = {"": True, "v4.channel.k8s.io": True, "v4.base64.channel.k8s.io": False}
STREAM_CLOSE = 255

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
MAX_MESSAGE = 16 << 20


def is_websocket(headers: Headers) -> bool:
    upgrade = ",".join(headers.get("upgrade", [])).lower()
    connection = ",".join(headers.get("connection", [])).lower()
    return "websocket" in upgrade and "upgrade" in connection


def negotiate(headers: Headers, supported: dict[str, bool]) -> str | None:
    """The subprotocol (the client's first that we support; "" when it asks for none), or None."""
    offered = [p.strip() for v in headers.get("sec-websocket-protocol", []) for p in v.split(",") if p.strip()]
    if not offered:
        return ""
    for p in offered:
        if p in supported:
            return p
    return None


def accept_response(headers: Headers, protocol: str) -> bytes:
    key = (headers.get("sec-websocket-key") or [""])[0].strip()
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    head = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept}"]
    if protocol:
        head.append(f"Sec-WebSocket-Protocol: {protocol}")
    return ("\r\n".join(head) + "\r\n\r\n").encode()


class Channel:
    """One channel, with the interface of a SPDY stream that the protocol code uses."""

    def __init__(self, conn: Connection, num: int, readable: bool, writable: bool) -> None:
        self.conn = conn
        self.num = num
        self.id = num
        self.readable = readable
        self.writable = writable
        self.local_closed = not writable
        self.remote_closed = not readable
        self.inbox = Inbox()
        if not readable:
            self.inbox.put_eof()

    def header(self, name: str, default: str = "") -> str:
        return default

    async def read(self, n: int = -1) -> bytes:
        return await self.inbox.get()

    def _feed(self, data: bytes) -> None:
        if self.readable and not self.remote_closed and data:
            self.inbox.put(data)

    def _eof(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            self.inbox.put_eof()

    async def write(self, data: bytes) -> None:
        if not self.writable:
            return
        if self.conn.closed:
            raise ConnectionResetError("websocket closed")
        self.conn.send_message(self.num, data)
        await self.conn.drain()

    def close(self) -> None:
        self.local_closed = True

    def reset(self, status: int = 0) -> None:
        self.local_closed = True
        self._eof()


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, binary: bool,
                 close_signal: bool = False) -> None:
        self.reader = reader
        self.writer = writer
        self.binary = binary
        self.close_signal = close_signal
        self.channels: list[Channel] = []
        self.closed = False
        self.closed_event = asyncio.Event()
        self.last_activity = time.monotonic()  # for the idle timeout

    def add(self, readable: bool, writable: bool) -> Channel:
        ch = Channel(self, len(self.channels), readable, writable)
        self.channels.append(ch)
        return ch

    # --- output ---

    def _frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = struct.pack(">BB", 0x80 | opcode, n)
        elif n < 1 << 16:
            head = struct.pack(">BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack(">BBQ", 0x80 | opcode, 127, n)
        if not self.closed:
            self.writer.write(head + payload)
            self.last_activity = time.monotonic()

    def send_message(self, num: int, data: bytes) -> None:
        if self.binary:
            self._frame(OP_BINARY, bytes([num]) + data)
        else:
            self._frame(OP_TEXT, (chr(ord("0") + num) + base64.b64encode(data).decode()).encode())

    async def drain(self) -> None:
        try:
            await self.writer.drain()
        except (ConnectionError, OSError):
            self._lost()
            raise ConnectionResetError("connection lost") from None

    async def close(self, reset_streams: bool = False) -> None:
        if self.closed:
            return
        self._frame(OP_CLOSE, struct.pack(">H", 1000))
        try:
            await asyncio.wait_for(self.writer.drain(), 5)
        except (ConnectionError, OSError, asyncio.TimeoutError):
            pass
        self._lost()

    def _lost(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.writer.close()
            except (ConnectionError, OSError, RuntimeError):
                pass
            for ch in self.channels:
                ch.local_closed = True
                ch._eof()
            self.closed_event.set()

    # --- input ---

    async def _frame_in(self) -> tuple[bool, int, bytes]:
        b1, b2 = await self.reader.readexactly(2)
        self.last_activity = time.monotonic()
        fin, opcode = b1 & 0x80, b1 & 0x0F
        masked, n = b2 & 0x80, b2 & 0x7F
        if n == 126:
            (n,) = struct.unpack(">H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack(">Q", await self.reader.readexactly(8))
        if n > MAX_MESSAGE:
            raise ValueError("message too large")
        mask = await self.reader.readexactly(4) if masked else None
        payload = await self.reader.readexactly(n) if n else b""
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else _unmask(payload, mask)
        return bool(fin), opcode, payload

    async def serve(self) -> None:
        try:
            message, kind = b"", None
            while not self.closed:
                try:
                    fin, opcode, payload = await self._frame_in()
                except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError):
                    return
                if opcode == OP_PING:
                    self._frame(OP_PONG, payload)
                    continue
                if opcode == OP_PONG:
                    continue
                if opcode == OP_CLOSE:
                    return
                if opcode in (OP_TEXT, OP_BINARY):
                    message, kind = payload, opcode
                elif opcode == OP_CONT:
                    message += payload
                if not fin:
                    continue
                ch = self._message(message)
                message = b""
                if ch is not None and not ch.inbox.room.is_set():
                    await ch.inbox.room.wait()  # back-pressure: its reader is behind
        finally:
            self._lost()

    def _message(self, data: bytes) -> Channel | None:
        if not data:
            return None
        if self.close_signal and data[0] == STREAM_CLOSE:
            if len(data) == 2 and data[1] < len(self.channels):
                self.channels[data[1]]._eof()
            return None
        num = data[0]
        body = data[1:]
        if not self.binary:
            num -= ord("0")
            try:
                body = base64.b64decode(body)
            except ValueError:
                return None
        if 0 <= num < len(self.channels):
            self.channels[num]._feed(body)
            return self.channels[num]
        return None


def _unmask(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")
