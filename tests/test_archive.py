"""berth.images.archive / imports / config: docker load, save and import, cross-checked with skopeo."""

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading

import pytest

from berth.content.store import ContentStore
from berth.errors import InvalidArgument, NotFound
from berth.images.archive import MAX_MANIFEST_SIZE, load_archive, save_archive
from berth.images.config import (
    chain_ids,
    history_rows,
    host_platform,
    image_id,
    match_platform,
    parse_platform,
)
from berth.images.imports import import_rootfs
from berth.oci import mediatypes as mt

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
HELLO_DOCKER = os.path.join(DATA, "hello-world.docker.tar")
HELLO_OCI = os.path.join(DATA, "hello-world.oci.tar")
BUSYBOX_DOCKER = os.path.join(DATA, "busybox-layers.docker.tar")
BUSYBOX_OCI = os.path.join(DATA, "busybox-layers.oci.tar")

HELLO = "docker.io/library/hello-world:latest"
BUSYBOX = "docker.io/library/busybox-layers:1"
BUSYBOX_DIFF_IDS = [
    "sha256:036db22726372db2d5d3ea77b49d7fadded07f5d4163ff0c6c9f453c995fffa8",
    "sha256:eee784e5e2ac719d65c994b5c66d0cfdd21abf020dd01c7af764860cb4678a6c",
]

SKOPEO = shutil.which("skopeo")
needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")


@pytest.fixture
def store(tmp_path):
    return ContentStore(tmp_path / "content")


def load_file(path, store, **kw):
    with open(path, "rb") as f:
        return load_archive(f, store, **kw)


def load_bytes(data, store, **kw):
    return load_archive(io.BytesIO(data), store, **kw)


def read_json(store, digest):
    return json.loads(store.read(digest))


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_tar(entries):
    """entries: (name, bytes) for files, (name, ("symlink", target)) for symlinks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, content in entries:
            ti = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                ti.type = tarfile.SYMTYPE
                ti.linkname = content[1]
                tf.addfile(ti)
            else:
                ti.size = len(content)
                ti.mode = 0o644
                tf.addfile(ti, io.BytesIO(content))
    return buf.getvalue()


def tar_entries(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        out = []
        for m in tf.getmembers():
            if m.isreg():
                out.append((m.name, tf.extractfile(m).read()))
            elif m.issym():
                out.append((m.name, ("symlink", m.linkname)))
        return out


def rewrite(data, drop=(), replace=None):
    replace = replace or {}
    out = [(n, replace.get(n, c)) for n, c in tar_entries(data) if n not in drop]
    return make_tar(out)


def oneline_error(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


def blob_count(store):
    return len(list(store.list()))


# --- loading the fixtures ---------------------------------------------------------


@pytest.mark.parametrize("path,name,nlayers", [
    (HELLO_DOCKER, HELLO, 1),
    (HELLO_OCI, HELLO, 1),
    (BUSYBOX_DOCKER, BUSYBOX, 2),
    (BUSYBOX_OCI, BUSYBOX, 2),
])
def test_load_fixtures(store, path, name, nlayers):
    loaded = load_file(path, store)
    assert len(loaded) == 1
    img = loaded[0]
    assert img.names == [name]
    assert img.platform == {"os": "linux", "architecture": "amd64"}
    assert img.target["mediaType"] == mt.OCI_MANIFEST
    manifest = json.loads(store.read(img.target["digest"]))
    assert store.info(img.target["digest"]) == img.target["size"]
    assert manifest["config"]["digest"] == img.config_digest == image_id(img.config_digest)
    assert len(manifest["layers"]) == nlayers == len(img.layers)
    for layer in manifest["layers"]:
        assert store.exists(layer["digest"]) and store.info(layer["digest"]) == layer["size"]
    config = read_json(store, img.config_digest)
    assert len(config["rootfs"]["diff_ids"]) == nlayers
    if name == HELLO:
        assert any('CMD ["/hello"]' in h.get("created_by", "") for h in config["history"])
        assert config["config"]["Cmd"] == ["/hello"]
    else:
        assert "FIXTURE=busybox-layers" in config["config"]["Env"]
        assert config["config"]["WorkingDir"] == "/data"
        assert config["rootfs"]["diff_ids"] == BUSYBOX_DIFF_IDS
    if path.endswith(".docker.tar"):
        # synthesised like containerd's import: uncompressed layers, digest = diff ID
        assert manifest["mediaType"] == mt.OCI_MANIFEST
        assert manifest["config"]["mediaType"] == mt.OCI_CONFIG
        assert [layer["mediaType"] for layer in manifest["layers"]] == [mt.OCI_LAYER] * nlayers
        assert [layer["digest"] for layer in manifest["layers"]] == config["rootfs"]["diff_ids"]
        assert img.config_digest == sha(store.read(img.config_digest))
    else:
        assert [layer["mediaType"] for layer in manifest["layers"]] == [mt.OCI_LAYER_GZIP] * nlayers


@pytest.mark.parametrize("docker,oci", [(HELLO_DOCKER, HELLO_OCI), (BUSYBOX_DOCKER, BUSYBOX_OCI)])
def test_docker_and_oci_forms_are_the_same_image(store, docker, oci):
    """Same layers (diff IDs, chain IDs) and the same runtime config.

    The config *digests* differ for these fixtures: the OCI ones were made by
    `skopeo copy docker-daemon: oci-archive:`, which rewrites the docker config
    as an OCI config (dropping container_config, docker_version ...). An
    archive that keeps the config bytes keeps the ID (see the skopeo and
    round-trip tests).
    """
    (d,) = load_file(docker, store)
    (o,) = load_file(oci, store)
    dc, oc = read_json(store, d.config_digest), read_json(store, o.config_digest)
    assert dc["rootfs"]["diff_ids"] == oc["rootfs"]["diff_ids"]
    assert chain_ids(dc["rootfs"]["diff_ids"]) == chain_ids(oc["rootfs"]["diff_ids"])
    for key in ("Cmd", "Env", "Entrypoint", "WorkingDir", "Labels"):
        assert (dc["config"].get(key) or None) == (oc["config"].get(key) or None)
    assert dc["history"] == oc["history"]
    assert d.names == o.names


def _pipe_load(data, store, **kw):
    r, w = os.pipe()

    def feed():
        with os.fdopen(w, "wb") as f:
            try:
                f.write(data)
            except BrokenPipeError:
                pass

    t = threading.Thread(target=feed)
    t.start()
    try:
        with os.fdopen(r, "rb") as f:
            assert not f.seekable()
            return load_archive(f, store, **kw)
    finally:
        t.join()


@pytest.mark.parametrize("path", [BUSYBOX_DOCKER, BUSYBOX_OCI])
@pytest.mark.parametrize("compress", [False, True])
def test_load_from_a_pipe(store, path, compress):
    with open(path, "rb") as f:
        data = f.read()
    if compress:
        data = gzip.compress(data, compresslevel=1)
    (img,) = _pipe_load(data, store)
    assert img.names == [BUSYBOX]
    assert read_json(store, img.config_digest)["rootfs"]["diff_ids"] == BUSYBOX_DIFF_IDS


# --- save -> load -----------------------------------------------------------------


def _load_all(store):
    out = []
    for path in (HELLO_DOCKER, HELLO_OCI, BUSYBOX_DOCKER, BUSYBOX_OCI):
        (img,) = load_file(path, store)
        out.append((path, img))
    return out


def _save(store, images, **kw):
    buf = io.BytesIO()
    save_archive(buf, store, images, **kw)
    return buf.getvalue()


def test_save_load_round_trip(tmp_path, store):
    images = _load_all(store)
    # give every image a name of its own: both forms of an image share names in the fixtures
    pairs = [([f"example.com/rt/{os.path.basename(p).replace('.', '-')}:v1"], img.target) for p, img in images]
    data = _save(store, pairs)
    assert _save(store, pairs) == data  # deterministic
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        names = [m.name for m in tf.getmembers()]
    assert len(names) == len(set(names))  # each blob once
    assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= set(names)
    for n in names:
        assert n in ("oci-layout", "index.json", "manifest.json", "repositories") or n.startswith("blobs")

    other = ContentStore(tmp_path / "other")
    again = load_bytes(data, other)
    assert len(again) == 4
    for (path, before), (names_, _), after in zip(images, pairs, again):
        assert after.names == names_
        assert after.config_digest == before.config_digest
        assert after.target == before.target  # OCI-loaded and synthesised manifests alike
        assert after.layers == before.layers


def test_save_to_a_pipe_and_missing_content(tmp_path, store):
    (busy,) = load_file(BUSYBOX_DOCKER, store)
    r, w = os.pipe()
    chunks = []
    t = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(r, 65536), b"")))
    t.start()
    with os.fdopen(w, "wb") as f:
        assert not f.seekable()
        save_archive(f, store, [([BUSYBOX], busy.target)])
    t.join()
    os.close(r)
    (again,) = load_bytes(b"".join(chunks), ContentStore(tmp_path / "p"))
    assert again.target == busy.target and again.names == [BUSYBOX]
    # content missing from the store: NotFound, and not one byte written
    store.delete(busy.layers[0]["digest"])
    buf = io.BytesIO()
    with pytest.raises(NotFound):
        save_archive(buf, store, [([BUSYBOX], busy.target)])
    assert buf.getvalue() == b""
    with pytest.raises(InvalidArgument):
        save_archive(buf, store, [(["Not A Valid Name"], busy.target)])
    assert buf.getvalue() == b""


def test_save_writes_docker_manifest_and_oci_index(store):
    (hello,) = load_file(HELLO_DOCKER, store)
    (busy,) = load_file(BUSYBOX_OCI, store)
    data = _save(store, [([HELLO, "example.com/x/hello:v2"], hello.target), ([BUSYBOX], busy.target),
                         ([], hello.target)])
    files = dict(tar_entries(data))
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    assert [(d["digest"], d.get("annotations")) for d in index["manifests"]] == [
        (hello.target["digest"], {"io.containerd.image.name": HELLO, "org.opencontainers.image.ref.name": "latest"}),
        (hello.target["digest"], {"io.containerd.image.name": "example.com/x/hello:v2",
                                  "org.opencontainers.image.ref.name": "v2"}),
        (busy.target["digest"], {"io.containerd.image.name": BUSYBOX, "org.opencontainers.image.ref.name": "1"}),
        (hello.target["digest"], None),
    ]
    manifest = json.loads(files["manifest.json"])
    assert manifest[0]["RepoTags"] == ["hello-world:latest", "example.com/x/hello:v2"]
    assert manifest[1]["RepoTags"] == ["busybox-layers:1"]
    assert manifest[2]["RepoTags"] is None  # as docker's (an image saved by its ID)
    assert manifest[0]["Config"] == "blobs/sha256/" + hello.config_digest.split(":")[1]
    assert manifest[0]["Layers"] == ["blobs/sha256/" + d.split(":")[1]
                                     for d in read_json(store, hello.config_digest)["rootfs"]["diff_ids"]]
    # the documented choice: gzip layers are referenced as they are stored, not duplicated
    assert manifest[1]["Layers"] == ["blobs/sha256/" + layer["digest"].split(":")[1] for layer in busy.layers]
    assert all(layer["mediaType"] == mt.OCI_LAYER_GZIP for layer in busy.layers)
    for path in manifest[1]["Layers"]:
        assert files[path][:2] == b"\x1f\x8b"
    repos = json.loads(files["repositories"])
    assert repos["hello-world"] == {"latest": hello.layers[-1]["digest"].split(":")[1]}
    assert repos["busybox-layers"] == {"1": busy.layers[-1]["digest"].split(":")[1]}


def test_docker_part_of_a_saved_archive_loads_alone(tmp_path, store):
    """An old-style reader sees only manifest.json: gzip layers are decompressed to check their diff IDs."""
    (busy,) = load_file(BUSYBOX_OCI, store)
    data = _save(store, [([BUSYBOX], busy.target)])
    docker_only = rewrite(data, drop={"index.json", "oci-layout"})
    (img,) = load_bytes(docker_only, ContentStore(tmp_path / "d"))
    assert img.names == [BUSYBOX]
    assert img.config_digest == busy.config_digest
    assert [layer["mediaType"] for layer in img.layers] == [mt.OCI_LAYER_GZIP] * 2
    assert [layer["digest"] for layer in img.layers] == [layer["digest"] for layer in busy.layers]
    # ... and a gzip layer whose content does not match its diff ID is refused
    files = dict(tar_entries(docker_only))
    bad_layer = gzip.compress(b"not the layer" + b"\0" * 1024)
    bad = rewrite(docker_only, replace={manifest_path: bad_layer
                                        for manifest_path in json.loads(files["manifest.json"])[0]["Layers"][:1]})
    # the blob name no longer matches either: drop the name check by renaming into a legacy path
    entries = [(n.replace("blobs/sha256/", "legacy/") if n.startswith("blobs/") else n, c)
               for n, c in tar_entries(bad)]
    mj = json.loads(files["manifest.json"])
    mj[0]["Config"] = mj[0]["Config"].replace("blobs/sha256/", "legacy/")
    mj[0]["Layers"] = [p.replace("blobs/sha256/", "legacy/") for p in mj[0]["Layers"]]
    entries = [(n, json.dumps(mj).encode() if n == "manifest.json" else c) for n, c in entries]
    with pytest.raises(InvalidArgument) as e:
        load_bytes(make_tar(entries), ContentStore(tmp_path / "e"))
    assert "diff ID" in oneline_error(e)


def test_combined_form_takes_names_from_manifest_json(tmp_path, store):
    (hello,) = load_file(HELLO_OCI, store)
    data = _save(store, [(["example.com/a/b:c"], hello.target)])
    files = dict(tar_entries(data))
    index = json.loads(files["index.json"])
    for d in index["manifests"]:
        d.pop("annotations")
    (img,) = load_bytes(rewrite(data, replace={"index.json": json.dumps(index).encode()}),
                        ContentStore(tmp_path / "o"))
    assert img.names == ["example.com/a/b:c"]
    assert img.target == hello.target  # the OCI manifest, not a synthesised one
    # without manifest.json the OCI part alone is enough
    (img,) = load_bytes(rewrite(data, drop={"manifest.json", "repositories"}), ContentStore(tmp_path / "p"))
    assert img.names == ["example.com/a/b:c"] and img.target == hello.target


def test_tag_only_ref_name_needs_a_base_name(tmp_path, store):
    (hello,) = load_file(HELLO_OCI, store)
    data = _save(store, [(["example.com/a/b:v3"], hello.target)])
    index = json.loads(dict(tar_entries(data))["index.json"])
    del index["manifests"][0]["annotations"]["io.containerd.image.name"]
    data = rewrite(data, drop={"manifest.json"}, replace={"index.json": json.dumps(index).encode()})
    (img,) = load_bytes(data, ContentStore(tmp_path / "a"))
    assert img.names == []
    (img,) = load_bytes(data, ContentStore(tmp_path / "b"), base_name="localhost:5000/mine")
    assert img.names == ["localhost:5000/mine:v3"]


def _platform_index_archive(store, host_manifest_target):
    """An OCI archive whose index.json points to a multi-platform index (host + another platform)."""
    host = host_platform()
    other = {"os": "linux", "architecture": "s390x"} if host["architecture"] != "s390x" else \
        {"os": "linux", "architecture": "ppc64le"}
    manifest = store.read(host_manifest_target["digest"])
    absent = b'{"schemaVersion":2}'
    nested = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {"mediaType": mt.OCI_MANIFEST, "digest": sha(absent), "size": len(absent), "platform": other},
            {**host_manifest_target, "platform": host},
            {"mediaType": mt.OCI_MANIFEST, "digest": sha(absent), "size": len(absent),
             "platform": {"os": "unknown", "architecture": "unknown"}},
        ],
    }
    nested_bytes = json.dumps(nested).encode()
    cfg_digest = json.loads(manifest)["config"]["digest"]
    entries = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')]
    blobs = [nested_bytes, manifest, store.read(cfg_digest)]
    blobs += [store.read(layer["digest"]) for layer in json.loads(manifest)["layers"]]
    for b in blobs:
        entries.append(("blobs/sha256/" + hashlib.sha256(b).hexdigest(), b))
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": mt.OCI_INDEX, "digest": sha(nested_bytes), "size": len(nested_bytes),
         "annotations": {"org.opencontainers.image.ref.name": "example.com/multi/arch:1"}}]}
    entries.append(("index.json", json.dumps(index).encode()))
    return make_tar(entries), sha(nested_bytes), other


def test_index_of_a_manifest_list(tmp_path, store):
    (hello,) = load_file(HELLO_OCI, store)
    data, index_digest, other = _platform_index_archive(store, hello.target)
    s2 = ContentStore(tmp_path / "s2")
    (img,) = load_bytes(data, s2)
    assert img.names == ["example.com/multi/arch:1"]
    assert img.target["digest"] == index_digest and img.target["mediaType"] == mt.OCI_INDEX
    assert img.config_digest == hello.config_digest  # the host's manifest
    # another platform whose manifest is not in the archive: refused
    with pytest.raises(InvalidArgument) as e:
        load_bytes(data, ContentStore(tmp_path / "s3"), platform=other)
    assert "not in the archive" in oneline_error(e)
    with pytest.raises(InvalidArgument) as e:
        load_bytes(data, ContentStore(tmp_path / "s4"), platform="windows/amd64")
    assert "no manifest for windows/amd64" in oneline_error(e)
    # save keeps the index blob as the target and the host's manifest with it
    saved = _save(s2, [(img.names, img.target)])
    files = dict(tar_entries(saved))
    assert "blobs/sha256/" + index_digest.split(":")[1] in files
    assert "blobs/sha256/" + hello.target["digest"].split(":")[1] in files
    assert json.loads(files["index.json"])["manifests"][0]["digest"] == index_digest
    assert json.loads(files["manifest.json"])[0]["Config"].endswith(hello.config_digest.split(":")[1])
    (again,) = load_bytes(saved, ContentStore(tmp_path / "s5"))
    assert again.target == img.target and again.config_digest == img.config_digest


# --- real peers: skopeo -----------------------------------------------------------


def skopeo(*args):
    p = subprocess.run([SKOPEO, "--insecure-policy", *args], capture_output=True, text=True, timeout=120,
                       check=False)
    assert p.returncode == 0, p.stderr
    return p.stdout


@needs_skopeo
def test_skopeo_reads_saved_archives(tmp_path, store):
    (hello,) = load_file(HELLO_DOCKER, store)
    (busy,) = load_file(BUSYBOX_OCI, store)
    hello_cfg = read_json(store, hello.config_digest)
    for name, img in ((HELLO, hello), (BUSYBOX, busy)):
        path = tmp_path / (name.rsplit("/", 1)[1].replace(":", "_") + ".tar")
        with open(path, "wb") as f:
            save_archive(f, store, [([name], img.target)])
        config = read_json(store, img.config_digest)
        # docker-archive: skopeo reports diff IDs (it decompresses the gzip layers itself)
        info = json.loads(skopeo("inspect", f"docker-archive:{path}"))
        assert info["Layers"] == config["rootfs"]["diff_ids"]
        assert info["Architecture"] == "amd64" and info["Os"] == "linux"
        # oci-archive, by the tag (ref.name) and without a name: the manifest as stored
        tag = name.rsplit(":", 1)[1]
        for ref in (f"oci-archive:{path}:{tag}", f"oci-archive:{path}"):
            info = json.loads(skopeo("inspect", ref))
            assert info["Digest"] == img.target["digest"]
            assert info["Layers"] == [layer["digest"] for layer in img.layers]
        raw = skopeo("inspect", "--raw", f"oci-archive:{path}")
        assert sha(raw.encode()) == img.target["digest"]
        # skopeo copy docker-archive -> oci directory, and we load that layout back
        oci_dir = tmp_path / ("oci-" + tag)
        skopeo("copy", f"docker-archive:{path}", f"oci:{oci_dir}:copied")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for entry in sorted(os.listdir(oci_dir)):
                tf.add(oci_dir / entry, arcname=entry)
        (copied,) = load_bytes(buf.getvalue(), ContentStore(tmp_path / ("c-" + tag)),
                               base_name="example.com/copied")
        assert copied.names == ["example.com/copied:copied"]
        s2 = ContentStore(tmp_path / ("c-" + tag))
        assert read_json(s2, copied.config_digest)["rootfs"]["diff_ids"] == config["rootfs"]["diff_ids"]
    # several images in one archive: skopeo picks by name
    both = tmp_path / "both.tar"
    with open(both, "wb") as f:
        save_archive(f, store, [([HELLO], hello.target), ([BUSYBOX], busy.target)])
    info = json.loads(skopeo("inspect", f"docker-archive:{both}:hello-world:latest"))
    assert info["Layers"] == hello_cfg["rootfs"]["diff_ids"]
    info = json.loads(skopeo("inspect", f"oci-archive:{both}:1"))
    assert info["Digest"] == busy.target["digest"]


@needs_skopeo
def test_load_an_archive_made_by_skopeo(tmp_path, store):
    out = tmp_path / "x.tar"
    skopeo("copy", f"oci-archive:{HELLO_OCI}", f"docker-archive:{out}:hello:skopeo")
    (img,) = load_file(out, store)  # legacy dirs with symlinks to <diffid>.tar
    (oci,) = load_file(HELLO_OCI, ContentStore(tmp_path / "o"))
    assert img.names == ["docker.io/library/hello:skopeo"]
    assert img.config_digest == oci.config_digest  # skopeo kept the config bytes
    assert [layer["mediaType"] for layer in img.layers] == [mt.OCI_LAYER]
    out2 = tmp_path / "y.tar"
    skopeo("copy", f"docker-archive:{BUSYBOX_DOCKER}", f"oci-archive:{out2}:example.com/sk/busy:2")
    (img,) = load_file(out2, store)
    assert img.names == ["example.com/sk/busy:2"]
    assert read_json(store, img.config_digest)["rootfs"]["diff_ids"] == BUSYBOX_DIFF_IDS


# --- hostile and corrupt archives --------------------------------------------------


def _docker_archive(layer, diff_id=None, layers_paths=None, extra=()):
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [diff_id or sha(layer)]}}
    cfg = json.dumps(config).encode()
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    manifest = [{"Config": cfg_name, "RepoTags": ["evil:latest"],
                 "Layers": layers_paths or ["aaa/layer.tar"]}]
    return make_tar([(cfg_name, cfg), ("aaa/layer.tar", layer), *extra,
                     ("manifest.json", json.dumps(manifest).encode())])


def _oci_archive(blobs, index, extra=()):
    entries = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')]
    entries += [("blobs/sha256/" + hashlib.sha256(b).hexdigest(), b) for b in blobs]
    entries += list(extra)
    entries.append(("index.json", index if isinstance(index, bytes) else json.dumps(index).encode()))
    return make_tar(entries)


def _oci_image(layer, layer_type=mt.OCI_LAYER, diff_id=None):
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": [diff_id or sha(layer)]}}).encode()
    man = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                      "config": {"mediaType": mt.OCI_CONFIG, "digest": sha(cfg), "size": len(cfg)},
                      "layers": [{"mediaType": layer_type, "digest": sha(layer), "size": len(layer)}]}).encode()
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": sha(man), "size": len(man),
         "annotations": {"org.opencontainers.image.ref.name": "evil:latest"}}]}
    return cfg, man, index


LAYER = make_tar([("etc/hostname", b"berth\n")])


def test_good_handmade_archives_load(store):
    assert load_bytes(_docker_archive(LAYER), store)[0].names == ["docker.io/library/evil:latest"]
    cfg, man, index = _oci_image(LAYER)
    assert load_bytes(_oci_archive([cfg, man, LAYER], index), store)[0].names == ["docker.io/library/evil:latest"]


def test_refuses_layer_not_matching_diff_id(store):
    with pytest.raises(InvalidArgument) as e:
        load_bytes(_docker_archive(LAYER, diff_id=sha(b"something else")), store)
    assert "diff ID" in oneline_error(e)
    cfg, man, index = _oci_image(LAYER, diff_id=sha(b"something else"))
    with pytest.raises(InvalidArgument) as e:
        load_bytes(_oci_archive([cfg, man, LAYER], index), store)
    assert "diff ID" in oneline_error(e)


def test_refuses_missing_layer(store):
    with pytest.raises(InvalidArgument) as e:
        load_bytes(_docker_archive(LAYER, layers_paths=["bbb/layer.tar"]), store)
    assert "not in the archive" in oneline_error(e)
    cfg, man, index = _oci_image(LAYER)
    with pytest.raises(InvalidArgument) as e:
        load_bytes(_oci_archive([cfg, man], index), store)
    assert "not in the archive" in oneline_error(e)


def test_refuses_index_pointing_to_missing_blob(store):
    cfg, _, index = _oci_image(LAYER)
    with pytest.raises(InvalidArgument) as e:
        load_bytes(_oci_archive([cfg, LAYER], index), store)
    assert "not in the archive" in oneline_error(e)


@pytest.mark.parametrize("how", ["member", "manifest-json", "symlink", "absolute"])
def test_refuses_paths_with_dotdot(store, how):
    cfg, man, index = _oci_image(LAYER)
    if how == "member":
        data = _oci_archive([cfg, man, LAYER], index,
                            extra=[("blobs/sha256/../../../etc/" + sha(LAYER).split(":")[1], LAYER)])
    elif how == "manifest-json":
        data = _docker_archive(LAYER, layers_paths=["../aaa/layer.tar"])
    elif how == "symlink":
        data = _docker_archive(LAYER, layers_paths=["bbb/layer.tar"],
                               extra=[("bbb/layer.tar", ("symlink", "../../etc/passwd"))])
    else:
        data = _docker_archive(LAYER, layers_paths=["/etc/passwd"])
    with pytest.raises(InvalidArgument) as e:
        load_bytes(data, store)
    msg = oneline_error(e)
    assert "unsafe path" in msg or "outside the archive" in msg


def test_refuses_blob_not_matching_its_name(store):
    cfg, man, index = _oci_image(LAYER)
    data = make_tar([("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                     ("blobs/sha256/" + hashlib.sha256(cfg).hexdigest(), cfg),
                     ("blobs/sha256/" + hashlib.sha256(man).hexdigest(), man),
                     ("blobs/sha256/" + hashlib.sha256(LAYER).hexdigest(), LAYER + b"x" * 512),
                     ("index.json", json.dumps(index).encode())])
    with pytest.raises(InvalidArgument) as e:
        load_bytes(data, store)
    assert "mismatch" in oneline_error(e)


def test_refuses_huge_manifest(store):
    cfg, man, index = _oci_image(LAYER)
    doc = json.loads(man)
    doc["annotations"] = {"pad": "x" * (MAX_MANIFEST_SIZE + 10)}
    huge = json.dumps(doc).encode()
    index["manifests"][0].update(digest=sha(huge), size=len(huge))
    with pytest.raises(InvalidArgument) as e:
        load_bytes(_oci_archive([cfg, huge, LAYER], index), store)
    assert "more than the limit" in oneline_error(e)
    # a lying descriptor (claims small, blob is huge) is refused too
    index["manifests"][0]["size"] = 100
    with pytest.raises(InvalidArgument) as e:
        load_bytes(_oci_archive([cfg, huge, LAYER], index), store)
    oneline_error(e)


@pytest.mark.parametrize("data", [
    b"",
    b"this is not a tar archive at all" * 40,
    b"\x1f\x8b\x08\x00garbage" * 10,
])
def test_refuses_non_archives(store, data):
    with pytest.raises(InvalidArgument) as e:
        load_bytes(data, store)
    oneline_error(e)


def test_refuses_truncated_and_malformed(store):
    with open(BUSYBOX_OCI, "rb") as f:
        full = f.read()
    with pytest.raises(InvalidArgument) as e:
        load_bytes(full[: len(full) // 2], store)
    oneline_error(e)
    cfg, man, _ = _oci_image(LAYER)
    for bad in (b"{not json", b"[" * 100000 + b"]" * 100000, b'{"manifests": {"a": 1}}'):
        with pytest.raises(InvalidArgument) as e:
            load_bytes(_oci_archive([cfg, man, LAYER], bad), store)
        oneline_error(e)
    with pytest.raises(InvalidArgument) as e:
        load_bytes(make_tar([("manifest.json", b"{}")]), store)
    oneline_error(e)


# --- import ------------------------------------------------------------------------


def _rootfs():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, body in (("bin/hello", b"#!/bin/sh\necho hi\n"), ("etc/os-release", b"ID=test\n")):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(body), 0o755
            tf.addfile(ti, io.BytesIO(body))
        ti = tarfile.TarInfo("data")
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(ti)
    return buf.getvalue()


CHANGES = [
    "CMD echo hello world",
    'ENTRYPOINT ["/bin/tini", "--"]',
    'ENV A=1 B="two words" C=three\\ words',
    "ENV OLD value with spaces",
    "WORKDIR /srv",
    "WORKDIR app",
    "USER nobody:nogroup",
    'LABEL a=b "c d"="e f" version=1.0',
    "EXPOSE 80 53/udp 8000-8001/tcp",
    'VOLUME ["/data"]',
    "VOLUME /cache /logs",
]


@pytest.mark.parametrize("compress", [None, "gzip"])
def test_import_rootfs_with_changes(tmp_path, store, compress):
    raw = _rootfs()
    data = gzip.compress(raw) if compress else raw
    desc, config_digest = import_rootfs(io.BytesIO(data), store, changes=CHANGES,
                                        created="2024-05-06T07:08:09.123456789Z")
    assert desc["mediaType"] == mt.OCI_MANIFEST and store.info(desc["digest"]) == desc["size"]
    manifest = read_json(store, desc["digest"])
    assert manifest["config"] == {"mediaType": mt.OCI_CONFIG, "digest": config_digest,
                                  "size": store.info(config_digest)}
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == mt.OCI_LAYER_GZIP
    stored = store.read(layer["digest"])
    assert stored[:2] == b"\x1f\x8b" and len(stored) == layer["size"]
    assert gzip.decompress(stored) == raw
    config = read_json(store, config_digest)
    host = host_platform()
    assert config["architecture"] == host["architecture"] and config["os"] == host["os"]
    assert config["rootfs"] == {"type": "layers", "diff_ids": [sha(raw)]}
    assert config["history"] == [{"created": "2024-05-06T07:08:09.123456789Z", "created_by": "",
                                  "comment": "Imported from -"}]
    c = config["config"]
    assert c["Cmd"] == ["/bin/sh", "-c", "echo hello world"]
    assert c["Entrypoint"] == ["/bin/tini", "--"]
    assert c["Env"] == ["A=1", "B=two words", "C=three words", "OLD=value with spaces"]
    assert c["WorkingDir"] == "/srv/app"
    assert c["User"] == "nobody:nogroup"
    assert c["Labels"] == {"a": "b", "c d": "e f", "version": "1.0"}
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}
    assert c["Volumes"] == {"/data": {}, "/cache": {}, "/logs": {}}
    assert "StopSignal" not in c
    # an imported image saves and loads like any other
    (again,) = load_bytes(_save(store, [(["imported:1"], desc)]), ContentStore(tmp_path / "again"))
    assert again.target == desc and again.config_digest == config_digest


def test_import_from_a_pipe_with_message(store):
    raw = _rootfs()
    r, w = os.pipe()
    t = threading.Thread(target=lambda: (os.write(w, gzip.compress(raw)), os.close(w)))
    t.start()
    with os.fdopen(r, "rb") as f:
        _, config_digest = import_rootfs(f, store, changes=["ENV K V"], message="from the test",
                                            platform="linux/arm64")
    t.join()
    config = read_json(store, config_digest)
    assert config["history"][0]["comment"] == "from the test"
    assert (config["architecture"], config.get("variant"), config["os"]) == ("arm64", "v8", "linux")
    assert config["config"]["Env"] == ["K=V"]
    assert config["rootfs"]["diff_ids"] == [sha(raw)]


@pytest.mark.parametrize("change", ["RUN rm -rf /", "ONBUILD ONBUILD x", "FROM scratch", "EXPOSE http",
                                    "EXPOSE 70000", "ENV onlykey", "CMD", "LABEL a=\"unterminated"])
def test_import_refuses_bad_changes_before_writing(store, change):
    f = io.BytesIO(_rootfs())
    with pytest.raises(InvalidArgument) as e:
        import_rootfs(f, store, changes=["CMD ok", change])
    msg = oneline_error(e)
    if change.split()[0] in ("RUN", "FROM"):
        assert msg == f"{change.split()[0].lower()} is not a valid change command"  # dockerd's words
    if change.startswith("ONBUILD"):
        assert msg == "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    assert f.tell() == 0  # the input was not even read
    assert blob_count(store) == 0 and store.ingests() == []


def test_import_refuses_non_tar_input(store):
    for data in (b"", b"hello, this is not a tar archive" * 100, gzip.compress(b"x" * 1000)[:-20]):
        with pytest.raises(InvalidArgument) as e:
            import_rootfs(io.BytesIO(data), store)
        oneline_error(e)
    assert blob_count(store) == 0


# --- config helpers ----------------------------------------------------------------


def test_chain_ids_known_vector():
    # OCI image-spec: ChainID(L0) = DiffID(L0); ChainID(L0|L1) = sha256(ChainID(L0) + " " + DiffID(L1))
    a, b, c = (sha(x) for x in (b"layer a", b"layer b", b"layer c"))
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert chain_ids([a, b, c]) == [a, ab, abc]
    assert chain_ids([]) == []
    # computed with `printf '%s' "<diff1> <diff2>" | sha256sum`
    assert chain_ids(BUSYBOX_DIFF_IDS)[-1] == \
        "sha256:35ba2c51b5eaf6f54b9aaddad2a601fb3fcb9f4e80f50efbb4e92d31bc82a9af"
    with pytest.raises(InvalidArgument):
        chain_ids(["sha256:nothex"])


def test_history_rows_for_the_fixtures(store):
    (hello,) = load_file(HELLO_DOCKER, store)
    config = read_json(store, hello.config_digest)
    rows = history_rows(config, image_id=hello.config_digest,
                        layer_sizes=[layer["size"] for layer in hello.layers], tags=["hello-world:latest"])
    assert [r["Id"] for r in rows] == [hello.config_digest, "<missing>"]
    assert rows[0]["CreatedBy"] == '/bin/sh -c #(nop)  CMD ["/hello"]' and rows[0]["Size"] == 0
    assert rows[0]["Tags"] == ["hello-world:latest"] and rows[1]["Tags"] is None
    assert rows[1]["CreatedBy"].startswith("/bin/sh -c #(nop) COPY file:") and rows[1]["Size"] == 684544
    assert rows[0]["Created"] == 1795817777  # 2026-11-27T22:16:17.107948057Z
    assert set(rows[0]) == {"Id", "Created", "CreatedBy", "Tags", "Size", "Comment"}

    (busy,) = load_file(BUSYBOX_OCI, store)
    rows = history_rows(read_json(store, busy.config_digest), image_id=busy.config_digest,
                        layer_sizes=[2125312, 4608])
    assert len(rows) == 6
    assert [r["Size"] for r in rows] == [0, 0, 0, 0, 4608, 2125312]
    assert rows[0]["CreatedBy"].endswith('CMD ["sh"]')
    assert rows[2]["CreatedBy"].endswith("WORKDIR /data")
    assert all(r["Id"] == "<missing>" for r in rows[1:])
    assert [r["Created"] for r in rows] == sorted((r["Created"] for r in rows), reverse=True)


def test_platforms():
    assert parse_platform("linux/arm64/v8") == {"os": "linux", "architecture": "arm64", "variant": "v8"}
    assert parse_platform("linux/arm64") == parse_platform("linux/aarch64")
    assert parse_platform("linux/amd64") == {"os": "linux", "architecture": "amd64"}
    assert parse_platform("linux/arm/v6") == {"os": "linux", "architecture": "arm", "variant": "v6"}
    assert parse_platform("arm64", host={"os": "linux", "architecture": "amd64"})["architecture"] == "arm64"
    for bad in ("", "linux/amd64/v2/x", "nosuchos/amd64", "linux//"):
        with pytest.raises(InvalidArgument):
            parse_platform(bad)
    assert host_platform("x86_64", "linux") == {"os": "linux", "architecture": "amd64"}
    assert host_platform("aarch64", "linux") == {"os": "linux", "architecture": "arm64", "variant": "v8"}
    assert host_platform("armv7l", "linux") == {"os": "linux", "architecture": "arm", "variant": "v7"}
    assert host_platform("i686", "linux") == {"os": "linux", "architecture": "386"}

    def d(n, **p):
        return {"digest": "sha256:" + str(n) * 64, "platform": p}

    manifests = [d(1, os="unknown", architecture="unknown"), d(2, os="linux", architecture="arm", variant="v6"),
                 d(3, os="linux", architecture="amd64"), d(4, os="linux", architecture="arm64", variant="v8"),
                 d(5, os="windows", architecture="amd64")]
    assert match_platform(manifests, "linux/amd64")["digest"][-1] == "3"
    assert match_platform(manifests, "linux/arm64")["digest"][-1] == "4"
    assert match_platform(manifests, {"os": "linux", "architecture": "aarch64"})["digest"][-1] == "4"
    assert match_platform(manifests, "linux/arm/v7")["digest"][-1] == "2"  # v7 runs v6
    assert match_platform(manifests, "linux/arm/v5") is None
    assert match_platform(manifests, "windows/amd64")["digest"][-1] == "5"
    assert match_platform(manifests, "linux/s390x") is None
