"""berth.remotes against real peers on 127.0.0.1: Debian's docker-registry, skopeo,
and small HTTP servers written here (token auth, mirrors, misbehaving registries).

Nothing here reaches beyond 127.0.0.1; every process, thread and temp dir is cleaned up.
"""

import base64
import concurrent.futures
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse
from dataclasses import dataclass

import pytest

from berth.content.store import ContentStore
from berth.errors import (
    BerthError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from berth.oci import mediatypes as mt
from berth.remotes import (
    DOCKER_HUB_KEY,
    Authorizer,
    Credentials,
    Descriptor,
    PermissionDenied,
    RegistryClient,
    load_credentials,
    load_hosts,
    parse_www_authenticate,
    remove_credentials,
    save_credentials,
)

REGISTRY_BIN = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")
OPENSSL = shutil.which("openssl")
needs_registry = pytest.mark.skipif(REGISTRY_BIN is None, reason="docker-registry is not installed")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


closed_port = free_port  # nothing listens there once the probe socket is closed


def wait_http(url: str, timeout: float = 15.0, context=None) -> None:
    u = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if u.scheme == "https":
                c = http.client.HTTPSConnection(u.netloc, timeout=1, context=context)
            else:
                c = http.client.HTTPConnection(u.netloc, timeout=1)
            c.request("GET", u.path)
            status = c.getresponse().status
            c.close()
            if status in (200, 401):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.05)


# --- test images -------------------------------------------------------------

@dataclass
class Image:
    config: bytes
    layers: list
    manifest: bytes
    config_desc: Descriptor
    layer_descs: list
    media_type: str = mt.OCI_MANIFEST

    @property
    def digest(self) -> str:
        return sha(self.manifest)

    def blobs(self):
        return [(self.config_desc, self.config)] + list(zip(self.layer_descs, self.layers))


def make_layer(seed: str, nfiles: int = 3, size: int = 2000, random_bytes: int = 0) -> tuple[bytes, bytes]:
    """(gzip layer, uncompressed tar)"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        d = tarfile.TarInfo("files")
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 0
        tf.addfile(d)
        for i in range(nfiles):
            data = (f"{seed}-{i}\n" * (size // (len(seed) + 4) + 1)).encode()[:size]
            if random_bytes and i == 0:
                data += os.urandom(random_bytes)
            ti = tarfile.TarInfo(f"files/{seed}-{i}.txt")
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
            tf.addfile(ti, io.BytesIO(data))
    tar = buf.getvalue()
    return gzip.compress(tar, mtime=0), tar


def make_image(seed: str, nlayers: int = 1, random_bytes: int = 0) -> Image:
    layers, tars = [], []
    for i in range(nlayers):
        gz, tar = make_layer(f"{seed}{i}", random_bytes=random_bytes)
        layers.append(gz)
        tars.append(tar)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Labels": {"seed": seed}},
        "rootfs": {"type": "layers", "diff_ids": [sha(t) for t in tars]},
        "history": [{"created_by": f"layer {i}"} for i in range(nlayers)],
    }, sort_keys=True).encode()
    cdesc = Descriptor(mt.OCI_CONFIG, sha(config), len(config))
    ldescs = [Descriptor(mt.OCI_LAYER_GZIP, sha(lay), len(lay)) for lay in layers]
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
        "config": cdesc.to_dict(), "layers": [d.to_dict() for d in ldescs],
    }, sort_keys=True).encode()
    return Image(config, layers, manifest, cdesc, ldescs)


def push_image(client: RegistryClient, repo: str, tag: str, img: Image, **kw) -> str:
    for desc, data in img.blobs():
        client.push_blob(repo, desc, io.BytesIO(data), **kw)
    return client.push_manifest(repo, tag, img.media_type, img.manifest)


def write_oci_layout(path, img: Image, tag: str) -> None:
    os.makedirs(os.path.join(path, "blobs", "sha256"))
    for data in [img.config, img.manifest, *img.layers]:
        with open(os.path.join(path, "blobs", "sha256", sha(data)[7:]), "wb") as f:
            f.write(data)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": mt.OCI_MANIFEST, "digest": img.digest, "size": len(img.manifest),
            "annotations": {"org.opencontainers.image.ref.name": tag}}]}, f)


# --- peers ---------------------------------------------------------------------

class Registry:
    """A docker-registry process on 127.0.0.1:<free port>."""

    def __init__(self, root, tls=None):
        self.root = str(root)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        os.makedirs(self.root, exist_ok=True)
        cfg = [
            "version: 0.1",
            "log:", "  level: error", "  accesslog:", "    disabled: true",
            "storage:", "  filesystem:", f"    rootdirectory: {self.root}/data",
            "  delete:", "    enabled: true",
            "http:", f"  addr: {self.host}",
        ]
        if tls:
            cfg += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
        self.config = os.path.join(self.root, "config.yml")
        with open(self.config, "w") as f:
            f.write("\n".join(cfg) + "\n")
        self.log = open(os.path.join(self.root, "registry.log"), "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", self.config], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            ctx = None
            if tls:
                ctx = ssl.create_default_context(cafile=tls[0])
            wait_http(f"{'https' if tls else 'http'}://{self.host}/v2/", context=ctx)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    if REGISTRY_BIN is None:
        pytest.skip("docker-registry is not installed")
    reg = Registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


class Peer:
    """A small HTTP(S) server in a thread; ``app(handler)`` answers each request.

    Every request is recorded as (method, path, headers) in ``requests``.
    """

    def __init__(self, app, ssl_context=None):
        self.app = app
        self.requests = []
        self.lock = threading.Lock()
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def log_message(self, *a):
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                self.body = self.rfile.read(n) if n else b""
                with peer.lock:
                    peer.requests.append((self.command, self.path, dict(self.headers)))
                peer.app(self)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if ssl_context is not None:
            self.server.socket = ssl_context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"{'https' if ssl_context else 'http'}://{self.host}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def paths(self, method=None):
        with self.lock:
            return [p for m, p, _ in self.requests if method is None or m == method]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def reply(h, status, body=b"", headers=None, *, send_body=True):
    h.send_response(status)
    hdrs = dict(headers or {})
    hdrs.setdefault("Content-Length", str(len(body)))
    for k, v in hdrs.items():
        for item in (v if isinstance(v, list) else [v]):
            h.send_header(k, item)
    h.end_headers()
    if body and send_body and h.command != "HEAD":
        h.wfile.write(body)


def registry_error(h, status, code, message):
    reply(h, status, json.dumps({"errors": [{"code": code, "message": message}]}).encode(),
          {"Content-Type": "application/json"})


def proxy_app(upstream: str, strip_prefix: str = ""):
    """Forward every request to a registry (a recording mirror)."""
    def app(h):
        path = h.path
        if strip_prefix and path.startswith(strip_prefix):
            path = path[len(strip_prefix):]
        c = http.client.HTTPConnection(upstream, timeout=10)
        hdrs = {k: v for k, v in h.headers.items() if k.lower() not in ("connection", "keep-alive")}
        c.request(h.command, path, body=h.body or None, headers=hdrs)
        r = c.getresponse()
        app.statuses.append((h.command, r.status))
        data = r.read()
        out = {k: v for k, v in r.getheaders() if k.lower() not in ("connection", "transfer-encoding",
                                                                      "keep-alive", "content-length")}
        out["Content-Length"] = r.getheader("Content-Length") if h.command == "HEAD" else str(len(data))
        if out["Content-Length"] is None:
            del out["Content-Length"]
        reply(h, r.status, data, out)
        c.close()
    app.statuses = []
    return app


@pytest.fixture
def peers():
    started = []

    def start(app, ssl_context=None):
        p = Peer(app, ssl_context)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def make_client(tmp_path):
    clients = []

    def make(config_path=None, **kw):
        kw.setdefault("docker_config", str(tmp_path / "docker-config.json"))
        kw.setdefault("timeout", 10)
        kw.setdefault("connect_timeout", 3)
        c = RegistryClient(config_path, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def write_hosts(config_dir, host, text):
    d = os.path.join(str(config_dir), host)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "hosts.toml"), "w") as f:
        f.write(text)
    return os.path.join(d, "hosts.toml")


class Crash(BerthError):
    pass


class FlakyWriter:
    """Passes bytes to a content-store writer, failing once ``limit`` bytes are in."""

    def __init__(self, w, limit):
        self.w, self.limit = w, limit

    def write(self, data):
        if self.w.offset + len(data) > self.limit:
            self.w.write(data[: self.limit - self.w.offset])
            raise Crash("simulated crash")
        return self.w.write(data)


# --- against docker-registry -----------------------------------------------------

@needs_registry
def test_push_resolve_pull_roundtrip(registry, make_client, tmp_path):
    c = make_client()
    img = make_image("round", nlayers=2)
    repo = f"{registry.host}/berth/round"
    assert push_image(c, repo, "v1", img) == img.digest

    name, desc = c.resolve(f"{repo}:v1")
    assert name == f"{repo}:v1"
    assert desc == Descriptor(mt.OCI_MANIFEST, img.digest, len(img.manifest))
    # by digest, and with a fresh client (no cached manifest)
    c2 = make_client()
    assert c2.resolve(f"{repo}@{img.digest}")[1].digest == img.digest
    assert c2.fetch_manifest(repo, img.digest) == img.manifest

    store = ContentStore(tmp_path / "content")
    for d, data in img.blobs():
        with store.writer(f"pull-{d.digest}", d.digest, d.size) as w:
            assert c2.fetch_blob(repo, d, w, offset=w.offset) == d.size
            assert w.commit() == d.digest
        assert store.read(d.digest) == data
    # a plain file object works as well, and a dict descriptor
    out = io.BytesIO()
    c2.fetch_blob(repo, img.config_desc.to_dict(), out)
    assert out.getvalue() == img.config
    assert c2.list_tags(repo) == ["v1"]


@needs_registry
def test_chunked_and_monolithic_uploads(registry, make_client, peers):
    mirror = peers(proxy_app(registry.host))  # records what reaches the registry
    c = make_client()
    data = os.urandom(300_000)
    d = Descriptor(mt.OCI_LAYER, sha(data), len(data))
    repo = f"{mirror.host}/berth/chunked"
    seen = []
    assert c.push_blob(repo, d, io.BytesIO(data), chunk_size=64 * 1024, progress=seen.append) == "uploaded"
    patches = [p for p in mirror.paths("PATCH")]
    assert len(patches) == 5  # ceil(300000 / 65536)
    assert seen[-1] == len(data)
    puts = mirror.paths("PUT")
    assert len(puts) == 1 and f"digest={urllib.parse.quote(d.digest)}" in puts[0]

    data2 = os.urandom(100_000)
    d2 = Descriptor(mt.OCI_LAYER, sha(data2), len(data2))
    before = len(mirror.paths("PATCH"))
    assert c.push_blob(repo, d2, io.BytesIO(data2)) == "uploaded"  # one PUT with the body
    assert len(mirror.paths("PATCH")) == before

    for dd, blob in ((d, data), (d2, data2)):
        out = io.BytesIO()
        c.fetch_blob(repo, dd, out)
        assert out.getvalue() == blob
    # a wrong digest is refused by the registry, and reported as bad data
    bad = Descriptor(mt.OCI_LAYER, sha(b"other"), 5)
    with pytest.raises(InvalidArgument):
        c.push_blob(repo, bad, io.BytesIO(b"12345"))


@needs_registry
def test_blob_skip_and_cross_repo_mount(registry, make_client, peers):
    mirror = peers(proxy_app(registry.host))
    c = make_client()
    data = os.urandom(50_000)
    d = Descriptor(mt.OCI_LAYER_GZIP, sha(data), len(data))
    a, b, e = (f"{mirror.host}/berth/mount-{x}" for x in "abe")
    assert not c.blob_exists(a, d.digest)
    assert c.push_blob(a, d, io.BytesIO(data)) == "uploaded"
    assert c.blob_exists(a, d.digest)

    class NoRead(io.BytesIO):
        def read(self, *a):
            raise AssertionError("a skipped blob must not be read")

    assert c.push_blob(a, d, NoRead()) == "exists"
    assert not c.blob_exists(b, d.digest)
    assert c.push_blob(b, d, NoRead(), mount_from=a) == "mounted"
    assert c.blob_exists(b, d.digest)
    assert any("mount=" in p and "from=berth%2Fmount-a" in p for p in mirror.paths("POST"))
    # mounting from a repository without the blob falls back to an upload
    data2 = os.urandom(1000)
    d2 = Descriptor(mt.OCI_LAYER_GZIP, sha(data2), len(data2))
    assert c.push_blob(e, d2, io.BytesIO(data2), mount_from=b) == "uploaded"


@needs_registry
def test_range_resume_after_interruption(registry, make_client, peers, tmp_path):
    proxy = proxy_app(registry.host)
    mirror = peers(proxy)
    c = make_client()
    data = os.urandom(3 * 1024 * 1024 + 123)
    d = Descriptor(mt.OCI_LAYER_GZIP, sha(data), len(data))
    repo = f"{mirror.host}/berth/resume"
    c.push_blob(repo, d, io.BytesIO(data))

    store = ContentStore(tmp_path / "content")
    half = len(data) // 2
    with store.writer("resume-ref", d.digest, d.size) as w:
        with pytest.raises(Crash):  # the destination's error is not retried elsewhere
            c.fetch_blob(repo, d, FlakyWriter(w, half), offset=w.offset)
        assert w.offset == half
    mirror.requests.clear()
    proxy.statuses.clear()
    got = []
    with store.writer("resume-ref", d.digest, d.size) as w:
        assert w.offset == half
        c.fetch_blob(repo, d, w, offset=w.offset, progress=got.append)
        assert w.commit() == d.digest
    gets = [(p, h) for m, p, h in mirror.requests if m == "GET"]
    assert len(gets) == 1 and gets[0][1].get("Range") == f"bytes={half}-"
    assert ("GET", 206) in proxy.statuses  # the registry served only the rest
    assert got[0] > half and got[-1] == len(data)
    assert store.read(d.digest) == data
    with pytest.raises(InvalidArgument):
        c.fetch_blob(repo, d, io.BytesIO(), offset=len(data) + 1)


@needs_registry
def test_missing_things_are_not_found(registry, make_client):
    c = make_client()
    with pytest.raises(NotFound, match=r"^manifest for 127\.0\.0\.1:\d+/berth/nothing:nope not found"):
        c.resolve(f"{registry.host}/berth/nothing:nope")
    d = Descriptor(mt.OCI_LAYER, sha(b"absent"), 6)
    with pytest.raises(NotFound, match="blob"):
        c.fetch_blob(f"{registry.host}/berth/nothing", d, io.BytesIO())
    with pytest.raises(NotFound):
        c.fetch_manifest(f"{registry.host}/berth/nothing", sha(b"x"))


@needs_registry
def test_parallel_fetches_share_one_client(registry, make_client):
    c = make_client()
    img = make_image("parallel", nlayers=6)
    repo = f"{registry.host}/berth/parallel"
    push_image(c, repo, "v1", img)

    def fetch(item):
        d, data = item
        out = io.BytesIO()
        c.fetch_blob(repo, d, out)
        return out.getvalue() == data

    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        assert all(ex.map(fetch, img.blobs() * 3))


# --- skopeo cross-checks ----------------------------------------------------------

def skopeo(tmp_path, *args):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "XDG_RUNTIME_DIR": str(tmp_path), "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")}
    p = subprocess.run([SKOPEO, "--policy", str(policy), *args], capture_output=True, timeout=60, env=env,
                       stdin=subprocess.DEVNULL, check=False)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


@needs_registry
@pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")
def test_skopeo_reads_what_berth_pushed(registry, make_client, tmp_path):
    c = make_client()
    img = make_image("toskopeo")
    repo = f"{registry.host}/berth/toskopeo"
    push_image(c, repo, "v1", img, chunk_size=1024)
    info = json.loads(skopeo(tmp_path, "inspect", "--tls-verify=false", f"docker://{repo}:v1"))
    assert info["Digest"] == img.digest
    assert info["Layers"] == [d.digest for d in img.layer_descs]
    assert info["Labels"] == {"seed": "toskopeo"}
    assert skopeo(tmp_path, "inspect", "--raw", "--tls-verify=false", f"docker://{repo}:v1") == img.manifest
    out = tmp_path / "copied"
    skopeo(tmp_path, "copy", "-q", "--src-tls-verify=false", f"docker://{repo}:v1", f"oci:{out}:v1")
    idx = json.loads((out / "index.json").read_text())
    assert idx["manifests"][0]["digest"] == img.digest


@needs_registry
@pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")
@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_berth_reads_what_skopeo_pushed(registry, make_client, tmp_path, fmt):
    img = make_image(f"fromskopeo{fmt}")
    layout = tmp_path / "layout"
    write_oci_layout(str(layout), img, "v1")
    repo = f"{registry.host}/berth/fromskopeo-{fmt}"
    skopeo(tmp_path, "copy", "-q", "--format", fmt, "--dest-tls-verify=false", f"oci:{layout}:v1",
           f"docker://{repo}:v1")
    c = make_client()
    _, desc = c.resolve(f"{repo}:v1")
    assert desc.media_type == (mt.OCI_MANIFEST if fmt == "oci" else mt.DOCKER_MANIFEST)
    manifest = json.loads(c.fetch_manifest(repo, desc.digest))
    assert sha(c.fetch_manifest(repo, desc.digest)) == desc.digest
    blobs = {d.digest: data for d, data in img.blobs()}
    for item in [manifest["config"], *manifest["layers"]]:
        out = io.BytesIO()
        c.fetch_blob(repo, item, out)
        if item["digest"] in blobs:
            assert out.getvalue() == blobs[item["digest"]]
        assert sha(out.getvalue()) == item["digest"]
    assert [x["digest"] for x in manifest["layers"]] == [d.digest for d in img.layer_descs]


# --- hosts.toml: parsing -------------------------------------------------------------

def test_hosts_defaults():
    (ep,) = load_hosts(None, "docker.io")
    assert (ep.scheme, ep.host, ep.path, ep.mirror) == ("https", "registry-1.docker.io", "/v2", False)
    assert ep.capabilities == {"pull", "resolve", "push"}
    assert load_hosts(None, "index.docker.io")[0].host == "registry-1.docker.io"
    (ep,) = load_hosts(None, "quay.io")
    assert (ep.scheme, ep.host, ep.http_fallback) == ("https", "quay.io", False)
    for local in ("localhost:5000", "127.0.0.1:5000", "127.1.2.3:80", "[::1]:5000"):
        assert load_hosts(None, local)[0].scheme == "http", local
    assert load_hosts(None, "localhost")[0].scheme == "https"
    (ep,) = load_hosts(None, "reg.lan:5000", insecure=["reg.lan:5000"])
    assert (ep.scheme, ep.skip_verify, ep.http_fallback) == ("https", True, True)
    (ep,) = load_hosts(None, "10.1.2.3:5000", insecure=["10.0.0.0/8"])
    assert ep.http_fallback
    assert not load_hosts(None, "11.1.2.3:5000", insecure=["10.0.0.0/8"])[0].http_fallback
    eps = load_hosts(None, "docker.io", mirrors=["https://mirror.example.com", "http://10.0.0.1:5000/"])
    assert [str(e) for e in eps] == ["https://mirror.example.com/v2", "http://10.0.0.1:5000/v2",
                                     "https://registry-1.docker.io/v2"]
    assert eps[0].capabilities == {"pull", "resolve"} and eps[0].mirror
    assert len(load_hosts(None, "quay.io", mirrors=["https://m.example.com"])) == 1  # docker.io only
    with pytest.raises(InvalidArgument, match="registry_mirrors"):
        load_hosts(None, "docker.io", mirrors=["ftp://x"])


def test_hosts_toml_parsing(tmp_path):
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "docker.io").mkdir()
    (tmp_path / "docker.io" / "mirror-ca.pem").write_text("x")
    path = write_hosts(tmp_path, "docker.io", f"""
server = "https://registry-1.docker.io"
capabilities = ["pull", "resolve", "push"]

[host."https://mirror-b.example.com"]
  capabilities = ["pull"]
  ca = "mirror-ca.pem"
  skip_verify = true
  dial_timeout = "1.5s"
  [host."https://mirror-b.example.com".header]
    x-one = "1"
    x-two = ["a", "b"]

[host."https://mirror-a.example.com/some/prefix"]
  capabilities = ["pull", "resolve"]
  ca = ["{tmp_path}/ca.pem"]

[host."http://plain.example.com:8080/raw/api"]
  override_path = true
""")
    eps = load_hosts(str(tmp_path), "docker.io", mirrors=["https://ignored.example.com"])
    assert [str(e) for e in eps] == [
        "https://mirror-b.example.com/v2",  # file order, not sorted
        "https://mirror-a.example.com/some/prefix/v2",
        "http://plain.example.com:8080/raw/api",
        "https://registry-1.docker.io/v2",
    ]
    b, a, plain, server = eps
    assert b.capabilities == {"pull"} and b.skip_verify and b.dial_timeout == 1.5
    assert b.ca_files == (str(tmp_path / "docker.io" / "mirror-ca.pem"),)
    assert b.headers == (("x-one", "1"), ("x-two", "a"), ("x-two", "b"))
    assert a.capabilities == {"pull", "resolve"} and a.ca_files == (str(tmp_path / "ca.pem"),)
    assert plain.capabilities == {"pull", "resolve", "push"}
    assert b.mirror and not server.mirror and b.source == path
    # no server: the registry itself comes last, with the top-level settings
    write_hosts(tmp_path, "reg.example.com_5000_", '[host."https://m.example.com"]\ncapabilities=["pull"]\n')
    eps = load_hosts(str(tmp_path), "reg.example.com:5000")
    assert [str(e) for e in eps] == ["https://m.example.com/v2", "https://reg.example.com:5000/v2"]
    # _default applies to every other host
    write_hosts(tmp_path, "_default", 'server = "https://fallback.example.com"\n')
    assert [str(e) for e in load_hosts(str(tmp_path), "quay.io")] == ["https://fallback.example.com/v2"]
    # a host directory without hosts.toml: docker's certs.d layout
    d = tmp_path / "certs.example.com"
    d.mkdir()
    (d / "ca.crt").write_text("x")
    (d / "client.cert").write_text("x")
    (d / "client.key").write_text("x")
    (ep,) = load_hosts(str(tmp_path), "certs.example.com")
    assert ep.ca_files == (str(d / "ca.crt"),) and ep.client_certs == ((str(d / "client.cert"), str(d / "client.key")),)
    # an http:// host with TLS settings tries HTTPS first
    write_hosts(tmp_path, "tls.example.com", '[host."http://tls.example.com:5000"]\nskip_verify = true\n')
    assert load_hosts(str(tmp_path), "tls.example.com")[0].http_fallback


def test_containerd_cri_mirrors(tmp_path):
    """berthd.toml's [registry.mirrors."<host>"] endpoint = [...] (containerd's CRI form): the
    host's mirrors, else those of "*", pull and resolve only, then the registry itself, once;
    a host with a hosts.toml of its own uses that instead."""
    hm = {"registry.k8s.io": ["https://m1.example.com", "http://127.0.0.1:5000/",
                              "https://registry.k8s.io"],  # the registry itself: left to the end
          "*": ["https://any.example.com/prefix"]}
    eps = load_hosts(None, "registry.k8s.io", host_mirrors=hm)
    assert [str(e) for e in eps] == ["https://m1.example.com/v2", "http://127.0.0.1:5000/v2",
                                     "https://registry.k8s.io/v2"]
    assert all(e.mirror and e.capabilities == {"pull", "resolve"} for e in eps[:2])
    assert eps[-1].capabilities == {"pull", "resolve", "push"} and not eps[-1].mirror
    assert [str(e) for e in load_hosts(None, "quay.io", host_mirrors=hm)] == [
        "https://any.example.com/prefix/v2", "https://quay.io/v2"]
    assert [str(e) for e in load_hosts(None, "quay.io", host_mirrors={"docker.io": ["https://d.example.com"]})] == [
        "https://quay.io/v2"]
    # docker.io: containerd's form first, then daemon.json's registry-mirrors
    eps = load_hosts(None, "docker.io", mirrors=["https://daemon-json.example.com"],
                     host_mirrors={"docker.io": ["https://cri.example.com"]})
    assert [str(e) for e in eps] == ["https://cri.example.com/v2", "https://daemon-json.example.com/v2",
                                     "https://registry-1.docker.io/v2"]
    # _default is not a host's own file: the mirrors go before its server
    write_hosts(tmp_path, "_default", 'server = "http://127.0.0.1:1"\n')
    assert [str(e) for e in load_hosts(str(tmp_path), "registry.k8s.io", host_mirrors=hm)] == [
        "https://m1.example.com/v2", "http://127.0.0.1:5000/v2", "https://registry.k8s.io/v2", "http://127.0.0.1:1/v2"]
    write_hosts(tmp_path, "registry.k8s.io", 'server = "https://own.example.com"\n')
    assert [str(e) for e in load_hosts(str(tmp_path), "registry.k8s.io", host_mirrors=hm)] == [
        "https://own.example.com/v2"]
    with pytest.raises(InvalidArgument, match=r'registry\.mirrors\."quay\.io"\.endpoint'):
        load_hosts(None, "quay.io", host_mirrors={"quay.io": ["ftp://x"]})


@pytest.mark.parametrize("text, key", [
    ("server = [", "invalid TOML"),
    ('[host."https://m"]\ncapabilities = ["pull", "fly"]\n', 'host."https://m".capabilities'),
    ('capabilities = "pull"\n', "capabilities"),
    ('[host."https://m"]\nca = "missing.pem"\n', 'host."https://m".ca'),
    ('[host."https://m"]\nskip_verify = "yes"\n', 'host."https://m".skip_verify'),
    ('[host."https://m"]\nskip-verify = true\n', 'host."https://m".skip-verify'),
    ('[host."ftp://m"]\n', 'host."ftp://m"'),
    ('server = "https://a b"\n', "server"),
    ('[host."https://m"]\ndial_timeout = "soon"\n', "dial_timeout"),
    ('[host."https://m".header]\nx = 1\n', 'header.x'),
    ('proxy = "http://p:3128"\n', "proxy"),
])
def test_hosts_toml_errors_name_file_and_key(tmp_path, text, key):
    path = write_hosts(tmp_path, "bad.example.com", text)
    with pytest.raises(InvalidArgument) as e:
        load_hosts(str(tmp_path), "bad.example.com")
    assert path in str(e.value) and key in str(e.value)
    assert "\n" not in str(e.value)


# --- hosts.toml: against peers ---------------------------------------------------------

@needs_registry
def test_docker_io_mirror_with_down_mirror_first(registry, make_client, peers, tmp_path):
    img = make_image("mirrored")
    push_image(make_client(), f"{registry.host}/library/mirrored", "1.0", img)
    good = peers(proxy_app(registry.host))
    certs = tmp_path / "certs.d"
    write_hosts(certs, "docker.io", f"""
server = "http://127.0.0.1:{closed_port()}"
[host."http://127.0.0.1:{closed_port()}"]
  capabilities = ["pull", "resolve"]
[host."{good.url}"]
  capabilities = ["pull", "resolve"]
  [host."{good.url}".header]
    x-berth-test = "yes"
""")
    c = make_client(str(certs))
    name, desc = c.resolve("mirrored:1.0")
    assert name == "docker.io/library/mirrored:1.0" and desc.digest == img.digest
    assert c.fetch_manifest(name, desc.digest) == img.manifest
    out = io.BytesIO()
    c.fetch_blob("mirrored", img.layer_descs[0], out)
    assert out.getvalue() == img.layers[0]
    assert all("ns=docker.io" in p for p in good.paths())
    assert all(h.get("x-berth-test") == "yes" for _, _, h in good.requests)
    # every endpoint down: the last error is reported
    write_hosts(certs, "docker.io", f'server = "http://127.0.0.1:{closed_port()}"\n')
    with pytest.raises(Unavailable, match="connection refused"):
        c.resolve("mirrored:1.0")


@needs_registry
def test_capabilities_override_path_and_live_reload(registry, make_client, peers, tmp_path):
    img = make_image("caps")
    push_image(make_client(), f"{registry.host}/team/caps", "v1", img)
    pull_only = peers(proxy_app(registry.host, strip_prefix="/pfx"))
    server = peers(proxy_app(registry.host))
    certs = tmp_path / "certs.d"
    write_hosts(certs, "registry.example.com", f"""
server = "{server.url}"
[host."{pull_only.url}/pfx/v2"]
  capabilities = ["pull"]
  override_path = true
""")
    c = make_client(str(certs))
    name, desc = c.resolve("registry.example.com/team/caps:v1")
    assert desc.digest == img.digest
    assert pull_only.paths() == []  # a pull-only mirror is not trusted to resolve
    assert any("/manifests/v1" in p for p in server.paths())
    c._manifests.clear()
    assert c.fetch_manifest(name, desc.digest) == img.manifest
    out = io.BytesIO()
    c.fetch_blob(name, img.layer_descs[0], out)
    assert out.getvalue() == img.layers[0]
    assert [p.split("?")[0] for p in pull_only.paths()] == [
        f"/pfx/v2/team/caps/manifests/{img.digest}", f"/pfx/v2/team/caps/blobs/{img.layer_descs[0].digest}"]
    # push goes to the server only
    data = b"pushed"
    c.push_blob(name, Descriptor(mt.OCI_LAYER, sha(data), len(data)), io.BytesIO(data))
    assert not any(m in ("POST", "PUT") for m, _, _ in pull_only.requests)
    # a mirror answering 404 is skipped
    write_hosts(certs, "registry.example.com", f"""
server = "{server.url}"
[host."{server.url}/nowhere"]
  capabilities = ["pull", "resolve"]
""")
    n = len(server.paths())
    assert c.resolve("registry.example.com/team/caps:v1")[1].digest == img.digest
    assert any(p.startswith("/nowhere/v2/") for p in server.paths()[n:])
    # no endpoint may push: a clear error
    write_hosts(certs, "registry.example.com", f'server = "{server.url}"\ncapabilities = ["pull", "resolve"]\n')
    with pytest.raises(FailedPrecondition, match="push"):
        c.push_manifest(name, "v2", img.media_type, img.manifest)


@needs_registry
def test_registry_mirrors_for_docker_io(registry, make_client, peers):
    img = make_image("dmirror")
    push_image(make_client(), f"{registry.host}/someone/dmirror", "v1", img)
    mirror = peers(proxy_app(registry.host))
    c = make_client(None, mirrors=[mirror.url])
    assert c.resolve("someone/dmirror:v1")[1].digest == img.digest
    assert mirror.paths()[0].startswith("/v2/someone/dmirror/manifests/v1?ns=docker.io")


@needs_registry
def test_insecure_registry_falls_back_to_plain_http(registry, make_client, peers, tmp_path):
    img = make_image("insecure")
    push_image(make_client(), f"{registry.host}/berth/insecure", "v1", img)
    certs = tmp_path / "certs.d"
    write_hosts(certs, "insecure.example.com", f'server = "https://{registry.host}"\n')
    with pytest.raises(Unavailable, match="TLS|SSL"):
        make_client(str(certs)).resolve("insecure.example.com/berth/insecure:v1")
    c = make_client(str(certs), insecure=[registry.host])
    assert c.resolve("insecure.example.com/berth/insecure:v1")[1].digest == img.digest
    assert c.transport.is_plain_http(registry.host)
    assert c.fetch_manifest("insecure.example.com/berth/insecure", img.digest) == img.manifest


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    if OPENSSL is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:TRUE"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


@needs_registry
def test_tls_registry_with_ca_and_skip_verify(make_client, tls_files, tmp_path):
    reg = Registry(tmp_path / "tlsreg", tls=tls_files)
    try:
        img = make_image("tls")
        certs = tmp_path / "certs.d"
        host = f"{reg.host}"
        dirname = f"127.0.0.1_{reg.port}_"
        write_hosts(certs, dirname, f'server = "https://{host}"\n')
        with pytest.raises(Unavailable, match="certificate verification failed"):
            make_client(str(certs)).resolve(f"{host}/berth/tls:v1")
        shutil.copy(tls_files[0], certs / dirname / "ca.pem")
        write_hosts(certs, dirname, f'server = "https://{host}"\nca = "ca.pem"\n')
        c = make_client(str(certs))
        push_image(c, f"{host}/berth/tls", "v1", img)
        assert c.resolve(f"{host}/berth/tls:v1")[1].digest == img.digest
        write_hosts(certs, dirname, f'server = "https://{host}"\nskip_verify = true\n')
        c2 = make_client(str(certs))
        assert c2.resolve(f"{host}/berth/tls:v1")[1].digest == img.digest
        out = io.BytesIO()
        c2.fetch_blob(f"{host}/berth/tls", img.layer_descs[0], out)
        assert out.getvalue() == img.layers[0]
    finally:
        reg.stop()


# --- auth ---------------------------------------------------------------------------------

class TokenRegistry:
    """A registry that wants bearer tokens from its own /token endpoint (user alice:s3cret)."""

    USER, PASSWORD = "alice", "s3cret"

    def __init__(self, peers, img: Image, repo="private/app", basic=False, storage=None):
        self.img, self.repo, self.basic, self.storage = img, repo, basic, storage
        self.tokens = {}  # token -> set of scope strings
        self.token_requests = []
        self.counter = 0
        self.peer = peers(self.app)
        self.host = self.peer.host

    def _creds_ok(self, h):
        auth = h.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return None
        user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
        return user == self.USER and pw == self.PASSWORD

    def app(self, h):
        u = urllib.parse.urlsplit(h.path)
        if u.path == "/token":
            q = urllib.parse.parse_qs(u.query)
            self.token_requests.append(q)
            ok = self._creds_ok(h)
            if ok is False:
                return registry_error(h, 401, "UNAUTHORIZED", "bad credentials")
            granted = set()
            for s in q.get("scope", []):
                granted.add(s if ok else "anonymous")
            self.counter += 1
            tok = f"tok{self.counter}"
            self.tokens[tok] = granted
            return reply(h, 200, json.dumps({"access_token": tok, "expires_in": 300}).encode(),
                         {"Content-Type": "application/json"})
        scope = f"repository:{self.repo}:pull"
        auth = h.headers.get("Authorization", "")
        allowed = False
        if self.basic:
            allowed = self._creds_ok(h) is True
        elif auth.startswith("Bearer "):
            allowed = any(scope in s.split() or s == scope for s in self.tokens.get(auth[7:], ()))
        if not allowed:
            hdr = ('Basic realm="test"' if self.basic else
                   f'Bearer realm="http://{self.host}/token",service="test-registry",scope="{scope}"')
            body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}).encode()
            return reply(h, 401, body, {"WWW-Authenticate": hdr, "Content-Type": "application/json"})
        prefix = f"/v2/{self.repo}/"
        if u.path == f"{prefix}manifests/v1" or u.path == f"{prefix}manifests/{self.img.digest}":
            return reply(h, 200, self.img.manifest, {"Content-Type": self.img.media_type,
                                                     "Docker-Content-Digest": self.img.digest})
        for d, data in self.img.blobs():
            if u.path == f"{prefix}blobs/{d.digest}":
                if self.storage is not None:
                    return reply(h, 307, b"", {"Location": f"{self.storage.url}/store/{d.digest[7:]}?sig=1"})
                return reply(h, 200, data, {"Content-Type": "application/octet-stream"})
        return registry_error(h, 404, "NOT_FOUND", "not here")


def test_bearer_token_flow_with_docker_config(peers, make_client, tmp_path):
    img = make_image("auth")
    reg = TokenRegistry(peers, img)
    cfg = tmp_path / "docker-config.json"
    save_credentials(reg.host, TokenRegistry.USER, TokenRegistry.PASSWORD, config_path=str(cfg))
    c = make_client(docker_config=str(cfg))
    name, desc = c.resolve(f"{reg.host}/private/app:v1")
    assert desc.digest == img.digest
    assert c.fetch_manifest(name, img.digest) == img.manifest
    for d, data in img.blobs():
        out = io.BytesIO()
        c.fetch_blob(name, d, out)
        assert out.getvalue() == data
    assert len(reg.token_requests) == 1  # one token, cached for the scope
    q = reg.token_requests[0]
    assert q["service"] == ["test-registry"] and q["scope"] == ["repository:private/app:pull"]
    # the registry revokes its tokens: the client fetches a new one and goes on
    reg.tokens.clear()
    assert c.resolve(f"{reg.host}/private/app:v1")[1].digest == img.digest
    assert len(reg.token_requests) == 2


def test_bearer_auth_refusals(peers, make_client, tmp_path):
    img = make_image("noauth")
    reg = TokenRegistry(peers, img)
    anon = make_client(docker_config=str(tmp_path / "none.json"))
    with pytest.raises(PermissionDenied, match="pull access denied"):
        anon.resolve(f"{reg.host}/private/app:v1")
    cfg = tmp_path / "wrong.json"
    save_credentials(reg.host, TokenRegistry.USER, "wrong", config_path=str(cfg))
    with pytest.raises(PermissionDenied, match="incorrect username or password"):
        make_client(docker_config=str(cfg)).resolve(f"{reg.host}/private/app:v1")


def test_basic_auth_and_credentials_callback(peers, make_client):
    img = make_image("basic")
    reg = TokenRegistry(peers, img, basic=True)
    c = make_client(credentials=lambda host: (TokenRegistry.USER, TokenRegistry.PASSWORD)
                    if host == reg.host else None)
    assert c.resolve(f"{reg.host}/private/app:v1")[1].digest == img.digest
    out = io.BytesIO()
    c.fetch_blob(f"{reg.host}/private/app", img.layer_descs[0], out)
    assert out.getvalue() == img.layers[0]
    with pytest.raises(PermissionDenied):
        make_client(credentials=lambda host: None).resolve(f"{reg.host}/private/app:v1")


def test_redirect_to_blob_storage_drops_authorization(peers, make_client, tmp_path):
    img = make_image("redirect")
    seen = []

    def storage_app(h):
        seen.append(h.headers.get("Authorization"))
        digest = "sha256:" + urllib.parse.urlsplit(h.path).path.rsplit("/", 1)[1]
        data = next(data for d, data in img.blobs() if d.digest == digest)
        reply(h, 200, data)

    storage = peers(storage_app)
    reg = TokenRegistry(peers, img, storage=storage)
    cfg = tmp_path / "docker-config.json"
    save_credentials(reg.host, TokenRegistry.USER, TokenRegistry.PASSWORD, config_path=str(cfg))
    c = make_client(docker_config=str(cfg))
    out = io.BytesIO()
    c.fetch_blob(f"{reg.host}/private/app", img.layer_descs[0], out)
    assert out.getvalue() == img.layers[0]
    assert seen == [None]


def test_token_cache_expiry_unit():
    now = [1000.0]
    calls = []

    def fetch(method, url, headers, body):
        calls.append((method, url, headers))
        return 200, {}, json.dumps({"token": f"t{len(calls)}", "expires_in": 120}).encode()

    a = Authorizer(lambda host: Credentials("u", "p"), fetch, clock=lambda: now[0])
    hdr = a.handle_unauthorized("r.example", ["repository:x:pull"],
                                ['Bearer realm="https://auth.example/token?x=1",service="svc"'], None)
    assert hdr == "Bearer t1"
    assert calls[0][1] == "https://auth.example/token?x=1&service=svc&scope=repository%3Ax%3Apull"
    assert calls[0][2]["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    assert a.authorization("r.example", ["repository:x:pull"]) == "Bearer t1"
    assert a.authorization("r.example", ["repository:y:pull"]) == "Bearer t2"  # another scope
    now[0] += 200
    assert a.authorization("r.example", ["repository:x:pull"]) == "Bearer t3"  # expired
    assert len(calls) == 3
    # an identity token uses the OAuth2 refresh-token POST
    b = Authorizer(lambda host: Credentials(identity_token="refresh"), fetch, clock=lambda: now[0])
    b.handle_unauthorized("r.example", ["repository:x:pull,push"], ['Bearer realm="https://a/t",service="s"'], None)
    method, url, _ = calls[-1]
    assert method == "POST" and url == "https://a/t"


def test_parse_www_authenticate():
    (ch,) = parse_www_authenticate(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull",error="insufficient_scope"')
    assert ch.scheme == "bearer" and ch.realm == "https://auth.docker.io/token"
    assert ch.params["scope"] == "repository:library/busybox:pull" and ch.params["error"] == "insufficient_scope"
    chs = parse_www_authenticate(['Basic realm="a \\"q\\""', "Negotiate, Bearer realm=x,service=y"])
    assert [(c.scheme, dict(c.params)) for c in chs] == [
        ("basic", {"realm": 'a "q"'}), ("negotiate", {}), ("bearer", {"realm": "x", "service": "y"})]


# --- credentials file -----------------------------------------------------------------------

def test_save_load_remove_credentials(tmp_path):
    cfg = tmp_path / "docker" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"auths": {"other.example.com": {"auth": base64.b64encode(b"o:p").decode()}},
                               "HttpHeaders": {"X-Berth-Namespace": "ns1"}, "psFormat": "table"}))
    save_credentials("docker.io", "bob", "pw:with:colons", config_path=str(cfg))
    doc = json.loads(cfg.read_text())
    assert stat.S_IMODE(os.stat(cfg).st_mode) == 0o600
    assert doc["HttpHeaders"] == {"X-Berth-Namespace": "ns1"} and doc["psFormat"] == "table"
    assert base64.b64decode(doc["auths"][DOCKER_HUB_KEY]["auth"]) == b"bob:pw:with:colons"
    for host in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        assert load_credentials(host, str(cfg)) == Credentials("bob", "pw:with:colons")
    assert load_credentials("other.example.com", str(cfg)) == Credentials("o", "p")
    assert load_credentials("nobody.example.com", str(cfg)) is None
    # keys written as URLs, and username/password fields, are understood
    doc["auths"]["https://url.example.com:5000/v1/"] = {"username": "u", "password": "p2"}
    doc["auths"]["tok.example.com"] = {"identitytoken": "refresh-me"}
    cfg.write_text(json.dumps(doc))
    assert load_credentials("url.example.com:5000", str(cfg)) == Credentials("u", "p2")
    assert load_credentials("tok.example.com", str(cfg)).identity_token == "refresh-me"
    assert remove_credentials("docker.io", str(cfg))
    assert not remove_credentials("docker.io", str(cfg))
    doc = json.loads(cfg.read_text())
    assert DOCKER_HUB_KEY not in doc["auths"] and "other.example.com" in doc["auths"]
    assert load_credentials("x", str(tmp_path / "missing.json")) is None
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InvalidArgument, match="bad.json"):
        load_credentials("x", str(tmp_path / "bad.json"))


def test_credential_helper(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    store = tmp_path / "helper-store"
    helper = bindir / "docker-credential-fake"
    helper.write_text(f"""#!/bin/sh
case "$1" in
  get) read host; if [ -f {store} ]; then cat {store}; else echo "credentials not found"; exit 1; fi ;;
  store) cat > {store} ;;
  erase) read host; rm -f {store} ;;
esac
""")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ.get('PATH', '')}")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"credHelpers": {"helped.example.com": "fake"}}))
    assert load_credentials("helped.example.com", str(cfg)) is None
    save_credentials("helped.example.com", "carol", "secret", config_path=str(cfg))
    assert json.loads(store.read_text()) == {"ServerURL": "helped.example.com", "Username": "carol",
                                             "Secret": "secret"}
    assert "secret" not in cfg.read_text()
    assert load_credentials("helped.example.com", str(cfg)) == Credentials("carol", "secret")
    assert remove_credentials("helped.example.com", str(cfg))
    assert not store.exists()


# --- misbehaving registries --------------------------------------------------------------------

def test_manifest_verification_and_size_limit(peers, make_client):
    img = make_image("lies")
    other = make_image("other")

    def app(h):
        path = urllib.parse.urlsplit(h.path).path
        if path.endswith("/manifests/wrongdigest"):  # header claims one digest, body is another
            if h.command == "HEAD":  # no HEAD support: the client GETs and checks the body
                return registry_error(h, 405, "UNSUPPORTED", "no HEAD here")
            return reply(h, 200, other.manifest, {"Content-Type": mt.OCI_MANIFEST,
                                                  "Docker-Content-Digest": img.digest})
        if path.endswith("/manifests/nohead"):  # HEAD without digest: GET, digest computed
            return reply(h, 200, img.manifest, {"Content-Type": mt.OCI_MANIFEST})
        if path.endswith("/manifests/huge"):
            return reply(h, 200, b" " * (4 * 1024 * 1024 + 1), {"Content-Type": mt.OCI_MANIFEST})
        if path.endswith(f"/manifests/{img.digest}"):
            return reply(h, 200, other.manifest, {"Content-Type": mt.OCI_MANIFEST})
        if path.endswith(f"/blobs/{img.config_desc.digest}"):
            return reply(h, 200, img.config + b"extra")
        return registry_error(h, 404, "MANIFEST_UNKNOWN", "manifest unknown")

    p = peers(app)
    c = make_client()
    with pytest.raises(InvalidArgument, match="digest mismatch"):
        c.resolve(f"{p.host}/x/y:wrongdigest")
    assert c.resolve(f"{p.host}/x/y:nohead")[1] == Descriptor(mt.OCI_MANIFEST, img.digest, len(img.manifest))
    with pytest.raises(InvalidArgument, match="limit"):
        c.resolve(f"{p.host}/x/y:huge")
    with pytest.raises(InvalidArgument, match="digest mismatch"):
        make_client().fetch_manifest(f"{p.host}/x/y", img.digest)
    with pytest.raises(InvalidArgument, match="size mismatch"):
        c.fetch_blob(f"{p.host}/x/y", img.config_desc, io.BytesIO())
    with pytest.raises(NotFound, match=r"^manifest for 127\.0\.0\.1:\d+/x/y:absent not found: manifest unknown: manifest unknown$"):
        c.resolve(f"{p.host}/x/y:absent")


def test_download_resumes_after_disconnect_and_without_range_support(peers, make_client, tmp_path):
    data = os.urandom(500_000)
    d = Descriptor(mt.OCI_LAYER, sha(data), len(data))
    ranges = []
    state = {"cut": True}

    def app(h):
        rng = h.headers.get("Range")
        ranges.append(rng)
        if rng:
            start = int(rng.split("=")[1].rstrip("-"))
            return reply(h, 206, data[start:], {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if state["cut"]:
            h.wfile.write(data[:200_000])
            h.close_connection = True  # the connection drops mid-blob
            return
        h.wfile.write(data)

    p = peers(app)
    c = make_client()
    store = ContentStore(tmp_path / "content")
    with store.writer("dl", d.digest, d.size) as w:
        c.fetch_blob(f"{p.host}/x/y", d, w, offset=w.offset)
        assert w.commit() == d.digest
    assert ranges == [None, "bytes=200000-"]

    def no_range_app(h):  # ignores Range: the client skips what it has
        reply(h, 200, data)

    p2 = peers(no_range_app)
    out = io.BytesIO()
    c.fetch_blob(f"{p2.host}/x/y", d, out, offset=123_456)
    assert out.getvalue() == data[123_456:]


def test_timeouts_and_5xx(peers, make_client, tmp_path):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        c = make_client(timeout=0.5)
        with pytest.raises(Unavailable, match="timed out"):
            c.resolve(f"127.0.0.1:{silent.getsockname()[1]}/x/y:v1")
    finally:
        silent.close()

    p = peers(lambda h: registry_error(h, 503, "UNAVAILABLE", "try later"))
    with pytest.raises(Unavailable, match="503"):
        make_client().resolve(f"{p.host}/x/y:v1")
    # a failing mirror then a working server: the server answers
    img = make_image("fivexx")

    def good(h):
        reply(h, 200, img.manifest, {"Content-Type": mt.OCI_MANIFEST, "Docker-Content-Digest": img.digest})

    g = peers(good)
    certs = tmp_path / "certs.d"
    write_hosts(certs, "five.example.com", f'server = "{g.url}"\n[host."{p.url}"]\ncapabilities = ["pull", "resolve"]\n')
    assert make_client(str(certs)).resolve("five.example.com/x/y:v1")[1].digest == img.digest


def test_no_side_effects_at_import():
    code = ("import sys, threading; n = threading.active_count(); import berth.remotes; "
            "assert threading.active_count() == n; assert 'berth.images' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_host_that_does_not_resolve_is_named_in_gos_words():
    """A lookup that finds no such host is said as dockerd (Go's resolver) says it, with the
    DNS server resolv.conf names and the host as written: `Get "<url>": dial tcp: lookup <host> on
    <server>:53: no such host` (berthd said "cannot resolve host: Name or service not known").
    The error is made here as the resolver raises it: a test may not ask a DNS server."""
    import socket
    import urllib.parse
    from berth.remotes import transport
    url = "https://Reg.Example:5000/v2/"
    e = transport._dial_error("GET", url, urllib.parse.urlsplit(url),
                              socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    ns = transport._nameserver()
    assert str(e) == f'Get "{url}": dial tcp: lookup Reg.Example on {ns}: no such host'
    assert e.dial == f"dial tcp: lookup Reg.Example on {ns}: no such host" and e.base == "https://Reg.Example:5000"
    with open("/etc/resolv.conf") as f:
        first = next((ln.split()[1] for ln in f if ln.split()[:1] == ["nameserver"]), None)
    assert ns == (f"{first}:53" if first and ":" not in first else f"[{first}]:53" if first else "127.0.0.1:53")
