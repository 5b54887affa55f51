"""The archive endpoints behind `cp` (stat, get, put), over the tar primitives of berth.archive
(which the CLI uses on the host side of a copy).

Archive safety. Nothing outside the container's root is ever read or written: the root is
opened once (the running container's rootfs mount, or its snapshot mounted for the call) and
every path is resolved from that fd with openat2(RESOLVE_IN_ROOT) (symlinks, absolute or
relative, and ".." stay inside the root, atomically, even while the container changes its
files); below the resolved point, trees are walked and built with *at calls on directory fds
that never follow a symlink.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import posixpath
import stat
import threading
import time

from berth.archive.tar import extract_tar, tar_stream
from berth.linux.paths import open_in_root, secure_join
from berth.services.createspec import mounts_of
from berth.errors import (
    BerthError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SystemError_,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from collections.abc import Iterator
    from typing import BinaryIO

    from berth.metadata.records import Container
    from berth.services.containers import ContainerService


# --- the container's root, for the archive endpoints -----------------------------------------

_mount_locks = {}
_mount_locks_guard = threading.Lock()


def _lock_for(cid: str) -> threading.Lock:
    with _mount_locks_guard:
        return _mount_locks.setdefault(cid, threading.Lock())


@contextlib.contextmanager
def container_root(svc: ContainerService, ns: str, rec: Container) -> Iterator[int]:
    """An O_PATH fd of the container's root directory as its processes see it, volumes, binds
    and tmpfs mounts included (docker's cp follows them): /proc/<pid>/root while it runs, else
    its snapshot mounted on a private directory, with its volumes and binds mounted over it, for
    the duration of the call."""
    st = svc.state(rec)
    if st["Running"]:
        try:
            fd = os.open(f"/proc/{st['Pid']}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            raise FailedPrecondition(f"container {rec.id} is not running any more") from None
        try:
            if svc.state(rec).get("Pid") != st["Pid"]:  # the pid went (and could be another's) meanwhile
                raise FailedPrecondition(f"container {rec.id} is not running any more")
            yield fd
        finally:
            os.close(fd)
        return
    with _lock_for(rec.id), svc.temporary_mount(rec) as tmp:
        extra = []
        try:
            extra = _mount_volumes(svc, ns, rec, tmp)
            fd = os.open(tmp, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                yield fd
            finally:
                os.close(fd)
        finally:
            from berth.linux import syscalls as sc
            for target in reversed(extra):
                try:
                    sc.umount2(target, sc.MNT_DETACH)
                except OSError:
                    pass


def _mount_volumes(svc: ContainerService, ns: str, rec: Container, top: str) -> list[str]:
    """A stopped container's volumes and binds mounted over its snapshot at top (their
    destinations resolved inside it, never out of it; absent destinations skipped); the targets."""
    from berth.linux import syscalls as sc
    done = []
    mounts = sorted(mounts_of(rec), key=lambda m: m["Destination"].count("/"))
    for m in mounts:
        if m.get("Type") == "volume" and getattr(svc, "volumes", None) is not None:
            src = svc.volumes.data_dir(ns, m["Name"])
        elif m.get("Type") == "bind":
            src = m.get("Source") or ""
        else:
            continue  # tmpfs: nothing there while the container is stopped
        if not src or not os.path.isdir(src):
            continue
        target = _inside(top, m["Destination"])
        if not os.path.lexists(target):
            try:  # the mount point, as the runtime would make it at start (nothing runs in there now)
                os.makedirs(target, 0o755)
            except OSError:
                continue
        if not os.path.isdir(target) or os.path.islink(target):
            continue
        sc.mount(src, target, None, sc.MS_BIND | sc.MS_REC)
        done.append(target)
        if not m.get("RW", True):
            sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)
    done += _mount_etc_files(svc, rec, top)
    return done


def _inside(top: str, path: str) -> str:
    """path resolved inside the tree at top (never out of it): the full path."""
    rootfd = os.open(top, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return os.path.join(top, secure_join(rootfd, path))
    finally:
        os.close(rootfd)


def _mount_etc_files(svc: ContainerService, rec: Container, top: str) -> list[str]:
    """The /etc/hostname, hosts and resolv.conf its last run had (its bundle's binds of them),
    over the mount points in its snapshot, as dockerd mounts a container's network files for
    cp: a stopped container's /etc/hosts is what it ran with, not the empty mount point."""
    from berth.linux import syscalls as sc
    try:
        with open(os.path.join(svc.sdir(rec.id), "bundle", "config.json"), "rb") as f:
            spec = json.loads(f.read())
    except (OSError, ValueError):
        return []  # never started: the mount points are what there is
    done = []
    for m in spec.get("mounts") or ():
        if m.get("destination") not in ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf") or m.get("type") != "bind":
            continue
        src = m.get("source") or ""
        if not os.path.isfile(src):
            continue
        target = _inside(top, m["destination"])
        if not os.path.isfile(target) or os.path.islink(target):
            continue
        sc.mount(src, target, None, sc.MS_BIND)
        done.append(target)
    return done


def _split(path: str) -> tuple[str, str, str, bool, str]:
    """docker's ResolvePath on a container path: (absolute cleaned path, parent, base, follow_last,
    archive name). The last element is not followed unless the path ends in "/" or "/."."""
    if not path:
        raise InvalidArgument("path is required")
    raw = "/" + path.lstrip("/")
    clean = posixpath.normpath(raw)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    follow = raw.endswith(("/", "/.")) or clean == "/"
    parent, base = posixpath.split(clean)
    name = "." if raw.endswith("/.") else "/" if clean == "/" else base
    return clean, parent, base, follow, name


_GO_MODE = {stat.S_IFDIR: 1 << 31, stat.S_IFLNK: 1 << 27, stat.S_IFBLK: 1 << 26, stat.S_IFIFO: 1 << 25,
            stat.S_IFSOCK: 1 << 24, stat.S_IFCHR: (1 << 26) | (1 << 21)}


def go_file_mode(st_mode: int) -> int:
    """A unix st_mode as Go's os.FileMode (what docker puts in the path-stat header)."""
    m = stat.S_IMODE(st_mode) & 0o777
    m |= _GO_MODE.get(stat.S_IFMT(st_mode), 0)
    if st_mode & stat.S_ISUID:
        m |= 1 << 23
    if st_mode & stat.S_ISGID:
        m |= 1 << 22
    if st_mode & stat.S_ISVTX:
        m |= 1 << 20
    return m


def _go_time(t: float) -> str:
    ns = int(t * 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + (
        f".{ns % 10**9:09d}".rstrip("0").rstrip(".")) + "Z"


def _not_found(path: str, ref: str) -> NotFound:
    """dockerd's words, the container as the client named it."""
    return NotFound(f"Could not find the file {path} in container {ref}")


def _pseudo(fd: int) -> bool:
    """Whether fd is on one of the kernel's own filesystems (proc, sysfs, cgroup, ...)."""
    from berth.linux import syscalls as sc
    try:
        return sc.fstatfs_type(fd) in sc.PSEUDO_FS
    except OSError:
        return False


def _in_pseudo(rootfd: int, path: str) -> bool:
    """Whether the directory holding path is on one of the kernel's own filesystems: a path below
    /proc, /sys, ... of a running container, which dockerd's cp does not see (its view is the
    container's root filesystem and volumes, where /proc and /sys are empty directories)."""
    try:
        fd = open_in_root(rootfd, posixpath.dirname(path) or "/", os.O_PATH | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        return _pseudo(fd)
    finally:
        os.close(fd)


def _stat_at(rootfd: int, path: str, ref: str) -> tuple[dict, os.stat_result, int, str | None, str]:
    """(stat dict, O_PATH fd of the object's parent or the object itself, base name or None)."""
    clean, parent, base, follow, name = _split(path)
    if clean != "/" and _in_pseudo(rootfd, clean):
        raise _not_found(path, ref)
    try:
        if follow:
            fd = open_in_root(rootfd, clean, os.O_PATH)
            st = os.fstat(fd)
            if not stat.S_ISDIR(st.st_mode):  # "file/" or "file/.": the stat fails as the copy does
                os.close(fd)
                raise InvalidArgument(f"{path}: not a directory")
            target_fd, target_base = fd, None
        else:
            fd = open_in_root(rootfd, parent, os.O_PATH | os.O_DIRECTORY)
            try:
                st = os.stat(base, dir_fd=fd, follow_symlinks=False)
            except BaseException:
                os.close(fd)
                raise
            target_fd, target_base = fd, base
    except (FileNotFoundError, NotADirectoryError):
        raise _not_found(path, ref) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InvalidArgument(f"{path}: too many levels of symbolic links") from None
        if e.errno == errno.ENAMETOOLONG:
            raise InvalidArgument(f"{path[:64]}...: file name too long") from None
        raise SystemError_(f"cannot stat {path} in the container: {e.strerror}") from None
    link = ""
    if stat.S_ISLNK(st.st_mode):
        try:
            link = "/" + secure_join(rootfd, clean)
        except OSError:
            link = ""
    info = {"name": name, "size": st.st_size, "mode": go_file_mode(st.st_mode),  # the base as given ("." for "dir/."), as dockerd
            "mtime": _go_time(st.st_mtime), "linkTarget": link}
    return info, st, target_fd, target_base, name


def encode_stat(info: dict) -> str:
    return base64.b64encode(json.dumps(info).encode()).decode()


def stat_path(svc: ContainerService, ns: str, ref: str, path: str) -> dict:
    """HEAD /containers/{id}/archive: docker's ContainerPathStat of a container path."""
    rec = svc.get(ns, ref)
    with container_root(svc, ns, rec) as rootfd:
        info, _st, fd, _base, _name = _stat_at(rootfd, path, ref)
        os.close(fd)
        return info


class Archive:
    """A tar of a container path: .stat (the path-stat header), iterate for the bytes, close()."""

    def __init__(self, stack: contextlib.ExitStack, info: dict | None, chunks: Iterator[bytes]) -> None:
        self._stack = stack
        self.stat = info
        self._chunks = chunks
        self._lock = threading.Lock()  # close() waits for a next() running in another thread
        self._closed = False

    def __iter__(self) -> Archive:
        return self

    def __next__(self) -> bytes:
        with self._lock:
            if self._closed:
                raise StopIteration
            return next(self._chunks)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._chunks.close()
            finally:
                self._stack.close()


def get_archive(svc: ContainerService, ns: str, ref: str, path: str) -> Archive:
    """GET /containers/{id}/archive: an Archive of the path (entries named after its base)."""
    rec = svc.get(ns, ref)
    stack = contextlib.ExitStack()
    try:
        rootfd = stack.enter_context(container_root(svc, ns, rec))
        info, st, fd, base, name = _stat_at(rootfd, path, ref)
        stack.callback(os.close, fd)
        from berth.archive.tar import owner_names
        names = owner_names(rootfd)  # (the owners' names as the container's files give them, dockerd's)
        if base is None:  # followed: fd is the object itself (a directory)
            chunks = tar_stream(fd, ".", name, stop=_pseudo, names=names)
        else:
            chunks = tar_stream(fd, base, name, stop=_pseudo, names=names)  # /proc, /sys: their directories alone
        svc.events.container(ns, rec, "archive-path", path=path)
        return Archive(stack, info, chunks)
    except BaseException:
        stack.close()
        raise


def put_archive(svc: ContainerService, ns: str, ref: str, path: str, fileobj: BinaryIO, copy_uid_gid: bool = False,
                no_overwrite_dir_nondir: bool = False) -> None:
    """PUT /containers/{id}/archive: extract a tar into the container directory at path
    (symlinks, the last one included, resolved inside the container's root)."""
    rec = svc.get(ns, ref)
    spec = rec.spec_json() or {}
    if (spec.get("HostConfig") or {}).get("ReadonlyRootfs"):
        raise FailedPrecondition("container rootfs is marked read-only")
    raw = "/" + (path or "").lstrip("/")
    with container_root(svc, ns, rec) as rootfd:
        try:
            dfd = open_in_root(rootfd, posixpath.normpath(raw), os.O_PATH | os.O_DIRECTORY)
        except FileNotFoundError:
            raise _not_found(path, ref) from None
        except NotADirectoryError:
            raise InvalidArgument("extraction point is not a directory") from None
        try:
            if _pseudo(dfd):  # nothing is written into the kernel's filesystems of a running container
                raise _not_found(path, ref)
        finally:
            os.close(dfd)
        dest = secure_join(rootfd, posixpath.normpath(raw))
        # dockerd's: the archive's owners, unless copyUIDGID for a container with a user of its
        # own, whose uid and gid everything then gets (dockerd looks the user up on the host,
        # berth in the container)
        owner: str | tuple[int, int] = "keep"
        user = spec.get("User") or ""
        if copy_uid_gid and user:
            from berth.services.ocispec import lookup_user
            try:
                uid, gid, _groups = lookup_user(f"/proc/self/fd/{rootfd}", user)
            except BerthError as e:
                raise InvalidArgument(f"cannot copy as the container's user {user}: {e}") from None
            owner = (uid, gid)
        remap = svc.remapped(rec)
        if remap is not None:  # the archive's ids are the container's: its files the host's ids of them (dockerd's)
            owner = remap.to_host(*owner) if isinstance(owner, tuple) else remap.to_host
        extract_tar(rootfd, dest, fileobj, owner=owner, no_overwrite_dir_nondir=no_overwrite_dir_nondir)
    svc.events.container(ns, rec, "extract-to-dir", path=path)
