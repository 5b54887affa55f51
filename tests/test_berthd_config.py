"""berthd's configuration and listeners: `config default` / `config dump`, validation (one line
naming the key, no socket), the unix socket's mode, plain TCP on loopback only, TLS with client
certificates (checked with the real docker CLI), Api-Version on responses, and one daemon per
socket and root."""

import json
import random
import os
import shutil
import socket
import stat
import subprocess
import time
import tomllib

import pytest
from daemon_fixtures import BERTH, BERTHD, Daemon, free_port, unmount_under, wait_for


def berthd(*args, env=None, timeout=30):
    p = subprocess.run([BERTHD, *args], capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout,
                       env=env or dict(os.environ), check=False)
    p.out, p.err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    return p


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def dump(*args):
    p = berthd(*args, "config", "dump")
    assert p.returncode == 0, p.err
    return tomllib.loads(p.out)


def http(addr, method, path, ssl_ctx=None):
    """A raw HTTP/1.1 request; returns (status, headers, body)."""
    if isinstance(addr, str):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(addr)
    else:
        s = socket.create_connection(addr, timeout=10)
        if ssl_ctx:
            s = ssl_ctx.wrap_socket(s, server_hostname=addr[0])
    with s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            data += c
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def docker(*args, env):
    if not shutil.which("docker"):
        pytest.skip("the docker CLI is not installed")
    p = subprocess.run(["docker", *args], capture_output=True, stdin=subprocess.DEVNULL, timeout=60, env=env, check=False)
    p.out, p.err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    return p


def docker_env(tmp_path):
    cfg = tmp_path / "docker-config"
    cfg.mkdir(exist_ok=True)
    env = dict(os.environ, DOCKER_CONFIG=str(cfg), HOME=str(tmp_path))
    for k in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
        env.pop(k, None)
    return env


# --- config default / dump ---

def test_config_default_is_the_builtin_default(tmp_path):
    p = berthd("config", "default")
    assert p.returncode == 0, p.err
    default = tomllib.loads(p.out)
    assert p.out.count("\n# ") + p.out.startswith("#") >= 5  # it is commented
    for key in ("root", "state", "hosts", "namespace", "config_path", "registry_mirrors", "insecure_registries", "registry",
                "default_runtime", "runtimes", "cgroup_driver", "sandbox_image", "log_level", "tls"):
        assert key in default, key
    path = write(tmp_path / "default.toml", p.out)
    effective = dump("--config", path)
    assert effective == default
    # ... and the same as no configuration at all
    assert dump("--config", write(tmp_path / "empty.toml", "")) == default
    assert default["root"] == "/var/lib/berth" and default["hosts"] == ["unix:///run/berth/berth.sock"]
    assert default["default_runtime"] in default["runtimes"]
    assert default["cgroup_driver"] in ("cgroupfs", "systemd")


def test_config_dump_reflects_file_and_flags(tmp_path):
    path = write(tmp_path / "berthd.toml", f'''
root = "{tmp_path}/root"
state = "{tmp_path}/state"
hosts = ["unix://{tmp_path}/a.sock"]
namespace = "team-a"
registry_mirrors = ["https://mirror.example.com"]
insecure_registries = ["127.0.0.1:5000"]
default_runtime = "crun"
cgroup_driver = "systemd"
log_level = "debug"
config_path = "{tmp_path}/certs.d"

[runtimes.crun]
path = "/usr/bin/crun"
args = ["--debug"]

[registry.mirrors."docker.io"]
endpoint = ["https://cri-mirror.example.com", "http://127.0.0.1:5000"]

[registry.mirrors."*"]
endpoint = ["https://any.example.com"]
''')
    c = dump("--config", path)
    assert c["registry"]["mirrors"] == {"docker.io": {"endpoint": ["https://cri-mirror.example.com",
                                                                   "http://127.0.0.1:5000"]},
                                        "*": {"endpoint": ["https://any.example.com"]}}
    assert c["root"] == f"{tmp_path}/root" and c["state"] == f"{tmp_path}/state"
    assert c["hosts"] == [f"unix://{tmp_path}/a.sock"]
    assert c["namespace"] == "team-a"
    assert c["registry_mirrors"] == ["https://mirror.example.com"]
    assert c["insecure_registries"] == ["127.0.0.1:5000"]
    assert c["default_runtime"] == "crun" and c["runtimes"]["crun"] == {"path": "/usr/bin/crun", "args": ["--debug"]}
    assert c["cgroup_driver"] == "systemd" and c["log_level"] == "debug"
    assert c["config_path"] == f"{tmp_path}/certs.d"

    port = free_port()
    c = dump("--config", path, "-H", f"unix://{tmp_path}/b.sock", "-H", f"tcp://127.0.0.1:{port}",
             "--root", f"{tmp_path}/other-root", "--registry-mirror", "https://m2.example.com")
    assert c["hosts"] == [f"unix://{tmp_path}/b.sock", f"tcp://127.0.0.1:{port}"]
    assert c["root"] == f"{tmp_path}/other-root"
    assert c["state"] == f"{tmp_path}/state"  # not overridden
    assert c["registry_mirrors"] == ["https://m2.example.com"]
    # a dump is itself a valid config that dumps the same
    p = berthd("--config", path, "--root", f"{tmp_path}/other-root", "config", "dump")
    again = dump("--config", write(tmp_path / "again.toml", p.out))
    assert again == tomllib.loads(p.out)


@pytest.mark.parametrize("text,key", [
    ('bogus = 1\n', "bogus"),
    ('root = 5\n', "root"),
    ('hosts = "unix:///x.sock"\n', "hosts"),
    ('allow_insecure_tcp = "yes"\n', "allow_insecure_tcp"),
    ('registry_mirrors = [1, 2]\n', "registry_mirrors"),
    ('cgroup_driver = "lxc"\n', "cgroup_driver"),
    ('log_level = "loud"\n', "log_level"),
    ('default_runtime = "nope"\n', "default_runtime"),
    ('hosts = ["http://127.0.0.1:2375"]\n', "hosts"),
    ('hosts = ["tcp://127.0.0.1"]\n', "hosts"),
    ('hosts = ["unix://relative.sock"]\n', "hosts"),
    ('root = "relative/dir"\n', "root"),
    ('namespace = "Not Valid"\n', "namespace"),
    ('[runtimes.crun]\nargs = []\n', "runtimes.crun.path"),
    ('[runtimes.crun]\npath = "crun"\nextra = 1\n', "runtimes.crun.extra"),
    ('[tls]\nverify = "yes"\n', "tls.verify"),
    ('[tls]\nbogus = ""\n', "tls.bogus"),
    ('root = "/x"\nroot = "/y"\n', "TOML"),
    ('root = \n', "TOML"),
    ('[runtimes\n', "TOML"),
    ('log_driver = "syslog"\n', "log_driver"),
    ('[log_opts]\nmax-file = 3\n', "log_opts.max-file"),
    ('[log_opts]\nbogus = "1"\n', "unknown log opt 'bogus' for json-file log driver"),
    ('log_driver = "local"\n[log_opts]\nlabels = "a"\n', "unknown log opt 'labels' for log driver local"),
    ('[registry.mirrors."docker.io"]\nendpoint = ["ftp://m.example.com"]\n', 'registry.mirrors."docker.io".endpoint[0]'),
    ('[registry.mirrors."docker.io"]\nendpoint = "https://m.example.com"\n', 'registry.mirrors."docker.io".endpoint'),
    ('[registry.mirrors."docker.io"]\nendpoints = ["https://m.example.com"]\n', 'registry.mirrors."docker.io".endpoints'),
    ('[registry.mirrors]\n"docker.io" = ["https://m.example.com"]\n', 'registry.mirrors."docker.io"'),
    ('[registry.mirrors."not a host"]\nendpoint = []\n', 'registry.mirrors."not a host"'),
    ('[registry.configs."docker.io".tls]\ninsecure_skip_verify = true\n', "registry.configs"),
    ('max_concurrent_downloads = -1\n', "max_concurrent_downloads: invalid max concurrent downloads: -1"),
    ('max_download_attempts = 0\n', "max_download_attempts: invalid max download attempts: 0"),
    ('max_concurrent_uploads = "5"\n', "max_concurrent_uploads: must be a number"),
    ('storage_opts = ["overlay2.size=1G"]\n', "storage_opts: Storage Option overlay2.size is not supported"),
])
def test_invalid_config_is_one_line_and_no_socket(tmp_path, text, key):
    sock = tmp_path / "berth.sock"
    path = write(tmp_path / "berthd.toml", text)
    t0 = time.monotonic()
    p = berthd("--config", path, "-H", f"unix://{sock}", "--root", str(tmp_path / "root"),
               "--state", str(tmp_path / "state"), timeout=20)
    assert time.monotonic() - t0 < 10  # at once, not after a timeout
    assert p.returncode != 0
    lines = p.err.strip().splitlines()
    assert len(lines) == 1, p.err
    assert lines[0].startswith("berthd: ") and key in lines[0] and "Traceback" not in p.err, lines[0]
    assert not sock.exists()
    assert not (tmp_path / "root").exists()
    # config dump says the same
    d = berthd("--config", path, "config", "dump")
    assert d.returncode != 0 and d.err.strip().splitlines() == lines


def test_missing_config_file_and_bad_flags(tmp_path):
    p = berthd("--config", str(tmp_path / "absent.toml"), "config", "dump")
    assert p.returncode != 0 and len(p.err.strip().splitlines()) == 1 and "absent.toml" in p.err
    p = berthd("config", "frobnicate")
    assert p.returncode != 0 and len(p.err.strip().splitlines()) == 1
    p = berthd("--log-level", "loud", "config", "dump")
    assert p.returncode != 0 and "Traceback" not in p.err


# --- listeners ---

def test_the_sockets_group_as_dockerds(tmp_path):
    """group (daemon.json's group, -G): the group that owns the unix socket; one the host lacks
    is refused before anything is made, in dockerd's words ("failed to load listeners")."""
    d = Daemon(tmp_path / "d", 'group = "daemon"\n').start()
    try:
        st = os.stat(d.sock)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 1, 0o660)  # (Debian's daemon group)
    finally:
        d.cleanup()
    dj = write(tmp_path / "daemon.json", '{"group": "nosuchgroup"}')
    e = Daemon(tmp_path / "e", f'daemon_json = "{dj}"\n')
    e.start(wait=False)
    try:
        assert e.proc.wait(30) == 1
        assert e.log().strip().splitlines()[-1] == "berthd: failed to load listeners: group nosuchgroup not found"
        assert not os.path.exists(e.root) and not os.path.exists(e.sock)
    finally:
        e.cleanup()
    assert dump("-G", "daemon")["group"] == "daemon"


def test_unix_socket_mode_and_api_version(tmp_path):
    d = Daemon(tmp_path / "d").start()
    try:
        st = os.stat(d.sock)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        for method, path, status in (("GET", "/_ping", 200), ("HEAD", "/_ping", 200), ("GET", "/version", 200),
                                     ("GET", "/v1.43/version", 200), ("GET", "/v1.45/images/json", 200),
                                     ("GET", "/images/no-such-image/json", 404), ("GET", "/no/such/route", 404),
                                     ("DELETE", "/v1.43/images/no-such-image", 404)):
            code, headers, body = http(d.sock, method, path)
            assert code == status, (path, code, body)
            assert headers.get("api-version"), (path, headers)
            assert tuple(int(x) for x in headers["api-version"].split(".")) >= (1, 43)
            if status >= 400:
                assert "message" in json.loads(body), body
        _, _, body = http(d.sock, "GET", "/version")
        v = json.loads(body)
        assert tuple(int(x) for x in v["ApiVersion"].split(".")) >= (1, 43)
        with open(os.path.join(d.state, "berthd.pid")) as f:
            assert int(f.read()) == d.proc.pid
    finally:
        d.cleanup()
    assert not os.path.exists(d.sock)  # removed at SIGTERM
    assert not os.path.exists(os.path.join(d.state, "berthd.pid"))


def test_plain_tcp_on_loopback(tmp_path):
    port = free_port()
    d = Daemon(tmp_path / "d")
    d.start("-H", d.host, "-H", f"tcp://127.0.0.1:{port}")
    try:
        wait_for(lambda: _connects(port), 10, "the TCP listener")
        code, headers, body = http(("127.0.0.1", port), "GET", "/_ping")
        assert code == 200 and body == b"OK" and headers.get("api-version")
        p = docker("-H", f"tcp://127.0.0.1:{port}", "version", "--format", "{{.Server.APIVersion}}",
                   env=docker_env(tmp_path))
        assert p.returncode == 0, p.err
        assert tuple(int(x) for x in p.out.strip().split(".")) >= (1, 43)
        p = docker("-H", f"tcp://127.0.0.1:{port}", "info", "--format", "{{.DockerRootDir}}",
                   env=docker_env(tmp_path))
        assert p.returncode == 0 and p.out.strip() == d.root, p.err
        p = subprocess.run([BERTH, "-H", f"tcp://127.0.0.1:{port}", "images", "-q"], capture_output=True,
                           env=d.env(), timeout=30, check=False)
        assert p.returncode == 0, p.stderr
        p = subprocess.run([BERTH, "-H", f"tcp://127.0.0.1:{port}", "info"], capture_output=True,
                           env=d.env(), timeout=30, check=False)
        assert p.returncode == 0 and b"Docker Root Dir: " + d.root.encode() in p.stdout, p.stderr
        assert b"Registry Mirrors" not in p.stdout  # none configured
    finally:
        d.cleanup()


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_plain_tcp_on_other_addresses_refused(tmp_path):
    port = free_port()
    sock = tmp_path / "berth.sock"
    for addr in (f"tcp://0.0.0.0:{port}", f"tcp://[::]:{port}", f"tcp://192.0.2.1:{port}"):
        p = berthd("-H", f"unix://{sock}", "-H", addr, "--root", str(tmp_path / "root"),
                   "--state", str(tmp_path / "state"), "--config", write(tmp_path / "c.toml", ""))
        assert p.returncode != 0
        lines = p.err.strip().splitlines()
        assert len(lines) == 1 and "hosts" in lines[0] and "TLS" in lines[0], p.err
        assert not sock.exists() and not _connects(port)
    # ... unless forced (only validated here: nothing is bound to a non-loopback address in tests)
    c = dump("--config", write(tmp_path / "c.toml", ""), "--allow-insecure-tcp", "-H", f"tcp://0.0.0.0:{port}")
    assert c["hosts"] == [f"tcp://0.0.0.0:{port}"] and c["allow_insecure_tcp"] is True
    c = dump("--config", write(tmp_path / "c2.toml", f'allow_insecure_tcp = true\nhosts = ["tcp://0.0.0.0:{port}"]\n'))
    assert c["allow_insecure_tcp"] is True
    # with TLS it is allowed too
    c = dump("--config", write(tmp_path / "c3.toml", ""), "-H", f"tcp://0.0.0.0:{port}", "--tlsverify",
             "--tlscacert", "/ca.pem", "--tlscert", "/cert.pem", "--tlskey", "/key.pem")
    assert c["tls"]["verify"] is True and c["tls"]["cert"] == "/cert.pem"


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("certs")
    c = str(d)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=berth test CA", cwd=c)
    for name, cn, ext in (("server", "127.0.0.1", ("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                                  "extendedKeyUsage=serverAuth\n")),
                          ("client", "client", "extendedKeyUsage=clientAuth\n")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
                 "-subj", f"/CN={cn}", cwd=c)
        write(d / f"{name}.ext", ext)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=c)
    # a client certificate from another CA: must be refused
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "rogue-key.pem", "-out", "rogue.pem",
             "-days", "2", "-subj", "/CN=rogue", cwd=c)
    return d


def test_tls_with_client_certificates(tmp_path, certs):
    port = free_port()
    d = Daemon(tmp_path / "d")
    d.start("-H", d.host, "-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(certs / "ca.pem"),
            "--tlscert", str(certs / "server.pem"), "--tlskey", str(certs / "server-key.pem"))
    try:
        wait_for(lambda: _connects(port), 10, "the TLS listener")
        env = docker_env(tmp_path)
        tls = ["--tlsverify", "--tlscacert", str(certs / "ca.pem")]
        p = docker(*tls, "--tlscert", str(certs / "client.pem"), "--tlskey", str(certs / "client-key.pem"),
                   "-H", f"tcp://127.0.0.1:{port}", "version", "--format", "{{.Server.Version}}", env=env)
        assert p.returncode == 0, p.err
        assert p.out.strip()
        # without a client certificate, with a foreign one, and without TLS: refused
        p = docker(*tls, "-H", f"tcp://127.0.0.1:{port}", "version", "--format", "{{.Server.Version}}", env=env)
        assert p.returncode != 0 and not p.out.strip()
        p = docker(*tls, "--tlscert", str(certs / "rogue.pem"), "--tlskey", str(certs / "rogue-key.pem"),
                   "-H", f"tcp://127.0.0.1:{port}", "version", "--format", "{{.Server.Version}}", env=env)
        assert p.returncode != 0 and not p.out.strip()
        p = docker("-H", f"tcp://127.0.0.1:{port}", "version", "--format", "{{.Server.Version}}", env=env)
        assert p.returncode != 0 and not p.out.strip()
        # berth's own client
        p = subprocess.run([BERTH, *tls, "--tlscert", str(certs / "client.pem"), "--tlskey",
                            str(certs / "client-key.pem"), "-H", f"tcp://127.0.0.1:{port}", "info", "--format",
                            "{{.DockerRootDir}}"], capture_output=True, env=d.env(), timeout=30, check=False)
        assert p.returncode == 0 and p.stdout.decode().strip() == d.root, p.stderr
        p = subprocess.run([BERTH, *tls, "-H", f"tcp://127.0.0.1:{port}", "images"], capture_output=True,
                           env=d.env(), timeout=30, check=False)
        assert p.returncode == 1 and len(p.stderr.decode().strip().splitlines()) == 1, p.stderr  # as docker
        # the unix socket still answers without TLS
        assert http(d.sock, "GET", "/_ping")[0] == 200
    finally:
        d.cleanup()


def test_tls_bad_key_is_one_line(tmp_path, certs):
    port = free_port()
    sock = tmp_path / "berth.sock"
    p = berthd("--config", write(tmp_path / "c.toml", ""), "--root", str(tmp_path / "root"), "--state",
               str(tmp_path / "state"), "-H", f"unix://{sock}", "-H", f"tcp://127.0.0.1:{port}", "--tlsverify",
               "--tlscacert", str(certs / "ca.pem"), "--tlscert", str(certs / "server.pem"),
               "--tlskey", str(tmp_path / "absent-key.pem"))
    assert p.returncode != 0
    assert len(p.err.strip().splitlines()) == 1 and "tls" in p.err, p.err
    assert not sock.exists() and not _connects(port)


# --- one daemon per socket and root ---

def test_second_daemon_refused(tmp_path):
    first = Daemon(tmp_path / "d").start()
    try:
        first.berth("load", "-i", os.path.join(os.path.dirname(__file__), "data", "hello-world.docker.tar"),
                    check=True)
        # the same config: the same socket
        p = berthd("--config", first.config, env=dict(os.environ, HOME=first.base))
        assert p.returncode != 0
        lines = p.err.strip().splitlines()
        assert len(lines) == 1 and first.sock in lines[0], p.err
        # another socket, but the same root
        other = tmp_path / "other.sock"
        p = berthd("--config", first.config, "-H", f"unix://{other}", env=dict(os.environ, HOME=first.base))
        assert p.returncode != 0
        lines = p.err.strip().splitlines()
        assert len(lines) == 1 and first.root in lines[0], p.err
        assert not other.exists()
        # the first is unharmed
        assert first.proc.poll() is None
        assert os.path.exists(first.sock)
        assert first.berth("images", "-q", check=True).out.strip()
        assert http(first.sock, "GET", "/_ping")[0] == 200
    finally:
        first.cleanup()
    # once it is gone, a new one starts on the same socket and root and keeps the images
    again = Daemon(tmp_path / "d").start()
    try:
        assert again.berth("images", "--format", "{{.Repository}}", check=True).out.split() == ["hello-world"]
    finally:
        again.cleanup()


def test_port_in_use_is_one_line(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    sock = tmp_path / "berth.sock"
    try:
        # its own CNI directory (the default, /etc/berth/cni, would be left on the host) and bridge
        bridge = "bt" + os.urandom(3).hex()
        subnet = f"10.{random.randint(100, 199)}.{random.randint(0, 255)}.0/24"
        cfg = write(tmp_path / "c.toml", f'cni_conf_dir = "{tmp_path / "cni"}"\nbridge = "{bridge}"\n'
                                         f'bridge_subnet = "{subnet}"\n')
        p = berthd("--config", cfg, "--root", str(tmp_path / "root"), "--state",
                   str(tmp_path / "state"), "-H", f"unix://{sock}", "-H", f"tcp://127.0.0.1:{port}")
    finally:
        busy.close()
    assert p.returncode != 0
    lines = [ln for ln in p.err.strip().splitlines() if " INFO " not in ln]
    assert len(lines) == 1 and str(port) in lines[0] and "Traceback" not in p.err, p.err
    assert not sock.exists()
    # nothing of the start is left on the host: its network's rules (berthd's start wrote them)
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert bridge not in rules


def test_tls_without_client_verification_on_other_addresses_refused(tmp_path):
    """TLS that does not verify clients lets anyone drive berthd (root on the host): on a
    non-loopback address it is refused like plain TCP, unless allow_insecure_tcp says so."""
    port = free_port()
    tls = ("--tlscert", "/cert.pem", "--tlskey", "/key.pem")
    p = berthd("--config", write(tmp_path / "c.toml", ""), "-H", f"tcp://0.0.0.0:{port}", *tls, "config", "dump")
    assert p.returncode != 0
    lines = p.err.strip().splitlines()
    assert len(lines) == 1 and "TLS without client verification" in lines[0], p.err
    c = dump("--config", write(tmp_path / "c2.toml", ""), "-H", f"tcp://0.0.0.0:{port}", *tls,
             "--allow-insecure-tcp")
    assert c["allow_insecure_tcp"] is True and c["tls"]["verify"] is False
    c = dump("--config", write(tmp_path / "c3.toml", ""), "-H", f"tcp://127.0.0.1:{port}", *tls)
    assert c["hosts"] == [f"tcp://127.0.0.1:{port}"]


def test_a_stop_right_after_the_socket_listens_leaves_no_iptables_rules(tmp_path):
    """A client that sees the API socket may stop berthd at once, while its CRI still starts: the
    SIGTERM is a graceful stop from the first moment, so the bridge's rules go with it (the default
    action used to kill berthd and leave them behind, about one stop in two)."""
    for i in range(4):
        d = Daemon(tmp_path / f"d{i}")
        d.start()
        d.cleanup()  # SIGTERM as soon as the socket answers
        rules = [ln for ln in subprocess.run(["iptables-save"], capture_output=True, text=True).stdout.splitlines()
                 if d.bridge in ln]
        assert rules == [], (rules, d.log())


def test_sighup_reloads_the_registry_settings_and_keeps_serving(tmp_path):
    """SIGHUP, as dockerd's (`systemctl reload`): the configuration file is read again and its
    registry settings and log level apply at once (docker info shows the new mirrors; a daemon
    reload event tells them); what needs a restart is logged as such; a file that does not load
    changes nothing, and berthd serves on (SIGHUP's default action ended it)."""
    import signal
    d = Daemon(tmp_path / "d").start()
    try:
        def info():
            return json.loads(d.docker("info", "--format", "{{json .RegistryConfig}}", check=True).out)
        assert info()["Mirrors"] in (None, [])
        since = str(int(time.time()) - 1)
        base = open(d.config).read()
        with open(d.config, "a") as f:
            f.write('registry_mirrors = ["http://127.0.0.1:5999"]\ninsecure_registries = ["10.99.0.0/16"]\n'
                    'log_level = "debug"\nsandbox_image = "127.0.0.1:5999/pause:9"\n')
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: info()["Mirrors"] == ["http://127.0.0.1:5999"], 10, "the new mirrors")
        assert info()["InsecureRegistryCIDRs"] == ["127.0.0.0/8", "10.99.0.0/16"]
        wait_for(lambda: "applied at berthd's next start" in d.log(), 10, "the reload's log")
        assert "sandbox_image" in d.log() and "registry_mirrors" in d.log()
        ev = [json.loads(x) for x in d.docker("events", "--since", since, "--until", str(int(time.time()) + 1),
                                               "--filter", "type=daemon", "--format", "{{json .}}",
                                               check=True).out.splitlines()]
        assert [e["Action"] for e in ev] == ["reload"], ev
        assert json.loads(ev[0]["Actor"]["Attributes"]["registry-mirrors"]) == ["http://127.0.0.1:5999"]
        with open(d.config, "w") as f:
            f.write(base + "registry_mirrors = [\n")  # not TOML
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "the running configuration is kept" in d.log(), 10, "the failed reload's log")
        assert d.proc.poll() is None
        assert info()["Mirrors"] == ["http://127.0.0.1:5999"]
        assert http(d.sock, "GET", "/_ping")[0] == 200
    finally:
        d.cleanup()


def test_sigusr1_writes_the_threads_stacks_and_keeps_serving(tmp_path):
    """SIGUSR1, as dockerd's and containerd's: the threads' stacks in a file of the state directory,
    its path in the log; berthd serves on (SIGUSR1's default action ended it)."""
    import signal
    d = Daemon(tmp_path / "d").start()
    try:
        d.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: "thread stacks written to" in d.log(), 10, "the stacks' file")
        path = d.log().split("thread stacks written to ")[1].split()[0]
        assert os.path.dirname(path) == d.state
        assert "thread MainThread" in open(path).read()
        assert d.proc.poll() is None and http(d.sock, "GET", "/_ping")[0] == 200
    finally:
        d.cleanup()


def test_the_daemons_log_driver_and_options(tmp_path):
    """log_driver and [log_opts], daemon.json's log-driver and log-opts: a container that names no
    driver gets the daemon's, with its options (its own win, as dockerd's
    mergeAndVerifyLogConfig), recorded at create and shown by inspect; one that names another
    driver gets none of them; info shows the daemon's driver."""
    d = Daemon(tmp_path / "d", extra_config='log_driver = "local"\n[log_opts]\nmax-size = "1k"\nmax-file = "2"\n')
    d.start()
    try:
        d.berth("load", "-i", os.path.join(os.path.dirname(__file__), "data", "busybox-layers.docker.tar"),
                check=True)
        assert d.docker("info", "--format", "{{.LoggingDriver}}", check=True).out.strip() == "local"
        d.docker("create", "--name", "la", "busybox-layers:1", "true", check=True)
        d.docker("create", "--name", "lb", "--log-opt", "max-file=3", "busybox-layers:1", "true", check=True)
        d.docker("create", "--name", "lc", "--log-driver", "json-file", "busybox-layers:1", "true", check=True)
        lcs = [json.loads(d.docker("inspect", "-f", "{{json .HostConfig.LogConfig}}", n, check=True).out)
               for n in ("la", "lb", "lc")]
        assert lcs == [{"Type": "local", "Config": {"max-size": "1k", "max-file": "2"}},
                       {"Type": "local", "Config": {"max-size": "1k", "max-file": "3"}},
                       {"Type": "json-file", "Config": {}}], lcs
        p = d.docker("run", "--rm", "busybox-layers:1", "sh", "-c", "echo logged-locally")
        assert p.out == "logged-locally\n", p.err
    finally:
        d.cleanup()


# --- docker's daemon.json (--config-file, daemon_json) ---

def test_daemon_json_directives_set_berthds_keys(tmp_path):
    """Before, berthd had no --config-file and no daemon_json key (usage error, unknown key)."""
    dj = write(tmp_path / "daemon.json", json.dumps({
        "registry-mirrors": ["https://m.example.com"], "insecure-registries": ["10.98.0.0/16"],
        "log-driver": "local", "log-opts": {"max-size": "5m"}, "log-level": "warn", "dns": ["10.0.0.2"],
        "exec-opts": ["native.cgroupdriver=systemd"], "default-runtime": "runc",
        "runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--debug"]}},
        "default-address-pools": [{"base": "10.91.0.0/16", "size": 24}], "data-root": str(tmp_path / "dr"),
        "exec-root": str(tmp_path / "er"), "userns-remap": "default", "live-restore": True,
        "storage-driver": "overlay2", "iptables": True, "features": {"buildkit": False},
        "experimental": False, "selinux-enabled": False, "max-concurrent-downloads": 2, "max-concurrent-uploads": 0,
        "max-download-attempts": 1}))
    c = dump("--config-file", dj)
    assert c["daemon_json"] == dj
    assert (c["registry_mirrors"], c["insecure_registries"], c["log_driver"], c["log_opts"], c["log_level"],
            c["dns"], c["cgroup_driver"], c["default_runtime"], c["address_pool"], c["root"], c["state"],
            c["userns_remap"]) == (
        ["https://m.example.com"], ["10.98.0.0/16"], "local", {"max-size": "5m"}, "warning", ["10.0.0.2"],
        "systemd", "runc", "10.91.0.0/16", str(tmp_path / "dr"), str(tmp_path / "er"), "default")
    assert c["runtimes"]["runsc"] == {"path": "/usr/bin/runsc", "args": ["--debug"]}
    # (0 concurrent uploads: dockerd's default, 5)
    assert (c["max_concurrent_downloads"], c["max_concurrent_uploads"], c["max_download_attempts"]) == (2, 5, 1)
    assert "runc" in c["runtimes"] and "berth-runc" in c["runtimes"]  # (added to, as dockerd's runtimes)
    # the same from berthd.toml's key; its directives win over the file's own keys
    toml = write(tmp_path / "b.toml", f'daemon_json = "{dj}"\nlog_driver = "json-file"\n')
    assert dump("--config", toml)["log_driver"] == "local"
    assert dump("--config-file", write(tmp_path / "d2.json", '{"debug": true}'))["log_level"] == "debug"
    assert dump("--config-file", write(tmp_path / "empty.json", ""))["log_level"] == "info"


@pytest.mark.parametrize("text,flags,message", [
    ('{"foo": 1, "bar": 2}', [], "the following directives don't match any configuration option: foo, bar"),
    ('{"registry-mirrors": ["https://m.example.com"]}', ["--registry-mirror", "https://n.example.com"],
     "the following directives are specified both as a flag and in the configuration file: registry-mirrors: "
     "(from flag: [https://n.example.com], from file: [https://m.example.com])"),
    ('{"userland-proxy-path": "/usr/bin/docker-proxy", "ip6tables": true}', [],
     "berthd does not support the directives userland-proxy-path, ip6tables"),
    ('{"storage-opts": "overlay2.override_kernel_check=true"}', [], "storage-opts: must be a list of strings, not a string"),
    ('{"ipv6": true}', [], "ipv6: berthd's default network takes its IPv6 subnet from fixed-cidr-v6"),
    ('{"iptables": false}', [], 'iptables: berthd supports only true (what it always does)'),
    ('{"live-restore": false}', ["--live-restore"], "the following directives are specified both as a flag and in "
     "the configuration file: live-restore: (from flag: true, from file: false)"),
    ('{"selinux-enabled": true}', [], 'selinux-enabled: berthd supports only false (what it always does)'),
    ('{"features": {"buildkit": true}}', [], 'features: berthd supports only {"buildkit": false} or {} (what it always does)'),
    ('{"registry-mirrors": "x"}', [], "registry-mirrors: must be a list of strings, not a string"),
    ('{"debug": "yes"}', [], "debug: must be true or false, not a string"),
    ('{bad', [], "invalid JSON: Expecting property name enclosed in double quotes"),
    ('[1]', [], "must be a JSON object, not a list"),
])
def test_daemon_json_refusals(tmp_path, text, flags, message):
    dj = write(tmp_path / "daemon.json", text)
    p = berthd("--config-file", dj, *flags, "config", "dump")
    assert p.returncode == 1 and p.out == ""
    assert p.err == f"berthd: unable to configure berthd with file {dj}: {message}\n"


def test_daemon_json_value_errors_in_dockerds_words(tmp_path):
    for text, message in (('{"log-level": "verbose"}', "unable to parse logging level: verbose"),
                          ('{"exec-opts": ["native.cgroupdriver=foo"]}', "native.cgroupdriver option foo not supported"),
                          ):
        p = berthd("--config-file", write(tmp_path / "daemon.json", text), "config", "dump")
        assert (p.returncode, p.err) == (1, f"berthd: {message}\n")
    p = berthd("--config-file", str(tmp_path / "none.json"), "config", "dump")
    assert p.returncode == 1 and p.err.endswith(f"open {tmp_path / 'none.json'}: no such file or directory\n")


def test_daemon_json_refusals_as_dockerd(tmp_path):
    """The same files refused by dockerd 20.10 in the same words (its daemon's name aside)."""
    if not shutil.which("dockerd"):
        pytest.skip("dockerd (Debian's docker.io) is not installed")
    base = tmp_path / "dockerd"
    for text, flags in (('{"foo": 1}', []),  # (one: dockerd lists several in a Go map's order)
                        ('{"registry-mirrors": ["https://m.example.com/"], "hosts": ["unix:///x.sock"]}',
                         ["--registry-mirror", "https://n.example.com/", "-H", "unix:///y.sock"]),
                        ('{"log-level": "verbose"}', []), ('{"default-ipc-mode": "host"}', []),
                        ('{"default-cgroupns-mode": "foo"}', []), ('{"max-concurrent-downloads": -1}', []),
                        ('{"max-concurrent-uploads": -2}', []), ('{"max-download-attempts": 0}', []),
                        ('{"max-concurrent-uploads": 2}', ["--max-concurrent-uploads", "3"]),
                        ('{"live-restore": false}', ["--live-restore"])):
        dj = write(tmp_path / "daemon.json", text)
        ours = berthd("--config-file", dj, *flags, "config", "dump")
        theirs = subprocess.run(["dockerd", "--config-file", dj, *flags, "--data-root", str(base / "data"),
                                 "--exec-root", str(base / "exec"), "--pidfile", str(base / "d.pid"),
                                 *([] if "-H" in flags else ["-H", f"unix://{base}/d.sock"])],
                                capture_output=True, text=True, timeout=30)
        assert theirs.returncode != 0 and ours.returncode == 1
        want = theirs.stderr.strip().splitlines()[-1].replace("the Docker daemon", "berthd")
        assert ours.err.strip() == "berthd: " + want
    assert not os.path.exists(base)  # (neither made anything)


KUBERNETES_DOCS_DAEMON_JSON = {  # what the Kubernetes docs had a node's docker set up with
    "exec-opts": ["native.cgroupdriver=systemd"], "log-driver": "json-file", "log-opts": {"max-size": "100m"},
    "storage-driver": "overlay2", "storage-opts": ["overlay2.override_kernel_check=true"]}


def test_storage_opts_as_dockerd(tmp_path):
    """daemon.json's storage-opts: the Kubernetes docs' daemon.json (overlay2.override_kernel_check,
    which dockerd 20.10 takes and this kernel makes moot) is taken; what dockerd refuses at its
    start is refused in its words. Before, berthd refused the directive."""
    dj = write(tmp_path / "daemon.json", json.dumps(KUBERNETES_DOCS_DAEMON_JSON))
    c = dump("--config-file", dj)
    assert (c["storage_opts"], c["cgroup_driver"], c["log_opts"]) == (
        ["overlay2.override_kernel_check=true"], "systemd", {"max-size": "100m"})
    bad = ['["overlay2.foo=1"]', '["overlay2.override_kernel_check=maybe"]', '["nokey"]']
    base = tmp_path / "dockerd"
    for opts in bad:
        dj = write(tmp_path / "daemon.json", '{"storage-opts": %s}' % opts)
        ours = berthd("--config-file", dj, "config", "dump")
        assert ours.returncode == 1 and ours.out == ""
        if not shutil.which("dockerd"):
            continue
        try:
            theirs = subprocess.run(["dockerd", "--config-file", dj, "--data-root", str(base / "data"), "--exec-root",
                                     str(base / "exec"), "--pidfile", str(base / "d.pid"), "-H", f"unix://{base}/d.sock",
                                     "--bridge=none", "--iptables=false"], capture_output=True, text=True, timeout=60)
        finally:
            unmount_under(str(base))
            shutil.rmtree(base, ignore_errors=True)
        assert theirs.returncode != 0
        assert ours.err == "berthd: " + theirs.stderr.strip().splitlines()[-1] + "\n"
    p = berthd("--config-file", write(tmp_path / "daemon.json", '{"storage-opts": ["overlay2.size=10G"]}'),
               "config", "dump")
    assert p.err == ("berthd: failed to start daemon: error initializing graphdriver: Storage Option overlay2.size "
                     "is not supported by berthd's overlayfs snapshotter\n")


def test_sighup_reads_the_daemon_json_again(tmp_path):
    """As dockerd's reload of its daemon.json: the registry-mirrors it now names apply at once."""
    import signal
    dj = tmp_path / "daemon.json"
    dj.write_text('{"registry-mirrors": ["http://127.0.0.1:5998"]}')
    d = Daemon(tmp_path / "d", f'daemon_json = "{dj}"\n').start()
    try:
        def mirrors():
            return json.loads(d.docker("info", "--format", "{{json .RegistryConfig.Mirrors}}", check=True).out)
        assert mirrors() == ["http://127.0.0.1:5998"]
        dj.write_text('{"registry-mirrors": ["http://127.0.0.1:5997"], "debug": true}')
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: mirrors() == ["http://127.0.0.1:5997"], 10, "the new mirrors")
        dj.write_text('{"registry-mirrors": ["http://127.0.0.1:5996"], "ip6tables": true}')  # refused: kept
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "the running configuration is kept" in d.log(), 10, "the failed reload's log")
        assert mirrors() == ["http://127.0.0.1:5997"] and d.proc.poll() is None
    finally:
        d.cleanup()


def test_daemon_json_tls_must_match_its_certificate(tmp_path):
    p = berthd("--config-file", write(tmp_path / "daemon.json", '{"tls": true}'), "config", "dump")
    assert p.returncode == 1 and "tls: berthd serves TLS exactly when it has a certificate" in p.err
    c = dump("--config-file", write(tmp_path / "d2.json", json.dumps(
        {"tls": True, "tlscert": "/c.pem", "tlskey": "/k.pem", "tlscacert": "/ca.pem"})))
    assert c["tls"] == {"verify": False, "cacert": "/ca.pem", "cert": "/c.pem", "key": "/k.pem"}


def test_a_pidfile_besides_berthds_own(tmp_path):
    """daemon.json's pidfile (-p): written with berthd's pid beside <state>/berthd.pid, removed at
    its stop; one that names a running process is refused (dockerd's words)."""
    pid_path = tmp_path / "run" / "b.pid"
    dj = write(tmp_path / "daemon.json", json.dumps({"pidfile": str(pid_path)}))
    d = Daemon(tmp_path / "d", f'daemon_json = "{dj}"\n').start()
    try:
        assert int(pid_path.read_text()) == d.proc.pid
        e = Daemon(tmp_path / "e", f'daemon_json = "{dj}"\n')
        e.start(wait=False)
        try:
            assert e.proc.wait(30) == 1
            assert e.log().strip().splitlines()[-1] == (f"berthd: pid file found, ensure berthd is not running or "
                                                        f"delete {pid_path}")
        finally:
            e.cleanup()
    finally:
        d.cleanup()
    assert not pid_path.exists()


def test_the_directives_berthd_names_are_dockerds(tmp_path):
    """Every directive berthd takes or refuses by name is one dockerd 20.10 knows (it names none
    as unknown; it stops at the flags the file repeats, having made nothing)."""
    if not shutil.which("dockerd"):
        pytest.skip("dockerd (Debian's docker.io) is not installed")
    from berth.daemon import daemonjson
    dj = write(tmp_path / "daemon.json", json.dumps({k: None for k in sorted(daemonjson._DOCKERD)}))
    base = tmp_path / "dockerd"
    p = subprocess.run(["dockerd", "--config-file", dj, "--data-root", str(base / "data"), "--exec-root",
                        str(base / "exec"), "-H", f"unix://{base}/d.sock", "--pidfile", str(base / "d.pid")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "specified both as a flag and in the configuration file" in p.stderr, p.stderr[-500:]
    assert "don't match any configuration option" not in p.stderr
    assert not base.exists()
