"""Build the container's root filesystem inside its new mount namespace.

Runs in the container's init process, before and after pivot_root. Every mount
destination is resolved inside the rootfs with openat2(RESOLVE_IN_ROOT), so a
symlink in the image can never send a mount outside of it; the mount is then
made on /proc/self/fd/N of the resolved file.
"""

import errno
import os
import stat

from berth.errors import InvalidArgument, SystemError_
from berth.linux import syscalls as sc
from berth.goquote import errno_text, quote
from berth.linux.mountinfo import shared, source_mount  # (at import: the init may join a user namespace)
from berth.linux.paths import ensure_in_root, open_in_root, secure_join
from berth.runtime.spec import idmap_mappings, parse_mount_options, recursive_attrs

TYPE_CHECKING = False  # no typing at run time: the container's init imports this
if TYPE_CHECKING:
    from typing import NoReturn

DEFAULT_DEVICES = [
    # path, type, major, minor, mode
    ("/dev/null", "c", 1, 3, 0o666),
    ("/dev/zero", "c", 1, 5, 0o666),
    ("/dev/full", "c", 1, 7, 0o666),
    ("/dev/random", "c", 1, 8, 0o666),
    ("/dev/urandom", "c", 1, 9, 0o666),
    ("/dev/tty", "c", 5, 0, 0o666),
]
DEV_LINKS = [("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
             ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr")]

# mounts[i] -> the detached id-mapped copy of its source (idmapped_sources), for the init to attach
IDMAPPED: dict[int, int] = {}


def idmapped_sources(config: dict, bundle: str, all_binds: bool = False) -> dict[int, int]:
    """The source of each idmapped bind mount (the `idmap`/`ridmap` options) as a detached copy
    whose files' owners are seen through its mappings (open_tree(2), then mount_setattr(2)'s
    MOUNT_ATTR_IDMAP with a user namespace holding them): {index in mounts: fd}. Made by the
    runtime before it enters the container's user namespace, in which no mapping to the host's
    ids can be made; the init attaches them in place of the binds (mount_entry). all_binds (an
    init that enters a user namespace): every bind's source too, as runc opens them: once
    root there only, the init may not reach a source under a directory only the host's root can
    enter (a kubelet's pod directories)."""
    out: dict[int, int] = {}
    linux = config.get("linux") or {}
    try:
        for i, m in enumerate(config.get("mounts") or []):
            maps = idmap_mappings(m, linux)
            opts = m.get("options") or []
            if maps is None and not (all_binds and (m.get("type") == "bind" or "bind" in opts or "rbind" in opts)):
                continue
            source = m.get("source") or ""
            src = source if os.path.isabs(source) else os.path.join(bundle, source)
            try:
                fd = sc.open_tree(src, recursive="rbind" in opts)
            except OSError as e:
                if maps is None:
                    continue  # (the init's own attempt says why, in its words)
                _mount_failed(m, src, f"open_tree {src}: {errno_text(e)}")
            out[i] = fd
            if maps is None:
                continue
            uids, gids, recursive = maps
            userns = _userns_with(uids, gids)
            try:
                sc.mount_setattr(fd, sc.MOUNT_ATTR_IDMAP, 0, recursive=recursive, userns_fd=userns)
            except OSError as e:
                _mount_failed(m, src, f"failed to set MOUNT_ATTR_IDMAP on {src}: {errno_text(e)} (the filesystem "
                                      "or the kernel may not support idmapped mounts)")
            finally:
                os.close(userns)
    except BaseException:
        for fd in out.values():
            os.close(fd)
        raise
    return out


def _userns_with(uids: list, gids: list) -> int:
    """An fd of a new user namespace with these mappings (its one process gone once it is open)."""
    r, w = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.close(w2)
            sc.unshare(sc.CLONE_NEWUSER)
            os.write(w, b"1")
            os.read(r2, 1)  # until the parent has opened the namespace
        finally:
            os._exit(0)
    os.close(w)
    os.close(r2)
    try:
        if os.read(r, 1) != b"1":
            raise SystemError_("cannot make a user namespace for an idmapped mount")
        for name, maps in (("uid_map", uids), ("gid_map", gids)):
            text = "".join(f"{e['containerID']} {e['hostID']} {e['size']}\n" for e in maps)
            try:
                with open(f"/proc/{pid}/{name}", "w") as f:
                    f.write(text)
            except OSError as e:
                raise SystemError_(f"cannot write the {name} of an idmapped mount ({text.strip()!r}): "
                                   f"{errno_text(e)}") from None
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(r)
        os.close(w2)
        os.waitpid(pid, 0)


def _fail(what: str, e: BaseException) -> "NoReturn":
    raise SystemError_(f"{what}: {e.strerror if isinstance(e, OSError) else e}") from None


def _fdpath(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _locked_flags(path: str) -> int:
    st = os.statvfs(path)
    f = 0
    for bit, ms in ((os.ST_RDONLY, sc.MS_RDONLY), (os.ST_NOSUID, sc.MS_NOSUID), (os.ST_NODEV, sc.MS_NODEV),
                    (os.ST_NOEXEC, sc.MS_NOEXEC), (os.ST_NOATIME, sc.MS_NOATIME),
                    (os.ST_NODIRATIME, sc.MS_NODIRATIME), (os.ST_RELATIME, sc.MS_RELATIME)):
        if st.f_flag & bit:
            f |= ms
    return f


def remount(path: str, flags: int) -> None:
    """Remount a bind mount with flags, keeping flags the kernel locked (user namespaces)."""
    base = sc.MS_REMOUNT | sc.MS_BIND
    try:
        sc.mount(None, path, None, base | flags)
    except PermissionError:
        sc.mount(None, path, None, base | flags | _locked_flags(path))


def _mount_failed(m: dict, source: str, why: str) -> "NoReturn":
    """A mount of the config that failed, in runc's words (libcontainer's prepareRootfs)."""
    raise SystemError_(f"error during container init: error mounting {quote(source)} to rootfs at "
                       f"{quote(m['destination'])}: {why}") from None


def _syscall_failed(source: str, dest: str, fd: int, flags: int, data: str, e: OSError) -> str:
    """runc's mountError: `mount SRC:DEST (via /proc/self/fd/N), flags: 0x..., data: ...: why`."""
    out = f"mount {source}:{dest}" if source else f"mount {dest}"
    out += f" (via {_fdpath(fd)})"
    if flags:
        out += f", flags: {flags:#x}"
    if data:
        out += f", data: {data}"
    return f"{out}: {errno_text(e)}"


def _made_failed(rootfs: str, dest: str, e: OSError) -> str:
    """What making the mount point said (runc's MkdirAll or OpenFile on the host path)."""
    where = getattr(e, "op", None) and e.filename or dest
    return f"{getattr(e, 'op', 'mkdir')} {rootfs.rstrip('/')}{where}: {errno_text(e)}"


# runc's checkProcMount: nothing is mounted over /proc but a proc, nor inside it but over the
# few files lxcfs emulates
_PROC_FILES = ("/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps", "/proc/uptime",
               "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev", "/proc/sys/kernel/ns_last_pid")


def _check_proc_mount(rootfs: str, rel: str, source: str) -> str | None:
    """runc's refusal of a mount at rel (resolved in the root) over or inside /proc, or None."""
    path = "/" + rel.strip("/")
    if path != "/proc" and not path.startswith("/proc/"):
        return None
    host = rootfs.rstrip("/") + path
    if path == "/proc":
        try:
            fd = os.open(source, os.O_PATH | os.O_CLOEXEC)
            try:
                if sc.fstatfs_type(fd) == sc.PROC_SUPER_MAGIC:
                    return None
            finally:
                os.close(fd)
        except OSError:
            pass
        return f"{quote(host)} cannot be mounted because it is not of type proc"
    if path in _PROC_FILES:
        return None
    return f"{quote(host)} cannot be mounted because it is inside /proc"


def mount_entry(rootfd: int, m: dict, bundle: str, cgroup_path: str, cgroup_mode: str, cgroupns: bool,
                in_userns: bool, rootfs: str = "", idmapped: int = -1) -> None:
    """One of the spec's mounts, made inside the rootfs. idmapped: the fd of an idmapped bind's
    prepared source (idmapped_sources), attached in place of the bind (and closed)."""
    dest = m["destination"]
    mtype = m.get("type") or ""
    options = m.get("options") or []
    flags, _clear, prop, data = parse_mount_options(options)
    is_bind = mtype == "bind" or flags & sc.MS_BIND
    source = m.get("source") or mtype or "none"

    if mtype in ("proc", "sysfs") and not is_bind:
        # runc's: never through a symlink or onto a file the image put there
        parent, name = os.path.split(dest.rstrip("/"))
        prel = secure_join(rootfd, parent or "/")
        try:
            st = os.stat(f"{prel}/{name}" if prel else (name or "."), dir_fd=rootfd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            _mount_failed(m, source, f"filesystem {quote(mtype)} must be mounted on ordinary directory")

    if is_bind:
        src = source if os.path.isabs(source) else os.path.join(bundle, source)
        try:
            src_is_dir = stat.S_ISDIR((os.fstat(idmapped) if idmapped >= 0 else os.stat(src)).st_mode)
        except OSError as e:  # nothing to bind
            _mount_failed(m, src, f"stat {src}: {errno_text(e)}")
        why = _check_proc_mount(rootfs, secure_join(rootfd, dest), src)
        if why:
            _mount_failed(m, src, why)
        try:
            fd = ensure_in_root(rootfd, dest, directory=src_is_dir)
        except OSError as e:
            _mount_failed(m, src, _made_failed(rootfs, dest, e))
        try:
            bind = sc.MS_BIND | (flags & sc.MS_REC)
            try:
                if idmapped >= 0:
                    sc.move_mount(idmapped, fd)
                else:
                    sc.mount(src, _fdpath(fd), None, bind)
            except OSError as e:
                _mount_failed(m, src, _syscall_failed(src, dest, fd, (flags | bind) & ~sc.MS_REMOUNT, "", e))
            finally:
                if idmapped >= 0:
                    os.close(idmapped)
            extra = flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
            if extra:
                nfd = open_in_root(rootfd, dest)
                try:
                    remount(_fdpath(nfd), extra)
                except OSError as e:
                    _mount_failed(m, src, _syscall_failed(src, dest, nfd, flags | bind | sc.MS_REMOUNT, "", e))
                finally:
                    os.close(nfd)
            _set_propagation(rootfd, dest, prop)
            _set_recursive(rootfd, dest, options)
        finally:
            os.close(fd)
        return

    if mtype == "cgroup" or mtype == "cgroup2":
        _mount_cgroup(rootfd, dest, flags, cgroup_path, cgroup_mode, cgroupns)
        return

    if mtype not in ("proc", "sysfs", "tmpfs", "mqueue"):
        why = _check_proc_mount(rootfs, secure_join(rootfd, dest), m.get("source") or "")
        if why:
            _mount_failed(m, source, why)
    existed = False
    try:
        fd = -1
        if mtype == "tmpfs":
            try:
                fd = open_in_root(rootfd, dest)
                existed = True
            except FileNotFoundError:
                pass
        if fd < 0:
            fd = ensure_in_root(rootfd, dest, directory=True)
    except OSError as e:
        _mount_failed(m, source, _made_failed(rootfs, dest, e))
    try:
        st = os.fstat(fd)
        target = _fdpath(fd)
        # a tmpfs on a directory of the image gets that directory's mode, as runc gives it (the
        # image's /tmp 1777 or 755 stays so); read-only once that is done
        ro_after = sc.MS_RDONLY if existed and flags & sc.MS_RDONLY else 0
        try:
            if not stat.S_ISDIR(st.st_mode):  # what the kernel says of a mount on a file
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            sc.mount(source, target, mtype, flags & ~sc.MS_REMOUNT & ~ro_after, data or None)
            if existed:
                nfd = open_in_root(rootfd, dest)
                try:
                    os.chmod(_fdpath(nfd), stat.S_IMODE(st.st_mode))
                    if "tmpcopyup" in options:
                        _copy_up(fd, nfd)
                    if ro_after:
                        sc.mount(None, _fdpath(nfd), None, sc.MS_REMOUNT | (flags & ~sc.MS_REMOUNT), data or None)
                finally:
                    os.close(nfd)
        except PermissionError as e:
            if mtype == "sysfs" and in_userns:
                # sysfs needs a network namespace owned by the user namespace: fall back to a bind
                # of the host's (runc 1.2's), its flags set on the mount itself (fd is the
                # directory under it: a remount there was EINVAL)
                sc.mount("/sys", target, None, sc.MS_BIND | sc.MS_REC)
                nfd = open_in_root(rootfd, dest)
                try:
                    remount(_fdpath(nfd), flags & ~sc.MS_REMOUNT)
                except OSError as e2:
                    _mount_failed(m, source, _syscall_failed("/sys", dest, nfd, flags | sc.MS_BIND | sc.MS_REMOUNT,
                                                             "", e2))
                finally:
                    os.close(nfd)
            else:
                _mount_failed(m, source, _syscall_failed(source, dest, fd, flags & ~sc.MS_REMOUNT & ~ro_after, data, e))
        except OSError as e:
            _mount_failed(m, source, _syscall_failed(source, dest, fd, flags & ~sc.MS_REMOUNT & ~ro_after, data, e))
        if mtype == "proc":
            nfd = open_in_root(rootfd, dest)
            try:
                if sc.fstatfs_type(nfd) != sc.PROC_SUPER_MAGIC:
                    raise InvalidArgument(f"mount destination {dest} is not procfs after mounting proc")
            finally:
                os.close(nfd)
        _set_propagation(rootfd, dest, prop)
        _set_recursive(rootfd, dest, options)
    finally:
        os.close(fd)


def _copy_up(under: int, top: int) -> None:
    """tmpcopyup (runc's, podman's default for a tmpfs): what the image has in the directory the
    tmpfs now covers, copied into it with modes and owners. under: an fd of that directory
    opened before the mount (its /proc link leads under the mount), top: the tmpfs's root."""
    src = os.open(_fdpath(under), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    dst = os.open(_fdpath(top), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _copy_dir(src, dst)
    finally:
        os.close(src)
        os.close(dst)


def _copy_dir(src: int, dst: int) -> None:
    for name in os.listdir(src):
        st = os.stat(name, dir_fd=src, follow_symlinks=False)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(name, 0o700, dir_fd=dst)
            s2 = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src)
            d2 = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dst)
            try:
                _copy_dir(s2, d2)
                os.fchown(d2, st.st_uid, st.st_gid)
                os.fchmod(d2, mode)
            finally:
                os.close(s2)
                os.close(d2)
        elif stat.S_ISREG(st.st_mode):
            s2 = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src)
            try:
                d2 = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dst)
                try:
                    while os.sendfile(d2, s2, None, 1 << 20):
                        pass
                    os.fchown(d2, st.st_uid, st.st_gid)
                    os.fchmod(d2, mode)
                finally:
                    os.close(d2)
            finally:
                os.close(s2)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
        else:  # devices, fifos, sockets: made anew
            os.mknod(name, st.st_mode, st.st_rdev, dir_fd=dst)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
            os.chmod(name, mode, dir_fd=dst)


def _set_recursive(rootfd: int, dest: str, options: list[str]) -> None:
    """The recursive options (rro, rnosuid, ...) on the mount just made on dest and every mount
    below it, as runc sets them (mount_setattr(2)); berth-runc ignored them (an `rro` bind was
    writable)."""
    attrs = recursive_attrs(options)
    if attrs is None:
        return
    nfd = open_in_root(rootfd, dest)
    try:
        sc.mount_setattr(nfd, *attrs)
    except OSError as e:
        _fail(f"set the recursive mount attributes of {dest}", e)
    finally:
        os.close(nfd)


def _set_propagation(rootfd: int, dest: str, prop: list[int]) -> None:
    """Apply propagation flags to the mount just made on dest.

    The fd used to mount refers to the directory underneath the new mount, which is not a
    mount point (EINVAL): reopen dest so that the new mount's root is changed.
    """
    if not prop:
        return
    nfd = open_in_root(rootfd, dest)
    try:
        for p in prop:
            try:
                sc.mount(None, _fdpath(nfd), None, p)
            except OSError as e:
                _fail(f"set mount propagation of {dest}", e)
    finally:
        os.close(nfd)


def _cgroup_hierarchies() -> list[str]:
    """The mount points of the host's cgroup v1 hierarchies (not a hybrid host's cgroup2 tree:
    runc 1.1 gives a container only the v1 ones)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if post.split()[0] == "cgroup":
                out.append(pre.split()[4])
    return out


def _mount_cgroup(rootfd: int, dest: str, flags: int, cgroup_path: str, mode: str, cgroupns: bool) -> None:
    ro = flags & sc.MS_RDONLY
    base = flags & (sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | sc.MS_RELATIME)
    fd = ensure_in_root(rootfd, dest, directory=True)
    try:
        target = _fdpath(fd)
        if mode == "v2":
            if cgroupns:
                sc.mount("cgroup2", target, "cgroup2", base | ro)
            else:
                sc.mount(os.path.join("/sys/fs/cgroup", cgroup_path.lstrip("/")), target, None, sc.MS_BIND | sc.MS_REC)
                if ro:
                    nfd = open_in_root(rootfd, dest)
                    try:
                        remount(_fdpath(nfd), sc.MS_RDONLY | base)
                    finally:
                        os.close(nfd)
            return
        # as runc 1.1's mountCgroupV1: a tmpfs (left writable, whatever the mount's "ro"), each v1
        # hierarchy bound on it with the mount's flags, a co-mounted one's names as symlinks
        sc.mount("tmpfs", target, "tmpfs", base, "mode=755")
    finally:
        os.close(fd)
    # the tmpfs was just made here: nothing in it can be a symlink, so each hierarchy's
    # directory is made and mounted on by name under the tmpfs's own fd (three calls each, no
    # walk of the path inside the root per hierarchy)
    tfd = open_in_root(rootfd, dest, os.O_PATH | os.O_DIRECTORY)
    try:
        for mnt in _cgroup_hierarchies():
            if not mnt.startswith("/sys/fs/cgroup/"):
                continue
            name = mnt[len("/sys/fs/cgroup/"):]
            if "/" in name or name in ("", ".", ".."):
                continue
            src = os.path.join(mnt, cgroup_path.lstrip("/"))
            if not os.path.isdir(src):
                continue
            try:
                os.mkdir(name, 0o755, dir_fd=tfd)
            except FileExistsError:
                pass
            sub = f"{_fdpath(tfd)}/{name}"
            sc.mount(src, sub, None, sc.MS_BIND | sc.MS_REC)
            remount(sub, base | ro)
            if "," in name:
                for alias in name.split(","):
                    if alias and "=" not in alias:
                        try:
                            os.symlink(name, alias, dir_fd=tfd)
                        except FileExistsError:
                            pass
    finally:
        os.close(tfd)


def create_devices(rootfd: int, devices: list | None, in_userns: bool, bind_dev: bool) -> None:
    """The default devices plus config devices; bind-mounted from the host in a user namespace."""
    wanted = {}
    if not bind_dev:
        for path, t, major, minor, mode in DEFAULT_DEVICES:
            wanted[path] = {"path": path, "type": t, "major": major, "minor": minor, "fileMode": mode, "uid": 0, "gid": 0}
    for d in devices or []:
        wanted[d["path"]] = d
    for d in wanted.values():
        path = d["path"]
        parent, name = os.path.split(path)
        pfd = ensure_in_root(rootfd, parent, directory=True)
        try:
            if in_userns:
                fd = ensure_in_root(rootfd, path, directory=False)
                try:
                    sc.mount(path, _fdpath(fd), None, sc.MS_BIND)
                finally:
                    os.close(fd)
                continue
            kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[d["type"]]
            mode = d.get("fileMode")
            mode = 0o666 if mode is None else mode
            dev = os.makedev(d.get("major") or 0, d.get("minor") or 0)
            dfd = os.open(_fdpath(pfd), os.O_RDONLY | os.O_DIRECTORY)
            try:
                try:
                    os.mknod(name, kind | (mode & 0o7777), dev, dir_fd=dfd)
                except FileExistsError:
                    continue  # left as it is; users of /dev/null check it is real
                os.chmod(name, mode & 0o7777, dir_fd=dfd, follow_symlinks=False)
                os.chown(name, d.get("uid") or 0, d.get("gid") or 0, dir_fd=dfd, follow_symlinks=False)
            finally:
                os.close(dfd)
        except OSError as e:
            _fail(f"create device {path}", e)
        finally:
            os.close(pfd)


def setup_dev_links(rootfd: int) -> None:
    devfd = open_in_root(rootfd, "/dev", os.O_PATH | os.O_DIRECTORY)
    dfd = os.open(_fdpath(devfd), os.O_RDONLY | os.O_DIRECTORY)
    os.close(devfd)
    try:
        links = list(DEV_LINKS)
        if os.path.exists("/proc/kcore"):
            links.append(("/proc/kcore", "/dev/core"))
        for target, link in links:
            try:
                os.symlink(target, os.path.basename(link), dir_fd=dfd)
            except FileExistsError:
                pass
        try:
            st = os.stat("ptmx", dir_fd=dfd, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode):
                os.unlink("ptmx", dir_fd=dfd)
                os.symlink("pts/ptmx", "ptmx", dir_fd=dfd)
        except FileNotFoundError:
            os.symlink("pts/ptmx", "ptmx", dir_fd=dfd)
    finally:
        os.close(dfd)


def pivot(rootfs: str, no_pivot: bool = False) -> None:
    """Make rootfs the process's root and detach the old root."""
    if no_pivot:
        os.chdir(rootfs)
        sc.mount(rootfs, "/", None, sc.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
        return
    oldroot = os.open("/", os.O_DIRECTORY | os.O_RDONLY)
    newroot = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY)
    try:
        os.fchdir(newroot)
        sc.pivot_root(".", ".")
        os.fchdir(oldroot)
        sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        sc.umount2(".", sc.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(oldroot)
        os.close(newroot)


def check_dev_null() -> None:
    """Refuse to use a /dev/null that is not the real null device (a symlink, a file, another device)."""
    try:
        fd = os.open("/dev/null", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:  # runc's words (its setupUser's stat)
        raise SystemError_(f"unable to setup user: stat /dev/null: {errno_text(e)}") from None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
        raise InvalidArgument("/dev/null in the container is not the real null device; refusing to use it")


def mask_paths(paths: list | None) -> None:
    if not paths:
        return
    null_checked = False
    for p in paths:
        try:
            fd = os.open(p, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            if e.errno == errno.ELOOP:
                continue
            _fail(f"mask {p}", e)
        try:
            st = os.fstat(fd)
            target = _fdpath(fd)
            if stat.S_ISDIR(st.st_mode):
                sc.mount("tmpfs", target, "tmpfs", sc.MS_RDONLY, None)
            else:
                if not null_checked:
                    check_dev_null()
                    null_checked = True
                sc.mount("/dev/null", target, None, sc.MS_BIND)
        except OSError as e:
            _fail(f"mask {p}", e)
        finally:
            os.close(fd)


def readonly_paths(paths: list | None) -> None:
    for p in paths or []:
        try:
            fd = os.open(p, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            if e.errno == errno.ELOOP:
                continue
            _fail(f"make {p} read-only", e)
        try:
            target = _fdpath(fd)
            sc.mount(target, target, None, sc.MS_BIND | sc.MS_REC)
            nfd = os.open(p, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                # the mount's own nosuid, nodev, noexec kept (/proc's), as runc's readonlyPath
                keep = _locked_flags(_fdpath(nfd)) & (sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
                remount(_fdpath(nfd), sc.MS_RDONLY | sc.MS_REC | keep)
            finally:
                os.close(nfd)
        except OSError as e:
            _fail(f"make {p} read-only", e)
        finally:
            os.close(fd)


PROPAGATION_FLAGS = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}


def binds_dev(config: dict) -> bool:
    """A bind mount on /dev: the runtime then makes no /dev of its own (runc's needsSetupDev)."""
    for m in config.get("mounts") or []:
        opts = m.get("options") or []
        if m["destination"].rstrip("/") == "/dev" and (m.get("type") == "bind" or "bind" in opts or "rbind" in opts):
            return True
    return False


def reopen_dev_null() -> None:
    """runc's reOpenDevNull: a stdio descriptor that is the host's /dev/null becomes the
    container's /dev/null, open for reading and writing."""
    try:
        fd = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        _fail("reopen /dev/null inside the container", e)
    try:
        null = os.fstat(fd).st_rdev
        for i in range(3):
            try:
                st = os.fstat(i)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == null:
                os.dup2(fd, i)
    finally:
        os.close(fd)


def prepare(config: dict, bundle: str, cgroup_path: str, cgroup_mode: str, cgroupns: bool, in_userns: bool) -> None:
    """Everything before pivot_root: propagation, the rootfs bind, the mounts, devices."""
    linux = config.get("linux") or {}
    rootfs = config["root"]["path"]
    # runc's prepareRoot: the namespace's mounts become slaves of the host's (nothing mounted here
    # goes back), unless the config asks for another propagation: rshared for a bind mount whose
    # mounts must reach the host (the CRI's bidirectional, docker's shared), so that they stay
    # peers of the host's
    rp = linux.get("rootfsPropagation")
    sc.mount(None, "/", None, PROPAGATION_FLAGS[rp] if rp else sc.MS_SLAVE | sc.MS_REC)
    if rp not in (None, "", "rslave", "rprivate"):  # (after those no mount here is shared)
        _parent_mount_private(rootfs)
    sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)
    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, m in enumerate(config.get("mounts") or []):
            mount_entry(rootfd, m, bundle, cgroup_path, cgroup_mode, cgroupns, in_userns, rootfs,
                        IDMAPPED.pop(i, -1))
        bind_dev = binds_dev(config)
        create_devices(rootfd, linux.get("devices"), in_userns, bind_dev)
        if not bind_dev:
            setup_dev_links(rootfd)
    finally:
        os.close(rootfd)


def _parent_mount_private(rootfs: str) -> None:
    """runc's rootfsParentMountPrivate: the mount the rootfs lies on, when shared, is made private
    here (pivot_root refuses a shared parent, and the rootfs's bind must not reach other
    namespaces)."""
    mp, optional = source_mount(rootfs)
    if shared(optional):
        sc.mount(None, mp, None, sc.MS_PRIVATE)


def finish(config: dict) -> None:
    """Everything after pivot_root: read-only and masked paths, read-only root, propagation."""
    linux = config.get("linux") or {}
    if not binds_dev(config):
        reopen_dev_null()
    readonly_paths(linux.get("readonlyPaths"))  # runc's order (a path in both ends masked)
    mask_paths(linux.get("maskedPaths"))
    if config["root"].get("readonly"):
        try:
            remount("/", sc.MS_RDONLY)
        except OSError as e:
            _fail("remount / read-only", e)
    rp = linux.get("rootfsPropagation")
    if rp:
        sc.mount(None, "/", None, PROPAGATION_FLAGS[rp])
