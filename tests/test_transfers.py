"""How many layers a pull downloads and a push uploads at once, and what a pull does when a
layer's download fails, seen from the registry's side (a proxy of the test's own in front of
Debian's docker-registry, tests/transfer_proxy.py) and from the client's (docker's progress
lines): berthd given a daemon.json, side by side with dockerd 20.10 given the same
(max-concurrent-downloads, max-concurrent-uploads, max-download-attempts)."""

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
import time

import pytest
from daemon_fixtures import Daemon, Registry, wait_for
from peer_dockerd import Dockerd
from test_registry_flow import Img, make_tar, push_image
from transfer_proxy import TransferProxy

LAYERS = 6


@pytest.fixture(scope="module")
def registries(tmp_path_factory):
    """Two registries behind proxies: pulls from the first, pushes to the second (a push to the
    one an image came from mounts its layers instead of uploading them)."""
    base = tmp_path_factory.mktemp("transfers")
    made = []
    try:
        for name in ("from", "to"):
            r = Registry(base / name).start()
            made.append((r, TransferProxy(r.addr, hold=0.4)))
        img = Img([(make_tar([(f"f{i}", f"layer {i} ".encode() * 200)]), "gzip") for i in range(LAYERS)])
        push_image(made[0][0].addr, "six", "v1", img)
        yield made[0][1], made[1][1], img
    finally:
        for r, p in made:
            p.close()
            r.stop()


@contextlib.contextmanager
def engine(kind, base, directives):
    """berthd (daemon_json) or dockerd 20.10 (--config-file) given the same directives."""
    if kind == "dockerd":
        if not shutil.which("dockerd"):
            pytest.skip("dockerd (Debian's docker.io) is not installed")
        short = tempfile.mkdtemp(prefix="dk-")  # (containerd's socket paths must be short)
        try:
            peer = Dockerd(short, extra=directives)
            try:
                yield peer
            finally:
                peer.stop()
        finally:
            shutil.rmtree(short, ignore_errors=True)
        return
    base.mkdir(parents=True, exist_ok=True)
    dj = base / "daemon.json"
    dj.write_text(json.dumps(directives))
    d = Daemon(base / "berthd", f'daemon_json = "{dj}"\ncri = false\n').start()
    try:
        yield d
    finally:
        d.cleanup()


def statuses(out, status):
    return sorted({line.split(":", 1)[0] for line in out.splitlines() if line.endswith(": " + status)})


def pull_and_push(e, src, dst, img):
    """Pull the six-layer image, push it elsewhere: (layers downloaded at once, layers said to
    wait in the pull, layers uploaded at once, layers said to wait in the push)."""
    src.reset()
    dst.reset()
    config = json.loads(img.manifest)["config"]["digest"]
    src.ignore = {config}  # (dockerd fetches the config beside the layers; berthd before them)
    pulled = e.docker("pull", f"{src.addr}/six:v1", check=True).out
    to = f"{dst.addr}/p{os.urandom(4).hex()}:v1"  # (a repository the layers are not in yet)
    e.docker("tag", f"{src.addr}/six:v1", to, check=True)
    pushed = e.docker("push", to, check=True).out
    e.docker("rmi", f"{src.addr}/six:v1", to, check=True)
    return src.most["download"], statuses(pulled, "Waiting"), dst.most["upload"], statuses(pushed, "Waiting")


@pytest.mark.parametrize("directives,want", [
    ({}, (3, 3, 5, 1)),  # dockerd's defaults: 3 downloads, 5 uploads at once
    ({"max-concurrent-downloads": 2, "max-concurrent-uploads": 2}, (2, 4, 2, 4)),
    ({"max-concurrent-downloads": 1, "max-concurrent-uploads": 1}, (1, 5, 1, 5)),
])
def test_layers_at_once_as_dockerd(registries, tmp_path, directives, want):
    """Before, berthd pulled 4 layers at once whatever it was told (its streamed first layer
    beside 3 others), pushed one at a time, and refused the directives."""
    src, dst, img = registries
    seen = {}
    for kind in ("berthd", "dockerd"):
        with engine(kind, tmp_path / kind, directives) as e:
            seen[kind] = pull_and_push(e, src, dst, img)
    got = seen["berthd"]
    assert (got[0], len(got[1]), got[2], len(got[3])) == want
    if "dockerd" in seen:  # (the layers dockerd says "Waiting" for depend on its timing: some of berthd's)
        theirs = seen["dockerd"]
        assert (theirs[0], theirs[2]) == (got[0], got[2])
        assert set(theirs[1]) <= set(got[1]) and set(theirs[3]) <= set(got[3]), (theirs, got)


def test_the_limits_change_at_a_reload(registries, tmp_path):
    """SIGHUP, as dockerd's: the next pull and push use the new limits; the reload event names them."""
    src, dst, img = registries
    with engine("berthd", tmp_path, {"max-concurrent-downloads": 2}) as d:
        assert pull_and_push(d, src, dst, img)[0] == 2
        (tmp_path / "daemon.json").write_text(json.dumps({"max-concurrent-downloads": 1, "max-concurrent-uploads": 1,
                                                          "max-download-attempts": 2}))
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in d.log(), 10, "the reload")
        assert pull_and_push(d, src, dst, img)[::2] == (1, 1)
        events = d.docker("events", "--since", "0", "--until", str(int(time.time())), "--filter", "type=daemon",
                          "--format", "{{json .Actor.Attributes}}", check=True).out.splitlines()
        attrs = json.loads(events[-1])
        assert (attrs["max-concurrent-downloads"], attrs["max-concurrent-uploads"], attrs["max-download-attempts"]) == \
            ("1", "1", "2")


class FailFor:
    """The proxy answers a layer's downloads with a 500 for `seconds` from its first one."""

    def __init__(self, proxy, digest, seconds):
        self.proxy, self.digest, self.seconds = proxy, digest, seconds
        proxy.fail[digest] = 1 << 30
        self.timer = None
        proxy.on_download = self._first

    def _first(self, digest):
        if digest == self.digest and self.timer is None:
            self.timer = threading.Timer(self.seconds, self.proxy.stop_failing, (self.digest,))
            self.timer.start()

    def stop(self):
        self.proxy.on_download = None
        self.proxy.stop_failing(self.digest)
        if self.timer is not None:
            self.timer.cancel()


def _pull_failing(e, src, layer, seconds):
    """The six-layer image pulled while the registry answers `layer`'s downloads with a 500 for
    `seconds` from the first."""
    src.reset()
    fail = FailFor(src, layer, seconds)
    try:
        return e.docker("pull", f"{src.addr}/six:v1")
    finally:
        fail.stop()


@pytest.mark.parametrize("kind", ["berthd", "dockerd"])
def test_a_failed_layer_download_is_tried_again(registries, tmp_path, kind):
    """A layer the registry answers with a 500: tried again after 5 s (said each second), and
    with max-download-attempts 1 that once only. Before, berthd's pull failed at the first 500."""
    src, _dst, img = registries
    layer = img.layer_descs[1]["digest"]
    with engine(kind, tmp_path, {"max-download-attempts": 1}) as e:
        # a registry that recovers within the first wait: the pull succeeds
        p = _pull_failing(e, src, layer, 2.0)
        assert p.returncode == 0, p.err
        retrying = [line.split(": ", 1)[1] for line in p.out.splitlines() if line.startswith(layer[7:19] + ": Retrying")]
        assert retrying == [f"Retrying in {n} second{'s' if n > 1 else ''}" for n in range(5, 0, -1)]
        assert e.docker("image", "inspect", f"{src.addr}/six:v1").returncode == 0
        e.docker("rmi", f"{src.addr}/six:v1", check=True)
        # one that does not: one try again, then the pull fails, the image not made
        p = _pull_failing(e, src, layer, 60)
        assert p.returncode == 1 and "500 Internal Server Error" in p.err
        assert "Retrying in 10 seconds" not in p.out and "Retrying in 1 second" in p.out
        assert e.docker("image", "inspect", f"{src.addr}/six:v1").returncode == 1


@pytest.mark.parametrize("kind", ["berthd", "dockerd"])
def test_a_failed_layer_upload_is_tried_again(registries, tmp_path, kind):
    """A registry that answers uploads with a 500 for a while: each layer's upload starts again
    after 5 s (said each second), and the push succeeds. Before, berthd's push failed at once."""
    src, dst, _img = registries
    with engine(kind, tmp_path, {}) as e:
        e.docker("pull", f"{src.addr}/six:v1", check=True)
        to = f"{dst.addr}/p{os.urandom(4).hex()}:v1"
        e.docker("tag", f"{src.addr}/six:v1", to, check=True)
        dst.failed_uploads = 0
        dst.fail_uploads_until = time.monotonic() + 2.0
        p = e.docker("push", to)
        assert p.returncode == 0, p.err
        assert dst.failed_uploads > 0
        lines = p.out.splitlines()
        ids = {line.split(":", 1)[0] for line in lines if line.endswith(": Preparing")}
        retried = {line.split(":", 1)[0] for line in lines if line.endswith(": Retrying in 5 seconds")}
        assert retried and retried <= ids and "Retrying in 10 seconds" not in p.out
        assert {line.split(":", 1)[0] for line in lines if line.endswith(": Pushed")} == ids
        e.docker("rmi", f"{src.addr}/six:v1", to, check=True)


def test_pulls_at_once_share_their_layers(registries, tmp_path):
    """Three pulls at once of two tags of one image (compose pulls its services at once; a node
    pulls images with a base in common): all succeed, each layer downloaded once, as dockerd's.
    Before, berthd's second pull failed: 'ingest "pull-sha256:..." is in use by another writer'."""
    src, _dst, img = registries
    from berth.remotes import RegistryClient
    with RegistryClient(None) as c:  # (the same manifest under a second tag)
        c.push_manifest(f"{src.addr}/six", "v2", "application/vnd.oci.image.manifest.v1+json", img.manifest)
    seen = {}
    for kind in ("berthd", "dockerd"):
        with engine(kind, tmp_path / kind, {}) as e:
            src.reset()
            results = []

            def pull(tag):
                results.append(e.docker("pull", f"{src.addr}/six:{tag}"))
            threads = [threading.Thread(target=pull, args=(tag,)) for tag in ("v1", "v2", "v1")]
            for t in threads:
                t.start()
                time.sleep(0.05)
            for t in threads:
                t.join()
            assert [p.returncode for p in results] == [0, 0, 0], [p.err for p in results]
            assert e.docker("image", "inspect", f"{src.addr}/six:v1", f"{src.addr}/six:v2").returncode == 0
            seen[kind] = sorted(n for d, n in src.downloads.items() if d in [x["digest"] for x in img.layer_descs])
            e.docker("rmi", f"{src.addr}/six:v1", f"{src.addr}/six:v2", check=True)
    assert seen["berthd"] == [1] * LAYERS
    assert seen.get("dockerd", seen["berthd"]) == seen["berthd"]


def test_a_push_mounts_the_layers_from_where_they_were_pushed_before_as_dockerd(registries, tmp_path):
    """A push to another repository of a registry where the layers were pushed before mounts them
    from there (dockerd's v2 metadata; containerd's distribution.source labels), even when no
    local name is in that repository any more: no layer uploaded again. Before, berthd mounted
    only from repositories the image was still named in, and uploaded each layer again."""
    src, dst, img = registries
    seen = {}
    for kind in ("berthd", "dockerd"):
        with engine(kind, tmp_path / kind, {}) as e:
            e.docker("pull", f"{src.addr}/six:v1", check=True)
            first, second = (f"m{os.urandom(4).hex()}" for _ in range(2))
            e.docker("tag", f"{src.addr}/six:v1", f"{dst.addr}/{first}:v1", check=True)
            e.docker("push", f"{dst.addr}/{first}:v1", check=True)
            e.docker("tag", f"{src.addr}/six:v1", f"{dst.addr}/{second}:v1", check=True)
            e.docker("rmi", f"{src.addr}/six:v1", f"{dst.addr}/{first}:v1", check=True)
            dst.reset()
            out = e.docker("push", f"{dst.addr}/{second}:v1", check=True).out
            # (the layers: dockerd uploads the config again, berthd mounts it too)
            seen[kind] = (len(statuses(out, f"Mounted from {first}")), dst.total["upload"] <= 1)
    assert seen["berthd"] == (LAYERS, True)
    if "dockerd" in seen:
        assert seen["dockerd"] == seen["berthd"]
