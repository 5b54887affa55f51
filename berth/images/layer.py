"""Apply an OCI/Docker image layer (a tar changeset) to a directory, safely.

    size = apply_layer(stream, dest_dir, whiteout_mode="overlay")

The stream is read exactly once, front to back (tarfile mode ``"r|"``), so the
caller may hash the compressed bytes as they flow; it is read to its end even
after the tar end-of-archive marker. The return value is the number of
uncompressed tar bytes (the size that goes with the layer's diff ID).

Whiteouts (OCI image-spec, "Whiteouts"):

* ``whiteout_mode="overlay"``: ``dest_dir`` is the overlayfs upper directory of
  a new snapshot whose parents are mounted below it. ``.wh.NAME`` becomes a
  character device 0:0 called NAME; ``.wh..wh..opq`` sets
  ``trusted.overlay.opaque=y`` on its directory.
* ``whiteout_mode="delete"``: ``dest_dir`` already holds the parents' content
  (plain-copy snapshotter). ``.wh.NAME`` removes NAME (recursively, never
  following a link); ``.wh..wh..opq`` removes every child of its directory that
  this layer did not itself create.

In overlay mode only the upper directory is visible while applying, so parent
directories that the layer does not list are made as plain 0755 root-owned
directories (their metadata then shadows the lower directory's in the merged
view), and symlinks of lower layers are not followed for parent paths. Layers
made by docker/buildkit list every parent, so this only shows with hand-made
tars. (containerd fixes the former by passing the lower directories to copy
parent metadata from: a possible later ``lower_dirs=`` argument.)

Both modes follow the spec's rule that whiteouts only hide resources of lower
layers: an entry created earlier in the same layer survives a whiteout for its
path (for a directory, the whiteout then hides the lower directory's content,
i.e. it acts as an opaque marker). ``.wh..wh.*`` entries other than the opaque
marker (aufs metadata) are ignored. A ``.wh.`` name anywhere but in the last
path component is refused: those names are reserved.

Safety (hostile layers). Nothing is extracted with tarfile.extract; every entry
is created here with ``*at`` calls relative to directory file descriptors:

* Entry names are cleaned lexically: a leading ``/`` is dropped (absolute
  names are relative to the root), ``.`` and empty components vanish, and a
  ``..`` that would climb above the root raises
  ``InvalidArgument('layer: entry "X" escapes the root')``. The caller then
  removes the snapshot.
* The parent directories of an entry are walked component by component from
  an ``O_PATH`` descriptor of ``dest_dir``. A component that is a symlink is
  resolved *inside the root*, like filepath-securejoin / containerd's
  ``fs.RootPath``: an absolute target restarts at ``dest_dir``, ``..`` never
  climbs above it (clamped), at most 40 links are followed. So ``link -> /etc``
  followed by ``link/evil`` writes ``dest_dir/etc/evil``. Missing parents are
  created (mode 0755). A parent that is neither a directory nor a symlink is
  an error.
* The last component is never followed: an existing entry is removed first
  (unless both are directories), regular files are opened with
  ``O_CREAT|O_EXCL|O_NOFOLLOW``, metadata is set with the nofollow variants.
* Symlink targets are data: written as-is, never followed during extraction
  (except as parent components, resolved inside the root as above).
* A hardlink must name a non-directory entry created earlier by this same
  layer (resolved the same way); anything else, including paths of parent
  layers, raises InvalidArgument. The link is made without following a
  symlink target (``linkat`` without ``AT_SYMLINK_FOLLOW``). The inode already
  has its metadata, so the link entry's own metadata is not applied.
* Extended attributes come from PAX headers (``SCHILY.xattr.*`` and
  ``LIBARCHIVE.xattr.*``). ``trusted.overlay.*`` and ``user.overlay.*`` from the
  layer are refused with InvalidArgument: only whiteout entries may produce
  overlay metadata.
* Owners are numeric uid/gid from the header (names are ignored: they refer
  to the image's passwd, not the host's). When not running as root, chown
  and privileged xattrs are skipped; device nodes then fail.

Metadata order per entry: content, chown, xattrs, chmod (so setuid/setgid and
file capabilities survive the chown), then times. Directory times are set in
a final pass after all content is written.
"""

from __future__ import annotations

import base64
import errno
import gzip
import json
import os
import stat
import tarfile
import urllib.parse
import zlib
from typing import BinaryIO

from berth.archive.tar import PAX_XATTR, clean_parts, copy_member, remove_at, xattr_bytes
from berth.errors import InvalidArgument, SystemError_

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"

_RESERVED_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
_MAX_SYMLINKS = 40
_CHUNK = 1 << 20

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

_O_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

# OS errors that a malformed or hostile layer can provoke; anything else is a
# host problem (disk full, I/O error, ...).
_INPUT_ERRNOS = {
    errno.ENAMETOOLONG, errno.ENOTDIR, errno.ELOOP, errno.EEXIST, errno.ENOENT,
    errno.EISDIR, errno.EINVAL, errno.EMLINK, errno.ENOTEMPTY, errno.EXDEV,
}


def apply_layer(
    stream: BinaryIO,
    dest_dir: str,
    *,
    whiteout_mode: str = "overlay",
    compression: str | None = None,
    unended: bool = False,
) -> int:
    """Apply the layer tar read from ``stream`` onto ``dest_dir``.

    ``compression``: None detects gzip/zstd from the magic bytes (else plain
    tar); "gzip", "zstd" or "none" force it. ``unended``: a tar that stops
    right after its last member's data (no padding, no end-of-archive blocks)
    is whole, as Go's archive/tar reads it. Returns the uncompressed size.
    Raises InvalidArgument for a malformed or unsafe layer (the destination
    may then be partly written: discard it) and SystemError_ for host errors.
    """
    if whiteout_mode not in ("overlay", "delete"):
        raise InvalidArgument(f"layer: unknown whiteout mode {_q(whiteout_mode)}")
    if compression not in (None, "gzip", "zstd", "none"):
        raise InvalidArgument(f"layer: unknown compression {_q(str(compression))}")

    format_errors = _format_errors()
    try:
        raw = _Prefixed(stream)
        counted = _Counting(_decompressor(raw, compression))
        with _Applier(dest_dir, whiteout_mode) as applier:
            tf = tarfile.open(fileobj=_Unended(counted) if unended else counted, mode="r|")
            try:
                for member in tf:
                    applier.apply(member, tf)
            finally:
                tf.close()
            applier.finish()
        _drain(counted)
        _drain(raw)
    except format_errors as e:
        raise InvalidArgument(f"layer: invalid archive: {e}") from e
    except RecursionError as e:
        raise InvalidArgument("layer: directory tree too deep") from e
    except OSError as e:
        raise SystemError_(f"layer: {e.strerror or e}") from e
    return counted.count


# -- streams ---------------------------------------------------------------


class _Prefixed:
    """A read-only stream that can peek at its first bytes without seeking."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._head = b""
        self._peeked = False

    def peek4(self) -> bytes:
        if not self._peeked:
            buf = b""
            while len(buf) < 4:
                chunk = self._raw.read(4 - len(buf))
                if not chunk:
                    break
                buf += chunk
            self._head = buf
            self._peeked = True
        return self._head

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0:
                data = self._head + self._raw.read()
                self._head = b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._raw.read(n)

    def readable(self) -> bool:
        return True


class _Counting:
    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.count += len(data)
        return data


class _Unended:
    """A tar stream that may end right after its last member's data, as the docker CLI's build
    context does when the Dockerfile comes from outside it (its archive.ReplaceFileTarWrapper
    appends the Dockerfile and .dockerignore and never closes the tar writer): Go's
    archive/tar takes the end of the stream there for the end of the archive, Python's tarfile
    wants the padding. This reader follows the headers (their sizes) as the bytes pass, and
    where the stream ends at a header's start or in a member's padding it gives the padding
    and the two zero blocks that close an archive. Ended in a member's data it ends as it is,
    and tarfile says the archive is cut; in a header (which tarfile alone takes for the end,
    dropping that member) it says so itself, as Go's reader does."""

    _BLOCK = 512

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._pos = 0  # bytes passed
        self._header = 0  # where the next header starts
        self._data_end = 0  # where the last member's data ends (its padding follows)
        self._partial = b""  # a header's bytes read so far
        self._followed = True  # False: a header this cannot follow (old GNU sparse extensions)
        self._tail: bytes | None = None  # what is given after the stream's end

    def read(self, n: int = -1) -> bytes:
        if self._tail is None:
            data = self._f.read(n)
            if data:
                if self._followed:
                    self._follow(data)
                self._pos += len(data)
                return data
            if self._followed and self._partial:  # cut in a header: tarfile would take it for the end
                raise tarfile.ReadError("unexpected end of data")
            whole = self._followed and self._pos > 0 and \
                (self._pos == self._header or self._data_end <= self._pos < self._header)
            self._tail = bytes(self._header - self._pos) + bytes(2 * self._BLOCK) if whole else b""
        if n is None or n < 0:
            n = len(self._tail)
        out, self._tail = self._tail[:n], self._tail[n:]
        return out

    def _follow(self, data: bytes) -> None:
        start, end = self._pos, self._pos + len(data)
        while self._followed and start <= self._header + len(self._partial) < end:
            at = self._header + len(self._partial) - start
            self._partial += data[at:at + self._BLOCK - len(self._partial)]
            if len(self._partial) < self._BLOCK:
                return
            h, self._partial = self._partial, b""
            try:
                size = int.from_bytes(h[125:136], "big") if h[124] & 0x80 else int(h[124:136].strip(b"\0 ") or b"0", 8)
            except ValueError:
                self._followed = False
                return
            if h[156:157] == b"S" and h[482]:
                self._followed = False  # extension blocks follow: not followed
                return
            self._data_end = self._header + self._BLOCK + size
            self._header = self._data_end + (-size % self._BLOCK)


def _decompressor(raw: _Prefixed, compression: str | None) -> BinaryIO:
    head = raw.peek4()
    if compression is None:
        if head[:2] == _GZIP_MAGIC:
            compression = "gzip"
        elif head == _ZSTD_MAGIC:
            compression = "zstd"
        else:
            compression = "none"
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == "zstd":
        try:
            import zstandard
        except ImportError:
            raise InvalidArgument("zstd layers need the zstandard module") from None
        return zstandard.ZstdDecompressor().stream_reader(
            raw, read_across_frames=True, closefd=False
        )
    return raw


def _format_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [
        tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile,
    ]
    try:
        import zstandard
    except ImportError:
        pass
    else:
        errors.append(zstandard.ZstdError)
    return tuple(errors)


def _drain(f: BinaryIO) -> None:
    while f.read(_CHUNK):
        pass


def _q(s: str) -> str:
    """Quote a name for a one-line error message."""
    return json.dumps(s)


# -- the applier -----------------------------------------------------------


class _Applier:
    def __init__(self, dest_dir: str, mode: str) -> None:
        self.mode = mode
        self.root_fd = os.open(dest_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.privileged = os.geteuid() == 0
        # Canonical paths (tuples of components, relative to the root) of the
        # entries this layer created, and of every directory they sit in.
        self.paths: set[tuple[str, ...]] = set()
        self.ancestors: set[tuple[str, ...]] = set()
        # overlay mode: whiteout devices made by this layer.
        self.whiteouts: set[tuple[str, ...]] = set()
        self.dir_times: dict[tuple[str, ...], tuple[int, int]] = {}
        self._entry = ""

    def __enter__(self) -> _Applier:
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.root_fd)

    # -- per entry

    def apply(self, m: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        self._entry = m.name
        try:
            self._apply(m, tf)
        except gzip.BadGzipFile:
            raise  # a format error surfacing while reading content
        except (ValueError, OverflowError) as e:
            # NUL bytes in names, out-of-range ids, times or device numbers
            raise InvalidArgument(f"layer: entry {_q(m.name)}: {e}") from e
        except OSError as e:
            if e.errno in _INPUT_ERRNOS:
                raise InvalidArgument(
                    f"layer: entry {_q(m.name)}: {e.strerror or e}"
                ) from e
            raise SystemError_(f"layer: entry {_q(m.name)}: {e.strerror or e}") from e

    def _apply(self, m: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        parts = self._clean(m.name)
        if not (0 <= m.uid < 0xFFFFFFFF and 0 <= m.gid < 0xFFFFFFFF):
            raise InvalidArgument(f"layer: entry {_q(m.name)} has an invalid owner")
        for c in parts[:-1]:
            if c.startswith(WHITEOUT_PREFIX):
                raise InvalidArgument(
                    f"layer: entry {_q(m.name)}: names starting with .wh. are reserved"
                )
        if not parts:
            if not m.isdir():
                raise InvalidArgument(
                    f"layer: entry {_q(m.name)} names the root but is not a directory"
                )
            self._apply_root(m)
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts[:-1], base)
            return

        xattrs = self._xattrs(m)  # validate before touching anything
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk()
                or m.ischr() or m.isblk() or m.isfifo()):
            raise InvalidArgument(
                f"layer: entry {_q(m.name)} has unsupported type {m.type!r}"
            )
        pfd, ppath = self._walk(parts[:-1], create=True)
        try:
            path = ppath + (base,)
            if m.isdir():
                self._make_dir(pfd, base, path, m, xattrs)
            elif m.islnk():
                if not self._make_hardlink(pfd, base, path, m):
                    return
            else:
                self._replace(pfd, base, want_dir=False)
                if m.isreg():
                    self._make_file(pfd, base, m, xattrs, tf)
                elif m.issym():
                    os.symlink(m.linkname, base, dir_fd=pfd)
                    self._meta_at(pfd, base, m, xattrs, chmod=False)
                else:
                    kind = (stat.S_IFCHR if m.ischr()
                            else stat.S_IFBLK if m.isblk() else stat.S_IFIFO)
                    dev = os.makedev(m.devmajor, m.devminor) if kind != stat.S_IFIFO else 0
                    os.mknod(base, 0o600 | kind, dev, dir_fd=pfd)
                    self._meta_at(pfd, base, m, xattrs, chmod=True)
                self.whiteouts.discard(path)
            self._record(path)
        finally:
            os.close(pfd)

    def _clean(self, name: str) -> list[str]:
        parts = clean_parts(name)
        if parts is None:
            raise InvalidArgument(f"layer: entry {_q(name)} escapes the root")
        return parts

    def _record(self, path: tuple[str, ...]) -> None:
        self.paths.add(path)
        for i in range(len(path)):
            self.ancestors.add(path[:i])

    # -- path resolution

    def _walk(self, parts: list[str], *, create: bool,
              for_whiteout: bool = False) -> tuple[int, tuple[str, ...]] | tuple[None, None]:
        """Open the directory ``parts`` names, resolving symlinks inside the root.

        Returns (O_PATH fd, canonical path); the caller closes the fd.
        create=False: (None, None) when a component is missing or not a
        directory. create=True: missing directories are made (0755); a
        component that is this layer's own whiteout is replaced by an opaque
        directory (``.wh.d`` then ``d/x``: a new d hiding the lower one); any
        other non-directory is an error. for_whiteout (with create): a
        non-directory component gives (None, None) instead, since a whiteout
        below a file or below a whited-out directory has nothing to hide.
        """
        todo = list(reversed(parts))
        cur = os.open(".", _O_DIR_PATH, dir_fd=self.root_fd)
        path: list[str] = []
        links = 0
        try:
            while todo:
                c = todo.pop()
                if c in ("", "."):
                    continue
                if c == "..":  # only from symlink targets; clamped at the root
                    if path:
                        path.pop()
                        new = self._open_canonical(path)
                        os.close(cur)
                        cur = new
                    continue
                try:
                    st = os.stat(c, dir_fd=cur, follow_symlinks=False)
                except FileNotFoundError:
                    if not create:
                        os.close(cur)
                        return None, None
                    self._mkdir_implicit(cur, c)
                else:
                    if stat.S_ISLNK(st.st_mode):
                        links += 1
                        if links > _MAX_SYMLINKS:
                            raise InvalidArgument(
                                f"layer: entry {_q(self._entry)}: too many levels of symbolic links"
                            )
                        target = os.readlink(c, dir_fd=cur)
                        if target.startswith("/"):
                            path = []
                            new = os.open(".", _O_DIR_PATH, dir_fd=self.root_fd)
                            os.close(cur)
                            cur = new
                        todo.extend(reversed(target.split("/")))
                        continue
                    if not stat.S_ISDIR(st.st_mode):
                        here = tuple(path) + (c,)
                        if not create or for_whiteout:
                            os.close(cur)
                            return None, None
                        if here in self.whiteouts:
                            # overlay: a directory replaces this layer's own
                            # whiteout: it hides the lower one, so opaque.
                            os.unlink(c, dir_fd=cur)
                            self._mkdir_implicit(cur, c)
                            self._set_opaque(cur, c)
                            self.whiteouts.discard(here)
                        else:
                            raise InvalidArgument(
                                f"layer: entry {_q(self._entry)}: "
                                f"{_q('/'.join(here))} is not a directory"
                            )
                new = os.open(c, _O_DIR_PATH, dir_fd=cur)
                os.close(cur)
                cur = new
                path.append(c)
            return cur, tuple(path)
        except BaseException:
            os.close(cur)
            raise

    def _open_canonical(self, path: list[str]) -> int:
        cur = os.open(".", _O_DIR_PATH, dir_fd=self.root_fd)
        for c in path:
            try:
                new = os.open(c, _O_DIR_PATH, dir_fd=cur)
            finally:
                os.close(cur)
            cur = new
        return cur

    def _mkdir_implicit(self, pfd: int, name: str) -> None:
        os.mkdir(name, 0o755, dir_fd=pfd)
        fd = os.open(name, _O_DIR_READ, dir_fd=pfd)
        try:
            os.fchmod(fd, 0o755)  # not subject to the umask
        finally:
            os.close(fd)

    # -- entry kinds

    def _replace(self, pfd: int, name: str, *, want_dir: bool) -> os.stat_result | None:
        """Remove what is at name unless both it and the new entry are dirs.

        Returns the stat of a directory that is kept, else None.
        """
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if want_dir and stat.S_ISDIR(st.st_mode):
            return st
        remove_at(pfd, name, st)
        return None

    def _make_dir(self, pfd: int, name: str, path: tuple[str, ...], m: tarfile.TarInfo,
                  xattrs: list[tuple[str, bytes]]) -> None:
        was_whiteout = path in self.whiteouts
        if self._replace(pfd, name, want_dir=True) is None:
            os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, _O_DIR_READ, dir_fd=pfd)
        try:
            self._meta_fd(fd, m, xattrs)
            if was_whiteout:
                # `.wh.d` then `d/` in one layer: a new d that hides the lower d.
                os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
                self.whiteouts.discard(path)
        finally:
            os.close(fd)
        self.dir_times[path] = _times(m)

    def _make_file(self, pfd: int, name: str, m: tarfile.TarInfo, xattrs: list[tuple[str, bytes]],
                   tf: tarfile.TarFile) -> None:
        fd = os.open(
            name,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_TRUNC | os.O_CLOEXEC,
            0o600,
            dir_fd=pfd,
        )
        try:
            copy_member(tf, m, fd)
            self._meta_fd(fd, m, xattrs)
        finally:
            os.close(fd)
        atime, mtime = _times(m)
        os.utime(name, ns=(atime, mtime), dir_fd=pfd, follow_symlinks=False)

    def _make_hardlink(self, pfd: int, name: str, path: tuple[str, ...], m: tarfile.TarInfo) -> bool:
        try:
            tparts = self._clean(m.linkname)
        except InvalidArgument:
            raise InvalidArgument(
                f"layer: hardlink {_q(m.name)} -> {_q(m.linkname)} escapes the root"
            ) from None
        bad = InvalidArgument(
            f"layer: hardlink {_q(m.name)} -> {_q(m.linkname)}: "
            "target is not an earlier file of this layer"
        )
        if not tparts:
            raise bad
        tpfd, tppath = self._walk(tparts[:-1], create=False)
        if tpfd is None:
            raise bad
        try:
            tname = tparts[-1]
            tpath = tppath + (tname,)
            if tpath not in self.paths:
                raise bad
            try:
                st = os.stat(tname, dir_fd=tpfd, follow_symlinks=False)
            except FileNotFoundError:
                raise bad from None
            if stat.S_ISDIR(st.st_mode):
                raise bad
            if tpath == path:
                return False  # a link to itself: nothing to do
            self._replace(pfd, name, want_dir=False)
            os.link(tname, name, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
            self.whiteouts.discard(path)
            return True
        finally:
            os.close(tpfd)

    def _apply_root(self, m: tarfile.TarInfo) -> None:
        xattrs = self._xattrs(m)
        fd = os.open(".", _O_DIR_READ, dir_fd=self.root_fd)
        try:
            self._meta_fd(fd, m, xattrs)
        finally:
            os.close(fd)
        self.dir_times[()] = _times(m)

    # -- whiteouts

    def _whiteout(self, pparts: list[str], base: str) -> None:
        if base == OPAQUE_WHITEOUT:
            self._opaque(pparts)
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return  # aufs metadata (.wh..wh.plnk, ...): ignored
        target = base[len(WHITEOUT_PREFIX):]
        if target in ("", ".", ".."):
            raise InvalidArgument(f"layer: whiteout {_q(self._entry)} is invalid")

        if self.mode == "delete":
            pfd, ppath = self._walk(pparts, create=False)
            if pfd is None:
                return
            try:
                path = ppath + (target,)
                try:
                    st = os.stat(target, dir_fd=pfd, follow_symlinks=False)
                except FileNotFoundError:
                    return
                if path in self.paths or path in self.ancestors:
                    # Same-layer entry survives; a same-layer dir loses the
                    # lower content it was merged with.
                    if stat.S_ISDIR(st.st_mode):
                        dfd = os.open(target, _O_DIR_PATH, dir_fd=pfd)
                        try:
                            self._opaque_delete(dfd, path)
                        finally:
                            os.close(dfd)
                    return
                remove_at(pfd, target, st)
            finally:
                os.close(pfd)
            return

        pfd, ppath = self._walk(pparts, create=True, for_whiteout=True)
        if pfd is None:
            return
        try:
            path = ppath + (target,)
            if path in self.paths or path in self.ancestors:
                try:
                    st = os.stat(target, dir_fd=pfd, follow_symlinks=False)
                except FileNotFoundError:
                    return
                if stat.S_ISDIR(st.st_mode):
                    self._set_opaque(pfd, target)
                return
            self._replace(pfd, target, want_dir=False)
            os.mknod(target, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
            self.whiteouts.add(path)
        finally:
            os.close(pfd)

    def _opaque(self, dparts: list[str]) -> None:
        if self.mode == "overlay":
            dfd, dpath = self._walk(dparts, create=True, for_whiteout=True)
            if dfd is None:
                return
            try:
                fd = os.open(".", _O_DIR_READ, dir_fd=dfd)
                try:
                    os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
                finally:
                    os.close(fd)
            finally:
                os.close(dfd)
        else:
            dfd, dpath = self._walk(dparts, create=False)
            if dfd is None:
                return
            try:
                self._opaque_delete(dfd, dpath)
            finally:
                os.close(dfd)
        for i in range(len(dpath) + 1):
            self.ancestors.add(dpath[:i])

    def _opaque_delete(self, dfd: int, dpath: tuple[str, ...]) -> None:
        """Remove the children of a directory that did not come from this layer."""
        fd = os.open(".", _O_DIR_READ, dir_fd=dfd)
        try:
            with os.scandir(fd) as it:
                children = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
            for name, is_dir in children:
                p = dpath + (name,)
                if p in self.paths or p in self.ancestors:
                    if is_dir:
                        cfd = os.open(name, _O_DIR_PATH, dir_fd=fd)
                        try:
                            self._opaque_delete(cfd, p)
                        finally:
                            os.close(cfd)
                else:
                    remove_at(fd, name)
        finally:
            os.close(fd)

    def _set_opaque(self, pfd: int, name: str) -> None:
        fd = os.open(name, _O_DIR_READ, dir_fd=pfd)
        try:
            os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
        finally:
            os.close(fd)

    # -- metadata

    def _xattrs(self, m: tarfile.TarInfo) -> list[tuple[str, bytes]]:
        out = []
        for key, value in m.pax_headers.items():
            if key.startswith(PAX_XATTR):
                name = key[len(PAX_XATTR):]
                data = xattr_bytes(value)
            elif key.startswith("LIBARCHIVE.xattr."):
                name = urllib.parse.unquote(key[len("LIBARCHIVE.xattr."):])
                try:
                    data = base64.b64decode(value + "=" * (-len(value) % 4))
                except ValueError:
                    raise InvalidArgument(
                        f"layer: entry {_q(m.name)}: bad xattr value for {_q(name)}"
                    ) from None
            else:
                continue
            if name.startswith(_RESERVED_XATTR_PREFIXES):
                raise InvalidArgument(
                    f"layer: entry {_q(m.name)} carries the reserved xattr {_q(name)}"
                )
            if not name or "\0" in name:
                raise InvalidArgument(f"layer: entry {_q(m.name)}: bad xattr name")
            out.append((name, data))
        return out

    def _chown_ok(self, e: OSError) -> bool:
        return not self.privileged and e.errno in (errno.EPERM, errno.EINVAL)

    def _xattr_ok(self, name: str, e: OSError) -> bool:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return True  # the filesystem cannot hold it
        if name.startswith("security.selinux"):
            return True  # labels are the host policy's business
        return not self.privileged and e.errno in (errno.EPERM, errno.EACCES)

    def _meta_fd(self, fd: int, m: tarfile.TarInfo, xattrs: list[tuple[str, bytes]]) -> None:
        """Owner, xattrs, mode on an open regular file or directory."""
        try:
            os.fchown(fd, m.uid, m.gid)
        except OSError as e:
            if not self._chown_ok(e):
                raise
        for name, value in xattrs:
            try:
                os.setxattr(fd, name, value)
            except OSError as e:
                if not self._xattr_ok(name, e):
                    raise
        os.fchmod(fd, m.mode & 0o7777)

    def _meta_at(self, pfd: int, name: str, m: tarfile.TarInfo, xattrs: list[tuple[str, bytes]], *,
                 chmod: bool) -> None:
        """Owner, xattrs, mode, times on a symlink, device or fifo (never followed)."""
        try:
            os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        except OSError as e:
            if not self._chown_ok(e):
                raise
        if xattrs:
            # lsetxattr has no *at form: /proc/self/fd/N names the parent
            # exactly; the last component is not followed.
            proc_path = f"/proc/self/fd/{pfd}/{name}"
            for xname, value in xattrs:
                try:
                    os.setxattr(proc_path, xname, value, follow_symlinks=False)
                except OSError as e:
                    if not self._xattr_ok(xname, e):
                        raise
        if chmod:
            os.chmod(name, m.mode & 0o7777, dir_fd=pfd, follow_symlinks=False)
        atime, mtime = _times(m)
        os.utime(name, ns=(atime, mtime), dir_fd=pfd, follow_symlinks=False)

    def finish(self) -> None:
        """Set directory times, after all their content is in place."""
        for path, (atime, mtime) in self.dir_times.items():
            if not path:
                os.utime(".", ns=(atime, mtime), dir_fd=self.root_fd)
                continue
            pfd, _ = self._walk(list(path[:-1]), create=False)
            if pfd is None:
                continue
            try:
                try:
                    st = os.stat(path[-1], dir_fd=pfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    os.utime(path[-1], ns=(atime, mtime), dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(pfd)


def _times(m: tarfile.TarInfo) -> tuple[int, int]:
    mtime = int(m.mtime * 1_000_000_000)
    atime_s = m.pax_headers.get("atime")
    try:
        atime = int(float(atime_s) * 1_000_000_000) if atime_s else mtime
    except ValueError:
        atime = mtime
    return atime, mtime
