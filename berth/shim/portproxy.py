"""The ports a container publishes on IPv6 host addresses, forwarded by its shim.

As dockerd, berth publishes a port given no host address on 0.0.0.0 and on [::]: the IPv4 side
is NAT (the portmap plugin's rules), the IPv6 side a user-space forwarder to the container's
address (its IPv6 one on a dual-stack network, else its IPv4 one), as dockerd's docker-proxy: no
NAT takes IPv6 to IPv4, nor a connection to [::1] anywhere. berth's forwarder lives in
the container's shim, which lives as long as the container's run (and through berthd's
restarts): the ports are open from before the start to the exit.

A TCP connection is relayed both ways with back-pressure (what one side does not take, the other
is not read for) and half-closes passed on; a UDP client (its address) gets a socket of its own
to the container, kept while it is used (UDP_IDLE seconds, at most UDP_FLOWS at once), as
docker-proxy's.

The shim's poller calls what is registered here: each registration's data is ("proxy", f) and
the shim's dispatch calls f().
"""

from __future__ import annotations

import _socket
import errno
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CHUNK = 65536
UDP_IDLE = 90.0
UDP_FLOWS = 1024
MAX_CONNS = 4096  # TCP connections at once per container: more wait in the listeners' backlogs


def _family(ip: str) -> int:
    return _socket.AF_INET6 if ":" in ip else _socket.AF_INET


class BindError(Exception):
    """A forwarded port could not be opened (dockerd's words: its proxy's listen failed)."""


class Proxies:
    """The forwarded ports of one container: listeners, and the connections through them."""

    def __init__(self, sel: Any, specs: list[dict[str, Any]]) -> None:
        self.sel = sel
        self.socks: list[_socket.socket] = []  # the listeners
        self.conns: set[_Conn] = set()
        self.udp: list[_Udp] = []
        self.full: list[_socket.socket] = []  # listeners not read for now (see _wait)
        try:
            for spec in specs:
                self._open(spec)
        except BaseException:
            self.close()
            raise

    def _open(self, spec: dict[str, Any]) -> None:
        host_ip, port = spec["host_ip"], int(spec["host_port"])
        family = _family(host_ip)
        tcp = spec["proto"] == "tcp"
        s = _socket.socket(family, _socket.SOCK_STREAM if tcp else _socket.SOCK_DGRAM)
        try:
            if family == _socket.AF_INET6:
                s.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 1)
            if tcp:
                s.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            s.bind((host_ip, port))
            if tcp:
                s.listen(128)
            s.setblocking(False)
        except OSError as e:
            s.close()
            where = f"[{host_ip}]:{port}" if family == _socket.AF_INET6 else f"{host_ip}:{port}"
            raise BindError(f"Error starting userland proxy: listen {spec['proto']}"
                            f"{6 if family == _socket.AF_INET6 else 4} {where}: bind: {(e.strerror or str(e)).lower()}") from None
        self.socks.append(s)
        target = (spec["ip"], int(spec["port"]))  # the container's IPv4 address, or its IPv6 one
        if tcp:
            self.sel.register(s, ("proxy", lambda: self._accept(s, target)))
        else:
            u = _Udp(self, s, target)
            self.udp.append(u)
            self.sel.register(s, ("proxy", u.from_client))

    def _accept(self, listener: _socket.socket, target: tuple[str, int]) -> None:
        for _ in range(16):  # a few at a time: the shim has its container to serve too
            if len(self.conns) >= MAX_CONNS:  # (the shim's descriptors serve its container first)
                self._wait(listener)
                return
            try:
                fd, _addr = listener._accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):  # out of descriptors
                    self._wait(listener)
                return
            client = _socket.socket(listener.family, _socket.SOCK_STREAM, 0, fd)
            client.setblocking(False)
            try:
                upstream = _socket.socket(_family(target[0]), _socket.SOCK_STREAM)
            except OSError:
                client.close()
                self._wait(listener)
                return
            upstream.setblocking(False)
            c = _Conn(self, client, upstream)
            self.conns.add(c)
            c.connect(target)

    def _wait(self, listener: _socket.socket) -> None:
        """Not read (its connections wait in its backlog, no spin) until one of ours closes."""
        self.sel.hold(listener)
        self.full.append(listener)

    def close(self) -> None:
        """All of it goes (the container's exit): listeners, connections, UDP clients' sockets."""
        for c in list(self.conns):
            c.close()
        for u in self.udp:
            u.close()
        self.udp = []
        for s in self.socks:
            self.sel.forget(s.fileno())
            s.close()
        self.socks = []


class _Conn:
    """One TCP connection through the forwarder: the client's socket and the container's."""

    def __init__(self, proxies: Proxies, client: _socket.socket, upstream: _socket.socket) -> None:
        self.proxies = proxies
        self.sel = proxies.sel
        self.a, self.b = client, upstream
        self.pending = {client: b"", upstream: b""}  # what waits to be written to each
        self.eof = {client: False, upstream: False}  # each one's end read
        self.closed = False

    def other(self, s: _socket.socket) -> _socket.socket:
        return self.b if s is self.a else self.a

    def connect(self, target: tuple[str, int]) -> None:
        err = self.b.connect_ex(target)
        if err in (0, errno.EISCONN):
            self._connected()
        elif err in (errno.EINPROGRESS, errno.EAGAIN):
            self.sel.want_write(self.b.fileno(), ("proxy", self._connect_done))
        else:
            self.close()

    def _connect_done(self) -> None:
        self.sel.done_writing(self.b.fileno())
        if self.b.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR):
            self.close()  # the container does not listen there: the client sees its connection end
            return
        self._connected()

    def _connected(self) -> None:
        for s in (self.a, self.b):
            self.sel.register(s, ("proxy", lambda s=s: self._readable(s)))

    def _readable(self, src: _socket.socket) -> None:
        if self.closed:
            return
        dst = self.other(src)
        try:
            data = src.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:
            self.eof[src] = True
            self.sel.stop_reading(src)
            if not self.pending[dst]:
                self._shut(dst)
            return
        if self.pending[dst]:  # (read on a hang-up while held)
            self.pending[dst] += data
            return
        try:
            sent = dst.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close()
            return
        if sent < len(data):
            self.pending[dst] = data[sent:]
            self.sel.hold(src)  # not read until dst took what it was given
            self.sel.want_write(dst.fileno(), ("proxy", lambda: self._writable(dst)))

    def _writable(self, dst: _socket.socket) -> None:
        if self.closed:
            return
        src = self.other(dst)
        try:
            sent = dst.send(self.pending[dst])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        self.pending[dst] = self.pending[dst][sent:]
        if self.pending[dst]:
            return
        self.sel.done_writing(dst.fileno())
        if self.eof[src]:
            self._shut(dst)
        else:
            self.sel.release(src)

    def _shut(self, dst: _socket.socket) -> None:
        """src's end passed on to dst (a half-close); both ends passed: the connection is done."""
        try:
            dst.shutdown(_socket.SHUT_WR)
        except OSError:
            pass
        if self.eof[self.a] and self.eof[self.b]:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for s in (self.a, self.b):
            self.sel.forget(s.fileno())
            s.close()
        self.proxies.conns.discard(self)
        while self.proxies.full:  # descriptors free again: the waiting connections are taken
            self.sel.release(self.proxies.full.pop())


class _Udp:
    """A forwarded UDP port: each client address has a socket of its own to the container, whose
    answers go back to that address from the port the client sent to."""

    def __init__(self, proxies: Proxies, sock: _socket.socket, target: tuple[str, int]) -> None:
        self.sel = proxies.sel
        self.sock = sock
        self.target = target
        self.flows: dict[Any, list[Any]] = {}  # client address -> [its socket, last use]

    def from_client(self) -> None:
        now = time.monotonic()
        for _ in range(64):
            try:
                data, addr = self.sock.recvfrom(CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # an ICMP error of an earlier answer: nothing to do with it
                continue
            flow = self.flows.get(addr)
            if flow is None:
                flow = self._flow(addr, now)
                if flow is None:
                    continue
            flow[1] = now
            try:
                flow[0].send(data)
            except OSError:  # nobody there (yet): the datagram is lost, as UDP's
                pass
        self._expire(now)

    def _flow(self, addr: Any, now: float) -> list[Any] | None:
        self._expire(now)
        if len(self.flows) >= UDP_FLOWS:  # the longest unused one makes room
            self._drop(min(self.flows, key=lambda k: self.flows[k][1]))
        try:
            up = _socket.socket(_family(self.target[0]), _socket.SOCK_DGRAM)
        except OSError:
            return None
        up.setblocking(False)
        try:
            up.connect(self.target)
        except OSError:
            up.close()
            return None
        flow = [up, now]
        self.flows[addr] = flow
        self.sel.register(up, ("proxy", lambda: self._from_container(addr, up)))
        return flow

    def _from_container(self, addr: Any, up: _socket.socket) -> None:
        flow = self.flows.get(addr)
        for _ in range(64):
            try:
                data = up.recv(CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the container's port refused an earlier datagram
                continue
            if flow is not None:
                flow[1] = time.monotonic()
            try:
                self.sock.sendto(data, addr)
            except OSError:
                pass

    def _expire(self, now: float) -> None:
        for addr in [a for a, f in self.flows.items() if now - f[1] > UDP_IDLE]:
            self._drop(addr)

    def _drop(self, addr: Any) -> None:
        up = self.flows.pop(addr)[0]
        self.sel.forget(up.fileno())
        up.close()

    def close(self) -> None:
        for addr in list(self.flows):
            self._drop(addr)
