"""Container operations beyond the lifecycle, as dockerd does them: pause/unpause, rename, top,
stats, the archive endpoints behind `cp` (stat, get, put), changes (`diff`) and prune.

Every function takes the ContainerService (berth.services.containers) and a namespace.

Archive safety. Nothing outside the container's root is ever read or written: the root is
opened once (the running container's rootfs mount, or its snapshot mounted for the call) and
every path is resolved from that fd with openat2(RESOLVE_IN_ROOT) (symlinks, absolute or
relative, and ".." stay inside the root, atomically, even while the container changes its
files); below the resolved point, trees are walked and built with *at calls on directory fds
that never follow a symlink. The same tar primitives (tar_stream, extract_tar) serve the CLI
for the host side of a copy, with the destination directory as the root.
"""

import base64
import contextlib
import errno
import json
import os
import posixpath
import re
import shutil
import stat
import subprocess
import tarfile
import threading
import time

from berth.errors import (
    AlreadyExists,
    BerthError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SystemError_,
)

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20
_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")

# mount points the runtime creates in the rootfs (docker keeps them in its "init" layer, so its
# diff never shows them)
_INIT_PATHS = {"/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/console", "/proc", "/sys",
               "/sys/fs", "/sys/fs/cgroup", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf",
               "/etc/mtab", "/.dockerenv"}


def _now_rfc3339():
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def _running(svc, ns, ref):
    rec = svc.get(ns, ref)
    st = svc.state(rec)
    if not st["Running"]:
        raise FailedPrecondition(f"Container {rec.id} is not running")
    return rec, st


# --- pause / unpause -------------------------------------------------------------------------

def _runtime_call(svc, rec, op):
    svc.runtime_call(rec, op)


def pause(svc, ns, ref):
    rec, st = _running(svc, ns, ref)
    if st["Paused"]:
        raise FailedPrecondition(f"Container {rec.id} is already paused")
    _runtime_call(svc, rec, "pause")


def unpause(svc, ns, ref):
    rec = svc.get(ns, ref)
    st = svc.state(rec)
    if not st["Paused"]:
        raise FailedPrecondition(f"Container {rec.id} is not paused")
    _runtime_call(svc, rec, "resume")


# --- rename ----------------------------------------------------------------------------------

def rename(svc, ns, ref, new_name):
    new_name = (new_name or "").lstrip("/")
    if not ref or not new_name:
        raise InvalidArgument("Neither old nor new names may be empty")
    if not _NAME_RE.fullmatch(new_name):
        raise InvalidArgument(f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    rec = svc.get(ns, ref)
    if rec.name == new_name:
        raise InvalidArgument("Renaming a container with the same name as its current name")
    try:
        svc.meta.update_container(ns, rec.id, name=new_name)
    except AlreadyExists:
        other = svc.meta.get_container_by_name(ns, new_name)
        raise AlreadyExists(f'Conflict. The container name "/{new_name}" is already in use by container '
                            f'"{other.id}". You have to remove (or rename) that container to be able to reuse '
                            f'that name.') from None


# --- cgroup and processes --------------------------------------------------------------------

def _cgroup(pid):
    """The cgroup Manager of a process (any runtime), from /proc/<pid>/cgroup; None if gone."""
    from berth.runtime import cgroups
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    paths = {}
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(","):
            paths[c] = path
    mode = cgroups.detect_mode()
    path = paths.get("") if mode == "v2" else (paths.get("memory") or paths.get("pids") or paths.get("cpu")
                                                   or paths.get(""))
    if not path or path == "/":
        return None
    try:
        return cgroups.Manager(path, mode=mode)
    except BerthError:
        return None


def _descendants(pid):
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        ppid = int(data[data.rfind(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return sorted(out)


def container_pids(pid):
    """Every process of the container whose init is pid: its cgroup, else its process tree."""
    mgr = _cgroup(pid)
    pids = []
    if mgr is not None:
        try:
            pids = mgr.pids()
        except BerthError:
            pids = []
    return pids or _descendants(pid)


def _validate_ps_args(ps_args):
    for k, v in re.findall(r"\s+(\S*)=\s*(PID\S*)", ps_args):
        if k != "pid":
            raise InvalidArgument(f'specifying "{k}={v}" is not allowed')


def _parse_ps(output, pids):
    lines = output.split("\n")
    titles = lines[0].split()
    try:
        pid_index = titles.index("PID")
    except ValueError:
        raise SystemError_("Couldn't find PID field in ps output") from None
    procs = []
    pids = set(pids)
    contained = False
    for line in lines[1:]:
        if not line:
            continue
        fields = line.split()
        if len(fields) <= pid_index:
            continue
        if fields[pid_index] == "-":
            if contained:
                procs.append(fields[:len(titles) - 1] + [" ".join(fields[len(titles) - 1:])])
            continue
        try:
            p = int(fields[pid_index])
        except ValueError:
            raise SystemError_(f"Unexpected pid '{fields[pid_index]}'") from None
        contained = p in pids
        if contained:
            procs.append(fields[:len(titles) - 1] + [" ".join(fields[len(titles) - 1:])])
    return {"Titles": titles, "Processes": procs}


def top(svc, ns, ref, ps_args=None):
    """GET /containers/{id}/top: the host's `ps` output restricted to the container's processes."""
    _rec, st = _running(svc, ns, ref)
    ps_args = ps_args or "-ef"
    _validate_ps_args(ps_args)
    pids = container_pids(st["Pid"])
    args = [a for a in ps_args.split(" ") if a]
    ps = shutil.which("ps")
    if ps is None:
        return _top_from_proc(pids)
    env = dict(os.environ, LC_ALL="C")
    p = subprocess.run([ps, *args, "-q", ",".join(map(str, pids))], capture_output=True, env=env, timeout=60,
                       check=False)
    if p.returncode != 0:
        # some options (f, ...) cannot be combined with -q: list everything and filter
        p = subprocess.run([ps, *args], capture_output=True, env=env, timeout=60, check=False)
        if p.returncode != 0:
            first = p.stderr.decode(errors="replace").split("\n", 1)[0]
            raise SystemError_(f"ps: {first or f'exit status {p.returncode}'}")
    return _parse_ps(p.stdout.decode(errors="replace"), pids)


def _top_from_proc(pids):
    """`ps -ef` columns read from /proc, for hosts without procps."""
    import pwd
    hz = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        btime = next(int(line.split()[1]) for line in f if line.startswith("btime"))
    procs = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        comm = data[data.index(b"(") + 1:data.rfind(b")")].decode(errors="replace")
        rest = data[data.rfind(b")") + 2:].split()
        ppid, utime, stime, start = int(rest[1]), int(rest[11]), int(rest[12]), int(rest[19])
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        t = (utime + stime) // hz
        started = time.localtime(btime + start / hz)
        stime_s = time.strftime("%H:%M" if time.time() - time.mktime(started) < 86400 else "%b%d", started)
        procs.append([user, str(pid), str(ppid), "0", stime_s, "?",
                      f"{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}", cmd or f"[{comm}]"])
    return {"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], "Processes": procs}


# --- stats -----------------------------------------------------------------------------------

def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _int(path):
    v = _read(path)
    if v is None:
        return None
    v = v.strip()
    if v == "max":
        return -1
    try:
        n = int(v)
    except ValueError:
        return None
    return -1 if n >= 1 << 62 else n


def _kv(path):
    out = {}
    for line in (_read(path) or "").splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def _host_memory():
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _system_cpu_usage():
    """Host CPU time in ns, as docker computes system_cpu_usage (/proc/stat's cpu line)."""
    for line in (_read("/proc/stat") or "").splitlines():
        if line.startswith("cpu "):
            return sum(int(x) for x in line.split()[1:8]) * 10**9 // os.sysconf("SC_CLK_TCK")
    return 0


def _online_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except OSError:
        return os.cpu_count() or 1


def _ctrl_dir(mgr, controller):
    if mgr.mode == "v2":
        return mgr.paths.get("")
    for key, d in mgr.paths.items():
        if controller in key.split(","):
            return d
    return None


def _blkio_v1(d):
    out = []
    for line in (_read(os.path.join(d, "blkio.throttle.io_service_bytes_recursive")) or
                 _read(os.path.join(d, "blkio.io_service_bytes_recursive")) or "").splitlines():
        f = line.split()
        if len(f) == 3 and ":" in f[0]:
            ma, mi = f[0].split(":")
            out.append({"major": int(ma), "minor": int(mi), "op": f[1], "value": int(f[2])})
    return out


def _blkio_v2(d):
    out = []
    for line in (_read(os.path.join(d, "io.stat")) or "").splitlines():
        f = line.split()
        if not f or ":" not in f[0]:
            continue
        ma, mi = f[0].split(":")
        kv = dict(x.split("=", 1) for x in f[1:] if "=" in x)
        for key, op in (("rbytes", "read"), ("wbytes", "write")):
            if key in kv:
                out.append({"major": int(ma), "minor": int(mi), "op": op, "value": int(kv[key])})
    return out


def _sample(mgr):
    """One stats sample in docker's shape (without name, id, preread, precpu_stats)."""
    hz = os.sysconf("SC_CLK_TCK")
    host_mem = _host_memory()
    cpu = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
           "system_cpu_usage": _system_cpu_usage(), "online_cpus": _online_cpus(),
           "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    mem = {"usage": 0, "stats": {}, "limit": host_mem}
    pids = {"current": 0}
    blkio = {"io_service_bytes_recursive": []}
    if mgr.mode == "v2":
        d = mgr.paths[""]
        cs = _kv(os.path.join(d, "cpu.stat"))
        cpu["cpu_usage"].update(total_usage=cs.get("usage_usec", 0) * 1000,
                                usage_in_kernelmode=cs.get("system_usec", 0) * 1000,
                                usage_in_usermode=cs.get("user_usec", 0) * 1000)
        cpu["throttling_data"].update(periods=cs.get("nr_periods", 0), throttled_periods=cs.get("nr_throttled", 0),
                                      throttled_time=cs.get("throttled_usec", 0) * 1000)
        mem["usage"] = _int(os.path.join(d, "memory.current")) or 0
        mem["stats"] = _kv(os.path.join(d, "memory.stat"))
        limit = _int(os.path.join(d, "memory.max"))
        pids["current"] = _int(os.path.join(d, "pids.current")) or 0
        plimit = _int(os.path.join(d, "pids.max"))
        blkio["io_service_bytes_recursive"] = _blkio_v2(d)
    else:
        c = _ctrl_dir(mgr, "cpuacct")
        if c:
            cpu["cpu_usage"]["total_usage"] = _int(os.path.join(c, "cpuacct.usage")) or 0
            percpu = (_read(os.path.join(c, "cpuacct.usage_percpu")) or "").split()
            if percpu:
                cpu["cpu_usage"]["percpu_usage"] = [int(x) for x in percpu]
            st = _kv(os.path.join(c, "cpuacct.stat"))
            cpu["cpu_usage"].update(usage_in_kernelmode=st.get("system", 0) * 10**9 // hz,
                                    usage_in_usermode=st.get("user", 0) * 10**9 // hz)
        c = _ctrl_dir(mgr, "cpu")
        if c:
            st = _kv(os.path.join(c, "cpu.stat"))
            cpu["throttling_data"].update(periods=st.get("nr_periods", 0),
                                          throttled_periods=st.get("nr_throttled", 0),
                                          throttled_time=st.get("throttled_time", 0))
        m = _ctrl_dir(mgr, "memory")
        limit = None
        if m:
            mem["usage"] = _int(os.path.join(m, "memory.usage_in_bytes")) or 0
            mx = _int(os.path.join(m, "memory.max_usage_in_bytes"))
            if mx is not None:
                mem["max_usage"] = mx
            failcnt = _int(os.path.join(m, "memory.failcnt"))
            if failcnt is not None:
                mem["failcnt"] = failcnt
            mem["stats"] = _kv(os.path.join(m, "memory.stat"))
            limit = _int(os.path.join(m, "memory.limit_in_bytes"))
        p = _ctrl_dir(mgr, "pids")
        plimit = None
        if p:
            pids["current"] = _int(os.path.join(p, "pids.current")) or 0
            plimit = _int(os.path.join(p, "pids.max"))
        b = _ctrl_dir(mgr, "blkio")
        if b:
            blkio["io_service_bytes_recursive"] = _blkio_v1(b)
    if limit is not None and limit >= 0 and (not host_mem or limit < host_mem):
        mem["limit"] = limit
    if plimit is not None and plimit > 0:
        pids["limit"] = plimit
    for k in ("io_serviced_recursive", "io_queue_recursive", "io_service_time_recursive",
              "io_wait_time_recursive", "io_merged_recursive", "io_time_recursive", "sectors_recursive"):
        blkio[k] = None
    return {"read": _now_rfc3339(), "pids_stats": pids, "blkio_stats": blkio, "num_procs": 0,
            "storage_stats": {}, "cpu_stats": cpu, "memory_stats": mem}


_EMPTY_CPU = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
              "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def _empty_stats(rec):
    return {"name": "/" + rec.name, "id": rec.id, "read": "0001-01-01T00:00:00Z",
            "preread": "0001-01-01T00:00:00Z", "pids_stats": {},
            "blkio_stats": {"io_service_bytes_recursive": None}, "num_procs": 0, "storage_stats": {},
            "cpu_stats": _EMPTY_CPU, "precpu_stats": _EMPTY_CPU, "memory_stats": {}}


def sample_of(pid):
    """One stats sample (docker's shape, without name/id/pre*) of the running container whose init
    is pid, or None (gone, or no cgroup of its own): for callers that know the container runs."""
    mgr = _cgroup(pid)
    return _sample(mgr) if mgr is not None else None


def stats(svc, ns, ref, stream=False, one_shot=False, interval=1.0):
    """Yield docker's stats JSON objects: one (stream=False), or one per interval while it runs.

    Without one_shot, the first object waits one interval so precpu_stats is a real sample
    (the CLI's CPU % is the difference of the two)."""
    rec = svc.get(ns, ref)
    st = svc.state(rec)
    if not st["Running"]:
        if not stream:
            yield _empty_stats(rec)
        return
    mgr = _cgroup(st["Pid"])
    if mgr is None:
        yield _empty_stats(rec)
        return
    pre = None
    if not one_shot:
        pre = _sample(mgr)
        time.sleep(interval if stream else min(interval, 0.5))
    while True:
        cur = _sample(mgr)
        out = dict(cur, name="/" + rec.name, id=rec.id,
                   preread=pre["read"] if pre else "0001-01-01T00:00:00Z",
                   precpu_stats=pre["cpu_stats"] if pre else _EMPTY_CPU)
        yield out
        if not stream:
            return
        time.sleep(interval)
        try:
            if not svc.state(svc.meta.get_container(ns, rec.id))["Running"]:
                return
        except NotFound:
            return
        pre = cur


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


# --- changes (diff) --------------------------------------------------------------------------

MODIFY, ADD, DELETE = 0, 1, 2


def _overlay_dirs(svc, rec):
    """(upper, [lowers nearest first]) of the container's snapshot, or None if not overlayfs."""
    for m in svc.snapshotter.mounts(rec.snapshot_key):
        opts = dict(o.split("=", 1) for o in m.options if "=" in o)
        if m.type == "overlay" and "upperdir" in opts:
            return opts["upperdir"], [d for d in opts.get("lowerdir", "").split(":") if d]
        if m.type == "bind":
            return None
    return None


def _lstat(path):
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _same_dir(a, b):
    return (a.st_mode == b.st_mode and a.st_uid == b.st_uid and a.st_gid == b.st_gid)


def _overlay_changes(upper, lowers):
    out = []

    def in_lower(rel):
        for lower in lowers:
            st = _lstat(os.path.join(lower, rel))
            if st is not None:
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    return None  # whited out in that layer
                return st
        return None

    def walk(d, rel):
        try:
            names = sorted(os.listdir(os.path.join(upper, d) if d else upper))
        except OSError:
            return
        for nm in names:
            r = posixpath.join(rel, nm)
            full = os.path.join(upper, r)
            st = _lstat(full)
            if st is None:
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append(("/" + r, DELETE, None))
                continue
            low = in_lower(r)
            if low is None:
                out.append(("/" + r, ADD, st))
            elif stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(low.st_mode):
                out.append(("/" + r, MODIFY, ("dir", st, low)))
            else:
                out.append(("/" + r, MODIFY, st))
            if stat.S_ISDIR(st.st_mode):
                walk(r, r)
    walk("", "")
    return out


def _tree_changes(new, old):
    """Native snapshotter: compare the container's full copy with its parent's."""
    out = []

    def walk(rel):
        nd = os.path.join(new, rel) if rel else new
        od = os.path.join(old, rel) if rel else old
        try:
            nn = set(os.listdir(nd))
        except OSError:
            nn = set()
        try:
            on = set(os.listdir(od)) if old else set()
        except OSError:
            on = set()
        for nm in sorted(nn | on):
            r = posixpath.join(rel, nm)
            ns_, os_ = _lstat(os.path.join(new, r)), _lstat(os.path.join(old, r)) if old else None
            if ns_ is None:
                out.append(("/" + r, DELETE, None))
                continue
            if os_ is None:
                out.append(("/" + r, ADD, ns_))
            elif stat.S_ISDIR(ns_.st_mode) and stat.S_ISDIR(os_.st_mode):
                out.append(("/" + r, MODIFY, ("dir", ns_, os_)))
            elif (stat.S_IFMT(ns_.st_mode) != stat.S_IFMT(os_.st_mode) or ns_.st_mode != os_.st_mode
                  or ns_.st_uid != os_.st_uid or ns_.st_gid != os_.st_gid or ns_.st_rdev != os_.st_rdev
                  or ns_.st_size != os_.st_size or ns_.st_mtime_ns != os_.st_mtime_ns):
                out.append(("/" + r, MODIFY, ns_))
            if stat.S_ISDIR(ns_.st_mode):
                walk(r)
    walk("")
    return out


def changes(svc, ns, ref):
    """GET /containers/{id}/changes: [{"Path", "Kind"}] (0 modified, 1 added, 2 deleted)."""
    rec = svc.get(ns, ref)
    dirs = _overlay_dirs(svc, rec)
    if dirs is not None:
        raw = _overlay_changes(*dirs)
    else:
        new = svc.snapshotter.fs_path(rec.snapshot_key)
        parent = svc.snapshotter.stat(rec.snapshot_key).parent
        old = svc.snapshotter.fs_path(parent) if parent else None
        raw = _tree_changes(new, old)
    raw = [c for c in raw if c[0] not in _INIT_PATHS]
    # a directory is reported when it changed itself, or when something below it was added or
    # deleted (docker's rule); one that only holds runtime mount points is not
    paths = [c[0] for c in raw]
    out = []
    for path, kind, info in raw:
        if kind == MODIFY and isinstance(info, tuple):
            _, st, low = info
            below = any(p.startswith(path + "/") for p in paths)
            if _same_dir(st, low) and not below:
                continue
        out.append({"Path": path, "Kind": kind})
    return out


# --- prune -----------------------------------------------------------------------------------

def _until(v):
    from berth.services.containers import _parse_time
    v = str(v)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h)", v)
    if m:
        return time.time() - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
    if re.fullmatch(r"\d+(\.\d+)?", v):
        return float(v)
    try:
        return _parse_time(v if v.endswith("Z") else v + "Z")
    except ValueError:
        raise InvalidArgument(f"invalid filter 'until={v}'") from None


def _labels_match(labels, wanted, negate):
    for v in wanted:
        k, eq, val = v.partition("=")
        has = k in labels and (not eq or labels[k] == val)
        if has == negate:
            return False
    return True


def prune(svc, ns, filters=None, on_removed=None):
    """POST /containers/prune: remove every container that is not running (on_removed(rec) after
    each)."""
    filters = filters or {}
    vals = {}
    for k, v in filters.items():
        if isinstance(v, dict):
            v = [x for x, on in v.items() if on]
        if k not in ("until", "label", "label!"):
            raise InvalidArgument(f"invalid filter '{k}'")
        vals[k] = list(v)
    until = min((_until(v) for v in vals.get("until", [])), default=None)
    deleted, space = [], 0
    for rec in svc.meta.list_containers(ns):
        if svc.state(rec)["Running"]:
            continue
        if until is not None and rec.created_at >= until:
            continue
        labels = rec.labels or {}
        if not _labels_match(labels, vals.get("label", []), False):
            continue
        if not _labels_match(labels, vals.get("label!", []), True):
            continue
        try:
            size = svc.snapshotter.usage(rec.snapshot_key)
        except BerthError:
            size = 0
        try:
            svc.remove(ns, rec.id)
        except NotFound:
            continue
        except FailedPrecondition:
            continue  # started meanwhile
        deleted.append(rec.id)
        space += size
        if on_removed is not None:
            on_removed(rec)
    return {"ContainersDeleted": deleted, "SpaceReclaimed": space}
