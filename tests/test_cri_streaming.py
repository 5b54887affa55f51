"""The CRI streaming server (exec, attach, port-forward URLs) as Kubernetes clients use it.

Two levels:
- the protocol, with a SPDY/3.1 client of this file's own (framing, zlib header blocks with
  SPDY's dictionary, stream lifecycles, remotecommand v2-v4 and portforward.k8s.io) against a
  StreamingServer over the containers of a real berthd (in its k8s.io namespace);
- the real crictl v1.26.1 against berthd's CRI: exec (-i -t, -s, exit codes), attach,
  port-forward (skipped with a reason when crictl or berthd's CRI is absent).
"""

import asyncio
import json
import os
import pty
import select
import shutil
import socket
import struct
import subprocess
import threading
import time
import zlib

import pytest
from daemon_fixtures import DATA, REPO, Daemon, _alive, lo_only_cni, wait_for
from peer_containerd import ContainerdCRI

IMG = "busybox-layers:1"
V4, V3, V2 = "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io"


# --- a SPDY/3.1 client -------------------------------------------------------------------------

def _spdy_dictionary():
    """SPDY/3's zlib dictionary (draft 3, 2.6.10.1), written out again here on purpose: the
    client does not share the server's code."""
    names = ["options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
             "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
             "content-base", "content-encoding", "content-language", "content-length", "content-location",
             "content-md5", "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host",
             "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified",
             "location", "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
             "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via",
             "warning", "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
             "public", "set-cookie", "keep-alive", "origin"]
    d = b"".join(struct.pack(">I", len(n)) + n.encode() for n in names)
    d += (b"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
          b"203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
          b"401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
          b"503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
          b"Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
          b"application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
          b"gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
    return d


DICT = _spdy_dictionary()


class SpdyClient:
    def __init__(self, url, protocols=(V4,), upgrade=True):
        assert url.startswith("http://"), url
        hostport, path = url[len("http://"):].split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        req = f"POST /{path} HTTP/1.1\r\nHost: {hostport}\r\n"
        if upgrade:
            req += "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        req += "".join(f"X-Stream-Protocol-Version: {p}\r\n" for p in protocols)
        self.sock.sendall((req + "\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            d = self.sock.recv(4096)
            if not d:
                break
            self.buf += d
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers.setdefault(k.strip().lower(), []).append(v.strip())
        self.zc = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICT)
        self.zd = zlib.decompressobj(15, DICT)
        self.next_id = 1
        self.data, self.fin, self.replied, self.resets, self.pings = {}, set(), set(), {}, []
        self.goaway = None

    def body(self):
        n = int(self.headers.get("content-length", ["0"])[0])
        while len(self.buf) < n:
            self.buf += self.sock.recv(4096)
        return self.buf[:n].decode()

    def open(self, fin=False, **headers):
        sid = self.next_id
        self.next_id += 2
        raw = struct.pack(">I", len(headers))
        for k, v in headers.items():
            raw += struct.pack(">I", len(k)) + k.lower().encode() + struct.pack(">I", len(v)) + v.encode()
        block = self.zc.compress(raw) + self.zc.flush(zlib.Z_SYNC_FLUSH)
        payload = struct.pack(">IIBB", sid, 0, 0, 0) + block
        self.sock.sendall(struct.pack(">HHI", 0x8003, 1, (int(fin) << 24) | len(payload)) + payload)
        self.data[sid] = b""
        return sid

    def send(self, sid, data, fin=False):
        self.sock.sendall(struct.pack(">II", sid, (int(fin) << 24) | len(data)) + data)

    def ping(self, pid):
        self.sock.sendall(struct.pack(">HHII", 0x8003, 6, 4, pid))

    def _read(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self):
        word, rest = struct.unpack(">II", self._read(8))
        flags, length = rest >> 24, rest & 0xFFFFFF
        p = self._read(length)
        if word & 0x80000000:
            assert (word >> 16) & 0x7FFF == 3, "SPDY version 3"
            kind = word & 0xFFFF
            if kind == 2:  # SYN_REPLY: the header block must decompress in this connection's context
                sid = struct.unpack(">I", p[:4])[0]
                raw = self.zd.decompress(p[4:])
                assert struct.unpack(">I", raw[:4])[0] >= 0
                self.replied.add(sid)
            elif kind == 3:
                sid, status = struct.unpack(">II", p)
                self.resets[sid] = status
            elif kind == 6:
                self.pings.append(struct.unpack(">I", p)[0])
            elif kind == 7:
                self.goaway = struct.unpack(">II", p)
            return
        sid = word & 0x7FFFFFFF
        assert sid in self.replied, f"data on stream {sid} before its SYN_REPLY"
        self.data[sid] = self.data.get(sid, b"") + p
        if flags & 1:
            self.fin.add(sid)

    def wait(self, pred, timeout=20):
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError("timed out")
            self.frame()

    def run_to_end(self, timeout=30):
        """Read until the server closes the connection."""
        self.sock.settimeout(timeout)
        try:
            while True:
                self.frame()
        except EOFError:
            pass

    def close(self):
        self.sock.close()


class WsClient:
    """A websocket client (RFC 6455, masked frames) speaking kubelet's channel protocols."""

    def __init__(self, url, protocols=("v4.channel.k8s.io",)):
        import base64
        hostport, path = url[len("http://"):].split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n")
        if protocols:
            req += f"Sec-WebSocket-Protocol: {', '.join(protocols)}\r\n"
        self.sock.sendall((req + "\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            d = self.sock.recv(4096)
            if not d:
                break
            self.buf += d
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        import hashlib
        if self.status == 101:
            want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
            assert self.headers["sec-websocket-accept"] == want.decode()
        self.binary = "base64" not in self.headers.get("sec-websocket-protocol", "")
        self.messages = []  # (channel, bytes)
        self.closed = False

    def send(self, channel, data, opcode=None):
        import base64
        if self.binary:
            payload, op = bytes([channel]) + data, 2
        else:
            payload, op = (chr(48 + channel) + base64.b64encode(data).decode()).encode(), 1
        self.raw(opcode or op, payload)

    def raw(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else
                                          bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                                          bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _read(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self):
        import base64
        b1, b2 = self._read(2)
        assert not b2 & 0x80, "server frames are not masked"
        n = b2 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._read(8))[0]
        payload = self._read(n)
        op = b1 & 0x0F
        if op == 8:
            self.closed = True
            raise EOFError
        if op in (1, 2):
            assert op == (2 if self.binary else 1)
            if self.binary:
                self.messages.append((payload[0], payload[1:]))
            else:
                self.messages.append((payload[0] - 48, base64.b64decode(payload[1:])))
        return op, payload

    def channel(self, num):
        return b"".join(d for c, d in self.messages if c == num)

    def run_to_end(self, timeout=30):
        self.sock.settimeout(timeout)
        try:
            while True:
                self.frame()
        except EOFError:
            pass

    def wait(self, pred, timeout=20):
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, "timed out"
            self.frame()


def test_header_blocks_of_go_spdystream_decode():
    """Header blocks as Go's spdystream compresses them (the SYN_REPLY blocks of containerd 1.6's
    streaming server, read off the wire on this machine): one zlib stream per direction, each block
    ending in a sync flush, the first one naming SPDY/3's dictionary by its Adler-32 (e3c6a7c2)."""
    from berth.cri.streaming.spdy import DICTIONARY, HeaderCodec
    assert zlib.adler32(DICTIONARY) == 0xE3C6A7C2 and zlib.adler32(DICT) == 0xE3C6A7C2
    codec = HeaderCodec()
    assert codec.decode(b"x\xf9\xe3\xc6\xa7\xc2b```\x00\x00\x00\x00\xff\xff") == {}
    assert codec.decode(b"\x02a\x00\x00\x00\x00\xff\xff") == {}
    assert codec.decode(b"\x02a\x00\x00\x00\x00\xff\xff") == {}
    # and ours decode with an independent zlib context (the test client's)
    enc = HeaderCodec()
    d = zlib.decompressobj(15, DICT)
    for headers in ({}, {"streamtype": "error"}, {"port": "80", "requestid": "7"}):
        raw = d.decompress(enc.encode(headers))
        n = struct.unpack(">I", raw[:4])[0]
        assert n == len(headers)


# --- the server under test, over a real berthd's containers ----------------------------------------

class InProcessServer:
    """berth.cri.streaming.StreamingServer on an asyncio loop of its own, with a StreamBackend
    over the ContainerService of the test daemon's root and state (the same stores and shims)."""

    def __init__(self, daemon, **kw):
        from berth.cri.stream_backend import StreamBackend
        from berth.cri.streaming import StreamingServer
        from berth.daemon import config
        from berth.daemon.server import Daemon as D
        self.d = D(config.load(daemon.config))
        self.loop = asyncio.new_event_loop()
        self.server = StreamingServer("127.0.0.1:0", StreamBackend(self.d.containers), **kw)
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            ready.set()
            self.loop.run_forever()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    base = tmp_path_factory.mktemp("berthd")
    # pods get a network namespace of their own with only `lo` (no interface, bridge or address
    # on the host to clean up): port forwarding reaches 127.0.0.1 inside it
    lo_only_cni(base / "crinet")
    d = Daemon(base / "berthd", extra_config=f'cri_cni_conf_dir = "{base / "crinet"}"\n')
    d.start()
    try:
        d.berth("-n", "k8s.io", "load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        yield d
    finally:
        ids = d.berth("-n", "k8s.io", "ps", "-a", "-q", "--no-trunc").out.split()
        if ids:
            d.berth("-n", "k8s.io", "rm", "-f", *ids)
        d.cleanup()


@pytest.fixture(scope="module")
def srv(daemon):
    s = InProcessServer(daemon)
    yield s
    s.stop()


def run_ctr(d, *args, name=None):
    p = d.berth("-n", "k8s.io", "run", "-d", *(["--name", name] if name else []), *args, check=True)
    return p.out.strip()


@pytest.fixture(scope="module")
def sleeper(daemon):
    return run_ctr(daemon, IMG, "sleep", "1000")


# --- protocol tests ------------------------------------------------------------------------------

def test_exec_v4_output_streams_and_exit_status(srv, sleeper):
    url = srv.server.exec_url(sleeper, ["sh", "-c", "echo out; echo err >&2; exit 3"], False, False, True, True)
    assert url.startswith(srv.server.base_url + "/exec/")
    c = SpdyClient(url)
    assert c.status == 101
    assert c.headers["upgrade"] == ["SPDY/3.1"] and c.headers["x-stream-protocol-version"] == [V4]
    err, out, stderr = c.open(streamtype="error"), c.open(streamtype="stdout"), c.open(streamtype="stderr")
    c.run_to_end()
    assert c.replied == {err, out, stderr}
    assert c.data[out] == b"out\n" and c.data[stderr] == b"err\n"
    assert {out, stderr} <= c.fin
    # kubelet's v4 status: the exit code as a NonZeroExitCode cause, Go's JSON (HTML escaped)
    assert c.data[err] == (b'{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: '
                           b'error executing command [sh -c echo out; echo err \\u003e\\u00262; exit 3], exit code 3",'
                           b'"reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}')
    assert c.goaway is not None
    # a token is good once
    c2 = SpdyClient(url)
    assert c2.status == 404 and c2.body() == "404 page not found\n"


def test_exec_stdin_end_of_input_and_success(srv, sleeper):
    c = SpdyClient(srv.server.exec_url(sleeper, ["sh", "-c", "cat; echo done"], False, True, True, True))
    err, sin, out = c.open(streamtype="error"), c.open(streamtype="stdin"), c.open(streamtype="stdout")
    c.open(streamtype="stderr")
    c.wait(lambda: len(c.replied) == 4)
    # more than one data frame (a mebibyte: test_exec_stdin_a_mebibyte_through_cat)
    big = os.urandom(20_000).hex().encode()
    c.send(sin, b"hello\n")
    c.ping(7)
    c.send(sin, big)
    c.send(sin, b"", fin=True)  # the client's FIN is the command's end of input
    c.run_to_end()
    assert c.data[out] == b"hello\n" + big + b"done\n"
    assert c.data[err] == b'{"metadata":{},"status":"Success"}'
    assert 7 in c.pings  # the client's ping, echoed


def test_concurrent_execs(srv, sleeper):
    import concurrent.futures

    def one(i):
        c = SpdyClient(srv.server.exec_url(sleeper, ["sh", "-c", f"echo n{i}; exit {i % 3}"], False, False, True,
                                           True))
        err, out = c.open(streamtype="error"), c.open(streamtype="stdout")
        c.open(streamtype="stderr")
        c.run_to_end()
        return c.data[out], json.loads(c.data[err])
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(16)))
    for i, (out, status) in enumerate(results):
        assert out == f"n{i}\n".encode()
        if i % 3:
            assert status["details"]["causes"][0]["message"] == str(i % 3)
        else:
            assert status == {"metadata": {}, "status": "Success"}


def test_exec_tty_resize_and_exit_code(srv, sleeper):
    c = SpdyClient(srv.server.exec_url(sleeper, ["sh"], True, True, True, False))
    err, sin, out, rs = (c.open(streamtype="error"), c.open(streamtype="stdin"), c.open(streamtype="stdout"),
                         c.open(streamtype="resize"))
    c.wait(lambda: len(c.replied) == 4)
    c.send(rs, b'{"Width":120,"Height":40}')
    time.sleep(0.2)
    c.send(sin, b"stty size; tty; exit 7\n")
    c.run_to_end()
    text = c.data[out].decode()
    assert "40 120" in text and "/dev/pts/" in text
    status = json.loads(c.data[err])
    assert status["reason"] == "NonZeroExitCode" and status["details"]["causes"] == [{"reason": "ExitCode",
                                                                                     "message": "7"}]


@pytest.mark.parametrize("proto", [V3, V2, "channel.k8s.io"])
def test_exec_older_protocols_report_errors_as_text(srv, sleeper, proto):
    c = SpdyClient(srv.server.exec_url(sleeper, ["sh", "-c", "echo x; exit 2"], False, False, True, True),
                   protocols=[proto])
    assert c.headers["x-stream-protocol-version"] == [proto]
    err, out = c.open(streamtype="error"), c.open(streamtype="stdout")
    c.open(streamtype="stderr")
    c.run_to_end()
    assert c.data[out] == b"x\n"
    assert c.data[err] == b"command terminated with non-zero exit code: error executing command [sh -c echo x; exit 2], exit code 2"
    c = SpdyClient(srv.server.exec_url(sleeper, ["true"], False, False, True, False), protocols=[proto])
    err, out = c.open(streamtype="error"), c.open(streamtype="stdout")
    c.run_to_end()
    assert c.data[err] == b""  # success says nothing before v4


def test_exec_of_a_missing_command_is_an_internal_error(srv, sleeper):
    c = SpdyClient(srv.server.exec_url(sleeper, ["no-such-command"], False, False, True, True))
    err, out, _ = c.open(streamtype="error"), c.open(streamtype="stdout"), c.open(streamtype="stderr")
    c.run_to_end()
    # containerd: "Internal error occurred: error executing command in container: failed to exec in
    # container: failed to start exec ...: OCI runtime exec failed: ...: exec: "nosuchcmd":
    # executable file not found in $PATH: unknown"
    status = json.loads(c.data[err])
    assert status["status"] == "Failure" and status["reason"] == "InternalError" and status["code"] == 500
    assert status["message"].startswith("Internal error occurred: error executing command in container: "
                                        "failed to exec in container: ")
    assert status["message"].endswith('OCI runtime exec failed: exec failed: unable to start container process: '
                                      'exec: "no-such-command": executable file not found in $PATH: unknown')
    assert ": failed to start exec \"" in status["message"]


def test_handshake_errors(srv, sleeper):
    s = srv.server
    c = SpdyClient(s.exec_url(sleeper, ["true"], False, False, True, False), protocols=["v9.channel.k8s.io"])
    assert c.status == 403 and "unable to negotiate protocol" in c.body()
    assert c.headers["x-accepted-stream-protocol-versions"][0] == V4
    c = SpdyClient(s.exec_url(sleeper, ["true"], False, False, True, False), protocols=[])
    assert c.status == 400 and "X-Stream-Protocol-Version is required" in c.body()
    c = SpdyClient(s.exec_url(sleeper, ["true"], False, False, True, False), upgrade=False)
    assert c.status == 400 and "missing upgrade headers" in c.body()
    c = SpdyClient(s.base_url + "/exec/nosuchtk")
    assert c.status == 404
    c = SpdyClient(s.attach_url(sleeper, False, False, True, False).replace("/attach/", "/exec/"))
    assert c.status == 404  # a token is for its own verb only
    from berth.errors import InvalidArgument
    with pytest.raises(InvalidArgument, match="tty and stderr cannot both be true"):
        s.exec_url(sleeper, ["true"], True, False, True, True)
    with pytest.raises(InvalidArgument, match="one of stdin, stdout, or stderr must be set"):
        s.exec_url(sleeper, ["true"], False, False, False, False)


def test_tokens_expire_and_stream_creation_times_out(daemon, sleeper):
    s = InProcessServer(daemon, token_ttl=0.5, stream_creation_timeout=1.0)
    try:
        url = s.server.exec_url(sleeper, ["true"], False, False, True, False)
        time.sleep(0.8)
        assert SpdyClient(url).status == 404
        c = SpdyClient(s.server.exec_url(sleeper, ["true"], False, False, True, False))
        c.open(streamtype="error")  # the stdout stream never comes
        t0 = time.monotonic()
        c.run_to_end(timeout=10)
        assert 0.8 < time.monotonic() - t0 < 5
    finally:
        s.stop()


def test_idle_connections_are_closed(daemon, sleeper):
    s = InProcessServer(daemon, stream_idle_timeout=1.0)
    try:
        c = SpdyClient(s.server.exec_url(sleeper, ["sh", "-c", "sleep 0.5; echo a; sleep 30"], False, False, True,
                                         False))
        err, out = c.open(streamtype="error"), c.open(streamtype="stdout")
        t0 = time.monotonic()
        c.run_to_end(timeout=20)  # nothing moves after "a" for a second: the server hangs up
        assert 1.2 < time.monotonic() - t0 < 10 and c.data[out] == b"a\n"
        assert c.resets.get(out) == 5  # RST_STREAM CANCEL, as kubelet's Close
    finally:
        s.stop()


def test_exec_ends_with_its_container(srv, daemon):
    cid = run_ctr(daemon, IMG, "sleep", "1000")
    c = SpdyClient(srv.server.exec_url(cid, ["sh", "-c", "echo up; sleep 600"], False, False, True, False))
    err, out = c.open(streamtype="error"), c.open(streamtype="stdout")
    c.wait(lambda: c.data[out] == b"up\n")
    daemon.berth("-n", "k8s.io", "kill", cid, check=True)
    c.run_to_end()
    status = json.loads(c.data[err])  # killed with the container, as with containerd: 128 + SIGKILL
    assert status["reason"] == "NonZeroExitCode" and status["details"]["causes"][0]["message"] == "137"


def test_attach_stdin_once_container(srv, daemon):
    # `create -i` (attached, as `docker run -i`) sets StdinOnce; `run -d -i` does not
    cid = daemon.berth("-n", "k8s.io", "create", "-i", IMG, "sh", "-c", "echo started; cat; echo catdone",
                       check=True).out.strip()
    daemon.berth("-n", "k8s.io", "start", cid, check=True)
    c = SpdyClient(srv.server.attach_url(cid, False, True, True, True))
    err, sin, out = c.open(streamtype="error"), c.open(streamtype="stdin"), c.open(streamtype="stdout")
    c.open(streamtype="stderr")
    c.wait(lambda: len(c.replied) == 4)
    c.send(sin, b"hello attach\n")
    c.wait(lambda: b"hello attach\n" in c.data[out])
    c.send(sin, b"", fin=True)  # StdinOnce: the container's stdin closes, output runs to its end
    c.run_to_end()
    assert c.data[out].endswith(b"hello attach\ncatdone\n")
    assert c.data[err] == b'{"metadata":{},"status":"Success"}'


def _sender(c, sid, data, fin=True, chunk=32768):
    """Send data on a stream from a thread (the test reads the output meanwhile, as kubectl and
    crictl do); its errors (the server went away) end it."""
    def run():
        try:
            for i in range(0, len(data), chunk):
                c.send(sid, data[i:i + chunk])
            if fin:
                c.send(sid, b"", fin=True)
        except OSError:
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_exec_stdin_a_mebibyte_through_cat(srv, sleeper):
    c = SpdyClient(srv.server.exec_url(sleeper, ["cat"], False, True, True, True))
    err, sin, out = c.open(streamtype="error"), c.open(streamtype="stdin"), c.open(streamtype="stdout")
    c.open(streamtype="stderr")
    c.wait(lambda: len(c.replied) == 4)
    big = os.urandom(512 * 1024).hex().encode()  # 1 MiB, many times a pipe
    t = _sender(c, sin, big)
    c.run_to_end(timeout=60)
    t.join(10)
    assert len(c.data[out]) == len(big) and c.data[out] == big
    assert c.data[err] == b'{"metadata":{},"status":"Success"}'


def test_attach_without_stdin_once_detaches_at_the_end_of_input(srv, daemon):
    """containerd: without StdinOnce the client's end of input ends the attach only; the
    container's stdin stays open for the next attach."""
    cid = run_ctr(daemon, "-i", IMG, "sh", "-c", "while read x; do echo got $x; done; echo eof")
    for word in (b"one", b"two"):
        c = SpdyClient(srv.server.attach_url(cid, False, True, True, True))
        err, sin, out = c.open(streamtype="error"), c.open(streamtype="stdin"), c.open(streamtype="stdout")
        c.open(streamtype="stderr")
        c.wait(lambda: len(c.replied) == 4)
        c.send(sin, word + b"\n")
        c.wait(lambda: b"got " + word in c.data[out])
        c.send(sin, b"", fin=True)
        c.run_to_end(timeout=20)  # the attach ends ...
        assert c.data[err] == b'{"metadata":{},"status":"Success"}'
        # ... and the container runs on, its stdin open
        assert daemon.berth("-n", "k8s.io", "inspect", "-f", "{{.State.Status}}", cid).out.strip() == "running"
    logs = daemon.berth("-n", "k8s.io", "logs", cid, check=True).out
    assert logs == "got one\ngot two\n"


def test_a_container_that_never_reads_its_stdin_still_stops(srv, daemon):
    """Input the container never reads fills its pipe; the shim buffers a little, then stops
    reading the client (back-pressure), and still answers stop, kill and inspect."""
    cid = run_ctr(daemon, "-i", IMG, "sleep", "1000")
    c = SpdyClient(srv.server.attach_url(cid, False, True, True, True))
    c.open(streamtype="error")
    sin = c.open(streamtype="stdin")
    c.open(streamtype="stdout")
    c.open(streamtype="stderr")
    c.wait(lambda: len(c.replied) == 4)
    sent = []
    big = b"x" * (64 << 20)  # more than every buffer on the way (loopback TCP takes MiBs)

    def run():
        try:
            for i in range(0, len(big), 65536):
                c.send(sin, big[i:i + 65536])
                sent.append(65536)
        except OSError:
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    time.sleep(2)
    assert sum(sent) < 16 << 20, sum(sent)  # held back: nobody reads it
    t0 = time.monotonic()
    p = daemon.berth("-n", "k8s.io", "inspect", "-f", "{{.State.Status}}", cid, check=True)
    assert p.out.strip() == "running"
    daemon.berth("-n", "k8s.io", "stop", "-t", "1", cid, check=True)
    assert time.monotonic() - t0 < 15
    c.run_to_end(timeout=20)  # the attach ends with the container
    c.close()
    t.join(35)
    assert daemon.berth("-n", "k8s.io", "inspect", "-f", "{{.State.Status}}", cid).out.strip() == "exited"


def test_port_forward(srv, daemon):
    cid = run_ctr(daemon, IMG, "httpd", "-f", "-p", "8080", "-h", "/data")
    c = SpdyClient(srv.server.portforward_url(cid, [8080]), protocols=["portforward.k8s.io"])
    assert c.status == 101 and c.headers["x-stream-protocol-version"] == ["portforward.k8s.io"]

    def get(rid, port):
        e = c.open(streamtype="error", port=str(port), requestid=str(rid))
        d = c.open(streamtype="data", port=str(port), requestid=str(rid))
        c.wait(lambda: d in c.replied)
        c.send(d, b"GET /sub/file HTTP/1.0\r\n\r\n", fin=True)
        return e, d
    def up():  # httpd listens a moment after the container starts
        e, d = get(f"probe-{time.monotonic()}", 8080)
        c.wait(lambda: e in c.fin and d in c.fin)
        return c.data[d].endswith(b"layered\n")
    wait_for(up, 10, "httpd in the container")
    # several connections on one session (the header compression context carries over)
    pairs = [get(i, 8080) for i in range(5)]
    c.wait(lambda: all(d in c.fin for _, d in pairs))
    for e, d in pairs:
        assert c.data[d].startswith(b"HTTP/1.") and c.data[d].endswith(b"layered\n")
    c.wait(lambda: all(e in c.fin for e, _ in pairs))
    assert all(c.data[e] == b"" for e, _ in pairs)
    # nothing listens there: the error stream says so, as containerd's words
    e, d = get(100, 8081)
    c.wait(lambda: e in c.fin)
    assert c.data[e].startswith(f"error forwarding port 8081 to pod {cid}, uid : failed to execute portforward in "
                                f"network namespace ".encode())
    assert b"IPv4: dial tcp4 127.0.0.1:8081: connect: connection refused" in c.data[e]
    # a stream without a valid port is refused with a reset
    bad = c.open(streamtype="data", port="0", requestid="x")
    c.wait(lambda: bad in c.resets)
    c.close()


# --- crictl against berthd's CRI ---------------------------------------------------------------------

def _crictl():
    for p in (os.path.join(REPO, "..", "shared", "bin", "crictl"), shutil.which("crictl")):
        if p and os.path.isfile(p) and os.access(p, os.X_OK):
            return os.path.abspath(p)
    return None


CRICTL = _crictl()


@pytest.fixture(scope="module")
def cri(daemon):
    if CRICTL is None:
        pytest.skip("crictl is not installed (../shared/bin/crictl or on PATH)")
    sock = getattr(daemon, "cri_sock", None)
    if not sock or not _alive(sock):
        pytest.skip("this berthd serves no CRI socket")
    daemon.berth("-n", "k8s.io", "load", "-i", os.path.join(DATA, "pause.oci.tar"), check=True)
    return Crictl(daemon, sock)


class Crictl:
    def __init__(self, daemon, sock):
        self.d = daemon
        self.argv = [CRICTL, "--runtime-endpoint", "unix://" + sock, "--image-endpoint", "unix://" + sock,
                     "--timeout", "60s"]
        self.base = os.path.join(daemon.base, "crictl")
        os.makedirs(os.path.join(self.base, "logs"), exist_ok=True)
        self.pods = []

    def __call__(self, *args, input=None, timeout=60):
        try:
            p = subprocess.run(self.argv + list(args), input=input, capture_output=True, timeout=timeout,
                               stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:  # which command of which engine hung, and what it said
            raise AssertionError(f"crictl {' '.join(args)} against {self.argv[2]} hung for {timeout} s; "
                                 f"its output: {e.stdout!r} {e.stderr!r}") from None
        p.out, p.err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        return p

    def write(self, name, obj):
        path = os.path.join(self.base, name)
        with open(path, "w") as f:
            json.dump(obj, f)
        return path

    def pod(self, name):
        cfg = self.write(f"{name}.json", {"metadata": {"name": name, "namespace": "default", "uid": name,
                                                        "attempt": 0},
                                           "log_directory": os.path.join(self.base, "logs", name)})
        p = self("runp", cfg)
        assert p.returncode == 0, p.err
        pid = p.out.strip()
        self.pods.append(pid)
        return pid, cfg

    def container(self, pod, pod_cfg, name, command, **extra):
        cfg = self.write(f"{name}.ctr.json", dict({"metadata": {"name": name}, "image": {"image": IMG},
                                                   "command": command, "log_path": f"{name}.log"}, **extra))
        p = self("create", pod, cfg, pod_cfg)
        assert p.returncode == 0, p.err
        cid = p.out.strip()
        p = self("start", cid)
        assert p.returncode == 0, p.err
        return cid

    def cleanup(self):
        for pid in self.pods:
            self("stopp", pid)
            self("rmp", "-f", pid)


@pytest.fixture(scope="module")
def pod(cri):
    try:
        pid, cfg = cri.pod("streams")
        httpd = cri.container(pid, cfg, "web", ["httpd", "-f", "-p", "18080", "-h", "/data"])
        yield {"id": pid, "cfg": cfg, "web": httpd}
    finally:
        cri.cleanup()


def test_crictl_exec_output_and_exit_codes(cri, pod):
    c = pod["web"]
    p = cri("exec", c, "sh", "-c", "echo out; echo err >&2; exit 3")
    # containerd 1.6 answers the same (rc 1, this message); it drops the command's stderr, berth
    # forwards it as the protocol has it
    assert p.returncode == 1 and p.out == "out\n"
    assert p.err.startswith("err\n") and "execing command in container: command terminated with exit code 3" in p.err
    p = cri("exec", c, "sh", "-c", "echo fine")
    assert p.returncode == 0 and p.out == "fine\n"
    p = cri("exec", "-i", c, "sh", "-c", "cat; echo after", input=b"hello\n")
    assert p.returncode == 0 and p.out == "hello\nafter\n"
    p = cri("exec", c, "no-such-command")
    assert p.returncode == 1
    assert ("execing command in container: Internal error occurred: error executing command in container: "
            "failed to exec in container: ") in p.err and 'exec: \\"no-such-command\\": executable file not found' in p.err


def test_crictl_exec_sync(cri, pod):
    p = cri("exec", "-s", pod["web"], "sh", "-c", "echo so; echo se >&2; exit 4")
    assert p.returncode == 1 and "exited with 4" in p.err
    p = cri("exec", "-s", pod["web"], "sh", "-c", "echo so")
    assert p.returncode == 0 and p.out.startswith("so\n")


def _pty_run(argv, steps, timeout=30, rows=30, cols=100):
    """argv on a terminal of rows x cols. steps: (wait for these bytes, in the output after the
    previous step | this many seconds after the previous step (the start for the first), then
    write these bytes | resize the terminal to (rows, cols))."""
    import fcntl
    import termios
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    out, steps, deadline = b"", list(steps), time.monotonic() + timeout
    mark, since = 0, time.monotonic()  # where and when the previous step was taken
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    d = os.read(fd, 4096)
                except OSError:
                    break
                if not d:
                    break
                out += d
            while steps and (steps[0][0] in out[mark:] if isinstance(steps[0][0], bytes) else
                             time.monotonic() - since >= steps[0][0]):
                _, action = steps.pop(0)
                mark, since = len(out), time.monotonic()
                if isinstance(action, tuple):
                    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", action[0], action[1], 0, 0))
                else:
                    os.write(fd, action)
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_crictl_exec_tty(cri, pod):
    rc, out = _pty_run(cri.argv + ["exec", "-i", "-t", pod["web"], "sh"], [
        (b"# ", b"stty size; tty; echo $((6*7))\r"),
        (b"42\r\n/data # ", (40, 120)),  # the terminal's new size goes over the resize stream
        (0.5, b"stty size; exit 5\r")])
    assert "30 100\r\n/dev/pts/" in out, out  # the size at start
    assert "40 120\r\n" in out, out
    # containerd 1.6: the same message and status for the shell's exit code
    assert rc == 1 and "command terminated with exit code 5" in out, out


def test_crictl_attach(cri, pod):
    c = cri.container(pod["id"], pod["cfg"], "reader", ["sh", "-c", "read x; echo got $x; echo e >&2"],
                      stdin=True, stdin_once=True)
    p = cri("attach", "-i", c, input=b"hi\n")
    assert p.returncode == 0 and p.out == "got hi\n" and p.err.startswith("e\n")
    p = cri("attach", c)  # it has exited
    assert p.returncode == 1


def test_crictl_exec_and_attach_carry_a_mebibyte(cri, pod):
    big = os.urandom(512 * 1024).hex().encode()
    p = cri("exec", "-i", pod["web"], "cat", input=big)
    assert p.returncode == 0 and p.stdout == big
    c = cri.container(pod["id"], pod["cfg"], "bigcat", ["cat"], stdin=True, stdin_once=True)
    p = cri("attach", "-i", c, input=big)
    assert p.returncode == 0 and p.stdout == big  # stdin_once: cat gets its end of input and ends
    wait_for(lambda: "CONTAINER_EXITED" in cri("inspect", c).out, 10, "cat to exit")


def test_crictl_attach_without_stdin_once_keeps_stdin_open(cri, pod):
    """containerd 1.6 (checked with the same crictl commands): the end of crictl's input ends
    the attach, exit 0; the container runs on and the next attach reaches the same stdin."""
    c = cri.container(pod["id"], pod["cfg"], "lines", ["sh", "-c", "while read x; do echo got $x; done"],
                      stdin=True)
    for word in ("one", "two"):
        p = cri("attach", "-i", c, input=f"{word}\n".encode())
        assert p.returncode == 0, p.err
        assert '"state": "CONTAINER_RUNNING"' in cri("inspect", c).out
    wait_for(lambda: cri("logs", c).out == "got one\ngot two\n", 10, "both lines in the log")


def _tcp_buffers_max():
    """The most a TCP connection's kernel buffers may grow to (receive + send): what a sender can
    have written that its peer has not read (autotuning grows them with the traffic)."""
    most = 0
    for key in ("tcp_rmem", "tcp_wmem"):
        with open(f"/proc/sys/net/ipv4/{key}") as f:
            most += int(f.read().split()[2])
    return most


def test_crictl_stop_and_kill_while_stdin_is_never_read(cri, pod):
    """crictl attach -i pipes more than every buffer on the way can hold to a container that never
    reads it: crictl is held back (what went is what the connection's kernel buffers, berthd's
    and the shim's hold), and crictl stop (then the end of the attach) still answer at once, as
    with containerd."""
    c = cri.container(pod["id"], pod["cfg"], "deaf", ["sleep", "1000"], stdin=True)
    att = subprocess.Popen(cri.argv + ["attach", "-i", c], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    buffers = _tcp_buffers_max()
    chunks = 512 + 2 * buffers // 65536
    fed = []

    def feed():
        try:
            for _ in range(chunks):
                att.stdin.write(b"y" * 65536)
                fed.append(1)
            att.stdin.close()
        except (OSError, ValueError):
            pass
    t = threading.Thread(target=feed, daemon=True)
    t.start()
    seen, deadline = -1, time.monotonic() + 15
    while len(fed) != seen and time.monotonic() < deadline:  # until it goes no further
        seen = len(fed)
        time.sleep(1)
    assert len(fed) == seen < chunks  # held back
    assert len(fed) * 65536 < buffers + (16 << 20)  # the kernel's buffers, and a few MiB of berthd's and the shim's
    t0 = time.monotonic()
    p = cri("stop", "-t", "1", c)
    assert p.returncode == 0, p.err
    assert time.monotonic() - t0 < 15
    assert att.wait(20) == 0  # the attach ends with the container
    t.join(10)
    assert '"state": "CONTAINER_EXITED"' in cri("inspect", c).out


def _fds_threads(pid):
    """berthd's open sockets, pipes and anon inodes (the database's connections, one per worker
    thread, are not the streams'), and its threads."""
    fds = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            fds += os.readlink(f"/proc/{pid}/fd/{fd}").startswith(("socket:", "pipe:", "anon_inode:"))
        except OSError:
            pass
    names = []
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            names.append(open(f"/proc/{pid}/task/{t}/comm").read().strip())
        except OSError:
            pass
    return fds, names


def test_misused_streaming_urls_answer_cleanly_and_leak_nothing(daemon, cri, pod):
    """Through berthd's own CRI and streaming server: a URL used twice, an unknown token, an
    exec and an attach whose container stopped after the URL was made, a port-forward to a
    closed port, a client that hangs up mid-stream. Each gets the kubelet's answer; berthd's log
    has no traceback, and its fds and threads come back to where they were."""
    from cri_client import CRIClient
    c = CRIClient(daemon.cri_sock)
    pid = daemon.proc.pid
    web = pod["web"]
    victim = cri.container(pod["id"], pod["cfg"], "victim", ["sleep", "1000"], stdin=True)

    def round_(i):
        url = c.Exec(container_id=web, cmd=["true"], stdout=True).url
        s = SpdyClient(url)
        err, _ = s.open(streamtype="error"), s.open(streamtype="stdout")
        s.run_to_end()
        assert s.data[err] == b'{"metadata":{},"status":"Success"}'
        s.close()
        again = SpdyClient(url)  # used twice: the token is gone
        assert again.status == 404 and again.body() == "404 page not found\n"
        again.close()
        unknown = SpdyClient(url.rsplit("/", 1)[0] + "/AAAAAAAA")
        assert unknown.status == 404
        unknown.close()
        # a client that goes away in the middle of an exec's output
        s = SpdyClient(c.Exec(container_id=web, cmd=["sh", "-c", "echo x; sleep 1"], stdout=True).url)
        _, out = s.open(streamtype="error"), s.open(streamtype="stdout")
        s.wait(lambda: s.data[out] == b"x\n")
        s.close()
        # a port nothing listens on
        s = SpdyClient(c.PortForward(pod_sandbox_id=pod["id"], port=[18999]).url, protocols=["portforward.k8s.io"])
        e = s.open(streamtype="error", port="18999", requestid="1")
        s.open(streamtype="data", port="18999", requestid="1")
        s.wait(lambda: e in s.fin)
        assert b"connect: connection refused" in s.data[e]
        s.close()
        if i == 0:
            return
        # the container stopped between the Exec/Attach call and the URL's use
        ctr = cri.container(pod["id"], pod["cfg"], f"gone{i}", ["sleep", "1000"], stdin=True)
        urls = [c.Exec(container_id=ctr, cmd=["true"], stdout=True).url,
                c.Attach(container_id=ctr, stdin=True, stdout=True).url]
        assert cri("stop", "-t", "0", ctr).returncode == 0
        for url, verb in zip(urls, ("executing command in", "attaching to")):
            s = SpdyClient(url)
            err, _ = s.open(streamtype="error"), s.open(streamtype="stdout")
            if verb == "attaching to":
                s.open(streamtype="stdin")
            s.run_to_end()
            status = json.loads(s.data[err])
            assert status["reason"] == "InternalError" and status["code"] == 500
            assert status["message"] == (f"Internal error occurred: error {verb} container: "
                                         "container is in CONTAINER_EXITED state"), status
            s.close()
        cri("rm", ctr)

    round_(0)  # the pools' threads start
    time.sleep(1.5)
    before = _fds_threads(pid)
    for i in range(1, 4):
        round_(i)
    assert cri("stop", "-t", "0", victim).returncode == 0
    time.sleep(2)  # the hung-up exec's sleep ends; its connection closes
    wait_for(lambda: _fds_threads(pid)[0] <= before[0], 20, f"berthd's sockets and pipes back to {before[0]}")
    after = _fds_threads(pid)
    # none per stream: the gRPC and worker pools may start one or two more (Python's thread
    # names do not reach /proc, so they are counted, not named)
    assert len(after[1]) <= len(before[1]) + 3, (before, after)
    c.close()
    assert "Traceback" not in open(daemon.log_path).read()


def test_crictl_port_forward(cri, pod):
    import urllib.request
    from daemon_fixtures import free_port
    port = free_port()
    log = os.path.join(cri.base, "pf.log")
    with open(log, "wb") as f:
        pf = subprocess.Popen(cri.argv + ["port-forward", pod["id"], f"{port}:18080"], stdout=f, stderr=f,
                              stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: b"Forwarding from 127.0.0.1" in open(log, "rb").read() or pf.poll() is not None, 20,
                 "crictl port-forward to listen")

        def fetch():
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/sub/file", timeout=10).read()
            except OSError:
                return None
        wait_for(lambda: fetch() == b"layered\n", 20, "httpd in the pod through the forwarded port")
        assert fetch() == b"layered\n"  # one session, many connections
    finally:
        pf.terminate()
        pf.wait(10)
    # nothing listens on the pod's port: crictl says why (containerd's words) and gives up
    port = free_port()
    p2 = subprocess.Popen(cri.argv + ["port-forward", pod["id"], f"{port}:18081"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: _connect_once(port), 20, "crictl port-forward to listen")
        out = p2.communicate(timeout=20)[0].decode()
    finally:
        if p2.poll() is None:
            p2.kill()
            p2.wait()
    assert f"error forwarding port 18081 to pod {pod['id']}, uid : failed to execute portforward in network" in out
    assert "dial tcp4 127.0.0.1:18081: connect: connection refused" in out and "lost connection to pod" in out


def _connect_once(port):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError:
        return False
    s.close()
    return True


# --- websocket forms ---------------------------------------------------------------------------------

def test_websocket_exec_v4_and_v5_close_signal(srv, sleeper):
    w = WsClient(srv.server.exec_url(sleeper, ["sh", "-c", "echo out; echo err >&2; exit 3"], False, False, True, True))
    assert w.status == 101 and w.headers["sec-websocket-protocol"] == "v4.channel.k8s.io"
    w.run_to_end()
    assert w.messages[0] == (1, b"")  # kubelet's "connected": an empty message on stdout
    assert w.channel(1) == b"out\n" and w.channel(2) == b"err\n"
    status = json.loads(w.channel(3))
    assert status["reason"] == "NonZeroExitCode" and status["details"]["causes"][0]["message"] == "3"
    assert w.closed  # a close frame ends it
    # v5: the client half-closes stdin with [255, 0]
    w = WsClient(srv.server.exec_url(sleeper, ["sh", "-c", "cat; echo done"], False, True, True, True),
                 protocols=["v5.channel.k8s.io", "v4.channel.k8s.io"])
    assert w.headers["sec-websocket-protocol"] == "v5.channel.k8s.io"
    w.send(0, b"piped\n")
    w.raw(9, b"hb")  # a ping is answered
    w.raw(2, bytes([255, 0]))
    w.run_to_end()
    assert w.channel(1) == b"piped\ndone\n" and json.loads(w.channel(3)) == {"metadata": {}, "status": "Success"}


def test_websocket_base64_and_protocol_errors(srv, sleeper):
    w = WsClient(srv.server.exec_url(sleeper, ["sh", "-c", "echo b64; exit 2"], False, False, True, True),
                 protocols=["base64.channel.k8s.io"])
    assert w.status == 101 and not w.binary
    w.run_to_end()
    assert w.channel(1) == b"b64\n"
    assert w.channel(3) == b"command terminated with non-zero exit code: error executing command [sh -c echo b64; exit 2], exit code 2"
    w = WsClient(srv.server.exec_url(sleeper, ["true"], False, False, True, False), protocols=["v9.channel.k8s.io"])
    assert w.status == 403


def test_websocket_port_forward(srv, daemon):
    cid = run_ctr(daemon, IMG, "httpd", "-f", "-p", "8080", "-h", "/data")

    def fetch():
        w = WsClient(srv.server.portforward_url(cid, [8080]))
        w.wait(lambda: len(w.messages) >= 2)
        assert w.messages[:2] == [(0, struct.pack("<H", 8080)), (1, struct.pack("<H", 8080))]
        w.send(0, b"GET /sub/file HTTP/1.0\r\n\r\n")
        w.run_to_end()
        return w.channel(0)[2:], w.channel(1)[2:]
    wait_for(lambda: fetch()[0].endswith(b"layered\n"), 10, "httpd in the container")
    data, error = fetch()
    assert data.startswith(b"HTTP/1.") and data.endswith(b"layered\n") and error == b""
    w = WsClient(srv.server.portforward_url(cid, [8081]))
    w.run_to_end()
    assert w.channel(1)[2:].startswith(b"error forwarding port 8081 to pod ")


def test_crictl_attach_tty(cri, pod):
    c = cri.container(pod["id"], pod["cfg"], "console", ["sh"], stdin=True, tty=True)
    rc, out = _pty_run(cri.argv + ["attach", "-i", "-t", c], [
        (1.0, b"stty size; echo $((6*7))\r"),
        (b"42\r\n/data # ", (40, 120)),
        (0.5, b"stty size; exit 5\r")])
    # containerd 1.6 gives the same bytes: the size at attach, the new size, and rc 0 (an attach
    # has no exit code of its own) when the container's shell exits
    assert "30 100\r\n42\r\n" in out and "40 120\r\n" in out, out
    assert rc == 0, out
    wait_for(lambda: "CONTAINER_EXITED" in cri("inspect", c).out, 10, "the container to exit")


# --- the same crictl commands against containerd 1.6's CRI ---------------------------------------------

@pytest.fixture(scope="module")
def peer(cri, tmp_path_factory):
    if not (shutil.which("containerd") and shutil.which("ctr")):
        pytest.skip("containerd is not installed")
    ctd = ContainerdCRI(tmp_path_factory.mktemp("containerd"))
    c = Crictl(cri.d, ctd.sock)
    c.base = os.path.join(ctd.base, "crictl")
    os.makedirs(os.path.join(c.base, "logs"), exist_ok=True)
    try:
        yield c
    finally:
        c.cleanup()
        ctd.close()


def _fatal(err):
    """crictl's last word (the msg of its fatal log line), without the timestamp."""
    import re
    m = re.findall(r'level=fatal msg="((?:[^"\\\\]|\\\\.)*)"', err)
    return m[-1] if m else None


def test_same_answers_as_containerd(cri, peer):
    """The same crictl commands against berthd and containerd 1.6: the same output, exit codes
    and messages (ids and the netns path aside)."""
    seen = {}
    for name, engine in (("berth", cri), ("containerd", peer)):
        pod, cfg = engine.pod(f"cmp-{name}")
        web = engine.container(pod, cfg, "web", ["sh", "-c", "exec httpd -f -p 18080 -h /data"])
        reader = engine.container(pod, cfg, "reader", ["sh", "-c", "read x; echo got $x"], stdin=True,
                                  stdin_once=True)
        wait_for(lambda: engine("exec", web, "wget", "-q", "-O", "/dev/null",
                                "http://127.0.0.1:18080/sub/file").returncode == 0, 20, "httpd")
        r = {}
        p = engine("exec", web, "sh", "-c", "echo out; exit 3")
        r["exit"] = (p.returncode, p.out, _fatal(p.err))
        # the device cgroup: runc's allowed devices, none of dockerd's (no /dev/console)
        r["devices"] = engine("exec", web, "sort", "/sys/fs/cgroup/devices/devices.list").out
        p = engine("exec", "-i", web, "sh", "-c", "cat; echo after", input=b"in\n")
        r["stdin"] = (p.returncode, p.out)
        p = engine("exec", web, "no-such-command")
        msg = _fatal(p.err)
        r["missing"] = (p.returncode, msg[:msg.index("failed to exec in container:")] if msg else msg,
                        'exec: \\\\\\"no-such-command\\\\\\": executable file not found in $PATH' in (msg or ""))
        rc, out = _pty_run(engine.argv + ["exec", "-i", "-t", web, "sh"], [
            (b"/data # ", b""), (0.5, b"stty size; echo $((6*7))\r"), (b"42\r\n/data # ", (40, 120)),
            (0.5, b"stty size; exit 5\r")])
        # ash redraws its prompt on a SIGWINCH: when it comes is timing (containerd's initial size
        # lands before or after the first prompt; berth starts the exec at the client's size)
        r["tty"] = (rc, out.replace("\r/data # \x1b[J", ""))
        p = engine("attach", "-i", reader, input=b"hi\n")
        r["attach"] = (p.returncode, p.out)
        # without stdin_once the end of input ends only the attach: the next one reaches stdin
        lines = engine.container(pod, cfg, "lines", ["sh", "-c", "while read x; do echo got $x; done"], stdin=True)
        rcs = [engine("attach", "-i", lines, input=w).returncode for w in (b"one\n", b"two\n")]
        wait_for(lambda: engine("logs", lines).out.count("got") == 2, 10, "both lines")
        r["attach_keeps_stdin"] = (rcs, '"state": "CONTAINER_RUNNING"' in engine("inspect", lines).out,
                                   engine("logs", lines).out)
        big = os.urandom(512 * 1024).hex().encode()
        p = engine("exec", "-i", web, "cat", input=big)
        r["stdin_mib"] = (p.returncode, p.stdout == big)
        from daemon_fixtures import free_port
        port = free_port()
        pf = subprocess.Popen(engine.argv + ["port-forward", pod, f"{port}:18081"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: _connect_once(port), 20, "crictl port-forward to listen")
            out = pf.communicate(timeout=20)[0].decode()
        finally:
            if pf.poll() is None:
                pf.kill()
                pf.wait()
        line = next((x for x in out.splitlines() if "an error occurred forwarding" in x), "")
        text = line[line.index("an error occurred"):] if line else ""
        text = text.replace(pod, "POD").replace(f"forwarding {port} ->", "forwarding PORT ->")
        r["portforward"] = (pf.returncode, text[:text.find(" network namespace ")],
                            "IPv4: dial tcp4 127.0.0.1:18081: connect: connection refused" in text,
                            "lost connection to pod" in out)
        seen[name] = r
    b, c = seen["berth"], seen["containerd"]
    # the one difference: containerd 1.6.20 forwards nothing of the command's stderr (crictl's
    # fatal line is the same); berth does, as the protocol has it
    for k in b:
        assert b[k] == c[k], f"{k}: berth {b[k]!r} containerd {c[k]!r}"


def test_verbose_info_written_as_containerd_writes_it(cri, peer):
    """crictl inspect/inspectp/inspecti show the runtime's verbose info as it is written: berth's
    as Go's encoding/json writes containerd's (compact, <, > and & escaped) with containerd's keys
    in containerd's order (berth's own after them); berth wrote Python's spaced JSON, unescaped,
    in an order of its own."""
    seen = {}
    for name, engine in (("berth", cri), ("containerd", peer)):
        pod, cfg = engine.pod(f"info-{name}")
        ctr = engine.container(pod, cfg, "redir", ["sh", "-c", "echo x >&2 && exec sleep 300"])
        got = {}
        for what, args in (("container", ["inspect", ctr]), ("sandbox", ["inspectp", pod]),
                           ("image", ["inspecti", IMG])):  # crictl's JSON keeps the info's key order
            p = engine(args[0], "-o", "json", args[1])
            got[what] = [k for k, _ in json.loads(p.out, object_pairs_hook=lambda kv: kv)[1][1]]
        line = next(x for x in engine("inspect", "-o", "table", ctr).out.splitlines()
                    if x.startswith("Info: map[info:"))
        got["text"] = line[len("Info: map[info:"):-1]  # the info as the runtime wrote it
        seen[name] = got
    for what in ("container", "sandbox", "image"):
        bk, ck = seen["berth"][what], seen["containerd"][what]
        common = [k for k in ck if k in bk]
        assert bk[:len(common)] == common, (what, bk, ck)  # containerd's in its order, berth's extras after
    for name in ("berth", "containerd"):
        text = seen[name]["text"]
        assert ", " not in text and '": ' not in text, (name, text[:200])
        assert "echo x \\u003e\\u00262 \\u0026\\u0026 exec" in text, (name, text[:400])


def test_websocket_exec_tty_starts_at_the_clients_size(srv, sleeper):
    w = WsClient(srv.server.exec_url(sleeper, ["sh", "-c", "stty size; read x; stty size"], True, True, True, False))
    w.send(4, b'{"Width":91,"Height":33}')  # the resize channel, before anything else
    w.wait(lambda: b"33 91" in w.channel(1))
    w.send(4, b'{"Width":100,"Height":44}')
    time.sleep(0.2)
    w.send(0, b"go\r")
    w.run_to_end()
    out = w.channel(1).decode()
    assert out.startswith("33 91\r\n") and out.rstrip().endswith("44 100"), out
    assert json.loads(w.channel(3)) == {"metadata": {}, "status": "Success"}
