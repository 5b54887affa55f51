"""The container monitor (shim): creates and starts a container with the runtime library (or
another OCI runtime binary), owns its stdio, writes the json-file log, serves attach/wait/
kill/resize on its own socket, reaps the init and records the exit status on disk.

A shim process (Host) is forked from the zygote for a container. A pod's sandbox's shim also
takes the pod's containers, handed over by berthd on its host socket (one monitor process per
pod, as containerd's shim per pod): each container keeps its own Shim, socket, log and events
channel; the process serves them in one loop and ends with the last of them.

It is not a child of berthd (forked from the zygote, then re-parented), so containers keep
running when berthd stops; berthd finds them again through each container's socket and
exit.json.

The protocol (requests, replies, events, error kinds) is berth.shim.protocol; berthd's side
of it is berth.shim.client. The start result and the exit go out on the events channel berthd
handed over at the fork (and to `subscribe` requests); exit.json stays on disk as the record a
restarted berthd reads.
"""

from __future__ import annotations

import _signal
import _socket
import errno
import json
import os
import select
import socket
import struct
import sys
import time

from berth import fastjson
from berth.goquote import marshal
from berth.gotime import rfc3339nano as _now_rfc3339
from berth.linux import syscalls as sc
from berth.runtime import cgroups as cgroups_lib  # imported by the zygote too
from berth.runtime import container as runtime_lib  # imported by the zygote: bound here, no import at a start
from berth.shim import protocol as proto

TYPE_CHECKING = False  # no typing at run time: the shim is kept small
if TYPE_CHECKING:  # names for the annotations only
    from typing import Any, Callable, NoReturn

    from berth.runtime.oci import OCIRuntime
    from berth.shim.crilog import CRILog

    Params = dict[str, Any]  # the shim's parameters from berthd (decoded JSON)


MAX_EXEC_RECORDS = 256  # finished execs whose exit code the shim still answers for (exec_state)
# A client's output is written without blocking: what its socket does not take waits in its
# buffer. Past CLIENT_HIGH the output feeding it (the container's, an exec's) is not read until
# the buffer is down to CLIENT_LOW: the process feels a slow reader as a full pipe, for as long
# as the client stays (as under dockerd), and the shim goes on serving everyone else. When the
# container has exited, what still waits gets LAST_WORDS seconds to go (without progress).
CLIENT_HIGH = 1 << 20
CLIENT_LOW = 256 << 10
LAST_WORDS = 5.0
# After telling the exit to a berthd that acknowledges exits (its events channel says so), the
# shim's cleanup (the runtime's delete, its records) waits for berthd's word that the exit is
# recorded ("exit_recorded"), for the channel's end (berthd gone) or for EXIT_ACK_WAIT seconds.
EXIT_ACK_WAIT = 5.0


class JSONLog:
    """docker's json-file log driver: one JSON object per line, size-based rotation."""

    def __init__(self, path: str, max_size: int = 0, max_file: int = 1, attrs: dict[str, str] | None = None) -> None:
        self.path = path
        self.max_size = max_size
        self.max_file = max(1, max_file)
        self.attrs = attrs or None  # each entry's "attrs" (the labels and env of the labels/env log options)
        self.f = open(path, "ab")
        self.size = self.f.tell()
        self.partial: dict[str, bytes] = {}  # stream -> the start of a line not ended yet

    def write(self, stream: str, data: bytes) -> None:
        """One entry per line, as docker's log copier: a line without its newline waits for the
        rest (up to 16 KiB), or for flush() at the stream's end."""
        lines = (self.partial.pop(stream, b"") + data).split(b"\n")
        rest = lines.pop()
        for line in lines:
            self._entry(stream, line + b"\n")
        if len(rest) >= 16384:
            self._entry(stream, rest)
        elif rest:
            self.partial[stream] = rest

    def flush(self, stream: str | None = None) -> None:
        for s in [stream] if stream else list(self.partial):
            rest = self.partial.pop(s, b"")
            if rest:
                self._entry(s, rest)

    def _entry(self, stream: str, data: bytes) -> None:
        entry = {"log": data.decode("utf-8", errors="replace"), "stream": stream}
        if self.attrs:
            entry["attrs"] = self.attrs
        entry["time"] = _now_rfc3339()
        line = marshal(entry).encode() + b"\n"  # dockerd's bytes
        if self.max_size and self.size >= self.max_size:  # dockerd's: a file reaches max-size, then rotates
            self.rotate()
        self.f.write(line)
        self.f.flush()
        self.size += len(line)

    def rotate(self) -> None:
        self.f.close()
        if self.max_file > 1:
            for i in range(self.max_file - 1, 0, -1):
                src = self.path if i == 1 else f"{self.path}.{i - 1}"
                if os.path.exists(src):
                    os.replace(src, f"{self.path}.{i}")
            self.f = open(self.path, "wb")
        else:
            self.f = open(self.path, "wb")
        self.size = 0


class _Poller:
    """The part of selectors' interface the shim uses, straight on epoll: the selectors module's
    Python layer (keys, mappings, namedtuples) touches many more of the objects the shim shares
    with the zygote on every call, and each one touched costs the shim a private copy of its page.

    An fd has a reader's data (register) and may have a writer's (want_write: a process's stdin
    that took less than it was given); reading it can be held back (hold/release: a client whose
    input waits for a process to read its stdin): a held fd stays in the set for its hang-up only
    (a client gone for good is read out and dropped, even while held). select() answers the data
    of each side that is ready."""

    def __init__(self) -> None:
        self.ep = select.epoll()
        self.data: dict[int, tuple[str, Any]] = {}  # fd -> data, when readable
        self.wdata: dict[int, tuple[str, Any]] = {}  # fd -> data, when writable
        self.held: set[int] = set()  # fds not read for now
        self.masks: dict[int, int] = {}  # fd -> the events epoll watches

    def _apply(self, fd: int) -> None:
        mask = (select.EPOLLIN if fd in self.data and fd not in self.held else 0) | \
            (select.EPOLLOUT if fd in self.wdata else 0)
        old = self.masks.get(fd)
        if mask == old:
            return
        try:
            if not mask and fd not in self.data:  # not even HUP/ERR (epoll reports them always)
                if old is not None:
                    del self.masks[fd]
                    self.ep.unregister(fd)
            elif old is None:
                self.ep.register(fd, mask)
                self.masks[fd] = mask
            else:
                try:
                    self.ep.modify(fd, mask)
                except FileNotFoundError:  # closed and its number used again: a new file
                    self.ep.register(fd, mask)
                self.masks[fd] = mask
        except OSError:
            self.masks.pop(fd, None)

    def register(self, fileobj: int | _socket.socket, data: tuple[str, Any]) -> None:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        self.data[fd] = data
        self._apply(fd)

    def unregister(self, fileobj: int | _socket.socket) -> None:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        if fd not in self.data:
            raise KeyError(fd)  # as selectors
        self.forget(fd)

    def stop_reading(self, fileobj: int | _socket.socket) -> None:
        """Not read any more; a writer's side, if any, stays."""
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        self.data.pop(fd, None)
        self.held.discard(fd)
        self._apply(fd)

    def forget(self, fd: int) -> None:
        """Out of the set, both sides (before the fd is closed: its number may come back)."""
        self.data.pop(fd, None)
        self.wdata.pop(fd, None)
        self.held.discard(fd)
        self._apply(fd)

    def want_write(self, fd: int, data: tuple[str, Any]) -> None:
        self.wdata[fd] = data
        self._apply(fd)

    def done_writing(self, fd: int) -> None:
        if self.wdata.pop(fd, None) is not None:
            self._apply(fd)

    def hold(self, fileobj: int | _socket.socket) -> None:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        self.held.add(fd)
        self._apply(fd)

    def release(self, fileobj: int | _socket.socket) -> None:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        self.held.discard(fd)
        self._apply(fd)

    def select(self, timeout: float | None = None) -> list[tuple[str, Any]]:
        try:
            events = self.ep.poll(-1 if timeout is None else timeout)
        except InterruptedError:
            return []
        data, wdata, out = self.data, self.wdata, []
        for fd, ev in events:
            if ev & select.EPOLLOUT or (ev & (select.EPOLLERR | select.EPOLLHUP) and fd not in data):
                if fd in wdata:
                    out.append(wdata[fd])
            if ev & ~select.EPOLLOUT and fd in data and (fd not in self.held or
                                                         ev & (select.EPOLLHUP | select.EPOLLERR)):
                out.append(data[fd])
        return out


class _InstanceSel:
    """One container's view of its host's poller: what it registers comes back tagged with it."""

    def __init__(self, sel: _Poller, inst: Shim) -> None:
        self.sel = sel
        self.inst = inst

    def register(self, fileobj: int | _socket.socket, data: tuple[str, Any]) -> None:
        self.sel.register(fileobj, (self.inst, data))  # type: ignore[arg-type]

    def want_write(self, fd: int, data: tuple[str, Any]) -> None:
        self.sel.want_write(fd, (self.inst, data))  # type: ignore[arg-type]

    def unregister(self, fileobj: int | _socket.socket) -> None:
        self.sel.unregister(fileobj)

    def stop_reading(self, fileobj: int | _socket.socket) -> None:
        self.sel.stop_reading(fileobj)

    def forget(self, fd: int) -> None:
        self.sel.forget(fd)

    def done_writing(self, fd: int) -> None:
        self.sel.done_writing(fd)

    def hold(self, fileobj: int | _socket.socket) -> None:
        self.sel.hold(fileobj)

    def release(self, fileobj: int | _socket.socket) -> None:
        self.sel.release(fileobj)


class _Stdin:
    """A process's stdin (a pipe or a pty master), written without blocking: what it does not take
    now waits here, and the clients feeding it are not read while more than STDIN_HIGH waits
    (their senders feel it as a full socket), until it is down to STDIN_LOW."""

    def __init__(self, fd: int, close_fd: bool = True) -> None:
        self.fd = fd
        self.close_fd = close_fd  # a pty master is the output's too: not ours to close
        self.buf = bytearray()
        self.held: list[Client] = []  # client sockets not read until the buffer drains
        self.closing = False  # close once what waits is written (the client's end of input)
        self.closed = False
        os.set_blocking(fd, False)


STDIN_HIGH = 256 * 1024
STDIN_LOW = 64 * 1024


class Exec:
    def __init__(self, exec_id: str, tty: bool, stdin: bool) -> None:
        self.id = exec_id
        self.tty = tty
        self.stdin = stdin
        self.pid = 0
        self.exit_code: int | None = None
        self.fds: dict[int, str] = {}  # fd -> stream
        self.stdin_w: _Stdin | None = None  # a _Stdin
        self.master: int | None = None
        self.client: Client | None = None
        self.told = False  # its exit went to berthd's events channel


class Client:
    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.out = bytearray()  # written to it when its socket has room (_send, _flush)
        self.closing = False  # let go once out is written
        self.sources: list[int] = []  # output fds not read while out is over CLIENT_HIGH
        self.buf = b""
        self.mode: str | None = None  # None (reading the request), "attach", "wait", "exec"
        self.exec: Exec | None = None
        self.want: set[str] = set()
        self.stdin = False
        self.close_stdin = True  # an attach: its end of input closes the container's stdin
        self.acks = False  # an events channel whose berthd says when it has recorded the exit


class Shim:
    """One container's monitor, in a Host process (its own, or its pod's)."""

    def __init__(self, p: Params, host: Host | None = None) -> None:
        self.p = p
        self.host = host  # None: a shim process of its own (serve(), run())
        self.id = p["id"]
        self.state_dir = p["state_dir"]
        self.tty = bool(p.get("tty"))
        self.sel: _Poller | _InstanceSel = _InstanceSel(host.sel, self) if host is not None else _Poller()
        self.listener: _socket.socket | None = None
        self.attach_deadline: float | None = None
        self.drain_deadline: float | None = None
        self.clients: list[Client] = []
        self.exit_code: int | None = None
        self.finished_at: str | None = None
        self.oom_killed = False
        self.exit_file_pending = False  # exit.json written once the exit is told (_exited)
        self.ack_deadline: float | None = None  # told; the cleanup waits for berthd's record until then
        self.acked = False  # berthd has recorded the exit: exit.json is not needed
        self.told_channels: list[Client] = []
        self.init_pid = 0
        self.mnt_ns: int | None = None  # an fd of the init's mount namespace, until its exit is told
        self.stdin_w: _Stdin | None = None  # a _Stdin, when the container has one
        self.master: int | None = None
        self.outputs: dict[int, str] = {}  # fd -> stream name
        self.started = False
        self.paused = False
        self.events: Client | None = None  # the Client of berthd's events channel
        self.announced = False  # the start result went out
        self.execs: dict[str, Exec] = {}  # exec id -> Exec
        self.source_holds: dict[int, int] = {}  # output fd -> how many clients hold it
        self.proxies: Any = None  # the ports it forwards (berth.shim.portproxy), from open() to the exit
        log: type[JSONLog] | type[CRILog] = JSONLog
        if p.get("log_format") == "cri":  # a container of the Kubernetes CRI: kubelet's log format
            from berth.shim.crilog import CRILog as log
        if log is JSONLog:
            self.log = JSONLog(p["log_path"], int(p.get("log_max_size") or 0), int(p.get("log_max_file") or 1),
                               p.get("log_attrs"))
        else:
            self.log = log(p["log_path"], int(p.get("log_max_size") or 0), int(p.get("log_max_file") or 1))

    # --- setup ---

    def start_container(self) -> None:
        self.outputs, stdin_w, proxy, console = _child_stdio(self.tty, self.p.get("open_stdin"))
        # no attach to wait for and a light start: the helper that creates the container releases
        # it too (no start to do here later: neither a second helper nor the in-place start's
        # ~100 KB of private pages in a long-lived shim)
        start_now = not self.p.get("wait_attach") and self.p.get("start_in_place")

        def create() -> int:  # (a runtime binary's create tells the pid in a file)
            pid = self.runtime().create(self.id, self.p["bundle"], os.path.join(self.state_dir, "init.pid"), console)
            if start_now:
                runtime_lib.release(self.p["runtime_root"], self.id, pid)
            return pid
        pidns = self.p.get("create_direct")  # berthd's: this runtime library's, and a spec it can take
        try:
            if pidns is not None:
                # no helper: the init, forked here into its PID namespace, creates itself (one
                # process and its copied pages fewer a container; this shim stays as small), and
                # its pid is answered here: no pid file
                self.init_pid = runtime_lib.create_forked(self.p["runtime_root"], self.id, self.p["bundle"], pidns,
                                                          console)
                if start_now:
                    runtime_lib.release(self.p["runtime_root"], self.id, self.init_pid)
            else:
                self.init_pid = _in_child(create)  # type: ignore[assignment]  # create() answers the pid
        finally:
            _null_stdio()
            if console is not None:
                console.close()
        self._hold_mnt_ns()
        self.started = bool(start_now)
        if proxy is not None:
            self.master = _receive_master(proxy)
            self.outputs[self.master] = "stdout"
            stdin_w = self.master if self.p.get("open_stdin") else None
        if stdin_w is not None:
            self.stdin_w = _Stdin(stdin_w, close_fd=stdin_w != self.master)

    def _hold_mnt_ns(self) -> None:
        """Hold the created init's mount namespace until its exit is told (_finish). The last
        process of a mount namespace tears it down on its way out, before its parent hears of
        its end: every mount of the container unmounted and an RCU grace period waited for
        (a stop's kill to the shim's SIGCHLD: 0.4-1.1 ms; 0.2-0.4 with the namespace held).
        Held here, the teardown comes when we let go, after berthd has the exit."""
        try:
            fd = os.open(f"/proc/{self.init_pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            if os.fstat(fd).st_ino != os.stat("/proc/self/ns/mnt").st_ino:  # a namespace of its own
                self.mnt_ns, fd = fd, -1
        except OSError:
            pass
        if fd >= 0:
            os.close(fd)

    def _release_mnt_ns(self) -> None:
        if self.mnt_ns is not None:
            os.close(self.mnt_ns)
            self.mnt_ns = None

    def runtime(self) -> OCIRuntime:
        """The container's OCI runtime (berth.runtime.oci), made where it is used: in the
        short-lived children of _in_child, so its objects never weigh on the long-lived shim."""
        from berth.runtime import oci
        return oci.from_params(self.p)

    def start_process(self) -> None:
        """Release the created container (after the first attach when one is expected)."""
        if self.started:
            return
        self.started = True
        if not self.announced:
            self._start()  # a failure is the start's result (run())
            return
        try:  # berthd's start op (after the attach): a failure kills the created init
            self._start()
        except ChildError as e:
            with open(os.path.join(self.state_dir, "start-error"), "w") as f:
                f.write(e.message)
            try:
                os.kill(self.init_pid, _signal.SIGKILL)
            except OSError:
                pass
            raise

    def _start(self) -> None:
        """The runtime's start: in place when berthd says it is light (the library's, for a spec
        without poststart hooks: the init released through its exec fifo with os calls, no
        helper process on the path, no runtime object here), else in a helper child."""
        if not self.p.get("start_in_place"):
            _in_child(lambda: self.runtime().start(self.id))
            return
        try:
            runtime_lib.release(self.p["runtime_root"], self.id, self.init_pid)
        except BaseException as e:
            raise ChildError(_kind(e), _message(e)) from None

    # --- the loop ---

    def open(self) -> None:
        """Its socket and outputs in the host's loop; its start unless an attach or berthd's
        release is to come; the start result to berthd."""
        path = self.p.get("socket") or os.path.join(self.state_dir, "shim.sock")
        d = path.rpartition("/")[0]
        try:
            os.mkdir(d)
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(d, exist_ok=True)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        # _socket, not socket: the latter's accept() builds its wrapper and converts family and
        # type to enums, touching many inherited objects (each a private page)
        self.listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.sel.register(self.listener, ("listen", None))
        if self.p.get("proxies"):  # ports published on [::] (opened after the init's fork: not its)
            from berth.shim import portproxy
            self.proxies = portproxy.Proxies(self.sel, self.p["proxies"])
        for fd in self.outputs:
            self.sel.register(fd, ("output", fd))
        # with an attach to come, berthd's start op releases the process (30 s at most); held
        # (created ahead of its start: berthd's prelaunch), berthd releases it, whenever it does
        waiting = bool(self.p.get("wait_attach"))
        self.attach_deadline = time.monotonic() + 30 if waiting and not self.p.get("hold") else None
        if not waiting:
            self.start_process()  # its failure: the start result says it (Host.add)
        self._write_state("running")
        self._start_events()

    def tick(self, now: float) -> tuple[bool, float | None]:
        """Between two rounds of the host's loop: (whether it is done, the longest the loop may
        wait for it). Done: exited, and its output drained (2 s at most); or, once the exit is
        told, berthd's record of it awaited (_finish goes on)."""
        if self.ack_deadline is not None:
            if self._ack_settled(now):
                return True, None
            return False, max(0.0, self.ack_deadline - now)
        if not self.started and self.attach_deadline is not None and now > self.attach_deadline:
            try:
                self.start_process()  # berthd never said start
            except ChildError:
                pass
        if self.exit_code is not None:
            if not self.outputs or (self.drain_deadline and now > self.drain_deadline):
                return True, None
            if self.drain_deadline is None:
                self.drain_deadline = now + 2.0
        if self.exit_code is not None or (not self.started and self.attach_deadline is not None):
            return False, 0.2
        return False, None

    def serve(self) -> None:
        """The loop of a shim process of its own (a container that is not a pod's). Host.loop
        does the same for several; this one stays apart, and close to the fewest code objects a
        shim runs: each one a shim runs is a page or two of the zygote's it copies (Python 3.11
        writes to a code object when it runs it), ~90 KB per shim for the Host's loop."""
        self.sigr, sigw = os.pipe()
        os.set_blocking(self.sigr, False)
        os.set_blocking(sigw, False)
        # _signal, not signal: the latter's enum wrappers would touch the enum machinery
        _signal.set_wakeup_fd(sigw)
        _signal.signal(_signal.SIGCHLD, _ignore)
        self.sel.register(self.sigr, ("signal", None))
        self.open()
        self.reap()
        while True:
            if not self.started and self.attach_deadline is not None and time.monotonic() > self.attach_deadline:
                try:
                    self.start_process()  # berthd never said start
                except ChildError:
                    pass
            if self.exit_code is not None:
                if not self.outputs or (self.drain_deadline and time.monotonic() > self.drain_deadline):
                    break
                if self.drain_deadline is None:
                    self.drain_deadline = time.monotonic() + 2.0
            timeout = 0.2 if self.exit_code is not None or (not self.started and self.attach_deadline is not None) else None
            for kind, data in self.sel.select(timeout):  # type: ignore[union-attr]
                try:
                    self._dispatch(kind, data)
                except Exception as e:  # a client's mistake must not take the container down
                    try:
                        with open(os.path.join(self.state_dir, "shim-warnings"), "a") as f:
                            f.write(f"{type(e).__name__}: {e}\n")
                    except OSError:
                        pass
        while not self._finish():  # told: until berthd's record of it (or EXIT_ACK_WAIT)
            for kind, data in self.sel.select(max(0.0, self.ack_deadline - time.monotonic())):  # type: ignore[operator,union-attr]  # set by _finish
                self._dispatch(kind, data)

    def _start_events(self) -> None:
        """The events channel berthd handed over: the start result now, the exit at the end."""
        self.announced = True
        fd = self.p.get("events_fd")
        if fd is None:
            return
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)
        sock.setblocking(False)
        c = Client(sock)
        c.mode = "events"
        c.acks = bool(self.p.get("exit_ack"))
        self.clients.append(c)
        self.sel.register(sock, ("client", c))
        self._send(c, fastjson.dumps(proto.start_event(self.init_pid)).encode() + b"\n")
        if c in self.clients:
            self.events = c

    def _dispatch(self, kind: str, data: Any) -> None:
        if kind == "listen":
            self._accept()
        elif kind == "output":
            self._output(data)
        elif kind == "signal":  # a shim of its own (serve())
            try:
                os.read(self.sigr, 4096)
            except OSError:
                pass
            self.reap()
        elif kind == "client":
            self._client_readable(data)
        elif kind == "exec_output":
            self._exec_output(*data)
        elif kind == "stdin":
            self._write_stdin(data)
        elif kind == "client_out":
            self._flush(data)
        elif kind == "proxy":  # a forwarded port's socket (berth.shim.portproxy)
            data()

    def reap(self) -> None:
        if self.host is not None:
            self.host.reap()
            return
        while True:  # Host.reap's, for a shim of its own (see serve())
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                if self.exit_code is None and self.init_pid and not _alive(self.init_pid):
                    self._exited(255)
                return
            if pid == 0:
                return
            code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            if pid == self.init_pid:
                self._exited(code)
            for ex in self.execs.values():
                if ex.pid == pid and ex.exit_code is None:
                    ex.exit_code = code
                    self._exec_maybe_done(ex)

    def child_exited(self, pid: int, code: int) -> None:
        """A child of the host ended: its init's or an exec's end, if it was one of them."""
        if pid == self.init_pid and self.exit_code is None:
            self._exited(code)
        for ex in self.execs.values():
            if ex.pid == pid and ex.exit_code is None:
                ex.exit_code = code
                self._exec_maybe_done(ex)

    def check_gone(self) -> None:
        """The host has no child left: an init that is gone without being reaped by it is gone."""
        if self.exit_code is None and self.init_pid and not _alive(self.init_pid):
            self._exited(255)

    def _exited(self, code: int) -> None:
        self.exit_code = code
        self._close_proxies()  # its ports are free for the next run (or another container) at once
        for c in self.clients:  # what the process left is read out to the log, whoever is slow
            self._release_sources(c)
        self.finished_at = _now_rfc3339()
        # an OOM kill in its cgroup (read before the runtime's delete removes the cgroup): docker's
        # OOMKilled, the CRI's reason
        self.oom_killed = bool(self.p.get("oom_file")) and cgroups_lib.oom_kills(self.p["oom_file"]) > 0
        # the record a berthd that was not there to be told reads (monitor._recorded_exit): written
        # now, unless berthd is listening and the exit is told at once (its output has ended with
        # it): then right after the telling (_finish), which it does not wait for
        self.exit_file_pending = self.events is not None and not self.outputs
        if not self.exit_file_pending:
            self._write_exit_file()

    def _write_exit_file(self) -> None:
        self.exit_file_pending = False
        tmp = os.path.join(self.state_dir, ".exit.json")
        # synced only when berthd is not listening: else it records the exit it is told (and
        # syncs its store), and this file is read only after a crash of berthd, not of the host
        _write_file(tmp, fastjson.dumps({"exit_code": self.exit_code, "finished_at": self.finished_at,
                                         "pid": self.init_pid, "oom_killed": self.oom_killed}),
                    sync=self.events is None)
        os.rename(tmp, os.path.join(self.state_dir, "exit.json"))

    def _output(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: the pty's last slave closed
                raise
            data = b""
        if not data:
            self.log.flush(self.outputs[fd])
            self.sel.unregister(fd)
            self._source_gone(fd)
            del self.outputs[fd]
            if fd != self.master:
                os.close(fd)
            return
        stream = self.outputs[fd]
        self.log.write(stream, data)
        frame = data if self.tty else struct.pack(">BxxxI", 1 if stream == "stdout" else 2, len(data)) + data
        for c in list(self.clients):
            if c.mode == "attach" and stream in c.want:
                self._send(c, frame)

    def _send(self, c: Client, data: bytes) -> None:
        """data to the client without blocking: what its socket does not take now waits in its
        buffer, written as the socket has room (_flush)."""
        if c not in self.clients or c.closing:
            return
        if not c.out:
            try:
                n = c.sock.send(data)
            except BlockingIOError:
                n = 0
            except OSError:  # gone
                self._drop(c, flush=False)
                return
            if n == len(data):
                return
            c.out += data[n:]
            self.sel.want_write(c.fd, ("client_out", c))
        else:
            c.out += data
        if len(c.out) > CLIENT_HIGH and not c.sources:
            self._hold_sources(c)

    def _flush(self, c: Client) -> None:
        """The client's socket has room: what waits for it goes."""
        if c not in self.clients:
            return
        while c.out:
            try:
                n = c.sock.send(c.out[:262144])
            except BlockingIOError:
                break
            except OSError:
                self._drop(c, flush=False)
                return
            del c.out[:n]
        if not c.out:
            self.sel.done_writing(c.fd)
            if c.closing:
                self._drop(c, flush=False)
                return
        if len(c.out) <= CLIENT_LOW:
            self._release_sources(c)

    def _hold_sources(self, c: Client) -> None:
        """Back-pressure: the output that feeds the client is not read until it catches up. Not
        once the container has exited: what it left is read out to the log."""
        if self.exit_code is not None:
            return
        if c.mode == "attach":
            fds = list(self.outputs)
        elif c.mode == "exec" and c.exec is not None:
            fds = list(c.exec.fds)
        else:
            return
        for fd in fds:
            n = self.source_holds.get(fd, 0)
            self.source_holds[fd] = n + 1
            if not n:
                self.sel.hold(fd)
        c.sources = fds

    def _release_sources(self, c: Client) -> None:
        fds, c.sources = c.sources, []
        for fd in fds:
            n = self.source_holds.get(fd, 0) - 1
            if n > 0:
                self.source_holds[fd] = n
                continue
            if self.source_holds.pop(fd, None) is not None:
                self.sel.release(fd)

    def _source_gone(self, fd: int) -> None:
        """An output fd reached its end (it is closed next): no hold of it remains."""
        if self.source_holds.pop(fd, None) is not None:
            for c in self.clients:
                if fd in c.sources:
                    c.sources.remove(fd)

    def _accept(self) -> None:
        try:
            fd, _ = self.listener._accept()  # type: ignore[union-attr]  # _socket's own; set while it is served
        except BlockingIOError:
            return
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)
        sock.setblocking(False)
        c = Client(sock)
        self.clients.append(c)
        self.sel.register(sock, ("client", c))

    def _drop(self, c: Client, flush: bool = True) -> None:
        """The client goes; with flush, once what waits for it is written."""
        if c not in self.clients:
            return
        if flush and c.out:
            if not c.closing:
                c.closing = True  # nothing more is sent to it, nor read from it
                self.sel.stop_reading(c.fd)
                self._release_sources(c)
            return
        self.clients.remove(c)
        self._release_sources(c)
        self.sel.forget(c.fd)
        c.sock.close()

    def _client_readable(self, c: Client) -> None:
        if c not in self.clients or c.closing:
            return  # dropped (or being let go) by an earlier event of the same select() round
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if c.mode is None:
            if not data:
                self._drop(c)
                return
            c.buf += data
            if b"\n" not in c.buf:
                return
            line, rest = c.buf.split(b"\n", 1)
            c.buf = b""
            try:
                req = fastjson.loads(line.decode(errors="replace"))
            except ValueError:
                self._drop(c)
                return
            self._request(c, req)
            if rest and c.mode == "attach":
                self._stdin(c, rest)
            return
        if c.mode == "exec":
            ex: Exec = c.exec  # type: ignore[assignment]  # set with the mode
            if not data:
                if ex.stdin_w is not None and ex.stdin_w.close_fd:
                    self._close_stdin(ex.stdin_w)  # once what waits for it is written
                self.sel.stop_reading(c.sock)  # its output still goes to it
                return
            if ex.stdin_w is not None:
                self._feed(ex.stdin_w, c, data)
            return
        if c.mode in ("events", "wait"):
            if not data:
                self._drop(c)
            elif c.acks and b"exit_recorded" in data:
                self.acked = True
            return
        if c.mode == "attach":
            if not data:
                # The client's end of input. With close_stdin (docker's and containerd's
                # StdinOnce) the container's stdin closes and output keeps flowing; without it
                # the attach ends there and the container keeps its stdin for the next one.
                # A TTY has no end of input: a client that goes away (e.g. after the detach
                # keys) leaves the terminal and its processes alone, as docker does.
                if c.stdin and not self.tty and not c.close_stdin:
                    self._drop(c)
                    return
                if c.stdin and self.stdin_w is not None and self.stdin_w.close_fd:
                    self._close_stdin(self.stdin_w)
                self.sel.stop_reading(c.sock)  # its output still goes to it
                return
            self._stdin(c, data)
        elif not data:
            self._drop(c)

    def _stdin(self, c: Client, data: bytes) -> None:
        if c.stdin and self.stdin_w is not None:
            self._feed(self.stdin_w, c, data)

    # --- stdin without blocking: a buffer, and back-pressure on the clients that feed it ---

    def _feed(self, st: _Stdin, c: Client, data: bytes) -> None:
        if st.closed or st.closing:
            return
        st.buf += data
        self._write_stdin(st)
        if len(st.buf) > STDIN_HIGH and not st.closed and c in self.clients:
            self.sel.hold(c.sock)  # not read until the process reads its stdin
            st.held.append(c)

    def _write_stdin(self, st: _Stdin) -> None:
        """Write what the process's stdin takes now; watch it for room while more waits."""
        while st.buf and not st.closed:
            try:
                n = os.write(st.fd, st.buf[:65536])
            except BlockingIOError:
                break
            except OSError:  # EPIPE: nobody reads it any more (EIO: a pty's process ended)
                st.buf.clear()
                if st.close_fd:
                    self._stdin_closed(st)
                break
            del st.buf[:n]
        if st.closed:
            return
        if st.buf:
            self.sel.want_write(st.fd, ("stdin", st))
        else:
            self.sel.done_writing(st.fd)
            if st.closing:
                self._stdin_closed(st)
                return
        if len(st.buf) <= STDIN_LOW:
            self._release(st)

    def _release(self, st: _Stdin) -> None:
        held, st.held = st.held, []
        for c in held:
            if c in self.clients:
                try:
                    self.sel.release(c.sock)
                except (KeyError, ValueError, OSError):
                    pass

    def _close_stdin(self, st: _Stdin) -> None:
        """The end of input: the process's stdin closes once what waits for it is written."""
        st.closing = True
        if not st.buf:
            self._stdin_closed(st)

    def _stdin_closed(self, st: _Stdin) -> None:
        """Closed, or gone (a pty's or an exec's end): nothing more is written, its feeders are read
        again (what they send goes nowhere)."""
        if st.closed:
            return
        st.closed = True
        st.buf.clear()
        self.sel.done_writing(st.fd)
        if st.close_fd:
            try:
                os.close(st.fd)
            except OSError:
                pass
        self._release(st)

    def _reply(self, c: Client, obj: dict[str, Any]) -> None:
        self._send(c, fastjson.dumps(obj).encode() + b"\n")

    def _request(self, c: Client, req: dict[str, Any]) -> None:
        op = req.get("op")
        if op == "attach":
            if self.exit_code is not None and not self.outputs:
                # nothing more to send: berthd waits for the exit's record (and the next run)
                self._reply(c, proto.fail("FailedPrecondition", "container not running"))
                self._drop(c)
                return
            c.mode = "attach"
            c.want = {s for s in ("stdout", "stderr") if req.get(s, True)}
            c.stdin = bool(req.get("stdin"))
            c.close_stdin = bool(req.get("close_stdin", True))
            self._reply(c, proto.ok(tty=self.tty))
            return
        if op in ("wait", "subscribe"):
            c.mode = "events"  # the exit goes to it when the container has exited and its output is drained
            c.acks = op == "subscribe" and bool(req.get("ack"))
            return
        if op == "exec":
            self._exec(c, req)  # a started exec keeps the connection for its stream
            return
        try:
            reply = self._op(op, req)
        except Exception as e:
            reply = proto.fail(_kind(e), _message(e))
        self._reply(c, reply)
        self._drop(c)

    def _op(self, op: str | None, req: dict[str, Any]) -> dict[str, Any]:
        if op == "start":
            if self.exit_code is not None:
                return proto.fail("FailedPrecondition", "container not running")
            self.start_process()
            return proto.ok(pid=self.init_pid)
        if op == "kill":
            if self.exit_code is not None or not self.init_pid:
                return proto.fail("FailedPrecondition", "container not running")
            sig = int(req.get("signal", 15))
            if self.p.get("runtime_binary"):  # its init may be a sandbox's (runsc): the runtime knows
                _in_child(lambda: self.runtime().kill(self.id, sig, bool(req.get("all"))))
            else:
                os.kill(self.init_pid, sig)  # our child until we reap it: never another's pid
            return proto.ok()
        if op in ("pause", "resume"):
            if self.exit_code is not None:
                return proto.fail("FailedPrecondition", "container not running")
            if (op == "pause") == self.paused:
                return proto.fail("FailedPrecondition", "container is already paused" if self.paused else
                                  "container is not paused")
            self._pause_resume(op)
            return proto.ok()
        if op == "resize":
            master = self.master
            if req.get("exec_id"):  # an exec's own pty
                ex = self.execs.get(req["exec_id"])
                master = getattr(ex, "master", None) if ex is not None else None
            if master is not None:
                import fcntl
                import termios
                try:
                    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", int(req.get("h", 24)),
                                                                        int(req.get("w", 80)), 0, 0))
                except OSError:
                    pass  # the exec ended meanwhile
            return proto.ok()
        if op == "exec_state":
            ex = self.execs.get(req.get("exec_id"))  # type: ignore[arg-type]
            if ex is None:
                return proto.fail("NotFound", "no such exec")
            return proto.ok(pid=ex.pid, running=ex.exit_code is None, exit_code=ex.exit_code)
        if op == "reopen_log":  # the CRI's ReopenContainerLog, after the kubelet rotated the file
            getattr(self.log, "reopen", _ignore)()
            return proto.ok()
        if op == "state":
            status = "exited" if self.exit_code is not None else "paused" if self.paused else "running"
            return proto.ok(pid=self.init_pid, status=status, exit_code=self.exit_code, shim_pid=os.getpid())
        if op == "stats":  # where its counters are: the init's cgroups (/proc/<pid>/cgroup)
            if self.exit_code is not None:
                return proto.fail("FailedPrecondition", "container not running")
            with open(f"/proc/{self.init_pid}/cgroup") as f:
                return proto.ok(cgroup=f.read(), pid=self.init_pid)
        return proto.fail("InvalidArgument", f"unknown op {op!r}")

    def _pause_resume(self, op: str) -> None:
        _in_child(lambda: getattr(self.runtime(), op)(self.id))
        self.paused = op == "pause"

    def _exec(self, c: Client, req: dict[str, Any]) -> None:
        """Start a process in the container (the runtime's exec, detached, re-parented to us)
        whose stdio this connection carries."""
        ex = Exec(req.get("exec_id") or "", bool(req.get("process", {}).get("terminal")), bool(req.get("stdin")))
        console = proxy = stdin_w = None
        try:
            ex.fds, stdin_w, proxy, console = _child_stdio(ex.tty, ex.stdin)
            pidfile = os.path.join(self.state_dir, f"exec-{ex.id[:16]}.pid")
            _in_child(lambda: self.runtime().exec(self.id, req["process"], pidfile, console))
            with open(pidfile) as f:
                ex.pid = int(f.read())
            os.unlink(pidfile)
        except BaseException as e:
            for fd in list(ex.fds) + ([stdin_w] if stdin_w is not None else []):
                os.close(fd)
            self._reply(c, proto.fail(_kind(e), _message(e)))
            self._drop(c)
            return
        finally:
            _null_stdio()
            if console is not None:
                console.close()
        if proxy is not None:
            ex.master = _receive_master(proxy)
            ex.fds[ex.master] = "stdout"
            if ex.stdin:
                stdin_w = ex.master
        if stdin_w is not None:
            ex.stdin_w = _Stdin(stdin_w, close_fd=stdin_w != ex.master)
        for fd in ex.fds:
            self.sel.register(fd, ("exec_output", (ex, fd)))
        ex.client = c
        c.mode = "exec"
        c.exec = ex
        self.execs[ex.id] = ex
        if len(self.execs) > MAX_EXEC_RECORDS:  # health probes exec every few seconds: keep the newest
            done = [k for k, e in self.execs.items() if e.exit_code is not None]
            for old_id in done[:len(self.execs) - MAX_EXEC_RECORDS]:
                del self.execs[old_id]
        self._reply(c, proto.ok(pid=ex.pid))
        self.reap()

    def _exec_output(self, ex: Exec, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if fd == ex.master and ex.stdin_w is not None:
                self._stdin_closed(ex.stdin_w)  # the same fd: gone with it
                ex.stdin_w = None
            self.sel.unregister(fd)
            self._source_gone(fd)
            del ex.fds[fd]
            os.close(fd)
            if fd == ex.master:
                ex.master = None
            self._exec_maybe_done(ex)
            return
        stream = ex.fds[fd]
        frame = data if ex.tty else struct.pack(">BxxxI", 1 if stream == "stdout" else 2, len(data)) + data
        if ex.client is not None and ex.client in self.clients:
            self._send(ex.client, frame)

    def _exec_maybe_done(self, ex: Exec) -> None:
        if ex.exit_code is None or ex.fds and not ex.tty:
            return
        if ex.tty and ex.master is not None:
            # drain what the pty still holds, then close it
            while True:
                try:
                    data = os.read(ex.master, 65536)
                except OSError:
                    break
                if not data:
                    break
                if ex.client is not None and ex.client in self.clients:
                    self._send(ex.client, data)
            if ex.stdin_w is not None and not ex.stdin_w.close_fd:
                self._stdin_closed(ex.stdin_w)  # the master itself
                ex.stdin_w = None
            try:
                self.sel.unregister(ex.master)
            except (KeyError, ValueError):
                pass
            self._source_gone(ex.master)
            os.close(ex.master)
            ex.fds.pop(ex.master, None)
            ex.master = None
        if ex.stdin_w is not None:
            self._stdin_closed(ex.stdin_w)  # what still waited for it goes nowhere
            ex.stdin_w = None
        if not ex.told:  # berthd hears the exec's end on its events channel (docker's exec_die)
            ex.told = True
            ev = fastjson.dumps(proto.exec_exit_event(ex.id, ex.exit_code)).encode() + b"\n"
            for c in list(self.clients):
                if c.mode == "events":
                    self._send(c, ev)
        if ex.client is not None:
            self._drop(ex.client)
            ex.client = None

    def _write_state(self, status: str) -> None:
        tmp = os.path.join(self.state_dir, ".shim.json")
        # own_child: the init is this shim's child (berth's runtime library), which berthd may
        # signal itself through a pidfd (ContainerService._signal); a runtime binary's init
        # (runsc's is a sandbox's) takes signals from the runtime alone
        _write_file(tmp, fastjson.dumps({"status": status, "pid": self.init_pid, "shim_pid": os.getpid(),
                                         "own_child": not self.p.get("runtime_binary")}))
        os.rename(tmp, os.path.join(self.state_dir, "shim.json"))

    def _finish(self) -> bool:
        """The container has exited and its output is drained: berthd hears the exit, then the
        runtime's state goes (the container's cgroup, its state directory; `runc delete` for a
        runtime binary), then our socket, and only then do berthd's events channels close: their
        end (EOF) is what the container's next launch or its removal waits for
        (ContainerService.shim_ended), so that nothing of this run is deleted under the next
        one, while the stop or wait that waits for the exit is answered without waiting for the
        deletion. The socket stays until the deletion is done: a berthd restarted meanwhile
        finds the shim there and waits for its end (the listener's close) before it goes on.

        A berthd that acknowledges exits (the channel it handed over or subscribed with says so)
        records the exit before this cleanup begins: the cleanup's work (the mount namespace's
        teardown, the cgroups' removal, files) does not compete with that record and the answer
        that waits for it; berthd says "exit_recorded" on the channel (at once when it removes
        or restarts the container, which waits for the shim's end), and then the shim's own
        records of the exit (exit.json, shim.json's "exited") are not needed. Without that word
        within EXIT_ACK_WAIT s, or with the channel gone (berthd killed), the cleanup goes on
        and writes them. Returns whether it is done (False: told, waiting for the record; the
        loop calls it again once _ack_settled)."""
        if self.ack_deadline is None:
            self._tell()
            if any(c.acks for c in self.told_channels):
                self.ack_deadline = time.monotonic() + EXIT_ACK_WAIT
                if not self._ack_settled(time.monotonic()):
                    return False
        elif not self._ack_settled(time.monotonic()):
            return False
        self._cleanup()
        return True

    def _ack_settled(self, now: float) -> bool:
        """Told: berthd has recorded the exit, no channel that would say so is left, or the
        wait is over."""
        return self.acked or now >= self.ack_deadline or not any(  # type: ignore[operator]  # set when told
            c.acks for c in self.told_channels if c in self.clients and not c.closing)

    def _tell(self) -> None:
        self.log.flush()
        self.log.f.close()
        ev = fastjson.dumps(proto.exit_event(self.exit_code, self.finished_at, self.init_pid,  # type: ignore[arg-type]  # set at the exit
                                             self.oom_killed)).encode() + b"\n"
        channels = []
        for c in list(self.clients):
            # the last words: what waits for each client, and the exit to berthd's channels,
            # written at last blocking (LAST_WORDS without progress at most, per client)
            data = bytes(c.out) + (ev if c.mode == "events" else b"")
            c.out.clear()
            if data:
                try:
                    c.sock.settimeout(LAST_WORDS)
                    c.sock.sendall(data)
                except OSError:
                    pass
            if c.mode == "events":
                channels.append(c)
                if c.acks:
                    try:
                        c.sock.setblocking(False)  # its word is read when the loop sees it
                    except OSError:
                        pass
            else:
                self._drop(c, flush=False)
        self.told_channels = channels
        # until the cleanup, the loop hears berthd's channels alone (what else is open is
        # closed with the rest: a request meanwhile waits in the listener's queue, as during a
        # cleanup without a wait, and is let go with the socket)
        fds = list(self.outputs) + [fd for ex in self.execs.values() for fd in ex.fds]
        fds += [w.fd for w in [self.stdin_w] + [ex.stdin_w for ex in self.execs.values()] if w is not None]
        for fd in fds:
            self.sel.forget(fd)
        if self.listener is not None:
            self.sel.forget(self.listener.fileno())
        for c in channels:
            if not c.acks:
                self.sel.forget(c.fd)

    def _cleanup(self) -> None:
        self.ack_deadline = None
        self._release_mnt_ns()  # told: its teardown now (_hold_mnt_ns), before the channels' end
        if not self.acked:
            if self.exit_file_pending:
                self._write_exit_file()
            self._write_state("exited")  # berthd does not read it (a state file for whoever looks)
        _cleanup_runtime(self.p, self._tracked_pids)
        try:
            os.unlink(self.p.get("socket") or os.path.join(self.state_dir, "shim.sock"))
        except OSError:
            pass
        for c in self.told_channels:
            self._drop(c, flush=False)
        self._close_fds()

    def _tracked_pids(self) -> set[int]:
        """The pids whose ends this process's loop waits for (its containers' inits and execs)."""
        pids = set()
        for inst in self.host.instances if self.host is not None else [self]:
            pids.add(inst.init_pid)
            pids.update(ex.pid for ex in inst.execs.values())
        pids.discard(None)
        return pids

    def _close_proxies(self) -> None:
        if self.proxies is not None:
            self.proxies.close()
            self.proxies = None

    def _close_fds(self) -> None:
        """What it still holds goes (the host process may go on with other containers)."""
        self._release_mnt_ns()
        self._close_proxies()
        if self.listener is not None:
            self.sel.forget(self.listener.fileno())
            self.listener.close()
            self.listener = None
        fds = list(self.outputs)
        for ex in self.execs.values():
            fds += list(ex.fds)
            if ex.stdin_w is not None and not ex.stdin_w.closed and ex.stdin_w.close_fd:
                fds.append(ex.stdin_w.fd)
        if self.stdin_w is not None and not self.stdin_w.closed and self.stdin_w.close_fd:
            fds.append(self.stdin_w.fd)
        if self.master is not None:
            fds.append(self.master)
        for fd in set(fds):
            self.sel.forget(fd)
            try:
                os.close(fd)
            except OSError:
                pass
        self.outputs = {}
        self.master = None
        self.stdin_w = None
        for ex in self.execs.values():
            ex.fds = {}
            ex.master = None
            ex.stdin_w = None


def _in_child(fn: Callable[[], int | None]) -> int | None:
    """fn() run in a short-lived child of the shim; returns its result (an int or None), or raises
    RuntimeError with the child's error message.

    The runtime's work (reading the spec, building the rootfs, cgroups, seccomp, a runtime
    binary through subprocess) allocates and touches much of the memory the shim shares with
    the zygote; done here, every page it copies goes away with the child, and the long-lived
    shim stays small. What the child leaves behind (the container's init, an exec'd process)
    is re-parented to the shim, a subreaper."""
    r, w = os.pipe()
    pid = sc.fork_bare()  # the shim is single-threaded: no at-fork handlers to run on either side
    if pid == 0:
        try:
            os.close(r)
            try:
                res = fn()
                msg = b"ok %d" % res if res is not None else b"ok"
            except BaseException as e:
                msg = b"error " + _kind(e).encode() + b" " + _message(e).encode(errors="replace")
            os.write(w, msg[:4000])  # one write up to PIPE_BUF: whole, and never blocks on an empty pipe
        finally:
            os._exit(0)
    os.close(w)
    # not read to EOF: the processes the child started (the init, waiting for `start`) hold the pipe too
    try:
        msg = _child_message(pid, r)
    finally:
        os.close(r)
    if msg.startswith(b"ok"):
        return int(msg[3:]) if len(msg) > 3 else None
    if msg.startswith(b"error "):
        kind, _, text = msg[6:].decode(errors="replace").partition(" ")
        raise ChildError(kind, text)
    raise ChildError("SystemError", "the shim's helper process died")


def _child_message(pid: int, r: int) -> bytes:
    """The helper's message, as soon as it is written: the helper's exit (the teardown of its
    copy of the interpreter, ~1.5 ms) then overlaps what the shim does next, and the shim's reap
    loop collects it (a helper that never wrote anything died: b""). Without pidfds (a kernel
    before 5.3), after the helper is reaped."""
    try:
        pfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pfd = -1
    if pfd < 0:
        os.waitpid(pid, 0)
    else:
        try:
            p = select.poll()
            p.register(r, select.POLLIN)
            p.register(pfd, select.POLLIN)
            p.poll()  # no timeout: until the message or the helper's end
        finally:
            os.close(pfd)
    os.set_blocking(r, False)
    try:
        return os.read(r, 4096)
    except BlockingIOError:
        return b""


class ChildError(Exception):
    """An error of the runtime's work in _in_child, with its kind (berth.shim.protocol)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _kind(e: BaseException) -> str:
    """The protocol's error kind of an exception."""
    if isinstance(e, ChildError):
        return e.kind
    for cls in type(e).__mro__:
        name = "SystemError" if cls.__name__ == "SystemError_" else cls.__name__
        if name in proto.KINDS:
            return name
    return "SystemError"


def _message(e: BaseException) -> str:
    return getattr(e, "message", None) or str(e) or type(e).__name__


def _write_file(path: str, text: str, sync: bool = False) -> None:
    """A small file written with os calls only (no io objects: fewer inherited objects touched)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        data = text.encode()
        while data:
            data = data[os.write(fd, data):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _ignore(*_: object) -> None:
    pass


def _null_stdio() -> None:
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _child_stdio(tty: bool, stdin: object) -> tuple[dict[int, str], int | None, socket.socket | None, socket.socket | None]:
    """Point fds 0-2 at what the process the runtime forks next will inherit: with a TTY nothing
    (/dev/null; its pty master comes over the returned console socket), else pipes whose other
    ends we keep. Returns ({read fd: stream}, stdin's write fd or None, proxy, console)."""
    if tty:
        proxy, console = socket.socketpair()
        _null_stdio()
        return {}, None, proxy, console
    stdin_w = None
    if stdin:
        r, stdin_w = os.pipe()
        os.dup2(r, 0)
        os.close(r)
    else:
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    outputs = {}
    for fd, name in ((1, "stdout"), (2, "stderr")):
        r, w = os.pipe()
        os.dup2(w, fd)
        os.close(w)
        os.set_blocking(r, False)
        outputs[r] = name
    return outputs, stdin_w, None, None


def _receive_master(proxy: socket.socket) -> int:
    """The pty master the runtime sent over the console socket."""
    _, fds, _, _ = socket.recv_fds(proxy, 1024, 1)
    proxy.close()
    os.set_blocking(fds[0], False)
    return fds[0]


def _tell(params: Params, event: dict[str, Any]) -> None:
    """One event on berthd's events channel, when the shim has not made it a client yet."""
    fd = params.get("events_fd")
    if fd is None:
        return
    try:
        os.write(fd, fastjson.dumps(event).encode() + b"\n")
    except OSError:
        pass


def _cleanup_runtime(params: Params, tracked: Callable[[], set[int]] = set) -> None:
    """The runtime's delete of the container. A runtime binary's delete may end processes the
    shim is the subreaper of (runsc's sandbox and gofer): they are reaped while it runs, else
    it waits for their end (runsc: 5 s) and leaves them zombies. tracked() are the pids whose
    exits the shim's own loop collects (inits, execs)."""
    try:
        from berth.runtime import oci
        rt = oci.from_params(params)
        if isinstance(rt, oci.BinaryRuntime):
            rt.while_waiting = lambda pid: _reap_strays(tracked() | {pid})
        rt.delete(params["id"], force=True)
    except Exception:
        pass
    if params.get("runtime_binary"):
        _remove_cgroup(params)


def _reap_strays(keep: set[int]) -> None:
    """Reap the ended children not in keep (nobody waits for their status)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids = [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            continue
        for pid in pids:
            if pid not in keep:
                try:
                    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG)
                except ChildProcessError:
                    pass


def _remove_cgroup(params: Params) -> None:
    """What a runtime binary left of the container's cgroup once it deleted the container (runsc
    leaves its directories): removed once empty, waiting up to a second for the processes still
    leaving it (runsc's sandbox, right after its delete; runc's cgroup is gone already)."""
    try:
        from berth.runtime import cgroups
        with open(os.path.join(params["bundle"], "config.json")) as f:
            path = (json.load(f).get("linux") or {}).get("cgroupsPath")
        cgroups.Manager(cgroups.resolve_path(path, params["id"], bool(path and path.count(":") == 2)),
                        ).destroy(timeout=1.0)
    except Exception:
        pass


def _start_failed(shim: Shim, params: Params, e: BaseException) -> None:
    """A container that did not start: the record of why (start-error), its created init killed
    (nobody would hold it), the runtime's state gone, and berthd told on its events channel."""
    msg = _message(e)
    try:
        with open(os.path.join(params["state_dir"], "start-error"), "w") as f:
            f.write(msg)  # the record; berthd learns it from the events channel
    except OSError:
        pass
    if shim.init_pid:
        try:
            os.kill(shim.init_pid, _signal.SIGKILL)
        except OSError:
            pass
    _cleanup_runtime(params, shim._tracked_pids)
    _tell(params, proto.start_failed(_kind(e), msg))
    try:
        shim._write_state("failed")
    except OSError:
        pass


def _crashed(shim: Shim | None, state_dir: str, e: BaseException) -> None:
    """A container's monitor that cannot go on: the record of why (shim-error), and its init
    killed while it runs (nobody would hold the container any more)."""
    try:
        with open(os.path.join(state_dir, "shim-error"), "w") as f:
            f.write(f"{type(e).__name__}: {e}")
    except OSError:
        pass
    if shim is not None and shim.init_pid and shim.exit_code is None:
        try:
            os.kill(shim.init_pid, _signal.SIGKILL)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


class Host:
    """The shim process of a pod: its sandbox's monitor (a Shim), and those of the pod's
    containers, which berthd hands over on the host socket (berth.shim.client's spawn_hosted)
    instead of forking a shim each from the zygote. One loop serves them all; the process ends
    with the last of them. (A container that is not a pod's: Shim.serve(), a loop of its own.)"""

    def __init__(self) -> None:
        self.sel = _Poller()
        self.instances: list[Shim] = []
        self.control: _socket.socket | None = None
        self.control_path = ""
        self.hosting: Shim | None = None  # the sandbox's Shim, while its host socket is open
        self.sigr, sigw = os.pipe()
        os.set_blocking(self.sigr, False)
        os.set_blocking(sigw, False)
        # _signal, not signal: the latter's enum wrappers would touch the enum machinery
        _signal.set_wakeup_fd(sigw)
        _signal.signal(_signal.SIGCHLD, _ignore)
        self.sel.register(self.sigr, (None, ("signal", None)))  # type: ignore[arg-type]

    def add(self, params: Params) -> bool:
        """Create and (unless it waits) start a container, then serve it; False when it failed
        (berthd is told on its events channel and the record of the failure is on disk)."""
        if params.get("events_fd") is not None:
            os.set_inheritable(params["events_fd"], False)  # not the container's, nor a runtime's
        try:
            shim = Shim(params, self)
        except Exception as e:  # its log cannot be opened, say: its failure, not the pod's
            _tell(params, proto.start_failed(_kind(e), _message(e)))
            if params.get("events_fd") is not None:
                os.close(params["events_fd"])
            return False
        try:
            shim.start_container()
            if params.get("host_socket") and self.control is None:
                # before the start result: berthd hands the pod's containers over as soon as it
                # has it, and one that found no socket listening would get a shim of its own
                self._open_control(shim, params["host_socket"])
            shim.open()
        except BaseException as e:
            if self.hosting is shim:
                self._close_control()
            if shim.announced:  # it had started: a crash of its monitor (berthd finds it gone)
                _crashed(shim, params["state_dir"], e)
                for c in list(shim.clients):
                    shim._drop(c, flush=False)
                shim._close_fds()
                return False
            _start_failed(shim, params, e)
            shim.log.f.close()
            shim._close_fds()
            if params.get("events_fd") is not None:
                os.close(params["events_fd"])
            return False
        self.instances.append(shim)
        self.reap()
        return True

    def _open_control(self, shim: Shim, path: str) -> None:
        """The host socket of a pod's sandbox: berthd hands the pod's containers over on it."""
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        try:
            os.makedirs(path.rpartition("/")[0], exist_ok=True)  # the sockets' directory (open() makes it too)
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
            sock.bind(path)
            sock.listen(16)
            sock.setblocking(False)
        except OSError:
            return  # the pod's containers get shims of their own
        self.control, self.control_path, self.hosting = sock, path, shim
        self.sel.register(sock, (None, ("control", None)))  # type: ignore[arg-type]

    def _close_control(self) -> None:
        """No more containers join (the sandbox is done): a hand-over that comes now gets no
        answer and berthd forks a shim of their own."""
        if self.control is None:
            return
        try:
            os.unlink(self.control_path)
        except OSError:
            pass
        self.sel.forget(self.control.fileno())
        self.control.close()
        self.control, self.hosting = None, None

    def _hand_over(self) -> None:
        """One container handed over by berthd: its parameters and its events channel (SCM_RIGHTS),
        "ok" back, then berthd's "go" (after which the container is ours, and before which berthd
        may still fork a shim of its own instead)."""
        try:
            fd, _ = self.control._accept()  # type: ignore[union-attr]
        except (BlockingIOError, OSError):
            return
        conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0, fd)
        fds: list[int] = []
        params = None
        try:
            conn.settimeout(5.0)
            msg, anc, flags, _ = conn.recvmsg(1 << 18, _socket.CMSG_SPACE(4 * 4))
            for level, kind, data in anc:
                if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                    fds += [int.from_bytes(data[i:i + 4], sys.byteorder, signed=True)
                            for i in range(0, len(data) - len(data) % 4, 4)]
            params = fastjson.loads(msg.decode()) if not flags & _socket.MSG_TRUNC else None
            if not isinstance(params, dict) or not fds:
                raise ValueError("no parameters or no events channel")
            params["events_fd"] = fds.pop(0)
            conn.sendall(b"ok")
            if conn.recv(16) != b"go":
                raise ValueError("berthd did not go on")
        except (OSError, ValueError):
            if isinstance(params, dict) and params.get("events_fd") is not None:
                fds.append(params["events_fd"])
            for x in fds:
                os.close(x)
            return
        finally:
            conn.close()
        for x in fds:
            os.close(x)
        self.add(params)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                for inst in list(self.instances):
                    inst.check_gone()
                return
            if pid == 0:
                return
            code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            for inst in list(self.instances):
                inst.child_exited(pid, code)

    def loop(self) -> None:
        while True:
            now = time.monotonic()
            timeout = None
            for inst in list(self.instances):
                done, t = inst.tick(now)
                if done:
                    if inst is self.hosting:
                        self._close_control()
                    if inst._finish():
                        self.instances.remove(inst)
                        continue
                    t = max(0.0, inst.ack_deadline - now)  # type: ignore[operator]  # told: waiting for the record
                if t is not None:
                    timeout = t if timeout is None else min(timeout, t)
            if not self.instances:
                return
            for inst, (kind, data) in self.sel.select(timeout):  # type: ignore[misc,assignment]  # (Shim or None, its data) here
                if inst is None:
                    if kind == "signal":
                        try:
                            os.read(self.sigr, 4096)
                        except OSError:
                            pass
                        self.reap()
                    elif kind == "control":
                        self._hand_over()
                    continue
                if inst not in self.instances:
                    continue  # done with in this round
                try:
                    inst._dispatch(kind, data)
                except Exception as e:  # a client's mistake must not take the container down
                    try:
                        with open(os.path.join(inst.state_dir, "shim-warnings"), "a") as f:
                            f.write(f"{type(e).__name__}: {e}\n")
                    except OSError:
                        pass


def run(params: Params) -> NoReturn:
    """Entry point in the forked shim process; never returns. A pod's sandbox (host_socket in
    its parameters) gets a Host, which takes the pod's containers too; any other container a
    shim of its own."""
    if params.get("host_socket"):
        _run_host(params)
    code = 0
    shim = None
    try:
        os.chdir("/")
        if params.get("events_fd") is not None:
            os.set_inheritable(params["events_fd"], False)  # not the container's, nor a runtime's
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        shim = Shim(params)
        try:
            shim.start_container()
            shim.serve()
        except BaseException as e:
            if shim.announced:
                raise  # it had started: a crash of the shim, below
            _start_failed(shim, params, e)
            os._exit(1)
    except BaseException as e:  # pragma: no cover - a shim must never raise into the zygote
        _crashed(shim, params["state_dir"], e)
        code = 1
    sys.stdout.flush()
    _exit_idle(code)


def _run_host(params: Params) -> NoReturn:
    """run() for a pod's sandbox: a Host, which takes the pod's containers as they come."""
    code = 0
    host = None
    try:
        os.chdir("/")
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        host = Host()
        if not host.add(params):
            os._exit(1)
        host.loop()
    except BaseException as e:  # pragma: no cover - a shim must never raise into the zygote
        for inst in host.instances if host is not None else []:
            _crashed(inst, inst.state_dir, e)
        if host is None or not host.instances:
            _crashed(None, params["state_dir"], e)
        code = 1
    sys.stdout.flush()
    _exit_idle(code)


def _exit_idle(code: int) -> NoReturn:
    """os._exit(code) at the idle scheduling class. The shim's work is done and its sockets are
    closed (what berthd waits for); what is left is the kernel freeing its memory (~1 ms of a
    processor: the pages it shares with the zygote, one by one), which nobody waits for: it is
    done when a processor has nothing else to do, not in the way of the clients of the
    containers the shim served (a crictl that follows a stop at once)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError:
        pass
    os._exit(code)
