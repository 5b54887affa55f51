"""A container's stdio through its shim, as docker clients use it: large input piped through
`cat` (run -i, exec -i), input a container never reads (back-pressure, and the shim still
answers stop), an attach's end of input (it closes the container's stdin only with StdinOnce,
as dockerd's attach), and output to attach clients that read slowly or not at all (the
container is slowed while they stay, as under dockerd, the shim is not; a slow one loses
nothing)."""

import json
import os
import socket
import struct
import threading
import time

import pytest
from daemon_fixtures import DATA, shared_berthd, wait_for  # noqa: F401 (fixture)

IMG = "busybox-layers:1"
MIB = os.urandom(512 * 1024).hex().encode()  # 1 MiB, many times a pipe


@pytest.fixture(scope="module")
def d(shared_berthd):
    shared_berthd.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
    yield shared_berthd
    ids = shared_berthd.berth("ps", "-a", "-q", "--no-trunc").out.split()
    if ids:
        shared_berthd.berth("rm", "-f", *ids)


def status(d, cid):
    return d.berth("inspect", "-f", "{{.State.Status}}", cid).out.strip()


@pytest.mark.parametrize("client", ["docker", "berth"])
def test_run_i_pipes_a_mebibyte_through_cat(d, client):
    p = getattr(d, client)("run", "-i", "--rm", IMG, "cat", input=MIB, timeout=60)
    assert p.returncode == 0, p.err
    assert len(p.stdout) == len(MIB) and p.stdout == MIB


def test_exec_i_pipes_a_mebibyte_through_cat(d):
    cid = d.berth("run", "-d", IMG, "sleep", "600", check=True).out.strip()
    p = d.docker("exec", "-i", cid, "cat", input=MIB, timeout=60)
    assert p.returncode == 0, p.err
    assert p.stdout == MIB


class Attach:
    """POST /containers/{id}/attach on the daemon's socket, hijacked (docker's raw stream)."""

    def __init__(self, d, cid):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(30)
        self.s.connect(d.sock)
        self.s.sendall(f"POST /containers/{cid}/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\n"
                       "Host: berth\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.s.recv(4096)
            assert chunk, buf
            buf += chunk
        head, _, self.buf = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def read_to_end(self):
        """The stdout frames until the daemon ends the stream."""
        data = self.buf
        while True:
            chunk = self.s.recv(65536)
            if not chunk:
                break
            data += chunk
        return demux(data)


def test_attach_end_of_input_closes_stdin_only_with_stdin_once(d):
    """dockerd: without StdinOnce (`run -d -i`) the client's end of input ends its attach and
    the container's stdin stays open for the next one; with it, the container's stdin closes."""
    cid = d.docker("run", "-d", "-i", IMG, "sh", "-c", "while read x; do echo got $x; done; echo eof",
                   check=True).out.strip()
    for word in (b"one", b"two"):
        a = Attach(d, cid)
        a.s.sendall(word + b"\n")
        time.sleep(0.3)
        a.s.shutdown(socket.SHUT_WR)
        assert a.read_to_end() == b"got " + word + b"\n"
        a.s.close()
        assert status(d, cid) == "running"
    assert d.berth("logs", cid, check=True).out == "got one\ngot two\n"
    d.berth("rm", "-f", cid, check=True)
    # StdinOnce (what `docker create -i` sets): the end of input is the container's
    cid = d.docker("create", "-i", IMG, "sh", "-c", "while read x; do echo got $x; done; echo eof",
                   check=True).out.strip()
    d.docker("start", cid, check=True)
    a = Attach(d, cid)
    a.s.sendall(b"three\n")
    a.s.shutdown(socket.SHUT_WR)
    assert a.read_to_end() == b"got three\neof\n"
    a.s.close()
    assert d.berth("wait", cid, check=True).out.strip() == "0"


def test_input_a_container_never_reads_does_not_stall_its_shim(d):
    """The shim buffers a little of it, then stops reading the client (its sender blocks); it
    still answers inspect, stop and kill."""
    cid = d.docker("run", "-d", "-i", IMG, "sleep", "600", check=True).out.strip()
    a = Attach(d, cid)
    sent = []

    def feed():
        block = b"x" * 65536
        try:
            for _ in range(1024):  # 64 MiB: more than every buffer on the way
                a.s.sendall(block)
                sent.append(len(block))
        except OSError:
            pass
    t = threading.Thread(target=feed, daemon=True)
    t.start()
    time.sleep(2)
    assert sum(sent) < 16 << 20, sum(sent)
    assert status(d, cid) == "running"
    t0 = time.monotonic()
    d.docker("stop", "-t", "1", cid, check=True, timeout=30)
    assert time.monotonic() - t0 < 15
    assert status(d, cid) == "exited"
    a.s.close()
    t.join(35)


def test_a_held_client_that_goes_away_is_let_go(d):
    """A client whose input the shim holds back (the container does not read it) and that then
    hangs up is dropped by the shim at once: its socket and what it sent do not stay until the
    container ends (the shim's own client, as berthd's front ends use it)."""
    import json

    from berth.shim import protocol as proto
    from berth.shim.client import ShimClient
    cid = d.docker("run", "-d", "-i", IMG, "sleep", "600", check=True).out.strip()
    with open(os.path.join(d.state, "containers", cid, "shim.json")) as f:
        shim_pid = json.load(f)["shim_pid"]

    def fds():
        return len(os.listdir(f"/proc/{shim_pid}/fd"))
    before = fds()
    sock, _ = ShimClient(os.path.join(d.state, "s", cid[:16] + ".sock")).open(
        proto.Attach(stdin=True, stdout=True, stderr=True, close_stdin=False))
    sock.settimeout(3)
    sent = 0
    try:
        while sent < 64 << 20:
            sent += sock.send(b"x" * 65536)
    except OSError:  # the shim holds it back: the send times out
        pass
    assert sent < 64 << 20
    assert fds() == before + 1
    sock.close()
    wait_for(lambda: fds() == before, 10, "the shim to let the client go")
    assert status(d, cid) == "running"
    d.docker("rm", "-f", cid, check=True)


# --- output to clients that read slowly, or not at all ---

YES = ["yes", "0123456789abcdef"]  # endless output, 17 bytes a line


def log_size(d, cid):
    return os.path.getsize(d.berth("inspect", "-f", "{{.LogPath}}", cid, check=True).out.strip())


def quiet_log(d, cid, within=4.5):
    """Whether the container's log stops growing (two samples 0.5 s apart agree) within the
    given seconds: its output is held back."""
    deadline = time.monotonic() + within
    last = log_size(d, cid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = log_size(d, cid)
        if now == last:
            return True
        last = now
    return False


def slow_attach(d, cid):
    a = Attach(d, cid)
    a.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return a


def test_an_attach_client_that_stops_reading_holds_the_output_not_the_shim(d):
    """As under dockerd, a client that does not keep up slows the container's output down (the
    container feels a full pipe) instead of piling it up in berthd; the shim meanwhile serves
    everyone else (an exec answers at once, as dockerd's did), and the client that reads again
    gets the stream where it stopped."""
    cid = d.berth("run", "-d", IMG, *YES, check=True).out.strip()
    rss0 = _rss(d.proc.pid)
    a = slow_attach(d, cid)
    assert quiet_log(d, cid), "the output went on while the client read nothing"
    p = d.docker("exec", cid, "echo", "hi", timeout=30)
    assert p.returncode == 0 and p.stdout == b"hi\n", p.err
    assert _rss(d.proc.pid) - rss0 < 32 << 10  # KiB: berthd did not keep the stream for it
    a.s.settimeout(10)
    before = log_size(d, cid)
    got = bytearray(a.buf)
    while len(got) < 8 << 20:
        chunk = a.s.recv(1 << 20)
        assert chunk, "the stream ended"
        got += chunk
    out = demux(got)
    start = out.index(b"\n") + 1  # the attach came in mid-line
    assert len(out) - start > 4 << 20
    assert out[start:] == (b"0123456789abcdef\n" * (len(out) // 17 + 1))[:len(out) - start], "a gap in the stream"
    assert log_size(d, cid) > before, "the output stayed held while the client read again"
    a.s.close()
    d.berth("rm", "-f", cid, check=True)


def test_an_attach_client_that_never_reads_holds_the_output_until_it_goes(d):
    """As under dockerd (compared on this machine: a client that read nothing for 12 s kept the
    container's output held, and got the stream when it read again), the output stays held
    while the client stays; once it hangs up, the output goes on to the log."""
    cid = d.berth("run", "-d", IMG, *YES, check=True).out.strip()
    a = slow_attach(d, cid)
    assert quiet_log(d, cid)
    time.sleep(6)
    assert quiet_log(d, cid, 1.5), "the client was let go"
    a.s.close()
    assert not quiet_log(d, cid, 2), "the output stayed held after the client went"
    assert status(d, cid) == "running"
    d.berth("rm", "-f", cid, check=True)


def test_a_slow_attach_client_gets_all_of_the_output(d):
    """Nothing is lost for a reader that is slow but keeps reading: the stream and the log both
    have every byte."""
    size = 8 << 20  # many times every buffer on the way
    cid = d.berth("create", IMG, "sh", "-c", f"yes 0123456789abcdef | head -c {size}", check=True).out.strip()
    a = slow_attach(d, cid)
    d.berth("start", cid, check=True)
    out = bytearray()
    data = a.buf
    a.s.settimeout(30)
    while True:
        while len(data) >= 8:
            kind, n = struct.unpack(">BxxxI", data[:8])
            if len(data) < 8 + n:
                break
            assert kind == 1
            out += data[8:8 + n]
            data = data[8 + n:]
        chunk = a.s.recv(16384)
        if not chunk:
            break
        data += chunk
        if len(out) % (1 << 20) < 16384:
            time.sleep(0.2)  # a reader that pauses now and then
    assert len(out) == size
    assert out == (b"0123456789abcdef\n" * (size // 17 + 1))[:size]
    assert d.berth("wait", cid, check=True).out.strip() == "0"
    with open(d.berth("inspect", "-f", "{{.LogPath}}", cid, check=True).out.strip(), "rb") as f:
        logged = b"".join(json.loads(line)["log"].encode() for line in f)
    assert logged == out
    d.berth("rm", cid, check=True)


def demux(data):
    """stdout of docker's multiplexed frames (whole frames only)."""
    out = bytearray()
    while len(data) >= 8:
        kind, n = struct.unpack(">BxxxI", data[:8])
        if len(data) < 8 + n:
            break
        if kind == 1:
            out += data[8:8 + n]
        data = data[8 + n:]
    return bytes(out)


def _rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
