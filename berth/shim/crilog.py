"""The Kubernetes CRI log format, written by the shim for containers the CRI created.

One line per record: `<RFC3339Nano time> <stdout|stderr> <F|P> <content>\n`; F ends a line of
the container's output, P is a part of a longer one (the rest follows in later records), as
kubelet's reader (and `crictl logs`) expect. The file is the path the kubelet chose
(PodSandboxConfig.log_directory + ContainerConfig.log_path); reopen() follows a rotation by the
kubelet (ReopenContainerLog: it renames the file, then asks for a new one).
"""

from __future__ import annotations

import os

from berth.gotime import rfc3339nano as _now

TYPE_CHECKING = False  # no typing at run time: the shim imports this
if TYPE_CHECKING:
    from typing import BinaryIO

MAX_LINE = 16 * 1024  # a longer line is cut into P records of this size, as containerd's


class CRILog:
    """The JSONLog interface of the shim (write, flush, f) in the CRI format."""

    def __init__(self, path: str, max_size: int = 0, max_file: int = 1) -> None:
        self.path = path
        self.partial: dict[str, bytes] = {}  # stream -> the start of a line not ended yet
        self.f: BinaryIO = None  # type: ignore[assignment]  # opened by reopen() below
        self.reopen()

    def reopen(self) -> None:
        if self.f is not None:
            self.f.close()
        d = os.path.dirname(self.path)
        if d:
            os.makedirs(d, exist_ok=True)
        self.f = open(self.path, "ab")  # noqa: SIM115 (the shim closes it at its end)

    def write(self, stream: str, data: bytes) -> None:
        lines = (self.partial.pop(stream, b"") + data).split(b"\n")
        rest = lines.pop()
        out = []
        for line in lines:
            while len(line) > MAX_LINE:
                out.append(self._record(stream, b"P", line[:MAX_LINE]))
                line = line[MAX_LINE:]
            out.append(self._record(stream, b"F", line))
        while len(rest) >= MAX_LINE:
            out.append(self._record(stream, b"P", rest[:MAX_LINE]))
            rest = rest[MAX_LINE:]
        if rest:
            self.partial[stream] = rest
        if out:
            self.f.write(b"".join(out))
            self.f.flush()

    def flush(self, stream: str | None = None) -> None:
        """At the end of a stream: what is left of an unfinished line goes as a part (P), as
        containerd writes it."""
        out = []
        for s in [stream] if stream else list(self.partial):
            rest = self.partial.pop(s, b"")
            if rest:
                out.append(self._record(s, b"P", rest))
        if out:
            self.f.write(b"".join(out))
            self.f.flush()

    @staticmethod
    def _record(stream: str, tag: bytes, content: bytes) -> bytes:
        return _now().encode() + b" " + stream.encode() + b" " + tag + b" " + content + b"\n"
