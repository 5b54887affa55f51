"""The one client of the shim protocol (berth.shim.protocol): nothing else opens a shim socket.

``ShimClient`` speaks to a running shim's socket (blocking calls for worker threads, and two
asyncio openers for the streams the API hands to its clients); ``EventChannel`` reads the start
result and the exit of a container from the socket pair its start made (or from a subscription
after a daemon restart)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Callable

from berth.errors import FailedPrecondition, SystemError_
from berth.shim import protocol as p


class ShimGone(FailedPrecondition):
    """The shim's socket is not there (any more): the container is not running."""


def _check(reply: dict | None, what: str) -> dict:
    if reply is None:
        raise ShimGone(f"{what}: the container's shim went away")
    if reply.get("ok") is False:
        raise p.error_of(reply.get("kind"), reply.get("error") or f"{what} failed")
    return reply


def _read_line(sock: socket.socket, buf: bytearray) -> dict | None:
    """The next JSON line from a blocking socket (buf keeps what follows it); None at EOF."""
    while b"\n" not in buf:
        d = sock.recv(65536)
        if not d:
            return None
        buf += d
    i = buf.index(b"\n")
    line = bytes(buf[:i])
    del buf[:i + 1]
    return json.loads(line) if line.strip() else None


def spawn_hosted(path: str, params: dict, events_fd: int, timeout: float = 10.0) -> bool:
    """Hand a container over to the shim of its pod (berth.shim.shim.Host) on that shim's host
    socket: its parameters and its events channel, then "go" once the shim said "ok". False
    when the shim is not there or did not answer: nothing was handed over, and the caller forks
    a shim of its own. After "go" the container is that shim's (its start result comes on the
    events channel, as from a shim of its own)."""
    import array
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendmsg([json.dumps(params).encode()],
                  [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [events_fd]))])
        if s.recv(16) != b"ok":
            return False
        s.sendall(b"go")
        return True
    except OSError:
        return False
    finally:
        s.close()


class ShimClient:
    def __init__(self, path: str):
        self.path = path

    def _connect(self, timeout: float | None) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        s.settimeout(timeout)
        try:
            s.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            raise ShimGone("the container is not running") from None
        except OSError:
            s.close()
            raise
        return s

    def call(self, req: p.Request, timeout: float | None = 10.0) -> dict:
        """One request, one reply line; errors raised as their kind."""
        s = self._connect(timeout)
        try:
            try:  # a shim exiting meanwhile (its container's own exit) may close before it reads
                s.sendall(req.encode())
                reply = _read_line(s, bytearray())
            except (ConnectionResetError, BrokenPipeError):
                reply = None
        finally:
            s.close()
        return _check(reply, req.op)

    # --- verbs ---

    def start(self) -> None:
        self.call(p.Start(), timeout=120)

    def kill(self, signal: int, all: bool = False) -> None:
        self.call(p.Kill(signal=signal, all=all))

    def pause(self) -> None:
        self.call(p.Pause(), timeout=60)

    def resume(self) -> None:
        self.call(p.Resume(), timeout=60)

    def state(self) -> p.ShimState:
        return p.from_dict(p.ShimState, self.call(p.State()))

    def stats(self) -> p.StatsReply:
        return p.from_dict(p.StatsReply, self.call(p.Stats()))

    def resize(self, h: int, w: int, exec_id: str = "") -> None:
        self.call(p.Resize(h=h, w=w, exec_id=exec_id))

    def exec_state(self, exec_id: str) -> p.ExecStatus:
        return p.from_dict(p.ExecStatus, self.call(p.ExecState(exec_id=exec_id)))

    def wait(self) -> p.ExitEvent:
        """Block until the container has exited (and its output is drained)."""
        return self.subscribe().next_exit()

    def subscribe(self, ack: bool = False) -> "EventChannel":
        """The events of the container's run; ack: the caller acknowledges its exit
        (EventChannel.ack, which wait_closed does)."""
        s = self._connect(None)
        try:
            s.sendall(p.Subscribe(ack=ack).encode())
        except OSError:
            s.close()
            raise ShimGone("the container is not running") from None
        return EventChannel(s)

    # --- streams ---

    def open(self, req: p.Request, timeout: float | None = 30.0) -> tuple[socket.socket, dict]:
        """(connected socket, reply) of a request whose connection then carries a byte stream
        (attach, exec); the reply's error raised as its kind. The socket is blocking, with no
        timeout, and holds no bytes of the stream yet (the reply is read byte by byte)."""
        s = self._connect(timeout)
        try:
            line = bytearray()
            try:  # a shim exiting meanwhile (its container's own exit) may close before it reads
                s.sendall(req.encode())
                while not line.endswith(b"\n"):
                    b = s.recv(1)
                    if not b:
                        break
                    line += b
            except (ConnectionResetError, BrokenPipeError):
                line = bytearray()
            reply = _check(json.loads(line) if line.strip() else None, req.op)
        except BaseException:
            s.close()
            raise
        s.settimeout(None)
        return s, reply

    # --- streams (asyncio) ---

    async def open_stream(self, req: p.Request):
        """(reader, writer, reply) of a request whose connection then carries a byte stream
        (attach, exec); the reply's error raised as its kind."""
        try:
            reader, writer = await asyncio.open_unix_connection(self.path, limit=1 << 20)
        except (FileNotFoundError, ConnectionRefusedError):
            raise ShimGone("the container is not running") from None
        try:
            try:  # as open()'s: a shim exiting meanwhile
                writer.write(req.encode())
                await writer.drain()
                line = await reader.readline()
            except (ConnectionResetError, BrokenPipeError):
                line = b""
            reply = _check(json.loads(line) if line.strip() else None, req.op)
        except BaseException:
            writer.close()
            raise
        return reader, writer, reply


class EventChannel:
    """The events of one run of a container: its start result, then its exit. A channel berthd
    made for a start (the shim's exit_ack parameter) or subscribed to with ack also carries
    berthd's word that the exit is recorded (ack): the shim's cleanup waits for it."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()
        self.acked = False

    def ack(self) -> None:
        """The exit is recorded (or not needed): the shim goes on with its cleanup. Once."""
        if self.acked:
            return
        self.acked = True
        try:
            self.sock.settimeout(1.0)
            self.sock.sendall(b'{"event": "exit_recorded"}\n')
        except OSError:
            pass  # the shim is gone, or an older one that closed the channel

    def fileno(self) -> int:
        return self.sock.fileno()

    def _next(self, timeout: float | None) -> dict | None:
        self.sock.settimeout(timeout)
        try:
            return _read_line(self.sock, self.buf)
        except socket.timeout:
            raise
        except (OSError, ValueError):
            return None

    def start_result(self, timeout: float = 60.0) -> p.StartResult:
        try:
            ev = self._next(timeout)
        except socket.timeout:
            raise SystemError_("the container's shim did not start in time") from None
        if ev is None:
            return p.StartResult(ok=False, kind="SystemError", error="the container's shim died before it started")
        return p.from_dict(p.StartResult, ev)

    def next_exit(self, on_exec: Callable[[p.ExecExit], None] | None = None) -> p.ExitEvent | None:
        """Block until the exit event; None when the shim went without one (killed). The ends of
        the container's execs that come before it go to on_exec."""
        while True:
            ev = self._next(None)
            if ev is None:
                return None
            if ev.get("event") == "exec_exit":
                if on_exec is not None:
                    on_exec(p.from_dict(p.ExecExit, ev))
                continue
            if ev.get("event") == "exit" or "exit_code" in ev:
                return p.from_dict(p.ExitEvent, ev)

    def wait_closed(self, timeout: float) -> bool:
        """After the exit: block until the shim closes the channel (it has deleted the run's
        runtime state then), up to timeout s; False when it did not. Its cleanup waits for the
        exit's acknowledgement: given first."""
        self.ack()
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                if not self.sock.recv(4096):
                    return True
        except socket.timeout:
            return False
        except OSError:
            return True  # reset, or closed here: nothing more comes from it

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
