"""A docker daemon.json's defaults for containers, side by side: berthd given the file (its
daemon_json) and dockerd 20.10 given the same (--config-file): the DNS servers, search domains and
options of containers that give none, the default ulimits and /dev/shm size (recorded in
HostConfig, as dockerd records them), no-new-privileges (which --security-opt turns off), the
labels `docker info` shows."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
from daemon_fixtures import DATA, Daemon, missing_cgroup_parents, remove_made, wait_for
from peer_dockerd import Dockerd

IMAGE = "busybox-layers:1"
PARENT = "berth-test-dj" + os.urandom(3).hex()
DAEMON_JSON = {
    "dns": ["10.0.0.9"], "dns-search": ["example.org"], "dns-opts": ["ndots:2"],
    "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 2048, "Soft": 1024}},
    "default-shm-size": "32M", "no-new-privileges": True, "labels": ["a=b", "zone=x"],
    "default-ipc-mode": "shareable", "default-cgroupns-mode": "private", "cgroup-parent": "/" + PARENT,
}


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    base = tmp_path_factory.mktemp("dj")
    path = base / "daemon.json"
    # a seccomp profile of the daemon's own: mkdir refused
    (base / "seccomp.json").write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    config = dict(DAEMON_JSON, **{"seccomp-profile": str(base / "seccomp.json")})
    path.write_text(json.dumps(config))
    made = missing_cgroup_parents(PARENT)
    d = Daemon(base / "berthd", f'daemon_json = "{path}"\ncri = false\n').start()
    peer = None
    try:
        d.docker("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        if shutil.which("dockerd"):
            peer = Dockerd(base / "dockerd", extra=config)
            peer.docker("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        yield d, peer
    finally:
        if peer is not None:
            peer.stop()
        d.cleanup()
        remove_made(made)


@contextlib.contextmanager
def berthd_with(tmp_path, text):
    """A berthd of the test's own given a daemon.json of `text`, busybox-layers loaded."""
    dj = tmp_path / "daemon.json"
    dj.write_text(text)
    d = Daemon(tmp_path / "d", f'daemon_json = "{dj}"\ncri = false\n')
    try:
        d.start()
        d.docker("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        yield d
    finally:
        d.cleanup()


SCRIPT = ("ulimit -n; ulimit -Hn; cat /etc/resolv.conf; df -k /dev/shm | tail -1 | tr -s ' ' | cut -d' ' -f2; "
          "grep NoNewPrivs /proc/self/status; grep ':memory:' /proc/self/cgroup | cut -d: -f3; "
          "mkdir /made 2>/dev/null; echo mkdir $?")


def _in_parent(e, name):
    """Whether the container's memory cgroup was under the daemon's cgroup parent (it has run)."""
    cid = e.docker("inspect", "-f", "{{.Id}}", name, check=True).out.strip()
    return os.path.isdir(f"/sys/fs/cgroup/memory/{PARENT}") and not os.path.exists(f"/sys/fs/cgroup/memory/{cid}")


def _both(engines, *args):
    d, peer = engines
    out = []
    for e in (d, peer):
        if e is None:
            continue
        name = "dj" + os.urandom(4).hex()
        try:
            r = e.docker("run", "--name", name, *args, IMAGE, "sh", "-c", SCRIPT, check=True)
            hc = json.loads(e.docker("inspect", "-f", "{{json .HostConfig}}", name, check=True).out)
            cid = e.docker("inspect", "-f", "{{.Id}}", name, check=True).out.strip()
            out.append((r.out.replace(cid, "<id>"), hc["Ulimits"], hc["ShmSize"], hc["SecurityOpt"], hc["Dns"], hc["DnsSearch"],
                        hc["DnsOptions"], hc["IpcMode"], hc["CgroupnsMode"], hc["CgroupParent"],
                        _in_parent(e, name)))
        finally:
            e.docker("rm", "-f", name)
    return out


def test_the_daemons_defaults_for_containers(engines):
    """Before, berthd had no daemon_json (an unknown key), and its `dns` never reached a
    container's resolv.conf (dockerd writes the daemon's dns there)."""
    got = _both(engines)
    assert got[0][0].splitlines() == ["1024", "2048", "search example.org", "nameserver 10.0.0.9", "options ndots:2",
                                      "32768", "NoNewPrivs:\t1", "/", "mkdir 1"]  # (its own cgroup namespace)
    assert got[0][1:] == ([{"Name": "nofile", "Hard": 2048, "Soft": 1024}], 32 << 20, None, [], [], [],
                          "shareable", "private", "", True)
    if len(got) == 2:
        assert got[0] == got[1]


def test_a_containers_own_options_win(engines):
    got = _both(engines, "--ulimit", "nofile=512:512", "--shm-size", "8m", "--dns-search", "foo.org",
                "--security-opt", "no-new-privileges=false", "--ipc", "private", "--cgroupns", "host",
                "--security-opt", "seccomp=unconfined")
    assert got[0][0].splitlines()[:7] == ["512", "512", "search foo.org", "nameserver 10.0.0.9", "options ndots:2",
                                          "8192", "NoNewPrivs:\t0"]
    assert got[0][0].splitlines()[7:] == [f"/{PARENT}/<id>", "mkdir 0"] and got[0][7:9] == ("private", "host")
    if len(got) == 2:
        assert got[0] == got[1]


def test_the_daemons_labels_and_seccomp_profile_in_info(engines):
    d, peer = engines
    labels = json.loads(d.docker("info", "--format", "{{json .Labels}}", check=True).out)
    assert labels[:2] == ["a=b", "zone=x"]
    sec = json.loads(d.docker("info", "--format", "{{json .SecurityOptions}}", check=True).out)
    assert sec[0] == "name=seccomp,profile=" + os.path.join(os.path.dirname(d.base), "seccomp.json")
    if peer is not None:
        theirs = json.loads(peer.docker("info", "--format", "{{json .Labels}}", check=True).out)
        assert sorted(theirs) == labels[:2]  # (dockerd's order is not the file's: it varies)
        assert json.loads(peer.docker("info", "--format", "{{json .SecurityOptions}}", check=True).out)[0] == sec[0]


def test_init_by_default(tmp_path):
    """daemon.json's init: containers run tini as PID 1 unless --init=false (dockerd's docker-init;
    not installed here for dockerd, so berth alone)."""
    if not os.path.exists("/usr/bin/tini-static"):
        pytest.skip("tini-static (Debian's tini) is not installed")
    with berthd_with(tmp_path, '{"init": true}') as d:
        out = d.docker("run", "--rm", IMAGE, "ps", "-o", "pid,comm", check=True).out.split()
        assert out[2:4] == ["1", "docker-init"]
        out = d.docker("run", "--rm", "--init=false", IMAGE, "ps", "-o", "pid,comm", check=True).out.split()
        assert out[2:4] == ["1", "ps"]


def test_the_default_bridges_mtu_and_address(tmp_path):
    """daemon.json's mtu, bip, ipv6 and fixed-cidr-v6: the default network's interfaces' MTU (its
    inspect's option, as dockerd's) and subnets; a bip whose address is not its subnet's first (berthd's gateway) is
    refused by name."""
    dj = tmp_path / "daemon.json"
    bridge = None
    try:  # (bip over the test's own subnet)
        with berthd_with(tmp_path, '{"mtu": 1400, "bip": "10.179.5.1/24", "ipv6": true, '
                                   '"fixed-cidr-v6": "fd00:b17:5::/64"}') as d:
            bridge = d.bridge
            out = d.docker("run", "--rm", IMAGE, "sh", "-c", "cat /sys/class/net/eth0/mtu; ip -4 -o addr show eth0; "
                           "ip -6 -o addr show eth0 scope global", check=True).out.splitlines()
            assert out[0] == "1400" and " 10.179.5." in out[1] and " fd00:b17:5::" in out[2], out
            net = json.loads(d.docker("network", "inspect", "bridge", check=True).out)[0]
            assert net["Options"]["com.docker.network.driver.mtu"] == "1400"
            assert net["IPAM"]["Config"][0]["Subnet"] == "10.179.5.0/24"
            assert net["IPAM"]["Config"][0]["Gateway"] == "10.179.5.1"
            assert net["EnableIPv6"] is True and net["IPAM"]["Config"][1]["Subnet"] == "fd00:b17:5::/64"
    finally:
        if bridge:
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
    dj.write_text('{"bip": "10.179.5.7/24"}')
    from daemon_fixtures import BERTHD
    p = subprocess.run([BERTHD, "--config-file", str(dj), "config", "dump"], capture_output=True, text=True)
    assert p.returncode == 1 and p.stderr.startswith(f"berthd: unable to configure berthd with file {dj}: bip: ")


def test_icc_false_keeps_containers_apart(tmp_path):
    """daemon.json's icc false: containers on the default network cannot reach each other (its
    inspect says enable_icc false, as dockerd's); a user-defined network with -o
    com.docker.network.bridge.enable_icc=false the same (before, berthd took the option and
    dropped it), another without it not; legacy links, which dockerd opens across it, are refused.
    enable_ip_masquerade=false is honoured too (it was dropped as well)."""
    with berthd_with(tmp_path, '{"icc": false}') as d:
        net = json.loads(d.docker("network", "inspect", "bridge", check=True).out)[0]
        assert net["Options"]["com.docker.network.bridge.enable_icc"] == "false"
        d.docker("network", "create", "-o", "com.docker.network.bridge.enable_icc=false", "apart", check=True)
        d.docker("network", "create", "together", check=True)

        def reach(network):
            srv = d.docker("run", "-d", "--network", network, IMAGE, "sh", "-c",
                           "echo hi > /i; httpd -f -p 8080 -h /", check=True).out.strip()
            try:
                ip = d.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", srv,
                              check=True).out.strip()
                # (a few tries: the server may not listen yet)
                r = d.docker("run", "--rm", "--network", network, IMAGE, "sh", "-c",
                             "for i in 1 2 3 4; do printf 'GET /i HTTP/1.0\\r\\n\\r\\n' | "
                             f"nc -w 1 {ip} 8080 | tail -1 | grep -x hi && break; sleep 0.5; done")
                return r.out.strip() == "hi"
            finally:
                d.docker("rm", "-f", srv)
        assert not reach("bridge")
        assert not reach("apart")
        assert reach("together")
        d.docker("run", "-d", "--name", "srv", IMAGE, "sleep", "30", check=True)
        r = d.docker("run", "--rm", "--link", "srv", IMAGE, "true")
        assert r.returncode != 0 and "icc false" in r.err
        d.docker("rm", "-f", "srv")
        # and -o com.docker.network.bridge.enable_ip_masquerade=false: no masquerading of its subnet
        d.docker("network", "create", "-o", "com.docker.network.bridge.enable_ip_masquerade=false", "plain",
                 check=True)
        nat = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout
        for name, masq in (("plain", False), ("together", True)):
            subnet = json.loads(d.docker("network", "inspect", name, check=True).out)[0]["IPAM"]["Config"][0]["Subnet"]
            assert (f"-s {subnet} " in nat) is masq, (name, subnet)
        d.docker("network", "rm", "apart", "together", "plain", check=True)


def test_the_host_binding_address_of_a_network(tmp_path):
    """daemon.json's ip (the default network's) and a bridge network's
    com.docker.network.bridge.host_binding_ipv4: ports published on no address in particular are
    published there alone (before, berth took the option and dropped it); an address given wins.
    dockerd 20.10 shows the same `docker port` for such a user-defined network (checked by hand:
    its test peer has no default network)."""
    with berthd_with(tmp_path, '{"ip": "127.0.0.1"}') as d:
        net = json.loads(d.docker("network", "inspect", "bridge", check=True).out)[0]
        assert net["Options"]["com.docker.network.bridge.host_binding_ipv4"] == "127.0.0.1"
        d.docker("network", "create", "-o", "com.docker.network.bridge.host_binding_ipv4=127.0.0.1", "lo-only",
                 check=True)
        for network in ("bridge", "lo-only"):
            c = d.docker("run", "-d", "--network", network, "-p", "8080", "-p", "0.0.0.0::70", IMAGE, "sleep", "60",
                         check=True).out.strip()
            try:
                lines = d.docker("port", c, check=True).out.splitlines()
                assert [x.split(" -> ")[0] for x in lines] == ["70/tcp", "8080/tcp"], lines
                assert lines[0].split(" -> ")[1].startswith("0.0.0.0:")
                assert lines[1].split(" -> ")[1].startswith("127.0.0.1:"), lines
            finally:
                d.docker("rm", "-f", c)
        r = d.docker("network", "create", "-o", "com.docker.network.bridge.host_binding_ipv4=nowhere", "bad")
        assert r.returncode != 0 and r.err.strip() == ("Error response from daemon: failed to parse "
                                                       "com.docker.network.bridge.host_binding_ipv4 value: nowhere "
                                                       "(nil ip)")  # (dockerd 20.10's words)
        d.docker("network", "rm", "lo-only", check=True)


def _published(e, network, port4, port6, v4=False):
    """A web server published on 0.0.0.0 + [::] (port4) and on [::1] (port6): its `docker port`,
    its NetworkSettings.Ports, and what [::1] answers on either (and 127.0.0.1 on port4: v4)."""
    import socket
    c = e.docker("run", "-d", "--network", network, "-p", f"{port4}:80", "-p", f"[::1]:{port6}:81", IMAGE, "sh", "-c",
                 "echo hi > /i; httpd -p 80 -h /; httpd -f -p 81 -h /", check=True).out.strip()
    try:
        wait_for(lambda: "httpd" in e.docker("top", c).out, 10, "the web servers")
        time.sleep(0.5)
        answers = []
        for host, port in [("::1", port4), ("::1", port6)] + ([("127.0.0.1", port4)] if v4 else []):
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            s.settimeout(3)
            try:
                s.connect((host, port))
                s.sendall(b"GET /i HTTP/1.0\r\n\r\n")
                answers.append(s.recv(12).decode())
            except OSError as err:
                answers.append(err.strerror or str(err))
            finally:
                s.close()
        ports = json.loads(e.docker("inspect", "-f", "{{json .NetworkSettings.Ports}}", c, check=True).out)
        return e.docker("port", c, check=True).out, ports, answers
    finally:
        e.docker("rm", "-f", c)


def test_userland_proxy_false_as_dockerd(tmp_path):
    """daemon.json's userland-proxy: false (the CIS benchmark's): no forwarder for the IPv6 side,
    which dockerd 20.10 (without ip6tables) then leaves out altogether: `docker port` and the
    container's Ports list the IPv4 binding alone, [::1] is refused. The IPv4 side is berthd's NAT
    either way. Before, berthd refused the directive."""
    from daemon_fixtures import free_port
    p4, p6 = free_port(), free_port()
    with berthd_with(tmp_path, '{"userland-proxy": false}') as d:
        d.docker("network", "create", "up", check=True)
        ours = _published(d, "up", p4, p6, v4=True)
        assert ours[0] == f"80/tcp -> 0.0.0.0:{p4}\n"
        assert ours[1] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(p4)}], "81/tcp": None}
        # the IPv4 side answers (berthd's NAT; the peer below has no iptables of its own)
        assert ours[2] == ["Connection refused", "Connection refused", "HTTP/1.1 200"]
        ours = ours[:2] + (ours[2][:2],)
        d.docker("network", "rm", "up", check=True)
    if not shutil.which("dockerd"):
        return
    short = tempfile.mkdtemp(prefix="dk-")
    try:
        peer = Dockerd(short, extra={"userland-proxy": False})
        try:
            peer.docker("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
            peer.docker("network", "create", "up", check=True)
            assert _published(peer, "up", p4, p6) == ours
        finally:
            peer.stop()
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_fixed_cidr_as_dockerd(tmp_path):
    """daemon.json's fixed-cidr: the default network's containers take their addresses from that
    part of its subnet (the first one first), its inspect's IPAM says so, as dockerd 20.10's
    (given the same subnet on a bridge of the test's own, dockerd's "bridge" directive). Before,
    berthd refused the directive."""
    script = "ip -4 -o addr show eth0 | tr -s ' ' | cut -d' ' -f4; ip route | head -1"

    def observe(e):
        ipam = json.loads(e.docker("network", "inspect", "bridge", "-f", "{{json .IPAM.Config}}", check=True).out)
        return ipam, e.docker("run", "--rm", IMAGE, "sh", "-c", script, check=True).out
    bridge = None
    try:
        with berthd_with(tmp_path, '{"bip": "10.179.9.1/24", "fixed-cidr": "10.179.9.130/25"}') as d:
            bridge = d.bridge
            ours = observe(d)
    finally:
        if bridge:
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
    assert ours == ([{"Subnet": "10.179.9.0/24", "IPRange": "10.179.9.128/25", "Gateway": "10.179.9.1"}],
                    "10.179.9.128/24\ndefault via 10.179.9.1 dev eth0 \n")
    dj = tmp_path / "bad.json"
    dj.write_text('{"bip": "10.179.9.1/24", "fixed-cidr": "10.179.10.0/25"}')
    from daemon_fixtures import BERTHD
    p = subprocess.run([BERTHD, "--config-file", str(dj), "config", "dump"], capture_output=True, text=True)
    assert (p.returncode, p.stderr) == (1, "berthd: command line: fixed_cidr: 10.179.10.0/25 is not within the "
                                           "default network's subnet 10.179.9.0/24\n")
    if not shutil.which("dockerd"):
        return
    name = "bt" + os.urandom(3).hex()
    with own_bridge(name, "10.179.9.1/24"), raw_dockerd({"bridge": name, "fixed-cidr": "10.179.9.130/25"}) as peer:
        peer.docker("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        assert observe(peer) == ours


@contextlib.contextmanager
def own_bridge(name, address):
    """A Linux bridge of the test's own with that address, up; deleted at the end."""
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", address, "dev", name], check=True)
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


@contextlib.contextmanager
def raw_dockerd(daemon_json):
    """A dockerd given daemon_json, with a default bridge (the Dockerd peer has none), no iptables
    rules; something with .docker(*args). What it makes on the host goes at the end."""
    from daemon_fixtures import _run, host_dirs_dockerd_makes, unmount_under
    made = host_dirs_dockerd_makes()
    short = tempfile.mkdtemp(prefix="dk-")  # (containerd's socket paths are short)
    try:
        sock = f"unix://{short}/d.sock"
        with open(f"{short}/dk.json", "w") as f:
            json.dump(daemon_json, f)
        proc = subprocess.Popen(["dockerd", "--data-root", f"{short}/data", "--exec-root", f"{short}/exec", "-H", sock,
                                 "--pidfile", f"{short}/d.pid", "--iptables=false", "--ip6tables=false",
                                 "--config-file", f"{short}/dk.json"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

        class Peer:
            @staticmethod
            def docker(*args, check=False):
                return _run(["docker", "-H", sock, *args], None, check, 120, None)
        try:
            wait_for(lambda: proc.poll() is not None or Peer.docker("version").returncode == 0, 60, "dockerd")
            assert proc.poll() is None, "dockerd exited"
            yield Peer
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        unmount_under(short)
        shutil.rmtree(short, ignore_errors=True)
        remove_made(made)


def test_an_existing_bridge_and_a_default_gateway_as_dockerd(tmp_path):
    """daemon.json's bridge (an existing Linux bridge: the default network's, its address the
    network's gateway and subnet) and default-gateway (the containers' default route, an
    auxiliary address of the network): the same network and routes as dockerd 20.10's given the
    same file; the same refusals. Before, berthd refused both directives."""
    name = "bt" + os.urandom(3).hex()
    conf = {"bridge": name, "default-gateway": "10.178.7.254"}
    script = "ip -4 -o addr show eth0 | tr -s ' ' | cut -d' ' -f4; ip route"

    def observe(e):
        net = json.loads(e.docker("network", "inspect", "bridge", "-f",
                                  '{"ipam": {{json .IPAM.Config}}, "bridge": {{json (index .Options '
                                  '"com.docker.network.bridge.name")}}}', check=True).out)
        return net, e.docker("run", "--rm", IMAGE, "sh", "-c", script, check=True).out
    with own_bridge(name, "10.178.7.1/24"):
        with berthd_with(tmp_path, json.dumps(conf)) as d:
            ours = observe(d)
        assert subprocess.run(["ip", "-o", "link", "show", name], capture_output=True).returncode == 0  # (left)
        assert ours == ({"ipam": [{"Subnet": "10.178.7.0/24", "Gateway": "10.178.7.1",
                                   "AuxiliaryAddresses": {"DefaultGatewayIPv4": "10.178.7.254"}}], "bridge": name},
                        "10.178.7.2/24\ndefault via 10.178.7.254 dev eth0 \n"
                        "10.178.7.0/24 dev eth0 scope link  src 10.178.7.2 \n")
        from daemon_fixtures import BERTHD
        for bad, err in (
                ({"bridge": "nosuch0"}, 'failed to start daemon: Error initializing network controller: Error creating '
                                        'default "bridge" network: bridge device with non default name nosuch0 must be '
                                        'created manually'),
                ({"bridge": name, "bip": "10.178.7.1/24"}, "failed to start daemon: You specified -b & --bip, mutually "
                                                           "exclusive options. Please specify only one"),
                ({"bridge": name, "default-gateway": "10.178.8.1"},
                 "command line: default_gateway: auxiliary address: (DefaultGatewayIPv4:10.178.8.1) must belong to the "
                 "master pool: 10.178.7.0/24"),
                ({"bridge": name, "default-gateway": "10.178.7.1"},
                 "command line: default_gateway: failed to allocate secondary ip address "
                 "(DefaultGatewayIPv4:10.178.7.1): Address already in use"),
                ({"default-gateway": "bogus"}, f"unable to configure berthd with file {tmp_path}/bad.json: invalid IP "
                                               "address: bogus")):
            (tmp_path / "bad.json").write_text(json.dumps(bad))
            p = subprocess.run([BERTHD, "--config-file", str(tmp_path / "bad.json"), "config", "dump"],
                               capture_output=True, text=True)
            assert (p.returncode, p.stderr) == (1, f"berthd: {err}\n"), bad
        if not shutil.which("dockerd"):
            return
        with raw_dockerd(conf) as peer:
            peer.docker("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
            assert observe(peer) == ours


def _ask(sock, method, path):
    """(status, the CORS headers, body) of one request over a unix socket."""
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(sock)
    c = Conn("localhost", timeout=30)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, {k: v for k, v in r.getheaders() if k.startswith("Access-Control")}, r.read()
    finally:
        c.close()


def test_api_cors_header_and_containerd_namespace_as_dockerd(tmp_path):
    """daemon.json's api-cors-header: the answers of the API's routes carry the CORS headers, an
    OPTIONS anywhere is a 200 (a browser's preflight), as dockerd 20.10's; containerd-namespace:
    the namespace the Docker API's containers live in (`berth -n` there; dockerd's are in
    containerd's namespace of that name). Before, berthd refused both directives (and answered an
    OPTIONS with a 404)."""
    text = json.dumps({"api-cors-header": "http://ui.example", "containerd-namespace": "abc"})
    requests = [("OPTIONS", "/v1.41/containers/json"), ("OPTIONS", "/nope"), ("GET", "/_ping"), ("GET", "/nope")]
    with berthd_with(tmp_path, text) as d:
        ours = [_ask(d.sock, m, p) for m, p in requests]
        c = d.docker("run", "-d", IMAGE, "sleep", "60", check=True).out.strip()
        try:
            assert d.berth("-n", "abc", "ps", "-q", "--no-trunc", check=True).out.split() == [c]
            assert d.berth("-n", "default", "ps", "-q", check=True).out.split() == []
        finally:
            d.docker("rm", "-f", c)
    cors = {"Access-Control-Allow-Origin": "http://ui.example",
            "Access-Control-Allow-Headers": "Origin, X-Requested-With, Content-Type, Accept, X-Registry-Auth",
            "Access-Control-Allow-Methods": "HEAD, GET, POST, DELETE, PUT, OPTIONS"}
    assert ours == [(200, cors, b""), (200, cors, b""), (200, cors, b"OK"), (404, {}, b'{"message":"page not found"}\n')]
    if not shutil.which("dockerd"):
        return
    short = tempfile.mkdtemp(prefix="dk-")
    try:
        peer = Dockerd(short, extra=json.loads(text))
        try:
            assert [_ask(peer.sock, m, p) for m, p in requests] == ours
            peer.docker("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
            c = peer.docker("run", "-d", IMAGE, "sleep", "60", check=True).out.strip()
            if shutil.which("ctr"):
                listed = subprocess.run(["ctr", "--address", f"{short}/exec/containerd/containerd.sock", "-n", "abc",
                                         "containers", "ls", "-q"], capture_output=True, text=True).stdout.split()
                assert listed == [c]
            peer.docker("rm", "-f", c)
        finally:
            peer.stop()
    finally:
        shutil.rmtree(short, ignore_errors=True)


TRAP = "trap 'exit 3' TERM; sleep 300 & wait"  # (a stop's SIGTERM ends it with 3)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _three(e):
    """A container of no restart policy, one of `always`, one of `unless-stopped`: their pids."""
    pids = {}
    for name, policy in (("plain", "no"), ("back", "always"), ("unless", "unless-stopped")):
        e.docker("run", "-d", "--name", name, "--restart", policy, IMAGE, "sh", "-c", TRAP, check=True)
        pids[name] = int(e.docker("inspect", "-f", "{{.State.Pid}}", name, check=True).out)
    return pids


def _states(e):
    out = {}
    for name in ("plain", "back", "unless"):
        status, code = e.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name, check=True).out.split()
        out[name] = (status, int(code))
    return out


def test_live_restore_false_as_dockerd(tmp_path):
    """daemon.json's live-restore false (dockerd's default): the daemon's stop stops its containers
    (their stop signal), and at its next start those whose restart policy says so run again, as
    dockerd 20.10's given the same. Before, berthd refused the directive (its containers always
    outlive it). After a kill -9 of berthd, what still runs is stopped at its start (dockerd's
    restore without live-restore)."""
    want = {"plain": ("exited", 3), "back": ("running", 0), "unless": ("running", 0)}
    with berthd_with(tmp_path, '{"live-restore": false}') as d:
        assert d.docker("info", "-f", "{{.LiveRestoreEnabled}}", check=True).out == "false\n"
        pids = _three(d)
        d.stop()
        assert not [n for n, p in pids.items() if _alive(p)]  # (they ended with berthd)
        d.start()
        ours = _states(d)
        assert ours == want
        # killed, berthd stops nothing; at its start, it stops what still runs
        pid = int(d.docker("inspect", "-f", "{{.State.Pid}}", "back", check=True).out)
        d.kill9()
        assert _alive(pid)
        d.start()
        assert not _alive(pid)
        assert _states(d) == want
        assert int(d.docker("inspect", "-f", "{{.State.Pid}}", "back", check=True).out) != pid
        for name in ("plain", "back", "unless"):
            d.docker("rm", "-f", name)
    if not shutil.which("dockerd"):
        return
    short = tempfile.mkdtemp(prefix="dk-")
    try:
        peer = Dockerd(short, extra={"live-restore": False})
        assert peer.docker("info", "-f", "{{.LiveRestoreEnabled}}", check=True).out == "false\n"
        peer.docker("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        pids = _three(peer)
        peer.proc.send_signal(signal.SIGTERM)
        peer.proc.wait(60)
        assert not [n for n, p in pids.items() if _alive(p)]
        made = peer.made  # (what the first run made on the host: the second's stop removes it)
        peer = Dockerd(short, extra={"live-restore": False})
        peer.made = made + peer.made
        try:
            assert _states(peer) == ours
        finally:
            peer.stop()
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_bridge_none_as_dockerd(tmp_path):
    """daemon.json's `"bridge": "none"` (dockerd's -b none): no default network; a container
    asking for it (the default, or --network bridge) runs with lo alone and publishes nothing,
    its inspect showing an empty "bridge" endpoint, as dockerd 20.10's; a user-defined network is
    as ever. Before, berthd refused the directive."""
    def observe(e):
        out = [e.docker("network", "ls", "--format", "{{.Name}}", check=True).out]
        for extra in ([], ["--network", "bridge"]):
            out.append(e.docker("run", "--rm", *extra, IMAGE, "sh", "-c", "ip -o -4 addr | cut -d' ' -f2",
                                check=True).out)
        e.docker("create", "--name", "bn1", "-p", "127.0.0.1:8080:80", IMAGE, "sleep", "60", check=True)
        try:
            e.docker("start", "bn1", check=True)
            out.append(e.docker("port", "bn1", check=True).out)
            out.append(e.docker("inspect", "-f", "{{.HostConfig.NetworkMode}} {{json .NetworkSettings.Networks}} "
                                "{{json .NetworkSettings.Ports}}", "bn1", check=True).out)
            out.append(e.docker("ps", "--format", "{{.Names}} {{.Networks}} {{.Ports}}", check=True).out)
            for args in (["network", "inspect", "bridge"], ["network", "create", "bridge"]):
                p = e.docker(*args)
                out.append((p.returncode, p.err))
        finally:
            e.docker("rm", "-f", "bn1")
        return out
    with berthd_with(tmp_path, '{"bridge": "none"}') as d:
        ours = observe(d)
        # connected to a user-defined network, such a container has its interface there (dockerd
        # 20.10 records the endpoint but the container never gets it, and the network can then not
        # be removed: "has active endpoints")
        d.docker("run", "-d", "--name", "bn2", IMAGE, "sleep", "60", check=True)
        d.docker("network", "create", "bn-net", check=True)
        d.docker("network", "connect", "bn-net", "bn2", check=True)
        assert d.docker("exec", "bn2", "sh", "-c", "ip -o -4 addr | cut -d' ' -f2", check=True).out == "lo\neth0\n"
        nets = json.loads(d.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", "bn2", check=True).out)
        assert sorted(nets) == ["bn-net", "bridge"] and nets["bn-net"]["IPAddress"]
        d.docker("rm", "-f", "bn2", check=True)
        d.docker("network", "rm", "bn-net", check=True)
        assert not os.path.exists(f"/sys/class/net/{d.bridge}")  # (berthd.toml's bridge: not made)
    assert ours[:3] == ["host\nnone\n", "lo\n", "lo\n"]
    assert ours[3] == "" and ours[4].startswith('default {"bridge":{"IPAMConfig":null,') and ours[4].endswith("} {}\n")
    assert ours[6:] == [(1, "Error response from daemon: network bridge not found\n"),
                        (1, "Error response from daemon: operation is not permitted on predefined bridge network\n")]
    if not shutil.which("dockerd"):
        return
    peer = Dockerd(tempfile.mkdtemp(prefix="dk-"))  # (dockerd -b none: the tests' peer)
    try:
        peer.docker("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        assert observe(peer) == ours
    finally:
        peer.stop()
        shutil.rmtree(peer.base, ignore_errors=True)


def test_init_path_as_dockerd(tmp_path):
    """daemon.json's init-path: the init --init binds at /sbin/docker-init, named by info's
    InitBinary; one that is not there fails the start of an --init container (exit 127 from the
    docker CLI) and no other, as dockerd 20.10's. Before, berthd refused the directive."""
    if not os.path.exists("/usr/bin/tini-static"):
        pytest.skip("no /usr/bin/tini-static (Debian's tini)")
    init = tmp_path / "myinit"
    shutil.copy("/usr/bin/tini-static", init)
    size = os.path.getsize(init)

    def observe(e, path):
        out = [e.docker("info", "-f", "{{.InitBinary}}", check=True).out.replace(str(tmp_path), "T")]
        p = e.docker("run", "--rm", "--init", IMAGE, "sh", "-c",
                     "tr '\\0' ' ' < /proc/1/cmdline; echo; stat -c %s /sbin/docker-init")
        out.append((p.returncode, p.out if p.returncode == 0 else f"{path}: no such file or directory" in p.err))
        out.append(e.docker("run", "--rm", IMAGE, "true").returncode)
        return out
    seen = {}
    for path in (str(init), str(tmp_path / "nosuch")):
        base = tmp_path / ("b-" + os.path.basename(path))
        base.mkdir()
        with berthd_with(base, json.dumps({"init-path": path})) as d:
            seen[path] = observe(d, path)
    assert seen[str(init)] == ["T/myinit\n", (0, f"/sbin/docker-init -- sh -c tr '\\0' ' ' < /proc/1/cmdline; echo; "
                                                f"stat -c %s /sbin/docker-init \n{size}\n"), 0]
    assert seen[str(tmp_path / "nosuch")] == ["T/nosuch\n", (127, True), 0]
    if not shutil.which("dockerd"):
        return
    for path in (str(init), str(tmp_path / "nosuch")):
        peer = Dockerd(tempfile.mkdtemp(prefix="dk-"), extra={"init-path": path})
        try:
            peer.docker("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
            assert observe(peer, path) == seen[path]
        finally:
            peer.stop()
            shutil.rmtree(peer.base, ignore_errors=True)


def test_default_gateway_v6_as_dockerd(tmp_path):
    """daemon.json's default-gateway-v6 (with ipv6 and fixed-cidr-v6): the IPv6 default route of
    the default network's containers, its aux address DefaultGatewayIPv6; the same refusals, as
    dockerd 20.10's. Before, berthd refused the directive."""
    if not os.path.exists("/proc/net/if_inet6"):
        pytest.skip("no IPv6 on this host")
    name = "bt" + os.urandom(3).hex()
    conf = {"bridge": name, "ipv6": True, "fixed-cidr-v6": "fd00:77::/64", "default-gateway-v6": "fd00:77::fe"}

    def observe(e):
        ipam = json.loads(e.docker("network", "inspect", "bridge", "-f", "{{json .IPAM.Config}}", check=True).out)
        return ipam, e.docker("run", "--rm", IMAGE, "sh", "-c", "ip -6 route | grep default", check=True).out
    with own_bridge(name, "10.178.9.1/24"):
        with berthd_with(tmp_path, json.dumps(conf)) as d:
            ours = observe(d)
        assert ours == ([{"Subnet": "10.178.9.0/24", "Gateway": "10.178.9.1"},
                         {"Subnet": "fd00:77::/64", "AuxiliaryAddresses": {"DefaultGatewayIPv6": "fd00:77::fe"}}],
                        "default via fd00:77::fe dev eth0  metric 1024 \n")
        from daemon_fixtures import BERTHD
        for gw, err in (("fd00:78::fe", "command line: default_gateway6: auxiliary address: (DefaultGatewayIPv6:"
                                        "fd00:78::fe) must belong to the master pool: fd00:77::/64"),
                        ("fd00:77::1", "command line: default_gateway6: failed to allocate secondary ip address "
                                       "(DefaultGatewayIPv6:fd00:77::1): Address already in use"),
                        ("bogus", f"unable to configure berthd with file {tmp_path}/bad.json: invalid IP address: "
                                  "bogus")):
            (tmp_path / "bad.json").write_text(json.dumps(dict(conf, **{"default-gateway-v6": gw})))
            p = subprocess.run([BERTHD, "--config-file", str(tmp_path / "bad.json"), "config", "dump"],
                               capture_output=True, text=True)
            assert (p.returncode, p.stderr) == (1, f"berthd: {err}\n"), gw
    if not shutil.which("dockerd"):
        return
    # (a bridge of its own: dockerd takes an IPv6 address the bridge has already as the gateway)
    with own_bridge(name, "10.178.9.1/24"), raw_dockerd(conf) as peer:
        peer.docker("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar"), check=True)
        assert observe(peer) == ours
