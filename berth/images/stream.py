"""A layer's bytes on their way into a snapshot.

- LayerStream: a download teed into the content store's writer and the unpacker, so a pulled
  layer is hashed, decompressed, hashed again (its diff_id) and unpacked in one pass.
- Decompressed: a reader over a (gzip, zstd or plain) layer that hashes the tar stream; gzip
  through the fastest reader importable (gzip_reader: ISA-L, zlib-ng or the stdlib's).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable

from berth.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from typing import BinaryIO

    from berth.content.store import Writer


class LayerStream:
    """A layer's bytes as a download delivers them: the fetch runs in its own thread, writing
    each chunk to the content store's writer and handing it to the unpacker, so the blob is
    hashed (compressed, by the writer), decompressed, hashed (diff_id) and unpacked in one pass.
    The snapshot is committed only after the blob's size and digest were verified (finish)."""

    class Aborted(Exception):
        pass

    def __init__(self, fetch: Callable[[LayerStream], None], writer: Writer, expected: dict) -> None:
        import queue
        import threading
        self.q = queue.Queue(maxsize=32)
        self.buf = b""
        self.eof = False
        self.aborted = False
        self.error = None
        self.writer = writer
        self.expected = expected

        def run() -> None:
            try:
                fetch(self)
                writer.commit(expected["size"], expected["digest"])
            except BaseException as e:  # reported by finish()
                self.error = e
            finally:
                writer.close()
                self._put(None)
        self.thread = threading.Thread(target=run, name=f"fetch-{expected['digest'][7:19]}", daemon=True)
        self.thread.start()

    def _put(self, item: bytes | None) -> None:
        import queue
        while True:
            try:
                self.q.put(item, timeout=0.2)
                return
            except queue.Full:
                if self.aborted:
                    return

    def write(self, data: bytes) -> int:
        """Called by the registry client with each chunk."""
        if self.aborted:
            raise LayerStream.Aborted("unpacking failed")
        self.writer.write(data)
        self._put(bytes(data))
        return len(data)

    def read(self, n: int | None = -1) -> bytes:
        while not self.eof and (n is None or n < 0 or len(self.buf) < n):
            item = self.q.get()
            if item is None:
                self.eof = True
                break
            self.buf += item
        if n is None or n < 0:
            data, self.buf = self.buf, b""
        else:
            data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def readinto(self, b: bytearray | memoryview) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def finish(self) -> None:
        while self.read(1 << 20):
            pass
        self.thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        self.aborted = True
        while not self.eof:  # unblock the fetch thread
            try:
                item = self.q.get(timeout=0.2)
            except Exception:
                if not self.thread.is_alive():
                    break
                continue
            if item is None:
                self.eof = True
        self.thread.join(5)

    def close(self) -> None:
        pass


_GZIP = None  # (open(fileobj) -> gzip reader, the library's error class or None, name), chosen on first use


def gzip_reader() -> tuple:
    """The fastest gzip reader importable. python-isal (ISA-L, ~2.5x zlib's inflate speed) or
    zlib-ng (~2x), each through its threaded reader: one thread of the library inflates 1 MiB
    blocks without the GIL while the caller hashes and unpacks. Else the stdlib's GzipFile."""
    global _GZIP
    if _GZIP is None:
        try:
            from isal import igzip_threaded, isal_zlib
            _GZIP = (lambda f: igzip_threaded.open(f, "rb", threads=1), isal_zlib.error, "isal")
        except ImportError:
            try:
                from zlib_ng import gzip_ng_threaded, zlib_ng
                _GZIP = (lambda f: gzip_ng_threaded.open(f, "rb", threads=1), zlib_ng.error, "zlib-ng")
            except ImportError:
                _GZIP = (lambda f: gzip.GzipFile(fileobj=f, mode="rb"), None, "zlib")
    return _GZIP


class Decompressed:
    """A reader over a stored layer that decompresses (gzip, zstd) and hashes the tar stream.

    The decompressor is read in 1 MiB chunks (each hashed once) and small reads (tarfile asks
    for 10 KiB at a time) are served from the chunk: a read may return fewer bytes than asked
    for, and b"" only at the end. Use it as a context manager: closing stops the decompressing
    thread of a threaded gzip reader (it reads the file, so close this before the file)."""

    CHUNK = 1 << 20

    def __init__(self, f: BinaryIO, compression: str | None) -> None:
        self.hasher = hashlib.sha256()
        self._error = None
        self._closable = False
        self._buf = b""
        self._pos = 0
        head = f.read(4)
        if compression is None:
            compression = "gzip" if head[:2] == b"\x1f\x8b" else "zstd" if head == b"\x28\xb5\x2f\xfd" else "none"
        rest = Prefixed(head, f)
        if compression == "gzip":
            open_gzip, self._error, _name = gzip_reader()
            self.f = open_gzip(rest)
            self._closable = True
        elif compression == "zstd":
            try:
                import zstandard
            except ImportError:
                raise InvalidArgument("zstd layers need the zstandard module") from None
            self.f = zstandard.ZstdDecompressor().stream_reader(rest)
        else:
            self.f = rest

    def _fill(self) -> None:
        try:
            self._buf = self.f.read(self.CHUNK)
        except Exception as e:
            if self._error is not None and isinstance(e, self._error):
                # the accelerated readers' own error class: report it as zlib's, like the stdlib
                # reader, so that apply_layer calls it an invalid archive
                import zlib
                raise zlib.error(str(e)) from e
            raise
        self._pos = 0
        self.hasher.update(self._buf)

    def read(self, n: int | None = -1) -> bytes:
        if self._pos >= len(self._buf):
            self._fill()
        if n is None or n < 0:
            n = len(self._buf) - self._pos
        data = self._buf[self._pos:self._pos + n]
        self._pos += len(data)
        return data

    def drain(self) -> None:
        while self.read(self.CHUNK):
            pass

    def close(self) -> None:
        # the gzip readers only (closing zstandard's would close the file under it)
        if self._closable:
            self._closable = False
            self.f.close()

    def __enter__(self) -> Decompressed:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Prefixed:
    """A reader that gives back bytes already read from f (head) before the rest of f."""

    def __init__(self, head: bytes, f: BinaryIO) -> None:
        self.head = head
        self.f = f

    def read(self, n: int | None = -1) -> bytes:
        if self.head:
            if n is None or n < 0:
                data, self.head = self.head + self.f.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            if len(data) < n:
                data += self.f.read(n - len(data))
            return data
        return self.f.read(n)

    def readinto(self, b: bytearray | memoryview) -> int:
        # isal's and zlib-ng's gzip readers fill their buffers with readinto
        if not self.head and hasattr(self.f, "readinto"):
            return self.f.readinto(b)
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True
