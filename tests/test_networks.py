"""Container networking as a user sees it: the default bridge, user-defined networks with their
embedded DNS, published ports, isolation, connect/disconnect, the /etc files, docker's CLI and
SDK against berthd, and no leftovers on the host (veths, netns, IPs, iptables rules).

Traffic goes only to 127.0.0.1 and to containers these tests create."""

import json
import os
import socket
import subprocess
import time
import urllib.request

import pytest
from daemon_fixtures import DATA, free_port, reserved_addresses, shared_berthd, wait_for  # noqa: F401 (fixtures)

IMG = "busybox-layers:1"
SERVE = "mkdir -p /www && echo hello-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"


@pytest.fixture(scope="module")
def daemon(shared_berthd):
    shared_berthd.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
    return shared_berthd


@pytest.fixture
def d(daemon):
    try:
        yield daemon
    finally:
        ids = daemon.berth("ps", "-a", "-q", "--no-trunc").out.split()
        if ids:
            daemon.berth("rm", "-f", *ids)
        names = daemon.berth("network", "ls", "-q", "--filter", "type=custom").out.split()
        if names:
            daemon.berth("network", "rm", *names)


def inspect(d, ref):
    return json.loads(d.berth("inspect", ref, check=True).out)[0]


def ip_of(d, ref, net=None):
    ns = inspect(d, ref)["NetworkSettings"]
    return ns["Networks"][net]["IPAddress"] if net else ns["IPAddress"]


def serve(d, name, *opts):
    d.berth("run", "-d", "--name", name, *opts, IMG, "sh", "-c", SERVE, check=True)


def fetch(d, url, *opts, timeout=2):
    """wget from a new container; returns (exit code, output)."""
    # busybox's wget -T crashes (Debian's busybox-static): timeout(1) bounds it instead
    # (and busybox's timeout kills its parent: a shell stays PID 1, which a signal cannot stop)
    p = d.berth("run", "--rm", *opts, IMG, "sh", "-c", f"timeout {timeout} wget -q -O - {url}; exit $?")
    return p.returncode, p.out + p.err


def http_get(url, timeout=3):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


# --- the default bridge ---

def test_default_bridge_gives_each_container_an_address_and_they_talk(d):
    serve(d, "web")
    info = inspect(d, "web")
    nsett = info["NetworkSettings"]
    assert info["HostConfig"]["NetworkMode"] == "default"
    ep = nsett["Networks"]["bridge"]
    assert ep["IPAddress"] == nsett["IPAddress"] and ep["IPAddress"].startswith(d.subnet.rsplit(".", 1)[0])
    assert ep["Gateway"] == d.subnet.rsplit(".", 1)[0] + ".1" and ep["IPPrefixLen"] == 24
    assert len(ep["MacAddress"]) == 17 and nsett["SandboxKey"]
    code, out = fetch(d, f"http://{ep['IPAddress']}/")
    assert code == 0 and out.strip() == "hello-" + info["Config"]["Hostname"]
    # inside: eth0 with that address, /etc/hosts maps the hostname to it, no 127.x resolver
    p = d.berth("exec", "web", "sh", "-c", "ip addr show eth0; cat /etc/hosts /etc/resolv.conf", check=True)
    assert f"inet {ep['IPAddress']}/24" in p.out
    assert f"{ep['IPAddress']}\t{info['Config']['Hostname']}" in p.out
    assert "nameserver 127." not in p.out
    # the host's own files are untouched
    assert info["Config"]["Hostname"] not in open("/etc/hosts").read()


def test_network_none_and_host(d):
    p = d.berth("run", "--rm", "--network", "none", IMG, "sh", "-c", "cat /proc/net/dev; ip addr show lo", check=True)
    assert "eth0" not in p.out and "lo:" in p.out and "inet 127.0.0.1/8" in p.out
    # a running one's namespace is at its SandboxKey, as dockerd's: a tool can network it by hand
    # there (ip netns / nsenter / cnitool); it goes with the container's exit
    cid = d.berth("run", "-d", "--network", "none", IMG, "sleep", "600", check=True).out.strip()
    key = json.loads(d.berth("inspect", cid, check=True).out)[0]["NetworkSettings"]["SandboxKey"]
    try:
        pid = json.loads(d.berth("inspect", cid, check=True).out)[0]["State"]["Pid"]
        assert key and os.stat(key).st_ino == os.stat(f"/proc/{pid}/ns/net").st_ino, key
        subprocess.run(["nsenter", f"--net={key}", "ip", "link", "add", "hand0", "type", "veth", "peer", "name", "hand1"], check=True)
        p = d.berth("exec", cid, "cat", "/proc/net/dev", check=True)
        assert "hand0:" in p.out and "eth0" not in p.out, p.out
    finally:
        d.berth("rm", "-f", cid, check=True)
    assert not os.path.exists(key)
    p = d.berth("run", "--rm", "--network", "host", IMG, "cat", "/proc/net/dev", check=True)
    assert "eth0" in p.out or len(p.out.splitlines()) > 3


def test_network_container_mode_shares_the_other_containers_stack(d):
    """--network container:X shares X's stack and holds nothing of its own: its exit and removal
    (--rm) leave X's network as it was, again and again."""
    serve(d, "web")
    web = ip_of(d, "web")
    for _ in range(2):
        p = d.berth("run", "--rm", "--network", "container:web", IMG, "wget", "-q", "-O", "-",
                    "http://127.0.0.1/", check=True)
        assert p.out.startswith("hello-")
        assert http_get(f"http://{web}/").startswith("hello-")
        assert fetch(d, f"http://{web}/")[1].startswith("hello-")
    p = d.berth("run", "--rm", "--network", "container:nosuch", IMG, "true")
    assert p.returncode == 125 and "nosuch" in p.err and len(p.err.strip().splitlines()) == 1


def test_etc_files_options(d):
    p = d.berth("run", "--rm", "--dns", "192.0.2.53", "--dns-search", "example.internal", "--dns-option", "ndots:3",
                "--add-host", "db:192.0.2.7", "--add-host", "gw:host-gateway", "-h", "box", IMG,
                "sh", "-c", "cat /etc/resolv.conf /etc/hosts /etc/hostname", check=True)
    assert "nameserver 192.0.2.53" in p.out and "search example.internal" in p.out and "options ndots:3" in p.out
    assert "192.0.2.7\tdb" in p.out
    gw = d.subnet.rsplit(".", 1)[0] + ".1"
    assert f"{gw}\tgw" in p.out and p.out.rstrip().endswith("box")
    p = d.berth("run", "--rm", "--add-host", "bad", IMG, "true")
    assert p.returncode == 125 and "add-host" in p.err


def test_host_gateway_is_the_default_bridges_gateway_on_any_network(d):
    """--add-host NAME:host-gateway is dockerd's host-gateway-ip, the default bridge's gateway,
    whatever the container's network: berth wrote a user-defined network's own gateway, and
    127.0.0.1 (the container itself) for --network none and host."""
    gw = d.subnet.rsplit(".", 1)[0] + ".1"
    d.berth("network", "create", "--subnet", "10.231.7.0/24", "hgw-net", check=True)
    try:
        for net in ("hgw-net", "none", "host"):
            p = d.berth("run", "--rm", "--network", net, "--add-host", "gw:host-gateway", IMG, "grep", "gw$",
                        "/etc/hosts", check=True)
            assert p.out == f"{gw}\tgw\n", (net, p.out)
    finally:
        d.berth("network", "rm", "hgw-net", check=True)


# --- published ports ---

def test_published_port_reachable_on_loopback_and_released_at_stop(d):
    port = free_port()
    serve(d, "web", "-p", f"127.0.0.1:{port}:80")
    wait_for(lambda: _get_ok(f"http://127.0.0.1:{port}/"), 10, "the published port")
    assert http_get(f"http://127.0.0.1:{port}/").startswith("hello-")
    assert d.berth("port", "web", check=True).out.strip() == f"80/tcp -> 127.0.0.1:{port}"
    assert f"127.0.0.1:{port}->80/tcp" in d.berth("ps", check=True).out
    assert inspect(d, "web")["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    # a second container cannot take the same host port: a clear error at start
    p = d.berth("run", "-d", "--name", "other", "-p", f"127.0.0.1:{port}:80", IMG, "sleep", "60")
    assert p.returncode == 125 and "port is already allocated" in p.err and f"{port}" in p.err
    assert inspect(d, "other")["State"]["Status"] == "created"
    # from another container, through the host's published port (hairpin through the bridge gateway)
    gw = d.subnet.rsplit(".", 1)[0] + ".1"
    d.berth("stop", "-t", "1", "web", check=True)
    assert not _get_ok(f"http://127.0.0.1:{port}/")
    s = socket.socket()
    s.bind(("127.0.0.1", port))  # free again
    s.close()
    assert gw


def test_a_port_a_host_program_holds_is_a_clear_error(d):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        p = d.berth("run", "--rm", "-p", f"127.0.0.1:{port}:80", IMG, "true")
        # dockerd's words (its userland proxy's bind)
        assert p.returncode == 125 and f"listen tcp4 127.0.0.1:{port}: bind: address already in use" in p.err, p.err
        assert len(p.err.strip().splitlines()) == 1
        assert not os.listdir(os.path.join(d.state, "netns"))  # nothing of the attempt is left
    finally:
        s.close()


def test_ports_random_host_port_and_publish_all(d):
    serve(d, "web", "-p", "127.0.0.1::80", "--expose", "8080")
    ports = inspect(d, "web")["NetworkSettings"]["Ports"]
    host_port = int(ports["80/tcp"][0]["HostPort"])
    assert host_port > 0 and ports["8080/tcp"] is None
    wait_for(lambda: _get_ok(f"http://127.0.0.1:{host_port}/"), 10, "the published port")
    serve(d, "web2", "-P", "--expose", "80")
    p2 = inspect(d, "web2")["NetworkSettings"]["Ports"]["80/tcp"][0]
    assert p2["HostIp"] == "0.0.0.0" and int(p2["HostPort"]) > 0
    wait_for(lambda: _get_ok(f"http://127.0.0.1:{p2['HostPort']}/"), 10, "the -P port")


def test_port_ranges_and_other_containers_reach_published_ports(d):
    base = free_port()
    while base > 65000:
        base = free_port()
    # two container ports published on a range of two host ports (all host addresses)
    d.berth("run", "-d", "--name", "web", "-p", f"{base}-{base + 1}:80-81", IMG, "sh", "-c",
            "mkdir -p /w && echo eighty > /w/i && (httpd -p 81 -h /w &) ; exec httpd -f -p 80 -h /w", check=True)
    ports = inspect(d, "web")["NetworkSettings"]["Ports"]
    v6 = HOST_IPV6  # dockerd's: on [::] too when the host has IPv6
    assert ports == {f"{80 + i}/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(base + i)}] +
                     ([{"HostIp": "::", "HostPort": str(base + i)}] if v6 else []) for i in (0, 1)}
    wait_for(lambda: _get_ok(f"http://127.0.0.1:{base + 1}/i"), 10, "the second port of the range")
    # another container reaches the published port through the host (its bridge gateway)
    gw = d.subnet.rsplit(".", 1)[0] + ".1"
    code, out = fetch(d, f"http://{gw}:{base}/i", timeout=3)
    assert code == 0 and out.strip() == "eighty"


def _ipv6_on_host():
    try:
        with open("/proc/sys/net/ipv6/conf/all/disable_ipv6") as f:
            if f.read().strip() != "0":
                return False
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HOST_IPV6 = _ipv6_on_host()


def _exchange(family, addr, payload, kind=socket.SOCK_STREAM, timeout=10):
    """What comes back for payload sent to addr (an echo): TCP with its write side shut after
    the payload, read to the end; UDP one datagram."""
    with socket.socket(family, kind) as s:
        s.settimeout(timeout)
        s.connect(addr)
        if kind == socket.SOCK_DGRAM:
            s.send(payload)
            return s.recv(65536)
        import threading
        t = threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)))
        t.start()
        got = bytearray()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        t.join()
        return bytes(got)


UDP_ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 90))
while True:
    data, addr = s.recvfrom(65536)
    s.sendto(data, addr)
"""


@pytest.mark.skipif(not HOST_IPV6, reason="the host has no IPv6")
@pytest.mark.skipif(not os.path.exists("/usr/bin/python3") or not os.path.isdir("/lib64"),
                    reason="the UDP echo runs the host's /usr/bin/python3 in the container")
def test_a_port_published_on_no_address_is_on_ipv6_too(d):
    """dockerd publishes -p PORT:80 on 0.0.0.0 and on [::] (its docker-proxy forwards IPv6 to the
    container's IPv4 address): a client that resolves localhost to ::1 first reaches it (berth:
    connection refused there before). Side by side with dockerd 20.10: the same Ports, `port`
    and ps lines, answers over both families, errors. berth's forwarder is the container's shim."""
    net = d.berth("network", "create", "v6pub", check=True)
    assert net.returncode == 0
    # echoes: TCP busybox's nc; UDP (busybox has no UDP server) the host's Python, its /usr lent
    d.berth("run", "-d", "--name", "echo", "--network", "v6pub", "-p", "80", "-p", "90/udp",
            "-v", "/usr:/usr:ro", "-v", "/lib:/lib:ro", "-v", "/lib64:/lib64:ro", IMG, "sh", "-c",
            f"nc -ll -p 80 -e cat & exec /usr/bin/python3 -c '{UDP_ECHO}'", check=True)
    ports = inspect(d, "echo")["NetworkSettings"]["Ports"]
    tcp, udp = ports["80/tcp"], ports["90/udp"]
    assert [b["HostIp"] for b in tcp] == ["0.0.0.0", "::"] and tcp[0]["HostPort"] == tcp[1]["HostPort"]
    assert [b["HostIp"] for b in udp] == ["0.0.0.0", "::"] and udp[0]["HostPort"] == udp[1]["HostPort"]
    tp, up = int(tcp[0]["HostPort"]), int(udp[0]["HostPort"])
    assert d.docker("port", "echo", "80", check=True).out.split() == [f"0.0.0.0:{tp}", f"[::]:{tp}"]
    assert d.berth("port", "echo", "80", check=True).out.split() == [f"0.0.0.0:{tp}", f"[::]:{tp}"]
    assert d.berth("port", "echo", check=True).out == d.docker("port", "echo", check=True).out  # all, sorted
    assert f"[::]:{tp}->80/tcp" in d.docker("ps", "--format", "{{.Ports}}", check=True).out
    wait_for(lambda: _exchange(socket.AF_INET6, ("::1", tp), b"x", timeout=1) == b"x", 10, "the echo on [::1]")
    big = os.urandom(3 << 20)  # more than any socket buffer: the relay's back-pressure, both ways
    assert _exchange(socket.AF_INET6, ("::1", tp), big) == big
    assert _exchange(socket.AF_INET, ("127.0.0.1", tp), b"over IPv4") == b"over IPv4"
    wait_for(lambda: _udp_ok(up), 10, "the UDP echo on [::1]")
    # taken: the same port on [::] for another container, in dockerd's words
    p = d.berth("run", "-d", "--name", "second", "--network", "v6pub", "-p", f"[::]:{tp}:80", IMG, "sleep", "60")
    assert p.returncode == 125 and f"Bind for :::{tp} failed: port is already allocated" in p.err, p.err
    # gone with the container's run: refused, and the port free again
    d.berth("rm", "-f", "echo", "second", check=True)
    with pytest.raises(OSError):
        _exchange(socket.AF_INET6, ("::1", tp), b"x", timeout=2)
    with socket.socket(socket.AF_INET6) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind(("::", tp))
    # on ::1 alone: not on IPv4
    port = free_port()
    serve(d, "v6only", "--network", "v6pub", "-p", f"[::1]:{port}:80")
    assert inspect(d, "v6only")["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "::1", "HostPort": str(port)}]}
    wait_for(lambda: _get_ok(f"http://[::1]:{port}/"), 10, "the port on ::1")
    assert not _get_ok(f"http://127.0.0.1:{port}/")
    # the forwarder closed those connections first (httpd ends them): they linger in TIME_WAIT on
    # the port, which takes a new listener all the same (berthd's check refused it before)
    d.berth("rm", "-f", "v6only", check=True)
    serve(d, "v6again", "--network", "v6pub", "-p", f"[::1]:{port}:80")
    wait_for(lambda: _get_ok(f"http://[::1]:{port}/"), 10, "the port on ::1 again")


@pytest.mark.skipif(not HOST_IPV6, reason="the host has no IPv6")
def test_a_dual_stack_containers_port_answers_on_loopback_of_both_families(d):
    """On a dual-stack network, portmap's IPv6 DNAT took [::1] too, and dropped it (a loopback
    source cannot leave the host): the connection hung (dockerd answers, through its proxy).
    portmap keeps to IPv4 now; [::] is the shim's, to the container's IPv6 address."""
    d.berth("network", "create", "--ipv6", "--subnet", "10.247.0.0/24", "--subnet", "fd00:247::/64", "ds",
            check=True)
    port = free_port()
    serve(d, "dsweb", "--network", "ds", "-p", f"{port}:80")
    for url in (f"http://127.0.0.1:{port}/", f"http://[::1]:{port}/"):
        wait_for(lambda: _get_ok(url), 10, url)
        assert http_get(url).startswith("hello-")


def test_what_anothers_network_decides_is_refused_in_dockerds_words(d):
    """A container on another's network (container:X) cannot set what that network decides:
    dockerd refuses at create, in its words and order; berth took and ignored them. And one host
    port bound twice by one container is dockerd's allocator's refusal (berth's forwarder failed
    on it in words of its own)."""
    d.berth("run", "-d", "--name", "owner", "--network", "none", IMG, "sleep", "60", check=True)
    for opts, words in ((["-h", "x"], "hostname and the network mode"),
                        (["--dns", "192.0.2.53"], "dns and the network mode"),
                        (["--add-host", "a:192.0.2.1"], "custom host-to-IP mapping and the network mode"),
                        (["--link", "owner:o"], "container type network can't be used with links. This would "
                                                "result in undefined behavior"),
                        (["-p", "80"], "port publishing and the container type network mode"),
                        (["-P"], "port publishing and the container type network mode"),
                        (["--expose", "80"], "port exposing and the container type network mode")):
        for cli in (d.docker, d.berth):
            p = cli("create", "--network", "container:owner", *opts, IMG, "true")
            assert p.returncode == 1 and f"conflicting options: {words}" in p.err, (opts, p.err)  # (create's 1)
    assert d.berth("ps", "-a", "-q", "--no-trunc").out.split() == [inspect(d, "owner")["Id"]]  # nothing made
    port = free_port()
    p = d.docker("run", "--rm", "--name", "twice", "-p", f"{port}:80", "-p", f"{port}:81", IMG, "true")
    assert p.returncode == 125 and f"Bind for 0.0.0.0:{port} failed: port is already allocated" in p.err, p.err


def test_ports_are_listed_only_while_it_runs(d):
    """dockerd's NetworkSettings.Ports: {} before the start and after the exit; while it runs,
    its exposed ports (null when not published) and its bindings. berth listed the exposed ports
    as null before and after too (side by side with dockerd 20.10)."""
    d.berth("create", "--name", "exp", "--expose", "90", "-p", "127.0.0.1::80", IMG, "sleep", "60", check=True)
    assert inspect(d, "exp")["NetworkSettings"]["Ports"] == {}
    d.berth("start", "exp", check=True)
    ports = inspect(d, "exp")["NetworkSettings"]["Ports"]
    assert ports["90/tcp"] is None and ports["80/tcp"][0]["HostIp"] == "127.0.0.1"
    d.berth("kill", "exp", check=True)
    assert inspect(d, "exp")["NetworkSettings"]["Ports"] == {}
    assert d.berth("ps", "-a", "--filter", "name=exp", "--format", "{{.Ports}}", check=True).out.strip() == ""


def _udp_ok(port):
    try:
        return _exchange(socket.AF_INET6, ("::1", port), b"dgram\n", socket.SOCK_DGRAM, timeout=0.5) == b"dgram\n"
    except OSError:
        return False


def test_bad_publish_specs_are_one_line_errors(d):
    for spec in ("abc", "1:2:3:4", "70000:80", "80/icmp", "8000-8001:80-82"):
        p = d.berth("run", "--rm", "-p", spec, IMG, "true")
        assert p.returncode == 125 and len(p.err.strip().splitlines()) == 1 and "Traceback" not in p.err, spec
    assert d.berth("ps", "-a", "-q").out.strip() == ""


def _get_ok(url):
    try:
        http_get(url, timeout=1)
        return True
    except OSError:
        return False


# --- user-defined networks, names ---

def test_user_network_names_aliases_later_containers_and_restarts(d):
    d.berth("network", "create", "front", check=True)
    serve(d, "web", "--network", "front", "--network-alias", "www")
    for name in ("web", "www", "web.front", inspect(d, "web")["Id"][:12]):
        code, out = fetch(d, f"http://{name}/", "--network", "front")
        assert code == 0 and out.startswith("hello-"), (name, out)
    # a resolver pointing at the embedded DNS, not a hosts file listing the peers
    p = d.berth("run", "--rm", "--network", "front", IMG, "cat", "/etc/resolv.conf", "/etc/hosts", check=True)
    assert "nameserver 127.0.0.11" in p.out and "www" not in p.out
    # a client started first resolves a server started later
    d.berth("run", "-d", "--name", "client", "--network", "front", IMG, "sleep", "600", check=True)
    serve(d, "late", "--network", "front")
    p = d.berth("exec", "client", "timeout", "3", "wget", "-q", "-O", "-", "http://late/", check=True)
    assert p.out.startswith("hello-")
    # restarted with a new address: the answer follows
    d.berth("network", "create", "spare", check=True)
    filler = d.berth("run", "-d", "--network", "front", IMG, "sleep", "600", check=True).out.strip()
    old = ip_of(d, "late", "front")
    d.berth("stop", "-t", "0", "late", check=True)
    d.berth("rm", "-f", filler, check=True)
    d.berth("run", "-d", "--name", "filler2", "--network", "front", IMG, "sleep", "600", check=True)
    d.berth("start", "late", check=True)
    new = ip_of(d, "late", "front")
    p = d.berth("exec", "client", "nslookup", "late", check=True)
    assert new in p.out, (old, new, p.out)
    # a server of the container's own on port 53 does not clash with the embedded DNS (docker's redirect)
    p = d.berth("run", "--rm", "--network", "front", IMG, "sh", "-c", "httpd -p 53 -h /tmp && nslookup web")
    assert p.returncode == 0 and ip_of(d, "web", "front") in p.out, p.out + p.err
    # a name not on the network does not resolve
    p = d.berth("exec", "client", "nslookup", "nosuchcontainer")
    assert p.returncode != 0


def test_names_resolve_after_daemon_restart(daemon, tmp_path):
    from daemon_fixtures import Daemon
    dm = Daemon(tmp_path / "d")
    dm.start()
    try:
        dm.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        dm.berth("network", "create", "n1", check=True)
        dm.berth("run", "-d", "--name", "web", "--network", "n1", "-p", "127.0.0.1::80",
                 *(["-p", "[::1]::80"] if HOST_IPV6 else []), IMG, "sh", "-c", SERVE, check=True)
        dm.berth("run", "-d", "--name", "client", "--network", "n1", IMG, "sleep", "600", check=True)
        dm.berth("run", "-d", "--name", "plain", IMG, "sleep", "600", check=True)  # (the default bridge made)
        dm.kill9()
        dm.start()
        p = dm.berth("exec", "client", "timeout", "3", "wget", "-q", "-O", "-", "http://web/", check=True)
        assert p.out.startswith("hello-")
        # its published ports, NAT and the shim's IPv6 forwarder, served on through the restart
        ports = json.loads(dm.berth("inspect", "web", check=True).out)[0]["NetworkSettings"]["Ports"]["80/tcp"]
        for b in ports:
            host = f"[{b['HostIp']}]" if ":" in b["HostIp"] else b["HostIp"]
            wait_for(lambda: _get_ok(f"http://{host}:{b['HostPort']}/"), 10, f"{host}:{b['HostPort']}")
        assert "n1" in dm.berth("network", "ls", check=True).out
        # the exited container's attachment goes at the next start; a stopped daemon leaves no bridge
        # (the default one too: there at the restart, but made by the berthd before)
        dm.berth("rm", "-f", "web", "client", "plain", check=True)
        dm.berth("network", "rm", "n1", check=True)
    finally:
        dm.berth("rm", "-f", "web", "client", "plain")
        dm.cleanup()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert dm.bridge not in links


def test_networks_are_isolated_and_internal_has_no_way_out(d):
    d.berth("network", "create", "n1", check=True)
    d.berth("network", "create", "n2", check=True)
    d.berth("network", "create", "--internal", "sealed", check=True)
    serve(d, "na", "--network", "n1")
    serve(d, "nb", "--network", "n2")
    serve(d, "nc", "--network", "sealed")
    ip_a, ip_b = ip_of(d, "na", "n1"), ip_of(d, "nb", "n2")
    assert fetch(d, f"http://{ip_a}/", "--network", "n1")[0] == 0
    assert fetch(d, f"http://{ip_b}/", "--network", "n1", timeout=1)[0] != 0  # n1 -> n2 dropped
    assert fetch(d, f"http://{ip_a}/", "--network", "n2", timeout=1)[0] != 0  # n2 -> n1 dropped
    assert fetch(d, f"http://{ip_a}/", "--network", "sealed", timeout=1)[0] != 0  # internal: no route out
    assert fetch(d, "http://nc/", "--network", "sealed")[0] == 0  # but peers talk
    p = d.berth("run", "--rm", "--network", "sealed", IMG, "ip", "route", check=True)
    assert "default" not in p.out
    # the default bridge is isolated from user networks too
    assert fetch(d, f"http://{ip_a}/", timeout=1)[0] != 0


def test_network_create_options_ip_and_mac(d):
    d.berth("network", "create", "--subnet", "10.251.7.0/24", "--gateway", "10.251.7.254",
            "--ip-range", "10.251.7.128/25", "-l", "team=a", "-o", "com.docker.network.driver.mtu=1400",
            "custom", check=True)
    n = json.loads(d.berth("network", "inspect", "custom", check=True).out)[0]
    assert n["IPAM"]["Config"] == [{"Subnet": "10.251.7.0/24", "Gateway": "10.251.7.254", "IPRange": "10.251.7.128/25"}]
    assert n["Labels"] == {"team": "a"} and n["Driver"] == "bridge"
    p = d.berth("network", "inspect", "-f", "{{.Name}} {{.Driver}} {{.Internal}}", "custom", check=True)
    assert p.out.strip() == "custom bridge false"
    assert d.berth("inspect", "-f", "{{.Name}} {{.Scope}}", "custom", check=True).out.strip() == "custom local"
    d.berth("volume", "create", "vcustom", check=True)
    assert d.berth("inspect", "-f", "{{.Name}} {{.Driver}}", "vcustom", check=True).out.strip() == "vcustom local"
    d.berth("volume", "rm", "vcustom", check=True)
    p = d.berth("inspect", "nothing-by-this-name")
    assert p.returncode == 1 and "No such object: nothing-by-this-name" in p.err
    d.berth("run", "-d", "--name", "auto", "--network", "custom", IMG, "sleep", "600", check=True)
    assert ip_of(d, "auto", "custom").startswith("10.251.7.1")  # from the range (128-254)
    d.berth("run", "-d", "--name", "fixed", "--network", "custom", "--ip", "10.251.7.9",
            "--mac-address", "02:42:ac:11:00:09", IMG, "sleep", "600", check=True)
    ep = inspect(d, "fixed")["NetworkSettings"]["Networks"]["custom"]
    assert ep["IPAddress"] == "10.251.7.9" and ep["MacAddress"] == "02:42:ac:11:00:09" and ep["Gateway"] == "10.251.7.254"
    p = d.berth("exec", "fixed", "ip", "link", "show", "eth0", check=True)
    assert "02:42:ac:11:00:09" in p.out and "mtu 1400" in p.out
    # the address is taken: dockerd 20.10's words (its 403 at the start); outside the subnet: refused at create
    p = d.berth("run", "--rm", "--network", "custom", "--ip", "10.251.7.9", IMG, "true")
    assert p.returncode == 125 and p.err == "berth: Address already in use\n", p.err
    p = d.docker("run", "--rm", "--network", "custom", "--ip", "10.251.7.9", IMG, "true")
    assert p.returncode == 125 and "Error response from daemon: Address already in use" in p.err, p.err
    p = d.berth("run", "--rm", "--network", "custom", "--ip", "10.9.9.9", IMG, "true")
    assert p.returncode == 125 and "10.9.9.9" in p.err
    assert "custom" in d.berth("network", "ls", "--filter", "label=team=a", check=True).out
    assert "custom" not in d.berth("network", "ls", "--filter", "label=team=b", check=True).out


def test_network_rm_prune_and_bad_input(d):
    d.berth("network", "create", "used", check=True)
    d.berth("network", "create", "idle", check=True)
    d.berth("run", "-d", "--name", "holder", "--network", "used", IMG, "sleep", "600", check=True)
    p = d.berth("network", "rm", "used")
    assert p.returncode != 0 and "active endpoints" in p.err
    p = d.berth("network", "create", "used")
    assert p.returncode != 0 and "already exists" in p.err
    for args, what in ((["--subnet", "nonsense"], "subnet"), (["-d", "overlay"], "swarm manager"),
                       (["--gateway", "10.0.0.1"], "subnet"), (["--subnet", "10.252.0.0/24", "--gateway", "10.253.0.1"], "gateway")):
        p = d.berth("network", "create", *args, "bad")
        assert p.returncode != 0 and what in p.err and len(p.err.strip().splitlines()) == 1, (args, p.err)
    assert "bad" not in [line.split()[1] for line in d.berth("network", "ls", check=True).out.splitlines()[1:]]
    for builtin in ("bridge", "host", "none"):
        assert d.berth("network", "rm", builtin).returncode != 0
    # as the docker CLI: each network removed named once; -f says nothing of one that is not there
    d.berth("network", "create", "gone", check=True)
    p = d.berth("network", "rm", "-f", "gone", "nosuchnet")
    assert p.returncode == 0 and p.out.splitlines() == ["gone"], p.out + p.err
    p = d.berth("network", "prune", "-f", check=True)
    assert "idle" in p.out and "used" not in p.out
    p = d.berth("run", "--rm", "--network", "nosuchnet", IMG, "true")
    assert p.returncode == 125 and "nosuchnet" in p.err and "not found" in p.err
    d.berth("rm", "-f", "holder", check=True)
    # a container configured on a network but not running does not hold it (dockerd's); its start
    # then fails, the network gone
    d.berth("create", "--name", "holder", "--network", "used", IMG, "true", check=True)
    d.berth("network", "rm", "used", check=True)
    p = d.berth("start", "holder")
    assert p.returncode != 0 and "network used not found" in p.err, p.err
    d.berth("rm", "holder", check=True)


def test_connect_and_disconnect_a_running_container(d):
    d.berth("network", "create", "n1", check=True)
    d.berth("network", "create", "n2", check=True)
    serve(d, "web", "--network", "n1")
    d.berth("run", "-d", "--name", "client", "--network", "n2", IMG, "sleep", "600", check=True)
    assert d.berth("exec", "client", "timeout", "1", "wget", "-q", "-O", "-", "http://web/").returncode != 0
    d.berth("network", "connect", "--alias", "site", "n2", "web", check=True)
    nets = inspect(d, "web")["NetworkSettings"]["Networks"]
    assert set(nets) == {"n1", "n2"} and nets["n2"]["IPAddress"]
    p = d.berth("exec", "client", "timeout", "3", "wget", "-q", "-O", "-", "http://site/", check=True)
    assert p.out.startswith("hello-")
    p = d.berth("network", "connect", "n2", "web")
    assert p.returncode != 0 and "already" in p.err
    d.berth("network", "disconnect", "n2", "web", check=True)
    assert set(inspect(d, "web")["NetworkSettings"]["Networks"]) == {"n1"}
    assert d.berth("exec", "client", "timeout", "1", "wget", "-q", "-O", "-", "http://site/").returncode != 0
    assert "eth1" not in d.berth("exec", "web", "cat", "/proc/net/dev", check=True).out


def test_a_bridge_name_already_on_the_host_is_used_not_taken(d):
    """-o com.docker.network.bridge.name of an interface already on the host, as libnetwork's
    bridge driver: a bridge is used and left there when the network goes; anything else is
    refused (its words); two networks cannot share a bridge. berthd deleted whatever interface
    had the name at `network rm` (a veth here; the host's eth0 for -o ...name=eth0)."""
    tag = os.urandom(3).hex()
    veth, peer, mine = f"hv{tag}", f"hw{tag}", f"hb{tag}"
    subprocess.run(["ip", "link", "add", veth, "type", "veth", "peer", "name", peer], check=True)
    subprocess.run(["ip", "link", "add", mine, "type", "bridge"], check=True)
    try:
        p = d.berth("network", "create", "-o", f"com.docker.network.bridge.name={veth}", "onveth")
        assert p.returncode == 1 and p.err.strip() == f"berth: existing interface {veth} is not a bridge", p.err
        d.berth("network", "create", "-o", f"com.docker.network.bridge.name={mine}", "onmine", check=True)
        p = d.berth("network", "create", "-o", f"com.docker.network.bridge.name={mine}", "again")
        assert p.returncode == 1 and p.err.strip().endswith(f"({mine}): networks have same bridge name"), p.err
        p = d.berth("run", "--rm", "--network", "onmine", IMG, "cat", "/sys/class/net/eth0/iflink", check=True)
        d.berth("network", "rm", "onmine", check=True)
        for name in (veth, peer, mine):
            assert os.path.exists(f"/sys/class/net/{name}"), name
        # one berth made goes with its network
        d.berth("network", "create", "-o", f"com.docker.network.bridge.name=hm{tag}", "made", check=True)
        d.berth("run", "--rm", "--network", "made", IMG, "true", check=True)
        assert os.path.isdir(f"/sys/class/net/hm{tag}/bridge")
        d.berth("network", "rm", "made", check=True)
        assert not os.path.exists(f"/sys/class/net/hm{tag}")
    finally:
        for name in (veth, mine, f"hm{tag}"):
            subprocess.run(["ip", "link", "del", name], capture_output=True)


def test_macvlan_network_on_a_dummy_parent(d):
    parent = "bdm" + os.urandom(3).hex()
    # a veth as the parent (this kernel has no dummy links): macvlan children bridge on it
    subprocess.run(["ip", "link", "add", parent, "type", "veth", "peer", "name", parent + "p"], check=True)
    try:
        subprocess.run(["ip", "link", "set", parent, "up"], check=True)
        subprocess.run(["ip", "link", "set", parent + "p", "up"], check=True)
        d.berth("network", "create", "-d", "macvlan", "-o", f"parent={parent}", "--subnet", "10.252.9.0/24", "mv",
                check=True)
        serve(d, "web", "--network", "mv")
        code, out = fetch(d, "http://web/", "--network", "mv")
        assert code == 0 and out.startswith("hello-")
        p = d.berth("network", "create", "-d", "ipvlan", "nope")
        assert p.returncode != 0 and "parent" in p.err
        d.berth("network", "create", "-d", "ipvlan", "-o", f"parent={parent}", "--subnet", "10.252.10.0/24", "iv",
                check=True)
        probe = subprocess.run(["ip", "link", "add", "link", parent, "name", parent + "i", "type", "ipvlan"],
                               capture_output=True)
        subprocess.run(["ip", "link", "del", parent + "i"], capture_output=True)
        if probe.returncode == 0:
            serve(d, "web2", "--network", "iv")
            assert ip_of(d, "web2", "iv").startswith("10.252.10.")
            code, out = fetch(d, "http://web2/", "--network", "iv")
            assert code == 0 and out.startswith("hello-")
        else:  # a kernel without ipvlan (this one): the plugin's refusal, in one line, and nothing left
            p = d.berth("run", "-d", "--name", "web2", "--network", "iv", IMG, "true")
            assert p.returncode == 125 and "ipvlan" in p.err and len(p.err.strip().splitlines()) == 1
            assert os.listdir(os.path.join(d.state, "netns")) == [inspect(d, "web")["Id"]]  # web2's went
    finally:
        d.berth("rm", "-f", "web", "web2")
        d.berth("network", "rm", "mv", "iv")
        subprocess.run(["ip", "link", "del", parent])


def test_networks_belong_to_namespaces(d):
    d.berth("-n", "netns-a", "network", "create", "shared-name", check=True)
    assert "shared-name" not in d.berth("network", "ls", check=True).out
    d.berth("network", "create", "shared-name", check=True)  # same name, other namespace
    assert d.berth("-n", "netns-a", "network", "rm", "shared-name").returncode == 0
    d.berth("namespace", "rm", "netns-a", check=True)


# --- no leftovers ---

def _bridges(d):
    """The Linux bridges of the daemon's networks (from the conflists it wrote)."""
    out = [d.bridge]
    for root, _, files in os.walk(os.path.join(d.base, "cni")):
        for f in files:
            if f.endswith(".conflist"):
                with open(os.path.join(root, f)) as fh:
                    out.append(json.load(fh)["plugins"][0].get("bridge"))
    return sorted({b for b in out if b})


def _host_snapshot(d):
    veths = []
    for b in _bridges(d):  # only this daemon's (other engines may be busy on this host)
        links = subprocess.run(["ip", "-o", "link", "show", "master", b], capture_output=True, text=True).stdout
        veths += [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()]
    veths.sort()
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    rules = sorted(r for r in rules.splitlines() if r.startswith("-A"))
    netns = os.listdir(os.path.join(d.state, "netns")) if os.path.isdir(os.path.join(d.state, "netns")) else []
    ipam = []
    for root, _, files in os.walk(os.path.join(d.state, "cni", "ipam")):
        ipam += [f for f in files if f[0].isdigit() and not f.startswith("last_reserved")]
    with open("/proc/self/mountinfo") as f:
        mounts = sorted(line.split()[4] for line in f if line.split()[4].startswith(d.state))
    cache_dir = os.path.join(d.state, "cni", "results")
    cache = sorted(os.listdir(cache_dir)) if os.path.isdir(cache_dir) else []
    return {"veths": veths, "rules": rules, "netns": netns, "ipam": ipam, "mounts": mounts, "cache": cache}


def test_run_rm_cycles_leave_nothing_behind(d, tmp_path):
    port = free_port()
    d.berth("network", "create", "cyc", check=True)
    # the bridges and the shared chains (portmap's among them) exist from here on
    d.berth("run", "--rm", "-p", f"127.0.0.1:{port}:80", IMG, "true", check=True)
    d.berth("run", "--rm", "--network", "cyc", IMG, "true", check=True)
    # interfaces go with their namespace, which the kernel destroys in the background
    wait_for(lambda: _host_snapshot(d)["veths"] == [], 10, "the warm-up's veths to go")
    before = _host_snapshot(d)
    ids = []
    for i in range(30):
        net = "cyc" if i % 2 else "bridge"
        cidfile = str(tmp_path / f"cid{i}")
        ports = ["-p", f"127.0.0.1:{port}:80"] if i % 3 else []
        d.berth("run", "--rm", "--cidfile", cidfile, "--network", net, *ports, IMG, "true", check=True)
        ids.append(open(cidfile).read().strip())
        cid = d.berth("run", "-d", "--network", net, IMG, "sleep", "60", check=True).out.strip()
        d.berth("rm", "-f", cid, check=True)
        ids.append(cid)
    # a --rm container's attachment is released just after its removal: a moment at most
    wait_for(lambda: all(_host_snapshot(d)[k] == before[k] for k in ("veths", "cache", "ipam", "netns")), 10,
             "the last attachment to go")
    after = _host_snapshot(d)
    for k in ("veths", "netns", "ipam", "mounts", "cache"):
        assert after[k] == before[k], k
    # no rule of these containers is left, and berth's own rules are as they were
    assert [r for r in after["rules"] if any(c in r for c in ids)] == []
    mine = _bridges(d)  # (other daemons on this host may be adding rules for their own bridges)
    assert [r for r in after["rules"] if "BERTH" in r and any(b in r for b in mine)] == \
        [r for r in before["rules"] if "BERTH" in r and any(b in r for b in mine)]


SLOW_BRIDGE_DEL = """#!/bin/sh
# the bridge plugin, its DEL a second late: a release that is still under way
[ "$CNI_COMMAND" = DEL ] && sleep 1
exec /usr/lib/cni/bridge
"""



def _slow_del_daemon(tmp_path):
    """A started berthd of its own whose bridge plugin's DEL is a second late (skips without
    the bridge plugin)."""
    if not os.access("/usr/lib/cni/bridge", os.X_OK):
        pytest.skip("no /usr/lib/cni/bridge")
    from daemon_fixtures import Daemon
    bindir = tmp_path / "cni-bin"
    bindir.mkdir()
    (bindir / "bridge").write_text(SLOW_BRIDGE_DEL)
    (bindir / "bridge").chmod(0o755)
    dm = Daemon(tmp_path / "d", extra_config=f'cni_plugin_dirs = ["{bindir}", "/usr/lib/cni", "/opt/cni/bin"]\n')
    dm.start()
    return dm


def test_a_stop_right_after_run_rm_leaves_no_rules_of_the_container(tmp_path):
    """`run --rm` answers once the container is removed, its network released before (dockerd's
    order); a berthd stopped at once (SIGTERM): once the stop is over, its address is not held,
    no cached attachment in its state, no bridge, no rule of berth's for it. (The bridge plugin's
    DEL is made slow here: when the network went after the answer, the stop came while it ran.)"""
    dm = _slow_del_daemon(tmp_path)
    try:
        dm.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        p = dm.berth("run", "--rm", IMG, "sh", "-c", "ip -4 -o addr show eth0", check=True)
        ip = p.out.split("inet ")[1].split("/")[0]
    finally:
        dm.cleanup()  # SIGTERM as soon as the run answered
    assert ip not in reserved_addresses(dm.state), dm.log()
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert dm.bridge not in rules and ip not in rules
    assert os.listdir(os.path.join(dm.state, "cni", "results")) == []
    assert dm.bridge not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout



def test_an_ended_runs_network_goes_after_its_exit_and_whoever_needs_it_gone_waits(tmp_path):
    """A run that ended (no --rm, no restart, no published port) is recorded as ended first, its
    network released after (dockerd's order). With the bridge plugin's DEL a second late, that
    release is still under way when `run` answers: a start right then waits for it and gets a
    working network afresh, a stop answers once it is over, a network rm waits for it, and
    nothing of the runs is left afterwards."""
    dm = _slow_del_daemon(tmp_path)
    ips = []
    try:
        dm.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        dm.berth("network", "create", "late", check=True)
        probe = ("ip -4 -o addr show eth0 | grep -o 'inet [0-9.]*'; "
                 "ping -c 1 -W 2 $(ip route | awk '/default/ {print $3}') >/dev/null && echo reached; exit 3")
        p = dm.berth("run", "--name", "l1", "--network", "late", IMG, "sh", "-c", probe)
        assert p.returncode == 3 and "reached" in p.out, p.out + p.err
        ips.append(p.out.split("inet ")[1].split()[0])
        st = json.loads(dm.berth("inspect", "l1", check=True).out)[0]["State"]
        assert (st["Status"], st["ExitCode"]) == ("exited", 3)
        for _ in range(2):  # started again at once, while the last run's release is under way
            p = dm.berth("start", "-a", "l1")
            assert p.returncode == 3 and "reached" in p.out, p.out + p.err
            ips.append(p.out.split("inet ")[1].split()[0])
        p = dm.berth("start", "l1", check=True)
        assert dm.berth("stop", "l1", check=True).returncode == 0  # (ended already: its release is awaited)
        results = os.path.join(dm.state, "cni", "results")
        assert os.listdir(results) == []
        dm.berth("run", "--name", "l2", "--network", "late", IMG, "true", check=True)
        dm.berth("rm", "l1", "l2", check=True)
        dm.berth("network", "rm", "late", check=True)  # waits for l2's release
        assert os.listdir(results) == []
    finally:
        dm.cleanup()
    assert not set(ips) & set(reserved_addresses(dm.state)), dm.log()


# --- real peers: the docker CLI and the SDK ---

def test_docker_cli_networks_and_ports(d):
    port = free_port()
    assert d.docker("network", "create", "dnet").returncode == 0
    p = d.docker("network", "ls")
    assert "dnet" in p.out and "bridge" in p.out, p.err
    d.docker("run", "-d", "--name", "dweb", "--network", "dnet", "-p", f"127.0.0.1:{port}:80", IMG, "sh", "-c", SERVE,
             check=True)
    wait_for(lambda: _get_ok(f"http://127.0.0.1:{port}/"), 10, "the published port")
    p = d.docker("run", "--rm", "--network", "dnet", IMG, "wget", "-q", "-O", "-", "http://dweb/", check=True)
    assert p.out.startswith("hello-")
    assert d.docker("port", "dweb", check=True).out.strip() == f"80/tcp -> 127.0.0.1:{port}"
    n = json.loads(d.docker("network", "inspect", "dnet", check=True).out)[0]
    assert [c["Name"] for c in n["Containers"].values()] == ["dweb"]
    ip = d.docker("inspect", "-f", "{{.NetworkSettings.Networks.dnet.IPAddress}}", "dweb", check=True).out.strip()
    assert n["Containers"][next(iter(n["Containers"]))]["IPv4Address"].startswith(ip + "/")
    assert d.docker("network", "connect", "bridge", "dweb").returncode == 0
    assert d.docker("network", "disconnect", "bridge", "dweb").returncode == 0
    p = d.docker("network", "rm", "dnet")
    assert p.returncode != 0
    d.docker("rm", "-f", "dweb", check=True)
    d.docker("network", "rm", "dnet", check=True)


def test_docker_sdk_networks(d):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=d.host)
    net = client.networks.create("sdknet", driver="bridge", labels={"via": "sdk"})
    try:
        web = client.containers.run(IMG, ["sh", "-c", SERVE], name="sdkweb", network="sdknet", detach=True,
                                    ports={"80/tcp": ("127.0.0.1", None)})
        web.reload()
        host_port = web.ports["80/tcp"][0]["HostPort"]
        wait_for(lambda: _get_ok(f"http://127.0.0.1:{host_port}/"), 10, "the SDK's published port")
        out = client.containers.run(IMG, ["wget", "-q", "-O", "-", "http://sdkweb/"], network="sdknet",
                                    remove=True)
        assert out.decode().startswith("hello-")
        net.reload()
        assert [c.name for c in net.containers] == ["sdkweb"]
        assert [n.name for n in client.networks.list(filters={"label": "via=sdk"})] == ["sdknet"]
        web.remove(force=True)
    finally:
        try:
            client.containers.get("sdkweb").remove(force=True)
        except docker.errors.NotFound:
            pass
        net.remove()


def test_dns_names_only_for_api_1_44_clients_and_an_execs_user_only_when_set(d):
    """An endpoint's DNSNames came with API 1.44: a client of an older version (docker-py pins
    1.41 in many projects; docker 20.10's CLI) is not shown it, as dockerd does not; the aliases
    it then gets carry the short id (see inspect's handler). An exec's ProcessConfig.user is
    omitted when no user was asked for (dockerd's omitempty)."""
    docker = pytest.importorskip("docker")
    d.berth("network", "create", "dnsnet", check=True)
    d.berth("run", "-d", "--name", "dnsweb", "--network", "dnsnet", IMG, "sleep", "60", check=True)
    shown = {}
    for version in ("1.41", "1.44"):
        c = docker.APIClient(base_url=d.host, version=version)
        try:
            ep = c.inspect_container("dnsweb")["NetworkSettings"]["Networks"]["dnsnet"]
            row = next(x for x in c.containers() if x["Names"] == ["/dnsweb"])
            shown[version] = ("DNSNames" in ep, "DNSNames" in row["NetworkSettings"]["Networks"]["dnsnet"],
                              ep.get("DNSNames"))
            if version == "1.41":
                plain = c.exec_inspect(c.exec_create("dnsweb", "true")["Id"])["ProcessConfig"]
                as_user = c.exec_inspect(c.exec_create("dnsweb", "true", user="nobody")["Id"])["ProcessConfig"]
        finally:
            c.close()
    assert shown["1.41"] == (False, False, None)
    assert shown["1.44"][:2] == (True, True) and "dnsweb" in shown["1.44"][2]
    assert "user" not in plain and as_user["user"] == "nobody"


def test_connects_a_network_mode_forbids_are_400s_as_dockerd(d):
    """dockerd's validation errors (400, its words): a host-mode or `none` container connected to a
    network, a container connected to `host` (berth answered 409)."""
    import docker
    api = docker.APIClient(base_url=d.host, timeout=30)
    try:
        net = api.create_network(f"vn{os.getpid()}")["Id"]
        host = api.create_container(IMG, "sleep 60", host_config=api.create_host_config(network_mode="host"))["Id"]
        none = api.create_container(IMG, "sleep 60", host_config=api.create_host_config(network_mode="none"))["Id"]
        plain = api.create_container(IMG, "sleep 60")["Id"]
        for cid, to, words in (
                (host, net, "container sharing network namespace with another container or host cannot be "
                            "connected to any other network"),
                (none, net, "container cannot be connected to multiple networks with one of the networks in "
                            "private (none) mode"),
                (plain, "host", "container cannot be disconnected from host network or connected to host network")):
            with pytest.raises(docker.errors.APIError) as e:
                api.connect_container_to_network(cid, to)
            assert (e.value.status_code, e.value.explanation) == (400, words)
    finally:
        api.close()


@pytest.mark.parametrize("driver", ["macvlan", "ipvlan"])
def test_a_parent_that_is_not_there_is_read_as_dockerd_reads_it(d, driver):
    """A -o parent the host lacks is a VLAN subinterface to dockerd (name.vlan_id): its refusals
    of a malformed one, or of one whose interface is missing, in its words (compared with
    dockerd 20.10: the macvlan driver's "does was" is its own); nothing made. berthd said only
    "no such network interface on the host"."""
    base = "lo"  # there on every host
    cases = [("nope" + os.urandom(2).hex(), "invalid subinterface vlan name {p}, example formatting is eth0.10"),
             (f"{base}.x", "unable to parse a valid vlan id from: x (ex. eth0.10 for vlan 10)"),
             (f"{base}.1.2", "required interface name format is: name.vlan_id, ex. eth0.10 for vlan 10, instead "
                             f"received {base}.1.2"),
             ("nope0.5", "-o parent interface " + ("does was" if driver == "macvlan" else "was")
              + " not found on the host: nope0"),
             (f"{base}.5000", "vlan id must be between 1-4094, received: 5000")]
    before = d.docker("network", "ls", "-q").out.split()
    for parent, words in cases:
        p = d.docker("network", "create", "-d", driver, "--subnet", "10.251.77.0/24", "-o", f"parent={parent}",
                     "vl-" + driver)
        assert p.returncode == 1 and p.err.strip() == "Error response from daemon: " + words.format(p=parent), p.err
    assert d.docker("network", "ls", "-q").out.split() == before


def test_removals_at_once_of_one_network(d):
    """`docker network rm` of one network from several clients at once: one removes it, the others
    are told it is not found in the words of a removal that came later (before, the loser of a
    race was told of the metadata store's record: 'network "<id>" not found in namespace ...')."""
    import threading
    for round_ in range(5):
        name = f"race{round_}-" + os.urandom(3).hex()
        d.docker("network", "create", name, check=True)
        results = []

        def rm():
            results.append(d.docker("network", "rm", name))
        threads = [threading.Thread(target=rm) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(p.returncode for p in results) == [0, 1, 1]
        for p in results:
            if p.returncode:
                assert p.err.splitlines()[0] == f"Error response from daemon: network {name} not found", p.err


def test_containers_traffic_passes_a_forward_chain_that_drops_the_rest(d):
    """A host whose FORWARD drops what nothing accepted (dockerd sets the policy DROP): a
    container's traffic out through the host (here to a namespace of the test's own, routed by
    the host) and its answers pass, by berth's own rules for the network's bridge; its traffic to
    another network's containers does not (isolation). The drops are the test's own rules at the
    end of FORWARD for its subnets (the host's policy is left alone)."""
    import random
    d.berth("network", "create", "fwd", check=True)
    subnet = json.loads(d.berth("network", "inspect", "fwd", check=True).out)[0]["IPAM"]["Config"][0]["Subnet"]
    tag = "%06x" % random.getrandbits(24)
    ns, host_end, far = f"fwd{tag}", f"vf{tag}", f"10.{random.randint(200, 249)}.{random.randint(0, 255)}"
    drops = [["-s", subnet, "-j", "DROP"], ["-d", subnet, "-j", "DROP"]]
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns], check=True)
        subprocess.run(["ip", "addr", "add", f"{far}.1/30", "dev", host_end], check=True)
        subprocess.run(["ip", "link", "set", host_end, "up"], check=True)
        for cmd in (["ip", "addr", "add", f"{far}.2/30", "dev", "eth0"], ["ip", "link", "set", "eth0", "up"],
                    ["ip", "route", "add", "default", "via", f"{far}.1"]):
            subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True)
        for rule in drops:
            subprocess.run(["iptables", "-w", "-A", "FORWARD", *rule], check=True)
        p = d.berth("run", "--rm", "--network", "fwd", IMG, "ping", "-c", "1", "-W", "3", f"{far}.2")
        assert p.returncode == 0, p.out + p.err
        serve(d, "other", "--network", "bridge")
        assert fetch(d, f"http://{ip_of(d, 'other', 'bridge')}/", "--network", "fwd", timeout=1)[0] != 0
    finally:
        for rule in drops:
            subprocess.run(["iptables", "-w", "-D", "FORWARD", *rule], capture_output=True)
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
