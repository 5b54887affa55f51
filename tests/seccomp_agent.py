"""A seccomp agent for the tests of seccomp user notification (SCMP_ACT_NOTIFY): it listens on
a unix socket for the runtime's ContainerProcessState and listener fd, and answers the calls."""

import array
import fcntl
import json
import os
import socket
import struct
import threading

# <linux/seccomp.h>: _IOWR('!', 0, struct seccomp_notif) / _IOWR('!', 1, struct seccomp_notif_resp)
NOTIF_RECV, NOTIF_SEND = 0xC0502100, 0xC0182101
FLAG_CONTINUE = 1
ENOMEDIUM = 123


class Agent:
    """A seccomp agent on a unix socket: records each ContainerProcessState it gets and answers
    every notified call with ENOMEDIUM (or lets it go on: mode "continue")."""

    def __init__(self, path, mode="errno"):
        self.path = path
        self.mode = mode
        self.states = []
        self.calls = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            with c:
                fds = array.array("i")
                msg, anc, _flags, _addr = c.recvmsg(65536, socket.CMSG_LEN(4 * fds.itemsize))
                for level, kind, data in anc:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
            self.states.append((json.loads(msg), len(fds)))
            for fd in fds:
                t = threading.Thread(target=self._serve, args=(fd,), daemon=True)
                self.threads.append(t)
                t.start()

    def _serve(self, fd):
        try:
            while True:
                buf = bytearray(80)
                try:
                    fcntl.ioctl(fd, NOTIF_RECV, buf)
                except OSError:
                    return  # ENOENT: no process uses the filter any more
                nid, pid, _flags, nr = struct.unpack_from("<QIIi", buf)
                self.calls.append(nr)
                if self.mode == "continue":
                    resp = struct.pack("<QqiI", nid, 0, 0, FLAG_CONTINUE)
                else:
                    resp = struct.pack("<QqiI", nid, 0, -ENOMEDIUM, 0)
                try:
                    fcntl.ioctl(fd, NOTIF_SEND, bytearray(resp))
                except OSError:
                    pass
        finally:
            os.close(fd)

    def close(self):
        self.stop.set()
        self.sock.close()
        for t in self.threads:
            t.join(10)
        os.unlink(self.path)
