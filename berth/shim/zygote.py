"""The zygote: a small process forked from berthd before it starts any thread, with the runtime
library and the shim already imported. Each shim is forked from it (no new interpreter per
container) in a process group of its own; the zygote ends with berthd and the shims are
re-parented to init, so containers survive a daemon restart."""

from __future__ import annotations

import _signal
import array
import json
import os
import signal
import socket
import threading

TYPE_CHECKING = False  # no typing at run time: every shim is forked from here
if TYPE_CHECKING:
    from typing import Any, NoReturn


def _set_name(name: str) -> None:
    """The process name (comm) that ps and pkill see, so `pkill berthd` spares the zygote and shims."""
    from berth.linux import syscalls as sc
    try:
        sc.set_process_name(name)
    except OSError:
        pass


def _set_comm(name: bytes) -> None:
    """_set_name without ctypes (each call through ctypes touches many objects)."""
    try:
        fd = os.open("/proc/self/comm", os.O_WRONLY)
        try:
            os.write(fd, name)
        finally:
            os.close(fd)
    except OSError:
        pass


def _freeze() -> None:
    """Move every object out of the collector's reach before the shims are forked: a full
    collection in a shim writes to the header of every object it traverses, and would copy
    nearly every inherited page (measured: +3 MB in one forked shim; +0.3 MB with this).
    A long-lived shim's collections then only visit the objects it made itself."""
    import gc
    gc.freeze()


def _noop(*_: object) -> None:
    pass


def _loop(sock: socket.socket) -> NoReturn:
    # imported once here, shared by every shim forked from us
    import berth.runtime.cgroups  # noqa: F401  (else imported by every container's create)
    import berth.runtime.container  # noqa: F401
    import berth.runtime.oci  # noqa: F401
    import berth.runtime.process  # noqa: F401
    import berth.runtime.rootfs  # noqa: F401
    import berth.shim.shim as shim
    try:  # libseccomp is loaded, and docker's default profile compiled, once here for every shim
        from berth.linux import seccomp
        from berth.services import ocispec, seccomp_default
        seccomp.precompile(seccomp_default.default_profile(set(ocispec.DEFAULT_CAPS)))
    except Exception:
        pass
    import fcntl  # noqa: F401  (a shim's resize)
    import termios  # noqa: F401

    from berth import fastjson
    from berth.linux import syscalls as sc
    import berth.shim.crilog  # noqa: F401  (the log of every CRI container's shim: an import in each would cost it ~280 KB)
    _set_name("berth-zygote")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the shims we fork are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Every page this loop writes after a fork stays private to the shim just forked (the zygote
    # takes a copy, the shim keeps the old one to itself): the loop keeps to a few C calls and
    # one reused buffer.
    buf = bytearray(1 << 16)
    anc_size = socket.CMSG_SPACE(4 * 4)
    sock_fd = sock.fileno()  # the shim closes it by number: touching the socket object would copy its page
    _freeze()
    while True:
        try:
            n = sock.recv_into(buf, 0, socket.MSG_PEEK | socket.MSG_TRUNC)  # the whole size
            if n > len(buf):
                buf = bytearray(n)
            n, anc, _, _ = sock.recvmsg_into([buf], anc_size)
        except InterruptedError:
            continue
        if not n:
            os._exit(0)
        params = fastjson.loads(bytes(buf[:n]).decode())
        fds: list[int] = []
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += array.array("i", data[:len(data) - len(data) % 4])
        if fds:
            params["events_fd"] = fds[0]  # the events channel berthd made for this start
        pid = sc.fork_bare()
        if pid == 0:
            # the shim: our child until we end (with berthd), then init's. One fork, not a double
            # fork: SIGCHLD is ignored here, so the kernel reaps the shims that end before us, and
            # the shim restores it first thing (_signal, as the shim's loop uses it: no page
            # touched that the shim would not touch)
            _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
            os.close(sock_fd)
            # A process group of its own in berthd's session, as containerd's shims (Setpgid): a
            # signal to berthd's group (its terminal's ^C) does not reach it, and the shims are
            # scheduled in berthd's autogroup (kernel.sched_autogroup_enabled), not each as a
            # session of its own at a full share beside the node's other work (a pod's start and
            # teardown through crictl up to ~1 ms shorter, docs/benchmarks.md session 32); not
            # a session leader, it never takes a terminal it opens as its own. Its group becomes
            # orphaned when berthd ends: a stopped exec'd process in it then gets SIGHUP and
            # SIGCONT from the kernel, and so would the shim, which takes it as a no-op (a
            # caught signal: what it runs gets the default back at its exec).
            os.setpgid(0, 0)
            _signal.signal(_signal.SIGHUP, _noop)
            _set_comm(b"berth-shim")
            devnull = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.close(devnull)
            shim.run(params)
        for fd in fds:
            os.close(fd)
        sock.send(b'{"pid": %d}' % pid)


class Zygote:
    def __init__(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            parent.close()
            try:
                _loop(child)
            finally:
                os._exit(0)
        child.close()
        self.pid = pid
        self.sock = parent
        self.lock = threading.Lock()

    def spawn(self, params: dict[str, Any], events_fd: int | None = None) -> int:
        """Fork a shim with these parameters (and the events channel's fd, passed over); returns its pid."""
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [events_fd]))] if events_fd is not None else []
        with self.lock:
            self.sock.sendmsg([json.dumps(params).encode()], anc)
            reply = json.loads(self.sock.recv(65536))
        return reply["pid"]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
