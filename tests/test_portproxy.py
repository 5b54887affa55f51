"""The shim's port forwarder (berth.shim.portproxy) on the shim's own poller, in this process:
a bounded number of connections at once (the others wait in the listener's backlog, and are
taken when one closes), and everything closed at the end. Its end-to-end use (containers'
ports on [::], TCP and UDP) is in test_networks."""

import socket
import threading
import time

import pytest

from berth.shim import portproxy
from berth.shim.shim import _Poller


def _echo_server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=c: _echo(c), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return srv


def _echo(c):
    with c:
        while True:
            data = c.recv(65536)
            if not data:
                return
            c.sendall(data)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connections_beyond_the_bound_wait_and_all_goes_at_close(monkeypatch):
    monkeypatch.setattr(portproxy, "MAX_CONNS", 2)
    srv = _echo_server()
    port = _free_port()
    sel = _Poller()
    proxies = portproxy.Proxies(sel, [{"proto": "tcp", "host_ip": "127.0.0.1", "host_port": port,
                                       "ip": "127.0.0.1", "port": srv.getsockname()[1]}])
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            for kind, data in sel.select(0.05):
                assert kind == "proxy"
                data()
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        conns = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        for i, c in enumerate(conns[:2]):
            c.sendall(b"%d" % i)
            assert c.recv(10) == b"%d" % i
        conns[2].settimeout(0.5)
        conns[2].sendall(b"third")
        with pytest.raises(socket.timeout):  # in the backlog: not taken while two are open
            conns[2].recv(10)
        assert len(proxies.conns) == 2
        conns[0].close()  # one goes: the waiting one is taken
        conns[2].settimeout(5)
        assert conns[2].recv(10) == b"third"
        deadline = time.monotonic() + 5
        while len(proxies.conns) != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(proxies.conns) == 2
    finally:
        stop.set()
        t.join(5)
        proxies.close()
        srv.close()
    assert proxies.conns == set() and proxies.socks == [] and not sel.data and not sel.wdata
    with pytest.raises(OSError):  # the port is closed
        socket.create_connection(("127.0.0.1", port), timeout=1)
    for c in conns[1:]:
        c.close()
