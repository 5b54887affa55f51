"""berth.snapshots: overlay and native snapshotters, their mounts performed for real.

Mounts are done here with mount(8) (the snapshotters only describe them); the
fixture unmounts everything under its scratch directory and removes it, even
when a test fails.
"""

import errno
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile

import pytest

from berth.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from berth.images.layer import apply_layer
from berth.snapshots import Info, Kind, Mount
from berth.snapshots import overlay as overlay_mod
from berth.snapshots.native import NativeSnapshotter, copy_tree
from berth.snapshots.overlay import OverlaySnapshotter

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount, chown, mknod)")


def _mounts_under(path):
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path + "/"):
                out.append(mp)
    return out


@pytest.fixture
def scratch():
    base = tempfile.mkdtemp(prefix="berth-snap-test-")
    try:
        yield base
    finally:
        for mp in sorted(_mounts_under(base), key=len, reverse=True):
            if subprocess.run(["umount", mp], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", mp], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def mount_all(mounts, target):
    for m in mounts:
        subprocess.run(["mount", "-t", m.type, "-o", ",".join(m.options), m.source, target],
                       check=True, capture_output=True)


def umount(target):
    subprocess.run(["umount", target], check=True)


KINDS = ["overlay", "native"]


@pytest.fixture(params=KINDS)
def snap(request, scratch):
    """(snapshotter, whiteout mode for apply_layer, scratch dir)."""
    root = os.path.join(scratch, "root")
    if request.param == "overlay":
        if not overlay_mod.supported(root):
            pytest.skip("overlayfs is not usable here")
        return OverlaySnapshotter(root), "overlay", scratch
    return NativeSnapshotter(root), "delete", scratch


def layer(*entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_600_000_000
            if name.endswith("/"):
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o644
                tf.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    return buf


def read(path):
    with open(path, "rb") as fh:
        return fh.read()


def build_chain(sn, wmode):
    """Two committed layers: base, then a change with whiteouts."""
    sn.prepare("base-active", None)
    apply_layer(layer(("etc/", b""), ("etc/os-release", b"berth 1\n"), ("etc/old", b"old\n"),
                      ("var/", b""), ("var/lib/", b""), ("var/lib/x", b"x\n")),
                sn.fs_path("base-active"), whiteout_mode=wmode)
    sn.commit("base", "base-active")
    sn.prepare("app-active", "base")
    apply_layer(layer(("etc/", b""), ("etc/.wh.old", b""), ("etc/app.conf", b"on\n"),
                      ("var/lib/", b""), ("var/lib/.wh..wh..opq", b""), ("var/lib/y", b"y\n")),
                sn.fs_path("app-active"), whiteout_mode=wmode)
    sn.commit("app", "app-active")


EXPECTED_APP = {"etc/os-release": b"berth 1\n", "etc/app.conf": b"on\n", "var/lib/y": b"y\n"}


def files(root):
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = read(p) if os.path.isfile(p) else None
    return out


def test_prepare_commit_chain_and_merged_content(snap):
    sn, wmode, scratch = snap
    build_chain(sn, wmode)
    mounts = sn.prepare("ctr", "app")
    assert all(isinstance(m, Mount) for m in mounts)
    target = os.path.join(scratch, "rootfs")
    os.mkdir(target)
    mount_all(mounts, target)
    try:
        assert files(target) == EXPECTED_APP
        with open(os.path.join(target, "etc/written"), "w") as fh:
            fh.write("by the container")
        os.unlink(os.path.join(target, "etc/os-release"))
    finally:
        umount(target)
    ctr_fs = sn.fs_path("ctr")
    assert read(os.path.join(ctr_fs, "etc/written")) == b"by the container"
    # parents are untouched by the container's writes
    assert read(os.path.join(sn.fs_path("base"), "etc/os-release")) == b"berth 1\n"
    assert not os.path.exists(os.path.join(sn.fs_path("app"), "etc/written"))
    if wmode == "overlay":
        st = os.lstat(os.path.join(ctr_fs, "etc/os-release"))
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0  # overlay's own whiteout
    else:
        assert not os.path.exists(os.path.join(ctr_fs, "etc/os-release"))
    assert sn.usage("ctr") > 0


def test_overlay_mounts_output(scratch):
    root = os.path.join(scratch, "root")
    sn = OverlaySnapshotter(root)
    sdir = os.path.join(sn.root, "snapshots")
    m = sn.prepare("l1-active")
    fs1 = os.path.join(sdir, "1", "fs")
    assert m == [Mount("bind", fs1, ["rbind", "rw"])]
    assert os.path.isdir(os.path.join(sdir, "1", "work"))
    sn.commit("l1", "l1-active")
    m = sn.prepare("l2-active", "l1")
    fs2, work2 = os.path.join(sdir, "2", "fs"), os.path.join(sdir, "2", "work")
    assert m == [Mount("overlay", "overlay",
                       ["index=off", f"workdir={work2}", f"upperdir={fs2}", f"lowerdir={fs1}"])]
    assert sn.mounts("l2-active") == m
    sn.commit("l2", "l2-active")
    m = sn.prepare("top", "l2")
    fs3, work3 = os.path.join(sdir, "3", "fs"), os.path.join(sdir, "3", "work")
    assert m == [Mount("overlay", "overlay",
                       ["index=off", f"workdir={work3}", f"upperdir={fs3}", f"lowerdir={fs2}:{fs1}"])]
    assert sn.view("v1", "l1") == [Mount("bind", fs1, ["rbind", "ro"])]
    assert sn.view("v2", "l2") == [Mount("overlay", "overlay", ["index=off", f"lowerdir={fs2}:{fs1}"])]
    assert sn.view("v0")[0].options == ["rbind", "ro"]
    with pytest.raises(FailedPrecondition):
        sn.mounts("l1")  # committed: not mountable
    assert sn.fs_path("l2") == fs2
    with pytest.raises(InvalidArgument):
        OverlaySnapshotter(os.path.join(scratch, "a,b"))


def test_native_mounts_output(scratch):
    sn = NativeSnapshotter(os.path.join(scratch, "root"))
    fs1 = os.path.join(sn.root, "snapshots", "1", "fs")
    assert sn.prepare("a") == [Mount("bind", fs1, ["rbind", "rw"])]
    sn.commit("A", "a")
    fs2 = os.path.join(sn.root, "snapshots", "2", "fs")
    assert sn.view("v", "A") == [Mount("bind", fs2, ["rbind", "ro"])]


def test_view_is_read_only(snap):
    sn, wmode, scratch = snap
    build_chain(sn, wmode)
    for key, parent in (("view-app", "app"), ("view-base", "base")):
        target = os.path.join(scratch, key)
        os.mkdir(target)
        mount_all(sn.view(key, parent), target)
        try:
            assert read(os.path.join(target, "etc/os-release")) == b"berth 1\n"
            with pytest.raises(OSError) as e:
                open(os.path.join(target, "etc/new"), "w")
            assert e.value.errno == errno.EROFS
        finally:
            umount(target)
        assert sn.stat(key).kind == Kind.VIEW


def test_metadata_and_errors(snap):
    sn, wmode, _ = snap
    build_chain(sn, wmode)
    sn.prepare("work", "app")
    sn.view("look", "base")

    info = sn.stat("app")
    assert isinstance(info, Info)
    assert (info.kind, info.name, info.parent) == (Kind.COMMITTED, "app", "base")
    assert info.created > 0
    assert sn.stat("base").parent is None
    assert sn.stat("work").kind == Kind.ACTIVE
    assert {(i.name, i.kind) for i in sn.list()} == {
        ("base", Kind.COMMITTED), ("app", Kind.COMMITTED),
        ("work", Kind.ACTIVE), ("look", Kind.VIEW),
    }

    with pytest.raises(NotFound):
        sn.stat("nope")
    with pytest.raises(NotFound):
        sn.prepare("x", "nope")
    with pytest.raises(AlreadyExists):
        sn.prepare("work", "app")
    with pytest.raises(AlreadyExists):
        sn.view("app", None)  # names and keys share one namespace
    with pytest.raises(FailedPrecondition):
        sn.prepare("x", "work")  # an active snapshot cannot be a parent
    with pytest.raises(FailedPrecondition):
        sn.commit("y", "look")  # a view cannot be committed
    with pytest.raises(FailedPrecondition):
        sn.commit("y", "base")
    with pytest.raises(AlreadyExists):
        sn.commit("base", "work")
    with pytest.raises(InvalidArgument):
        sn.prepare("", None)

    # remove refuses parents, in order works
    with pytest.raises(FailedPrecondition):
        sn.remove("base")
    with pytest.raises(FailedPrecondition):
        sn.remove("app")
    sn.remove("work")
    sn.remove("look")
    sn.remove("app")
    sn.remove("base")
    with pytest.raises(NotFound):
        sn.remove("base")
    assert sn.list() == []
    assert os.listdir(os.path.join(sn.root, "snapshots")) == []
    assert os.listdir(os.path.join(sn.root, "removing")) == []


def test_metadata_file_is_json_and_partial_dirs_are_ignored(snap):
    sn, _, _ = snap
    sn.prepare("k")
    sdir = os.path.join(sn.root, "snapshots")
    (sid,) = os.listdir(sdir)
    with open(os.path.join(sdir, sid, "meta.json")) as fh:
        meta = json.load(fh)
    assert meta["key"] == "k" and meta["kind"] == "active" and meta["parent"] is None
    assert [n for n in os.listdir(os.path.join(sdir, sid)) if n.startswith(".")] == []
    # an interrupted prepare: a directory without meta.json
    os.makedirs(os.path.join(sdir, "99", "fs"))
    assert [i.name for i in sn.list()] == ["k"]
    sn.prepare("k2")
    assert sn.fs_path("k2") == os.path.join(sdir, "100", "fs")
    sn.cleanup()
    assert sorted(os.listdir(sdir)) == sorted([sid, "100"])
    sn.commit("c", "k")
    with open(os.path.join(sdir, sid, "meta.json")) as fh:
        meta = json.load(fh)
    assert meta["key"] == "c" and meta["kind"] == "committed"


def test_a_record_cut_short_by_a_crash_is_an_interrupted_prepare(snap):
    """A new snapshot's meta.json is written in place (no temporary file): one a crash cut short
    (empty, zeros, a prefix) is an interrupted prepare, ignored and cleaned up; a snapshot whose
    record is unreadable but which holds files is left alone for a human."""
    sn, _, _ = snap
    sn.prepare("k")
    sdir = os.path.join(sn.root, "snapshots")
    (sid,) = os.listdir(sdir)
    whole = open(os.path.join(sdir, sid, "meta.json"), "rb").read()
    for n, content in (("97", b""), ("98", b"\0" * 40), ("99", whole[: len(whole) // 2])):
        os.makedirs(os.path.join(sdir, n, "fs"))
        with open(os.path.join(sdir, n, "meta.json"), "wb") as fh:
            fh.write(content)
    os.makedirs(os.path.join(sdir, "96", "fs"))
    with open(os.path.join(sdir, "96", "fs", "data"), "w") as fh:
        fh.write("kept")
    with open(os.path.join(sdir, "96", "meta.json"), "w") as fh:
        fh.write("{")
    assert [i.name for i in sn.list()] == ["k"]
    sn.prepare("k2")  # a new id past every directory, readable or not
    assert sn.fs_path("k2") == os.path.join(sdir, "100", "fs")
    assert [n for n in os.listdir(os.path.join(sdir, "100")) if n.startswith(".")] == []
    sn.cleanup()
    assert sorted(os.listdir(sdir)) == sorted([sid, "100", "96"])
    assert sorted(i.name for i in sn.list()) == ["k", "k2"]


def test_usage_counts_own_content(snap):
    sn, _, _ = snap
    sn.prepare("a")
    empty = sn.usage("a")
    with open(os.path.join(sn.fs_path("a"), "blob"), "wb") as fh:
        fh.write(os.urandom(256 * 1024))
    os.link(os.path.join(sn.fs_path("a"), "blob"), os.path.join(sn.fs_path("a"), "blob2"))
    grown = sn.usage("a") - empty
    assert 256 * 1024 <= grown < 2 * 256 * 1024  # the hardlink is counted once


def test_diff_size_is_a_layers_own_files_as_dockerd_sizes_it(snap):
    """A committed snapshot's layer size (dockerd's image and history sizes): the files it adds
    or changes, not directories or whiteouts, whether the snapshotter keeps the changes apart
    (overlay) or a whole tree (native: compared with the parent, as dockerd's vfs does); kept
    once measured; None for a snapshot still active."""
    sn, wmode, _ = snap
    build_chain(sn, wmode)
    assert sn.diff_size("base") == len(b"berth 1\n" + b"old\n" + b"x\n")
    assert sn.diff_size("app") == len(b"on\n" + b"y\n")  # os-release is the parent's, unchanged
    sn.prepare("upd-active", "app")
    apply_layer(layer(("etc/", b""), ("etc/os-release", b"berth 2!\n")), sn.fs_path("upd-active"), whiteout_mode=wmode)
    fs = sn.fs_path("upd-active")
    with open(os.path.join(fs, "big"), "wb") as fh:
        fh.write(b"b" * 5000)
    os.link(os.path.join(fs, "big"), os.path.join(fs, "big2"))
    assert sn.diff_size("upd-active") is None
    sn.commit("upd", "upd-active")
    assert sn.diff_size("upd") == len(b"berth 2!\n") + 5000  # modified, added, a hardlink once
    with open(os.path.join(sn.fs_path("upd"), "..", "diff-size")) as fh:
        assert fh.read() == str(len(b"berth 2!\n") + 5000)


def test_overlay_supported_probe_leaves_nothing(scratch):
    root = os.path.join(scratch, "probe")
    assert overlay_mod.supported(root) is True
    assert os.listdir(root) == []
    assert _mounts_under(scratch) == []


def test_native_copy_preserves_everything(scratch):
    sn = NativeSnapshotter(os.path.join(scratch, "root"))
    sn.prepare("base-active")
    fs = sn.fs_path("base-active")
    os.makedirs(os.path.join(fs, "bin"))
    os.makedirs(os.path.join(fs, "tmp"))
    os.chmod(os.path.join(fs, "tmp"), 0o1777)
    tool = os.path.join(fs, "bin", "tool")
    with open(tool, "wb") as fh:
        fh.write(b"\x7fELF" + os.urandom(70_000))
    os.chown(tool, 1000, 1001)
    os.chmod(tool, 0o4755)
    os.setxattr(tool, "user.note", b"kept")
    os.setxattr(tool, "trusted.note", b"kept too")
    os.link(tool, os.path.join(fs, "bin", "tool-hard"))
    os.symlink("tool", os.path.join(fs, "bin", "sh"))
    os.chown(os.path.join(fs, "bin", "sh"), 5, 6, follow_symlinks=False)
    os.symlink("/does/not/exist", os.path.join(fs, "dangling"))
    os.symlink("/etc", os.path.join(fs, "etc-link"))  # must be copied, not followed
    os.link(os.path.join(fs, "dangling"), os.path.join(fs, "dangling-hard"), follow_symlinks=False)
    os.mknod(os.path.join(fs, "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(os.path.join(fs, "null"), 0o666)
    os.mkfifo(os.path.join(fs, "fifo"), 0o600)
    os.chmod(fs, 0o751)
    os.utime(tool, ns=(1_000_000_000, 2_000_000_000))
    os.utime(os.path.join(fs, "bin", "sh"), ns=(3_000_000_000, 4_000_000_000), follow_symlinks=False)
    os.utime(os.path.join(fs, "bin"), ns=(5_000_000_000, 6_000_000_000))
    sn.commit("base", "base-active")

    sn.prepare("child", "base")
    c = sn.fs_path("child")
    src_tool = os.lstat(tool)
    t = os.lstat(os.path.join(c, "bin", "tool"))
    assert read(os.path.join(c, "bin", "tool")) == read(tool)
    assert t.st_ino != src_tool.st_ino  # a copy, not a link into the parent
    assert (t.st_uid, t.st_gid, stat.S_IMODE(t.st_mode), t.st_mtime_ns) == (1000, 1001, 0o4755, 2_000_000_000)
    assert os.getxattr(os.path.join(c, "bin", "tool"), "user.note") == b"kept"
    assert os.getxattr(os.path.join(c, "bin", "tool"), "trusted.note") == b"kept too"
    assert os.lstat(os.path.join(c, "bin", "tool-hard")).st_ino == t.st_ino
    assert t.st_nlink == 2
    sh = os.lstat(os.path.join(c, "bin", "sh"))
    assert stat.S_ISLNK(sh.st_mode) and os.readlink(os.path.join(c, "bin", "sh")) == "tool"
    assert (sh.st_uid, sh.st_gid, sh.st_mtime_ns) == (5, 6, 4_000_000_000)
    assert os.readlink(os.path.join(c, "dangling")) == "/does/not/exist"
    assert os.lstat(os.path.join(c, "dangling-hard")).st_ino == os.lstat(os.path.join(c, "dangling")).st_ino
    assert os.path.islink(os.path.join(c, "etc-link"))
    n = os.lstat(os.path.join(c, "null"))
    assert stat.S_ISCHR(n.st_mode) and n.st_rdev == os.makedev(1, 3) and stat.S_IMODE(n.st_mode) == 0o666
    assert stat.S_ISFIFO(os.lstat(os.path.join(c, "fifo")).st_mode)
    assert stat.S_IMODE(os.lstat(os.path.join(c, "tmp")).st_mode) == 0o1777
    assert stat.S_IMODE(os.lstat(c).st_mode) == 0o751
    assert os.lstat(os.path.join(c, "bin")).st_mtime_ns == 6_000_000_000

    # the child's changes never reach the parent
    with open(os.path.join(c, "bin", "tool"), "wb") as fh:
        fh.write(b"changed")
    assert read(tool) != b"changed"


def test_copy_tree_into_existing_dir(scratch):
    src, dst = os.path.join(scratch, "src"), os.path.join(scratch, "dst")
    os.makedirs(os.path.join(src, "a", "b", "c"))
    with open(os.path.join(src, "a", "b", "c", "f"), "w") as fh:
        fh.write("deep")
    os.mkdir(dst)
    copy_tree(src, dst)
    assert read(os.path.join(dst, "a", "b", "c", "f")) == b"deep"


def test_snapshotters_of_one_root_agree_and_a_remade_root_is_read_again(scratch):
    """The records are kept in memory (a start no longer reads every snapshot's meta.json):
    two snapshotters of one root see each other's prepare, commit and remove at once, and a
    root that was removed and made again is read from disk again."""
    root = os.path.join(scratch, "shared")
    a, b = NativeSnapshotter(root), NativeSnapshotter(root)
    a.prepare("x")
    assert [i.name for i in b.list()] == ["x"]
    b.commit("y", "x")
    assert a.stat("y").kind == Kind.COMMITTED
    with pytest.raises(NotFound):
        a.stat("x")
    b.prepare("z", "y")
    assert a.mounts("z") == b.mounts("z")
    a.remove("z")
    a.remove("y")
    assert b.list() == []
    a.prepare("gone")
    shutil.rmtree(root)
    c = NativeSnapshotter(root)
    assert c.list() == [] and a.list() == []
    c.prepare("w")
    assert [i.name for i in a.list()] == ["w"]
    assert os.path.isdir(a.fs_path("w"))
