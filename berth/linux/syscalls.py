"""Raw Linux system calls through ctypes.

This (with its siblings in berth/linux/) is the only place in berth that uses ctypes.
Every function raises OSError with errno set, like the os module does, so callers
can turn it into a user-facing error with the path or object concerned.
libc is loaded on first use, never at import time.
"""

from __future__ import annotations

import ctypes
import errno
import os

TYPE_CHECKING = False  # no typing at run time: berth-runc imports this
if TYPE_CHECKING:
    from typing import overload

    _Str = str | bytes  # a path or name: str (encoded) or bytes

# clone/unshare/setns flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# mount flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_DETACH = 2
MNT_FORCE = 1

# prctl
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# openat2 resolve flags
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# ioctls
TIOCSCTTY = 0x540E
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431

_SYSCALLS = {
    # name: (x86_64, aarch64)
    "pivot_root": (155, 41),
    "openat2": (437, 437),
    "capget": (125, 90),
    "capset": (126, 91),
    "close_range": (436, 436),
    "pidfd_open": (434, 434),
    "pidfd_send_signal": (424, 424),
    "pidfd_getfd": (438, 438),
    "rt_sigaction": (13, 134),
    "mount_setattr": (442, 442),
    "keyctl": (250, 219),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "ioprio_set": (251, 30),
    "sched_setattr": (314, 274),
}

_libc: ctypes.CDLL | None = None
_arch_index: int = None  # type: ignore[assignment]  # set by _lib() before any use


def _lib() -> ctypes.CDLL:
    global _libc, _arch_index
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.syscall.restype = ctypes.c_long
        lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.unshare.argtypes = [ctypes.c_int]
        lib.setns.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        lib.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        machine = os.uname().machine
        _arch_index = 1 if machine in ("aarch64", "arm64") else 0
        _libc = lib
    return _libc


def _check(ret: int, what: str | None = None, path: _Str | None = None) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path) if path is not None else OSError(err, os.strerror(err))
    return ret


def _nr(name: str) -> int:
    _lib()
    return _SYSCALLS[name][_arch_index]


def signal_default(sig: int) -> None:
    """rt_sigaction(sig, SIG_DFL) straight to the kernel: glibc's sigaction refuses its own
    signals (32, 33), which a parent may still have left ignored."""
    act = ctypes.create_string_buffer(32)  # the kernel's sigaction, zeroed: SIG_DFL, no flags, no mask
    _check(_lib().syscall(ctypes.c_long(_nr("rt_sigaction")), ctypes.c_long(sig), act, None, ctypes.c_long(8)))


if TYPE_CHECKING:
    @overload
    def _b(s: None) -> None: ...
    @overload
    def _b(s: _Str) -> bytes: ...
    @overload
    def _b(s: _Str | None) -> bytes | None: ...


def _b(s: _Str | None) -> bytes | None:
    if s is None:
        return None
    return s.encode() if isinstance(s, str) else s


def mount(source: _Str | None, target: _Str, fstype: _Str | None, flags: int = 0, data: _Str | None = None) -> int:
    lib = _lib()
    ret = lib.mount(_b(source), _b(target), _b(fstype), flags, _b(data))
    return _check(ret, path=target)


def umount2(target: _Str, flags: int = 0) -> int:
    return _check(_lib().umount2(_b(target), flags), path=target)


def pivot_root(new_root: _Str, put_old: _Str) -> int:
    lib = _lib()
    return _check(lib.syscall(_nr("pivot_root"), ctypes.c_char_p(_b(new_root)), ctypes.c_char_p(_b(put_old))), path=new_root)


def unshare(flags: int) -> int:
    return _check(_lib().unshare(flags))


def setns(fd: int, nstype: int = 0) -> int:
    return _check(_lib().setns(fd, nstype))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_lib().prctl(option, arg2, arg3, arg4, arg5))


def setdomainname(name: _Str) -> int:
    b = _b(name)
    return _check(_lib().setdomainname(b, len(b)))


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: _Str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): open path relative to dirfd with RESOLVE_* restrictions. EAGAIN (a rename or a
    mount anywhere on the system raced the resolution, with RESOLVE_IN_ROOT/BENEATH) is retried,
    as openat2(2) asks."""
    lib = _lib()
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    for _ in range(64):
        ret = lib.syscall(_nr("openat2"), ctypes.c_int(dirfd), ctypes.c_char_p(_b(path)),
                          ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
        if ret >= 0 or ctypes.get_errno() != errno.EAGAIN:
            break
    return _check(ret, path=path)


AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


MOUNT_ATTR_IDMAP = 0x00100000
OPEN_TREE_CLONE = 1
MOVE_MOUNT_F_EMPTY_PATH = 0x04
MOVE_MOUNT_T_EMPTY_PATH = 0x40


def open_tree(path: _Str, recursive: bool = False) -> int:
    """open_tree(2) with OPEN_TREE_CLONE: a detached copy of the mount at path (of the tree below
    it with recursive), as an fd (close-on-exec) that move_mount() attaches elsewhere."""
    lib = _lib()
    flags = OPEN_TREE_CLONE | os.O_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    return _check(lib.syscall(_nr("open_tree"), ctypes.c_int(-100), ctypes.c_char_p(_b(path)), ctypes.c_uint(flags)),
                  path=path)


def move_mount(from_fd: int, to_fd: int) -> int:
    """move_mount(2) of the (detached) mount from_fd is open on onto what to_fd is open on."""
    lib = _lib()
    return _check(lib.syscall(_nr("move_mount"), ctypes.c_int(from_fd), ctypes.c_char_p(b""), ctypes.c_int(to_fd),
                              ctypes.c_char_p(b""), ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)))


def mount_setattr(fd: int, attr_set: int, attr_clr: int, recursive: bool = True, userns_fd: int = 0) -> int:
    """mount_setattr(2) on the mount fd is open on (AT_EMPTY_PATH), the whole tree below it with
    recursive: what `rro` and the other recursive mount options ask."""
    lib = _lib()
    attr = _MountAttr(attr_set, attr_clr, 0, userns_fd)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    return _check(lib.syscall(_nr("mount_setattr"), ctypes.c_int(fd), ctypes.c_char_p(b""), ctypes.c_uint(flags),
                              ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))))


def ioprio_set(ioclass: int, level: int) -> int:
    """The calling process's I/O scheduling class and level (IOPRIO_WHO_PROCESS, itself)."""
    lib = _lib()
    return _check(lib.syscall(_nr("ioprio_set"), ctypes.c_int(1), ctypes.c_int(0),
                              ctypes.c_int((ioclass << 13) | level)))


class _SchedAttr(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("policy", ctypes.c_uint32), ("flags", ctypes.c_uint64),
                ("nice", ctypes.c_int32), ("priority", ctypes.c_uint32), ("runtime", ctypes.c_uint64),
                ("deadline", ctypes.c_uint64), ("period", ctypes.c_uint64)]


def sched_setattr(policy: int, flags: int = 0, nice: int = 0, priority: int = 0, runtime: int = 0,
                  deadline: int = 0, period: int = 0) -> int:
    """sched_setattr(2) of the calling thread: policy, nice, realtime priority, deadline times."""
    lib = _lib()
    attr = _SchedAttr(ctypes.sizeof(_SchedAttr), policy, flags, nice, priority, runtime, deadline, period)
    return _check(lib.syscall(_nr("sched_setattr"), ctypes.c_int(0), ctypes.byref(attr), ctypes.c_uint(0)))


def personality(persona: int) -> int:
    lib = _lib()
    return _check(lib.personality(ctypes.c_ulong(persona)))


KEYCTL_DESCRIBE = 6
KEYCTL_SETPERM = 5
KEYCTL_JOIN_SESSION_KEYRING = 1


def join_session_keyring(name: _Str) -> int:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING): the calling process's session keyring becomes the
    keyring of that name it may search, or a new one; its serial."""
    lib = _lib()
    return _check(lib.syscall(_nr("keyctl"), ctypes.c_int(KEYCTL_JOIN_SESSION_KEYRING), ctypes.c_char_p(_b(name))))


def key_perm(serial: int) -> int:
    """A key's permission mask (the fourth field of KEYCTL_DESCRIBE's "type;uid;gid;perm;desc")."""
    lib = _lib()
    buf = ctypes.create_string_buffer(4096)
    n = _check(lib.syscall(_nr("keyctl"), ctypes.c_int(KEYCTL_DESCRIBE), ctypes.c_int(serial), buf,
                           ctypes.c_size_t(len(buf))))
    return int(buf.raw[:n].rstrip(b"\0").split(b";")[3], 16)


def key_setperm(serial: int, perm: int) -> int:
    lib = _lib()
    return _check(lib.syscall(_nr("keyctl"), ctypes.c_int(KEYCTL_SETPERM), ctypes.c_int(serial), ctypes.c_uint(perm)))


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> int:
    lib = _lib()
    return _check(lib.syscall(_nr("close_range"), ctypes.c_uint(first), ctypes.c_uint(last), ctypes.c_uint(flags)))


def pidfd_open(pid: int) -> int:
    lib = _lib()
    return _check(lib.syscall(_nr("pidfd_open"), ctypes.c_int(pid), ctypes.c_uint(0)))


def pidfd_getfd(pidfd: int, target_fd: int) -> int:
    """A duplicate (close-on-exec) of another process's fd target_fd (pidfd_getfd(2): needs
    ptrace access to it)."""
    lib = _lib()
    return _check(lib.syscall(_nr("pidfd_getfd"), ctypes.c_int(pidfd), ctypes.c_int(target_fd), ctypes.c_uint(0)))


# --- capabilities (capget/capset, version 3: two 32-bit words per set) ---

class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capget(pid: int = 0) -> tuple[int, ...]:
    """Return (effective, permitted, inheritable) as 64-bit masks."""
    lib = _lib()
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (_CapData * 2)()
    _check(lib.syscall(_nr("capget"), ctypes.byref(hdr), ctypes.byref(data)))
    return tuple(getattr(data[0], f) | (getattr(data[1], f) << 32) for f in ("effective", "permitted", "inheritable"))


def capset(effective: int, permitted: int, inheritable: int) -> int:
    lib = _lib()
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        data[i].effective = (effective >> (32 * i)) & 0xFFFFFFFF
        data[i].permitted = (permitted >> (32 * i)) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> (32 * i)) & 0xFFFFFFFF
    return _check(lib.syscall(_nr("capset"), ctypes.byref(hdr), ctypes.byref(data)))


def ioctl_int(fd: int, request: int, value: int = 0) -> int:
    """ioctl with an int argument passed by value (TIOCSCTTY)."""
    lib = _lib()
    return _check(lib.ioctl(ctypes.c_int(fd), ctypes.c_ulong(request), ctypes.c_int(value)))


def ioctl_intp(fd: int, request: int, value: int = 0) -> int:
    """ioctl with a pointer to int (TIOCGPTN, TIOCSPTLCK); returns the int."""
    lib = _lib()
    v = ctypes.c_int(value)
    _check(lib.ioctl(ctypes.c_int(fd), ctypes.c_ulong(request), ctypes.byref(v)))
    return v.value


NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3)
_NS_TYPE_NAMES = {CLONE_NEWNS: "mount", CLONE_NEWCGROUP: "cgroup", CLONE_NEWUTS: "uts", CLONE_NEWIPC: "ipc",
                  CLONE_NEWUSER: "user", CLONE_NEWPID: "pid", CLONE_NEWNET: "network", CLONE_NEWTIME: "time"}


def ns_type(path: _Str) -> str | None:
    """The OCI name ("network", "user", ...) of the namespace file at path, or None when path is
    not a namespace file (NS_GET_NSTYPE fails)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _NS_TYPE_NAMES.get(ioctl_int(fd, NS_GET_NSTYPE))
    except OSError:
        return None
    finally:
        os.close(fd)


class _Statfs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("f_bsize", ctypes.c_long), ("f_blocks", ctypes.c_ulong),
                ("f_bfree", ctypes.c_ulong), ("f_bavail", ctypes.c_ulong), ("f_files", ctypes.c_ulong),
                ("f_ffree", ctypes.c_ulong), ("f_fsid", ctypes.c_int * 2), ("f_namelen", ctypes.c_long),
                ("f_frsize", ctypes.c_long), ("f_flags", ctypes.c_long), ("f_spare", ctypes.c_long * 4)]


PROC_SUPER_MAGIC = 0x9FA0
SYSFS_MAGIC = 0x62656572
TMPFS_MAGIC = 0x01021994
CGROUP2_SUPER_MAGIC = 0x63677270
# the kernel's own filesystems (proc, sysfs, cgroup v1/v2, devpts, mqueue, debugfs, securityfs,
# tracefs, bpf, pstore, configfs, fusectl, selinuxfs, efivarfs, binfmt_misc): views of the kernel,
# not files (a size of 0 that reads as more, trees without end)
PSEUDO_FS = frozenset((PROC_SUPER_MAGIC, SYSFS_MAGIC, 0x27E0EB, CGROUP2_SUPER_MAGIC, 0x1CD1, 0x19800202,
                       0x64626720, 0x73636673, 0x74726163, 0xCAFE4A11, 0x6165676C, 0x62656570, 0x65735543,
                       0xF97CFF8C, 0xDE5E81E4, 0x42494E4D))


def fstatfs_type(fd: int) -> int:
    """The filesystem magic number (f_type) of the file open at fd."""
    lib = _lib()
    buf = _Statfs()
    _check(lib.fstatfs(ctypes.c_int(fd), ctypes.byref(buf)))
    return buf.f_type & 0xFFFFFFFF


def set_process_name(name: _Str) -> int:
    """prctl(PR_SET_NAME): the name (comm, 15 bytes) that ps, top and pkill see."""
    buf = ctypes.create_string_buffer(_b(name)[:15])
    return _check(_lib().prctl(PR_SET_NAME, ctypes.addressof(buf), 0, 0, 0))


SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def link_up(name: _Str) -> None:
    """Set the network interface `name` up (SIOCSIFFLAGS) in the calling thread's network
    namespace, if it is not up already. Setting `lo` up also gives it 127.0.0.1/8."""
    import _socket
    import fcntl
    import struct

    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        ifr = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack("16sH22x", _b(name), 0))
        flags = struct.unpack("16sH22x", ifr)[1]
        if not flags & IFF_UP:
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH22x", _b(name), flags | IFF_UP))
    finally:
        s.close()


PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_load_bpf(program: bytes | bytearray) -> int:
    """Install a raw classic-BPF seccomp program (struct sock_filter[]: 8 bytes an instruction).
    Needs no_new_privs or CAP_SYS_ADMIN, like any seccomp filter."""
    buf = ctypes.create_string_buffer(bytes(program), len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    return _check(_lib().prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0))


_pylibc: ctypes.PyDLL | None = None


def fork_bare() -> int:
    """fork(2) without CPython's after-fork work in the child (PyOS_AfterFork_Child: the
    threading module's _after_fork, logging's lock resets, every os.register_at_fork handler).

    Only for a single-threaded caller holding no Python-level lock (berthd's zygote): that work
    exists to repair the state other threads left behind, and there are none. In a forked
    Python it costs ~0.5 MB of private memory: every function it runs writes to its code and
    function objects (reference counts, warm-up counters), copying pages shared with the parent.
    The GIL stays held across the call (PyDLL), as os.fork holds it. Returns fork's result."""
    global _pylibc
    if _pylibc is None:
        lib = ctypes.PyDLL(None, use_errno=True)
        lib.fork.restype = ctypes.c_int
        lib.fork.argtypes = []
        _pylibc = lib
    return _check(_pylibc.fork())
