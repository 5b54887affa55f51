"""The host as a daemon sees it from outside its containers: whether a unix socket is served,
and the node's address (the one a Kubernetes node advertises)."""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891b


def socket_alive(path: str, timeout: float = 1.0) -> bool:
    """Whether something accepts connections on the unix socket at path (a daemon serving it;
    a file left by a dead one refuses them)."""
    s = socket.socket(socket.AF_UNIX)
    try:
        s.settimeout(timeout)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class NoDefaultRoute(OSError):
    pass


def node_address(route: str = "/proc/net/route", ipv6_route: str = "/proc/net/ipv6_route",
                 if_inet6: str = "/proc/net/if_inet6") -> str:
    """The node's IP as Kubernetes chooses it (apimachinery's ChooseHostInterface, which
    containerd's CRI uses for an empty stream_server_address): the global unicast address of the
    interface of the first IPv4 default route that has one, else of an IPv6 default route.
    NoDefaultRoute (with their words) when there is none."""
    v4 = _default_route_interfaces(route, v6=False)
    v6 = _default_route_interfaces(ipv6_route, v6=True)
    if not v4 and not v6:
        raise NoDefaultRoute(f'no default routes found in "{route}" or "{ipv6_route}"')
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    for ifname in v4:
        addr = _ipv4_of(ifname)
        if addr is not None and _global_unicast(addr):
            return str(addr)
    for ifname in v6:
        for addr in _ipv6_of(ifname, if_inet6):
            if _global_unicast(addr):
                return str(addr)
    raise NoDefaultRoute("unable to select an IP from default routes.")


def _global_unicast(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Go's IP.IsGlobalUnicast (private ranges included, unlike ipaddress's is_global)."""
    return not (addr.is_unspecified or addr.is_loopback or addr.is_multicast or addr.is_link_local
                or addr == ipaddress.IPv4Address("255.255.255.255"))


def _default_route_interfaces(path: str, v6: bool) -> list[str]:
    out: list[str] = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines if v6 else lines[1:]:
        p = line.split()
        try:
            if v6:  # dest, dest prefix, src, src prefix, next hop, metric, refcnt, use, flags, iface
                if int(p[1], 16) == 0 and int(p[0], 16) == 0 and p[9] != "lo":
                    out.append(p[9])
            elif int(p[1], 16) == 0 and int(p[7], 16) == 0:  # Iface Destination ... Mask
                out.append(p[0])
        except (IndexError, ValueError):
            continue
    return list(dict.fromkeys(out))


def _ipv4_of(ifname: str) -> ipaddress.IPv4Address | None:
    iface = ipv4_interface(ifname)
    return iface.ip if iface is not None else None


def ipv4_interface(ifname: str) -> ipaddress.IPv4Interface | None:
    """An interface's (first) IPv4 address with its prefix; None when it has none (or is not)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("256s", ifname.encode()[:15])
        addr = fcntl.ioctl(s.fileno(), SIOCGIFADDR, req)[20:24]
        mask = fcntl.ioctl(s.fileno(), SIOCGIFNETMASK, req)[20:24]
        return ipaddress.IPv4Interface(f"{ipaddress.IPv4Address(addr)}/{ipaddress.IPv4Address(mask)}")
    except (OSError, ValueError):
        return None
    finally:
        s.close()


def _ipv6_of(ifname: str, path: str) -> list[ipaddress.IPv6Address]:
    out: list[ipaddress.IPv6Address] = []
    try:
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) >= 6 and p[5] == ifname:
                    out.append(ipaddress.IPv6Address(bytes.fromhex(p[0])))
    except (OSError, ValueError):
        pass
    return out
