"""A container's stdin through its shim, as docker clients use it: large input piped through
`cat` (run -i, exec -i), input a container never reads (back-pressure, and the shim still
answers stop), and an attach's end of input (it closes the container's stdin only with
StdinOnce, as dockerd's attach)."""

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
        out = b""
        while len(data) >= 8:
            kind, n = struct.unpack(">BxxxI", data[:8])
            if kind == 1:
                out += data[8:8 + n]
            data = data[8 + n:]
        return out


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
