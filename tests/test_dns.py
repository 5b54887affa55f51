"""The embedded DNS server, for real: an EmbeddedDNS on an asyncio loop in a background
thread, attached to throwaway network namespaces (ip netns add), queried from inside them
with busybox nslookup and with a small raw client. Upstreams are tiny responders of the
test's own on 127.0.0.1; no DNS goes anywhere else."""

import asyncio
import os
import socket
import struct
import subprocess
import threading
import time
import uuid

import pytest

from berth.daemon.dns import EmbeddedDNS
from berth.linux import syscalls

BUSYBOX = "/bin/busybox"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


# -- infrastructure ---------------------------------------------------------------------


class LoopThread:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn, *args):
        async def _c():
            return fn(*args)
        return self.run(_c())

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def loop_thread():
    lt = LoopThread()
    yield lt
    lt.stop()


@pytest.fixture
def make_netns():
    names = []

    def make():
        name = f"bdns-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        names.append(name)
        return name

    yield make
    for name in names:
        subprocess.run(["ip", "netns", "del", name], check=False)


class Table:
    """The daemon's view in miniature: per key, name -> IPs, and ip -> name."""

    def __init__(self):
        self.names = {}
        self.ptr = {}
        self.calls = []

    def lookup(self, key, qname):
        self.calls.append((key, qname, threading.get_ident()))
        return self.names.get(key, {}).get(qname)

    def reverse(self, key, ip):
        return self.ptr.get(key, {}).get(ip)


@pytest.fixture
def dns_server(loop_thread):
    """(table, start(upstreams=..., timeout=...)) -> EmbeddedDNS on the background loop."""
    table = Table()
    servers = []

    def start(upstreams=(), timeout=0.5):
        dns = EmbeddedDNS(table.lookup, upstreams=list(upstreams), loop=loop_thread.loop,
                          reverse=table.reverse, timeout=timeout)
        servers.append(dns)
        return dns

    yield table, start
    for dns in servers:
        loop_thread.run(dns.close())


def attach(loop_thread, dns, key, netns):
    loop_thread.run(dns.attach(key, f"/run/netns/{netns}"))


def socket_in_netns(netns, family, type_):
    """A socket created inside the named netns (setns in a throwaway thread)."""
    out = {}

    def run():
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
        try:
            syscalls.setns(target, syscalls.CLONE_NEWNET)
            try:
                out["sock"] = socket.socket(family, type_)
            finally:
                syscalls.setns(own, syscalls.CLONE_NEWNET)
        except BaseException as e:
            out["exc"] = e
        finally:
            os.close(own)
            os.close(target)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "exc" in out:
        raise out["exc"]
    return out["sock"]


# -- a minimal DNS client, independent of the server's code -------------------------------

A, PTR, AAAA, TXT = 1, 12, 28, 16


def qname_bytes(name):
    return b"".join(bytes([len(p)]) + p.encode() for p in name.strip(".").split(".") if p) + b"\0"


def make_query(name, qtype=A, qid=0x1234, edns=False):
    msg = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0)
    msg += qname_bytes(name) + struct.pack("!HH", qtype, 1)
    if edns:
        msg += b"\0" + struct.pack("!HHIH", 41, 1232, 0, 0)
    return msg


def read_name(buf, off):
    labels, end = [], None
    while True:
        n = buf[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0 == 0xC0:
            end = end or off + 2
            off = ((n & 0x3F) << 8) | buf[off + 1]
            continue
        labels.append(buf[off + 1:off + 1 + n].decode())
        off += 1 + n
    return ".".join(labels), end or off


def parse_response(buf):
    qid, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", buf)
    off = 12
    questions = []
    for _ in range(qd):
        name, off = read_name(buf, off)
        qtype, qclass = struct.unpack_from("!HH", buf, off)
        off += 4
        questions.append((name, qtype))
    answers = []
    for _ in range(an):
        name, off = read_name(buf, off)
        rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", buf, off)
        off += 10
        rdata = buf[off:off + rdlen]
        if rtype == A:
            value = socket.inet_ntoa(rdata)
        elif rtype == PTR:
            value = read_name(buf, off)[0]
        elif rtype == TXT:
            value = rdata[1:1 + rdata[0]].decode()
        else:
            value = rdata
        off += rdlen
        answers.append((name, rtype, ttl, value))
    return {"id": qid, "flags": flags, "rcode": flags & 0xF, "questions": questions, "answers": answers,
            "qr": bool(flags & 0x8000), "aa": bool(flags & 0x0400), "rd": bool(flags & 0x0100),
            "ra": bool(flags & 0x0080), "tc": bool(flags & 0x0200)}


def query(netns, name, qtype=A, tcp=False, timeout=3, raw=None, qid=0x1234):
    msg = raw if raw is not None else make_query(name, qtype, qid)
    if tcp:
        s = socket_in_netns(netns, socket.AF_INET, socket.SOCK_STREAM)
        with s:
            s.settimeout(timeout)
            s.connect(("127.0.0.11", 53))
            s.sendall(struct.pack("!H", len(msg)) + msg)
            hdr = _recv_exact(s, 2)
            return parse_response(_recv_exact(s, struct.unpack("!H", hdr)[0]))
    s = socket_in_netns(netns, socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.settimeout(timeout)
        s.sendto(msg, ("127.0.0.11", 53))
        return parse_response(s.recv(65535))


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def nslookup(netns, name, qtype=None):
    cmd = ["ip", "netns", "exec", netns, BUSYBOX, "nslookup"]
    if qtype:
        cmd.append(f"-type={qtype}")
    cmd += [name, "127.0.0.11"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


# -- a fake upstream on 127.0.0.1 ------------------------------------------------------------


class Upstream:
    """A tiny DNS responder on 127.0.0.1:<port> (UDP and TCP) in the host namespace:
    'example.test' A -> 192.0.2.55 (TTL 1234, AA set); everything else NXDOMAIN.
    silent=True: receives and never answers."""

    def __init__(self, silent=False):
        self.silent = silent
        self.seen = []
        for _ in range(20):
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind(("127.0.0.1", 0))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.tcp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
        self.tcp.listen(8)
        self.udp.settimeout(0.2)
        self.tcp.settimeout(0.2)
        self.stopping = False
        self.threads = [threading.Thread(target=self._serve_udp, daemon=True),
                        threading.Thread(target=self._serve_tcp, daemon=True)]
        for t in self.threads:
            t.start()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def respond(self, msg):
        qid, flags = struct.unpack_from("!HH", msg)
        name, off = read_name(msg, 12)
        qtype = struct.unpack_from("!H", msg, off)[0]
        question = msg[12:off + 4]
        self.seen.append((name, qtype, qid))
        if name.lower() == "example.test" and qtype == A:
            rr = b"\xc0\x0c" + struct.pack("!HHIH", A, 1, 1234, 4) + socket.inet_aton("192.0.2.55")
            return struct.pack("!HHHHHH", qid, 0x8580, 1, 1, 0, 0) + question + rr
        return struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question

    def _serve_udp(self):
        while not self.stopping:
            try:
                msg, addr = self.udp.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            reply = self.respond(msg)
            if not self.silent:
                self.udp.sendto(reply, addr)

    def _serve_tcp(self):
        while not self.stopping:
            try:
                conn, _ = self.tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    n = struct.unpack("!H", _recv_exact(conn, 2))[0]
                    reply = self.respond(_recv_exact(conn, n))
                    if not self.silent:
                        conn.sendall(struct.pack("!H", len(reply)) + reply)
                except (OSError, EOFError):
                    pass

    def close(self):
        self.stopping = True
        for t in self.threads:
            t.join(2)
        self.udp.close()
        self.tcp.close()


@pytest.fixture
def upstream():
    up = Upstream()
    yield up
    up.close()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- tests ------------------------------------------------------------------------------------


def test_owned_name_resolves_with_busybox_and_raw_client(loop_thread, dns_server, make_netns):
    table, start = dns_server
    ns = make_netns()
    table.names["c1"] = {"web": ["10.88.0.5"], "web-alias": ["10.88.0.5", "10.89.0.7"]}
    dns = start()
    attach(loop_thread, dns, "c1", ns)

    out = nslookup(ns, "web")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "10.88.0.5" in out.stdout

    r = query(ns, "web")
    # not authoritative: dockerd's resolver leaves AA unset (nslookup says "Non-authoritative answer")
    assert r["id"] == 0x1234 and r["qr"] and not r["aa"] and r["rd"] and r["ra"]
    assert r["rcode"] == 0
    assert r["questions"] == [("web", A)]
    assert r["answers"] == [("web", A, 600, "10.88.0.5")]

    r = query(ns, "WEB-Alias", qid=0xBEEF)
    assert r["id"] == 0xBEEF
    assert r["questions"] == [("WEB-Alias", A)]  # echoed as asked
    assert sorted(a[3] for a in r["answers"]) == ["10.88.0.5", "10.89.0.7"]
    # lookup got the lower-cased name, on the loop's thread
    assert ("c1", "web-alias", loop_thread.thread.ident) in table.calls


def test_loopback_is_brought_up(loop_thread, dns_server, make_netns):
    table, start = dns_server
    ns = make_netns()
    out = subprocess.run(["ip", "-netns", ns, "link", "show", "lo"], capture_output=True, text=True, check=True)
    assert "state DOWN" in out.stdout or ",UP" not in out.stdout
    attach(loop_thread, start(), "c1", ns)
    out = subprocess.run(["ip", "-netns", ns, "-o", "addr", "show", "lo"], capture_output=True, text=True, check=True)
    assert "127.0.0.1/8" in out.stdout


def test_names_added_later_are_answered_without_reattaching(loop_thread, dns_server, make_netns):
    table, start = dns_server
    ns = make_netns()
    table.names["c1"] = {"web": ["10.88.0.5"]}
    dns = start()
    attach(loop_thread, dns, "c1", ns)
    assert query(ns, "db")["rcode"] == 2  # not ours, no upstream: SERVFAIL

    table.names["c1"]["db"] = ["10.88.0.9"]  # a container started later
    table.names["c1"]["web"] = ["10.88.0.6"]  # restarted with a new address
    assert query(ns, "db")["answers"] == [("db", A, 600, "10.88.0.9")]
    assert query(ns, "web")["answers"] == [("web", A, 600, "10.88.0.6")]
    out = nslookup(ns, "db")
    assert "10.88.0.9" in out.stdout, out.stdout + out.stderr

    attach(loop_thread, dns, "c1", ns)  # idempotent
    assert query(ns, "db")["answers"][0][3] == "10.88.0.9"


def test_aaaa_and_other_types_of_owned_names_are_empty_noerror(loop_thread, dns_server, make_netns):
    table, start = dns_server
    ns = make_netns()
    table.names["c1"] = {"web": ["10.88.0.5"], "stopped": []}
    attach(loop_thread, start(), "c1", ns)
    for qtype in (AAAA, TXT, 15):
        r = query(ns, "web", qtype)
        assert (r["rcode"], r["answers"], r["aa"]) == (0, [], False)
    r = query(ns, "stopped", A)
    assert (r["rcode"], r["answers"]) == (0, [])


def test_ptr_for_containers(loop_thread, dns_server, make_netns, upstream):
    table, start = dns_server
    ns = make_netns()
    table.names["c1"] = {"web": ["10.88.0.5"]}
    table.ptr["c1"] = {"10.88.0.5": "web.mynet"}
    attach(loop_thread, start([upstream.addr]), "c1", ns)
    r = query(ns, "5.0.88.10.in-addr.arpa", PTR)
    assert r["rcode"] == 0 and not r["aa"]
    assert r["answers"] == [("5.0.88.10.in-addr.arpa", PTR, 600, "web.mynet")]
    out = nslookup(ns, "10.88.0.5")
    assert "web.mynet" in out.stdout, out.stdout + out.stderr
    # an address berth does not know is forwarded
    r = query(ns, "9.9.88.10.in-addr.arpa", PTR)
    assert r["rcode"] == 3
    assert ("9.9.88.10.in-addr.arpa", PTR) in [(n, t) for n, t, _ in upstream.seen]


def test_unknown_names_are_forwarded_to_the_upstream(loop_thread, dns_server, make_netns, upstream):
    table, start = dns_server
    ns = make_netns()
    table.names["c1"] = {"web": ["10.88.0.5"]}
    attach(loop_thread, start([upstream.addr]), "c1", ns)
    r = query(ns, "example.test", qid=0x4242)
    assert r["id"] == 0x4242
    assert r["rcode"] == 0 and r["aa"]  # the upstream's flags, relayed
    assert r["answers"] == [("example.test", A, 1234, "192.0.2.55")]
    # the upstream saw the query under another id, not the client's
    assert upstream.seen[-1][:2] == ("example.test", A)
    r = query(ns, "nothing.test")
    assert r["rcode"] == 3 and r["answers"] == []
    out = nslookup(ns, "example.test")
    assert "192.0.2.55" in out.stdout, out.stdout + out.stderr
    # owned names are never forwarded
    n = len(upstream.seen)
    assert query(ns, "web")["answers"][0][3] == "10.88.0.5"
    assert len(upstream.seen) == n


def test_next_upstream_is_tried_then_servfail(loop_thread, dns_server, make_netns, upstream):
    table, start = dns_server
    ns = make_netns()
    silent = Upstream(silent=True)
    try:
        # a dead port (refused at once) and a silent one (times out), then a good one
        attach(loop_thread, start([f"127.0.0.1:{free_port()}", silent.addr, upstream.addr], timeout=0.5), "c1", ns)
        r = query(ns, "example.test")
        assert r["answers"][0][3] == "192.0.2.55"
        assert silent.seen and silent.seen[-1][0] == "example.test"

        ns2 = make_netns()
        attach(loop_thread, start([f"127.0.0.1:{free_port()}", silent.addr], timeout=0.5), "c2", ns2)
        r = query(ns2, "example.test", qid=0x7777)
        assert (r["id"], r["rcode"], r["answers"]) == (0x7777, 2, [])
        assert r["questions"] == [("example.test", A)]
    finally:
        silent.close()


def test_tcp_queries(loop_thread, dns_server, make_netns, upstream):
    table, start = dns_server
    ns = make_netns()
    table.names["c1"] = {"web": ["10.88.0.%d" % i for i in range(1, 60)]}
    attach(loop_thread, start([upstream.addr]), "c1", ns)
    r = query(ns, "web", tcp=True)
    assert r["rcode"] == 0 and not r["tc"] and len(r["answers"]) == 59
    # over UDP without EDNS the same answer does not fit 512 bytes: truncated
    r = query(ns, "web")
    assert r["tc"] and 0 < len(r["answers"]) < 59
    # forwarded over TCP
    r = query(ns, "example.test", tcp=True, qid=0x0102)
    assert r["id"] == 0x0102 and r["answers"] == [("example.test", A, 1234, "192.0.2.55")]
    # several queries on one connection
    s = socket_in_netns(ns, socket.AF_INET, socket.SOCK_STREAM)
    with s:
        s.settimeout(3)
        s.connect(("127.0.0.11", 53))
        for qid in (1, 2, 3):
            msg = make_query("web", A, qid)
            s.sendall(struct.pack("!H", len(msg)) + msg)
            resp = parse_response(_recv_exact(s, struct.unpack("!H", _recv_exact(s, 2))[0]))
            assert resp["id"] == qid and len(resp["answers"]) == 59


def test_edns_is_tolerated(loop_thread, dns_server, make_netns):
    table, start = dns_server
    ns = make_netns()
    table.names["c1"] = {"web": ["10.88.0.%d" % i for i in range(1, 60)]}
    attach(loop_thread, start(), "c1", ns)
    r = query(ns, "web", raw=make_query("web", A, 9, edns=True))
    assert r["id"] == 9 and r["rcode"] == 0 and not r["tc"] and len(r["answers"]) == 59


def test_malformed_packets_do_not_kill_the_server(loop_thread, dns_server, make_netns):
    table, start = dns_server
    ns = make_netns()
    table.names["c1"] = {"web": ["10.88.0.5"]}
    attach(loop_thread, start(), "c1", ns)
    good = make_query("web")
    junk = [
        b"",
        b"\x00",
        b"\x12\x34\x01\x00\x00\x01",  # short header
        good[:15],  # truncated question
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # pointer loop
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3f" + b"a" * 10,  # label past end
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x80abc\x00\x00\x01\x00\x01",  # bad label type
        b"\x12\x34\x81\x80" + good[4:],  # a response, not a query
        os.urandom(300),
    ]
    s = socket_in_netns(ns, socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.settimeout(0.1)
        for j in junk:
            s.sendto(j, ("127.0.0.11", 53))
            try:  # dropped, or (random bytes) an error response: never a crash
                s.recv(4096)
            except socket.timeout:
                pass
    # malformed over TCP closes that connection only
    t = socket_in_netns(ns, socket.AF_INET, socket.SOCK_STREAM)
    with t:
        t.settimeout(3)
        t.connect(("127.0.0.11", 53))
        t.sendall(b"\x00\x05hello")
        assert t.recv(10) == b""
    assert query(ns, "web")["answers"] == [("web", A, 600, "10.88.0.5")]
    assert query(ns, "web", tcp=True)["answers"] == [("web", A, 600, "10.88.0.5")]
    # multiple questions: FORMERR; opcode other than QUERY: NOTIMP
    two = struct.pack("!HHHHHH", 5, 0x0100, 2, 0, 0, 0) + qname_bytes("web") + b"\0\1\0\1" + qname_bytes("web") + b"\0\1\0\1"
    assert query(ns, "", raw=two)["rcode"] == 1
    notify = struct.pack("!HHHHHH", 6, 0x2000, 1, 0, 0, 0) + qname_bytes("web") + b"\0\1\0\1"
    assert query(ns, "", raw=notify)["rcode"] == 4


def test_detach_stops_answering(loop_thread, dns_server, make_netns):
    table, start = dns_server
    ns = make_netns()
    table.names["c1"] = {"web": ["10.88.0.5"]}
    dns = start()
    attach(loop_thread, dns, "c1", ns)
    assert query(ns, "web")["answers"]
    loop_thread.call(dns.detach, "c1")
    assert loop_thread.call(dns.attached) == []
    with pytest.raises((socket.timeout, ConnectionRefusedError)):
        query(ns, "web", timeout=0.5)
    with pytest.raises(ConnectionRefusedError):
        query(ns, "web", tcp=True, timeout=0.5)
    loop_thread.call(dns.detach, "c1")  # twice is fine
    attach(loop_thread, dns, "c1", ns)  # and back
    assert query(ns, "web")["answers"]
    assert query(ns, "web", tcp=True)["answers"]


def test_two_namespaces_get_their_own_answers(loop_thread, dns_server, make_netns):
    table, start = dns_server
    ns1, ns2 = make_netns(), make_netns()
    table.names["c1"] = {"db": ["10.1.0.2"]}
    table.names["c2"] = {"db": ["10.2.0.2"]}
    dns = start()
    attach(loop_thread, dns, "c1", ns1)
    attach(loop_thread, dns, "c2", ns2)
    assert query(ns1, "db")["answers"][0][3] == "10.1.0.2"
    assert query(ns2, "db")["answers"][0][3] == "10.2.0.2"
    assert "10.2.0.2" in nslookup(ns2, "db").stdout
    loop_thread.call(dns.detach, "c1")
    assert query(ns2, "db")["answers"][0][3] == "10.2.0.2"


def test_reattach_to_a_new_namespace_moves_the_key(loop_thread, dns_server, make_netns):
    table, start = dns_server
    ns1, ns2 = make_netns(), make_netns()
    table.names["c1"] = {"web": ["10.88.0.5"]}
    dns = start()
    attach(loop_thread, dns, "c1", ns1)
    attach(loop_thread, dns, "c1", ns2)  # the container restarted in a new netns
    assert query(ns2, "web")["answers"][0][3] == "10.88.0.5"
    with pytest.raises((socket.timeout, ConnectionRefusedError)):
        query(ns1, "web", timeout=0.5)


def test_attach_to_a_missing_netns_fails_and_leaves_the_loop_thread_alone(loop_thread, dns_server):
    table, start = dns_server
    dns = start()
    with pytest.raises(FileNotFoundError):
        loop_thread.run(dns.attach("c1", "/run/netns/bdns-does-not-exist"))
    own = os.readlink("/proc/self/ns/net")
    assert loop_thread.run(asyncio.to_thread(os.readlink, "/proc/thread-self/ns/net")) == own


def test_default_upstreams_come_from_resolv_conf(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# x\nnameserver 127.0.0.53\nnameserver ::1\nsearch example\nnameserver 10.0.0.1\n")
    dns = EmbeddedDNS(lambda k, n: None, resolv_conf=str(conf))
    assert dns.upstreams == [(socket.AF_INET, ("127.0.0.53", 53)), (socket.AF_INET6, ("::1", 53)),
                             (socket.AF_INET, ("10.0.0.1", 53))]
    dns = EmbeddedDNS(lambda k, n: None, upstreams=["127.0.0.1:5300", "[::1]:5301", "bogus"])
    assert dns.upstreams == [(socket.AF_INET, ("127.0.0.1", 5300)), (socket.AF_INET6, ("::1", 5301))]


def test_a_slow_upstream_does_not_hold_up_other_queries(loop_thread, dns_server, make_netns):
    table, start = dns_server
    ns = make_netns()
    table.names["c1"] = {"web": ["10.88.0.5"]}
    silent = Upstream(silent=True)
    try:
        attach(loop_thread, start([silent.addr], timeout=2.0), "c1", ns)
        s = socket_in_netns(ns, socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            s.settimeout(5)
            s.sendto(make_query("slow.test", A, 1), ("127.0.0.11", 53))  # waits on the upstream
            t0 = time.monotonic()
            for i in range(200):
                s.sendto(make_query("web", A, 1000 + i), ("127.0.0.11", 53))
                assert parse_response(s.recv(4096))["id"] == 1000 + i
            assert time.monotonic() - t0 < 1.5
            r = parse_response(s.recv(4096))  # the forwarded one, after ~2 s
            assert (r["id"], r["rcode"]) == (1, 2)
    finally:
        silent.close()


def test_port_53_stays_free_for_the_containers_own_dns_server(loop_thread, dns_server, make_netns):
    """As docker's: the server listens on other ports and 127.0.0.11:53 is redirected to them, so
    a DNS server of the container's own can bind port 53 before or after the attach."""
    table, start = dns_server
    ns = make_netns()
    subprocess.run(["ip", "-netns", ns, "link", "set", "lo", "up"], check=True)
    taken = socket_in_netns(ns, socket.AF_INET, socket.SOCK_DGRAM)
    with taken:
        taken.bind(("0.0.0.0", 53))  # e.g. a DNS server of the container's own, there first
        dns = start()
        attach(loop_thread, dns, "c1", ns)
        assert loop_thread.call(dns.attached) == ["c1"]
        table.names["c1"] = {"web": ["10.88.0.5"]}
        assert query(ns, "web")["answers"]  # 127.0.0.11:53 reaches berth's server, not the other
    after = socket_in_netns(ns, socket.AF_INET, socket.SOCK_STREAM)
    with after:
        after.bind(("0.0.0.0", 53))  # and one started after the attach can have the port too
    rules = subprocess.run(["ip", "netns", "exec", ns, "iptables-save", "-t", "nat"], capture_output=True,
                           text=True).stdout
    assert "-A OUTPUT -d 127.0.0.11/32 -j BERTH-DNS" in rules
    table.names["c1"] = {"web": ["10.88.0.5"]}
    assert query(ns, "web", tcp=True)["answers"]
