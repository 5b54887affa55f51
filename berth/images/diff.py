"""A snapshot's changes as an image layer: the tar changeset between a container's
filesystem and its parent, whiteouts included (the reverse of ``layer.apply_layer``).

    diff_id, desc = store_layer(content_store, lambda tw: write_overlay_diff(upper, tw))

Two ways to find the changes:

* ``write_overlay_diff(upper, tw)``: the overlayfs upper directory *is* the change set
  (docker's overlay2 differ): every entry in it is emitted; a character device 0:0 is a
  deleted path (``.wh.NAME``); a directory with ``trusted.overlay.opaque=y`` hides the lower
  directory's content (``DIR/.wh..wh..opq`` after the directory's own entry).
* ``write_tree_diff(lower, upper, tw)``: two full trees (the plain-copy snapshotter):
  entries that are new or differ in type, mode, owner, size, mtime, link target or
  security.capability are emitted; paths gone from ``upper`` become ``.wh.NAME`` (only the
  top of a removed subtree, as docker's ``ChangesDirs``); a directory that changed type
  is emitted whole.

Entries in both: names relative to the root without a leading ``./`` (directories end in
``/``), walked in lexical order with a directory before its content; PAX headers as docker's
archive package writes them (numeric owners, no user/group names, mtime truncated to the
second, no atime/ctime); hardlinked files within the layer become link entries to the first
path; the only xattr carried is ``security.capability``. So the same changes give the same
bytes, and the same diff ID.

Mount points a runtime creates for a container (docker's "init layer": ``/proc``, ``/sys``,
``/dev/pts``, ``/dev/shm``, ``/etc/hosts``, ``/etc/hostname``, ``/etc/resolv.conf``,
``/.dockerenv``, ``/dev/console``, ``/etc/mtab``) are left out when they hold nothing, and so
is a directory of a lower layer that is in the change set only because of them.

``store_layer`` writes the tar once: it is hashed (the diff ID) and gzip-compressed (ISA-L
when importable) into the content store as it is produced; nothing is held in memory whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tarfile
import zlib
from collections.abc import Callable

from berth.archive.tar import CAP_XATTR, PAX_XATTR, host_names, pax_value, stat_header
from berth.errors import BerthError
from berth.oci import mediatypes as mt

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from typing import Any, BinaryIO

    from berth.content.store import ContentStore, Writer

OPAQUE_XATTR = "trusted.overlay.opaque"
WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"

# docker's init layer: paths a runtime makes as mount points (empty), never part of a layer
INIT_PATHS = frozenset({
    "proc", "sys", "dev/pts", "dev/shm", "dev/console", ".dockerenv",
    "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab",
})
INIT_PARENTS = frozenset({"dev", "etc"})  # made by the init layer too: never new in a layer of their own

_CHUNK = 1 << 20


class _Entry:
    __slots__ = ("rel", "path", "st")

    def __init__(self, rel: str, path: str, st: os.stat_result) -> None:
        self.rel, self.path, self.st = rel, path, st


class TarWriter:
    """Writes layer entries with docker's header conventions to a binary sink."""

    def __init__(self, sink: BinaryIO) -> None:
        self.tf = tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8",
                               errors="surrogateescape")
        self._inodes: dict[tuple[int, int], str] = {}
        self.count = 0
        # the host's ids as the layer records them (a remapped container's: its own), None: as they are
        self.ids: Callable[[int, int], tuple[int, int]] | None = None
        # the ids whose host names the layer records (a remapped daemon's build step: its root's), None: the files'
        self.name_ids: Callable[[int, int], tuple[int, int]] | None = None

    def _header(self, name: str, st: os.stat_result, type_: bytes, mode: int | None = None) -> tarfile.TarInfo:
        ti = stat_header(name, st, type_, mode)
        # the owners' names as the host names them, as dockerd's layer diffs carry them (made in
        # its own process: its lookups are the host's), whiteouts and opaque markers too
        ti.uname, ti.gname = host_names(*(self.name_ids(st.st_uid, st.st_gid) if self.name_ids is not None
                                          else (st.st_uid, st.st_gid)))
        if self.ids is not None:  # (the names stay the host ids', as dockerd's: it maps after its lookups)
            ti.uid, ti.gid = self.ids(ti.uid, ti.gid)
        return ti

    def add(self, rel: str, path: str, st: os.stat_result) -> None:
        """One filesystem entry (never followed) at ``rel``."""
        m = st.st_mode
        if stat.S_ISDIR(m):
            ti = self._header(rel + "/", st, tarfile.DIRTYPE)
        elif stat.S_ISLNK(m):
            ti = self._header(rel, st, tarfile.SYMTYPE)
            ti.linkname = os.readlink(path)
        elif stat.S_ISREG(m):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self._inodes:
                ti = self._header(rel, st, tarfile.LNKTYPE)
                ti.linkname = self._inodes[key]
                self._xattrs(ti, path)
                self.tf.addfile(ti)
                self.count += 1
                return
            if st.st_nlink > 1:
                self._inodes[key] = rel
            ti = self._header(rel, st, tarfile.REGTYPE)
            ti.size = st.st_size
            self._xattrs(ti, path)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                self.tf.addfile(ti, _Exact(f, st.st_size))
            self.count += 1
            return
        elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
            ti = self._header(rel, st, tarfile.CHRTYPE if stat.S_ISCHR(m) else tarfile.BLKTYPE)
        elif stat.S_ISFIFO(m):
            ti = self._header(rel, st, tarfile.FIFOTYPE)
        else:
            return  # sockets are not archived (docker skips them too)
        self.tf.addfile(ti)
        self.count += 1

    def whiteout(self, rel: str, st: os.stat_result) -> None:
        """``.wh.NAME`` for a deleted path (owner and mtime of the marker, as docker's)."""
        parent, _, base = rel.rpartition("/")
        name = (parent + "/" if parent else "") + WHITEOUT_PREFIX + base
        self.tf.addfile(self._header(name, st, tarfile.REGTYPE, mode=0o600))
        self.count += 1

    def opaque(self, rel: str, st: os.stat_result) -> None:
        """``DIR/.wh..wh..opq``: a regular empty file with the directory's owner and permissions."""
        ti = self._header(rel + "/" + OPAQUE_WHITEOUT, st, tarfile.REGTYPE, mode=stat.S_IMODE(st.st_mode) & 0o777)
        ti.mtime = 0
        self.tf.addfile(ti)
        self.count += 1

    def _xattrs(self, ti: tarfile.TarInfo, path: str) -> None:
        try:
            cap = os.getxattr(path, CAP_XATTR, follow_symlinks=False)
        except OSError:
            return
        ti.pax_headers[PAX_XATTR + CAP_XATTR] = pax_value(cap)

    def close(self) -> None:
        self.tf.close()


class _Exact:
    """A file read as exactly ``size`` bytes (a file that shrank is padded with zeros, one
    that grew is cut): the header already holds the size."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.left = f, size

    def read(self, n: int | None = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.f.read(n)
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self.left -= len(data)
        return data


def _scandir_sorted(path: str) -> list[str]:
    with os.scandir(path) as it:
        return sorted(e.name for e in it)


def _is_overlay_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _init_placeholder(rel: str, st: os.stat_result) -> bool:
    if rel not in INIT_PATHS:
        return False
    if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
        return st.st_size == 0 or stat.S_ISDIR(st.st_mode)
    return stat.S_ISLNK(st.st_mode)


def write_overlay_diff(upper: str, tw: TarWriter, lowers: list[str] | None = None) -> None:
    """Emit the overlayfs upper directory ``upper`` as a layer. ``lowers`` (the parent
    layers' directories, nearest first) tell a copied-up directory from a new one, so
    one that holds only init-layer mount points is left out."""
    lowers = lowers or []

    def in_lower(rel: str) -> bool:
        return any(os.path.lexists(os.path.join(lo, rel)) for lo in lowers)

    def walk(dpath: str, drel: str) -> None:
        for name in _scandir_sorted(dpath):
            path = os.path.join(dpath, name)
            rel = f"{drel}/{name}" if drel else name
            st = os.lstat(path)
            if _is_overlay_whiteout(st):
                tw.whiteout(rel, st)
                continue
            if stat.S_ISDIR(st.st_mode):
                opaque = _opaque(path)
                children = _scandir_sorted(path)
                if not opaque and _init_placeholder(rel, st) and not children:
                    continue
                if not opaque and (rel in INIT_PARENTS or children and in_lower(rel)) and _only_init(path, rel):
                    continue  # copied up (or made) only for a mount point
                tw.add(rel, path, st)
                if opaque:
                    tw.opaque(rel, st)
                walk(path, rel)
                continue
            if _init_placeholder(rel, st):
                continue
            tw.add(rel, path, st)

    walk(upper, "")


def _only_init(path: str, rel: str) -> bool:
    """Whether everything under a directory is an init-layer placeholder."""
    for name in _scandir_sorted(path):
        crel = f"{rel}/{name}"
        cpath = os.path.join(path, name)
        st = os.lstat(cpath)
        if _init_placeholder(crel, st) and not (stat.S_ISDIR(st.st_mode) and _scandir_sorted(cpath)):
            continue
        if stat.S_ISDIR(st.st_mode) and not _opaque(cpath) and _scandir_sorted(cpath) and _only_init(cpath, crel):
            continue
        return False
    return True


def write_tree_diff(lower: str | None, upper: str, tw: TarWriter) -> None:
    """Emit what differs between two full trees (``lower`` None: everything in ``upper``)."""

    def same(a: os.stat_result, b: os.stat_result, path_a: str, path_b: str) -> bool:
        if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
            return False
        if (a.st_mode, a.st_uid, a.st_gid) != (b.st_mode, b.st_uid, b.st_gid):
            return False
        if stat.S_ISDIR(a.st_mode):
            return True  # a directory's content is compared entry by entry
        if a.st_size != b.st_size or int(a.st_mtime) != int(b.st_mtime) or a.st_mtime_ns != b.st_mtime_ns:
            return False
        if stat.S_ISLNK(a.st_mode):
            return os.readlink(path_a) == os.readlink(path_b)
        if stat.S_ISCHR(a.st_mode) or stat.S_ISBLK(a.st_mode):
            return a.st_rdev == b.st_rdev
        return _cap(path_a) == _cap(path_b)

    def walk(ldir: str | None, udir: str, drel: str) -> None:
        unames = _scandir_sorted(udir)
        lnames = set(_scandir_sorted(ldir)) if ldir is not None else set()
        out = []
        for name in sorted(set(unames) | lnames):
            rel = f"{drel}/{name}" if drel else name
            upath = os.path.join(udir, name)
            if name not in unames:
                out.append((rel, None, None, os.lstat(os.path.join(ldir, name))))
                continue
            ust = os.lstat(upath)
            lpath = os.path.join(ldir, name) if ldir is not None and name in lnames else None
            lst = os.lstat(lpath) if lpath else None
            out.append((rel, upath, ust, (lpath, lst)))
        for rel, upath, ust, extra in out:
            if upath is None:  # deleted
                tw.whiteout(rel, extra)
                continue
            lpath, lst = extra
            if lst is None and _init_placeholder(rel, ust):
                if not stat.S_ISDIR(ust.st_mode) or not _scandir_sorted(upath):
                    continue
            if lst is None and rel in INIT_PARENTS and stat.S_ISDIR(ust.st_mode) and _only_init(upath, rel):
                continue
            if stat.S_ISDIR(ust.st_mode):
                both_dirs = lst is not None and stat.S_ISDIR(lst.st_mode)
                if not both_dirs or not same(lst, ust, lpath, upath) or int(lst.st_mtime) != int(ust.st_mtime):
                    if both_dirs and _only_changes_init(lpath, upath, rel):
                        continue
                    tw.add(rel, upath, ust)
                walk(lpath if both_dirs else None, upath, rel)
                continue
            if lst is not None and same(lst, ust, lpath, upath):
                continue
            tw.add(rel, upath, ust)

    walk(lower, upper, "")


def _only_changes_init(lpath: str, upath: str, rel: str) -> bool:
    """A directory whose only difference from the lower one is new init-layer placeholders."""
    lnames = set(_scandir_sorted(lpath))
    unames = set(_scandir_sorted(upath))
    if not lnames <= unames:
        return False
    new = unames - lnames
    if not new:
        return False
    return all(_init_placeholder(f"{rel}/{n}", os.lstat(os.path.join(upath, n))) for n in new)


def _cap(path: str) -> bytes | None:
    try:
        return os.getxattr(path, CAP_XATTR, follow_symlinks=False)
    except OSError:
        return None


# -- into the content store --------------------------------------------------------


def _compressor(level: int) -> Any:
    try:
        from isal import isal_zlib
        return isal_zlib.compressobj(min(level, 3), isal_zlib.DEFLATED, 16 + isal_zlib.MAX_WBITS)
    except ImportError:
        return zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)


def gzip_blob(store: ContentStore, f: BinaryIO, hold: Callable[[str], None], level: int = 1) -> tuple[str, int]:
    """The gzip of the plain blob read from f, into the store (as a layer's own compression,
    isal where present); hold(digest) is called before it is committed (a lease's resource).
    Returns (digest, size)."""
    w = store.writer(f"gzip-{os.urandom(16).hex()}")
    try:
        comp = _compressor(level)
        while True:
            chunk = f.read(1 << 20)
            out = comp.compress(chunk) if chunk else comp.flush()
            if out:
                w.write(out)
            if not chunk:
                break
        digest, size = w.digest(), w.offset  # the writer's own running digest
        hold(digest)
        w.commit(size, digest)
    finally:
        w.close()
    return digest, size


def store_layer(store: ContentStore, produce: Callable[[TarWriter], None], level: int = 1) -> tuple[str, dict]:
    """Write the layer ``produce(tw)`` emits into the content store; returns (diff ID,
    layer descriptor). Nothing is left behind when it fails."""
    w = store.writer(f"layer-{os.urandom(16).hex()}")
    try:
        sink = _LayerSink(w, level)
        tw = TarWriter(sink)
        produce(tw)
        tw.close()
        sink.finish()
        size = w.offset
        digest = w.commit()
    except BaseException:
        with contextlib.suppress(BerthError, OSError):
            w.abort()
        raise
    finally:
        w.close()
    return "sha256:" + sink.hash.hexdigest(), {"mediaType": mt.OCI_LAYER_GZIP, "digest": digest, "size": size}


class _LayerSink:
    """tar bytes -> the diff ID hash and gzip -> the content writer, as they are produced."""

    def __init__(self, writer: Writer, level: int) -> None:
        self.writer = writer
        self.hash = hashlib.sha256()
        self.comp = _compressor(level)

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        out = self.comp.compress(data)
        if out:
            self.writer.write(out)
        return len(data)

    def finish(self) -> None:
        out = self.comp.flush()
        if out:
            self.writer.write(out)


def write_tar(out: BinaryIO, produce: Callable[[TarWriter], None]) -> None:
    """The layer as a plain tar into a binary file object (tests, export)."""
    tw = TarWriter(out)
    produce(tw)
    tw.close()
