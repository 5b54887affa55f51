"""berth.metadata: namespaces, images, containers, leases, and GC over real stores.

Every test uses a real SQLite file under tmp_path, a real ContentStore and a
real snapshotter (native everywhere; overlay too where it works, as root).
"""

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import uuid

import pytest

from berth.content.store import ContentStore
from berth.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from berth.metadata import (
    CONTENT,
    INGEST,
    SNAPSHOT,
    Descriptor,
    MetadataStore,
    schema,
)
from berth.oci import mediatypes
from berth.oci.digest import sha256_digest
from berth.snapshots import Kind
from berth.snapshots import overlay as overlay_mod
from berth.snapshots.native import NativeSnapshotter
from berth.snapshots.overlay import OverlaySnapshotter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def desc(digest=D1, size=10, media_type=mediatypes.OCI_MANIFEST):
    return {"mediaType": media_type, "digest": digest, "size": size}


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def md(tmp_path):
    store = MetadataStore(tmp_path)
    yield store
    store.close()


@pytest.fixture
def cs(tmp_path):
    return ContentStore(tmp_path / "content")


@pytest.fixture(params=["native", "overlay"])
def snap(request, tmp_path):
    """(snapshotter name as recorded in the metadata, snapshotter)."""
    root = str(tmp_path / "snapshots" / request.param)
    if request.param == "overlay":
        if not overlay_mod.supported(root):
            pytest.skip("overlayfs is not usable here (needs root)")
        return "overlayfs", OverlaySnapshotter(root)
    return "native", NativeSnapshotter(root)


# --- a small puller that follows the store's contract ------------------------


def layer_tar(name):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = f"content of {name}\n".encode()
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        ti.mtime = 0
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def chain_ids(diff_ids):
    out, chain = [], None
    for d in diff_ids:
        chain = d if chain is None else sha256_digest(f"{chain} {d}".encode())
        out.append(chain)
    return out


def snapshot_exists(sn, key):
    try:
        sn.stat(key)
        return True
    except NotFound:
        return False


class Pulled(dict):
    __getattr__ = dict.__getitem__


def pull(md, cs, snapshots, ns, name, layers, *, index=False, lease_labels=None, finish=True):
    """Store an image as the images layer will: lease first, then write, then record.

    ``snapshots`` is (snapshotter name, snapshotter). Returns the digests and keys.
    With ``finish=False`` it stops before recording the image and leaves the
    lease behind (a daemon killed mid-pull).
    """
    snname, sn = snapshots
    lease = md.create_lease(ns, ttl=600, labels=lease_labels)
    blobs = {}

    def put(data):
        d = sha256_digest(data)
        md.add_lease_resource(ns, lease.id, CONTENT, d)
        cs.write_blob(data)
        blobs[d] = len(data)
        return d

    layer_digests = [put(data) for data in layers]
    chains = chain_ids(layer_digests)
    parent = None
    for chain, data in zip(chains, layers):
        md.add_lease_resource(ns, lease.id, SNAPSHOT, chain, snname)
        if not snapshot_exists(sn, chain):
            key = f"extract-{uuid.uuid4().hex}"
            md.add_lease_resource(ns, lease.id, SNAPSHOT, key, snname)
            sn.prepare(key, parent)
            with tarfile.open(fileobj=io.BytesIO(data)) as tf:
                for m in tf.getmembers():
                    with open(os.path.join(sn.fs_path(key), m.name), "wb") as f:
                        f.write(tf.extractfile(m).read())
            try:
                sn.commit(chain, key)
            except AlreadyExists:  # another pull unpacked the same layer meanwhile
                sn.remove(key)
        parent = chain
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": layer_digests}}).encode()
    cfg = put(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": cfg, "size": len(config)},
        "layers": [{"mediaType": mediatypes.OCI_LAYER, "digest": d, "size": blobs[d]}
                   for d in layer_digests],
    }).encode()
    man = put(manifest)
    target = Descriptor(mediatypes.OCI_MANIFEST, man, len(manifest))
    idx = None
    if index:
        other = "sha256:" + "e" * 64  # another platform's manifest, never fetched
        index_blob = json.dumps({
            "schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX,
            "manifests": [{"mediaType": mediatypes.OCI_MANIFEST, "digest": man, "size": len(manifest)},
                          {"mediaType": mediatypes.OCI_MANIFEST, "digest": other, "size": 1}],
        }).encode()
        idx = put(index_blob)
        target = Descriptor(mediatypes.OCI_INDEX, idx, len(index_blob))
    result = Pulled(lease=lease, layers=layer_digests, chains=chains, config=cfg, manifest=man,
                    index=idx, target=target, blobs=blobs)
    if not finish:
        return result
    with md.tx() as tx:
        tx.add_content_refs(man, [cfg, *layer_digests])
        tx.add_snapshot_ref(cfg, chains[-1], snname)
        if index:
            tx.add_content_refs(idx, [man, other])
        tx.put_image(ns, name, target)
        tx.delete_lease(ns, lease.id)
    return result


L1, L2, L3 = layer_tar("one"), layer_tar("two"), layer_tar("three")


# --- the database itself -----------------------------------------------------------


def test_open_creates_wal_database_with_default_namespace(tmp_path):
    store = MetadataStore(tmp_path / "root")
    try:
        path = tmp_path / "root" / "metadata.db"
        assert store.path == str(path) and path.is_file()
        assert (path.stat().st_mode & 0o777) == 0o600
        assert store.journal_mode == "wal"
        assert store.schema_version() == schema.LATEST
        assert [n.name for n in store.list_namespaces()] == ["default"]
        conn = store._conn()
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 60000
    finally:
        store.close()
    with pytest.raises(FailedPrecondition, match="closed"):
        store.list_images("default")
    with MetadataStore(tmp_path / "root") as again:  # reopening keeps it
        assert [n.name for n in again.list_namespaces()] == ["default"]


def test_schema_migrates_forward_and_refuses_newer(tmp_path):
    with MetadataStore(tmp_path) as store:
        store.create_image("default", "example.com/a:1", desc())
    conn = sqlite3.connect(tmp_path / "metadata.db", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    extra = schema.MIGRATIONS + [["ALTER TABLE images ADD COLUMN note TEXT"]]
    assert schema.migrate(conn, time.time(), extra) == len(extra)
    conn.execute("COMMIT")
    assert schema.current_version(conn) == schema.LATEST + 1
    row = conn.execute("SELECT name, note FROM images").fetchone()
    assert row == ("example.com/a:1", None)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    with pytest.raises(FailedPrecondition, match="schema version 99 is newer"):
        MetadataStore(tmp_path)


# --- namespaces --------------------------------------------------------------------------


def test_namespace_crud_and_validation(md):
    ns = md.create_namespace("team-a", {"owner": "alice"})
    assert ns.name == "team-a" and ns.labels == {"owner": "alice"}
    with pytest.raises(AlreadyExists, match='namespace "team-a" already exists'):
        md.create_namespace("team-a")
    assert md.get_namespace("team-a").labels == {"owner": "alice"}
    assert md.set_namespace_labels("team-a", {"x": "y"}).labels == {"x": "y"}
    md.create_namespace("k8s.io")
    assert [n.name for n in md.list_namespaces()] == ["default", "k8s.io", "team-a"]
    for bad in ("", "Upper", "-lead", "trail-", "a/b", "a b", "x" * 77, "é"):
        with pytest.raises(InvalidArgument):
            md.create_namespace(bad)
    md.create_namespace("x" * 76)
    md.create_namespace("a")
    md.delete_namespace("team-a")
    with pytest.raises(NotFound, match='namespace "team-a" not found'):
        md.get_namespace("team-a")
    with pytest.raises(NotFound):
        md.delete_namespace("team-a")
    with pytest.raises(NotFound):
        md.set_namespace_labels("team-a", {})
    with pytest.raises(InvalidArgument):
        md.create_namespace("ok", {"k": 1})


def test_namespace_delete_refused_while_not_empty(md):
    md.create_namespace("busy")
    md.create_image("busy", "example.com/a:1", desc())
    with pytest.raises(FailedPrecondition, match=r'namespace "busy" is not empty: it still has 1 image$'):
        md.delete_namespace("busy")
    md.create_container("busy", "c1", image="example.com/a:1")
    md.create_lease("busy", "l1")
    with pytest.raises(FailedPrecondition, match="1 image, 1 container, 1 lease"):
        md.delete_namespace("busy")
    md.delete_image("busy", "example.com/a:1")
    md.delete_container("busy", "c1")
    with pytest.raises(FailedPrecondition, match="not empty: it still has 1 lease"):
        md.delete_namespace("busy")
    md.delete_lease("busy", "l1")
    md.delete_namespace("busy")
    assert "busy" not in [n.name for n in md.list_namespaces()]


def test_namespaces_isolate_images_and_writes_create_namespaces(md):
    md.create_image("a", "docker.io/library/busybox:latest", desc(D1))
    assert [n.name for n in md.list_namespaces()] == ["a", "default"]  # created by the write
    with pytest.raises(NotFound, match='image "docker.io/library/busybox:latest" not found in namespace "b"'):
        md.get_image("b", "docker.io/library/busybox:latest")
    assert md.list_images("b") == [] and md.list_images("default") == []
    md.create_image("b", "docker.io/library/busybox:latest", desc(D2))
    assert md.get_image("a", "docker.io/library/busybox:latest").target.digest == D1
    assert md.get_image("b", "docker.io/library/busybox:latest").target.digest == D2
    md.delete_image("b", "docker.io/library/busybox:latest")
    assert md.get_image("a", "docker.io/library/busybox:latest").target.digest == D1
    assert [(i.namespace, i.name) for i in md.list_images(None)] == [("a", "docker.io/library/busybox:latest")]
    with pytest.raises(InvalidArgument):
        md.create_image("Bad", "x", desc())


# --- images ---------------------------------------------------------------------------------


def test_image_tag_retag_delete(md, monkeypatch):
    ns = "default"
    img = md.create_image(ns, "docker.io/library/busybox:latest", desc(D1, 5), {"k": "v"})
    assert img.target == Descriptor(mediatypes.OCI_MANIFEST, D1, 5)
    assert img.target.to_dict() == desc(D1, 5)
    assert img.created_at == img.updated_at
    with pytest.raises(AlreadyExists, match="already exists in namespace"):
        md.create_image(ns, "docker.io/library/busybox:latest", desc(D2))
    # tag: more names for the same target
    md.create_image(ns, "example.com/mine:1", desc(D1, 5))
    md.put_image(ns, "example.com/mine:2", desc(D1, 5))
    assert md.image_names_for_target(ns, D1) == [
        "docker.io/library/busybox:latest", "example.com/mine:1", "example.com/mine:2"]
    # retag: a name moves to another target; labels are kept
    new, old = md.put_image(ns, "docker.io/library/busybox:latest", desc(D2, 7))
    assert old.target.digest == D1 and new.target.digest == D2 and new.labels == {"k": "v"}
    assert new.created_at == img.created_at and new.updated_at >= img.updated_at
    assert md.image_names_for_target(ns, D1) == ["example.com/mine:1", "example.com/mine:2"]
    upd = md.update_image(ns, "example.com/mine:1", target=desc(D3, 1), labels={"a": "b"})
    assert md.get_image(ns, "example.com/mine:1") == upd and upd.labels == {"a": "b"}
    with pytest.raises(NotFound):
        md.update_image(ns, "example.com/none:1", target=desc())
    # filters
    assert [i.name for i in md.list_images(ns, name_prefix="example.com/")] == [
        "example.com/mine:1", "example.com/mine:2"]
    assert [i.name for i in md.list_images(ns, name_prefix="example.com/mine:2")] == ["example.com/mine:2"]
    assert [i.name for i in md.list_images(ns, target_digest=D2)] == ["docker.io/library/busybox:latest"]
    assert [i.name for i in md.list_images(ns, name_prefix="ex%", target_digest=D1)] == []
    # rmi: untag one name; the last one says the content is now unreferenced
    gone = md.delete_image(ns, "example.com/mine:2")
    assert gone.target.digest == D1 and md.image_names_for_target(ns, D1) == []
    with pytest.raises(NotFound, match='image "example.com/mine:2" not found in namespace "default"'):
        md.delete_image(ns, "example.com/mine:2")
    assert md.find_image(ns, "example.com/mine:2") is None
    for bad in (desc("sha256:xyz"), desc(size=-1), {"digest": D1, "size": 1},
                desc(media_type="")):
        with pytest.raises(InvalidArgument):
            md.create_image(ns, "example.com/bad:1", bad)
    for bad in ("", "a b", "x\n", "y" * 1025):
        with pytest.raises(InvalidArgument):
            md.create_image(ns, bad, desc())


# --- containers ---------------------------------------------------------------------------------


def test_merging_into_a_containers_extensions(tmp_path):
    """merge_container_extensions (a container's state at each start and exit) sets the given
    keys of the record's extensions and keeps the others and every other field; the record's
    update time moves; a missing container is NotFound, as update_container's."""
    clock = Clock()
    with MetadataStore(tmp_path, clock=clock) as md:
        c = md.create_container("default", "c1", name="web", spec={"v": 1}, labels={"app": "web"},
                                extensions={"cri": {"sandbox": "s1"}, "state": {"status": "created"}})
        clock.t += 5
        md.write(lambda tx: tx.merge_container_extensions("default", "c1", {"state": {"status": "running"}, "x": 1}))
        u = md.get_container("default", "c1")
        assert u.extensions == {"cri": {"sandbox": "s1"}, "state": {"status": "running"}, "x": 1}
        assert (u.name, u.spec_json(), u.labels, u.created_at) == ("web", {"v": 1}, {"app": "web"}, c.created_at)
        assert u.updated_at == c.updated_at + 5
        with pytest.raises(NotFound, match='container "c2" not found in namespace "default"'):
            md.write(lambda tx: tx.merge_container_extensions("default", "c2", {"x": 2}))
        with pytest.raises(InvalidArgument):
            md.write(lambda tx: tx.merge_container_extensions("default", "c1", {"x": object()}))
        assert md.get_container("default", "c1") == u  # a refused merge changes nothing


def test_container_crud(md):
    ns = "default"
    spec = {"ociVersion": "1.1.0", "process": {"args": ["sh"]}}
    c = md.create_container(ns, "c1", name="web", image="docker.io/library/busybox:latest",
                            snapshotter="native", snapshot_key="c1-rw", runtime="berth-runc",
                            spec=spec, labels={"app": "web"}, extensions={"restart": {"n": 0}})
    assert (c.id, c.name, c.snapshot_key, c.runtime) == ("c1", "web", "c1-rw", "berth-runc")
    assert c.spec_json() == spec and c.extensions == {"restart": {"n": 0}}
    assert md.get_container(ns, "c1") == c == md.get_container_by_name(ns, "web")
    c2 = md.create_container(ns, "c2", spec='{"ociVersion": "1.1.0"}')
    assert c2.name == "c2" and c2.spec == '{"ociVersion": "1.1.0"}' and c2.labels == {}
    with pytest.raises(AlreadyExists, match='container "c1" already exists'):
        md.create_container(ns, "c1", name="other")
    with pytest.raises(AlreadyExists, match='container name "web" is already in use by container "c1"'):
        md.create_container(ns, "c3", name="web")
    md.create_container("other", "c3", name="web")  # names are per namespace
    assert [x.id for x in md.list_containers(ns)] == ["c1", "c2"]
    assert [x.id for x in md.list_containers(ns, image="docker.io/library/busybox:latest")] == ["c1"]
    with pytest.raises(AlreadyExists):
        md.update_container(ns, "c2", name="web")
    u = md.update_container(ns, "c1", name="web2", labels={"app": "web2"}, spec={"v": 2})
    assert (u.name, u.labels, u.spec_json(), u.image) == ("web2", {"app": "web2"}, {"v": 2},
                                                          "docker.io/library/busybox:latest")
    assert u.created_at == c.created_at
    with pytest.raises(NotFound, match='container "web" not found in namespace "default"'):
        md.get_container_by_name(ns, "web")
    assert md.delete_container(ns, "c1").name == "web2"
    with pytest.raises(NotFound, match='container "c1" not found in namespace "default"'):
        md.get_container(ns, "c1")
    with pytest.raises(NotFound):
        md.update_container(ns, "c1", image="x")
    for kwargs in ({"spec": "{not json"}, {"name": "-x"}, {"extensions": {"k": object()}},
                   {"labels": {"a": None}}):
        with pytest.raises(InvalidArgument):
            md.create_container(ns, "c9", **kwargs)
    with pytest.raises(InvalidArgument):
        md.create_container(ns, "bad id")


# --- leases --------------------------------------------------------------------------------------


def test_lease_records_and_expiry(tmp_path):
    clock = Clock()
    with MetadataStore(tmp_path, clock=clock) as md:
        lease = md.create_lease("default", "pull-1", ttl=60, labels={"boot": "x"})
        assert lease.expires_at == clock.t + 60 and not lease.expired(clock.t)
        forever = md.create_lease("default")
        assert forever.id.startswith("lease-") and forever.expires_at is None
        with pytest.raises(AlreadyExists):
            md.create_lease("default", "pull-1")
        md.add_lease_resource("default", "pull-1", CONTENT, D1)
        md.add_lease_resource("default", "pull-1", CONTENT, D1)  # idempotent
        md.add_lease_resource("default", "pull-1", INGEST, "docker.io/x@" + D2)
        md.add_lease_resource("default", "pull-1", SNAPSHOT, "extract-1", "native")
        assert [(r.kind, r.ref, r.snapshotter) for r in md.lease_resources("default", "pull-1")] == [
            (CONTENT, D1, ""), (INGEST, "docker.io/x@" + D2, ""), (SNAPSHOT, "extract-1", "native")]
        roots = md.gc_roots()
        assert roots.content == {D1} and roots.ingests == {"docker.io/x@" + D2}
        assert roots.snapshots == {("native", "extract-1")}
        with pytest.raises(InvalidArgument):
            md.add_lease_resource("default", "pull-1", CONTENT, "not-a-digest")
        with pytest.raises(InvalidArgument):
            md.add_lease_resource("default", "pull-1", "blob", D1)
        with pytest.raises(NotFound, match='lease "nope" not found in namespace "default"'):
            md.add_lease_resource("default", "nope", CONTENT, D1)
        md.remove_lease_resource("default", "pull-1", INGEST, "docker.io/x@" + D2)
        assert md.gc_roots().ingests == set()
        clock.t += 61  # expired: protects nothing, refuses new resources
        assert md.gc_roots().content == set()
        assert [l.id for l in md.expired_leases()] == ["pull-1"]
        with pytest.raises(FailedPrecondition, match="has expired"):
            md.add_lease_resource("default", "pull-1", CONTENT, D2)
        md.update_lease("default", "pull-1", expires_at=clock.t + 60)  # extended
        assert md.gc_roots().content == {D1}
        assert sorted(l.id for l in md.list_leases()) == sorted(["pull-1", forever.id])
        md.delete_lease("default", "pull-1")
        with pytest.raises(NotFound):
            md.lease_resources("default", "pull-1")
        assert [l.id for l in md.list_leases(None)] == [forever.id]
        with md.lease("other", ttl=None) as tmp:
            assert md.get_lease("other", tmp.id).expires_at is None
        assert md.list_leases("other") == []


# --- garbage collection ---------------------------------------------------------------------------


def content_of(cs):
    return set(cs.list())


def snaps_of(sn):
    return {i.name for i in sn.list()}


def test_gc_removes_only_what_nothing_references(md, cs, snap):
    snname, sn = snap
    ns = "default"
    a = pull(md, cs, snap, ns, "example.com/a:1", [L1, L2], index=True)
    b = pull(md, cs, snap, ns, "example.com/b:1", [L1, L3])
    md.put_image(ns, "example.com/a:alias", a.target)  # docker tag
    assert a.layers[0] == b.layers[0] and a.chains[0] == b.chains[0]  # shared layer, stored once
    assert md.list_leases(ns) == []
    everything = content_of(cs)
    assert everything == set(a.blobs) | set(b.blobs)
    assert snaps_of(sn) == set(a.chains) | set(b.chains)

    r = md.collect(cs, sn, snapshotter_name=snname, grace=0)
    assert (r.content, r.snapshots, r.ingests, r.errors) == ([], [], [], [])
    assert content_of(cs) == everything

    md.delete_image(ns, "example.com/a:1")  # another name still holds it
    assert md.image_names_for_target(ns, a.target.digest) == ["example.com/a:alias"]
    r = md.collect(cs, sn, snapshotter_name=snname, grace=0)
    assert r.content == [] and r.snapshots == []

    md.delete_image(ns, "example.com/a:alias")  # the last name: a's own content goes
    r = md.collect(cs, sn, snapshotter_name=snname, grace=0)
    only_a = {a.index, a.manifest, a.config, a.layers[1]}
    assert set(r.content) == only_a
    assert r.content_bytes == sum(a.blobs[d] for d in only_a)
    assert r.snapshots == [(snname, a.chains[1])] and r.errors == []
    assert r.reclaimed_bytes == r.content_bytes + r.snapshot_bytes
    assert content_of(cs) == set(b.blobs)  # the shared layer L1 stays
    assert snaps_of(sn) == set(b.chains)
    assert md.content_refs(a.manifest) == [] and md.snapshot_refs(a.config) == []
    assert md.content_refs(b.manifest) == sorted([b.config, *b.layers])

    r = md.collect(cs, sn, snapshotter_name=snname, grace=0)  # idempotent
    assert (r.content, r.snapshots) == ([], [])

    md.delete_image(ns, "example.com/b:1")
    r = md.collect(cs, sn, snapshotter_name=snname, grace=0)
    assert set(r.content) == set(b.blobs)
    # children before parents: the top of the chain first
    assert r.snapshots == [(snname, b.chains[1]), (snname, b.chains[0])] and r.errors == []
    assert content_of(cs) == set() and snaps_of(sn) == set()


def test_gc_content_is_shared_across_namespaces(md, cs, snap):
    snname, sn = snap
    a = pull(md, cs, snap, "team-a", "example.com/app:1", [L1, L2])
    b = pull(md, cs, snap, "team-b", "example.com/app:1", [L1, L2])
    assert a.target == b.target and content_of(cs) == set(a.blobs)
    md.delete_image("team-b", "example.com/app:1")
    r = md.collect(cs, sn, snapshotter_name=snname, grace=0)
    assert (r.content, r.snapshots) == ([], [])
    assert content_of(cs) == set(a.blobs) and snaps_of(sn) == set(a.chains)
    md.delete_namespace("team-b")
    md.delete_image("team-a", "example.com/app:1")
    r = md.collect(cs, sn, snapshotter_name=snname, grace=0)
    assert set(r.content) == set(a.blobs) and snaps_of(sn) == set()


def test_gc_containers_keep_their_snapshot_and_image(md, cs, snap):
    snname, sn = snap
    ns = "default"
    img = pull(md, cs, snap, ns, "example.com/app:1", [L1, L2])
    sn.prepare("c1-rw", img.chains[-1])
    md.create_container(ns, "c1", image="example.com/app:1", snapshotter=snname, snapshot_key="c1-rw")
    sn.prepare("orphan-rw", img.chains[-1])  # an old active snapshot nothing references

    r = md.collect(cs, sn, snapshotter_name=snname)  # default grace: a young orphan stays
    assert r.snapshots == [] and snaps_of(sn) == set(img.chains) | {"c1-rw", "orphan-rw"}
    r = md.collect(cs, sn, snapshotter_name=snname, grace=0)
    assert r.snapshots == [(snname, "orphan-rw")]

    # rmi --force: the name goes, the container now names the image by digest
    md.delete_image(ns, "example.com/app:1")
    md.update_container(ns, "c1", image=img.target.digest)
    r = md.collect(cs, sn, snapshotter_name=snname, grace=0)
    assert (r.content, r.snapshots) == ([], [])
    assert content_of(cs) == set(img.blobs)
    assert snaps_of(sn) == set(img.chains) | {"c1-rw"}

    md.delete_container(ns, "c1")
    r = md.collect(cs, sn, snapshotter_name=snname, grace=0)
    assert set(r.content) == set(img.blobs)
    assert r.snapshots == [(snname, "c1-rw"), (snname, img.chains[1]), (snname, img.chains[0])]
    assert snaps_of(sn) == set()


def test_gc_leases_protect_in_flight_pulls_until_they_expire(md, cs, snap):
    snname, sn = snap
    ns = "default"
    img = pull(md, cs, snap, ns, "example.com/app:1", [L1, L2], finish=False)
    md.add_lease_resource(ns, img.lease.id, INGEST, "layer-3")
    with cs.writer("layer-3") as w:
        w.write(b"partial download")
    sn.prepare("extract-active", img.chains[-1])
    md.add_lease_resource(ns, img.lease.id, SNAPSHOT, "extract-active", snname)
    with cs.writer("abandoned") as w:  # an ingest no lease holds
        w.write(b"x" * 100)

    r = md.collect(cs, sn, snapshotter_name=snname, grace=0)
    assert (r.content, r.snapshots, r.leases) == ([], [], [])
    assert r.ingests == ["abandoned"] and r.ingest_bytes == 100
    assert [i.ref for i in cs.ingests()] == ["layer-3"]
    assert content_of(cs) == set(img.blobs)

    later = img.lease.expires_at + 1
    dry = md.collect(cs, sn, snapshotter_name=snname, grace=0, now=later, dry_run=True)
    assert dry.dry_run and set(dry.content) == set(img.blobs) and dry.ingests == ["layer-3"]
    assert content_of(cs) == set(img.blobs) and md.list_leases(ns) != []  # nothing touched

    r = md.collect(cs, sn, snapshotter_name=snname, grace=0, now=later)
    assert r.leases == [(ns, img.lease.id)] and md.list_leases(ns) == []
    assert set(r.content) == set(img.blobs) and r.ingests == ["layer-3"]
    assert set(r.snapshots) == {(snname, k) for k in [*img.chains, "extract-active"]}
    assert r.snapshots[0] == (snname, "extract-active") and r.errors == []
    assert content_of(cs) == set() and cs.ingests() == [] and snaps_of(sn) == set()
    assert md.list_images(ns) == []  # no half image


def test_gc_after_a_daemon_died_mid_pull(tmp_path, cs, snap):
    snname, sn = snap
    with MetadataStore(tmp_path) as md:
        kept = pull(md, cs, snap, "default", "example.com/kept:1", [L1])
        dead = pull(md, cs, snap, "default", "example.com/half:1", [L1, L2, L3], finish=False,
                    lease_labels={"berth.boot-id": "old-boot"})
        md.add_lease_resource("default", dead.lease.id, INGEST, "half-layer")
        with cs.writer("half-layer") as w:
            w.write(b"some bytes")
    # next start: leases of an earlier boot are known dead
    with MetadataStore(tmp_path) as md:
        with md.tx() as tx:
            for lease in tx.list_leases(None):
                if lease.labels.get("berth.boot-id") != "new-boot":
                    tx.delete_lease(lease.namespace, lease.id)
        r = md.collect(cs, sn, snapshotter_name=snname, grace=0, cleanup=True)
        assert set(r.content) == set(dead.blobs) - set(kept.blobs)
        assert r.ingests == ["half-layer"]
        assert content_of(cs) == set(kept.blobs) and snaps_of(sn) == set(kept.chains)
        assert [i.name for i in md.list_images("default")] == ["example.com/kept:1"]


def test_gc_keeps_young_unleased_ingests_and_forgets_refs_of_missing_blobs(md, cs):
    with cs.writer("young") as w:
        w.write(b"abc")
    md.add_content_refs(D1, [D2, D3])  # refs from a blob that is not there and not alive
    r = md.collect(cs)  # default grace of an hour
    assert r.ingests == [] and [i.ref for i in cs.ingests()] == ["young"]
    assert md.content_refs(D1) == []
    r = md.collect(cs, now=time.time() + 2 * 3600)
    assert r.ingests == ["young"] and r.ingest_bytes == 3
    with pytest.raises(InvalidArgument):
        md.add_content_refs(D1, [D2, "bogus"])
    assert md.content_refs(D1) == []  # validated before anything was written


# --- transactions, crashes, threads ------------------------------------------------------------------


def test_a_transaction_that_raises_leaves_nothing(md):
    with pytest.raises(RuntimeError), md.tx() as tx:
        tx.create_namespace("new")
        tx.create_image("new", "example.com/a:1", desc())
        tx.add_content_refs(D1, [D2])
        tx.create_container("new", "c1")
        raise RuntimeError("boom")
    assert [n.name for n in md.list_namespaces()] == ["default"]
    assert md.content_refs(D1) == [] and md.list_images(None) == []
    # an operation failing half-way through a tx undoes the earlier ones too
    md.create_image("default", "example.com/taken:1", desc())
    with pytest.raises(AlreadyExists), md.tx() as tx:
        tx.delete_image("default", "example.com/taken:1")
        tx.create_image("default", "example.com/other:1", desc())
        tx.create_image("default", "example.com/other:1", desc())
    assert [i.name for i in md.list_images("default")] == ["example.com/taken:1"]
    # nested: a failing inner block is a savepoint, the outer one commits
    with md.tx() as tx:
        tx.create_image("default", "example.com/outer:1", desc())
        with pytest.raises(AlreadyExists), md.tx() as inner:
            inner.create_image("default", "example.com/inner:1", desc())
            inner.create_image("default", "example.com/outer:1", desc())
        md.create_image("default", "example.com/joined:1", desc())  # joins the outer tx
    assert [i.name for i in md.list_images("default")] == [
        "example.com/joined:1", "example.com/outer:1", "example.com/taken:1"]
    with md.tx(readonly=True) as tx:
        with pytest.raises(FailedPrecondition, match="read-only"):
            tx.create_image("default", "example.com/ro:1", desc())
        with pytest.raises(FailedPrecondition, match="read-only"):
            md.create_image("default", "example.com/ro:1", desc())
        assert len(md.list_images("default")) == 3  # a nested read is fine


CRASH_IN_TX = textwrap.dedent("""
    import os, signal, sys
    from berth.metadata import MetadataStore
    s = MetadataStore(sys.argv[1])
    d = {"mediaType": "m", "digest": "sha256:" + "1" * 64, "size": 1}
    s.create_image("default", "committed", d)
    with s.tx() as tx:
        tx.create_image("default", "uncommitted", d)
        tx.create_container("default", "c1", image="uncommitted")
        for i in range(2000):
            tx.add_content_refs("sha256:" + "%064x" % i, ["sha256:" + "2" * 64])
        if sys.argv[2] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(3)
""")

CRASH_LOOP = textwrap.dedent("""
    import sys
    from berth.metadata import MetadataStore
    s = MetadataStore(sys.argv[1])
    d = {"mediaType": "m", "digest": "sha256:" + "1" * 64, "size": 1}
    i = 0
    while True:
        with s.tx() as tx:
            tx.create_image("default", "img-%d" % i, d)
            tx.create_container("default", "c-%d" % i, image="img-%d" % i)
        if i == 20:
            print("ready", flush=True)
        i += 1
""")


def _child(script, *args, **kw):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO, env=env, **kw)


@pytest.mark.parametrize("how", ["kill", "exit"])
def test_crash_inside_a_transaction_leaves_it_out(tmp_path, how):
    p = _child(CRASH_IN_TX, str(tmp_path), how)
    assert p.wait(timeout=60) == (-signal.SIGKILL if how == "kill" else 3)
    with MetadataStore(tmp_path) as md:
        assert [i.name for i in md.list_images("default")] == ["committed"]
        assert md.list_containers("default") == [] and md.ref_parents() == set()
        assert md._conn().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        md.create_image("default", "uncommitted", desc())  # and it is writable


def test_killed_while_writing_is_consistent_on_reopen(tmp_path):
    p = _child(CRASH_LOOP, str(tmp_path), stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ready\n"
        time.sleep(0.05)
    finally:
        p.kill()
        p.wait(timeout=30)
        p.stdout.close()
    with MetadataStore(tmp_path) as md:
        images = {i.name for i in md.list_images("default")}
        containers = {c.image for c in md.list_containers("default")}
        assert len(images) > 20 and images == containers  # pairs, never half of one
        assert md._conn().execute("PRAGMA integrity_check").fetchone()[0] == "ok"


NOT_DURABLE_THEN_KILLED = textwrap.dedent("""
    import os, signal, sys
    from berth.metadata import MetadataStore
    md = MetadataStore(sys.argv[1])
    md.create_container("default", "c1", spec={"v": 1})
    md.write(lambda tx: tx.update_container("default", "c1", extensions={"state": "running"}), durable=False)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_write_that_is_not_durable_survives_the_process_and_leaves_the_mode_as_it_was(tmp_path, md):
    """write(durable=False) skips the fsync of its commit only: what it wrote is in the WAL for a
    berthd that was killed; the connection is back to synchronous=FULL afterwards (2), and a
    nested write follows the outer transaction."""
    p = _child(NOT_DURABLE_THEN_KILLED, str(tmp_path / "k"))
    assert p.wait(timeout=60) == -signal.SIGKILL
    with MetadataStore(tmp_path / "k") as again:
        assert again.get_container("default", "c1").extensions == {"state": "running"}
    md.create_container("default", "c2", spec={})
    md.write(lambda tx: tx.update_container("default", "c2", labels={"a": "1"}), durable=False)
    assert md._conn().execute("PRAGMA synchronous").fetchone()[0] == 2
    with md.tx() as tx:
        tx.update_container("default", "c2", labels={"a": "2"})
        md.write(lambda t: t.update_container("default", "c2", labels={"a": "3"}), durable=False)
    assert md.get_container("default", "c2").labels == {"a": "3"}
    assert md._conn().execute("PRAGMA synchronous").fetchone()[0] == 2


def test_concurrent_use_from_threads(md):
    errors, wins = [], []

    def writer(i):
        try:
            for j in range(25):
                with md.tx() as tx:
                    tx.create_image(f"ns{i % 3}", f"example.com/t{i}:{j}", desc())
                    tx.add_content_refs(D1, [sha256_digest(f"{i}-{j}".encode())])
                md.list_images(f"ns{i % 3}")
            try:
                md.create_image("default", "example.com/race:1", desc())
                wins.append(i)
            except AlreadyExists:
                pass
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and len(wins) == 1
    assert len(md.list_images(None)) == 8 * 25 + 1
    assert len(md.content_refs(D1)) == 8 * 25
    assert {n.name for n in md.list_namespaces()} == {"default", "ns0", "ns1", "ns2"}
    t = threading.Thread(target=md.list_namespaces)  # a new connection prunes the old ones
    t.start()
    t.join()
    assert len(md._conns) == 2  # the main thread's and the last thread's


def test_readers_do_not_wait_for_a_writer_and_writers_time_out(tmp_path):
    with MetadataStore(tmp_path) as md, MetadataStore(tmp_path, busy_timeout=0.2) as other:
        md.create_image("default", "example.com/a:1", desc())
        with md.tx() as tx:  # holds the write lock, as a collection does
            tx.create_image("default", "example.com/b:1", desc())
            assert [i.name for i in other.list_images("default")] == ["example.com/a:1"]
            t0 = time.monotonic()
            with pytest.raises(Unavailable, match="metadata database is busy"):
                other.create_image("default", "example.com/c:1", desc())
            assert time.monotonic() - t0 >= 0.15
        assert len(other.list_images("default")) == 2


def test_gc_runs_safely_alongside_pulls(tmp_path, cs):
    sn = NativeSnapshotter(str(tmp_path / "native"))
    with MetadataStore(tmp_path) as md:
        done = threading.Event()
        errors, pulled = [], []

        def puller(i):
            try:
                for j in range(4):
                    layers = [L1, layer_tar(f"p{i}-{j}")]
                    pulled.append(pull(md, cs, ("native", sn), "default", f"example.com/p{i}:{j}",
                                       layers))
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        def collector():
            try:
                while not done.is_set():
                    md.collect(cs, sn, snapshotter_name="native", grace=0)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        gc_thread = threading.Thread(target=collector)
        gc_thread.start()
        pullers = [threading.Thread(target=puller, args=(i,)) for i in range(3)]
        for t in pullers:
            t.start()
        for t in pullers:
            t.join(timeout=120)
        done.set()
        gc_thread.join(timeout=120)
        if errors:
            raise errors[0]
        md.collect(cs, sn, snapshotter_name="native", grace=0)
        for img in pulled:  # every recorded image is whole
            assert set(img.blobs) <= content_of(cs)
            assert set(img.chains) <= snaps_of(sn)
        assert all(i.kind == Kind.COMMITTED for i in sn.list())


def test_networks_and_volumes_are_per_namespace_objects(tmp_path):
    from berth.metadata import MetadataStore
    s = MetadataStore(tmp_path)
    n = s.create_object("default", "network", "abc123", "front", {"driver": "bridge"}, {"a": "b"})
    assert n.name == "front" and n.data == {"driver": "bridge"} and n.labels == {"a": "b"}
    with pytest.raises(AlreadyExists, match="network with name front already exists"):
        s.create_object("default", "network", "other", "front", {})
    s.create_object("k8s.io", "network", "abc123", "front", {})  # another namespace: its own names
    s.create_object("default", "volume", "front", "front", {})  # another kind: its own names
    assert [o.id for o in s.list_objects("default", "network")] == ["abc123"]
    assert len(s.list_objects(None, "network")) == 2
    assert s.find_object("default", "network", "front").id == "abc123"
    assert s.find_object("default", "network", "back") is None
    s.update_object("default", "network", "abc123", data={"driver": "macvlan"})
    assert s.get_object("default", "network", "abc123").data == {"driver": "macvlan"}
    with pytest.raises(FailedPrecondition, match="it still has 1 network, 1 volume$"):
        s.delete_object("k8s.io", "network", "abc123")
        s.delete_namespace("default")
    s.delete_object("default", "network", "abc123")
    with pytest.raises(NotFound):
        s.get_object("default", "network", "abc123")
    with pytest.raises(InvalidArgument):
        s.list_objects("default", "thing")


def test_a_thread_releases_its_connection(md):
    """A short-lived thread closes its connection at its end (its page cache goes with it, not
    when another thread next opens one), and the store goes on working in that thread."""
    md.list_namespaces()
    before = len(md._conns)
    seen = {}

    def work():
        md.list_namespaces()
        seen["during"] = len(md._conns)
        md.release_thread()
        seen["after"] = len(md._conns)
        seen["names"] = [n.name for n in md.list_namespaces()]  # opens one again
        md.release_thread()
    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen["during"] == before + 1 and seen["after"] == before and len(md._conns) == before
    assert "default" in seen["names"]
    with md.tx() as tx:  # inside a transaction it keeps its connection
        md.release_thread()
        assert tx.get_namespace("default").name == "default"
    assert len(md._conns) == before


def test_a_new_thread_takes_the_connection_an_ended_one_left(md):
    """A container's exit is handled in a thread of its own: the next new thread takes the
    connection an ended thread left (no new connection, page cache and schema read each time; a
    few are kept at most) and sees what other connections wrote meanwhile."""
    conns, names = [], []

    def work(i):
        conns.append(md._conn())
        names.append(sorted(n.name for n in md.list_namespaces()))
        md.create_namespace(f"t{i}")
    for i in range(6):
        md.create_namespace(f"m{i}")  # this thread's connection writes between the threads
        t = threading.Thread(target=work, args=(i,))
        t.start()
        t.join()
        assert names[-1] == sorted(["default"] + [f"m{j}" for j in range(i + 1)] + [f"t{j}" for j in range(i)])
    assert len({id(c) for c in conns}) == 1
    ts = [threading.Thread(target=work, args=(10 + i,)) for i in range(8)]  # at once: each needs its own
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    t = threading.Thread(target=work, args=(20,))
    t.start()
    t.join()
    assert len(md._idle) <= 4 and len(md._conns) <= 2


def test_image_generation_moves_with_image_records_only(md):
    """What is worked out of images' names (the CRI's image names of a container) is kept across
    the store's other writes: image_generation moves after a commit that wrote an image record,
    nested or not, and not for a container's writes nor for a rolled-back image write."""
    g = md.image_generation
    md.create_container("default", "c1", image="example.com/a:1")
    md.update_container("default", "c1", labels={"a": "b"})
    assert md.image_generation == g and md.generation > 0
    md.put_image("default", "example.com/a:1", desc())
    assert md.image_generation == g + 1
    with md.tx() as tx:
        with md.tx() as inner:  # nested: the outer commit says it
            inner.put_image("default", "example.com/a:2", desc())
        assert md.image_generation == g + 1
    assert md.image_generation == g + 2
    with pytest.raises(RuntimeError):
        with md.tx() as tx:
            tx.delete_image("default", "example.com/a:2")
            raise RuntimeError("rolled back")
    assert md.image_generation == g + 2 and md.find_image("default", "example.com/a:2") is not None
    md.delete_image("default", "example.com/a:2")
    assert md.image_generation == g + 3
    md.delete_container("default", "c1")
    assert md.image_generation == g + 3
