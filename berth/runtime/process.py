"""Turn the current (forked) process into the container's process and execve it.

Shared by the container's init and by `exec`. The order follows runc: rlimits and
oom score while still privileged, then the bounding set, the user switch with
capabilities kept, the final capability sets, then seccomp as late as possible.
"""

from __future__ import annotations

import errno
import os
import resource
import stat

from berth.errors import InvalidArgument, NotFound, SystemError_
from berth.goquote import errno_text, quote
from berth.linux import caps as capnames
from berth.linux import syscalls as sc
from berth.runtime.spec import RLIMITS

TYPE_CHECKING = False  # no typing at run time: the container's init imports this
if TYPE_CHECKING:
    import socket
    from typing import Any, NoReturn

    from berth.linux.seccomp import Filter, Program


class ExecFailed(Exception):
    """The last step, the execve, failed (a missing ELF interpreter or #! program, a bad binary,
    an argument list too long): the process had started as far as the runtime goes. runc 1.1
    then writes `exec PATH: <why>` on the process's own stderr and exits 1 (report)."""

    def __init__(self, path: str, err: OSError) -> None:
        super().__init__(path, err)
        self.path, self.err = path, err

    def report(self) -> NoReturn:
        try:
            os.write(2, f"exec {self.path}: {errno_text(self.err)}\n".encode(errors="surrogateescape"))
        except OSError:
            pass
        os._exit(1)


def lookup_executable(process: dict[str, Any]) -> str:
    """Find args[0] like execvp does, with the container's PATH; fail at create time, not after start."""
    arg0 = process["args"][0]
    if "/" in arg0:
        path = arg0 if arg0.startswith("/") else os.path.join(process.get("cwd") or "/", arg0)
        if not os.path.exists(path):
            raise NotFound(f'exec: "{arg0}": stat {arg0}: no such file or directory')
        if os.path.isdir(path) or not os.access(path, os.X_OK):  # runc's exec.LookPath: not executable
            raise InvalidArgument(f'exec: "{arg0}": permission denied')
        return path
    path_var = ""  # none: nothing is searched, as runc's exec.LookPath (engines always give one)
    for e in process.get("env") or []:
        if e.startswith("PATH="):
            path_var = e[5:]
    for d in path_var.split(":") if path_var else ():
        cand = os.path.join(d or ".", arg0)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise NotFound(f'exec: "{arg0}": executable file not found in $PATH')


def set_rlimits(process: dict[str, Any]) -> None:
    for r in process.get("rlimits") or []:
        num = RLIMITS[r["type"]]
        try:
            resource.setrlimit(num, (r["soft"], r["hard"]))
        except (ValueError, OSError) as e:
            cur = resource.getrlimit(num)
            raise SystemError_(
                f"cannot set {r['type']} to soft={r['soft']} hard={r['hard']} (the current hard limit is {cur[1]}): "
                f"{getattr(e, 'strerror', None) or 'operation not permitted'}") from None


def set_oom_score_adj(process: dict[str, Any]) -> None:
    v = process.get("oomScoreAdj")
    if v is None:
        return
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(v))
    except OSError as e:
        raise SystemError_(f"cannot set oom_score_adj to {v}: {e.strerror}") from None


def apply_apparmor(process: dict[str, Any]) -> None:
    """process.apparmorProfile as runc applies it: the profile the next execve enters (written to
    the process's attr/exec; where the host has no AppArmor, the kernel refuses the write and the
    start fails, as under runc: never a process left unconfined that asked for a profile)."""
    name = process.get("apparmorProfile")
    if not name:
        return
    path = "/proc/self/attr/apparmor/exec"
    if not os.path.exists(path):
        path = "/proc/self/attr/exec"  # the older interface
    try:
        _write_attr(path, f"exec {name}")
    except OSError as e:
        raise SystemError_("error during container init: unable to apply apparmor profile: apparmor failed to "
                           f"apply profile: write {path}: {errno_text(e)}") from None


def set_scheduling(process: dict[str, Any]) -> None:
    """process.ioPriority and process.scheduler (validated) for this process and what it starts,
    before it gives up its capabilities (a realtime policy needs CAP_SYS_NICE)."""
    from berth.runtime.spec import IOPRIO_CLASSES, SCHED_FLAGS, SCHED_POLICIES
    iop = process.get("ioPriority")
    if iop:
        try:
            sc.ioprio_set(IOPRIO_CLASSES[iop["class"]], iop["priority"])
        except OSError as e:
            raise SystemError_(f"error during container init: unable to set io priority: {errno_text(e)}") from None
    sch = process.get("scheduler")
    if sch:
        flags = 0
        for f in sch.get("flags") or []:
            flags |= SCHED_FLAGS[f]
        policy = SCHED_POLICIES[sch["policy"]]
        try:
            sc.sched_setattr(policy, flags, sch.get("nice", 0), sch.get("priority", 0), sch.get("runtime", 0),
                             sch.get("deadline", 0), sch.get("period", 0))
        except OSError as e:
            raise SystemError_(f"error during container init: error setting scheduler: {errno_text(e)}") from None


def set_personality(linux: dict[str, Any]) -> None:
    """linux.personality's domain (validated: LINUX or LINUX32) for this process and its exec."""
    pers = linux.get("personality")
    if pers:
        from berth.runtime.spec import PERSONALITY_DOMAINS
        try:
            sc.personality(PERSONALITY_DOMAINS[pers["domain"]])
        except OSError as e:
            raise SystemError_(f"error during container init: unable to set personality: {errno_text(e)}") from None


def set_cpu_affinity(cpus: str | None) -> None:
    """Run this process on the CPUs of a list ("0-3,7"; validated), if one is given."""
    if cpus:
        from berth.runtime.spec import cpu_list
        try:  # (the kernel keeps to the cgroup's cpuset: CPUs out of it are left out)
            os.sched_setaffinity(0, cpu_list(cpus, "process.execCPUAffinity"))
        except OSError as e:
            raise SystemError_(f"error during container init: unable to set CPU affinity {cpus}: "
                               f"{errno_text(e)}") from None


def join_keyring(name: str, search_perm: int = 0) -> None:
    """The calling process's session keyring becomes the container's own (name, runc's
    "_ses.<id>": made here, or joined where it exists and may be searched), not the caller's,
    whose keys a container otherwise reads and changes. search_perm: the init's, the search
    permission added for the container's processes that join it later (the user's 0x80000, or
    with a user namespace the others' 0x8). A kernel without keyrings is left as it is."""
    try:
        serial = sc.join_session_keyring(name)
    except OSError as e:
        if e.errno == errno.ENOSYS:
            return
        raise SystemError_(f"error during container init: unable to join session keyring: {errno_text(e)}") from None
    if search_perm:
        try:
            sc.key_setperm(serial, sc.key_perm(serial) | search_perm)
        except (OSError, ValueError, IndexError) as e:
            raise SystemError_(f"error during container init: unable to mod keyring permissions: "
                               f"{errno_text(e)}") from None


def apply_selinux(process: dict[str, Any]) -> None:
    """process.selinuxLabel (validated: only on a host with SELinux) as the label of the next
    execve, as runc's setexeccon."""
    label = process.get("selinuxLabel")
    if not label:
        return
    try:
        _write_attr("/proc/thread-self/attr/exec", label)
    except OSError as e:
        raise SystemError_(f"error during container init: unable to set exec label: {errno_text(e)}") from None


def _write_attr(path: str, value: str) -> None:
    """What the next execve's LSM context is to be (/proc/.../attr/exec), in one write (the
    cgroup files' writer: one write(2), no O_CREAT or O_TRUNC)."""
    from berth.runtime.cgroups import _write
    _write(path, value)


def setup_console(console_sock: socket.socket, process: dict[str, Any]) -> tuple[int, str]:
    """Open a pty in the container's devpts, send the master over the console socket,
    and make the slave this process's controlling terminal and stdio."""
    import socket
    master, slave = os.openpty()
    size = process.get("consoleSize")
    if size:
        import fcntl
        import struct
        import termios
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size["height"], size["width"], 0, 0))
    name = os.ttyname(slave)
    socket.send_fds(console_sock, [name.encode()], [master])
    os.close(master)
    console_sock.close()
    return slave, name


def make_ctty(slave: int) -> None:
    try:
        os.setsid()
    except OSError:
        pass
    sc.ioctl_int(slave, sc.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def fix_stdio_permissions(uid: int) -> None:
    """runc's fixStdioPermissions: fds 0-2 (the pipes and the terminal made outside the
    container, root's) handed to the container's user, so that its process can open them again
    (/dev/stdout, /proc/self/fd/1: a program run as a user logging to /dev/stdout); their group
    kept, a null device left alone (the host's /dev/null as stdin), and what cannot be changed
    (EINVAL, EPERM, EROFS) left as it is."""
    null = None
    for fd in (0, 1, 2):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if st.st_uid == uid:
            continue
        if null is None:
            try:
                null = os.stat("/dev/null").st_rdev
            except OSError as e:
                raise SystemError_(f"stat /dev/null: {errno_text(e)}") from None
        if st.st_rdev == null:
            continue
        try:
            os.fchown(fd, uid, st.st_gid)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EPERM, errno.EROFS):
                raise SystemError_(f"cannot give the stdio to user {uid}: {errno_text(e)}") from None


def apply_user_and_caps(process: dict[str, Any], seccomp_filter: Filter | Program | None, in_userns: bool) -> None:
    """Give the stdio to the user, drop the bounding set, switch user keeping capabilities, set
    the final sets."""
    cs = process.get("capabilities")
    user = process.get("user") or {}
    uid = user.get("uid", 0)
    gid = user.get("gid", 0)
    fix_stdio_permissions(uid)
    nnp = bool(process.get("noNewPrivileges"))
    if cs is not None:
        keep = capnames.mask(cs.get("bounding"))
        for i in range(capnames.last_cap() + 1):
            if not keep & (1 << i):
                try:
                    sc.prctl(sc.PR_CAPBSET_DROP, i)
                except OSError as e:
                    raise SystemError_(f"cannot drop capability {capnames.NAMES[i] if i < len(capnames.NAMES) else i} from the bounding set: {e.strerror}") from None
    if nnp:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    if seccomp_filter is not None and not nnp:
        # without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we still have it
        seccomp_filter.load()
    sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    try:
        groups = user.get("additionalGids") or []
        try:
            os.setgroups(groups)
        except PermissionError:
            if groups or not in_userns:
                raise
        except ValueError:  # more than the kernel's NGROUPS_MAX: what setgroups(2) says, in runc's words
            raise SystemError_("unable to setup user: setgroups: invalid argument") from None
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as e:
        raise SystemError_(f"cannot switch to user {uid}:{gid}: {e.strerror}") from None
    sc.prctl(sc.PR_SET_KEEPCAPS, 0)
    if cs is not None:
        eff = capnames.mask(cs.get("effective"))
        perm = capnames.mask(cs.get("permitted"))
        inh = capnames.mask(cs.get("inheritable"))
        try:
            sc.capset(eff, perm, inh)
        except OSError as e:
            raise SystemError_(f"unable to apply caps: {errno_text(e)}") from None  # runc's words
        try:
            sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL, 0)
        except OSError:
            pass
        for name in cs.get("ambient") or []:
            i = capnames.NUMBERS.get(name, capnames.last_cap() + 1)
            if i <= capnames.last_cap():
                try:
                    sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, i)
                except OSError:
                    pass  # like runc: ambient needs the cap in permitted and inheritable
    elif uid != 0:
        sc.capset(0, 0, 0)


def chdir_checked(cwd: str) -> None:
    """chdir and verify that we really are inside the container's root (CVE-2024-21626)."""
    try:
        os.chdir(cwd)
    except OSError as e:
        q = '"' + cwd.replace("\\", "\\\\").replace('"', '\\"') + '"'
        raise SystemError_(f"chdir to cwd ({q}) set in config.json failed: {errno_text(e)}") from None  # runc's words
    try:
        here = os.getcwd()
    except OSError:
        here = ""
    if not here.startswith("/"):
        raise SystemError_(f"current working directory {cwd} is outside of the container's root")


def close_fds(preserve: int | None) -> None:
    """Close everything but stdio and the preserved fds (3 .. 3+preserve-1) before exec."""
    first = 3 + (preserve or 0)
    try:
        sc.close_range(first)
    except OSError:
        os.closerange(first, 65536)


def env_error(process: dict[str, Any]) -> str | None:
    """What runc (populateProcessEnvironment) refuses in the process's environment, in its words."""
    for pair in process.get("env") or []:
        name, eq, value = pair.partition("=")
        q = quote(pair)
        if not eq:
            return f"invalid environment variable: {q}"
        if not name:
            return f"environment variable name can't be empty: {q}"
        if "\0" in name:
            return f"environment variable name can't contain null(\\x00): {q}"
        if "\0" in value:
            return f"environment variable value can't contain null(\\x00): {q}"
    return None


def mkdir_all(path: str) -> None:
    """Go's os.MkdirAll(path, 0755) in the container's root (runc makes the init's working
    directory), its error in runc's words: `mkdir <the part that could not be>: <why>`."""
    cur = ""
    for part in [p for p in path.split("/") if p]:
        cur += "/" + part
        try:
            if stat.S_ISDIR(os.stat(cur).st_mode):
                continue
            why = "not a directory"
        except FileNotFoundError:
            try:
                os.mkdir(cur, 0o755)
                continue
            except FileExistsError:
                continue
            except OSError as e:
                why = errno_text(e)
        except OSError as e:
            why = errno_text(e)
        raise SystemError_(f"error during container init: mkdir {cur}: {why}")


def env_dict(process: dict[str, Any]) -> dict[str, str]:
    env = {}
    for e in process.get("env") or []:
        k, _, v = e.partition("=")
        env[k] = v
    if "HOME" not in env:  # as runc: from the container's /etc/passwd, else /
        env["HOME"] = _home_of((process.get("user") or {}).get("uid", 0))
    return env


def _home_of(uid: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 6 and parts[2] == str(uid):
                    return parts[5] or "/"
    except OSError:
        pass
    return "/"


def default_signals() -> None:
    """Every signal at its default action and none blocked, as a process starts under runc: an
    ignored signal stays ignored across execve, and berth's processes are Python's, which
    ignores SIGPIPE and SIGXFSZ (a pipeline's writer would live on after its reader, `yes |
    head` would spin) and may have SIGINT ignored (^C in a TTY would do nothing)."""
    import _signal  # built in: importable after the pivot too (signal.py is a file on the host)
    for sig in range(1, _signal.NSIG):
        if sig in (_signal.SIGKILL, _signal.SIGSTOP):
            continue
        try:
            _signal.signal(sig, _signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):  # glibc's own (32, 33): to the kernel itself
            try:
                sc.signal_default(sig)
            except OSError:
                pass
    try:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
    except OSError:
        pass


def exec_process(process: dict[str, Any], path: str, seccomp_filter: Filter | Program | None) -> NoReturn:
    default_signals()  # before the seccomp filter, which might forbid it
    env = env_dict(process)
    umask = (process.get("user") or {}).get("umask")
    if umask is not None:
        os.umask(umask)
    if seccomp_filter is not None and process.get("noNewPrivileges"):
        seccomp_filter.load()
    try:
        os.execve(path, process["args"], env)
    except OSError as e:
        raise ExecFailed(path, e) from None
