"""SPDY/3.1 framing and a server-side session over an asyncio stream, as Kubernetes' streaming
clients (client-go over moby/spdystream) speak it.

Frames: a control frame is `1 | version(15) | type(16) | flags(8) | length(24) | payload`, a data
frame `0 | stream id(31) | flags(8) | length(24) | data`. Header blocks (SYN_STREAM, SYN_REPLY,
HEADERS) are `count(32)` then `len(32) name len(32) value` pairs (several values of one name
joined by NUL), compressed with zlib seeded with SPDY/3's fixed dictionary; each direction of
a connection is ONE zlib stream, every block ends with a sync flush.

Flow control (WINDOW_UPDATE) is accepted and ignored: spdystream neither sends nor honours it,
so a sender that waited for window updates would stall after 64 KiB.
"""

from __future__ import annotations

import asyncio
import struct
import time
import zlib

from berth.cri.streaming.inbox import Inbox

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from typing import Callable

    Headers = dict[str, list[str]]  # lower-case name -> values

VERSION = 3

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, UNSUPPORTED_VERSION, CANCEL, INTERNAL_ERROR = 1, 2, 3, 4, 5, 6

MAX_DATA = 64 * 1024  # bytes per data frame we send (the protocol allows 16 MiB)
MAX_FRAME = 16 << 20


def _dictionary() -> bytes:
    """SPDY/3's header-compression dictionary (draft 3, section 2.6.10.1): length-prefixed
    header names and values, then a run of common strings."""
    words = ("options head post put delete trace accept accept-charset accept-encoding accept-language "
             "accept-ranges age allow authorization cache-control connection content-base content-encoding "
             "content-language content-length content-location content-md5 content-range content-type date etag "
             "expect expires from host if-match if-modified-since if-none-match if-range if-unmodified-since "
             "last-modified location max-forwards pragma proxy-authenticate proxy-authorization range referer "
             "retry-after server te trailer transfer-encoding upgrade user-agent vary via warning "
             "www-authenticate method get status").split()
    words += ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
    head = b"".join(struct.pack(">I", len(w)) + w.encode() for w in words)
    tail = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
            "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
            "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
            "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
            "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
    return head + tail.encode()


DICTIONARY = _dictionary()


class ProtocolError(Exception):
    pass


class HeaderCodec:
    """One direction's zlib context each way (they live as long as the connection)."""

    def __init__(self) -> None:
        self._c = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
        self._d = zlib.decompressobj(15, DICTIONARY)

    def encode(self, headers: dict[str, list[str]] | dict[str, str]) -> bytes:
        """headers: {name: [values]} or {name: value}; names are sent lower-case."""
        parts = [struct.pack(">I", len(headers))]
        for name, values in headers.items():
            if isinstance(values, str):
                values = [values]
            n = name.lower().encode()
            v = "\0".join(values).encode()
            parts.append(struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v)
        raw = b"".join(parts)
        return self._c.compress(raw) + self._c.flush(zlib.Z_SYNC_FLUSH)

    def decode(self, block: bytes) -> Headers:
        try:
            raw = self._d.decompress(block)
        except zlib.error as e:
            raise ProtocolError(f"header block: {e}") from None
        return parse_header_block(raw)


def parse_header_block(raw: bytes) -> Headers:
    """{lower-case name: [values]} of an uncompressed header block."""
    try:
        (count,), off = struct.unpack_from(">I", raw), 4
        out: Headers = {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", raw, off)
            off += 4
            name = raw[off:off + n].decode("latin-1").lower()
            off += n
            (n,) = struct.unpack_from(">I", raw, off)
            off += 4
            value = raw[off:off + n].decode("latin-1")
            off += n
            if len(name) == 0 or off > len(raw):
                raise ProtocolError("truncated header block")
            out.setdefault(name, []).extend(value.split("\0"))
        return out
    except struct.error:
        raise ProtocolError("truncated header block") from None


def control_frame(ftype: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload


def data_frame(stream_id: int, flags: int, data: bytes) -> bytes:
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(data)) + data


class Stream:
    """One SPDY stream as the server sees it: read() the client's data (b"" at its FIN or a
    reset), write() ours, close() our half (FIN), reset() both."""

    def __init__(self, conn: Connection, stream_id: int, headers: Headers, remote_closed: bool) -> None:
        self.conn = conn
        self.id = stream_id
        self.headers = headers
        self.inbox = Inbox()
        self._buffer = b""
        self.remote_closed = remote_closed
        self.local_closed = False
        self.reset_ = False
        if remote_closed:
            self.inbox.put_eof()

    def header(self, name: str, default: str = "") -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else default

    async def read(self, n: int = -1) -> bytes:
        if not self._buffer:
            self._buffer = await self.inbox.get()
            if not self._buffer:
                return b""
        if n < 0 or n >= len(self._buffer):
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def _feed(self, data: bytes) -> None:
        if data:
            self.inbox.put(data)

    def _remote_fin(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            self.inbox.put_eof()

    async def write(self, data: bytes) -> None:
        if self.local_closed or self.conn.closed:
            raise ConnectionResetError(f"stream {self.id} is closed")
        view = memoryview(data)
        for i in range(0, len(data), MAX_DATA):
            chunk = view[i:i + MAX_DATA]
            self.conn.send_parts(struct.pack(">II", self.id & 0x7FFFFFFF, len(chunk)), chunk)
        await self.conn.drain()

    def close(self) -> None:
        """Half-close: our FIN (an empty data frame). Further writes fail."""
        if not self.local_closed and not self.reset_ and not self.conn.closed:
            self.conn.send(data_frame(self.id, FLAG_FIN, b""))
        self.local_closed = True
        self.conn._maybe_forget(self)

    def reset(self, status: int = CANCEL) -> None:
        if not self.reset_ and not self.conn.closed:
            self.conn.send(control_frame(RST_STREAM, 0, struct.pack(">II", self.id, status)))
        self.reset_ = True
        self.local_closed = True
        self._remote_fin()
        self.conn._maybe_forget(self)


class Connection:
    """The server side of a SPDY/3.1 session. `on_stream(stream)` is called for each stream the
    client opens and returns True to accept it (a SYN_REPLY goes out) or False to refuse it
    (RST_STREAM, as kubelet's server does for a stream it rejects)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 on_stream: Callable[[Stream], bool]) -> None:
        self.reader = reader
        self.writer = writer
        self.on_stream = on_stream
        self.codec = HeaderCodec()
        self.streams: dict[int, Stream] = {}
        self.closed = False
        self.gone_away = False
        self.last_stream_id = 0
        self.closed_event = asyncio.Event()
        self.last_activity = time.monotonic()  # for the idle timeout
        try:  # fewer, larger writes: drain() waits only past 1 MiB queued
            writer.transport.set_write_buffer_limits(high=1 << 20)
        except (AttributeError, RuntimeError):
            pass

    # --- output ---

    def send(self, frame: bytes) -> None:
        if not self.closed:
            self.writer.write(frame)
            self.last_activity = time.monotonic()

    def send_parts(self, *parts: bytes | memoryview) -> None:
        if not self.closed:
            self.writer.writelines(parts)
            self.last_activity = time.monotonic()

    async def drain(self) -> None:
        try:
            await self.writer.drain()
        except (ConnectionError, OSError):
            self._lost()
            raise ConnectionResetError("connection lost") from None

    def reply(self, stream: Stream, headers: dict[str, list[str]] | None = None) -> None:
        block = self.codec.encode(headers or {})
        self.send(control_frame(SYN_REPLY, 0, struct.pack(">I", stream.id) + block))

    def _maybe_forget(self, stream: Stream) -> None:
        if stream.local_closed and stream.remote_closed:
            self.streams.pop(stream.id, None)

    async def close(self, reset_streams: bool = False) -> None:
        """GOAWAY, then close the TCP connection (after FIN or RST on every open stream)."""
        if self.closed:
            return
        for s in list(self.streams.values()):
            if reset_streams:
                s.reset()
            else:
                s.close()
        self.send(control_frame(GOAWAY, 0, struct.pack(">II", self.last_stream_id, 0)))
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
            for s in list(self.streams.values()):
                s.local_closed = True
                s._remote_fin()
            self.closed_event.set()

    # --- input ---

    async def serve(self) -> None:
        """Read frames until the client goes (EOF, GOAWAY and no stream left, an error)."""
        try:
            while not self.closed:
                try:
                    head = await self.reader.readexactly(8)
                except (asyncio.IncompleteReadError, ConnectionError, OSError):
                    return
                self.last_activity = time.monotonic()
                word, rest = struct.unpack(">II", head)
                flags, length = rest >> 24, rest & 0xFFFFFF
                if length > MAX_FRAME:
                    raise ProtocolError("frame too large")
                try:
                    payload = await self.reader.readexactly(length) if length else b""
                except (asyncio.IncompleteReadError, ConnectionError, OSError):
                    return
                if word & 0x80000000:
                    self._control((word >> 16) & 0x7FFF, word & 0xFFFF, flags, payload)
                    continue
                s = self._data(word & 0x7FFFFFFF, flags, payload)
                if s is not None and not s.inbox.room.is_set():
                    await s.inbox.room.wait()  # back-pressure: its reader is behind
        except ProtocolError:
            self.send(control_frame(GOAWAY, 0, struct.pack(">II", self.last_stream_id, 1)))
        finally:
            self._lost()

    def _data(self, sid: int, flags: int, payload: bytes) -> Stream | None:
        s = self.streams.get(sid)
        if s is None or s.remote_closed:
            return None  # a stream already gone (spdystream drops these too)
        s._feed(payload)
        if flags & FLAG_FIN:
            s._remote_fin()
            self._maybe_forget(s)
        return s

    def _control(self, version: int, ftype: int, flags: int, p: bytes) -> None:
        s: Stream | None  # the stream of the frame, in each branch
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")
        if ftype == SYN_STREAM:
            if len(p) < 10:
                raise ProtocolError("short SYN_STREAM")
            sid = struct.unpack_from(">I", p)[0] & 0x7FFFFFFF
            headers = self.codec.decode(p[10:])  # always: the zlib context must see every block
            if sid == 0 or sid % 2 == 0 or sid <= self.last_stream_id or self.gone_away:
                self.send(control_frame(RST_STREAM, 0, struct.pack(">II", sid, PROTOCOL_ERROR if sid else
                                                                    INVALID_STREAM)))
                return
            self.last_stream_id = sid
            s = Stream(self, sid, headers, remote_closed=bool(flags & FLAG_FIN))
            if flags & FLAG_UNIDIRECTIONAL:
                s.local_closed = True
            self.streams[sid] = s
            if self.on_stream(s):
                self.reply(s)
            else:
                s.reset(REFUSED_STREAM)
        elif ftype == HEADERS:
            sid = struct.unpack_from(">I", p)[0] & 0x7FFFFFFF
            headers = self.codec.decode(p[4:])
            s = self.streams.get(sid)
            if s is not None:
                for k, v in headers.items():
                    s.headers.setdefault(k, []).extend(v)
                if flags & FLAG_FIN:
                    s._remote_fin()
                    self._maybe_forget(s)
        elif ftype == SYN_REPLY:
            self.codec.decode(p[4:])  # we open no streams; keep the zlib context in step
        elif ftype == RST_STREAM:
            sid = struct.unpack_from(">I", p)[0] & 0x7FFFFFFF
            s = self.streams.pop(sid, None)
            if s is not None:
                s.reset_ = True
                s.local_closed = True
                s._remote_fin()
        elif ftype == PING:
            if len(p) == 4 and struct.unpack(">I", p)[0] % 2 == 1:
                self.send(control_frame(PING, 0, p))  # the client's ping (odd id): echo it
        elif ftype == GOAWAY:
            self.gone_away = True
        # SETTINGS, WINDOW_UPDATE and unknown types: nothing to do
