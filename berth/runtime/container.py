"""The container verbs of the OCI runtime: create, start, run, exec, kill, delete, pause, resume.

Process model (like runc/crun, without re-executing an interpreter):

    caller (P) --fork--> A: joins namespaces by path, unshares the new ones --fork--> B (init)
    A reports B's pid and exits; B builds the rootfs, pivots, sets up the process, then
    blocks opening the exec fifo for writing until `start` opens it for reading.

P and A/B talk over a socketpair with one JSON message per line. Any failure before
`created` makes P undo everything: the init is killed, the cgroup and state dir removed.

The shim, which lives on as its containers' parent and must stay small, creates most containers
with create_forked instead: it forks B itself, straight into B's PID namespace, and B does P's
part of the work too (the spec, the state dir, the cgroup, which it joins from a thread while it
builds its rootfs) before its own. One process fewer, and the pages that work writes go with B's
exec. The specs that need A or P's namespaces (a user or time namespace, a mount namespace to
join, prestart/createRuntime hooks, the systemd driver) take the way above (direct_pidns).
"""

from __future__ import annotations

import _signal as signal  # the signal module without its enum wrappers (start-up time)
import _socket
import _thread
import errno
import os
import select
import sys
import time

from berth import fastjson as json
from berth.errors import (
    BerthError,
    ConfigInvalid,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SystemError_,
)
from berth.goquote import errno_text
from berth.goquote import quote as goquote
from berth.gotime import rfc3339nano as _now
from berth.linux import caps as capnames
from berth.linux import syscalls as sc
from berth.runtime import hooks as hookmod
from berth.runtime import spec as specmod
from berth.runtime import state as statemod
from berth.runtime.state import CREATED, PAUSED, RUNNING, STOPPED

TYPE_CHECKING = False  # no typing at run time: berth-runc imports this
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Any, NoReturn

    from berth.linux.seccomp import Filter, Program

    Spec = dict[str, Any]  # a decoded config.json (or its process / linux object)

NS_FLAGS = {
    "pid": sc.CLONE_NEWPID, "network": sc.CLONE_NEWNET, "mount": sc.CLONE_NEWNS, "ipc": sc.CLONE_NEWIPC,
    "uts": sc.CLONE_NEWUTS, "user": sc.CLONE_NEWUSER, "cgroup": sc.CLONE_NEWCGROUP, "time": sc.CLONE_NEWTIME,
}
# joining order: the user namespace first, the mount namespace after the others' files are opened
JOIN_ORDER = ["user", "pid", "network", "ipc", "uts", "cgroup", "time", "mount"]
CLOSE_RANGE_CLOEXEC = 4


def warn(msg: str) -> None:
    print(f"berth-runc: warning: {msg}", file=sys.stderr)


def _warn_ignored_caps(process: Spec) -> None:
    names = capnames.ignored(process.get("capabilities"))
    if names:  # runc's warning: it starts the process without them
        warn(f"ignoring unknown or unavailable capabilities: [{' '.join(names)}]")


class Channel:
    """Newline-delimited JSON over a stream socket."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def send(self, **msg: Any) -> bool:
        """Send a message; False if the peer is gone (its last words may still be waiting in recv)."""
        try:
            self.sock.sendall(json.dumps(msg).encode() + b"\n")
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def recv(self) -> dict[str, Any] | None:
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        self.sock.close()


def _error_message(e: BaseException) -> str:
    if isinstance(e, BerthError):
        return e.message
    if isinstance(e, OSError):
        return f"{e.strerror}" + (f": {e.filename}" if e.filename else "")
    return f"{type(e).__name__}: {e}"


def _child_fail(ch: Channel, e: BaseException) -> NoReturn:
    if os.environ.get("BERTH_DEBUG"):
        import traceback
        traceback.print_exc()
    try:
        ch.send(t="error", msg=_error_message(e), kind=type(e).__name__)
    except Exception:
        pass
    os._exit(1)


def _write_pid_file(path: str, pid: int) -> None:
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _set_time_offsets(unshared: int, config: Spec) -> None:
    """linux.timeOffsets (validated) for the time namespace just unshared: its clocks' offsets are
    written before its first process, the next child, enters it."""
    offsets = (config.get("linux") or {}).get("timeOffsets")
    if not (unshared & sc.CLONE_NEWTIME) or not offsets:
        return
    text = "".join(f"{clock} {o.get('secs', 0)} {o.get('nanosecs', 0)}\n" for clock, o in offsets.items())
    try:
        with open("/proc/self/timens_offsets", "w") as f:
            f.write(text)
    except OSError as e:
        raise SystemError_(f"error during container init: failed to set time namespace offsets: "
                           f"{errno_text(e)}") from None


def _namespaces(config: Spec) -> tuple[int, list[tuple[str, str]]]:
    new = 0
    join = []
    for ns in (config.get("linux") or {}).get("namespaces") or []:
        if ns.get("path"):
            join.append((ns["type"], ns["path"]))
        else:
            new |= NS_FLAGS[ns["type"]]
    join.sort(key=lambda t: JOIN_ORDER.index(t[0]))
    return new, join


def _join(join: list[tuple[str, str]]) -> None:
    fds = [(t, p, os.open(p, os.O_RDONLY | os.O_CLOEXEC)) for t, p in join]
    try:
        for t, p, fd in fds:
            if t == "user" and _same_file(fd, "/proc/self/ns/user"):
                continue  # already in it: setns would fail with EINVAL
            try:
                sc.setns(fd, NS_FLAGS[t])
            except OSError as e:
                if e.errno == errno.EINVAL:
                    raise InvalidArgument(f"cannot join {t} namespace: {p} is not a {t} namespace "
                                          "(or cannot be joined from here)") from None
                raise SystemError_(f"cannot join {t} namespace {p}: {e.strerror}") from None
    finally:
        for _t, _p, fd in fds:
            os.close(fd)


def _same_file(fd: int, path: str) -> bool:
    a = os.fstat(fd)
    try:
        b = os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _set_sysctls(sysctl: dict[str, str] | None) -> None:
    """Each sysctl written under the container's /proc/sys, runc's words when it cannot be."""
    if not sysctl:
        return
    procfd = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if sc.fstatfs_type(procfd) != sc.PROC_SUPER_MAGIC:
            raise InvalidArgument("/proc in the container is not procfs; cannot set sysctls")
        for key, value in sysctl.items():
            rel = "sys/" + (key if "/" in key else key.replace(".", "/"))
            try:
                fd = sc.openat2(procfd, rel, os.O_WRONLY, 0, sc.RESOLVE_BENEATH | sc.RESOLVE_NO_SYMLINKS)
            except OSError as e:
                raise SystemError_(f"error during container init: open /proc/{rel}: {errno_text(e)}") from None
            try:
                os.write(fd, value.encode())
            except OSError as e:
                raise SystemError_(f"error during container init: write /proc/{rel}: {errno_text(e)}") from None
            finally:
                os.close(fd)
    finally:
        os.close(procfd)


def _preload(process: Spec, config: Spec) -> Filter | Program | None:
    """Import and load now whatever the process will need after pivot_root or setns(mnt):
    from then on, the host's Python library and shared libraries are out of sight.
    Returns the compiled seccomp filter (libseccomp is loaded here), or None."""
    import resource  # noqa: F401
    from berth.runtime import process as procmod  # noqa: F401
    if process.get("terminal"):
        import fcntl  # noqa: F401
        import socket  # noqa: F401
        import struct  # noqa: F401
        import termios  # noqa: F401
    hooks = config.get("hooks") or {}
    if hooks.get("createContainer") or hooks.get("startContainer"):
        import subprocess  # noqa: F401
    if any(ns.get("type") == "network" and not ns.get("path")
           for ns in (config.get("linux") or {}).get("namespaces") or []):
        import _socket  # noqa: F401  (sc.link_up("lo"))
        import fcntl  # noqa: F401
        import struct  # noqa: F401
    if os.environ.get("BERTH_DEBUG"):
        import traceback  # noqa: F401
    scmp = (config.get("linux") or {}).get("seccomp")
    if scmp:
        from berth.linux import seccomp
        return seccomp.compile_cached(scmp)
    return None


def _setup_process(process: Spec, console: _socket.socket | None, linux: Spec) -> tuple[str, int | None, str | None]:
    """Shared by init and exec, in the container's namespaces and root: returns (path, slave, name)."""
    from berth.runtime import process as procmod
    if process.get("terminal"):
        slave, name = procmod.setup_console(console, process)
    else:
        slave, name = None, None
    procmod.set_rlimits(process)
    procmod.set_oom_score_adj(process)
    procmod.set_personality(linux)
    procmod.apply_apparmor(process)
    procmod.apply_selinux(process)
    path = procmod.lookup_executable(process)
    return path, slave, name


def _init(ch: Channel, config: Spec, bundle: str, fifo_fd: int, console: _socket.socket | None, cg_path: str, cg_mode: str,
          no_pivot: bool, in_userns: bool, filt: Filter | Program | None, preserve_fds: int,
          joined: Callable[[], dict[str, Any]] | None = None, save_state: Callable[[], None] | None = None,
          keyring: str | None = None) -> NoReturn:
    """The container's init (B). Never returns. joined: waits until the init is in its cgroup and
    answers the state the hooks see (by default the caller's "state" message, sent once it has
    moved the init there); save_state: the state file's write, once the init is set up save for
    its user and capabilities (an init that made its own state, create_forked); keyring: the
    session keyring of its own it makes (see process.join_keyring)."""
    from berth.runtime import process as procmod
    from berth.linux.paths import ensure_in_root
    from berth.runtime import rootfs
    try:
        process = config["process"]
        linux = config.get("linux") or {}
        nstypes = {ns["type"] for ns in linux.get("namespaces") or []}
        try:
            os.setsid()
        except OSError:
            pass
        if keyring:
            procmod.join_keyring(keyring, 0x8 if "user" in nstypes else 0x80000)
        if any(ns["type"] == "network" and not ns.get("path") for ns in linux.get("namespaces") or []):
            sc.link_up("lo")  # a new network namespace gets its loopback up, as runc does
        for key, setname in (("hostname", _socket.sethostname), ("domainname", sc.setdomainname)):
            if config.get(key):
                try:
                    setname(config[key])
                except OSError as e:  # longer than 64 bytes: runc's words
                    raise SystemError_(f"error during container init: set{key}: {errno_text(e)}") from None
        procfd_dir = os.open("/proc/self/fd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        new_cgroupns = any(ns["type"] == "cgroup" and not ns.get("path") for ns in linux.get("namespaces") or [])

        def joined_cgroup() -> dict[str, Any]:
            # The caller moves us into the container's cgroup (a slow write: the kernel waits for an
            # RCU grace period) while we build the rootfs and set up the process; it sends the state
            # when that is done. Until then we must not fork (a child could start outside it).
            if joined is not None:
                state = joined()
            else:
                msg = ch.recv()
                if not msg or msg.get("t") != "state":
                    os._exit(1)
                state = msg["state"]
            if new_cgroupns:
                sc.unshare(sc.CLONE_NEWCGROUP)  # rooted at the container's cgroup
            return state

        hooks = config.get("hooks") or {}
        hooked = bool(hooks.get("prestart") or hooks.get("createRuntime") or hooks.get("createContainer"))
        hook_state = None
        if new_cgroupns and cg_mode == "v2":
            hook_state = joined_cgroup()  # the cgroup2 mount must see the new cgroup namespace
        if "mount" in nstypes:
            rootfs.prepare(config, bundle, cg_path, cg_mode, "cgroup" in nstypes, in_userns)
        if hook_state is None and hooked:
            hook_state = joined_cgroup()  # hooks are processes: they start in the cgroup
        if hooks.get("prestart") or hooks.get("createRuntime"):
            ch.send(t="hooks")  # the runtime-namespace hooks run in the caller, while we wait
            reply = ch.recv()
            if not reply or reply.get("t") != "ok":
                os._exit(1)
        if hooked:
            hookmod.run(hooks, "createContainer", hook_state)
        if "mount" in nstypes:
            rootfs.pivot(config["root"]["path"], no_pivot)
        else:
            os.chroot(config["root"]["path"])
            os.chdir("/")
        cwd = process.get("cwd") or "/"
        if cwd != "/":  # runc's: the working directory is made (0755, in the new root) before the root
            procmod.mkdir_all(cwd)  # can go read-only; an exec's is not
        bad_env = procmod.env_error(process)
        if bad_env:
            raise SystemError_(f"error during container init: {bad_env}")
        _set_sysctls(linux.get("sysctl"))
        path, slave, name = _setup_process(process, console, linux)
        if name and "mount" in nstypes:
            try:
                fd = ensure_in_root(os.open("/", os.O_PATH | os.O_CLOEXEC), "/dev/console", directory=False)
                sc.mount(name, f"/proc/self/fd/{fd}", None, sc.MS_BIND)
                os.close(fd)
            except OSError:
                pass
        if "mount" in nstypes:
            rootfs.finish(config)
        if slave is not None:
            procmod.make_ctty(slave)
        if hook_state is None:
            # nothing above forks or needs the cgroup: the join (mostly its RCU wait) overlapped the
            # rootfs, the pivot and the process set-up; the cgroup namespace is unshared before the
            # capabilities go, and the user's process can only start after this
            hook_state = joined_cgroup()
        procmod.set_scheduling(process)  # in the cgroup: a realtime policy is checked against its limits
        if save_state is not None:
            save_state()
        filt = _handing_on(ch, filt)
        procmod.apply_user_and_caps(process, filt, in_userns)
        if filt is not None and filt.notify:
            if process.get("noNewPrivileges"):
                filt.load()  # while the runtime listens: its listener fd goes to the agent through it
            filt = None  # loaded
        procmod.chdir_checked(process.get("cwd") or "/")
        ch.send(t="created")
    except BaseException as e:  # noqa: B902 - report everything to the parent
        _child_fail(ch, e)
    try:
        ch.close()
        fd = os.open(str(fifo_fd), os.O_WRONLY | os.O_CLOEXEC, dir_fd=procfd_dir)
        os.write(fd, b"0")
        os.close(fd)
        os.close(procfd_dir)
        os.close(fifo_fd)
        hookmod.run(hooks, "startContainer", dict(hook_state, status="created"))
        try:
            sc.close_range(3 + preserve_fds, 0xFFFFFFFF, CLOSE_RANGE_CLOEXEC)
        except OSError:
            os.closerange(3 + preserve_fds, 65536)
        procmod.exec_process(process, path, filt)
    except procmod.ExecFailed as e:
        e.report()
    except BaseException as e:
        print(f"berth-runc: {_error_message(e)}", file=sys.stderr)
        os._exit(127 if isinstance(e, (FileNotFoundError, NotFound)) else 126)


def _child_a_create(ch: Channel, config: Spec, bundle: str, fifo_fd: int, console: _socket.socket | None, cg_path: str,
                    cg_mode: str, no_pivot: bool, preserve_fds: int, keyring: str | None) -> NoReturn:
    try:
        # everything the init will import, imported before we join or make a user namespace: from
        # then on the interpreter's files may be out of reach (a Python under a 0700 home)
        filt = _preload(config["process"], config)
        from berth.runtime import rootfs
        new, join = _namespaces(config)
        userns = bool(new & sc.CLONE_NEWUSER) or any(t == "user" for t, _ in join)
        # (needs the host's user namespace)
        rootfs.IDMAPPED.update(rootfs.idmapped_sources(config, bundle, all_binds=userns))
        if userns:
            _early_oom_score_adj(config["process"])
        _join(join)
        userns_new = bool(new & sc.CLONE_NEWUSER)
        if userns_new:
            sc.unshare(sc.CLONE_NEWUSER)
            ch.send(t="idmap")  # the caller writes our uid/gid maps from outside
            msg = ch.recv()
            if not msg or msg.get("t") != "go":
                os._exit(1)
        in_userns = userns_new or any(t == "user" for t, _ in join)
        if in_userns:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        rest = new & ~(sc.CLONE_NEWUSER | sc.CLONE_NEWCGROUP)  # the init unshares cgroup once in its cgroup
        if rest:
            sc.unshare(rest)
            _set_time_offsets(rest, config)
        pid = os.fork()
        if pid == 0:
            _init(ch, config, bundle, fifo_fd, console, cg_path, cg_mode, no_pivot, in_userns, filt, preserve_fds,
                  keyring=keyring)
        ch.send(t="pid", pid=pid)
        os._exit(0)
    except BaseException as e:
        _child_fail(ch, e)


def _early_oom_score_adj(process: Spec) -> None:
    """The process's oom_score_adj, written before it enters a user namespace (as runc writes it
    from outside): once root there, a process whose credentials changed is not dumpable, and its
    /proc files are the host's root's, not its own. Left out of what it sets later."""
    from berth.runtime import process as procmod
    procmod.set_oom_score_adj(process)
    process.pop("oomScoreAdj", None)


def _direct_ok(config: Spec) -> bool:
    """Whether create(disposable=True) may skip the intermediate process (see create)."""
    if _runtime_side_work(config):
        return False
    for ns in (config.get("linux") or {}).get("namespaces") or []:
        if ns["type"] == "user" or ns["type"] == "mount" and ns.get("path"):
            return False
    return True


def _fork_init(ch: Channel, psock: _socket.socket, config: Spec, bundle: str, fifo_fd: int,
               console: _socket.socket | None, cg_path: str, cg_mode: str, no_pivot: bool, preserve_fds: int,
               keyring: str | None) -> int:
    """_child_a_create's work done by the (disposable) caller: join and unshare the namespaces
    here, fork the init; its pid. The mount namespace is the init's own to unshare (it cannot be
    with another thread running here: the cgroup warm-up's)."""
    filt = _preload(config["process"], config)
    new, join = _namespaces(config)
    _join(join)
    rest = new & ~(sc.CLONE_NEWUSER | sc.CLONE_NEWCGROUP | sc.CLONE_NEWNS)
    if rest:
        sc.unshare(rest)
        _set_time_offsets(rest, config)
    pid = os.fork()
    if pid == 0:
        try:
            psock.close()
            if new & sc.CLONE_NEWNS:
                sc.unshare(sc.CLONE_NEWNS)
        except BaseException as e:
            _child_fail(ch, e)
        _init(ch, config, bundle, fifo_fd, console, cg_path, cg_mode, no_pivot, False, filt, preserve_fds,
              keyring=keyring)
    return pid


def direct_pidns(config: Spec, systemd: bool = False) -> str | None:
    """How create_forked's caller forks the init for this spec: "" in its own PID namespace,
    "new" in a new one, else the path of the one to join; None when its creation needs create()'s
    processes: a user or time namespace (set up from outside the init), a mount namespace to join,
    work of the runtime's outside the init (_runtime_side_work), the systemd driver (its unit
    takes the pid systemd sees)."""
    if systemd:
        return None
    if _runtime_side_work(config):
        return None
    pidns = ""
    for ns in (config.get("linux") or {}).get("namespaces") or []:
        t = ns.get("type")
        if t not in NS_FLAGS or t in ("user", "time") or t == "mount" and ns.get("path"):
            return None
        if t == "pid":
            pidns = ns.get("path") or "new"
    return pidns


def create_forked(root: str, cid: str, bundle: str, pidns: str, console: _socket.socket | None = None,
                  pid_file: str | None = None) -> int:
    """create() with no process between the caller and the init, for a caller that stays small
    and lives on as the init's parent (the shim): it forks the init straight into its PID
    namespace (pidns, from direct_pidns()), and the init does the rest of the creation itself:
    reads the spec, makes the state directory and the cgroup, joins the cgroup and its other
    namespaces, then sets itself up as create()'s init does. The caller only reads its messages:
    the pages all that writes are the init's, and go with its exec. Returns the init's pid once
    it waits on the exec fifo. A failure raises the error create() would, after what the init
    made is undone (the init killed, its cgroup and state directory removed)."""
    psock, csock = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    own = -1
    pid = 0
    try:
        if pidns:
            own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            if pidns == "new":
                sc.unshare(sc.CLONE_NEWPID)  # the next child's; ours again below
            else:
                _join([("pid", pidns)])
        pid = sc.fork_bare()
        if pid == 0:
            try:
                psock.close()
                _self_create(Channel(csock), root, cid, bundle, console)
            finally:
                os._exit(1)
    except BaseException:
        psock.close()
        raise
    finally:  # (the child never comes here)
        if own >= 0:
            try:
                sc.setns(own, sc.CLONE_NEWPID)  # this process's children in its own PID namespace again
            finally:
                os.close(own)
        csock.close()
    # the caller stays small: its share is a few os calls and two small messages parsed (no
    # Channel object, no io file object: each object it touches is a page it copies for good)
    buf = b""
    made = None
    try:
        while True:
            while b"\n" not in buf:
                try:
                    chunk = psock.recv(4096)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    break
                buf += chunk
            line, nl, buf = buf.partition(b"\n")
            msg = json.loads(line) if nl else None
            if msg is None:
                if made is None:
                    raise SystemError_("container init exited unexpectedly during setup")
                from berth.runtime import cgroups
                raise _init_died(cgroups.Manager(made["cg"], mode=made["mode"]), made["limit"])
            t = msg.get("t")
            if t == "made":
                made = msg
            elif t == "error":
                raise _forked_error(msg)
            elif t == "created":
                break
        if pid_file:
            tmp = pid_file + ".tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, b"%d" % pid)
            finally:
                os.close(fd)
            os.rename(tmp, pid_file)
        return pid
    except BaseException:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap(pid)
        if made is not None:
            from berth.runtime import cgroups
            try:
                cgroups.Manager(made["cg"], mode=made["mode"]).destroy()
            except BerthError:
                pass
            _remove_state_dir(os.path.join(root, cid))
        raise
    finally:
        psock.close()


_KINDS = ("ConfigInvalid", "NotFound", "AlreadyExists", "InvalidArgument", "FailedPrecondition", "Unavailable",
          "SystemError_")


def _forked_error(msg: dict[str, Any]) -> BerthError:
    """The error an init of create_forked reported: of the kind create() would have raised (its
    own, before the init's set-up; the set-up's as _remote_error says it)."""
    if not msg.get("exact"):
        return _remote_error(msg)
    from berth import errors
    return getattr(errors, msg.get("kind") or "", SystemError_)(msg.get("msg") or "container setup failed")


def _exact_kind(e: BaseException) -> str:
    for cls in type(e).__mro__:
        if cls.__name__ in _KINDS and cls.__module__ == "berth.errors":
            return cls.__name__
    return "SystemError_"


class _SelfJoin:
    """The init's own move into its cgroup (create_forked), in a thread: the write waits for an RCU
    grace period (see _CgroupWarmth) while the init builds its rootfs; wait() before anything forks
    or needs the cgroup."""

    def __init__(self, cg: Any) -> None:
        self.procs = cg.open_procs()  # here: the thread writes once the rootfs is pivoted
        self.cg = cg
        self.error: BaseException | None = None
        self.done = _thread.allocate_lock()
        self.done.acquire()
        try:
            _thread.start_new_thread(self._run, ())
        except RuntimeError:
            self._run()

    def _run(self) -> None:
        try:
            self.cg.join_self(self.procs)
        except BaseException as e:  # noqa: B902 - raised again by wait()
            self.error = e
        finally:
            self.done.release()

    def wait(self) -> None:
        self.done.acquire()
        self.done.release()
        if self.error is not None:
            raise self.error


def _self_create(ch: Channel, root: str, cid: str, bundle: str, console: _socket.socket | None) -> NoReturn:
    """The init of create_forked: create()'s work, then its init's. Never returns."""
    from berth.runtime import cgroups
    try:
        bundle = os.path.abspath(bundle)
        config = _checked_spec(root, cid, bundle, False, console is not None)  # the daemon checked its profile
        process = config["process"]
        linux = config.get("linux") or {}
        cg_path = cgroups.resolve_path(linux.get("cgroupsPath"), cid, False)
        cg_mode = cgroups.detect_mode()
        d = statemod.new_dir(root, cid)
        limit = ((linux.get("resources") or {}).get("memory") or {}).get("limit")
        # from here on the caller undoes what is made if we fail (or die)
        ch.send(t="made", cg=cg_path, mode=cg_mode, limit=limit if isinstance(limit, int) else None)
        pid = int(os.readlink("/proc/self"))  # the host's procfs: our pid there, not our namespace's 1
        st = _new_state(root, cid, bundle, config, cg_path, cg_mode, False, pid)
        st.data["start_time"] = statemod.proc_start_time(pid)
        cg = cgroups.Manager(cg_path, mode=cg_mode)
        st.data["cgroup_hier"] = cg.hierarchies()  # (State.cgroup: no mountinfo read at the delete)
        _set_up_cgroup(cg, linux)
        fifo_fd = _write_config_and_fifo(st, config, linux)
        dir_fd = os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)  # the state's way in after the pivot
        filt = _preload(process, config)
        new, join = _namespaces(config)
        _join([j for j in join if j[0] != "pid"])  # the caller forked us into our PID namespace
        rest = new & ~(sc.CLONE_NEWUSER | sc.CLONE_NEWCGROUP | sc.CLONE_NEWPID)  # cgroup: once in our cgroup
        if rest:
            sc.unshare(rest)  # the mount namespace too: single-threaded until the join's thread below
        joining = _SelfJoin(cg)
    except BaseException as e:  # noqa: B902 - everything to the caller, in create()'s words
        if os.environ.get("BERTH_DEBUG"):
            import traceback
            traceback.print_exc()
        ch.send(t="error", msg=getattr(e, "message", None) or str(e) or type(e).__name__, kind=_exact_kind(e),
                exact=True)
        os._exit(1)

    def joined() -> dict[str, Any]:
        joining.wait()
        return st.oci(status="creating")

    def save_state() -> None:
        tmp = ".state.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
        try:
            os.fchmod(fd, 0o644)  # whatever umask the process has by now
            os.write(fd, json.dumps(st.data).encode())
        finally:
            os.close(fd)
        os.rename(tmp, "state.json", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.close(dir_fd)

    _init(ch, config, bundle, fifo_fd, console, cg_path, cg_mode, False, False, filt, 0, joined=joined,
          save_state=save_state, keyring=_keyring_name(cid))


def _host_root_ids(linux: Spec) -> tuple[int, int]:
    """The host uid/gid of the container's root (its user namespace mapping of 0)."""
    def host(maps: list[dict[str, int]] | None) -> int:
        for m in maps or []:
            if m["containerID"] <= 0 < m["containerID"] + m["size"]:
                return m["hostID"] - m["containerID"]
        return 0
    return host(linux.get("uidMappings")), host(linux.get("gidMappings"))


def _write_id_maps(pid: int, linux: Spec) -> None:
    def fmt(maps: list[dict[str, int]]) -> str:
        return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps)
    try:
        with open(f"/proc/{pid}/uid_map", "w") as f:
            f.write(fmt(linux.get("uidMappings") or []))
        with open(f"/proc/{pid}/gid_map", "w") as f:
            f.write(fmt(linux.get("gidMappings") or []))
    except OSError as e:
        raise SystemError_(f"cannot write the user namespace id mappings: {e.strerror}") from None


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _wait_gone(pid: int, start_time: int | None, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if statemod.proc_start_time(pid) != start_time:
            return True
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.01)
    return False


class _CgroupWarmth:
    """Keeps the kernel's cgroup migration warm until the init has joined its cgroup.

    The first write to a cgroup.procs after a quiet spell waits for an RCU grace period (3-15 ms
    on cgroup v1 here: cgroup_threadgroup_rwsem's rcu_sync switching its readers to the slow
    path); the writes that come within about a grace period of the previous one do not. A thread
    moves this process into the cgroup it already is in (a no-op migration that takes the same
    lock) once the container's cgroup is made and set, so that the grace period runs while
    config.json is written and the init forked and set up, and again every millisecond until
    stop(): the init's own join, whenever it comes, finds the migration warm. A thread, not a
    child: a forked child would make every page this interpreter then writes a copy-on-write
    fault. The first migration holds cgroup_mutex through the grace period (every cgroup mkdir
    and most cgroup writes wait for it): nothing of the container's cgroup is made or changed
    after start(). Only an optimisation: any failure is ignored."""

    LIMIT = 2.0  # seconds: a create that takes longer pays the grace period again, no more

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.stopped = False
        self.done = _thread.allocate_lock()
        self.done.acquire()

    @classmethod
    def start(cls) -> _CgroupWarmth | None:
        from berth.runtime import cgroups
        try:
            path = cgroups.own_procs_file(cgroups.detect_mode())
            if path is None:
                return None
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except (OSError, BerthError):
            return None
        w = cls(fd)
        try:
            _thread.start_new_thread(w._run, ())
        except RuntimeError:
            os.close(fd)
            return None
        return w

    def _run(self) -> None:
        deadline = time.monotonic() + self.LIMIT
        try:
            while not self.stopped and time.monotonic() < deadline:
                os.write(self.fd, b"0")  # 0: the writer's own process
                time.sleep(0.001)
        except OSError:
            pass
        finally:
            os.close(self.fd)
            self.done.release()

    def joined(self) -> None:
        """The process has joined: the thread ends after its current write (not waited for)."""
        self.stopped = True

    def stop(self, wait: float = 10) -> None:
        self.stopped = True
        self.done.acquire(True, wait)  # a write under way ends within a grace period


def _checked_spec(root: str, cid: str, bundle: str, check_seccomp: bool, has_console: bool) -> Spec:
    """A creation's first checks (create, create_forked): the id free, the bundle's spec valid,
    a console for a terminal. Returns the spec."""
    statemod.check_id(cid)
    if os.path.exists(os.path.join(root, cid)):
        raise statemod.AlreadyExists("container with given ID already exists")  # runc's words
    config = specmod.load(bundle, check_seccomp=check_seccomp)
    process = config["process"]
    _warn_ignored_caps(process)
    if process.get("terminal") and not has_console:
        raise InvalidArgument("cannot allocate a tty without --console-socket when berth-runc detaches")
    return config


def _new_state(root: str, cid: str, bundle: str, config: Spec, cg_path: str, cg_mode: str, systemd: bool,
               pid: int = 0) -> statemod.State:
    return statemod.State(root, cid, {
        "ociVersion": config.get("ociVersion") or specmod.OCI_VERSION, "pid": pid, "bundle": bundle,
        "rootfs": config["root"]["path"], "created": _now(), "annotations": config.get("annotations") or {},
        "cgroup_path": cg_path, "cgroup_mode": cg_mode, "systemd": systemd,
        # start and delete read config.json back only for their hooks: a start is then a fifo
        # read, a delete no JSON parse of the whole spec
        "hook_kinds": sorted(k for k, v in (config.get("hooks") or {}).items() if v),
        "own_pidns": _own_pid_namespace(config),
    })


def _set_up_cgroup(cg: Any, linux: Spec) -> None:
    """The container's cgroup made and its resources set, a failure in runc's words."""
    cg.create()
    resources = _with_default_devices(linux)
    if resources:
        try:
            cg.set(resources)
        except SystemError_ as e:  # runc's words: its cpuset at the cgroup's creation, the rest in the init's hook
            raise SystemError_(("unable to apply cgroup configuration: " if "/cpuset." in e.message else
                                "error during container init: error setting cgroup config for procHooks process: ")
                               + e.message) from None


def _write_config_and_fifo(st: statemod.State, config: Spec, linux: Spec) -> int:
    """config.json and the exec fifo in the state directory; returns an O_PATH fd of the fifo."""
    with open(os.path.join(st.dir, "config.json"), "w") as f:
        f.write(json.dumps(config))  # dumps: the C encoder (json.dump iterates in Python)
    fifo = st.fifo
    old_umask = os.umask(0)
    try:
        os.mkfifo(fifo, 0o622)  # writable by the init whatever user it has become
    finally:
        os.umask(old_umask)
    root_uid, root_gid = _host_root_ids(linux)
    if (root_uid, root_gid) != (0, 0):
        os.chown(fifo, root_uid, root_gid)
    return os.open(fifo, os.O_PATH | os.O_CLOEXEC)


def create(root: str, cid: str, bundle: str, pid_file: str | None = None, console_socket: str | None = None,
           no_pivot: bool = False, preserve_fds: int = 0, systemd: bool = False, foreground: bool = False,
           console: _socket.socket | None = None, check_seccomp: bool = True,
           disposable: bool = False, listen_fds: int = 0, no_new_keyring: bool = False) -> statemod.State:
    """Create a container; returns its State once the init waits on the exec fifo.

    no_new_keyring: the container's processes keep the caller's session keyring (runc
    --no-new-keyring); else the init makes one of its own, which its execs join.
    listen_fds: the caller was socket-activated (systemd's LISTEN_FDS): its fds 3.. go to the
    init first, before the preserved ones, with LISTEN_FDS=N and LISTEN_PID=1, as runc does.

    disposable: the caller ends once this returns (the shim's helper). It then joins the
    container's namespaces and forks the init itself, one process fewer, when nothing it does
    after needs its own: no user namespace, no mount namespace to join (threads forbid it),
    no hook it runs in the runtime's namespaces."""
    from berth.runtime import cgroups
    bundle = os.path.abspath(bundle)
    config = _checked_spec(root, cid, bundle, check_seccomp, bool(console_socket) or console is not None)
    process = config["process"]
    if not process.get("terminal") and console_socket:
        raise InvalidArgument("--console-socket needs process.terminal to be true")
    preserve_fds += max(listen_fds, 0)
    linux = config.get("linux") or {}
    cg_path = cgroups.resolve_path(linux.get("cgroupsPath"), cid, systemd)
    cg_mode = cgroups.detect_mode()
    if console_socket:
        console = _unix_connect(console_socket)
    d = statemod.new_dir(root, cid)
    cg = None
    init_pid = 0
    a_pid = 0
    st = _new_state(root, cid, bundle, config, cg_path, cg_mode, systemd)
    if no_new_keyring:
        st.data["no_new_keyring"] = True
    keyring = None if no_new_keyring else _keyring_name(cid)
    warm = None
    try:
        cg = cgroups.Manager(cg_path, mode=cg_mode)
        st.data["cgroup_hier"] = cg.hierarchies()  # (State.cgroup: no mountinfo read at the delete)
        _set_up_cgroup(cg, linux)
        # from here on no cgroup is made or changed before the join: the warm-up's migration
        # holds the kernel's cgroup_mutex through its grace period
        warm = _CgroupWarmth.start()
        fifo_fd = _write_config_and_fifo(st, config, linux)
        if listen_fds > 0:  # the init's alone (an exec's process starts from the saved spec)
            process["env"] = list(process.get("env") or []) + [f"LISTEN_FDS={listen_fds}", "LISTEN_PID=1"]
        psock, csock = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        # import what the init needs now: once in a user namespace it may no longer be allowed
        # to read the installed package (a directory only the caller's uid can enter)
        from berth.runtime import process, rootfs  # noqa: F401
        ch = Channel(psock)
        pending = None
        direct = disposable and _direct_ok(config)
        if direct:
            init_pid = _fork_init(Channel(csock), psock, config, bundle, fifo_fd, console, cg_path, cg_mode, no_pivot,
                                  preserve_fds, keyring)
        else:
            a_pid = os.fork()
            if a_pid == 0:
                psock.close()
                _child_a_create(Channel(csock), config, bundle, fifo_fd, console, cg_path, cg_mode, no_pivot,
                                preserve_fds, keyring)
        csock.close()
        os.close(fifo_fd)
        if console is not None and console_socket:
            console.close()
        while True:
            msg = {"t": "pid", "pid": init_pid} if direct and not st.data["pid"] else ch.recv()
            if msg is None:
                raise pending or _init_died(cg, ((linux.get("resources") or {}).get("memory") or {}).get("limit"))
            t = msg.get("t")
            if t == "error":
                raise _remote_error(msg)
            if t == "idmap":
                _write_id_maps(a_pid, linux)
                ch.send(t="go")
            elif t == "pid":
                init_pid = msg["pid"]
                st.data["pid"] = init_pid
                st.data["start_time"] = statemod.proc_start_time(init_pid)
                try:
                    cg.add(init_pid)
                    if warm is not None:
                        warm.joined()
                    if linux.get("netDevices"):
                        _move_net_devices(linux["netDevices"], init_pid)
                except BerthError as e:
                    if statemod.proc_start_time(init_pid) == st.data["start_time"]:
                        raise  # the init is alive, waiting for the state: the join (or move) failed
                    pending = e  # the init died: prefer the error it reports, if any
                    continue
                ch.send(t="state", state=st.oci(status="creating"))
                if a_pid:
                    _reap(a_pid)
                    a_pid = 0
            elif t == "hooks":
                hs = config.get("hooks")
                try:
                    # runtime-tools' hooks_stdin: prestart sees "created" (the legacy hook runs once
                    # the environment exists); createRuntime runs during step 2, "creating"
                    hookmod.run(hs, "prestart", st.oci(status="created"))
                    hookmod.run(hs, "createRuntime", st.oci(status="creating"))
                except BerthError:
                    ch.send(t="fail")
                    raise
                ch.send(t="ok")
            elif t == "seccomp":
                _to_seccomp_agent(linux["seccomp"], init_pid, msg["fd"], st.oci(status="creating"))
                ch.send(t="seccomp_done")
            elif t == "created":
                break
        ch.close()
        st.save()
        if pid_file:
            _write_pid_file(pid_file, init_pid)
        return st
    except BaseException:
        if a_pid:
            try:
                os.kill(a_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _reap(a_pid)
        if init_pid:
            try:
                os.kill(init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait_gone(init_pid, st.data.get("start_time"), 5)
        if cg is not None:
            try:
                cg.destroy()
            except BerthError:
                pass
        _remove_state_dir(d)
        _started(sys.exc_info()[1])
        raise
    finally:
        if warm is not None:
            warm.stop()


def _init_died(cg: Any, limit: Any) -> SystemError_:
    """The error of an init that died before it was set up. Killed by its memory cgroup's OOM
    killer (a limit below what it needs, the spec's linux.resources.memory.limit): runc's words,
    whose limit write fails at that point."""
    from berth.runtime import cgroups
    if cg is not None and isinstance(limit, int) and limit > 0:
        try:
            mem = cg._v2dir if cg.mode == "v2" else cg._ctrl.get("memory")
            path = os.path.join(mem, "memory.events" if cg.mode == "v2" else "memory.oom_control") if mem else ""
            st = cg.read_stats()
        except (BerthError, OSError, AttributeError):
            path, st = "", None
        if path and st is not None and cgroups.oom_kills(path) > 0:
            return SystemError_("error during container init: error setting cgroup config for procHooks process: "
                                f"unable to set memory limit to {limit} (current usage: {st.memory_usage or 0}, "
                                f"peak usage: {st.memory_max_usage or 0})")
    return SystemError_("container init exited unexpectedly during setup")


# what runc 1.1 always allows in the device cgroup, after the config's own rules (not /dev/console,
# 5:1: a terminal's console is a pts, 136:*)
_ALLOWED_DEVICES = [
    ("c", None, None, "m"), ("b", None, None, "m"), ("c", 1, 3, "rwm"), ("c", 1, 8, "rwm"), ("c", 1, 7, "rwm"),
    ("c", 5, 0, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 9, "rwm"), ("c", 136, None, "rwm"),
    ("c", 5, 2, "rwm"), ("c", 10, 200, "rwm"),
]


def _without_kernel_memory(resources: dict[str, Any]) -> dict[str, Any]:
    """runc 1.1's: kernel memory limits (gone from Linux 5.16 on; deprecated before) are ignored
    with a warning."""
    mem = resources.get("memory")
    if isinstance(mem, dict) and (mem.get("kernel") or mem.get("kernelTCP")):
        warn("Kernel memory settings are ignored and will be removed")
        resources = dict(resources, memory={k: v for k, v in mem.items() if k not in ("kernel", "kernelTCP")})
    return resources


def _with_default_devices(linux: Spec) -> dict[str, Any]:
    resources = _without_kernel_memory(dict(linux.get("resources") or {}))
    rules = list(resources.get("devices") or [])
    # like runc: the rules apply to a deny-all list (runc's emulator starts from it: a spec without
    # rules allows only the defaults, not every device), then the default devices are allowed;
    # linux.devices only creates nodes, access to them is what the rules allow
    if not rules or rules[0].get("allow") or (rules[0].get("type") or "a") != "a":
        rules.insert(0, {"allow": False, "access": "rwm"})
    rules += [{"allow": True, "type": t, "major": ma, "minor": mi, "access": a} for t, ma, mi, a in _ALLOWED_DEVICES]
    resources["devices"] = rules
    return resources


def _unix_connect(path: str) -> _socket.socket:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise InvalidArgument(f"cannot connect to console socket {path}: {e.strerror}") from None
    return sock


def _remove_state_dir(d: str) -> None:
    """The state dir holds only flat files we wrote; anything else is left for a human to see."""
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return
    for n in names:
        try:
            os.unlink(os.path.join(d, n))
        except OSError:
            pass
    try:
        os.rmdir(d)
    except OSError as e:
        warn(f"cannot remove {d}: {e.strerror}")


def _started(e: BaseException | None) -> BaseException | None:
    """e marked as a failure of the container's process once its start was under way (runc's
    `unable to start container process: `, which berth-runc's log puts before it); a
    configuration refused before anything was made is not."""
    if isinstance(e, BerthError) and not isinstance(e, ConfigInvalid):
        e.started = True
    return e


def _remote_error(msg: Any) -> BerthError:
    kind = msg.get("kind")
    cls = {"NotFound": NotFound, "InvalidArgument": InvalidArgument, "FileNotFoundError": NotFound}.get(kind, SystemError_)
    return cls(msg.get("msg") or "container setup failed")


def start(root: str, cid: str) -> statemod.State:
    st = statemod.load(root, cid)
    status = st.status()
    if status != CREATED:  # runc's words
        raise FailedPrecondition({
            STOPPED: "cannot start a container that has stopped",
            RUNNING: "cannot start an already running container",
        }.get(status, f"cannot start a container in the {status} state"))
    _release(st.fifo, cid, st.alive)
    if "poststart" in st.data.get("hook_kinds", ["poststart"]):  # without the key: an older create's
        try:
            hookmod.run(st.config().get("hooks"), "poststart", st.oci(status=RUNNING))
        except BerthError as e:
            warn(str(e))
    return st


def _release(fifo: str, cid: str, alive: Callable[[], bool]) -> None:
    """The exec fifo's handshake: the init, blocked writing to it, goes on to exec its process."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        p = select.poll()
        p.register(fd, select.POLLIN | select.POLLHUP)
        while True:
            if p.poll(100):
                data = os.read(fd, 1)
                if not data:
                    raise SystemError_(f"container {cid}: init failed before start")
                break
            if not alive():
                raise SystemError_(f"container {cid}: init exited before start")
    finally:
        os.close(fd)
    try:
        os.unlink(fifo)
    except FileNotFoundError:
        pass


def release(root: str, cid: str, pid: int) -> None:
    """start, for the process that has just created the container: its shim, when berthd says
    the runtime is this library and the spec has no poststart hooks. The fifo's handshake alone,
    with os calls only (no state file read, no io objects: in a shim forked from the zygote each
    object touched costs a private page). pid: the init's, whose liveness is checked meanwhile."""
    def alive() -> bool:
        try:
            fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            data = os.read(fd, 512)
        finally:
            os.close(fd)
        return data[data.rfind(b")") + 2:data.rfind(b")") + 3] not in (b"Z", b"X", b"")
    fifo = root + "/" + statemod.check_id(cid) + "/exec.fifo"
    try:
        _release(fifo, cid, alive)
    except FileNotFoundError:
        raise FailedPrecondition(f"cannot start container {cid}: it is not created") from None


_SIGNALS: dict[str, int] = {}  # name without SIG -> number, from the signal module (filled at first use)


def parse_signal(s: str | int) -> int:
    """A signal's number from a number (1-64) or a name (SIG optional, any case; docker's
    RTMIN+n and RTMAX-n too)."""
    if not _SIGNALS:
        _SIGNALS.update({name[3:]: int(getattr(signal, name)) for name in dir(signal) if name.startswith("SIG")
                         and not name.startswith("SIG_") and isinstance(getattr(signal, name), int)})
    SIGNALS = _SIGNALS
    s = str(s).upper()
    if s.isascii() and s.isdigit():
        n = int(s)
        if 0 < n < 65:
            return n
    else:
        name = s[3:] if s.startswith("SIG") else s
        if name in SIGNALS:
            return int(SIGNALS[name])
        # docker's names of the real-time signals: RTMIN+1..RTMIN+15, RTMAX-14..RTMAX-1
        base, sign, off = name.partition("+") if "+" in name else name.partition("-")
        if (base, sign) in (("RTMIN", "+"), ("RTMAX", "-")) and off.isascii() and off.isdigit() and off[0] != "0" \
                and int(off) <= (15 if sign == "+" else 14):
            return int(SIGNALS[base]) + (int(off) if sign == "+" else -int(off))
    raise InvalidArgument(f"unknown signal {goquote(s)}")


def kill(root: str, cid: str, sig: str | int = "TERM", all_: bool = False) -> None:
    st = statemod.load(root, cid)
    signum = parse_signal(sig)  # before the state, as runc
    if st.status() == STOPPED:
        raise FailedPrecondition("container not running")  # runc's words (containerd reads them: ErrNotFound)
    if all_:
        st.cgroup().kill_all(signum)
    else:
        try:
            os.kill(st.pid, signum)
        except ProcessLookupError:
            raise FailedPrecondition("container not running") from None


def _move_net_devices(devices: Spec, init_pid: int) -> None:
    """linux.netDevices (validated) into the init's network namespace, before its process starts."""
    from berth.linux import netdev
    try:
        netdev.move_into({host: (d or {}).get("name") or host for host, d in devices.items()},
                         f"/proc/{init_pid}/ns/net")
    except OSError as e:
        raise SystemError_(f"error during container init: {e.strerror}") from None


def _runtime_side_work(config: Spec) -> bool:
    """Whether the creation does work of the runtime's outside the init that needs create()'s
    intermediate process and caller: hooks in the runtime's namespaces, idmapped mounts (their
    sources made before the user namespace), network devices to move in, a seccomp agent to send
    the init's listener fd to."""
    hooks = config.get("hooks") or {}
    if hooks.get("prestart") or hooks.get("createRuntime") or (config.get("linux") or {}).get("netDevices"):
        return True
    if _seccomp_notifies(config):
        return True
    return any("idmap" in (m.get("options") or []) or "ridmap" in (m.get("options") or [])
               for m in config.get("mounts") or [] if isinstance(m, dict))


def _seccomp_notifies(config: Spec) -> bool:
    """Whether the spec's seccomp profile has SCMP_ACT_NOTIFY rules (a seccomp agent to serve)."""
    scmp = (config.get("linux") or {}).get("seccomp")
    calls = scmp.get("syscalls") if isinstance(scmp, dict) else None
    return isinstance(calls, list) and any(isinstance(c, dict) and c.get("action") == "SCMP_ACT_NOTIFY"
                                           for c in calls)


def _handing_on(ch: Channel, filt: Filter | Program | None) -> Filter | Program | None:
    """In the init or an exec's process: a filter with notify rules, once loaded, reports its
    listener fd to the runtime, which takes it (pidfd_getfd) and sends it to the seccomp agent,
    and waits for the runtime's word before it goes on (runc's procSeccomp). The report is a
    write(2) and the wait a read(2), as runc's: a notify rule may name any call but write."""
    if filt is None or not filt.notify:
        return filt

    def hand_on(fd: int) -> None:
        sock = ch.sock.fileno()
        os.write(sock, b'{"t":"seccomp","fd":%d}\n' % fd)
        while b"\n" not in ch.buf:
            chunk = os.read(sock, 4096)
            if not chunk:
                os._exit(1)  # the runtime failed (and says why): it kills us
            ch.buf += chunk
        line, ch.buf = ch.buf.split(b"\n", 1)
        os.close(fd)
        if json.loads(line).get("t") != "seccomp_done":
            os._exit(1)

    filt.on_notify = hand_on  # type: ignore[union-attr]
    return filt


def _to_seccomp_agent(scmp: Spec, pid: int, fd: int, state: Spec) -> None:
    """The listener fd a process (pid) of the container reported, taken from it and sent with
    the container process's state (the runtime spec's ContainerProcessState) to the seccomp
    agent at listenerPath, in one message (SCM_RIGHTS), as runc does."""
    path = scmp.get("listenerPath") or ""
    try:
        pidfd = sc.pidfd_open(pid)
        try:
            mine = sc.pidfd_getfd(pidfd, fd)
        finally:
            os.close(pidfd)
    except OSError as e:
        raise SystemError_(f"cannot take the seccomp notification fd of process {pid}: {errno_text(e)}") from None
    try:
        msg: dict[str, Any] = {"ociVersion": state["ociVersion"], "fds": ["seccompFd"], "pid": pid}
        if scmp.get("listenerMetadata"):
            msg["metadata"] = scmp["listenerMetadata"]
        msg["state"] = {k: state[k] for k in ("ociVersion", "id", "status", "pid", "bundle", "annotations")
                        if k in state}
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        try:
            try:
                s.connect(path)
            except OSError as e:  # runc's words (Go's net.Dial's)
                raise SystemError_("failed to connect with seccomp agent specified in the seccomp profile: "
                                   f"dial unix {path}: connect: {errno_text(e)}") from None
            try:
                s.sendmsg([json.dumps(msg).encode()],
                          [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, mine.to_bytes(4, sys.byteorder, signed=True))])
            except OSError as e:
                raise SystemError_(f"cannot send seccomp fd to {path}: {errno_text(e)}") from None
        finally:
            s.close()
    finally:
        os.close(mine)


def _keyring_name(cid: str) -> str:
    """The name of a container's session keyring (runc's)."""
    return "_ses." + cid


def _own_pid_namespace(config: Spec) -> bool:
    """Whether the container's processes have a new PID namespace (its init's end kills them)."""
    for ns in ((config.get("linux") or {}).get("namespaces") or []) if isinstance(config, dict) else ():
        if isinstance(ns, dict) and ns.get("type") == "pid":
            return not ns.get("path")
    return False


def delete(root: str, cid: str, force: bool = False) -> None:
    st = statemod.load(root, cid)
    status = st.status()
    if status in (RUNNING, PAUSED) and not force:
        raise FailedPrecondition(f"cannot delete container {cid} that is not stopped: {status}")
    cg = st.cgroup()
    if status != STOPPED:
        try:
            cg.kill_all(signal.SIGKILL)
        except BerthError:
            pass
        try:
            os.kill(st.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if status == PAUSED:
            try:
                cg.thaw()
            except BerthError:
                pass
        if not _wait_gone(st.pid, st.data.get("start_time")):
            raise SystemError_(f"container {cid}: init did not exit after SIGKILL")
    config = None
    own_pidns = st.data.get("own_pidns")
    if own_pidns is None or "poststop" in st.data.get("hook_kinds", ["poststop"]):  # no key: an older create's
        try:
            config = st.config()
        except (OSError, ValueError):
            config = {}
        own_pidns = _own_pid_namespace(config)
    if status == STOPPED and not own_pidns:
        # without a PID namespace of its own, the init's end did not end the others: they go
        # now, as runc's destroy kills them (else they outlive the container, its cgroup too)
        try:
            cg.kill_all(signal.SIGKILL)
        except BerthError:
            pass
    try:
        cg.destroy()
    except BerthError as e:
        warn(str(e))
    try:
        hookmod.run((config or {}).get("hooks"), "poststop", st.oci(status=STOPPED))
    except BerthError as e:
        warn(str(e))
    _remove_state_dir(st.dir)


def pause(root: str, cid: str) -> None:
    st = statemod.load(root, cid)
    status = st.status()
    if status not in (RUNNING, CREATED):  # runc pauses a created container too
        raise FailedPrecondition("container not running")
    st.cgroup().freeze()


def resume(root: str, cid: str) -> None:
    st = statemod.load(root, cid)
    status = st.status()
    if status != PAUSED:
        raise FailedPrecondition("container not paused")
    st.cgroup().thaw()


def update(root: str, cid: str, resources: Spec) -> None:
    """runc update: a live container's resources changed in its cgroup (what runc 1.1 takes of an
    OCI linux.resources: memory, cpu, the block I/O weight, pids, unified; not its devices), and
    kept in its config for what reads it after."""
    st = statemod.load(root, cid)
    if st.status() == STOPPED:
        raise FailedPrecondition("container not running")  # runc's words
    if not isinstance(resources, dict):
        raise InvalidArgument("the resources must be a JSON object")
    r: dict[str, Any] = {k: resources[k] for k in ("memory", "cpu", "pids", "unified") if resources.get(k)}
    weight = (resources.get("blockIO") or {}).get("weight") if isinstance(resources.get("blockIO"), dict) else None
    if weight:
        r["blockIO"] = {"weight": weight}
    mem = r.get("memory")
    if isinstance(mem, dict) and mem.get("limit") == -1 and mem.get("swap") is None:
        r["memory"] = dict(mem, swap=-1)  # runc: "unable to set swap limit without memory limit" otherwise
    r = _without_kernel_memory(r)
    if not r:
        return
    st.cgroup().set(r)
    try:
        config = st.config()
    except (OSError, ValueError):
        return
    linux = config.setdefault("linux", {})
    kept = linux.setdefault("resources", {})
    for k, v in r.items():
        kept[k] = dict(kept.get(k) or {}, **v) if isinstance(v, dict) and isinstance(kept.get(k), dict) else v
    tmp = os.path.join(st.dir, ".config.json")
    with open(tmp, "w") as f:
        f.write(json.dumps(config))
    os.rename(tmp, os.path.join(st.dir, "config.json"))


# --- exec ---

def _exec_b(ch: Channel, process: Spec, config: Spec, console: _socket.socket | None, in_userns: bool,
            filt: Filter | Program | None, preserve_fds: int, keyring: str | None) -> NoReturn:
    from berth.runtime import process as procmod
    try:
        if keyring:  # the container's own, as runc's setns init joins it
            procmod.join_keyring(keyring)
        path, slave, _name = _setup_process(process, console, config.get("linux") or {})
        if slave is not None:
            procmod.make_ctty(slave)
        procmod.set_scheduling(process)
        aff = process.get("execCPUAffinity") or {}
        if aff.get("final") or aff.get("initial"):  # in the cgroup now: final, else the cgroup's CPUs
            procmod.set_cpu_affinity(aff.get("final") or f"0-{(os.cpu_count() or 1) - 1}")
        filt = _handing_on(ch, filt)  # (the runtime listens until our execve)
        procmod.apply_user_and_caps(process, filt, in_userns)
        procmod.chdir_checked(process.get("cwd") or "/")
        try:
            sc.close_range(3 + preserve_fds, 0xFFFFFFFF, CLOSE_RANGE_CLOEXEC)
        except OSError:
            pass
        procmod.exec_process(process, path, filt)
    except procmod.ExecFailed as e:
        ch.close()  # the exec has started, as runc's: its failure is the process's own output and status
        e.report()
    except BaseException as e:
        _child_fail(ch, e)


def _exec_a(ch: Channel, st: statemod.State, config: Spec, process: Spec, console: _socket.socket | None,
            preserve_fds: int) -> NoReturn:
    try:
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        filt = _preload(process, config)
        from berth.runtime import process as procmod
        if any(ns.get("type") == "user" for ns in (config.get("linux") or {}).get("namespaces") or []):
            _early_oom_score_adj(process)
        procmod.set_cpu_affinity((process.get("execCPUAffinity") or {}).get("initial"))  # until the cgroup's
        ch.send(t="ready")
        msg = ch.recv()
        if not msg or msg.get("t") != "go":
            os._exit(1)
        pid = st.pid
        types = [ns["type"] for ns in (config.get("linux") or {}).get("namespaces") or []]
        join = []
        for t in JOIN_ORDER:
            if t in types:
                name = {"network": "net", "mount": "mnt"}.get(t, t)
                p = f"/proc/{pid}/ns/{name}"
                if t == "time":
                    p = f"/proc/{pid}/ns/time_for_children"
                if os.stat(p).st_ino != os.stat(f"/proc/self/ns/{name if t != 'time' else 'time_for_children'}").st_ino:
                    join.append((t, p))
        _join(join)
        in_userns = "user" in types
        child = os.fork()
        if child == 0:
            _exec_b(ch, process, config, console, in_userns, filt, preserve_fds,
                    None if st.data.get("no_new_keyring") else _keyring_name(st.id))
        ch.send(t="pid", pid=child)
        os._exit(0)
    except BaseException as e:
        _child_fail(ch, e)


def exec_(root: str, cid: str, process: Spec, detach: bool = False, pid_file: str | None = None,
          console_socket: str | None = None, preserve_fds: int = 0, console: _socket.socket | None = None,
          ignore_paused: bool = False, sub_cgroups: dict[str, str] | None = None) -> int:
    """Run a process in a running container; returns its exit code (0 when detached).
    ``console``: a connected socket that receives the pty master (the library's form of
    --console-socket). ignore_paused: into a paused container too (the process joins its
    frozen cgroup, as runc's --ignore-paused). sub_cgroups: the process joins a sub-cgroup
    that exists already (runc exec --cgroup; see cgroups.Manager.sub)."""
    st = statemod.load(root, cid)
    status = st.status()
    if status == STOPPED:  # runc's words
        raise FailedPrecondition("cannot exec in a stopped container")
    if status == PAUSED and not ignore_paused:
        raise FailedPrecondition("cannot exec in a paused container (use --ignore-paused to override)")
    specmod.validate_process(process)
    from berth.runtime.process import env_error
    bad_env = env_error(process)
    if bad_env:  # runc's words, before any process (Python's os.execve would refuse it after the fork)
        raise InvalidArgument(bad_env)
    _warn_ignored_caps(process)
    config = st.config()
    proxy = None
    if process.get("terminal") and console is not None:
        pass
    elif process.get("terminal"):
        if console_socket:
            console = _unix_connect(console_socket)
        elif detach:
            raise InvalidArgument("cannot allocate a tty without --console-socket when detached")
        else:
            proxy, console = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    elif console_socket:
        raise InvalidArgument("--console-socket needs a terminal (-t)")
    if not detach:
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    cg = st.cgroup()
    if sub_cgroups:
        cg = cg.sub(sub_cgroups)
    # the join below (after the process's preload) finds the migration warm (_CgroupWarmth)
    warm = _CgroupWarmth.start()
    psock, csock = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        a_pid = os.fork()
    except BaseException:
        if warm is not None:
            warm.stop()
        raise
    if a_pid == 0:
        psock.close()
        _exec_a(Channel(csock), st, config, process, console, preserve_fds)
    csock.close()
    if console is not None:
        console.close()
    ch = Channel(psock)
    b_pid = 0
    notified = None  # the listener fd the process reported (maybe before its pid came)
    try:
        while True:
            msg = ch.recv()
            if msg is None:
                break
            t = msg.get("t")
            if t == "error":
                raise _started(_remote_error(msg))
            if t == "ready":
                cg.add(a_pid)  # a failure: the warm-up stops in the finally below
                if warm is not None:
                    warm.joined()
                ch.send(t="go")
            elif t == "pid":
                b_pid = msg["pid"]
                _reap(a_pid)
                a_pid = 0
                if pid_file:
                    _write_pid_file(pid_file, b_pid)
            elif t == "seccomp":
                notified = msg["fd"]
            if notified is not None and b_pid:
                _to_seccomp_agent((config.get("linux") or {}).get("seccomp") or {}, b_pid, notified,
                                  st.oci(status=RUNNING))
                notified = None
                ch.send(t="seccomp_done")
    except BaseException:
        for p in (a_pid, b_pid):
            if p:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if a_pid:
            _reap(a_pid)
        if b_pid and not detach:
            _reap(b_pid)
        raise
    finally:
        ch.close()
        if warm is not None:
            warm.stop()
    if not b_pid:
        raise _started(SystemError_("the process did not start"))
    if detach:
        return 0
    return wait_foreground(b_pid, proxy)


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def wait_foreground(pid: int, proxy: _socket.socket | None = None) -> int:
    """Wait for pid (our child, or re-parented to us as subreaper), forwarding signals;
    with a tty proxy, copy between our stdio and the pty master."""
    forward = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
    master = None
    if proxy is not None:
        import socket
        _, fds, _, _ = socket.recv_fds(socket.socket(fileno=proxy.detach()), 1024, 1)
        proxy.close()
        master = fds[0] if fds else None

    def handler(signum: int, _frame: FrameType | None) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    old = {s: signal.signal(s, handler) for s in forward}
    pump = None
    restore = None
    try:
        if master is not None:
            import threading
            if os.isatty(0):
                import termios
                import tty
                restore = termios.tcgetattr(0)
                tty.setraw(0)
                _copy_winsize(0, master)
                signal.signal(signal.SIGWINCH, lambda *_: _copy_winsize(0, master))
            pump = threading.Thread(target=_pump, args=(master,), daemon=True)
            pump.start()
        while True:
            try:
                wpid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return 255
            if wpid == pid:
                code = _exit_code(status)
                break
        if pump is not None:
            pump.join(0.5)
        return code
    finally:
        if restore is not None:
            import termios
            termios.tcsetattr(0, termios.TCSADRAIN, restore)
        for s, h in old.items():
            signal.signal(s, h)


def _copy_winsize(src: int, dst: int) -> None:
    import fcntl
    import termios
    try:
        ws = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, ws)
    except OSError:
        pass


def _pump(master: int) -> None:
    fds = [0, master]
    while True:
        try:
            import select
            r, _, _ = select.select(fds, [], [])
        except OSError:
            return
        if master in r:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            os.write(1, data)
        if 0 in r:
            try:
                data = os.read(0, 65536)
            except OSError:
                data = b""
            if not data:
                fds = [master]
                continue
            os.write(master, data)


def run(root: str, cid: str, bundle: str, detach: bool = False, pid_file: str | None = None,
        console_socket: str | None = None, no_pivot: bool = False, preserve_fds: int = 0, systemd: bool = False,
        keep: bool = False, no_subreaper: bool = False, listen_fds: int = 0, no_new_keyring: bool = False) -> int:
    """create + start, then (unless detached) wait for the init and delete the container.
    no_subreaper (runc run --no-subreaper): processes orphaned in the container are not
    re-parented to this one (the init is: it is a subreaper until the init's is its child)."""
    config_terminal = None
    proxy = console = None
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            config_terminal = (json.loads(f.read()).get("process") or {}).get("terminal")
    except (OSError, ValueError, AttributeError):
        pass  # create reports it
    if config_terminal and not console_socket and not detach:
        proxy, console = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    if not detach:
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    st = create(root, cid, bundle, pid_file=pid_file, console_socket=console_socket, no_pivot=no_pivot,
                preserve_fds=preserve_fds, systemd=systemd, console=console, listen_fds=listen_fds,
                no_new_keyring=no_new_keyring)
    if console is not None:
        console.close()
    if no_subreaper and not detach:  # the init, a grandchild, is this process's child by now
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 0)
    try:
        start(root, cid)
    except BaseException:
        if not detach:
            delete(root, cid, force=True)
        raise
    if detach:
        return 0
    code = wait_foreground(st.pid, proxy)
    if not keep:
        try:
            delete(root, cid, force=True)
        except BerthError as e:
            warn(str(e))
    return code
