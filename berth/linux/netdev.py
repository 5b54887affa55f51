"""Moving host network devices into a container's network namespace (the OCI runtime spec's
linux.netDevices), over rtnetlink: the device renamed as it moves, its permanent global addresses
carried over (a move drops them), then set up.

A netlink socket belongs to the network namespace it was made in: the one for the container's
is made in a thread that joins it (setns changes only the calling thread) and used from here.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from berth.linux import syscalls as sc

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR = 16, 17, 18, 20, 22
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP, NLM_F_CREATE, NLM_F_EXCL = 0x1, 0x4, 0x300, 0x400, 0x200
IFLA_IFNAME, IFLA_NET_NS_FD = 3, 28
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
IFA_F_PERMANENT = 0x80
RT_SCOPE_UNIVERSE = 0
IFF_UP = 0x1


class NetlinkError(OSError):
    pass


def _attr(kind: int, data: bytes) -> bytes:
    n = 4 + len(data)
    return struct.pack("HH", n, kind) + data + b"\0" * ((4 - n % 4) % 4)


def _attrs(buf: bytes) -> dict[int, bytes]:
    out = {}
    i = 0
    while i + 4 <= len(buf):
        n, kind = struct.unpack_from("HH", buf, i)
        if n < 4:
            break
        out[kind & 0x3FFF] = buf[i + 4:i + n]
        i += (n + 3) & ~3
    return out


class _Route:
    """An rtnetlink socket (of the calling thread's network namespace when made)."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, kind: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send one message; its answers (type, payload) until the ack or the dump's end."""
        self.seq += 1
        msg = struct.pack("IHHII", 16 + len(body), kind, NLM_F_REQUEST | flags, self.seq, 0) + body
        self.sock.send(msg)
        out = []
        while True:
            data = self.sock.recv(1 << 16)
            i = 0
            while i + 16 <= len(data):
                n, mtype, _f, seq, _pid = struct.unpack_from("IHHII", data, i)
                payload = data[i + 16:i + n]
                i += (n + 3) & ~3
                if seq != self.seq:
                    continue
                if mtype == NLMSG_ERROR:
                    err = -struct.unpack_from("i", payload)[0]
                    if err:
                        raise NetlinkError(err, os.strerror(err))
                    return out
                if mtype == NLMSG_DONE:
                    return out
                out.append((mtype, payload))
            if not flags & (NLM_F_DUMP | NLM_F_ACK):
                return out

    def addresses(self, index: int) -> list[tuple[int, int, int, int, bytes, bytes]]:
        """The permanent addresses of global scope of a link: (family, prefix, flags, scope,
        local, address)."""
        out = []
        for _t, p in self.request(RTM_GETADDR, NLM_F_DUMP, struct.pack("BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0)):
            family, prefix, flags, scope, idx = struct.unpack_from("BBBBI", p)
            if idx != index or scope != RT_SCOPE_UNIVERSE:
                continue
            attrs = _attrs(p[8:])
            if IFA_FLAGS in attrs:
                flags = struct.unpack("I", attrs[IFA_FLAGS][:4])[0]
            if not flags & IFA_F_PERMANENT:
                continue
            out.append((family, prefix, flags, scope, attrs.get(IFA_LOCAL, b""), attrs.get(IFA_ADDRESS, b"")))
        return out

    def add_address(self, index: int, addr: tuple[int, int, int, int, bytes, bytes]) -> None:
        family, prefix, flags, scope, local, address = addr
        body = struct.pack("BBBBI", family, prefix, flags & 0xFF, scope, index)
        if local:
            body += _attr(IFA_LOCAL, local)
        if address:
            body += _attr(IFA_ADDRESS, address)
        body += _attr(IFA_FLAGS, struct.pack("I", flags))
        self.request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def move(self, index: int, netns_fd: int, name: str) -> None:
        body = struct.pack("BxHiII", socket.AF_UNSPEC, 0, index, 0, 0)
        body += _attr(IFLA_NET_NS_FD, struct.pack("I", netns_fd)) + _attr(IFLA_IFNAME, name.encode() + b"\0")
        self.request(RTM_NEWLINK, NLM_F_ACK, body)

    def up(self, index: int) -> None:
        self.request(RTM_NEWLINK, NLM_F_ACK, struct.pack("BxHiII", socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP))

    def index_of(self, name: str) -> int:
        body = struct.pack("BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, name.encode() + b"\0")
        for _t, p in self.request(RTM_GETLINK, 0, body):
            return struct.unpack_from("BxHiII", p)[2]
        raise NetlinkError(errno.ENODEV, os.strerror(errno.ENODEV))

    def name_of(self, index: int) -> str:
        for _t, p in self.request(RTM_GETLINK, 0, struct.pack("BxHiII", socket.AF_UNSPEC, 0, index, 0, 0)):
            return _attrs(p[16:]).get(IFLA_IFNAME, b"").rstrip(b"\0").decode()
        raise NetlinkError(errno.ENODEV, os.strerror(errno.ENODEV))


def delete_link(name: str) -> bool:
    """Delete a link of the calling thread's network namespace by name (a veth: both its ends),
    as `ip link del` does: the kernel answers once it is gone. False if there was none."""
    r = _Route()
    try:
        body = struct.pack("BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, name.encode() + b"\0")
        r.request(RTM_DELLINK, NLM_F_ACK, body)
        return True
    except NetlinkError as e:
        if e.errno == errno.ENODEV:
            return False
        raise
    finally:
        r.close()


def _route_in(netns_path: str) -> _Route:
    """An rtnetlink socket of the network namespace at netns_path."""
    from berth.linux.netns import _in_thread
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)

    def make() -> socket.socket:
        sc.setns(fd, sc.CLONE_NEWNET)
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    try:
        return _Route(_in_thread(make))
    finally:
        os.close(fd)


def move_into(devices: dict[str, str], netns_path: str) -> list[str]:
    """Move each host device (name -> name in the namespace; a `%d` in it lets the kernel number
    it) into the network namespace at netns_path with its permanent global addresses, and set
    it up; the names they got. A failure moves those already moved back (as they were, their
    addresses again) and raises the error (OSError) naming the device."""
    host = _Route()
    target = _route_in(netns_path)
    host_fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    ns_fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    moved: list[tuple[str, int, list]] = []  # (host name, index in the namespace, addresses)
    names = []
    try:
        for hostname, name in devices.items():
            try:
                index = host.index_of(hostname)
            except OSError as e:
                raise OSError(e.errno, f"network device {hostname}: {e.strerror}") from None
            final = name or hostname
            if "%d" not in final:
                try:
                    target.index_of(final)
                    raise NetlinkError(errno.EEXIST, f"network device {final} exists in the container's network "
                                                     "namespace already")
                except NetlinkError as e:
                    if e.errno != errno.ENODEV:
                        raise
            addrs = host.addresses(index)
            try:
                host.move(index, ns_fd, final)
            except OSError as e:
                try:  # a move can be done and its rename fail: the device is there under its host name
                    moved.append((hostname, target.index_of(hostname), addrs))
                except OSError:
                    pass
                raise OSError(e.errno, f"cannot move network device {hostname} into the container's network "
                                       f"namespace as {final}: {e.strerror}") from None
            moved.append((hostname, index, addrs))
            try:
                if "%d" in (name or hostname):  # the kernel numbered it: found by the index, which
                    got = target.name_of(index)  # it keeps where that is free (as in a new namespace)
                else:
                    got = name or hostname
                    index = target.index_of(got)
                    moved[-1] = (hostname, index, addrs)
                for a in addrs:
                    target.add_address(index, a)
                target.up(index)
            except OSError as e:
                raise OSError(e.errno, f"network device {hostname} in the container: {e.strerror}") from None
            names.append(got)
        return names
    except BaseException:
        for hostname, index, addrs in reversed(moved):
            try:
                target.move(index, host_fd, hostname)
                back = host.index_of(hostname)
                for a in addrs:
                    try:
                        host.add_address(back, a)
                    except OSError:
                        pass
            except OSError:
                pass
        raise
    finally:
        os.close(host_fd)
        os.close(ns_fd)
        host.close()
        target.close()
