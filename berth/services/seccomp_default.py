"""docker's default seccomp profile, and docker-format profiles turned into OCI ``linux.seccomp``.

The default is an allowlist: every syscall not named fails with EPERM
(``defaultAction: SCMP_ACT_ERRNO``, ``defaultErrnoRet: 1``). Some syscalls are allowed only
when the container has a capability (mount, unshare, setns ... with CAP_SYS_ADMIN; ptrace
with CAP_SYS_PTRACE ...), some only with given arguments (clone without namespace flags,
personality with harmless personas, socket except AF_VSOCK). Without CAP_SYS_ADMIN, clone3
fails with ENOSYS so that libcs fall back to clone, whose flags seccomp can inspect.

The rules are written in docker's profile format (``includes``/``excludes`` on capabilities,
architectures and kernel version), and :func:`to_oci` resolves them for one container, the
same way it resolves a profile given with ``--security-opt seccomp=<file>``.
"""

from __future__ import annotations

import os

from berth.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from collections.abc import Iterable
    from typing import Any

EPERM = 1
ENOSYS = 38

# CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP
CLONE_NAMESPACE_FLAGS = 0x00020000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x02000000
AF_VSOCK = 40

# Allowed for every container, whatever its capabilities.
_ALLOWED = """
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2
dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat
fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64
fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_requeue futex_time64
futex_wait futex_waitv futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32
geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp
getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit
get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid gettimeofday
getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel
ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup
io_submit io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule
landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat listen
listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise map_shadow_stack
membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall
mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64
mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock
munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause
pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll
ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64
pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg
recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall
rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid
setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority setregid
setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit
set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 setxattr shmat
shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn socketcall
socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync sync_file_range
syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun timer_gettime
timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64
timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink
unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
""".split()  # noqa: SIM905 - a word list reads better than 360 quoted names

# Allowed only with this capability.
_BY_CAP = {
    "CAP_DAC_READ_SEARCH": "open_by_handle_at",
    "CAP_SYS_ADMIN": """bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount
                        mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname
                        sethostname setns syslog umount umount2 unshare""",
    "CAP_SYS_BOOT": "reboot",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_MODULE": "delete_module init_module finit_module",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_PTRACE": "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYS_NICE": "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
    "CAP_SYSLOG": "syslog",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
}


def _allow(names: str | Iterable[str], **kw: Any) -> dict[str, Any]:
    rule = {"names": names.split() if isinstance(names, str) else list(names), "action": "SCMP_ACT_ALLOW"}
    rule.update(kw)
    return rule


def _eq(index: int, value: int, op: str = "SCMP_CMP_EQ") -> dict[str, Any]:
    return {"index": index, "value": value, "op": op}


def _rules() -> list[dict[str, Any]]:
    """docker's default profile, as docker-format syscall rules (includes/excludes unresolved)."""
    rules = [
        _allow(_ALLOWED),
        # ptrace is safe from kernel 4.8 on (seccomp is checked again after a tracer's changes)
        _allow("process_vm_readv process_vm_writev ptrace", includes={"minKernel": "4.8"}),
        _allow("socket", args=[_eq(0, AF_VSOCK, "SCMP_CMP_NE")]),
    ]
    # personality: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and the query (0xffffffff)
    for persona in (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF):
        rules.append(_allow("personality", args=[_eq(0, persona)]))
    rules += [
        _allow("sync_file_range2 swapcontext", includes={"arches": ["ppc64le"]}),
        _allow("arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
               includes={"arches": ["arm", "arm64"]}),
        _allow("arch_prctl", includes={"arches": ["amd64", "x32"]}),
        _allow("modify_ldt", includes={"arches": ["amd64", "x32", "x86"]}),
        _allow("s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr", includes={"arches": ["s390", "s390x"]}),
        _allow("riscv_flush_icache riscv_hwprobe", includes={"arches": ["riscv64"]}),
    ]
    for cap, names in _BY_CAP.items():
        rules.append(_allow(names, includes={"caps": [cap]}))
    rules += [
        # without CAP_SYS_ADMIN: clone only without namespace flags (s390 swaps the first two args)
        _allow("clone", args=[_eq(0, CLONE_NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ")],
               excludes={"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}),
        _allow("clone", args=[_eq(1, CLONE_NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ")],
               includes={"arches": ["s390", "s390x"]}, excludes={"caps": ["CAP_SYS_ADMIN"]}),
        # clone3's flags live in memory seccomp cannot read: ENOSYS makes the libc use clone
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS,
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
    ]
    return rules


def docker_default() -> dict:
    """docker's default profile in docker's own format (what ``docker`` ships as default.json)."""
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "archMap": [{"architecture": a, "subArchitectures": list(s)} for a, s in _ARCH_MAP.items()],
        "syscalls": _rules(),
    }


_DEFAULT_CACHE: dict[tuple[frozenset[str], str | None], dict[str, Any]] = {}


def default_profile(capabilities: Iterable[str], arch: str | None = None) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` object of docker's default profile for a container with these
    capabilities ("CAP_SYS_ADMIN", ...), on arch (``uname -m`` style; the host's by default).
    Resolved once per set of capabilities (~2 ms, at every create and start otherwise); each
    caller gets its own copy of the object and of its rules."""
    key = (frozenset(capabilities), arch)
    spec = _DEFAULT_CACHE.get(key)
    if spec is None:
        spec = to_oci(docker_default(), capabilities, arch)
        spec["syscalls"] = _merge(spec["syscalls"])
        if len(_DEFAULT_CACHE) < 64:
            _DEFAULT_CACHE[key] = spec
    return dict(spec, archMap=[dict(a, subArchitectures=list(a["subArchitectures"])) for a in spec.get("archMap") or []],
                syscalls=[dict(r, names=list(r["names"])) for r in spec["syscalls"]])


# --- docker format -> OCI ---

# native libseccomp arch -> the arches its processes may also use
_ARCH_MAP = {
    "SCMP_ARCH_X86_64": ("SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "SCMP_ARCH_AARCH64": ("SCMP_ARCH_ARM",),
    "SCMP_ARCH_MIPS64": ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"),
    "SCMP_ARCH_MIPS64N32": ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"),
    "SCMP_ARCH_MIPSEL64": ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"),
    "SCMP_ARCH_MIPSEL64N32": ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"),
    "SCMP_ARCH_S390X": ("SCMP_ARCH_S390",),
    "SCMP_ARCH_RISCV64": (),
}

# uname -m (or a Go arch name) -> (Go arch name used by docker's includes/excludes, libseccomp arch)
_MACHINES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"), "amd64": ("amd64", "SCMP_ARCH_X86_64"),
    "i386": ("386", "SCMP_ARCH_X86"), "i686": ("386", "SCMP_ARCH_X86"), "386": ("386", "SCMP_ARCH_X86"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"), "arm64": ("arm64", "SCMP_ARCH_AARCH64"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"), "armv6l": ("arm", "SCMP_ARCH_ARM"), "arm": ("arm", "SCMP_ARCH_ARM"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"), "ppc64": ("ppc64", "SCMP_ARCH_PPC64"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
    "mips64": ("mips64", "SCMP_ARCH_MIPS64"), "mips64el": ("mips64le", "SCMP_ARCH_MIPSEL64"),
    "loongarch64": ("loong64", "SCMP_ARCH_LOONGARCH64"),
}


def _machine(arch: str | None) -> tuple[str, str]:
    arch = arch or os.uname().machine
    try:
        return _MACHINES[arch]
    except KeyError:
        raise InvalidArgument(f"seccomp: unsupported architecture {arch!r}") from None


def _kernel() -> tuple[int, ...]:
    out = []
    for part in os.uname().release.split("-")[0].split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit()) if part else ""
        out.append(int(digits or 0))
    return tuple(out + [0] * (2 - len(out)))


def _kernel_version(v: object, where: str) -> tuple[int, int]:
    try:
        major, _, minor = str(v).partition(".")
        return int(major), int(minor or 0)
    except ValueError:
        raise InvalidArgument(f"seccomp profile: invalid minKernel {v!r} in {where}") from None


def _bad(msg: str) -> InvalidArgument:
    return InvalidArgument("seccomp profile: " + msg)


def _strs(v: object, what: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _bad(f"{what} must be a list of strings")
    return v


def _norm_cap(c: str) -> str:
    c = c.upper()
    return c if c.startswith("CAP_") else "CAP_" + c


def to_oci(profile: Any, capabilities: Iterable[str], arch: str | None = None) -> dict[str, Any]:
    """A docker-format seccomp profile (``defaultAction``, ``syscalls`` with ``includes`` and
    ``excludes``, ``archMap`` or ``architectures``) resolved for a container with these
    capabilities on arch: the OCI ``linux.seccomp`` object. Raises InvalidArgument."""
    if not isinstance(profile, dict):
        raise _bad("expected a JSON object")
    if not isinstance(profile.get("defaultAction"), str) or not profile["defaultAction"]:
        raise _bad("defaultAction is required")
    goarch, native = _machine(arch)
    caps = {_norm_cap(c) for c in capabilities or ()}
    kernel = None

    legacy = _strs(profile.get("architectures"), "architectures")
    arch_map = profile.get("archMap")
    if legacy and arch_map:
        raise _bad("both 'architectures' and 'archMap' are specified, use either 'architectures' or 'archMap'")
    if arch_map is not None and not isinstance(arch_map, list):
        raise _bad("archMap must be a list")
    archs = list(legacy)
    for i, entry in enumerate(arch_map or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("architecture"), str):
            raise _bad(f"archMap[{i}] must be an object with an architecture")
        if entry["architecture"] == native:
            archs = [native] + _strs(entry.get("subArchitectures"), f"archMap[{i}].subArchitectures")

    out = {"defaultAction": profile["defaultAction"]}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    if archs:
        out["architectures"] = archs
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if profile.get(key):
            out[key] = profile[key]

    syscalls = profile.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise _bad("syscalls must be a list")
    rules = []
    for i, call in enumerate(syscalls):
        where = f"syscalls[{i}]"
        if not isinstance(call, dict):
            raise _bad(f"{where} must be an object")
        names = _strs(call.get("names"), f"{where}.names")
        if call.get("name"):
            if names:
                raise _bad(f"{where}: use either 'name' or 'names'")
            names = [call["name"]]
        inc = call.get("includes") or {}
        exc = call.get("excludes") or {}
        if not isinstance(inc, dict) or not isinstance(exc, dict):
            raise _bad(f"{where}: includes and excludes must be objects")
        if exc.get("minKernel"):
            raise _bad(f"{where}: minKernel is not supported in excludes")
        inc_arches = _strs(inc.get("arches"), f"{where}.includes.arches")
        if inc_arches and goarch not in inc_arches:
            continue
        if any(_norm_cap(c) not in caps for c in _strs(inc.get("caps"), f"{where}.includes.caps")):
            continue
        if inc.get("minKernel"):
            kernel = kernel or _kernel()
            if kernel < _kernel_version(inc["minKernel"], where):
                continue
        if goarch in _strs(exc.get("arches"), f"{where}.excludes.arches"):
            continue
        if any(_norm_cap(c) in caps for c in _strs(exc.get("caps"), f"{where}.excludes.caps")):
            continue
        if not names:
            raise _bad(f"{where}: names must not be empty")
        rule = {"names": list(names), "action": call.get("action")}
        if call.get("errnoRet") is not None:
            rule["errnoRet"] = call["errnoRet"]
        if call.get("args"):
            rule["args"] = call["args"]
        rules.append(rule)
    out["syscalls"] = rules
    return out


def _merge(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fold the unconditional rules of one action into one entry, without duplicate names
    (a smaller profile). Only for rules that never give one syscall two actions: the order
    of the rules, which decides between such actions, is not kept."""
    out = []
    plain: dict[tuple[str, Any], dict[str, Any]] = {}  # (action, errnoRet) -> the merged rule
    seen: set[tuple[tuple[str, Any], str]] = set()
    for r in rules:
        if r.get("args"):
            out.append(r)
            continue
        key = (r["action"], r.get("errnoRet"))
        names = [n for n in r["names"] if (key, n) not in seen]
        seen.update((key, n) for n in names)
        if key in plain:
            plain[key]["names"].extend(names)
        elif names:
            plain[key] = dict(r, names=names)
            out.append(plain[key])
    return out
