"""berth.images.layer.apply_layer: real tar layers built in memory, applied as root.

Every test works in its own scratch directory next to a sentinel directory
("outside"); the fixture unmounts anything left mounted there and removes it,
even when the test fails. Hostile layers must either raise InvalidArgument or
stay inside dest, and never touch anything outside it.
"""

import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile

import pytest

from berth.errors import InvalidArgument
from berth.images.layer import apply_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, chown, trusted xattrs)")

MODES = ["overlay", "delete"]


# -- helpers ---------------------------------------------------------------


def _mounts_under(path):
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path + "/"):
                out.append(mp)
    return out


@pytest.fixture
def scratch():
    base = tempfile.mkdtemp(prefix="berth-layer-test-")
    try:
        yield base
    finally:
        for mp in sorted(_mounts_under(base), key=len, reverse=True):
            if subprocess.run(["umount", mp], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", mp], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def entry(name, kind=tarfile.REGTYPE, data=b"", *, mode=None, uid=0, gid=0, mtime=1_600_000_000,
          linkname="", dev=(0, 0), xattrs=None):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode if mode is not None else (0o755 if kind == tarfile.DIRTYPE else 0o644)
    ti.uid, ti.gid = uid, gid
    ti.mtime = mtime
    ti.linkname = linkname
    ti.devmajor, ti.devminor = dev
    if xattrs:
        ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    ti.size = len(data) if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    return ti, data


def d(name, **kw):
    return entry(name, tarfile.DIRTYPE, **kw)


def f(name, data=b"", **kw):
    return entry(name, tarfile.REGTYPE, data, **kw)


def sym(name, target, **kw):
    return entry(name, tarfile.SYMTYPE, linkname=target, **kw)


def hard(name, target, **kw):
    return entry(name, tarfile.LNKTYPE, linkname=target, **kw)


def wh(name):
    return f(name)


def make_tar(entries, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if ti.size else None)
    return buf.getvalue()


class OneWayStream:
    """A stream that only reads (no seek/tell), counting and hashing what flows."""

    def __init__(self, data):
        self._f = io.BytesIO(data)
        self.sha = hashlib.sha256()
        self.bytes_read = 0

    def read(self, n=-1):
        chunk = self._f.read(n)
        self.sha.update(chunk)
        self.bytes_read += len(chunk)
        return chunk


def apply(data, dest, mode="overlay", **kw):
    return apply_layer(OneWayStream(data), dest, whiteout_mode=mode, **kw)


def listing(root):
    """{relative path: description} of a tree, never following links."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = "-> " + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as fh:
                    out[rel] = fh.read()
            elif stat.S_ISCHR(st.st_mode):
                out[rel] = f"chr {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
            else:
                out[rel] = oct(stat.S_IFMT(st.st_mode))
    return out


def fingerprint(root):
    """Everything observable about a tree, to prove it did not change."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in [""] + dirnames + filenames:
            p = os.path.join(dirpath, n) if n else dirpath
            st = os.lstat(p)
            data = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as fh:
                    data = fh.read()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(p)
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_gid, st.st_nlink,
                                             st.st_size, st.st_mtime_ns, data)
    return out


# -- a normal layer --------------------------------------------------------


def test_normal_layer(scratch):
    dest = os.path.join(scratch, "dest")
    os.mkdir(dest)
    entries = [
        d("./", mode=0o755, mtime=1_000_000),
        d("etc/", mode=0o755, mtime=1_100_000),
        f("etc/hosts", b"127.0.0.1 localhost\n", uid=1000, gid=1001, mtime=1_234_567_890),
        f("etc/shadow", b"root:*:1::::::\n", mode=0o640, gid=42),
        d("bin/", mtime=1_200_000),
        f("bin/tool", b"\x7fELF tool", mode=0o4755),
        f("bin/sgid", b"sgid", mode=0o2755, gid=5),
        sym("bin/sh", "tool", uid=7, gid=8, mtime=1_300_000,
            xattrs={"trusted.berth-test": "on-a-symlink"}),
        hard("bin/tool-link", "bin/tool"),
        d("tmp/", mode=0o1777),
        d("dev/"),
        entry("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
        entry("dev/loop9", tarfile.BLKTYPE, mode=0o660, gid=6, dev=(7, 9)),
        d("run/"),
        entry("run/fifo", tarfile.FIFOTYPE, mode=0o620, xattrs={"trusted.berth-test": "fifo"}),
        f("data/blob", bytes(range(256)) * 1000,
          xattrs={"user.comment": "hello", "user.bin": b"\x00\xff\xfe".decode("utf-8", "surrogateescape")}),
        f("usr/lib/deep/implicit", b"parents made on the way"),
        f("/abs/path", b"absolute names are relative to the root"),
        f("./dot/./slashes//file", b"x"),
    ]
    tar = make_tar(entries)
    stream = OneWayStream(tar)
    size = apply_layer(stream, dest, whiteout_mode="overlay")

    assert size == len(tar)
    assert stream.bytes_read == len(tar)

    def st(p):
        return os.lstat(os.path.join(dest, p))

    assert stat.S_IMODE(os.lstat(dest).st_mode) == 0o755
    assert os.lstat(dest).st_mtime == 1_000_000

    assert open(os.path.join(dest, "etc/hosts"), "rb").read() == b"127.0.0.1 localhost\n"
    s = st("etc/hosts")
    assert (s.st_uid, s.st_gid, stat.S_IMODE(s.st_mode), s.st_mtime) == (1000, 1001, 0o644, 1_234_567_890)
    assert stat.S_IMODE(st("etc/shadow").st_mode) == 0o640 and st("etc/shadow").st_gid == 42
    assert st("etc").st_mtime == 1_100_000  # set after its files were written
    assert st("bin").st_mtime == 1_200_000

    assert stat.S_IMODE(st("bin/tool").st_mode) == 0o4755
    assert stat.S_IMODE(st("bin/sgid").st_mode) == 0o2755 and st("bin/sgid").st_gid == 5
    assert stat.S_IMODE(st("tmp").st_mode) == 0o1777

    assert os.readlink(os.path.join(dest, "bin/sh")) == "tool"
    s = st("bin/sh")
    assert (s.st_uid, s.st_gid, s.st_mtime) == (7, 8, 1_300_000)
    assert os.getxattr(os.path.join(dest, "bin/sh"), "trusted.berth-test",
                       follow_symlinks=False) == b"on-a-symlink"

    assert st("bin/tool-link").st_ino == st("bin/tool").st_ino
    assert st("bin/tool").st_nlink == 2

    s = st("dev/null")
    assert stat.S_ISCHR(s.st_mode) and (os.major(s.st_rdev), os.minor(s.st_rdev)) == (1, 3)
    assert stat.S_IMODE(s.st_mode) == 0o666
    s = st("dev/loop9")
    assert stat.S_ISBLK(s.st_mode) and (os.major(s.st_rdev), os.minor(s.st_rdev)) == (7, 9)
    assert stat.S_IMODE(s.st_mode) == 0o660 and s.st_gid == 6
    s = st("run/fifo")
    assert stat.S_ISFIFO(s.st_mode) and stat.S_IMODE(s.st_mode) == 0o620
    assert os.getxattr(os.path.join(dest, "run/fifo"), "trusted.berth-test",
                       follow_symlinks=False) == b"fifo"

    blob = os.path.join(dest, "data/blob")
    assert open(blob, "rb").read() == bytes(range(256)) * 1000
    assert os.getxattr(blob, "user.comment") == b"hello"
    assert os.getxattr(blob, "user.bin") == b"\x00\xff\xfe"

    assert stat.S_IMODE(st("usr/lib/deep").st_mode) == 0o755
    assert open(os.path.join(dest, "usr/lib/deep/implicit"), "rb").read() == b"parents made on the way"
    assert os.path.isfile(os.path.join(dest, "abs/path"))
    assert os.path.isfile(os.path.join(dest, "dot/slashes/file"))


def test_gzip_detected_by_magic_and_stream_read_once(scratch):
    dest = os.path.join(scratch, "dest")
    os.mkdir(dest)
    tar = make_tar([d("a/"), f("a/file", b"zipped" * 1000)])
    gz = gzip.compress(tar)
    stream = OneWayStream(gz)
    size = apply_layer(stream, dest)
    assert size == len(tar)
    # the whole compressed stream flowed through, so the caller's digest is right
    assert stream.bytes_read == len(gz)
    assert stream.sha.hexdigest() == hashlib.sha256(gz).hexdigest()
    assert open(os.path.join(dest, "a/file"), "rb").read() == b"zipped" * 1000


def test_explicit_compression(scratch):
    dest = os.path.join(scratch, "dest")
    os.mkdir(dest)
    tar = make_tar([f("x", b"1")])
    assert apply(gzip.compress(tar), dest, compression="gzip") == len(tar)
    assert apply(tar, dest, compression="none") == len(tar)
    with pytest.raises(InvalidArgument):
        apply(tar, dest, compression="gzip")
    with pytest.raises(InvalidArgument):
        apply(tar, dest, compression="lz4")
    with pytest.raises(InvalidArgument):
        apply(tar, dest, "aufs")  # unknown whiteout mode


def test_zstd_without_module(scratch):
    try:
        import zstandard  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("zstandard is installed")
    dest = os.path.join(scratch, "dest")
    os.mkdir(dest)
    with pytest.raises(InvalidArgument, match="zstd layers need the zstandard module"):
        apply(b"\x28\xb5\x2f\xfd" + b"\0" * 64, dest)


def test_garbage_and_truncated_input(scratch):
    dest = os.path.join(scratch, "dest")
    os.mkdir(dest)
    with pytest.raises(InvalidArgument):
        apply(b"this is not a tar archive at all" * 40, dest)
    tar = make_tar([f("big", os.urandom(100_000))])
    with pytest.raises(InvalidArgument):
        apply(tar[:50_000], dest)
    with pytest.raises(InvalidArgument):
        apply(gzip.compress(tar)[:20_000], dest)


class Trickle(OneWayStream):
    """Reads of at most 7 bytes: headers arrive in pieces."""

    def read(self, n=-1):
        return super().read(7 if n is None or n < 0 else min(n, 7))


@pytest.mark.parametrize("trickle", [False, True])
def test_an_unended_tar_as_go_reads_it(scratch, trickle):
    """unended: a tar that stops right after its last member's data or in its padding (the
    docker CLI's build context with a Dockerfile from outside it) is whole, as Go's archive/tar
    takes it; cut in a header or in a member's data it is refused all the same."""
    tar = make_tar([d("dir"), f("dir/a", b"x" * 700), f("long-" + "n" * 120, b"pax name"), f("last", b"47 bytes" * 5 + b"1234567")])
    last_data_end = tar.rindex(b"1234567") + 7
    n = 0

    def applied(data, **kw):
        nonlocal n
        n += 1
        dest = os.path.join(scratch, f"dest{n}")
        os.mkdir(dest)
        stream = Trickle(data) if trickle else OneWayStream(data)
        apply_layer(stream, dest, whiteout_mode="delete", **kw)
        return listing(dest)

    whole = applied(tar)
    assert whole["last"] == b"47 bytes" * 5 + b"1234567" and whole["dir/a"] == b"x" * 700
    for cut in (last_data_end, last_data_end + 100, last_data_end + (-last_data_end % 512), len(tar) - 512):
        assert applied(tar[:cut], unended=True) == whole, cut
        if cut % 512:
            with pytest.raises(InvalidArgument):
                applied(tar[:cut])  # python's tarfile alone wants the padding
    header_of_last = tar.rindex(b"last\0")
    for cut in (last_data_end - 1, header_of_last + 100, tar.index(b"x" * 700) + 10):
        with pytest.raises(InvalidArgument):
            applied(tar[:cut], unended=True)
    with pytest.raises(InvalidArgument):
        applied(b"", unended=True)


def test_existing_entries_are_replaced_not_written_through(scratch):
    dest = os.path.join(scratch, "dest")
    os.makedirs(os.path.join(dest, "dir/old"))
    with open(os.path.join(dest, "x"), "w") as fh:
        fh.write("old")
    os.link(os.path.join(dest, "x"), os.path.join(dest, "y"))
    os.mkdir(os.path.join(dest, "was-dir"))
    os.symlink("x", os.path.join(dest, "was-link"))
    apply(make_tar([
        d("dir/", mode=0o700),
        f("x", b"new"),
        f("was-dir", b"now a file"),
        d("was-link/"),
    ]), dest, "delete")
    assert open(os.path.join(dest, "x")).read() == "new"
    assert open(os.path.join(dest, "y")).read() == "old"  # the other link is untouched
    assert os.path.isdir(os.path.join(dest, "dir/old"))  # dir entry keeps content
    assert stat.S_IMODE(os.lstat(os.path.join(dest, "dir")).st_mode) == 0o700
    assert open(os.path.join(dest, "was-dir")).read() == "now a file"
    assert stat.S_ISDIR(os.lstat(os.path.join(dest, "was-link")).st_mode)


# -- whiteouts -------------------------------------------------------------

LAYER1 = [
    d("a/"), f("a/keep", b"keep"), f("a/gone", b"gone"), d("a/sub/"), f("a/sub/deep", b"deep"),
    d("b/"), f("b/old1", b"old1"), d("b/olddir/"), f("b/olddir/x", b"x"),
    f("c", b"c"),
    d("d/"), f("d/f", b"f"),
    d("s/"), f("s/lower", b"lower"),
]
LAYER2 = [
    d("a/"),
    wh("a/.wh.gone"),
    wh(".wh.c"),
    wh(".wh.d"),
    f("a/fresh", b"fresh"),
    wh("a/.wh.fresh"),          # same layer: does not hide a/fresh
    d("b/"),
    f("b/new", b"new"),
    d("b/olddir/"),
    f("b/olddir/y", b"y"),
    wh("b/.wh..wh..opq"),       # after its siblings: still applies to lower layers only
    f("e/new", b"e"),
    d("s/"),
    f("s/upper", b"upper"),
    wh(".wh.s"),                # whiteout of a dir this layer also has: hides lower s content
    wh(".wh..wh.plnk"),         # aufs metadata: ignored
]
EXPECTED = {
    "a": "dir", "a/keep": b"keep", "a/sub": "dir", "a/sub/deep": b"deep", "a/fresh": b"fresh",
    "b": "dir", "b/new": b"new", "b/olddir": "dir", "b/olddir/y": b"y",
    "e": "dir", "e/new": b"e",
    "s": "dir", "s/upper": b"upper",
}


# The same changeset with the opaque whiteout first: the result must not change.
LAYER2_OPAQUE_FIRST = sorted(LAYER2, key=lambda e: e[0].name != "b/.wh..wh..opq")
LAYER2_ORDERS = pytest.mark.parametrize("layer2", [LAYER2, LAYER2_OPAQUE_FIRST],
                                        ids=["opaque-last", "opaque-first"])


@LAYER2_ORDERS
def test_whiteouts_delete_mode(scratch, layer2):
    dest = os.path.join(scratch, "dest")
    os.mkdir(dest)
    apply(make_tar(LAYER1), dest, "delete")
    apply(make_tar(layer2), dest, "delete")
    assert listing(dest) == EXPECTED


@LAYER2_ORDERS
def test_whiteouts_overlay_mode_merged_view(scratch, layer2):
    lower, upper, merged = (os.path.join(scratch, n) for n in ("lower", "upper", "merged"))
    for p in (lower, upper, merged):
        os.mkdir(p)
    apply(make_tar(LAYER1), lower, "overlay")
    apply(make_tar(layer2), upper, "overlay")

    s = os.lstat(os.path.join(upper, "a/gone"))
    assert stat.S_ISCHR(s.st_mode) and s.st_rdev == os.makedev(0, 0)
    assert stat.S_ISCHR(os.lstat(os.path.join(upper, "c")).st_mode)
    assert stat.S_ISCHR(os.lstat(os.path.join(upper, "d")).st_mode)
    assert os.getxattr(os.path.join(upper, "b"), "trusted.overlay.opaque") == b"y"
    assert os.getxattr(os.path.join(upper, "s"), "trusted.overlay.opaque") == b"y"
    assert not os.path.lexists(os.path.join(upper, ".wh..wh.plnk"))
    assert not any(".wh." in p for p in listing(upper))

    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={upper}:{lower}", merged],
                   check=True)
    try:
        assert listing(merged) == EXPECTED
    finally:
        subprocess.run(["umount", merged], check=True)


def test_whiteout_then_recreate_in_same_layer(scratch):
    """`.wh.d` then `d/...`: the new d hides the lower d in both modes."""
    layer1 = [d("d/"), f("d/old", b"old")]
    layer2 = [wh(".wh.d"), d("d/"), f("d/new", b"new"), wh(".wh.e"), f("e/x", b"x")]
    lower1 = [d("e/"), f("e/old", b"old")]
    expected = {"d": "dir", "d/new": b"new", "e": "dir", "e/x": b"x"}

    plain = os.path.join(scratch, "plain")
    os.mkdir(plain)
    apply(make_tar(layer1 + lower1), plain, "delete")
    apply(make_tar(layer2), plain, "delete")
    assert listing(plain) == expected

    lower, upper, merged = (os.path.join(scratch, n) for n in ("lower", "upper", "merged"))
    for p in (lower, upper, merged):
        os.mkdir(p)
    apply(make_tar(layer1 + lower1), lower)
    apply(make_tar(layer2), upper)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={upper}:{lower}", merged],
                   check=True)
    try:
        assert listing(merged) == expected
    finally:
        subprocess.run(["umount", merged], check=True)


def test_whiteouts_below_removed_or_file_paths(scratch):
    """Whiteouts under a whited-out directory (or, in delete mode, under a file
    or a missing directory) hide nothing more.

    In overlay mode a whiteout whose parent is not in the layer gets that parent
    made as a directory in the upper dir (the lower layers are not visible at
    apply time), so only the whited-out-directory case is checked there.
    """
    layer1 = [d("d/"), f("d/x", b"x"), f("d/y", b"y"), f("file", b"f")]
    layer2 = [wh(".wh.d"), wh("d/.wh.x"), wh("d/.wh..wh..opq")]
    odd = [wh("file/.wh.z"), wh("missing/.wh.q")]
    plain = os.path.join(scratch, "plain")
    os.mkdir(plain)
    apply(make_tar(layer1), plain, "delete")
    apply(make_tar(layer2 + odd), plain, "delete")
    assert listing(plain) == {"file": b"f"}

    lower, upper, merged = (os.path.join(scratch, n) for n in ("lower", "upper", "merged"))
    for p in (lower, upper, merged):
        os.mkdir(p)
    apply(make_tar(layer1), lower)
    apply(make_tar(layer2), upper)
    assert stat.S_ISCHR(os.lstat(os.path.join(upper, "d")).st_mode)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={upper}:{lower}", merged],
                   check=True)
    try:
        assert listing(merged) == {"file": b"f"}
    finally:
        subprocess.run(["umount", merged], check=True)


# -- hostile layers --------------------------------------------------------


@pytest.fixture
def arena(scratch):
    """dest plus a sentinel tree next to it; checks afterwards that only dest changed."""
    dest = os.path.join(scratch, "dest")
    outside = os.path.join(scratch, "outside")
    os.mkdir(dest)
    os.makedirs(os.path.join(outside, "sub"))
    with open(os.path.join(outside, "keep"), "w") as fh:
        fh.write("precious")
    os.chmod(os.path.join(outside, "keep"), 0o600)
    os.symlink("keep", os.path.join(outside, "keep-link"))
    passwd = os.lstat("/etc/passwd")
    before = fingerprint(outside)
    scratch_before = sorted(os.listdir(scratch))
    ancestors = []
    p = dest
    while p != "/":
        p = os.path.dirname(p)
        ancestors.append(p)

    yield dest, outside

    assert fingerprint(outside) == before, "the sentinel next to dest changed"
    assert sorted(os.listdir(scratch)) == scratch_before
    after = os.lstat("/etc/passwd")
    assert (after.st_nlink, after.st_mtime_ns, after.st_mode) == \
        (passwd.st_nlink, passwd.st_mtime_ns, passwd.st_mode)
    for a in ancestors:
        for rel in ("evil", "etc/evil", "outside/evil", "escaped"):
            assert not os.path.lexists(os.path.join(a, rel)), f"{a}/{rel} appeared"
    for dirpath, dirnames, filenames in os.walk(scratch):
        if dirpath == dest or dirpath.startswith(dest + "/"):
            continue
        assert "evil" not in dirnames + filenames, f"evil in {dirpath}"


# Each case: (id, entries(outside) -> list, expect_error, check(dest, outside) or None)
HOSTILE = [
    ("dotdot-etc", lambda o: [f("../../etc/evil", b"pwned")], True, None),
    ("dotdot-sibling", lambda o: [f("../outside/evil", b"pwned")], True, None),
    ("dotdot-middle", lambda o: [f("a/../../outside/evil", b"pwned")], True, None),
    ("dotdot-dir", lambda o: [d("../escaped/")], True, None),
    ("absolute", lambda o: [f("/etc/evil", b"contained")], False,
     lambda dest, o: open(os.path.join(dest, "etc/evil")).read() == "contained"),
    ("symlink-abs-dir", lambda o: [sym("link", "/etc"), f("link/evil", b"contained")], False,
     lambda dest, o: os.path.isfile(os.path.join(dest, "etc/evil"))
     and os.readlink(os.path.join(dest, "link")) == "/etc"),
    ("symlink-to-sentinel-abs", lambda o: [sym("link", o), f("link/evil", b"x"), f("link/keep", b"x")],
     False, lambda dest, o: os.path.isfile(os.path.join(dest, o.lstrip("/"), "evil"))),
    ("symlink-rel-sibling", lambda o: [sym("link", "../outside"), f("link/evil", b"x")], False,
     lambda dest, o: os.path.isfile(os.path.join(dest, "outside/evil"))),
    ("symlink-dotdot-chain", lambda o: [sym("up", "../../.."), f("up/evil", b"x")], False,
     lambda dest, o: os.path.isfile(os.path.join(dest, "evil"))),
    ("symlink-nested", lambda o: [d("a/"), sym("a/up", "../../../.."), sym("l1", "a/up/sub"),
                                  f("l1/evil", b"x")], False,
     lambda dest, o: os.path.isfile(os.path.join(dest, "sub/evil"))),
    ("symlink-loop", lambda o: [sym("x", "y"), sym("y", "x"), f("x/evil", b"x")], True, None),
    ("file-as-parent", lambda o: [f("plain", b"x"), f("plain/evil", b"x")], True, None),
    ("replace-symlink-with-file", lambda o: [sym("t", os.path.join(o, "keep")), f("t", b"pwned")],
     False, lambda dest, o: not os.path.islink(os.path.join(dest, "t"))),
    ("replace-symlink-with-dir", lambda o: [sym("t", o), d("t/", mode=0o777)], False,
     lambda dest, o: os.path.isdir(os.path.join(dest, "t")) and not os.path.islink(os.path.join(dest, "t"))),
    ("symlink-then-device-through", lambda o: [sym("t", o), entry("t/evil", tarfile.FIFOTYPE)], False,
     lambda dest, o: stat.S_ISFIFO(os.lstat(os.path.join(dest, o.lstrip("/"), "evil")).st_mode)),
    ("hardlink-etc-passwd", lambda o: [hard("pw", "/etc/passwd")], True, None),
    ("hardlink-dotdot", lambda o: [hard("x", "../outside/keep")], True, None),
    ("hardlink-abs-sentinel", lambda o: [hard("x", os.path.join(o, "keep"))], True, None),
    ("hardlink-through-symlink", lambda o: [sym("l", o), hard("x", "l/keep")], True, None),
    ("hardlink-to-outside-symlink", lambda o: [sym("s", "/etc/passwd"), hard("h", "s")], False,
     lambda dest, o: os.readlink(os.path.join(dest, "h")) == "/etc/passwd"
     and os.lstat(os.path.join(dest, "h")).st_ino == os.lstat(os.path.join(dest, "s")).st_ino),
    ("hardlink-to-dir", lambda o: [d("dir/"), hard("x", "dir")], True, None),
    ("hardlink-missing", lambda o: [hard("x", "nope")], True, None),
    ("whiteout-dotdot-name", lambda o: [d("a/"), wh("a/.wh...")], True, None),
    ("whiteout-dot-name", lambda o: [wh(".wh..")], True, None),
    ("whiteout-empty-name", lambda o: [wh("a/.wh.")], True, None),
    ("whiteout-parent-escape", lambda o: [wh("../.wh.outside")], True, None),
    ("whiteout-sibling-escape", lambda o: [wh("../outside/.wh.keep")], True, None),
    ("whiteout-through-symlink", lambda o: [sym("link", o), wh("link/.wh.keep"),
                                            sym("rel", "../outside"), wh("rel/.wh.keep"),
                                            wh("rel/.wh..wh..opq")], False, None),
    ("whiteout-abs", lambda o: [wh(os.path.join(o, ".wh.keep"))], False, None),
    ("reserved-wh-component", lambda o: [f("a/.wh.b/evil", b"x")], True, None),
    ("xattr-overlay-opaque", lambda o: [d("x/", xattrs={"trusted.overlay.opaque": "y"})], True, None),
    ("xattr-overlay-redirect", lambda o: [f("x", b"", xattrs={"trusted.overlay.redirect": "/etc"})],
     True, None),
    ("xattr-user-overlay", lambda o: [d("x/", xattrs={"user.overlay.opaque": "y"})], True, None),
    ("root-as-file", lambda o: [f("./", b"x")], True, None),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_layers(arena, case, mode):
    dest, outside = arena
    _id, build, expect_error, check = case
    tar = make_tar(build(outside))
    if expect_error:
        with pytest.raises(InvalidArgument):
            apply(tar, dest, mode)
    else:
        apply(tar, dest, mode)
        if check is not None:
            assert check(dest, outside)


@pytest.mark.parametrize("mode", MODES)
def test_whiteout_through_symlink_stays_inside(arena, mode):
    """In delete mode, a whiteout reached through a symlink removes only dest's copy."""
    dest, outside = arena
    os.makedirs(os.path.join(dest, "outside"))
    with open(os.path.join(dest, "outside/keep"), "w") as fh:
        fh.write("inside copy")
    apply(make_tar([sym("link", "../outside"), wh("link/.wh.keep"),
                    sym("abs", "/outside"), wh("abs/.wh..wh..opq")]), dest, mode)
    if mode == "delete":
        assert not os.path.lexists(os.path.join(dest, "outside/keep"))
    else:
        s = os.lstat(os.path.join(dest, "outside/keep"))
        assert stat.S_ISCHR(s.st_mode) and s.st_rdev == 0
        assert os.getxattr(os.path.join(dest, "outside"), "trusted.overlay.opaque") == b"y"


def test_hostile_error_message(arena):
    dest, _ = arena
    with pytest.raises(InvalidArgument, match=r'layer: entry "\.\./\.\./etc/evil" escapes the root'):
        apply(make_tar([f("../../etc/evil", b"x")]), dest)


@pytest.mark.parametrize("mode", MODES)
def test_hostile_header_values(arena, mode):
    dest, _ = arena
    nul_name, _ = f("a", b"x")
    nul_name.pax_headers = {"path": "a\x00b/evil"}
    nul_link, _ = sym("l", "x")
    nul_link.pax_headers = {"linkpath": "/etc\x00evil"}
    big_uid, _ = f("b", b"x", uid=2**40)
    big_dev, _ = entry("c", tarfile.CHRTYPE, dev=(2**40, 1))
    bad_time, _ = f("t", b"x")
    bad_time.pax_headers = {"mtime": "1e30"}
    parsed = tarfile.open(fileobj=io.BytesIO(make_tar([(nul_name, b"x")]))).getmembers()[0]
    assert parsed.name == "a\x00b/evil"  # the hostile value survives the round trip
    for ti in (nul_name, nul_link, big_uid, big_dev, bad_time):
        data = b"x" if ti.size else b""
        fmt = tarfile.GNU_FORMAT if ti is big_dev else tarfile.PAX_FORMAT
        tar = make_tar([(ti, data)], fmt)
        with pytest.raises(InvalidArgument):
            apply(tar, dest, mode)
