"""berth.linux.seccomp: real filters loaded in forked children, no mocks.

Every case that loads a filter forks; the child loads it, runs a small body and
reports through a pipe (or dies by a signal); the parent asserts. Children always
leave through os._exit and never return into pytest.
"""

import ast
import ctypes
import errno
import os
import platform
import resource
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

from berth.errors import FailedPrecondition, InvalidArgument, SystemError_
from berth.linux import seccomp

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long
LIBC.personality.argtypes = [ctypes.c_ulong]
LIBC.personality.restype = ctypes.c_int
LIBC.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38

NATIVE_ARCHS = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "riscv64": ["SCMP_ARCH_RISCV64"],
    "s390x": ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
    "ppc64le": ["SCMP_ARCH_PPC64LE"],
}

ALLOW, ERRNO = "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO"


def run(spec, body, timeout=5.0):
    """Compile spec in the parent, load it in a forked child, run body() there.

    Returns ("ok", value) | ("oserror", errno) | ("exc", "Type: message")
    | ("signal", signo) | ("exit", code, reported).
    """
    filt = seccomp.compile(spec) if isinstance(spec, dict) else spec
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 0
        try:
            os.close(r)
            # A seccomp kill must not leave a core file (core_pattern may be "core").
            LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if os.geteuid() != 0:
                LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            filt.load()
            try:
                result = ("ok", body())
            except OSError as e:
                result = ("oserror", e.errno)
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                result = ("exc", f"{type(e).__name__}: {e}")
            os.write(w, repr(result).encode())
        except BaseException:  # noqa: BLE001
            code = 99
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("child timed out")
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
        if filt is not spec:
            filt.release()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return ("signal", os.WTERMSIG(status))
    code = os.WEXITSTATUS(status)
    if code != 0 or not data:
        return ("exit", code, data)
    return ast.literal_eval(data.decode())


def raw_syscall(name, *args):
    """Call syscall `name` directly; None if this arch lacks it, else (ret, errno)."""
    nr = seccomp.resolve_syscall(name)
    if nr is None:
        return None
    ctypes.set_errno(0)
    ret = LIBC.syscall(nr, *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return ret, ctypes.get_errno() if ret == -1 else 0


def status_field(name):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split()[1]
    return None


def errno_of(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except OSError as e:
        return e.errno
    return 0


# ---------------------------------------------------------------- behaviour


def test_default_allow_with_errno_rules(tmp_path):
    spec = {
        "defaultAction": ALLOW,
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": ERRNO},
            {"names": ["symlink", "symlinkat"], "action": ERRNO, "errnoRet": errno.ENOSYS},
        ],
    }
    d = str(tmp_path)

    def body():
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        raw = raw_syscall("mkdir", os.path.join(d, "raw").encode(), 0o755)
        return (
            errno_of(os.mkdir, os.path.join(d, "a")),
            errno_of(os.mkdir, "b", dir_fd=dfd),
            raw,
            errno_of(os.symlink, "x", os.path.join(d, "l")),
            errno_of(lambda: os.close(os.open(os.path.join(d, "f"), os.O_CREAT | os.O_WRONLY, 0o644))),
        )

    res = run(spec, body)
    assert res[0] == "ok", res
    mk, mkat, raw, sym, create = res[1]
    assert mk == errno.EPERM
    assert mkat == errno.EPERM
    assert raw in (None, (-1, errno.EPERM))  # mkdir(2) itself does not exist on every arch
    assert sym == errno.ENOSYS
    assert create == 0  # everything else is allowed
    assert sorted(os.listdir(d)) == ["f"]


def test_allowlist_profile_blocks_the_rest():
    needed = [
        "read", "write", "close", "exit", "exit_group", "brk", "mmap", "munmap", "mremap",
        "madvise", "mprotect", "rt_sigprocmask", "rt_sigaction", "futex", "fstat", "newfstatat",
        "lseek", "getrandom", "clock_gettime", "gettid", "getpid",
    ]
    spec = {
        "defaultAction": ERRNO,
        "defaultErrnoRet": errno.EACCES,
        "architectures": NATIVE_ARCHS.get(platform.machine(), []),
        "syscalls": [{"names": needed, "action": ALLOW}],
    }
    res = run(spec, lambda: (os.getpid() > 0, errno_of(os.uname), errno_of(os.getcwd)))
    assert res == ("ok", (True, errno.EACCES, errno.EACCES))


def test_personality_blocked_only_for_query_value():
    spec = {
        "defaultAction": ALLOW,
        "syscalls": [{
            "names": ["personality"], "action": ERRNO,
            "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}],
        }],
    }

    def body():
        ctypes.set_errno(0)
        q = LIBC.personality(0xFFFFFFFF)
        q_errno = ctypes.get_errno()
        ctypes.set_errno(0)
        s = LIBC.personality(0)  # PER_LINUX: what a normal process already has
        return q, q_errno, s, ctypes.get_errno()

    assert run(spec, body) == ("ok", (-1, errno.EPERM, 0, 0))


def _socket_errnos():
    out = []
    for fam, typ in [(socket.AF_UNIX, socket.SOCK_STREAM), (socket.AF_INET, socket.SOCK_STREAM),
                     (socket.AF_INET, socket.SOCK_DGRAM), (socket.AF_INET6, socket.SOCK_STREAM)]:
        try:
            socket.socket(fam, typ).close()
            out.append(0)
        except OSError as e:
            out.append(e.errno)
    return tuple(out)


def test_socket_af_inet_blocked_af_unix_allowed():
    spec = {
        "defaultAction": ALLOW,
        "syscalls": [{
            "names": ["socket"], "action": ERRNO, "errnoRet": errno.EAFNOSUPPORT,
            "args": [{"index": 0, "value": socket.AF_INET, "op": "SCMP_CMP_EQ"}],
        }],
    }
    res = run(spec, _socket_errnos)
    assert res[0] == "ok"
    unix, tcp, udp, _tcp6 = res[1]
    assert (unix, tcp, udp) == (0, errno.EAFNOSUPPORT, errno.EAFNOSUPPORT)


def test_same_index_args_are_ored_like_runc():
    spec = {
        "defaultAction": ALLOW,
        "syscalls": [{
            "names": ["socket"], "action": ERRNO,
            "args": [
                {"index": 0, "value": socket.AF_INET, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": socket.AF_INET6, "op": "SCMP_CMP_EQ"},
            ],
        }],
    }
    assert run(spec, _socket_errnos) == ("ok", (0, errno.EPERM, errno.EPERM, errno.EPERM))


def test_different_index_args_are_anded_with_masked_eq():
    # Python passes SOCK_CLOEXEC in the type argument: mask it out (SOCK_TYPE_MASK = 0xf).
    spec = {
        "defaultAction": ALLOW,
        "syscalls": [{
            "names": ["socket"], "action": ERRNO,
            "args": [
                {"index": 0, "value": socket.AF_INET, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 0xF, "valueTwo": socket.SOCK_DGRAM, "op": "SCMP_CMP_MASKED_EQ"},
            ],
        }],
    }
    res = run(spec, _socket_errnos)
    assert res[0] == "ok"
    unix, tcp, udp, _tcp6 = res[1]
    assert (unix, tcp, udp) == (0, 0, errno.EPERM)


# fchdir on fds that are not open: EBADF normally, 77 when the rule matches.
@pytest.mark.parametrize("op,value,value_two,blocked", [
    ("SCMP_CMP_NE", 1010, 0, {1000, 1020}),
    ("SCMP_CMP_LT", 1010, 0, {1000}),
    ("SCMP_CMP_LE", 1010, 0, {1000, 1010}),
    ("SCMP_CMP_EQ", 1010, 0, {1010}),
    ("SCMP_CMP_GE", 1010, 0, {1010, 1020}),
    ("SCMP_CMP_GT", 1010, 0, {1020}),
    ("SCMP_CMP_MASKED_EQ", 0xF0, 0xF0, {1010, 1020}),  # 0x3e8, 0x3f2, 0x3fc
])
def test_operators(op, value, value_two, blocked):
    spec = {
        "defaultAction": ALLOW,
        "syscalls": [{
            "names": ["fchdir"], "action": ERRNO, "errnoRet": 77,
            "args": [{"index": 0, "value": value, "valueTwo": value_two, "op": op}],
        }],
    }
    res = run(spec, lambda: tuple(errno_of(os.fchdir, fd) for fd in (1000, 1010, 1020)))
    assert res[0] == "ok"
    got = {fd for fd, e in zip((1000, 1010, 1020), res[1]) if e == 77}
    assert got == blocked
    assert all(e != 0 for e in res[1])


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP"])
def test_kill_and_trap_die_by_sigsys(action):
    spec = {"defaultAction": ALLOW, "syscalls": [{"names": ["getppid"], "action": action}]}
    assert run(spec, os.getppid) == ("signal", signal.SIGSYS)


def test_trace_without_tracer_is_enosys_and_log_allows():
    spec = {
        "defaultAction": ALLOW,
        "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_TRACE", "errnoRet": 5},
            {"names": ["uname"], "action": "SCMP_ACT_LOG"},
        ],
    }

    def body():
        ctypes.set_errno(0)
        r = LIBC.syscall(seccomp.resolve_syscall("getppid"))
        return r, ctypes.get_errno(), os.uname().sysname

    assert run(spec, body) == ("ok", (-1, errno.ENOSYS, "Linux"))


def test_unknown_syscall_names_are_skipped(tmp_path):
    spec = {
        "defaultAction": ALLOW,
        "syscalls": [
            {"names": ["no_such_syscall_xyz", "mkdir", "mkdirat"], "action": ERRNO},
            {"names": ["another_bogus_one"], "action": "SCMP_ACT_KILL"},
        ],
    }
    seccomp.validate(spec)
    filt = seccomp.compile(spec)
    assert filt.skipped == ["no_such_syscall_xyz", "another_bogus_one"]
    res = run(filt, lambda: errno_of(os.mkdir, str(tmp_path / "x")))
    filt.release()
    assert res == ("ok", errno.EPERM)


def test_rules_equal_to_default_action_are_skipped():
    spec = {
        "defaultAction": ERRNO,  # EPERM
        "syscalls": [
            {"names": ["uname"], "action": ERRNO, "errnoRet": errno.EPERM},  # same as default
            {"names": ["read", "write", "close", "exit_group", "exit", "brk", "mmap", "munmap",
                       "rt_sigprocmask", "rt_sigaction", "futex", "getpid", "getrandom", "madvise"],
             "action": ALLOW},
        ],
    }
    seccomp.validate(spec)
    assert run(spec, lambda: errno_of(os.uname)) == ("ok", errno.EPERM)
    spec2 = {"defaultAction": ALLOW, "syscalls": [{"names": ["getpid"], "action": ALLOW}]}
    assert run(spec2, os.getpid)[0] == "ok"


def test_flags_and_architectures(tmp_path):
    archs = NATIVE_ARCHS.get(platform.machine())
    if not archs:
        pytest.skip(f"no architecture list for {platform.machine()}")
    spec = {
        "defaultAction": ALLOW,
        "architectures": archs,
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": ERRNO}],
    }
    assert run(spec, lambda: errno_of(os.mkdir, str(tmp_path / "x"))) == ("ok", errno.EPERM)


def test_filter_in_child_does_not_affect_parent(tmp_path):
    spec = {"defaultAction": ALLOW, "syscalls": [{"names": ["mkdir", "mkdirat"], "action": ERRNO}]}
    before = {k: status_field(k) for k in ("Seccomp", "Seccomp_filters", "NoNewPrivs")}

    def body():
        return (status_field("Seccomp"), status_field("Seccomp_filters"), status_field("NoNewPrivs"),
                errno_of(os.mkdir, str(tmp_path / "c")))

    res = run(spec, body)
    assert res[0] == "ok", res
    mode, nfilters, nnp, mk = res[1]
    assert mode == "2"  # SECCOMP_MODE_FILTER
    if before["Seccomp_filters"] is not None:
        assert int(nfilters) == int(before["Seccomp_filters"]) + 1
    # Loading does not set no_new_privs (SCMP_FLTATR_CTL_NNP = 0); non-root children set it themselves.
    assert nnp == (before["NoNewPrivs"] if os.geteuid() == 0 else "1")
    assert mk == errno.EPERM
    assert {k: status_field(k) for k in before} == before
    os.mkdir(tmp_path / "p")
    assert (tmp_path / "p").is_dir()


def test_compile_and_validate_do_not_touch_the_process():
    before = {k: status_field(k) for k in ("Seccomp", "Seccomp_filters", "NoNewPrivs")}
    spec = {"defaultAction": "SCMP_ACT_KILL", "syscalls": [{"names": ["read"], "action": ALLOW}]}
    seccomp.validate(spec)
    seccomp.compile(spec).release()
    assert {k: status_field(k) for k in before} == before


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
def test_load_without_privilege_raises_system_error():
    filt = seccomp.compile({"defaultAction": ALLOW, "syscalls": [{"names": ["getppid"], "action": ERRNO}]})
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            os.setuid(65534)  # no CAP_SYS_ADMIN, no no_new_privs
            try:
                filt.load()
                msg = "loaded"
            except SystemError_ as e:
                msg = "SystemError_: " + str(e)
            os.write(w, msg.encode())
        except BaseException:  # noqa: BLE001
            code = 99
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read().decode()
    _, status = os.waitpid(pid, 0)
    filt.release()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert msg.startswith("SystemError_: seccomp: "), msg
    assert os.strerror(errno.EACCES) in msg


def test_load_after_release_fails_cleanly():
    filt = seccomp.compile({"defaultAction": ALLOW, "syscalls": [{"names": ["getppid"], "action": ERRNO}]})
    filt.release()
    filt.release()  # idempotent
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            try:
                filt.load()
                msg = "loaded"
            except FailedPrecondition as e:
                msg = "FailedPrecondition: " + str(e) + " filters=" + str(status_field("Seccomp_filters"))
            os.write(w, msg.encode())
        except BaseException:  # noqa: BLE001
            code = 99
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read().decode()
    os.waitpid(pid, 0)
    assert msg.startswith("FailedPrecondition: seccomp:"), msg
    assert msg.endswith(f"filters={status_field('Seccomp_filters')}"), msg  # nothing was installed


# ---------------------------------------------------------------- validation

BASE = {"defaultAction": ALLOW}


def with_call(**call):
    c = {"names": ["getpid"], "action": ERRNO}
    c.update(call)
    return {"defaultAction": ALLOW, "syscalls": [c]}


@pytest.mark.parametrize("spec,fragment", [
    ({"defaultAction": "SCMP_ACT_FOO"}, '"SCMP_ACT_FOO"'),
    (with_call(action="SCMP_ACT_BAR"), '"SCMP_ACT_BAR"'),
    (with_call(args=[{"index": 0, "value": 1, "op": "SCMP_CMP_BOGUS"}]), '"SCMP_CMP_BOGUS"'),
    ({**BASE, "architectures": ["SCMP_ARCH_Z80"]}, '"SCMP_ARCH_Z80"'),
    ({**BASE, "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}, '"SECCOMP_FILTER_FLAG_NOPE"'),
    (with_call(args=[{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]), "index 6"),
    (with_call(args=[{"index": -1, "value": 1, "op": "SCMP_CMP_EQ"}]), "index -1"),
    (with_call(args=[{"index": "0", "value": 1, "op": "SCMP_CMP_EQ"}]), 'index "0"'),
    (with_call(args=[{"index": 0, "value": -5, "op": "SCMP_CMP_EQ"}]), "value -5"),
    (with_call(args=[{"index": 0, "value": 1 << 64, "op": "SCMP_CMP_EQ"}]), str(1 << 64)),
    (with_call(action=ALLOW, errnoRet=1, names=["uname"]), "errnoRet"),
    (with_call(errnoRet=70000), "70000"),
    (with_call(names=[]), "names"),
    (with_call(names=["ok", 5]), "5"),
    (with_call(names=[""]), '""'),
    ({**BASE, "syscalls": [{"names": ["getpid"]}]}, "action"),
    ({**BASE, "syscalls": "getpid"}, '"getpid"'),
    ({**BASE, "listenerPath": ["/run/agent.sock"]}, 'listenerPath must be a string, got ["/run/agent.sock"]'),
    ({**BASE, "listenerMetadata": 7}, "listenerMetadata must be a string, got 7"),
    ({"defaultAction": ALLOW, "defaultErrnoRet": 1}, "defaultErrnoRet"),
    ({}, "defaultAction"),
    ([], "list"),
])
def test_validate_rejects(spec, fragment):
    with pytest.raises(InvalidArgument) as ei:
        seccomp.validate(spec)
    msg = str(ei.value)
    assert msg.startswith("seccomp: ") and fragment in msg, msg
    assert "\n" not in msg
    with pytest.raises(InvalidArgument):
        seccomp.compile(spec)


def test_validate_message_format():
    with pytest.raises(InvalidArgument) as ei:
        seccomp.validate({"defaultAction": "SCMP_ACT_FOO"})
    assert str(ei.value).startswith('seccomp: unknown action "SCMP_ACT_FOO"')


@pytest.mark.parametrize("spec, why", [
    (with_call(action="SCMP_ACT_NOTIFY"), "listenerPath is not set"),
    ({**with_call(action="SCMP_ACT_NOTIFY", names=["getpid", "write"]), "listenerPath": "/run/a.sock"},
     "SCMP_ACT_NOTIFY cannot be used for the write syscall"),
    ({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/a.sock"},
     "SCMP_ACT_NOTIFY cannot be used as default action"),
])
def test_what_notify_cannot_do_is_refused_in_runcs_words(spec, why):
    with pytest.raises(InvalidArgument) as ei:
        seccomp.validate(spec)
    assert str(ei.value) == why


def test_a_notify_filter_hands_its_listener_fd_on_once_loaded():
    """The loaded filter's notification fd goes to on_notify; a notified call then waits for
    the fd's reader: here a child of the filtered process calls, and the process answers."""
    spec = {**with_call(action="SCMP_ACT_NOTIFY", names=["getppid"]), "listenerPath": "/run/a.sock"}
    filt = seccomp.compile(spec)
    plain = seccomp.compile(BASE)
    assert filt.notify and not plain.notify
    plain.release()
    got = []
    filt.on_notify = got.append

    def body():
        import fcntl
        import struct
        fd = got[0]
        child = os.fork()
        if child == 0:
            os._exit(0 if os.getppid() == 4242 else 1)  # the parent answers 4242
        buf = bytearray(80)
        fcntl.ioctl(fd, 0xC0502100, buf)  # SECCOMP_IOCTL_NOTIF_RECV
        nid, _pid, _flags, nr = struct.unpack_from("<QIIi", buf)
        fcntl.ioctl(fd, 0xC0182101, bytearray(struct.pack("<QqiI", nid, 4242, 0, 0)))  # NOTIF_SEND
        return nr == seccomp.resolve_syscall("getppid"), os.waitpid(child, 0)[1]
    assert run(filt, body) == ("ok", (True, 0))
    filt.release()


def test_a_notify_filter_with_nobody_to_take_its_fd_fails_its_load():
    filt = seccomp.compile({**with_call(action="SCMP_ACT_NOTIFY", names=["getppid"]), "listenerPath": "/a"})
    result = run(filt, lambda: "loaded")
    assert result[0] == "exit" and result[1] == 99  # load() raised in the child
    filt.release()


def test_validate_accepts_a_docker_like_profile():
    spec = {
        "defaultAction": ERRNO,
        "defaultErrnoRet": 1,
        "architectures": NATIVE_ARCHS.get(platform.machine(), []),
        "listenerPath": "",
        "syscalls": [
            {"names": ["accept", "read", "write", "socketcall", "arm_fadvise64_64", "clone3x"],
             "action": ALLOW, "comment": "unknown keys are ignored"},
            {"names": ["clone3"], "action": ERRNO, "errnoRet": errno.ENOSYS},
            {"names": ["personality"], "action": ALLOW,
             "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"} for v in (0, 8, 0x20000, 0xFFFFFFFF)]},
            {"names": ["clone"], "action": ALLOW,
             "args": [{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["ptrace"], "action": "SCMP_ACT_TRACE"},
        ] + [{"names": [f"bogus_{i}"], "action": ALLOW} for i in range(40)],
    }
    seccomp.validate(spec)
    filt = seccomp.compile(spec)
    try:
        assert "clone3x" in filt.skipped and "bogus_0" in filt.skipped
        assert "socketcall" not in filt.skipped  # a pseudo syscall on x86_64: libseccomp handles it
        pfc = filt.export_pfc()
        assert "personality" in pfc and "ERRNO(38)" in pfc
        assert len(filt.export_bpf()) % 8 == 0  # struct sock_filter is 8 bytes
    finally:
        filt.release()


# ---------------------------------------------------------------- features, import


def test_features():
    f = seccomp.features()
    assert f["enabled"] is True
    assert set(f["operators"]) == {"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ",
                                   "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"}
    assert {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_TRAP"} <= set(f["actions"])
    assert "SCMP_ACT_NOTIFY" in f["actions"]  # as runc's features
    for a in NATIVE_ARCHS.get(platform.machine(), [])[:1]:
        assert a in f["archs"]
    assert f["knownFlags"] == ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                               "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
    assert set(f["supportedFlags"]) <= set(f["knownFlags"])
    assert f["lib"].count(".") == 2 and f["lib"] == seccomp.version()


def test_import_has_no_side_effects():
    code = (
        "import berth.linux.seccomp as s\n"
        "maps = open('/proc/self/maps').read()\n"
        "print('libseccomp' in maps, s._lib_handle is None)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=10, check=True).stdout
    assert out.split() == ["False", "True"]
