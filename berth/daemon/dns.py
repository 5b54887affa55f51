"""The embedded DNS server: 127.0.0.11:53 inside each container's network namespace.

Like docker's, it answers the names berth owns (containers, aliases on user-defined
networks) live from the daemon's in-memory state, so containers started later or
restarted resolve at once, and forwards every other query to the upstream servers
from the daemon's own network namespace (so a host resolver on 127.0.0.53 works too).

One EmbeddedDNS serves all containers from berthd's asyncio loop: per container a UDP
socket and a TCP listening socket, both bound to 127.0.0.11:53 inside the container's
network namespace. The sockets are created in a short-lived dedicated thread that
setns()es into the namespace and back (a socket stays in the namespace it was created
in); after that everything runs on the loop, with no thread per query.

Messages are parsed and built with struct only. A malformed query is dropped; a
response to a question berth owns is built here; anything else is relayed from an
upstream unchanged except for the id.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import struct
import threading

from berth.linux import syscalls

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from typing import Any, Callable, Iterable, Optional

    Question = tuple[str, int, int]  # (name as received, qtype, qclass)
    Upstream = tuple[int, tuple[str, int]]  # (address family, sockaddr)
    Lookup = Callable[[str, str], Optional[list[str]]]  # (container id, qname) -> addresses, or None: not ours
    Reverse = Callable[[str, str], Optional[str]]  # (container id, ip) -> name, or None

log = logging.getLogger(__name__)

DNS_ADDR = "127.0.0.11"
DNS_PORT = 53
TTL = 600  # docker's TTL for container records

TYPE_A = 1
TYPE_PTR = 12
TYPE_AAAA = 28
TYPE_OPT = 41
TYPE_ANY = 255
CLASS_IN = 1
CLASS_ANY = 255

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NOTIMP = 4

FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength

MAX_UDP = 4096  # the most we send over UDP, whatever a client's EDNS allows
MAX_FORWARDS = 1024  # forwarded queries in flight at once; beyond that: SERVFAIL
TCP_IDLE = 10.0  # seconds a TCP client may stay silent between queries


class FormatError(ValueError):
    """A malformed DNS message."""


class Query:
    """The parts of a parsed query that the server needs."""

    __slots__ = ("id", "flags", "questions", "question_end", "udp_size")

    def __init__(self, id: int, flags: int, questions: list[Question], question_end: int, udp_size: int) -> None:
        self.id = id
        self.flags = flags
        self.questions = questions  # [(name: str as received, qtype, qclass)]
        self.question_end = question_end  # offset just past the question section
        self.udp_size = udp_size  # 512, or the EDNS payload size

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF


def parse_name(buf: bytes, off: int) -> tuple[str, int]:
    """Read a (possibly compressed) domain name at off: (name without trailing dot, the
    offset just past it in the original position)."""
    labels: list[str] = []
    end: int | None = None
    jumps = 0
    total = 0
    while True:
        if off >= len(buf):
            raise FormatError("name runs past the message")
        n = buf[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(buf):
                raise FormatError("truncated compression pointer")
            if end is None:
                end = off + 2
            jumps += 1
            if jumps > 64:
                raise FormatError("compression loop")
            off = ((n & 0x3F) << 8) | buf[off + 1]
            continue
        if n & 0xC0:
            raise FormatError("unsupported label type")
        label = buf[off + 1:off + 1 + n]
        if len(label) != n:
            raise FormatError("label runs past the message")
        total += n + 1
        if total > 255:
            raise FormatError("name too long")
        labels.append(label.decode("latin-1"))
        off += 1 + n
    return ".".join(labels), (end if end is not None else off)


def encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.rstrip(".").split("."):
        if not label:
            continue
        b = label.encode("idna") if not label.isascii() else label.encode()
        if len(b) > 63:
            raise ValueError(f"dns label too long: {label!r}")
        out.append(len(b))
        out += b
    out.append(0)
    return bytes(out)


def _skip_rr(buf: bytes, off: int) -> tuple[int, int, int, int]:
    """Parse one resource record at off: (type, class, ttl, offset past it)."""
    _, off = parse_name(buf, off)
    if off + _RR_FIXED.size > len(buf):
        raise FormatError("truncated record")
    rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(buf, off)
    off += _RR_FIXED.size + rdlen
    if off > len(buf):
        raise FormatError("truncated rdata")
    return rtype, rclass, ttl, off


def parse_query(buf: bytes) -> Query:
    """Parse a DNS message's header and question section (and find an EDNS OPT record
    for its UDP payload size). Raises FormatError."""
    if len(buf) < _HEADER.size:
        raise FormatError("short header")
    qid, flags, qd, an, ns, ar = _HEADER.unpack_from(buf)
    off = _HEADER.size
    questions: list[Question] = []
    for _ in range(qd):
        name, off = parse_name(buf, off)
        if off + 4 > len(buf):
            raise FormatError("truncated question")
        qtype, qclass = struct.unpack_from("!HH", buf, off)
        off += 4
        questions.append((name, qtype, qclass))
    question_end = off
    udp_size = 512
    try:  # EDNS is tolerated: only its payload size is used; a broken tail is ignored
        for _ in range(an + ns):
            _, _, _, off = _skip_rr(buf, off)
        for _ in range(ar):
            rtype, rclass, _, off = _skip_rr(buf, off)
            if rtype == TYPE_OPT:
                udp_size = max(512, min(rclass, MAX_UDP))
    except FormatError:
        pass
    return Query(qid, flags, questions, question_end, udp_size)


def _rr(rtype: int, rdata: bytes) -> bytes:
    # the owner name is a pointer to the first question's name, at offset 12
    return b"\xc0\x0c" + _RR_FIXED.pack(rtype, CLASS_IN, TTL, len(rdata)) + rdata


def build_response(query: Query, raw: bytes, rcode: int, answers: Iterable[bytes] = (), authoritative: bool = False,
                   max_size: int | None = None) -> bytes:
    """A response to `query` (whose bytes are `raw`): id, opcode, RD and the question
    section echoed as received. answers are encoded records; if they do not fit in
    max_size, as many as fit are sent, with TC set."""
    flags = FLAG_QR | FLAG_RA | (query.flags & (0x7800 | FLAG_RD)) | (rcode & 0xF)
    if authoritative:
        flags |= FLAG_AA
    question = raw[_HEADER.size:query.question_end]
    size = _HEADER.size + len(question)
    kept = []
    for rr in answers:
        if max_size is not None and size + len(rr) > max_size:
            flags |= FLAG_TC
            break
        kept.append(rr)
        size += len(rr)
    header = _HEADER.pack(query.id, flags, len(query.questions), len(kept), 0, 0)
    return b"".join([header, question, *kept])


def _error_response(query: Query, raw: bytes, rcode: int) -> bytes:
    return build_response(query, raw, rcode)


def reverse_name_to_ip(name: str) -> str | None:
    """'4.3.2.1.in-addr.arpa' -> '1.2.3.4'; None for anything else."""
    lname = name.lower()
    if not lname.endswith(".in-addr.arpa"):
        return None
    parts = lname[:-len(".in-addr.arpa")].split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) < 256 for p in parts):
        return None
    return ".".join(str(int(p)) for p in reversed(parts))


def parse_upstream(spec: str) -> Upstream:
    """'1.2.3.4', '1.2.3.4:5353', '::1', '[::1]:5353' -> (family, sockaddr)."""
    spec = spec.strip()
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else DNS_PORT
        return socket.AF_INET6, (host, port)
    if spec.count(":") > 1:
        return socket.AF_INET6, (spec.split("%")[0], DNS_PORT)
    host, _, port = spec.partition(":")  # type: ignore[assignment]  # a str here, the int above
    socket.inet_aton(host)
    return socket.AF_INET, (host, int(port) if port else DNS_PORT)


def resolv_conf_nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    """The nameserver lines of a resolv.conf ([] when it is missing)."""
    servers = []
    try:
        with open(path) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "nameserver":
                    servers.append(fields[1])
    except OSError:
        pass
    return servers


#: the nat chain in each container's namespace that sends 127.0.0.11:53 to the server's ports
NAT_CHAIN = "BERTH-DNS"


def _redirect_rules(udp_port: int, tcp_port: int) -> bytes:
    """iptables-restore input: queries to 127.0.0.11:53 go to the server's own (random) ports, as
    docker's embedded DNS does, so that port 53 stays free for a DNS server of the container's
    own. Replies are translated back by conntrack. The chain is flushed and refilled each time
    (a re-attach after a daemon restart gets new ports); the jump to it is added each time too
    (a duplicate jump is harmless: the first one's DNAT ends the traversal)."""
    return (f"*nat\n:{NAT_CHAIN} - [0:0]\n"
            f"-A {NAT_CHAIN} -p udp --dport {DNS_PORT} -j DNAT --to-destination {DNS_ADDR}:{udp_port}\n"
            f"-A {NAT_CHAIN} -p tcp --dport {DNS_PORT} -j DNAT --to-destination {DNS_ADDR}:{tcp_port}\n"
            f"-A OUTPUT -d {DNS_ADDR}/32 -j {NAT_CHAIN}\n"
            "COMMIT\n").encode()


def _open_sockets_in_netns(netns_path: str) -> tuple[socket.socket, socket.socket]:
    """Runs in a dedicated thread: enter the network namespace, bring lo up, bind the UDP and
    TCP sockets to 127.0.0.11 on free ports, redirect 127.0.0.11:53 to them (iptables-restore,
    started from this thread, so in that namespace), and return to the original namespace."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            syscalls.setns(target, syscalls.CLONE_NEWNET)
            udp: socket.socket | None = None
            tcp: socket.socket | None = None
            try:
                syscalls.link_up("lo")
                udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                udp.bind((DNS_ADDR, 0))
                udp.setblocking(False)
                tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                tcp.bind((DNS_ADDR, 0))
                tcp.listen(128)
                tcp.setblocking(False)
                import subprocess
                p = subprocess.run(["iptables-restore", "-w", "--noflush"],
                                   input=_redirect_rules(udp.getsockname()[1], tcp.getsockname()[1]),
                                   capture_output=True)
                if p.returncode != 0:
                    raise OSError(f"iptables-restore in the container's network namespace: "
                                  f"{p.stderr.decode(errors='replace').strip() or p.returncode}")
            except BaseException:
                for s in (udp, tcp):
                    if s is not None:
                        s.close()
                raise
            finally:
                # if this fails the thread stays in the container's namespace; it is a
                # dedicated thread that ends right after, so nothing else runs there
                syscalls.setns(own, syscalls.CLONE_NEWNET)
            return udp, tcp
        finally:
            os.close(target)
    finally:
        os.close(own)


class _Attachment:
    __slots__ = ("key", "ident", "udp", "server", "tasks", "writers")

    def __init__(self, key: str, ident: tuple[int, int]) -> None:
        self.key = key
        self.ident = ident
        self.udp: asyncio.DatagramTransport | None = None
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.writers: set[asyncio.StreamWriter] = set()


class _UDPServer(asyncio.DatagramProtocol):
    def __init__(self, dns: EmbeddedDNS, att: _Attachment) -> None:
        self.dns = dns
        self.att = att
        self.transport: asyncio.DatagramTransport = None  # type: ignore[assignment]  # set by connection_made

    def connection_made(self, transport: asyncio.DatagramTransport) -> None:  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            result = self.dns._answer(self.att.key, data, udp=True)
        except Exception:  # never let one query take the server down
            log.exception("dns: answering a query failed")
            return
        if result is None:
            return
        if isinstance(result, bytes):
            self.transport.sendto(result, addr)
            return
        task = asyncio.get_running_loop().create_task(self._forward(result, data, addr))
        self.att.tasks.add(task)
        task.add_done_callback(self.att.tasks.discard)

    async def _forward(self, query: Query, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = await self.dns._forward(query, data, tcp=False)
        if reply is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        pass


class _UDPExchange(asyncio.DatagramProtocol):
    def __init__(self, qid: int, fut: asyncio.Future[bytes]) -> None:
        self.qid = qid
        self.fut = fut

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.fut.done() or len(data) < _HEADER.size:
            return
        qid, flags = struct.unpack_from("!HH", data)
        if qid == self.qid and flags & FLAG_QR:
            self.fut.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc or ConnectionError("closed"))


class EmbeddedDNS:
    def __init__(self, lookup: Lookup, upstreams: Iterable[str] | None = None,
                 loop: asyncio.AbstractEventLoop | None = None, reverse: Reverse | None = None, timeout: float = 2.0,
                 resolv_conf: str = "/etc/resolv.conf") -> None:
        """lookup(key, qname) -> list of IPv4 and IPv6 address strings (A and AAAA) when qname
        (lower-case, no trailing dot) is a name berth owns for the container identified by key (empty list
        = ours but no A record), or None when not ours (then forward). reverse(key, ip) ->
        name or None answers PTR queries of in-addr.arpa names. Both are called on the
        event loop thread and must be fast. upstreams: "ip" or "ip:port" ("[v6]:port")
        DNS servers; None = the nameservers of resolv_conf. timeout: seconds to wait for
        one upstream before trying the next."""
        self._lookup = lookup
        self._reverse = reverse
        self._loop = loop
        self._timeout = timeout
        if upstreams is None:
            upstreams = resolv_conf_nameservers(resolv_conf)
        self._upstreams: list[Upstream] = []
        for spec in upstreams:
            try:
                self._upstreams.append(parse_upstream(spec))
            except (ValueError, OSError):
                log.warning("dns: ignoring upstream %r", spec)
        self._attached: dict[str, _Attachment] = {}
        self._lock: asyncio.Lock | None = None
        self._inflight = 0

    @property
    def upstreams(self) -> list[Upstream]:
        return list(self._upstreams)

    def attached(self) -> list[str]:
        return list(self._attached)

    # -- attach / detach ------------------------------------------------------------

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def attach(self, key: str, netns_path: str) -> None:
        """Serve 127.0.0.11:53 (UDP and TCP) inside the network namespace at netns_path
        for the container `key`. Idempotent: attaching the same key to the same namespace
        again does nothing; to a different namespace (a restarted container), moves it."""
        loop = self._get_loop()
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            st = os.stat(netns_path)
            ident = (st.st_dev, st.st_ino)
            cur = self._attached.get(key)
            if cur is not None:
                if cur.ident == ident:
                    return
                self.detach(key)
            udp: socket.socket | None
            tcp: socket.socket | None
            udp, tcp = await self._sockets_in_netns(loop, netns_path)
            att = _Attachment(key, ident)
            try:
                att.udp, _ = await loop.create_datagram_endpoint(lambda: _UDPServer(self, att), sock=udp)
                udp = None
                att.server = await asyncio.start_server(
                    lambda r, w: self._serve_tcp(att, r, w), sock=tcp)
                tcp = None
            except BaseException:
                self._close_attachment(att)
                for s in (udp, tcp):
                    if s is not None:
                        s.close()
                raise
            self._attached[key] = att

    @staticmethod
    async def _sockets_in_netns(loop: asyncio.AbstractEventLoop, netns_path: str) -> tuple[socket.socket, socket.socket]:
        fut: asyncio.Future[tuple[socket.socket, socket.socket]] = loop.create_future()

        def deliver(result: tuple[socket.socket, socket.socket] | None, exc: BaseException | None) -> None:
            if fut.cancelled():
                if result:
                    for s in result:
                        s.close()
            elif exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)  # type: ignore[arg-type]  # a result when no exception

        def run() -> None:
            try:
                result = _open_sockets_in_netns(netns_path)
            except BaseException as e:
                loop.call_soon_threadsafe(deliver, None, e)
            else:
                loop.call_soon_threadsafe(deliver, result, None)

        threading.Thread(target=run, name="berth-dns-netns", daemon=True).start()
        return await fut

    def detach(self, key: str) -> None:
        """Stop serving that container: close its sockets and connections (a no-op for
        an unknown key)."""
        att = self._attached.pop(key, None)
        if att is not None:
            self._close_attachment(att)

    @staticmethod
    def _close_attachment(att: _Attachment) -> None:
        if att.udp is not None:
            att.udp.close()
        if att.server is not None:
            att.server.close()
        for w in list(att.writers):
            w.close()
        for t in list(att.tasks):
            t.cancel()

    async def close(self) -> None:
        atts = list(self._attached.values())
        for key in list(self._attached):
            self.detach(key)
        tasks = [t for att in atts for t in att.tasks]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for att in atts:
            if att.server is not None:
                try:
                    await asyncio.wait_for(att.server.wait_closed(), 1)
                except (asyncio.TimeoutError, Exception):
                    pass

    # -- answering --------------------------------------------------------------------

    def _answer(self, key: str, data: bytes, udp: bool) -> bytes | Query | None:
        """The response bytes for a query berth answers itself, None to drop it, or the
        parsed Query when it must be forwarded."""
        try:
            query = parse_query(data)
        except FormatError:
            return None
        if query.flags & FLAG_QR:
            return None  # a response, not a query: never answer (no loops)
        if query.opcode != 0:
            return _error_response(query, data, RCODE_NOTIMP)
        if len(query.questions) != 1:
            return _error_response(query, data, RCODE_FORMERR)
        name, qtype, qclass = query.questions[0]
        if qclass not in (CLASS_IN, CLASS_ANY):
            return query
        lname = name.lower().rstrip(".")
        max_size = query.udp_size if udp else None
        try:
            if qtype == TYPE_PTR and self._reverse is not None:
                ip = reverse_name_to_ip(lname)
                if ip is not None:
                    host = self._reverse(key, ip)
                    if host:
                        rr = _rr(TYPE_PTR, encode_name(host))
                        return build_response(query, data, RCODE_NOERROR, [rr], False, max_size)
            addrs = self._lookup(key, lname)
        except Exception:
            log.exception("dns: lookup of %r failed", lname)
            return _error_response(query, data, RCODE_SERVFAIL)
        if addrs is None:
            return query
        answers: list[bytes] = []
        for ip in addrs:  # IPv4 addresses answer A, IPv6 ones (dual-stack networks) AAAA
            v6 = ":" in ip
            if qtype in ((TYPE_AAAA if v6 else TYPE_A), TYPE_ANY):
                try:
                    answers.append(_rr(TYPE_AAAA, socket.inet_pton(socket.AF_INET6, ip)) if v6 else
                                   _rr(TYPE_A, socket.inet_aton(ip)))
                except OSError:
                    log.warning("dns: not an IP address for %r: %r", lname, ip)
        # not authoritative, as dockerd's resolver answers (a client says "Non-authoritative answer")
        return build_response(query, data, RCODE_NOERROR, answers, False, max_size)

    async def _forward(self, query: Query, data: bytes, tcp: bool) -> bytes:
        """Relay the query to the upstreams in turn; the first reply, with the client's
        id, or SERVFAIL when there is none."""
        if not self._upstreams or self._inflight >= MAX_FORWARDS:
            return _error_response(query, data, RCODE_SERVFAIL)
        self._inflight += 1
        try:
            for family, addr in self._upstreams:
                qid = secrets.randbits(16)
                msg = struct.pack("!H", qid) + data[2:]
                try:
                    if tcp:
                        reply = await asyncio.wait_for(self._exchange_tcp(family, addr, msg, qid), self._timeout)
                    else:
                        reply = await asyncio.wait_for(self._exchange_udp(family, addr, msg, qid), self._timeout)
                except (OSError, EOFError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                    log.debug("dns: upstream %s failed: %r", addr, e)
                    continue
                return data[:2] + reply[2:]
            return _error_response(query, data, RCODE_SERVFAIL)
        finally:
            self._inflight -= 1

    async def _exchange_udp(self, family: int, addr: tuple[str, int], msg: bytes, qid: int) -> bytes:
        loop = asyncio.get_running_loop()
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(addr)  # only replies from the upstream get through
        except BaseException:
            sock.close()
            raise
        fut: asyncio.Future[bytes] = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(lambda: _UDPExchange(qid, fut), sock=sock)
        try:
            transport.sendto(msg)
            return await fut
        finally:
            transport.close()

    @staticmethod
    async def _exchange_tcp(family: int, addr: tuple[str, int], msg: bytes, qid: int) -> bytes:
        reader, writer = await asyncio.open_connection(addr[0], addr[1], family=family)
        try:
            writer.write(struct.pack("!H", len(msg)) + msg)
            await writer.drain()
            while True:
                (n,) = struct.unpack("!H", await reader.readexactly(2))
                reply = await reader.readexactly(n)
                if len(reply) >= _HEADER.size and struct.unpack_from("!H", reply)[0] == qid:
                    return reply
        finally:
            writer.close()

    async def _serve_tcp(self, att: _Attachment, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        att.writers.add(writer)
        try:
            while True:
                (n,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), TCP_IDLE))
                data = await asyncio.wait_for(reader.readexactly(n), TCP_IDLE)
                result = self._answer(att.key, data, udp=False)
                if result is None:
                    break  # malformed: close the connection
                if not isinstance(result, bytes):
                    result = await self._forward(result, data, tcp=True)
                writer.write(struct.pack("!H", len(result)) + result)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, OSError):
            pass
        except Exception:
            log.exception("dns: tcp connection failed")
        finally:
            att.writers.discard(writer)
            writer.close()
