"""The archive endpoints behind `cp` (stat, get, put) and the tar primitives they (and the CLI,
on the host side of a copy) use.

Archive safety. Nothing outside the container's root is ever read or written: the root is
opened once (the running container's rootfs mount, or its snapshot mounted for the call) and
every path is resolved from that fd with openat2(RESOLVE_IN_ROOT) (symlinks, absolute or
relative, and ".." stay inside the root, atomically, even while the container changes its
files); below the resolved point, trees are walked and built with *at calls on directory fds
that never follow a symlink.
"""

import base64
import contextlib
import errno
import json
import os
import posixpath
import stat
import tarfile
import threading
import time

from berth.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SystemError_,
)

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20

# --- the container's root, for the archive endpoints -----------------------------------------

_mount_locks = {}
_mount_locks_guard = threading.Lock()


def _lock_for(cid):
    with _mount_locks_guard:
        return _mount_locks.setdefault(cid, threading.Lock())


@contextlib.contextmanager
def container_root(svc, ns, rec):
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
    from berth.snapshots.mount import mount_all, unmount
    base = os.path.join(svc.cfg.state, "container-ops")
    os.makedirs(base, mode=0o700, exist_ok=True)
    with _lock_for(rec.id):
        import tempfile
        tmp = tempfile.mkdtemp(prefix=rec.id[:12] + "-", dir=base)
        extra = []
        try:
            mount_all(svc.snapshotter.mounts(rec.snapshot_key), tmp)
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
                unmount(tmp)
        finally:
            try:
                os.rmdir(tmp)
            except OSError:
                pass


def _mount_volumes(svc, ns, rec, top):
    """A stopped container's volumes and binds mounted over its snapshot at top (their
    destinations resolved inside it, never out of it; absent destinations skipped); the targets."""
    from berth.linux import syscalls as sc
    from berth.runtime.rootfs import secure_join
    done = []
    mounts = sorted((rec.spec_json() or {}).get("_mounts") or [], key=lambda m: m["Destination"].count("/"))
    for m in mounts:
        if m.get("Type") == "volume" and getattr(svc, "volumes", None) is not None:
            src = svc.volumes.data_dir(ns, m["Name"])
        elif m.get("Type") == "bind":
            src = m.get("Source") or ""
        else:
            continue  # tmpfs: nothing there while the container is stopped
        if not src or not os.path.isdir(src):
            continue
        rootfd = os.open(top, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            target = os.path.join(top, secure_join(rootfd, m["Destination"]))
        finally:
            os.close(rootfd)
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
    return done


def _open(rootfd, path, flags):
    """openat2 of a container path (absolute, as seen inside) with RESOLVE_IN_ROOT."""
    from berth.runtime.rootfs import open_in_root
    return open_in_root(rootfd, path, flags)


def _split(path):
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


def go_file_mode(st_mode):
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


def _go_time(t):
    ns = int(t * 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + (
        f".{ns % 10**9:09d}".rstrip("0").rstrip(".")) + "Z"


def _not_found(path, rec):
    return NotFound(f"Could not find the file {path} in container {rec.name}")


def _stat_at(rootfd, path, rec):
    """(stat dict, O_PATH fd of the object's parent or the object itself, base name or None)."""
    clean, parent, base, follow, name = _split(path)
    try:
        if follow:
            fd = _open(rootfd, clean, os.O_PATH)
            st = os.fstat(fd)
            target_fd, target_base = fd, None
        else:
            fd = _open(rootfd, parent, os.O_PATH | os.O_DIRECTORY)
            try:
                st = os.stat(base, dir_fd=fd, follow_symlinks=False)
            except BaseException:
                os.close(fd)
                raise
            target_fd, target_base = fd, base
    except (FileNotFoundError, NotADirectoryError):
        raise _not_found(path, rec) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InvalidArgument(f"{path}: too many levels of symbolic links") from None
        raise SystemError_(f"cannot stat {path} in the container: {e.strerror}") from None
    link = ""
    if stat.S_ISLNK(st.st_mode):
        from berth.runtime.rootfs import secure_join
        try:
            link = "/" + secure_join(rootfd, clean)
        except OSError:
            link = ""
    info = {"name": posixpath.basename(clean) or "/", "size": st.st_size, "mode": go_file_mode(st.st_mode),
            "mtime": _go_time(st.st_mtime), "linkTarget": link}
    return info, st, target_fd, target_base, name


def encode_stat(info):
    return base64.b64encode(json.dumps(info).encode()).decode()


def stat_path(svc, ns, ref, path):
    """HEAD /containers/{id}/archive: docker's ContainerPathStat of a container path."""
    rec = svc.get(ns, ref)
    with container_root(svc, ns, rec) as rootfd:
        info, _st, fd, _base, _name = _stat_at(rootfd, path, rec)
        os.close(fd)
        return info


class Archive:
    """A tar of a container path: .stat (the path-stat header), iterate for the bytes, close()."""

    def __init__(self, stack, info, chunks):
        self._stack = stack
        self.stat = info
        self._chunks = chunks
        self._lock = threading.Lock()  # close() waits for a next() running in another thread
        self._closed = False

    def __iter__(self):
        return self

    def __next__(self):
        with self._lock:
            if self._closed:
                raise StopIteration
            return next(self._chunks)

    def close(self):
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._chunks.close()
            finally:
                self._stack.close()


def get_archive(svc, ns, ref, path):
    """GET /containers/{id}/archive: an Archive of the path (entries named after its base)."""
    rec = svc.get(ns, ref)
    stack = contextlib.ExitStack()
    try:
        rootfd = stack.enter_context(container_root(svc, ns, rec))
        info, st, fd, base, name = _stat_at(rootfd, path, rec)
        stack.callback(os.close, fd)
        if base is None:  # followed: fd is the object itself (a directory)
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidArgument(f"{path}: not a directory")
            chunks = tar_stream(fd, ".", name)
        else:
            chunks = tar_stream(fd, base, name)
        svc.events.container(ns, rec, "archive-path", path=path)
        return Archive(stack, info, chunks)
    except BaseException:
        stack.close()
        raise


def put_archive(svc, ns, ref, path, fileobj, copy_uid_gid=False, no_overwrite_dir_nondir=False):
    """PUT /containers/{id}/archive: extract a tar into the container directory at path
    (symlinks, the last one included, resolved inside the container's root)."""
    rec = svc.get(ns, ref)
    spec = rec.spec_json() or {}
    if (spec.get("HostConfig") or {}).get("ReadonlyRootfs"):
        raise FailedPrecondition("container rootfs is marked read-only")
    raw = "/" + (path or "").lstrip("/")
    with container_root(svc, ns, rec) as rootfd:
        try:
            dfd = _open(rootfd, posixpath.normpath(raw), os.O_PATH | os.O_DIRECTORY)
        except FileNotFoundError:
            raise _not_found(path, rec) from None
        except NotADirectoryError:
            raise InvalidArgument("extraction point is not a directory") from None
        os.close(dfd)
        from berth.runtime.rootfs import secure_join
        dest = secure_join(rootfd, posixpath.normpath(raw))
        extract_tar(rootfd, dest, fileobj, owner="keep" if copy_uid_gid else (0, 0),
                    no_overwrite_dir_nondir=no_overwrite_dir_nondir)
    svc.events.container(ns, rec, "extract-to-dir", path=path)


# --- tar primitives (also used by the CLI on the host side) ----------------------------------

def _tar_header(ti):
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def tar_stream(pfd, name, arcname):
    """Yield a tar (bytes chunks) of the entry `name` in the directory fd pfd ("." for pfd
    itself), entries named arcname[/...]. Never follows a symlink; a file that changes size
    while read is cut or zero-padded to the size in its header."""
    links = {}

    def header(st, arc):
        ti = tarfile.TarInfo(arc)
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.uname = ti.gname = ""
        ti.mtime = int(st.st_mtime)
        return ti

    def entry(dfd, nm, arc):
        try:
            st = os.stat(nm, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return  # removed while walking
        m = st.st_mode
        ti = header(st, arc)
        if stat.S_ISDIR(m):
            ti.type = tarfile.DIRTYPE
            try:
                fd = os.open(nm, _O_DIR, dir_fd=dfd)
            except (FileNotFoundError, NotADirectoryError):
                return
            try:
                yield _tar_header(ti)
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
                ti = header(fst, arc)
                ti.type = tarfile.REGTYPE
                ti.size = fst.st_size
                try:
                    cap = os.getxattr(fd, "security.capability")
                    ti.pax_headers["SCHILY.xattr.security.capability"] = cap.decode("latin-1")
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
            ti.linkname = os.readlink(nm, dir_fd=dfd)
            yield _tar_header(ti)
        elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(m) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            yield _tar_header(ti)
        elif stat.S_ISFIFO(m):
            ti.type = tarfile.FIFOTYPE
            yield _tar_header(ti)
        # sockets are not archived (as docker)

    if name == ".":
        st = os.fstat(pfd)
        ti = header(st, arcname)
        ti.type = tarfile.DIRTYPE
        fd = os.open(".", _O_DIR & ~os.O_NOFOLLOW, dir_fd=pfd)
        try:
            yield _tar_header(ti)
            for child in sorted(os.listdir(fd)):
                yield from entry(fd, child, posixpath.join(arcname, child) if arcname != "." else "./" + child)
        finally:
            os.close(fd)
    else:
        yield from entry(pfd, name, arcname)
    yield bytes(tarfile.BLOCKSIZE * 2)


def _clean_member(name, dest_label):
    from berth.images.layer import clean_parts
    parts = clean_parts(name)
    if parts is None:
        raise InvalidArgument(f'"{name}" is outside of "{dest_label}"')
    return parts


def _remove_at(pfd, name, st=None):
    if st is None:
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=pfd)
        return
    fd = os.open(name, _O_DIR, dir_fd=pfd)
    try:
        for child in os.listdir(fd):
            _remove_at(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=pfd)


def _rebase(name, rebase):
    if not rebase:
        return name
    old, new = rebase
    if old == "/":
        return posixpath.join(new, name.lstrip("/"))
    first, sep, rest = name.lstrip("/").partition("/")
    if first == old or (old == "." and first == ""):
        return new + sep + rest if rest or sep else new
    return name


def extract_tar(rootfd, dest, fileobj, owner=None, no_overwrite_dir_nondir=False, rebase=None):
    """Extract the tar read from fileobj into the directory dest (relative to rootfd, no symlinks).

    Every parent is resolved with openat2(RESOLVE_IN_ROOT) from rootfd, so symlinks met on
    the way (absolute ones too) lead somewhere inside rootfd's tree and never out of it; the
    last component of an entry is never followed. Entry names climbing out of dest are refused.
    owner: None leaves files to the caller's uid/gid, "keep" uses the archive's, (uid, gid)
    sets that owner. rebase=(old, new) renames the first path component old to new (docker's
    RebaseArchiveEntries)."""
    from berth.runtime.rootfs import ensure_in_root, open_in_root
    dest = dest.strip("/")
    label = "/" + dest
    dir_times = []
    privileged = os.geteuid() == 0

    def chown(fd_or_name, m, dir_fd=None):
        if owner is None or (not privileged and owner == "keep"):
            return
        uid, gid = (m.uid, m.gid) if owner == "keep" else owner
        try:
            if dir_fd is None:
                os.fchown(fd_or_name, uid, gid)
            else:
                os.chown(fd_or_name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        except PermissionError:
            if privileged:
                raise

    def xattrs(fd, m):
        for k, v in m.pax_headers.items():
            if k.startswith("SCHILY.xattr."):
                xname = k[len("SCHILY.xattr."):]
                if xname.startswith(("trusted.overlay.", "user.overlay.")):
                    continue
                try:
                    os.setxattr(fd, xname, v.encode("latin-1", "surrogateescape"))
                except (OSError, UnicodeEncodeError):
                    pass

    tf = tarfile.open(fileobj=fileobj, mode="r|")  # noqa: SIM115 (closed in the finally below)
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
                        _remove_at(pfd, base, cur)
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
                        src = tf.extractfile(m)
                        while True:
                            chunk = src.read(_CHUNK)
                            if not chunk:
                                break
                            view = memoryview(chunk)
                            while view:
                                view = view[os.write(fd, view):]
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
