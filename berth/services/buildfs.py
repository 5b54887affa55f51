"""The filesystem side of a build (COPY, ADD, WORKDIR, the context): paths resolved inside a
root as if it were "/", copies with docker's rules and owners, content hashes of sources,
user and group names read from the image's /etc/passwd and /etc/group."""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import stat
import tarfile

from berth.archive.tar import host_names
from berth.errors import InvalidArgument
from berth.linux.paths import read_in_root, resolve_in

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from typing import BinaryIO
    import hashlib

# --- context helpers ----------------------------------------------------------------------------------

def _read_exact(f: BinaryIO, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        c = f.read(n - len(buf))
        if not c:
            break
        buf += c
    return buf


def _is_archive(head: bytes) -> bool:
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00" or \
            head[:4] == b"\x28\xb5\x2f\xfd":
        return True
    if len(head) < 512:
        return False
    if head == b"\0" * 512:
        return True
    try:
        tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
        return True
    except tarfile.HeaderError:
        return False


def _tarsum(name: str, path: str, st: os.stat_result, daemons: bool) -> str:
    """dockerd's classic builder's sum of one file of a COPY/ADD source (tarsum v1's header: name,
    mode, owner, size, type, link, device, not the mtime; then the content). daemons: a stage's or
    image's file, whose header dockerd makes itself: the mode with the file's type, the owners'
    names as the host names them; a context's comes from the client's tar, without either."""
    m = st.st_mode
    size, link, major, minor = 0, "", 0, 0
    if stat.S_ISDIR(m):
        kind, name = "5", name.rstrip("/") + "/"
    elif stat.S_ISLNK(m):
        kind, link = "2", os.readlink(path)
    elif stat.S_ISREG(m):
        kind, size = "0", st.st_size
    else:
        kind = {stat.S_IFCHR: "3", stat.S_IFBLK: "4", stat.S_IFIFO: "6"}.get(stat.S_IFMT(m), "0")
        if kind in ("3", "4"):
            major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    mode = stat.S_IMODE(m) | (stat.S_IFMT(m) if daemons else 0)
    uname, gname = host_names(st.st_uid, st.st_gid) if daemons else ("", "")
    h = hashlib.sha256()
    for key, value in (("name", name), ("mode", mode), ("uid", st.st_uid), ("gid", st.st_gid), ("size", size),
                       ("typeflag", kind), ("linkname", link), ("uname", uname), ("gname", gname),
                       ("devmajor", major), ("devminor", minor)):
        h.update(f"{key}{value}".encode("utf-8", "surrogateescape"))
    try:
        h.update(b"security.capability" + os.getxattr(path, "security.capability", follow_symlinks=False))
    except OSError:
        pass
    if kind == "0":
        with open(path, "rb") as f:
            while c := f.read(1 << 20):
                h.update(c)
    return h.hexdigest()


def source_hash(root: str, host: str, from_context: bool = True) -> str:
    """The hash dockerd's classic builder shows for a COPY/ADD source in the step's history, the
    same for the same files: "file:<sum>", or "dir:<its paths' sums, sorted>". As dockerd's, a
    path's sum is that of what it leads to (symlinks followed inside root); one that leads nowhere
    is its name (a context's), or the name of where it leads (a stage's: dockerd's two sources)."""
    def sum_of(path: str) -> str:
        rel = os.path.relpath(path, root)
        # (host is resolved and the walk never enters a symlink: only a symlink itself leads elsewhere)
        full = resolve_in(root, rel) if os.path.islink(path) else path
        if not os.path.lexists(full):
            return rel if from_context else os.path.relpath(full, root)
        return _tarsum(os.path.relpath(full, root), full, os.lstat(full), not from_context)
    if not os.path.isdir(host):
        return "file:" + sum_of(host)
    sums = [] if os.path.samefile(host, root) else [sum_of(host)]
    for dirpath, dirnames, filenames in os.walk(host):
        sums += [sum_of(os.path.join(dirpath, n)) for n in dirnames + filenames]
    return "dir:" + hashlib.sha256(",".join(sorted(sums)).encode()).hexdigest()


def _lookup(rootfs: str, file: str, name: str) -> tuple[int | None, int | None]:
    try:
        for line in read_in_root(rootfs, file).decode(errors="replace").splitlines():
            parts = line.strip().split(":")
            if len(parts) >= 3 and parts[0] == name:
                return int(parts[2]), (int(parts[3]) if file.endswith("passwd") and len(parts) > 3 else None)
    except (OSError, ValueError):
        pass
    return None, None


def _ids(rootfs: str, chown: str) -> tuple[int, int]:
    user, _, group = chown.partition(":")
    if user.isdigit():
        uid, pgid = int(user), None
    else:
        uid, pgid = _lookup(rootfs, "/etc/passwd", user)
        if uid is None:
            raise InvalidArgument(f"unable to convert uid/gid chown string to host mapping: "
                                  f"can't find uid for user {user}: no such user: {user}")
    if not group:
        gid = pgid if pgid is not None else uid
    elif group.isdigit():
        gid = int(group)
    else:
        gid, _ = _lookup(rootfs, "/etc/group", group)
        if gid is None:
            raise InvalidArgument(f"unable to convert uid/gid chown string to host mapping: "
                                  f"can't find gid for group {group}: no such group: {group}")
    return uid, gid


def _mkdir_all(rootfs: str, path: str, uid: int, gid: int, chown_new: bool = True) -> str:
    """mkdir -p of ``path`` inside rootfs (symlinks resolved inside it); new dirs 0755."""
    parts = [p for p in path.split("/") if p]
    cur = "/"
    for p in parts:
        nxt = posixpath.join(cur, p)
        host = resolve_in(rootfs, nxt)
        if not os.path.lexists(host):
            os.mkdir(host, 0o755)
            os.chmod(host, 0o755)
            if chown_new:
                os.chown(host, uid, gid)
        elif not os.path.isdir(host):
            raise InvalidArgument(f"cannot create directory {nxt}: a file of that name exists")
        cur = os.path.relpath(host, rootfs)
        cur = "/" + ("" if cur == "." else cur)
    return resolve_in(rootfs, path)


def _is_local_archive(host: str) -> bool:
    if not os.path.isfile(host):
        return False
    with open(host, "rb") as f:
        head = f.read(512)
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return True
    if len(head) == 512 and head[257:262] == b"ustar":
        return True
    return False


def _copy_into(rootfs: str, host: str, dest: str, multi: bool, uid: int | None, gid: int | None, mode: int | None,
               chown: str | None, extract: bool = False) -> None:
    """Copy one source (host path) to dest inside rootfs, docker's rules: a directory's content
    goes into dest; a file goes to dest, or into it when dest ends in / (or is a directory, or
    there are several sources)."""
    if extract:
        d = _mkdir_all(rootfs, dest, 0, 0)
        import bz2
        import gzip
        import lzma
        with open(host, "rb") as f:
            head = f.read(6)
        opener = gzip.open if head[:2] == b"\x1f\x8b" else bz2.open if head[:3] == b"BZh" else \
            lzma.open if head[:6] == b"\xfd7zXZ\x00" else open
        from berth.images.layer import apply_layer
        with opener(host, "rb") as f:
            apply_layer(f, d, whiteout_mode="delete", compression="none")
        return
    st = os.stat(host)  # the source itself is followed (inside its root: resolve_in did it)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        # a device or a fifo is never read (a context or an image could name /dev/zero or a disk)
        raise InvalidArgument(f"COPY failed: {posixpath.basename(host)} is not a regular file or a directory")
    duid, dgid = (0, 0) if uid is None else (uid, gid)  # directories made for the destination
    if stat.S_ISDIR(st.st_mode):
        d = _mkdir_all(rootfs, dest, duid, dgid)
        _copy_tree(host, d, uid, gid, mode, chown)
        return
    if dest.endswith("/") or multi or os.path.isdir(resolve_in(rootfs, dest)):
        d = _mkdir_all(rootfs, dest, duid, dgid)
        target = os.path.join(d, os.path.basename(host))
    else:
        parent = posixpath.dirname(dest.rstrip("/")) or "/"
        d = _mkdir_all(rootfs, parent, duid, dgid)
        target = os.path.join(d, posixpath.basename(dest.rstrip("/")))
        if os.path.islink(target) or (os.path.lexists(target) and not os.path.isdir(target)):
            os.unlink(target)
    _copy_file(host, target, st, uid, gid, mode)


def _copy_file(src: str, dst: str, st: os.stat_result, uid: int | None, gid: int | None, mode: int | None) -> None:
    if os.path.lexists(dst) and not os.path.isdir(dst):
        os.unlink(dst)
    fd_in = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            while os.sendfile(fd_out, fd_in, None, 1 << 30):
                pass
            os.fchown(fd_out, st.st_uid if uid is None else uid, st.st_gid if gid is None else gid)
            os.fchmod(fd_out, mode if mode is not None else stat.S_IMODE(st.st_mode))
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_tree(src: str, dst: str, uid: int | None, gid: int | None, mode: int | None, chown: str | None) -> None:
    for name in sorted(os.listdir(src)):
        s, d = os.path.join(src, name), os.path.join(dst, name)
        st = os.lstat(s)
        if stat.S_ISDIR(st.st_mode):
            if os.path.lexists(d) and not os.path.isdir(d) or os.path.islink(d):
                os.unlink(d)
            if not os.path.lexists(d):
                os.mkdir(d, 0o700)
            _copy_tree(s, d, uid, gid, mode, chown)
            os.chown(d, st.st_uid if uid is None else uid, st.st_gid if gid is None else gid)
            os.chmod(d, mode if mode is not None else stat.S_IMODE(st.st_mode))
            os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
        elif stat.S_ISLNK(st.st_mode):
            if os.path.lexists(d):
                if os.path.isdir(d) and not os.path.islink(d):
                    shutil.rmtree(d)
                else:
                    os.unlink(d)
            os.symlink(os.readlink(s), d)
            os.chown(d, st.st_uid if uid is None else uid, st.st_gid if gid is None else gid,
                     follow_symlinks=False)
            os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        elif stat.S_ISREG(st.st_mode):
            if os.path.isdir(d) and not os.path.islink(d):
                shutil.rmtree(d)
            _copy_file(s, d, st, uid, gid, mode)
        # devices, fifos, sockets in a context: skipped
