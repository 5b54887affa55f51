"""Images through real registries: berth against Debian's docker-registry, skopeo, mirrors,
broken and hostile registries, interrupted and killed pulls, and login with TLS + htpasswd.

Every peer runs on 127.0.0.1. Images are the fixtures in tests/data or built here (a config,
layer tars, an OCI manifest or index) and pushed with skopeo or berth.remotes.RegistryClient.
"""
# ruff: noqa: F811 (pytest fixtures imported from daemon_fixtures are test parameters)

import base64
import glob
import gzip
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tarfile
import threading
import time

import pytest
from daemon_fixtures import (  # noqa: F401 (fixtures)
    BERTH,
    DATA,
    Daemon,
    Registry,
    free_port,
    registry,
    skopeo,
    wait_for,
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine)


# --- helpers: images built here ----------------------------------------------------------------

def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_tar(entries):
    """A layer tar from (name, content) pairs: bytes (a file), ("dir",), ("symlink", target),
    ("hardlink", target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, content in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            if isinstance(content, bytes):
                ti.size, ti.mode = len(content), 0o644
                tf.addfile(ti, io.BytesIO(content))
            elif content[0] == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            elif content[0] == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, content[1]
                tf.addfile(ti)
            elif content[0] == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, content[1]
                tf.addfile(ti)
    return buf.getvalue()


def compress(tar, how):
    if how == "none":
        return tar
    if how == "gzip":
        return gzip.compress(tar, mtime=0)
    if how == "zstd":
        import zstandard
        return zstandard.ZstdCompressor().compress(tar)
    raise ValueError(how)


def desc(media, data, **extra):
    return dict({"mediaType": media, "digest": sha(data), "size": len(data)}, **extra)


class Img:
    """An OCI image: config + layers (tar bytes, compression) + manifest; ``blobs`` by digest."""

    def __init__(self, layers, arch="amd64", variant=None, layer_media=None, config_size=None, pad=0):
        self.blobs = {}
        ldescs, diff_ids = [], []
        for tar, how in layers:
            blob = compress(tar, how)
            self.blobs[sha(blob)] = blob
            ldescs.append(desc(layer_media or LAYER_MEDIA[how], blob))
            diff_ids.append(sha(tar))
        config = {"architecture": arch, "os": "linux", "created": "2024-01-02T03:04:05Z",
                  "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
                  "rootfs": {"type": "layers", "diff_ids": diff_ids},
                  "history": [{"created": "2024-01-02T03:04:05Z", "created_by": f"layer {i}"}
                              for i in range(len(layers))]}
        if variant:
            config["variant"] = variant
        self.config = json.dumps(config, sort_keys=True).encode()
        self.blobs[sha(self.config)] = self.config
        cdesc = desc(OCI_CONFIG, self.config)
        if config_size is not None:
            cdesc["size"] = config_size
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc, "layers": ldescs}
        if pad:
            manifest["annotations"] = {"pad": "x" * pad}
        self.manifest = json.dumps(manifest, sort_keys=True).encode()
        self.digest = sha(self.manifest)
        self.id = sha(self.config)
        self.layer_descs = ldescs
        self.arch, self.variant = arch, variant

    def platform_desc(self):
        p = {"architecture": self.arch, "os": "linux"}
        if self.variant:
            p["variant"] = self.variant
        return desc(OCI_MANIFEST, self.manifest, platform=p)


def index_of(*imgs):
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                       "manifests": [i.platform_desc() for i in imgs]}, sort_keys=True).encode()


def push_image(addr, repo, tag, img):
    """Push an Img to a registry with berth's own registry client (plain HTTP: a loopback host)."""
    from berth.remotes import RegistryClient
    with RegistryClient(None) as c:
        name = f"{addr}/{repo}"
        for digest, data in img.blobs.items():
            c.push_blob(name, {"mediaType": "application/octet-stream", "digest": digest, "size": len(data)},
                        io.BytesIO(data))
        c.push_manifest(name, tag, OCI_MANIFEST, img.manifest)


def write_oci_layout(path, blobs, index_desc, ref="latest"):
    os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    for digest, data in blobs.items():
        with open(os.path.join(path, "blobs", "sha256", digest[7:]), "wb") as f:
            f.write(data)
    entry = dict(index_desc, annotations={"org.opencontainers.image.ref.name": ref})
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [entry]}, f)


# --- helpers: looking into a daemon's root ------------------------------------------------------

def snapshot_dirs(root):
    """{snapshot key: its fs dir} of every snapshot of a daemon."""
    out = {}
    for meta in glob.glob(os.path.join(root, "snapshots", "*", "snapshots", "*", "meta.json")):
        with open(meta) as f:
            out[json.load(f)["key"]] = os.path.join(os.path.dirname(meta), "fs")
    return out


def chain_ids(diff_ids):
    out = []
    for d in diff_ids:
        out.append(d if not out else sha(f"{out[-1]} {d}".encode()))
    return out


def inspect(d, image):
    p = d.berth("inspect", image)
    assert p.returncode == 0, p.err
    return json.loads(p.out)[0]


def rootfs_read(d, image, path):
    """What ``path`` is in the image's unpacked rootfs, looking through its committed snapshots
    top layer first: bytes (a file), "-> target" (a symlink), "dir", or None (absent/whited out)."""
    layers = inspect(d, image)["RootFS"]["Layers"]
    dirs = snapshot_dirs(d.root)
    for chain in reversed(chain_ids(layers)):
        assert chain in dirs, f"no snapshot for chain {chain} of {image}"
        p = os.path.join(dirs[chain], path.lstrip("/"))
        if os.path.islink(p):
            return "-> " + os.readlink(p)
        if os.path.lexists(p):
            st = os.lstat(p)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return None  # an overlay whiteout
            if stat.S_ISDIR(st.st_mode):
                return "dir"
            with open(p, "rb") as f:
                return f.read()
    return None


def names(d):
    p = d.berth("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert p.returncode == 0, p.err
    return [line for line in p.out.splitlines() if line]


def blob_files(d):
    return sorted(os.listdir(os.path.join(d.root, "content", "blobs", "sha256"))) \
        if os.path.isdir(os.path.join(d.root, "content", "blobs", "sha256")) else []


def ingests(d):
    p = os.path.join(d.root, "content", "ingest")
    return sorted(os.listdir(p)) if os.path.isdir(p) else []


def assert_one_line_error(p, *words):
    """pull, push and login's errors: status 1, as the docker CLI's (checked against it)."""
    assert p.returncode == 1, (p.returncode, p.out, p.err)
    lines = [line for line in p.err.splitlines() if line.strip()]
    assert len(lines) == 1, p.err
    assert "Traceback" not in p.err
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])
    return lines[0]


def read_json(path):
    with open(path) as f:
        return json.load(f)


def pushed_digest(out):
    m = re.search(r"digest: (sha256:[0-9a-f]{64}) size: \d+", out)
    assert m, out
    return m.group(1)


def fixture_config_digest(path):
    """The image ID (config digest) of a docker-archive or OCI-layout fixture tar."""
    with tarfile.open(path) as tf:
        members = tf.getnames()
        if "manifest.json" in members:
            m = json.load(tf.extractfile("manifest.json"))
            return sha(tf.extractfile(m[0]["Config"]).read())
        index = json.load(tf.extractfile("index.json"))
        d = index["manifests"][0]["digest"]
        doc = json.load(tf.extractfile("blobs/sha256/" + d[7:]))
        while "manifests" in doc:
            d = doc["manifests"][0]["digest"]
            doc = json.load(tf.extractfile("blobs/sha256/" + d[7:]))
        return doc["config"]["digest"]


@pytest.fixture
def daemons(tmp_path):
    """Make extra daemons (with config) that are all cleaned up at the end."""
    made = []

    def make(name, extra_config="", start=True):
        d = Daemon(tmp_path / name, extra_config=extra_config)
        made.append(d)
        return d.start() if start else d
    yield make
    for d in made:
        d.cleanup()


# --- a TCP proxy that records, throttles and cuts ---------------------------------------------------

class Proxy:
    """127.0.0.1:<port> -> 127.0.0.1:<upstream>. Records what clients send (to find request lines
    and headers), counts the bytes sent back, can slow them down (``delay`` seconds per 16 KiB) and
    cut a connection once it carried ``cut_after`` bytes back, after which it refuses everything
    (closes each new connection at once) until ``dead`` is cleared."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.sent_up = []
        self.down_bytes = 0
        self.delay = 0.0
        self.cut_after = None
        self.dead = False
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self):
        with self.lock:
            self.sent_up, self.down_bytes = [], 0

    def close(self):
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            _kill(s)

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            if self.dead:
                _kill(c)
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                _kill(c)
                continue
            buf = bytearray()
            with self.lock:
                self.sent_up.append(buf)
                self.socks += [c, u]
            threading.Thread(target=self._up, args=(c, u, buf), daemon=True).start()
            threading.Thread(target=self._down, args=(u, c), daemon=True).start()

    def _up(self, c, u, buf):
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    u.shutdown(socket.SHUT_WR)
                    return
                with self.lock:
                    buf += data
                u.sendall(data)
        except OSError:
            _kill(c)
            _kill(u)

    def _down(self, u, c):
        carried = 0
        try:
            while True:
                data = u.recv(16384)
                if not data:
                    break
                if self.delay:
                    time.sleep(self.delay)
                cut = self.cut_after is not None and carried + len(data) > self.cut_after
                if cut:
                    data = data[:self.cut_after - carried]
                c.sendall(data)
                carried += len(data)
                with self.lock:
                    self.down_bytes += len(data)
                if cut:
                    self.dead = True
                    break
        except OSError:
            pass
        _kill(c)
        _kill(u)

    def requests(self):
        """[(method, target, {header: value})] of every request clients sent."""
        out = []
        with self.lock:
            bufs = [bytes(b) for b in self.sent_up]
        for b in bufs:
            for m in re.finditer(rb"(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP/1\.[01]\r\n((?:[^\r\n]+\r\n)*)\r\n", b):
                headers = {}
                for line in m.group(3).decode("latin-1").split("\r\n"):
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                out.append((m.group(1).decode(), m.group(2).decode("latin-1"), headers))
        return out


def _kill(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


# --- a tiny fake registry for content a real one would not serve ------------------------------------

class FakeRegistry:
    """A read-only OCI distribution endpoint over http.server: manifests[(repo, ref)] and blobs[digest]
    are served as they are, whatever they hold."""

    def __init__(self):
        self.manifests = {}
        self.blobs = {}
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _answer(self, body):
                path = self.path.split("?", 1)[0]
                if path in ("/v2", "/v2/"):
                    return self._send(200, b"{}", "application/json")
                m = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/([^/]+)", path)
                if m and m.group(2) == "manifests" and (m.group(1), m.group(3)) in fake.manifests:
                    data, media = fake.manifests[(m.group(1), m.group(3))]
                    return self._send(200, data, media, body, {"Docker-Content-Digest": sha(data)})
                if m and m.group(2) == "blobs" and m.group(3) in fake.blobs:
                    return self._send(200, fake.blobs[m.group(3)], "application/octet-stream", body)
                return self._send(404, b'{"errors":[{"code":"NOT_FOUND","message":"not found"}]}',
                                  "application/json", body)

            def _send(self, code, data, media, body=True, headers=None):
                self.send_response(code)
                self.send_header("Content-Type", media)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_GET(self):
                self._answer(True)

            def do_HEAD(self):
                self._answer(False)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, repo, tag, img, blobs=None):
        self.blobs.update(img.blobs if blobs is None else blobs)
        self.manifests[(repo, tag)] = self.manifests[(repo, img.digest)] = (img.manifest, OCI_MANIFEST)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --- push and pull with berth ------------------------------------------------------------------

def test_push_pull_roundtrip_monolithic_skip_and_mount(registry, daemons):
    src, dst = daemons("src"), daemons("dst")
    proxy = Proxy(registry.port)
    try:
        assert src.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar")).returncode == 0
        image_id = inspect(src, "busybox-layers:1")["Id"]
        ref = f"{proxy.addr}/rt/bb:1"
        assert src.berth("tag", "busybox-layers:1", ref).returncode == 0
        p = src.berth("push", ref)
        assert p.returncode == 0, p.err
        assert p.out.count("Pushed") == 2, p.out
        digest = pushed_digest(p.out)
        reqs = proxy.requests()
        # monolithic: one PUT with the whole blob per upload, no PATCH chunks
        puts = [(t, h) for m, t, h in reqs if m == "PUT" and "/blobs/uploads/" in t]
        assert len(puts) == 3 and all("digest=sha256" in t and int(h["content-length"]) > 0 for t, h in puts), reqs
        assert not [r for r in reqs if r[0] == "PATCH"], reqs

        # pushing again: every blob is already there
        proxy.reset()
        p = src.berth("push", ref)
        assert p.returncode == 0, p.err
        assert p.out.count("Layer already exists") == 2, p.out
        assert not [r for r in proxy.requests() if r[0] in ("PUT", "PATCH", "POST") and "/blobs/" in r[1]]
        assert pushed_digest(p.out) == digest

        # another repository of the same registry: the blobs are mounted, not uploaded
        proxy.reset()
        other = f"{proxy.addr}/rt2/copy:2"
        assert src.berth("tag", "busybox-layers:1", other).returncode == 0
        p = src.berth("push", other)
        assert p.returncode == 0, p.err
        assert p.out.count("Mounted from rt/bb") == 2, p.out
        mounts = [t for m, t, h in proxy.requests() if m == "POST" and "mount=" in t]
        assert len(mounts) >= 2 and all("from=rt%2Fbb" in t or "from=rt/bb" in t for t in mounts), mounts
        assert not [r for r in proxy.requests() if r[0] == "PUT" and "/blobs/" in r[1]]
    finally:
        proxy.close()

    # a second daemon pulls both names back: same image ID, and the rootfs is there
    for name in (f"{registry.addr}/rt/bb:1", f"{registry.addr}/rt2/copy:2"):
        p = dst.berth("pull", name)
        assert p.returncode == 0, p.err
        assert f"Digest: {digest}" in p.out
        assert inspect(dst, name)["Id"] == image_id
    img = f"{registry.addr}/rt/bb:1"
    assert rootfs_read(dst, img, "/data/sub/file") == b"layered\n"
    assert rootfs_read(dst, img, "/data/link") == "-> /data/sub/file"
    assert rootfs_read(dst, img, "/bin/vi") is None  # deleted by the second layer
    busybox = rootfs_read(dst, img, "/bin/busybox")
    assert isinstance(busybox, bytes) and busybox[:4] == b"\x7fELF"
    assert rootfs_read(dst, img, "/bin/sh") == "-> busybox"
    busybox_path = os.path.join(snapshot_dirs(dst.root)[inspect(dst, img)["RootFS"]["Layers"][0]], "bin", "busybox")
    assert os.stat(busybox_path).st_mode & 0o111  # runnable: executable bits kept
    # the image saved back from the second daemon holds the same layers
    out = os.path.join(dst.base, "saved.tar")
    assert dst.berth("save", "-o", out, img).returncode == 0
    assert fixture_config_digest(out) == image_id


# --- skopeo both ways -----------------------------------------------------------------------------

def test_skopeo_pushed_images_pull_with_berth(registry, daemons):
    d = daemons("d")
    skopeo("copy", "--dest-tls-verify=false", "docker-archive:" + os.path.join(DATA, "hello-world.docker.tar"),
           f"docker://{registry.addr}/sk/hello:1")
    skopeo("copy", "--dest-tls-verify=false", "oci-archive:" + os.path.join(DATA, "busybox-layers.oci.tar"),
           f"docker://{registry.addr}/sk/bb:1")
    hello = f"{registry.addr}/sk/hello:1"
    p = d.berth("pull", hello)
    assert p.returncode == 0, p.err
    assert inspect(d, hello)["Id"] == fixture_config_digest(os.path.join(DATA, "hello-world.docker.tar"))
    binary = rootfs_read(d, hello, "/hello")
    assert isinstance(binary, bytes) and b"Hello from the hello-world fixture!" in binary
    bb = f"{registry.addr}/sk/bb:1"
    p = d.berth("pull", "-q", bb)
    assert p.returncode == 0, p.err
    assert p.out.strip() == bb
    assert inspect(d, bb)["Id"] == fixture_config_digest(os.path.join(DATA, "busybox-layers.oci.tar"))
    assert rootfs_read(d, bb, "/data/sub/file") == b"layered\n"
    assert rootfs_read(d, bb, "/bin/vi") is None


def test_berth_pushed_image_read_and_copied_by_skopeo(registry, daemons, tmp_path):
    d = daemons("d")
    assert d.berth("load", "-i", os.path.join(DATA, "busybox-layers.docker.tar")).returncode == 0
    ref = f"{registry.addr}/bs/bb:1"
    assert d.berth("tag", "busybox-layers:1", ref).returncode == 0
    p = d.berth("push", ref)
    assert p.returncode == 0, p.err
    digest = pushed_digest(p.out)
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}").out)
    assert info["Digest"] == digest
    assert info["Architecture"] == "amd64" and info["Env"] and "FIXTURE=busybox-layers" in info["Env"]
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}").stdout
    assert sha(raw) == digest
    manifest = json.loads(raw)
    assert info["Layers"] == [layer["digest"] for layer in manifest["layers"]]
    # as dockerd pushes a loaded image: its plain layers gzipped, in a Docker v2 manifest; each
    # one's content is the layer the image names (its diff ID), and the image is the same after
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/vnd.docker.image.rootfs.diff.tar.gzip"] * 2
    local = inspect(d, ref)
    import urllib.request
    for layer, diff_id in zip(manifest["layers"], local["RootFS"]["Layers"]):
        with urllib.request.urlopen(f"http://{registry.addr}/v2/bs/bb/blobs/{layer['digest']}", timeout=10) as f:
            assert sha(gzip.decompress(f.read())) == diff_id
    assert local["RepoDigests"] == [f"{registry.addr}/bs/bb@{digest}"]
    assert local["Id"] == fixture_config_digest(os.path.join(DATA, "busybox-layers.docker.tar"))
    assert d.berth("run", "--rm", "--network", "none", ref, "cat", "/data/sub/file").out == "layered\n"
    config = skopeo("inspect", "--config", "--raw", "--tls-verify=false", f"docker://{ref}").stdout
    assert sha(config) == inspect(d, ref)["Id"]
    out = tmp_path / "oci"
    skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{out}:bb")
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "bb"
    blobs = out / "blobs" / "sha256"
    for f in blobs.iterdir():
        assert sha(f.read_bytes()) == "sha256:" + f.name
    copied = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_bytes())
    # skopeo turns the Docker manifest and config into OCI ones (as from dockerd's push): the
    # same layers and history under another config digest
    copied_config = json.loads((blobs / copied["config"]["digest"][7:]).read_bytes())
    assert copied_config["rootfs"]["diff_ids"] == local["RootFS"]["Layers"]
    assert len(copied["layers"]) == 2


# --- compression and platforms --------------------------------------------------------------------

def test_uncompressed_gzip_and_zstd_layers(registry, daemons):
    d = daemons("d")
    layers = [(make_tar([("c", ("dir",)), (f"c/{how}.txt", f"{how} layer\n".encode()),
                         ("c/top.txt", f"from {how}\n".encode())]), how) for how in ("none", "gzip", "zstd")]
    stacked = Img(layers)
    push_image(registry.addr, "comp/stacked", "1", stacked)
    ref = f"{registry.addr}/comp/stacked:1"
    p = d.berth("pull", ref)
    assert p.returncode == 0, p.err
    assert inspect(d, ref)["Id"] == stacked.id
    for how in ("none", "gzip", "zstd"):
        assert rootfs_read(d, ref, f"/c/{how}.txt") == f"{how} layer\n".encode()
    assert rootfs_read(d, ref, "/c/top.txt") == b"from zstd\n"
    # and each compression alone, as the only layer of an image
    for how in ("none", "gzip", "zstd"):
        one = Img([(make_tar([(f"only-{how}", f"{how}!".encode())]), how)])
        push_image(registry.addr, f"comp/{how}", "1", one)
        r = f"{registry.addr}/comp/{how}:1"
        p = d.berth("pull", "-q", r)
        assert p.returncode == 0, p.err
        assert inspect(d, r)["Id"] == one.id
        assert rootfs_read(d, r, f"/only-{how}") == f"{how}!".encode()


def test_chunked_upload_then_pull(registry, daemons):
    """berth.remotes' chunked upload (PATCH + PUT) against the real registry, pulled back by berthd."""
    from berth.remotes import RegistryClient
    d = daemons("d")
    payload = os.urandom((5 << 20) // 2)
    img = Img([(make_tar([("chunked.bin", payload)]), "gzip")])
    proxy = Proxy(registry.port)
    try:
        with RegistryClient(None, chunk_size=1 << 20) as c:
            name = f"{proxy.addr}/chunk/img"
            for digest, data in img.blobs.items():
                assert c.push_blob(name, {"mediaType": "x", "digest": digest, "size": len(data)},
                                   io.BytesIO(data)) == "uploaded"
            c.push_manifest(name, "1", OCI_MANIFEST, img.manifest)
        patches = [t for m, t, h in proxy.requests() if m == "PATCH"]
        assert len(patches) >= 3, proxy.requests()
    finally:
        proxy.close()
    ref = f"{registry.addr}/chunk/img:1"
    p = d.berth("pull", "-q", ref)
    assert p.returncode == 0, p.err
    assert inspect(d, ref)["Id"] == img.id
    assert rootfs_read(d, ref, "/chunked.bin") == payload


@pytest.mark.skipif(HOST_ARCH is None, reason="the test knows amd64 and arm64 hosts")
def test_platform_selection_from_an_index(registry, daemons, tmp_path):
    d = daemons("d")
    amd = Img([(make_tar([("plat.txt", b"amd64\n"), ("amd64-only", b"x")]), "gzip")], arch="amd64")
    arm = Img([(make_tar([("plat.txt", b"arm64\n"), ("arm64-only", b"y")]), "gzip")], arch="arm64", variant="v8")
    index = index_of(amd, arm)
    blobs = dict(amd.blobs, **arm.blobs)
    blobs[amd.digest], blobs[arm.digest], blobs[sha(index)] = amd.manifest, arm.manifest, index
    layout = str(tmp_path / "layout")
    write_oci_layout(layout, blobs, desc(OCI_INDEX, index))
    ref = f"{registry.addr}/plat/multi:1"
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:latest", f"docker://{ref}")
    host, other = (amd, arm) if HOST_ARCH == "amd64" else (arm, amd)

    p = d.berth("pull", ref)
    assert p.returncode == 0, p.err
    assert f"Digest: {sha(index)}" in p.out
    info = inspect(d, ref)
    assert info["Id"] == host.id and info["Architecture"] == host.arch
    assert rootfs_read(d, ref, "/plat.txt") == f"{host.arch}\n".encode()

    assert d.berth("rmi", ref).returncode == 0
    want = "linux/arm64" if other is arm else "linux/amd64"
    p = d.berth("pull", "--platform", want, ref)
    assert p.returncode == 0, p.err
    info = inspect(d, ref)
    assert info["Id"] == other.id and info["Architecture"] == other.arch, info
    assert rootfs_read(d, ref, "/plat.txt") == f"{other.arch}\n".encode()
    assert rootfs_read(d, ref, f"/{host.arch}-only") is None
    assert [n for n in names(d)] == [f"{registry.addr}/plat/multi:1"]

    p = d.berth("pull", "--platform", "linux/s390x", f"{registry.addr}/plat/multi:1")
    assert_one_line_error(p, "linux/s390x")
    p = d.berth("pull", "--platform", "linux/s390x", f"{registry.addr}/plat/multi@{sha(index)}")
    assert_one_line_error(p, "linux/s390x")
    assert names(d) == [f"{registry.addr}/plat/multi:1"]


# --- mirrors --------------------------------------------------------------------------------------

def _mirror_image(registry, tag, text):
    img = Img([(make_tar([("mirror.txt", text)]), "gzip")])
    push_image(registry.addr, "library/mirtest", tag, img)
    return img


def _closed_port():
    return free_port()  # bound and released: nothing listens there


def test_hosts_toml_mirror_written_after_start_and_fallthrough(registry, daemons):
    d = daemons("d")  # started before any hosts.toml exists
    img = _mirror_image(registry, "1", b"from the mirror\n")
    mirror = Proxy(registry.port)  # the mirror: the same registry, seen through a recording proxy
    hosts = os.path.join(d.certs_d, "docker.io")
    os.makedirs(hosts)
    with open(os.path.join(hosts, "hosts.toml"), "w") as f:
        f.write(f'server = "http://{registry.addr}"\n\n'
                f'[host."http://{mirror.addr}/v2"]\n  capabilities = ["pull", "resolve"]\n  override_path = true\n')
    try:
        p = d.berth("pull", "docker.io/library/mirtest:1")
        reqs = mirror.requests()
    finally:
        mirror.close()
    assert p.returncode == 0, p.err
    # every request went to the mirror, with containerd's ?ns=docker.io
    assert [t for m, t, h in reqs if t.startswith("/v2/library/mirtest/manifests/1?ns=docker.io")], reqs
    assert [t for m, t, h in reqs if t.startswith(f"/v2/library/mirtest/blobs/{img.layer_descs[0]['digest']}")]
    assert inspect(d, "mirtest:1")["Id"] == img.id
    assert rootfs_read(d, "mirtest:1", "/mirror.txt") == b"from the mirror\n"
    assert names(d) == ["mirtest:1"]

    # the first mirror is down, and so is the server: the second mirror serves the pull
    img2 = _mirror_image(registry, "2", b"second mirror\n")
    down1, down2 = _closed_port(), _closed_port()
    with open(os.path.join(hosts, "hosts.toml"), "w") as f:
        f.write(f'server = "http://127.0.0.1:{down2}"\n\n'
                f'[host."http://127.0.0.1:{down1}"]\n  capabilities = ["pull", "resolve"]\n\n'
                f'[host."http://{registry.addr}"]\n  capabilities = ["pull", "resolve"]\n')
    p = d.berth("pull", "mirtest:2")
    assert p.returncode == 0, p.err
    assert inspect(d, "mirtest:2")["Id"] == img2.id
    assert rootfs_read(d, "mirtest:2", "/mirror.txt") == b"second mirror\n"

    # nothing that serves: a one-line error naming the last endpoint's failure
    with open(os.path.join(hosts, "hosts.toml"), "w") as f:
        f.write(f'server = "http://127.0.0.1:{down2}"\n\n[host."http://127.0.0.1:{down1}"]\n')
    p = d.berth("pull", "mirtest:3")
    assert_one_line_error(p, "connect")


def _pull_through_berthd_toml_mirrors(registry, daemons, tag, text, extra_config):
    """A docker.io pull served by the mirrors extra_config names; `docker info` lists them."""
    img = _mirror_image(registry, tag, text)
    d = daemons("d", extra_config=extra_config, start=False)
    # keep docker.io's own server off the internet: _default points it at a closed port
    os.makedirs(os.path.join(d.certs_d, "_default"))
    with open(os.path.join(d.certs_d, "_default", "hosts.toml"), "w") as f:
        f.write(f'server = "http://127.0.0.1:{_closed_port()}"\n')
    d.start()
    p = d.berth("info", "--format", "{{json .RegistryConfig.Mirrors}}")
    assert p.returncode == 0 and json.loads(p.out) == [f"http://{registry.addr}"], (p.out, p.err)
    p = d.berth("pull", f"library/mirtest:{tag}")
    assert p.returncode == 0, p.err
    assert inspect(d, f"mirtest:{tag}")["Id"] == img.id
    assert rootfs_read(d, f"mirtest:{tag}", "/mirror.txt") == text


def test_registry_mirrors_in_berthd_toml(registry, daemons):
    _pull_through_berthd_toml_mirrors(registry, daemons, "daemonjson", b"daemon.json style\n",
                                      f'registry_mirrors = ["http://{registry.addr}"]\n')


def test_registry_mirrors_in_docker_daemon_json(registry, daemons, tmp_path):
    """The brief's docker set-up: /etc/docker/daemon.json's registry-mirrors (here a file of the
    test's own, named by berthd.toml's daemon_json, as `berthd --config-file` names it)."""
    dj = tmp_path / "daemon.json"
    dj.write_text(json.dumps({"registry-mirrors": [f"http://{registry.addr}"]}))
    _pull_through_berthd_toml_mirrors(registry, daemons, "dockerjson", b"docker's daemon.json\n",
                                      f'daemon_json = "{dj}"\n')


def test_containerd_cri_mirrors_in_berthd_toml(registry, daemons):
    """containerd's form of registry mirrors ([registry.mirrors."docker.io"] endpoint = [...]),
    for the docker side too: pulls go through them, `docker info` lists them."""
    _pull_through_berthd_toml_mirrors(registry, daemons, "cri-form", b"containerd style\n",
                                      f'[registry.mirrors."docker.io"]\nendpoint = ["http://{registry.addr}"]\n')


# --- interrupted and killed pulls ---------------------------------------------------------------------

def _big_image(registry, repo):
    payload = os.urandom(4 << 20)
    img = Img([(make_tar([("big.bin", payload), ("small.txt", b"small\n")]), "none")])
    push_image(registry.addr, repo, "1", img)
    return img, payload


def test_interrupted_pull_resumes_with_a_range_request(registry, daemons):
    d = daemons("d")
    img, payload = _big_image(registry, "big/resume")
    layer = img.layer_descs[0]
    proxy = Proxy(registry.port)
    try:
        proxy.delay = 0.002
        proxy.cut_after = (3 << 20) // 2  # 1.5 MiB of the 4 MiB layer, then the proxy plays dead
        ref = f"{proxy.addr}/big/resume:1"
        p = d.berth("pull", ref)
        assert_one_line_error(p)
        assert names(d) == []
        assert ingests(d), "the interrupted download should be kept to resume"

        proxy.dead, proxy.cut_after, proxy.delay = False, None, 0.0
        proxy.reset()
        p = d.berth("pull", ref)
        assert p.returncode == 0, p.err
        ranges = [h.get("range") for m, t, h in proxy.requests() if m == "GET" and layer["digest"] in t]
        assert ranges and all(r and re.fullmatch(r"bytes=[1-9][0-9]*-", r) for r in ranges), proxy.requests()
        assert proxy.down_bytes < layer["size"], (proxy.down_bytes, layer["size"])
        assert inspect(d, ref)["Id"] == img.id
        assert rootfs_read(d, ref, "/big.bin") == payload
        assert ingests(d) == []
    finally:
        proxy.close()


def test_berthd_killed_mid_pull_leaves_nothing(registry, daemons):
    d = daemons("d")
    img, _ = _big_image(registry, "big/kill")
    proxy = Proxy(registry.port)
    cli = None
    try:
        proxy.delay = 0.02  # 4 MiB in ~5 s
        ref = f"{proxy.addr}/big/kill:1"
        cli = subprocess.Popen([BERTH, "-H", d.host, "pull", ref], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=d.env())
        wait_for(lambda: proxy.down_bytes > (3 << 20) // 2, 30, "the layer download to be under way")
        d.kill9()
        cli.wait(20)
        left = blob_files(d) + ingests(d)
        assert left, "a killed pull should have left something to collect"
        d.start()
        assert names(d) == []
        assert blob_files(d) == []
        assert ingests(d) == []
        assert snapshot_dirs(d.root) == {}
        # and the next pull works from scratch
        proxy.delay = 0.0
        p = d.berth("pull", ref)
        assert p.returncode == 0, p.err
        assert inspect(d, ref)["Id"] == img.id
    finally:
        if cli is not None and cli.poll() is None:
            cli.kill()
            cli.wait()
        proxy.close()


# --- bad and hostile content ---------------------------------------------------------------------

@pytest.fixture
def fake_registry():
    f = FakeRegistry()
    yield f
    f.close()


def test_bad_content_fails_cleanly(daemons, fake_registry, tmp_path):
    d = daemons("d")
    reg = fake_registry

    good_tar = make_tar([("file", b"good content\n")])
    mismatch = Img([(good_tar, "none")])
    forged = {k: v for k, v in mismatch.blobs.items()}
    forged[mismatch.layer_descs[0]["digest"]] = good_tar.replace(b"good", b"evil")  # same size, other bytes
    reg.add("bad/digest", "1", mismatch, blobs=forged)
    reg.add("bad/hugemanifest", "1", Img([(make_tar([("m", b"1")]), "none")], pad=(4 << 20) + 100))
    reg.add("bad/hugeconfig", "1", Img([(make_tar([("c", b"2")]), "none")], config_size=21 << 20))
    reg.add("bad/mediatype", "1", Img([(make_tar([("t", b"3")]), "none")],
                                      layer_media="application/vnd.example.unknown.v1"))

    cases = [("bad/digest", ["digest"]), ("bad/hugemanifest", ["manifest"]), ("bad/hugeconfig", ["config"]),
             ("bad/mediatype", ["media type"])]
    for repo, words in cases:
        p = d.berth("pull", f"{reg.addr}/{repo}:1")
        assert_one_line_error(p, *words)
        assert names(d) == [], repo
    # nothing of the bad images is left behind
    assert snapshot_dirs(d.root) == {}
    assert ingests(d) == []
    assert blob_files(d) == []


def test_hostile_layers_are_refused_or_contained(daemons, fake_registry, tmp_path):
    d = daemons("d")
    reg = fake_registry
    outside = tmp_path / "outside"
    outside.mkdir()
    sentinel = outside / "sentinel"
    sentinel.write_text("untouched\n")
    climbs = "../" * 40

    good = make_tar([("ok", ("dir",)), ("ok/file", b"fine\n")])
    refused = {
        "evil/dotdot": [make_tar([("../evil", b"escaped\n")])],
        "evil/deepdotdot": [make_tar([(f"a/{climbs}{str(outside).lstrip('/')}/dotdot", b"escaped\n")])],
        "evil/hardlink": [make_tar([("passwd", ("hardlink", "/etc/passwd"))])],
        "evil/hardlinkout": [make_tar([("s", ("hardlink", f"{climbs}{str(sentinel).lstrip('/')}"))])],
        # a good first layer, then a hostile one: the good layer's snapshot goes too
        "evil/second": [good, make_tar([("ok/../../evil", b"escaped\n")])],
    }
    for repo, tars in refused.items():
        reg.add(repo, "1", Img([(t, "gzip") for t in tars]))
        p = d.berth("pull", f"{reg.addr}/{repo}:1")
        assert_one_line_error(p, "layer")
        assert names(d) == [], repo
    assert snapshot_dirs(d.root) == {}
    assert blob_files(d) == [] and ingests(d) == []

    # symlinks that point out of the root are resolved inside it (contained, like containerd)
    contained = make_tar([("esc", ("symlink", str(outside))), ("esc/pwned", b"contained\n"),
                          ("up", ("symlink", climbs + str(outside).lstrip("/"))), ("up/pwned2", b"contained\n"),
                          ("sentinel-link", ("symlink", str(sentinel))), ("sentinel-link", b"replaced link\n")])
    reg.add("evil/symlinks", "1", Img([(contained, "gzip")]))
    ref = f"{reg.addr}/evil/symlinks:1"
    p = d.berth("pull", ref)
    if p.returncode == 0:
        rel = str(outside).lstrip("/")
        assert rootfs_read(d, ref, f"/{rel}/pwned") == b"contained\n"
        assert rootfs_read(d, ref, f"/{rel}/pwned2") == b"contained\n"
        assert rootfs_read(d, ref, "/sentinel-link") == b"replaced link\n"
    else:
        assert_one_line_error(p)
        assert names(d) == []

    # nothing got out: the sentinel directory is as it was, and nothing landed next to the snapshots
    assert sorted(os.listdir(outside)) == ["sentinel"]
    assert sentinel.read_text() == "untouched\n"
    for root in glob.glob(os.path.join(d.root, "snapshots", "*", "snapshots")):
        assert not os.path.exists(os.path.join(root, "evil"))
    assert not os.path.exists(os.path.join(d.root, "evil"))


def test_invalid_reference_fails_before_any_io(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), DOCKER_CONFIG=str(tmp_path / "dc"))
    env.pop("DOCKER_HOST", None)
    env.pop("BERTH_HOST", None)
    nowhere = f"unix://{tmp_path}/no-daemon.sock"
    # (as in docker, "UPPER/case" is a valid reference: an upper-case first component can only be a
    # registry host; an upper-case repository name is what is invalid)
    for bad in ("a:b:c", "Busybox", "library/UPPER:1", "docker.io/upper/CASE", "foo@sha256:123", "x/../y", ""):
        p = subprocess.run([BERTH, "-H", nowhere, "pull", bad], capture_output=True, env=env, timeout=30,
                           check=False)
        err = p.stderr.decode()
        lines = [line for line in err.splitlines() if line.strip()]
        assert p.returncode == 1, (bad, p.returncode, err)  # as docker's "invalid reference format"
        assert len(lines) == 1 and "Traceback" not in err, err
        assert "connect" not in lines[0] and "no-daemon" not in lines[0], lines[0]
        assert "reference" in lines[0] or "invalid" in lines[0], lines[0]
    assert not os.path.exists(tmp_path / "no-daemon.sock")


# --- login against a registry with TLS and htpasswd ------------------------------------------------------

def _htpasswd_line(user, password):
    if shutil.which("htpasswd"):
        p = subprocess.run(["htpasswd", "-nbB", user, password], capture_output=True, check=True)
        return p.stdout.decode().strip()
    try:
        import bcrypt
    except ImportError:
        pytest.skip("neither htpasswd nor the bcrypt module is available")
    return f"{user}:" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()


def test_login_pull_push_logout_with_tls_and_htpasswd(daemons, tmp_path):
    line = _htpasswd_line("alice", "s3cret")
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem"), "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    (tls / "htpasswd").write_text(line + "\n")
    reg = Registry(tmp_path / "reg", extra=(
        f"  tls:\n    certificate: {tls / 'cert.pem'}\n    key: {tls / 'key.pem'}\n"
        f"auth:\n  htpasswd:\n    realm: berth-test\n    path: {tls / 'htpasswd'}\n")).start()
    try:
        d = daemons("d")
        config_json = os.path.join(d.docker_config, "config.json")
        p = d.berth("login", "-u", "alice", "--password-stdin", reg.addr, input=b"s3cret\n")
        assert_one_line_error(p)  # the registry's certificate is not trusted yet
        hostdir = os.path.join(d.certs_d, f"127.0.0.1_{reg.port}_")
        os.makedirs(hostdir)
        with open(os.path.join(hostdir, "hosts.toml"), "w") as f:
            f.write(f'server = "https://{reg.addr}"\nca = "{tls / "cert.pem"}"\n')
        assert d.berth("load", "-i", os.path.join(DATA, "hello-world.docker.tar")).returncode == 0
        ref = f"{reg.addr}/auth/hello:1"
        assert d.berth("tag", "hello-world:latest", ref).returncode == 0

        p = d.berth("push", ref)  # not logged in yet
        assert_one_line_error(p)

        p = d.berth("login", "-u", "alice", "--password-stdin", reg.addr, input=b"wrong\n")
        assert_one_line_error(p, "unauthorized")
        assert not os.path.exists(config_json) or reg.addr not in read_json(config_json).get("auths", {})

        p = d.berth("login", "-u", "alice", "--password-stdin", reg.addr, input=b"s3cret\n")
        assert p.returncode == 0, p.err
        assert "Login Succeeded" in p.out
        auths = read_json(config_json)["auths"]
        assert base64.b64decode(auths[reg.addr]["auth"]) == b"alice:s3cret"

        p = d.berth("push", ref)
        assert p.returncode == 0, p.err
        assert d.berth("rmi", ref).returncode == 0
        assert d.berth("rmi", "hello-world:latest").returncode == 0
        with open(os.path.join(hostdir, "hosts.toml"), "w") as f:  # the other way to trust it
            f.write(f'server = "https://{reg.addr}"\nskip_verify = true\n')
        p = d.berth("pull", ref)
        assert p.returncode == 0, p.err
        binary = rootfs_read(d, ref, "/hello")
        assert isinstance(binary, bytes) and b"Hello from the hello-world fixture!" in binary

        p = d.berth("logout", reg.addr)
        assert p.returncode == 0, p.err
        assert reg.addr not in read_json(config_json).get("auths", {})
        # a config.json that is a link (dotfiles) stays one: the file it points to is written,
        # its mode kept, as the docker CLI's
        kept = tmp_path / "dotfiles-docker.json"
        os.replace(config_json, kept)
        os.chmod(kept, 0o640)
        os.symlink(kept, config_json)
        p = d.berth("login", "-u", "alice", "--password-stdin", reg.addr, input=b"s3cret\n")
        assert p.returncode == 0 and os.path.islink(config_json), p.err
        assert reg.addr in read_json(str(kept))["auths"] and os.stat(kept).st_mode & 0o777 == 0o640
        assert d.berth("logout", reg.addr).returncode == 0 and reg.addr not in read_json(str(kept))["auths"]
        assert sorted(os.listdir(os.path.dirname(config_json))) == ["config.json"]
        assert d.berth("rmi", ref).returncode == 0
        p = d.berth("pull", ref)
        assert_one_line_error(p)
        assert names(d) == []
    finally:
        reg.stop()
