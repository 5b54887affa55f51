"""Tar, the one owner: writing a tree as a tar stream and extracting a tar safely into a root.

- tar_stream(pfd, name, arcname): a tar (bytes chunks) of an entry of a directory fd, walked
  with *at calls that never follow a symlink (docker cp's GET side, `berth cp` from the host,
  export).
- extract_tar(rootfd, dest, fileobj, ...): a tar unpacked into a directory of a root fd, every
  parent resolved inside the root (berth.linux.paths), the last component never followed,
  names climbing out of the destination refused (docker cp's PUT side, `berth cp` to the host).
- clean_parts, remove_at, copy_member, stat_header, pax_value/xattr_bytes: the member-name
  cleaning, the no-follow recursive removal, the data copy, headers from lstat and xattrs in PAX
  records, which image layers (berth.images.layer and diff, whiteouts on top) use too.

Pure file-system code over directory fds: no daemon, no HTTP; the CLI may import it.
"""

from __future__ import annotations

import errno
import functools
import os
import posixpath
import stat
import tarfile

from berth.errors import InvalidArgument, SystemError_
from berth.linux.paths import ensure_in_root, open_in_root, read_in_rootfd

TYPE_CHECKING = False  # no typing at run time: `berth cp` imports this
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import BinaryIO

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_DIR_READ = _O_DIR
_CHUNK = 1 << 20


def clean_parts(name: str) -> list[str] | None:
    """The components of an archive member's name, "." and empty ones dropped and ".." applied;
    None when ".." would climb above the top (the member escapes the root)."""
    parts: list[str] = []
    for c in name.split("/"):
        if c in ("", "."):
            continue
        if c == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(c)
    return parts


def remove_at(pfd: int, name: str, st: os.stat_result | None = None) -> None:
    """Remove name in the directory pfd, recursively, never following a link."""
    if st is None:
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=pfd)
        return
    fd = os.open(name, _O_DIR_READ, dir_fd=pfd)
    try:
        with os.scandir(fd) as it:
            children = [e.name for e in it]
        for child in children:
            remove_at(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=pfd)


CAP_XATTR = "security.capability"  #: the one xattr docker archives (file capabilities)
PAX_XATTR = "SCHILY.xattr."  #: the PAX record prefix of an xattr (GNU tar's, Go's, docker's)


def pax_value(raw: bytes) -> str:
    """An xattr's bytes as a PAX record value: tarfile writes them back byte for byte (as Go's
    archive/tar does: raw bytes, with hdrcharset=BINARY when they are not UTF-8)."""
    return raw.decode("utf-8", "surrogateescape")


def xattr_bytes(value: str) -> bytes:
    """A PAX record value read by tarfile as the xattr's bytes again (inverse of pax_value)."""
    return value.encode("utf-8", "surrogateescape")


class DockerTarInfo(tarfile.TarInfo):
    """A header whose mode field carries the file's type bits beside its permissions (0100644 for
    a regular file, 040755 for a directory) as docker writes them: Go's archive/tar stopped
    writing them in Go 1.9 and moby's archive puts them back (fillGo18FileTypeBits), so that
    layers' digests stay what they were. tarfile masks the field to 0o7777; ifmt goes in after.
    The device numbers are octal zeros for other entries than devices, as Go writes them.
    Reading is unchanged (readers take the permissions, & 0o7777)."""

    ifmt = 0  # stat.S_IFMT of the file the header describes; 0: none (whiteouts, given modes)

    def get_info(self) -> dict:
        info = super().get_info()
        info["ifmt"] = self.ifmt
        return info

    @staticmethod
    def _create_header(info: dict, format: int, encoding: str, errors: str) -> bytes:  # noqa: A002 (tarfile's name)
        buf = tarfile.TarInfo._create_header(info, format, encoding, errors)
        if "ifmt" not in info:  # a PAX record's own header
            return buf
        block = bytearray(buf)  # one header block: the mode and device fields, then the checksum again
        if info["ifmt"]:
            block[100:108] = b"%07o\0" % ((info["mode"] & 0o7777) | info["ifmt"])
        if info["type"] not in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            # Go's writer fills every entry's device numbers (zeros); tarfile leaves them blank
            block[329:345] = b"0000000\0" * 2
        block[148:156] = b" " * 8
        block[148:155] = b"%06o\0" % sum(block)
        return bytes(block)


def stat_header(name: str, st: os.stat_result, type_: bytes | None = None,
                mode: int | None = None) -> tarfile.TarInfo:
    """A tar header for an lstat result with docker's conventions: numeric owner only, whole-second
    mtime, the permission bits with the file's type bits (or mode, alone); the type from st unless
    given, devices' numbers."""
    ti = DockerTarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode) if mode is None else mode
    ti.ifmt = stat.S_IFMT(st.st_mode) if mode is None else 0
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.uname = ti.gname = ""
    ti.mtime = int(st.st_mtime)
    if type_ is not None:
        ti.type = type_
    if ti.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return ti


def copy_member(tf: tarfile.TarFile, m: tarfile.TarInfo, fd: int) -> None:
    """Write the data of the regular-file member m (of a tar read as a stream) into fd."""
    src = tf.extractfile(m)
    if src is None:
        return
    while True:
        chunk = src.read(_CHUNK)
        if not chunk:
            break
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]


def _tar_header(ti: tarfile.TarInfo) -> bytes:
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def owner_names(rootfd: int) -> Callable[[int, int], tuple[str, str]]:
    """(user name, group name) of a uid and gid as a container's /etc/passwd and /etc/group
    (inside the root rootfd) name them, "" for what they lack: the owners' names dockerd's
    archives of a container carry (it makes them in the container's root, where its lookups
    read those files)."""
    def table(path: str) -> dict[int, str]:
        out: dict[int, str] = {}
        try:
            data = read_in_rootfd(rootfd, path)
        except OSError:
            return out
        for line in data.decode("utf-8", "surrogateescape").splitlines():
            parts = line.split(":")
            if len(parts) >= 3 and parts[0] and parts[2].isdigit():
                out.setdefault(int(parts[2]), parts[0])  # (the first entry of an id, as a lookup finds it)
        return out
    users, groups = table("/etc/passwd"), table("/etc/group")
    # and what the host's name service adds there: dockerd's lookups, made in the container's
    # root, keep the modules its nsswitch.conf loaded; systemd's makes up root and nobody
    # (Debian's name for the group: nogroup)
    for db, made, into in (("passwd", {0: "root", 65534: "nobody"}, users),
                           ("group", {0: "root", 65534: "nogroup"}, groups)):
        if "systemd" in _nss_sources(db):
            for ident, nm in made.items():
                into.setdefault(ident, nm)
    return lambda uid, gid: (users.get(uid, ""), groups.get(gid, ""))


@functools.lru_cache(maxsize=4096)
def host_names(uid: int, gid: int) -> tuple[str, str]:
    """The host's names of a uid and gid ("" for none): what dockerd's own lookups give."""
    import grp
    import pwd
    try:
        user = pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        user = ""
    try:
        group = grp.getgrgid(gid).gr_name
    except (KeyError, OverflowError):
        group = ""
    return user, group


def _nss_sources(db: str) -> list[str]:
    """The host's /etc/nsswitch.conf sources of a database ("passwd", "group")."""
    try:
        with open("/etc/nsswitch.conf") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key.strip() == db:
                    return [w for w in rest.split("#")[0].split() if not w.startswith("[")]
    except OSError:
        pass
    return []


def tar_stream(pfd: int, name: str, arcname: str, stop: Callable[[int], bool] | None = None,
               names: Callable[[int, int], tuple[str, str]] | None = None,
               ids: Callable[[int, int], tuple[int, int]] | None = None) -> Iterator[bytes]:
    """Yield a tar (bytes chunks) of the entry `name` in the directory fd pfd ("." for pfd
    itself), entries named arcname[/...]. Never follows a symlink; a file that changes size
    while read is cut or zero-padded to the size in its header. stop(fd): a directory for which
    it says True is written without its contents. names: the owners' names of each entry (see
    owner_names); none without. ids: the owners' ids as the archive records them (named after
    the files' own), None: as they are."""
    links = {}

    def header(arc: str, st: os.stat_result, type_: bytes | None = None) -> tarfile.TarInfo:
        ti = stat_header(arc, st, type_)
        if names is not None:
            ti.uname, ti.gname = names(ti.uid, ti.gid)
        if ids is not None:
            ti.uid, ti.gid = ids(ti.uid, ti.gid)
        return ti

    def entry(dfd: int, nm: str, arc: str) -> Iterator[bytes]:
        try:
            st = os.stat(nm, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return  # removed while walking
        m = st.st_mode
        ti = header(arc, st)
        if stat.S_ISDIR(m):
            ti.type = tarfile.DIRTYPE
            try:
                fd = os.open(nm, _O_DIR, dir_fd=dfd)
            except (FileNotFoundError, NotADirectoryError):
                return
            try:
                yield _tar_header(ti)
                if stop is not None and stop(fd):
                    return
                for child in sorted(os.listdir(fd)):
                    yield from entry(fd, child, posixpath.join(arc, child) if arc != "." else child)
            finally:
                os.close(fd)
        elif stat.S_ISREG(m):
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in links:
                    ti.type = tarfile.LNKTYPE
                    ti.linkname = links[key]
                    yield _tar_header(ti)
                    return
                links[key] = arc
            try:
                fd = os.open(nm, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
            except (FileNotFoundError, OSError) as e:
                if isinstance(e, FileNotFoundError) or e.errno == errno.ELOOP:
                    return
                raise
            try:
                fst = os.fstat(fd)
                if not stat.S_ISREG(fst.st_mode):
                    return
                ti = header(arc, fst)
                ti.type = tarfile.REGTYPE
                ti.size = fst.st_size
                try:
                    ti.pax_headers[PAX_XATTR + CAP_XATTR] = pax_value(os.getxattr(fd, CAP_XATTR))
                except OSError:
                    pass
                yield _tar_header(ti)
                left = ti.size
                while left > 0:
                    data = os.read(fd, min(_CHUNK, left))
                    if not data:
                        break
                    left -= len(data)
                    yield data
                if left > 0:
                    yield bytes(left)
                pad = -ti.size % tarfile.BLOCKSIZE
                if pad:
                    yield bytes(pad)
            finally:
                os.close(fd)
        elif stat.S_ISLNK(m):
            ti.type = tarfile.SYMTYPE
            try:
                ti.linkname = os.readlink(nm, dir_fd=dfd)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.EINVAL):
                    return  # removed (or replaced by something else) while walking
                raise
            yield _tar_header(ti)
        elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
            ti = header(arc, st, tarfile.CHRTYPE if stat.S_ISCHR(m) else tarfile.BLKTYPE)
            yield _tar_header(ti)
        elif stat.S_ISFIFO(m):
            ti.type = tarfile.FIFOTYPE
            yield _tar_header(ti)
        # sockets are not archived (as docker)

    if name == ".":
        st = os.fstat(pfd)
        ti = header(arcname, st)
        ti.type = tarfile.DIRTYPE
        fd = os.open(".", _O_DIR & ~os.O_NOFOLLOW, dir_fd=pfd)
        try:
            yield _tar_header(ti)
            if stop is None or not stop(fd):
                for child in sorted(os.listdir(fd)):
                    yield from entry(fd, child, posixpath.join(arcname, child) if arcname != "." else "./" + child)
        finally:
            os.close(fd)
    else:
        yield from entry(pfd, name, arcname)
    yield bytes(tarfile.BLOCKSIZE * 2)


def _clean_member(name: str, dest_label: str) -> list[str]:
    parts = clean_parts(name)
    if parts is None:
        raise InvalidArgument(f'"{name}" is outside of "{dest_label}"')
    return parts


def _rebase(name: str, rebase: tuple[str, str] | None) -> str:
    if not rebase:
        return name
    old, new = rebase
    if old == "/":
        return posixpath.join(new, name.lstrip("/"))
    first, sep, rest = name.lstrip("/").partition("/")
    if first == old or (old == "." and first == ""):
        return new + sep + rest if rest or sep else new
    return name


def extract_tar(rootfd: int, dest: str, fileobj: BinaryIO,
                owner: str | tuple[int, int] | Callable[[int, int], tuple[int, int]] | None = None,
                no_overwrite_dir_nondir: bool = False, rebase: tuple[str, str] | None = None) -> None:
    """Extract the tar read from fileobj into the directory dest (relative to rootfd, no symlinks).

    Every parent is resolved with openat2(RESOLVE_IN_ROOT) from rootfd, so symlinks met on
    the way (absolute ones too) lead somewhere inside rootfd's tree and never out of it; the
    last component of an entry is never followed. Entry names climbing out of dest are refused.
    owner: None leaves files to the caller's uid/gid, "keep" uses the archive's, (uid, gid)
    sets that owner, a function gives the owner of the archive's ids. rebase=(old, new) renames the first path component old to new (docker's
    RebaseArchiveEntries)."""
    dest = dest.strip("/")
    label = "/" + dest
    dir_times = []
    privileged = os.geteuid() == 0

    def chown(fd_or_name: int | str, m: tarfile.TarInfo, dir_fd: int | None = None) -> None:
        if owner is None or (not privileged and owner == "keep"):
            return
        uid, gid = (m.uid, m.gid) if owner == "keep" else owner(m.uid, m.gid) if callable(owner) else owner
        try:
            if dir_fd is None:
                os.fchown(fd_or_name, uid, gid)
            else:
                os.chown(fd_or_name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        except PermissionError:
            if privileged:
                raise

    def xattrs(fd: int, m: tarfile.TarInfo) -> None:
        for k, v in m.pax_headers.items():
            if k.startswith(PAX_XATTR):
                xname = k[len(PAX_XATTR):]
                if xname.startswith(("trusted.overlay.", "user.overlay.")):
                    continue
                try:
                    os.setxattr(fd, xname, xattr_bytes(v))
                except (OSError, UnicodeEncodeError):
                    pass

    try:
        tf = tarfile.open(fileobj=fileobj, mode="r|")  # noqa: SIM115 (closed in the finally below)
    except tarfile.ReadError as e:
        if str(e) == "empty file":  # no bytes at all: no entries, nothing to extract (as Go's tar reader)
            return
        raise InvalidArgument(f"invalid tar archive: {e}") from None
    except tarfile.TarError as e:
        raise InvalidArgument(f"invalid tar archive: {e}") from None
    try:
        for m in tf:
            name = _rebase(m.name, rebase)
            parts = _clean_member(name, label)
            if not parts:
                if m.isdir():
                    continue
                raise InvalidArgument(f'cannot extract "{m.name}": it names the destination directory')
            rel_parent = "/".join([dest] + parts[:-1]).strip("/")
            base = parts[-1]
            if rel_parent:
                pfd = ensure_in_root(rootfd, rel_parent, directory=True)
            else:
                pfd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=rootfd)
            try:
                pst = os.fstat(pfd)
                if not stat.S_ISDIR(pst.st_mode):
                    raise InvalidArgument(f'cannot extract "{m.name}": {posixpath.dirname(name)} is not a directory')
                try:
                    cur = os.stat(base, dir_fd=pfd, follow_symlinks=False)
                except FileNotFoundError:
                    cur = None
                if cur is not None:
                    is_dir = stat.S_ISDIR(cur.st_mode)
                    if no_overwrite_dir_nondir and is_dir and not m.isdir():
                        raise InvalidArgument(f'cannot overwrite directory "/{"/".join([dest] + parts).strip("/")}" '
                                              f'with non-directory "{label}"')
                    if no_overwrite_dir_nondir and not is_dir and m.isdir():
                        raise InvalidArgument(f'cannot overwrite non-directory "/{"/".join([dest] + parts).strip("/")}" '
                                              f'with directory "{label}"')
                    if not (is_dir and m.isdir()):
                        remove_at(pfd, base, cur)
                mode = m.mode & 0o7777
                if m.isdir():
                    if cur is None or not stat.S_ISDIR(cur.st_mode):
                        os.mkdir(base, 0o700, dir_fd=pfd)
                    fd = os.open(base, _O_DIR, dir_fd=pfd)
                    try:
                        chown(fd, m)
                        xattrs(fd, m)
                        os.fchmod(fd, mode)
                    finally:
                        os.close(fd)
                    dir_times.append(("/".join([dest] + parts).strip("/"), m.mtime))
                elif m.isreg():
                    fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                                 dir_fd=pfd)
                    try:
                        copy_member(tf, m, fd)
                        chown(fd, m)
                        xattrs(fd, m)
                        os.fchmod(fd, mode)
                        os.utime(fd, (m.mtime, m.mtime))
                    finally:
                        os.close(fd)
                elif m.issym():
                    os.symlink(m.linkname, base, dir_fd=pfd)
                    chown(base, m, dir_fd=pfd)
                    os.utime(base, (m.mtime, m.mtime), dir_fd=pfd, follow_symlinks=False)
                elif m.islnk():
                    tparts = _clean_member(_rebase(m.linkname, rebase), label)
                    if not tparts:
                        raise InvalidArgument(f'hardlink "{m.name}" -> "{m.linkname}" is invalid')
                    tpath = "/".join([dest] + tparts[:-1]).strip("/") or "."
                    try:
                        tfd = open_in_root(rootfd, tpath, os.O_PATH | os.O_DIRECTORY)
                    except OSError:
                        raise InvalidArgument(f'hardlink "{m.name}" -> "{m.linkname}": no such file') from None
                    try:
                        os.link(tparts[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
                    except FileNotFoundError:
                        raise InvalidArgument(f'hardlink "{m.name}" -> "{m.linkname}": no such file') from None
                    finally:
                        os.close(tfd)
                elif m.ischr() or m.isblk() or m.isfifo():
                    kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
                    dev = os.makedev(m.devmajor, m.devminor) if kind != stat.S_IFIFO else 0
                    os.mknod(base, 0o600 | kind, dev, dir_fd=pfd)
                    chown(base, m, dir_fd=pfd)
                    try:
                        os.chmod(base, mode, dir_fd=pfd, follow_symlinks=False)
                    except (NotImplementedError, OSError) as e:
                        if getattr(e, "errno", errno.ENOTSUP) not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                            raise
                    os.utime(base, (m.mtime, m.mtime), dir_fd=pfd, follow_symlinks=False)
                else:
                    raise InvalidArgument(f'cannot extract "{m.name}": unsupported entry type {m.type!r}')
            finally:
                os.close(pfd)
        for rel, mtime in reversed(dir_times):
            try:
                fd = open_in_root(rootfd, rel, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)
    except tarfile.TarError as e:
        raise InvalidArgument(f"invalid tar archive: {e}") from None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EIO, errno.EDQUOT):
            raise SystemError_(f"extracting the archive: {e.strerror}") from None
        raise InvalidArgument(f"extracting the archive: {e.strerror}"
                              + (f": {e.filename}" if e.filename else "")) from None
    finally:
        tf.close()
    while fileobj.read(_CHUNK):
        pass
