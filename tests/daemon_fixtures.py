"""Fixtures for tests of berthd and the berth CLI: a private daemon (own root, state dir and
socket) and a real registry (Debian's docker-registry) on 127.0.0.1."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BIN = os.path.join(REPO, ".venv", "bin")
BERTH = os.environ.get("BERTH") or os.path.join(BIN, "berth")
BERTHD = os.environ.get("BERTHD") or os.path.join(BIN, "berthd")
DATA = os.path.join(HERE, "data")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def lo_only_cni(conf_dir):
    """A CNI configuration directory whose one conflist gives pods only `lo` (no interface,
    bridge or address on the host to clean up)."""
    os.makedirs(conf_dir)
    with open(os.path.join(conf_dir, "10-lo.conflist"), "w") as f:
        json.dump({"cniVersion": "0.4.0", "name": "lo-only", "plugins": [{"type": "loopback"}]}, f)


def ppid(pid):
    """A process's parent's pid (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def read_frames(sock, timeout=20):
    """The docker stream frames of a non-TTY attach or exec, by stream (1: stdout, 2: stderr),
    read until the other end closes it (a socket, or docker-py's attach_socket); closes it."""
    import struct
    sock = getattr(sock, "_sock", sock)
    sock.settimeout(timeout)
    buf = b""
    while True:
        d = sock.recv(65536)
        if not d:
            break
        buf += d
    sock.close()
    out = {1: b"", 2: b""}
    while len(buf) >= 8:
        kind, n = struct.unpack(">BxxxI", buf[:8])
        out[kind] += buf[8:8 + n]
        buf = buf[8 + n:]
    return out


def wait_for(pred, timeout=20, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Daemon:
    """A berthd with its own root, state dir, socket and config file."""

    def __init__(self, base, extra_config=""):
        self.base = str(base)
        self.root = os.path.join(self.base, "root")
        self.state = os.path.join(self.base, "state")
        self.sock = os.path.join(self.base, "berth.sock")
        self.host = "unix://" + self.sock
        self.certs_d = os.path.join(self.base, "certs.d")
        self.config = os.path.join(self.base, "berthd.toml")
        self.docker_config = os.path.join(self.base, "docker-config")
        os.makedirs(self.certs_d, exist_ok=True)
        os.makedirs(self.docker_config, exist_ok=True)
        # each test daemon has its own bridge, subnets and conflist dir: daemons of tests (and of
        # parallel test runs) never share a bridge or hand out the same addresses
        import random
        tag = "%06x" % random.getrandbits(24)
        self.bridge = "bt" + tag
        self.subnet = f"10.{random.randint(100, 199)}.{random.randint(0, 255)}.0/24"
        self.pool = f"10.{random.randint(200, 249)}.{random.randint(0, 63) * 4}.0/22"
        net = ("" if "bridge =" in extra_config else
               f'bridge = "{self.bridge}"\nbridge_subnet = "{self.subnet}"\naddress_pool = "{self.pool}"\n'
               f'cni_conf_dir = "{os.path.join(self.base, "cni")}"\n')
        self.cri_sock = os.path.join(self.base, "cri.sock")  # each daemon's own CRI socket
        if "cri_socket" not in extra_config and "cri =" not in extra_config:
            net += f'cri_socket = "{self.cri_sock}"\n'
        with open(self.config, "w") as f:
            f.write(f'root = "{self.root}"\nstate = "{self.state}"\nhosts = ["{self.host}"]\n'
                    f'config_path = "{self.certs_d}"\n' + net + extra_config)
        self.proc = None
        self.log_path = os.path.join(self.base, "berthd.log")

    def start(self, *args, wait=True):
        log = open(self.log_path, "ab")
        env = dict(os.environ, HOME=self.base)
        self.proc = subprocess.Popen([BERTHD, "--config", self.config, *args], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        log.close()
        if wait:
            wait_for(lambda: _alive(self.sock) or self.proc.poll() is not None, 30, "berthd to listen")
            if self.proc.poll() is not None:
                raise AssertionError(f"berthd exited: {self.log()}")
        return self

    def log(self):
        try:
            return open(self.log_path).read()[-4000:]
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self):
        self.stop(signal.SIGKILL)

    def env(self, **extra):
        e = dict(os.environ, HOME=self.base, DOCKER_CONFIG=self.docker_config)
        e.pop("DOCKER_HOST", None)
        e.pop("BERTH_HOST", None)
        e.update(extra)
        return e

    def berth(self, *args, input=None, check=False, timeout=120, env=None):
        return _run([BERTH, "-H", self.host, *args], input, check, timeout, env or self.env())

    def docker(self, *args, input=None, check=False, timeout=120, env=None):
        return _run(["docker", "-H", self.host, *args], input, check, timeout, env or self.env())

    def cleanup(self):
        self.stop()
        # unmount anything a test left under the daemon's root (overlay mounts of containers)
        unmount_under(self.base)


def unmount_under(prefix):
    """Detach (umount -l, deepest first) every mount whose path starts with prefix."""
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if line.split()[4].startswith(str(prefix))]
    for m in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)


def reserved_addresses(state):
    """The addresses host-local holds in a berthd's networks (its store's files, under state)."""
    import ipaddress
    out = []
    for _, _, files in os.walk(os.path.join(state, "cni", "ipam")):
        for n in files:
            try:
                out.append(str(ipaddress.ip_address(n)))
            except ValueError:
                pass
    return out


def missing_dirs(dirs):
    """Those of dirs (each after its parent) not there now: what a peer engine about to start
    makes on the host whatever its own roots; remove_made() takes them away again."""
    return [d for d in dirs if not os.path.exists(d)]


def remove_made(made):
    """rmdir (deepest first) what missing_dirs() found missing; one in use or not empty stays."""
    for d in reversed(made):
        try:
            os.rmdir(d)
        except OSError:
            pass


def missing_cgroup_parents(name):
    """The cgroup parent `name` of each hierarchy under /sys/fs/cgroup (the one tree on v2; on v1
    and hybrid each hierarchy's, the empty v2 mount's too) where it is not there now
    (missing_dirs): what engines about to run containers under it make, and leave."""
    cg = "/sys/fs/cgroup"
    if os.path.isfile(os.path.join(cg, "cgroup.controllers")):
        return missing_dirs([os.path.join(cg, name)])
    try:
        hierarchies = sorted(h for h in os.listdir(cg)
                             if os.path.isdir(os.path.join(cg, h)) and not os.path.islink(os.path.join(cg, h)))
    except OSError:
        hierarchies = []
    return missing_dirs([os.path.join(cg, h, name) for h in hierarchies])


def missing_cgroup_parents_of(value):
    """missing_cgroup_parents of each directory a cgroup parent given as `value` (a user's, a
    fuzzer's: "a/../b", "/x/y") makes, parents first; none for a value with a NUL."""
    if "\0" in value:
        return []
    parts = [p for p in value.split("/") if p not in ("", ".", "..")]
    made = []
    for i in range(1, len(parts) + 1):
        made += missing_cgroup_parents("/".join(parts[:i]))
    return made


def host_dirs_containerd_makes(*namespaces):
    """What a containerd 1.6 (dockerd's too) makes under /run/containerd whatever its root and
    state (its runc shim's defaults: the shims' sockets, the fifos, runc's root for each
    namespace used) and leaves there: those not there now (missing_dirs)."""
    run = "/run/containerd"
    return missing_dirs([run, f"{run}/fifo", f"{run}/s", f"{run}/runc", *(f"{run}/runc/{ns}" for ns in namespaces)])


def host_dirs_dockerd_makes():
    """What a dockerd makes on the host whatever its roots, and leaves: /run/docker (its plugins
    directory), once it has run a container /run/containerd/s (its containerd's shims' sockets)
    and (cgroupfs driver) the "docker" cgroup parent. Those not there now; remove_made() removes
    them again when empty."""
    return (missing_dirs(["/run/docker", "/run/docker/plugins"]) + host_dirs_containerd_makes()
            + missing_cgroup_parents("docker"))


def _run(cmd, input, check, timeout, env):
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run(cmd, input=input, stdin=None if input is not None else subprocess.DEVNULL,
                           stdout=out, stderr=err, timeout=timeout, env=env)
        out.seek(0)
        err.seek(0)
        p.stdout, p.stderr = out.read(), err.read()
    p.out = p.stdout.decode(errors="replace")
    p.err = p.stderr.decode(errors="replace")
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd[0]} {' '.join(cmd[3:])} failed ({p.returncode}): {p.err}")
    return p


@pytest.fixture
def berthd(tmp_path):
    d = Daemon(tmp_path / "berthd")
    d.start()
    yield d
    d.cleanup()


@pytest.fixture(scope="module")
def shared_berthd(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("berthd"))
    d.start()
    yield d
    d.cleanup()


class Registry:
    def __init__(self, base, port=None, extra=""):
        self.base = str(base)
        self.port = port or free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.data = os.path.join(self.base, "data")
        os.makedirs(self.data, exist_ok=True)
        self.config = os.path.join(self.base, "config.yml")
        with open(self.config, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {self.data}\n"
                    f"  delete:\n    enabled: true\nhttp:\n  addr: {self.addr}\n" + extra)
        self.proc = None

    def start(self):
        if not shutil.which("docker-registry"):
            pytest.skip("docker-registry is not installed")
        log = open(os.path.join(self.base, "registry.log"), "ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", self.config], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        log.close()

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False
        wait_for(up, 20, "docker-registry to listen")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    r = Registry(tmp_path_factory.mktemp("registry")).start()
    yield r
    r.stop()


def skopeo(*args, check=True):
    env = dict(os.environ)
    # a policy file of this call's own, gone after it (no file left in /tmp)
    with tempfile.NamedTemporaryFile("w", prefix="berth-skopeo-policy-", suffix=".json") as f:
        json.dump({"default": [{"type": "insecureAcceptAnything"}]}, f)
        f.flush()
        p = subprocess.run(["skopeo", "--policy", f.name, *args], capture_output=True, timeout=120, env=env)
    p.out, p.err = p.stdout.decode(), p.stderr.decode()
    if check and p.returncode != 0:
        raise AssertionError(f"skopeo {args} failed: {p.err}")
    return p
